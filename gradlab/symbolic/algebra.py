"""Smart constructors for the matrix expressions the chain rule builds.

SymPy's `MatMul`, `MatAdd` and `HadamardProduct` keep zeros, identities and nested diagonal
products unless asked to `doit()`, which in turn rewrites more than we want (and expands
reductions into index sums). These constructors apply only the identities that keep a
Jacobian small and readable:

    A + 0 = A        A 0 = 0        A I = A        diag(u) diag(v) = diag(u * v)
    A + A = 2 A
    u * 1 = u        diag(1) = I      u^-1 * u = 1
"""

import functools
import operator
from collections import Counter

import sympy as sp
from sympy import HadamardPower, HadamardProduct, Identity, MatAdd, MatMul, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.diagonal import DiagMatrix

from .dag import once


def is_zero(a):
    return isinstance(a, ZeroMatrix) or a == 0


def add(*terms, shape=None):
    """Sum of matrix expressions, dropping zeros; `shape` is used when nothing is left."""
    flat = [a for t in terms for a in (t.args if isinstance(t, MatAdd) else (t,))]
    counts = {}
    for t in flat:                       # u + u = 2 u, u - u = 0: merge the same terms
        if not is_zero(t):
            c, base = _coeff_base(t)
            counts[base] = counts.get(base, 0) + c
    kept = [t if k == 1 else scale(k, t) for t, k in counts.items() if k != 0]
    if not kept:
        return ZeroMatrix(*(shape if shape is not None else terms[0].shape))
    return kept[0] if len(kept) == 1 else MatAdd(*kept)


def _coeff_base(t):
    """(c, base) with t = c base, c a number: a term's numeric coefficient split off."""
    if isinstance(t, MatMul):
        c, mats = t.as_coeff_matrices()
        if c.is_number and c != 1 and mats:
            return c, mats[0] if len(mats) == 1 else MatMul(*mats)
    return sp.S.One, t


def rebuild(expr):
    """expr with these identities applied again throughout: what subs leaves (f = 1 gives
    diag(c ⊙ 1 ⊙ (1 - 1)) W_f) reads as the derivation would (nothing: the term is 0)."""
    return once(_rebuild_node, expr)


def _rebuild_node(expr, rebuild):
    if not isinstance(expr, sp.MatrixExpr) or not expr.args \
            or isinstance(expr, sp.MatrixSymbol):
        return expr
    args = [rebuild(a) for a in expr.args]
    for kind, build in ((MatAdd, lambda *a: add(*a, shape=expr.shape)), (MatMul, mul),
                        (HadamardProduct, hadamard), (DiagMatrix, diag)):
        if isinstance(expr, kind):
            return build(*args)
    return expr.func(*args)


def scale(c, a):
    """The scalar c times the matrix expression a."""
    c = sp.sympify(c)
    if c == 0 or is_zero(a):
        return ZeroMatrix(*a.shape)
    if c == 1:
        return a
    return mul(c, a)


def mul(*factors):
    """Matrix product (scalars allowed) with zeros, identities and diagonal runs simplified."""
    coeff, mats, eye = sp.S.One, [], None
    for f in factors:
        if isinstance(f, MatMul):
            c, ms = f.as_coeff_matrices()
            coeff, parts = coeff * c, list(ms)
        elif isinstance(f, sp.MatrixExpr):
            parts = [f]
        else:
            coeff, parts = coeff * f, []
        for p in parts:
            if isinstance(p, Identity):
                eye = p
                continue
            if mats and isinstance(p, DiagMatrix) and isinstance(mats[-1], DiagMatrix):
                merged = diag(hadamard(mats[-1].args[0], p.args[0]))
                if isinstance(merged, Identity):     # diag(u^-1) diag(u) = I
                    eye = mats.pop() and merged
                else:
                    mats[-1] = merged
                continue
            mats.append(p)
    if not mats and eye is not None:                 # c I: the identity stays
        mats = [eye]
    shape = (factors[0].shape[0] if isinstance(factors[0], sp.MatrixExpr) else None)
    if coeff == 0 or any(is_zero(p) for p in mats):
        rows = mats[0].shape[0] if mats else shape
        return ZeroMatrix(rows, mats[-1].shape[1])
    if not mats:
        raise ValueError("mul() needs at least one matrix factor")
    if coeff == 1 and len(mats) == 1:
        return mats[0]
    return MatMul(coeff, *mats) if coeff != 1 else MatMul(*mats)


