"""The top singular value of many matrices at once: `Spectral`, which runs subspace
iteration (subspace.py) chunk after chunk, and block Lanczos for what it cannot certify.

sigma_max(M) for a batch of M (N, S, S), as the top eigenvalue of A = M M^T. The first
chunk of lags starts from random rows; every later chunk from the previous chunk's top
Ritz vectors. Each chunk iterates on A or on a power of it, the level set by how the
previous chunk went (`subspace.next_level`), takes as many unchecked steps as the chunks
before it suggest (`subspace.Pace`), and stops on a residual bound. What that
bound cannot certify in SUBSPACE_CHECKS checks (a spectrum too flat for it) is run again
a level higher (`Spectral.escalate`), and what is still left goes to block Lanczos on A,
from its top Ritz vector and a fresh random one.

Lanczos stops per matrix, with no host synchronisation per matrix, on the same bound as
the subspace iteration (`subspace.certified`), over every Ritz pair of its basis: a
proof, in exact arithmetic, that sqrt(top Ritz value) is within rtol of sigma_max, never
a rule of thumb. (It once stopped on a residual rule, the Weyl or Kato-Temple bound with
the Ritz gaps standing in for the true ones; on a near-isometry, an orthogonal W with
small inputs, whose singular values all lie within 1e-4 of the top, that rule accepted
values 150x outside rtol.) What the bound cannot prove within LANCZOS_STEPS, a spectrum
too flat for any iteration, and every matrix with S <= DENSE_BELOW, gets svdvals.
"""

import numbers

import torch

from ..errors import GradlabError
from .linalg import nan_where, orthonormalized, thin_qr, top_singular
from .scale import largest_exponent, power_of_two
from .subspace import (COLD_LEVEL, FIRST_CHECK, MAX_LEVEL, SUBSPACE_BLOCK, Pace, apply,
                       certified, next_level, powered, subspace)
from .workspace import Workspace

DENSE_BELOW = 24          # S <= this: svdvals is cheaper than Lanczos and exact
LANCZOS_BLOCK = 2         # vectors per Lanczos block: each Ritz step costs a small eigh per
LANCZOS_BASIS = 8         # matrix, so keep the basis (blocks before a restart) small
LANCZOS_STEPS = 20        # block steps before svdvals takes over: by then they have cost
                          # about what an SVD does
ESCALATE = 2              # more subspace runs (`Spectral.escalate`) before Lanczos
LANCZOS_FIRST_CHECK = 3   # block steps before the first convergence check (measured: with
                          # a warm start no matrix converged in fewer, and each check costs
                          # an eigh per matrix)
# Default relative accuracy of each spectral norm (`gradient_flow(rtol=)`), of the
# matrices as the walk holds them (the rounding in forming a product is any float chain's,
# not the norm's). In float64 the bound takes all of rtol, rounding being ~1e-15; the error
# seen against svdvals is below 1e-11 (worst 9.7e-12). In float32 rounding in the passes
# over M adds ~1e-7 to the Ritz values (a bound of 5e-7 gave errors up to 6.0e-7 at S =
# 256), so the bound takes half of rtol and leaves the rest to rounding (FLOAT32_SHARE).
# That rest is measured, not bounded: at S = 512 (LSTM, n = 256, T = 64, B = 8) it took one
# value to 5.04e-7 against the default 5e-7 (values up to 4.6e-7 above the exact one, which
# no iteration can reach). So what is certified on A itself (level 0: every lag past the
# first few) is certified again in float64 (`Spectral.in_float64`): worst error seen since
# 2.1e-7 there (2.4e-7 for a GRU at S = 128), from values certified on a power of A.
RTOL = {torch.float64: 1e-11, torch.float32: 5e-7}
FLOAT32_SHARE = 0.5


