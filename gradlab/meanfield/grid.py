"""The theory's timescales over a sweep grid (for the phase diagram's contours)."""

import numpy as np

from ..errors import GradlabError, integer
from ..registry import cell as as_cell
from ..theory import timescale as timescale_of
from .critical import QUICK
from .dynamic import solve
from .population import Scales, overflow_is_nan


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
        batch = integer(batch, "batch", 1)
        for k in range(0, len(points), batch):
            chunk = points[k:k + batch]
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
