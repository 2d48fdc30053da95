"""Checkpoints: a torch state dict and the architecture it belongs to, as gradlab cells.

    gradlab report --model model.pt --arch lstm:layers=2,hidden=256,inputs=64

An architecture is KIND:key=value,... with KIND one of rnn (tanh), rnn_relu, lstm, gru
(torch's nn.RNN, nn.RNN(nonlinearity="relu"), nn.LSTM, nn.GRU; a state dict does not
record an RNN's nonlinearity, so rnn's tanh is said wherever it is read) and the keys

    hidden   hidden_size (required)        layers         num_layers (default 1)
    inputs   input_size (required)         bias           1 / 0, true / false (default 1)
    proj     proj_size (lstm only, 1..hidden-1; default none)
    bidirectional   1 / 0, true / false (default 0)
    prefix   the text in front of every name of the module's tensors (prefix=rnn. for a
             model whose recurrent module is its attribute `rnn`): the file may then be a
             whole model's state dict; names not under the prefix are ignored

The file is read with torch.load(path, weights_only=True) and nothing else: a pickle that
is not plain tensors and containers (a whole module, any object) is refused, never run.
It must be a state dict (`torch.save(module.state_dict(), path)`, or a model's with
prefix=): every name under the prefix and every shape is checked against the
architecture (weight_ih_l0, ...), then loaded into the torch module, which `from_torch`
maps to its (stacked) cell. `model_entries` gives the trained model and the same
architecture at torch's default initialisation side by side: "lstm (trained)" and
"lstm (init)", or for a bidirectional one both directions of each, "lstm (trained,
forward)", "lstm (trained, backward)", ... . The backward direction is measured on the
report's input sequence read backwards (its own time order, what reverse=True does), and
with layers > 1 each direction reads the other direction's layer outputs on that
sequence as a fixed input (`bidirectional.direction_inputs`, carried as `Model.inputs`).
proj: h is zero padded to hidden entries (gradlab.interop), which leaves every norm of
the gradient flow unchanged.

A torch *cell's* state dict (nn.RNNCell, nn.LSTMCell, nn.GRUCell: weight_ih, weight_hh,
bias_ih, bias_hh, what `gradlab init --write-torch` writes) is read as layer 0 of the
one-layer, one-direction module of the same kind (`CELL_ARCH` names it per gradlab
cell): `gradlab report --model init.pt --arch lstm:hidden=N,inputs=M`.
"""

import dataclasses
import re

from .arch_guess import hint
from .errors import GradlabError, entries, not_whole
from .new_files import new_file, save_new  # noqa: F401 (gradlab.checkpoint's, as before)
from .ownership import file_digest
from .state_file import load_state_dict  # noqa: F401 (gradlab.checkpoint's, as before)

KINDS = {"rnn": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "lstm": ("LSTM", {}), "gru": ("GRU", {})}
# what a KIND takes for granted that the state dict cannot say: said where it is read
ASSUMED = {"rnn": "--arch rnn reads the checkpoint as nn.RNN with nonlinearity='tanh' (a "
                  "state dict does not record the nonlinearity); use --arch rnn_relu:... "
                  "for one built with nonlinearity='relu'"}
KEYS = ("layers", "hidden", "inputs", "bias", "bidirectional", "proj", "prefix")
FLAGS = ("bias", "bidirectional")
EXAMPLE = "lstm:layers=2,hidden=256,inputs=64"
PREFIX = re.compile(r"[\w.]+")
CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")     # a torch cell's names
CELL_ARCH = {"rnn_tanh": "rnn", "rnn_relu": "rnn_relu", "lstm": "lstm", "gru_torch": "gru"}
HOOKED = (("_mask", "pruned: prune.remove(module, name)"),
          ("_u", "with torch.nn.utils.spectral_norm: remove_spectral_norm(module, name)"),
          ("_g", "with torch.nn.utils.weight_norm: remove_weight_norm(module, name)"))


