"""gradlab.flow.linalg.orthonormalized: Cholesky QR twice on a GPU (run here on the CPU by
adding it to CHOLESKY_QR), thin_qr's Householder QR for what that cannot make
orthonormal, and the spectral norms unchanged to their tolerance through it."""

import numpy as np
import pytest
import torch

import gradlab
from gradlab.flow import linalg, make_inputs


@pytest.fixture
def cholesky(monkeypatch):
    monkeypatch.setattr(linalg, "CHOLESKY_QR", {"cuda", "cpu"})


def random(shape, dtype=torch.float64, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).to(dtype)


def off_orthonormal(Q):
    eye = torch.eye(Q.shape[-1], dtype=torch.float64)
    return float((Q.mT.double() @ Q.double() - eye).abs().max())


def test_the_cpu_takes_thin_qr_unless_asked():
    A = random((5, 40, 6))
    assert torch.equal(linalg.orthonormalized(A), linalg.thin_qr(A)[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cholesky_qr_spans_the_columns_orthonormally(cholesky, dtype):
    A = random((7, 128, 8), dtype)
    Q = linalg.orthonormalized(A)
    assert Q.dtype == dtype and Q.shape == A.shape
    assert off_orthonormal(Q) <= 128 * torch.finfo(dtype).eps
    # the same span as Householder's: equal projectors
    H = linalg.thin_qr(A.double())[0]
    P, PH = Q.double() @ Q.double().mT, H @ H.mT
    assert float((P - PH).abs().max()) < 1e3 * torch.finfo(dtype).eps
    assert not torch.equal(Q, linalg.thin_qr(A)[0])      # (it did take the other road)


def test_what_cholesky_qr_cannot_do_goes_to_thin_qr(cholesky):
    """A zero column (its Gram matrix singular) and a nan: those matrices get thin_qr's
    Q exactly. Columns of lengths 1 to 1e-12 (scaled to unit length first) and two
    columns 1e-7 apart in angle (a Gram condition number of ~1e14, near float64's limit)
    come out orthonormal and spanning what Householder's Q spans."""
    A = random((6, 64, 4))
    A[1, :, 2] = 0
    A[2, :, 3] = A[2, :, 1] + 1e-7 * random(64, seed=1)
    A[3] = A[3] @ torch.diag(torch.tensor([1.0, 1e-6, 1e-12, 1.0], dtype=torch.float64))
    A[4, 5, 0] = float("nan")
    Q = linalg.orthonormalized(A)
    H = linalg.thin_qr(A)[0]
    assert torch.equal(Q[1], H[1])
    assert torch.equal(Q[4].nan_to_num(), H[4].nan_to_num()) and Q[4].isnan().any()
    for i in (0, 2, 3, 5):
        assert off_orthonormal(Q[i]) < 1e-13
        assert float((Q[i] @ Q[i].mT - H[i] @ H[i].mT).abs().max()) < 1e-8
    assert not torch.equal(Q[3], H[3])                  # scaled, then Cholesky's own


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spectral_norms_through_cholesky_qr(name, dtype, monkeypatch):
    """The per-lag spectral and smallest singular values with every orthonormalisation of
    the spectral iterations done by Cholesky QR: within the tolerance they are certified
    to of the Householder run's (each within rtol of the truth: 2 rtol apart at most)."""
    cell = gradlab.cell(name)
    params = cell.init_params(24, 8, seed=1, weight_scale=1.2, dtype=dtype)
    xs = make_inputs("gaussian", 60, 3, 8, seed=2, dtype=dtype)
    norms = ("spectral", "min_singular")
    runs = []
    for devices in ({"cuda"}, {"cuda", "cpu"}):
        monkeypatch.setattr(linalg, "CHOLESKY_QR", devices)
        flow = gradlab.gradient_flow(cell, params, xs, norms=norms)
        runs.append([flow.log_norm(kind) for kind in norms])
    rtol = {torch.float64: 1e-11, torch.float32: 5e-7}[dtype]
    for a, b in zip(*runs):
        assert np.all(np.isfinite(a)) and np.max(np.abs(np.expm1(a - b))) <= 2.5 * rtol


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cholesky_qr_on_cuda(dtype):
    """On a GPU orthonormalized takes Cholesky QR by default: the span of Householder's
    Q on the CPU, orthonormal to working precision, and a rank-deficient block redone
    by thin_qr."""
    A = random((9, 512, 8), dtype)
    A[3, :, 5] = 0
    Q = linalg.orthonormalized(A.cuda()).cpu()
    H = linalg.thin_qr(A.double())[0]
    assert off_orthonormal(Q) <= 512 * torch.finfo(dtype).eps
    keep = [i for i in range(9) if i != 3]
    assert float((Q[keep].double() @ Q[keep].double().mT - H[keep] @ H[keep].mT).abs().max()) \
        < 1e3 * torch.finfo(dtype).eps
