"""Decay rates from log-norm curves, their spread over sequences, and why a rate is not a
plain number."""

import math

import numpy as np

from .. import theory


# Why a rate or timescale is not a plain number (`Flow.why`): None when the rate is finite
# and negative, so the timescale -1 / (2 rate) is a positive number of steps.
OVERFLOW = "state overflowed"        # rate nan: a state the products read is inf or nan
INPUT = "input not finite"           # rate nan: an input the products read (or one before
                                     # them, which the state carried on) is inf or nan
NOT_FINITE = "norm not finite"       # rate nan: finite states, but a norm is nan or +inf
                                     # (a Jacobian overflowed)
ZERO = "product zero"                # rate -inf, timescale 0: gradients vanish at once,
                                     # exactly (a dead ReLU cell, W = 0) or in floating
                                     # point (every tanh unit saturated: 1 - h'^2 = 0)
SINGULAR = "product singular"        # min_singular rate -inf: some direction is lost at
                                     # once (a dead unit), though the product is not zero
ONE_LAG = "one lag: no slope"        # rate nan: a slope needs two lags
GROW = "gradients grow"              # rate > 0, timescale inf
NO_DECAY = "no decay within T"       # rate 0, timescale inf


def slope(y, eps=np.finfo(np.float64).eps, lasting=True):
    """(least-squares slope of y (L,) against 1..L, why it is not a plain number or None).

    nan or +inf anywhere (an overflowed product: nothing to fit) gives nan, before -inf
    (a zero product: decay faster than float can follow) gives -inf. A whole product once
    zero stays zero (P_{k+1} = P_k J), so -inf anywhere gives -inf. A block of it need
    not (`lasting` False): a cell whose h' reads the old c has d h'/d h = 0 at lag 1 and
    not after. For a block, -inf at the last lag gives -inf, and -inf at earlier lags
    only drops those lags from the fit. A slope whose change over the L lags is within
    rounding is 0: identity dynamics read -5e-19, "a decay with a timescale of 1.9e18
    steps", or +1e-16, "gradients grow". Rounding is 64 eps of the dtype the norms were
    computed in (each log norm is good to a few of them, whatever its size) plus 64
    float64 eps of the values' size (they are held in float64)."""
    y = np.asarray(y, dtype=np.float64)
    if (np.isnan(y) | np.isposinf(y)).any():
        return math.nan, NOT_FINITE
    zero = np.isneginf(y)
    if zero.any() and (lasting or zero[-1]):
        return -math.inf, ZERO
    x = np.arange(1, len(y) + 1, dtype=np.float64)[~zero]
    y = y[~zero]
    if len(y) < 2:
        return math.nan, ONE_LAG
    x -= x.mean()
    rate = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    tiny = 64 * (eps + np.finfo(np.float64).eps * float(np.abs(y).max()))
    if abs(rate) * (x[-1] - x[0] + 1) <= tiny:
        return 0.0, None
    return rate, None


def slope_stderr(logs):
    """Standard error over sequences of the least-squares slope of log norms (B, L): the
    sample standard deviation of the B per-sequence slopes over sqrt(B). nan for B < 2,
    L < 2 or a curve that is not finite everywhere."""
    logs = np.asarray(logs, dtype=np.float64)
    B, L = logs.shape
    if B < 2 or L < 2 or not np.isfinite(logs).all():
        return math.nan
    x = np.arange(L, dtype=np.float64) - (L - 1) / 2
    slopes = (logs - logs.mean(1, keepdims=True)) @ x / (x @ x)
    return float(slopes.std(ddof=1) / math.sqrt(B))


CONVERGED = 8    # a timescale is converged when the run is at least this many of it (the
                 # norm then falls by e^4 over the run)


def timescale_of_rate(rate):
    """xi = -1 / (2 rate) for a decay: the steps for the squared gradient norm (the mean
    squared gradient) to fall by e (`theory.timescale`, where the cases are)."""
    return theory.timescale(rate)
