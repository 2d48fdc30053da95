"""Calling a function under test (the user's Jacobian or Lyapunov routine) and reading
what it returns, so that nothing it does can pass for an answer: an exception or
sys.exit is one GradlabError, and only an array of real numbers is a result."""

import numpy as np
import torch

from ..errors import GradlabError


def call_user(fn, *args):
    """fn(*args) for the function under test: whatever it raises, and sys.exit, is one
    GradlabError (a check that exits 0 must not read as "agrees")."""
    try:
        return fn(*args)
    except KeyboardInterrupt:                         # the user's Ctrl-C, not the code's
        raise
    except SystemExit as err:
        raise GradlabError(f"the function under test called sys.exit({err.code!r})") from None
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
