"""Critical initialisation: init_params options for a chosen gradient timescale (the
theory's timescales over a sweep grid, for the phase diagram's contours: `grid`)."""

import math

import numpy as np

from ..budget import ensure_init_fits
from ..errors import (GradlabError, arguments_checked, callback, check_seed, derived_seed,
                      integer, real)
from ..registry import builtin, cell as as_cell
from ..theory import mean_field_rate, timescale as timescale_of
from .annealed import annealed
from .population import Scales, overflow_is_nan
from .sampling import Undersampled

QUICK = {"units": 4000, "burn_in": 60, "steps": 120}   # annealed, for searches and grids


def _knob(c):
    """What critical_init turns: the gate bias where the cell has one, else weight scale."""
    return "gate_bias" if c.gate_bias else "weight_scale"


def _theory_timescale(c, options):
    """The quick annealed theory's timescale; nan where it overflows (with no warning) or
    rests on too few unsaturated units (`Undersampled`): the search then has no theory
    there, as it has none where the theory overflows. rnn_tanh's is in closed form
    (theory.mean_field_rate): exact, where the quick population's short burn-in put it
    up to 27 % long near the edge of chaos (102 steps for 80 at weight scale 1.84)."""
    if c.name == "rnn_tanh" and builtin(c):
        return timescale_of(mean_field_rate(options["weight_scale"],
                                            input_scale=options["input_scale"],
                                            bias_scale=options["bias_scale"]))
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
FRESH = 4                 # sequences critical_init measures its result on again


def measure_timescale(c, options, *, hidden, inputs, steps, batch=1, seed=0,
                      kind="frobenius", sequences=None):
    """Timescale of gradient_flow at this width, fitted over lags steps // 4 .. steps -
    10 (the first lags are transients; at least two lags), of the Frobenius norm (the
    mean squared gradient, which the mean-field theory predicts: derivations/theory.md
    §2) or of the spectral norm (kind="spectral": `Flow.timescale`'s default and the
    report's ξ; over a finite window it falls more slowly: 65 against 45 steps for a GRU
    at n = 128, T = 300). The weights are seed's; the input sequences `sequences`' (by
    default a seed derived from seed)."""
    if kind not in NORMS:
        raise GradlabError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
    import torch

    from ..flow import gradient_flow, make_inputs
    params = c.init_params(hidden, inputs, seed=seed, **options)
    xs = make_inputs("gaussian", steps, batch, inputs, dtype=torch.float64,
                     seed=derived_seed(seed, 1) if sequences is None else sequences)
    flow = gradient_flow(c, params, xs, norms=(kind,), blocks=False)
    start, stop = _window(steps)
    return timescale_of(flow.rate(kind, start=start, stop=stop))


def longest_timescale(steps):
    """The longest timescale a measurement over `steps` can see decay: its fitted lags
    span it (1490 at 2000 steps, `measure_steps`' longest)."""
    start, stop = _window(steps)
    return stop - start


