"""The initial state of a torch module's run, as the jacrev protocol reads it
(gradlab.flow.module): given as `state0=`, or by the module's own `state0` attribute; a
(B, ...) tensor or a tuple of them, or arrays and nested lists of real numbers."""

import numbers

import numpy as np
import torch

from ..errors import GradlabError
from ..torch_guards import recurrent_inside
from .arrays import converted
from .bound import as_real


def structure(state):
    """The parts of a state: a tuple or list as it is, anything else as one part."""
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def _one_part(state):
    """Nested lists (or tuples) of plain numbers are one part's values, not a tuple of
    parts; a list of tensors or arrays stays a tuple of parts."""
    def plain(e):
        if isinstance(e, (tuple, list)):
            return bool(e) and all(plain(i) for i in e)
        return isinstance(e, numbers.Real) and not isinstance(e, bool)
    if isinstance(state, (tuple, list)) and plain(state):
        try:
            return np.asarray(state, dtype=np.float64)
        except ValueError:                   # ragged: as_real names it
            return state
    return state


def module_state0(module, state0, B, like):
    """The initial state of a module's run, (B, ...) parts on `like`'s dtype and device:
    `state0` as given, else the module's own `state0` (one sequence's state, expanded
    over B, or a callable of B); a tensor or a tuple of them, as state0 came."""
    name = type(module).__name__
    state0 = _one_part(state0)
    if state0 is None:
        given = getattr(module, "state0", None)
        if given is None:
            held = recurrent_inside(module)
            raise GradlabError(f"{name} gives no initial state: pass "
                               "state0= (a (B, ...) tensor or tuple of them) or give the "
                               "module a state0 attribute" + (
                                   f"; or, to measure the nn.{held[1]} it holds, pass that "
                                   f"module itself ({held[0]})" if held else ""))
        if callable(given) and not isinstance(given, torch.Tensor):
            try:
                state0 = given(B)
            except GradlabError:
                raise
            except Exception as err:         # the module's own failure, one line
                raise GradlabError(f"{name}.state0(B) failed with B = {B}: "
                                   f"{type(err).__name__}: {' '.join(str(err).split())}"
                                   ) from None
        else:                                # one sequence's state, expanded over B
            given = _one_part(given)
            one = tuple(as_real(p, "state0") for p in structure(given))
            state0 = type(structure(given))(p.expand(B, *p.shape) for p in one) \
                if isinstance(given, (tuple, list)) else one[0].expand(B, *one[0].shape)
    parts = tuple(as_real(p, "state0") for p in structure(state0))
    if not parts or not all(p.ndim >= 2 and p.shape[0] == B for p in parts):
        raise GradlabError(f"state0 must be a (B, ...) tensor or a tuple of them with B = {B}, "
                           f"got shapes {[tuple(p.shape) for p in parts]}")
    parts = tuple(converted(p, "state0" if len(parts) == 1 else f"state0[{i}]", like.dtype,
                            like.device).detach() for i, p in enumerate(parts))
    bad = next((i for i, p in enumerate(parts) if not bool(torch.isfinite(p).all())), None)
    if bad is not None:          # (a nan state would be reported as an overflow of the run)
        raise GradlabError(f"state0{'' if len(parts) == 1 else f'[{bad}]'} holds nan or inf: "
                           "there is no trajectory to measure from it")
    return parts if isinstance(state0, (tuple, list)) else parts[0]
