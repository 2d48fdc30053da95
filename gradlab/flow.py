"""Gradient flow through time: products of state Jacobians, their norms in log space.

For a cell s_t = F(s_{t-1}, x_t) driven by inputs x_1..x_T (xs[0..T-1]) from s_0, the
gradient that reaches s_{T-k} from s_T is carried by

    P_k = d s_T / d s_{T-k} = J_T J_{T-1} ... J_{T-k+1},    J_t = d s_t / d s_{t-1},

k = 1..T (numerator layout, parts in `state_names` order, S = n * parts). `gradient_flow`
runs the lowered step forward, keeps the states (O(T B S)), then walks back in time with one
running (B, S, S) product, P_k = P_{k-1} J_{T-k+1}, evaluating each J_t with the lowered
Jacobian. The running product is divided by its Frobenius norm at every step and the
scale is summed in log space, so log ||P_k|| stays finite and exact over 10,000 steps where
||P_k|| itself underflows float64. Memory beyond the states: a chunk of the last few
products, O(C B S^2) with C fixed by a byte budget, never O(T B S^2).

Norms of every P_k, per sequence, natural log, lag k at column k-1:
    frobenius     the log scale itself (free).
    spectral      block Lanczos on P P^T (left vectors), warm-started from the previous
                  chunk's top Ritz vectors, which converge as k grows; stopped on a
                  residual bound (relative error < 1e-12 in float64), falling back to
                  svdvals for the rare matrix that has not converged. Cost: a few
                  matrix-vector passes per lag instead of an SVD (~11 products) per lag.
    min_singular  1 / ||P_k^{-1}||_2 with P_k^{-1} = J_{T-k+1}^{-1} P_{k-1}^{-1}, streamed
                  the same way (one LU solve per lag, ~1.3 products, plus the Lanczos
                  passes); exact where sigma_min / sigma_max is far below 1e-16, which
                  svdvals of the product could not resolve. Once some J_t is exactly
                  singular, every longer product is: log sigma_min = -inf from that lag on.
                  Computed when asked for (a second walk if not requested up front).
Blocks of P_k (out part, in part), e.g. the LSTM's cell path ("c", "c"), get spectral and
Frobenius norms in the same walk.

What a loss sees: for L = <v, s_T>, dL/ds_t = v^T P_{T-t} and dL/dx_t by vector-Jacobian
products with the lowered state and input Jacobians, O(T B S^2) (`Flow.loss_grad_norms`).
"""

import functools
import math
import types

import numpy as np
import torch

from . import lower
from .backends import backend
from .errors import GradlabError
from .registry import cell as _lookup

NORMS = ("spectral", "frobenius", "min_singular")
BLOCK_NORMS = ("spectral", "frobenius")
DTYPES = (torch.float32, torch.float64)

