"""The one exception type gradlab raises for anything a user can fix, and the checks of
plain arguments (integers, seeds, real numbers, flags) that every entry point shares."""

import contextlib
import math
import numbers
import re
import sys
import unicodedata


class GradlabError(ValueError):
    """A bad cell, shape, option or declaration.

    The message names what was received, what was expected and, where it helps, how to
    fix it; the CLI prints it as one line and exits with status 2.
    """


def shown(value, width=60):
    """repr(value) on one line, cut at `width` characters: what a message quotes of an
    object it refuses (a cell's repr is its equations, over several lines)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[:width] + "..."


class GradlabIndexError(GradlabError, IndexError):
    """An index out of range: a GradlabError that is also Python's IndexError."""


class Interrupted(Exception):
    """Ctrl-C during a command, carried past click's main (which prints an empty line for
    a KeyboardInterrupt before its own Abort); the CLI prints 'gradlab: interrupted'."""


class PipeClosed(Exception):
    """The reader of stdout went away (`gradlab cells | head`), carried past click's main
    (which exits 1 on it): not an error, exit 0, as `cat` and `ls` do."""


class GradlabTypeError(GradlabError, TypeError):
    """An operation the object does not offer (iterating a Jacobian): a GradlabError
    that is also Python's TypeError, so that `iterable(x)` tests still read False."""


class GradlabAttributeError(GradlabError, AttributeError):
    """An attribute that may not be set (what a cell is, what a Flow measured): a
    GradlabError that is also Python's AttributeError, as a frozen dataclass's refusal is."""


class GradlabKeyError(GradlabError, KeyError):
    """A key that names nothing: a GradlabError that is also Python's KeyError (printed
    as its message, not as KeyError's quoted repr)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def choice(value, valid, what):
    """`value` if it is one of `valid`, else a GradlabError naming it and the valid ones."""
    if value not in valid:
        raise GradlabError(f"unknown {what} {shown(value)}; valid: {', '.join(map(str, valid))}")
    return value


def integer(value, what, low=None, high=None):
    """`value` as an int if it is an integer (Python's or numpy's, never a bool) within
    low..high (either bound None: open), else a GradlabError naming it and the range."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and (
        low is None or value >= low) and (high is None or value <= high)
    if not ok:
        span = ("" if low is None and high is None else
                f" >= {low}" if high is None else f" <= {high}" if low is None else
                f" in {low}..{high}")
        raise GradlabError(f"{what} must be an integer{span}, got {shown(value)}")
    return int(value)


SEEDS = 2 ** 63


def check_seed(value, what="seed"):
    """A random seed as an int: an integer in [0, 2**63), else a GradlabError."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and 0 <= value < SEEDS
    if not ok:
        raise GradlabError(f"{what} must be an integer in [0, 2**63), got {shown(value)}")
    return int(value)


def derived_seed(seed, k):
    """The k-th seed drawn from a checked seed: seed + k, wrapped into [0, 2**63), so the
    largest seed a user may give still gives valid seeds for the inputs, the probes, ..."""
    return (int(seed) + k) % SEEDS


def real(value, what, low=None, finite=True):
    """`value` as a float if it is a real number (not a bool, not a string), finite unless
    `finite` is False (then nan and inf pass, and an integer past float's range reads as
    inf of its sign), not below `low` where given, else a GradlabError naming it."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            number = float(value)
        except OverflowError:                 # an integer past float's range (10**400)
            number = math.inf if value > 0 else -math.inf
        ok = (math.isfinite(number) or not finite) and not (low is not None and number < low)
    if not ok:
        kind = "a finite real number" if finite else "a real number"
        at_least = "" if low is None else f" >= {low}"
        got = " ".join(repr(value).split())   # (on one line, as `shown`: np.eye(2)'s)
        if len(got) > 40:                     # (a 400-digit integer, named by its size)
            got = f"{got[:12]}... ({len(got)} characters)"
        raise GradlabError(f"{what} must be {kind}{at_least}, got {got}")
    return number


