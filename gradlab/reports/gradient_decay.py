"""`gradlab report`: the essay's story, vanilla against gated, told with measurements.

Builds every number (experiment.measure), draws the figures (figures), and writes one
report directory (publish): index.html, report.md, figures/*.png|svg, data.json.
"""

import math
import platform

import numpy as np

from .. import registry
from ..flow import CONVERGED
from ..flow.rates import slope
from .measurements import Setup, check_cell_name, measure, rate_words
from .publish import Section, digits_of, rounded, write_report
from ..catalogue.written_memories import R2RT as ESSAY

DEFAULT_CELLS = ("rnn_tanh", "lstm", "gru", "gru_torch", "prototype_lstm", "pseudo_lstm",
                 "normalized_lstm", "peephole_lstm")
FIGURES = ("decay", "spectra", "loss", "bptt")     # the figures every report draws
DRIFT_CELLS = ("prototype_lstm", "normalized_lstm", "gru", "pseudo_lstm")
CONVENTION = ("numerator layout, J_t = ∂s_t/∂s_{t−1} (rows: outputs, as torch.func.jacrev); "
              "P_k = ∂s_T/∂s_{T−k} = J_T ⋯ J_{T−k+1}; multi-part states are flattened in "
              "state order")


def versions():
    import matplotlib
    import sympy
    import torch

    from .. import __version__
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
    threads = torch.get_num_threads()
    return f"cpu ({platform.machine()}, {threads} thread{'s' if threads != 1 else ''})"


def run(setup, *, progress=None, models=None):
    """{cell name: measurements} for every cell of the setup, in order, then for every
    model of `models` ({label: (cell, params)}, e.g. `checkpoint.model_entries`)."""
    out = {}
    jobs = [(name, None) for name in setup.cells] + list((models or {}).items())
    for name, model in jobs:
        out[name] = measure(setup, name, model)
        if progress is not None:
            progress(name)
    return out


def _rate_cell(rate, status):
    """A rate as the table shows it: the number, or words where there is no measurement."""
    if isinstance(rate, float) and math.isnan(rate):
        return rate_words(rate, status)
    return rate


def _timescale_cell(rate, timescale, status):
    """A timescale as the table shows it: a positive number of steps for a decay (0 for a
    zero product), else words ("gradients grow", "no decay within T", "state
    overflowed"): never a negative number."""
    words = rate_words(rate, status)
    return timescale if words is None or rate == -math.inf else words


ONE_RATE, ONE_RATE_ABS = 0.1, 0.002   # a slope "at" λ₁: within 10 % of it plus 0.002


def _converged_cell(s):
    """Whether T is at least CONVERGED timescales, in words (— where there is no decay)."""
    converged = s.get("converged")
    if converged is None:
        return "—"
    if not converged:
        return f"no: T < {CONVERGED} ξ, too short a run to fix ξ"
    lam = float(s["lyapunov"][0])
    if math.isfinite(lam) and abs(s["rate"] - lam) > ONE_RATE * abs(lam) + ONE_RATE_ABS:
        return f"yes, but λ₁ is {lam:.3g}: the rate is not yet the long-run one"
    return "yes"


def table_row(name, d):
    s = d["summary"]
    status = s.get("status")
    predicted = s["theory"]
    return [name, _rate_cell(s["rate"], status), _stderr_cell(s.get("rate_stderr", math.nan)),
            _timescale_cell(s["rate"], s["timescale"], status), _converged_cell(s),
            s["horizon_1e-3"], s["horizon_1e-6"], s["log10_condition_mid"],
            _lyapunov_cell(float(s["lyapunov"][0])),
            "—" if math.isnan(float(s["lyapunov"][0]))
            else _stderr_cell(s.get("lyapunov_stderr", math.nan)),
            predicted, _frobenius_cell(s, predicted),
            s["theory_timescale"] if predicted is None or math.isnan(predicted)
            else _timescale_cell(predicted, s["theory_timescale"], None),
            s["theory_label"] or "—"]


def _frobenius_cell(s, predicted):
    """The measured Frobenius-norm rate, the quantity a theory rate predicts (— without one)."""
    return "—" if predicted is None else _rate_cell(s.get("rate_frobenius", math.nan),
                                                    s.get("status"))   # (T = 1: one lag)


