"""What a check's draws cannot see, where an agreement proves nothing: terms of the exact
Jacobian that vanish at every sample (`unseen`: saturated gates, weights of scale 0, and
every weight at n = 1, its own transpose), and things the draws cannot tell apart
(`alike`: a symmetric weight and its transpose, two equal state parts); and the
sentences that say so (`unseen_words`, `alike_words`).
"""

from ..symbolic.printing import text


def unseen(terms, exact, blocks, rtol):
    """What these draws cannot see: the terms of the exact Jacobian within rtol of zero at
    every sample (saturated gates, weights of scale 0), which a derivation could leave
    out and still agree, as words; ["n = 1"] at n = 1, where a weight is its own
    transpose; [] when every term carries weight."""
    if blocks.n == 1:
        return ["n = 1"]
    faint = []
    for key in blocks.keys:
        scale = float(blocks.part(exact, key).abs().max())
        for term, value in terms.get(key, []):
            if float(value.abs().max()) <= rtol * scale or scale == 0:
                faint.append(f"{text(term)} in ∂{key[0]}'/∂{key[1]}")
    return faint


ALIKE = 100      # two arrays within ALIKE rtol of each other give Jacobians within ~rtol
APART = 1e-4     # ... but at a coarse rtol (1e-2, a float16 answer's) only within
                 # max(rtol, APART): random weights differ by O(1), not 100 rtol


def _close(a, b, rtol):
    scale = max(float(a.abs().max()), float(b.abs().max()))
    return scale > 0 and float((a - b).abs().max()) <= min(ALIKE * rtol, max(rtol, APART)) * scale


def alike(cell, params, state, wrt, rtol):
    """What these draws cannot tell apart, as words: a nonzero square weight equal to its
    transpose (an orthogonal init at n = 2 is often a reflection, symmetric), so W and W^T
    give one Jacobian; two params of one shape equal (W_i = W_f: gates read swapped give
    one Jacobian); two state parts equal at every sample (the states (h,) * 2), so a
    derivation reading them in the wrong order gives one too. Equal means within ALIKE
    rtol (at most max(rtol, APART)): h and h + 1e-12 hid a swap as well as h and h."""
    found, names = [], cell.param_names
    for i, p in enumerate(names):
        w = params[p]
        if w.ndim == 2 and w.shape[0] == w.shape[1] > 1 and _close(w, w.mT, rtol):
            found.append(f"{p} = {p}ᵀ")
        found += [f"{p} = {q}" for q in names[i + 1:]
                  if params[q].shape == w.shape and w.numel() > 1 and _close(w, params[q], rtol)]
    if wrt == "state":
        parts = cell.state_names
        found += [f"{a} = {b} at every sample" for i, a in enumerate(parts)
                  for b, t in zip(parts[i + 1:], state[i + 1:]) if _close(state[i], t, rtol)]
    return found


def alike_words(same, agrees):
    """The sentence for `alike`'s answer."""
    return [("Inconclusive" if agrees else "Note") + f": at these draws {'; '.join(same)}, "
            "so a derivation that swaps them (a transposed weight, gates or state parts read "
            "in the wrong order) would agree too. Check at other parameters or states (gradlab "
            "check's defaults draw them apart)."]


def unseen_words(faint, agrees, zero=()):
    """The sentence for `unseen`'s answer: why an agreement proves nothing, or why a
    diagnosis at these draws may not hold; `zero`: the state parts (or input) given all
    zero, which then come first among the causes."""
    again = ("Check at other parameters (gradlab check's defaults: --weight-scale 1.5 "
             "--bias-scale 0.5).")
    cause = "saturated gates, or weights or biases of scale 0"
    if zero:
        named = f"{', '.join(zero)} {'is' if len(zero) == 1 else 'are'}"
        cause = f"{named} all zero at the states given, or {cause}"
        again = (f"Check at states where {named} not all zero (leave states out to draw "
                 "them), or at other parameters.")
    if faint == ["n = 1"]:
        return [("Inconclusive" if agrees else "Note") + ": at n = 1 every weight is its own "
                "transpose, so a transposed weight or the other layout cannot be seen. Check "
                "at n >= 2 (--hidden)."]

    shown = "; ".join(faint[:3]) + (", ..." if len(faint) > 3 else "")
    if agrees:
        return [f"Inconclusive: at these draws {len(faint)} term(s) of the exact Jacobian are "
                f"within rtol of zero at every sample ({shown}), so a derivation without "
                f"them would agree too ({cause}). " + again]
    return [f"Note: at these draws {len(faint)} term(s) of the exact Jacobian are within "
            f"rtol of zero at every sample ({shown}): what is said above may not hold at "
            "other points. " + again]


def zero_parts(cell, state, x):
    """The names of the state parts (and the input) that are all zero at every sample."""
    return [name for name, t in zip((*cell.state_names, cell.input_name), (*state, x))
            if t.numel() and not bool(t.any())]
