"""Random parameters for a cell, by scheme, reproducible from a seed.

Roles come from each parameter's declared shape: n x n matrices are recurrent (W_*, V,
R_*), n x m matrices read the input (U_*), n-vectors named b* are biases and other
n-vectors are diagonal weights (the peepholes p_*). A scalar (declared "1") follows the
same rule: one named b* is a bias (zero at the default bias_scale 0), any other is drawn as
a diagonal weight, N(0, weight_scale^2).

    gaussian    recurrent ~ N(0, weight_scale^2 / n), input ~ N(0, input_scale^2 / m),
                bias ~ N(0, bias_scale^2), diagonal ~ N(0, weight_scale^2)
                (a diagonal weight times a unit-variance state then has the variance a
                 row of W gives: the mean-field scaling of derivations/theory.md §2)
    orthogonal  as gaussian, but each recurrent matrix is weight_scale times a uniformly
                random orthogonal matrix
    torch       PyTorch's default: every parameter ~ U(-1/sqrt(n), 1/sqrt(n)); the bias of
                a cell torch ships with two (rnn_tanh, rnn_relu, lstm: b = bias_ih +
                bias_hh) is the sum of two such draws, as a fresh torch module's is

`gate_bias` is then added to the bias that sets the memory gate (derivations/conventions.md),
every layer's in a stack (`cell.gate_biases`). A cell with no such bias (the vanilla RNNs,
lstm_nfg) takes it and changes nothing, so that one value can go to every cell compared.
"""

import math
import numbers

import numpy as np
import torch

from .budget import ensure_params_fit
from .device import resolve
from .errors import GradlabError, check_seed, real
from .registry import builtin

