"""What a wrong Jacobian's difference from the exact one says, in the derivation's terms.

`diagnose` tries, in turn: the transpose (the other layout), the state parts in another
order, blocks placed or each transposed, weights in another gate order, biases left out,
then block by block the derivation's terms: one missing, doubled, sign-flipped or scaled
(least squares over the evaluated terms), wrong row by row (a diagonal factor, such as
an activation's slope, written wrong), or written with a slip (slips.py: a weight
transposed, a vector scaling columns where it scales rows). What none explains is said so, worst entries shown.
"""

import itertools
import math
import re

import torch
from sympy import HadamardProduct, MatMul
from sympy.matrices.expressions.diagonal import DiagMatrix

from .conventions import (gate_order, negated_gate, reset_after, reset_before, swapped_gates,
                          transposed_weights, without_biases)
from ..symbolic.printing import text
from .slips import slip_variants, slipped

UNEXPLAINED = "no missing, extra, sign-flipped"    # a block no term explains, as said
SOME_POINTS = "wrong at some points only"
EXPLAINED = 1e-6          # a diagnosis must explain the difference to this relative residual


def relative(a, b):
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


ROUNDOFF = 64         # eps of the largest exact entry: what an exactly-zero block may hold


def block_error(a, b, whole):
    """The relative error of one block of yours (a) against the exact (b), on the block's
    own scale. An exactly-zero block has none to be relative to: entries beyond round-off
    of the whole Jacobian (ROUNDOFF eps of its largest entry) are wrong throughout, an
    infinite relative error, however small (5e-9 in a zero block used to pass, as an
    absolute error)."""
    if bool((b == 0).all()):
        tiny = ROUNDOFF * torch.finfo(a.dtype).eps * (float(whole.abs().max()) or 1.0)
        return 0.0 if float(a.abs().max()) <= tiny else math.inf
    return relative(a, b)


def measured(theirs, exact, blocks):
    """(largest absolute error, largest relative error, {block: relative error}): relative
    to the whole Jacobian and to every block on its own scale too, since a block wrong
    throughout (diag(f) left out) is small against a block a million times larger, and
    must not pass for it."""
    absolute = float((theirs - exact).abs().max())
    errors = {k: block_error(blocks.part(theirs, k), blocks.part(exact, k), exact)
              for k in blocks.keys}
    return absolute, max(absolute / (float(exact.abs().max()) or 1.0), *errors.values()), errors


def _orders(parts):
    """State orders a mix-up may give: every one for up to 6 parts; beyond (a stack's h1,
    c1, h2, ...: 10! orders at 5 layers took minutes) one pair swapped, all reversed, and
    the parts grouped by kind (h1, h2, ..., c1, c2, ...: torch's h_n and c_n), or the
    other way round."""
    k = len(parts)
    if k <= 6:
        return itertools.permutations(range(k))
    kinds = [re.sub(r"\d+$", "", p) for p in parts]
    grouped = tuple(sorted(range(k), key=lambda i: (kinds.index(kinds[i]), i)))
    inverse = tuple(sorted(range(k), key=grouped.__getitem__))
    swaps = [tuple(j if t == i else i if t == j else t for t in range(k))
             for i, j in itertools.combinations(range(k), 2)]
    return [grouped, inverse, tuple(reversed(range(k))), *swaps]


