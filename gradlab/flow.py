"""Gradient flow through time: products of state Jacobians, their norms in log space.

For a cell s_t = F(s_{t-1}, x_t) driven by inputs x_1..x_T (xs[0..T-1]) from s_0, the
gradient that reaches s_{T-k} from s_T is carried by

    P_k = d s_T / d s_{T-k} = J_T J_{T-1} ... J_{T-k+1},    J_t = d s_t / d s_{t-1},

k = 1..T (numerator layout, parts in `state_names` order, S = n * parts). `gradient_flow`
runs the lowered step forward and keeps the states (O(T B S)); what of a step reads no
state (U x + b) is computed for all T steps in one call first (`hoist`). Then it walks
back in time with one running product, P_k = P_{k-1} J_{T-k+1}, evaluating the lowered
Jacobian for a chunk of C steps per call, its blocks compacted by structure (a diagonal
block as its diagonal), its in-place sums written into arrays reused from chunk to chunk.
Memory beyond the states and the hoisted inputs (O(T B S) both) is O(C B S^2), C set by
a byte budget (CHUNK_BYTES), never O(T B S^2).

The product is kept transposed, P^T = J^T ... J^T, in one row slab per state part, so
a cell with diagonal or zero Jacobian blocks (read from SymPy: the LSTM's d c'/d c =
diag(f)) multiplies those blocks as broadcasts and skips zeros: half the flops of a
dense (S, S) product for the LSTM. Its Frobenius norm is m 2^e (frexp); whenever e drifts
past +-64 (at every step on CUDA) the product is multiplied by 2^-e, which is exact, and
the exponents divided out are summed as integers, so log ||P_k|| is finite and correct to
float64 round-off at lag 10,000, where ||P_k|| itself is far outside float64.

Norms of every P_k, per sequence, natural log, lag k at column k-1:
    frobenius     the scale and the norm that is left (free).
    spectral      block Lanczos on P P^T (left vectors: they live at time T, so the top
                  Ritz vectors of the previous chunk of lags are a warm start), stopped
                  when a Weyl / Kato-Temple bound puts the relative error of sigma^2
                  below 1e-11 (float64; seen ~4e-12 against svdvals), svdvals for any
                  matrix that has not converged in LANCZOS_STEPS, and for S <= 24. Cost:
                  a few thin passes over P per lag, not an SVD (~11 products) per lag.
    min_singular  1 / ||P_k^{-1}||_2, P_k^{-1} = J_{T-k+1}^{-1} P_{k-1}^{-1} streamed the
                  same way (one LU solve per lag, ~1.3 products, plus the Lanczos
                  passes): exact even where sigma_min / sigma_max is far below 1e-16,
                  which svdvals of P_k could not resolve. From the first exactly singular
                  J_t on, every longer product is singular: -inf. Computed on request.
Blocks of P_k (out part, in part), e.g. the LSTM's cell path ("c", "c"), get spectral and
Frobenius norms in the same walk. What a loss L = <v, s_T> sees, ||dL/ds_t|| and
||dL/dx_t||, comes from vector-Jacobian products, O(T B S^2) (`Flow.loss_grad_norms`).
"""

import functools
import math
import threading
import types

import numpy as np
import torch

from .lowering import lower
from .lowering.backends import backend
from .errors import GradlabError
from .registry import cell as _lookup

NORMS = ("spectral", "frobenius", "min_singular")
LN2 = math.log(2.0)
BLOCK_NORMS = ("spectral", "frobenius")
DTYPES = (torch.float32, torch.float64)

# Bytes of running products kept per chunk (C lags at once): large enough that the
# per-chunk Lanczos overhead is amortised, small enough to stay in cache-friendly memory.
CHUNK_BYTES = {"cpu": 16 << 20, "cuda": 1 << 30}
DENSE_BELOW = 24          # S <= this: svdvals is cheaper than Lanczos and exact
LANCZOS_BLOCK = 2         # vectors per Lanczos block: each Ritz step costs a small eigh per
LANCZOS_BASIS = 8         # matrix, so keep the basis (blocks before a restart) small
LANCZOS_STEPS = 20        # block steps before svdvals takes over: by then they have cost
                          # about what an SVD does
LANCZOS_FIRST_CHECK = 2   # block steps before the first convergence check (a warm start
                          # alone almost never passes it)
# Stop when the bound on the relative error of the top eigenvalue of P P^T is below `quad`
# (Weyl: rho; Kato-Temple for the top c Ritz values as a cluster: ||R_c||^2 / gap_c; over
# theta) and the top residual rho itself is below `lin` (so the Ritz gaps that stand in for
# the true ones in the quadratic bound are credible).
TOLERANCE = {torch.float64: (1e-11, 1e-5), torch.float32: (1e-6, 1e-3)}


# --- inputs --------------------------------------------------------------------------------

def _zeros(T, B, m, gen, dtype):
    return torch.zeros(T, B, m, dtype=dtype)


def _gaussian(T, B, m, gen, dtype):
    return torch.randn(T, B, m, generator=gen, dtype=dtype)


def _constant(T, B, m, gen, dtype):
    return torch.randn(1, B, m, generator=gen, dtype=dtype).expand(T, B, m).clone()


INPUTS = {"zeros": _zeros, "gaussian": _gaussian, "constant": _constant}


