"""The numbers the mean-field API takes, checked in one line each (GradlabError naming the
value and what is valid). Python and numpy numbers alike: np.float32(1.0) is a scale as
1.0 is, np.int64(64) a count as 64 is; bool is neither."""

import math
import numbers

import numpy as np

from ..errors import GradlabError


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def scale(value, what, low=0.0, *, above=False):
    """A finite real number >= low (> low with `above`; low = -inf: any finite number), as
    a float."""
    if not _real(value) or not math.isfinite(value) or value < low or (above and value == low):
        bound = "" if low == -math.inf else f" {'>' if above else '>='} {low:g}"
        raise GradlabError(f"{what} must be a finite number{bound}, got {value!r}")
    return float(value)


def count(value, what, low):
    """An integer >= low (Python or numpy), as an int."""
    if not _integer(value) or value < low:
        raise GradlabError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def default_lags(steps):
    """The lags (start, stop) a rate is fitted over by default: from steps // 8 (at least
    1, past the first transients of the gradient) to steps - 20 (leaving out the lags that
    reach the run's first 20 steps, the state's own transient from zero); a run under 40
    steps is too short to leave those out, and is fitted up to its last lag."""
    start = max(1, steps // 8)
    return start, (steps - 20 if steps >= 40 else steps)


def lags(value, steps):
    """(start, stop) with 1 <= start < stop <= steps, or the default for None."""
    if value is None:
        return default_lags(steps)
    pair = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else None
    if pair is None or len(pair) != 2 or not all(_integer(v) for v in pair) \
            or not 1 <= pair[0] < pair[1] <= steps:
        raise GradlabError(f"lags must be two integers (start, stop) with 1 <= start < stop "
                           f"<= steps = {steps}, got {value!r}")
    return int(pair[0]), int(pair[1])
