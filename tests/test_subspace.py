"""The certified subspace iteration behind per-lag spectral norms (gradlab/flow/subspace.py).

Its stop is a bound, not a heuristic, so it is tested as one: on matrices with known
spectra and on starts built to fool it (a start that is an exact invariant subspace
missing the top direction), every value it certifies is within rtol of svdvals.
"""

import math

import numpy as np
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


def test_spectral_when_the_top_direction_changes_between_chunks():
    """Diagonal chunks whose largest entry moves to a coordinate the previous chunk's
    top vectors do not span: the warm start is an exact eigenbasis of lower values, and
    the norms must still be the largest entries."""
    S, lags, B = 40, 3, 2
    spectral = F.Spectral(0, torch.float64)
    base = 0.7 ** torch.arange(S, dtype=torch.float64)
    for chunk in range(3):
        d = base.clone()
        d[S - 1 - chunk] = 5.0 + chunk                     # a new top, outside the last span
        M = torch.diag(d).expand(lags * B, S, S).contiguous()
        sigma = spectral(M, lags)
        assert torch.allclose(sigma, torch.full_like(sigma, 5.0 + chunk), rtol=RTOL, atol=0)


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


def test_next_level_walks_down_and_back_up(monkeypatch):
    """Down a level after an easy chunk, up after one the bound could not certify, the
    same otherwise, within 0..MAX_LEVEL; and on the running products of a real LSTM the
    levels Spectral takes start at COLD_LEVEL and come down as the spectrum decays."""
    from gradlab.flow.subspace import COLD_LEVEL, DESCEND, MAX_LEVEL, next_level
    assert next_level(2, DESCEND, True) == 1 and next_level(0, 1, True) == 0
    assert next_level(2, DESCEND + 1, True) == 2
    assert next_level(1, 5, False) == 2 and next_level(MAX_LEVEL, 8, False) == MAX_LEVEL

    import gradlab
    cell = gradlab.cell("lstm")
    params = cell.init_params(32, 16, seed=0)
    xs = F.make_inputs("gaussian", 48, 4, 16, seed=1)
    monkeypatch.setitem(F.CHUNK_BYTES, "cpu", 4 * 2 * 4 * 64 * 64 * 8)      # 4 lags a chunk
    levels = []
    original = F.Spectral.of_rows

    def spy(self, rows, lags, fro=None):
        levels.append(COLD_LEVEL if self.warm is None else self.level)
        return original(self, rows, lags, fro)
    monkeypatch.setattr(F.lanczos.Spectral, "of_rows", spy)
    got = gradlab.gradient_flow(cell, params, xs, norms=("spectral",), blocks=False).log_norm()
    assert levels[0] == COLD_LEVEL and levels[-1] < COLD_LEVEL
    assert np.isfinite(got).all()



def test_a_certified_cold_chunk_lets_the_next_go_down():
    """The first chunk starts from random rows, so the steps it took say nothing of the
    spectrum: certified throughout, however many checks that took, it sends the next
    chunk a level down (on the LSTM at n = 64 this saved a chunk at level 3, ~10 % of
    the norms' time)."""
    from gradlab.flow.subspace import COLD_LEVEL, DESCEND
    g = torch.Generator().manual_seed(0)
    S, lags, B = 48, 2, 3
    flat = torch.randn(lags * B, S, S, generator=g, dtype=torch.float64)
    checks = []
    original = F.lanczos.subspace

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        checks.append(out[3])
        return out
    spectral = F.Spectral(0, torch.float64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F.lanczos, "subspace", spy)
        got = spectral(flat, lags)
    assert ((got / torch.linalg.svdvals(flat)[:, 0] - 1).abs() <= RTOL).all()
    assert checks[0] > DESCEND                     # slow, from its random start
    assert spectral.level == COLD_LEVEL - 1

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


def test_float32_module_matches_float64():
    """A default torch.nn.LSTM in float32 (its products sit at ||P||_F ~ 2^-16 between
    rescalings) against the same module in float64: the spectral norms agree to float32
    rounding, not to the 16 % a certificate computed on underflowed powers gave."""
    import gradlab
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 32)
    xs = torch.randn(64, 4, 8)
    f32 = gradlab.gradient_flow(lstm, xs).log_norm("spectral")
    f64 = gradlab.gradient_flow(lstm.double(), xs.double()).log_norm("spectral")
    assert np.abs(np.asarray(f32) - np.asarray(f64)).max() < 1e-5


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


