"""`gradlab sweep`: phase diagrams of memory, timescale over weight scale x gate bias.

For every cell and every grid point (weight scale sw, gate bias g) the cell is initialised
(gaussian, seeded), driven by i.i.d. Gaussian inputs, and the timescale xi = -1 / rate of
the spectral norm of d s_T / d s_{T-k} is measured (gradient_flow). For rnn_tanh the
mean-field critical line chi = 1 (THEORY.md 2) is drawn: ordered (vanishing) left of it,
chaotic right of it. Gated cells move their memory with the gate bias.

Grids split across machines: shard I of N takes points I-1, I-1+N, ... of the grid in a
fixed order and writes <out>/part.json; `merge` checks that the parts come from one sweep
and cover it exactly, then writes the report.
"""

import dataclasses
import math
import pathlib

import numpy as np
from matplotlib.figure import Figure

from . import registry, theory
from .errors import GradlabError
from .experiment import Setup, states_finite, timescale_of
from .flow import gradient_flow
from .publish import Section, check_target, dumps, loads, write_report

DEFAULT_CELLS = ("rnn_tanh", "lstm", "gru", "minimal_rnn")
DEFAULT_WEIGHT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
DEFAULT_GATE_BIASES = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
PART = "part.json"
VMIN, VMAX = -0.5, 3.0      # colour range of log10 timescale: 0.3 to 1000 steps


@dataclasses.dataclass(frozen=True)
class Grid:
    cells: tuple
    weight_scales: tuple = DEFAULT_WEIGHT_SCALES
    gate_biases: tuple = DEFAULT_GATE_BIASES
    hidden: int = 32
    inputs: int = 8
    steps: int = 60
    batch: int = 8
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"

    def points(self):
        """Every (cell, weight scale, gate bias) in the fixed order shards index into."""
        return [(c, w, g) for c in self.cells for w in self.weight_scales
                for g in self.gate_biases]

    def as_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


