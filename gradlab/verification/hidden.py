"""What the params and states given can hide: a derivation that agrees only there.

A term that carries a bias, a state part or the input vanishes where that vector is all
zero, and nothing measured there can show it: a derivation without b_hn agrees at b_hn =
0, one that leaves W h out of a pre-activation agrees at h = 0, one without U x at x = 0.
Where fn agreed at such values, it is asked again with them drawn nonzero; where it then
disagrees, the verdict is "differs", at the error found there, with a note that says so: a
function of params and states that is wrong for some of them is wrong, however the values
given happened to hide it (`init_params` gives zero biases by default). One exception: a
derivation that leaves out every bias the params give as zero is the exact Jacobian of a
model without them, which is what zero biases given may well describe: it agrees, with a
note. A value of 1 hides a factor in the same way (a gain g of all ones, torch's
LayerNorm default: g x agrees with x; gamma^2 with gamma at gamma = 1): fn is asked again
with such params drawn away from 1 (`with_units`), and a derivation that then leaves them
out is inconclusive, not certified.
"""

import dataclasses

import torch

from ..errors import GradlabError, derived_seed
from .blind import zero_parts
from .conventions import exact_jacobian
from .diagnosis import measured
from .user import Exited, batched_jacobian

BIAS_NOTE = "It agrees at the params given"
STATE_NOTE = "It agrees at the states given"
UNASKED = "unasked"       # errors of a note where fn gave no answer with them nonzero


def unasked(where, many, drawn):
    """The note where fn answered at the values given but not with those all-zero vectors
    drawn nonzero (`many`: more than one): the terms they carry went unchecked, which is
    no agreement (inconclusive)."""
    them, they = ("them", "they carry") if many else ("it", "it carries")
    return [(f"{where}, but asked again with {them} drawn nonzero ({drawn}) it failed, or "
             f"answered with nan, inf or another shape: the terms {they} are unchecked, "
             "and a derivation right only where they vanish would pass. Give values where "
             f"{'they are' if many else 'it is'} not all zero.", UNASKED)]


@dataclasses.dataclass
class Asked:
    """One comparison that agreed: fn, the cell, gradlab's params and fn's (`yours`), the
    point (state, x) on gradlab's side and on fn's, fn's answer `theirs` (numerator
    layout, float64) and how it was compared."""
    fn: object
    cell: object
    params: dict
    yours: dict
    point: tuple
    fn_point: tuple
    shape: tuple
    layout: str
    wrt: str
    blocks: object
    rtol: float
    seed: int
    theirs: torch.Tensor

    def again(self, yours, fn_point):
        """fn's answer at other params or another point, as `theirs` is; None where fn
        fails or answers in another shape or non-finite only there (`unasked`)."""
        try:
            answer, _, _ = batched_jacobian(self.fn, yours, *fn_point, self.shape)
        except Exited:
            raise
        except GradlabError:
            return None
        if tuple(answer.shape[1:]) != self.shape:
            return None
        answer = answer.transpose(1, 2) if self.layout == "denominator" else answer
        answer = answer.to(self.theirs.dtype)
        return answer if bool(torch.isfinite(answer).all()) else None

    def error(self, answer, params, point):
        """(absolute, relative, {block: relative}) of answer at params and point."""
        exact = self.blocks.select(exact_jacobian(self.cell, self.wrt, params, *point))
        return measured(answer, exact, self.blocks)


def rounding(dtype):
    """An error this small at a redraw is rounding, not a term: the redraw has none of the
    main comparison's finer references, so at an rtol below it (3e-16) a right Jacobian
    would differ there by its last bits."""
    return 100 * torch.finfo(dtype).eps


def asked_again(asked, drawn, held, unanswered):
    """fn asked again at params `drawn` (fn's dtype, as given to it): the notes to give as
    they are, `unasked(*unanswered)` where it gives no answer there (`Asked.again`), []
    where it agrees there within rtol (or rounding) or answers as before (it does not
    read params: a closure, right for the model it reads); else (its errors there, its
    errors against the exact Jacobian with the params `held` at their given values)."""
    fn_dtype = asked.fn_point[1].dtype
    answer = asked.again({**asked.yours, **{p: v.to(fn_dtype) for p, v in drawn.items()}},
                         asked.fn_point)
    if answer is None:
        return unasked(*unanswered)
    if torch.equal(answer, asked.theirs):
        return []
    errors = asked.error(answer, {**asked.params, **drawn}, asked.point)
    if errors[1] <= max(asked.rtol, rounding(fn_dtype)):
        return []
    return errors, asked.error(answer, {**asked.params, **drawn,
                                        **{p: asked.params[p] for p in held}}, asked.point)


