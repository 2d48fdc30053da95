"""gradlab.flow against brute force and exact answers.

Brute force shares nothing with gradient_flow: each step's Jacobian is torch.func.jacrev
of the hand-written oracle (gradlab.verification.oracles), products are formed densely without
renormalisation, norms come from a full SVD (torch.linalg.svdvals) and the loss gradients
from torch.autograd through the oracle chain; a reversed sequence is checked the same way.
Exact answers (derivations/theory.md §3): gated products sigma(a)^k, the LSTM cell path as
a product of forget gates, the constant error carousel, ten thousand steps, and -inf for a
singular Jacobian. Theory: test_flow_theory.py; the rest of the API: test_flow_api.py."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import flow as F
from gradlab.verification.oracles import ORACLES
from conftest import ALL, flat_step, relative

pytestmark = pytest.mark.usefixtures("strict_numpy")

# gradient_flow's spectral norms stop on a certified bound of relative error < 1e-11 in
# sigma (the default rtol, flow.lanczos.RTOL), its other numbers are float64 round-off over a few dozen
# products (~1e-14); 1e-10 keeps an order of magnitude of margin above both.
TOL = 1e-10





def log_root_sum_squares(logs, axis=-1):
    """log sqrt(sum_i exp(2 l_i)), safely in log space (torch: no numpy underflow)."""
    return 0.5 * torch.logsumexp(2 * torch.as_tensor(logs), dim=axis).numpy()


def params_for(cell, n, m, seed=0, **options):
    options = {"weight_scale": 1.3, "bias_scale": 0.4, **options}
    return cell.init_params(n, m, seed=seed, **options)


def brute_force(name, params, xs):
    """Dense products P_k (a list, k = 1..T) from s_0 = 0, and the oracle's one-sample step
    on a flat state, (S,), (m,) -> (S,)."""
    cell, step = gradlab.cell(name), ORACLES[name]
    T, B, m = xs.shape
    n = params[cell.param_names[0]].shape[0]
    parts = len(cell.state_names)

    flat = flat_step(step, params, n)                            # (S,), (m,) -> (S,)
    s, jacobians = torch.zeros(B, n * parts, dtype=xs.dtype), []
    for t in range(T):
        jacobians.append(vmap(jacrev(flat))(s, xs[t]))          # J_{t+1}
        s = vmap(flat)(s, xs[t])
    products, P = [], None
    for k in range(1, T + 1):
        P = jacobians[T - k] if P is None else P @ jacobians[T - k]
        products.append(P)
    return products, flat


def svd_logs(products):
    """(B, T) natural logs of sigma_max, sigma_min and the Frobenius norm."""
    sv = torch.stack([torch.linalg.svdvals(P) for P in products], 1)     # (B, T, S)
    fro = torch.stack([torch.linalg.matrix_norm(P) for P in products], 1)
    return sv[..., 0].log().numpy(), sv[..., -1].log().numpy(), fro.log().numpy()


# --- every cell against brute force --------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_every_cell_matches_brute_force(name, monkeypatch):
    """Spectral / Frobenius / smallest singular value of every P_k, every block, and the
    loss gradients, for every registered cell; the Lanczos path is forced (it is only
    skipped for S <= flow.DENSE_BELOW) and chunks hold 2 lags, so warm starts cross chunks."""
    monkeypatch.setattr(F.lanczos, "DENSE_BELOW", 0)
    cell = gradlab.cell(name)
    n, m, B, T = 5, 3, 2, 9
    params = params_for(cell, n, m, seed=3)
    xs = F.make_inputs("gaussian", T, B, m, seed=4)
    S = n * len(cell.state_names)
    monkeypatch.setitem(F.CHUNK_BYTES, "cpu", 2 * 4 * B * S * S * 8)
    flow = gradlab.gradient_flow(cell, params, xs, norms=F.NORMS)
    products, step = brute_force(name, params, xs)
    spec, smallest, fro = svd_logs(products)
    assert flow.lags.tolist() == list(range(1, T + 1))
    assert relative(flow.log_norm("spectral"), spec) < TOL
    assert relative(flow.log_norm("frobenius"), fro) < TOL
    # svdvals resolves sigma_min only to ~eps * sigma_max; compare where that is < 1e-11
    # of sigma_min (gradient_flow streams P_k^{-1} instead, exact beyond that)
    with np.errstate(invalid="ignore"):                       # a zero product: -inf - -inf
        ok = spec - smallest < math.log(1e4)
    got = flow.log_norm("min_singular")
    assert relative(got[ok], smallest[ok]) < TOL
    assert (got[~ok] <= np.nan_to_num(spec[~ok], neginf=-1e300) - math.log(1e4) + 1e-6).all()
    for a, out_part in enumerate(cell.state_names):
        for b, in_part in enumerate(cell.state_names):
            block = [P.view(B, len(cell.state_names), n, -1, n)[:, a, :, b, :] for P in products]
            bspec, _, bfro = svd_logs(block)
            assert relative(flow.block_log_norm(out_part, in_part), bspec) < TOL
            assert relative(flow.block_log_norm(out_part, in_part, "frobenius"), bfro) < TOL

    # what a loss L = <v, s_T> sees, by autograd through the oracle chain
    v = flow.loss_vector(seed=5)
    x = xs.clone().requires_grad_(True)
    states = [torch.zeros(B, S, dtype=xs.dtype, requires_grad=True)]
    for t in range(T):
        states.append(vmap(step)(states[-1], x[t]))
    grads = torch.autograd.grad((states[-1] @ v).sum(), [*states[:-1], x])
    seen = flow.loss_grad_norms(seed=5, log=True)
    want_state = torch.stack([g.norm(dim=-1) for g in grads[:-1]], 1).log().numpy()
    want_input = grads[-1].norm(dim=-1).T.log().numpy()
    assert relative(seen["state"], want_state) < TOL
    assert relative(seen["input"], want_input) < TOL


@pytest.mark.parametrize("name", ALL)
def test_frobenius_alone_matches_brute_force(name, monkeypatch):
    """With Frobenius norms alone nothing reads a chunk's products after it, so the walk
    keeps two alternating buffers instead: the same numbers, across several chunks."""
    cell = gradlab.cell(name)
    n, m, B, T = 5, 3, 2, 9
    params = params_for(cell, n, m, seed=6)
    xs = F.make_inputs("gaussian", T, B, m, seed=7)
    S = n * len(cell.state_names)
    monkeypatch.setitem(F.CHUNK_BYTES, "cpu", 2 * 2 * B * S * S * 8)     # 2 lags a chunk
    flow = gradlab.gradient_flow(cell, params, xs, norms=("frobenius",), blocks=False)
    _, _, fro = svd_logs(brute_force(name, params, xs)[0])
    assert relative(flow.log_norm("frobenius"), fro) < TOL


@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "lstm", "lstm_fgr"])
def test_lanczos_at_moderate_size(name, monkeypatch):
    """S = 40..100, well past the dense cutoff: warm-started Lanczos vs svdvals of the
    lowered products, with chunks of one lag (ping-pong buffers) and of many."""
    cell = gradlab.cell(name)
    n = 100 // len(cell.state_names) if len(cell.state_names) < 5 else 8
    B, T = 2, 14
    params = params_for(cell, n, n, seed=1)
    xs = F.make_inputs("gaussian", T, B, n, seed=2)
    jacobian = cell.jacobian_fn("state")
    reference = gradlab.gradient_flow(cell, params, xs, norms=())      # states only
    products, P = [], None
    for t in range(T, 0, -1):
        J = jacobian(params, tuple(s[t - 1] for s in reference.states), xs[t - 1])
        P = J if P is None else P @ J
        products.append(P)
    spec, _, fro = svd_logs(products)
    S = n * len(cell.state_names)
    for lags in (1, 5, T):
        monkeypatch.setitem(F.CHUNK_BYTES, "cpu", lags * 2 * B * S * S * 8)
        flow = gradlab.gradient_flow(cell, params, xs, blocks=False)
        assert relative(flow.log_norm("spectral"), spec) < TOL
        assert relative(flow.log_norm("frobenius"), fro) < TOL


@pytest.mark.parametrize("steps", [3, 5, None])
def test_near_degenerate_blocks_and_the_svd_fallback(steps, monkeypatch):
    """An LSTM with forget-gate bias 2: f ~ 0.88 on every unit, so the cell path's singular
    values crowd together and Lanczos needs many steps; capped at 3 or 5 steps it hands
    the unconverged matrices to svdvals (at 5, some converge on the very last step):
    either way the numbers are the SVD's."""
    if steps:
        monkeypatch.setattr(F.lanczos, "LANCZOS_STEPS", steps)
    cell = gradlab.cell("lstm")
    n, B, T = 30, 2, 12
    params = cell.init_params(n, 4, gate_bias=2.0, seed=3)
    xs = F.make_inputs("gaussian", T, B, 4, seed=4)
    flow = gradlab.gradient_flow(cell, params, xs)
    jacobian = cell.jacobian_fn("state")
    products, P = [], None
    for t in range(T, 0, -1):
        J = jacobian(params, tuple(s[t - 1] for s in flow.states), xs[t - 1])
        P = J if P is None else P @ J
        products.append(P)
    assert relative(flow.log_norm(), svd_logs(products)[0]) < TOL
    cc = [P[:, n:, n:] for P in products]
    assert relative(flow.block_log_norm("c", "c"), svd_logs(cc)[0]) < TOL


