"""Calling a function under test (the user's Jacobian or Lyapunov routine) and reading
what it returns, so that nothing it does can pass for an answer: an exception or
sys.exit or os._exit is one GradlabError, and only an array of real numbers is a result.
A Jacobian may come batched or one sample at a time (`batched_jacobian`)."""

import os
import traceback

import numpy as np
import torch

from ..errors import GradlabError
from ..exits import ExitCalled, guarded
from ..signals import noting_ctrl_c
from ..torch_state import kept


class Exited(GradlabError):
    """The function under test called sys.exit or os._exit, or raised KeyboardInterrupt
    itself: no answer, and no second try."""


def foreign(run, who):
    """run(), code gradlab did not write (the function under test, or the object it
    returned read as an array by its own __array__): what it prints goes
    to stderr, and what it sets of torch's process-wide state (default device or dtype,
    grad mode, seed) is put back after it (`torch_state.kept`). sys.exit, os._exit and a
    KeyboardInterrupt it raises itself (no Ctrl-C arrived) are one Exited naming `who`; a
    Ctrl-C is the user's, and goes on."""
    noted = [None]                    # (a Ctrl-C before the block began is the user's)
    try:
        with guarded(), kept(), noting_ctrl_c() as noted:   # our stdout stays ours: it
            return run()                                    # starts "agrees:"
    except KeyboardInterrupt as err:
        if noted:                                     # the user's Ctrl-C, not the code's
            raise
        said = " ".join(str(err).split())
        raise Exited(f"{who} raised KeyboardInterrupt{where_raised(err)}"
                     f"{': ' + said if said else ''} (no Ctrl-C was pressed)") from None
    except (SystemExit, ExitCalled) as err:
        how = "sys.exit" if isinstance(err, SystemExit) else "os._exit"
        raise Exited(f"{who} called {how}({err.code!r})") from None


def call_user(fn, *args):
    """fn(*args) for the function under test, run as `foreign`: whatever it raises, and
    sys.exit or os._exit, is one GradlabError (a check that exits 0 must not read as
    "agrees")."""
    try:
        return foreign(lambda: fn(*args), "the function under test")
    except (Exited, KeyboardInterrupt):
        raise
    except BaseException as err:                      # noqa: BLE001  (the user's code)
        raise GradlabError(f"the function under test raised {type(err).__name__}"
                           f"{where_raised(err)}: {' '.join(str(err).split())}") from None


def where_raised(err):
    """" at file:line in name" of the innermost frame of the user's own code that `err`
    passed through (not gradlab's, torch's or Python's own: where a torch call in the
    user's function raised, the line that called it), or "" where there is none."""
    import site
    import sysconfig
    try:
        here = os.getcwd()
    except OSError:                    # (the working folder was removed)
        here = None
    ours = [os.path.dirname(os.path.dirname(__file__))] + [
        sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")] + [
        p for p in (*getattr(site, "getsitepackages", list)(), site.USER_SITE) if p]
    ours = [os.path.normpath(p) for p in ours if os.path.isabs(p)]
    found = ""
    for frame, line in traceback.walk_tb(err.__traceback__):
        path = frame.f_code.co_filename
        path = os.path.join(here, path) if here and not os.path.isabs(path) else path
        parts = set(path.split(os.sep))
        if not (any(path.startswith(root + os.sep) for root in ours)
                or parts & {"site-packages", "dist-packages"}):
            shown = os.path.relpath(path, here) if here and path.startswith(here + os.sep) \
                else path
            found = f" at {shown}:{line} in {frame.f_code.co_name}"
    return found


def cell_part(cell, params):
    """The entries of a user's params that are the cell's parameters: what gradlab's side
    of a check reads, while the function under test gets every entry (a helper array of
    its own is not an extra to refuse). The params as given where they are not a dict or
    lack one of the cell's (the refusal then names what is missing)."""
    if not isinstance(params, dict):
        return params
    own = {k: params[k] for k in cell.param_names if k in params}
    return own if len(own) == len(cell.param_names) else params


def real_array(a, what="the function under test"):
    """What the user returned as a float64 CPU tensor, refusing anything that is not an
    array of real numbers (None, a string, ragged lists, complex: no part is dropped)."""
    return real_answer(a, what)[0]


def real_answer(a, what="the function under test"):
    """(`real_array(a)`, the torch dtype it came in)."""
    given = type(a).__name__
    try:          # its own __array__ (code gradlab did not write) may do anything
        return foreign(lambda: _real_answer(a, what), f"reading the {given} {what} returned")
    except (GradlabError, KeyboardInterrupt):
        raise
    except BaseException as err:      # noqa: BLE001
        words = " ".join(str(err).split())[:200]
        kind = "" if isinstance(err, (TypeError, ValueError)) else f"{type(err).__name__}: "
        raise GradlabError(f"{what} returned an object of type {given} that cannot be read "
                           f"as an array of real numbers: {kind}{words}") from None


