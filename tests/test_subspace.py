"""The certified subspace iteration behind per-lag spectral norms (gradlab/flow/subspace.py).

Its stop is a bound, not a heuristic, so it is tested as one: on matrices with known
spectra and on starts built to fool it (a start that is an exact invariant subspace
missing the top direction, a near-degenerate top), at every level, at any scale and at
the ends of the float range, every value it certifies is within rtol of svdvals. How
Spectral carries it from chunk to chunk of a walk: test_subspace_chunks.py.
"""

import math

import pytest
import torch

import gradlab.flow as F
from gradlab.flow.linalg import thin_qr
from gradlab.flow.subspace import certified, subspace

RTOL = 1e-11


def with_spectrum(sigmas, S, seed):
    """(N, S, S) matrices U diag(sigma) V^T with random orthogonal U, V."""
    g = torch.Generator().manual_seed(seed)
    N = sigmas.shape[0]
    U = torch.linalg.qr(torch.randn(N, S, S, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(N, S, S, generator=g, dtype=torch.float64))[0]
    return U @ torch.diag_embed(sigmas) @ V.mT, U


def ritz(M, U):
    """Ritz values (descending) and squared residuals of A = M M^T on the rows U."""
    A = M @ M.mT
    theta, Y = torch.linalg.eigh(U @ A @ U.mT)
    theta, Y = theta.flip(-1), Y.flip(-1)
    X = Y.mT @ U
    r2 = torch.linalg.vector_norm(X @ A - theta[..., None] * X, dim=-1) ** 2
    return theta, r2, torch.linalg.eigvalsh(A)[:, -1]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("decay", [0.3, 0.7, 0.95])
def test_certified_is_an_upper_bound(seed, decay):
    """theta_1 <= lambda_max <= theta_1 + bound, whatever the start: random rows, rows
    near the top singular vectors, rows that miss the top one."""
    S, N, p = 30, 16, 8
    g = torch.Generator().manual_seed(100 + seed)
    jitter = 1 + 0.1 * torch.rand(N, S, generator=g, dtype=torch.float64)
    sig = decay ** torch.arange(S, dtype=torch.float64) * jitter
    sig = sig.sort(-1, descending=True).values
    M, left = with_spectrum(sig, S, seed)
    starts = [torch.randn(N, S, p, generator=g, dtype=torch.float64),
              left[..., :p] + 1e-3 * torch.randn(N, S, p, generator=g, dtype=torch.float64),
              left[..., 1:p + 1]]                              # misses the top direction
    for W in starts:
        U = thin_qr(W)[0].mT
        theta, r2, lam = ritz(M, U)
        trace = torch.linalg.matrix_norm(M) ** 2
        bound = certified(theta, r2, trace)
        assert (theta[:, 0] <= lam * (1 + 1e-13)).all()
        finite = torch.isfinite(bound)
        gap = lam - theta[:, 0]
        assert (gap[finite] <= bound[finite] + 1e-13 * lam[finite]).all()


@pytest.mark.parametrize("first_check", [0, 1, 3])
def test_a_start_blind_to_the_top_is_not_certified(first_check):
    """An exact invariant subspace (residual zero) that lacks the top singular vector:
    a residual rule alone would accept its Ritz value; the trace term refuses it, also
    when it is checked before any power step (a chunk whose warm start is trusted)."""
    S = 40
    sig = torch.cat([torch.tensor([10.0]), 0.5 ** torch.arange(1, S, dtype=torch.float64)])
    M = torch.diag(sig)[None]
    U = torch.eye(S, dtype=torch.float64)[1:9][None]               # e_2 .. e_9
    scale = 1 / (sig ** 2).sum().sqrt()[None]
    sigma, _, rest, checks = subspace((M.mT,), U, 2 * RTOL, scale,
                                      torch.ones(1, dtype=M.dtype), steps=2,
                                      first_check=first_check)
    assert rest.tolist() == [0] and math.isnan(sigma[0]) and checks == 2


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-11), (torch.float64, 1e-8),
                                        (torch.float32, 5e-7)])