NEAR = 100         # a vector within NEAR * rtol of zero hides a term as zero does: a term
                   # that carries it moves the Jacobian by about rtol (b_hn = 1e-12 left
                   # out of (W_n h + b_hn) agreed to 1e-13, and was certified)


def near_zero(cell, params, rtol):
    """The vector params (biases) whose every entry is within NEAR * rtol of zero."""
    return [p for p in cell.param_names if params[p].ndim == 1 and params[p].numel()
            and float(params[p].abs().max()) <= NEAR * rtol]


def with_biases(asked):
    """[(note, errors)] where fn agreed, but the params' all-zero vectors (biases of scale 0,
    as init_params gives by default) hide what it does with them: with them drawn nonzero,
    fn disagrees. errors is None where its answer there is the exact Jacobian with them
    all zero: a derivation that leaves them out, right for a model without them, as the
    params given say (it agrees, with the note); else fn is wrong for every model (a bias
    read wrongly, or one of them left out and the rest kept): it differs. [] where nothing
    hides, or fn does not read params (a closure over a model's weights is right or wrong
    for that model, which is checked)."""
    cell, params, fn_dtype = asked.cell, asked.params, asked.fn_point[1].dtype
    zero = near_zero(cell, params, asked.rtol)
    if not zero:
        return []
    gen = torch.Generator().manual_seed(derived_seed(asked.seed, 2))
    noise = {p: torch.randn(params[p].shape, generator=gen, dtype=torch.float64
                            ).to(params[p]) for p in cell.param_names}
    # the zero vectors drawn nonzero, every other array moved by ~10% (so that a fn that
    # reads params, but not those vectors, answers differently: told from a closure)
    fixed = unit_params(cell, params)           # (moved by `with_units`, blamed there)
    drawn = {p: (0.5 * noise[p] if p in zero else params[p] if p in fixed else
                 params[p] * (1 + 0.1 * noise[p])).to(fn_dtype).to(params[p].dtype)
             for p in cell.param_names}                          # fn's values
    exactly = all(not bool(params[p].any()) for p in zero)
    where = (f"{BIAS_NOTE}, where {', '.join(zero)} {'is' if len(zero) == 1 else 'are'} all "
             + ("zero" if exactly else f"zero or within {NEAR * asked.rtol:.3g} of it"))
    found = asked_again(asked, drawn, zero, (where, len(zero) > 1, "N(0, 0.25) each entry"))
    if isinstance(found, list):
        return found
    errors, without = found
    them = "it" if len(zero) == 1 else "them"
    if without[1] <= asked.rtol:             # the exact Jacobian of a model without them
        return [(f"{where}, but not with {them} drawn nonzero (N(0, 0.25) each entry, the "
                 f"other params moved by ~10%): max relative error {errors[1]:.3g}. There it "
                 f"is the exact Jacobian with {them} at zero: your derivation leaves {them} "
                 f"out, right for a model without {them} only (gradlab check draws nonzero "
                 "biases: --bias-scale 0.5 by default).", None)]
    return [(f"{where}, but not with {them} drawn nonzero (N(0, 0.25) each entry, the other "
             f"params moved by ~10%): max relative error {errors[1]:.3g}, nor is it there the "
             f"exact Jacobian of a model without {them}. Your derivation gets a term with "
             f"{them} wrong, or leaves out some of {them} and keeps the rest (right only "
             "where those are zero).", errors)]


def unit_params(cell, params):
    """{name: what} for the params whose values hide a factor or a term: every entry 1 (a
    gain g, a scalar gamma: g x agrees with x, gamma^2 with gamma), a square matrix that
    is the identity (W^T, W^2 agree with W), or every entry zero where it is not a vector
    (`with_biases` has those): a weight matrix or a scalar at zero hides every term it
    multiplies."""
    found = {}
    for p in cell.param_names:
        v = params[p]
        if not v.numel():
            continue
        if bool((v == 1).all()):
            found[p] = "all ones" if v.numel() > 1 else "1"
        elif v.ndim == 2 and v.shape[0] == v.shape[1] and torch.equal(
                v, torch.eye(v.shape[0], dtype=v.dtype, device=v.device)):
            found[p] = "the identity"
        elif v.ndim != 1 and not bool(v.any()):
            found[p] = "all zero" if v.numel() > 1 else "0"
    return found