@dataclasses.dataclass(frozen=True)
class Arch:
    kind: str
    hidden: int
    inputs: int
    layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj: int = 0
    prefix: str = ""

    def __str__(self):
        return (f"{self.kind}:layers={self.layers},hidden={self.hidden},inputs={self.inputs}"
                + ("" if self.bias else ",bias=0")
                + (",bidirectional=1" if self.bidirectional else "")
                + (f",proj={self.proj}" if self.proj else "")
                + (f",prefix={self.prefix}" if self.prefix else ""))

    def module(self, *, seed=0, dtype="float64", device="cpu"):
        """The torch module of this architecture, at torch's default init from `seed`."""
        import torch

        from .initialize import as_dtype
        cls, options = KINDS[self.kind]
        options = {**options, **({"proj_size": self.proj} if self.proj else {})}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            module = getattr(torch.nn, cls)(self.inputs, self.hidden, num_layers=self.layers,
                                            bias=self.bias, bidirectional=self.bidirectional,
                                            **options)
        return module.to(dtype=as_dtype(dtype), device=device)


class Model(tuple):
    """A model to report: the pair (cell, params), and `inputs`, None or the function
    taking the report's input sequence xs (T, B, m) to the one the cell reads, in the
    cell's own time order (a direction of a bidirectional module). `module` and `reverse`:
    the torch module it came from and its direction, so that a measurement can take it
    whole (`gradient_flow(module, xs, reverse=)` knows which state entries are the zero
    padding of a projected LSTM); `padding`: those entries, (S,) bool, or None."""

    def __new__(cls, cell, params, inputs=None, module=None, reverse=False):
        self = super().__new__(cls, (cell, params))
        self.inputs, self.module, self.reverse = inputs, module, reverse
        from .flow.module import padded
        self.padding = None if module is None else padded(module)
        return self


def _integer(key, value, spec):
    if not_whole(value):
        raise GradlabError(f"--arch {spec!r}: {key}={not_whole(value)}")
    number = int(value)
    if number < 1:
        raise GradlabError(f"--arch {spec!r}: {key}={value!r} is not a positive integer")
    return number


def _value(key, value, spec):
    """One key's value, parsed and checked on its own."""
    if key in FLAGS:
        flag = value.strip().lower()
        if flag not in ("1", "0", "true", "false"):
            raise GradlabError(f"--arch {spec!r}: {key}={value!r} is not 1, 0, true or false")
        return flag in ("1", "true")
    if key == "prefix":
        if not PREFIX.fullmatch(value.strip()):
            raise GradlabError(f"--arch {spec!r}: prefix={value!r} is not the start of a "
                               "state-dict name (letters, digits, _ and ., e.g. prefix=rnn.)")
        return value.strip()
    number = _integer(key, value, spec)
    from .symbolic.stack import MAX_LAYERS
    if key == "layers" and number > MAX_LAYERS:
        raise GradlabError(f"--arch {spec!r}: layers={number} is more than gradlab stacks "
                           f"(at most {MAX_LAYERS})")
    return number


