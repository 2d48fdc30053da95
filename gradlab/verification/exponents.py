"""gradlab's own Lyapunov exponents on a trajectory, and how far another estimate may lie.

Benettin's iteration (Q_t R_t = J_t Q_{t-1}) over a finite T depends on the start vector
Q_0 by O(1/T), so a check compares with gradlab's estimates from several start vectors
and allows SPREAD times their spread. That offset has a heavy tail on one side: the
top exponent's estimate is (1/T) log |P q| for the product P, at most (1/T) log sigma_1(P),
and a start vector nearly orthogonal to P's top right singular vector pulls it down by
log |cos| / T, as far as chance has it (measured on rnn_relu, n = 2, k = 1, T = 300: the
lowest of 600 estimates 5.6 standard deviations below their mean, the highest 0.8
above). Three start vectors then often lie close together by chance: a right routine
was called wrong 3.6-7 % of the time at SPREAD = 4; with 16, 0.02 % (`check_lyapunov`
takes 16 before it calls anything wrong).

Below the exponents QR resolves (`resolvable`), estimates are round-off, and where J_t
has exact zero rows or columns (a dead ReLU unit) the exact exponents past its rank are
-inf, while published code reports finite round-off there: `roundoff_roof` bounds it.
"""

import math

import numpy as np
import torch

ROUNDOFF = 0.1      # per step: what two round-off estimates below the floor may differ by
NOISY = 0.01        # a spread over start vectors beyond this below the floor: round-off
BAND = 10.0         # and so is an estimate within this (per step) below the floor: where
                    # QR leaves a zero direction (~eps |J_t| a step; lstm_nog, T = 1500:
                    # 4.5 below it, spread 0.0098), not where it resolves one (a diagonal
                    # J: exp(-46), 14 below)
SPREAD = 4          # default atol: this many times the spread over start vectors
QR_CONSTANT = 8     # QR's round-off |E| <= QR_CONSTANT * S * eps * |J_t|, generously


def exponents(J, k, *, transpose=False, seed=0):
    """Top-k exponents (B, k) of the product of J (T, B, S, S) by repeated QR, per step
    (the exact ones of `exponent_pair`)."""
    return exponent_pair(J, k, transpose=transpose, seed=seed)[0]


def exponent_pair(J, k, *, transpose=False, seed=0):
    """Top-k exponents (B, k) of the product of J (T, B, S, S) by repeated QR, per step, as
    (exact, rounded): where J_t has z rows or columns of exact zeros (a dead ReLU unit),
    rank <= S - z, and exact takes |R[i, i]| = 0 for i >= S - z, by gradlab.lyapunov's
    rule; rounded keeps QR's round-off there, which published code reports (finite,
    start-dependent)."""
    T, B, S, _ = J.shape
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64))[0].to(J)
    total = torch.zeros(B, k, dtype=torch.float64)
    rounded, order = total.clone(), torch.arange(k)
    for Jt in J:
        M = Jt.mT if transpose else Jt
        a, tau = torch.geqrf(M @ Q)          # Householder QR (torch.linalg.qr is slow on
        Q = torch.linalg.householder_product(a, tau)     # small thin matrices on the CPU)
        logs = torch.diagonal(a, dim1=-2, dim2=-1).abs().log().double().cpu()
        rounded += logs
        total += logs.masked_fill(order[None] >= zero_rank(M).cpu()[:, None], -math.inf)
    return (total / T).numpy(), (rounded / T).numpy()


def zero_rank(J):
    """(...,): S less J's rows or columns of exact zeros (a dead unit), whichever are
    more: the most its rank can be, and its rank wherever rounding is all that is left."""
    zero = J == 0
    return J.shape[-1] - torch.maximum(zero.all(-1).sum(-1), zero.all(-2).sum(-1))


def roundoff_roof(J, k, eps):
    """(B, k): the highest per-step exponent a QR iteration in precision `eps` can report
    for each of the top k directions of J (T, B, S, S). At every step |R_ii| <= |J_t Q|_F
    <= |J_t|_F; at a step whose exact zeros leave J_t of rank <= i (a dead ReLU unit),
    the exact R_ii is 0 and QR's is round-off, at most QR_CONSTANT S eps |J_t|_F. Where
    an exact exponent is -inf, published code reports such round-off (finite, and
    different for each start vector: on rnn_relu, n = 8, -1.02 where 40 of gradlab's
    start vectors gave -inf but one), and anything at or below this roof is it."""
    S = J.shape[-1]
    size = torch.linalg.matrix_norm(J).log().double().cpu()                     # (T, B)
    dead = (torch.arange(k)[None, None] >= zero_rank(J).cpu()[..., None]).double().mean(0)
    # a direction no exact zero explains at any step is -inf only where J_t's rank is low
    # at every step (rnn_tanh's W = u v^T): round-off at each (the bound at dead = 0,
    # log |J_t|_F, let any value below the exponent before it pass)
    dead = torch.where(dead > 0, dead, 1.0)
    return (size.mean(0)[:, None] + dead * math.log(QR_CONSTANT * S * eps)).numpy()