def tolerance(dtype, rtol=None):
    """quad = 2 rtol (float32: 2 rtol FLOAT32_SHARE): a matrix is done when the bound on
    the relative error of the top eigenvalue of M M^T is below quad (sigma = sqrt(lambda):
    half the relative error). What the bound cannot reach in float32 (rtol at rounding
    level) ends in svdvals, taken in float64."""
    if rtol is None:
        if dtype not in RTOL:
            raise GradlabError(f"spectral norms are computed in float32 or float64, "
                               f"not {str(dtype).removeprefix('torch.')}")
        rtol = RTOL[dtype]
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 < rtol < 1:
        raise GradlabError(f"rtol must be a number in (0, 1), got {rtol!r}")
    return 2.0 * float(rtol) * (FLOAT32_SHARE if dtype == torch.float32 else 1.0)


def orthonormal_rows(W, V):
    """Orthonormal rows spanning the rows of W (N, p, S) minus those of V (N, q, S):
    block classical Gram-Schmidt against V, twice (enough in floating point), then a
    Householder QR of the block. A row W does not add (its |R_ii| below 1e-10 of its
    norm, or 1e3 eps where rounding is coarser: float32) comes out zero, so a
    Rayleigh-Ritz over [V; W] stays exact (a float32 row of pure rounding, normalised,
    left the basis far from orthonormal and Lanczos accepted values 1e-3 off)."""
    scale = torch.linalg.vector_norm(W, dim=-1)                      # (N, p)
    for _ in range(2):
        W = W - (W @ V.mT) @ V
    Q, r = thin_qr(W.mT)
    Q = Q.mT                                                          # (N, p, S)
    Q = Q - (Q @ V.mT) @ V                                            # rounding of tiny rows
    keep = r.abs() > max(1e-10, 1e3 * torch.finfo(W.dtype).eps) * scale
    return torch.where(keep[..., None], Q, 0)


def lanczos(M, U, quad, trace):
    """Largest singular value of each M (N, S, S): block Lanczos with full
    reorthogonalisation on A = M M^T, from the orthonormal rows U (N, p, S); trace (N,)
    is ||M||_F^2, the sum of A's eigenvalues.

    Vectors are kept as rows, (A V)^T = (V^T M) M^T, which is the fast layout for a thin
    block against a square matrix. A matrix is accepted on the bound of subspace.py
    (`certified`, over every Ritz pair of the basis): nothing is accepted that the
    bound does not prove within rtol. What it cannot prove, the matrices whose trace
    the basis cannot account for (a flat spectrum: a near-isometry has every singular
    value within 1e-4 of the top, and no Krylov method can tell its top from the
    rest), and whatever is left after LANCZOS_STEPS get svdvals. Returns sigma (N,) and
    the top-p Ritz vectors as rows (N, p, S), in ascending order."""
    N, p, S = U.shape
    eps = torch.finfo(M.dtype).eps
    qmax = min(S, LANCZOS_BASIS * p)
    sigma, ritz = M.new_zeros(N), U.clone()
    idx = torch.arange(N, device=M.device)
    # as in `subspace`: the Ritz values' sum is short of its exact value by up to ~q S eps
    trace = trace + (qmax + 1) * S * eps
    # the basis V and A V as rows, in buffers filled block by block (no copies as it grows)
    Vb, AVb = M.new_empty(N, qmax, S), M.new_empty(N, qmax, S)
    Vb[:, :p], AVb[:, :p] = U, (U @ M) @ M.mT
    q = p
    done = torch.zeros(N, dtype=torch.bool, device=M.device)
    for it in range(LANCZOS_STEPS):
        V, AV = Vb[:, :q], AVb[:, :q]
        last = it == LANCZOS_STEPS - 1
        if it >= LANCZOS_FIRST_CHECK or last or q + p > qmax:
            H = V @ AV.mT
            theta, Y = torch.linalg.eigh(0.5 * (H + H.mT))           # ascending
            theta, Y = theta.flip(-1), Y.flip(-1)                    # descending
            X = Y.mT @ V                                             # Ritz vectors, rows
            top = theta[:, 0].clamp_min(0)                           # (Na,)
            # residuals, each taken larger by its possible rounding (as in `subspace`)
            slack = 2 * S * eps * theta.clamp_min(0).sqrt()
            r2 = (torch.linalg.vector_norm(Y.mT @ AV - theta[..., None] * X, dim=-1)
                  + slack) ** 2
            ok = certified(theta, r2, trace) <= quad * top
            best, Yp = X[:, :p].flip(1), Y[:, :, :p].flip(-1).mT     # top p, ascending
            new = ok & ~done
            sigma[idx[new]] = top[new].sqrt()
            ritz[idx[new]] = best[new]
            done = done | ok
            # the trace beyond what a full basis could hold: theta_1 + sum of the top
            # qmax Ritz values <= (qmax + 1) lambda_1 must exceed it for the bound to
            # apply at all. Where even 2x that is short, more steps are no use (cost only:
            # such a matrix gets svdvals either way)
            hopeless = ~done & (2 * (qmax + 1) * top < trace)
            left = ~done & ~hopeless
            count = int(left.sum())
            if count == 0 or last:
                break
            if 2 * count <= len(idx):                                 # iterate on the rest;
                gone = idx[hopeless]                                  # copying M costs a
                if len(gone):
                    sigma[gone] = top_singular(M[hopeless])
                    ritz[gone] = best[hopeless]                       # pass over it
                idx, M, Vb, AVb, Yp, best, trace, done = (
                    a[left] for a in (idx, M, Vb, AVb, Yp, best, trace, done))
                V, AV = Vb[:, :q], AVb[:, :q]
            if q + p > qmax:                                          # restart: top Ritz block
                Vb[:, :p], AVb[:, :p] = best, Yp @ AV
                q = p
        W = orthonormal_rows(AVb[:, q - p:q], Vb[:, :q])
        Vb[:, q:q + p], AVb[:, q:q + p] = W, (W @ M) @ M.mT
        q += p
    rest = ~done
    if bool(rest.any()):                                              # not proven:
        sigma[idx[rest]] = top_singular(M[rest])                      # exact, at SVD cost
        ritz[idx[rest]] = best[rest]
    return sigma, ritz


