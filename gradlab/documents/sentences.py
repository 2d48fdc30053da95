"""What a Jacobian block's structure means for gradient flow, in one sentence of English."""

from sympy import Identity

from ..symbolic.structure import kind, terms, weights


def sentence(expr, out, wrt, param_names, across_time=True):
    """One sentence on what the block's structure means for gradient flow: for a block of
    the state Jacobian (`across_time`), what a step does to a gradient passing back; for
    one of the input Jacobian, what the step reads of its input."""
    k = kind(expr)
    if k == "zero":
        return f"Zero: {out} does not depend on {wrt} at all."
    mixing = ", ".join(weights(expr, param_names)) or "the state itself"
    if not across_time:
        if k == "diagonal":
            return f"Diagonal: each unit of {out} reads only the same unit of {wrt}."
        return (f"Dense: every unit of {out} reads every unit of {wrt}, through {mixing}: "
                f"how this step's output moves with its input, the last factor of any "
                f"gradient that reaches {wrt}.")
    identity = any(isinstance(t, Identity) for t in terms(expr))
    if k == "diagonal":
        carousel = (" It contains the identity: an error carousel that passes gradient "
                    "through unchanged.") if identity else ""
        return (f"Diagonal: each unit of {wrt} reaches only the same unit of {out}, scaled "
                f"elementwise by gates and slopes with no weight matrix in the way, so this "
                f"path can keep gradient for many steps when those factors stay near 1."
                + carousel)
    # a dense block may hold diagonal terms too (the GRU's diag(z)): a path that keeps
    diagonal = any(kind(t) == "diagonal" for t in terms(expr))
    if k == "rank-one coupled":
        return (f"Dense, with a rank-one part: besides mixing through {mixing}, the "
                f"normalisation over units couples every unit of {wrt} to every unit of "
                f"{out} (terms in the all-ones vector 1)." + (
                    " A diagonal term passes each unit's gradient to the same unit, scaled "
                    "by gates and slopes alone." if diagonal else ""))
    if diagonal:
        return (f"Dense, with a diagonal part: units mix through {mixing}, squashed by "
                f"activation slopes at every step, but a diagonal term passes each unit's "
                f"gradient to the same unit scaled by gates and slopes alone, with no weight "
                f"matrix in the way: the path that keeps gradient while those factors stay "
                f"near 1.")
    return (f"Dense: units mix through {mixing}, so on this path every step multiplies the "
            f"gradient by weight matrices squashed by activation slopes: the vanilla RNN's "
            f"only path, and the way it forgets.")
