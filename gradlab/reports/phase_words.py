"""The phase diagram's words, computed from its points: what the gate bias does to each
gated cell's memory, where a cell with no gate keeps it longest, and what the theory's
contours show (and, where its curve leaps to infinity within one step, what they cannot).
Nothing here is said that the points do not show."""

import math

import numpy as np

RISE = 1e-9      # a timescale "falls" as the gate bias rises only by more than this share


def memory(p):
    """A point's timescale as an order: inf where gradients do not decay (grow, or keep
    their size), 0 for a zero product, None where nothing was measured, or where the norm
    rises too little within T to tell growth from a slow decay (`unsure`: marked ?)."""
    rate = p["rate"]
    if not isinstance(rate, (int, float)) or math.isnan(rate) or unsure(p):
        return None
    if rate == -math.inf:
        return 0.0
    return float(p["timescale"]) if rate < 0 else math.inf


def unsure(p):
    """A rise too small within T to tell growth from a slow decay (the table's ?)."""
    rate = p["rate"]
    return isinstance(rate, (int, float)) and rate > 0 and not p.get("converged", True)


def gate_words(grid, points):
    """What a larger gate bias does to each gated cell's memory, per weight scale: longer
    everywhere, never shorter but unchanged somewhere (named), or shorter somewhere (with
    one example). Nothing where the grid has one gate bias (nothing to compare)."""
    if len(grid.gate_biases) < 2:
        return ""
    holds, flat, fails = [], [], []
    for cell, gated in zip(grid.cells, grid.gates()):
        if not gated:
            continue
        falls, same, compared = [], [], 0
        for ws in grid.weight_scales:
            column = sorted((p["gate_bias"], memory(p)) for p in points
                            if p["cell"] == cell and p["weight_scale"] == ws
                            and memory(p) is not None)
            compared += len(column) > 1
            drop = next(((a, b) for a, b in zip(column, column[1:])
                         if b[1] < a[1] * (1 - RISE)), None)
            if drop is not None:
                falls.append((ws, drop))
            elif len(column) > 1 and not any(b[1] > a[1] * (1 + RISE)
                                             for a, b in zip(column, column[1:])):
                same.append((ws, column[0][1]))          # no longer anywhere: unchanged
        if falls:
            ws, ((g1, x1), (g2, x2)) = falls[0]
            fails.append(f"{cell} at σ_w = {', '.join(f'{w:g}' for w, _ in falls)} (at σ_w "
                         f"= {ws:g}, ξ = {_xi(x1)} at gate bias {g1:g} against {_xi(x2)} at "
                         f"{g2:g})")
        elif same:
            flat.append(f"{cell} (unchanged at σ_w = "
                        + ", ".join(f"{w:g}: ξ = {_xi(x)}" for w, x in same) + ")")
        elif compared:              # (no column of two measured points: nothing to say)
            holds.append(cell)
    text = ""
    if holds:
        text += (f"The gate bias lengthens the memory of {', '.join(holds)} at every weight "
                 "scale measured. ")
    if flat:
        text += ("The gate bias never shortens the memory, and leaves it unchanged at some "
                 f"weight scales, for {'; '.join(flat)}. ")
    if fails:
        text += f"The gate bias does not lengthen it everywhere for {'; '.join(fails)}. "
    return text


def vanilla_words(grid, points):
    """Where each cell with no gate bias keeps memory longest, and where gradients grow."""
    text = ""
    for cell, gated in zip(grid.cells, grid.gates()):
        if gated:
            continue
        row = sorted((p["weight_scale"], memory(p)) for p in points
                     if p["cell"] == cell and memory(p) is not None)
        finite = [(ws, x) for ws, x in row if math.isfinite(x)]
        grows = [ws for ws, x in row if x == math.inf]
        text += f"{cell} has no gate: its memory depends on the weight scale alone"
        if finite:
            ws, x = max(finite, key=lambda r: r[1])
            text += f", longest among the decays at σ_w = {ws:g} (ξ = {x:.3g})"
        if grows and all(x == math.inf for w, x in row if w >= min(grows)):
            text += f"; gradients do not decay from σ_w = {min(grows):g} on"
        elif grows:
            text += f"; gradients do not decay at σ_w = {', '.join(f'{w:g}' for w in grows)}"
        doubt = sorted({p["weight_scale"] for p in points if p["cell"] == cell and unsure(p)})
        if doubt:
            text += (f"; at σ_w = {', '.join(f'{w:g}' for w in doubt)} the norm rises too "
                     "little to tell growth from a slow decay")
        text += ". "
    return text


def on_axis(critical, weight_scales):
    """Does the critical weight scale lie within the grid's weight scales, where the map
    can draw its line?"""
    return critical is not None and min(weight_scales) <= critical <= max(weight_scales)


def critical_words(critical, weight_scales):
    """Where mean field puts rnn_tanh's critical line, and that it is not drawn where it
    lies off the map (it was drawn on the last column, labelled with its own σ_w)."""
    text = f" Mean-field theory puts rnn_tanh's critical line χ = 1 at σ_w = {critical:.3f}"
    if not on_axis(critical, weight_scales):
        text += (f", outside the weight scales measured ({min(weight_scales):g} to "
                 f"{max(weight_scales):g}): not drawn")
    return text + "."


