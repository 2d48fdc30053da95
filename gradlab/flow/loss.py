"""What a loss L = <v, s_T> sees of each step: ||dL/ds_t|| and ||dL/dx_t||, by VJPs."""

import functools

import numpy as np
import torch

from .. import progress
from ..errors import GradlabError
from .bound import as_real, exclusive
from .scale import LN2, Scale, largest_exponent, log_norm, power_of_two


def loss_vector(v, S, B, like, seed=0, pad=None):
    """v for L = <v, s_T>: the given (S,) or (B, S) tensor (as `like`'s dtype and device),
    else a random unit (S,) vector from `seed`, zero on the entries `pad` (S,) marks
    (zero padding of the state, which no loss reads)."""
    if v is None:
        gen = torch.Generator().manual_seed(int(seed))
        v = torch.randn(S, generator=gen, dtype=torch.float64, device="cpu")
        if pad is not None:
            v[pad] = 0
        v = v / torch.linalg.vector_norm(v)
    v = as_real(v, "the loss vector v", like.dtype, like.device).detach()
    if tuple(v.shape) not in ((S,), (B, S)):
        raise GradlabError(f"loss vector has shape {tuple(v.shape)}, expected (S,) = "
                           f"({S},) or (B, S) = ({B}, {S})")
    if not bool(torch.isfinite(v).all()):
        raise GradlabError("the loss vector v holds inf or nan; it must be finite")
    return v


def check_cut(K):
    """K, a truncated-BPTT length (a non-negative integer), or a GradlabError."""
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 0:
        raise GradlabError(f"K must be a non-negative integer, got {K!r}")
    return int(K)


def kept_fraction(input_logs, K):
    """The share of the squared input-gradient mass within the last K steps, per sequence
    from log ||dL/dx_t|| (B, T), averaged over sequences (`Flow.bptt_fraction`)."""
    K = check_cut(K)
    logs = torch.as_tensor(input_logs)
    T = logs.shape[1]
    total = torch.logsumexp(2 * logs, dim=1)
    kept = torch.logsumexp(2 * logs[:, T - min(K, T):], dim=1)
    return float(torch.exp(kept - total).mean())


@exclusive
def loss_walk(bound, states, xs, v, columns=None):
    """log ||dL/ds_t|| and log ||dL/dx_t|| (each (T, B)) for L = <v, s_T>, by VJPs;
    `columns`: count only the first so many input columns (a module's own input within
    the wide one a direction of a bidirectional stack reads), else all."""
    T, B = xs.shape[:2]
    S, m = bound.S, bound.m
    empty = functools.partial(torch.empty, dtype=xs.dtype, device=xs.device)
    scale = Scale(T + 1, B, xs.dtype, xs.device)      # row t: dL/ds_t = g 2^(e_t)
    g = v.expand(B, S).clone()
    scale(g, T + 1)                                    # dL/ds_T
    gx = empty(T, B, m)                                # dL/dxs[t] 2^(-e_{t+1})
    # dL/dxs[t] = g K: K divided by the power of two of its largest entry first (exact;
    # added back in the log), or g K of weights past ~1e154 overflowed to inf
    kexp = torch.empty(T, B, dtype=torch.int64, device=xs.device)
    jbuf, kbuf = empty(B, S, S), empty(B, S, m)
    with torch.no_grad():
        for t in range(T, 0, -1):                      # step t reads s_{t-1}, xs[t-1]
            state = tuple(s[t - 1] for s in states)
            K = bound.jacobian("input", state, xs[t - 1], kbuf)
            kexp[t - 1] = largest_exponent((K,))
            K = power_of_two(K, -kexp[t - 1])
            torch.bmm(g[:, None, :], K, out=gx[t - 1, :, None, :])
            J = bound.jacobian("state", state, xs[t - 1], jbuf)
            g = torch.bmm(g[:, None, :], J)[:, 0]
            scale(g, t)                                # dL/ds_{t-1}
            if progress.due(T - t, T):
                progress.advance("loss gradients", T - t + 1, T)
    state_log = scale.frobenius(slice(0, T))           # row t: s_t, t = 0..T
    # (the sum of squares of entries past ~1e154 overflows: an exact norm, `log_norm`)
    inputs = log_norm(gx[..., :columns], -1) + kexp.double() * LN2
    return state_log, scale.log(slice(1, T + 1)) + inputs

