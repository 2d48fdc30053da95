"""The theory reports draw over measurements (THEORY.md), each a small exact formula.

    mean_field      q* and chi of the vanilla tanh RNN (Poole et al. 2016; Chen et al. 2018):
                        q*  = sw^2 E[tanh(sqrt(q*) z)^2] + sv^2 R + sb^2
                        chi = sw^2 E[tanh'(sqrt(q*) z)^2]
                    the log of a gradient norm falls by (1/2) ln chi per step.
    pascanu_rate    ln(gamma ||W||_2): the per-step log of Pascanu et al.'s bound
                    ||P_k|| <= (gamma ||W||)^k (tanh: gamma = 1).
    gate_rate       ln sigma(a): with zero recurrent weights and a constant gate
                    pre-activation a, the gated product is sigma(a)^k I exactly.
"""

import functools
import math

import numpy as np

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
    root = math.sqrt(q)
    u = np.linspace(-40.0, 40.0, 5121)       # f(40) ~ e^-80: the tails are negligible
    density = np.exp(-0.5 * u ** 2 / q) / math.sqrt(2 * math.pi * q)
    return float(np.trapezoid(f(u) * density, u))


def _sech2(u):
    return 1.0 / np.cosh(np.clip(u, -350, 350)) ** 2


def mean_field(weight_scale, *, input_scale=1.0, bias_scale=0.0, input_power=1.0,
               iterations=500, tol=1e-14):
    """(q*, chi) for W ~ N(0, sw^2/n), U ~ N(0, sv^2/m), b ~ N(0, sb^2), R = |x|^2/m."""
    drive = input_scale ** 2 * input_power + bias_scale ** 2
    q = 1.0
    for _ in range(iterations):       # tanh^2 = 1 - sech^2
        q_next = weight_scale ** 2 * (1.0 - _expect(_sech2, q)) + drive
        if abs(q_next - q) <= tol * max(q, 1.0):
            q = q_next
            break
        q = q_next
    chi = weight_scale ** 2 * _expect(lambda u: _sech2(u) ** 2, q)
    return q, chi


def mean_field_rate(weight_scale, **kwargs):
    """Per-step slope of the log gradient norm predicted by mean-field theory: (1/2) ln chi."""
    return 0.5 * math.log(mean_field(weight_scale, **kwargs)[1])


def timescale(rate):
    """xi = -1 / rate: the steps for a gradient norm to fall by e. 0 for an instant drop
    (rate -inf), inf at rate 0, negative when it grows (-xi is then the e-folding time of
    the growth), nan for nan."""
    if math.isnan(rate):
        return math.nan
    if rate == -math.inf:
        return 0.0
    return math.inf if rate == 0 else -1.0 / rate


def pascanu_rate(W, gamma=1.0):
    """ln(gamma ||W||_2) for a weight matrix W (torch or numpy)."""
    W = np.asarray(W.detach().cpu() if hasattr(W, "detach") else W, dtype=np.float64)
    return math.log(gamma * float(np.linalg.norm(W, 2)))


def gate_rate(preactivation):
    """ln sigma(a): the exact per-step log of a gated product at constant gate input a."""
    a = float(preactivation)
    return -math.log1p(math.exp(-a)) if a > -30 else a - math.log1p(math.exp(a))
