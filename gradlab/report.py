"""`gradlab report`: the seed's story, vanilla against gated, told with measurements.

Builds every number (experiment.measure), draws the figures (figures), and writes one
report directory (publish): index.html, report.md, figures/*.png|svg, data.json.
"""

import platform

import numpy as np

from . import figures as fg
from . import registry
from .experiment import Setup, measure
from .publish import Section, write_report

DEFAULT_CELLS = ("rnn_tanh", "lstm", "gru", "gru_torch", "prototype_lstm", "pseudo_lstm",
                 "normalized_lstm", "peephole_lstm")
DRIFT_CELLS = ("prototype_lstm", "normalized_lstm", "gru", "pseudo_lstm")
CONVENTION = ("numerator layout, J_t = ∂s_t/∂s_{t−1} (rows: outputs, as torch.func.jacrev); "
              "P_k = ∂s_T/∂s_{T−k} = J_T ⋯ J_{T−k+1}; multi-part states are flattened in "
              "state order")


def versions():
    import matplotlib
    import sympy
    import torch

    from . import __version__
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    return {"gradlab": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "cuda": cuda, "cudnn": cudnn,
            "sympy": sympy.__version__, "numpy": np.__version__,
            "matplotlib": matplotlib.__version__}


def device_name(device):
    import torch
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def run(setup, *, progress=None):
    """{cell name: measurements} for every cell of the setup, in order."""
    out = {}
    for name in setup.cells:
        out[name] = measure(setup, name)
        if progress is not None:
            progress(name)
    return out


def _row(name, d):
    s = d["summary"]
    return [name, s["rate"], s["timescale"], s["horizon_1e-3"], s["horizon_1e-6"],
            s["log10_condition_mid"], float(s["lyapunov"][0]), s["theory"],
            s["theory_timescale"], s["theory_label"] or "—"]


TABLE_HEADER = ["cell", "rate / step", "timescale ξ", "horizon 10⁻³", "horizon 10⁻⁶",
                "log₁₀ cond(P_k), k = T/2", "top Lyapunov λ₁", "theory rate", "theory ξ",
                "theory"]


def findings(cells):
    """A few sentences with the measured numbers, for the top of the report."""
    parts = []
    for name, d in cells.items():
        s = d["summary"]
        line = (f"{name}: rate {s['rate']:.3g} per step (ξ = {s['timescale']:.3g} steps, "
                f"λ₁ = {float(s['lyapunov'][0]):.3g})")
        if s["theory"] is not None:
            line += f", {s['theory_label']} predicts {s['theory']:.3g}"
        parts.append(line)
    return "; ".join(parts) + "."


def build(setup, cells, command):
    """(title, intro, header, sections, figures, data) for `write_report`."""
    col = fg.colors(cells)
    drift = [n for n in DRIFT_CELLS if n in cells]
    figs = {"decay": fg.decay(cells, col), "spectra": fg.spectra(cells, col),
            "loss": fg.loss(cells, col), "bptt": fg.bptt(cells, col)}
    sections = [
        Section("Decay of the gradient across time steps",
                "The spectral norm of ∂s_T/∂s_{T−k}: how much of a gradient at step T can "
                "reach k steps back. Lines are medians over sequences, bands the "
                "interquartile range; dashed lines are theory, dotted the Pascanu bound. "
                + findings(cells), "decay"),
        Section("Summary", "Rate: least-squares slope of the mean natural-log spectral norm "
                "against the lag. Horizon: first lag where the norm falls below 10⁻³ "
                "(10⁻⁶) of its lag-1 value (— if it never does within T). λ₁: top Lyapunov "
                "exponent by repeated QR over 4T steps (THEORY.md 5); it should match the "
                "rate. Non-finite values are shown as such.",
                table=(TABLE_HEADER, [_row(n, d) for n, d in cells.items()]))]
    if any("paths" in d for d in cells.values()):
        figs["paths"] = fg.paths(cells, col)
        sections.append(Section(
            "The LSTM's two paths", "Blocks of the product: the cell path c → c carries "
            "gradient through diag(f) alone, the hidden path h → h through weight matrices "
            "and squashing, so the first can keep what the second loses.", "paths"))
    sections.append(Section("Single-step Jacobians", "Singular values of J_T at the last "
                            "step, largest first: values below 1 shrink gradients at "
                            "every step.", "spectra"))
    sections.append(Section("What a loss sees", "For L = ⟨v, s_T⟩ with v a random unit "
                            "vector: the norm of ∂L/∂x_t for every input.", "loss"))
    if drift:
        figs["drift"] = fg.drift(cells, col, drift)
        sections.append(Section(
            "Internal state drift", "The prototype LSTM's state is unbounded and drifts; "
            "the normalized LSTM, the GRU and the pseudo LSTM bound it. Below: the share "
            "of gate values beyond 0.05 or 0.95 (saturated gates pass no gradient).",
            "drift"))
    sections.append(Section("Truncated backpropagation through time", "The share of the "
                            "squared input-gradient mass within the last K steps: what "
                            "truncating BPTT at K keeps.", "bptt"))
    setup_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(setup).items()}
    header = {"command": command, "seed": setup.seed, "device": device_name(setup.device),
              "dtype": setup.dtype,
              "sizes": f"hidden n = {setup.hidden}, inputs m = {setup.inputs}, T = "
                       f"{setup.steps}, batch = {setup.batch}",
              "init": f"{setup.init}, weight scale {setup.weight_scale}, bias scale "
                      f"{setup.bias_scale}, input scale {setup.input_scale}, gate bias "
                      f"{setup.gate_bias}",
              "Jacobian convention": CONVENTION,
              "versions": ", ".join(f"{k} {v}" for k, v in versions().items())}
    data = {"setup": setup_dict, "convention": CONVENTION, "cells": cells}
    intro = ("Why vanilla RNNs forget and gated cells remember, measured: exact Jacobian "
             "products from gradlab's symbolic derivations, with theory drawn over them.")
    return "Gradient decay across time steps", intro, header, sections, figs, data


def report(setup, out, *, force=False, command="gradlab report", progress=None):
    """Measure every cell and write the report directory `out`; returns its path."""
    for name in setup.cells:
        registry.cell(name)
    cells = run(setup, progress=progress)
    title, intro, header, sections, figs, data = build(setup, cells, command)
    return write_report(out, title=title, intro=intro, header=header, sections=sections,
                        figures=figs, data=data, force=force)


__all__ = ["DEFAULT_CELLS", "Setup", "report", "run", "build"]
