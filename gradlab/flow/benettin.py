"""Lyapunov exponents by Benettin's QR iteration along the stored states.

Q_t R_t = J_t Q_{t-1} from a random orthonormal Q_0 (S, k): the i-th exponent is the mean
of log |R_t[i, i]| over the steps measured. The Jacobians of a chunk of steps come from
one lowered call, compacted by structure (a diagonal block as its diagonal), and J_t Q
is formed block by block (the LSTM's d c'/d c = diag(f) is a broadcast multiply), never
as a dense (S, S) matrix; the QR is LAPACK's geqrf and Householder product (`thin_qr`),
which on a CPU costs a fraction of torch.linalg.qr at these small sizes. On a CPU a chunk
holds QR_CHUNK_BYTES of dense Jacobian blocks (`chunk_steps`), so that it stays in cache.
"""

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .. import progress
from ..errors import GradlabError, arguments_checked, check_seed
from .bound import exclusive, kinds
from .scale import largest_exponent, power_of_two
from .linalg import thin_qr
from .module import bind_call
from .walk import chunk_lags

# Bytes of dense Jacobian blocks per chunk of steps on a CPU. Benettin's loop has nothing
# per chunk to amortise but one lowered call, and the lowered Jacobian's temporaries are
# memory-bound: at walk's 16 MB a chunk, the GRU at n=64, B=8 (float64, one thread) ran 2x
# slower than at 2-4 MB; 4 MB was within noise of the best chunk for the LSTM and GRU at
# n=16..128, B=8..64 (C = 1..64 tried). Any chunk gives the same numbers.
QR_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True, eq=False)     # arrays: compared by identity, hashable
class Lyapunov:
    """Top-k Lyapunov exponents (per step, natural log), in decreasing order up to
    finite-T fluctuation; the first is the long-lag rate of ||P_k||_2.

    exponents  (B, k): each sequence's own, the mean of log |R_t[i, i]| over its steps
               t = discard+1..T;
    mean       (k,): their mean over sequences;
    stderr     (k,): the standard error of that mean over sequences (sample standard
               deviation / sqrt(B); nan for B = 1), which says nothing of the O(1/T)
               bias of a finite run: read `running` for that;
    running    (T - discard, k): the estimate after each measured step (row j: the mean
               over sequences of the exponents from steps discard+1..discard+j+1), so
               convergence can be seen (it should flatten);
    discard, steps (T - discard, the steps averaged)."""

    exponents: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    running: np.ndarray
    discard: int
    steps: int

    def __repr__(self):      # a summary: the arrays hold B k and (T - discard) k numbers
        B, k = self.exponents.shape
        shown = ", ".join(f"{m:.4g} ± {e:.2g}" for m, e in zip(self.mean, self.stderr))
        return (f"Lyapunov(mean=[{shown}], sequences={B}, steps={self.steps}, "
                f"discard={self.discard}; .exponents (B, k), .running (steps, k))")


def _step_blocks(rows, cell_kinds, steps):
    """Per step j, the blocks [a][b] of J_j: (B, n, n), (B, n, 1) for a diagonal block,
    None for a zero one; one unbind per block per chunk."""
    split = [[None if b is None or k == "zero" else b.unbind(0) for b, k in zip(row, kr)]
             for row, kr in zip(rows, cell_kinds)]
    return [[[None if b is None else b[j] for b in row] for row in split]
            for j in range(steps)]


def zero_lines(rows, cell_kinds):
    """(steps, B, 1): the most rows, or columns, of exact zeros in each J_t, from its
    blocks [a][b] ((steps, B, n, n), (steps, B, n, 1) diagonal, None for a zero one); 0
    for a J that is zero throughout (its R is then zero: log -inf already)."""
    shown = [b for row in rows for b in row if b is not None]
    if not shown:
        return 0
    every = torch.ones(shown[0].shape[:-1], dtype=torch.bool, device=shown[0].device)

    def zero(block, kind, dim):          # (steps, B, n): line i of the block is zero
        if block is None or kind == "zero":
            return every
        return (block == 0)[..., 0] if kind == "diagonal" else (block == 0).all(dim)
    parts, both = range(len(rows)), functools.partial(functools.reduce, torch.logical_and)
    zero_rows = sum(both([zero(rows[a][b], cell_kinds[a][b], -1) for b in parts]).sum(-1)
                    for a in parts)
    zero_columns = sum(both([zero(rows[a][b], cell_kinds[a][b], -2) for a in parts]).sum(-1)
                       for b in parts)
    return torch.maximum(zero_rows, zero_columns)[..., None]


def _times(blocks, cell_kinds, Q, out, n):
    """out (B, S, k) <- J Q from J's compact blocks, part by part."""
    for a, row in enumerate(blocks):
        target, first = out[:, a * n:(a + 1) * n], True
        for b, block in enumerate(row):
            if block is None:
                continue
            q = Q[:, b * n:(b + 1) * n]
            if cell_kinds[a][b] == "diagonal":
                if first:
                    torch.mul(block, q, out=target)
                else:
                    target.addcmul_(block, q)
            elif first:
                torch.bmm(block, q, out=target)
            else:
                target.baddbmm_(block, q)
            first = False
        if first:
            target.zero_()