def _real_answer(a, what):
    if isinstance(a, torch.Tensor) and (a.is_nested or a.is_quantized):
        if a.is_nested:
            raise GradlabError(f"{what} returned a nested tensor; expected one array")
        a = a.dequantize()                            # quantized: the numbers it stands for
    if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.dtype.itemsize > 8:
        a = a.astype(np.float64)                      # long double: read at float64
    if not isinstance(a, torch.Tensor):
        given = type(a).__name__
        try:
            a = np.asarray(a)
        except ValueError:                            # ragged nesting
            raise GradlabError(f"{what} returned a ragged {given}, not an array") from None
        if a.dtype.kind not in "iuf":
            raise GradlabError(f"{what} returned {given}" + (
                f" of {a.dtype}" if given in ("ndarray", "list", "tuple") else "")
                + "; expected an array of real numbers")
        a = torch.as_tensor(a.copy() if any(s < 0 for s in a.strides) else a,   # ([::-1])
                            device="cpu")     # (whatever the default device is)
    if a.is_complex() or a.dtype == torch.bool:
        raise GradlabError(f"{what} returned a {a.dtype} tensor; expected real numbers")
    if a.device.type == "meta":
        raise GradlabError(f"{what} returned a tensor on the meta device, which holds no "
                           "numbers; expected real numbers")
    if a.layout != torch.strided:
        a = a.to_dense()                              # sparse: the same numbers, dense
    # a copy: an answer in a buffer the function reuses changes under us on its next call
    return a.detach().to(dtype=torch.float64, device="cpu", copy=True), a.dtype


COLLAPSED = "collapsed"      # a batch answered with one (rows, cols) matrix


def batched_jacobian(fn, params, state, x, shape, hints=None):
    """The user's Jacobian, batched (B, rows, cols), float64 on the CPU, whether it came
    one sample at a time (COLLAPSED where a batch of B > 1 was answered with one matrix of
    the Jacobian's shape), and the dtype it came in. A function written for one sample
    ((n,) vectors in, (S, S) out) may fail on a batch, or return a 2-D array for it: then
    it is called per sample."""
    B = x.shape[0]
    try:
        out = call_user(fn, copied(params), tuple(s.clone() for s in state), x.clone())
    except GradlabError as err:
        if isinstance(err, Exited):
            raise
        try:                                          # written for one sample?
            single, dtype = per_sample(fn, params, state, x, shape)
            return single, True, dtype
        except GradlabError as one:
            raise GradlabError(f"{err} (on a batch of {B}); called one sample at a time, "
                               f"{one}") from None
    out, dtype = real_answer(out)    # not real numbers: wrong, batched or not
    if out.ndim == 2 and B == 1:
        out = out[None]
    if tuple(out.shape) == (B, shape[1], shape[0]):   # the other layout: told by check
        return out, False, dtype
    if tuple(out.shape) != (B, *shape):
        if out.ndim == 2:                             # one sample at a time
            try:
                single, dtype = per_sample(fn, params, state, x, shape)
            except GradlabError as one:
                raise GradlabError(f"the function under test returned shape "
                                   f"{tuple(out.shape)} for a batch of {B} (expected ({B}, "
                                   f"{shape[0]}, {shape[1]})); called one sample at a time, "
                                   f"{one}") from None
            return single, COLLAPSED if tuple(out.shape) == shape else True, dtype
        said = ""
        if tuple(out.shape) == (*shape, B):
            said = f"; {tuple(out.shape)} is (rows, columns, B), the batch last: put it first"
        elif (hints or {}).get(tuple(out.shape[-2:])):
            said = f"; {tuple(out.shape[-2:])} is {hints[tuple(out.shape[-2:])]}"
        raise GradlabError(f"the function under test returned shape {tuple(out.shape)}; "
                           f"expected ({B}, {shape[0]}, {shape[1]}) or {shape} per sample"
                           + said)
    return out, False, dtype


