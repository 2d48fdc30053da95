"""`gradlab train`: which cells learn long dependencies, beside their gradient timescales.

Trains every cell on every (task, delay) (loop.train), the character LSTM (charlm), and
writes reports/learnability/ through publish.write_report. Every sentence that makes a
claim is computed from the measured numbers (`vanilla_findings`, `drift_findings`): when
the measurement disagrees with the essay, the report says so.
"""

import dataclasses
import math

import numpy as np

from .charlm import train_charlm
from .loop import LEARNED, PARTLY, criterion_text, train
from .setup import DEFAULT_CELLS, DEFAULT_TASKS, LearnSetup, check, ensure_fits, parse_tasks
from .tasks import make
from ..reports.gradient_decay import device_name, versions
from ..reports.publish import Section, write_report
from ..catalogue.written_memories import R2RT as ESSAY
from ..device import one_thread

VANILLA = ("rnn_tanh", "rnn_relu")
DRIFT_CELL = "prototype_lstm"
BOUNDED = ("normalized_lstm", "pseudo_lstm", "gru")
FIGURES = ("learning", "timescales")      # the figures every report draws (and "drift"
                                          # where a cell it measures was trained)
# Training amplifies rounding: its numbers depend on the CPU from their 3rd or 4th digit
# (README), so no digit count makes them the same elsewhere; they are written to 12, which
# a rerun on the same machine reproduces exactly.
DIGITS = 12
DRIFT = 2.0          # the state "drifts" if its RMS grows to at least 2x its step-0 value
LARGE = 1.0          # ... and above 1, the range of a tanh- or gate-bounded state
ROUNDOFF = 1e-12     # λ₁ within this of 0 is 0 (per step): norm-keeping steps (saturated
                     # gates) measure ~1e-17 in float64, of a sign rounding sets


def run(setup, *, progress=None):
    """{"runs": [record per cell and task], "charlm": record or None}."""
    train_setup, runs = setup.train_setup(), []
    for name in setup.cells:
        for task, delay in setup.tasks:
            runs.append({**train(name, make(task, delay), train_setup), "cell": name})
            # (labelled as given: a file's cell may share a built-in's name, as in report)
            if progress is not None:
                progress(f"{name} {task}@{delay}")
    char = train_charlm(setup.char_setup(), progress=progress) if setup.char_steps else None
    return {"runs": runs, "charlm": char}


# -- findings, computed from the numbers --------------------------------------------------
def _delays(runs, cell, task, verdicts=("learned",)):
    return sorted(r["delay"] for r in runs
                  if r["cell"] == cell and r["task"] == task and r["verdict"] in verdicts)


def _list(values):
    return ", ".join(map(str, values)) if values else "none"


def vanilla_findings(runs):
    """(sentences, numbers): vanilla against gated cells across delays, per task."""
    cells = list(dict.fromkeys(r["cell"] for r in runs))
    vanilla = [c for c in cells if c in VANILLA]
    gated = [c for c in cells if c not in VANILLA]
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    numbers, lines = {}, []
    for task in tasks:
        learned = {c: _delays(runs, c, task) for c in cells}
        tried = sorted({r["delay"] for r in runs if r["task"] == task})
        numbers[task] = {"learned_at": learned, "longest": {c: max(v, default=0)
                                                            for c, v in learned.items()}}
        partly = {c: _delays(runs, c, task, ("partly",)) for c in cells}
        lines.append(f"{task}: " + "; ".join(
            (f"{c} learned at delay {_list(learned[c])}" if learned[c] else
             f"{c} learned at none of the delays tried ({_list(tried)})")
            + (f", partly at {_list(partly[c])}" if partly[c] else "") for c in cells) + ".")
        if not vanilla or not gated:
            continue
        v_best = max(numbers[task]["longest"][c] for c in vanilla)
        g_best = max(numbers[task]["longest"][c] for c in gated)
        beyond = [c for c in gated if numbers[task]["longest"][c] > v_best]
        behind = [c for c in gated if numbers[task]["longest"][c] < v_best]
        if g_best > v_best:
            verdict = ("As the essay claims, gates let cells learn longer dependencies here: "
                       + (f"the longest delay a vanilla RNN learned is {v_best}, " if v_best
                          else "the vanilla RNN learned at none of the delays tried, ")
                       + f"while {', '.join(beyond)} learned up to {g_best}")
        elif g_best == 0:
            verdict = ("The measurement does not show the essay's claim here: neither the "
                       "vanilla RNN nor any gated cell learned at any delay")
        else:
            verdict = (f"The measurement does not show the essay's claim here: no gated cell "
                       f"learned a longer delay than the vanilla RNN (longest: vanilla "
                       f"{v_best}, gated {g_best})")
        if behind:
            verdict += (f"; {', '.join(behind)} learned less far than the vanilla RNN "
                        f"({v_best})")
        numbers[task].update({"vanilla_longest": v_best, "gated_longest": g_best,
                              "claim_holds": g_best > v_best})
        lines.append(verdict + ".")
    xi = {"learned": [], "not learned": []}
    for r in runs:
        t = r["checkpoints"][-1]["timescale"]
        xi["learned" if r["verdict"] == "learned" else "not learned"].append(
            min(t / r["delay"], 1e6) if math.isfinite(t) or t == math.inf else math.nan)
    med = {k: float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan
           for k, v in xi.items()}
    numbers["timescale_over_delay_median"] = med
    if all(math.isfinite(v) for v in med.values()):
        lines.append(f"After training, the median ratio of gradient timescale to delay is "
                     f"{_fmt(med['learned'])} where a cell learned and "
                     f"{_fmt(med['not learned'])} where it did not fully (partly or not "
                     f"at all; ξ = ∞, no decay over the probe, counts as 10⁶).")
    return " ".join(lines), numbers