def _window(steps):
    """The lags a measurement over `steps` fits (first to last)."""
    start = max(1, steps // 4)
    return start, max(start + 1, steps - 10)


def _steps_for(timescale):
    """The fewest steps whose fitted lags span `timescale` (any finite one: in integers,
    where timescale * 4 overflowed to inf past 4.5e307 and math.ceil raised)."""
    steps = max(3, math.ceil(timescale) * 4 // 3)        # a lower bound: the loop climbs
    while _window(steps)[1] - _window(steps)[0] < timescale:
        steps += 1
    return steps


def measure_steps(timescale):
    """The length of the sequence a timescale is measured on: 6 timescales (the norm falls
    by e^3), 100..2000."""
    return int(min(2000, max(100, 6 * timescale)))


def _critical_init(options, found):
    return CriticalInit(options, **found)


class CriticalInit(dict):
    """What `critical_init` found: a dict of init_params options (weight_scale, bias_scale,
    input_scale, gate_bias), so that `cell.init_params(n, m, **found)` builds the network,
    and beside them, as attributes, what the search measured: knob, hidden, inputs, steps,
    seed, predicted_timescale, theory_timescale, measured_timescale, spectral_timescale,
    fresh_timescale, measurements, tolerance, reached, converged, and options (the four as
    a plain dict).

    Those are also read as items (found["converged"], "converged" in found, found.get):
    they are not keys, so iterating, len, items and ** unpacking see the options only."""

    FOUND = ("knob", "hidden", "inputs", "steps", "seed", "predicted_timescale",
             "theory_timescale", "measured_timescale", "spectral_timescale",
             "fresh_timescale", "measurements", "tolerance", "reached", "converged",
             "options")

    def __init__(self, options, **found):
        super().__init__(options)
        unknown = set(found) - set(self.FOUND)
        if unknown:
            raise TypeError(f"CriticalInit: unknown field(s) {sorted(unknown)}")
        self.__dict__.update(found)

    @property
    def options(self):
        return dict(self)

    def _refuse(self, *args, **kwargs):     # the options measured, and what was measured
        raise GradlabError("critical_init's result is what it measured, and cannot change; "
                           "copy its options to change one: {**found, 'gate_bias': 2.0}")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse
    __ior__ = _refuse

    def __reduce__(self):                  # copy and pickle: made again, not item by item
        return _critical_init, (dict(self), dict(self.__dict__))

    def __missing__(self, key):
        if key in self.FOUND:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key):
        return super().__contains__(key) or key in self.FOUND

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __repr__(self):
        return (f"CriticalInit({dict(self)!r}, knob={self.knob!r}, "
                f"measured_timescale={self.measured_timescale!r}, "
                f"converged={self.converged!r})")


def _search(miss, x, step, *, positive, measurements, within):
    """Turn the knob until miss(x) (log measured / target timescale; +inf too long or not
    measured, -inf too short) is within `within` (a bound on |miss|, or the pair low,
    high), at most `measurements` calls; returns
    (|miss|, x) of the closest. The timescale grows with the knob (a larger gate bias or
    weight scale keeps gradients longer), so every measurement says which side the target
    lies on: until the target is bracketed the search steps that way, doubling the step
    each time (a theory far off costs a few measurements, not one per 0.5), then narrows
    the bracket by secant (through both ends, or where one end was never measured through
    the other and its neighbour; by bisection where neither exists or the slope is wrong).
    Where that rule fails (too short, and the largest knob measured shorter than the
    smallest: a small network past its peak, rnn_tanh at n = 2 peaks near weight scale 1
    while the theory's critical point is 1.8), it steps down from the smallest instead,
    and a bracket is then any two neighbouring knobs on either side of the target (the
    narrowest). It never measures a knob value twice (the measurement is deterministic),
    and a weight scale stays positive (halved towards 0). Each value is rounded to
    KNOB_DIGITS before it is measured (`_decimal`)."""
    low, high = within if isinstance(within, tuple) else (-within, within)
    seen, x = {}, _decimal(x)
    while len(seen) < measurements and x not in seen:
        seen[x] = y = miss(x)
        if low <= y <= high:
            break
        short = [(v, m) for v, m in seen.items() if m < 0]
        long = [(v, m) for v, m in seen.items() if m > 0]
        lo, hi = max(short, default=None), min(long, default=None)
        ordered = sorted(seen.items())
        brackets = [(p, q) for p, q in zip(ordered, ordered[1:]) if (p[1] < 0) != (q[1] < 0)]
        if lo is not None and hi is not None and lo[0] < hi[0]:      # bracketed
            (a, ya), (b, yb) = lo, hi
            x = 0.5 * (a + b)
            ends = (lo, hi) if math.isfinite(ya) and math.isfinite(yb) else _finite_side(
                short if math.isfinite(ya) else long, lo if math.isfinite(ya) else hi)
            if ends is not None:                                     # secant, kept inside
                (u, yu), (v, yv) = ends
                if (yv - yu) / (v - u) > 0:
                    x = _inside(u - yu * (v - u) / (yv - yu), a, b)
        elif brackets:                       # the timescale falls as the knob grows here
            (a, ya), (b, yb) = min(brackets, key=lambda pq: pq[1][0] - pq[0][0])
            x = 0.5 * (a + b)
            if math.isfinite(ya) and math.isfinite(yb):              # secant
                x = _inside(a - ya * (b - a) / (yb - ya), a, b)
        elif y > 0 or (hi is not None and lo is None):               # too long: go down
            x = hi[0] - step
            if positive and x <= 0:
                x = hi[0] / 2
            step *= 2
        elif len(short) > 1 and max(short)[1] < min(short)[1]:      # too short, shorter
            x = min(short)[0] - step                                 # still up the knob:
            if positive and x <= 0:                                  # past the peak, go
                x = min(short)[0] / 2                                # down
            step *= 2
        else:                                                        # too short: go up
            x = lo[0] + step
            step *= 2
        x = _decimal(x)
    # the closest; among equals (every one inf: never measured), the first, nearest the
    # theory's start, not the smallest knob the search walked down to
    v, m = min(seen.items(), key=lambda item: abs(item[1]))
    return abs(m), v


# The knob's values are rounded to this many significant digits before they are measured:
# a secant step through measured timescales carries their last bits, which depend on the
# CPU's kernels (`gradlab init gru_torch --timescale 12 --hidden 40` found gate bias
# 2.580242608529121 with AVX-512, ...1206 with AVX2, and so wrote other checkpoint bytes).
# Rounded, the options, the network and its file are the same on any CPU unless a step
# lies on a rounding boundary of the 9th digit, and 9 digits still reproduce them.
KNOB_DIGITS = 9


def _decimal(x):
    return float(f"{x:.{KNOB_DIGITS}g}")


def _inside(x, a, b):
    """x kept inside the bracket (a, b), a tenth of it away from either end."""
    return float(np.clip(x, a + 0.1 * (b - a), b - 0.1 * (b - a)))


def _finite_side(side, end):
    """The bracket's finite `end` and its nearest finite neighbour on the same side of
    the target (a secant through them reaches into a bracket whose other end was never
    measured), or None."""
    others = [p for p in side if p != end and math.isfinite(p[1])]
    if not math.isfinite(end[1]) or not others:
        return None
    return min(others, key=lambda p: abs(p[0] - end[0])), end


@arguments_checked
def critical_init(cell, timescale, *, hidden=512, inputs=32, weight_scale=1.0,
                  bias_scale=0.1, input_scale=1.0, gate_bias=0.0, tolerance=0.1,
                  measurements=8, steps=None, seed=0, report=None):
    """init_params options whose gradients decay with `timescale` steps at width `hidden`:
    the timescale of the Frobenius norm of P_k, the mean squared gradient, which is what
    the mean-field theory predicts (`measure_timescale`).

    The knob is the gate bias where the cell declares one, else the weight scale (a value
    given for it is not used); the other options are kept. It starts where the annealed
    mean-field theory puts the timescale, then corrects it by measurement (gradient_flow,
    one sequence of `steps` = 6 x timescale by default, 100..2000): steps towards the
    target, doubling, until it is bracketed, then secant or bisection inside the bracket
    (`_search`), at most `measurements` runs, until the measurement is within `tolerance` of
    the target, a relative one (|measured / target - 1| <= tolerance, in (0, 1): 0.1 is
    10 %, 4.5 to 5.5 steps for a target of 5). A target the fit cannot see decay (the
    fitted lags span less than one timescale: above 1490 steps at the default length) is
    refused; pass a longer `steps`.
    The measurement is of the weights `seed` draws, on one input sequence: other seeds and
    other sequences scatter about it (rnn_tanh at timescale 20, n = 512: 19.1 measured,
    three other seeds 17.2 to 19.1; at timescale 5, n = 128: 4.51 measured, 4.4 to 4.6 over
    four other seeds of four sequences each), and as the search stops at the first measurement
    within tolerance, measured_timescale leans towards the target: the result is measured
    again on FRESH (4) other sequences (fresh_timescale), and converged only where both are
    within tolerance (a small LSTM scatters: at n = 32 the search's sequence gave 31.7 steps
    for a target of 30, fresh sets of four 30 to 115).
    Deterministic for a seed, on another CPU too (the knob's values are rounded to
    KNOB_DIGITS significant digits, so the last bits of the measurements, which depend
    on the CPU's kernels, do not reach the options) unless a step lies on a rounding
    boundary. Returns a `CriticalInit`: a dict of the init_params options
    (`cell.init_params(hidden, inputs, seed=seed, **found)` is the network measured), with
    knob, predicted_timescale (theory, where the search starts: the target),
    theory_timescale (theory at the options returned), measured_timescale,
    spectral_timescale (the spectral norm's at the options returned, measured the same
    way: `Flow.timescale`'s default and the report's ξ, longer), measurements [(knob value,
    measured timescale), ...], fresh_timescale, tolerance, reached (the search's
    measurement is within `tolerance` of the target) and converged: whether the
    search's measurement and the fresh one are both within `tolerance` of the target (when
    not, the options are the closest measured, and say nothing reliable about the
    target); each an attribute, and read as an item too.
    Scales
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
    report = callback(report, "report", ("knob", "value", "timescale"))
    given = steps is not None
    steps = integer(steps, "steps", 3) if given else measure_steps(timescale)
    window = _window(steps)
    if longest_timescale(steps) < timescale:
        raise GradlabError(
            f"critical_init: timescale {timescale:g} is longer than a measurement over "
            f"{steps} steps can see decay (it fits lags {window[0]}..{window[1]}, "
            + (f"less than one timescale); pass steps >= {_steps_for(timescale)}"
               if given or _steps_for(timescale) <= 10 ** 6 else "less than one timescale)")
            + ("" if given else f" (the default is {steps})"))
    ensure_init_fits(c, hidden, inputs, steps, job="critical_init",   # one line, not
                     advice="hidden, inputs or steps")                 # killed
    checked = Scales(weight_scale=weight_scale, bias_scale=bias_scale,
                     input_scale=input_scale, gate_bias=gate_bias)    # one line if bad
    options = {k: getattr(checked, k) for k in ("weight_scale", "bias_scale", "input_scale",
                                                "gate_bias")}
    knob = _knob(c)
    start = _decimal(_theory_start(c, knob, timescale, options))
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
    best = _search(miss, start, 0.5 if knob == "gate_bias" else 0.05,
                   positive=knob == "weight_scale", measurements=measurements,
                   within=(math.log1p(-tolerance), math.log1p(tolerance)))
    value = best[1]
    options[knob] = float(value)
    measured = dict(history)[float(value)]
    spectral = measure_timescale(c, options, hidden=hidden, inputs=inputs, steps=steps,
                                 seed=seed, kind="spectral")
    # the search measured one sequence: the options measured again on FRESH others (a
    # small LSTM's timescale scatters from sequence to sequence: 31.7 on the search's,
    # 85, 115 and 30 on three fresh sets of four at n = 32)
    fresh = measure_timescale(c, options, hidden=hidden, inputs=inputs, steps=steps,
                              seed=seed, batch=FRESH, sequences=derived_seed(seed, 2))
    within = lambda t: bool(abs(t / timescale - 1) <= tolerance)     # noqa: E731
    return CriticalInit(options, knob=knob, hidden=hidden, inputs=inputs, steps=steps,
                        seed=seed, predicted_timescale=predicted,
                        theory_timescale=_theory_timescale(c, options),
                        measured_timescale=measured, spectral_timescale=spectral,
                        fresh_timescale=fresh, measurements=history, tolerance=tolerance,
                        reached=within(measured), converged=within(measured) and within(fresh))
