"""Session 37 probe: numerical truth of gradient_flow and lyapunov against an independent
reference written from the definitions in the README and docstrings, not from gradlab's walk or QR loop.

Reference: states by stepping `cell.step_fn("torch")`; J_t = torch.func.jacrev of one
sequence's step in float64; P_k = d s_T / d s_{T-k} = J_T ... J_{T-k+1} multiplied out
(renormalised by its Frobenius norm each lag where a horizon is long, the log of the scale
summed); norms by torch.linalg.svdvals / matrix_norm; the smallest singular value, where
P_k is ill-conditioned, as 1 / ||P_k^{-1}||_2 with P_k^{-1} = J_{T-k+1}^{-1} P_{k-1}^{-1}
(torch.linalg.solve); Lyapunov exponents by a plain torch.linalg.qr Benettin loop from the
documented Q_0 draw. Hypothesis draws cells, sizes, init options, input scales, state0 and
reverse (derandomized: every run sees the same examples).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradlab

ALL = gradlab.cells()
PROBE = settings(max_examples=4, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


def hidden_of(cell, params):
    return next(params[k].shape[0] for k in cell.param_names if k.startswith("W"))


def reference(cell, params, xs, state0=None):
    """(states s_0..s_T as tuples, [J_1..J_T] each (B, S, S) by jacrev of one sequence)."""
    step = cell.step_fn("torch")
    B = xs.shape[1]
    if state0 is None:
        n = hidden_of(cell, params)
        state0 = tuple(torch.zeros(B, n, dtype=xs.dtype) for _ in cell.state_names)
    sizes = [s.shape[1] for s in state0]
    s, states, Js = state0, [state0], []
    for x in xs:
        def one(flat, xb):
            return torch.cat(step(params, tuple(torch.split(flat[None], sizes, 1)),
                                  xb[None]), 1)[0]
        flat = torch.cat(s, 1)
        Js.append(torch.stack([torch.func.jacrev(one)(flat[b], x[b]) for b in range(B)]))
        s = step(params, s, x)
        states.append(s)
    return states, Js


def products(Js):
    """[P_1..P_T], P_k = J_T ... J_{T-k+1} (no rescaling: short horizons only)."""
    T, (B, S, _) = len(Js), Js[0].shape
    P, out = torch.eye(S, dtype=Js[0].dtype).expand(B, S, S), []
    for k in range(1, T + 1):
        P = P @ Js[T - k]
        out.append(P)
    return out


def long_log_norms(Js):
    """{"spectral", "frobenius", "min_singular": (B, T)} over any horizon: P_k kept at unit
    Frobenius norm with the log of the scale summed; P_k^{-1} likewise."""
    T, (B, S, _) = len(Js), Js[0].shape
    P = Q = torch.eye(S, dtype=torch.float64).expand(B, S, S)
    lp = lq = torch.zeros(B, dtype=torch.float64)
    out = {"spectral": [], "frobenius": [], "min_singular": []}
    for k in range(1, T + 1):
        J = Js[T - k].double()
        P = P @ J
        s = torch.linalg.matrix_norm(P, "fro")
        P, lp = P / s[:, None, None], lp + torch.log(s)
        out["frobenius"].append(lp)
        out["spectral"].append(lp + torch.log(torch.linalg.svdvals(P)[:, 0]))
        if torch.linalg.det(J).abs().min() > 0:
            Q = torch.linalg.solve(J, Q)
            q = torch.linalg.matrix_norm(Q, "fro")
            Q, lq = Q / q[:, None, None], lq + torch.log(q)
            out["min_singular"].append(-(lq + torch.log(torch.linalg.matrix_norm(Q, 2))))
        else:
            out["min_singular"].append(torch.full((B,), math.nan, dtype=torch.float64))
    return {k: torch.stack(v, 1).numpy() for k, v in out.items()}


def log_norm_of(P, kind):
    """log of one kind of norm of P (B, ...) as a (B,) array."""
    if kind == "frobenius":
        return torch.log(torch.linalg.matrix_norm(P, "fro")).numpy()
    return torch.log(torch.linalg.svdvals(P)[:, 0]).numpy()


@st.composite
def draws(draw, cells=ALL, max_hidden=4, max_steps=8):
    name = draw(st.sampled_from(cells))
    cell = gradlab.cell(name)
    n, m = draw(st.integers(1, max_hidden)), draw(st.integers(1, 4))
    T, B = draw(st.integers(2, max_steps)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 1000))
    params = cell.init_params(
        n, m, init=draw(st.sampled_from(["gaussian", "orthogonal"])),
        weight_scale=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
        gate_bias=draw(st.floats(-3, 3)), bias_scale=draw(st.sampled_from([0.0, 1.0])),
        seed=seed)
    gen = torch.Generator().manual_seed(seed)
    xs = draw(st.sampled_from([0.0, 0.1, 1.0, 3.0])) * torch.randn(
        T, B, m, generator=gen, dtype=torch.float64)
    state0 = (tuple(0.5 * torch.randn(B, n, generator=gen, dtype=torch.float64)
                    for _ in cell.state_names) if draw(st.booleans()) else None)
    return cell, params, xs, state0, draw(st.booleans()), seed


def rel(a, b):
    """max relative difference of two log-norm arrays as norms: |exp(a - b) - 1|."""
    fin = np.isfinite(b)
    assert np.array_equal(np.isfinite(a), fin), (a, b)
    assert np.array_equal(a[~fin], b[~fin]), (a, b)
    return float(np.abs(np.expm1(a[fin] - b[fin])).max()) if fin.any() else 0.0


@PROBE
@given(draws())
def test_log_norms_and_blocks_are_those_of_the_jacrev_products(draw):
    cell, params, xs, state0, reverse, _ = draw
    flow = gradlab.gradient_flow(cell, params, xs, state0=state0, reverse=reverse)
    T, B = xs.shape[:2]
    _, Js = reference(cell, params, xs.flip(0) if reverse else xs, state0)
    Ps = products(Js)
    assert np.array_equal(flow.lags, np.arange(1, T + 1))
    n = hidden_of(cell, params)
    for kind in ("spectral", "frobenius"):
        got = flow.log_norm(kind)
        assert got.shape == (B, T) and got.dtype == np.float64
        assert rel(got, np.stack([log_norm_of(P, kind) for P in Ps], 1)) < 1e-10
        for i, a in enumerate(cell.state_names):      # (a, b) block: rows of a, columns of b
            for j, b in enumerate(cell.state_names):
                want = np.stack([log_norm_of(P[:, i * n:(i + 1) * n, j * n:(j + 1) * n], kind)
                                 for P in Ps], 1)
                assert rel(flow.block_log_norm(a, b, kind), want) < 1e-10, (a, b, kind)


@PROBE
@given(draws())
def test_min_singular_is_the_smallest_singular_value_of_the_product(draw):
    cell, params, xs, state0, reverse, _ = draw
    flow = gradlab.gradient_flow(cell, params, xs, state0=state0, reverse=reverse,
                                 norms=("min_singular",))
    got = flow.log_norm("min_singular")
    _, Js = reference(cell, params, xs.flip(0) if reverse else xs, state0)
    assert got.shape == xs.shape[1::-1]
    for k, P in enumerate(products(Js)):
        sv = torch.linalg.svdvals(P)
        for b in range(xs.shape[1]):
            if sv[b, -1] == 0:             # exactly singular: log 0 = -inf, as documented
                assert got[b, k] == -math.inf
            elif sv[b, -1] > 1e-6 * sv[b, 0]:     # svdvals resolves it to ~1e-10
                assert abs(math.expm1(got[b, k] - math.log(sv[b, -1]))) < 1e-9, (b, k)


def test_min_singular_of_a_zero_or_singular_jacobian_is_minus_inf():
    """hidden = 1 with W = 0: every J_t is 0, every norm log 0 = -inf, the rate -inf (product
    zero / product singular); the LSTM at W = 0: d h'/d h = 0, singular but not zero."""
    tanh = gradlab.cell("rnn_tanh")
    params = tanh.init_params(1, 2, weight_scale=0.0, seed=0)
    flow = gradlab.gradient_flow(tanh, params, torch.randn(5, 2, 2, dtype=torch.float64),
                                 norms=("spectral", "frobenius", "min_singular"))
    for kind in ("spectral", "frobenius", "min_singular"):
        assert (flow.log_norm(kind) == -math.inf).all()
        assert flow.rate(kind) == -math.inf and flow.timescale(kind) == 0
    assert flow.why("min_singular") == gradlab.flow.SINGULAR
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2, weight_scale=0.0, seed=1)
    flow = gradlab.gradient_flow(lstm, params, torch.randn(4, 2, 2, dtype=torch.float64),
                                 norms=("spectral", "min_singular"))
    assert np.isfinite(flow.log_norm()).all()
    assert (flow.log_norm("min_singular") == -math.inf).all()
    assert (flow.log_condition() == math.inf).all()


