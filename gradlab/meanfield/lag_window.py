"""The lag window a mean-field rate is fitted over, checked in one line (numbers and
counts are checked by gradlab.errors' `real`, `integer` and `check_seed`)."""

import numbers

import numpy as np

from ..errors import GradlabError


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
    if pair is None or len(pair) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair) \
            or not 1 <= pair[0] < pair[1] <= steps:
        raise GradlabError(f"lags must be two integers (start, stop) with 1 <= start < stop "
                           f"<= steps = {steps}, got {value!r}")
    return int(pair[0]), int(pair[1])