# --- exact answers (derivations/theory.md §3) ----------------------------------------------

def zero_recurrence(cell, n, m, **options):
    """params with every recurrent (n x n) weight zero."""
    params = cell.init_params(n, m, **options)
    return {k: torch.zeros_like(v) if tuple(v.shape) == (n, n) else v for k, v in params.items()}


@pytest.mark.parametrize("name,gate", [("gru", "b_z"), ("gru_torch", "b_iz"),
                                       ("minimal_rnn", "b_u")])
def test_gated_product_is_sigma_a_to_the_k(name, gate):
    """Zero recurrent weights, constant inputs, the gate's pre-activation a held constant
    (its input weights zero, bias a): P_k = sigma(a)^k I exactly, for 3,000 steps, where
    the norm itself (sigma(-2)^3000 ~ 1e-2771) underflows float64."""
    cell = gradlab.cell(name)
    n, m, B, T, a = 4, 3, 2, 3000, -2.0
    params = zero_recurrence(cell, n, m, bias_scale=0.5, seed=1)
    # the gate's pre-activation is a: its bias a, the rest of it (input weights, gru_torch's
    # second bias b_hz) zero; minimal_rnn's gate reads V z, and V is n x n (zeroed above)
    held = {"gru": ("U_z",), "gru_torch": ("U_z", "b_hz"), "minimal_rnn": ()}[name]
    params.update({key: torch.zeros_like(params[key]) for key in held})
    params[gate] = torch.full((n,), a, dtype=torch.float64)
    xs = F.make_inputs("constant", T, B, m, seed=2)
    flow = gradlab.gradient_flow(cell, params, xs, norms=F.NORMS)
    k = np.arange(1, T + 1)
    exact = k * math.log(torch.sigmoid(torch.tensor(a, dtype=torch.float64)).item())
    for kind in ("spectral", "min_singular"):
        assert relative(flow.log_norm(kind), exact) < TOL
    assert relative(flow.log_norm("frobenius"), exact + 0.5 * math.log(n)) < TOL
    assert flow.rate() == pytest.approx(exact[0], rel=1e-12)


