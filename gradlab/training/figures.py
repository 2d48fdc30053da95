"""The learnability report's figures, drawn from the numbers in its data.json (matplotlib's
object API, no pyplot, as gradlab.reports.figures)."""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..reports.figures import colors

__all__ = ["colors", "learning", "timescales", "drift", "charlm"]


def _finite(values):
    a = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan)


def _by_task(runs):
    out = {}
    for r in runs:
        out.setdefault(r["task"], {}).setdefault(r["cell"], []).append(r)
    return out


def _delays_and_legend(ax, delays):
    """Ticks at the delays trained (one delay had ticks at 19.00, 19.25, ...) and the
    legend beside the panel, not on it: placed on it ("best"), it hid a cell's point."""
    ax.set_xticks(delays, [str(d) for d in delays])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)


def _unplotted(label, delays, values, what):
    """label, noting the delays whose value (finite, at most 0: a loss of exactly 0, a
    timescale of 0) has no place on a log axis and is not drawn."""
    off = [str(d) for d, v in zip(delays, values) if np.isfinite(v) and v <= 0]
    if not off:
        return label
    return f"{label} ({what} at delay {', '.join(off)}, not drawn)"


def _dodge(cells, slots):
    """The x of each of `slots` series of markers (k: function of delays): side by side
    around each delay, so that equal values (several cells' "gradients grow" triangles at
    the cap, the same loss) do not hide one another."""
    delays = sorted({r["delay"] for rs in cells.values() for r in rs})
    step = 0.012 * ((delays[-1] - delays[0]) or 10) if delays else 0.0
    if len(delays) > 1:       # one delay's markers stay clear of the next delay's
        step = min(step, 0.6 * min(np.diff(delays)) / slots)
    return [lambda d, k=k: np.asarray(d, float) + (k - (slots - 1) / 2) * step
            for k in range(slots)]


