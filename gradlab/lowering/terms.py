"""A Jacobian block as the sum of its terms, multiplied out, and the terms as a hand
derivation may get them wrong (`slips`): a weight transposed, columns scaled for rows."""

import math

import sympy as sp
from sympy.matrices.expressions.diagonal import DiagMatrix

# Terms a block may be multiplied out into: a deep stack's cross-layer block has ~4^L (L
# LSTM layers: 64 at L = 3, multiplied out in 7 s; 256 at L = 4, minutes), kept whole
MAX_TERMS = 64


def term_count(expr, known=None):
    """How many terms multiplying out every product of sums in expr gives (at most: equal
    terms are not merged), without multiplying anything out."""
    known = {} if known is None else known
    if expr not in known:
        if isinstance(expr, sp.MatAdd):
            known[expr] = sum(term_count(a, known) for a in expr.args)
        elif isinstance(expr, sp.MatMul):
            known[expr] = math.prod(term_count(a, known) for a in expr.args
                                    if getattr(a, "is_Matrix", False))
        else:
            known[expr] = 1
    return known[expr]


def block_terms(block):
    """The terms of a Jacobian block with every product of sums multiplied out (the LSTM's
    d h'/d h has four): a sum of these is the block. A zero block has none; a block of
    more than MAX_TERMS is its own one term."""
    if isinstance(block, sp.ZeroMatrix):
        return ()
    if term_count(block) > MAX_TERMS:
        return (block,)
    expanded = block.expand()
    return tuple(expanded.args) if isinstance(expanded, sp.MatAdd) else (expanded,)


def slips(block):
    """((term, (kind, factor), variant), ...): each term of the block (`block_terms`) as a
    hand derivation may get it wrong, a slip at a time. kind "transposed": a square weight
    W that is a factor of the term (diag(v) W, W diag(r), -diag(u) W_z ...) written W^T
    (min-char-rnn's backward uses Whh where Whh.T belongs). kind "columns": diag(v) W
    written W diag(v), the columns scaled where the rows belong (v broadcast along the
    wrong axis: v * W in numpy). Weights inside a diag(...) are not factors."""
    out = []
    for term in block_terms(block):
        args = term.args if isinstance(term, sp.MatMul) else (term,)
        for i, W in enumerate(args):
            if not (isinstance(W, sp.MatrixSymbol) and W.shape[0] == W.shape[1] != 1):
                continue
            out.append((term, ("transposed", W), sp.MatMul(*args[:i], W.T, *args[i + 1:])
                        if len(args) > 1 else W.T))
            if i and isinstance(args[i - 1], DiagMatrix):
                out.append((term, ("columns", args[i - 1]),
                            sp.MatMul(*args[:i - 1], W, args[i - 1], *args[i + 1:])))
    return tuple(out)
