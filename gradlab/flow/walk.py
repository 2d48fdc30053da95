"""The backward walk: P_k = P_{k-1} J_{T-k+1} for k = 1..T, a chunk of lags at a time.

The Jacobians of a chunk of C steps come from one lowered call; the products of the chunk
are formed one lag after another from the previous (`Chain`), scaled exactly (`Scale`),
by `Products`, which on a GPU replays the full chunks from a recorded CUDA graph; their
norms are taken for the whole chunk at once (`Spectral`): the iterations of the
spectral norm never synchronise with the host per lag. C is set by a byte budget
(CHUNK_BYTES), so memory beyond the states is O(C B S^2), never O(T B S^2).
"""

import functools
import math

import torch

from ..errors import derived_seed
from . import graphs
from .bound import Bound, exclusive
from .chain import Chain
from .lanczos import Spectral
from .products import Products
from .scale import Ring, Scale, log_norm, power_of_two
from .workspace import Workspace

# Bytes of running products kept per chunk (C lags at once): large enough that the
# per-chunk Lanczos overhead is amortised. On a CPU also at most CHUNK_LAGS lags, unless
# CACHE_BYTES hold more lags of (B, S, S) matrices: the chunk's Jacobians (whose lowered
# evaluation is memory-bound) then stay in cache. Measured on the 2-core CPU with spectral
# norms: n=64, T=64, B=8: lstm (2 MB a lag) 128 ms at C = 8 against 137 ms at C = 4; gru
# (0.5 MB a lag) 92 ms at C = 16 against 96 ms at C = 32 (one thread: 102 against 126 ms);
# n=8, T=1024, B=2: 142 ms in one chunk against 191 ms in chunks of 16 lags.
CHUNK_BYTES = {"cpu": 16 << 20, "cuda": 1 << 30}
CHUNK_LAGS = {"cpu": 16}
CACHE_BYTES = 4 << 20


