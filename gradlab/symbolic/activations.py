"""The activation table: every elementwise function gradlab knows, in one place.

An entry gives a function's SymPy form (from which the chain rule asks SymPy for its
derivative), how the text and LaTeX printers write it, and its numpy and torch
implementations; the cell language (`gradlab.symbolic.language`), the printers
(`printing`, `lowering.codeprinter`) and both backends (`lowering.backends`) all read
this table. Adding an activation is one `activation(...)` call here, e.g.

    activation("softplus", _function("softplus", lambda x: sigmoid(x)),
               text="softplus({})", latex=r"\\operatorname{softplus}\\left({}\\right)",
               numpy=lambda np: lambda a: np.logaddexp(a, 0.0),
               torch=lambda torch: lambda a: torch.logaddexp(a, torch.zeros_like(a)),
               language="softplus")

Functions that only appear in derivatives (θ, H, sign) are entries without a language
name. Subgradients follow torch: relu'(0) = 0, |v|' = sign(v) with sign(0) = 0, and where
maximum(a, b) or minimum(a, b) ties (a = b) each argument gets half the gradient,
H(0) = 1/2, as torch.maximum and torch.minimum do.
"""

import keyword

import sympy as sp

TABLE = {}   # SymPy function name (lowered code calls xp.<name>) -> Activation
BUILTIN = set()   # the keys of gradlab's own entries (filled once they are registered)
# what every backend namespace (`lowering.backends`) holds besides the table's entries: a
# key among them (sp.sqrt's is "sqrt") broke every cell's lowered code, built-ins too
BACKEND_NAMES = ("name", "matmul", "mT", "eye", "zeros", "ones", "sqrt", "gram_power",
                 "asarray", "broadcast_to", "contiguous", "cat", "scaled_sum", "product",
                 "affine", "split_rows")


class Activation:
    """One elementwise function: SymPy form, printed forms, backend implementations."""

    def __init__(self, key, function, *, text, latex, numpy, torch, language=None):
        self.key, self.function, self.language = key, function, language
        self.text, self.latex = text, latex        # str.format templates, one {} per argument
        self.numpy, self.torch = numpy, torch      # module -> implementation

    @property
    def arity(self):
        return self.text.count("{}")


_generation = [0]     # bumped by each registration: backends built before it are stale


def generation():
    """How many activations were registered so far (`lowering.backends` rebuilds its
    namespaces when it grows: one registered after a cell was lowered is found)."""
    return _generation[0]


def activation(language, function, *, text, latex, numpy, torch, key=None):
    """Register an activation; `language` None for a function only derivatives use. A
    key (the SymPy function's name) or language name already taken by another function is
    refused (a hard sigmoid named `sigmoid` silently replaced the one every LSTM runs),
    unless it is the same registration again (a cell file imported twice) of an entry
    that is not gradlab's own."""
    from ..errors import GradlabError
    key = key or getattr(function, "__name__", None)
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise GradlabError(f"an activation needs a SymPy function (or key=) whose name is a "
                           f"Python identifier, not a keyword, got {key!r}")
    if key in BACKEND_NAMES:        # the lowered code calls xp.<key>: it would be theirs
        raise GradlabError(f"an activation's key {key!r} is a name the lowered code uses "
                           f"for its own ({', '.join(BACKEND_NAMES)}); give key=")
    taken = TABLE.get(key)
    again = taken is not None and key not in BUILTIN and (
        taken.text, taken.latex, taken.language) == (text, latex, language)
    if taken is not None and taken.function is not function and not again:
        shown = taken.text.format(*"uvw"[:taken.arity])
        raise GradlabError(f"an activation {key!r} is registered already ({shown}); give "
                           "yours a function of another name, or key=")
    clash = next((a for a in TABLE.values() if language and a.language == language
                  and a.key != key), None)
    if clash is not None:
        raise GradlabError(f"the language name {language!r} is taken by the activation "
                           f"{clash.key!r}; choose another")
    _refuse_unrunnable(key, function, text, latex, numpy, torch)
    TABLE[key] = Activation(key, function, text=text, latex=latex, numpy=numpy, torch=torch,
                            language=language)
    _generation[0] += 1
    return function


