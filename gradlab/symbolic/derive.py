"""The matrix chain rule: total Jacobians of a cell's quantities, in numerator layout.

SymPy 1.14 cannot differentiate the LSTM's core pattern (a Hadamard product of an
elementwise sigmoid with another vector) with respect to a vector, and where its matrix
`diff` succeeds it answers in denominator layout with `Lambda(_d, ...)` dummies. So gradlab
owns the matrix rules below and leaves SymPy the scalar calculus (f' of every activation,
derivatives of scalar coefficients) and the expression trees themselves:

    d(A v)        = A dv                      A constant, v a vector
    d(u^T R)      = R^T du                    a row vector times a column (reductions)
    d(c(s) M)     = c dM + M (dc/ds) ds       c a scalar coefficient, s a scalar quantity
    d(u * v)      = diag(v) du + diag(u) dv   (Hadamard product)
    d(u^k)        = diag(k u^(k-1)) du        (Hadamard power)
    d(f(v))       = diag(f'(v)) dv            (elementwise function; f' from SymPy)

Every rule returns J[i, j] = d out_i / d in_j (numerator layout, as torch.func.jacrev).
Quantities the cell names with `let` keep their names: the derivative of i = sigma(a) is
written diag(i * (1 - i)), not diag(sigma(a) * (1 - sigma(a))).
"""

import functools

import sympy as sp
from sympy import (HadamardPower, HadamardProduct, Identity, MatAdd, MatMul, MatrixSymbol,
                   OneMatrix, ZeroMatrix)
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from . import algebra as al
from .activations import TABLE
from .pairwise import Pairwise
from .printing import text
from ..errors import GradlabError

RULES = {}


def rule(cls):
    """Register the chain rule for one SymPy node class."""
    def register(fn):
        RULES[cls] = fn
        return fn
    return register


class Chain:
    """Total Jacobians of let-bound quantities with respect to one vector `wrt`.

    `lets` maps each named quantity (a MatrixSymbol for a vector, a Symbol for a scalar
    reduction) to its defining expression, in the order they were declared.
    """

    def __init__(self, lets, wrt):
        self.lets, self.wrt, self.k = lets, wrt, wrt.shape[0]
        self._totals = {}
        # a subexpression shared by several parents (e = e + tanh(W e), unrolled: each e
        # inside the next twice) is read and derived once; SymPy's free_symbols and a
        # plain recursion read it once per occurrence, 2^depth times
        self._jacs, self._depends = {}, {}
        self.dependent = {wrt}
        for sym, expr in lets.items():
            if self.depends(expr):
                self.dependent.add(sym)

    def depends(self, expr):
        """Does expr involve wrt, directly or through a let? (Lets refer only to earlier
        lets, so an answer kept while `dependent` still grows stays right.)"""
        if not isinstance(expr, sp.Basic):
            return False
        known = self._depends.get(expr)
        if known is None:
            known = expr in self.dependent or (not isinstance(expr, MatrixSymbol) and any(
                self.depends(a) for a in expr.args))
            self._depends[expr] = known
        return known

    @property
    def totals(self):
        """let-bound quantity -> its total Jacobian d q / d wrt, for each derived so far (by
        `total`, which derives the lets before it first), in the order of the lets."""
        return dict(self._totals)

    def total(self, sym):
        """d sym / d wrt, with sym a let-bound quantity or wrt itself."""
        if sym == self.wrt:
            return Identity(self.k)
        if sym not in self._totals:
            # the lets before it first, in order, each reading only earlier ones already
            # derived: from the last alone, a chain of 100 lets recursed 100 deep through
            # SymPy (a RecursionError)
            for earlier in self.lets:
                if earlier == sym:
                    break
                if earlier in self.dependent and earlier not in self._totals:
                    self._totals[earlier] = self.jac(self.lets[earlier], named=earlier)
            self._totals[sym] = self.jac(self.lets[sym], named=sym)
        return self._totals[sym]

    def jac(self, expr, named=None):
        """d expr / d wrt, derived once per (subexpression, name)."""
        key = (expr, named)
        if key not in self._jacs:
            self._jacs[key] = self._derive(expr, named)
        return self._jacs[key]

    def _derive(self, expr, named):
        rows = expr.shape[0] if isinstance(expr, sp.MatrixExpr) else 1
        if not self.depends(expr):
            return ZeroMatrix(rows, self.k)
        for cls in type(expr).__mro__:
            if cls in RULES:
                return RULES[cls](self, expr, named)
        raise GradlabError(f"gradlab has no chain rule for {type(expr).__name__}: "
                           f"{text(expr)}")

    def gradient(self, scalar):
        """Row vector d scalar / d wrt of a scalar expression over scalar lets."""
        terms = [al.scale(sp.diff(scalar, s), self.total(s))
                 for s in sorted(scalar.free_symbols & self.dependent, key=str)
                 if s in self.lets]
        return al.add(*terms, shape=(1, self.k))


@rule(MatrixSymbol)
def _symbol(chain, expr, named):
    return chain.total(expr)


