"""A Jacobian block's structure: zero, diagonal, diagonal plus rank one, or dense.

The code generator lowers a diagonal block as its diagonal (`diagonal`); the documents
describe each kind in words (`documents.sentences`).

The classification reads the SymPy expression itself, so it holds for every n:
a block is diagonal when every term is a product of diag(.) and I; it is dense when a
weight matrix appears; a product with the all-ones vector couples every unit at rank one.
"""

import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.diagonal import DiagMatrix

from . import algebra as al
from .dag import REWRITTEN, once, written_size


def plain(expr):
    """The SymPy expression of a block: a `Block` gives its expression, a Jacobian of one
    block (a single-part state) that block."""
    if hasattr(expr, "_sympy_"):
        expr = expr._sympy_()
    if isinstance(expr, sp.BlockMatrix) and expr.blockshape == (1, 1):
        expr = expr.blocks[0, 0]
    return expr


def terms(expr):
    """The terms of a block, a sum or a single term."""
    expr = plain(expr)
    return expr.args if isinstance(expr, MatAdd) else (expr,)


def _is_diagonal(m, known=None):
    """Is `m` diagonal by its form (see `_diag_vector`)? Stops at the first factor or term
    that is not, building nothing: a stack's dense cross-layer blocks are huge. `known`
    holds the answers so far, so that a shared subexpression is read once."""
    known = {} if known is None else known
    if m not in known:
        if isinstance(m, (DiagMatrix, Identity, ZeroMatrix)):
            known[m] = True
        elif isinstance(m, MatAdd):
            known[m] = all(_is_diagonal(a, known) for a in m.args)
        elif isinstance(m, MatMul):
            known[m] = all(_is_diagonal(a, known) for a in m.as_coeff_matrices()[1])
        else:
            known[m] = False
    return known[m]


def _diag_vector(m):
    """The diagonal of `m` as an n-vector expression if `m` is diagonal by its form, else
    None: diag(u) -> u, I -> ones, a product of diagonals -> their elementwise product, a
    sum of them -> the sum. Sums inside products count (the peephole LSTM's ∂h'/∂c is
    diag(.) (diag(.) + diag(.) + diag(f))): read term by term they were called dense."""
    known, sizes = {}, {}
    return once(lambda node, again: _diag_node(node, again, known, sizes), m)


def _diag_node(m, again, known, sizes):
    if isinstance(m, DiagMatrix):
        return m.args[0]
    if isinstance(m, (Identity, ZeroMatrix)):
        return (OneMatrix if isinstance(m, Identity) else ZeroMatrix)(m.shape[0], 1)
    if not _is_diagonal(m, known):
        return None
    if isinstance(m, MatAdd):
        return sp.MatAdd(*map(again, m.args))
    if isinstance(m, MatMul):
        coeff, mats = m.as_coeff_matrices()
        vectors = [again(a) for a in mats]
        kept = [v for v, a in zip(vectors, mats) if not isinstance(a, Identity)]
        # SymPy's hadamard_product (a doit) rewrites each occurrence of every node below:
        # past dag.REWRITTEN the product of the diagonals is built as it stands
        product = sp.hadamard_product if written_size(kept, sizes) <= REWRITTEN else al.hadamard
        vector = product(*kept) if kept else OneMatrix(m.shape[0], 1)
        return vector if coeff == 1 else coeff * vector
    return None


def _outer(product):
    """Does the product hold a column times a row (u v^T), i.e. a rank-one term?"""
    mats = product.as_coeff_matrices()[1]
    return any(a.shape[1] == 1 and b.shape[0] == 1 and a.shape[0] != 1
               for a, b in zip(mats, mats[1:]))


def atoms(exprs, types=(sp.Symbol, MatrixSymbol)):
    """The subexpressions of `exprs` that are instances of `types` (by default the symbols),
    each distinct subexpression read once: SymPy's `atoms` and `free_symbols` read a shared
    subtree once per occurrence, and a 10-layer stack's blocks hold millions."""
    seen, found, todo = set(), set(), list(exprs)
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, types):
            found.add(e)
        if not isinstance(e, MatrixSymbol):       # its args are its name and shape
            todo.extend(getattr(e, "args", ()))
    return found


def weights(expr, param_names):
    """The names of the weight matrices (parameters that are not vectors) in a block, sorted."""
    return sorted({str(s) for s in atoms([plain(expr)], MatrixSymbol)
                   if str(s) in param_names and s.shape[1] != 1})


def kind(expr, coupled=True):
    """'zero', 'diagonal', 'rank-one coupled' or 'dense'; with coupled=False, 'dense' for
    both of the last two (the code generator stores them alike), without reading every
    node of the expression (a stack's cross-layer blocks hold hundreds of thousands)."""
    expr = plain(expr)
    if isinstance(expr, ZeroMatrix):
        return "zero"
    if _is_diagonal(expr):
        return "diagonal"
    if not coupled:
        return "dense"
    if any(_outer(a) for a in _matrices(expr) if isinstance(a, MatMul)):
        return "rank-one coupled"
    return "dense"


def _matrices(expr):
    """The matrix-shaped subexpressions of expr (neither dimension 1), expr first. A
    vector inside (the argument of a diag, a gate's pre-activation) is not entered: what
    couples units there does not couple the block's, and a stack's cross-layer blocks hold
    hundreds of thousands of such nodes, most of them shared: each is visited once."""
    todo, seen = [expr], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        todo.extend(a for a in reversed(node.args) if isinstance(a, sp.MatrixExpr)
                    and id(a) not in seen and a.shape[0] != 1 and a.shape[1] != 1)


def diagonal(expr):
    """The diagonal of a 'diagonal' block as an n-vector expression: diag(u) diag(v) -> u * v,
    I -> the all-ones vector, so lowered code holds n numbers per row, not n x n."""
    vector = _diag_vector(plain(expr))
    if vector is None or isinstance(plain(expr), ZeroMatrix):
        raise ValueError(f"not a diagonal block: {expr}")
    return vector