def distance(a, b, low=None):
    """max |a - b|, where equal infinities (a zero product: -inf) are 0 apart and a nan
    is infinitely far from anything. `low` (floor, slack, noisy, ceiling), from `lowest`:
    where both exponents are at or below the floor, they may differ by slack (per
    exponent) more; where gradlab's own estimates of one are noisy (round-off), any value
    at or below the floor against them, an exact -inf too, is no difference (a QR routine's
    own round-off there: rnn_tanh with W of rank 2, gradlab -36.9 and -38.7 at start vectors
    0.09 apart, a routine's -36, on one CPU; another's round-off had come out closer); and
    where its start vectors give -inf for one
    and a finite value for another (a ReLU unit dead at some steps), anything at or
    below the highest of them (ceiling, else nan) agrees; and where a came in a coarser
    precision than gradlab's (float32), both at or below the floor of that precision
    (coarse: `resolvable` at its eps; else -inf) are its round-off alike."""
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
        d[a == b] = 0.0
        if low is not None:
            floor, slack, noisy, ceiling, coarse = low
            below = (a <= floor) & (b <= floor)
            d = np.where(below, np.maximum(d - slack, 0.0), d)
            d[below & noisy] = 0.0
            d[a <= ceiling] = 0.0                            # nan ceiling: never
            d[(a <= coarse) & (b <= coarse)] = 0.0           # round-off of a's precision
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


def lowest(runs, floor, scale=1.0, rounded=None, roof=None, coarse=-math.inf):
    """(floor, slack, noisy) for `distance` from gradlab's estimates `runs` (SEEDS, k)
    and their `floor` (`resolvable`), in units `scale` times the natural log per step.
    Below the floor an exponent is allowed SPREAD times its own spread over start vectors
    plus ROUNDOFF: a direction QR resolves there (a diagonal J, exp(-46) a step) keeps a
    spread of ~1e-3 and is still checked; one it cannot (a singular J's null space)
    scatters by 0.01-0.8 between start vectors, less on long runs, and lies within BAND
    of the floor (where an exact -inf against it is no difference either). `rounded`: the same runs with QR's
    round-off kept where exact zeros make an exponent -inf (`exponents`): up to the
    highest of those agrees there too, and up to `roof` (k,), from `roundoff_roof`, but
    no higher than the highest estimate of any exponent before it (plus SPREAD times its
    spread): the roof alone sat at mean log |J_t|_F, above the top exponent, where one
    step in 2400 was rank-deficient, and let any value below it pass. `coarse`: the floor
    of the answer's precision where it is coarser (`distance`), else -inf."""
    with np.errstate(invalid="ignore"):
        width = np.nan_to_num(runs.max(0) - runs.min(0), nan=0.0, posinf=np.inf)
    low = runs[0] <= floor
    every = runs if rounded is None else np.concatenate([runs, rounded])
    highest = np.max(np.where(np.isfinite(every), every, -np.inf), axis=0)
    top = highest + ROUNDOFF
    if roof is not None:      # and below the exponent before it: QR orders its diagonal
        above = np.where(np.isfinite(highest), highest + SPREAD * np.where(
            np.isfinite(width), width, 0.0), np.inf)
        order = np.minimum.accumulate(np.concatenate([[np.inf], above[:-1]]))
        top = np.maximum(top, np.minimum(roof, order))
    ceiling = np.where(np.isneginf(runs).any(0), top, np.nan)
    return (floor * scale, np.where(low, SPREAD * width + ROUNDOFF, 0.0) * abs(scale),
            low & ((width > NOISY) | (runs[0] > floor - BAND)), ceiling * scale,
            coarse * scale)


def resolvable(values, J, eps=0.0):
    """The lowest exponent a QR iteration on J resolves, given its estimates `values`
    (..., k), per row: log(10 S eps) per step below the largest. A direction that shrinks
    faster than that against the top one (a singular J_t's null space: exactly -inf)
    comes out of each QR step as round-off, near log eps but different from run to run
    (lstm_nog, whose J has rank n: -36.23 against -36.18), unless J keeps it apart (a
    diagonal J): `lowest` says how far two such estimates may differ."""
    S, eps = J.shape[-1], max(torch.finfo(J.dtype).eps, eps)     # (eps: a coarser one)
    with np.errstate(invalid="ignore"):
        top = np.max(np.where(np.isfinite(values), values, -np.inf), axis=-1, keepdims=True)
    return top + math.log(10 * S * eps)


def spread(runs, floor):
    """The largest range over start vectors (axis 0) of the exponents above `floor`."""
    with np.errstate(invalid="ignore"):                   # -inf - -inf: a zero product
        width = runs.max(0) - runs.min(0)
    return float(np.nan_to_num(np.max(np.where(runs[0] > floor, width, 0.0),
                                      initial=0.0), nan=0.0))