def test_spectral_restarts_when_the_matrices_change_and_refuses_uneven_lags():
    """A Spectral object fed other sizes than last time starts cold instead of failing on
    the old warm start's shape; a batch that does not split into the lags is refused."""
    from gradlab.errors import GradlabError
    g = torch.Generator().manual_seed(0)
    spectral = F.Spectral(0, torch.float64)
    for S, B in [(30, 2), (40, 3), (30, 2)]:
        M = torch.randn(2 * B, S, S, generator=g, dtype=torch.float64)
        assert ((spectral(M, 2) / torch.linalg.svdvals(M)[:, 0] - 1).abs() <= RTOL).all()
    with pytest.raises(GradlabError, match="5 matrices do not make 2 lags"):
        spectral(torch.randn(5, 30, 30, generator=g, dtype=torch.float64), 2)


def test_pace_checks_where_the_last_chunk_was_certified():
    """Pace starts at FIRST_CHECK plain steps; after a chunk certified at its first check
    it tries one fewer; a failed try puts it back and makes it wait 1, then 2 chunks
    before the next; a chunk that needed c checks moves the first check c - 1 steps
    later; a new level or an uncertified matrix resets it."""
    from gradlab.flow.subspace import FIRST_CHECK, SUBSPACE_CHECKS, Pace
    pace = Pace()
    assert pace.plain == FIRST_CHECK == 1
    pace.update(True, 1, True)
    assert pace.plain == 0                       # trying: check the warm start at once
    pace.update(True, 2, True)
    assert pace.plain == 1                       # failed: back, and wait one chunk
    pace.update(True, 1, True)
    assert pace.plain == 1
    pace.update(True, 1, True)
    assert pace.plain == 0
    pace.update(True, 3, True)
    assert pace.plain == 2                       # certified at its third check
    for _ in range(2):                           # the wait has doubled
        pace.update(True, 1, True)
        assert pace.plain == 2
    pace.update(True, 1, True)
    assert pace.plain == 1
    pace.update(True, 1, True)
    assert pace.plain == 0
    pace.update(True, 1, True)
    assert pace.plain == 0                       # at 0 it stays while it certifies
    pace.update(False, 1, True)
    assert pace.plain == FIRST_CHECK             # a new level
    pace.plain = 4
    pace.update(True, 7, False)
    assert pace.plain == FIRST_CHECK             # something went to Lanczos
    pace.plain = SUBSPACE_CHECKS
    pace.update(True, 5, True)
    assert pace.plain == SUBSPACE_CHECKS         # never all plain: checks stay possible


def test_a_trusted_warm_start_that_lost_the_top_is_caught():
    """Chunks of one decaying spectrum until Spectral checks its warm start with no
    power step at all; then a chunk whose top direction lies outside that start (an
    exact eigenbasis of lower values): the bound refuses the stale Ritz value, and the
    norm found is the new top, to rtol, as are all the others."""
    S, lags, B = 40, 3, 2
    spectral = F.Spectral(0, torch.float64)
    base = 0.3 ** torch.arange(S, dtype=torch.float64)
    plains = []
    for chunk in range(8):
        d = base.clone()
        if chunk == 7:
            d[S - 1] = 2.0                                  # a new top, far outside
        M = torch.diag(d).expand(lags * B, S, S).contiguous()
        plains.append(spectral.pace.plain)
        sigma = spectral(M, lags)
        assert torch.allclose(sigma, torch.full_like(sigma, float(d.max())), rtol=RTOL, atol=0)
    assert plains[-1] == 0


