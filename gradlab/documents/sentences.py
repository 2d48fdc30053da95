"""What a Jacobian block's structure means for gradient flow, in one sentence of English."""

from sympy import Identity

from ..symbolic.structure import kind, terms, weights


def sentence(expr, out, wrt, param_names):
    """One sentence on what the block's structure means for gradient flow."""
    k = kind(expr)
    if k == "zero":
        return f"Zero: {out} does not depend on {wrt} at all."
    identity = any(isinstance(t, Identity) for t in terms(expr))
    if k == "diagonal":
        carousel = (" It contains the identity: an error carousel that passes gradient "
                    "through unchanged.") if identity else ""
        return (f"Diagonal: each unit of {wrt} reaches only the same unit of {out}, scaled "
                f"elementwise by gates and slopes with no weight matrix in the way, so this "
                f"path can keep gradient for many steps when those factors stay near 1."
                + carousel)
    mixing = ", ".join(weights(expr, param_names)) or "the state itself"
    if k == "rank-one coupled":
        return (f"Dense, with a rank-one part: besides mixing through {mixing}, the "
                f"normalisation over units couples every unit of {wrt} to every unit of "
                f"{out} (terms in the all-ones vector 1).")
    return (f"Dense: units mix through {mixing}, so on this path every step multiplies the "
            f"gradient by weight matrices squashed by activation slopes: the vanilla RNN's "
            f"only path, and the way it forgets.")
