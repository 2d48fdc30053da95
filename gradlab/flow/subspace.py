"""The top singular value of many matrices at once: subspace iteration, certified.

Past the first few lags a running product is numerically of low rank (for the LSTM at
n = 64, sigma_9 / sigma_1 is below 0.04 from lag 32 on), and range(P_{k+1}) = range(P_k
J) lies inside range(P_k). So the top few left singular vectors of the previous chunk's
last product span, almost exactly, those of every product in the next chunk, however far
the top one itself turns from lag to lag. From that start a few steps of subspace
iteration with Rayleigh-Ritz on A = M M^T converge, each gaining a factor
(sigma_{p+1} / sigma_1)^4 on the top eigenvalue, and each costs two passes over M and,
where it is checked, an eigh of order p. Late in a long walk the start is good enough
to be checked before any step (`Pace` learns, chunk by chunk, how many steps to take
unchecked). Where the spectrum is flat (the first lags, and the first chunk, which
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

from .linalg import orthonormalized

SUBSPACE_BLOCK = 8        # vectors carried from chunk to chunk (sigma_9 / sigma_1 decides
                          # the rate; an eigh of order 8 costs ~6 us a matrix on the CPU)
SUBSPACE_CHECKS = 7       # checks before block Lanczos takes over
FIRST_CHECK = 1           # plain power steps before the first check (see Pace)


def certified(theta, r2, trace):
    """The bound on lambda_max(A) - theta_1 for each matrix, from its Ritz values theta
    (N, c) in descending order, their squared residuals r2 (N, c) and trace(A) (N,):
    min over c of ||E_c||^2 / eta_c where it applies (eta_c > 0), else inf."""
    top = theta[:, :1].clamp_min(0)
    eta = top - (trace[:, None] - theta.cumsum(-1))           # theta_1 - trace(A_22)
    bound = r2.cumsum(-1) / eta.clamp_min(torch.finfo(theta.dtype).tiny)
    return torch.where(eta > 0, bound, math.inf).amin(-1)


def apply(rows, U, scale):
    """U A U^T (n, p, p) and U A (n, p, S) for A = M^ M^^T, M^ = scale M, M^T = Q given as
    the row slabs `rows` stacked ((n, w_a, S) each; one slab for a plain Q): with Z_a =
    slab_a U^T scaled, U A U^T = sum_a Z_a^T Z_a and U A = sum_a Z_a^T slab_a, scaled
    again. Scaled between the two products, so that nothing overflows on the way to A U
    (float32 squares overflow past 1.8e19)."""
    s = scale[:, None, None]
    parts = [torch.bmm(r, U.mT).mul_(s) for r in rows]             # (n, w_a, p)
    G, AU = torch.bmm(parts[0].mT, parts[0]), torch.bmm(parts[0].mT, rows[0])
    for z, r in zip(parts[1:], rows[1:]):
        G.baddbmm_(z.mT, z)
        AU.baddbmm_(z.mT, r)
    return G, AU.mul_(s)


def subspace(rows, U, quad, scale, trace, steps=None, first_check=FIRST_CHECK, keep=None):
    """sigma_max of each M by subspace iteration on A = M^ M^^T, M^ = scale M, from the
    orthonormal rows U (N, p, S), where M^T = Q is given as its row slabs `rows` ((N, w_a,
    S) each, stacked; a tuple of one for a plain Q): the walk holds P^T as one slab per
    state part, and a power of A is symmetric, so every product reads a slab as it lies in
    memory. `scale` (N,) is 1 / ||M||_F (or 1 for a matrix too small to scale): with
    trace(A) = 1 no Ritz value or residual under- or overflows, whatever the scale of M;
    `trace` (N,) is ||M^||_F^2 (1, or 0 for a zero M). The first `first_check` iterations
    are plain power steps (no check: from a start that cannot be certified yet it would
    cost for nothing).

    Returns sigma of M^ (N,), the top p Ritz vectors as rows (N, p, S) (the next warm
    start; only for the matrices `keep` (N,) marks, if given, and those not certified),
    the indices of the matrices the bound did not certify within `steps` checks (their
    sigma is nan), and the checks it took."""
    steps = first_check + (SUBSPACE_CHECKS if steps is None else steps)
    N, S = U.shape[0], U.shape[-1]
    eps = torch.finfo(U.dtype).eps
    sigma = U.new_full((N,), math.nan)
    ritz = U.clone() if keep is None else torch.empty_like(U)
    idx = torch.arange(N, device=U.device)
    done = torch.zeros(N, dtype=torch.bool, device=U.device)
    want = torch.ones_like(done) if keep is None else keep
    # rounding: the sum of Ritz values is short of its exact value by up to ~(p + 1) S eps
    # (trace 1 and theta_1 <= 1), so the trace beyond them is taken that much larger
    trace = trace + (U.shape[1] + 1) * S * eps

    def accept(theta, r2, X):
        """Record the matrices the bound certifies from Ritz values theta (n, p),
        squared residuals r2 (n, p) and Ritz vectors X (n, p, S); True if none is left."""
        nonlocal done
        top = theta[:, 0].clamp_min(0)
        ok = (certified(theta, r2, trace) <= quad * top) & ~done
        if bool(ok.any()):
            sigma[idx[ok]] = top[ok].sqrt()
            kept = ok & want
            ritz[idx[kept]] = X[kept]
        done = done | ok
        return bool(done.all())

    def residual2(theta, AX, X):
        # each residual as computed is off by up to ~2 S eps ||M^||_F ||M^ x|| (two
        # products over S terms), ||M^ x|| = sqrt(theta_i): added, so the bound keeps
        # its meaning in floating point (measured: without it a cancellation certified
        # a value 115x outside rtol)
        slack = 2 * S * eps * theta.clamp_min(0).sqrt()
        return (torch.linalg.vector_norm(AX - theta[..., None] * X, dim=-1) + slack) ** 2

    for it in range(steps):
        G, AU = apply(rows, U, scale)                            # U A U^T, U A
        if it >= first_check:                                    # Rayleigh-Ritz on all p
            theta, Y = torch.linalg.eigh(G)                      # ascending
            theta, Y = theta.flip(-1), Y.flip(-1)
            X = Y.mT @ U                                         # the Ritz vectors, rows
            if accept(theta, residual2(theta, Y.mT @ AU, X), X):
                return sigma, ritz, idx[:0], it + 1 - first_check
            left = ~done
            if 2 * int(left.sum()) <= len(idx):
                rows = tuple(r[left] for r in rows)
                idx, AU, X, trace, scale, done, want = (
                    a[left] for a in (idx, AU, X, trace, scale, done, want))
            last_X = X
        U = orthonormalized(AU.mT).mT                            # span(A U), orthonormal
    rest = ~done
    if steps > first_check:
        ritz[idx[rest]] = last_X[rest]
    return sigma, ritz, idx[rest], steps - first_check


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
    3 for the first lags and 0 from lag 25 at n = 64 (chunks of 8 lags; one level a
    chunk at the soonest; the cold first chunk's own steps are not counted, see
    Spectral.measure), and against always iterating on A it halved
    the cost of the first 24 lags (measured at S = 128 and 256). It decides cost only:
    every value is certified whatever the level."""
    if not certified_all:
        return min(level + 1, MAX_LEVEL)
    if checks <= DESCEND and level > 0:
        return level - 1
    return level