@rule(MatAdd)
def _sum(chain, expr, named):
    return al.add(*(chain.jac(a) for a in expr.args), shape=(expr.shape[0], chain.k))


@rule(MatMul)
def _product(chain, expr, named):
    coeff, mats = expr.as_coeff_matrices()
    terms = []
    if chain.depends(coeff):
        terms.append(al.mul(*mats, chain.gradient(coeff)))
    for i, factor in enumerate(mats):
        if not chain.depends(factor):
            continue
        prefix, rest = mats[:i], mats[i + 1:]
        if not rest and factor.shape[1] == 1:                 # A v
            terms.append(al.mul(coeff, *prefix, chain.jac(factor)))
        elif factor.shape[0] == 1 and al.mul(*rest).shape[1] == 1:      # u^T R
            column = factor.arg if isinstance(factor, sp.Transpose) else factor.T
            terms.append(al.mul(coeff, *prefix, sp.Transpose(al.mul(*rest)), chain.jac(column)))
        else:
            raise GradlabError(
                f"cannot differentiate {text(expr)}: the factor {text(factor)} depends on "
                f"{text(chain.wrt)} "
                "but is neither the trailing vector nor a transposed vector")
    return al.add(*terms, shape=(expr.shape[0], chain.k))


@rule(HadamardProduct)
def _hadamard(chain, expr, named):
    fs = expr.args
    return al.add(*(al.mul(al.diag(al.hadamard(*(fs[:i] + fs[i + 1:]))), chain.jac(f))
                    for i, f in enumerate(fs)), shape=(expr.shape[0], chain.k))


@rule(HadamardPower)
def _power(chain, expr, named):
    base, k = expr.args
    slope = al.scale(k, base if k == 2 else HadamardPower(base, k - 1))
    return al.mul(al.diag(slope), chain.jac(base))


@functools.lru_cache(maxsize=None)
def slopes(function):
    """(ys, f(ys), (df/dy for y in ys)) of an elementwise or pairwise function (a Lambda),
    the variables real (|y|' is sign(y), not SymPy's re/im form). Derived once per
    function: SymPy takes ~8 ms a derivative, and a stack of L LSTM layers asks for the
    same two ~50 L times."""
    names = ("y",) if len(function.variables) == 1 else ("a", "b")
    ys = tuple(sp.Dummy(name, real=True) for name in names)
    fy = function(*ys)
    return ys, fy, tuple(sp.diff(fy, y) for y in ys)


@rule(ElementwiseApplyFunction)
def _elementwise(chain, expr, named):
    (y,), fy, (dfy,) = slopes(expr.function)
    slope = lift(dfy, {y: expr.expr}, fy, value=named if named is not None else expr)
    return al.mul(al.diag(slope), chain.jac(expr.expr))


@rule(Pairwise)
def _pairwise(chain, expr, named):
    ys, fy, dfs = slopes(expr.function)
    args = dict(zip(ys, expr.operands))
    value = named if named is not None else expr
    return al.add(*(al.mul(al.diag(lift(dfy, args, fy, value=value)), chain.jac(arg))
                    for dfy, arg in zip(dfs, expr.operands)),
                  shape=(expr.shape[0], chain.k))


def lift(scalar, args, fy, *, value):
    """Turn f'(y), a scalar SymPy expression, into the vector of f'(arg) values.

    `args` maps each variable y of f to the vector it stands for; f(y) inside f'(y)
    becomes `value` (the named result where there is one); sums, products and powers
    become their elementwise forms.
    """
    placeholder = sp.Dummy("f")
    scalar = scalar.subs(fy, placeholder)
    ones = OneMatrix(*next(iter(args.values())).shape)

    def go(e):
        if e == placeholder:
            return value
        if e in args:
            return args[e]
        if e.is_Number:
            return al.scale(e, ones)
        if isinstance(e, sp.Add):
            return al.add(*(go(a) for a in e.args))
        if isinstance(e, sp.Mul):
            c, rest = e.as_coeff_Mul()
            factors = sorted(sp.Mul.make_args(rest), key=lambda a: isinstance(a, sp.Add))
            return al.scale(c, al.hadamard(*(go(a) for a in factors)))
        if isinstance(e, sp.Pow) and e.exp.is_Number:
            return HadamardPower(go(e.base), e.exp)
        if isinstance(e, sp.Function) and type(e).__name__ in TABLE:
            if len(e.args) == 1:
                return ElementwiseApplyFunction(e.func, go(e.args[0]))
            if len(e.args) == 2:
                return Pairwise(e.func, *(go(a) for a in e.args))
        names = {y: sp.Symbol(f"v{k}" if len(args) > 1 else "v") for k, y in enumerate(args)}
        f = text(fy.xreplace(names))
        raise GradlabError(f"cannot differentiate {f} elementwise: its derivative "
                           f"{text(scalar.xreplace(names).subs(placeholder, sp.Symbol(f)))} "
                           "uses a function outside gradlab's activation table "
                           f"({', '.join(sorted(TABLE))}); add it to "
                           "gradlab/symbolic/activations.py")

    return go(scalar)
