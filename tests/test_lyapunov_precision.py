"""check_lyapunov judges an answer at the precision it came in: a float32 routine reports
a direction float32 cannot resolve (lstm_nog's null space, exactly -inf, ~-36 by float64
QR) as float32 round-off, near -16, and that agrees; the same value from float64, or a
float32 value above float32's floor, is still a difference. (The answer was read as
float64 whatever it came in, so a right float32 routine was told it differs by 21.)"""

import numpy as np
import pytest
import torch

import gradlab


@pytest.mark.parametrize("bottom, dtype, ok", [(-16.0, np.float32, True),
                                               (-5.0, np.float32, False),
                                               (-16.0, np.float64, False)])
def test_round_off_is_judged_in_the_answers_precision(bottom, dtype, ok):
    cell = gradlab.cell("lstm_nog")
    params = cell.init_params(3, 2, seed=0)
    xs = torch.randn(300, 1, 2, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)

    def routine(params, xs, k):       # right above the floor; below it, round-off
        e = np.array(gradlab.lyapunov(cell, params, xs, k).mean)
        e[3:] = bottom - 0.5 * np.arange(3)
        return e.astype(dtype)
    assert gradlab.check_lyapunov(routine, cell, params, xs, 6, atol=1e-2).ok is ok


@pytest.mark.parametrize("bottom, dtype, ok", [(-36.0, np.float64, True),
                                               (-16.0, np.float32, True),
                                               (-5.0, np.float64, False),
                                               (-5.0, np.float32, False)])
def test_a_low_rank_w_without_zeros_leaves_round_off_only(bottom, dtype, ok):
    """rnn_tanh with W = u v^T of rank 2 (no zero row): its bottom exponents are -inf,
    and a QR routine reports its precision's round-off there (~-36 in float64); -5 is
    not round-off in either precision (it passed: the bound there was log |J_t|_F,
    capped only by the exponent before)."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(4, 2, seed=0)
    gen = torch.Generator().manual_seed(3)
    params["W"] = 0.6 * torch.randn(4, 2, generator=gen, dtype=torch.float64) \
        @ torch.randn(2, 4, generator=gen, dtype=torch.float64)
    xs = torch.randn(400, 2, 2, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)

    def routine(params, xs, k):
        e = np.array(gradlab.lyapunov(cell, params, xs, k).mean)
        e[2:] = bottom
        return e.astype(dtype)
    assert gradlab.check_lyapunov(routine, cell, params, xs, 4, atol=1e-3).ok is ok
