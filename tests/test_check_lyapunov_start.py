"""check_lyapunov at the edges a review found: a right routine whose start vector gradlab's
three did not cover, a right routine's round-off where the exact exponent is -inf, and
wrong routines the sum of all exponents could not judge passing without a word."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.errors import GradlabError


def routine(name, *, start=7, every=1, steps=0, rows=True, dtype=None, transpose=False):
    """A published-style routine for any cell: its run by the cell's torch step, jacrev
    Jacobians, torch.linalg.qr every `every` steps from a random start (seed `start`),
    `steps` more in the mean's denominator than it has; in `dtype` if given; with J_t^T in
    the QR step if `transpose` (reverse time)."""
    cell = gradlab.cell(name)
    step, parts = cell.step_fn("torch"), len(cell.state_names)

    def fn(P, xs, k):
        if dtype is not None:
            P = {a: v.to(dtype) for a, v in P.items()}
            xs = xs.to(dtype)
        T, B, _ = xs.shape
        n = next(v for v in P.values() if v.ndim == 2).shape[0]
        s, states = (torch.zeros(B, n, dtype=xs.dtype),) * parts, []
        for t in range(T):
            states.append(torch.cat(s, -1))
            s = step(P, s, xs[t])

        def flat(v, x):
            return torch.cat(step(P, tuple(v[None, i * n:(i + 1) * n] for i in range(parts)),
                                  x[None]), -1)[0]
        S = parts * n
        J = vmap(jacrev(flat))(torch.cat(states), xs.reshape(T * B, -1)).view(T, B, S, S)
        gen = torch.Generator().manual_seed(start)
        Q = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64))[0]
        Q, total = Q.to(xs.dtype), torch.zeros(B, k, dtype=xs.dtype)
        for t, Jt in enumerate(J, start=1):
            Q = (Jt.mT if transpose else Jt) @ Q
            if t % every == 0 or t == T:
                Q, R = torch.linalg.qr(Q)
                total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
        out = total / (T + steps)
        return out if rows else out.mean(0)
    return fn


def test_a_right_routine_is_never_called_wrong_for_its_start_vector():
    """rnn_relu, n = 2, k = 1, T = 300: three start vectors often lie close together by
    chance (the estimate's offset has a heavy tail, log |cos| / T), and a right routine
    with its own start vector was called wrong in 3 of 40 runs. gradlab now takes 16
    before calling anything wrong: it agrees, or (the spread of 16 too wide for T = 300
    to judge) refuses."""
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(2, 3, weight_scale=2.0, seed=24)
    xs = 2.0 * torch.randn(300, 1, 3, generator=torch.Generator().manual_seed(24),
                           dtype=torch.float64)
    verdicts = []
    for start in range(40):
        try:
            result = gradlab.check_lyapunov(routine("rnn_relu", start=start), cell, params,
                                            xs, 1)
            assert result.ok, f"start vector {start}: {result}"
            verdicts.append("agrees")
        except GradlabError as err:
            assert "too short to check" in str(err)
            verdicts.append("refused")
    assert verdicts.count("agrees") > 20              # (the check still judges, mostly)


def test_a_wrong_routine_is_still_called_wrong_after_more_start_vectors():
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(2, 3, weight_scale=2.0, seed=24)
    xs = 2.0 * torch.randn(1500, 1, 3, generator=torch.Generator().manual_seed(24),
                           dtype=torch.float64)
    right = routine("rnn_relu")
    result = gradlab.check_lyapunov(lambda P, x, k: right(P, x, k) / math.log(2), cell,
                                    params, xs, 1)
    assert not result.ok and "log base 2" in result.diagnosis[0], str(result)


def test_round_off_where_the_exact_exponent_is_minus_inf_agrees():
    """Dead ReLU units leave a sequence's product of rank 1; the exact second exponent is
    -inf, and torch.linalg.qr reports round-off there (-1.02, from a step or two at
    log eps / T). gradlab's three start vectors all gave -inf, and the right routine was
    called "inf" off. Anything at or below what QR's round-off can reach agrees."""
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(8, 3, weight_scale=1.0, seed=60)
    base = 0.3 * torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(60),
                             dtype=torch.float64)
    xs = base.repeat(334, 1, 1)[:1000]
    reference = routine("rnn_relu", start=661)

    def fn(P, x, k):
        # torch 2.13's QR reports round-off in these two places, torch 2.4.1's an exact
        # zero (-inf): the round-off 2.13 reports, whichever torch runs the test
        out = reference(P, x, k).clone()
        for (b, i), value in {(1, 1): -1.02125882, (3, 1): -0.8036386}.items():
            out[b, i] = value if torch.isneginf(out[b, i]) else out[b, i]
        return out

    assert np.isneginf(gradlab.lyapunov(cell, params, xs, 7).exponents[1, 1])  # premise
    assert gradlab.check_lyapunov(fn, cell, params, xs, 7).ok
    lifted = lambda P, x, k: torch.where(torch.isfinite(fn(P, x, k)), fn(P, x, k),   # noqa
                                         torch.tensor(-0.2, dtype=torch.float64))
    assert not gradlab.check_lyapunov(lifted, cell, params, xs, 7).ok   # above the roof