def flag(value, what):
    """`value` as a bool if it is one (Python's or numpy's, or the integer 0 or 1), else a
    GradlabError (a string such as 'no' is not silently true)."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    zero_one = isinstance(value, numbers.Integral) and value in (0, 1)
    if not (isinstance(value, bool) or numpy_bool or zero_one):
        raise GradlabError(f"{what} must be True or False, got {shown(value)}")
    return bool(value)


def callback(fn, what, signature, usage=None):
    """fn, checked to be a function that takes len(signature) positional arguments (or
    None, passed through): a one-line error now rather than a TypeError from deep in the
    work that calls it. `signature` names the arguments, for the message, which `usage`
    begins if given."""
    if fn is None:
        return fn
    usage = usage or f"{what} must be a function {what}({', '.join(signature)}) or None"
    if not callable(fn):
        raise GradlabError(f"{usage}, got {type(fn).__name__} {shown(fn)}")
    import inspect
    try:
        shape = inspect.signature(fn)
    except (TypeError, ValueError):        # a builtin without a signature: let it try
        return fn
    try:
        shape.bind(*signature)
    except TypeError as err:
        raise GradlabError(f"{usage}, got one that cannot be called so: {err}") from None
    return fn


def non_ascii(text):
    """Why `text`, a number as typed on the command line, is refused, or None: gradlab
    reads numbers in ASCII only, in every option (--hidden, --seed, --arch, --shard,
    --tasks, --weight-scales, ...). Python's int() and float() also read other scripts'
    digits (full-width １６, Arabic-Indic ١٦) and Unicode spaces; a value that reads one
    way to one parser and is refused by another, or that a reader may take for another
    number, is refused everywhere instead, with its ASCII spelling where there is one."""
    if not isinstance(text, str) or text.isascii():
        return None
    plain = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    hint = f"; write {plain!r}" if plain.isascii() else ""
    return f"{text!r} is not written in ASCII digits 0-9{hint}"


def not_whole(text):
    """Why `text`, an integer as typed on the command line, is refused, or None. One
    grammar for every option (--hidden, --seed, --arch, --tasks, ...): ASCII digits,
    a minus sign allowed (a range check then names the bound), spaces around ignored.
    Python's int() also reads '+1', '1_0' and other scripts' digits; those are refused,
    with their plain spelling."""
    if not isinstance(text, str):
        return None
    if non_ascii(text):
        return non_ascii(text)
    if re.fullmatch(r"-?[0-9]+", text.strip()):
        return None
    try:
        plain = int(text)
    except ValueError:
        return f"{text!r} is not a whole number (digits 0-9)"
    return f"{text!r} is not written in digits 0-9 alone; write '{plain}'"


def not_decimal(text):
    """Why `text`, a real number as typed, is refused, or None (then float() reads it): as
    `not_whole`, no digit separators ('1_0' is 10 to Python, a typo to a reader)."""
    if not isinstance(text, str):
        return None
    if non_ascii(text):
        return non_ascii(text)
    if "_" in text:
        return f"{text!r} holds '_'; write the number without separators"
    return None


def entries(value, what, pieces=None):
    """The comma-separated entries of `value`, stripped; an empty one between commas (a
    typo like 'lstm,,gru') refused rather than dropped. An empty `value` gives []. `pieces`:
    `value` split already, where not every comma parts two (a cell file's path's)."""
    items = [v.strip() for v in (str(value).split(",") if pieces is None else pieces)]
    if any(items) and not all(items):
        raise GradlabError(f"{what} {value!r} has an empty entry; separate the entries "
                           "with single commas")
    return [v for v in items if v]


def arguments_checked(fn):
    """fn, whose call with arguments its signature does not take (a misspelt option,
    one too many) raises a one-line GradlabError naming fn and its parameters, not
    Python's TypeError; `inspect.signature` still shows fn's own. fn runs with torch's
    default device the CPU: gradlab computes where the tensors it is given lie (or where
    a `device` argument says), and draws its random numbers on the CPU, from seeded CPU
    generators, so that a seed gives the same numbers on any machine; under
    torch.set_default_device("cuda") those draws would otherwise fail or move. And it runs
    with the caller's torch.autocast off: gradlab computes in the params' dtype, and under
    a mixed-precision loop's autocast its products ran in bfloat16 (a rate off in the 3rd
    digit, gradlab's own exact Jacobian checked as wrong). For the same reason TF32
    matrix products (torch.backends.cuda.matmul.allow_tf32, which
    set_float32_matmul_precision("high") turns on) are off during the call: float32
    spectral norms are certified to 5e-7, and a TF32 product rounds at ~5e-4."""
    import functools
    import inspect
    signature = inspect.signature(fn)

    name = fn.__qualname__ if "<" not in fn.__qualname__ else fn.__name__   # Flow.rate
    method = "." in name and next(iter(signature.parameters), None) == "self"
    shown = signature.replace(parameters=list(signature.parameters.values())[1:]) \
        if method else signature                      # flow.rate(kind=...): no self

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as err:
            said, meant = _unexpected(kwargs) or (err, None)
            raise GradlabTypeError(f"{name}(): {said}; it takes {name}{shown}" + (
                f"; did you mean {meant!r}?" if meant else "")) from None
        torch = sys.modules.get("torch")          # (not imported: its default is the CPU,
        if torch is None:                         # and no autocast can be on)
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:     # see `arguments_checked`
            if _default_device_type() != "cpu":
                stack.enter_context(torch.device("cpu"))
            for device_type in _autocast_on(torch):
                stack.enter_context(torch.autocast(device_type, enabled=False))
            if torch.backends.cuda.matmul.allow_tf32:
                from .device import exact_float32
                stack.enter_context(exact_float32())
            return fn(*args, **kwargs)

    def _unexpected(kwargs):
        """(what is wrong, the name meant) for a keyword fn does not take, named before
        anything missing: Python's bind says 'missing a required argument: params' for
        to_torch(c, param=p), never naming the misspelt 'param'; None if there is none."""
        import difflib
        kinds = {p.name: p.kind for p in signature.parameters.values()}
        takes = [k for k, kind in kinds.items() if kind not in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD)]
        for key in kwargs:
            if key not in takes:
                close = difflib.get_close_matches(key, takes, n=1)
                if close or inspect.Parameter.VAR_KEYWORD not in kinds.values():
                    return (f"got an unexpected keyword argument {key!r}",
                            close[0] if close else None)
        return None

    return checked


def _autocast_on(torch):
    """The device types (of those gradlab computes on) where torch.autocast is on here."""
    try:
        return [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
    except TypeError:                  # a torch whose is_autocast_enabled takes no device
        return ["cpu"] * torch.is_autocast_cpu_enabled() + ["cuda"] * \
            torch.is_autocast_enabled()


def _default_device_type():
    from .torch_state import default_device       # (torch is imported: `checked`)
    return default_device().type


def methods_checked(cls):
    """cls with `arguments_checked` on each of its public methods (a class decorator)."""
    for attr, value in list(vars(cls).items()):
        if not attr.startswith("_") and callable(value) and not isinstance(
                value, (type, staticmethod, classmethod)):
            setattr(cls, attr, arguments_checked(value))
    return cls