def test_lstm_cell_path_is_the_product_of_forget_gates():
    """Zero recurrent weights and constant inputs: d c_T / d c_{T-k} = diag(f)^k (a
    different f per unit), d h_T / d h_{T-k} = 0; 2,000 steps."""
    cell = gradlab.cell("lstm")
    n, m, B, T = 6, 3, 2, 2000
    params = zero_recurrence(cell, n, m, bias_scale=1.0, seed=3)
    xs = F.make_inputs("constant", T, B, m, seed=4)
    flow = gradlab.gradient_flow(cell, params, xs)
    state = tuple(s[-2] for s in flow.states)                    # constant from step 2 on
    gates = cell.values_fn()(params, state, xs[-1])
    log_f = gates["f"].log().numpy()                             # (B, n)
    k = np.arange(1, T + 1)[None, :, None]
    cc = log_f[:, None, :] * k                                   # (B, T, n) log diag entries
    assert relative(flow.block_log_norm("c", "c"), cc.max(-1)) < TOL
    fro = log_root_sum_squares(cc)
    assert relative(flow.block_log_norm("c", "c", "frobenius"), fro) < TOL
    assert np.isneginf(flow.block_log_norm("h", "h")).all()
    # d h_T / d c_{T-k} = diag(o tanh'(c_T) f) diag(f)^(k-1): only step T's h-row counts
    lead = (gates["o"] * (1 - torch.tanh(gates["c'"]) ** 2) * gates["f"]).log().numpy()
    hc = lead[:, None, :] + log_f[:, None, :] * (k - 1)
    assert relative(flow.block_log_norm("h", "c"), hc.max(-1)) < TOL


