"""The declaration language: a cell is its update equations (notation: derivations/conventions.md).

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
SymPy symbols n (hidden) and m (input): nothing here depends on a numeric size. Inside
a declaration they are `s.hidden_size` and `s.input_size`; `s.n` and `s.m` are whatever the
cell declares under those names (xLSTM's state parts n and m, say).
"""

import keyword
import re

import sympy as sp
from sympy import HadamardPower, MatrixSymbol, OneMatrix
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from . import algebra as al
from . import activations
from ..lowering.codeprinter import identifier
from ..errors import GradlabError

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
sigmoid = elementwise(activations.sigmoid)
relu = elementwise(activations.relu)


def sqrt(v):
    """The square root, applied elementwise: a vector's is its Hadamard power 1/2 (what
    the lowering prints and the chain rule differentiates; sqrt as a function would not
    lower)."""
    v = _value(v)
    return Value(HadamardPower(v.expr, sp.S.Half) if v.is_vector else sp.sqrt(v.expr))


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


RESERVED = ("let", "hidden_size", "input_size")   # what a Builder offers besides the symbols


def check_name(name, what):
    """Refuse a state part, parameter or input name a declaration cannot use as `s.NAME`.

    Returns None if `name` is usable, else the reason (one line, naming the rule)."""
    if not isinstance(name, str):
        return f"{what} name {name!r} is a {type(name).__name__}, not a string"
    if not name.isidentifier():
        return f"{what} name {name!r} is not a Python identifier (letters, digits, _)"
    if keyword.iskeyword(name):
        return f"{what} name {name!r} is a Python keyword; s.{name} cannot be written"
    if name.startswith("_"):
        return f"{what} name {name!r} starts with '_', which gradlab keeps for itself"
    if name in RESERVED:
        return (f"{what} name {name!r} is reserved: s.{name} is the builder's own "
                f"({', '.join(RESERVED)} are)")
    return None


class Builder:
    """The namespace a declaration function receives: parameters, state parts, x and let.

    `s.NAME` is the parameter, state part or input called NAME, and nothing else: the
    sizes are `s.hidden_size` and `s.input_size` (the SymPy symbols n and m), so a state
    part may itself be called n or m (as in the xLSTM paper)."""

    def __init__(self, cell_name, state, params, inputs="x"):
        self._cell = cell_name
        self._symbols = {p: MatrixSymbol(p, n, 1) for p in state}
        self._symbols[inputs] = MatrixSymbol(inputs, m, 1)
        self._symbols.update({p: MatrixSymbol(p, *shape) for p, shape in params.items()})
        self._lets = {}       # let-bound symbol -> its definition, in order of declaration
        # identifier in the lowered code -> the name that has it (h' and h_p both print
        # as v_h_p: two such names would be one variable)
        self._printed = {identifier(str(s)): str(s) for s in self._symbols.values()}

    @property
    def lets(self):
        """let-bound symbol -> its definition, in order of declaration."""
        return self._lets

    @property
    def hidden_size(self):
        """The hidden size n (a SymPy symbol): a state part is an n-vector."""
        return n

    @property
    def input_size(self):
        """The input size m (a SymPy symbol): the input is an m-vector."""
        return m

    def __getattr__(self, name):
        if name.startswith("__") or "_symbols" not in self.__dict__:
            raise AttributeError(name)
        try:
            return Value(self._symbols[name])
        except KeyError:
            valid = ", ".join(self._symbols)
            raise GradlabError(f"'{name}' is not declared in cell '{self._cell}'; "
                               f"declared: {valid}") from None

    def let(self, name, value):
        """Name a vector (or a 1 x 1 reduction); later equations and the Jacobians use the name."""
        if not isinstance(name, str) or not name or name != name.strip() \
                or any(ch.isspace() for ch in name):
            raise GradlabError(f"let name {name!r} must be a non-empty string without spaces")
        expr = _value(value).expr
        if not isinstance(expr, sp.MatrixExpr) or expr.shape[1] != 1:
            raise GradlabError(f"'{name}' must be a vector, got {_shape(expr)}")
        sym = sp.Symbol(name, real=True) if expr.shape == (1, 1) else MatrixSymbol(name, *expr.shape)
        previous = self._lets.get(sym)
        if previous is not None and previous == expr:
            return Value(sym, owner=self)    # the same reduction asked for twice
        if name in self._symbols or any(str(s) == name for s in self._lets):
            raise GradlabError(f"'{name}' is already defined in cell '{self._cell}'")
        printed = identifier(name)
        if printed in self._printed:
            raise GradlabError(f"let name {name!r} and {self._printed[printed]!r} would be the "
                               f"same variable ({printed}) in the lowered code; rename one")
        self._printed[printed] = name
        self._lets[sym] = expr
        return Value(sym, owner=self)
