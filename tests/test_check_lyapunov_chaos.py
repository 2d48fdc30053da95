"""check_lyapunov on a chaotic trajectory (top exponent above 0), found by a review: a
user's own step and gradlab's agree to rounding at first and part after a few hundred
steps, so a right routine measures along other states than gradlab's, and its
exponents differ by more than start vectors make gradlab's differ. Where the run parts
from a neighbour moved by rounding, that spread counts too: a right routine is refused
as unjudgeable on too short a run, never called wrong; nothing changes on a
contracting trajectory."""

import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.errors import GradlabError
from gradlab.verification.trajectory import trajectories


def rnn_benettin(fn_steps=0):
    """A user's routine for rnn_tanh: its own run by the cell's torch step, jacrev
    Jacobians, a QR step per step (`fn_steps` more in the mean's denominator)."""
    def fn(P, xs, k):
        step = gradlab.cell("rnn_tanh").step_fn("torch")
        T, B, _ = xs.shape
        h, states = torch.zeros(B, P["W"].shape[0], dtype=xs.dtype), []
        for t in range(T):
            states.append(h)
            h = step(P, (h,), xs[t])[0]
        J = vmap(jacrev(lambda v, x: step(P, (v[None],), x[None])[0][0]))(
            torch.cat(states), xs.reshape(T * B, -1)).view(T, B, h.shape[1], h.shape[1])
        Q = torch.linalg.qr(torch.randn(B, h.shape[1], k, dtype=xs.dtype,
                                        generator=torch.Generator().manual_seed(7)))[0]
        total = torch.zeros(B, k, dtype=xs.dtype)
        for Jt in J:
            Q, R = torch.linalg.qr(Jt @ Q)
            total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
        return total / (T + fn_steps)
    return fn


def chaotic(T):
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(16, 3, weight_scale=3.0, seed=1)
    gen = torch.Generator().manual_seed(0)
    return cell, params, 0.3 * torch.randn(T, 2, 3, generator=gen, dtype=torch.float64)


def test_a_right_routine_on_a_chaotic_run_is_never_called_wrong():
    cell, params, xs = chaotic(2000)
    assert trajectories(cell, params, xs)[1] is not None
    with pytest.raises(GradlabError, match="or along a run that rounding alone parts from "
                       r"this one \(the trajectory is chaotic\)"):
        gradlab.check_lyapunov(rnn_benettin(), cell, params, xs, 2)


def test_a_contracting_run_does_not_part():
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(16, 3, weight_scale=0.8, seed=1)
    xs = torch.randn(300, 2, 3, generator=torch.Generator().manual_seed(0),
                     dtype=torch.float64)
    assert trajectories(cell, params, xs)[1] is None
    assert gradlab.check_lyapunov(rnn_benettin(), cell, params, xs, 2).ok
    wrong = gradlab.check_lyapunov(rnn_benettin(fn_steps=-1), cell, params, xs, 2)
    assert not wrong.ok, str(wrong)


def test_an_atol_below_what_rounding_moves_a_chaotic_run_by_is_said_so():
    """An explicit atol is the user's to give; where it is below what gradlab's own
    exponents move along a run parted by rounding, a "differs" says so, and what would
    judge the routine."""
    cell, params, xs = chaotic(2000)
    result = gradlab.check_lyapunov(rnn_benettin(), cell, params, xs, 2, atol=1e-4)
    assert not result.ok
    assert result.diagnosis[-1].startswith("But the trajectory is chaotic: along a run that "
                                           "rounding alone parts from it"), str(result)