def _fmt(x):
    return "∞" if x == math.inf else "nan" if math.isnan(x) else f"{x:.3g}"


def drift_stats(record, early):
    """State RMS growth over the first `early` training steps of one run, the write gate,
    and λ₁ at the checkpoints within them."""
    rms = np.asarray(record["state_rms"][:early], dtype=np.float64)
    write = np.asarray(record["write_gate"][:early], dtype=np.float64)
    first = rms[0] if len(rms) else math.nan
    ok = rms[np.isfinite(rms)]
    peak = float(ok.max()) if ok.size else math.nan
    at = int(np.nanargmax(rms)) if ok.size else -1
    lyap = [c["lyapunov"] for c in record["checkpoints"] if c["step"] <= early]
    # a state that is not finite is not a drift: these cells' states grow by at most 1 a
    # step, so only weights training left nan or inf make one (growth: the finite steps')
    broke = np.flatnonzero(~np.isfinite(rms))
    return {"task": f"{record['task']}@{record['delay']}", "rms_first": float(first),
            "rms_peak": peak, "peak_step": at,
            "growth": peak / first if first > 0 else math.nan,
            "write_first": float(write[0]) if len(write) else math.nan,
            "write_at_peak": float(write[at]) if 0 <= at < len(write) else math.nan,
            "lyapunov_max": float(np.nanmax(lyap)) if np.isfinite(lyap).any() else math.nan,
            "lyapunov_init": float(lyap[0]) if lyap else math.nan,
            **({"not_finite_from": int(broke[0])} if broke.size else {})}   # (only then)


