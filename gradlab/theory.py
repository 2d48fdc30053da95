"""The theory reports draw over measurements (derivations/theory.md), each a small formula.

    mean_field      q* and chi of the vanilla tanh RNN (Poole et al. 2016; Chen et al. 2018):
                        q*  = sw^2 E[tanh(sqrt(q*) z)^2] + sv^2 R + sb^2
                        chi = sw^2 E[tanh'(sqrt(q*) z)^2]
                    the log of a gradient norm falls by (1/2) ln chi per step.
    mean_field_rate (1/2) ln chi, that per-step rate (in logs where chi underflows).
    timescale       xi = -1 / (2 rate): the steps in which the mean squared gradient falls
                    by e (-1 / ln chi for the mean-field rate).
    pascanu_rate    ln(gamma ||W||_2): the per-step log of Pascanu et al.'s bound
                    ||P_k|| <= (gamma ||W||)^k (VANILLA_GAMMA: 1 for tanh and relu).
    gate_rate       ln sigma(a): with zero recurrent weights and a constant gate
                    pre-activation a, the gated product is sigma(a)^k I exactly.
"""

import functools
import math
import sys

import numpy as np

from .errors import GradlabError, integer, real

# the vanilla cells h' = act(W h + U x + b) and a bound gamma on |act'| (Pascanu et al.'s
# bound (gamma ||W||_2)^k holds for each; tanh' and relu' never exceed 1)
VANILLA_GAMMA = {"rnn_tanh": 1.0, "rnn_relu": 1.0}

QUADRATURE_POINTS = 100   # Gauss-Hermite: exact for polynomials to degree 199, ample here


@functools.lru_cache(maxsize=None)
def _gauss():
    z, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    return z, w / math.sqrt(2 * math.pi)     # E[f(z)] = sum w f(z) for z ~ N(0, 1)


def _expect(f, q):
    """E[f(sqrt(q) z)], z ~ N(0, 1), for f = sech^2 or sech^4 (decaying like e^-2|u|).

    Gauss-Hermite is exact to ~1e-16 while f(sqrt(q) z) is smooth on the node spacing,
    i.e. for small q; its error grows with q (1e-9 at q = 1, 3e-4 at q = 4, checked
    against scipy's quad), because the integrand becomes a spike of width ~1/sqrt(q). For
    q > 1/4 integrate in u = sqrt(q) z on a grid that resolves both the spike and the
    Gaussian (trapezoid, 64 points per unit of u; f(40) ~ e^-80 ends the range).
    """
    if q <= 0.25:
        z, w = _gauss()
        return float(w @ f(math.sqrt(q) * z))
    u = np.linspace(-40.0, 40.0, 5121)       # f(40) ~ e^-80: the tails are negligible
    density = np.exp(-0.5 * u ** 2 / q) / math.sqrt(2 * math.pi * q)
    return float(np.trapezoid(f(u) * density, u))


def _sech2(u):
    return 1.0 / np.cosh(np.clip(u, -350, 350)) ** 2


def _tanh2(q):
    """E[tanh(sqrt(q) z)^2], without the cancellation of 1 - E[sech^2] at small q."""
    if q <= 0.25:                        # Gauss-Hermite (tanh^2 is smooth there)
        return _expect(lambda u: np.tanh(u) ** 2, q)
    return 1.0 - _expect(_sech2, q)


# tanh u - u = sum_k c_k u^(2k+1), k = 1..6 (the next term is 1.5e-3 u^15)
_TANH_SERIES = (-1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075)


def _tanh_minus(u):
    """tanh(u) - u, without cancellation at small |u| (a series below 0.1: relative
    error 1e-14 there; 3 eps / u^2 < 1e-13 from the direct difference above it)."""
    u2 = u * u
    series = u * u2 * np.polyval(_TANH_SERIES[::-1], u2)
    return np.where(np.abs(u) < 0.1, series, np.tanh(u) - u)


def _tanh2_excess(q):
    """E[tanh(sqrt(q) z)^2] - q (about -2 q^2 at small q), for q <= 1/4: computed as
    E[(tanh u - u)(tanh u + u)], where E[tanh^2] - q lost every digit once 2 q^2 fell
    below eps q (q < 1e-16) and left the fixed point at sw = 1 to rounding."""
    return _expect(lambda u: _tanh_minus(u) * (np.tanh(u) + u), q)


def mean_field(weight_scale, *, input_scale=1.0, bias_scale=0.0, input_power=1.0,
               iterations=500, tol=1e-14):
    """(q*, chi) for W ~ N(0, sw^2/n), U ~ N(0, sv^2/m), b ~ N(0, sb^2), R = |x|^2/m.
    Squares are products, not powers: a scale beyond 1e154 gives q* = inf and chi = nan
    (float ** 2 would raise OverflowError).

    q* is the root of f(q) = sw^2 E[tanh^2] + drive - q, found by bisection (at most
    `iterations` halvings, to `tol` relative): iterating the map instead nears q* only as
    1/(2t) at the edge of chaos (sw = 1, small drive), which left q* 14x too large and the
    rate on the wrong side of 0 just above it. With no drive, q* = 0 for sw <= 1 (the only
    fixed point) and the positive root above it."""
    return _solved(real(weight_scale, "weight_scale", finite=False),
                   real(input_scale, "input_scale", finite=False),
                   real(bias_scale, "bias_scale", finite=False),
                   real(input_power, "input_power", 0, finite=False),
                   integer(iterations, "iterations", 1), real(tol, "tol", 0))


