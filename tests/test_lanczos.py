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