@PROBE
@given(draws(max_steps=16), st.data())
def test_rate_is_the_least_squares_slope_of_the_mean_log_norm(draw, data):
    cell, params, xs, state0, reverse, _ = draw
    flow = gradlab.gradient_flow(cell, params, xs, state0=state0, reverse=reverse)
    T = xs.shape[0]
    start = data.draw(st.integers(1, T - 1))
    stop = data.draw(st.integers(start + 1, T))
    for kind in ("spectral", "frobenius"):
        y = flow.log_norm(kind).mean(0)[start - 1:stop]
        if not np.isfinite(y).all():
            continue
        want = np.polyfit(np.arange(start, stop + 1), y, 1)[0]
        got = flow.rate(kind, start=start, stop=stop)
        # the documented rounding rule: a change over the lags within 64 eps (plus 64 eps
        # of the values' size) reads 0
        tiny = 64 * np.finfo(np.float64).eps * (1 + np.abs(y).max())
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want)) or \
            (got == 0 and abs(want) * (stop - start + 1) <= tiny), (got, want)


def benettin(Js, k, seed, discard):
    """log |R_t[i, i]| (T - discard, B, k) from Q_0 = qr(Generator(seed).randn(B, S, k))."""
    B, S, _ = Js[0].shape
    k = min(k, S)
    Q = torch.linalg.qr(torch.randn(B, S, k, generator=torch.Generator().manual_seed(seed),
                                    dtype=torch.float64))[0]
    logs = []
    for J in Js:
        Q, R = torch.linalg.qr(J @ Q)
        logs.append(torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs()))
    return torch.stack(logs)[discard:].numpy()