def drift_findings(runs, early):
    """(text, numbers): does the prototype LSTM's state drift early in training, and do the
    normalized LSTM, the pseudo LSTM and the GRU keep theirs bounded? Per cell, the run
    (task, delay) where its state grew most."""
    per = {}
    for r in runs:
        if r["cell"] in (DRIFT_CELL, *BOUNDED):
            s = drift_stats(r, early)
            best = per.get(r["cell"])
            if best is None or _key(s) > _key(best):
                per[r["cell"]] = s
    if DRIFT_CELL not in per:           # (the figure shows the cells in `per`, if any)
        if not per:
            return (f"None of the cells it measures ({', '.join((DRIFT_CELL, *BOUNDED))}) "
                    "was trained in this run: no drift measurement, and no figure.",
                    {"cells": per})
        return (f"The prototype LSTM was not trained in this run, so the essay's claim "
                f"cannot be tested: the figure shows the state of {', '.join(per)} alone.",
                {"cells": per})
    p = per[DRIFT_CELL]
    bounded = {c: per[c] for c in BOUNDED if c in per}
    drifts = _drifts(p)
    drifted_too = [c for c, s in bounded.items() if _drifts(s)]
    chaotic = math.isfinite(p["lyapunov_max"]) and p["lyapunov_max"] > ROUNDOFF
    text = [f"Over the first {early} training steps (on {p['task']}, where it grew most) the "
            f"prototype LSTM's state RMS went from {_fmt(p['rms_first'])} to a peak of "
            f"{_fmt(p['rms_peak'])} at step {p['peak_step']} (×{_fmt(p['growth'])}{_broke(p)}); its "
            f"mean write gate was {_fmt(p['write_first'])} at step 0 and "
            f"{_fmt(p['write_at_peak'])} at the peak; its top Lyapunov exponent at the "
            f"checkpoints within those steps reached {_fmt(p['lyapunov_max'])} per step "
            f"(at initialisation: {_fmt(p['lyapunov_init'])}) "
            f"({'positive: nearby states separate, chaotic' if chaotic else 'not positive beyond round-off: not chaotic'})."]
    if bounded:
        text.append("Largest growth of the others: " + "; ".join(
            f"{c} ×{_fmt(s['growth'])} (peak RMS {_fmt(s['rms_peak'])}, on {s['task']}"
            f"{_broke(s)})"
            for c, s in bounded.items()) + ".")
    text.append(f"Criterion: a state drifts if its RMS grows to at least ×{DRIFT:g} its "
                f"step-0 value and above {LARGE:g} (the range of a tanh-bounded state).")
    if drifts and not drifted_too:
        verdict = ("As the essay claims, the prototype's state drifts early in training while "
                   "the bounded cells' states do not")
    elif drifts:
        verdict = (f"The prototype's state drifts early in training, as the essay claims, but "
                   f"so does the state of {', '.join(drifted_too)}, which the essay says "
                   f"{'is' if len(drifted_too) == 1 else 'are'} bounded; the measurement "
                   "disagrees with the essay there")
    else:
        verdict = (f"The measurement disagrees with the essay: the prototype's state did not "
                   f"drift over the first {early} training steps")
    already = math.isfinite(p["lyapunov_init"]) and p["lyapunov_init"] > ROUNDOFF
    # "the prototype's", not "its": after "so does the state of pseudo_lstm" that read as the
    # bounded cell's dynamics, whose λ₁ was negative in the committed report
    whose = "; the prototype's dynamics were"
    verdict += ((f"{whose} chaotic (λ₁ > 0), as the essay's “chaotic” says"
                 + (", but already at initialisation, before any training." if already
                    else ".") if chaotic else f"{whose} not chaotic (λ₁ ≤ 0 within "
                 "round-off), against the essay's “chaotic”.") if math.isfinite(p["lyapunov_max"])
                else ".")
    text.append(verdict)
    numbers = {"cells": per, "early_steps": early, "criterion": DRIFT,
               "prototype_drifts": drifts, "bounded_drifting": drifted_too,
               "prototype_chaotic": chaotic}
    return " ".join(text), numbers


def _broke(s):
    k = s.get("not_finite_from")
    return "" if k is None else f"; not finite from step {k}: training diverged"


def _drifts(s):
    return s["growth"] >= DRIFT and not s["rms_peak"] <= LARGE


def _key(s):
    g = s["growth"]
    return -math.inf if math.isnan(g) else g


# -- the report -----------------------------------------------------------------------
def _xi(point):
    t = point["timescale"]
    return point["words"] if point.get("words") and not math.isfinite(t) else t


def _row(r, chance):
    cps = r["checkpoints"]
    early = next((c for c in cps if c["step"] > 0), cps[-1])
    final = r["final"]
    return [r["cell"], r["task"], r["delay"], r["verdict"], final["loss"] / chance,
            final["accuracy"], _xi(cps[0]), _xi(early), _xi(cps[-1]), cps[0]["lyapunov"],
            cps[-1]["lyapunov"], max(c["state_rms"] for c in cps)]


HEADER = ["cell", "task", "delay", "verdict", "test loss / chance", "test accuracy",
          "ξ at init", "ξ early (first checkpoint)", "ξ trained", "λ₁ at init", "λ₁ trained",
          "max state RMS (test)"]


