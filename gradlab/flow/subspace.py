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

Stopping is a bound, not a rule of thumb. For the top c Ritz pairs (theta_i, x_i) with
residuals r_i = A x_i - theta_i x_i, A is, in the basis [x_1..x_c, rest],
[[diag(theta), E^T], [E, A_22]] with ||E||_F^2 = sum r_i^2 and A_22 positive
semidefinite of trace ||M||_F^2 - sum theta_i, which bounds its largest eigenvalue nu.
If theta_1 > nu, an eigenvector (x, y) of A for lambda = lambda_max(A) >= theta_1 gives
y = (lambda - A_22)^{-1} E x, so lambda is an eigenvalue of diag(theta) + E^T (lambda -
A_22)^{-1} E, and lambda <= theta_1 + ||E||^2 / (lambda - nu) <= theta_1 + ||E||^2 /
(theta_1 - nu). A matrix is done when that bound, at the best c, is below 2 rtol of
theta_1. A start blind to the top direction (residual zero) is refused by the trace
term. This holds in exact arithmetic; in floating point the iteration runs on M /
||M||_F (trace 1, so nothing under- or overflows), each residual is taken larger by its
possible rounding (~2 S eps sqrt(theta_i)) and the trace by that of the Ritz values, so
that a cancellation cannot certify a value outside rtol where the gap is tiny. What it
cannot certify is left to block Lanczos (lanczos.py).
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


def apply(rows, U, scale):
    """(U M^)^T (n, S, p) and U A (n, p, S) for M^ = scale M, M^T = Q given as the row
    slabs `rows` stacked ((n, w_a, S) each; one slab for a plain Q): A = M^ M^^T =
    scale^2 sum_a slab_a^T slab_a. Scaled between the two products, so that nothing
    overflows on the way to A U (float32 squares overflow past 1.8e19)."""
    s = scale[:, None, None]
    parts = [torch.bmm(r, U.mT) * s for r in rows]                 # (n, w_a, p)
    AU = torch.bmm(parts[0].mT, rows[0])
    for z, r in zip(parts[1:], rows[1:]):
        AU.baddbmm_(z.mT, r)
    return (parts[0] if len(parts) == 1 else torch.cat(parts, 1)), AU.mul_(s)


def subspace(rows, U, quad, scale, trace, steps=None):
    """sigma_max of each M by subspace iteration on A = M^ M^^T, M^ = scale M, from the
    orthonormal rows U (N, p, S), where M^T = Q is given as its row slabs `rows` ((N, w_a,
    S) each, stacked; a tuple of one for a plain Q): the walk holds P^T as one slab per
    state part, and a power of A is symmetric, so every product reads a slab as it lies in
    memory. `scale` (N,) is 1 / ||M||_F (or 1 for a matrix too small to scale): with
    trace(A) = 1 no Ritz value or residual under- or overflows, whatever the scale of M;
    `trace` (N,) is ||M^||_F^2 (1, or 0 for a zero M).
    Returns sigma of M^ (N,), the top p Ritz vectors as rows (N, p, S) (the next warm
    start), the indices of the matrices the bound did not certify within `steps`
    iterations (their sigma is nan), and the checked iterations it took."""
    steps = SUBSPACE_STEPS if steps is None else steps
    N, S = U.shape[0], U.shape[-1]
    eps = torch.finfo(U.dtype).eps
    sigma, ritz = U.new_full((N,), math.nan), U.clone()
    idx = torch.arange(N, device=U.device)
    done = torch.zeros(N, dtype=torch.bool, device=U.device)
    # rounding: the sum of Ritz values is short of its exact value by up to ~(p + 1) S eps
    # (trace 1 and theta_1 <= 1), so the trace beyond them is taken that much larger
    trace = trace + (U.shape[1] + 1) * S * eps
    for it in range(steps):
        Zt, AU = apply(rows, U, scale)                           # (U M^)^T, U A
        if it < FIRST_CHECK:                                     # a plain power step
            U = thin_qr(AU.mT)[0].mT
            continue
        theta, Y = torch.linalg.eigh(Zt.mT @ Zt)                 # U A U^T, ascending
        theta, Y = theta.flip(-1), Y.flip(-1)
        residual = Y.mT @ AU - theta[..., None] * (Y.mT @ U)     # A x - theta x, as rows
        top = theta[:, 0].clamp_min(0)
        # each residual as computed is off by up to ~2 S eps ||M^||_F ||M^ x|| (two
        # products over S terms), ||M^ x|| = sqrt(theta_i): added, so the bound keeps
        # its meaning in floating point (measured: without it a cancellation certified
        # a value 115x outside rtol)
        slack = 2 * S * eps * theta.clamp_min(0).sqrt()
        r2 = (torch.linalg.vector_norm(residual, dim=-1) + slack) ** 2
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
            idx, AU, Y, U, trace, scale, done = (
                a[left] for a in (idx, AU, Y, U, trace, scale, done))
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
# sigma. Each power is normalised (`powered`), so its top eigenvalue is right to a few
# S eps relative, which the tolerance 2^L rtol also carries.
MAX_LEVEL = 3
COLD_LEVEL = 3            # no start: (sigma_9 / sigma_1)^32 a step even where it is 0.8
DESCEND = 2               # checked steps within which a chunk lets the next go a level down


def powered(rows, level, out, scale, fro):
    """The slabs, scale and trace for `subspace` at `level`, and log F (N,) with
    sigma_max(M^)^(2^level) = F lambda_max: `rows` (those of M^T), `scale` and
    (fro scale)^2 for level 0 (F = 1); else X = (A^)^(2^(level - 1)), one symmetric slab,
    with A^ = M^ M^^T of trace 1 (M^ = scale M), written into the (2, N, S, S) `out`, its
    scale 1 / ||X||_F and trace 1, F = ||X||_F. X's top eigenvalue is at least S^-(2^(level
    - 1)), so nothing under- or overflows on the way, and `subspace` scales X's products."""
    if level == 0:
        return rows, scale, (fro * scale) ** 2, None
    Qs, top = out[1], 0                   # Q^ = scale Q, its slabs stacked: (N, S, S)
    for r in rows:
        torch.mul(r, scale[:, None, None], out=Qs[:, top:top + r.shape[1]])
        top += r.shape[1]
    X = torch.bmm(Qs.mT, Qs, out=out[0])                           # M^ M^^T = Q^^T Q^
    for j in range(level - 1):
        X = torch.bmm(X, X, out=out[(j + 1) % 2])
    f = torch.linalg.vector_norm(X, dim=(-2, -1))
    nonzero = f > 0                                                # a zero M stays zero
    f = torch.where(nonzero, f, 1)
    return (X,), 1 / f, nonzero.to(f.dtype), f.log()


def next_level(level, checks, certified_all):
    """The level for the next chunk, from how this one went: one lower where every
    matrix was certified within DESCEND checked steps (half the exponent will then need
    about twice the steps, and saves a product per matrix), one higher where some were
    not certified at all, else the same. A running product's spectrum decays as the lags
    grow, so the level walks down from COLD_LEVEL: on the LSTM at n = 64 and 128 it is
    3 for the first lags and 0 from lag 33 at n = 64 (chunks of 8 lags; one level a
    chunk at the soonest), and against always iterating on A it halved
    the cost of the first 24 lags (measured at S = 128 and 256). It decides cost only:
    every value is certified whatever the level."""
    if not certified_all:
        return min(level + 1, MAX_LEVEL)
    if checks <= DESCEND and level > 0:
        return level - 1
    return level