@functools.lru_cache(maxsize=None)
def _solved(weight_scale, input_scale, bias_scale, input_power, iterations, tol):
    """mean_field's (q*, chi), its arguments checked (and hashable: floats)."""
    sw2 = weight_scale * weight_scale
    drive = input_scale * input_scale * input_power + bias_scale * bias_scale
    if math.isnan(sw2 + drive):           # no number to solve for: none to give
        return math.nan, math.nan
    if not math.isfinite(sw2 + drive):
        q = math.inf
        if sw2 and all(map(math.isfinite, (weight_scale, input_scale, bias_scale, input_power))):
            return q, math.nan   # a finite scale's square overflowed: chi is finite, not
            # the limit 0 (bias_scale 1e200 read rate -inf, "the product is exactly zero")
    elif sw2 == 0 or (drive == 0 and sw2 <= 1):
        q = drive
    else:
        f = lambda q: sw2 * _tanh2(q) + drive - q if q > 0.25 else \
            (sw2 - 1) * q + sw2 * _tanh2_excess(q) + drive              # noqa: E731
        lo, hi = drive, sw2 + drive               # f(lo) >= 0 > f(hi): tanh^2 < 1
        while lo == 0 and f(hi / 2) <= 0:         # no drive: f > 0 only below q*
            hi /= 2
        lo = lo or hi / 2
        for _ in range(iterations):
            if hi - lo <= tol * hi:
                break           # halving the log where the bracket spans decades (a drive
            mid = math.sqrt(lo) * math.sqrt(hi) if hi > 4 * lo else 0.5 * (lo + hi)  # 1e-300)
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        q = 0.5 * (lo + hi)
    chi = sw2 * _expect(lambda u: _sech2(u) ** 2, q)
    return q, chi


def mean_field_rate(weight_scale, **kwargs):
    """Per-step slope of the log gradient norm predicted by mean-field theory: (1/2) ln chi;
    -inf at chi = 0 (weight scale 0: the product is exactly zero; or an infinite drive, the
    limit), nan where chi is nan (a non-finite weight scale, or a finite scale whose square
    overflows: past ~1e154)."""
    q, chi = mean_field(weight_scale, **kwargs)
    if math.isnan(chi):
        return math.nan
    if chi < sys.float_info.min and weight_scale != 0:    # sw^2 underflowed, or lost
        # digits as a subnormal (|sw| < 1.5e-154): in logs
        fold = _expect(lambda u: _sech2(u) ** 2, q)
        return math.log(abs(float(weight_scale))) + 0.5 * math.log(fold) if fold > 0 \
            else -math.inf
    return 0.5 * math.log(chi) if chi > 0 else -math.inf


def timescale(rate):
    """xi = -1 / (2 rate) for a decay (rate < 0): the steps for the squared gradient norm
    (the mean squared gradient) to fall by e; -1 / ln chi for the mean-field rate
    (1/2) ln chi. 0 for an instant drop (rate -inf); inf when it never falls (rate >= 0:
    gradients grow or keep their size); nan for nan. Never negative (as Flow.timescale):
    a growth rate is reported as the rate, not as a time."""
    rate = real(rate, "rate", finite=False)
    if math.isnan(rate):
        return math.nan
    if rate == -math.inf:
        return 0.0
    return math.inf if rate >= 0 else -0.5 / rate


def pascanu_rate(W, gamma=1.0):
    """ln(gamma ||W||_2) for a real 2-D weight matrix W (torch or numpy) and gamma >= 0 (a
    bound on the activation's slope): -inf for W = 0 or gamma 0, nan when W
    holds inf or nan (no norm to take: numpy's SVD would raise LinAlgError)."""
    gamma = real(gamma, "gamma", low=0, finite=False)     # a bound on |sigma'|: >= 0
    try:
        if hasattr(W, "detach"):                     # torch: any real dtype (bfloat16 too)
            W = W.detach().cpu()
            W = W.double() if W.is_floating_point() else W
        W = np.asarray(W)
    except (TypeError, ValueError, RuntimeError) as err:  # ragged lists, odd objects, a
        # meta tensor (no data: NotImplementedError, a RuntimeError)
        raise GradlabError(f"pascanu_rate: W is no array of numbers ({err})") from None
    if W.ndim != 2 or W.dtype.kind not in "iuf":
        raise GradlabError(f"pascanu_rate: W must be a 2-D array of real numbers, got "
                           f"{W.ndim}-D {W.dtype}")
    W = W.astype(np.float64)
    if not np.isfinite(W).all():
        return math.nan
    top = float(np.abs(W).max()) if W.size else 0.0
    if top == 0 or gamma == 0:
        return -math.inf if not (gamma == math.inf and top == 0) else math.nan
    try:         # of W / max|W|, logged apart: a finite W whose norm overflows has a log
        norm = float(np.linalg.norm(W / top, 2))
    except np.linalg.LinAlgError:
        return math.nan
    if math.isnan(norm):
        return math.nan
    return math.log(gamma) + math.log(top) + math.log(norm)


def gate_rate(preactivation):
    """ln sigma(a): the exact per-step log of a gated product at constant gate input a
    (0.0, not -0.0, where -e^-a underflows: past a ~ 745 in float64)."""
    a = real(preactivation, "preactivation", finite=False)
    return (-math.log1p(math.exp(-a)) if a > -30 else a - math.log1p(math.exp(a))) + 0.0
