"""Checkpoints: a torch state dict and the architecture it belongs to, as gradlab cells.

    gradlab report --model model.pt --arch lstm:layers=2,hidden=256,inputs=64

An architecture is KIND:key=value,... with KIND one of rnn (tanh), rnn_relu, lstm, gru
(torch's nn.RNN, nn.RNN(nonlinearity="relu"), nn.LSTM, nn.GRU) and the keys

    hidden   hidden_size (required)        layers   num_layers (default 1)
    inputs   input_size (required)         bias     1 / 0, true / false (default 1)

The file is read with torch.load(path, weights_only=True) and nothing else: a pickle that
is not plain tensors and containers (a whole module, any object) is refused, never run.
It must be the module's state dict (`torch.save(module.state_dict(), path)`): every name
and shape is checked against the architecture (weight_ih_l0, ...), then loaded into the
torch module, which `from_torch` maps to its (stacked) cell. `model_entries` gives the
trained model and the same architecture at torch's default initialisation side by side.
"""

import dataclasses
import pathlib
import re

from .errors import GradlabError

KINDS = {"rnn": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "lstm": ("LSTM", {}), "gru": ("GRU", {})}
KEYS = ("layers", "hidden", "inputs", "bias")
EXAMPLE = "lstm:layers=2,hidden=256,inputs=64"


@dataclasses.dataclass(frozen=True)
class Arch:
    kind: str
    hidden: int
    inputs: int
    layers: int = 1
    bias: bool = True

    def __str__(self):
        return (f"{self.kind}:layers={self.layers},hidden={self.hidden},inputs={self.inputs}"
                + ("" if self.bias else ",bias=0"))

    def module(self, *, seed=0, dtype="float64", device="cpu"):
        """The torch module of this architecture, at torch's default init from `seed`."""
        import torch

        from .initialize import as_dtype
        cls, options = KINDS[self.kind]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            module = getattr(torch.nn, cls)(self.inputs, self.hidden, num_layers=self.layers,
                                            bias=self.bias, **options)
        return module.to(dtype=as_dtype(dtype), device=device)


def _integer(key, value, spec):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or str(number) != value.strip():
        raise GradlabError(f"--arch {spec!r}: {key}={value!r} is not a positive integer")
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
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in KEYS:
            raise GradlabError(f"--arch {spec!r}: {item!r} is not key=value with key one of "
                               f"{', '.join(KEYS)}")
        if key in values:
            raise GradlabError(f"--arch {spec!r}: {key} is given twice")
        if key == "bias":
            flag = value.strip().lower()
            if flag not in ("1", "0", "true", "false"):
                raise GradlabError(f"--arch {spec!r}: bias={value!r} is not 1, 0, true or false")
            values[key] = flag in ("1", "true")
        else:
            values[key] = _integer(key, value, spec)
    missing = [k for k in ("hidden", "inputs") if k not in values]
    if missing:
        raise GradlabError(f"--arch {spec!r} lacks {' and '.join(missing)} (e.g. {EXAMPLE})")
    return Arch(kind=kind, **values)


def load_state_dict(path):
    """The state dict in `path`, read with torch.load(weights_only=True) only."""
    import torch

    path = pathlib.Path(path)
    if not path.is_file():
        raise GradlabError(f"no such checkpoint file {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:            # weights_only refuses whatever is not plain data
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        why = (f"it pickles {found.group(1)}" if found else
               f"{type(err).__name__}: {' '.join(str(err).split())[:120]}")
        raise GradlabError(f"{str(path)!r} is not a plain state dict: torch.load(weights_only="
                           f"True) refused it ({why}); save module.state_dict(), not the "
                           "module or another object") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise GradlabError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict "
                           "of named tensors; save module.state_dict()")
    return state


def check_state_dict(state, arch):
    """Refuse, in one line, a state dict whose names or shapes are not `arch`'s."""
    expected = {k: tuple(v.shape) for k, v in arch.module().state_dict().items()}
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise GradlabError(f"checkpoint key {unexpected[0]!r} is not in {arch} (expected keys: "
                           f"{', '.join(expected)})")
    missing = [k for k in expected if k not in state]
    if missing:
        raise GradlabError(f"checkpoint lacks {missing[0]!r} {expected[missing[0]]}, which "
                           f"{arch} has")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise GradlabError(f"checkpoint {key!r} has shape {tuple(state[key].shape)}, "
                               f"expected {shape} for {arch}")
        if not state[key].is_floating_point():
            raise GradlabError(f"checkpoint {key!r} holds {state[key].dtype}, not floats")


def load_model(path, arch, *, dtype="float64", device="cpu"):
    """The torch module of `arch` with the checkpoint's weights, checked."""
    import torch

    state = load_state_dict(path)
    check_state_dict(state, arch)
    module = arch.module(dtype=dtype, device=device)
    with torch.no_grad():
        module.load_state_dict(state)
    return module


def model_entries(path, arch, *, seed=0, dtype="float64", device="cpu"):
    """{"KIND (trained)": (cell, params), "KIND (init)": (cell, params)}: the checkpoint
    and the same architecture at torch's default initialisation (from `seed`)."""
    from .interop import from_torch
    trained = load_model(path, arch, dtype=dtype, device=device)
    fresh = arch.module(seed=seed, dtype=dtype, device=device)
    return {f"{arch.kind} (trained)": from_torch(trained),
            f"{arch.kind} (init)": from_torch(fresh)}


def report_models(path, spec, options):
    """`gradlab report --model PATH --arch SPEC`: (models for the report, its header note),
    or (None, None) without --model; sets options' hidden and inputs from the
    architecture. The two options go together."""
    if (path is None) != (spec is None):
        raise GradlabError(f"--model and --arch go together: --model PATH --arch "
                           f"KIND:key=value,... (e.g. {EXAMPLE})")
    if path is None:
        return None, None
    arch = parse_arch(spec)
    options.update(hidden=arch.hidden, inputs=arch.inputs)
    models = model_entries(path, arch, seed=options["seed"], dtype=options["dtype"],
                           device=options["device"])
    return models, (f"{path} ({arch}), against the same architecture at torch's default "
                    f"initialisation (seed {options['seed']})")