def test_subspace_agrees_with_svdvals(dtype, rtol):
    """Decaying spectra from a warm start near the top singular vectors: certified, and
    within rtol of svdvals; a flat spectrum is handed back uncertified, not guessed."""
    S, N = 96, 24
    g = torch.Generator().manual_seed(7)
    jitter = 1 + torch.rand(N, S, generator=g, dtype=torch.float64)
    decaying = 0.5 ** torch.arange(S, dtype=torch.float64) * jitter
    M, left = with_spectrum(decaying.sort(-1, descending=True).values, S, 8)
    flat, _ = with_spectrum(1 + 0.01 * torch.rand(4, S, generator=g, dtype=torch.float64), S, 9)
    M = torch.cat([M, flat]).to(dtype)
    W = torch.cat([left[..., :8], torch.randn(4, S, 8, generator=g, dtype=torch.float64)])
    W = W + 0.05 * torch.randn(W.shape, generator=g, dtype=torch.float64)
    U = thin_qr(W.to(dtype))[0].mT
    fro = torch.linalg.matrix_norm(M)
    sigma, rows, rest, checks = subspace((M.mT,), U, 2 * rtol, 1 / fro, torch.ones_like(fro))
    sigma = sigma * fro                                   # sigma of M / ||M||_F
    want = torch.linalg.svdvals(M.double())[:, 0]
    done = torch.ones(len(M), dtype=torch.bool)
    done[rest] = False
    assert done[:N].all() and not done[N:].any()
    assert ((sigma[done].double() / want[done] - 1).abs() <= rtol).all()
    eye = torch.eye(8, dtype=dtype).expand(len(M), 8, 8)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert ((rows @ rows.mT - eye).abs() <= tol).all()              # the next warm start


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_level_agrees_with_svdvals(level, monkeypatch):
    """Iterating on (M M^T)^(2^(level-1)) and taking the 2^level-th root is the same
    sigma_max, to rtol, for Gaussian matrices (flat spectra) and decaying ones, over
    three chunks (the level of the later ones chosen from the spectrum)."""
    monkeypatch.setattr(F.lanczos, "COLD_LEVEL", level)
    S, lags, B = 48, 2, 3
    g = torch.Generator().manual_seed(11 + level)
    spectral = F.Spectral(0, torch.float64)
    for chunk in range(3):
        M = torch.randn(lags * B, S, S, generator=g, dtype=torch.float64)
        if chunk:
            M = M * 0.6 ** (chunk * torch.arange(S, dtype=torch.float64))
        sigma = spectral(M, lags)
        want = torch.linalg.svdvals(M)[:, 0]
        assert ((sigma / want - 1).abs() <= RTOL).all()

@pytest.mark.parametrize("dtype,scales,rtol", [
    (torch.float64, (1e-300, 1e-150, 1e-20, 1e-12, 1.0, 1e150, 1e300), RTOL),
    (torch.float32, (1e-20, 1e-3, 0.02, 1.0, 1e18), 1e-6)])
def test_spectral_at_any_scale(dtype, scales, rtol):
    """The iteration runs on M / ||M||_F and on normalised powers of it: nothing under-
    or overflows, so a certificate means the same at 1e-300 as at 1 (powers of an
    unscaled M underflowed to a zero residual and certified values 5e-6 off)."""
    g = torch.Generator().manual_seed(3)
    S, lags, B = 40, 2, 2
    gauss = torch.randn(lags * B, S, S, generator=g, dtype=torch.float64)
    decay = gauss * 0.7 ** torch.arange(S, dtype=torch.float64)
    for scale in scales:
        spectral = F.Spectral(0, dtype)
        for M in (gauss, decay, gauss):                   # three chunks: levels change
            X = (M * scale).to(dtype)
            want = torch.linalg.svdvals(X.double())[:, 0]
            got = spectral(X, lags).double()
            assert ((got / want - 1).abs() <= rtol).all(), (scale, got / want - 1)


def test_a_near_degenerate_top_is_not_certified_by_rounding():
    """sigma_1 = 1, sigma_2^2 = 1 - 1e-8 and a warm start mixing their vectors: the gap
    in the bound is ~1e-8, so the residuals' rounding decides; with it allowed for,
    nothing is certified outside rtol (without it, 17 of 40 were, up to 1.2e-9)."""
    S = 32
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        Q = torch.linalg.qr(torch.randn(S, S, generator=g, dtype=torch.float64))[0]
        V = torch.linalg.qr(torch.randn(S, S, generator=g, dtype=torch.float64))[0]
        x = Q[:, 0] + math.sqrt(0.3) * Q[:, 1]
        warm = torch.cat([(x / x.norm())[:, None], Q[:, 2:9]], 1)
        M1 = (warm * 0.5 ** torch.arange(8.0, dtype=torch.float64)) @ V[:, :8].T
        lam = torch.full((S,), 1e-13, dtype=torch.float64)
        lam[0], lam[1] = 1.0, 1.0 - 1e-8
        M2 = (Q * lam.sqrt()) @ V.T
        spectral = F.Spectral(seed, torch.float64)
        for _ in range(4):
            spectral(M1[None], 1)                         # the level walks down to 0
        assert abs(spectral(M2[None], 1).item() - 1.0) <= RTOL


@pytest.mark.parametrize("dtype,big,small", [(torch.float64, 1e308, 1e-310),
                                             (torch.float32, 1e38, 1e-40)])
def test_spectral_at_the_ends_of_the_float_range(dtype, big, small):
    """Matrices whose Frobenius norm is past the largest float (diag(1e308), S = 32), or
    whose entries are subnormal: measured as M 2^-e, exactly, and scaled back (they gave
    nan and 0)."""
    S = 32
    eye = torch.eye(S, dtype=dtype)
    for M in (big * eye, big / S * torch.ones(S, S, dtype=dtype), small * eye):
        M = M.expand(2, S, S).contiguous()
        sigma = F.Spectral(0, dtype)(M, 1).double()
        want = torch.linalg.svdvals(M.double())[:, 0]
        tol = RTOL if dtype == torch.float64 else 5e-7 + math.sqrt(S) * 1.2e-7
        assert ((sigma / want - 1).abs() <= tol).all(), (sigma, want)
