"""What a Jacobian block's shape means: zero, diagonal, diagonal plus rank one, or dense.

The classification reads the SymPy expression itself, so it holds for every n:
a block is diagonal when every term is a product of diag(.) and I; it is dense when a
weight matrix appears; a product with the all-ones vector couples every unit at rank one.
"""

import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.diagonal import DiagMatrix


def _terms(expr):
    return expr.args if isinstance(expr, MatAdd) else (expr,)


def _diagonal(term):
    mats = term.as_coeff_matrices()[1] if isinstance(term, MatMul) else [term]
    return all(isinstance(m, (DiagMatrix, Identity)) for m in mats)


def _outer(product):
    """Does the product hold a column times a row (u v^T), i.e. a rank-one term?"""
    mats = product.as_coeff_matrices()[1]
    return any(a.shape[1] == 1 and b.shape[0] == 1 and a.shape[0] != 1
               for a, b in zip(mats, mats[1:]))


def _matrices(expr, param_names):
    return sorted({str(s) for s in expr.atoms(MatrixSymbol)
                   if str(s) in param_names and s.shape[1] != 1})


def kind(expr):
    """'zero', 'diagonal', 'rank-one coupled' or 'dense'."""
    if isinstance(expr, ZeroMatrix):
        return "zero"
    if all(_diagonal(t) for t in _terms(expr)):
        return "diagonal"
    if any(_outer(a) for a in sp.preorder_traversal(expr) if isinstance(a, MatMul)):
        return "rank-one coupled"
    return "dense"


def diagonal(expr):
    """The diagonal of a 'diagonal' block as an n-vector expression: diag(u) diag(v) -> u * v,
    I -> the all-ones vector, so lowered code holds n numbers per row, not n x n."""
    if kind(expr) != "diagonal":
        raise ValueError(f"not a diagonal block: {expr}")
    n = expr.shape[0]
    vectors = []
    for term in _terms(expr):
        coeff, mats = term.as_coeff_matrices() if isinstance(term, MatMul) else (1, [term])
        parts = [m.args[0] for m in mats if isinstance(m, DiagMatrix)]
        vector = sp.hadamard_product(*parts) if parts else OneMatrix(n, 1)
        vectors.append(vector if coeff == 1 else coeff * vector)
    return sp.MatAdd(*vectors) if len(vectors) > 1 else vectors[0]


def sentence(expr, out, wrt, param_names):
    """One sentence on what the block's structure means for gradient flow."""
    k = kind(expr)
    if k == "zero":
        return f"Zero: {out} does not depend on {wrt} at all."
    identity = any(isinstance(t, Identity) for t in _terms(expr))
    if k == "diagonal":
        carousel = (" It contains the identity: an error carousel that passes gradient "
                    "through unchanged.") if identity else ""
        return (f"Diagonal: each unit of {wrt} reaches only the same unit of {out}, scaled "
                f"elementwise by gates and slopes with no weight matrix in the way, so this "
                f"path can keep gradient for many steps when those factors stay near 1."
                + carousel)
    weights = ", ".join(_matrices(expr, param_names)) or "the state itself"
    if k == "rank-one coupled":
        return (f"Dense, with a rank-one part: besides mixing through {weights}, the "
                f"normalisation over units couples every unit of {wrt} to every unit of "
                f"{out} (terms in the all-ones vector 1).")
    return (f"Dense: units mix through {weights}, so on this path every step multiplies the "
            f"gradient by weight matrices squashed by activation slopes: the vanilla RNN's "
            f"only path, and the way it forgets.")