def diagnose(cell, params, state, x, theirs, exact, blocks, wrt, layout, rtol, terms,
             degenerate=False, answer=None, rounding=None):
    """Sentences saying what is wrong with `theirs`; `terms` is `terms_function`'s
    evaluation of the exact Jacobian's terms at (params, state, x); `answer`: the
    coarsest of the dtype the function returned and the params' (its rounding is not a
    slip); `rounding`: the relative error that rounding explains in it (64 eps of
    `answer` where not given)."""
    # a float32 answer matches a mistake to its own rounding: a float32 routine without
    # its biases, 0.48 off, was "no term explains the difference" at rtol 1e-8
    eps = torch.finfo(answer if answer is not None and answer.is_floating_point
                      else torch.float64).eps
    # (at most float32's: bfloat16's 64 eps, 0.5, would match almost anything)
    close = lambda a, b: relative(a, b) <= max(rtol, 1e-9, min(64 * eps, 1e-5))  # noqa: E731
    if theirs.shape[1] == theirs.shape[2] and close(theirs.transpose(1, 2), exact):
        other = "numerator" if layout == "denominator" else "denominator"
        if other == "numerator":
            return ["You passed layout='denominator', but your Jacobian is in numerator "
                    "layout (rows are outputs, J[i, j] = ∂out_i/∂in_j, as torch.func.jacrev):"
                    " pass layout='numerator' (--layout numerator), the default."]
        return ["Your Jacobian is the transpose of the exact one: it is in denominator layout "
                "(rows are inputs). gradlab uses numerator layout, J[i, j] = ∂out_i/∂in_j, "
                "as torch.func.jacrev; transpose it or pass layout='denominator' (--layout "
                "denominator)."]
    if len(set(theirs.shape)) == 1 and close(theirs.permute(2, 0, 1), exact):
        return ["Your Jacobian has the batch last, (rows, columns, B), read here as (B, "
                "rows, columns) since all three are equal: put the batch first "
                "(J.permute(2, 0, 1) in torch, np.moveaxis(J, -1, 0) in numpy)."]
    c = float((theirs * exact).sum() / (exact * exact).sum().clamp_min(1e-300))
    several = sum(len(terms.get(k, [])) for k in blocks.keys) > 1   # else: that term's
    if several and abs(c - 1) > 1e-9 and close(theirs, c * exact):
        if round(c, 9) == 0:
            return ["Your Jacobian is zero throughout: every term is missing."]
        how = {-1: "negated", 2: "doubled"}.get(round(c, 9), f"times {c:.10g}")
        return [f"Your whole Jacobian is the exact one {how}: a factor on every entry, "
                "not a mistake in one term."]
    parts = cell.state_names
    if blocks.block is None and wrt == "state" and len(parts) > 1:
        for order in _orders(parts):
            if list(order) == list(range(len(parts))):
                continue
            n = blocks.n
            idx = torch.cat([torch.arange(k * n, (k + 1) * n) for k in order])
            if close(theirs, exact[:, idx][:, :, idx]):
                return [f"Your state parts are in the order ({', '.join(parts[k] for k in order)}"
                        f"); gradlab's state is ({', '.join(parts)}). Reorder the rows and "
                        "columns of your blocks."]
        k, n = len(parts), blocks.n      # the blocks right, placed wrong, or each transposed
        grid = theirs.reshape(-1, k, n, k, n) if theirs.shape[1:] == (k * n, k * n) else None
        if grid is not None and close(grid.transpose(1, 3).reshape(theirs.shape), exact):
            return ["Your blocks are each right but placed transposed: your block (a, b) is "
                    "gradlab's ∂b'/∂a, the exact one's block (b, a). Put ∂out'/∂in at block "
                    "row out, column in (numerator layout, block by block)."]
        if grid is not None and close(grid.transpose(2, 4).reshape(theirs.shape), exact):
            return ["Each of your blocks is transposed in place (denominator layout within "
                    "the blocks, numerator across them): transpose every block."]
    # (other parameters compared at degenerate draws, where every Jacobian is ~0, would
    # match by accident)
    tests = () if degenerate else (gate_order, without_biases, swapped_gates, negated_gate,
                                   reset_after, reset_before, transposed_weights)
    found = next((said for test in tests
                  if (said := test(cell, params, state, x, theirs, wrt, blocks, close))), [])
    if found:
        return found
    sampled, sentences = by_sample(theirs, exact, rtol), []
    # a term's coefficient off by less than this is rounding, not a slip (float32: ~1e-7,
    # and a right term was said to be "scaled by 1.000000073"); a block within what the
    # answer's precision explains is rounding too (as `user.lower_precision` reads it)
    noise, floor = 10 * eps, max(1e-9, rtol / 10, 10 * eps)
    rounding = 64 * eps if rounding is None else rounding
    unexplained, rounded = [], []
    for key in blocks.keys:
        mine, ref = blocks.part(theirs, key), blocks.part(exact, key)
        error = block_error(mine, ref, exact)
        if error <= rtol or error <= rounding:
            rounded += [(error, key)] if error > rtol else []
            continue
        scale = float(ref.abs().max()) or 1.0
        said = explain_block(key, mine - ref, terms.get(key, []), scale, floor, noise) \
            or slipped(key, mine - ref, terms.get(key, []),
                       slip_variants(cell, wrt, params, state, x).get(key, []), scale,
                       EXPLAINED)
        if said:
            sentences += said
        else:
            unexplained.append(key)
    for key in list(unexplained):       # a block that is another one, placed here
        mine = blocks.part(theirs, key)
        other = next((k for k in blocks.keys if k != key and blocks.part(exact, k).shape
                      == mine.shape and close(mine, blocks.part(exact, k))), None)
        if other is not None and not close(blocks.part(exact, key), blocks.part(exact, other)):
            unexplained.remove(key)
            sentences.append(f"Block ∂{key[0]}'/∂{key[1]}: yours is gradlab's "
                             f"∂{other[0]}'/∂{other[1]}, a block written in the wrong place "
                             "(rows are the new state's parts, columns the old state's).")
    at_rounding = not (sampled or sentences or unexplained) and rounded
    if at_rounding:                                   # rounding level only: the worst
        unexplained = [max(rounded)[1]]               # block, shown (no slip to name)
    # where named terms explain every wrong block, "wrong at some points only" is a
    # vaguer story for the same slip (a term that vanishes at saturated samples)
    if sentences and not unexplained and sampled and SOME_POINTS in sampled[0]:
        sampled = []
    sentences = sampled + sentences
    for key in unexplained:
        alike = None if at_rounding else confounded(terms.get(key, []))
        sentences.append(f"Block ∂{key[0]}'/∂{key[1]}: {UNEXPLAINED} or "
                         "rescaled term explains the difference. "
                         + worst_entries(blocks.part(theirs, key), blocks.part(exact, key))
                         + "." + (f" (Its {alike[0]} terms are not independent over these "
                                  f"draws' {alike[1]} entries, so no slip in them can be "
                                  "named: check with more sequences, batch= or --batch.)"
                                  if alike else ""))
    return sentences


