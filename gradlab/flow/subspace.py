"""The top singular value of many matrices at once: subspace iteration, certified.

Past the first few lags a running product is numerically of low rank (for the LSTM at
n = 64, sigma_9 / sigma_1 is below 0.04 from lag 32 on), and range(P_{k+1}) = range(P_k
J) lies inside range(P_k). So the top few left singular vectors of the previous chunk's
last product span, almost exactly, those of every product in the next chunk, however far
the top one itself turns from lag to lag. From that start a few steps of subspace
iteration with Rayleigh-Ritz on A = M M^T converge, each gaining a factor
(sigma_{p+1} / sigma_1)^4 on the top eigenvalue, and each costs one pass over M and an
eigh of order p. Where the spectrum is flat (the first lags, and the first chunk, which
starts from random rows) the iteration runs on a power of A instead (`powered`).

Stopping is a proof, not a rule of thumb. For the top c Ritz pairs (theta_i, x_i) with
residuals r_i = A x_i - theta_i x_i, A is, in the basis [x_1..x_c, rest],
[[diag(theta), E^T], [E, A_22]] with ||E||_F^2 = sum r_i^2 and A_22 positive
semidefinite of trace ||M||_F^2 - sum theta_i, which bounds its largest eigenvalue nu.
If theta_1 > nu, an eigenvector (x, y) of A for lambda = lambda_max(A) >= theta_1 gives
y = (lambda - A_22)^{-1} E x, so lambda is an eigenvalue of diag(theta) + E^T (lambda -
A_22)^{-1} E, and lambda <= theta_1 + ||E||^2 / (lambda - nu) <= theta_1 + ||E||^2 /
(theta_1 - nu). A matrix is done when that bound, at the best c, is below 2 rtol of
theta_1. A start blind to the top direction (residual zero) is refused by the trace
term. What it cannot certify is left to block Lanczos (lanczos.py).
"""

import math

import torch

from .linalg import thin_qr

SUBSPACE_BLOCK = 8        # vectors carried from chunk to chunk (sigma_9 / sigma_1 decides
                          # the rate; an eigh of order 8 costs ~6 us a matrix on the CPU)
SUBSPACE_STEPS = 8        # iterations before block Lanczos takes over
FIRST_CHECK = 1           # plain power steps before the first Rayleigh-Ritz


def certified(theta, r2, trace):
    """The bound on lambda_max(A) - theta_1 for each matrix, from its Ritz values theta
    (N, c) in descending order, their squared residuals r2 (N, c) and trace(A) (N,):
    min over c of ||E_c||^2 / eta_c where it applies (eta_c > 0), else inf."""
    top = theta[:, :1].clamp_min(0)
    eta = top - (trace[:, None] - theta.cumsum(-1))           # theta_1 - trace(A_22)
    bound = r2.cumsum(-1) / eta.clamp_min(torch.finfo(theta.dtype).tiny)
    return torch.where(eta > 0, bound, math.inf).amin(-1)


def apply(rows, U):
    """(U M)^T (n, S, p) and U A (n, p, S) for M^T = Q, the row slabs `rows` stacked
    ((n, w_a, S) each; one slab for a plain Q): A = M M^T = sum_a slab_a^T slab_a."""
    parts = [torch.bmm(r, U.mT) for r in rows]                     # (n, w_a, p)
    AU = torch.bmm(parts[0].mT, rows[0])
    for z, r in zip(parts[1:], rows[1:]):
        AU.baddbmm_(z.mT, r)
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)), AU