def _lyapunov_cell(lyap):
    """λ₁, or why there is none: its run (4T steps) overflowed, which T steps need not."""
    return "state overflowed (over 4T steps)" if math.isnan(lyap) else lyap


TABLE_HEADER = ["cell", "rate / step", "± (sequences)", "timescale ξ",
                f"T ≥ {CONVERGED} ξ",
                "horizon 10⁻³", "horizon 10⁻⁶", "log₁₀ cond(P_k), k = T/2", "top Lyapunov λ₁",
                "± (sequences)", "theory rate", "measured Frobenius rate", "theory ξ", "theory"]


def _lyap_words(lyap):
    """λ₁ in a sentence: its value, or why there is none (as the table says it)."""
    if math.isnan(lyap):
        return "no λ₁: its state overflowed over 4T steps"
    return f"λ₁ = {_num(lyap)}"


def _num(x):
    """x to 3 digits, with ∞ for an infinity (as the table shows it)."""
    return ("-∞" if x < 0 else "∞") if math.isinf(x) else f"{x:.3g}"


def _stderr_cell(err):
    """A standard error, or — where there is none (one sequence, or one lag)."""
    return "—" if isinstance(err, float) and math.isnan(err) else err


def table_header(cells):
    """TABLE_HEADER with the lag the condition numbers are read at (T/2, but 1 at T = 1)."""
    lags = {d["summary"].get("condition_lag") for d in cells.values()} - {None}
    return [f"log₁₀ cond(P_k), k = {lags.pop()}" if h.startswith("log₁₀ cond") and
            len(lags) == 1 else h for h in TABLE_HEADER]


def findings(cells):
    """A few sentences with the measured numbers, for the top of the report; words, not
    numbers, where a rate is not a plain decay (an overflowed state, growth)."""
    parts = []
    for name, d in cells.items():
        s = d["summary"]
        lyap = float(s["lyapunov"][0])
        words = rate_words(s["rate"], s.get("status"))
        if words is None:
            err = s.get("rate_stderr", math.nan)
            spread = f" ± {err:.2g}" if math.isfinite(err) else ""
            line = (f"{name}: rate {s['rate']:.3g}{spread} per step (ξ = {s['timescale']:.3g} "
                    f"steps{'' if s.get('converged', True) else f', not converged: T < {CONVERGED} ξ'}"
                    f", {_lyap_words(lyap)})")
            if math.isfinite(err) and abs(s["rate"]) < 2 * err:
                line += (", within two standard errors of 0: no clear decay within T "
                         "(a longer run or more sequences would tell)")
        elif math.isnan(s["rate"]):
            line = f"{name}: no rate, {words} ({_lyap_words(lyap)})"
        elif s["rate"] == -math.inf:
            zero, B = s.get("zero_sequences", 0), s.get("sequences", 0)
            some = (f" in {zero} of {B} sequences, so their mean log norm is -∞"
                    if 0 < zero < B else "")
            line = f"{name}: rate -∞, {words}{some} (ξ = 0 steps, {_lyap_words(lyap)})"
        else:
            line = f"{name}: rate {s['rate']:.3g} per step, {words} ({_lyap_words(lyap)})"
        if s["theory"] is not None:
            line += f", {s['theory_label']} predicts {_num(s['theory'])}"
            frobenius = s.get("rate_frobenius", math.nan)
            if math.isfinite(frobenius):
                line += f" (Frobenius-norm rate measured: {frobenius:.3g})"
        parts.append(line)
    return "; ".join(parts) + "."


DRIFT_GROWTH = 2.0     # a state "drifts" if its RMS at step T is at least 2x that at T/10