def chunk_lags(T, B, S, dtype, device, buffers):
    kind = torch.device(device).type
    budget = CHUNK_BYTES.get(kind, CHUNK_BYTES["cpu"])
    matrices = B * S * S * torch.finfo(dtype).bits // 8                 # one lag's P or J
    cap = max(CHUNK_LAGS[kind], CACHE_BYTES // matrices) if kind in CHUNK_LAGS else T
    return max(1, min(T, budget // (buffers * matrices), cap))


@exclusive
def walk(bound, states, xs, *, norms, blocks, seed, rtol=None):
    """One backward pass: log norms of every P_k (and its blocks), as (T, B) tensors;
    spectral norms (and smallest singular values) to relative accuracy `rtol`."""
    T, B = xs.shape[:2]
    n, S, parts = bound.n, bound.S, bound.parts
    dtype, device = xs.dtype, xs.device
    spectral, inverse = "spectral" in norms, "min_singular" in norms
    blocks = blocks and parts > 1
    # chunk-sized arrays: the products (two: ping-pong), their inverses, and on a GPU,
    # where the byte budget is memory rather than cache, the two that Spectral raises a
    # chunk's matrices to a power in (subspace.powered)
    powers = torch.device(device).type != "cpu" and (spectral or inverse)
    C = chunk_lags(T, B, S, dtype, device, 2 + 2 * inverse + 2 * powers)
    ping = 1 if T <= C else 2             # chunk c in buffer c % 2; the next reads its end
    empty = functools.partial(torch.empty, dtype=dtype, device=device)
    chain = Chain(bound, C, dtype, device)
    # P_k^T / ||P_k||_F for a chunk's lags, when anything reads them after the chunk's
    # products; if not (Frobenius norms alone) two alternating buffers, which stay in cache
    keep = spectral or inverse or blocks
    Qs = empty(ping, chain.g, C, B, chain.w, S) if keep else empty(2, chain.g, B, chain.w, S)
    alternate = None if keep else [(q, q.unbind(0)) for q in Qs]
    logs = functools.partial(torch.empty, T, B, dtype=torch.float64, device=device)
    out = {"frobenius": logs()}           # log ||P_k||_F, lag k at row k - 1
    scratch = Workspace()                 # work arrays the Spectral objects share
    if spectral:
        out["spectral"], top = logs(), Spectral(seed, dtype, rtol, scratch)
    if inverse:
        Rs = empty(ping, C, B, S, S)      # P_k^{-1} 2^(-r_k)
        out["min_singular"], bottom = logs(), Spectral(derived_seed(seed, 1), dtype, rtol, scratch)
        rscale = Scale(T, B, dtype, device)
        singular = torch.full((B,), T + 1, device=device)    # first lag with a singular J
        unread = torch.full((B,), T + 1, device=device)      # first with a J not finite
        eps = torch.finfo(dtype).eps
        lag = torch.arange(1, T + 1, device=device)
        eye = torch.eye(S, dtype=dtype, device=device).expand(B, S, S)
        jdense = empty(B, S, S)
    if blocks:
        out["block_frobenius"] = logs(parts, parts)
        if spectral:
            out["block_spectral"] = logs(parts, parts)
            btop = Spectral(derived_seed(seed, 2), dtype, rtol, scratch)

    # on a GPU the full chunks are recorded as CUDA graphs (products.py) where nothing runs
    # per lag besides the products: their scale then writes into a ring of C rows (Ring)
    record = isinstance(bound, Bound) and not inverse and graphs.wanted(device, T)
    scale = (Ring(T, B, dtype, device, C) if record else Scale(T, B, dtype, device))
    products = Products(bound, chain, states, xs, scale, C, Qs if keep else None, alternate,
                        record)

    def invert(i, k, j, J):               # R_k = P_k^{-1} 2^(-r_k), lag k, after its product
        Jk = chain.dense(J, j, jdense)
        # a J_t holding inf or nan (finite states, an infinite slope: sqrt at 0) is no
        # singular J_t: every P_k from it on is not finite, and its sigma_min nan, as its
        # spectral norm is (its inverse failing read as singular: -inf, "product singular")
        broken = ~torch.isfinite(Jk).all(dim=(-2, -1))
        unread[:] = torch.where(broken, unread.clamp_max(k), unread)
        # J_t 2^-e, its largest entry in [1/2, 1) (exact): a J_t of entries near 1e-308
        # is invertible, but its inverse overflowed and read as singular; 2^e goes to r_k
        e = torch.frexp(Jk.abs().amax(dim=(-2, -1)))[1].long()        # (0: zero, inf, nan)
        Jk = power_of_two(Jk, -e)
        rscale.total = rscale.total - e
        last = eye if k == 1 else R[i - 1] if i else R0
        LU, pivots, info = torch.linalg.lu_factor_ex(Jk)
        torch.linalg.lu_solve(LU, pivots, last, out=R[i])
        # singular to working precision, by numpy's matrix_rank rule on the pivots (a
        # pivot below S eps of the largest): its sigma_min is noise
        u = LU.diagonal(dim1=-2, dim2=-1).abs()
        bad = (info > 0) | (u.amin(-1) <= S * eps * u.amax(-1)) \
            | ~torch.isfinite(R[i]).all(dim=(-2, -1))
        singular[:] = torch.where(bad, singular.clamp_max(k), singular)
        torch.where(bad[:, None, None], eye, R[i], out=R[i])              # keep finite
        rscale(R[i], k)

    with torch.no_grad():
        for c, k0 in enumerate(range(1, T + 1, C)):                       # lags k0..k1
            k1 = min(k0 + C - 1, T)
            lags, rows = k1 - k0 + 1, slice(k0 - 1, k1)
            if inverse:
                R, R0 = Rs[c % ping], Rs[(c - 1) % ping, C - 1]
            products(c, k0, lags, invert if inverse else None)
            Q = Qs[c % ping] if keep else None
            base = scale.log(rows)                                        # (lags, B)
            out["frobenius"][rows] = scale.frobenius(rows)
            if spectral:   # sigma(P) with P = (P^T)^T: left vectors live at time T (warm)
                sig = top.of_rows(chain.rows(Q, lags), lags, scale.stored(rows).view(-1))
                sig = sig.view(lags, B)
                out["spectral"][rows] = base + sig.double().log()
            if inverse:    # P^{-1} maps s_T to s_{T-k}: its right vectors live at time T
                Rc = R[:lags].view(lags * B, S, S).mT
                big = rscale.log(rows) + bottom(Rc, lags).view(lags, B).double().log()
                # log sigma_min(P_k) = -log ||P_k^{-1}||_2; -inf from the first singular J_t
                gone = lag[rows, None] >= singular[None, :]
                low = torch.where(gone, -math.inf, -big)
                out["min_singular"][rows] = torch.where(lag[rows, None] >= unread[None, :],
                                                        math.nan, low)
            if blocks:
                X = chain.blocks_of(Q, lags, parts, n)
                # exact (log_norm): the sum of squares of a block below ~1e-154 of the
                # product underflowed to 0, and its Frobenius norm read -inf ("zero")
                fro = log_norm(X, (3, 5)).transpose(-1, -2)                        # [out, in]
                out["block_frobenius"][rows] = base[..., None, None] + fro
                if spectral:
                    Mb = X.permute(0, 1, 4, 2, 5, 3).reshape(lags * B * parts * parts, n, n)
                    sig = btop(Mb, lags).view(lags, B, parts, parts)
                    out["block_spectral"][rows] = base[..., None, None] + sig.double().log()
            scale.release(rows)
            if inverse:
                rscale.release(rows)
    return out
