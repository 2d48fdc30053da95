"""The report's figures, drawn from the numbers in data.json with matplotlib's object API.

No pyplot: figures are built with `matplotlib.figure.Figure`, which needs no display and
keeps no global state. Non-finite values are not drawn as lines (matplotlib leaves gaps);
a cell with nothing to draw keeps its legend entry, saying why ("state overflowed: not
drawn"), and the summary table says where they occurred.
"""

import math

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure

PALETTE = ["#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
LOG10E = 1 / math.log(10)


def colors(names):
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _figure(width=7.5, height=4.4):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _finish(ax, legend=True):
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, ncol=2)


def _finite(a):
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan)


def _dots(values):
    """A marker where a curve has one finite point only (T = 1): a line of one point is
    not drawn at all, and the figure looked empty while its data held a value."""
    return {"marker": "o", "ms": 4} if np.isfinite(_finite(values)).sum() == 1 else {}


HALO = [patheffects.withStroke(linewidth=2.2, foreground="black")]   # white on white too
BOX = {"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.55, "linewidth": 0}


def _label(name, values, d=None):
    """A legend entry: the cell's name, with what went wrong where nothing of `values` can
    be drawn (an overflowed state: "state overflowed, not drawn"), or, for the decay
    figure (`d` given), why its rate is not a plain decay ("gradients grow")."""
    s = (d or {}).get("summary", {})
    status = s.get("status")
    if not np.isfinite(_finite(values)).any():
        return f"{name} ({status or 'not finite'}: not drawn)"
    if d is not None and status is not None:
        return f"{name} ({status})"
    return name


def decay_lines(d):
    """The lines `decay` draws for one cell's entry beyond its measurement: a subset of
    ("theory", "pascanu"), each where its rate and the lag-1 median are finite."""
    start = _finite(d["decay_log10"]["median"])[0]
    theory = d["summary"]["theory"]
    return {kind for kind, rate in (("theory", theory), ("pascanu", d.get("pascanu_rate")))
            if rate is not None and np.isfinite(start) and np.isfinite(rate)}


def decay(cells, col):
    """log10 ||d s_T / d s_{T-k}||_2 against k, median and quartile band, theory on top."""
    fig, ax = _figure()
    measured = np.concatenate([_finite(d["decay_log10"][q]) for d in cells.values()
                               for q in ("q1", "q3")])
    for name, d in cells.items():
        k, q = np.asarray(d["lags"]), d["decay_log10"]
        ax.plot(k, _finite(q["median"]), color=col[name], lw=1.8,
                label=_label(name, q["median"], d), **_dots(q["median"]))
        ax.fill_between(k, _finite(q["q1"]), _finite(q["q3"]), color=col[name], alpha=0.15,
                        lw=0)
        s, start, lines = d["summary"], _finite(q["median"])[0], decay_lines(d)
        if "theory" in lines:
            ax.plot(k, start + (k - 1) * s["theory"] * LOG10E, color=col[name], ls="--",
                    lw=1.2, label=f"{name}: {s['theory_label']}", **_dots(k))
        if "pascanu" in lines:
            ax.plot(k, start + (k - 1) * d["pascanu_rate"] * LOG10E, color=col[name], ls=":",
                    lw=1.2, label=f"{name}: Pascanu, lag 1 × ‖W‖₂^(k−1)", **_dots(k))
    ax.set(xlabel="lag k (steps back from s_T)", ylabel="log₁₀ ‖∂s_T / ∂s_(T−k)‖₂",
           title="How far gradients reach back")
    if np.isfinite(measured).any():        # frame the measurements; theory lines may leave
        lo, hi = np.nanmin(measured), np.nanmax(measured)
        ax.set_ylim(lo - 0.1 * (hi - lo) - 0.5, hi + 0.15 * (hi - lo) + 0.5)
    _finish(ax)
    return fig


def paths(cells, col):
    """Per-part blocks of the product: the LSTM's cell path against its hidden path."""
    multi = {n: d for n, d in cells.items() if "paths" in d}
    fig, ax = _figure()
    styles = ["-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2))]    # (a five-part state's five)
    for name, d in multi.items():
        k = np.asarray(d["lags"])
        order = {part: j for j, part in enumerate(d["state"])}     # a -> b by the state's
        pairs = sorted(d["paths"], key=lambda p: [order[q] for q in p.split("->")])  # order
        # (data.json sorts its keys: the styles followed, and moved); past two parts the
        # diagonal blocks alone, keeping the figure legible, each a style of its own (the
        # styles counted over every block gave h, i and o of h c i f o all solid lines)
        drawn = [p for p in pairs if len(d["state"]) <= 2 or len(set(p.split("->"))) == 1]
        for i, path in enumerate(drawn):
            a, b, values = *path.split("->"), d["paths"][path]
            ax.plot(k, _finite(values), color=col[name], ls=styles[i % len(styles)],
                    label=_label(f"{name}: ∂{b}_T/∂{a}_(T−k)", values), **_dots(values))
    ax.set(xlabel="lag k", ylabel="log₁₀ ‖block of ∂s_T/∂s_(T−k)‖₂",
           title="Cell path against hidden path")
    _finish(ax, legend=bool(multi))
    return fig


def spectra(cells, col):
    """Singular values of one step's Jacobian J_T, largest first (median over sequences)."""
    fig, ax = _figure()
    # matplotlib's log axis overflows (OverflowError at savefig) where its decade ticks
    # reach past ~1e308: a span to 1e280 already did; within 1e+-200 none does
    drawn = [1.0]
    for name, d in cells.items():
        sv = np.asarray(d["spectrum"], dtype=np.float64)
        fits = (sv >= 1e-200) & (sv <= 1e200)
        past = bool((np.isfinite(sv) & (sv > 0) & ~fits).any())
        drawn += list(sv[fits])
        ax.semilogy(np.arange(1, len(sv) + 1) / len(sv), np.where(fits, sv, np.nan),
                    color=col[name], label=f"{name} (values past 1e±200 not drawn)"
                    if past else _label(name, np.where(sv > 0, sv, np.nan)))
    ax.set_ylim(min(drawn) / 3, max(drawn) * 3)
    ax.set_xlim(0, 1.02)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="singular value index / state size", ylabel="σ_i(J_T)",
           title="One step's Jacobian: singular values")
    _finish(ax)
    return fig


def loss(cells, col):
    """log10 ||dL/dx_t|| against t for L = <v, s_T>."""
    fig, ax = _figure()
    for name, d in cells.items():
        q = d["loss_input_log10"]
        t = np.arange(len(q["median"]))
        ax.plot(t, _finite(q["median"]), color=col[name], label=_label(name, q["median"]),
                **_dots(q["median"]))
        ax.fill_between(t, _finite(q["q1"]), _finite(q["q3"]), color=col[name], alpha=0.12,
                        lw=0)
    ax.set(xlabel="time step t (the loss reads s_T at the right)",
           ylabel="log₁₀ ‖∂L/∂x_t‖", title="What a loss at the end sees of each input")
    _finish(ax)
    return fig


def drift(cells, col, names, title="State RMS over time"):
    """State RMS over time and gate saturation, the prototype against the bounded cells; the
    title says what was measured, the caption (computed from the numbers) what it shows."""
    fig = Figure(figsize=(7.5, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    # log scale where there is something positive to show (all zero: a state that never
    # moved, and matplotlib warned on stderr); there a zero RMS (the zero initial state at
    # t = 0) is not drawn, where matplotlib drew it as a plunge off the axis
    positive = any(np.any(_finite(cells[name]["drift"]["rms"]) > 0) for name in names)
    for name in names:
        d = cells[name]["drift"]
        rms = _finite(d["rms"])
        shown = np.where(rms > 0, rms, np.nan) if positive else rms
        zeros = np.flatnonzero(rms[1:] == 0) if positive else ()
        top.plot(np.arange(len(rms)), shown, color=col[name], **_dots(shown),
                 label=_label(name, rms) + (f" (RMS 0 at {len(zeros)} steps past t = 0, "
                                              "not drawn)" if len(zeros) else ""))
        if "saturation" in d:
            bottom.plot(np.arange(1, len(d["saturation"]) + 1), _finite(d["saturation"]),
                        color=col[name], label=name, **_dots(d["saturation"]))
    top.set(ylabel="RMS of the state", title=title, yscale="log" if positive else "linear")
    bottom.set(xlabel="time step t", ylabel="saturated gate share", ylim=(-0.02, 1.02))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    if names:
        top.legend(fontsize=7, ncol=2)
    return fig


def bptt(cells, col):
    """Share of the input-gradient mass that truncated BPTT over K steps keeps."""
    fig, ax = _figure()
    for name, d in cells.items():
        ax.semilogx(d["bptt"]["K"], _finite(d["bptt"]["fraction"]), marker="o", ms=3,
                    color=col[name], label=_label(name, d["bptt"]["fraction"]))
    ax.set(xlabel="truncation length K", ylabel="fraction of gradient kept", ylim=(0, 1.02),
           title="Truncated backpropagation through time")
    _finish(ax)
    return fig



def _log10_finite(timescale):
    xi = np.asarray(timescale, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(xi) & (xi > 0), np.log10(xi), np.nan)


def timescale_contours(ax, timescale, levels, color="white"):
    """Contours of a timescale grid (rows on the y index, columns on the x index, as an
    imshow of the same grid) at `levels` steps, drawn on log10 of its finite values and
    labelled in steps; the levels drawn. A grid of one row or column has no contour: its
    crossings are drawn instead (`timescale_crossings`)."""
    z = _log10_finite(timescale)
    if min(z.shape) < 2:
        axis = "x" if z.shape[0] == 1 else "y"
        return timescale_crossings(ax, np.arange(z.size), np.power(10.0, z.ravel()), levels,
                                   axis=axis, color=color)
    finite = z[np.isfinite(z)]
    shown = [m for m in (math.log10(v) for v in levels)
             if finite.size and finite.min() < m < finite.max()]
    if not shown:
        return []
    lines = ax.contour(np.arange(z.shape[1]), np.arange(z.shape[0]), np.ma.masked_invalid(z),
                       levels=shown, colors=color, linewidths=1.0)
    lines.set(path_effects=HALO)        # (a white line crossing no-data cells, which are
    for text in ax.clabel(lines, fmt={m: f"{10 ** m:g}" for m in shown}, fontsize=6,
                          colors=color):                  # white too, was invisible there)
        text.set_bbox(BOX)     # (a box, not a halo: SVG keeps a boxed label as text)
    return [10 ** m for m in shown]


def timescale_crossings(ax, positions, timescale, levels, *, axis="x", color="white"):
    """Where a 1-D timescale curve (values at `positions` along the panel's x or y axis)
    crosses each level (linear in log10 between neighbouring finite values): a line
    across the panel there, labelled in steps at its foot; the levels drawn."""
    z = _log10_finite(timescale)
    pos = np.asarray(positions, dtype=np.float64)
    drawn = []
    for level in levels:
        m = math.log10(level)
        for i in range(len(z) - 1):
            a, b = z[i], z[i + 1]
            if not (np.isfinite(a) and np.isfinite(b) and a != b
                    and min(a, b) <= m < max(a, b)):
                continue
            at = pos[i] + (m - a) / (b - a) * (pos[i + 1] - pos[i])
            if axis == "x":
                ax.axvline(at, color=color, lw=1.0, path_effects=HALO)
                ax.text(at, 0.02, f"{level:g}", color=color, fontsize=6, ha="right",
                        va="bottom", rotation=90, transform=ax.get_xaxis_transform(),
                        bbox=BOX)
            else:
                ax.axhline(at, color=color, lw=1.0, path_effects=HALO)
                ax.text(0.02, at, f"{level:g}", color=color, fontsize=6, va="bottom",
                        transform=ax.get_yaxis_transform(), bbox=BOX)
            drawn.append(level)
    return drawn