def learning(runs, col, chance, thresholds):
    """Final test loss over chance loss against the delay, one panel per task."""
    tasks = _by_task(runs)
    fig = Figure(figsize=(7.5, 3.6 * max(1, len(tasks))), layout="constrained")
    axes = fig.subplots(max(1, len(tasks)), 1, squeeze=False)[:, 0]
    for ax, (task, cells) in zip(axes, tasks.items()):
        drawn, at = False, _dodge(cells, len(cells))
        for k, (cell, rs) in enumerate(cells.items()):
            rs = sorted(rs, key=lambda r: r["delay"])
            ratio = _finite([r["final"]["loss"] / chance[task] for r in rs])
            drawn = drawn or bool((ratio > 0).any())    # (a loss of 0 is not drawn)
            delays = [r["delay"] for r in rs]
            ax.semilogy(at[k](delays), np.where(ratio > 0, ratio, np.nan), marker="o",
                        color=col[cell], label=_unplotted(cell, delays, ratio, "loss 0"))
        if not drawn and thresholds:    # every run diverged or lost 0: frame the thresholds
            levels = [t for t, _ in thresholds]
            ax.set_ylim(min(levels) / 3, max(levels) * 3)
        for t, words in thresholds:
            ax.axhline(t, color="grey", lw=0.8, ls="--")
            ax.annotate(words, (0, t), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")
        ax.set(xlabel=f"{task}: delay (steps)", ylabel="final test loss / chance loss")
        _delays_and_legend(ax, sorted({r["delay"] for rs in cells.values() for r in rs}))
    axes[0].set_title("Which cells learned, by delay")
    return fig


def timescales(runs, col, cap):
    """Gradient timescale xi at initialisation (open) and after training (filled) against
    the delay; xi = inf (no decay over the probe) is drawn at `cap` as a triangle."""
    tasks = _by_task(runs)
    fig = Figure(figsize=(7.5, 3.6 * max(1, len(tasks))), layout="constrained")
    axes = fig.subplots(max(1, len(tasks)), 1, squeeze=False)[:, 0]
    for ax, (task, cells) in zip(axes, tasks.items()):
        delays = sorted({r["delay"] for rs in cells.values() for r in rs})
        at = _dodge(cells, 2 * len(cells))                # init and trained apart
        for k, (cell, rs) in enumerate(cells.items()):
            rs = sorted(rs, key=lambda r: r["delay"])
            for which, fill, ls in ((0, "none", "--"), (-1, col[cell], "-")):
                d = at[2 * k + (which != 0)]([r["delay"] for r in rs])
                xi = np.array([r["checkpoints"][which]["timescale"] for r in rs], float)
                grows = np.isposinf(xi)
                label = f"{cell} ({'init' if which == 0 else 'trained'})"
                ax.plot(d, np.where(np.isfinite(xi) & (xi > 0), xi, np.nan), ls=ls,
                        marker="o", mfc=fill, color=col[cell],
                        label=_unplotted(label, [r["delay"] for r in rs], xi, "ξ ≤ 0"))
                if grows.any():
                    ax.plot(d[grows], np.full(grows.sum(), cap), ls="none",
                            marker="^", mfc=fill, color=col[cell])
        ax.plot(delays, delays, color="grey", lw=0.8, ls=":", marker="_", ms=14,
                label="ξ = delay")                 # (the marker: a single delay's level)
        ax.set(xlabel=f"{task}: delay (steps)", ylabel="gradient timescale ξ (steps)",
               yscale="log")
        _delays_and_legend(ax, delays)
    axes[0].set_title("Timescale at initialisation (open) and after training (filled)")
    return fig


def drift(runs, col, title):
    """State RMS at the final step over the training steps (top) and the mean write gate
    over the first ones (bottom), one line per cell."""
    fig = Figure(figsize=(7.5, 5.6), layout="constrained")
    # one training-step axis for both: the write gate is recorded over the first
    # --drift-steps steps only, and drawn on its own x range it read as the whole of
    # training (0..49 under 0..199, with nothing to say it stopped)
    top, bottom = fig.subplots(2, 1, sharex=True)
    # a state that stays exactly 0 (a saturated gate) has no place on a log axis: its
    # zeros are said in the legend, and only where no run has a positive value is the
    # axis linear
    log = any((_finite(r["state_rms"]) > 0).any() for r in runs)
    for r in runs:
        rms = _finite(r["state_rms"])
        shown = rms > 0 if log else np.isfinite(rms)
        zeros = int((rms == 0).sum())
        label = r["cell"] + (f" (RMS 0 at {zeros} steps{', not drawn' if log else ''})"
                             if zeros else "")
        top.plot(np.arange(len(rms))[shown], rms[shown], color=col[r["cell"]], label=label)
        write = _finite(r["write_gate"])
        keep = np.isfinite(write)
        if keep.any():
            bottom.plot(np.arange(len(write))[keep], write[keep], color=col[r["cell"]],
                        label=r["cell"])
    top.set(xlabel="training step", ylabel="state RMS at the last time step",
            yscale="log" if log else "linear", title=title)
    recorded = max((int(np.flatnonzero(np.isfinite(_finite(r["write_gate"])))[-1]) + 1
                    for r in runs if np.isfinite(_finite(r["write_gate"])).any()), default=0)
    steps = max((len(r["state_rms"]) for r in runs), default=0)
    bottom.set(xlabel="training step" + (f" (write gate recorded over the first {recorded})"
                                         if 0 < recorded < steps else ""),
               ylabel="mean write gate (i; GRU: 1 − z)", ylim=(-0.02, 1.02))
    top.tick_params(labelbottom=True)
    for ax in (top, bottom):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # (no step 2.5 in short runs)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, ncol=2)
    return fig


def charlm(record):
    """Training loss of the character LSTM in bits per character, with the baseline."""
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    bits = _finite(record["train_bits"])
    ax.plot(np.arange(len(bits)), bits, color="#1f77b4", label="training batch")
    ax.axhline(record["unigram_bits"], color="grey", ls="--",
               label="character frequencies (held out)")
    ax.axhline(record["trained"]["bits"], color="#d62728", ls=":",
               label="trained, held out")
    ax.set(xlabel="training step", ylabel="bits per character",
           title="Character-level LSTM on " + record["corpus"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