def unpowered(s, log_f, level, scale):
    """sigma_max of M from subspace's s at `level`: s = lambda_max(X / F) with X =
    A^(2^(level - 1)), A = M^ M^^T, M^ = scale M, log F = log_f (`powered`; at level 0,
    s = sigma_max(M^) itself)."""
    if level:
        s = ((s.double().log() + log_f.double()) * 0.5 ** level).exp().to(s.dtype)
    return s / scale


class Spectral:
    """Spectral norms of successive chunks of matrices of one kind (the running product,
    its inverse, or its blocks), carrying the warm start from chunk to chunk, to relative
    accuracy `rtol` (default RTOL[dtype])."""

    def __init__(self, seed, dtype, rtol=None, scratch=None):
        self.gen = torch.Generator().manual_seed(int(seed))
        tolerance(dtype, rtol)           # refuse a bad rtol (or dtype) now, not mid-walk
        self.rtol = rtol                 # None: the default of each call's dtype
        self.warm = None                                              # (B', k, S)
        self.level = COLD_LEVEL          # iterate on (M M^T)^(2^(level - 1)), see subspace
        self.pace = Pace()               # plain power steps before a chunk's first check
        # the work arrays for the powers: a Workspace, kept from chunk to chunk (a fresh
        # array costs a page fault per 4 KiB on the CPU) and shared by the Spectral
        # objects of one walk (they run one after another), which pass the same one
        self.scratch = Workspace() if scratch is None else scratch

    def buffer(self, like, N, S, count):
        """(count, N, S, S) work arrays of like's dtype and device (None for count 0)."""
        if not count:
            return None
        self.scratch.reset()
        return self.scratch.empty((count, N, S, S), dtype=like.dtype, device=like.device)

    def orthonormal(self, W):
        """Orthonormal rows spanning W (N, p, S), its zero rows (a start not yet filled)
        replaced by random ones, drawn in float32 (torch's CPU generator draws those 4x
        faster than float64). W without a zero row is returned as it is: callers pass
        rows that are orthonormal already (Ritz vectors) or have zero rows."""
        empty = torch.linalg.vector_norm(W, dim=-1) == 0                  # (N, p)
        if not bool(empty.any()):
            return W
        fresh = torch.randn(W.shape, generator=self.gen, dtype=torch.float32, device="cpu").to(W)
        return orthonormalized(torch.where(empty[..., None], fresh, W).mT).mT

    def __call__(self, M, lags, fro=None):
        """sigma_max of M (lags * B', S, S) -> (lags * B',); fro, if given, is each M's
        Frobenius norm (the walk has it already: one pass over M fewer)."""
        return self.of_rows((M.mT,), lags, fro)

    def in_float64(self, rows, rest, sigma, ritz):
        """float32 matrices the subspace iteration certified on A (level 0), all but
        `rest`: the bound again in float64, from their Ritz vectors, one Rayleigh-Ritz
        step on the matrices as held (exact in float64), at the whole rtol less an ulp
        for rounding the result to float32. In float32 the bound takes only half of rtol
        and leaves the rest to rounding, which is measured, not bounded: at S = 512 it
        took a value to 5.04e-7 against rtol 5e-7, with values up to 4.6e-7 above the
        exact one, which no iteration can reach. Where the float64 bound holds (it
        needs no more steps: the float32 vectors are as good as float32 rounding
        lets them be), sigma is its value; elsewhere the float32 value stays. Costs a
        float64 copy of those matrices and two thin passes over it: the float32 norms of
        an LSTM took 1.31 -> 1.72 s at S = 512 (n = 256, T = 64, B = 8), 111 -> 227 ms at
        S = 128 (n = 64, T = 256, B = 8), where without it rounding alone put values
        3.8e-7 above the exact ones, past its half of rtol."""
        done = torch.ones(len(sigma), dtype=torch.bool, device=sigma.device)
        done[rest] = False
        idx = done.nonzero().squeeze(-1)
        if not len(idx):
            return
        part = tuple(r[idx].double() for r in rows)
        fro = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(r, dim=(-2, -1)) for r in part]), dim=0)
        scale = torch.where(fro > 0, 1 / fro, 1)
        rtol = RTOL[torch.float32] if self.rtol is None else self.rtol
        quad = max(2 * (rtol - torch.finfo(torch.float32).eps / 2), 0.0)
        s, _, left, _ = subspace(part, orthonormalized(ritz[idx].double().mT).mT, quad, scale,
                                 (fro * scale) ** 2, steps=1, first_check=0)
        good = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
        good[left] = False
        sigma[idx[good]] = (s[good] / scale[good]).to(sigma.dtype)

    def escalate(self, rows, level, rest, sigma, ritz, scale, fro, tol):
        """The matrices `rest` that subspace iteration at `level` did not certify, run
        again ESCALATE times from their last Ritz vectors, each time a level higher (up to
        MAX_LEVEL; there, SUBSPACE_CHECKS more checks): a flat top of the spectrum is
        what stopped it, and each level squares the ratios that decide the rate, for one
        more product of those matrices, far less than an SVD at large S. Measured, LSTM,
        n = 256, float32 (S = 512): the level policy steps down as the spectrum decays,
        and at level 1 most of a lag's matrices went through Lanczos, which cannot prove
        them on A either, to svdvals (~37 ms each on a 2-core CPU, ~100 ms on CUDA, one
        at a time there): 33 of 512 at T = 64, B = 8, then 3, and the norms' cost from
        2.4-2.8 s to 1.3-1.8 s. Fills sigma and ritz where certified; returns the indices
        still not certified, for Lanczos."""
        if not len(rest):
            return rest
        # a top too flat for any level (a near-isometry: every sigma within 1e-4 of the
        # top) goes straight on: with theta the Ritz values on A (trace 1) of the vectors
        # the failed run left, the part of A^q beyond them is about theta_k^(q-1) times
        # the trace they leave, and the bound needs it below theta_1^q (halved, for
        # rounding and unconverged values), at q = 2^MAX_LEVEL at least
        U = orthonormalized(ritz[rest].mT).mT
        theta = torch.linalg.eigvalsh(apply(tuple(r[rest] for r in rows), U, scale[rest])[0])
        theta = theta.clamp_min(0)                                       # ascending
        q, beyond = 2 ** MAX_LEVEL, ((fro[rest] * scale[rest]) ** 2 - theta.sum(-1)).clamp_min(0)
        hopeful = theta[:, 0] ** (q - 1) * beyond < 0.5 * theta[:, -1] ** q
        flat, rest = rest[~hopeful], rest[hopeful]
        for _ in range(ESCALATE):
            if not len(rest):
                break
            level = min(level + 1, MAX_LEVEL)
            part = tuple(r[rest] for r in rows)
            work = self.buffer(part[0], len(rest), part[0].shape[-1], 2)
            X, xscale, xtrace, log_f = powered(part, level, work, scale[rest], fro[rest])
            start = orthonormalized(ritz[rest].mT).mT
            s, found, left, _ = subspace(X, start, tol * 2 ** level, xscale, xtrace)
            sigma[rest], ritz[rest] = unpowered(s, log_f, level, scale[rest]), found
            rest = rest[left]
        return torch.cat([flat, rest])

    def of_rows(self, rows, lags, fro=None):
        """sigma_max of each M whose transpose is the row slabs `rows` stacked ((N, w_a,
        S) each: the walk holds P^T as one slab per state part, so no copy assembles
        it) -> (N,), N = lags * B'."""
        N = rows[0].shape[0]
        if lags < 1 or N % lags:
            raise GradlabError(f"{N} matrices do not make {lags} lags of equal batches")
        # A matrix holding inf or nan (a Jacobian evaluated at an overflowed state) has no
        # norm to measure: its sigma is nan. It enters the routines below as zeros, since
        # SVD and eigh raise on non-finite input and one such matrix would lose the batch.
        # A finite Frobenius norm (needed anyway: the trace of M M^T) says so in one pass.
        if fro is None:
            fro = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(r, dim=(-2, -1)) for r in rows]), dim=0)
        fro = fro.to(rows[0].dtype)
        finite = torch.isfinite(fro)
        if not bool(finite.all()):                  # rare: which entries, exactly
            finite = torch.stack([torch.isfinite(r).all(dim=(-2, -1)) for r in rows]).all(0)
            rows = tuple(torch.where(finite[:, None, None], r, 0) for r in rows)
        # a sum of squares that over- or underflowed (entries beyond ~1e154 or below
        # ~1e-154 in float64, or a norm past the largest float): those matrices are
        # measured as M 2^-e, max |M 2^-e| in [1/2, 1), exact, and sigma times 2^e
        odd = (~torch.isfinite(fro) | (fro < torch.finfo(fro.dtype).tiny ** 0.5)) & finite
        if bool(odd.any()):
            shift = torch.where(odd, largest_exponent(rows), 0)
            rows = tuple(power_of_two(r, -shift) for r in rows)
            fro = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(r, dim=(-2, -1)) for r in rows]), dim=0)
            return power_of_two(self.measure(rows, lags, fro, finite), shift)
        return self.measure(rows, lags, fro, finite)

    def measure(self, rows, lags, fro, finite):
        """of_rows for matrices whose Frobenius norms `fro` are finite where `finite`
        (the rows are zero elsewhere), and not so small that their squares underflow."""
        N, S = rows[0].shape[0], rows[0].shape[-1]
        fro = torch.where(finite, fro, 0)

        def matrices(pick=slice(None)):           # M itself, assembled, where needed
            return torch.cat([r[pick] for r in rows], 1).mT
        if S <= DENSE_BELOW:
            return nan_where(top_singular(matrices()), finite)
        p, k = min(LANCZOS_BLOCK, S), min(SUBSPACE_BLOCK, S)
        B = N // lags
        held = self.warm
        if held is not None and (held.shape != (B, k, S) or held.dtype != rows[0].dtype
                                 or held.device != rows[0].device):
            self.warm = None                 # other matrices than last time: start afresh
        cold = self.warm is None
        tol = tolerance(rows[0].dtype, self.rtol)          # the default follows the dtype
        if cold:                             # the first chunk: from random rows
            level, U = COLD_LEVEL, self.orthonormal(fro.new_zeros(N, k, S))
            self.pace = Pace()
        else:                                # then from the last lag's top Ritz vectors
            level = self.level
            U = self.orthonormal(self.warm[None].expand(lags, B, k, S).reshape(N, k, S))
        # the iterations run on M^ = M / ||M||_F (A = M^ M^^T of trace 1), whatever the
        # scale the walk left M at; a matrix too small to divide by (or zero) as it is
        scale = torch.where(fro > torch.finfo(fro.dtype).tiny, 1 / fro, 1)
        try:
            work = self.buffer(rows[0], N, S, 2 if level else 0)
            X, xscale, xtrace, log_f = powered(rows, level, work, scale, fro)
            last = torch.arange(N, device=U.device) >= N - B     # the next warm start
            wide = level == 0 and rows[0].dtype == torch.float32   # (see in_float64)
            s, ritz, rest, checks = subspace(X, U, tol * 2 ** level, xscale, xtrace,
                                             first_check=self.pace.plain,
                                             keep=None if wide else last)
            sigma = unpowered(s, log_f, level, scale)
            if wide:
                self.in_float64(rows, rest, sigma, ritz)
            rest = self.escalate(rows, level, rest, sigma, ritz, scale, fro, tol)
            if len(rest):                    # not certified: Lanczos on M^ from the top
                U = torch.cat([U.new_zeros(len(rest), 1, S),          # Ritz vector and a
                               ritz[rest, :p - 1]], 1)                # fresh one
                r = scale[rest]
                found, top = lanczos(matrices(rest) * r[:, None, None], self.orthonormal(U),
                                     tol, (fro[rest] * r) ** 2)
                sigma[rest] = found / r
                ritz[rest, :p] = top.flip(1)                          # converged: top first
                ritz[rest] = orthonormalized(ritz[rest].mT).mT            # with the rest: a basis
            # the level policy counts the steps a chunk took as if it had checked from
            # FIRST_CHECK on (so skipping checks does not change the level it picks); a
            # random start's steps say nothing of the spectrum, so a cold chunk that was
            # certified throughout lets the next go a level down (measured, lstm n = 64,
            # T = 64, B = 8: levels 3, 2, 1, 0 took 41-43 ms against 46 for 3, 3, 2, 1, 0)
            steps = 0 if cold else self.pace.plain + checks - FIRST_CHECK
            self.level = next_level(level, steps, len(rest) == 0)
            # (a random start says nothing of the pace the warm ones will need)
            self.pace.update(self.level == level and not cold, checks, len(rest) == 0)
        except torch.linalg.LinAlgError:        # eigh/qr gave up on a finite M: SVD it
            self.warm, self.level, self.pace = None, COLD_LEVEL, Pace()   # start afresh
            return nan_where(top_singular(matrices()), finite)
        # orthonormal again (a QR of B blocks): chunks certified with no step pass their
        # start on rotated by eigh's vectors, whose rounding would otherwise add up, and
        # the Ritz values of a start off by d from orthonormal are off by d (float32,
        # 32 such chunks: 1.5e-6 instead of 4e-7)
        self.warm = orthonormalized(ritz[N - B:, :k].mT).mT
        return nan_where(sigma, finite)
