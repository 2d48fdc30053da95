"""`gradlab sweep`: phase diagrams of memory, timescale over weight scale x gate bias.

For every cell and every grid point (weight scale sw, gate bias g) the cell is initialised
(gaussian, seeded), driven by i.i.d. Gaussian inputs, and the timescale xi = -1 / (2 rate) of
the Frobenius norm of d s_T / d s_{T-k}, past the first quarter of the lags, is measured
(gradient_flow; at long lags its slope is the spectral norm's: `measure_point`). For rnn_tanh the
mean-field critical line chi = 1 (derivations/theory.md §2) is drawn: ordered (vanishing) left,
chaotic right of it. Gated cells move their memory with the gate bias. Over every map the
theory's contours of chosen timescales are drawn (`theory_grid`: dynamic mean field,
gradlab.meanfield, at the sweep's inputs and horizon; data.json records its grid).

Grids split across machines (shard I of N, joined by `sweep merge`): see `shards`.
"""

import dataclasses
import math

import numpy as np
import torch

from .. import registry, theory
from ..errors import GradlabError
from .measurements import Setup, check_cell_name, rate_words, states_finite
from .phase_words import critical_words, gate_words, on_axis, theory_text, theory_words, \
    vanilla_words
from ..flow import CONVERGED, GROW, NO_DECAY, NOT_FINITE, ONE_LAG, OVERFLOW, ZERO, \
    gradient_flow, slope_stderr
from .publish import Section, digits_of, rounded, write_report

DEFAULT_CELLS = ("rnn_tanh", "lstm", "gru", "minimal_rnn")
DEFAULT_WEIGHT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
DEFAULT_GATE_BIASES = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
PART = "part.json"
FIGURES = ("phase",)
VMIN, VMAX = -0.5, 3.0      # colour range of log10 timescale: 0.3 to 1000 steps
STATUSES = (None, OVERFLOW, NOT_FINITE, ONE_LAG, ZERO, GROW, NO_DECAY)   # Flow.why
DEVICES, DTYPES = ("cpu", "cuda"), ("float64", "float32")
AXES = ("weight_scale", "gate_bias", "weight_scales", "gate_biases")  # as given, every digit


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Grid:
    cells: tuple
    weight_scales: tuple = DEFAULT_WEIGHT_SCALES
    gate_biases: tuple = DEFAULT_GATE_BIASES
    hidden: int = 32
    inputs: int = 8
    steps: int = 60
    max_steps: int = 240
    batch: int = 8
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    # whether each cell has a gate bias, as a part records it (None: ask the registry, which
    # imports a cell file; `sweep merge` never does: it reads this from the parts)
    gated: tuple = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        """Refuse, in one line, a grid that could not be measured, drawn or merged: cell
        names that are not identifiers or NAME specs (`check_cell_name`), axes that are not
        distinct finite numbers, sizes that are not positive integers; the axes sorted."""
        if not isinstance(self.cells, (tuple, list)) or not self.cells:
            raise GradlabError(f"grid cells must be a non-empty list of names, got "
                               f"{self.cells!r}")
        for name in self.cells:
            check_cell_name(name)
        if len(set(self.cells)) != len(self.cells):
            raise GradlabError(f"grid cells {list(self.cells)!r} name a cell twice")
        for what in ("weight_scales", "gate_biases"):
            values = getattr(self, what)
            if (not isinstance(values, (tuple, list)) or not values
                    or not all(is_number(v) and math.isfinite(v) for v in values)
                    or len(set(values)) != len(values)):
                raise GradlabError(f"grid {what} {values!r}: need one or more distinct "
                                   "finite numbers")
            # ascending, whatever order they came in: the figures' axes and the theory's
            # curves interpolate along them (given 2, 0.5, 1, the critical line was drawn
            # at the column labelled 1)
            object.__setattr__(self, what, tuple(sorted(values)))
        for what in ("hidden", "inputs", "steps", "max_steps", "batch"):
            value = getattr(self, what)
            if not is_int(value) or value < 1:
                raise GradlabError(f"grid {what} must be a positive integer, got {value!r}")
        if not is_int(self.seed):
            raise GradlabError(f"grid seed must be an integer, got {self.seed!r}")
        # torch's own objects name the same choices (torch.float32, torch.device("cpu"))
        for what, value in (("device", self.device), ("dtype", self.dtype)):
            if isinstance(value, (torch.device, torch.dtype)):
                object.__setattr__(self, what, str(value).removeprefix("torch."))
        if self.device not in DEVICES or self.dtype not in DTYPES:
            raise GradlabError(f"grid device {self.device!r} / dtype {self.dtype!r}: valid "
                               f"{', '.join(DEVICES)} / {', '.join(DTYPES)}")
        if min(self.weight_scales) < 0:
            raise GradlabError(f"grid weight_scales {self.weight_scales!r}: a weight scale "
                               "is below 0")
        if self.steps > self.max_steps:
            raise GradlabError(f"grid steps {self.steps} is more than max_steps "
                               f"{self.max_steps}")
        if self.gated is not None and (
                not isinstance(self.gated, (tuple, list)) or len(self.gated) != len(self.cells)
                or not all(isinstance(g, bool) for g in self.gated)):
            raise GradlabError(f"grid gated {self.gated!r}: need one true or false per cell")

    def gates(self):
        """Per cell, whether it has a gate bias (from `gated`, else the registry)."""
        if self.gated is not None:
            return tuple(self.gated)
        return tuple(registry.cell(c).gate_bias is not None for c in self.cells)

    def gate_axis(self, cell_name):
        """The gate biases measured for a cell: all of them, or only the first for a cell
        with no memory gate (rnn_tanh: the gate bias changes nothing, so one measurement
        per weight scale stands for the whole column)."""
        gated = self.gates()[self.cells.index(cell_name)]
        return self.gate_biases if gated else self.gate_biases[:1]

    def points(self):
        """Every (cell, weight scale, gate bias) measured, in the fixed order shards index
        into."""
        return [(c, w, g) for c in self.cells for w in self.weight_scales
                for g in self.gate_axis(c)]

    def as_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()
                if k != "gated"}


