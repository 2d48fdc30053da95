"""Block Lanczos, the spectral norm's second stage (gradlab/flow/lanczos.py): it accepts
only what the certificate of subspace.py proves, so a flat spectrum, where no iteration
can tell the top singular value from the rest, ends in svdvals, never in a value outside
rtol."""

import numpy as np
import pytest
import torch

import gradlab
import gradlab.flow.lanczos as L
from gradlab.flow.linalg import thin_qr


def with_spectrum(sigmas, S, seed):
    g = torch.Generator().manual_seed(seed)
    N = sigmas.shape[0]
    U = torch.linalg.qr(torch.randn(N, S, S, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(N, S, S, generator=g, dtype=torch.float64))[0]
    return U @ torch.diag_embed(sigmas) @ V.mT


def start(N, p, S, seed):
    g = torch.Generator().manual_seed(seed)
    return thin_qr(torch.randn(N, S, p, generator=g, dtype=torch.float64))[0].mT


def run(M, seed=1):
    N, S = M.shape[0], M.shape[-1]
    fro = torch.linalg.matrix_norm(M)
    Mh = M / fro[:, None, None]                        # trace(M^ M^^T) = 1, as Spectral calls it
    sigma, _ = L.lanczos(Mh, start(N, L.LANCZOS_BLOCK, S, seed), L.tolerance(torch.float64),
                         torch.ones(N, dtype=torch.float64))
    return sigma * fro


@pytest.mark.parametrize("spread", [1e-4, 1e-6, 1e-9])
def test_a_near_isometry_is_never_accepted_outside_rtol(spread):
    """Every singular value within `spread` of 1: the old residual rule took a Ritz value
    below the top (3.6e-10 off at rtol 1e-11); now each value is proven or exact."""
    S, N = 48, 6
    g = torch.Generator().manual_seed(0)
    sig = 1 + spread * torch.rand(N, S, generator=g, dtype=torch.float64)
    M = with_spectrum(sig, S, 3)
    exact = torch.linalg.svdvals(M)[:, 0]
    assert ((run(M) - exact).abs() / exact).max() <= 1e-11


def test_a_separated_top_is_still_proven_by_lanczos_not_svdvals(monkeypatch):
    """A spectrum with room for the certificate: Lanczos proves it without an SVD."""
    S, N = 48, 4
    sig = 0.5 ** torch.arange(S, dtype=torch.float64).expand(N, S) * (1 + 0.1 * torch.arange(N))[:, None]
    M = with_spectrum(sig.contiguous(), S, 4)
    calls = []
    monkeypatch.setattr(L, "top_singular", lambda A: calls.append(len(A)) or torch.linalg.svdvals(A)[:, 0])
    got = run(M)
    exact = torch.linalg.svdvals(M)[:, 0]
    assert ((got - exact).abs() / exact).max() <= 1e-11
    assert not calls


@pytest.mark.parametrize("dtype, rtol, amplitude", [(torch.float64, 1e-11, 1e-6),
                                                   (torch.float32, 5e-7, 1e-3)])
def test_gradient_flow_of_an_orthogonal_rnn_with_small_inputs(dtype, rtol, amplitude):
    """tanh RNN, orthogonal W, inputs near zero: every P_k is nearly an isometry. The old
    rule gave 3.4e-11 (float64) and 6.1e-5 (float32, 120x its rtol) here."""
    n, T, B = 32, 60, 2
    g = torch.Generator().manual_seed(0)
    W = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    params = {"W": W.to(dtype), "b": torch.zeros(n, dtype=dtype),
              "U": (torch.randn(n, 4, generator=g, dtype=torch.float64) / 2).to(dtype)}
    xs = (amplitude * torch.randn(T, B, 4, generator=g, dtype=torch.float64)).to(dtype)
    got = gradlab.gradient_flow("rnn_tanh", params, xs).log_norm("spectral")
    p, x = {k: v.double() for k, v in params.items()}, xs.double()
    hs = [torch.zeros(B, n, dtype=torch.float64)]
    for t in range(T):
        hs.append(torch.tanh(hs[-1] @ p["W"].T + x[t] @ p["U"].T + p["b"]))
    P, ref = torch.eye(n, dtype=torch.float64).expand(B, n, n), []
    for t in range(T, 0, -1):
        P = P @ ((1 - hs[t] ** 2)[..., None] * p["W"])
        ref.append(torch.linalg.svdvals(P)[:, 0].log())
    error = np.abs(np.expm1(got - torch.stack(ref, 1).numpy())).max()
    # float32: the products themselves are rounded (a float32 chain is ~5e-7 off float64)
    assert error <= (rtol if dtype == torch.float64 else 2 * rtol), error


def test_float32_svdvals_are_taken_in_float64():
    """float32 LAPACK missed sigma_max by up to 7e-7 relative at S = 16-48, past the
    float32 rtol (5e-7); the float64 answer rounded to float32 is off by half an ulp."""
    from gradlab.flow.linalg import top_singular
    g = torch.Generator().manual_seed(0)
    M = (torch.linalg.qr(torch.randn(256, 32, 32, generator=g, dtype=torch.float64))[0]
         * (1 + 1e-3 * torch.rand(256, 1, 32, generator=g, dtype=torch.float64))).float()
    got = top_singular(M)
    exact = torch.linalg.svdvals(M.double())[:, 0]
    assert got.dtype == torch.float32
    assert ((got.double() - exact).abs() / exact).max() <= 1.2e-7       # ~ an ulp


def test_float32_values_the_subspace_bound_certifies_stay_within_rtol(monkeypatch):
    """gru n = 128 in float32: with the whole rtol for the bound, float32 rounding took
    certified values to 5.5e-7 (rtol 5e-7); the bound now takes half and rounding fits
    in the rest. Measured on the matrices the walk hands to the solver (the rounding in
    forming the products is any float32 chain's, not the norm's)."""
    worst, measure = [], L.Spectral.of_rows

    def checked(self, rows, lags, fro=None):
        sigma = measure(self, rows, lags, fro)
        exact = torch.linalg.svdvals(torch.cat(rows, 1).mT.double())[:, 0]
        worst.append(float(((sigma.double() - exact).abs() / exact).max()))
        return sigma
    monkeypatch.setattr(L.Spectral, "of_rows", checked)
    cell = gradlab.cell("gru")
    params = {k: v.float() for k, v in cell.init_params(128, 4).items()}
    xs = torch.randn(300, 4, 4, generator=torch.Generator().manual_seed(1000),
                     dtype=torch.float64).float()
    gradlab.gradient_flow(cell, params, xs, norms=("spectral",)).log_norm("spectral")
    assert worst and max(worst) <= L.RTOL[torch.float32], max(worst)


def with_and_without_escalation(monkeypatch, cell, params, xs, count, reset):
    """(log spectral norms, count()) of a walk as it is, then with ESCALATE = 0; reset()
    before each."""
    out = []
    for escalate in (L.ESCALATE, 0):
        monkeypatch.setattr(L, "ESCALATE", escalate)
        reset()
        flow = gradlab.gradient_flow(cell, params, xs, norms=("spectral",), blocks=False)
        out.append((flow.log_norm(), count()))
    return out


def test_what_a_low_level_misses_is_escalated_not_svded(monkeypatch):
    """The LSTM at n = 256 in float32 (S = 512): past the first lags the level policy
    steps down, and at level 1 most of a lag's matrices went uncertified to Lanczos, which
    cannot prove them on A either, and on to svdvals (17 of 128 here; ~37 ms each on this
    CPU, ~100 ms on CUDA). Escalated a level they are certified in one check: svdvals is
    left to the first lag's bare Jacobians, and the values match the ones svdvals gave."""
    from gradlab import registry
    from gradlab.flow import make_inputs
    seen = []
    top_singular = L.top_singular
    monkeypatch.setattr(L, "top_singular", lambda M: seen.append(len(M)) or top_singular(M))
    cell = registry.cell("lstm")
    params = cell.init_params(256, 256, seed=0, dtype=torch.float32)
    xs = make_inputs("gaussian", 16, 8, 256, seed=1, dtype=torch.float32)

    (escalated, svds), (plain, plain_svds) = with_and_without_escalation(
        monkeypatch, cell, params, xs, lambda: sum(seen), seen.clear)
    assert plain_svds >= 15 and svds <= 8, (plain_svds, svds)
    np.testing.assert_allclose(np.exp(escalated - plain), 1, rtol=1.2e-6, atol=0)


def test_a_flat_top_is_not_escalated(monkeypatch):
    """A near-isometry (an orthogonal W, inputs of 1e-3: every sigma of every product near
    1) cannot be certified at any level, so `escalate` sends it straight on to Lanczos and
    svdvals instead of powering it twice more (which made such a walk 1.3-1.9x slower)."""
    from gradlab import registry
    from gradlab.flow import make_inputs
    runs = []
    subspace = L.subspace
    monkeypatch.setattr(L, "subspace", lambda *a, **k: runs.append(1) or subspace(*a, **k))
    cell = registry.cell("rnn_tanh")
    params = cell.init_params(64, 64, seed=0)
    g = torch.Generator().manual_seed(0)
    params["W"] = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=torch.float64))[0]
    xs = make_inputs("gaussian", 8, 2, 64, seed=1, scale=1e-3)

    (escalated, count), (plain, plain_count) = with_and_without_escalation(
        monkeypatch, cell, params, xs, lambda: len(runs), runs.clear)
    assert count == plain_count
    np.testing.assert_allclose(escalated, plain, rtol=0, atol=1e-14)


