"""Slips of a hand derivation, named from the difference they leave: each term of the
exact Jacobian as one may write it wrong (`lowering.terms.slips`), evaluated, and the set
of them that explains a block's difference, if one does."""

import torch

from ..lowering.lower import slips_function
from ..symbolic.printing import text


def slipped(key, D, terms, variants, scale, explained):
    """Sentences naming the terms the difference D says were written with a slip
    (`lowering.terms.slips`: a square weight W used transposed, as in diag(v) W^T, -diag(u)
    W_z^T, W^T diag(r), or min-char-rnn's backward with Whh where Whh.T belongs; or diag(v)
    W as W diag(v)), from `variants` [(term, slip, the term so written, evaluated)] and the
    evaluated `terms`; [] when no set of them explains D to `explained` relative to
    `scale`."""
    values = dict(terms)
    found = [(t, slip, v - values[t]) for t, slip, v in variants if t in values]
    # the common slips first, then with a slope left out and a scaling moved too (all of
    # them at once outnumber the entries of a small block: lstm at n = 2 has 25 variants
    # of dh'/dh, and a transposed W_o fitted no longer)
    for kinds in (COMMON, None):
        chosen = [f for f in found if kinds is None or f[1][0] in kinds]
        fits = _fit(D, chosen, scale, explained)
        if fits is not None:
            return _sentences(key, fits)
    return []


COMMON = ("transposed", "columns")


def _fit(D, found, scale, explained):
    """The slips among `found` whose sum explains D (coefficients 0 or 1), or None: one
    least-squares fit over all of them where the block's entries outnumber them, else
    each one alone."""
    if not found:
        return None
    d = D.double().cpu().reshape(-1)
    A = torch.stack([c.double().cpu().reshape(-1) for *_, c in found], 1)
    if A.shape[1] > A.shape[0]:                          # more slips than entries
        alone = [f for f, col in zip(found, A.T)
                 if float((col - d).abs().max()) / scale <= explained]
        return alone[:1] or None
    a = torch.linalg.lstsq(A, d[:, None]).solution[:, 0]
    if float((A @ a - d).abs().max()) / scale > explained or \
            not all(abs(c) < 1e-6 or abs(c - 1) < 1e-6 for c in a.tolist()):
        return None
    return [f for f, c in zip(found, a.tolist()) if abs(c - 1) < 1e-6]


def _sentences(key, fits):
    said = []
    for term, (kind, f), _ in fits:
        if kind == "transposed":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)}ᵀ where {text(f)} belongs (a weight transposed).")
        elif kind == "missing":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours leaves "
                        f"out the factor {text(f)} (an activation's slope?).")
        elif kind == "columns":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)} on the other side of the weight, scaling its columns "
                        "where it scales rows (a vector broadcast along the wrong axis: v "
                        "* W for v[:, None] * W in numpy).")
        else:
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)} on the other side of the weight, scaling its rows where "
                        "it scales columns (applied after the product where it belongs "
                        "before it, as r ⊙ (W h) for W (r ⊙ h): the GRU's reset, in "
                        "torch's convention and Cho's).")
    return said


def slip_variants(cell, wrt, params, state, x):
    """`slips_function`'s variants of every term, at (params, state, x); of an input
    Jacobian where m = n, also those that keep their shape only there (`square_slips`:
    an (n, m) weight transposed, or its columns scaled for its rows)."""
    found = slips_function(cell, wrt, "torch")(params, state, x)
    if wrt == "input" and x.shape[-1] == state[0].shape[-1]:
        square = slips_function(cell, wrt, "torch", "square_slips")(params, state, x)
        found = {key: found.get(key, []) + square.get(key, []) for key in {*found, *square}}
    return found