class Pace:
    """How many plain power steps (no check) a chunk takes before its first check, from
    how the chunks before it went. A check costs an eigh of order p per matrix, for
    nothing where it fails; a step saved saves two passes over M and a QR. A chunk
    usually needs about as many steps as the one before it at the same level, and fewer
    as the lags grow and the spectrum decays (LSTM, n = 64, B = 4, T = 1024: from lag
    193 on the previous chunk's vectors certify each product with no step at all). So
    the next chunk starts checking at the step that certified this one, and after a
    chunk certified at its first check it tries one step fewer, unless such a try failed
    lately (then it waits 1, 2, 4, ... chunks). Back to FIRST_CHECK when the level
    changes or a matrix went uncertified. It decides cost only: every value is
    certified either way."""

    def __init__(self):
        self.plain, self.wait, self.backoff, self.trying = FIRST_CHECK, 0, 1, False

    def update(self, same_level, checks, certified_all):
        """After a chunk that took self.plain plain steps and `checks` checks."""
        tried, self.trying = self.trying, False
        if not (same_level and certified_all):
            self.plain = FIRST_CHECK
        elif checks > 1:                 # start checking where this chunk was certified
            if tried:
                self.wait, self.backoff = self.backoff, 2 * self.backoff
            self.plain = min(self.plain + checks - 1, SUBSPACE_CHECKS)
        else:
            if tried:
                self.backoff = 1
            if self.wait:
                self.wait -= 1
            elif self.plain:
                self.plain, self.trying = self.plain - 1, True