def _refuse_unrunnable(key, function, text, latex, numpy, torch):
    """One line now, where the lowered code of every cell would otherwise fail later: text
    and latex with one {} per argument (1 or 2), and numpy and torch functions of the
    module (`call(name)` for module.name; what they give is checked where a backend is
    built, `implementations`, so that registering imports neither)."""
    from ..errors import GradlabError
    arity = text.count("{}") if isinstance(text, str) else 0
    nargs = getattr(function, "nargs", None)
    if arity not in (1, 2) or not isinstance(latex, str) or latex.count("{}") != arity:
        raise GradlabError(f"activation {key!r}: text and latex must be str.format templates "
                           "with one {} per argument (1 or 2), e.g. text=\"cube({})\", got "
                           f"text={text!r}, latex={latex!r}")
    if isinstance(nargs, sp.FiniteSet) and arity not in nargs:
        raise GradlabError(f"activation {key!r}: text {text!r} takes {arity} argument(s), "
                           f"its function {sorted(nargs)}")
    import sys
    for backend, make in (("numpy", numpy), ("torch", torch)):
        if not callable(make):
            raise GradlabError(f"activation {key!r}: {backend}= must be a function of the "
                               f"{backend} module giving the implementation, e.g. "
                               f"call('tanh'), got {type(make).__name__}")
        if backend in sys.modules:        # imported already: try it now (else when built)
            _implementation(key, backend, make, sys.modules[backend])


def in_table(fn, arity):
    """Refuse a function the table does not hold: the backends could not run it (SymPy
    would differentiate sympy.atan, and the lowered code then fail)."""
    from ..errors import GradlabError
    if not any(a.function is fn and a.arity == arity for a in TABLE.values()):
        names = ", ".join(a.language for a in TABLE.values() if a.language and a.arity == arity)
        raise GradlabError(f"{getattr(fn, '__name__', repr(fn))} is not a "
                           f"{'one' if arity == 1 else 'two'}-argument function of the "
                           f"activation table ({names}); register it with "
                           "gradlab.symbolic.activations.activation(...) first")


def _numbers(args):
    """Are all `args` SymPy numbers a comparison can order (not nan)?"""
    return all(isinstance(a, sp.Number) and a is not sp.nan for a in args)


def _function(name, derivative, nargs=1, value_at_zero=None, at_number=None):
    """A SymPy function class whose derivative is `derivative(*args)` (a tuple of partial
    derivatives for several arguments), printed through the table; `at_number(*args)`
    its value at numbers (None: left as it is, as SymPy leaves tanh(1)), so that
    J.explicit(n) with numbers put in evaluates (θ(0.48) is 1)."""
    def fdiff(self, argindex=1):
        d = derivative(*self.args)
        return d[argindex - 1] if isinstance(d, tuple) else d

    def _latex(self, printer, exp=None):
        body = TABLE[name].latex.format(*(printer._print(a) for a in self.args))
        return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)

    def eval(cls, *args):
        if value_at_zero is not None and (args[0] == 0 or _numbers(args[:1])
                                          and args[0].is_zero):     # Float(0.0) too
            return value_at_zero
        return at_number(*args) if at_number is not None and _numbers(args) else None

    namespace = {"nargs": nargs, "fdiff": fdiff, "_latex": _latex, "eval": classmethod(eval)}
    return type(name, (sp.Function,), namespace)


def call(attr):
    """module -> module.attr: the implementation when the backend has it under that name."""
    return lambda module: getattr(module, attr)


def implementations(backend, module):
    """{key: implementation} of every activation for one backend ("numpy" or "torch"); a
    registration whose implementation cannot be made is named in one line."""
    return {key: _implementation(key, backend, getattr(a, backend), module)
            for key, a in TABLE.items()}


def _implementation(key, backend, make, module):
    """make(module), the implementation, or a one-line error naming the activation."""
    from ..errors import GradlabError
    try:
        found = make(module)
    except Exception as err:               # (a user's lambda: any error is its problem)
        raise GradlabError(f"activation {key!r} has no {backend} implementation: its "
                           f"{backend}= failed with {type(err).__name__}: {err}") from None
    if not callable(found):
        raise GradlabError(f"activation {key!r}: its {backend}= gave "
                           f"{type(found).__name__}, not a function")
    return found


def by_language_name():
    """{language name: Activation} of what a declaration can call."""
    return {a.language: a for a in TABLE.values() if a.language}


def _positive(x):
    return sp.S.One if x > 0 else sp.S.Zero


def _at_float(f):       # a transcendental value: only where SymPy would give one (floats)
    return lambda x: f(x).evalf() if x.is_Float else None


step = _function("step", lambda x: sp.S.Zero, at_number=_positive)  # θ(v), θ(0) = 0: relu'
heaviside = _function("heaviside", lambda x: sp.S.Zero, value_at_zero=sp.S.Half,
                      at_number=_positive)
sigmoid = _function("sigmoid", lambda x: sigmoid(x) * (1 - sigmoid(x)),
                    at_number=_at_float(lambda x: 1 / (1 + sp.exp(-x))))
