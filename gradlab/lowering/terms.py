"""A Jacobian block as the sum of its terms, multiplied out, and the terms as a hand
derivation may get them wrong (`slips`): a weight transposed, columns scaled for rows."""

import math

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.diagonal import DiagMatrix

from ..symbolic.pairwise import Pairwise

# Terms a block may be multiplied out into: a deep stack's cross-layer block has ~4^L (L
# LSTM layers: 64 at L = 3, multiplied out in 7 s; 256 at L = 4, minutes), kept whole
MAX_TERMS = 64
# the sizes n and m as the cell language declares them (equal as SymPy symbols)
N, M = sp.symbols("n m", integer=True, positive=True)


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
    expanded = multiplied_out(block)
    return tuple(expanded.args) if isinstance(expanded, sp.MatAdd) else (expanded,)


def multiplied_out(block):
    """block.expand() with every function applied elementwise kept whole: SymPy's expand
    multiplied out their scalar bodies too (a dozen nested activations' slope is a product
    of a dozen 1 - t^2: 2^12 terms, and minutes, for one term of the block)."""
    applied = sorted(block.atoms(ElementwiseApplyFunction, Pairwise), key=sp.default_sort_key)
    hidden = {e: sp.MatrixSymbol(f"_applied{i}", *e.shape) for i, e in enumerate(applied)}
    return block.xreplace(hidden).expand().xreplace({v: e for e, v in hidden.items()})


def slips(block):
    """((term, (kind, factor), variant), ...): each term of the block (`block_terms`) as a
    hand derivation may get it wrong, a slip at a time. kind "transposed": a square weight
    W that is a factor of the term (diag(v) W, W diag(r), -diag(u) W_z ...) written W^T
    (min-char-rnn's backward uses Whh where Whh.T belongs). kind "columns": diag(v) W
    written W diag(v), the columns scaled where the rows belong (v broadcast along the
    wrong axis: v * W in numpy); kind "rows": W diag(v) written diag(v) W. kind "missing":
    one elementwise factor of a diag(...) left out (relu's slope, which is 0 or 1, forgotten:
    a row-by-row ratio cannot name a factor that is 0). Weights inside a diag(...) are not
    factors."""
    out = []
    for term in block_terms(block):
        args = term.args if isinstance(term, sp.MatMul) else (term,)
        for i, W in enumerate(args):
            if isinstance(W, DiagMatrix):
                out.extend((term, ("missing", f), variant)
                           for f, variant in _without_each_factor(args, i, term.shape))
            if not (isinstance(W, sp.MatrixSymbol) and W.shape[0] == W.shape[1] != 1):
                continue
            out.append((term, ("transposed", W), sp.MatMul(*args[:i], W.T, *args[i + 1:])
                        if len(args) > 1 else W.T))
            if i and isinstance(args[i - 1], DiagMatrix):
                out.append((term, ("columns", args[i - 1]),
                            sp.MatMul(*args[:i - 1], W, args[i - 1], *args[i + 1:])))
            if i + 1 < len(args) and isinstance(args[i + 1], DiagMatrix):
                out.append((term, ("rows", args[i + 1]),
                            sp.MatMul(*args[:i], args[i + 1], W, *args[i + 2:])))
    return tuple(out)


def square_slips(block):
    """The slips that keep their shape only where m = n: those of a weight U of shape
    (n, m) in a term of an input Jacobian, diag(v) U written diag(v) U^T (transposed) or
    U diag(v) (columns). They are `slips` of the term with m read as n, less those it has
    at any m, so they are evaluated only where the sizes agree (at n != m such a term
    cannot even be formed, and the function under test fails first)."""
    out = []
    for term in block_terms(block):
        if not any(w.shape == (N, M) for w in term.atoms(sp.MatrixSymbol)):
            continue
        square = term.xreplace({M: N})
        known = {v.xreplace({M: N}) for _, _, v in slips(term)}
        out.extend((term, slip, v) for _, slip, v in slips(square)
                   if slip[0] != "missing" and v not in known)
    return tuple(out)


def _without_each_factor(args, i, shape):
    """(factor, the term without it) for each elementwise factor of the diag(...) at
    args[i]: diag(f * g) without f is diag(g); diag(f) without f is no factor at all."""
    v = args[i].args[0]
    factors = v.args if isinstance(v, sp.HadamardProduct) else (v,)
    for k, f in enumerate(factors):
        rest = factors[:k] + factors[k + 1:]
        kept = [DiagMatrix(rest[0] if len(rest) == 1 else sp.HadamardProduct(*rest))] \
            if rest else []
        others = [*args[:i], *kept, *args[i + 1:]]
        matrices = [a for a in others if getattr(a, "is_Matrix", False)]
        yield f, (sp.MatMul(*others) if matrices else
                  sp.MatMul(*others, sp.Identity(shape[0])))