def transposed(a):
    """a^T pushed down to the symbols: (A B)^T = B^T A^T, (A + B)^T = A^T + B^T, a
    diagonal is its own, (A^T)^T = A. SymPy's own .T turns (W W)^T into the matrix power
    (W^T)^2, which nothing downstream reads as a product."""
    if isinstance(a, MatMul):
        c, ms = a.as_coeff_matrices()
        return mul(c, *(transposed(m) for m in reversed(ms)))
    if isinstance(a, MatAdd):
        return add(*(transposed(t) for t in a.args), shape=a.shape[::-1])
    if isinstance(a, HadamardProduct):
        return hadamard(*(transposed(f) for f in a.args))
    if isinstance(a, sp.Transpose):
        return a.arg
    if isinstance(a, (DiagMatrix, Identity)):
        return a
    if isinstance(a, (OneMatrix, ZeroMatrix)):
        return type(a)(a.shape[1], a.shape[0])
    if isinstance(a, sp.MatPow) and a.exp.is_Integer and a.exp > 0:
        return mul(*[transposed(a.base)] * int(a.exp))
    return sp.Transpose(a)


def hadamard(*factors):
    """Elementwise product, dropping all-ones factors."""
    flat = []
    for f in factors:
        flat.extend(f.args if isinstance(f, HadamardProduct) else [f])
    if any(is_zero(f) for f in flat):
        return ZeroMatrix(*flat[0].shape)
    kept = [f for f in flat if not isinstance(f, OneMatrix)]
    for f in [f for f in kept if isinstance(f, HadamardPower) and f.exp == -1]:
        if f in kept and f.base in kept:             # u^-1 * u = 1 (log's derivative)
            kept.remove(f)
            kept.remove(f.base)
    if not kept:
        return OneMatrix(*flat[0].shape)
    return kept[0] if len(kept) == 1 else HadamardProduct(*kept)


def diag(v):
    """diag(v) for a column vector v; diag(1) is the identity; diag(c v) = c diag(v) for a
    number c, so that the number joins the product's own (2 a 1/2 ... read a ...)."""
    if isinstance(v, MatMul):
        c, ms = v.as_coeff_matrices()
        if c != 1 and ms:
            return scale(c, diag(ms[0] if len(ms) == 1 else MatMul(*ms)))
    if isinstance(v, OneMatrix):
        return Identity(v.shape[0])
    if is_zero(v):
        return ZeroMatrix(v.shape[0], v.shape[0])
    return DiagMatrix(v)


def collect(expr):
    """Collect the terms of every sum that share a right factor:

        c1 diag(u ⊙ w) R + c2 diag(v ⊙ w) R  ->  diag((c1 u + c2 v) ⊙ w) R

    (Hadamard factors common to all of them stay outside the sum; if every c is negative,
    -diag(...) R). The GRU's diag(h ⊙ z ⊙ (1 - z)) W_z - diag(h~ ⊙ z ⊙ (1 - z)) W_z reads
    diag((h - h~) ⊙ z ⊙ (1 - z)) W_z. The same matrix, written shorter: for reading."""
    return once(_collect_node, expr)


def _collect_node(expr, collect):
    if not isinstance(expr, sp.MatrixExpr) or not expr.args \
            or isinstance(expr, sp.MatrixSymbol):
        return expr
    args = [collect(a) for a in expr.args]
    if args != list(expr.args):
        expr = expr.func(*args)
    if not isinstance(expr, MatAdd):
        return expr
    groups, order = {}, []
    for t in expr.args:
        coeff, mats = t.as_coeff_matrices() if isinstance(t, MatMul) else (sp.S.One, [t])
        if len(mats) < 2 or not isinstance(mats[0], DiagMatrix):
            order.append((None, t))
            continue
        right = tuple(mats[1:])
        if right not in groups:
            groups[right] = []
            order.append((right, None))
        groups[right].append((coeff, mats[0].args[0]))
    if all(len(g) == 1 for g in groups.values()):
        return expr
    terms = [t if right is None else _collected(groups[right], right) for right, t in order]
    return add(*terms)


def _take(factors, counts):
    """(the factors counted in `counts`, the rest), each in the order given."""
    left, taken, rest = Counter(counts), [], []
    for f in factors:
        if left[f]:
            left[f] -= 1
            taken.append(f)
        else:
            rest.append(f)
    return taken, rest


def _collected(members, right):
    if len(members) == 1:
        (c, v), = members
        return scale(c, mul(diag(v), *right))
    factors = [list(v.args) if isinstance(v, HadamardProduct) else [v] for _, v in members]
    # common factors as a multiset: a ⊙ h and a ⊙ a share one a, not two
    shared = functools.reduce(operator.and_, (Counter(fs) for fs in factors))
    common = _take(factors[0], shared)[0]
    negative = all(c.could_extract_minus_sign() for c, _ in members)
    sign = -1 if negative else 1
    rest = [hadamard(*left) if left else OneMatrix(*members[0][1].shape)
            for left in (_take(fs, shared)[1] for fs in factors)]
    parts = [scale(sign * c, r) for (c, _), r in zip(members, rest)]
    total = MatAdd(*parts) if any(isinstance(p, MatAdd) for p in parts) else add(*parts)
    return scale(sign, mul(diag(hadamard(total, *common)), *right))