def test_float32_values_certified_on_a_are_certified_again_in_float64(monkeypatch):
    """In float32 the bound takes half of rtol and rounding the rest, measured, not
    bounded (5.04e-7 against 5e-7 at S = 512). What the iteration certifies on A itself
    (level 0) is certified again in float64 from its Ritz vectors at the whole rtol: at
    rtol 2e-7 (lstm, S = 256) the float32 value was 2.4e-7 off, now 5e-8."""
    from gradlab import registry
    from gradlab.flow import make_inputs
    errors, in_float64 = [], L.Spectral.in_float64

    def checked(self, rows, rest, sigma, ritz):
        in_float64(self, rows, rest, sigma, ritz)
        done = torch.ones(len(sigma), dtype=torch.bool)
        done[rest] = False
        exact = torch.linalg.svdvals(torch.cat(rows, 1).mT[done].double())[:, 0]
        errors.append(float((sigma[done].double() / exact - 1).abs().max()))
    monkeypatch.setattr(L.Spectral, "in_float64", checked)
    cell = registry.cell("lstm")
    params = cell.init_params(128, 128, seed=0, dtype=torch.float32)
    xs = make_inputs("gaussian", 32, 4, 128, seed=1, dtype=torch.float32)
    gradlab.gradient_flow(cell, params, xs, norms=("spectral",), blocks=False,
                          rtol=2e-7).log_norm()
    assert errors and max(errors) <= 2e-7, errors