def test_constant_error_carousel():
    """lstm_nfg (no forget gate), no recurrent weights or peepholes: d c_t / d c_{t-1} = I,
    so the cell path keeps its norm exactly, step after step."""
    cell = gradlab.cell("lstm_nfg")
    params = zero_recurrence(cell, 4, 3, seed=5)
    params = {k: torch.zeros_like(v) if k.startswith("p_") else v for k, v in params.items()}
    flow = gradlab.gradient_flow(cell, params, F.make_inputs("constant", 200, 2, 3, seed=6))
    assert np.abs(flow.block_log_norm("c", "c")).max() < 1e-13


def test_ten_thousand_steps_stay_exact():
    """rnn_tanh with W = diag(d), no input or bias, h_0 = 0: h stays 0, J = diag(d), so
    P_k = diag(d)^k: log sigma_max = k ln max|d|, log sigma_min = k ln min|d|, exact for
    k up to 10,000, where the norms (0.9^10000 ~ 1e-458, 0.3^10000) and their ratio are
    far outside float64."""
    cell = gradlab.cell("rnn_tanh")
    d = torch.tensor([0.9, -0.5, 0.3], dtype=torch.float64)
    params = {"W": torch.diag(d), "U": torch.zeros(3, 2, dtype=torch.float64),
              "b": torch.zeros(3, dtype=torch.float64)}
    T = 10_000
    flow = gradlab.gradient_flow(cell, params, torch.zeros(T, 1, 2, dtype=torch.float64),
                                 norms=F.NORMS)
    k = np.arange(1, T + 1)
    for kind, value in (("spectral", 0.9), ("min_singular", 0.3)):
        got = flow.log_norm(kind)
        assert np.isfinite(got).all()
        assert relative(got[0], k * math.log(value)) < TOL
    logs = np.log(d.abs().numpy())[None, :] * k[:, None]
    assert relative(flow.log_norm("frobenius")[0], log_root_sum_squares(logs)) < TOL
    assert flow.rate() == pytest.approx(math.log(0.9), rel=1e-12)
    assert flow.timescale() == pytest.approx(-1 / (2 * math.log(0.9)), rel=1e-12)
    # the norm falls below 1e-3 of its lag-1 value after (k - 1) ln 0.9 < ln 1e-3
    assert flow.horizon(1e-3) == math.floor(math.log(1e-3) / math.log(0.9)) + 2
    assert flow.log_condition(T)[0] == pytest.approx(T * math.log(3), rel=1e-12)
    assert flow.condition(10)[0] == pytest.approx(3.0 ** 10, rel=1e-10)
    assert flow.condition(T)[0] == math.inf                       # 3^10000 overflows


def test_singular_jacobian_gives_minus_infinity():
    """W = 0: every J_t is zero, so every P_k is zero: -inf, never nan."""
    cell = gradlab.cell("rnn_tanh")
    params = zero_recurrence(cell, 3, 2, seed=1)
    flow = gradlab.gradient_flow(cell, params, F.make_inputs("gaussian", 5, 2, 2), norms=F.NORMS)
    for kind in F.NORMS:
        assert np.isneginf(flow.log_norm(kind)).all()
    assert flow.rate() == -math.inf and flow.timescale() == 0.0
    # gone at lag 1, as rate -inf and timescale 0 say (it read None, "never falls")
    assert flow.horizon() == 1 and flow.horizon(1e-6) == 1


def test_reverse_is_the_flipped_sequence():
    cell = gradlab.cell("lstm")
    params = params_for(cell, 4, 3)
    xs = F.make_inputs("gaussian", 12, 2, 3, seed=1)
    back = gradlab.gradient_flow(cell, params, xs, reverse=True)
    # brute force, backwards in time: s_0 = 0 sees x_T first; P_k is the product of the last
    # k Jacobians of that reversed run (brute_force's dense jacrev products, no flow code)
    products, _ = brute_force("lstm", params, xs.flip(0))
    spec, _, _ = svd_logs(products)
    assert back.reverse and relative(back.log_norm(), spec) < TOL
    cc = [P.view(2, 2, 4, 2, 4)[:, 1, :, 1, :] for P in products]         # (c, c) blocks
    assert relative(back.block_log_norm("c", "c"), svd_logs(cc)[0]) < TOL
    forward, _ = brute_force("lstm", params, xs)
    assert relative(svd_logs(forward)[0], spec) > 1e-3, "the reversal must matter here"
