"""Calling a function under test (the user's Jacobian or Lyapunov routine) and reading
what it returns, so that nothing it does can pass for an answer: an exception or
sys.exit or os._exit is one GradlabError, and only an array of real numbers is a result.
A Jacobian may come batched or one sample at a time (`batched_jacobian`)."""

import numpy as np
import torch

from ..errors import GradlabError
from ..exits import ExitCalled, no_exit


class Exited(GradlabError):
    """The function under test called sys.exit or os._exit: no answer, and no second try."""


def call_user(fn, *args):
    """fn(*args) for the function under test: whatever it raises, and sys.exit or
    os._exit, is one GradlabError (a check that exits 0 must not read as "agrees")."""
    try:
        with no_exit():
            return fn(*args)
    except KeyboardInterrupt:                         # the user's Ctrl-C, not the code's
        raise
    except (SystemExit, ExitCalled) as err:
        how = "sys.exit" if isinstance(err, SystemExit) else "os._exit"
        raise Exited(f"the function under test called {how}({err.code!r})") from None
    except BaseException as err:                      # noqa: BLE001  (the user's code)
        raise GradlabError(f"the function under test raised {type(err).__name__}: "
                           f"{' '.join(str(err).split())}") from None


def real_array(a, what="the function under test"):
    """What the user returned as a float64 CPU tensor, refusing anything that is not an
    array of real numbers (None, a string, ragged lists, complex: no part is dropped)."""
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
        a = torch.as_tensor(a)
    if a.is_complex() or a.dtype == torch.bool:
        raise GradlabError(f"{what} returned a {a.dtype} tensor; expected real numbers")
    if a.device.type == "meta":
        raise GradlabError(f"{what} returned a tensor on the meta device, which holds no "
                           "numbers; expected real numbers")
    if a.layout != torch.strided:
        a = a.to_dense()                              # sparse: the same numbers, dense
    return a.detach().to(dtype=torch.float64, device="cpu")


def batched_jacobian(fn, params, state, x, shape):
    """The user's Jacobian, batched (B, rows, cols), float64 on the CPU, and whether it
    came one sample at a time. A function written for one sample ((n,) vectors in, (S, S)
    out) may fail on a batch, or return a 2-D array for it: then it is called per sample."""
    B = x.shape[0]
    try:
        out = call_user(fn, copied(params), tuple(s.clone() for s in state), x.clone())
    except GradlabError as err:
        if isinstance(err, Exited):
            raise
        try:                                          # written for one sample?
            return per_sample(fn, params, state, x, shape), True
        except GradlabError as one:
            raise GradlabError(f"{err} (on a batch of {B}); called one sample at a time, "
                               f"{one}") from None
    out = real_array(out)     # an answer that is not real numbers is wrong, batched or not
    if out.ndim == 2 and B == 1:
        out = out[None]
    if tuple(out.shape) != (B, *shape):
        if out.ndim == 2:                             # one sample at a time
            return per_sample(fn, params, state, x, shape), True
        raise GradlabError(f"the function under test returned shape {tuple(out.shape)}; "
                           f"expected ({B}, {shape[0]}, {shape[1]}) or {shape} per sample")
    return out, False


def copied(params):
    return {k: v.clone() for k, v in params.items()}


def per_sample(fn, params, state, x, shape):
    """fn called on each sample ((n,) vectors), stacked (B, rows, cols)."""
    rows = []
    for b in range(x.shape[0]):
        one = real_array(call_user(fn, copied(params), tuple(s[b].clone() for s in state),
                                   x[b].clone()))
        if tuple(one.shape) != shape:
            raise GradlabError(f"the function under test returned shape {tuple(one.shape)} "
                               f"for one sample; expected {shape}")
        rows.append(one)
    return torch.stack(rows)
