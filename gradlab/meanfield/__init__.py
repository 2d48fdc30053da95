"""Mean-field theory for any declared cell, from its declaration and symbolic Jacobian.

    mean_field(cell, weight_scale=..., gate_bias=..., method="annealed" | "dynamic")
        .rate       per-step slope of the log Frobenius norm of P_k (Flow.rate's units:
                    1/2 ln chi for the vanilla RNN)
        .timescale  -1 / (2 rate) = -1 / ln chi for the vanilla RNN (the steps in which the
                    mean squared gradient falls by e), inf when gradients do not decay
        .moments    the statistics the theory used; .method

    annealed    the standard theory: fresh Gaussian weights at every step (`annealed`)
    dynamic     each unit's fields are Gaussian processes with the population's own
                autocorrelation, drawn causally forward (fields) and backward (the
                gradient's fields through W^T), gains multiplied along each unit's
                history (`dynamic`); inputs=m draws the inputs as U x_t exactly

    critical_init(cell, timescale, hidden=...)   init_params options for a timescale,
                                                 corrected by measurement (`critical`)
    timescale_grid(cell, weight_scales, gate_biases)   the theory over a sweep grid (`grid`)
    probe_rate(cell, options, hidden=...)        a measured Frobenius-norm rate from random
                                                 probes (vector-Jacobian products): what
                                                 the theory is checked against at n = 1024
"""

import inspect
import math
import numbers
import sys
from dataclasses import dataclass, field

from ..budget import ensure_meanfield_fits
from ..errors import GradlabError, arguments_checked
from ..registry import cell as as_cell
from ..theory import timescale as timescale_of
from .annealed import annealed
from ..errors import check_seed
from .critical import CriticalInit, critical_init, measure_timescale
from .dynamic import dynamic
from .grid import timescale_grid
from .population import Scales, overflow_is_nan, population
from .probe import probe_curve, probe_rate

METHODS = {"annealed": annealed, "dynamic": dynamic}

__all__ = ["MeanField", "mean_field", "critical_init", "timescale_grid", "measure_timescale",
           "probe_curve", "probe_rate", "METHODS"]


UNDERFLOW = math.sqrt(sys.float_info.min)   # a scale whose square is below float64's normals
ROUNDING = 1e-13      # per step: far below any rate a population of samples resolves


@dataclass
class MeanField:
    """A theory's prediction: rate (per step, natural log), timescale, moments, method."""
    rate: float
    method: str
    moments: dict = field(repr=False)
    scales: Scales = None

    @property
    def timescale(self):
        return timescale_of(self.rate)


@arguments_checked
def mean_field(cell, *, weight_scale=1.0, bias_scale=0.0, input_scale=1.0, gate_bias=0.0,
               input_power=1.0, method="annealed", **options):
    """The mean-field prediction for `cell` (a name or Cell) initialised as
    init_params(..., init="gaussian", weight_scale, bias_scale, input_scale, gate_bias)
    and driven by i.i.d. inputs of mean square `input_power` (make_inputs "gaussian" with
    scale 1: 1). `options` go to the method: annealed(units >= 2, burn_in >= 0, steps >= 1,
    seed), dynamic(units >= 2, steps >= 3, inputs, lags, seed); numbers may be numpy's.
    Scales whose squares overflow float64 (past ~1e154) give rate nan, as a population
    whose state overflows does, with no warning.

    The rate is that of the Frobenius norm of the products (the mean squared gradient),
    so compare it with `Flow.rate("frobenius")`: `Flow.rate()` takes the spectral norm by
    default, which decays more slowly (gru at n = 128, m = 8, gate_bias=1.0, over T = 100
    steps of 8 gaussian sequences: -0.207 against -0.219).

    Both methods sample a population over a finite run, so near a critical point where the
    state itself decays slowly they miss by what the run has not reached: rnn_tanh at
    weight_scale 1 with no input and no bias (exact rate 0: the closed form, gradlab.theory.
    mean_field_rate) gives -0.0023 after the default burn_in of 100 steps, -0.0002 after 2000
    (derivations/theory.md §2); the dynamic theory's inputs are white unless inputs=m."""
    if not isinstance(method, str) or method not in METHODS:
        raise GradlabError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    c = as_cell(cell)
    scales = Scales(weight_scale=weight_scale, bias_scale=bias_scale, input_scale=input_scale,
                    gate_bias=gate_bias, input_power=input_power)    # each checked
    known = [k for k in inspect.signature(METHODS[method]).parameters
             if k not in ("cell", "scales")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise GradlabError(f"mean_field(method={method!r}) takes no option {unknown[0]!r}; "
                           "valid: weight_scale, bias_scale, input_scale, gate_bias, "
                           f"input_power, method, and the method's own: {', '.join(known)}")
    options["seed"] = check_seed(options.get("seed", 0))
    population(c)          # reads the declaration (refuses what it cannot read, one line)
    defaults = inspect.signature(METHODS[method]).parameters
    units, steps = (options.get(k, defaults[k].default) for k in ("units", "steps"))
    inputs = options.get("inputs") if method == "dynamic" else None
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
           for v in (units, steps)):             # else the method names what is wrong
        inputs = int(inputs) if isinstance(inputs, numbers.Integral) \
            and not isinstance(inputs, bool) and inputs > 0 else None
        ensure_meanfield_fits(c, method, int(units), int(steps), inputs=inputs)
    try:
        with overflow_is_nan():
            rate, moments = METHODS[method](c, scales, **options)
    except TypeError as err:
        raise GradlabError(f"mean_field method {method!r}: {err}") from None
    if rate == -math.inf and 0 < abs(scales.weight_scale) < UNDERFLOW:
        raise GradlabError(
            f"mean_field: at weight_scale={scales.weight_scale:g} the weight variance "
            f"(its square) underflows float64 to 0, and the rate would read -inf, as if "
            f"every product were exactly zero; it is finite (about ln weight_scale a "
            f"step): give a weight_scale of at least {UNDERFLOW:.2g}, or 0 for the exact "
            "zero (gradlab.theory.mean_field_rate has rnn_tanh's in closed form)")
    # a rate within rounding of 0 (identity dynamics: chi = 1 + 1e-16) is 0: "no decay",
    # not "gradients grow" with a timescale of 1e15 steps
    rate = 0.0 if abs(rate) < ROUNDING else float(rate)
    return MeanField(rate=rate, method=method, moments=moments, scales=scales)