def drift_caption(setup, cells, names):
    """The drift section's text, computed from the measured state RMS: how much each cell's
    state grew from step T/10 to step T at initialisation, and whether that is drift
    (growth of at least DRIFT_GROWTH), with no claim the numbers do not make."""
    T = setup.steps
    early = max(1, T // 10)
    if early >= T:                        # (T = 1: "from step 1 to step 1", "×1")
        return (f"Measured at initialisation: over T = {T} step there is no growth to "
                "measure; the RMS of the state at step 1: " + "; ".join(
                    f"{n} {float(np.asarray(cells[n]['drift']['rms'], dtype=np.float64)[-1]):.3g}"
                    for n in names) + ".")
    growth, said = {}, {}
    for name in [n for n in cells if "drift" in cells[n]]:     # the others too, for below
        rms = np.asarray(cells[name]["drift"]["rms"], dtype=np.float64)
        a, b = rms[early], rms[-1]
        growth[name] = (math.inf if not np.isfinite(b) else b / a if a > 0 else 1.0 if a == b
                        else math.inf if a == 0 else math.nan)      # (0 -> 0: no growth)
        said[name] = (f"{name} {a:.3g} → {b:.3g} (×{growth[name]:.3g})" if np.isfinite(b)
                      else f"{name} {a:.3g} → overflow")
    text = (f"Measured at initialisation (gate bias {setup.gate_bias:g}, input scale "
            f"{setup.input_scale:g}), the RMS of the state from step {early} to step {T}: "
            + "; ".join(said[n] for n in names) + ". ")
    bounded = [n for n in names if n != "prototype_lstm"]
    grew = [n for n in names if growth[n] >= DRIFT_GROWTH]
    if "prototype_lstm" in grew and not set(grew) & set(bounded):
        text += ("The prototype LSTM's state grows here" + (
            f" while those of the bounded cells measured ({', '.join(bounded)}) do not"
            if bounded else "") + ": internal state drift, at initialisation. ")
    elif grew:
        text += f"States that grow by ×{DRIFT_GROWTH:g} or more: {', '.join(grew)}"
        most = max(grew, key=lambda n: growth[n])
        text += f" (most: {most}). "
    elif "prototype_lstm" in names:
        text += (f"None of these grows by ×{DRIFT_GROWTH:g} or more: at initialisation, with "
                 "these settings, the prototype LSTM shows no internal state drift. The essay "
                 "places the drift in the early stage of training; `gradlab train` measures "
                 "it there (reports/learnability/). ")
    else:
        text += f"None of these grows by ×{DRIFT_GROWTH:g} or more. "
    others = [said[n] for n in growth if n not in names and growth[n] >= DRIFT_GROWTH]
    if others:
        text += (f"Of the report's other cells, these grow by ×{DRIFT_GROWTH:g} or more over "
                 f"the same steps: {'; '.join(others)}. ")
    return text + ("Below: the share of gate values below 0.05 or above 0.95 (saturated gates "
                   "pass no gradient).")


def init_words(setup):
    """The header's init line: what the cells measured from --cells were drawn with (the
    weight and bias scales do not apply to torch's uniform init; a report of a model
    alone drew none), and the input scale every entry's inputs have."""
    if not setup.cells:
        return (f"none drawn: every entry comes from the model (its inputs: input scale "
                f"{setup.input_scale})")
    if setup.init == "torch":
        return (f"torch (each weight U(-1/√n, 1/√n), each bias too, or two such draws summed "
                f"where torch adds bias_ih and bias_hh: the weight and bias scales do not "
                f"apply), input scale {setup.input_scale}, gate bias {setup.gate_bias}")
    return (f"{setup.init}, weight scale {setup.weight_scale}, bias scale {setup.bias_scale}, "
            f"input scale {setup.input_scale}, gate bias {setup.gate_bias}")


def paths_caption(cells):
    """What the blocks' structure (read from SymPy, `path_kinds`) says of each path: a
    diagonal one carries gradient through gates and slopes alone, a dense one through
    weight matrices and squashing. (It said 'the cell path c → c carries gradient through
    diag(f) alone' of every cell: the peephole LSTM's adds peephole terms, lstm_nfg's is
    I plus a peephole term, with no f at all.)"""
    diagonal, dense = [], []
    for name, d in cells.items():
        for path, k in d.get("path_kinds", {}).items():
            a, b = path.split("->")
            if a == b:
                (diagonal if k == "diagonal" else dense).append(f"{name} {a} → {b}")
    text = "Blocks of the product ∂s_T/∂s_{T−k}, one state part to another. "
    if diagonal:
        text += ("Diagonal (each unit scaled by gates and slopes, no weight matrix in the "
                 f"way, so they can keep gradient for many steps): {', '.join(diagonal)}. ")
    if dense:
        text += f"Through weight matrices and squashing: {', '.join(dense)}. "
    return text + _one_rate_words(cells)


def _one_rate_words(cells):
    """Whether each cell's blocks already fall at one rate, λ₁, over lags T/2..T: each step
    mixes the parts, so they do at lags long against the timescale, which T may not be."""
    agree, apart = [], []
    for name, d in cells.items():
        if "paths" not in d:
            continue
        lam, T = float(d["summary"]["lyapunov"][0]), len(d["lags"])
        tails = [np.asarray(v, dtype=np.float64)[T // 2:] * math.log(10)
                 for v in d["paths"].values()]
        slopes = [slope(y)[0] for y in tails if len(y) > 1 and np.isfinite(y).all()]
        if not slopes or not math.isfinite(lam):
            continue
        if max(abs(v - lam) for v in slopes) <= ONE_RATE * abs(lam) + ONE_RATE_ABS:
            agree.append(name)
        else:
            apart.append(f"{name} (slopes {min(slopes):.3g} to {max(slopes):.3g} against λ₁ = "
                         f"{lam:.3g})")
    lags = max(len(d.get("lags", ())) for d in cells.values())
    text = ("The paths differ in the first lags. " if lags > 2 else "") + (
        "Each step mixes the parts, so at lags long against the timescale every block "
        "falls at one rate, the top Lyapunov exponent λ₁")
    if agree:
        text += (f"; over lags T/2..T the blocks' slopes are within {ONE_RATE:.0%} of λ₁ "
                 f"plus {ONE_RATE_ABS:g} for {', '.join(agree)}")
    if apart:
        text += f"; not yet within T for {', '.join(apart)}"
    return text + "."


def lines_words(drawn):
    """What the decay figure's other lines are, for those `drawn` ("theory", "pascanu")."""
    said = [w for kind, w in (("theory", "dashed lines are theory"), ("pascanu", (
        "dotted the" if "theory" in drawn else "dotted lines are the") + " Pascanu bound"))
        if kind in drawn]
    return "; " + ", ".join(said) if said else ""


def build(setup, cells, command, model_note=None):
    """(title, intro, header, sections, figures, data) for `write_report`; `model_note`
    says, in the header, which checkpoint the model entries come from."""
    from . import figures as fg       # here: a refused report never loads matplotlib
    col = fg.colors(cells)
    drift = [n for n in DRIFT_CELLS if n in cells]
    # a log axis over values near 1e300 (weight scale 1e300) is autoscaled past float64 by
    # matplotlib's margins: clipped, as publish draws it, not warned of on the terminal
    with np.errstate(all="ignore"):
        figs = {"decay": fg.decay(cells, col), "spectra": fg.spectra(cells, col),
                "loss": fg.loss(cells, col), "bptt": fg.bptt(cells, col)}
    sections = [
        Section("Decay of the gradient across time steps",
                "The spectral norm of ∂s_T/∂s_{T−k}: how much of a gradient at step T can "
                "reach k steps back. Lines are medians over sequences, bands the "
                "interquartile range" + lines_words(set().union(
                    *(fg.decay_lines(d) for d in cells.values()))) + ". A theory "
                "rate is that of the mean squared gradient, the Frobenius norm, which the "
                "summary measures beside it; over a finite T the spectral norm drawn here "
                "typically falls more slowly; the two rates meet at λ₁ as T grows. "
                + findings(cells), "decay"),
        Section("Summary", "Rate: least-squares slope of the mean natural-log spectral norm "
                "against the lag. Horizon: first lag where that mean (the geometric mean "
                "norm; the figure draws the median, which can cross sooner) falls below "
                "10⁻³ (10⁻⁶) of its lag-1 value (— if it never does within T; 1 where the "
                "product is zero from lag 1). λ₁: top Lyapunov exponent by QR over 4T "
                "steps, the mean over the last 3T (the first T a warm-up; derivations/theory"
                ".md §5), the first QR column's (the top one in the limit; over a finite run a "
                "later column's can come out larger); the rate tends to it as T grows. ±: the standard error over sequences (of the per-sequence "
                "slopes, and of the per-sequence exponents; — where there is none: one "
                "sequence, one lag, no rate). Theory columns: — where no theory of the cell "
                "applies at these settings. A timescale is converged when the run is at least "
                f"{CONVERGED} of it long (T ≥ {CONVERGED} ξ); where it is not, ξ is measured over "
                "too few steps to be the long-run value, and a longer run may give a larger or "
                "a smaller one (the first lags, whose spectra are flat, weigh more in a short "
                f"run). Where it is, the rate may still differ from λ₁, the long-run rate: "
                f"by more than {ONE_RATE:.0%} of λ₁ plus {ONE_RATE_ABS:g}, the column says so. "
                "ξ = −1/(2 rate), the steps in which the squared norm falls by e, is shown only for "
                "a decay; where there is none the table says why: “gradients grow” (rate > 0), “no "
                "decay within T” (rate 0), “state overflowed” (a state became inf or nan: no "
                "measurement, nan in data.json). Other non-finite values are shown as such.",
                table=(table_header(cells), [table_row(n, d) for n, d in cells.items()]))]
    if any("paths" in d for d in cells.values()):
        figs["paths"] = fg.paths(cells, col)
        sections.append(Section("The LSTM's two paths", paths_caption(cells), "paths"))
    sections.append(Section("Single-step Jacobians", "Singular values of J_T at the last step, "
                            "largest first, each the median over the sequences of the i-th "
                            "largest: values below 1 shrink gradients at every step.", "spectra"))
    sections.append(Section("What a loss sees", "For L = ⟨v, s_T⟩ with v a random unit "
                            "vector: the norm of ∂L/∂x_t for every input.", "loss"))
    if drift:
        figs["drift"] = fg.drift(cells, col, drift, title="State RMS at initialisation")
        sections.append(Section("Internal state drift", drift_caption(setup, cells, drift),
                                "drift"))
    sections.append(Section("Truncated backpropagation through time", "The share of the "
                            "squared input-gradient mass within the last K steps: what "
                            "truncating BPTT at K keeps.", "bptt"))
    setup_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(setup).items()}
    header = {"command": command, "seed": setup.seed, "device": device_name(setup.device),
              "dtype": setup.dtype,
              "sizes": f"hidden n = {setup.hidden}, inputs m = {setup.inputs}, T = "
                       f"{setup.steps}, batch = {setup.batch}",
              "init": init_words(setup),
              **({"model": model_note} if model_note else {}),
              "Jacobian convention": CONVENTION,
              "versions": ", ".join(f"{k} {v}" for k, v in versions().items())}
    data = {"setup": setup_dict, "convention": CONVENTION, "cells": cells,
            **({"model": model_note} if model_note else {})}
    intro = ("How far gradients reach back through vanilla and gated cells, measured: exact "
             "Jacobian "
             "products from gradlab's symbolic derivations, with theory drawn over them. "
             f"“The essay” is {ESSAY}, whose story it follows.")
    return "Gradient decay across time steps", intro, header, sections, figs, data


def report(setup, out, *, force=False, command="gradlab report", progress=None,
           models=None, model_note=None, **where):
    """Measure every cell (and every model, {label: (cell, params)}: a checkpoint trained
    and at initialisation) and write the report directory `out`; returns its path. `where`
    (cell_files, expect, notice) goes on to `publish.write_report`."""
    for name in setup.cells:
        if isinstance(name, str):
            check_cell_name(name)
        registry.cell(name)
    cells = rounded(run(setup, progress=progress, models=models), digits_of(setup.dtype))
    title, intro, header, sections, figs, data = build(setup, cells, command, model_note)
    return write_report(out, title=title, intro=intro, header=header, sections=sections,
                        figures=figs, data=data, force=force, kind=FIGURES, dtype=setup.dtype,
                        keep=("setup",), **where)      # (what it was given: as given)


__all__ = ["DEFAULT_CELLS", "Setup", "report", "run", "build"]
