"""Spectral, the certified subspace iteration carried from chunk to chunk of a walk
(gradlab/flow/subspace.py): a top direction that moves between chunks, levels that walk
down and back up, a certified cold chunk, pace checks, warm starts that lost the top
(caught, or found by Lanczos in float32), restarts when the matrices change, the dtype's
default tolerance, an eigensolver failure, and float32 modules and long walks, each
within rtol (and rounding) of svdvals."""

import math

import numpy as np
import pytest
import torch

import gradlab.flow as F

RTOL = 1e-11


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