@pytest.fixture(scope="module")
def lstm_case():
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 3, weight_scale=2.0, gate_bias=1.0, seed=1)
    base = 2.0 * torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)
    return cell, params, base.repeat(334, 1, 1)[:1000]


def test_a_sum_that_cannot_judge_is_said_so(lstm_case):
    """Re-orthonormalised every 10 steps, a routine resolves the top k and not all S, so
    the sum of all S cannot judge it; a mean over T - 1 steps then passed with nothing
    said. Now the pass says the sum missed by the size of an order-1/T error and why it
    cannot judge."""
    cell, params, xs = lstm_case
    result = gradlab.check_lyapunov(routine("lstm", every=10, steps=-1, rows=False), cell,
                                    params, xs, 2)
    assert result.ok
    assert "the sum cannot judge here: your exponents stray from gradlab's" in \
        result.diagnosis[-1], str(result)
    right = gradlab.check_lyapunov(routine("lstm", rows=False), cell, params, xs, 2)
    assert right.ok and not any("sum" in d for d in right.diagnosis), str(right)


def test_a_float32_routine_off_by_a_step_is_not_passed_silently(lstm_case):
    """In float32, QR keeps log |det J_t| too coarsely to judge the sum (S^2 eps kappa),
    and a float32 routine averaging over T - 1 steps passed with nothing said; the sum
    was also taken in float32 from float32 Jacobians. A right float32 routine passes
    without the caveat."""
    cell, params, xs = lstm_case
    wrong = gradlab.check_lyapunov(routine("lstm", steps=-1, dtype=torch.float32), cell,
                                   params, xs, 2)
    assert wrong.ok and "the sum cannot judge here" in wrong.diagnosis[-1], str(wrong)
    right = gradlab.check_lyapunov(routine("lstm", dtype=torch.float32), cell, params, xs, 2)
    assert right.ok and not any("sum" in d for d in right.diagnosis), str(right)


def test_a_routine_that_cannot_be_asked_for_all_exponents_is_said_so(lstm_case):
    cell, params, xs = lstm_case
    fixed = routine("lstm")(params, xs, 2)
    result = gradlab.check_lyapunov(lambda P, x, k: fixed, cell, params, xs, 2)
    assert result.ok and "your routine returned shape (2, 2), not (8,) or (2, 8)" in \
        result.diagnosis[-1], str(result)


def test_round_off_above_the_exponent_before_it_is_no_round_off():
    """One step in 2400 with six dead units makes the third exponent -inf; the round-off
    roof alone (mean log |J_t|_F) sat above the top exponent, and -0.2 or +0.5 in its
    place agreed. A round-off value also lies below the exponent before it."""
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(8, 3, weight_scale=1.5, seed=5)
    xs = torch.randn(2400, 2, 3, generator=torch.Generator().manual_seed(5),
                     dtype=torch.float64)[:, :1].contiguous()
    right = routine("rnn_relu", start=5)
    assert np.isneginf(gradlab.lyapunov(cell, params, xs, 3).exponents[0, 2])
    assert gradlab.check_lyapunov(right, cell, params, xs, 3).ok
    for value in (-0.2, 0.5):
        def wrong(P, x, k, value=value):
            out = right(P, x, k).clone()
            out[:, 2] = value
            return out
        assert not gradlab.check_lyapunov(wrong, cell, params, xs, 3).ok, value


def test_reverse_time_within_the_wider_tolerance_is_said_so():
    """After 16 start vectors widened the exact exponents' tolerance, a reverse-time
    routine (gru, period-3 inputs) agreed with nothing said: the variant was still judged
    at the tolerance of 3. It is judged at the wider one too, and the pass says the check
    cannot tell them apart."""
    cell = gradlab.cell("gru")
    params = cell.init_params(2, 3, weight_scale=2.0, seed=1)
    base = 2.0 * torch.randn(3, 1, 3, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64)
    xs = base.repeat(201, 1, 1)[:600].contiguous()
    result = gradlab.check_lyapunov(routine("gru", start=19, transpose=True), cell, params,
                                    xs, 2)
    assert not result.ok or "cannot tell the exact exponents from" in str(result), str(result)


def test_dead_units_leave_the_sum_unable_to_judge_and_it_is_said_so():
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(8, 3, weight_scale=1.5, seed=5)
    xs = torch.randn(2400, 1, 3, generator=torch.Generator().manual_seed(5),
                     dtype=torch.float64)
    result = gradlab.check_lyapunov(routine("rnn_relu", start=5), cell, params, xs, 2)
    assert result.ok and "some J_t are exactly singular" in str(result), str(result)


def test_nan_when_asked_for_all_exponents_is_named_as_such(lstm_case):
    cell, params, xs = lstm_case
    right = routine("lstm")
    fn = lambda P, x, k: right(P, x, k) if k < 8 else torch.full((2, 8), math.nan)  # noqa
    result = gradlab.check_lyapunov(fn, cell, params, xs, 2)
    assert not result.ok and "yours hold nan or inf" in result.diagnosis[0], str(result)