def parse_arch(spec):
    """An `Arch` from "KIND:key=value,..." (see the module docstring); one-line errors."""
    if not isinstance(spec, str) or ":" not in spec:
        raise GradlabError(f"--arch {spec!r} is not KIND:key=value,... (e.g. {EXAMPLE}; "
                           f"KIND one of {', '.join(KINDS)})")
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise GradlabError(f"--arch {spec!r}: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    values = {}
    try:
        items = entries(rest, "--arch")          # 'hidden=4,' refused, not dropped
    except GradlabError:
        raise GradlabError(f"--arch {spec!r} has an empty entry; separate key=value entries "
                           "with single commas") from None
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in KEYS:
            raise GradlabError(f"--arch {spec!r}: {item!r} is not key=value with key one of "
                               f"{', '.join(KEYS)}")
        if key in values:
            raise GradlabError(f"--arch {spec!r}: {key} is given twice")
        values[key] = _value(key, value, spec)
    missing = [k for k in ("hidden", "inputs") if k not in values]
    if missing:
        raise GradlabError(f"--arch {spec!r} lacks {' and '.join(missing)} (e.g. {EXAMPLE})")
    proj = values.get("proj")
    if proj is not None and kind != "lstm":
        raise GradlabError(f"--arch {spec!r}: proj={proj} (proj_size) applies to lstm only, "
                           f"not {kind}; valid keys for {kind}: "
                           f"{', '.join(k for k in KEYS if k != 'proj')}")
    if proj is not None and proj >= values["hidden"]:
        hidden = values["hidden"]
        valid = (f"valid: 1..{hidden - 1}" if hidden > 1 else
                 "hidden=1 leaves none: hidden must be at least 2 for a projection")
        raise GradlabError(f"--arch {spec!r}: proj={proj} must be below hidden={hidden} "
                           f"(torch's proj_size < hidden_size); {valid}")
    return Arch(kind=kind, **values)


def select(state, arch):
    """The tensors of `state` under `arch.prefix`, the prefix taken off (all of `state`
    without one); one line when nothing is under it."""
    prefix = arch.prefix
    if not prefix:
        return state
    under = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not under:
        names = list(state)
        if any(k.startswith(("weight_ih", "weight_hh")) for k in names):
            raise GradlabError(f"no checkpoint key starts with prefix={prefix!r}: the file's "
                               f"keys are a module's own ({', '.join(map(repr, names[:2]))}"
                               f"{', ...' if len(names) > 2 else ''}); drop prefix=")
        raise GradlabError(f"no checkpoint key starts with prefix={prefix!r}; the file's "
                           f"keys begin {', '.join(map(repr, names[:4]))}"
                           + (f" ... ({len(names)} in all)" if len(names) > 4 else "")
                           + f" (valid: a prefix of one of them, e.g. {_guess(names)})")
    if all(k.startswith(".") for k in under):
        raise GradlabError(f"prefix={prefix!r} leaves names starting with '.' "
                           f"({next(iter(under))!r}): did you mean prefix={prefix}. ?")
    return under


def _guess(names):
    """A prefix the file suggests: the text before a name's weight_ih_l0, if any."""
    found = next((k[:-len("weight_ih_l0")] for k in names if k.endswith("weight_ih_l0")), None)
    return f"prefix={found}" if found else "prefix=rnn."


def _wrapper(state, where, shape):
    """The prefix a module saved inside a wrapper has ('module.', 'enc.rnn.'), or None:
    one under `where` before one outside it (--arch's prefix=enc. of a file holding
    rnn.* and enc.rnn.* was told to try prefix=rnn., outside enc.), and one whose
    weight_ih_l0 has `shape` before one of another architecture."""
    found = [k for k in state if k.endswith("weight_ih_l0") and k != where + "weight_ih_l0"]
    found.sort(key=lambda k: (not k.startswith(where),
                              tuple(getattr(state[k], "shape", ())) != shape))
    return found[0][:-len("weight_ih_l0")] if found else None


def _one_cell(arch):
    return arch.layers == 1 and not arch.bidirectional and not arch.proj


def _as_layer(state, arch):
    """A torch cell's state dict (names CELL_KEYS only) as layer 0 of a one-layer,
    one-direction `arch` (weight_ih -> weight_ih_l0, ...); any other unchanged."""
    if state and _one_cell(arch) and all(k in CELL_KEYS for k in state):
        return {f"{k}_l0": v for k, v in state.items()}
    return state


def check_state_dict(state, arch):
    """Refuse, in one line, a state dict whose names (under the prefix) or shapes are not
    `arch`'s; the tensors to load, the prefix taken off (a torch cell's names read as
    layer 0's: the module docstring)."""
    where = arch.prefix
    expected = {k: tuple(v.shape) for k, v in arch.module().state_dict().items()}
    guess = _wrapper(state, where, expected["weight_ih_l0"])
    state = _as_layer(select(state, arch), arch)
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        odd = unexpected[0]
        base = re.sub(r"_(orig|mask|u|v|g)$", "", odd)        # what a forward hook saved
        hooked = next((how for end, how in HOOKED if base != odd and base + end in state), None)
        cell = (" (a torch cell's state dict is read only as a one-layer, one-direction "
                "module without proj)" if odd in CELL_KEYS else
                f" (saved {hooked} before state_dict())" if hooked else
                " (saved parametrized: parametrize.remove_parametrizations(module, name) "
                "before state_dict())" if odd.startswith("parametrizations.") else
                f" (saved from a wrapper? try prefix={guess})" if guess else "")
        raise GradlabError(f"checkpoint key {where + unexpected[0]!r} is not in {arch} "
                           f"(expected keys{' after the prefix' if where else ''}: "
                           f"{', '.join(expected)}){cell}{hint(state, arch)}")
    missing = [k for k in expected if k not in state]
    if missing:
        raise GradlabError(f"checkpoint lacks {where + missing[0]!r} {expected[missing[0]]}, "
                           f"which {arch} has{hint(state, arch)}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise GradlabError(f"checkpoint {where + key!r} has shape "
                               f"{tuple(state[key].shape)}, expected {shape} for {arch}"
                               f"{hint(state, arch)}")
        if not state[key].is_floating_point():
            raise GradlabError(f"checkpoint {where + key!r} holds {state[key].dtype}, not "
                               "floats")
    return state


def load_model(path, arch, *, dtype="float64", device="cpu"):
    """The torch module of `arch` with the checkpoint's weights, checked."""
    import torch

    state = check_state_dict(load_state_dict(path, arch.prefix), arch)
    module = arch.module(dtype=dtype, device=device)
    with torch.no_grad():
        module.load_state_dict(state)
    for name, value in module.state_dict().items():   # finite in the file: in --dtype too?
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            flat = state[name].flatten()
            big = float(flat[flat.abs().argmax()])
            raise GradlabError(
                f"{str(path)!r}: {arch.prefix + name!r} holds {big:.3g}, beyond "
                f"{str(value.dtype).removeprefix('torch.')}'s range "
                f"({torch.finfo(value.dtype).max:.3g}); use --dtype float64")
    return module


def _entries(kind, label, module):
    """{"KIND (label)": Model}, or one per direction for a bidirectional module, each
    direction reading its own sequence (`Model.inputs`; the module docstring)."""
    from .bidirectional import direction_inputs
    from .interop import DIRECTIONS, from_torch
    if not module.bidirectional:
        return {f"{kind} ({label})": Model(*from_torch(module), module=module)}

    def reader(direction):
        def inputs(xs):
            wide = direction_inputs(module, xs, direction)
            return wide.flip(0) if direction == "backward" else wide
        return inputs
    return {f"{kind} ({label}, {d})": Model(*from_torch(module, direction=d), inputs=reader(d),
                                            module=module, reverse=d == "backward")
            for d in DIRECTIONS}


def model_entries(path, arch, *, seed=0, dtype="float64", device="cpu"):
    """{"KIND (trained)": Model, "KIND (init)": Model}: the checkpoint and the same
    architecture at torch's default initialisation (from `seed`); for a bidirectional
    one "KIND (trained, forward)", "KIND (trained, backward)", "KIND (init, forward)",
    "KIND (init, backward)". A Model is a (cell, params) pair (see `Model`)."""
    trained = load_model(path, arch, dtype=dtype, device=device)
    fresh = arch.module(seed=seed, dtype=dtype, device=device)
    return {**_entries(arch.kind, "trained", trained), **_entries(arch.kind, "init", fresh)}


def report_models(path, spec, options, notice=None):
    """`gradlab report --model PATH --arch SPEC`: (models for the report, its header note),
    or (None, None) without --model; sets options' hidden and inputs from the
    architecture. The two options go together. What the architecture assumes (`ASSUMED`:
    rnn is tanh) goes to `notice` and into the note."""
    if (path is None) != (spec is None):
        raise GradlabError(f"--model and --arch go together: --model PATH --arch "
                           f"KIND:key=value,... (e.g. {EXAMPLE})")
    if path is None:
        return None, None
    arch = parse_arch(spec)
    options.update(hidden=arch.hidden, inputs=arch.inputs)
    before = file_digest(path)          # which checkpoint, whatever path names it: the bytes
    models = model_entries(path, arch, seed=options["seed"], dtype=options["dtype"],
                           device=options["device"])          # measured (else refused)
    if file_digest(path) != before:
        raise GradlabError(f"checkpoint {str(path)!r} changed while it was read; run again")
    both = (", each direction on its own (the backward one reading the inputs backwards)"
            if arch.bidirectional else "")
    assumed = ASSUMED.get(arch.kind)
    if assumed and notice is not None:
        notice(assumed)
    return models, (f"{path} (sha256 {before[:16]}..., {arch}), against the same "
                    f"architecture at torch's default initialisation (seed {options['seed']})"
                    f"{both}" + (f"; {assumed}" if assumed else ""))
