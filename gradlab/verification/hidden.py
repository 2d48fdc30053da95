"""What the params and states given can hide: a derivation that agrees only there.

A term that carries a bias, a state part or the input vanishes where that vector is all
zero, and nothing measured there can show it: a derivation without b_hn agrees at b_hn =
0, one that leaves W h out of a pre-activation agrees at h = 0, one without U x at x = 0.
Where fn agreed at such values, it is asked again with them drawn nonzero, and a note
(which `assert_jacobian` warns with) says where it then disagrees.
"""

import dataclasses

import torch

from ..errors import GradlabError, derived_seed
from .blind import zero_parts
from .conventions import exact_jacobian
from .diagnosis import measured
from .user import Exited, batched_jacobian

BIAS_NOTE = "Note: it agrees at the params given"      # what assert_jacobian warns with
STATE_NOTE = "Note: it agrees at the states given"


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
        fails or answers in another shape only there (the verdict stands where asked)."""
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
        exact = self.blocks.select(exact_jacobian(self.cell, self.wrt, params, *point))
        return measured(answer, exact, self.blocks)[1]


def with_biases(asked):
    """[a note] where fn agreed, but the params' all-zero vectors (biases of scale 0, as
    init_params gives by default) hide what it does with them: with them drawn nonzero, fn
    disagrees: right for a model without that bias (which is checked at zero biases), wrong
    for one with it. [] where nothing hides, or fn does not read params (a closure over a
    model's weights is right or wrong for that model, which is checked)."""
    cell, params, fn_dtype = asked.cell, asked.params, asked.fn_point[1].dtype
    zero = [p for p in cell.param_names if params[p].ndim == 1 and params[p].numel()
            and not bool(params[p].any())]
    if not zero:
        return []
    gen = torch.Generator().manual_seed(derived_seed(asked.seed, 2))
    noise = {p: torch.randn(params[p].shape, generator=gen, dtype=torch.float64
                            ).to(params[p]) for p in cell.param_names}
    # the zero vectors drawn nonzero, every other array moved by ~10% (so that a fn that
    # reads params, but not those vectors, answers differently: told from a closure)
    drawn = {p: (0.5 * noise[p] if p in zero else params[p] * (1 + 0.1 * noise[p])).to(
        fn_dtype).to(params[p].dtype) for p in cell.param_names}   # fn's values
    answer = asked.again({**asked.yours, **{p: v.to(fn_dtype) for p, v in drawn.items()}},
                         asked.fn_point)
    if answer is None:
        return []
    where = f"{BIAS_NOTE}, where {', '.join(zero)} {'is' if len(zero) == 1 else 'are'} all zero"
    if torch.equal(answer, asked.theirs):
        return []         # fn does not read params (a closure): right for the model it reads
    relative = asked.error(answer, {**params, **drawn}, asked.point)
    if relative <= asked.rtol:
        return []
    them = "it" if len(zero) == 1 else "them"
    return [f"{where}, but not with {them} drawn nonzero (N(0, 0.25) each entry, the other "
            f"params moved by ~10%): max relative error {relative:.3g}. Your derivation "
            f"leaves a term with {them} out or gets it wrong: right for a model without {them}, "
            f"wrong for one with {them} (check at nonzero biases: gradlab check's default "
            "--bias-scale 0.5)."]


def with_states(asked):
    """[a note] where fn agreed at states given with a part (or the input) all zero, and
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
        return []
    relative = asked.error(answer, asked.params, (tuple(drawn[:-1]), drawn[-1]))
    if relative <= asked.rtol:
        return []
    return [f"{STATE_NOTE}, where {', '.join(zero)} {'is' if len(zero) == 1 else 'are'} "
            f"all zero, but not with {'it' if len(zero) == 1 else 'them'} drawn nonzero "
            f"(N(0, 0.64) each entry): max relative error {relative:.3g}. Your derivation "
            "leaves out, or gets wrong, a term that vanishes there (a W h or U x inside an "
            "activation?); check at states drawn nonzero (leave states out)."]
