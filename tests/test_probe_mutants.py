"""Regression tests from mutation testing the trust-critical core (rates, scale, subspace,
the output writer, the derivation checker): each pins a behaviour that a small deliberate
bug there (a dropped term, a flipped comparison, a missing guard) changed while every
other test still passed. Each answer is computed independently: np.polyfit for a slope,
statistics.stdev for a spread, the exact log of a norm known in closed form."""

import math
import os
import stat
import statistics

import numpy as np
import pytest
import torch

import gradlab
from gradlab import outputs
from gradlab.errors import GradlabError
from gradlab.flow.rates import NOT_FINITE, slope, slope_stderr
from gradlab.flow.scale import log_norm
from gradlab.flow.subspace import certified


def test_slope_stderr_is_the_standard_error_of_the_per_sequence_slopes():
    """Sample standard deviation (ddof 1) of each sequence's least-squares slope, over
    sqrt(B): against np.polyfit row by row and statistics.stdev."""
    logs = np.array([[0.0, -1.0, -2.5, -2.9, -4.2],
                     [0.3, -0.2, -1.9, -3.3, -3.8],
                     [-0.1, -0.7, -1.2, -2.0, -2.4],
                     [0.0, -1.5, -2.2, -3.9, -5.0]])
    slopes = [np.polyfit(np.arange(1, 6), row, 1)[0] for row in logs]
    want = statistics.stdev(slopes) / math.sqrt(len(slopes))
    assert slope_stderr(logs) == pytest.approx(want, rel=1e-12)
    assert math.isnan(slope_stderr(logs[:1]))                 # one sequence: no spread


def test_a_flat_curve_of_large_and_small_log_norms_reads_no_decay():
    """The rounding allowed for is that of the curve's largest |value|, not its smallest: a
    curve alternating between 0 and 100 (symmetric: exactly no slope) with float64
    rounding of 100 on it reads 0, as a flat curve at 100 does."""
    y = np.where(np.arange(51) % 2 == 0, 100.0, 0.0) + np.arange(51) * 1e-14
    assert slope(y) == (0.0, None)


def test_a_slow_decay_over_many_lags_is_measured_not_read_as_none():
    """Rounding is judged on the change over the L lags, not on the slope per lag: a float32
    curve falling 5e-6 a lag over 10,000 lags falls by 0.05, far beyond its rounding."""
    lags = np.arange(1, 10_001, dtype=np.float64)
    rate, why = slope(-5e-6 * lags, np.finfo(np.float32).eps)
    assert why is None and rate == pytest.approx(-5e-6, rel=1e-9)


def test_plus_inf_in_a_curve_is_not_finite_before_a_zero_product():
    """+inf (an overflowed norm) makes the rate nan, 'norm not finite', also where another
    lag is -inf (a zero product) or the rest is finite."""
    for y in ([0.0, -1.0, math.inf], [-math.inf, -1.0, math.inf]):
        rate, why = slope(np.array(y))
        assert math.isnan(rate) and why == NOT_FINITE, y


@pytest.mark.parametrize("dtype,value,n,tol", [
    (torch.float64, 3.3e-157, 250_000, 4 * np.finfo(np.float64).eps * 355),
    (torch.float32, 3e-21, 2_000, 16 * np.finfo(np.float32).eps)], ids=["float64", "float32"])
def test_log_norm_of_entries_whose_squares_are_subnormal(dtype, value, n, tol):
    """Entries whose squares are subnormal (they keep a few digits) summing to a norm just
    above sqrt(tiny): the plain sum of squares is off by 4e-12 (float64) or 3e-5
    (float32) there; log_norm rescales such slices (below sqrt(tiny) / eps), exactly."""
    x = torch.full((1, n), value, dtype=dtype)
    want = math.log(float(x[0, 0])) + 0.5 * math.log(n)
    assert abs(log_norm(x, 1).item() - want) <= tol


def test_log_norm_of_an_underflowing_slice_that_holds_a_zero():
    """A slice whose sum of squares underflows to 0 but that is not all zero (its min is 0,
    its max is not) is measured exactly, not read as a zero product (-inf)."""
    x = torch.tensor([[1e-200, 0.0], [0.0, -3e-170], [0.0, 0.0]], dtype=torch.float64)
    got = log_norm(x, 1).tolist()
    assert got[:2] == pytest.approx([math.log(1e-200), math.log(3e-170)], rel=1e-15)
    assert got[2] == -math.inf