# Bytes of running products kept per chunk (C lags at once): large enough that the
# per-chunk Lanczos overhead is amortised, small enough to stay in cache-friendly memory.
CHUNK_BYTES = {"cpu": 32 << 20, "cuda": 1 << 30}
DENSE_BELOW = 24          # S <= this: svdvals is cheaper than Lanczos and exact
LANCZOS_BLOCK = 4         # vectors per Lanczos block (a block costs ~ one vector on CPU)
LANCZOS_BASIS = 12        # blocks kept before restarting from the top Ritz vectors
LANCZOS_STEPS = 60        # block steps before falling back to svdvals
# Stop when the bound on the relative error of the top eigenvalue of P P^T is below `quad`
# (min(rho, rho^2 / gap) / theta, rho the Ritz residual: Weyl and Kato-Temple) and the
# residual itself is below `lin` (so the Ritz gap used by the quadratic bound is credible).
TOLERANCE = {torch.float64: (1e-13, 1e-6), torch.float32: (1e-6, 1e-3)}


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
    R = ||x||^2 / m = scale^2, THEORY.md 2); "constant", one N(0, scale^2) vector per
    sequence held for all T steps (THEORY.md 3's exact results); or a tensor (T, B, m),
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
        return torch.matmul(b[..., 0], a.mT).unsqueeze(-1)
    return torch.matmul(a, b)


@functools.lru_cache(maxsize=None)
def _lowered(cell, what):
    """The lowered `what` (step, jacobian_state, jacobian_input) bound to the torch
    backend layered with the one-GEMM `_matmul`; printed and compiled once per cell."""
    namespace = {"xp": types.SimpleNamespace(**{**vars(backend("torch")),
                                               "matmul": _matmul})}
    exec(compile(lower.source(cell, what), f"<gradlab flow {cell.name} {what}>", "exec"),
         namespace)
    return namespace[what]


class _Bound:
    """A cell's lowered step and Jacobians bound to one params dict and batch size."""

    def __init__(self, cell, params, state0, x0):
        n, m, B, args = lower._prepare(cell, backend("torch"), params, state0, x0)
        self.cell, self.n, self.m, self.B = cell, n, m, B
        self.parts = len(cell.state_names)
        self.S = n * self.parts
        self.pargs = args[:len(cell.param_names)]

    def _call(self, what, state, x):
        return _lowered(self.cell, what)(self.n, self.m, x, *self.pargs,
                                         *(s.unsqueeze(-1) for s in state), x.unsqueeze(-1))

    def step(self, state, x, out):
        """Write the new state parts into `out` (tuple of (B, n))."""
        for o, row in zip(out, self._call("step", state, x)):
            o.copy_(row[0][..., 0])

    def jacobian(self, wrt, state, x, out):
        """d s' / d s (B, S, S) or d s' / d x (B, S, m); written into `out` unless the
        cell has one block that is already a full tensor."""
        rows = self._call(f"jacobian_{wrt}", state, x)
        if len(rows) == 1 and tuple(rows[0][0].shape) == tuple(out.shape):
            return rows[0][0]
        n, w = self.n, out.shape[-1] // len(rows[0])
        for i, row in enumerate(rows):
            for j, block in enumerate(row):
                out[:, i * n:(i + 1) * n, j * w:(j + 1) * w].copy_(block)
        return out


def _check_params(cell, params):
    if not isinstance(params, dict) or not params:
        raise GradlabError(f"params must be a dict of tensors for cell '{cell.name}' "
                           f"({', '.join(cell.param_names)}), got {type(params).__name__}")
    tensors = [params[p] for p in cell.param_names if p in params]
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise GradlabError(f"params must hold torch tensors named "
                           f"{', '.join(cell.param_names)}")
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
        for t in range(T):
            bound.step(tuple(s[t] for s in states), xs[t], tuple(s[t + 1] for s in states))
    return states


# --- top singular value: warm-started block Lanczos ----------------------------------------

def _orthonormal_block(W, V):
    """Orthonormal columns spanning W (N, S, p) minus span(V), twice projected (CGS2);
    columns W does not add to V are zero, so a Rayleigh-Ritz over [V, block] stays exact."""
    scale = torch.linalg.vector_norm(W, dim=1)                       # (N, p)
    for _ in range(2):
        W = W - V @ (V.mT @ W)
    Q, R = torch.linalg.qr(W)
    keep = torch.diagonal(R, dim1=-2, dim2=-1).abs() > 1e-10 * scale  # (N, p)
    Q = Q * keep[:, None, :]
    Q = Q - V @ (V.mT @ Q)                                           # second pass: orthogonality
    Q, _ = torch.linalg.qr(Q)
    return Q * keep[:, None, :]


def _lanczos(M, U, tol):
    """Largest singular value of each M (N, S, S): block Lanczos with full
    reorthogonalisation on A = M M^T from the orthonormal block U (N, S, p).
    Returns sigma (N,) and the top-p Ritz vectors (N, S, p) (the next warm start)."""
    quad, lin = tol
    N, S, p = U.shape
    qmax = min(S, LANCZOS_BASIS * p)
    sigma, ritz = M.new_zeros(N), U.clone()
    idx = torch.arange(N, device=M.device)
    V, AV = U, M @ (M.mT @ U)                                        # (Na, S, q)
    for it in range(LANCZOS_STEPS):
        H = V.mT @ AV
        theta, Y = torch.linalg.eigh(0.5 * (H + H.mT))               # ascending
        top = theta[:, -1].clamp_min(0)                              # (Na,)
        y = Y[:, :, -1:]
        rho = torch.linalg.vector_norm(AV @ y - top[:, None, None] * (V @ y), dim=(1, 2))
        gap = top - theta[:, -2] if theta.shape[-1] > 1 else top
        bound = torch.minimum(rho, rho * rho / gap.clamp_min(torch.finfo(M.dtype).tiny))
        ok = (bound <= quad * top) & (rho <= lin * top)
        best = V @ Y[:, :, -p:]
        sigma[idx[ok]] = top[ok].sqrt()
        ritz[idx[ok]] = best[ok]
        left = ~ok
        count = int(left.sum())
        if count == 0:
            return sigma, ritz
        if it == LANCZOS_STEPS - 1:
            break
        if count < len(idx):                                          # iterate on the rest
            idx, M, V, AV, Y = idx[left], M[left], V[left], AV[left], Y[left]
        if V.shape[-1] + p > qmax:                                    # restart: top Ritz block
            V, AV = V @ Y[:, :, -p:], AV @ Y[:, :, -p:]
        W = _orthonormal_block(AV[:, :, -p:], V)
        V, AV = torch.cat([V, W], -1), torch.cat([AV, M @ (M.mT @ W)], -1)
    sigma[idx] = torch.linalg.svdvals(M)[:, 0]                        # not converged: exact
    ritz[idx] = best[left]
    return sigma, ritz


class _Spectral:
    """Spectral norms of successive chunks of matrices of one kind (the running product,
    its inverse, or its blocks), carrying the warm start from chunk to chunk."""

    def __init__(self, seed, dtype):
        self.gen = torch.Generator().manual_seed(int(seed))
        self.tol = TOLERANCE[dtype]
        self.warm = None                                              # (B', S, p - 1)

    def __call__(self, M, lags):
        """sigma_max of M (lags * B', S, S) -> (lags * B',)."""
        N, S, _ = M.shape
        if S <= DENSE_BELOW:
            return torch.linalg.svdvals(M)[:, 0]
        p = min(LANCZOS_BLOCK, S)
        start = torch.randn(N, S, p, generator=self.gen, dtype=torch.float64).to(M)
        if self.warm is not None and p > 1:
            warm = self.warm[None].expand(lags, *self.warm.shape)
            start[:, :, 1:] = warm.reshape(N, S, p - 1)               # plus one fresh vector
        U, _ = torch.linalg.qr(start)
        sigma, ritz = _lanczos(M, U, self.tol)
        self.warm = ritz.view(lags, N // lags, S, p)[-1, :, :, 1:].clone()   # top p - 1
        return sigma


# --- the backward walk ------------------------------------------------------------------------

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
    C = _chunk_lags(T, B, S, dtype, device, 2 if inverse else 1)
    empty = functools.partial(torch.empty, dtype=dtype, device=device)
    Q = empty(C, B, S, S)                 # P_k / ||P_k||_F for the chunk's lags
    logfro = empty(T, B)                  # log ||P_k||_F, lag k at row k - 1
    out = {"frobenius": logfro}
    scale = torch.zeros(B, dtype=dtype, device=device)
    jbuf = empty(B, S, S)
    if spectral:
        out["spectral"], top = empty(T, B), _Spectral(seed, dtype)
    if inverse:
        R = empty(C, B, S, S)             # P_k^{-1} / ||P_k^{-1}||_F
        out["min_singular"], bottom = empty(T, B), _Spectral(seed + 1, dtype)
        rscale, rlog = torch.zeros(B, dtype=dtype, device=device), empty(T, B)
        singular = torch.full((B,), T + 1, device=device)    # first lag with a singular J
        info = torch.empty(B, dtype=torch.int32, device=device)
        lag = torch.arange(1, T + 1, device=device)
        eye = torch.eye(S, dtype=dtype, device=device).expand(B, S, S)
    if blocks:
        bfro = empty(T, B, parts, parts)
        out["block_frobenius"] = bfro
        if spectral:
            out["block_spectral"], btop = empty(T, B, parts, parts), _Spectral(seed + 2, dtype)

    def normalise(M, log):
        norm = torch.linalg.vector_norm(M, dim=(-2, -1))                 # (B,)
        M.div_(torch.where(norm > 0, norm, 1)[:, None, None])
        return log + norm.log()                                          # -inf once zero

    with torch.no_grad():
        for k in range(1, T + 1):
            t = T - k + 1                                                 # J_t at (s_{t-1}, x_t)
            J = bound.jacobian("state", tuple(s[t - 1] for s in states), xs[t - 1], jbuf)
            i = (k - 1) % C
            if k == 1:
                Q[0].copy_(J)
            else:
                torch.bmm(Q[i - 1], J, out=Q[i])                          # Q[-1] = last chunk's
            scale = normalise(Q[i], scale)
            logfro[k - 1] = scale
            if inverse:
                torch.linalg.solve_ex(J, eye if k == 1 else R[i - 1], out=(R[i], info))
                bad = (info > 0) | ~torch.isfinite(R[i]).all(dim=(-2, -1))
                singular = torch.where(bad, singular.clamp_max(k), singular)
                torch.where(bad[:, None, None], eye, R[i], out=R[i])     # keep finite
                rscale = normalise(R[i], rscale)
                rlog[k - 1] = rscale
            if i < C - 1 and k < T:
                continue
            lags, k0 = i + 1, k - i                                       # chunk: lags k0..k
            rows = slice(k0 - 1, k)
            Qc = Q[:lags].view(lags * B, S, S)
            if spectral:
                out["spectral"][rows] = logfro[rows] + top(Qc, lags).view(lags, B).log()
            if inverse:
                big = rlog[rows] + bottom(R[:lags].view(lags * B, S, S), lags).view(lags, B).log()
                # log sigma_min(P_k) = -log ||P_k^{-1}||_2; -inf from the first singular J_t
                gone = lag[rows, None] >= singular[None, :]
                out["min_singular"][rows] = torch.where(gone, -math.inf, -big)
            if blocks:
                Qb = Q[:lags].view(lags, B, parts, n, parts, n)
                bfro[rows] = (logfro[rows, :, None, None]
                              + torch.linalg.vector_norm(Qb, dim=(3, 5)).log())
                if spectral:
                    Mb = Qb.permute(0, 1, 2, 4, 3, 5).reshape(lags * B * parts * parts, n, n)
                    sig = btop(Mb, lags).view(lags, B, parts, parts)
                    out["block_spectral"][rows] = logfro[rows, :, None, None] + sig.log()
    return out


def _loss_walk(bound, states, xs, v):
    """log ||dL/ds_t|| and log ||dL/dx_t|| (each (T, B)) for L = <v, s_T>, by VJPs."""
    T, B = xs.shape[:2]
    S, m = bound.S, bound.m
    empty = functools.partial(torch.empty, dtype=xs.dtype, device=xs.device)
    g = v.expand(B, S).clone()                                   # dL/ds_T, then normalised
    norm = torch.linalg.vector_norm(g, dim=-1)
    g.div_(torch.where(norm > 0, norm, 1)[:, None])
    log = norm.log()
    state_log, input_log = empty(T, B), empty(T, B)
    jbuf, kbuf = empty(B, S, S), empty(B, S, m)
    with torch.no_grad():
        for t in range(T, 0, -1):                                # step t reads s_{t-1}, xs[t-1]
            state = tuple(s[t - 1] for s in states)
            K = bound.jacobian("input", state, xs[t - 1], kbuf)
            gx = torch.bmm(g[:, None, :], K)[:, 0]                # dL/dxs[t-1] / scale
            input_log[t - 1] = log + torch.linalg.vector_norm(gx, dim=-1).log()
            J = bound.jacobian("state", state, xs[t - 1], jbuf)
            g = torch.bmm(g[:, None, :], J)[:, 0]                 # dL/ds_{t-1} / scale
            norm = torch.linalg.vector_norm(g, dim=-1)
            g.div_(torch.where(norm > 0, norm, 1)[:, None])
            log = log + norm.log()
            state_log[t - 1] = log
    return state_log, input_log


def _numpy(a):
    """(T, B, ...) tensor -> (B, T, ...) float64 numpy array."""
    return a.transpose(0, 1).to(dtype=torch.float64, device="cpu").numpy().copy()


def _slope(y):
    """Least-squares slope of y (L,) against 1..L; -inf if y reaches -inf (a zero product)."""
    if np.isneginf(y).any():
        return -math.inf
    if not np.isfinite(y).all() or len(y) < 2:
        return math.nan
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    x -= x.mean()
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))


