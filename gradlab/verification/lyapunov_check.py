"""Checking someone else's Lyapunov exponents on the same trajectory, and naming the mistake.

`check_lyapunov(fn, cell, params, xs, k)` runs the user's `fn(params, xs, k)` (top-k
exponents per step, natural log, from a zero state; (k,) or (B, k)) and gradlab's exact
Benettin iteration (Q_t R_t = J_t Q_{t-1}, J_t from the symbolic derivation) on the same
inputs. When they differ it recomputes the exponents the ways published code gets them
wrong, and says which one the user's matches:

    reverse time   a QR step on the transposed Jacobian, Q_t R_t = J_t^T Q_{t-1}: the
                   product J_1 J_2 ... J_T, the dynamics run backwards (its spectrum differs
                   from the forward one, e.g. under periodic input)
    partial state  one state part alone (an LSTM analysed on h with c frozen, or on c)
    log base       log2 or log10 instead of the natural log
    not averaged   the sum over steps instead of the mean per step
"""

import dataclasses
import inspect
import math
import numbers

import numpy as np
import torch

from .. import registry
from ..errors import GradlabError, arguments_checked
from ..flow.bound import setup
from .exponents import (SPREAD, distance as _distance, exponent_pair, exponents, lowest,
                        resolvable, roundoff_roof, spread as _spread)
from .trajectory import trajectories
from .user import call_user, cell_part, real_answer, real_array
from .volume import volume_mismatch


@dataclasses.dataclass(eq=False)       # arrays: compared by identity
class LyapunovResult:
    """What `check_lyapunov` found: ok (also `bool(result)`), yours and exact (k,) (the
    user's exponents, their mean over sequences, and gradlab's on the same trajectory),
    max_error (max |yours - exact|) and diagnosis (sentences; print(result) shows them)."""
    ok: bool
    yours: np.ndarray            # (k,): the user's exponents (mean over sequences)
    exact: np.ndarray            # (k,): gradlab's on the same trajectory
    max_error: float             # max |yours - exact|
    diagnosis: list

    def __bool__(self):              # `if check_lyapunov(...)`: true only where it agrees
        return bool(self.ok)

    def __str__(self):
        head = ("agrees" if self.ok else "differs") + f": max |difference| {self.max_error:.3g}"
        return "\n".join([head, *self.diagnosis])

    def _repr_pretty_(self, p, cycle):     # IPython and notebooks show what print shows
        p.text(str(self))


def _mean(a):
    a = real_array(a).numpy()
    return a.mean(0) if a.ndim == 2 else a


SCALES = (("", 1.0), ("log base 2 instead of the natural log", 1 / math.log(2)),
          ("log base 10 instead of the natural log", 1 / math.log(10)))
REVERSED = ("the transposed Jacobian in each QR step (Q R = J_t^T Q): that measures the "
            "product in reverse time order, J_1 J_2 ⋯ J_T, not J_T ⋯ J_1")
SEEDS = 3          # start vectors whose spread sets the default tolerance (SPREAD times)
MORE = 16          # and before calling an answer wrong by it: 3 lie close by chance
RESOLUTION = 0.05  # refuse to check when that atol exceeds 5 % of the top exponent
                   # (at least of 0.1): on too short a run anything near would pass
HALF = 0.5         # or half of it, however small: near the edge of chaos (exponents of
                   # -1e-3, atol 1.3e-3 at T = 3000) zeros and log10 of them passed