def _term_matrix(terms):
    """The evaluated terms as the columns of an (entries, K) float64 matrix."""
    T = torch.stack([v.to(dtype=torch.float64, device="cpu") for _, v in terms])  # (K, B, n, w)
    return T.reshape(len(terms), -1).T


def confounded(terms):
    """Do these draws leave a block's terms (term, value) linearly dependent, so that no
    fit can say which of them is wrong? (K, entries) then, else None."""
    if len(terms) < 2:
        return None
    A = _term_matrix(terms)
    return None if int(torch.linalg.matrix_rank(A)) == len(terms) else (len(terms), A.shape[0])


def explain_block(key, D, terms, scale, floor=1e-9, noise=0.0):
    """Sentences naming the terms whose wrong coefficients (or slopes) explain D; a
    coefficient within `floor` of right is not named, nor one within what rounding of
    `noise` relative to the block's scale makes of a term that small."""
    name = f"∂{key[0]}'/∂{key[1]}"
    if not terms:
        return [f"Block {name} is exactly zero, but yours is not (largest entry "
                f"{float(D.abs().max()):.3g}): that block has no term at all."]
    A = _term_matrix(terms)
    d = D.reshape(-1)
    coef = torch.linalg.lstsq(A, d[:, None]).solution[:, 0]
    misfit = float((A @ coef - d).abs().max())
    # explained: to EXPLAINED of the block's scale, and to 1e-3 of the difference itself
    # (a difference below EXPLAINED, rounding, would otherwise fit any coefficients); and
    # only where the draws tell the terms apart (more terms than entries, or terms alike
    # at these samples, fit any difference with coefficients that mean nothing: a stack's
    # block of 49 terms at 36 entries was "scaled by" -43.9 to 31.6, 49 times)
    if misfit / scale <= EXPLAINED and misfit <= 1e-3 * float(d.abs().max()) \
            and not confounded(terms):
        out = []
        for (term, value), c in zip(terms, coef.tolist()):
            c = round(c, 10)           # a factor 1 + 1e-7 is still told (rtol 1e-8)
            size = float(value.abs().max())
            rounding = noise * scale / size if size > 0 else 0.0
            tol = max(1e-6, rounding)
            if abs(c) < max(floor, rounding):
                continue
            shown = text(term)
            if abs(c + 1) < tol:
                out.append(f"Block {name}: the term {shown} is missing.")
            elif abs(c + 2) < tol:
                out.append(f"Block {name}: the term {shown} has the wrong sign.")
            elif abs(c - 1) < tol:
                out.append(f"Block {name}: the term {shown} appears twice (an extra copy).")
            else:
                out.append(f"Block {name}: the term {shown} is scaled by {1 + c:.10g} "
                           "instead of 1 (a wrong constant factor).")
        return out
    for factor, group in by_leading_factor(terms):      # terms sharing a wrong slope
        V = sum(value.to(dtype=torch.float64, device="cpu") for _, value in group)
        norm = (V * V).sum(-1)
        w = torch.where(norm > 0, (D * V).sum(-1) / norm.clamp_min(1e-300), torch.zeros_like(norm))
        misfit = float((w[..., None] * V - D).abs().max())
        if (float(w.abs().max()) > 1e-4        # a slope wrong, not its last digits
                and misfit / scale <= EXPLAINED and misfit <= 1e-3 * float(D.abs().max())):
            ratio = (1 + w)[norm > 0]
            times = ratio_range(float(ratio.min()), float(ratio.max()))
            if len(group) > 1:
                shown = " and ".join(text(t) for t, _ in group)
                return [f"Block {name}: the factor {text(factor)}, which {shown} share, is "
                        f"wrong: yours is it times {times}, row by row, not 1 (an "
                        "activation's slope written wrong?)."]
            (term, _), = group          # one term: the row ratio cannot say which factor
            candidates = ", ".join(text(f) for f in diagonal_factors(term))
            args = term.args if isinstance(term, MatMul) else (term,)
            alike = [t for t, _ in terms if t != term and _after_diagonals(t) is not None
                     and _after_diagonals(t) == _after_diagonals(term)]
            if alike:                   # diag(u) W and diag(v) W: either fits a row error
                shown = " or ".join(text(t) for t in (term, *alike))
                return [f"Block {name}: a term ending in {text(_after_diagonals(term))} is "
                        f"off row by row (yours is it times {times}, not 1, read as "
                        f"{text(term)}); these draws cannot tell which: {shown}. One of "
                        "its diagonal factors is written wrong or missing."]
            if all(isinstance(a, DiagMatrix) for a in args):   # any diagonal error fits this
                return [f"Block {name}: the diagonal term {text(term)} is off entry by "
                        f"entry (yours is it times {times}, not 1): one of its factors, "
                        f"{candidates}, is written wrong or missing, or evaluated at other "
                        "states."]
            return [f"Block {name}: the term {text(term)} is off row by row (yours is it "
                    f"times {times}, not 1): one of its diagonal factors, {candidates}, is "
                    "written wrong or missing (an activation's slope?)."]
    return []