def build(setup, data, command):
    """(title, intro, header, sections, figures, data) for `write_report`."""
    runs, char = data["runs"], data.get("charlm")
    tasks = {t: make(t, d) for t, d in setup.tasks}
    chance = {t: task.chance_loss for t, task in tasks.items()}
    from . import figures as fg          # here: a refused train never loads matplotlib
    col = fg.colors(setup.cells)
    learned_text, learned_numbers = vanilla_findings(runs)
    drift_text, drift_numbers = drift_findings(runs, setup.drift_steps)
    drift_runs = _drift_runs(runs, drift_numbers)
    figs = {"learning": fg.learning(runs, col, chance, ((LEARNED, "learned"),
                                                        (PARTLY, "partly"))),
            "timescales": fg.timescales(runs, col, cap=10 * max(d for _, d in setup.tasks)),
            **({"drift": fg.drift(drift_runs, col, "State RMS through training")}
               if drift_runs else {})}            # (no empty axes where nothing was measured)
    probe = setup.train_setup().probe_steps
    sections = [
        Section("Vanilla against gated cells, across delays",
                f"Criterion — {criterion_text()}. " + learned_text, "learning",
                table=(HEADER, [_row(r, chance[r["task"]]) for r in runs])),
        Section("Gradient timescale at initialisation and during training",
                f"ξ = −1/(2 rate) (the squared norm falls by e in ξ steps), rate the slope of the log spectral norm of ∂s_T/∂s_(T−k), measured with "
                f"gradient_flow in float64 on {setup.train_setup().measure_batch} fixed task "
                f"sequences at least {probe} steps long (the task at a longer delay where it "
                "is shorter); words where there is no decay (“gradients grow”, “no decay "
                "within T”): drawn as triangles at the top. λ₁: top Lyapunov exponent on the "
                "same sequences. The dotted line is ξ = delay.", "timescales"),
        Section("Internal state drift early in training",
                "The essay: the prototype LSTM's unbounded state “very often becomes large "
                "and chaotic at the write step in the early stage of training”; the "
                "normalized LSTM, the pseudo LSTM and the GRU bound it. Measured: the RMS of "
                "the state at the last time step of each training batch over training, and the "
                f"mean write gate over its first {setup.drift_steps} steps (figure: each "
                "cell's run where its state grew most). "
                + drift_text, "drift" if drift_runs else None)]
    if char is not None:
        figs["charlm"] = fg.charlm(char)
        sections.append(_char_section(char))
    header = {"command": command, "seed": setup.seed, "device": device_name(setup.device),
              "dtype": setup.dtype,
              "sizes": f"hidden n = {setup.hidden}, batch = {setup.batch}, "
                       f"{setup.steps} Adam steps (lr {setup.lr:g}, gradient norm clipped "
                       f"at 1), gate bias {setup.gate_bias:g}",
              "tasks": ", ".join(f"{t}@{d}" for t, d in setup.tasks),
              "versions": ", ".join(f"{k} {v}" for k, v in versions().items())}
    out = {"setup": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(setup).items()},
           "criterion": criterion_text(), "runs": runs, "charlm": char,
           "findings": {"vanilla_vs_gated": learned_numbers, "drift": drift_numbers}}
    intro = ("Does a cell's gradient timescale predict whether it learns a long dependency? "
             "Each cell is trained on synthetic long-range tasks made in code, with its "
             "gradient flow measured at checkpoints; the text is computed from the numbers. "
             f"“The essay” is {ESSAY}, whose claims it tests.")
    return "Learnability: gradient decay against learning", intro, header, sections, figs, out


def _drift_runs(runs, numbers):
    chosen = {c: s["task"] for c, s in numbers.get("cells", {}).items()}
    return [r for r in runs if chosen.get(r["cell"]) == f"{r['task']}@{r['delay']}"]


def _char_section(char):
    i, t = char["init"], char["trained"]
    rows = [[k, d["bits"], d["rate"], _xi(d), d.get("cell_path_timescale", math.nan),
             d["lyapunov"]] for k, d in (("initialisation", i), ("trained", t))]
    better = t["bits"] < char["unigram_bits"]
    text = (f"A one-layer torch.nn.LSTM (hidden {char['setup']['hidden']}, embedding "
            f"{char['setup']['embed']}) trained for {char['setup']['steps']} Adam steps on "
            f"{char['corpus']}, {char['characters']} characters that ship with Python (no "
            f"download), the last {char['held_out']} held out. Held-out loss: "
            f"{_fmt(t['bits'])} bits per character after training, {_fmt(i['bits'])} at "
            f"initialisation; character frequencies alone give {_fmt(char['unigram_bits'])}"
            f" ({'the model beats them' if better else 'the model does not beat them'}). "
            f"gradlab.from_torch turns its weights into the cell lstm; on "
            f"{char['setup']['measure_batch']} held-out windows of "
            f"{char['setup']['measure_steps']} characters its gradient timescale is "
            f"{_fmt(i['timescale'])} steps at initialisation and {_fmt(t['timescale'])} "
            "after training.")
    return Section("A character-level LSTM on text that ships with Python", text, "charlm",
                   table=(["model", "held-out bits / char", "rate / step", "ξ",
                           "ξ of the cell path c → c", "λ₁"], rows))


def report(setup, out, *, force=False, command="gradlab train", progress=None, **where):
    """Train, measure and write the learnability report at `out` (on one CPU thread:
    `one_thread`); returns its path."""
    check(setup)
    with one_thread(setup.device):
        data = run(setup, progress=progress)
        title, intro, header, sections, figs, data = build(setup, data, command)
    return write_report(out, title=title, intro=intro, header=header, sections=sections,
                        figures=figs, data=data, force=force, kind=FIGURES, digits=DIGITS,
                        **where)


__all__ = ["DEFAULT_CELLS", "DEFAULT_TASKS", "LearnSetup", "parse_tasks", "run", "build",
           "report", "vanilla_findings", "drift_findings", "drift_stats", "check",
           "ensure_fits"]