def parse_shard(text):
    """'I/N' -> (I, N) with 1 <= I <= N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except (ValueError, AttributeError):
        raise GradlabError(f"--shard {text!r} is not I/N (e.g. 2/8)") from None
    if not 1 <= i <= n:
        raise GradlabError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def measure_point(grid, cell_name, weight_scale, gate_bias):
    setup = Setup(cells=(cell_name,), hidden=grid.hidden, inputs=grid.inputs,
                  steps=grid.steps, batch=grid.batch, weight_scale=weight_scale,
                  gate_bias=gate_bias, seed=grid.seed, device=grid.device, dtype=grid.dtype)
    cell = registry.cell(cell_name)
    flow = gradient_flow(cell, setup.params(cell), setup.xs(), norms=("spectral",),
                         blocks=False)
    rate = flow.rate() if states_finite(flow) else math.nan
    return {"cell": cell_name, "weight_scale": weight_scale, "gate_bias": gate_bias,
            "rate": rate, "timescale": timescale_of(rate)}


def run(grid, shard=(1, 1), progress=None):
    i, n = shard
    points = grid.points()[i - 1::n]
    out = []
    for p in points:
        out.append(measure_point(grid, *p))
        if progress is not None:
            progress(p)
    return out


def write_part(grid, shard, points, out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (PART + ".tmp")
    tmp.write_text(dumps({"grid": grid.as_dict(), "shard": list(shard), "points": points}))
    tmp.replace(out / PART)
    return out / PART


def read_parts(dirs):
    """(grid, points) from shard directories; refuses mixed sweeps, gaps and overlaps."""
    parts = []
    for d in dirs:
        path = pathlib.Path(d) / PART
        if not path.is_file():
            raise GradlabError(f"{str(d)!r} holds no {PART}: not a sweep shard directory")
        parts.append(loads(path.read_text()))
    grid = parts[0]["grid"]
    if any(p["grid"] != grid for p in parts):
        raise GradlabError("the shards come from different sweeps (their grids differ)")
    total = parts[0]["shard"][1]
    seen = sorted(p["shard"][0] for p in parts)
    if seen != list(range(1, total + 1)) or any(p["shard"][1] != total for p in parts):
        missing = sorted(set(range(1, total + 1)) - set(seen))
        raise GradlabError(f"shards {seen} of {total} given; missing {missing or 'none'}, "
                           "each must appear exactly once")
    g = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in grid.items()})
    order = {p: k for k, p in enumerate(g.points())}
    points = sorted((q for p in parts for q in p["points"]),
                    key=lambda q: order[(q["cell"], q["weight_scale"], q["gate_bias"])])
    return g, points


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


def _heatmaps(grid, points, critical):
    cells = list(grid.cells)
    cols = min(len(cells), 2)
    rows = math.ceil(len(cells) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    ws, gb = list(grid.weight_scales), list(grid.gate_biases)
    image = None
    for ax, name in zip(axes, cells):
        xi = np.full((len(gb), len(ws)), np.nan)
        for p in points:
            if p["cell"] == name:
                xi[gb.index(p["gate_bias"]), ws.index(p["weight_scale"])] = p["timescale"]
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.where(xi >= 0, np.log10(np.clip(xi, 10 ** VMIN, None)), np.nan)
        image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis", vmin=VMIN,
                          vmax=VMAX, extent=(-0.5, len(ws) - 0.5, -0.5, len(gb) - 0.5))
        for r, c in zip(*np.nonzero(xi < 0)):          # negative timescale: growth
            ax.text(c, r, "↑", ha="center", va="center", color="red", fontsize=9)
        for r, c in zip(*np.nonzero(np.isnan(xi))):    # the state overflowed: no number
            ax.text(c, r, "×", ha="center", va="center", color="black", fontsize=9)
        ax.set_xticks(range(len(ws)), [f"{w:g}" for w in ws], fontsize=7)
        ax.set_yticks(range(len(gb)), [f"{g:g}" for g in gb], fontsize=7)
        ax.set(title=name, xlabel="weight scale σ_w", ylabel="gate bias")
        if name == "rnn_tanh" and critical is not None:
            x = np.interp(critical, ws, range(len(ws)))
            ax.axvline(x, color="white", ls="--", lw=1.5, label=f"χ = 1 (σ_w = {critical:.2f})")
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:len(cells)]), label="log₁₀ timescale ξ (steps)")
    return fig


def report(grid, points, out, *, force=False, command="gradlab sweep"):
    critical = critical_weight_scale() if "rnn_tanh" in grid.cells else None
    header = {"command": command, "seed": grid.seed, "device": grid.device,
              "dtype": grid.dtype,
              "sizes": f"hidden n = {grid.hidden}, inputs m = {grid.inputs}, T = "
                       f"{grid.steps}, batch = {grid.batch}",
              "inputs": "i.i.d. N(0, 1); gaussian init, bias scale 0",
              "timescale": "ξ = −1 / rate, rate the slope of the mean log spectral norm of "
                           "∂s_T/∂s_{T−k} against k; ↑ marks points where gradients grow "
                           "(ξ < 0), × points whose state overflowed (nan)"}
    table = (["cell", "weight scale", "gate bias", "rate / step", "timescale ξ"],
             [[p["cell"], p["weight_scale"], p["gate_bias"], p["rate"], p["timescale"]]
              for p in points])
    text = ("Each panel: the timescale of gradient memory over the initialisation grid. "
            "Gates let memory grow with the gate bias at any weight scale; the vanilla "
            "RNN's memory depends on the weight scale alone and peaks at the edge of chaos.")
    if critical is not None:
        text += f" Mean-field theory puts rnn_tanh's critical line χ = 1 at σ_w = {critical:.3f}."
    sections = [Section("Phase diagram", text, "phase"), Section("Every grid point",
                                                                 table=table)]
    data = {"grid": grid.as_dict(), "critical_weight_scale": critical, "points": points}
    return write_report(out, title="Gradient memory across initialisations",
                        intro="Timescales of gradient decay over weight scale and gate bias.",
                        header=header, sections=sections,
                        figures={"phase": _heatmaps(grid, points, critical)}, data=data,
                        force=force)


__all__ = ["Grid", "run", "report", "read_parts", "write_part", "parse_shard",
           "check_target", "critical_weight_scale"]
