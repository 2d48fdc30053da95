"""Input sequences xs (T, B, m) by name, reproducible from a seed."""

import numpy as np
import torch

from ..budget import ensure_fits
from ..device import resolve
from ..errors import GradlabError, check_seed, integer, real
from ..initialize import as_dtype
from .arrays import as_real, converted


def _zeros(T, B, m, gen, dtype):
    return torch.zeros(T, B, m, dtype=dtype, device="cpu")


def _gaussian(T, B, m, gen, dtype):
    return torch.randn(T, B, m, generator=gen, dtype=dtype, device="cpu")


def _constant(T, B, m, gen, dtype):
    return torch.randn(1, B, m, generator=gen, dtype=dtype, device="cpu").expand(T, B, m).clone()


INPUTS = {"zeros": _zeros, "gaussian": _gaussian, "constant": _constant}


def make_inputs(kind, T, B, m, *, scale=1.0, seed=0, dtype=torch.float64, device="cpu"):
    """Inputs xs (T, B, m): "zeros"; "gaussian", i.i.d. N(0, scale^2) per entry (so
    R = ||x||^2/m = scale^2, derivations/theory.md §2); "constant", one N(0, scale^2) vector per
    sequence held for all T steps (exact results, derivations/theory.md §3); or a tensor (T, B, m),
    returned on `device` in `dtype` (then T, B, m are checked against it)."""
    dtype, device = as_dtype(dtype), resolve(device)
    T, B, m = (integer(value, what, low=1) for value, what in ((T, "T"), (B, "B"), (m, "m")))
    if isinstance(kind, (torch.Tensor, np.ndarray)):     # real numbers, kept finite by the
        xs = as_real(kind, "inputs")                     # cast (as gradient_flow's xs)
        if tuple(xs.shape) != (T, B, m):
            raise GradlabError(f"inputs have shape {tuple(xs.shape)}, expected (T, B, m) = "
                               f"({T}, {B}, {m})")
        return converted(xs, "inputs", dtype, device, whose="the dtype asked for")
    if not isinstance(kind, str) or kind not in INPUTS:
        raise GradlabError(f"unknown inputs {kind!r}; valid: {', '.join(INPUTS)} or a "
                           "tensor (T, B, m)")
    ensure_fits(2 * 8 * T * B * m, what=f"inputs of T = {T} steps, batch {B}, width {m}",
                device=device, advice="T, B or m")        # drawn in float64, then cast
    gen = torch.Generator().manual_seed(check_seed(seed))
    xs = INPUTS[kind](T, B, m, gen, torch.float64) * real(scale, "scale", finite=False)
    return xs.to(dtype=dtype, device=device)