def copied(params):
    """A copy of each array entry for one call (fn may write into them); other entries
    (a float, a string: the user's own helpers) as they are."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v.copy()
            if isinstance(v, np.ndarray) else v for k, v in params.items()}


def per_sample(fn, params, state, x, shape):
    """fn called on each sample ((n,) vectors), stacked (B, rows, cols), and the dtype
    they came in."""
    rows = []
    for b in range(x.shape[0]):
        one, dtype = real_answer(call_user(fn, copied(params),
                                           tuple(s[b].clone() for s in state), x[b].clone()))
        if tuple(one.shape) != shape:
            raise GradlabError(f"the function under test returned shape {tuple(one.shape)} "
                               f"for one sample; expected {shape}")
        rows.append(one.clone())      # fn may return one buffer it writes each call
    return torch.stack(rows), dtype


def right_one_by_one(fn, params, state, x, shape, layout, exact, rtol):
    """The diagnosis of a function right one sample at a time but wrong on a batch (it
    does not broadcast: e.g. a sum or a product over the (B, n) state taken as one
    sample's), or None: its answers one by one, where it gives them, are compared too."""
    try:
        single = per_sample(fn, params, state, x, shape)[0]
    except GradlabError:
        return None
    if layout == "denominator":
        single = single.transpose(1, 2)
    if not bool(torch.isfinite(single).all()):
        return None
    error = float((single - exact).abs().max()) / (float(exact.abs().max()) or 1.0)
    if error > rtol:
        return None
    B = x.shape[0]
    return [f"Your Jacobian is right one sample at a time (called with (n,) vectors: max "
            f"relative error {error:.3g}), but not on a batch: given (B, n) tensors, B = {B}, "
            f"it returns other matrices, so it does not broadcast over the batch (a sum or "
            f"product over the batch dimension, or a (B, n) tensor read as one sample's)."]


def float32_rounding(theirs, exact, relative, params_dtype):
    """The diagnosis of a float64 answer off by what float32 rounding leaves (up to 64
    float32 eps relative, on most entries: a float32 tensor or constant somewhere in fn),
    or None. One entry off by 1e-7 is a mistake, not rounding: most must differ, and in
    both directions."""
    eps = torch.finfo(torch.float32).eps
    if params_dtype != torch.float64 or relative > 64 * eps:
        return None
    scale = float(exact.abs().max()) or 1.0
    nonzero = exact != 0
    D = theirs - exact
    differ = (D.abs() > 1e-3 * eps * scale) & nonzero
    if int(differ.sum()) < 0.5 * int(nonzero.sum()):
        return None
    # rounding goes both ways at random: a factor 1 + 1e-7 on every entry is a mistake
    up = int(((D * exact > 0) & differ).sum())
    if min(up, int(differ.sum()) - up) < 0.1 * int(differ.sum()):
        return None
    if bool((theirs.float().double() == theirs).all()):     # float32 numbers, returned
        return [f"Its error, {relative:.3g} relative on most entries, is what float32 "
                f"rounding leaves ({eps:.1e}), and every entry is a float32 number: your "
                "function may be right, computed in float32 (a float32 tensor or constant, "
                "or torch's default dtype) and returned as float64. Compute in float64 "
                "throughout, or pass rtol=1e-5 (--rtol) to check it at float32's precision."]
    return [f"Its error, {relative:.3g} relative on most entries, is about what float32 "
            f"rounding leaves ({eps:.1e}). If part of your function computes in float32 (a "
            "float32 tensor or constant, or torch's default dtype), it may be right: compute "
            "in float64 throughout to tell. If it computes in float64 throughout, this is an "
            "error of its own, not rounding (finite differences leave errors of this size)."]


def coarsest(*dtypes):
    """The floating dtype of the largest eps among `dtypes` (float64 where none is)."""
    floats = [d for d in dtypes if d.is_floating_point] or [torch.float64]
    return max(floats, key=lambda d: torch.finfo(d).eps)


def lower_precision(dtype, params_dtype, relative, rtol, explains):
    """The diagnosis of an answer in a dtype coarser than the params' whose error its own
    rounding can explain (within `explains`, `precision.rounding_explains` for that dtype:
    float32 against float64, a relative error up to ~8e-6; whole numbers: any), or None."""
    if not dtype.is_floating_point:
        return [f"Your function returned {str(dtype).removeprefix('torch.')} numbers: a "
                "Jacobian of real numbers, rounded to whole numbers. Return floats."]
    eps = torch.finfo(dtype).eps
    if eps <= torch.finfo(params_dtype).eps or relative > explains:
        return None
    name, wide = str(dtype).removeprefix("torch."), str(params_dtype).removeprefix("torch.")
    coarse = max(explains, relative * 2)      # an rtol that would pass it (below 1: float8's
                                              # rounding explains 1 or more, which rtol
                                              # cannot be)
    return [f"Your function returned {name} numbers (rounding {eps:.1e}), and its error, "
            f"{relative:.3g} relative, is within what that rounding explains: it may be "
            f"right, computed in {name}. Compute in {wide}" + (
                f", or pass rtol={coarse:.0e} (--rtol) to check it at {name}'s precision."
                if float(f"{coarse:.0e}") < 1 else f" (at {name}'s precision no check can tell a term "
                "left out from rounding).")]