def make_inputs(kind, T, B, m, *, scale=1.0, seed=0, dtype=torch.float64, device="cpu"):
    """Inputs xs (T, B, m): "zeros"; "gaussian", i.i.d. N(0, scale^2) per entry (so
    R = ||x||^2/m = scale^2, derivations/theory.md §2); "constant", one N(0, scale^2) vector per
    sequence held for all T steps (exact results, derivations/theory.md §3); or a tensor (T, B, m),
    returned on `device` in `dtype` (then T, B, m are checked against it)."""
    dtype = _as_dtype(dtype)
    if isinstance(kind, (torch.Tensor, np.ndarray)):
        xs = torch.as_tensor(kind)
        if tuple(xs.shape) != (T, B, m):
            raise GradlabError(f"inputs have shape {tuple(xs.shape)}, expected (T, B, m) = "
                               f"({T}, {B}, {m})")
        return xs.to(dtype=dtype, device=device)
    if kind not in INPUTS:
        raise GradlabError(f"unknown inputs {kind!r}; valid: {', '.join(INPUTS)} or a "
                           "tensor (T, B, m)")
    for value, what in ((T, "T"), (B, "B"), (m, "m")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradlabError(f"{what} must be a positive integer, got {value!r}")
    gen = torch.Generator().manual_seed(int(seed))
    xs = INPUTS[kind](T, B, m, gen, torch.float64) * scale
    return xs.to(dtype=dtype, device=device)


def _as_dtype(dtype):
    names = {"float32": torch.float32, "float64": torch.float64}
    dtype = names.get(dtype, dtype)
    if dtype not in DTYPES:
        raise GradlabError(f"dtype {dtype!r} is not supported; use float32 or float64")
    return dtype


# --- the lowered cell, bound once ----------------------------------------------------------

def _matmul(a, b):
    """A v for a weight a (r, k) and a batch of vectors b (B, k, 1): one GEMM reading a
    once (torch.matmul would broadcast a to (B, r, k) and run B matrix-vector products)."""
    if a.ndim == 2 and b.ndim == 3 and b.shape[-1] == 1:
        return torch.nn.functional.linear(b[..., 0], a).unsqueeze(-1)
    return torch.matmul(a, b)


class _Workspace(threading.local):
    """Arrays handed out in the order asked for and handed out again, the same ones, after
    `reset`: the outputs of a lowered Jacobian's in-place sums (`xp.scaled_sum`), one per
    call site. A fresh array of a few megabytes costs a page fault per 4 KiB on first touch
    on the CPU, as long as the arithmetic that fills it; reused, it costs nothing. Thread-
    local, so each thread has its own."""

    def __init__(self):
        self.arrays, self.taken = [], 0

    def reset(self):
        self.taken = 0

    def empty(self, shape, *, dtype, device):
        size, k = math.prod(shape), self.taken
        self.taken += 1
        if k == len(self.arrays):
            self.arrays.append(None)
        a = self.arrays[k]
        if a is None or a.numel() < size or a.dtype != dtype or a.device != torch.device(device):
            a = self.arrays[k] = torch.empty(size, dtype=dtype, device=device)
        return a[:size].view(shape)


class _Bound:
    """A cell's lowered step and Jacobians bound to one params dict and batch size.

    Each lowered function writes the results of its in-place sums (`xp.scaled_sum`, the
    dense blocks of most gated cells) into a workspace of its own, owned by this object
    and kept per thread: what `blocks` or `jacobian(wrt)` returns is valid until the next
    call of the same one in the same thread, and no longer."""

    def __init__(self, cell, params, state0, x0):
        n, m, B, args = lower._prepare(cell, backend("torch"), params, state0, x0)
        self.cell, self.n, self.m, self.B = cell, n, m, B
        self.parts = len(cell.state_names)
        self.S = n * self.parts
        self.pargs = args[:len(cell.param_names)]
        self.functions = {}                  # what -> lowered function

    def _lowered(self, what):
        """The lowered `what` (see `lower.source`) bound to the torch backend with the
        one-GEMM `_matmul` and in-place sums into a workspace of its own, reset at each call."""
        if what not in self.functions:
            workspace = _Workspace()
            xp = vars(backend("torch")) | {
                "matmul": _matmul,
                "scaled_sum": functools.partial(backend("torch").scaled_sum,
                                                empty=workspace.empty)}
            namespace = {"xp": types.SimpleNamespace(**xp)}
            exec(lower.code(self.cell, what), namespace)
            fn = namespace[what]

            def call(*args):
                workspace.reset()
                return fn(*args)

            self.functions[what] = call
        return self.functions[what]

    def _call(self, what, state, x):
        return self._lowered(what)(self.n, self.m, x, *self.pargs,
                                   *(s.unsqueeze(-1) for s in state), x.unsqueeze(-1))

    def inputs(self, xs):
        """The state-free part of every step (`hoist`), for xs (T, B, m) at once: a list
        of (T, B, r, 1) tensors, the extra arguments of the hoisted step."""
        T, B, m = xs.shape
        rows = self._lowered("step_inputs")(self.n, self.m, xs, *self.pargs,
                                            xs.reshape(T * B, m, 1))
        return [torch.broadcast_to(r, (T * B, *r.shape[-2:])).reshape(T, B, *r.shape[-2:])
                for (r,) in rows]

    def run(self, states, xs):
        """Fill states[part][1..T] ((T+1, B, n) each, [0] given) by the hoisted step.
        Every per-step view is made once, before the loop: on the CPU at small sizes a
        step is a few dozen tiny kernels, and each view or select costs as much as one."""
        step = self._lowered("step_hoisted")
        T = xs.shape[0]
        pre = [p.unbind(0) for p in self.inputs(xs)]                # per step (B, r, 1)
        cols = [s.unsqueeze(-1).unbind(0) for s in states]          # per step (B, n, 1)
        head = (self.n, self.m, states[0], *self.pargs)
        for t in range(T):
            rows = step(*head, *(c[t] for c in cols), *(p[t] for p in pre))
            for c, (row,) in zip(cols, rows):
                c[t + 1].copy_(row)

    def blocks(self, state, x, steps):
        """The blocks of d s' / d s for `steps` steps batched together (state, x hold
        steps * B rows), compacted by structure: None for a zero block, (steps, B, n, 1)
        for a diagonal one (its diagonal), (steps, B, n, n) for a dense one (a block that
        does not vary along a batch axis is a broadcast view)."""
        n, B = self.n, x.shape[0] // steps

        def shaped(b):
            if b is None:
                return None
            w = b.shape[-1]
            if b.ndim == 3 and b.shape[0] == steps * B:
                return b.view(steps, B, n, w)
            return torch.broadcast_to(b, (steps, B, n, w))

        return [[shaped(b) for b in row]
                for row in self._call("jacobian_state_blocks", state, x)]

    def jacobian(self, wrt, state, x, out=None):
        """d s' / d s (N, S, S) or d s' / d x (N, S, m) for N = len(x) rows: the block
        itself (`out` unused) for a one-part cell whose block is dense (state) or for any
        one-part cell (input), else the blocks written into `out`."""
        n, N = self.n, x.shape[0]
        if wrt == "state":
            rows = self.blocks(state, x, 1)
            if _kinds(self.cell) == (("dense",),):
                return rows[0][0][0]
            return _assemble(rows, 0, out)
        rows = self._call("jacobian_input", state, x)
        if len(rows) == 1:
            return torch.broadcast_to(rows[0][0], (N, n, self.m))
        for i, row in enumerate(rows):
            out[:, i * n:(i + 1) * n].copy_(row[0])
        return out


def _assemble(rows, j, out):
    """Compact blocks [a][b] at step j (see `_Bound.blocks`) as one dense (B, S, S) `out`."""
    n = out.shape[-1] // len(rows)
    for a, row in enumerate(rows):
        for b, block in enumerate(row):
            target = out[:, a * n:(a + 1) * n, b * n:(b + 1) * n]
            if block is not None and block.shape[-1] == n:
                target.copy_(block[j])
            else:
                target.zero_()
                if block is not None:
                    target.diagonal(dim1=-2, dim2=-1).copy_(block[j][..., 0])
    return out


def _check_params(cell, params):
    if not isinstance(params, dict) or not params:
        raise GradlabError(f"params must be a dict of tensors for cell '{cell.name}' "
                           f"({', '.join(cell.param_names)}), got {type(params).__name__}")
    tensors = [params[p] for p in cell.param_names if p in params]
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise GradlabError(f"params must hold torch tensors named "
                           f"{', '.join(cell.param_names)}")
    lower.require_params(cell, params)
    dtype, device = tensors[0].dtype, tensors[0].device
    if any(t.dtype != dtype or t.device != device for t in tensors):
        raise GradlabError("params mix dtypes or devices: "
                           + ", ".join(f"{p}: {params[p].dtype} on {params[p].device}"
                                       for p in cell.param_names if p in params))
    _as_dtype(dtype)
    return dtype, device


def _setup(cell, params, xs, state0, reverse):
    """(cell, bound, xs (T, B, m), state0 tuple) with everything on the params' dtype/device."""
    cell = _lookup(cell)
    dtype, device = _check_params(cell, params)
    xs = torch.as_tensor(xs)
    if xs.ndim != 3 or xs.shape[0] < 1:
        raise GradlabError(f"xs has shape {tuple(xs.shape)}, expected (T, B, m) with T >= 1")
    xs = xs.to(dtype=dtype, device=device)
    if reverse:
        xs = xs.flip(0)
    T, B, m = xs.shape
    n = params[cell.param_names[0]].shape[0]
    if state0 is None:
        state0 = tuple(torch.zeros(B, n, dtype=dtype, device=device) for _ in cell.state_names)
    else:
        state0 = tuple(state0) if isinstance(state0, (tuple, list)) else (state0,)
        state0 = tuple(torch.as_tensor(s).to(dtype=dtype, device=device) for s in state0)
    return cell, _Bound(cell, params, state0, xs[0]), xs, state0


def _run_states(bound, xs, state0):
    """States s_0..s_T as one (T+1, B, n) tensor per part."""
    T = xs.shape[0]
    states = tuple(torch.empty((T + 1, *s.shape), dtype=s.dtype, device=s.device)
                   for s in state0)
    for buf, s in zip(states, state0):
        buf[0].copy_(s)
    with torch.no_grad():
        bound.run(states, xs)
    return states


# --- top singular value: warm-started block Lanczos ----------------------------------------

def _orthonormal_rows(W, V):
    """Orthonormal rows spanning the rows of W (N, p, S) minus those of V (N, q, S),
    projected twice (CGS2). Rows W does not add to V are zero, so a Rayleigh-Ritz over
    [V; W] stays exact; a row that nearly vanished in the projection is orthogonalised
    once more, since dividing by its small norm magnifies what is left of V in it."""
    scale = torch.linalg.vector_norm(W, dim=-1)                      # (N, p)
    for _ in range(2):
        W = W - (W @ V.mT) @ V
    Q, R = torch.linalg.qr(W.mT)
    kept = torch.diagonal(R, dim1=-2, dim2=-1).abs()
    keep = (kept > 1e-10 * scale)[:, :, None]
    W = Q.mT * keep
    if bool((keep[:, :, 0] & (kept < 1e-3 * scale)).any()):
        W = W - (W @ V.mT) @ V
        W = torch.linalg.qr(W.mT)[0].mT * keep
    return W


def _lanczos(M, U, tol):
    """Largest singular value of each M (N, S, S): block Lanczos with full
    reorthogonalisation on A = M M^T, from the orthonormal rows U (N, p, S).

    Vectors are kept as rows, (A V)^T = (V^T M) M^T, which is the fast layout for a thin
    block against a square matrix. Returns sigma (N,) and the top-p Ritz vectors as rows
    (N, p, S), the next warm start."""
    quad, lin = tol
    N, p, S = U.shape
    qmax = min(S, LANCZOS_BASIS * p)
    sigma, ritz = M.new_zeros(N), U.clone()
    idx = torch.arange(N, device=M.device)
    trace = torch.linalg.vector_norm(M, dim=(-2, -1)) ** 2          # sum of A's eigenvalues
    V, AV = U, (U @ M) @ M.mT                                        # (Na, q, S)
    for it in range(LANCZOS_STEPS):
        if it >= LANCZOS_FIRST_CHECK or V.shape[1] + p > qmax:
            H = V @ AV.mT
            theta, Y = torch.linalg.eigh(0.5 * (H + H.mT))           # ascending
            top = theta[:, -1].clamp_min(0)                          # (Na,)
            Yp = Y[:, :, -p:].mT                                     # (Na, p, q)
            best = Yp @ V                                            # top-p Ritz vectors
            r2 = torch.linalg.vector_norm(Yp @ AV - theta[:, -p:, None] * best, dim=-1) ** 2
            rho = r2[:, -1].sqrt()                                   # the top one's residual
            # the top c Ritz values as one cluster: each is within ||R_c||^2 / gap_c of an
            # eigenvalue, gap_c = theta_c - theta_{c+1}; a near-degenerate top (gated
            # cells) is certified as a cluster long before its members separate
            down = theta.flip(-1)
            gaps = down[:, :p] - down[:, 1:p + 1]
            cluster = (r2.flip(-1).cumsum(-1) / gaps.clamp_min(torch.finfo(M.dtype).tiny))
            bound = torch.minimum(rho, cluster.min(-1).values)
            # A residual bound says theta is near *an* eigenvalue, not the largest: a warm
            # start that is an exact eigenvector (a diagonal product whose top entry has
            # changed places) has residual 0. So the other p - 1 Ritz pairs, grown from the
            # fresh random vector, must have converged too (then nothing they can reach
            # lies above theta), unless theta is over half the trace, where no other
            # eigenvalue can exceed it
            explored = (r2[:, :-1] <= (lin * top[:, None]) ** 2).all(-1)
            dominant = 2 * top * (1 - quad) > trace
            ok = (bound <= quad * top) & (rho <= lin * top) & (explored | dominant)
            sigma[idx[ok]] = top[ok].sqrt()
            ritz[idx[ok]] = best[ok]
            left = ~ok
            count = int(left.sum())
            if count == 0:
                return sigma, ritz
            if it == LANCZOS_STEPS - 1:
                break
            if count < len(idx):                                      # iterate on the rest
                idx, M, V, AV, Yp, best, trace = (
                    a[left] for a in (idx, M, V, AV, Yp, best, trace))
            if V.shape[1] + p > qmax:                                 # restart: top Ritz block
                V, AV = best, Yp @ AV
        W = _orthonormal_rows(AV[:, -p:], V)
        V, AV = torch.cat([V, W], 1), torch.cat([AV, (W @ M) @ M.mT], 1)
    rest = idx[left]                                                  # not converged:
    sigma[rest] = _top_singular(M[left])                              # exact, at SVD cost
    ritz[rest] = best[left]
    return sigma, ritz


class _Spectral:
    """Spectral norms of successive chunks of matrices of one kind (the running product,
    its inverse, or its blocks), carrying the warm start from chunk to chunk."""

    def __init__(self, seed, dtype):
        self.gen = torch.Generator().manual_seed(int(seed))
        self.tol = TOLERANCE[dtype]
        self.warm = None                                              # (B', p - 1, S)

    def __call__(self, M, lags):
        """sigma_max of M (lags * B', S, S) -> (lags * B',)."""
        N, S, _ = M.shape
        # A matrix holding inf or nan (a Jacobian evaluated at an overflowed state) has no
        # norm to measure: its sigma is nan. It enters the routines below as zeros, since
        # SVD and eigh raise on non-finite input and one such matrix would lose the batch.
        finite = torch.isfinite(M).all(dim=(-2, -1))
        if not bool(finite.all()):
            M = torch.where(finite[:, None, None], M, 0)
        if S <= DENSE_BELOW:
            return _nan_where(_top_singular(M), finite)
        p = min(LANCZOS_BLOCK, S)
        start = torch.randn(N, p, S, generator=self.gen, dtype=torch.float64).to(M)
        if self.warm is not None and p > 1:                           # plus one fresh vector
            start[:, 1:] = self.warm[None].expand(lags, *self.warm.shape).reshape(N, p - 1, S)
        U = torch.linalg.qr(start.mT)[0].mT
        try:
            sigma, ritz = _lanczos(M, U, self.tol)
        except torch.linalg.LinAlgError:        # eigh/qr gave up on a finite M: SVD it
            sigma, ritz = _top_singular(M), U
        self.warm = ritz.view(lags, N // lags, p, S)[-1, :, 1:].clone()  # top p - 1
        return _nan_where(sigma, finite)


def _nan_where(sigma, finite):
    """sigma with nan where the matrix it measures was not finite."""
    return sigma if bool(finite.all()) else torch.where(finite, sigma, math.nan)


def _top_singular(M):
    """sigma_max of each finite M (N, S, S) by SVD; nan for the batch in the rare case the
    SVD does not converge (torch.linalg.LinAlgError), never an exception."""
    try:
        return torch.linalg.svdvals(M)[:, 0]
    except torch.linalg.LinAlgError:
        return M.new_full(M.shape[:1], math.nan)


# --- the backward walk ------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _kinds(cell):
    """Each state-Jacobian block's structure (zero / diagonal / dense), read from SymPy."""
    from .symbolic.structure import kind
    return tuple(tuple("dense" if kind(b) not in ("zero", "diagonal") else kind(b)
                       for b in row) for row in cell.jacobian_blocks("state"))


class _Chain:
    """The running product kept transposed, P_k^T = J_{T-k+1}^T P_{k-1}^T, normalised.

    P^T is stored as g row slabs of width w, (g, B, w, S): for a cell whose Jacobian has
    diagonal or zero blocks (the LSTM's d c'/d c = diag(f)) one slab per state part, so
    slab j of J^T P^T is sum_i J_ij^T slab_i with a bmm for a dense block, a broadcast
    multiply for a diagonal one (held as its diagonal) and nothing for a zero one (the
    LSTM: half the flops of a dense product); otherwise one slab, J assembled, one bmm.
    """

    def __init__(self, bound, C, dtype, device):
        kinds, parts, n, S = _kinds(bound.cell), bound.parts, bound.n, bound.S
        dense = sum(k == "dense" for row in kinds for k in row)
        self.structured = parts > 1 and 2 * dense <= parts * parts
        self.g, self.w = (parts, n) if self.structured else (1, S)
        self.kinds = kinds if self.structured else (("dense",),)
        self.bound, self.C, self.S = bound, C, S
        self.assemble = not self.structured and kinds != (("dense",),)
        if self.assemble:        # several parts, or one that is diagonal or zero
            self.jbuf = torch.empty(C, bound.B, S, S, dtype=dtype, device=device)

    def jacobians(self, state, x, steps):
        """Blocks [i][j] of J for `steps` steps at once, each (steps, B, w, w), or
        (steps, B, w, 1) for a diagonal block, None for a zero one (structured)."""
        rows = self.bound.blocks(state, x, steps)
        if not self.assemble:
            return rows
        J = self.jbuf[:steps]
        for j in range(steps):
            _assemble(rows, j, J[j])
        return [[J]]

    def dense(self, rows, j, out):
        """J at step j of the chunk as one (B, S, S) matrix (for the inverse product)."""
        return _assemble(rows, j, out) if self.structured else rows[0][0][j]

    def transposed(self, rows, steps):
        """The chunk's blocks step by step, as the product uses them: [j][a][b] is
        J_ab^T at step j ((B, w, w) views made once per chunk), J_ab's diagonal (B, w, 1)
        for a diagonal block, None for a zero one."""
        split = [[None if b is None else (b.mT if k == "dense" else b).unbind(0)
                  for b, k in zip(row, kinds)] for row, kinds in zip(rows, self.kinds)]
        return [[[None if b is None else b[j] for b in row] for row in split]
                for j in range(steps)]

    def first(self, Jt, Q):
        """Q (g, B, w, S) <- J^T, from one step of `transposed`."""
        w = self.w
        for a, row in enumerate(Jt):
            for b, kind in enumerate(self.kinds[a]):
                target = Q[b, :, :, a * w:(a + 1) * w]             # block (b, a) of J^T
                if kind == "dense":
                    target.copy_(row[b])
                else:
                    target.zero_()
                    if kind == "diagonal":
                        target.diagonal(dim1=-2, dim2=-1).copy_(row[b][..., 0])

    def step(self, Jt, Q, out):
        """out <- J^T Q, from one step of `transposed`; Q and out are tuples of the g slabs
        (B, w, S) of the product: slab b of the result is sum_a J_ab^T Q[a]."""
        for b in range(self.g):
            first = True
            for a in range(self.g):
                kind = self.kinds[a][b]
                if kind == "zero":
                    continue
                block = Jt[a][b]
                if kind == "diagonal":                               # block: (B, w, 1)
                    if first:
                        torch.mul(Q[a], block, out=out[b])
                    else:
                        out[b].addcmul_(Q[a], block)
                elif first:
                    torch.bmm(block, Q[a], out=out[b])
                else:
                    out[b].baddbmm_(block, Q[a])
                first = False
            if first:
                out[b].zero_()

    def matrices(self, Qc):
        """The chunk (lags, g, B, w, S) as P^T matrices (lags * B, S, S)."""
        lags, g, B = Qc.shape[:3]
        if g == 1:
            return Qc.view(lags * B, self.S, self.S)
        return Qc.transpose(1, 2).reshape(lags * B, self.S, self.S)

    def blocks_of(self, Qc, parts, n):
        """X (lags, B, in part, n, out part, n) with X[.., b, r, a, c] = P[(a, c), (b, r)]."""
        lags, g, B = Qc.shape[:3]
        if g == 1:
            return Qc.view(lags, B, parts, n, parts, n)
        return Qc.view(lags, g, B, n, parts, n).transpose(1, 2)


class _Scale:
    """The scale of a running product, kept exactly. With ||Q||_F = m 2^e (m in [1/2, 1),
    frexp), log ||P_k|| = (E + e) ln 2 + ln m, where E is the sum of the exponents already
    divided out: integers, so nothing rounds as they add up over 10,000 steps. Q is
    multiplied by 2^-e (exact: a power of two) once e drifts past +-DRIFT[dtype] (on
    CUDA at every step, which costs no host sync); in between it is left as it is."""

    DRIFT = {torch.float64: 64, torch.float32: 16}   # 2^64 times a Jacobian is still far
                                                     # from float64's 2^1024

    def __init__(self, T, B, dtype, device):
        self.total = torch.zeros(B, dtype=torch.int64, device=device)      # E
        self.exps = torch.empty(T, B, dtype=torch.int64, device=device)    # E + e per row
        self.applied = torch.empty(T, B, dtype=torch.int64, device=device) # E after it
        self.mants = torch.empty(T, B, dtype=dtype, device=device)
        self.e = torch.empty(B, dtype=torch.int32, device=device)
        self.one = torch.ones(B, dtype=dtype, device=device)
        self.drift = self.DRIFT[dtype] if torch.device(device).type == "cpu" else 0
        # one view per row, made once: a select per call costs as much as a small kernel
        self.rows = tuple(zip(self.mants.unbind(0), self.exps.unbind(0),
                              self.applied.unbind(0)))

    def __call__(self, M, k, batch=0):
        """Record log ||M|| for row k - 1 (M has sequences on axis `batch`); rescale M in
        place when its norm has drifted far from 1."""
        mant, exp, applied = self.rows[k - 1]
        norm = torch.linalg.vector_norm(M, dim=tuple(range(batch + 1, M.ndim)))
        if batch:                           # leading slabs: combine their norms (faster
            norm = torch.linalg.vector_norm(norm, dim=tuple(range(batch)))   # than one pass)
        torch.frexp(norm, out=(mant, self.e))                   # norm = m 2^e; 0 -> 0, 0
        torch.add(self.total, self.e, out=exp)
        if not self.drift or int(self.e.abs().max()) > self.drift:
            self.total += self.e
            M.mul_(torch.ldexp(self.one, -self.e).view([-1 if d == batch else 1
                                                          for d in range(M.ndim)]))
        applied.copy_(self.total)

    def log(self, rows):
        """E ln 2 at rows (a slice), float64 (lags, B): add the log of a norm of the
        matrix as it was left (rescaled or not) to get that norm of the product."""
        return self.applied[rows].double() * LN2

    def frobenius(self, rows):
        """log ||P||_F = (E + e) ln 2 + ln m at rows: -inf where the product is zero."""
        return self.exps[rows].double() * LN2 + self.mants[rows].double().log()


def _chunk_lags(T, B, S, dtype, device, buffers):
    budget = CHUNK_BYTES.get(torch.device(device).type, CHUNK_BYTES["cpu"])
    per_lag = buffers * B * S * S * torch.finfo(dtype).bits // 8
    return max(1, min(T, budget // per_lag))


def _walk(bound, states, xs, *, norms, blocks, seed):
    """One backward pass: log norms of every P_k (and its blocks), as (T, B) tensors."""
    T, B = xs.shape[:2]
    n, S, parts = bound.n, bound.S, bound.parts
    dtype, device = xs.dtype, xs.device
    spectral, inverse = "spectral" in norms, "min_singular" in norms
    blocks = blocks and parts > 1
    C = _chunk_lags(T, B, S, dtype, device, 4 if inverse else 2)
    ping = 1 if T <= C else 2             # chunk c in buffer c % 2; the next reads its end
    empty = functools.partial(torch.empty, dtype=dtype, device=device)
    chain = _Chain(bound, C, dtype, device)
    # P_k^T / ||P_k||_F for a chunk's lags, when anything reads them after the chunk's
    # products; if not (Frobenius norms alone) two alternating buffers, which stay in cache
    keep = spectral or inverse or blocks
    Qs = empty(*((ping, C) if keep else (2,)), chain.g, B, chain.w, S)
    alternate = None if keep else [(q, q.unbind(0)) for q in Qs]
    scale = _Scale(T, B, dtype, device)   # P_k^T = Q_k 2^(e_k), ||Q_k||_F in [1/2, 1)
    logs = functools.partial(torch.empty, T, B, dtype=torch.float64, device=device)
    out = {"frobenius": logs()}           # log ||P_k||_F, lag k at row k - 1
    if spectral:
        out["spectral"], top = logs(), _Spectral(seed, dtype)
    if inverse:
        Rs = empty(ping, C, B, S, S)      # P_k^{-1} 2^(-r_k)
        out["min_singular"], bottom = logs(), _Spectral(seed + 1, dtype)
        rscale = _Scale(T, B, dtype, device)
        singular = torch.full((B,), T + 1, device=device)    # first lag with a singular J
        info = torch.empty(B, dtype=torch.int32, device=device)
        lag = torch.arange(1, T + 1, device=device)
        eye = torch.eye(S, dtype=dtype, device=device).expand(B, S, S)
        jdense = empty(B, S, S)
    if blocks:
        out["block_frobenius"] = logs(parts, parts)
        if spectral:
            out["block_spectral"], btop = logs(parts, parts), _Spectral(seed + 2, dtype)

    with torch.no_grad():
        for c, k0 in enumerate(range(1, T + 1, C)):                       # lags k0..k1
            k1 = min(k0 + C - 1, T)
            lags, rows = k1 - k0 + 1, slice(k0 - 1, k1)
            lo, hi = T - k1, T - k0 + 1         # J_t for t = lo+1..hi at (s_{t-1}, xs[t-1])
            J = chain.jacobians(tuple(s[lo:hi].reshape(-1, n) for s in states),
                                xs[lo:hi].reshape(lags * B, -1), lags)   # [a][b][j]: lag k1-j
            Jt = chain.transposed(J, lags)
            if keep:
                Q = Qs[c % ping]
                slabs = [(q, q.unbind(0)) for q in Q[:lags]]
            R, R0 = (Rs[c % ping], Rs[(c - 1) % ping, C - 1]) if inverse else (None, None)
            for i in range(lags):
                k, j = k0 + i, lags - 1 - i
                cur = slabs[i] if keep else alternate[k % 2]     # P_k^T: (g, B, w, S), slabs
                if k == 1:
                    chain.first(Jt[j], cur[0])
                else:                                            # from P_{k-1}^T, which is
                    chain.step(Jt[j], held[1], cur[1])           # still held (ping-pong)
                scale(cur[0], k, batch=1)
                held = cur
                if inverse:
                    Jk = chain.dense(J, j, jdense)
                    last = eye if k == 1 else R[i - 1] if i else R0
                    torch.linalg.solve_ex(Jk, last, out=(R[i], info))
                    bad = (info > 0) | ~torch.isfinite(R[i]).all(dim=(-2, -1))
                    singular = torch.where(bad, singular.clamp_max(k), singular)
                    torch.where(bad[:, None, None], eye, R[i], out=R[i])  # keep finite
                    rscale(R[i], k)
            base = scale.log(rows)                                        # (lags, B)
            out["frobenius"][rows] = scale.frobenius(rows)
            if spectral:   # sigma(P) with P = (P^T)^T: left vectors live at time T (warm)
                sig = top(chain.matrices(Q[:lags]).mT, lags).view(lags, B)
                out["spectral"][rows] = base + sig.double().log()
            if inverse:    # P^{-1} maps s_T to s_{T-k}: its right vectors live at time T
                Rc = R[:lags].view(lags * B, S, S).mT
                big = rscale.log(rows) + bottom(Rc, lags).view(lags, B).double().log()
                # log sigma_min(P_k) = -log ||P_k^{-1}||_2; -inf from the first singular J_t
                gone = lag[rows, None] >= singular[None, :]
                out["min_singular"][rows] = torch.where(gone, -math.inf, -big)
            if blocks:
                X = chain.blocks_of(Q[:lags], parts, n)
                fro = torch.linalg.vector_norm(X, dim=(3, 5)).transpose(-1, -2)   # [out, in]
                out["block_frobenius"][rows] = base[..., None, None] + fro.double().log()
                if spectral:
                    Mb = X.permute(0, 1, 4, 2, 5, 3).reshape(lags * B * parts * parts, n, n)
                    sig = btop(Mb, lags).view(lags, B, parts, parts)
                    out["block_spectral"][rows] = base[..., None, None] + sig.double().log()
    return out


def _loss_walk(bound, states, xs, v):
    """log ||dL/ds_t|| and log ||dL/dx_t|| (each (T, B)) for L = <v, s_T>, by VJPs."""
    T, B = xs.shape[:2]
    S, m = bound.S, bound.m
    empty = functools.partial(torch.empty, dtype=xs.dtype, device=xs.device)
    scale = _Scale(T + 1, B, xs.dtype, xs.device)      # row t: dL/ds_t = g 2^(e_t)
    g = v.expand(B, S).clone()
    scale(g, T + 1)                                    # dL/ds_T
    gx = empty(T, B, m)                                # dL/dxs[t] 2^(-e_{t+1})
    jbuf, kbuf = empty(B, S, S), empty(B, S, m)
    with torch.no_grad():
        for t in range(T, 0, -1):                      # step t reads s_{t-1}, xs[t-1]
            state = tuple(s[t - 1] for s in states)
            K = bound.jacobian("input", state, xs[t - 1], kbuf)
            torch.bmm(g[:, None, :], K, out=gx[t - 1, :, None, :])
            J = bound.jacobian("state", state, xs[t - 1], jbuf)
            g = torch.bmm(g[:, None, :], J)[:, 0]
            scale(g, t)                                # dL/ds_{t-1}
    state_log = scale.frobenius(slice(0, T))           # row t: s_t, t = 0..T
    inputs = torch.linalg.vector_norm(gx, dim=-1).double().log()
    return state_log, scale.log(slice(1, T + 1)) + inputs


def _numpy(a):
    """(T, B, ...) tensor -> (B, T, ...) float64 numpy array."""
    return a.transpose(0, 1).to(dtype=torch.float64, device="cpu").numpy().copy()


def _exp(logs):
    """exp of each array in a dict; norms below float64's range read 0 (as they are)."""
    with np.errstate(under="ignore", over="ignore"):
        return {k: np.exp(a) for k, a in logs.items()}


# Why a rate or timescale is not a plain number (`Flow.why`): None when the rate is finite
# and negative, so the timescale -1 / rate is a positive number of steps.
OVERFLOW = "state overflowed"        # rate nan: a state the products read is inf or nan
NOT_FINITE = "norm not finite"       # rate nan: finite states, but a norm is nan or +inf
                                     # (a Jacobian overflowed)
ZERO = "product exactly zero"        # rate -inf, timescale 0: gradients vanish at once
ONE_LAG = "one lag: no slope"        # rate nan: a slope needs two lags
GROW = "gradients grow"              # rate > 0, timescale inf
NO_DECAY = "no decay within T"       # rate 0, timescale inf


def _slope(y):
    """(least-squares slope of y (L,) against 1..L, why it is not a plain number or None).

    nan or +inf anywhere (an overflowed product: nothing to fit) gives nan, before -inf
    anywhere (an exactly zero product: infinitely fast decay) gives -inf."""
    if (np.isnan(y) | np.isposinf(y)).any():
        return math.nan, NOT_FINITE
    if np.isneginf(y).any():
        return -math.inf, ZERO
    if len(y) < 2:
        return math.nan, ONE_LAG
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    x -= x.mean()
    return float(np.dot(x, y - y.mean()) / np.dot(x, x)), None


def timescale_of_rate(rate):
    """xi = -1 / rate for a decay (rate < 0): steps for a gradient norm to fall by e. 0 at
    rate -inf (an exactly zero product); inf at rate >= 0 (it never falls: growth, or no
    decay, the limit of -1 / rate as rate -> 0-); nan at rate nan. Never negative."""
    if math.isnan(rate):
        return math.nan
    if rate == -math.inf:
        return 0.0
    return math.inf if rate >= 0 else -1.0 / rate


class Flow:
    """The gradient flow of one cell over one batch of input sequences.

    Every array is numpy float64 with sequences on axis 0 and lag k = 1..T at column k-1
    (`lags`), natural logs, lag k meaning P_k = d s_T / d s_{T-k}. Norms that were not
    requested from `gradient_flow` are computed on first use by another walk.

    Attributes: cell, xs (T, B, m) as analysed (flipped when `reverse`), state0 and
    states (one (T+1, B, n) tensor per state part, s_0..s_T), T, B, n, S, parts (the
    state part names), reverse, seed.
    """

    def __init__(self, cell, bound, xs, state0, states, *, reverse, seed):
        self.cell, self.xs, self.state0, self.states = cell, xs, state0, states
        self.reverse, self.seed = reverse, seed
        self._bound = bound
        self.T, self.B = xs.shape[:2]
        self.n, self.S, self.parts = bound.n, bound.S, cell.state_names
        self._log, self._block, self._loss = {}, {}, {}

    def __repr__(self):
        return (f"<Flow {self.cell.name}: T={self.T}, B={self.B}, S={self.S}"
                f"{', reversed' if self.reverse else ''}>")

    @property
    def lags(self):
        """1..T as an int array: column k-1 of every (B, T) array is lag k."""
        return np.arange(1, self.T + 1)

    # -- norms -------------------------------------------------------------------------
    def _ensure(self, kind, blocks=False):
        """Walk again for a norm (of the whole product, or of its blocks) not yet had."""
        if kind in (self._block if blocks else self._log):
            return
        self._store(_walk(self._bound, self.states, self.xs, norms=(kind,), blocks=blocks,
                          seed=self.seed))

    def _store(self, out):
        for kind, value in out.items():
            if kind.startswith("block_"):
                self._block.setdefault(kind[6:], _numpy(value))
            else:
                self._log.setdefault(kind, _numpy(value))

    def log_norm(self, kind="spectral"):
        """log ||P_k|| (B, T): "spectral", "frobenius" or "min_singular" (smallest singular
        value; -inf from the first exactly singular J_t on)."""
        _check(kind, NORMS, "norm")
        self._ensure(kind)
        return self._log[kind].copy()

    def block_log_norm(self, out_part, in_part, kind="spectral"):
        """log of the norm of the (out_part, in_part) block of P_k, (B, T): for the LSTM
        ("c", "c") is the cell path d c_T / d c_{T-k} and ("h", "h") the hidden path. The
        block shares the product's normalisation, so a block that vanishes relative to the
        whole product (below 1e-308 of it) reads -inf."""
        _check(kind, BLOCK_NORMS, "block norm")
        i, j = (self._part(p) for p in (out_part, in_part))
        if len(self.parts) == 1:
            return self.log_norm(kind)
        self._ensure(kind, blocks=True)
        return self._block[kind][:, :, i, j].copy()

    def _part(self, name):
        if name not in self.parts:
            raise GradlabError(f"cell '{self.cell.name}' has no state part {name!r}; its "
                               f"parts are {', '.join(self.parts)}")
        return self.parts.index(name)

    # -- summary numbers ------------------------------------------------------------------
    def mean_log_norm(self, kind="spectral", *, block=None):
        """The mean over sequences of the log norm, (T,): the curve a decay plot draws."""
        values = self.log_norm(kind) if block is None else self.block_log_norm(*block, kind)
        return values.mean(axis=0)

    def rate(self, kind="spectral", *, block=None, start=1, stop=None):
        """Per-step decay rate: the least-squares slope of the mean log norm against the lag,
        over lags start..stop (default all). A float, always (`why` says what a value that
        is not a plain number means):

            < 0     gradients vanish (finite: timescale -1 / rate);
            >= 0    gradients grow (> 0) or keep their size (0);
            -inf    a product is exactly zero (every unit of a ReLU cell dead, W = 0):
                    infinitely fast decay, a genuine measurement;
            nan     no measurement: a state the products read overflowed (inf or nan;
                    then its Jacobians are meaningless, even where they come out as exact
                    zeros), a norm overflowed, or a single lag.
        """
        return self._rate(kind, block, start, stop)[0]

    def why(self, kind="spectral", *, block=None, start=1, stop=None):
        """Why `rate` / `timescale` (same arguments) is not a plain decay, or None when the
        rate is finite and negative: OVERFLOW "state overflowed" (rate nan), NOT_FINITE
        "norm not finite" (nan), ONE_LAG (nan), ZERO "product exactly zero" (rate -inf,
        timescale 0), GROW "gradients grow" (rate > 0, timescale inf), NO_DECAY "no decay
        within T" (rate 0, timescale inf)."""
        rate, reason = self._rate(kind, block, start, stop)
        if reason is None and rate >= 0:
            return GROW if rate > 0 else NO_DECAY
        return reason

    def _rate(self, kind, block, start, stop):
        y = self.mean_log_norm(kind, block=block)
        stop = self.T if stop is None else stop
        if not 1 <= start <= stop <= self.T:
            raise GradlabError(f"lags {start}..{stop} are outside 1..{self.T}")
        if self._finite_lags() < stop:     # P_stop reads s_{T-stop}..s_{T-1}; s_T is the
            return math.nan, OVERFLOW      # state a loss reads
        return _slope(y[start - 1:stop])

    def _finite_lags(self):
        """The largest L with s_{T-L}..s_T finite for every sequence (-1: s_T is not)."""
        if not hasattr(self, "_finite"):
            ok = torch.stack([torch.isfinite(s).flatten(1).all(1) for s in self.states])
            bad = torch.nonzero(~ok.all(0)).flatten()          # times t with a bad state
            self._finite = self.T if len(bad) == 0 else self.T - int(bad[-1]) - 1
        return self._finite

    def timescale(self, kind="spectral", **options):
        """xi = -1 / rate (steps for the gradient to fall by e) when gradients decay, a
        positive number; 0 at rate -inf (an exactly zero product); inf when they do not
        decay (rate >= 0: they grow, or keep their size); nan with a nan rate. Never
        negative: `why` tells growth from no decay (`timescale_of_rate`)."""
        return timescale_of_rate(self.rate(kind, **options))

    def horizon(self, fraction=1e-3, kind="spectral"):
        """The first lag where the mean log norm falls below log(fraction) plus its lag-1
        value (the norm below `fraction` of the lag-1 norm); None if it never does."""
        if not 0 < fraction < 1:
            raise GradlabError(f"fraction must be in (0, 1), got {fraction!r}")
        y = self.mean_log_norm(kind)
        below = np.nonzero(y < y[0] + math.log(fraction))[0]
        return int(below[0]) + 1 if len(below) else None

    def log_condition(self, lag=None):
        """log of the condition number sigma_max / sigma_min of P_k: (B, T), or (B,) at one
        lag; inf where P_k is singular, nan where it is zero."""
        with np.errstate(invalid="ignore"):
            values = self.log_norm("spectral") - self.log_norm("min_singular")
        return values if lag is None else values[:, self._lag(lag)]

    def condition(self, lag):
        """Condition number of P_lag per sequence, (B,) (inf where it overflows float64)."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_condition(lag))

    def _lag(self, lag):
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) \
                or not 1 <= lag <= self.T:
            raise GradlabError(f"lag must be an integer in 1..{self.T}, got {lag!r}")
        return int(lag) - 1

    # -- what a loss sees -------------------------------------------------------------------
    def loss_vector(self, v=None, *, seed=0):
        """v for L = <v, s_T>: the given (S,) or (B, S) tensor, else a random unit (S,)."""
        if v is None:
            gen = torch.Generator().manual_seed(int(seed))
            v = torch.randn(self.S, generator=gen, dtype=torch.float64)
            v = v / torch.linalg.vector_norm(v)
        v = torch.as_tensor(v).to(self.xs)
        if tuple(v.shape) not in ((self.S,), (self.B, self.S)):
            raise GradlabError(f"loss vector has shape {tuple(v.shape)}, expected (S,) = "
                               f"({self.S},) or (B, S) = ({self.B}, {self.S})")
        return v

    def loss_grad_norms(self, v=None, *, seed=0, log=False):
        """For L = <v, s_T> (v random unit from `seed` unless given): {"state": ||dL/ds_t||,
        "input": ||dL/dx_t||}, each (B, T) with column t for time step t: s_t is the state
        that xs[t] meets (s_0 = state0, lag T - t from s_T) and x_t = xs[t]. Natural logs
        with log=True (exact where the norms underflow); by VJPs, O(T B S^2)."""
        if v is not None or seed not in self._loss:     # a random v is kept per seed
            state, inputs = _loss_walk(self._bound, self.states, self.xs,
                                       self.loss_vector(v, seed=seed))
            found = {"state": _numpy(state), "input": _numpy(inputs)}
            if v is not None:
                return found if log else _exp(found)
            self._loss[seed] = found
        out = {k: a.copy() for k, a in self._loss[seed].items()}
        return out if log else _exp(out)

    def bptt_fraction(self, K, v=None, *, seed=0):
        """Fraction of the gradient kept by truncated BPTT over the last K steps: per
        sequence, sum_{t >= T-K} ||dL/dx_t||^2 / sum_t ||dL/dx_t||^2 (the share of the
        squared input-gradient mass within K steps of the loss), averaged over sequences.
        1.0 for K >= T; nan where no gradient reaches any input."""
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 0:
            raise GradlabError(f"K must be a non-negative integer, got {K!r}")
        logs = torch.as_tensor(self.loss_grad_norms(v, seed=seed, log=True)["input"])
        total = torch.logsumexp(2 * logs, dim=1)
        kept = torch.logsumexp(2 * logs[:, self.T - min(K, self.T):], dim=1)
        return float(torch.exp(kept - total).mean())

    def lyapunov(self, k=8, *, seed=0, discard=0):
        """Top-k Lyapunov exponents along this flow's inputs and initial state (`lyapunov`)."""
        return _lyapunov(self._bound, self.xs, self.states, k, seed, discard)

    def summary(self):
        """Plain numbers (JSON-ready) from the norms computed so far."""
        out = {"cell": self.cell.name, "T": self.T, "B": self.B, "S": self.S,
               "reverse": self.reverse}
        for kind in self._log:
            out[f"rate_{kind}"] = self.rate(kind)
        if "spectral" in self._log:
            out["timescale"] = self.timescale()
            out["horizon_1e-3"], out["horizon_1e-6"] = self.horizon(1e-3), self.horizon(1e-6)
            out["log_norm_lag1"] = float(self.mean_log_norm()[0])
        for kind in self._block:
            for a in self.parts:
                for b in self.parts:
                    out[f"rate_{kind}_{a}{b}"] = self.rate(kind, block=(a, b))
        return out


def _check(value, valid, what):
    if value not in valid:
        raise GradlabError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def gradient_flow(cell, params, xs, *, state0=None, reverse=False,
                  norms=("spectral", "frobenius"), blocks=True, seed=0):
    """Jacobian products P_k = d s_T / d s_{T-k} of `cell` over inputs xs (T, B, m), k=1..T.

    cell:    a registered name or a Cell; params: its dict of tensors, whose dtype
             (float32/float64) and device every computation uses.
    state0:  tuple of (B, n) per state part (zeros by default).
    reverse: analyse the sequence backwards in time (xs flipped): the backward half of a
             bidirectional model.
    norms:   those computed in this walk ("spectral", "frobenius", "min_singular"); others
             are computed on first use. blocks: also the norms of the per-part blocks.
    seed:    for the random starts of the spectral iteration (results do not depend on it
             beyond rounding).
    """
    for kind in norms:
        _check(kind, NORMS, "norm")
    cell, bound, xs, state0 = _setup(cell, params, xs, state0, reverse)
    states = _run_states(bound, xs, state0)
    flow = Flow(cell, bound, xs, state0, states, reverse=reverse, seed=seed)
    flow._store(_walk(bound, states, xs, norms=tuple(norms) + ("frobenius",), blocks=blocks,
                      seed=seed))
    return flow


def _lyapunov(bound, xs, states, k, seed, discard):
    """Benettin's QR iteration along the stored states; the Jacobians of a chunk of steps
    come from one lowered call."""
    T, B = xs.shape[:2]
    n, S = bound.n, bound.S
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GradlabError(f"k must be a positive integer, got {k!r}")
    if isinstance(discard, bool) or not isinstance(discard, int) or not 0 <= discard < T:
        raise GradlabError(f"discard must be an integer in 0..{T - 1}, got {discard!r}")
    k = min(k, S)
    gen = torch.Generator().manual_seed(int(seed))
    Q, _ = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64).to(xs))
    C = _chunk_lags(T, B, S, xs.dtype, xs.device, 1)
    jbuf = torch.empty(C * B, S, S, dtype=xs.dtype, device=xs.device)
    total = torch.zeros(B, k, dtype=torch.float64, device=xs.device)
    with torch.no_grad():
        for t0 in range(0, T, C):                                  # steps t0+1..t1
            t1 = min(t0 + C, T)
            J = bound.jacobian("state", tuple(s[t0:t1].reshape(-1, n) for s in states),
                               xs[t0:t1].reshape((t1 - t0) * B, -1), jbuf[:(t1 - t0) * B])
            for j, Jt in enumerate(J.view(t1 - t0, B, S, S)):      # J_{t+1}, t = t0 + j
                Q, R = torch.linalg.qr(torch.bmm(Jt, Q))
                if t0 + j >= discard:
                    total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
    return (total / (T - discard)).mean(0).cpu().numpy()


def lyapunov(cell, params, xs, k=8, *, state0=None, reverse=False, seed=0, discard=0):
    """Top-k Lyapunov exponents (per step, natural log, mean over sequences), (k,):
    Benettin's method, Q_t R_t = J_t Q_{t-1} from a random orthonormal Q_0 (S, k), the i-th
    exponent the mean of log |R_t[i, i]| over steps after the first `discard`. They come in
    decreasing order (up to finite-T fluctuation); the first is the long-lag rate of
    ||P_k||_2 (derivations/theory.md §5). Cost: one Jacobian, an (S, S) x (S, k) product, a QR per
    step."""
    cell, bound, xs, state0 = _setup(cell, params, xs, state0, reverse)
    return _lyapunov(bound, xs, _run_states(bound, xs, state0), k, seed, discard)
