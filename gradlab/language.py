"""The declaration language: a cell is its update equations, written as in CELLS.md.

    @declare(state="h c", params="W_i W_f W_g W_o U_i U_f U_g U_o b_i b_f b_g b_o",
             source="Hochreiter & Schmidhuber 1997")
    def lstm(s):
        i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
        ...
        c = s.let("c'", f * s.c + i * g)
        return o * tanh(c), c

`@` is the matrix product, `*` and `/` are elementwise (scalars broadcast), `1 - z` means
the all-ones vector minus z. Underneath, every value is a plain SymPy matrix expression
(MatMul, HadamardProduct, ElementwiseApplyFunction, ...) over symbols whose sizes are the
SymPy symbols n (hidden) and m (input): nothing here depends on a numeric size.
"""

import re

import sympy as sp
from sympy import HadamardPower, MatrixSymbol, OneMatrix
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from . import algebra as al
from . import functions
from .errors import GradlabError

n, m = sp.symbols("n m", integer=True, positive=True)
SIZES = {"n": n, "m": m, "1": sp.S.One}


class Value:
    """A vector (a SymPy column matrix expression) or a scalar (a SymPy expression)."""

    __array_priority__ = 1000
    __slots__ = ("expr", "owner")

    def __init__(self, expr, owner=None):
        self.expr, self.owner = expr, owner   # owner: the Builder that named it, if any

    @property
    def is_vector(self):
        return isinstance(self.expr, sp.MatrixExpr)

    def __repr__(self):
        return f"Value({self.expr})"

    def __matmul__(self, other):
        a, b = self.expr, _expr(other)
        if not isinstance(b, sp.MatrixExpr) or a.shape[1] != b.shape[0]:
            raise GradlabError(f"cannot multiply {a} ({_shape(a)}) by {b} ({_shape(b)})")
        return Value(al.mul(a, b))

    def __add__(self, other):
        return _combine(self, other, "add")

    __radd__ = __add__

    def __sub__(self, other):
        return _combine(self, -_value(other), "subtract")

    def __rsub__(self, other):
        return _combine(_value(other), -self, "subtract")

    def __neg__(self):
        return Value(al.scale(-1, self.expr) if self.is_vector else -self.expr)

    def __mul__(self, other):
        other = _value(other)
        if self.is_vector and other.is_vector:
            _same_shape(self.expr, other.expr, "multiply elementwise")
            return Value(al.hadamard(self.expr, other.expr))
        if self.is_vector or other.is_vector:
            vec, c = (self, other) if self.is_vector else (other, self)
            return Value(al.scale(c.expr, vec.expr))
        return Value(self.expr * other.expr)

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = _value(other)
        if other.is_vector:
            return self * Value(HadamardPower(other.expr, -1))
        return self * Value(1 / other.expr)

    def __rtruediv__(self, other):
        return _value(other) / self

    def __pow__(self, k):
        k = sp.sympify(k)
        return Value(HadamardPower(self.expr, k) if self.is_vector else self.expr ** k)


def _expr(v):
    return v.expr if isinstance(v, Value) else v


def _value(v):
    if isinstance(v, Value):
        return v
    if isinstance(v, (int, float, sp.Expr)) and not isinstance(v, sp.MatrixExpr):
        return Value(sp.nsimplify(v) if isinstance(v, float) else sp.sympify(v))
    raise GradlabError(f"cannot use {v!r} ({type(v).__name__}) in a cell equation")


def _shape(e):
    return " x ".join(map(str, e.shape)) if isinstance(e, sp.MatrixExpr) else "scalar"


def _same_shape(a, b, verb):
    if a.shape != b.shape:
        raise GradlabError(f"cannot {verb} {a} ({_shape(a)}) and {b} ({_shape(b)})")


def _combine(a, b, verb):
    a, b = _value(a), _value(b)
    if a.is_vector and b.is_vector:
        _same_shape(a.expr, b.expr, verb)
        return Value(al.add(a.expr, b.expr))
    if a.is_vector or b.is_vector:
        vec, c = (a, b) if a.is_vector else (b, a)
        return Value(al.add(vec.expr, al.scale(c.expr, OneMatrix(*vec.expr.shape))))
    return Value(a.expr + b.expr)


def elementwise(fn):
    """Lift a scalar SymPy function to act on every entry of a vector (or on a scalar)."""
    def apply(v):
        v = _value(v)
        return Value(ElementwiseApplyFunction(fn, v.expr) if v.is_vector else fn(v.expr))
    apply.__name__ = apply.__qualname__ = getattr(fn, "__name__", str(fn))
    apply.__doc__ = f"{apply.__name__}, applied elementwise."
    return apply


tanh = elementwise(sp.tanh)
sigmoid = elementwise(functions.sigmoid)
relu = elementwise(functions.relu)
sqrt = elementwise(sp.sqrt)
exp = elementwise(sp.exp)


def mean(v):
    """The mean over the units of a named vector r, as the scalar mu_r."""
    v, name = _named(v, "mean")
    ones = OneMatrix(1, v.expr.shape[0])
    return v.owner.let(f"mu_{name}", Value(al.scale(1 / v.expr.shape[0], al.mul(ones, v.expr))))


def var(v):
    """The population variance over the units of a named vector r (mean removed, / n)."""
    v, name = _named(v, "var")
    centred = (v - mean(v)).expr
    rows = centred.shape[0]
    spread = al.mul(sp.Transpose(centred), centred)
    return v.owner.let(f"sigma_{name}^2", Value(al.scale(1 / rows, spread)))


def _named(v, what):
    if not (isinstance(v, Value) and v.owner is not None):
        raise GradlabError(f"{what}() takes a named vector: bind it first, r = s.let('r', ...)")
    return v, re.sub(r"\W", "", v.expr.name)


class Builder:
    """The namespace a declaration function receives: parameters, state parts, x and let."""

    def __init__(self, cell_name, state, params, inputs="x"):
        self._cell = cell_name
        self.n, self.m = n, m
        self._symbols = {p: MatrixSymbol(p, n, 1) for p in state}
        self._symbols[inputs] = MatrixSymbol(inputs, m, 1)
        self._symbols.update({p: MatrixSymbol(p, *shape) for p, shape in params.items()})
        self.lets = {}       # let-bound symbol -> its definition, in order of declaration

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return Value(self._symbols[name])
        except KeyError:
            valid = ", ".join(self._symbols)
            raise GradlabError(f"'{name}' is not declared in cell '{self._cell}'; "
                               f"declared: {valid}") from None

    def let(self, name, value):
        """Name a vector (or a 1 x 1 reduction); later equations and the Jacobians use the name."""
        expr = _value(value).expr
        if not isinstance(expr, sp.MatrixExpr) or expr.shape[1] != 1:
            raise GradlabError(f"'{name}' must be a vector, got {_shape(expr)}")
        sym = sp.Symbol(name, real=True) if expr.shape == (1, 1) else MatrixSymbol(name, *expr.shape)
        previous = self.lets.get(sym)
        if previous is not None and previous == expr:
            return Value(sym, owner=self)    # the same reduction asked for twice
        if name in self._symbols or any(str(s) == name for s in self.lets):
            raise GradlabError(f"'{name}' is already defined in cell '{self._cell}'")
        self.lets[sym] = expr
        return Value(sym, owner=self)
