"""Small dense linear algebra the walks share: a fast thin QR (and on a GPU a batched
one), sigma_max by SVD."""

import math

import torch


def thin_qr(A):
    """Q (..., r, c) with orthonormal columns spanning A (..., r, c), r >= c, and the
    diagonal of R (..., c), from LAPACK's geqrf and the Householder product. The same
    factorisation as torch.linalg.qr, without its overhead: on a 2-thread CPU build,
    linalg.qr of a small batched thin matrix takes 1-3 ms against ~0.01 ms this way.
    R's diagonal may have either sign (callers take |R_ii|)."""
    a, tau = torch.geqrf(A)
    return torch.linalg.householder_product(a, tau), a.diagonal(dim1=-2, dim2=-1)


def orthonormalized(A):
    """Q (..., r, c) with orthonormal columns spanning each A (..., r, c), r >= c, of full
    column rank: `thin_qr`'s Q on the CPU. On a GPU, Cholesky QR three times, the first
    shifted, in float64: a few batched kernels. torch's geqrf and Householder product
    took 5 and 4 ms a call on an H200 for a batch of (512, 8) blocks (the time of a loop
    over the batch), 2.5 s of device time over one walk's spectral norms (lstm n = 256,
    T = 256, B = 32, profiled). The columns are scaled to unit norm first, so that only their
    angles make the Gram matrix ill-conditioned, not their lengths (a Ritz block's rows
    differ in norm as the eigenvalues do). A matrix whose columns this leaves further from
    orthonormal than r eps of A's dtype (rank-deficient or too ill-conditioned, or not
    finite) is done by thin_qr instead; the check costs one small product."""
    if A.device.type not in CHOLESKY_QR:
        return thin_qr(A)[0]
    W = A.double()
    norms = torch.linalg.vector_norm(W, dim=-2, keepdim=True)   # columns of unit norm: a
    W = W / torch.where(norms > 0, norms, 1)                     # column's scale is no
    ok = torch.ones(A.shape[:-2], dtype=torch.bool, device=A.device)   # condition then
    r, c = A.shape[-2:]
    eye = torch.eye(c, dtype=W.dtype, device=A.device)
    # the first pass shifted (shifted CholeskyQR3, Fukaya et al. 2020): its Cholesky
    # cannot fail short of a condition number ~1 / eps, and two plain passes after it
    # make the columns orthonormal to working precision
    shift = 11 * (r * c + c * (c + 1)) * torch.finfo(W.dtype).eps * c   # ||W||_F^2 = c
    for k in range(3):
        G = W.mT @ W
        L, info = torch.linalg.cholesky_ex(G + shift * eye if k == 0 else G)
        ok &= info == 0
        L = torch.where(ok[..., None, None], L, eye)      # (a failed one: redone below)
        W = torch.linalg.solve_triangular(L, W.mT, upper=False).mT
    Q = W.to(A.dtype)
    off = (Q.mT.double() @ Q.double() - eye).abs().amax(dim=(-2, -1))
    ok &= off <= A.shape[-2] * torch.finfo(A.dtype).eps        # (nan: not ok)
    if not bool(ok.all()):
        Q[~ok] = thin_qr(A[~ok])[0]
    return Q


CHOLESKY_QR = {"cuda"}  # the device types `orthonormalized` takes Cholesky QR on


def top_singular(M):
    """sigma_max of each finite M (N, S, S) by SVD, in M's dtype; nan for the batch in the
    rare case the SVD does not converge (torch.linalg.LinAlgError), never an exception.
    A float32 M is decomposed in float64: float32 LAPACK misses sigma_max by up to 7e-7
    relative at S = 16-48 (1.2e-6 at 512), past the float32 rtol, where float64's answer
    rounded to float32 is off by half an ulp."""
    try:
        wide = M.double() if M.dtype == torch.float32 else M
        return torch.linalg.svdvals(wide)[:, 0].to(M.dtype)
    except torch.linalg.LinAlgError:
        return M.new_full(M.shape[:1], math.nan)


def nan_where(sigma, finite):
    """sigma with nan where the matrix it measures was not finite."""
    return sigma if bool(finite.all()) else torch.where(finite, sigma, math.nan)
