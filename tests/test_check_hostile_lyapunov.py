"""`check_lyapunov` and `assert_lyapunov` against exponents under test that misbehave:
tolerances and answers, runs (or per-sequence rows) too short to judge, more exponents
than the state has or smaller than it resolves, a ReLU unit dying at some steps, a
trajectory that overflows, a wrong row count, a mean a zero product hides, sequences or
exponents it cannot tell apart, exponents out of order and the cell part alone. Each case
was a false pass or a raw error before."""

import re
import sys

import numpy as np
import pytest
import torch

import gradlab
from gradlab import check_lyapunov
from gradlab.errors import GradlabError
from gradlab.verification.exponents import exponents
from gradlab.verification.trajectory import trajectory_jacobians


def test_check_lyapunov_tolerance_and_answers():
    gru = gradlab.cell("gru")
    p = gru.init_params(3, 2, seed=0)
    xs = torch.randn(1200, 2, 2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    mine = lambda P, xs, k: gradlab.lyapunov(gru, P, xs, k).exponents        # noqa: E731
    for atol in (float("inf"), -1, 0, float("nan"), "a"):
        with pytest.raises(GradlabError, match="atol must be a positive finite number"):
            check_lyapunov(lambda P, xs, k: np.zeros(k), gru, p, xs, 2, atol=atol)
    with pytest.raises(GradlabError, match="called sys.exit"):
        check_lyapunov(lambda P, xs, k: sys.exit(0), gru, p, xs, 2)
    with pytest.raises(GradlabError, match="returned str"):
        check_lyapunov(lambda P, xs, k: "ab", gru, p, xs, 2)
    assert not check_lyapunov(lambda P, xs, k: np.full(k, np.nan), gru, p, xs, 2).ok
    assert check_lyapunov(mine, gru, p, xs, 5).ok                # k capped at S = 3, as ours
    rnn = gradlab.cell("rnn_tanh")
    zero = {k: torch.zeros_like(v) for k, v in rnn.init_params(3, 2, seed=0).items()}
    exact = lambda P, xs, k: gradlab.lyapunov(rnn, P, xs, k).exponents       # noqa: E731
    result = check_lyapunov(exact, rnn, zero, xs, 2)             # every exponent -inf
    assert result.ok and np.all(result.exact == -np.inf)
    assert not check_lyapunov(lambda P, xs, k: np.zeros(k), rnn, zero, xs, 2).ok


def test_check_lyapunov_refuses_runs_too_short_to_judge_and_checks_each_row():
    """At T = 20 gradlab's own estimate moves by 0.09 with the start vector: zeros, or
    the exact exponents times 1.1, passed as 'agrees'. Per-sequence rows off by +-1 with
    the right mean passed too, and a function writing into params was judged on its
    own edit."""
    gru = gradlab.cell("gru_torch")
    p = gru.init_params(4, 3, weight_scale=1.5, seed=2)
    mine = lambda P, xs, k: gradlab.lyapunov(gru, P, xs, k).exponents        # noqa: E731
    gen = torch.Generator().manual_seed(5)
    short = torch.randn(20, 2, 3, dtype=torch.float64, generator=gen)
    for wrong in (lambda P, xs, k: np.zeros(k), lambda P, xs, k: 1.1 * mine(P, xs, k)):
        with pytest.raises(GradlabError, match="too short to check"):
            check_lyapunov(wrong, gru, p, short, 2)
    assert not check_lyapunov(lambda P, xs, k: np.zeros(k), gru, p, short, 2, atol=0.01).ok
    xs = torch.randn(1200, 2, 3, dtype=torch.float64, generator=gen)
    assert check_lyapunov(mine, gru, p, xs, 2).ok
    shifted = lambda P, xs, k: mine(P, xs, k) + np.array([[1.0], [-1.0]])   # noqa: E731
    result = check_lyapunov(shifted, gru, p, xs, 2)
    # both rows are off by 1: which one is named first depends on rounding (torch 2.4
    # named sequence 1, 2.13 sequence 0)
    assert not result.ok and re.search(r"sequence [01] is 1 from", result.diagnosis[0])

    def writes(P, xs, k):
        P["W_hh"].mul_(0.0) if "W_hh" in P else next(iter(P.values())).mul_(0.0)
        xs.mul_(0.0)
        return mine(P, xs, k)
    before = {k: v.clone() for k, v in p.items()}
    assert not check_lyapunov(writes, gru, p, xs, 2).ok
    assert all(torch.equal(p[k], before[k]) for k in p)


def test_check_lyapunov_refuses_more_exponents_than_the_state_has():
    """Asked for 7 of a 6-dimensional state's exponents, an answer of 7 had its seventh
    (here 123) cut off unchecked, and passed."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, seed=0, weight_scale=2.0, bias_scale=0.5)
    xs = torch.randn(200, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def seven(P, x, k):
        right = torch.as_tensor(gradlab.lyapunov(lstm, P, x, 6).mean, dtype=torch.float64)
        return torch.cat([right, torch.tensor([123.0], dtype=torch.float64)])
    with pytest.raises(GradlabError, match=r"returned 7 exponents, but a state of size 6 "
                                           r"has only 6; expected \(6,\) or \(B, 6\)"):
        check_lyapunov(seven, lstm, params, xs, 7)


def test_check_lyapunov_refuses_exponents_smaller_than_it_resolves():
    """Near the edge (exponents ~ -1e-3) a 0.1 floor on their size let zeros and a log10
    answer 'agree' at T = 3000."""
    torch.manual_seed(1)
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(8, 4, seed=0, gate_bias=8, weight_scale=0.3)
    xs = torch.randn(3000, 2, 4, dtype=torch.float64)
    zeros = lambda p, x, k: torch.zeros(x.shape[1], k, dtype=torch.float64)  # noqa: E731
    with pytest.raises(gradlab.GradlabError, match="xs is too short to check exponents"):
        check_lyapunov(zeros, lstm, params, xs, 4)


def test_check_lyapunov_passes_gradlab_where_a_relu_unit_dies_at_some_steps():
    """Whether an exponent comes out -inf or -8.39 depends on the start vector where ReLU
    units die at some steps: gradlab's own seed 2 failed its check, with the headline
    'max |difference| 0'."""
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=2.0)
    xs = torch.randn(600, 2, 4, dtype=torch.float64)
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k, seed=2).exponents  # noqa: E731
    assert check_lyapunov(own, relu, params, xs, 8).ok
    shift = np.array([[0.5] + [0.0] * 7, [0.0] * 8])         # sequence 0 is finite
    result = check_lyapunov(lambda p, x, k: own(p, x, k) + shift, relu, params, xs, 8)
    assert not result.ok and 0.49 < float(result.max_error) < 0.51     # not "0"


def test_check_lyapunov_refuses_a_trajectory_that_overflows():
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=4.0)
    xs = torch.randn(1000, 1, 4, dtype=torch.float64)
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k).exponents         # noqa: E731
    with pytest.raises(GradlabError, match="the state overflows"):
        check_lyapunov(own, relu, params, xs, 3)


def test_assert_lyapunov_warns_when_a_mistake_would_agree_too():
    torch.manual_seed(1)
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, seed=0, weight_scale=2.0)
    xs = torch.randn(600, 2, 4, dtype=torch.float64)[:, :1]
    own = lambda p, x, k: gradlab.lyapunov(relu, p, x, k, seed=2).exponents  # noqa: E731
    # an atol that the reverse-time variant meets too (its distance here is 0.33, yours
    # 0.026): with the measured default the margin depends on the machine's rounding
    with pytest.warns(UserWarning) as caught:     # (an atol that wide hides more: said too)
        gradlab.testing.assert_lyapunov(own, relu, params, xs, 8, atol=1.0)
    assert any("cannot tell the exact exponents from" in str(w.message) for w in caught)


def test_check_lyapunov_names_a_wrong_row_count_whatever_the_values():
    """(B', k) with B' != B was named only when the mean happened to agree."""
    gru = gradlab.cell("gru")
    params = gru.init_params(4, 2, seed=0, weight_scale=1.5)
    xs = torch.randn(500, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    two = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).exponents[:2] + 5    # noqa: E731
    with pytest.raises(GradlabError, match=re.escape("returned 2 rows; xs holds 3 sequences "
                                                     "(expected (2,) or (3, 2))")):
        check_lyapunov(two, gru, params, xs, 2)
    flipped = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).exponents.T     # noqa: E731
    with pytest.raises(GradlabError, match=re.escape("(expected (2,) or (3, 2); yours is "
                                                     "its transpose)")):
        check_lyapunov(flipped, gru, params, xs, 2)


def test_check_lyapunov_does_not_name_a_mistake_it_cannot_tell_from_none():
    """A correct Benettin loop shifted by 0.01 was told 'Your exponents match the
    transposed Jacobian (reverse time)', on inputs where the exact exponents and the
    reverse-time ones are themselves within the tolerance of each other. (At the measured
    tolerance such a shift is now refused: 16 start vectors, taken before anything is
    called wrong, spread by 0.0138 here, where 3 had read 0.004. So the answer here lies
    0.01 past the reverse-time exponents, away from the exact ones, with atol 0.012.)"""
    torch.manual_seed(0)
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(300, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    J = trajectory_jacobians(lstm, params, xs)
    exact, reverse = exponents(J, 4).mean(0), exponents(J, 4, transpose=True).mean(0)
    assert 0 < np.abs(reverse - exact).max() < 0.012                 # the premise
    answer = reverse + 0.01 * np.sign(reverse - exact)
    result = check_lyapunov(lambda P, x, k: answer, lstm, params, xs, 4, atol=0.012)
    assert not result.ok and "reverse" not in str(result).split("lie near")[0]
    assert "cannot be told" in str(result)


def test_check_lyapunov_refuses_a_mean_that_a_zero_product_hides():
    """Two of four sequences hit a step with every ReLU unit dead: the mean exact exponents
    were -inf, and a function returning -inf (or anything log2 / summed of a mean) 'agreed'
    with max |difference| 0."""
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(500, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"a mean hides what is to check.*\(4, 2\)"):
        check_lyapunov(lambda P, x, k: np.full(k, -np.inf), relu, params, xs, 2)
    rows = lambda P, x, k: gradlab.lyapunov(relu, P, x, k).exponents   # noqa: E731
    assert check_lyapunov(rows, relu, params, xs, 2).ok


def test_check_lyapunov_refuses_per_sequence_rows_too_short_to_judge():
    """Rows per sequence at T = 100 were checked with a tolerance (0.19) larger than the
    exponents themselves (-0.15): a log2 mistake passed."""
    relu = gradlab.cell("rnn_relu")
    params = relu.init_params(8, 4, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(100, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    log2 = lambda P, x, k: gradlab.lyapunov(relu, P, x, k).exponents / np.log(2)  # noqa: E731
    try:
        result = check_lyapunov(log2, relu, params, xs, 2)
    except GradlabError as err:
        assert "too short" in str(err)
    else:
        assert not result.ok


def test_check_lyapunov_says_when_sequences_or_exponents_cannot_be_told_apart():
    """Rows rolled between sequences, one sequence's row for all, and one sequence's
    exponents given as the mean printed a bare "agrees" (3 and 4 of 9 runs at B = 4,
    T = 300): the sequences' exponents lay within the tolerance of each other. And at
    B = k a mean over the wrong axis passed where two exponents lay within it."""
    gru = gradlab.cell("gru")
    params = gru.init_params(5, 3, weight_scale=2.0, bias_scale=0.3, seed=2)
    xs = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(12),
                     dtype=torch.float64)
    rows = torch.as_tensor(gradlab.lyapunov(gru, params, xs, 3).exponents)
    # (T = 300 is too short for the default tolerance to judge the top exponent, 0.17, to
    # 5 %: given as wide as it once was, rows rolled or one row for all fail row by row,
    # and one sequence's row given as the mean agrees only with the blind spot said)
    for wrong, fails in ((rows.roll(1, 0), True), (rows[:1].expand(4, 3).clone(), True),
                         (rows[0], False)):
        result = check_lyapunov(lambda p, x, k, w=wrong: w, gru, params, xs, 3, atol=0.02)
        said = " ".join(result.diagnosis)
        if fails:
            assert not result.ok and "The mean over sequences agrees, but sequence" in said
        else:
            assert result.ok and "one sequence's own exponents lie within" in said, said
    with pytest.raises(gradlab.GradlabError, match="xs is too short to check exponents"):
        check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3)
    right = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=0.02)
    assert right.ok and "rows given for the wrong sequence, or one row for all" in \
        " ".join(right.diagnosis)
    wide = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=5.0)
    assert "two of the exact exponents are only" in " ".join(wide.diagnosis)
    distinct = check_lyapunov(lambda p, x, k: rows, gru, params, xs, 3, atol=1e-9)
    assert not any("lie within" in d or "only" in d for d in distinct.diagnosis)
    # a row is held to its own tolerance, wider than the mean's: rows rolled passed
    # silently where the closest sequences were 0.030 apart, the mean's tolerance 0.0247
    params = gru.init_params(5, 3, weight_scale=2.0, bias_scale=0.3, seed=8)
    xs = torch.randn(800, 4, 3, generator=torch.Generator().manual_seed(108),
                     dtype=torch.float64)
    rows = torch.as_tensor(gradlab.lyapunov(gru, params, xs, 3).exponents)
    rolled = check_lyapunov(lambda p, x, k: rows.roll(1, 0), gru, params, xs, 3)
    assert not rolled.ok or "one sequence's own exponents lie within" in " ".join(
        rolled.diagnosis), rolled.diagnosis


def test_check_lyapunov_names_exponents_out_of_order():
    """An exact permutation of the right exponents was "match no combination of ..."."""
    gru = gradlab.cell("gru")
    params = gru.init_params(4, 2, seed=0, weight_scale=1.5)
    xs = torch.randn(800, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixed = lambda p, x, k: gradlab.lyapunov(gru, p, x, k).mean[::-1].copy()   # noqa: E731
    result = check_lyapunov(mixed, gru, params, xs, 3)
    assert not result.ok and len(result.diagnosis) == 1, result.diagnosis
    assert result.diagnosis[0].startswith("Your exponents are the exact ones out of order")


def test_check_lyapunov_names_the_cell_part_alone():
    """Only the first state part (h) was tried alone: a QR loop over the LSTM's c block,
    diag(f), matched "no combination"."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(5, 3, seed=0, weight_scale=1.5, bias_scale=0.5)
    xs = torch.randn(600, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jacobian = lstm.jacobian_fn("state")

    def c_alone(p, x, k):
        h, c = gradlab.flow.run_states(lstm, p, x)
        Q = torch.linalg.qr(torch.randn(x.shape[1], 5, k, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(1)))[0]
        total = 0
        for t in range(x.shape[0]):
            Q, R = torch.linalg.qr(jacobian(p, (h[t], c[t]), x[t])[:, 5:, 5:] @ Q)
            total = total + R.diagonal(dim1=-2, dim2=-1).abs().log()
        return (total / x.shape[0]).mean(0)

    result = check_lyapunov(c_alone, lstm, params, xs, 3)
    assert not result.ok and result.diagnosis[0].startswith(
        "Your exponents match the state part c alone"), result.diagnosis