def subspace(rows, U, quad, trace, steps=None):
    """sigma_max of each M by subspace iteration on A = M M^T from the orthonormal rows U
    (N, p, S), where M^T = Q is given as its row slabs `rows` ((N, w_a, S) each, stacked;
    a tuple of one for a plain Q): the walk holds P^T as one slab per state part, and a
    power of A is symmetric, so every product reads a slab as it lies in memory. trace
    (N,) is ||Q||_F^2. Returns sigma (N,), the top p Ritz vectors as rows (N, p, S) (the
    next warm start), the indices of the matrices the bound did not certify within
    `steps` iterations (their sigma is nan), and the checked iterations it took."""
    steps = SUBSPACE_STEPS if steps is None else steps
    N = U.shape[0]
    sigma, ritz = U.new_full((N,), math.nan), U.clone()
    idx = torch.arange(N, device=U.device)
    done = torch.zeros(N, dtype=torch.bool, device=U.device)
    gram = U.dtype == torch.float64
    for it in range(steps):
        Zt, AU = apply(rows, U)                                  # (U M)^T, U A
        if it < FIRST_CHECK:                                     # a plain power step
            U = thin_qr(AU.mT)[0].mT
            continue
        theta, Y = torch.linalg.eigh(Zt.mT @ Zt)                 # U A U^T, ascending
        theta, Y = theta.flip(-1), Y.flip(-1)
        if gram:   # ||A x||^2 - theta^2, A x's part in span(U) being theta x: float64 keeps
            G = AU @ AU.mT                                       # r^2 to ~1e-16 theta_1^2
            r2 = (((G @ Y) * Y).sum(-2) - theta * theta).clamp_min(0)
        else:
            residual = Y.mT @ AU - theta[..., None] * (Y.mT @ U)      # A x - theta x, rows
            r2 = torch.linalg.vector_norm(residual, dim=-1) ** 2
        top = theta[:, 0].clamp_min(0)
        ok = (certified(theta, r2, trace) <= quad * top) & ~done
        if bool(ok.any()):
            sigma[idx[ok]] = top[ok].sqrt()
            ritz[idx[ok]] = Y[ok].mT @ U[ok]
        done = done | ok
        left = ~done
        count = int(left.sum())
        if count == 0:
            return sigma, ritz, idx[:0], it + 1 - FIRST_CHECK
        if 2 * count <= len(idx):                                # iterate on the rest;
            rows = tuple(r[left] for r in rows)                  # copying costs a pass
            idx, AU, Y, U, trace, done = (a[left] for a in (idx, AU, Y, U, trace, done))
        last_U, last_Y = U, Y
        U = thin_qr(AU.mT)[0].mT                                 # span(A U), orthonormal
    rest = ~done
    if steps > FIRST_CHECK:
        ritz[idx[rest]] = last_Y[rest].mT @ last_U[rest]
    return sigma, ritz, idx[rest], steps - FIRST_CHECK


# Powers. Where the spectrum is flat (the first lags) the rate (sigma_9 / sigma_1)^4 is
# slow; iterating on B = (M M^T)^(2^(L-1)) instead raises it to the power 2^L for L
# products of the chunk's matrices. sigma_max(M) = lambda_max(B B^T)^(1 / 2^(L+1)), so the
# relative bound on lambda_max(B B^T) may be 2^L times looser for the same accuracy in
# sigma. Forming B rounds like one product: its top eigenvalue is right to ~sqrt(S) eps.
MAX_LEVEL = 3
COLD_LEVEL = 3            # no start: (sigma_9 / sigma_1)^32 a step even where it is 0.8
DESCEND = 2               # checked steps within which a chunk lets the next go a level down


def powered(rows, level, out):
    """The slabs for `subspace` at `level`: `rows` (those of M^T) for level 0, else the
    symmetric (M M^T)^(2^(level - 1)) as one slab, written into the (2, N, S, S) `out`."""
    if level == 0:
        return rows
    B = torch.bmm(rows[0].mT, rows[0], out=out[0])                 # M M^T = Q^T Q
    for r in rows[1:]:
        B.baddbmm_(r.mT, r)
    for j in range(level - 1):
        B = torch.bmm(B, B, out=out[(j + 1) % 2])
    return (B,)


def next_level(level, checks, certified_all):
    """The level for the next chunk, from how this one went: one lower where every
    matrix was certified within DESCEND checked steps (half the exponent will then need
    about twice the steps, and saves a product per matrix), one higher where some were
    not certified at all, else the same. A running product's spectrum decays as the lags
    grow, so the level walks down from COLD_LEVEL: on the LSTM at n = 64 and 128 it is
    3 for the first lags and 0 from lag ~20, and against always iterating on A it halved
    the cost of the first 24 lags (measured at S = 128 and 256). It decides cost only:
    every value is certified whatever the level."""
    if not certified_all:
        return min(level + 1, MAX_LEVEL)
    if checks <= DESCEND and level > 0:
        return level - 1
    return level