relu = _function("relu", lambda x: step(x), at_number=lambda x: x if x > 0 else sp.S.Zero)
softplus = _function("softplus", lambda x: sigmoid(x),
                     at_number=_at_float(lambda x: sp.log(1 + sp.exp(x))))
# H(a - b) read from a and b as computed, not from their difference rearranged: at a tie
# (a == b as the step computes them) exactly 1/2, where a sum SymPy reorders could round
# to +-1e-17 and give one argument all of the gradient and the other none
above = _function("above", lambda a, b: (sp.S.Zero, sp.S.Zero), nargs=2)
above.eval = classmethod(lambda cls, a, b: sp.S.Half if a == b or _numbers((a, b)) and (
    a - b).is_zero else _positive(a - b) if _numbers((a, b)) else None)   # (0 and 0.0 tie)
maximum = _function("maximum", lambda a, b: (above(a, b), above(b, a)), nargs=2,
                    at_number=sp.Max)
minimum = _function("minimum", lambda a, b: (above(b, a), above(a, b)), nargs=2,
                    at_number=sp.Min)

def _np_sigmoid(np):
    """numpy's sigmoid, to rounding over the whole line and without overflow: 1 / (1 +
    e^-a) for a >= 0, e^a / (1 + e^a) below. (0.5 (1 + tanh(a / 2)) cancels for a < 0:
    off by 1.7e-4 at a = -30, exactly 0 below -37, where log(sigmoid(a)) became -inf.)"""
    def sigmoid(a):
        e = np.exp(-np.abs(a))
        return np.where(np.asarray(a) >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return sigmoid


def _torch_pair(name):
    """torch.maximum / torch.minimum, one argument of which may be a number (max(v, 0.5)):
    torch's own take two tensors."""
    def make(torch):
        f = getattr(torch, name)

        def pair(a, b):
            if not isinstance(a, torch.Tensor):
                a = torch.full((), a, dtype=b.dtype, device=b.device)
            if not isinstance(b, torch.Tensor):
                b = torch.full((), b, dtype=a.dtype, device=a.device)
            return f(a, b)
        return pair
    return make


def _torch_heaviside(torch):
    return lambda a: torch.heaviside(a, torch.full((), 0.5, dtype=a.dtype, device=a.device))


activation("tanh", sp.tanh, text="tanh({})", latex=r"\tanh\left({}\right)",
           numpy=call("tanh"), torch=call("tanh"))
activation("sigmoid", sigmoid, text="σ({})", latex=r"\sigma\left({}\right)",
           numpy=_np_sigmoid, torch=call("sigmoid"))
activation("relu", relu, text="relu({})", latex=r"\operatorname{{relu}}\left({}\right)",
           numpy=lambda np: lambda a: np.maximum(a, 0.0), torch=call("relu"))
activation("softplus", softplus, text="softplus({})",
           latex=r"\operatorname{{softplus}}\left({}\right)",
           numpy=lambda np: lambda a: np.logaddexp(a, 0.0),
           torch=lambda torch: lambda a: torch.logaddexp(a, torch.zeros_like(a)))
activation("exp", sp.exp, text="exp({})", latex=r"\exp\left({}\right)",
           numpy=call("exp"), torch=call("exp"))
activation("log", sp.log, text="log({})", latex=r"\log\left({}\right)",
           numpy=call("log"), torch=call("log"))
activation("abs", sp.Abs, text="|{}|", latex=r"\left|{}\right|",
           numpy=call("abs"), torch=call("abs"))
activation("maximum", maximum, text="max({}, {})", latex=r"\max\left({}, {}\right)",
           numpy=call("maximum"), torch=_torch_pair("maximum"))
activation("minimum", minimum, text="min({}, {})", latex=r"\min\left({}, {}\right)",
           numpy=call("minimum"), torch=_torch_pair("minimum"))
# only in derivatives
activation(None, step, text="θ({})", latex=r"\theta\left({}\right)",
           numpy=lambda np: lambda a: (a > 0).astype(a.dtype),
           torch=lambda torch: lambda a: (a > 0).to(a.dtype))
activation(None, heaviside, text="H({})", latex=r"H\left({}\right)",
           numpy=lambda np: lambda a: np.heaviside(a, 0.5), torch=_torch_heaviside)
activation(None, above, text="H({} - {})", latex=r"H\left({} - {}\right)",
           numpy=lambda np: lambda a, b: np.heaviside(np.subtract(a, b), 0.5),
           torch=lambda torch: lambda a, b: _torch_heaviside(torch)(
               torch.as_tensor(a) - torch.as_tensor(b)))
activation(None, sp.sign, text="sign({})", latex=r"\operatorname{{sign}}\left({}\right)",
           numpy=call("sign"), torch=call("sign"))
BUILTIN.update(TABLE)            # gradlab's own entries: never replaced