def _variants(cell, J, k, T, drift=0.0, eps=0.0, seeds=SEEDS):
    """(mistakes, exponents (k,), spread, low) for every combination of the mistakes
    published code makes, the exact exponents first (no mistakes); spread is the largest
    range of the exponents above the floor (`resolvable`) over `seeds` random start
    vectors (the O(1/T) effect of the start), low what `_distance` allows below it
    (`lowest`, with round-off in precision `eps` where exact zeros make an exponent -inf)."""
    n = J.shape[-1] // len(cell.state_names)
    structures = [((), J, False), ((REVERSED,), J, True)]
    for i, name in enumerate(cell.state_names if len(cell.state_names) > 1 and k <= n
                             else ()):       # each part alone (h, and c: its diag(f))
        part = (f"the state part {name} alone (the other parts held fixed): gradlab's "
                f"state is ({', '.join(cell.state_names)}), and every part carries gradient")
        sub = J[:, :, i * n:(i + 1) * n, i * n:(i + 1) * n].contiguous()
        structures += [((part,), sub, False), ((REVERSED, part), sub, True)]
    scales = [*SCALES, *((f"the sum over steps, not the mean per step{w and ', and ' + w}",
                          c * T) for w, c in SCALES)]
    for mistakes, M, transpose in structures:
        both = [exponent_pair(M, k, transpose=transpose, seed=s) for s in range(seeds)]
        runs, rounded = (np.stack([pair[i].mean(0) for pair in both]) for i in (0, 1))
        floor = float(resolvable(runs[0], M)[0])
        spread = max(_spread(runs, floor), drift)     # (a trajectory's own, if it parts)
        roof = roundoff_roof(M, k, eps).mean(0)
        coarse = _coarse(resolvable(runs[0], M, eps)[0], M, eps)
        for words, c in scales:
            yield (tuple(m for m in (*mistakes, words) if m), runs[0] * c, spread * abs(c),
                   lowest(runs, floor, c, rounded, roof, coarse))


def _coarse(floor, J, eps):
    """The floor of the answer's precision where it is coarser than J's, else -inf."""
    return float(floor) if eps > torch.finfo(J.dtype).eps else -math.inf


def blind_spots(exact, floor, per_sequence, atol, ndim, given=False):
    """Sentences for a passing check that these inputs cannot tell some wrong answers from
    the right one, because the exact exponents (k,) above `floor`, or each sequence's own
    (`per_sequence`, (B, k)), lie within `atol` (a row's tolerance where `ndim` is 2) of
    one another: exponents that close pass in any order or averaged together (a mean over
    the wrong axis, where B = k), and a sequence's own exponents pass for the mean, or for
    another sequence's row (one row for all, rows in another order). Measured: at B = 4,
    T = 300 such wrong answers agreed in 3 and 4 of 9 runs, with nothing said."""
    out, more = [], "" if given else " More steps narrow the tolerance."
    above = np.isfinite(exact) & (exact > floor)
    top = np.sort(exact[above])
    gap = float(np.min(np.diff(top))) if len(top) > 1 else math.inf
    if gap <= atol:
        out.append(f"But two of the exact exponents are only {gap:.3g} apart, within the "
                   f"tolerance {atol:.3g}: an answer with those out of order or averaged "
                   f"together would agree too.{more}")
    B = per_sequence.shape[0]
    rows = per_sequence[:, above]                    # (noise below the floor says nothing)
    pairs = [(a, b) for i, a in enumerate(rows)
             for b in ([exact[above]] if ndim == 1 else np.delete(rows, i, 0))]
    near = min((_distance(a, b) for a, b in pairs), default=math.inf) if above.any() \
        else math.inf
    if B > 1 and near <= atol:
        wrong = ("one sequence's answer given as the mean" if ndim == 1 else
                 "rows given for the wrong sequence, or one row for all")
        whose = "the mean" if ndim == 1 else "another sequence's"
        out.append(f"But one sequence's own exponents lie within {near:.3g} of {whose} "
                   f"(tolerance {atol:.3g}): {wrong} would agree too. Inputs that differ "
                   f"more between sequences tell them apart.{more}")
    return out