class Flow:
    """The gradient flow of one cell over one batch of input sequences.

    Every array is numpy float64 with sequences on axis 0 and lag k = 1..T at column k-1
    (`lags`), natural logs, lag k meaning P_k = d s_T / d s_{T-k}. Norms that were not
    requested from `gradient_flow` are computed on first use by another walk.
    """

    def __init__(self, cell, bound, xs, state0, states, *, reverse, seed, blocks):
        self.cell, self.xs, self.state0, self.states = cell, xs, state0, states
        self.reverse, self.seed, self._blocks = reverse, seed, blocks
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
        have = self._log if not blocks else self._block
        if kind in have:
            return
        norms = (kind, "frobenius") if kind != "frobenius" else ("frobenius",)
        self._store(_walk(self._bound, self.states, self.xs, norms=norms,
                          blocks=blocks or self._blocks, seed=self.seed))

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
        if self.parts.__len__() == 1:
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
        over lags start..stop (default all). Negative when gradients vanish; -inf when the
        product becomes exactly zero (or singular, for "min_singular")."""
        y = self.mean_log_norm(kind, block=block)
        stop = self.T if stop is None else stop
        if not 1 <= start <= stop <= self.T:
            raise GradlabError(f"lags {start}..{stop} are outside 1..{self.T}")
        return _slope(y[start - 1:stop])

    def timescale(self, kind="spectral", **options):
        """xi = -1 / rate (steps for the gradient to fall by e); inf at rate 0, negative when
        gradients grow (then -xi is the e-folding time of the growth)."""
        rate = self.rate(kind, **options)
        return math.inf if rate == 0 else -1.0 / rate

    def horizon(self, fraction=1e-3, kind="spectral"):
        """The first lag where the mean log norm falls below log(fraction) plus its lag-1
        value (the norm below `fraction` of the lag-1 norm); None if it never does."""
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
        key = (None if v is None else id(v), seed)
        if key not in self._loss:
            state, inputs = _loss_walk(self._bound, self.states, self.xs,
                                       self.loss_vector(v, seed=seed))
            self._loss[key] = {"state": _numpy(state), "input": _numpy(inputs)}
        out = {k: a.copy() for k, a in self._loss[key].items()}
        if not log:
            out = {k: np.exp(a) for k, a in out.items()}
        return out

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
        return _lyapunov(self._bound, self.xs, self.state0, k, seed, discard)

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
    flow = Flow(cell, bound, xs, state0, states, reverse=reverse, seed=seed, blocks=blocks)
    flow._store(_walk(bound, states, xs, norms=tuple(norms) + ("frobenius",), blocks=blocks,
                      seed=seed))
    return flow


def _lyapunov(bound, xs, state0, k, seed, discard):
    T, B = xs.shape[:2]
    S = bound.S
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GradlabError(f"k must be a positive integer, got {k!r}")
    if not 0 <= discard < T:
        raise GradlabError(f"discard must be in 0..{T - 1}, got {discard!r}")
    k = min(k, S)
    gen = torch.Generator().manual_seed(int(seed))
    Q, _ = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64).to(xs))
    state = tuple(s.clone() for s in state0)
    new = tuple(torch.empty_like(s) for s in state0)
    jbuf = torch.empty(B, S, S, dtype=xs.dtype, device=xs.device)
    total = torch.zeros(B, k, dtype=xs.dtype, device=xs.device)
    with torch.no_grad():
        for t in range(T):
            J = bound.jacobian("state", state, xs[t], jbuf)       # J_{t+1}
            bound.step(state, xs[t], new)
            state, new = new, state
            Q, R = torch.linalg.qr(torch.bmm(J, Q))
            if t >= discard:
                total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
    return (total / (T - discard)).mean(0).to(dtype=torch.float64, device="cpu").numpy()


def lyapunov(cell, params, xs, k=8, *, state0=None, reverse=False, seed=0, discard=0):
    """Top-k Lyapunov exponents (per step, natural log, mean over sequences), (k,):
    Benettin's method, Q_t R_t = J_t Q_{t-1} from a random orthonormal Q_0 (S, k), the i-th
    exponent the mean of log |R_t[i, i]| over steps after the first `discard`. They come in
    decreasing order (up to finite-T fluctuation); the first is the long-lag rate of
    ||P_k||_2 (THEORY.md 5). Cost: one Jacobian, one (S, S) x (S, k) product and one QR per
    step."""
    cell, bound, xs, state0 = _setup(cell, params, xs, state0, reverse)
    return _lyapunov(bound, xs, state0, k, seed, discard)
