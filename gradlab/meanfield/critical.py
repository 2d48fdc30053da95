"""Critical initialisation: init_params options for a chosen gradient timescale, and the
theory's timescales over a sweep grid (for the phase diagram's contours)."""

import math

import numpy as np

from ..errors import (GradlabError, arguments_checked, check_seed, derived_seed, integer,
                      real)
from ..registry import cell as as_cell
from ..theory import timescale as timescale_of
from .annealed import annealed
from .dynamic import solve
from .population import Scales, overflow_is_nan
from .sampling import Undersampled

QUICK = {"units": 4000, "burn_in": 60, "steps": 120}   # annealed, for searches and grids


def _knob(c):
    """What critical_init turns: the gate bias where the cell has one, else weight scale."""
    return "gate_bias" if c.gate_bias else "weight_scale"


def _theory_timescale(c, options):
    """The quick annealed theory's timescale; nan where it overflows (with no warning) or
    rests on too few unsaturated units (`Undersampled`): the search then has no theory
    there, as it has none where the theory overflows."""
    try:
        with overflow_is_nan():
            return timescale_of(annealed(c, Scales(**options), **QUICK)[0])
    except Undersampled:
        return math.nan


def _theory_start(c, knob, target, options):
    """The knob value where the annealed theory's timescale is `target` (bisection on
    log timescale; the ends of the range if it is never reached)."""
    lo, hi = (-4.0, 12.0) if knob == "gate_bias" else (0.05, 6.0)

    def gap(v):
        t = _theory_timescale(c, {**options, knob: v})
        return (math.log(t) if 0 < t < math.inf else (50.0 if t else -50.0)) - math.log(target)

    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo * g_hi > 0:
        return lo if abs(g_lo) < abs(g_hi) else hi
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        g = gap(mid)
        if (g < 0) == (g_lo < 0):
            lo, g_lo = mid, g
        else:
            hi = mid
    return 0.5 * (lo + hi)


NORMS = ("frobenius", "spectral")


