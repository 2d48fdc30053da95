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
    if not found:
        return []
    A, d = torch.stack([c.double().cpu().reshape(-1) for *_, c in found], 1), D.reshape(-1)
    a = torch.linalg.lstsq(A, d.double().cpu()[:, None]).solution[:, 0]
    if float((A @ a - d.double().cpu()).abs().max()) / scale > explained or \
            not all(abs(c) < 1e-6 or abs(c - 1) < 1e-6 for c in a.tolist()):
        return []
    said = []
    for (term, (kind, f), _), c in zip(found, a.tolist()):
        if abs(c - 1) < 1e-6 and kind == "transposed":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)}ᵀ where {text(f)} belongs (a weight transposed).")
        elif abs(c - 1) < 1e-6 and kind == "missing":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours leaves "
                        f"out the factor {text(f)} (an activation's slope?).")
        elif abs(c - 1) < 1e-6 and kind == "columns":
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)} on the other side of the weight, scaling its columns "
                        "where it scales rows (a vector broadcast along the wrong axis: v "
                        "* W for v[:, None] * W in numpy).")
        elif abs(c - 1) < 1e-6:
            said.append(f"Block ∂{key[0]}'/∂{key[1]}: in the term {text(term)}, yours has "
                        f"{text(f)} on the other side of the weight, scaling its rows where "
                        "it scales columns (applied after the product where it belongs "
                        "before it, as r ⊙ (W h) for W (r ⊙ h): the GRU's reset, in "
                        "torch's convention and Cho's).")
    return said


def slip_variants(cell, wrt, params, state, x):
    """`slips_function`'s variants of every term, at (params, state, x)."""
    return slips_function(cell, wrt, "torch")(params, state, x)