def measure_point(grid, cell_name, weight_scale, gate_bias):
    """rate (with its standard error over sequences), timescale (never negative) and status
    (`Flow.why`: None for a plain decay) at one grid point, measured over a horizon that
    doubles from grid.steps (the last at grid.max_steps) until the rate is `resolved`;
    `converged` says whether it got there. The rate is the slope of the mean log Frobenius
    norm over the lags past the first quarter (the transient of the first lags left out): at long
    lags it has the spectral norm's slope (both tend to λ₁), at the cost of the products
    alone. An overflowed state gives nan, not an exception."""
    cell = registry.cell(cell_name)
    steps = grid.steps
    while True:
        setup = Setup(cells=(cell_name,), hidden=grid.hidden, inputs=grid.inputs,
                      steps=steps, batch=grid.batch, weight_scale=weight_scale,
                      gate_bias=gate_bias, seed=grid.seed, device=grid.device,
                      dtype=grid.dtype)
        flow = gradient_flow(cell, setup.params(cell), setup.xs(), norms=("frobenius",),
                             blocks=False)
        if not states_finite(flow):
            rate, stderr, status = math.nan, math.nan, OVERFLOW
            break
        start = max(1, steps // 4)
        rate = flow.rate("frobenius", start=start)
        status = flow.why("frobenius", start=start)
        stderr = slope_stderr(flow.log_norm("frobenius")[:, start - 1:])
        if resolved(rate, steps) or steps >= grid.max_steps:
            break
        # the last run at max_steps, the T the header and captions name: 10 doubled
        # under --max-steps 30 stopped at 20, and "not converged within T = 30" was untrue
        steps = min(2 * steps, grid.max_steps)
    xi = theory.timescale(rate)
    # (no rate, nan: nothing converged; one lag has no slope, which a longer run gives)
    converged = not math.isnan(rate) and (resolved(rate, steps) or status not in (None, GROW))
    return {"cell": cell_name, "weight_scale": weight_scale, "gate_bias": gate_bias,
            "rate": rate, "rate_stderr": stderr, "timescale": xi, "status": status,
            "horizon": steps, "converged": converged}


def resolved(rate, steps):
    """Is a rate told apart from 0 over `steps`: a decay (growth) of the norm by
    e^(CONVERGED / 2) or more (T >= CONVERGED xi for a decay)? A slow decay's first lags
    can rise (the LSTM at σ_w 0.5, gate bias 4: +0.0066 a step at T = 60, ξ ≈ 50 at
    T = 480), so small growth is measured again over a longer run."""
    e = CONVERGED / 2
    return rate * steps >= e if rate > 0 else -rate * steps >= e      # (nan: not resolved)


def run_points(grid, points, progress=None):
    """measure_point at each (cell, weight scale, gate bias) of `points`, in order."""
    out = []
    for p in points:
        out.append(measure_point(grid, *p))
        if progress is not None:
            progress(p)
    return out


def critical_weight_scale(input_scale=1.0, bias_scale=0.0):
    """The weight scale where mean-field chi = 1 for rnn_tanh (bisection), or None."""
    def chi(sw):
        return theory.mean_field(sw, input_scale=input_scale, bias_scale=bias_scale)[1] - 1
    lo, hi = 0.05, 20.0
    if chi(lo) > 0 or chi(hi) < 0:
        return None
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


THEORY_LEVELS = (3, 10, 30, 100, 300)   # timescales (steps) the theory's contours mark
THEORY_UNITS = 256                      # the theory's population (the large-n limit)
THEORY_FINE = 6                         # points per interval of a cell's 1-D theory curve


def theory_grid(grid, skip=()):
    """The theory's timescale over the grid, per cell (rows by gate bias, columns by weight
    scale, as the heat maps; inf where gradients do not decay): dynamic mean field
    (`gradlab.meanfield`) for the sweep's init (gaussian, bias scale 0, input scale 1),
    its m inputs, over a horizon of max_steps (at most 400) fitted over lags past the
    first quarter, as the measurement; a population of THEORY_UNITS units, seeded by the
    grid's seed. About 0.05-0.2 s per point (a cell with no gate bias: once per weight
    scale; ~25 s for the default grid on one core, four times the measurement). The cells
    in `skip` get no theory (a merge does not import cell files)."""
    from ..meanfield import timescale_grid
    steps = max(8, min(grid.max_steps, 400))
    options = {"units": THEORY_UNITS, "steps": steps, "inputs": grid.inputs,
               "lags": [max(1, steps // 4), steps], "seed": grid.seed}
    run = {**options, "lags": tuple(options["lags"])}

    def timescales(name, weight_scales, gate_biases):
        # nan where a cell's population overflows: no contour there
        return timescale_grid(name, weight_scales, gate_biases, bias_scale=0.0,
                              input_scale=1.0, method="dynamic", batch=32, **run)

    cells, unread = {}, {}
    for name in (c for c in grid.cells if c not in skip):
        try:
            cells[name] = timescales(name, grid.weight_scales, grid.gate_biases).tolist()
        except GradlabError as err:      # a cell mean field cannot read (W.T, say): no
            unread[name] = str(err)      # lines for it, the measured map all the same
    # a cell with no gate bias: its timescale is a curve over the weight scale, drawn
    # finely (THEORY_FINE points per interval between neighbours of the axis)
    curves = {}
    for name in cells:
        if len(grid.gate_axis(name)) == 1 and len(grid.gate_biases) > 1:
            position = np.linspace(0, len(grid.weight_scales) - 1,
                                   THEORY_FINE * (len(grid.weight_scales) - 1) + 1)
            ws = np.interp(position, range(len(grid.weight_scales)), grid.weight_scales)
            curves[name] = {"position": position.tolist(), "weight_scale": ws.tolist(),
                            "timescale": timescales(name, ws.tolist(),
                                                    grid.gate_biases[:1])[0].tolist()}
    return {"method": "dynamic", "options": options, "bias_scale": 0.0, "input_scale": 1.0,
            "levels": list(THEORY_LEVELS), "timescale": cells, "curves": curves,
            "unread": unread}


def _heatmaps(grid, points, critical, theory=None):
    from matplotlib.figure import Figure       # here: a refused sweep never loads it
    from .figures import timescale_contours, timescale_crossings
    cells = list(grid.cells)
    cols = min(len(cells), 2)
    rows = math.ceil(len(cells) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    ws, gb = list(grid.weight_scales), list(grid.gate_biases)
    image = None
    for ax, name in zip(axes, cells):
        rate = np.full((len(gb), len(ws)), np.nan)
        gated = len(grid.gate_axis(name)) > 1 or len(gb) == 1
        for p in points:
            if p["cell"] == name:
                rows = [gb.index(p["gate_bias"])] if gated else slice(None)
                rate[rows, ws.index(p["weight_scale"])] = p["rate"]
        # colour: log10 of xi = -1 / (2 rate) where gradients decay (rate -inf: xi = 0, the
        # bottom of the scale); no colour, a mark instead, where there is no timescale
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.where(rate < 0, -0.5 / rate, np.nan)
            shown = np.where(rate < 0, np.log10(np.clip(xi, 10 ** VMIN, None)), np.nan)
        image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis", vmin=VMIN,
                          vmax=VMAX, extent=(-0.5, len(ws) - 0.5, -0.5, len(gb) - 0.5))
        for p in (p for p in points if p["cell"] == name and _mark(p)):
            ax.text(ws.index(p["weight_scale"]), gb.index(p["gate_bias"]) if gated
                    else len(gb) // 2, _mark(p), ha="center", va="center", fontsize=9,
                    color={"~": "white", "=": "black", "×": "black", "–": "black"}.get(
                        _mark(p), "red"))
        if theory is not None and name in theory["curves"]:
            curve = theory["curves"][name]
            timescale_crossings(ax, curve["position"], curve["timescale"], theory["levels"])
        elif theory is not None and name in theory["timescale"]:
            timescale_contours(ax, theory["timescale"][name], theory["levels"])
        ax.set_xticks(range(len(ws)), [f"{w:g}" for w in ws], fontsize=7)
        ax.set_yticks(range(len(gb)), [f"{g:g}" for g in gb], fontsize=7)
        ax.set(title=name, xlabel="weight scale σ_w", ylabel="gate bias")
        if name == "rnn_tanh" and on_axis(critical, ws):    # (np.interp put one past the
            x = np.interp(critical, ws, range(len(ws)))     # axis on its last column)
            ax.axvline(x, color="#ff7f0e", ls="--", lw=1.5, label=f"χ = 1 (σ_w = {critical:.2f})")
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    if image is not None:       # (an arrow where some ξ lies past the colours' range)
        xis = [-0.5 / p["rate"] for p in points if p["rate"] < 0]      # (-inf: ξ = 0)
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max",
                  (True, True): "both"}[(any(x < 10 ** VMIN for x in xis),
                                         any(x > 10 ** VMAX for x in xis))]
        fig.colorbar(image, ax=list(axes[:len(cells)]), label="log₁₀ timescale ξ (steps)",
                     extend=extend)
    if theory is not None and theory["timescale"]:           # (lines for some cell)
        fig.suptitle("colour: measured ξ; white lines: ξ of " + theory_words(theory)
                     + ", labelled in steps", fontsize=8)
    return fig


def _mark(p):
    """× overflow, – one lag (no slope), = no decay within T, ↑ growth (? too small to
    tell), ~ not converged."""
    rate, done = p["rate"], p.get("converged", True)
    if math.isnan(rate):
        return "–" if p.get("status") == ONE_LAG else "×"
    return ("=" if rate == 0 else ("↑" if done else "?") if rate > 0
            else "~" if not done else None)


def _table_row(p, gated=True):
    """A grid point as the table shows it: words instead of a rate or timescale that is
    not a measured decay ("state overflowed", "gradients grow"), never a negative ξ, and
    no gate bias for a cell that has none (measured once per weight scale)."""
    rate, status = p["rate"], p.get("status")
    words = rate_words(rate, status)
    shown_rate = words if math.isnan(rate) else rate
    shown_xi = p["timescale"] if words is None or rate == -math.inf else words
    if words is None and not p.get("converged", True):
        shown_xi = f"{p['timescale']:.4g} (not converged: T < {CONVERGED} ξ)"
    elif status == GROW and not p.get("converged", True):   # too little to tell within T
        shown_xi = f"{words}? (too slowly to tell from a slow decay)"
    return [p["cell"], p["weight_scale"], p["gate_bias"] if gated else "—", shown_rate,
            p.get("rate_stderr", math.nan), shown_xi, p.get("horizon")]


def report(grid, points, out, *, force=False, command="gradlab sweep", import_cells=True,
           **where):
    """Write the phase-diagram report, every number drawn as data.json writes it; `where`
    (cell_files, expect, notice) goes on to `publish.write_report`. import_cells=False (a
    merge): no cell file is imported, and cells given as files get no theory."""
    critical = critical_weight_scale() if "rnn_tanh" in grid.cells else None
    theory = theory_grid(grid, skip=() if import_cells else [c for c in grid.cells if ":" in c])
    (critical, theory), points = rounded((critical, theory), digits_of(grid.dtype)), \
        rounded(points, digits_of(grid.dtype), keep=AXES)      # (the axes: as given)
    unread = [c for c in grid.cells if c not in theory["timescale"]]     # (no contours)
    header = {"command": command, "seed": grid.seed, "device": grid.device,
              "dtype": grid.dtype,
              "sizes": f"hidden n = {grid.hidden}, inputs m = {grid.inputs}, T = "
                       f"{grid.steps}, doubled up to {grid.max_steps} until T ≥ {CONVERGED} ξ, "
                       f"batch = {grid.batch}",
              "inputs": "i.i.d. N(0, 1); gaussian init, bias scale 0",
              "timescale": "ξ = −1 / (2 rate) where gradients decay (rate < 0), rate the slope "
                           "of the mean log Frobenius norm of ∂s_T/∂s_{T−k} against k from "
                           "⌊T/4⌋ (at least 1) to T, ± its standard error over sequences; "
                           f"~ marks points where even T = {grid.max_steps} was under "
                           f"{CONVERGED} ξ (not converged: ξ over too few steps, which a "
                           "longer run may move either way), ↑ points where gradients grow "
                           f"(rate > 0, no ξ; ? where they rise by less than e^{CONVERGED // 2} "
                           "within that T: a slow decay's first lags can), = points with no "
                           "decay within T (rate 0), × points whose state overflowed (nan), – "
                           "points with one lag (T = 1: no slope); a cell with no memory gate "
                           "is measured once per weight scale",
              "theory": (f"white contours: ξ = {', '.join(map(str, theory['levels']))} steps "
                         f"of {theory_words(theory)}, same init and inputs"
                         + (f"; none for {', '.join(unread)}" if unread else "")
                         if theory["timescale"] else "none: mean field reads none of these "
                         "cells")}
    gated = dict(zip(grid.cells, grid.gates()))
    table = (["cell", "weight scale", "gate bias", "rate / step", "± (s.e.)", "timescale ξ",
              "horizon T"],
             [_table_row(p, gated[p["cell"]]) for p in points])
    text = ("Each panel: the timescale of gradient memory over the initialisation grid. "
            + gate_words(grid, points) + vanilla_words(grid, points)).rstrip()
    if critical is not None:
        text += critical_words(critical, grid.weight_scales)
    open_ = sum(p["rate"] < 0 and not p.get("converged", True) for p in points)
    if open_:
        text += (f" {open_} of {len(points)} points did not converge within T = "
                 f"{grid.max_steps} (marked ~).")
    if unsure := sum(p["rate"] > 0 and not p.get("converged", True) for p in points):
        text += (f" At {unsure} point{'s' if unsure > 1 else ''} the norm rises too little "
                 f"within T = "
                 f"{grid.max_steps} to tell growth from a slow decay (marked ?).")
    unmeasured = [_mark(p) for p in points if math.isnan(p["rate"])]
    if overflowed := unmeasured.count("×"):
        text += (f" {overflowed} of {len(points)} points have no measurement (marked ×: "
                 "state overflowed).")
    if one := unmeasured.count("–"):
        text += (f" {one} of {len(points)} points have one lag only (T = 1), so no rate "
                 "(marked –).")
    text += " " + theory_text(grid, points, theory)
    sections = [Section("Phase diagram", text, "phase"), Section("Every grid point", table=table)]
    data = {"grid": grid.as_dict(), "critical_weight_scale": critical, "points": points,
            "theory": theory}
    return write_report(out, title="Gradient memory across initialisations",
                        intro="Timescales of gradient decay over weight scale and gate bias.",
                        header=header, sections=sections, data=data, force=force, keep=AXES,
                        figures={"phase": _heatmaps(grid, points, critical, theory)},
                        kind=FIGURES, dtype=grid.dtype, **where)


__all__ = ["Grid", "run_points", "report", "critical_weight_scale", "theory_grid"]
