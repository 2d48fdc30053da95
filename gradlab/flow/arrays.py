"""Arrays a user hands gradlab (xs, state0, a loss's weights) as tensors: real numbers,
dense, on the params' dtype and device, with nothing lost on the way (a value beyond the
dtype's range refused, not turned into inf)."""

import numpy as np
import torch

from ..errors import GradlabError
from ..lowering.backends import transformed


def as_real(value, what, dtype=None, device=None):
    """`value` (a tensor, numpy array or nested list of real numbers) as a tensor, on
    `dtype` and `device` where given; a string, None, complex, bool or meta tensor refused."""
    given = type(value).__name__
    if isinstance(value, torch.nn.utils.rnn.PackedSequence):
        raise GradlabError(f"{what} is a PackedSequence; give one dense (T, B, m) tensor "
                           "(torch.nn.utils.rnn.pad_packed_sequence pads it; every sequence "
                           "is then measured over all T steps)")
    if getattr(value, "is_nested", False):
        raise GradlabError(f"{what} is a nested tensor; give one dense tensor (sequences "
                           "padded to one length)")
    if np.ma.is_masked(value):                # np.asarray would drop the mask: refuse it
        raise GradlabError(f"{what} is a masked array with masked entries; give plain "
                           "numbers (e.g. .filled(0))")
    if transformed(value):
        raise GradlabError(TRACED.format(what))
    try:     # lists through numpy: Python floats stay float64 (torch reads them as float32)
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            value = np.asarray(value)
            if value.dtype.kind not in "biufc":
                raise TypeError(f"entries of numpy dtype {value.dtype}")
        elif isinstance(value, np.ndarray) and (not value.flags.writeable
                                                or any(s < 0 for s in value.strides)):
            value = np.array(value)      # torch takes neither (gradlab copies xs anyway)
        if isinstance(value, np.ndarray) and not value.dtype.isnative:   # ('>f8' data)
            value = value.astype(value.dtype.newbyteorder("="))
        # on the device it is on (numpy: the CPU), whatever torch.set_default_device says
        t = torch.as_tensor(value, device=value.device if isinstance(value, torch.Tensor)
                            else "cpu")
    except (TypeError, ValueError, RuntimeError) as err:
        raise GradlabError(f"{what} must be an array of real numbers, got "
                           f"{given}: {' '.join(str(err).split())}") from None
    if t.is_complex() or not (t.is_floating_point() or t.dtype in INTEGERS):
        raise GradlabError(f"{what} must hold real numbers, got dtype {t.dtype}")
    if t.device.type == "meta":
        raise GradlabError(f"{what} is on the meta device, which holds no numbers")
    if t.layout != torch.strided:
        raise GradlabError(f"{what} is a {str(t.layout).removeprefix('torch.')} tensor; "
                           "give a dense one (.to_dense())")
    return t if dtype is None else converted(t, what, dtype, device)


INTEGERS = tuple(getattr(torch, t) for t in ("uint8", "uint16", "uint32", "uint64", "int8",
                                             "int16", "int32", "int64")
                 if hasattr(torch, t))        # (uint16-64: torch >= 2.3)
TRACED = ("{} is traced by a torch.func transform (grad, vmap, jacrev, ...): gradlab runs "
          "the cell and the walk without autograd, so nothing it measures can be "
          "differentiated or batched by one; call it on plain tensors (the Jacobians "
          "themselves: cell.jacobian_fn)")


def as_inputs(xs, dtype=None, device=None):
    """xs as a (T, B, m) tensor of real numbers with T, B >= 1 (on dtype/device if given)."""
    xs = as_real(xs, "xs")
    if xs.ndim != 3 or xs.shape[0] < 1 or xs.shape[1] < 1:
        raise GradlabError(f"xs has shape {tuple(xs.shape)}, expected (T, B, m) with "
                           "T >= 1 steps and B >= 1 sequences")
    return xs if dtype is None else converted(xs, "xs", dtype, device)


def converted(t, what, dtype, device=None, whose="the params' dtype"):
    """t on dtype and device; a finite value that the cast makes infinite (float64 1e39 to
    float32) refused in one line, naming it (and `whose` dtype it is): the run would
    otherwise report an overflow of a state that was never there."""
    out = t.to(dtype=dtype, device=device)
    narrowed = out.is_floating_point() and t.dtype != out.dtype and (
        not t.is_floating_point() or torch.finfo(t.dtype).max > torch.finfo(out.dtype).max)
    if narrowed and bool(torch.isinf(out).any()):              # (rare: read t again)
        given = t.to(device=out.device)
        lost = torch.isinf(out) & ~torch.isinf(given)
        if bool(lost.any()):
            big = float(given[lost].abs().max())
            raise GradlabError(f"{what} holds {big:.3g}, beyond the range of "
                               f"{str(out.dtype).removeprefix('torch.')} ({whose}: at "
                               f"most {torch.finfo(out.dtype).max:.3g})")
    return out


def depth(value):
    """How deep a nested list of plain numbers goes (0 for a number), or -1 if it is
    anything else (holds arrays, tensors, strings, or is empty)."""
    if isinstance(value, (list, tuple)):
        inner = {depth(v) for v in value}
        return 1 + inner.pop() if len(inner) == 1 and -1 not in inner and value else -1
    return 0 if isinstance(value, (int, float)) and not isinstance(value, bool) else -1