SCHEMES = ("gaussian", "orthogonal", "torch")
# the catalogue cells whose one bias is torch's bias_ih + bias_hh (gru_torch keeps the
# two apart; a user's cell of the same name is not torch's: `registry.builtin`)
TWO_BIASES = ("rnn_tanh", "rnn_relu", "lstm")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_dtype(dtype):
    """torch.float32 / torch.float64 from a dtype, numpy's (np.float32, np.dtype("float64"))
    or its name; anything else is refused."""
    if type(dtype).__module__.split(".")[0] == "numpy" or (
            isinstance(dtype, type) and issubclass(dtype, np.floating)):
        dtype = np.dtype(dtype).name
    found = DTYPES.get(dtype) if isinstance(dtype, str) else (
        dtype if dtype in DTYPES.values() else None)
    if found is None:
        raise GradlabError(f"unsupported dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return found


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise GradlabError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _role(name, shape):
    rows, cols = shape
    if cols == 1:
        return "bias" if name.startswith("b") else "diagonal"
    return "input" if str(cols) == "m" else "recurrent"


SCALE_DEFAULTS = {"weight_scale": 1.0, "bias_scale": 0.0, "input_scale": 1.0}


def refuse_unused_scales(init, flags=None, **scales):
    """init 'torch' draws PyTorch's default uniform init, which takes no scale: a scale
    given other than its default would silently change nothing, and is refused; named
    as `flags` says (the command line's --weight-scale) where given."""
    scaled = [f"{k}={v:g}" if flags is None else f"{flags[k]} {v:g}"
              for k, v in scales.items() if init == "torch" and v != SCALE_DEFAULTS[k]]
    init, other = (("init='torch'", "init='gaussian' or 'orthogonal'") if flags is None
                   else ("--init torch", "--init gaussian or orthogonal"))
    if scaled:
        raise GradlabError(f"{init} draws PyTorch's default uniform init, which takes "
                           f"no scale: {scaled[0]} would change nothing; leave it out, or "
                           f"use {other}")


class WeightsOverflow(GradlabError):
    """init_params's weights do not fit the dtype (the options, not the sizes, are wrong)."""


def init_params(cell, hidden, inputs, *, init="gaussian", weight_scale=1.0, bias_scale=0.0,
                input_scale=1.0, gate_bias=0.0, seed=0, dtype=torch.float64, device="cpu"):
    """dict of parameter name -> tensor for `cell` at hidden size n and input size m.
    hidden, inputs: positive integers (numpy's too); the scales real numbers >= 0 and
    gate_bias a real number, all finite (nan or inf would give nan or inf weights
    silently; a state driven to overflow takes a large finite scale); seed an integer in
    [0, 2**63); device one torch sees here."""
    if isinstance(cell, str):                   # a registered name, as everywhere else
        from .registry import cell as lookup
        cell = lookup(cell)
    n, m = _positive(hidden, "hidden"), _positive(inputs, "inputs")
    if init not in SCHEMES:
        raise GradlabError(f"unknown init {init!r}; valid: {', '.join(SCHEMES)}")
    dtype = as_dtype(dtype)
    # a sign never flips a scale; nan or inf is refused, not turned into weights
    weight_scale, bias_scale, input_scale = (real(v, what, low=0) for v, what in (
        (weight_scale, "weight_scale"), (bias_scale, "bias_scale"),
        (input_scale, "input_scale")))
    gate_bias = real(gate_bias, "gate_bias")
    refuse_unused_scales(init, weight_scale=weight_scale, bias_scale=bias_scale,
                         input_scale=input_scale)
    device = resolve(device)
    gen = torch.Generator().manual_seed(check_seed(seed))
    ensure_params_fit(cell, n, m, device=device)

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, device="cpu") * std

    params = {}
    for name, shape in cell.param_shapes.items():
        role = _role(name, shape)
        if shape[0] == 1:                                  # a scalar parameter: one number
            size = (1,)
        else:
            size = (n,) if shape[1] == 1 else (n, m if role == "input" else n)
        if init == "torch":
            bound = 1 / math.sqrt(n)
            draws = 2 if role == "bias" and cell.name in TWO_BIASES and builtin(cell) else 1
            value = sum((torch.rand(*size, generator=gen, dtype=torch.float64,
                                    device="cpu") * 2 - 1) * bound for _ in range(draws))
        elif role == "recurrent" and init == "orthogonal":
            q, r = torch.linalg.qr(normal(n, n, std=1.0))
            value = weight_scale * q * torch.sign(torch.diagonal(r))   # Haar-uniform
        elif role == "recurrent":
            value = normal(*size, std=weight_scale / math.sqrt(n))
        elif role == "input":
            value = normal(*size, std=input_scale / math.sqrt(m))
        elif role == "bias":
            value = normal(*size, std=bias_scale)
        else:
            value = normal(*size, std=weight_scale)
        params[name] = value
    for signed in cell.gate_biases if gate_bias else ():
        sign, name = (-1.0, signed[1:]) if signed.startswith("-") else (1.0, signed)
        params[name] = params[name] + sign * gate_bias
    out = {k: v.to(dtype=dtype, device=device) for k, v in params.items()}
    bad = next((k for k, v in out.items() if not bool(torch.isfinite(v).all())), None)
    if bad is not None:                  # 1e300 in float32: inf, silently
        given = ", ".join(f"{k}={v:g}" for k, v in (
            ("weight_scale", weight_scale), ("bias_scale", bias_scale),
            ("input_scale", input_scale), ("gate_bias", gate_bias)))
        raise WeightsOverflow(f"init_params: {bad} overflows {str(dtype).removeprefix('torch.')} "
                           f"(beyond {torch.finfo(dtype).max:.3g}) at {given}; use smaller "
                           "values" + (", or float64" if dtype != torch.float64 else ""))
    return out


def ensure_drawable(cells, hidden, inputs, *, dtype, flags, **values):
    """Refuse, before any work, options whose weights overflow dtype for one of `cells`
    (a gate bias of 1e308 in float32 was refused only after the cells before it had been
    measured). values: init_params options, each a number or the numbers a sweep takes
    (drawn at the smallest and largest); flags: the option each is given as, named in the
    one line."""
    import itertools

    from .registry import cell as lookup
    extremes = {k: sorted({min(v), max(v)}) if isinstance(v, (tuple, list)) else [v]
                for k, v in values.items()}                 # (seed: drawn as the run is)

    def overflows(cell, drawn):
        try:
            init_params(cell, hidden, inputs, dtype=dtype, **drawn)
        except WeightsOverflow:
            return True
        return False
    for name in cells:
        cell = lookup(name)
        for combo in itertools.product(*extremes.values()):
            drawn = dict(zip(extremes, combo))
            if not overflows(cell, drawn):
                continue
            text = str(as_dtype(dtype)).removeprefix("torch.")
            named = [k for k in drawn if k in flags]       # the one(s) that overflow alone
            alone = [k for k in named if overflows(cell, {
                key: v for key, v in drawn.items() if key == k or key not in flags})]
            given = " and ".join(f"{flags[k]} {drawn[k]:g}" for k in alone or named)
            raise GradlabError(f"{given or 'these options'}: the weights of cell "
                               f"'{cell.name}' overflow {text} (beyond "
                               f"{torch.finfo(as_dtype(dtype)).max:.3g}); use smaller values"
                               + (", or --dtype float64" if text != "float64" else ""))
