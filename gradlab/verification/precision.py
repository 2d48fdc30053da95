"""How much precision the exact Jacobian's own evaluation keeps at the points a check uses.

Where gradlab's float64 reference lost digits (every unit saturated: 1 - h'^2 near 0) it
is evaluated in extended precision (`extended_reference`). Where the params are float32,
what float32 evaluation of the exact formulas loses there says how far a right float32
answer may be off (`float32_loses`)."""

import torch

from ..lowering.lower import extended_jacobian
from .conventions import exact_jacobian
from .diagnosis import measured


FINER_NOTE = ("Note: gradlab's own float64 evaluation of the exact Jacobian is off by {:.2g} "
              "relative at these draws (digits lost to cancellation, such as 1 - h'^2 at "
              "saturated units); yours is compared with its evaluation in extended precision "
              "instead.")


UNSURE_NOTE = ("That evaluation keeps only ~3 more digits, so it may itself be off by up to "
               "{:.2g}: an error of {:.3g} cannot be told from its rounding. Check at less "
               "saturated params (smaller weights or biases).")


def extended_reference(cell, wrt, params, state, x, blocks, exact, rtol):
    """(the exact Jacobian evaluated in extended precision, how far gradlab's float64 one
    is from it) where that is more than rtol / 10 (every unit saturated: 1 - h'^2 at h'
    within 1e-12 of 1 keeps ~4 digits), else None. Only float64 params on an x86
    longdouble."""
    if params[cell.param_names[0]].dtype != torch.float64:
        return None
    numpy = lambda t: t.detach().cpu().numpy()                      # noqa: E731
    fine = extended_jacobian(cell, wrt, {p: numpy(params[p]) for p in cell.param_names},
                             tuple(map(numpy, state)), numpy(x))
    if fine is None:
        return None
    fine = blocks.select(torch.as_tensor(fine))
    lost = measured(exact, fine, blocks)[1]
    return (fine, lost) if lost > rtol / 10 else None


SLACK = 8             # another order of the same operations may lose this much more
PRECISION_NOTE = ("Inconclusive: at these draws the exact formulas evaluated in {} are "
                  "themselves off by {:.2g} relative (cancellation, such as 1 - h'^2 at "
                  "saturated units), and yours, {:.3g}, is within {}x that: {} cannot tell "
                  "a right answer from this one here. Check at less saturated params "
                  "(smaller weights or biases){}.")


def within_rounding(dtype, lost, relative):
    """The note for an answer off by `relative` where `dtype` evaluation of the exact
    formulas is off by `lost`, if within SLACK times that, else None."""
    if relative > SLACK * lost:
        return None
    name = str(dtype).removeprefix("torch.")
    return PRECISION_NOTE.format(name, lost, relative, SLACK, name,
                                 ", or in float64" if dtype == torch.float32 else "")


def float32_lost(cell, wrt, params, state, x, blocks, exact):
    """How far float32 evaluation of the exact Jacobian at (params, state, x) is from
    `exact` (relative, as `measured` reads it)."""
    own = exact_jacobian(cell, wrt, {p: t.float() for p, t in params.items()},
                         tuple(s.float() for s in state), x.float())
    return measured(blocks.select(own).to(exact.dtype), exact, blocks)[1]


def rounding_explains(dtype, lost32):
    """The largest relative error rounding in `dtype` explains in an answer: 64 eps for
    float32 and finer (what their sums may leave anywhere); for coarser ones (float16,
    bfloat16, float8, whose 64 eps is 0.06 to 8: a term left out, or a block scaled by
    0.8, passed for rounding) SLACK times what the exact formulas lose evaluated at that
    precision, read from float32's loss (`lost32()`, called only then) in eps, at least
    1 eps: a right answer computed in float16 or bfloat16 is off by about 1-2 eps."""
    eps, eps32 = torch.finfo(dtype).eps, torch.finfo(torch.float32).eps
    if eps <= eps32:
        return 64 * eps
    return SLACK * eps * max(1.0, lost32() / eps32)


def float32_loses(cell, wrt, params, state, x, blocks, exact, relative, rtol):
    """The note for a float32 answer off by `relative` where float32 evaluation of the
    exact Jacobian (params, state, x: the float32 values the answer was computed from)
    loses more than rtol / 10 and more than float32 rounding anywhere (a cancellation),
    and the answer is within SLACK times that, else None."""
    lost = float32_lost(cell, wrt, params, state, x, blocks, exact)
    rounding = 64 * torch.finfo(torch.float32).eps       # what float32 leaves anywhere
    if lost <= max(rtol / 10, rounding):
        return None
    return within_rounding(torch.float32, lost, relative)