@PROBE
@given(draws(cells=["rnn_tanh", "lstm", "gru", "mgu", "minimal_rnn", "peephole_lstm"]),
       st.data())
def test_lyapunov_is_benettins_qr_loop(draw, data):
    cell, params, xs, state0, reverse, seed = draw
    T, B = xs.shape[:2]
    k = data.draw(st.integers(1, 14))
    discard = data.draw(st.integers(0, T - 1))
    got = gradlab.lyapunov(cell, params, xs, k, discard=discard, state0=state0, seed=seed,
                           reverse=reverse)
    _, Js = reference(cell, params, xs.flip(0) if reverse else xs, state0)
    logs = benettin(Js, k, seed, discard)
    S = Js[0].shape[1]
    kept = min(k, S)                                        # k is capped at S
    assert got.exponents.shape == (B, kept) and got.running.shape == (T - discard, kept)
    assert got.steps == T - discard and got.discard == discard
    with np.errstate(invalid="ignore"):       # -inf - -inf where a J_t is zero
        check_exponents(got, logs, T, B, discard)
    assert np.array_equal(gradlab.gradient_flow(cell, params, xs, state0=state0,
                                                reverse=reverse, seed=seed)
                          .lyapunov(k, discard=discard), got.mean, equal_nan=True)


def check_exponents(got, logs, T, B, discard):
    per = logs.mean(0)
    # directions QR cannot resolve (stretched by < ~1e-6 of the top a step: round-off
    # there is amplified past 1e-10) are left out; those rows are QR's own round-off
    sure = (logs.min(0) > logs.max(2, keepdims=True).min(0) - 13.8).all(0)
    assert np.abs(got.exponents - per)[:, sure].max(initial=0) < 1e-10
    assert np.allclose(got.mean[sure], per.mean(0)[sure], rtol=0, atol=1e-10)
    running = logs.cumsum(0).mean(1) / np.arange(1, T - discard + 1)[:, None]
    assert np.abs(got.running - running)[:, sure].max(initial=0) < 1e-10
    if B > 1:              # the sample standard deviation (ddof 1) over sqrt(B)
        want = per.std(0, ddof=1) / math.sqrt(B)
        assert np.abs(got.stderr - want)[sure].max(initial=0) < 1e-10
    else:
        assert np.isnan(got.stderr).all()


def test_lyapunov_refuses_discard_past_the_run_and_caps_k_at_the_state():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(2, 2, seed=0)
    xs = torch.randn(5, 2, 2, dtype=torch.float64)
    for discard in (5, 6, -1):
        with pytest.raises(gradlab.GradlabError, match=r"discard must be an integer in 0\.\.4"):
            gradlab.lyapunov(lstm, params, xs, 2, discard=discard)
    assert gradlab.lyapunov(lstm, params, xs, 2, discard=4).running.shape == (1, 2)
    assert gradlab.lyapunov(lstm, params, xs, 100).exponents.shape == (2, 4)