def with_units(asked):
    """[(note, errors)] where fn agreed at params with entries all 1, an identity, or a zero
    matrix or scalar (`unit_params`), and disagrees with those drawn away from it (N(0,
    0.25) added to each entry, every other param but zero biases moved by ~10%): it
    differs. An answer there that is the exact Jacobian with them at their given values
    leaves them out: right for a model that fixes them so (a layer norm without a gain),
    not for the cell given, which reads them; unlike zero biases (which init_params gives
    by default), nothing is certified so: inconclusive (UNASKED), with a note."""
    cell, params, fn_dtype = asked.cell, asked.params, asked.fn_point[1].dtype
    special = unit_params(cell, params)
    if not special:
        return []
    gen = torch.Generator().manual_seed(derived_seed(asked.seed, 4))
    noise = {p: torch.randn(params[p].shape, generator=gen, dtype=torch.float64,
                            device="cpu").to(params[p]) for p in cell.param_names}
    zero = near_zero(cell, params, asked.rtol)
    drawn = {p: (params[p] + 0.5 * noise[p] if p in special else params[p] if p in zero
                 else params[p] * (1 + 0.1 * noise[p])).to(fn_dtype).to(params[p].dtype)
             for p in cell.param_names}
    named = " and ".join(f"{p} is {what}" for p, what in special.items())
    where = f"{BIAS_NOTE}, where {named}"
    them = "it" if len(special) == 1 else "them"
    found = asked_again(asked, drawn, special,
                        (where, len(special) > 1, "N(0, 0.25) added to each entry"))
    if isinstance(found, list):
        return found
    errors, kept = found
    moved = (f"but not with {them} drawn away from that (N(0, 0.25) added to each entry, the "
             f"other params moved by ~10%): max relative error {errors[1]:.3g}.")
    if kept[1] <= asked.rtol:               # the exact Jacobian with them as given
        return [(f"{where}, {moved} There it is the exact Jacobian with {them} as given: "
                 f"your derivation leaves {them} out, right only for a model that fixes "
                 f"{them} so, not for this cell. Give other values to check {them}.", UNASKED)]
    return [(f"{where}, {moved} Your derivation gets a term with {them} wrong that "
             f"{'these values hide' if len(special) > 1 else 'this value hides'} (a factor "
             "left out, a square or a transpose where the value itself belongs).", errors)]


def with_states(asked):
    """[(note, errors)] where fn agreed at states given with a part (or the input) all zero, and
    disagrees with that part drawn nonzero (N(0, 0.64) each entry, as drawn states are)."""
    cell = asked.cell
    names = (*cell.state_names, cell.input_name)
    ours, theirs = (*asked.point[0], asked.point[1]), (*asked.fn_point[0], asked.fn_point[1])
    zero = zero_parts(cell, *asked.point)
    if not zero:
        return []
    gen = torch.Generator().manual_seed(derived_seed(asked.seed, 3))
    fn_drawn = [(0.8 * torch.randn(t.shape, generator=gen, dtype=torch.float64)).to(t)
                if name in zero else t for name, t in zip(names, theirs)]
    drawn = [d.to(t) for d, t in zip(fn_drawn, ours)]       # the same values, gradlab's side
    answer = asked.again(asked.yours, (tuple(fn_drawn[:-1]), fn_drawn[-1]))
    if answer is None:
        return unasked(f"{STATE_NOTE}, where {', '.join(zero)} "
                       f"{'is' if len(zero) == 1 else 'are'} all zero",
                       len(zero) > 1, "N(0, 0.64) each entry")
    errors = asked.error(answer, asked.params, (tuple(drawn[:-1]), drawn[-1]))
    if errors[1] <= max(asked.rtol, rounding(theirs[-1].dtype)):
        return []
    return [(f"{STATE_NOTE}, where {', '.join(zero)} {'is' if len(zero) == 1 else 'are'} "
             f"all zero, but not with {'it' if len(zero) == 1 else 'them'} drawn nonzero "
             f"(N(0, 0.64) each entry): max relative error {errors[1]:.3g}. Your derivation "
             "leaves out, or gets wrong, a term that vanishes there (a W h or U x inside an "
             "activation?)", errors)]