def measure_timescale(c, options, *, hidden, inputs, steps, batch=1, seed=0,
                      kind="frobenius"):
    """Timescale of gradient_flow at this width, fitted over lags steps // 4 .. steps -
    10 (the first lags are transients; at least two lags), of the Frobenius norm (the
    mean squared gradient, which the mean-field theory predicts: derivations/theory.md
    §2) or of the spectral norm (kind="spectral": `Flow.timescale`'s default and the
    report's ξ; over a finite window it falls more slowly: 65 against 45 steps for a GRU
    at n = 128, T = 300)."""
    if kind not in NORMS:
        raise GradlabError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
    import torch

    from ..flow import gradient_flow, make_inputs
    params = c.init_params(hidden, inputs, seed=seed, **options)
    xs = make_inputs("gaussian", steps, batch, inputs, seed=derived_seed(seed, 1),
                     dtype=torch.float64)
    flow = gradient_flow(c, params, xs, norms=(kind,), blocks=False)
    start = max(1, steps // 4)
    rate = flow.rate(kind, start=start, stop=max(start + 1, steps - 10))
    return timescale_of(rate)


def measure_steps(timescale):
    """The length of the sequence a timescale is measured on: 6 timescales (the norm falls
    by e^3), 100..2000."""
    return int(min(2000, max(100, 6 * timescale)))


@arguments_checked
def critical_init(cell, timescale, *, hidden=512, inputs=32, weight_scale=1.0,
                  bias_scale=0.1, input_scale=1.0, gate_bias=0.0, tolerance=0.1,
                  measurements=5, steps=None, seed=0, report=None):
    """init_params options whose gradients decay with `timescale` steps at width `hidden`:
    the timescale of the Frobenius norm of P_k, the mean squared gradient, which is what
    the mean-field theory predicts (`measure_timescale`).

    The knob is the gate bias where the cell declares one, else the weight scale; the
    other options are kept. It starts where the annealed mean-field theory puts the
    timescale, then corrects by secant steps on the knob against log(measured timescale)
    (gradient_flow, one sequence of `steps` = 6 x timescale by default, 100..2000), at most
    `measurements` runs, until the measurement is within `tolerance` of the target.
    Deterministic for a seed. Returns {"options": init_params keywords, their values flat,
    "knob", "predicted_timescale" (theory, where the search starts: the target),
    "theory_timescale" (theory at the options returned), "measured_timescale",
    "spectral_timescale" (the spectral norm's at the options returned, measured the same
    way: `Flow.timescale`'s default and the report's ξ, longer), "measurements": [(knob
    value, measured timescale), ...], "tolerance", "converged": whether the measurement
    reached the target within `tolerance`} (when it did not, the options are the closest
    measured, and say nothing reliable about the target). Scales
    are finite (weight, bias and input scales >= 0; numpy numbers too); one-line errors.
    report(knob, value, measured timescale), if given, hears each measurement."""
    c = as_cell(cell)
    timescale = real(timescale, "timescale")
    if timescale <= 1:
        raise GradlabError(f"timescale must be a finite number > 1, got {timescale!r}")
    tolerance = real(tolerance, "tolerance")
    if not 0 < tolerance < 1:
        raise GradlabError(f"tolerance must be in (0, 1), got {tolerance!r}")
    hidden, inputs = integer(hidden, "hidden", 1), integer(inputs, "inputs", 1)
    measurements, seed = integer(measurements, "measurements", 1), check_seed(seed)
    if report is not None and not callable(report):
        raise GradlabError(f"report must be a function report(knob, value, timescale) or "
                           f"None, got {type(report).__name__}")
    steps = measure_steps(timescale) if steps is None else integer(steps, "steps", 3)
    checked = Scales(weight_scale=weight_scale, bias_scale=bias_scale,
                     input_scale=input_scale, gate_bias=gate_bias)    # one line if bad
    options = {k: getattr(checked, k) for k in ("weight_scale", "bias_scale", "input_scale",
                                                "gate_bias")}
    knob = _knob(c)
    start = _theory_start(c, knob, timescale, options)
    predicted = _theory_timescale(c, {**options, knob: start})

    def miss(v):
        t = measure_timescale(c, {**options, knob: v}, hidden=hidden, inputs=inputs,
                              steps=steps, seed=seed)
        history.append((float(v), t))
        if report is not None:
            report(knob, float(v), t)
        # a timescale never measured is infinitely far from any target, on its side: inf
        # (no decay) and nan (the state overflowed: growth) too long, 0 (an exact zero)
        # too short. inf used to count as e^10 steps, so a target near 22000 was
        # "reached" by it, and it beat a finite measurement as the closest
        if math.isnan(t) or t == math.inf:
            return math.inf
        if t <= 0:
            return -math.inf
        return math.log(t) - math.log(timescale)

    history = []
    x0, y0 = start, miss(start)
    best = (abs(y0), x0)
    step = 0.5 if knob == "gate_bias" else 0.05
    x1 = x0 - math.copysign(step, y0)
    while len(history) < measurements and abs(y0) > math.log1p(tolerance):
        y1 = miss(x1)
        best = min(best, (abs(y1), x1))
        if abs(y1) <= math.log1p(tolerance):
            break
        slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
        x0, y0 = x1, y1
        if slope == 0 or not math.isfinite(slope):
            x1 = x1 - math.copysign(step, y1)
        else:
            x1 = x1 - float(np.clip(y1 / slope, -3.0, 3.0))
        if knob == "weight_scale" and x1 <= 0:       # a scale is never negative: halve
            x1 = x0 / 2                              # towards 0 instead (n = 4 went there)
    value = best[1]
    options[knob] = float(value)
    measured = dict(history)[value]
    spectral = measure_timescale(c, options, hidden=hidden, inputs=inputs, steps=steps,
                                 seed=seed, kind="spectral")
    return {**options, "options": dict(options), "knob": knob, "hidden": hidden,
            "inputs": inputs, "steps": steps, "seed": seed,
            "predicted_timescale": predicted,
            "theory_timescale": _theory_timescale(c, options), "measured_timescale": measured,
            "spectral_timescale": spectral, "measurements": history, "tolerance": tolerance,
            "converged": bool(best[0] <= math.log1p(tolerance))}


def timescale_grid(cell, weight_scales, gate_biases, *, bias_scale=0.0, input_scale=1.0,
                   method="annealed", batch=16, **options):
    """The theory's timescale -1/(2 rate) (inf where gradients do not decay) over a sweep grid:
    an array (len(gate_biases), len(weight_scales)), rows by gate bias as the sweep's
    heat maps. A cell without a gate bias gives the same row at every gate bias. The
    dynamic theory runs `batch` grid points at a time as one population (`dynamic.solve`:
    each point the numbers mean_field gives it alone, with the same options)."""
    from . import mean_field
    c = as_cell(cell)
    for what, values in (("weight_scales", weight_scales), ("gate_biases", gate_biases)):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") \
                or np.ndim(values) != 1 or len(values) == 0:
            raise GradlabError(f"timescale_grid: {what} must be a non-empty sequence of "
                               f"numbers, got {values!r}")
    rows = gate_biases if c.gate_bias else gate_biases[:1]
    points = [(i, j) for j in range(len(weight_scales)) for i in range(len(rows))]
    grid = np.empty((len(gate_biases), len(weight_scales)))
    if method == "dynamic":
        for k in range(0, len(points), max(1, int(batch))):
            chunk = points[k:k + max(1, int(batch))]
            scales = [Scales(weight_scale=weight_scales[j], bias_scale=bias_scale,
                             input_scale=input_scale, gate_bias=rows[i])      # checked
                      for i, j in chunk]
            try:
                with overflow_is_nan():
                    rates = solve(c, scales, **options)[0]
            except TypeError as err:
                raise GradlabError(f"timescale_grid method 'dynamic': {err}") from None
            for (i, j), rate in zip(chunk, rates):
                grid[i, j] = timescale_of(rate)
    else:
        if method == "annealed":
            options = {**QUICK, **options}
        for i, j in points:
            grid[i, j] = mean_field(c, weight_scale=weight_scales[j], bias_scale=bias_scale,
                                    input_scale=input_scale, gate_bias=rows[i],
                                    method=method, **options).timescale
    if not c.gate_bias:
        grid[:] = grid[0]
    return grid