def test_float32_long_walk_stays_within_rtol_and_rounding(monkeypatch):
    """A float32 walk long enough that most chunks are certified with no power step
    (their start passed on from chunk to chunk): every norm within rtol plus the
    documented rounding (~sqrt(S) eps) of svdvals of the same float32 matrices, and the
    start orthonormal to rounding at every chunk. Without re-orthonormalising it each
    chunk its rounding added up (to 4.3e-6 here, and errors of 1.5e-6 against 5e-7)."""
    import gradlab
    cell = gradlab.cell("rnn_tanh")
    S, B = 128, 4
    params = cell.init_params(S, 8, seed=3, dtype=torch.float32)
    xs = F.make_inputs("gaussian", 600, B, 8, seed=4, dtype=torch.float32)
    monkeypatch.setitem(F.CHUNK_BYTES, "cpu", 16 * 2 * B * S * S * 4)     # 16 lags a chunk
    errors, plains, drift = [], [], []
    original = F.Spectral.of_rows

    def spy(self, rows, lags, fro=None):
        plains.append(self.pace.plain)
        sigma = original(self, rows, lags, fro)
        want = torch.linalg.svdvals(torch.cat(rows, 1).mT.double())[:, 0]
        errors.append(float((sigma.double() / want - 1).abs().max()))
        W = self.warm.double()
        drift.append(float((W @ W.mT - torch.eye(W.shape[1], dtype=W.dtype)).abs().max()))
        return sigma
    monkeypatch.setattr(F.lanczos.Spectral, "of_rows", spy)
    gradlab.gradient_flow(cell, params, xs, norms=("spectral",), blocks=False).log_norm()
    assert len(plains) == 38 and sum(p == 0 for p in plains) > 19
    eps = torch.finfo(torch.float32).eps
    assert max(drift) <= 10 * eps
    assert max(errors) <= 5e-7 + math.sqrt(S) * eps


@pytest.mark.parametrize("S", [25, 40, 100])
def test_float32_lanczos_finds_a_top_the_warm_start_cannot_see(S):
    """float32 diagonal chunks whose warm start is an exact eigenbasis of the old top,
    while a new top 1e-3 above it appears at a coordinate outside it: the subspace
    iteration cannot certify, block Lanczos takes over and must find the new top. Its
    Gram-Schmidt dropped a dependent row only below 1e-10 of its norm, far under float32
    rounding: rounding noise was normalised into the basis, which was then not
    orthonormal, and values 1e-3 off (the old top) were accepted."""
    lags, B = 4, 2
    spectral = F.Spectral(0, torch.float32)
    base = 0.7 ** torch.arange(S, dtype=torch.float64)
    worst = 0.0
    for chunk in range(6):
        d = base.clone()
        if chunk >= 3:
            d[S - 1 - chunk] = 1 + 1e-3 * (chunk - 2)
        M = torch.diag(d).expand(lags * B, S, S).contiguous().float()
        sigma = spectral(M, lags).double()
        worst = max(worst, float((sigma / d.max() - 1).abs().max()))
    assert worst <= 5e-7 + math.sqrt(S) * torch.finfo(torch.float32).eps


def test_spectral_takes_the_default_tolerance_of_the_matrices_dtype():
    """A Spectral made for float32 and handed float64 matrices certifies to float64's
    default rtol, not float32's (it kept the tolerance it was made with: 8.7e-9 off)."""
    g = torch.Generator().manual_seed(5)
    spectral = F.Spectral(0, torch.float32)
    spectral(torch.randn(4, 40, 40, generator=g), 2)
    M = torch.randn(4, 40, 40, generator=g, dtype=torch.float64)
    sigma = spectral(M, 2)
    assert ((sigma / torch.linalg.svdvals(M)[:, 0] - 1).abs() <= RTOL).all()


def test_after_an_eigensolver_failure_the_next_chunk_starts_afresh(monkeypatch):
    """When eigh or QR gives up, the chunk's norms come from svdvals and the next chunk
    starts cold (random rows), not from coordinate vectors, which are an exact invariant
    subspace of a diagonal matrix and hid its top from the iteration."""
    S, lags, B = 40, 2, 2
    spectral = F.Spectral(0, torch.float64)
    base = 0.6 ** torch.arange(S, dtype=torch.float64)
    M = torch.diag(base).expand(lags * B, S, S).contiguous()
    spectral(M, lags)

    def fail(*args, **kwargs):
        raise torch.linalg.LinAlgError("gave up")
    with monkeypatch.context() as m:
        m.setattr(F.lanczos, "subspace", fail)
        sigma = spectral(M, lags)
    assert torch.allclose(sigma, torch.ones_like(sigma), rtol=RTOL, atol=0)
    assert spectral.warm is None
    d = base.clone()
    d[S - 1] = 3.0
    sigma = spectral(torch.diag(d).expand(lags * B, S, S).contiguous(), lags)
    assert torch.allclose(sigma, torch.full_like(sigma, 3.0), rtol=RTOL, atol=0)


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