def _scaled_down(blocks):
    """One J_t's blocks (`_step_blocks`) divided by 2^e, e (B,) the binary exponent of
    each sequence's largest |entry| (frexp; 0 where that is zero or not finite), exact,
    and e ln 2 (B,): the scaled J_t times Q cannot overflow."""
    shown = [b for row in blocks for b in row if b is not None]
    if not shown:
        return blocks, torch.zeros(())
    e = largest_exponent(shown)
    return ([[None if b is None else power_of_two(b, -e) for b in row] for row in blocks],
            e.to(shown[0].dtype) * math.log(2))


def chunk_steps(T, B, n, cell_kinds, dtype, device):
    """Steps whose Jacobians one lowered call evaluates: QR_CHUNK_BYTES of dense blocks on a
    CPU; elsewhere walk's budget (`chunk_lags`), where a large chunk amortises launches."""
    if torch.device(device).type != "cpu":
        return chunk_lags(T, B, n * len(cell_kinds), dtype, device, 1)
    dense = max(1, sum(kind == "dense" for row in cell_kinds for kind in row))
    per_step = B * dense * n * n * torch.finfo(dtype).bits // 8
    return max(1, min(T, QR_CHUNK_BYTES // per_step))


def log_stretches(bound, xs, states, k, seed, pad=None):
    """log |R_t[i, i]| for every step t = 1..T and sequence, float64 (T, B, k), with
    k at most S; Q_0 from torch.Generator().manual_seed(seed).randn(B, S, k) (float64),
    zero on the entries `pad` (S,) marks (zero padding of the state: Q_0 then lies in
    the true state space, so the first step measures no projection onto it)."""
    T, B = xs.shape[:2]
    n, S = bound.n, bound.S
    k = min(k, S if pad is None else S - int(pad.sum()))
    gen = torch.Generator().manual_seed(int(seed))
    Q0 = torch.randn(B, S, k, generator=gen, dtype=torch.float64, device="cpu")
    if pad is not None:
        Q0[:, pad] = 0
    Q = thin_qr(Q0)[0].to(xs)
    cell_kinds = kinds(bound.cell)
    C = chunk_steps(T, B, n, cell_kinds, xs.dtype, xs.device)
    logs = torch.empty(T, B, k, dtype=xs.dtype, device=xs.device)
    order = torch.arange(k, device=xs.device)
    tiny = math.log(S * torch.finfo(xs.dtype).eps)       # round-off, relative to the top
    Y = torch.empty(B, S, k, dtype=xs.dtype, device=xs.device)
    with torch.no_grad():
        for t0 in range(0, T, C):                                  # steps t0+1..t1
            t1 = min(t0 + C, T)
            rows = bound.blocks(tuple(s[t0:t1].reshape(-1, n) for s in states),
                                xs[t0:t1].reshape((t1 - t0) * B, -1), t1 - t0)
            start, steps = Q, _step_blocks(rows, cell_kinds, t1 - t0)
            for j, blocks in enumerate(steps):
                _times(blocks, cell_kinds, Q, Y, n)                # J_{t+1} Q, t = t0 + j
                Q, diag = thin_qr(Y)
                torch.log(diag.abs(), out=logs[t0 + j])
                if progress.due(t0 + j, T):
                    progress.advance("Lyapunov QR", t0 + j + 1, T)
            # entries of J_t near the dtype's largest (weights ~1e308) overflow J_t Q and
            # leave nan or inf in R: the chunk again from its start, each J_t divided by
            # the power of two of its largest entry (exact), the log of it added back
            if bool((logs[t0:t1].isnan() | (logs[t0:t1] == math.inf)).any()):
                Q = start
                for j, blocks in enumerate(steps):
                    blocks, shift = _scaled_down(blocks)
                    _times(blocks, cell_kinds, Q, Y, n)
                    Q, diag = thin_qr(Y)
                    torch.log(diag.abs(), out=logs[t0 + j]).add_(shift[:, None])
            # J_t with z exactly zero rows or columns (a proj_size LSTM's padding, a dead
            # ReLU) has rank <= S - z, and so has J_t Q: |R[i, i]| is exactly 0 for i >=
            # S - z, where QR leaves round-off (-71 for an exponent that is -inf). Looked
            # for (a pass over J) only where some |R[i, i]| is that small against the top
            chunk = logs[t0:t1]
            if k > 1 and bool((chunk < chunk.amax(-1, keepdim=True) + tiny).any()):
                chunk.masked_fill_(S - zero_lines(rows, cell_kinds) <= order, -math.inf)
    return logs.double()


def _check(k, discard, T):
    """(k, discard) as ints: k >= 1, discard in 0..T-1 (numpy integers accepted)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise GradlabError(f"k must be a positive integer, got {k!r}")
    if isinstance(discard, bool) or not isinstance(discard, numbers.Integral) \
            or not 0 <= discard < T:
        raise GradlabError(f"discard must be an integer in 0..{T - 1}, got {discard!r}")
    return int(k), int(discard)


@exclusive
def exponents_along(bound, xs, states, k, seed, discard, pad=None):
    """The `Lyapunov` result along stored states (see `lyapunov`); `pad` (S,) marks the
    state entries that are zero padding, and k is capped at the state's true dimension."""
    T, B = xs.shape[:2]
    k, discard = _check(k, discard, T)
    # (T - discard, B, k): log |R_t[i, i]| of the measured steps
    logs = log_stretches(bound, xs, states, k, check_seed(seed), pad)[discard:].cpu()
    steps = T - discard
    # a sequence whose state overflowed (or whose input is inf or nan) has Jacobians that
    # mean nothing, even where they come out as exact zeros (log -inf): its exponents nan
    finite = torch.stack([torch.isfinite(s).flatten(2).all(2).all(0) for s in states]
                         + [torch.isfinite(xs).all(2).all(0)]).all(0)
    logs[:, ~finite.cpu()] = math.nan
    # in torch, not numpy: an exactly singular J_t gives -inf, whose spread is nan
    # without a floating-point warning
    sums = logs.cumsum(0)
    per = sums[-1] / steps                                            # (B, k)
    count = torch.arange(1, steps + 1, dtype=torch.float64, device="cpu")[:, None]
    running = sums.mean(1) / count
    stderr = (per.std(0, correction=1) / math.sqrt(B) if B > 1
              else torch.full(per.shape[1:], math.nan, dtype=torch.float64, device="cpu"))
    return Lyapunov(exponents=per.numpy(), mean=per.mean(0).numpy(), stderr=stderr.numpy(),
                    running=running.numpy(), discard=discard, steps=steps)


class _Unset:
    """xs not given (lyapunov(module, xs, k) passes k where a cell's call passes xs, and an
    explicit None there is a k of None, refused, not the default k)."""

    def __repr__(self):
        return "None"


UNSET = _Unset()


@arguments_checked
def lyapunov(cell, params=None, xs=UNSET, k=8, *, discard=0, state0=None, seed=0,
             reverse=False):
    """Top-k Lyapunov exponents of `cell` along inputs xs (T, B, m) from state0 (zeros by
    default), per sequence, with their mean, standard error and running estimate: a
    `Lyapunov`. Benettin's method: Q_t R_t = J_t Q_{t-1} from a random orthonormal Q_0
    (seeded torch.Generator().manual_seed(seed).randn(B, S, k), float64, orthonormalised),
    the i-th exponent the mean of log |R_t[i, i]| over steps t = discard+1..T. k is capped
    at S. Each sequence starts from its own row of that draw (independent starts, whose
    transients average out in the mean), so over a short T a sequence's exponents move,
    by O(1/T), with B and its place in the batch; `discard` removes that transient.
    Where J_t has z rows or columns of exact zeros (a from_torch proj_size LSTM's
    padding, dead ReLU units), exponents k > S - z are -inf, as in exact arithmetic. A direction that
    shrinks by more than ~10 S eps a step against the first without exact zeros (a
    J_t of lower rank: rnn_tanh with W of rank 1) is QR's round-off, near log eps
    (-36 in float64), not a measurement. The exponents are in QR's column order, not
    sorted: descending once Q has turned to the leading directions, while over tens of
    steps neighbours can come out of order (a longer walk or `discard` settles them).

    discard: the first `discard` steps are a warm-up: the state and the basis Q evolve
    through them (Q turns towards the leading directions, the state forgets state0), but
    their stretches are not averaged. A warm-up of W steps followed by T' measured steps
    is xs of length W + T' with discard=W; the result is the same as measuring xs[W:]
    from the warm state s_W with the warm basis Q_W.

    Cost per step: one Jacobian (a chunk of steps per lowered call), J Q block by block
    (S^2 k), one thin QR. params: the cell's dict of tensors, as gradient_flow's; a torch
    module goes as in gradient_flow, without them: `lyapunov(module, xs, k)`, its weights
    its own. reverse: along xs flipped in time (the backward half of a bidirectional
    model), as gradient_flow's."""
    seed = check_seed(seed)
    if isinstance(cell, torch.nn.Module) and xs is not UNSET and k == 8 \
            and np.ndim(xs) == 0:
        xs, k = UNSET, xs                # lyapunov(module, xs, k), k checked below as k
                                         # (a number of any kind: np.int64(3) too; None)
    xs = None if xs is UNSET else xs
    bound, xs, state0, pad = bind_call(cell, params, xs, state0, reverse, "lyapunov")
    _check(k, discard, xs.shape[0])
    return exponents_along(bound, xs, bound.states(xs, state0), k, seed, discard, pad=pad)


@arguments_checked
def lyapunov_mean(cell, params=None, xs=UNSET, k=8, *, state0=None, reverse=False, seed=0,
                  discard=0):
    """The mean over sequences of the top-k Lyapunov exponents, (k,): `lyapunov(...).mean`
    (gradlab.flow.lyapunov, as the reports call it); a torch module as in `lyapunov`:
    lyapunov_mean(module, xs, k)."""
    return lyapunov(cell, params, xs, k, discard=discard, state0=state0, seed=seed,
                    reverse=reverse).mean