def test_log_norms_stay_finite_where_the_norm_underflows_float64():
    """rnn_tanh at weight scale 0.01: ||P_k|| ~ e^{-4.4 k}, below float64's 1e-308 from lag
    ~160; log norms finite and equal to the rescaled reference at every lag."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(3, 2, weight_scale=0.01, seed=0)
    xs = torch.randn(300, 2, 2, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    flow = gradlab.gradient_flow(cell, params, xs,
                                 norms=("spectral", "frobenius", "min_singular"))
    jac = cell.jacobian_fn("state", "torch")
    states = flow.states[0]
    want = long_log_norms([jac(params, (states[t],), xs[t]) for t in range(300)])
    for kind in ("spectral", "frobenius", "min_singular"):
        got = flow.log_norm(kind)
        assert np.isfinite(got).all() and got[:, -1].max() < -1000
        assert np.abs(got - want[kind]).max() < 1e-12 * np.abs(want[kind]).max()


@pytest.mark.parametrize("dtype, steps, tiny", [(torch.float64, 300, 1e-300),
                                                (torch.float32, 40, 1e-38)])
def test_log_norms_stay_finite_where_the_product_overflows(dtype, steps, tiny):
    """rnn_relu at weight scale 50 from a tiny state: the states stay finite while ||P_k||
    passes the dtype's largest number; log norms finite and equal to the reference."""
    cell = gradlab.cell("rnn_relu")
    params = cell.init_params(4, 2, weight_scale=50.0, seed=3, dtype=dtype)
    xs = torch.zeros(steps, 2, 2, dtype=dtype)
    flow = gradlab.gradient_flow(cell, params, xs,
                                 state0=(torch.full((2, 4), tiny, dtype=dtype),))
    assert torch.isfinite(flow.states[0]).all()
    jac = cell.jacobian_fn("state", "torch")
    states = flow.states[0]
    want = long_log_norms([jac(params, (states[t],), xs[t]) for t in range(steps)])
    top = math.log(torch.finfo(dtype).max)
    for kind in ("spectral", "frobenius"):
        got = flow.log_norm(kind)
        assert np.isfinite(got).all() and got[:, -1].min() > top
        # the norm to 1e-10 relative in float64 (the reference's own chain rounds to a few
        # 1e-12 over 300 steps), to 1e-5 in float32 (40 steps of float32 Jacobians)
        assert np.abs(got - want[kind]).max() < (1e-10 if dtype == torch.float64 else 1e-5)
    assert flow.rate() > 0 and flow.timescale() == math.inf


@settings(max_examples=4, deadline=None, derandomize=True)
@given(st.sampled_from(ALL), st.integers(1, 5), st.integers(2, 10), st.integers(0, 99))
def test_float32_norms_are_the_float32_products_norms_to_float32_accuracy(name, n, T, seed):
    """float32 params: each log norm agrees with the float64 norm of the product of the same
    (float32) Jacobians to the documented 5e-7 plus the rounding of forming the product."""
    cell = gradlab.cell(name)
    params = cell.init_params(n, 2, weight_scale=1.5, seed=seed, dtype=torch.float32)
    xs = torch.randn(T, 2, 2, generator=torch.Generator().manual_seed(seed))
    flow = gradlab.gradient_flow(cell, params, xs)
    jac = cell.jacobian_fn("state", "torch")
    Js = [jac(params, tuple(s[t] for s in flow.states), xs[t]).double() for t in range(T)]
    Ps = products(Js)
    # forming P_k in float32 rounds each step by ~eps32 of the size of the factors, so
    # relative to ||P_k|| by that times prod ||J_t|| / ||P_k|| (cancellation)
    sizes = np.stack([torch.linalg.matrix_norm(J, "fro").numpy() for J in Js[::-1]], 1)
    eps = torch.finfo(torch.float32).eps
    for kind in ("spectral", "frobenius"):
        got = flow.log_norm(kind)
        assert got.shape == (2, T)
        want = np.stack([log_norm_of(P, kind) for P in Ps], 1)
        fin = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), fin)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            amplified = np.exp(np.log(sizes).cumsum(1)[fin] - want[fin])
        err = np.abs(np.expm1(got[fin] - want[fin]))
        assert (err < 5e-7 + 4 * np.arange(1, T + 1)[None].repeat(2, 0)[fin] * eps
                * amplified).all(), (err, amplified)