@arguments_checked
def check_lyapunov(fn, cell, params, xs, k, *, atol=None):
    """Compare the user's `fn(params, xs, k)` with gradlab's exponents of `cell` on inputs xs
    (T, B, m) from a zero state; a `LyapunovResult`. `atol`: per-step exponents agree when
    within it. By default it is measured, for the exact exponents and for each mistaken
    variant alike: SPREAD times the largest spread of gradlab's own estimate over SEEDS
    random start vectors (finite-T estimates from different start vectors differ by
    O(1/T)), at least 1e-6 of the largest exponent's size.

    When they differ, the right exponents out of order are named as such, and every
    combination of the mistakes published code makes (reverse time, a partial state,
    another log base, a sum over steps) is tried and the one the user's exponents match
    is named, all its mistakes together. When they agree but a mistaken variant agrees as
    well (on inputs without time structure the reverse-time product can have the same
    exponents), the result says the check cannot tell them apart on these inputs; so it
    does where exponents lie within the tolerance of each other, or a sequence's of
    another's or of the mean (`blind_spots`). A function that returns one row per
    sequence is checked row by row too. When xs is so short that gradlab's own estimate
    moves by more than RESOLUTION of the top exponent with the start vector, it refuses
    to judge (GradlabError) unless given an atol."""
    if not callable(fn):
        raise GradlabError(f"fn must be a function fn(params, xs, k), got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):       # (its call returns a coroutine, never run)
        raise GradlabError("fn is an async function (async def): gradlab calls it as a plain "
                           "function, fn(params, xs, k), and reads what it returns")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise GradlabError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    given = atol is not None
    if given and (isinstance(atol, bool) or not isinstance(atol, numbers.Real)
                  or not 0 < atol < math.inf):
        raise GradlabError(f"atol must be a positive finite number, got {atol!r}")
    # xs as gradlab.lyapunov takes it: real numbers, (T, B, m), on the params' dtype; the
    # cell's own parameters for gradlab's side (fn gets every entry, a helper of its own too)
    cell = registry.cell(cell)
    own = cell_part(cell, params)
    cell, _, xs, _ = setup(cell, own, xs, call="check_lyapunov")
    if not bool(torch.isfinite(xs).all()):
        raise GradlabError("xs holds nan or inf: there are no exact exponents to compare with")
    copy = {name: v.clone() if isinstance(v, torch.Tensor) else v      # entries the cell
            for name, v in params.items()} if isinstance(params, dict) else params  # ignores
    got = call_user(fn, copy, xs.detach().clone(), k)       # copies: fn may write into them
    answer, answered = real_answer(got)          # answered: its dtype, for round-off
    yours, rows = _mean(got), answer.numpy()
    if rows.ndim == 2 and rows.shape[0] != xs.shape[1]:       # one row per sequence, or not
        raise GradlabError(f"the function under test returned {rows.shape[0]} rows; xs holds "
                           f"{xs.shape[1]} sequences (expected ({k},) or ({xs.shape[1]}, {k})"
                           + ("; yours is its transpose" if rows.shape == (k, xs.shape[1])
                              else "") + ")")
    J, J2 = trajectories(cell, own, xs)       # (J2: a chaotic run parted by rounding)
    T, S = J.shape[0], J.shape[-1]
    if k > S and yours.shape == (S,):                 # capped at the state size, as gradlab
        k = S
    elif k > S and yours.shape == (k,):               # more than a state of size S has
        raise GradlabError(f"the function under test returned {k} exponents, but a state "
                           f"of size {S} has only {S}; expected ({S},) or (B, {S})")
    if yours.shape != (k,):
        raise GradlabError(f"the function under test returned shape {tuple(np.shape(got))}; "
                           f"expected ({k},) or (B, {k})")
    yours, k = yours[:min(k, S)], min(k, S)
    with np.errstate(invalid="ignore"):       # (B, k): how far exponents move with it
        drift = np.zeros((xs.shape[1], k)) if J2 is None else np.nan_to_num(
            np.abs(exponents(J2, k) - exponents(J, k)), nan=0.0, posinf=0.0)
    eps = max(torch.finfo(d).eps for d in (answered, J.dtype) if d.is_floating_point)
    move = float(np.abs(drift.mean(0)).max())
    variants = list(_variants(cell, J, k, T, move, eps))
    apart = "" if J2 is None else (" or along a run that rounding alone parts from this "
                                   "one (the trajectory is chaotic)")
    caveat = [] if not (given and J2 is not None and SPREAD * drift.max() > atol) else [
        f"But the trajectory is chaotic: along a run that rounding alone parts from it, "
        f"gradlab's own exponents move by up to {drift.max():.3g}, so a right routine may "
        f"miss atol {atol:.3g}; at least {SPREAD * drift.max():.3g} (or none) judges it."]

    def differs(err, words):           # (a verdict "differs", with the caveat if any)
        return LyapunovResult(False, yours, exact, err, words + caveat)
    exact, floor = variants[0][1], variants[0][3][0]
    if np.isnan(yours).any():                  # no distance to measure: say so, not "inf"
        where = np.flatnonzero(np.isnan(yours)).tolist()
        return differs(math.nan, [
            f"Your exponents hold nan (entries {where}); exact: "
            f"{np.round(exact, 4).tolist()}. (A log of R's diagonal without abs? R_ii < 0 "
            "where QR flips a sign: take log |R_ii|.)"])
    size = lambda v, f: float(np.max(np.abs(v[np.isfinite(v) & (v > f)]),      # noqa: E731
                                     initial=1.0))
    tolerance = lambda v, spread, f: atol if given else max(                 # noqa: E731
        SPREAD * (spread if math.isfinite(spread) else 0.0), 1e-6 * size(v, f))
    tolerances = [tolerance(v, spread, low[0]) for _, v, spread, low in variants]
    distance = [_distance(yours, v, low) for _, v, _, low in variants]
    # the scale is the top exponent's: one atol judges them all, and with many asked
    # the most negative (-5 against a top of -0.34, k = S = 16) let the top be 20 % off
    top = float(abs(exact[0])) if math.isfinite(exact[0]) and exact[0] > floor else 0.0
    coarse = lambda tol: not given and (tol > RESOLUTION * max(top, 0.1)       # noqa: E731
                                        or tol > HALF * max(top, 2e-5))
    if not coarse(tolerances[0]) and distance[0] > tolerances[0]:
        variants[0] = next(_variants(cell, J, k, T, move, eps, MORE))  # before "differs":
        (_, v, spread, low), distance[0] = variants[0], _distance(      # MORE start vectors
            yours, exact, variants[0][3])
        tolerances[0] = max(tolerances[0], tolerance(v, spread, low[0]))
        short = coarse(tolerances[0]) and distance[0] <= tolerances[0]  # (else wrong even so)
    else:
        short = coarse(tolerances[0])
    if short:
        raise GradlabError(
            f"xs is too short to check exponents: over {T} steps gradlab's own estimates "
            f"differ by {tolerances[0] / SPREAD:.3g} between start vectors{apart}, so any answer "
            f"within {tolerances[0]:.3g} of {np.round(exact, 4).tolist()} would pass; give "
            "more steps (estimates converge as 1/T) or an explicit atol")
    if rows.ndim == 1 and np.isneginf(exact).all() and np.isfinite(exponents(J, k)).any():
        raise GradlabError(   # (every sequence -inf, a zero W: then the mean is the answer)
            "the exact mean exponents are all -inf (some sequence's product is exactly "
            "zero, e.g. every ReLU unit dead at a step) while others are finite, so a mean "
            f"hides what is to check; return one row per sequence, ({xs.shape[1]}, {k})")
    error, atol = distance[0], tolerances[0]
    row_tol, per_sequence = atol, None               # each row's tolerance and exponents
    if error <= atol and rows.ndim == 2:             # per sequence too, not just the mean
        roofs = roundoff_roof(J, k, eps)

        def per_row(seeds):       # (runs, floors, tolerance, how far each row is) from seeds
            both = [exponent_pair(J, k, seed=s) for s in range(seeds)]
            runs, rounded = (np.stack([pair[i] for pair in both]) for i in (0, 1))  # (.., B, k)
            floors = resolvable(runs[0], J)[:, 0]                          # per sequence
            spread = max(max(_spread(runs[:, b], floors[b]), float(drift[b].max()))
                         for b in range(runs.shape[1]))
            coarse = resolvable(runs[0], J, eps)[:, 0]
            off = [_distance(r, runs[0, b], lowest(runs[:, b], floors[b], 1.0, rounded[:, b],
                                                    roofs[b], _coarse(coarse[b], J, eps)))
                   for b, r in enumerate(rows[:, :k])]
            return runs, floors, tolerance(exact, spread, floor), off
        runs, floors, tol, off = per_row(SEEDS)
        # each sequence's top exponent sets its scale (as the mean's does), the smallest
        # of them: the most negative one let a row's top be 50 % off. Rows spread more
        # than their mean, which is held to RESOLUTION; a row is held to HALF
        rough = lambda tol: not given and tol > HALF * max(min(                 # noqa: E731
            [abs(float(r[0])) for r, f in zip(runs[0], floors) if np.isfinite(r[0]) and
             r[0] > f], default=0.0), 2e-5)
        short = rough(tol)
        if not short and max(off) > tol:             # before "differs": MORE start vectors
            runs, floors, more, off = per_row(MORE)
            tol = max(tol, more)
            short = rough(tol) and max(off) <= tol   # (else wrong even so)
        row_tol, per_sequence = tol, runs[0]
        if short:
            raise GradlabError(
                f"xs is too short to check each sequence's exponents: over {T} steps "
                f"gradlab's own differ by {tol / SPREAD:.3g} between start vectors{apart}, so "
                f"any within {tol:.3g} would pass; give more steps or an explicit atol")
        worst = int(np.argmax(off))
        if off[worst] > tol:
            return differs(off[worst], [
                f"The mean over sequences agrees, but sequence {worst} is {off[worst]:.3g} "
                f"from its exact exponents (tolerance {tol:.3g}): yours "
                f"{np.round(rows[worst, :k], 4).tolist()}, exact "
                f"{np.round(runs[0][worst], 4).tolist()}."])
    if error <= atol:                # and over all S exponents, where no start vector counts
        volume, unjudged = volume_mismatch(fn, params, xs, J, k=k, near=row_tol, slack=S
                                           * atol * given, parted=J2,
                                           full=lambda: exponent_pair(J, S)[0])
        if volume:
            return differs(error, [volume])
        alike = [m for (m, v, _, _), d, tol in zip(variants[1:], distance[1:], tolerances[1:])
                 if d <= max(tol, atol)                  # (the exact one's, if wider: MORE)
                 and not np.array_equal(v, exact)]       # (all -inf: a zero product)
        note = blind_spots(exact, floor, exponent_pair(J, k, seed=0)[0]
                           if per_sequence is None else per_sequence, row_tol, rows.ndim, given)
        note += [] if not alike else [
            "But on these inputs the check cannot tell the exact exponents from "
            f"{len(alike)} mistaken variant(s) (e.g. {'; '.join(alike[0])}): they agree "
            f"within {atol:.3g} too. Inputs with structure in time (periodic, a trained "
            "model's data) separate forward from reverse time."]
        return LyapunovResult(True, yours, exact, error, note + [unjudged] * bool(unjudged))
    ordered = np.sort(yours)[::-1]               # the right exponents, in another order
    if _distance(ordered, exact, variants[0][3]) <= atol:
        return differs(error, [
            f"Your exponents are the exact ones out of order (sorted, they agree within "
            f"{atol:.3g}): give them largest first, as QR's diagonal orders them."])
    # among the variants that match, the simplest (fewest mistakes), then the closest
    matching = [i for i, (d, tol) in enumerate(zip(distance, tolerances)) if d <= tol]
    best = min(matching, key=lambda i: (len(variants[i][0]), distance[i] / tolerances[i])) \
        if matching else int(np.argmin([d / t for d, t in zip(distance, tolerances)]))
    near = _distance(variants[best][1], exact, variants[0][3]) if matching else math.inf
    if distance[best] <= tolerances[best] and near <= tolerances[0] + tolerances[best]:
        return differs(error, [
            f"Your exponents differ from the exact ones (by {error:.3g}, beyond the "
            f"tolerance {atol:.3g}) and lie near {'; '.join(variants[best][0])}; but on "
            f"these inputs that is only {near:.3g} from the exact ones, so which mistake it "
            "is cannot be told. Inputs with structure in time (periodic, a trained model's "
            "data) and more steps separate them."])
    if distance[best] <= tolerances[best]:
        mistakes = variants[best][0]
        also = [m for i, ((m, _, _, _), d, tol) in enumerate(zip(variants, distance,
                                                                  tolerances))
                if i not in (0, best) and d <= tol]
        return differs(error, [
            f"Your exponents match {' and '.join(mistakes)}." if len(mistakes) == 1 else
            "Your exponents match these mistakes together: " + "; ".join(
                f"({i}) {m}" for i, m in enumerate(mistakes, 1)) + "."] + ([
            f"On these inputs {len(also)} other combination(s) match as well (e.g. "
            f"{'; '.join(also[0])}), so the diagnosis cannot be more certain; inputs with "
            "structure in time separate forward from reverse time."] if also else []))
    shown = ", ".join(f"{a:.4g} vs {b:.4g}" for a, b in zip(yours, exact))
    return differs(error, [
        "Your exponents differ from the exact ones (beyond the tolerance "
        f"{atol:.3g}) and match no combination of: the transposed Jacobian (reverse time), "
        f"a partial state, another log base, a sum over steps. Yours vs exact: {shown}."])