def diagonal_factors(term):
    """The elementwise factors of every diag(...) in a term, in order, each once."""
    args = term.args if isinstance(term, MatMul) else (term,)
    out = []
    for a in args:
        if isinstance(a, DiagMatrix):
            v = a.args[0]
            for f in (v.args if isinstance(v, HadamardProduct) else (v,)):
                if f not in out:
                    out.append(f)
    return out


def _after_diagonals(term):
    """The product of a term's factors after its leading diag(...) ones, or None."""
    args = term.args if isinstance(term, MatMul) else (term,)
    rest = [a for a in args if not isinstance(a, DiagMatrix) and getattr(a, "is_Matrix", 0)]
    return None if not rest else rest[0] if len(rest) == 1 else MatMul(*rest)


def by_leading_factor(terms):
    """Groups of terms that share their leftmost diag(...) factor, largest first: a slope
    written wrong changes that factor in every term it leads."""
    groups = {}
    for term, value in terms:
        args = term.args if isinstance(term, MatMul) else (term,)
        lead = next((a for a in args if isinstance(a, DiagMatrix)), None)
        if lead is not None:
            groups.setdefault(lead, []).append((term, value))
    singles = [(t.args[0] if isinstance(t, MatMul) else t, [(t, v)]) for t, v in terms]
    return sorted(groups.items(), key=lambda g: -len(g[1])) + singles