def test_certified_by_hand():
    """theta (0.5, 0.2, 0.1), squared residuals (1e-4, 4e-4, 1e-2), trace 1: eta_c =
    theta_1 - (1 - sum_{i<=c} theta_i) is 0, 0.2, 0.3, so c = 1 does not apply and the
    bound is min(5e-4 / 0.2, 1.05e-2 / 0.3) = 2.5e-3; with trace 2 no eta is positive."""
    theta = torch.tensor([[0.5, 0.2, 0.1]], dtype=torch.float64)
    r2 = torch.tensor([[1e-4, 4e-4, 1e-2]], dtype=torch.float64)
    assert certified(theta, r2, torch.tensor([1.0], dtype=torch.float64)).item() == \
        pytest.approx(2.5e-3, rel=1e-14)
    assert certified(theta, r2, torch.tensor([2.0], dtype=torch.float64)).item() == math.inf


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("force", [False, True])
def test_written_files_have_the_mode_a_new_file_gets(tmp_path, umask_022, force):
    """Staged files (mkstemp: 0600) are given the mode the umask gives a new file, 0644
    here, whether the folder is swapped in whole or written file by file (force, beside a
    file of the user's), and a new checkpoint file too."""
    out = tmp_path / "out"
    if force:
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    outputs.write_files(out, {"report.md": b"# r\n", "figures/a.png": b"png"}, force=force)
    for rel in ("report.md", "figures/a.png", ".gradlab-manifest.json"):
        assert stat.S_IMODE((out / rel).stat().st_mode) == 0o644, rel
    outputs.write_new(tmp_path / "model.pt", b"state")
    assert stat.S_IMODE((tmp_path / "model.pt").stat().st_mode) == 0o644


def test_a_folder_of_the_users_named_like_a_leftover_is_kept(tmp_path):
    """A folder beside the target whose name looks like a killed run's temporary folder
    (.out.gradlab-<8 characters>) but that holds the user's files is theirs: kept."""
    theirs = tmp_path / ".out.gradlab-abcd1234"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    outputs.write_files(tmp_path / "out", {"report.md": b"# r\n"})
    assert (theirs / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("rtol", [0, 0.0, -0.0])
def test_check_jacobian_refuses_a_zero_rtol(rtol):
    """rtol is in (0, 1), open at 0: no computed Jacobian agrees with the exact one to no
    error at all, so rtol=0 is refused in one line, not answered 'differs'."""
    cell = gradlab.cell("rnn_tanh")
    with pytest.raises(GradlabError, match=r"rtol must be a number in \(0, 1\), got "):
        gradlab.check_jacobian(cell.jacobian_fn("state"), cell, cell.init_params(3, 2, seed=0),
                               rtol=rtol)


def test_a_replace_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Written file by file (beside a file of the user's), a replace that fails (here every
    one: EIO) is one error and leaves no staged .<name>.gradlab-*.tmp behind."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")

    def failing(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(GradlabError, match="cannot write"):
        outputs.write_files(out, {"report.md": b"# r\n"}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_verify_fails_a_state_jacobian_off_by_one_part_in_a_million(monkeypatch):
    """float64 verify agrees to ~1e-16: a lowered d h'/d h off by 1e-6 relative (a wrong
    term at that weight) fails every check that compares it, however small."""
    from gradlab.symbolic.cell import Cell
    from gradlab.verification.verify import verify_cell

    lowered = Cell.jacobian_fn

    def off(self, wrt="state", backend="torch"):
        fn = lowered(self, wrt, backend)
        return (lambda *a: fn(*a) * (1 + 1e-6)) if wrt == "state" else fn

    monkeypatch.setattr(Cell, "jacobian_fn", off)
    checks = verify_cell("rnn_tanh", sizes=[(3, 2)])
    state = [c for c in checks if c.what == "J state" and "numpy" not in c.reference]
    assert state and not any(c.passed for c in state)
    assert all(c.error == pytest.approx(1e-6, rel=1e-3) for c in state)


def test_the_gpu_rescale_of_a_subnormal_norm_stays_finite():
    """Scale's sync-free rescale (a GPU's: drift 0, run here on the CPU) divides out at most
    2^half a step: 2^1073 for a norm of 4e-320 would overflow and make the product inf."""
    from gradlab.flow.scale import Scale

    scale = Scale(1, 1, torch.float64, "cpu")
    scale.drift = 0                                   # as on a GPU
    M = torch.tensor([[4e-320]], dtype=torch.float64)
    scale(M, 1)
    assert M.item() == math.ldexp(4e-320, scale.half)        # exact, and finite
    assert scale.frobenius(slice(0, 1)).item() == pytest.approx(math.log(4e-320), rel=1e-12)


def test_the_bound_is_relative_to_the_top_ritz_value():
    """A = diag(0.125, 0.12 x 7, 0.035) (trace 1) from rows e_2..e_8 and e_1 tilted towards
    e_9 so that theta_1 is 1e-8 short of 0.125: sigma would be 4e-8 off, so at rtol 1e-8
    it must not be certified (a bound compared with 2 rtol, not 2 rtol theta_1, took it)."""
    from gradlab.flow.subspace import subspace

    lam = torch.tensor([0.125] + [0.12] * 7 + [0.035], dtype=torch.float64)
    M = torch.diag(lam.sqrt())[None]
    U = torch.eye(9, dtype=torch.float64)[:8].clone()
    U[0, 8] = math.sqrt(1e-8 / 0.09)
    U[0] /= U[0].norm()
    one = torch.ones(1, dtype=torch.float64)
    sigma, _, rest, _ = subspace((M.mT,), U[None], 2e-8, one, one, steps=1, first_check=0)
    assert rest.tolist() == [0] or abs(sigma.item() / math.sqrt(0.125) - 1) <= 1e-8