def _xi(x):
    return "∞" if x == math.inf else f"{x:.3g}"


def unplaced_crossings(theory, levels):
    """Where a theory curve (a cell with no gate bias) leaps from a finite timescale to
    inf between neighbouring points: the levels it passes there, whose lines cannot be
    placed; [(cell, levels, weight scale before, after, the finite value)]."""
    out = []
    for cell, curve in theory.get("curves", {}).items():
        ws, ts = curve["weight_scale"], np.asarray(curve["timescale"], dtype=np.float64)
        for i in range(len(ts) - 1):
            a, b = ts[i], ts[i + 1]
            if np.isnan(a) or np.isnan(b) or np.isfinite(a) == np.isfinite(b):
                continue
            finite = a if np.isfinite(a) else b
            passed = [lv for lv in levels if lv > finite]
            if passed:
                out.append((cell, passed, ws[i], ws[i + 1], float(finite)))
    return out


def unplaced_levels(theory, levels):
    """Where a gated cell's theory map leaps from finite timescales to inf between
    neighbouring points (grid rows or columns): the levels at or above every finite value
    it holds, which no contour can place (contours run between finite values, and such a
    level is passed only in a leap); [(cell, levels, the largest finite value)]."""
    out = []
    for cell, grid in theory.get("timescale", {}).items():
        if cell in theory.get("curves", {}):
            continue
        z = np.atleast_2d(np.asarray(grid, dtype=np.float64))
        finite, inf = np.isfinite(z) & (z > 0), np.isposinf(z)
        leaps = [(a[:, 1:] & b[:, :-1]).any() or (a[:, :-1] & b[:, 1:]).any()
                 for a, b in ((finite, inf), (finite.T, inf.T))]
        if not any(leaps):
            continue
        top = float(z[finite].max())
        passed = [lv for lv in levels if lv >= top]
        if passed:
            out.append((cell, passed, top))
    return out


def theory_words(theory):
    o = theory["options"]
    return (f"{theory['method']} mean field (gradlab.meanfield: N = {o['units']} units, "
            f"m = {o['inputs']} inputs, T = {o['steps']}, fitted over lags "
            f"{o['lags'][0]}..{o['lags'][1]})")


def theory_text(grid, points, theory):
    """What drew the contours, and how far they are from the measured map (computed here
    from the same numbers, at the points where both have a converged timescale)."""
    ws, gb = list(grid.weight_scales), list(grid.gate_biases)
    ratios = []
    for p in (p for p in points if p["cell"] in theory["timescale"]):
        xi = theory["timescale"][p["cell"]][gb.index(p["gate_bias"])][
            ws.index(p["weight_scale"])]
        if p["rate"] < 0 and p.get("converged", True) and 0 < p["timescale"] < math.inf \
                and 0 < xi < math.inf:
            ratios.append(abs(math.log10(xi / p["timescale"])))
    units = theory["options"]["units"]
    text = (f"White lines: the timescales ξ = {', '.join(map(str, theory['levels']))} steps "
            f"of {theory_words(theory)}, for the same initialisation and inputs, over the "
            f"measurement at n = {grid.hidden}" + (
                f" (the theory's {units} units stand for the large-width limit, so part of "
                "any difference is the measurement's finite width)."
                if units > grid.hidden else "."))
    unread = theory.get("unread", {})
    for cell, why in unread.items():
        text += f" No theory is drawn for {cell}: {why.rstrip('.')}."
    left = [c for c in grid.cells if c not in theory["timescale"] and c not in unread]
    if left:
        text += (f" No theory is drawn for {', '.join(left)}: a merge of shards does not "
                 "import cell files, and the theory needs the cell's equations.")
    if theory["curves"]:
        text += (" A cell with no gate bias has one curve over the weight scale: its lines "
                 "mark where it crosses each timescale.")
    for cell, passed, a, b, finite in unplaced_crossings(theory, theory["levels"]):
        text += (f" {cell}'s curve passes ξ = {', '.join(f'{v:g}' for v in passed)} between "
                 f"σ_w = {a:.4g} and {b:.4g}, where it leaps from {finite:.3g} to ∞ (no "
                 f"decay within its T = {theory['options']['steps']} steps, over which a "
                 "timescale much longer than T reads as none: the leap can come before the "
                 "critical line): those lines are not drawn.")
    for cell, passed, top in unplaced_levels(theory, theory["levels"]):
        text += (f" {cell}'s theory leaps from a finite timescale (at most {top:.3g}) to ∞ "
                 f"between neighbouring points of the map, passing ξ = "
                 f"{', '.join(f'{v:g}' for v in passed)} there: "
                 + ("those lines cannot be placed and are not drawn." if len(passed) > 1
                    else "that line cannot be placed and is not drawn."))
    if ratios:
        text += (f" At {'the one point' if len(ratios) == 1 else f'the {len(ratios)} points'}"
                 f" where both have a converged ξ, theory and measurement differ by a factor "
                 f"of {10 ** float(np.median(ratios)):.2f} at the median (at most "
                 f"{10 ** max(ratios):.3g}).")
    return text