def by_sample(theirs, exact, rtol):
    """A sentence when some samples agree and others do not (a function that reads one
    sample's state for all, or an index), else []."""
    B = theirs.shape[0]
    scale = float(exact.abs().max()) or 1.0
    error = [float((theirs[b] - exact[b]).abs().max()) / scale for b in range(B)]
    # agree within rtol, do not beyond it, and the two far apart (a uniform error leaves a
    # sample of small entries within rtol of the whole's scale: no sign of dependence)
    good = [b for b in range(B) if error[b] <= rtol]
    bad = [b for b in range(B) if error[b] > rtol]
    if not good or not bad or max(error[b] for b in good) * 100 > min(error[b] for b in bad):
        return []
    head = f"Sample(s) {', '.join(map(str, good))} agree and {', '.join(map(str, bad))} do not"
    borrowed = all(any(float((theirs[b] - exact[g]).abs().max()) / scale <= rtol
                       for g in range(B) if g != b) for b in bad)
    if borrowed:          # each wrong answer is another sample's exact one
        return [f"{head}: each wrong one is another sample's exact Jacobian, so your "
                "function depends on which sample it is given (one sample's state used for "
                "all, an index, or a broadcast)."]
    return [f"{head}: your function is {SOME_POINTS} (a term wrong only where "
            "units saturate, a branch on the state's values, or one on the sample's index)."]


def ratio_range(lo, hi):
    """'lo to hi' with the fewest digits (4 at least) that tell each from 1 and the two
    apart: 1.000001 to 1.0000025, not 1 to 1."""
    for d in (4, 6, 8, 10, 12, 17):
        a, b = f"{lo:.{d}g}", f"{hi:.{d}g}"
        if (a != "1" or lo == 1) and (b != "1" or hi == 1) and (a != b or lo == hi):
            break
    return f"{a} to {b}"


def worst_entries(mine, ref, count=3):
    """The `count` entries that differ most, each where it is off by at least 1/1000 of the
    worst (an entry off by rounding, printed as equal, says nothing)."""
    diff = (mine - ref).abs().reshape(-1)
    values, top = torch.topk(diff, min(count, diff.numel()))
    top = top[values >= values[:1] * 1e-3]
    B, r, c = mine.shape
    out = []
    for i in top.tolist():
        b, rest = divmod(i, r * c)
        row, col = divmod(rest, c)
        a, e = float(mine[b, row, col]), float(ref[b, row, col])
        digits = next((d for d in (6, 9, 12, 17) if f"{a:.{d}g}" != f"{e:.{d}g}"), 17)
        out.append(f"[sample {b}, {row}, {col}] yours {a:.{digits}g}, exact {e:.{digits}g}")
    return ("Worst entries " if len(out) > 1 else "Worst entry ") + "; ".join(out)
