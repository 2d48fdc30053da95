"""The declaration language: a cell is its update equations (notation: derivations/conventions.md).

    @declare(state="h c", params="W_i W_f W_g W_o U_i U_f U_g U_o b_i b_f b_g b_o",
             source="Hochreiter & Schmidhuber 1997")
    def lstm(s):
        i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
        ...
        c = s.let("c'", f * s.c + i * g)
        return o * tanh(c), c

`@` is the matrix product, `*` and `/` elementwise (scalars broadcast), `1 - z` the
all-ones vector minus z, `W.T` a transpose, `s.I` (or `gradlab.I`) the n x n identity; the
elementwise functions come from the activation table, `activations.TABLE`. Every value is
a SymPy matrix expression whose sizes are the symbols n (hidden) and m (input),
`s.hidden_size` and `s.input_size` (`s.n` and `s.m` are what the cell declares so).
"""

import builtins
import numbers

import sympy as sp
from sympy import HadamardPower, Identity, MatrixSymbol, OneMatrix
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from . import algebra as al
from .activations import by_language_name, in_table
from .dag import doit
from .names import check_let_name
from .pairwise import Pairwise
from .typeset import Typeset
from .printing import text
from ..lowering.codeprinter import identifier
from ..errors import GradlabError, shown

n, m = sp.symbols("n m", integer=True, positive=True)
SIZES = {"n": n, "m": m, "1": sp.S.One}


def parameter_symbol(name, shape):
    """The SymPy symbol of a parameter: a real scalar for shape (1, 1), else a matrix."""
    if tuple(shape) == (sp.S.One, sp.S.One):
        return sp.Symbol(name, real=True)
    return MatrixSymbol(name, *shape)


class Value:
    """A value of the cell language: a vector (a SymPy column matrix expression), a matrix
    (a weight W, or I = gradlab.I = s.I, the n x n identity) or a scalar."""

    __array_priority__ = 1000
    __slots__ = ("expr", "owner")

    def __init__(self, expr, owner=None):
        self.expr, self.owner = expr, owner   # owner: the Builder that named it, if any

    is_vector = property(lambda self: isinstance(self.expr, sp.MatrixExpr))

    def __repr__(self):
        return text(self.expr)

    @property
    def T(self):
        """The transpose of a matrix (a scalar is its own)."""
        if not self.is_vector:
            return self
        if self.expr.shape[1] == 1:
            raise GradlabError(f"{text(self.expr)}.T: {text(self.expr)} is a vector, and "
                               "the language has column vectors only; for a sum over units "
                               "write sum(u * v)")
        return Value(al.transposed(self.expr))

    def __matmul__(self, other):
        a, b = self.expr, _value(other).expr
        if not isinstance(a, sp.MatrixExpr) or not isinstance(b, sp.MatrixExpr) \
                or a.shape[1] != b.shape[0]:
            raise GradlabError(f"cannot multiply {text(a)} ({_shape(a)}) by {text(b)} "
                               f"({_shape(b)}) with @")
        return Value(al.mul(a, b))

    __rmatmul__ = lambda self, other: _value(other) @ self       # noqa: E731
    __abs__ = lambda self: abs(self)                             # noqa: E731
    __pos__ = lambda self: self                                  # noqa: E731
    __array_ufunc__ = None       # numpy's ufuncs refuse it; its operators defer to these
    __hash__ = object.__hash__

    def __array__(self, *args, **kwargs):   # np.dot(W, h), np.mean(v): numpy would read
        raise GradlabError(f"numpy cannot read {text(self.expr)}: a cell's equations are "
                           "symbolic; write W @ h for a matrix product, and mean, sum, tanh, ...")

    def __bool__(self):          # `if g:`, `a and b`: Python would decide, not the equations
        raise GradlabError(f"{text(self.expr)} is symbolic: Python's if, and, or and not "
                           "cannot decide on it; write the choice into the equations "
                           "(maximum, minimum, relu, sigmoid, ...)")

    def __eq__(self, other):     # `mean(z) == 0` was always False: a branch taken silently
        if self is other:          # (and `a == s.h` always False: each s.h is a new Value)
            return True
        return self.__bool__()

    __ne__ = lambda self, other: not self.__eq__(other)          # noqa: E731

    def __call__(self, *args, **kwargs):     # I(3), W(h): a value, not a function
        size = " (I is the n x n identity: its size is the state's)" \
            if isinstance(self.expr, Identity) else ""
        raise GradlabError(f"{text(self.expr)} is a value of the cell language, not a "
                           f"function: it takes no arguments{size}")

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
        _nonzero(other, "divide by {}")
        if other.is_vector:
            return self * Value(HadamardPower(other.expr, -1))
        return self * Value(1 / other.expr)

    __rtruediv__ = lambda self, other: _value(other) / self      # noqa: E731

    def __pow__(self, k):
        if not isinstance(k, (numbers.Real, sp.Number)) or isinstance(k, bool):
            got = text(k.expr) if isinstance(k, Value) else shown(k)
            raise GradlabError(f"the exponent of {text(self.expr)} ** ... must be a number "
                               f"(2, 0.5, -1), got {got}")
        k = sp.sympify(k)
        if k.is_negative:
            _nonzero(self, "raise {} to the power " + str(k))
        return Value(HadamardPower(self.expr, k) if self.is_vector else self.expr ** k)


def _nonzero(v, what):
    """Refuse to divide by a value that is zero whatever the state (h - h): every number
    derived from it would be inf or nan."""
    e = doit(v.expr) if isinstance(v.expr, sp.Basic) else v.expr
    if e == 0 or isinstance(e, sp.ZeroMatrix) or getattr(e, "is_zero", None) is True:
        raise GradlabError(f"cannot {what.format(text(v.expr))}: it is zero for every state and "
                           "input (a division by zero)")


def _value(v):
    if isinstance(v, Value):
        return v
    if isinstance(v, bool):
        raise GradlabError(f"cannot use {v!r} (bool) in a cell equation")
    if isinstance(v, numbers.Real) and type(v).__module__ == "numpy":   # np.int64(2): 2
        v = int(v) if isinstance(v, numbers.Integral) else float(v)
    if isinstance(v, float):       # kept as written: 0.5 stays 0.5 (nsimplify gave log(2))
        return Value(sp.Float(v))
    if isinstance(v, (int, sp.Expr)) and not isinstance(v, sp.MatrixExpr):
        return Value(sp.sympify(v))
    if isinstance(v, numbers.Rational):        # Fraction(1, 3): exactly 1/3, as ** takes it
        return Value(sp.Rational(v.numerator, v.denominator))
    raise GradlabError(f"cannot use {shown(v)} ({type(v).__name__}) in a cell equation; "
                       "it takes s's values (s.h, s.W, ...), numbers (2, 0.5, Fraction(1, 3)) "
                       "and gradlab's functions")


def _shape(e):
    return " x ".join(map(str, e.shape)) if isinstance(e, sp.MatrixExpr) else "scalar"


def _same_shape(a, b, verb):
    if a.shape != b.shape:
        raise GradlabError(f"cannot {verb} {text(a)} ({_shape(a)}) and {text(b)} "
                           f"({_shape(b)})")


def _combine(a, b, verb):
    a, b = _value(a), _value(b)
    if a.is_vector and b.is_vector:
        _same_shape(a.expr, b.expr, verb)
        return Value(al.add(a.expr, b.expr))
    if a.is_vector or b.is_vector:
        vec, c = (a, b) if a.is_vector else (b, a)
        return Value(al.add(vec.expr, al.scale(c.expr, OneMatrix(*vec.expr.shape))))
    return Value(a.expr + b.expr)


def elementwise(fn, name=None):
    """Lift a scalar SymPy function (one of the activation table's) to act on every entry
    of a vector (or on a scalar)."""
    in_table(fn, 1)

    def apply(v):
        v = _value(v)
        return Value(ElementwiseApplyFunction(fn, v.expr) if v.is_vector else fn(v.expr))
    apply.__name__ = apply.__qualname__ = name or getattr(fn, "__name__", str(fn))
    apply.__doc__ = f"{apply.__name__}, applied elementwise."
    return apply


def pairwise(fn, name=None):
    """Lift a two-argument SymPy function to act entry by entry on two vectors (a scalar
    broadcasts); one of the activation table's."""
    in_table(fn, 2)

    def apply(a, b):
        a, b = _value(a), _value(b)
        if not (a.is_vector or b.is_vector):
            return Value(fn(a.expr, b.expr))
        shape = (a if a.is_vector else b).expr.shape
        a, b = (v.expr if v.is_vector else al.scale(v.expr, OneMatrix(*shape)) for v in (a, b))
        _same_shape(a, b, f"take {apply.__name__} of")
        return Value(Pairwise(fn, a, b))
    apply.__name__ = apply.__qualname__ = name or fn.__name__
    apply.__doc__ = f"{apply.__name__}(a, b), entry by entry."
    return apply


def _from_table():
    """The language's elementwise functions, one per entry of the activation table."""
    return {name: (elementwise if a.arity == 1 else pairwise)(a.function, name)
            for name, a in by_language_name().items()}


FUNCTIONS = _from_table()
globals().update(FUNCTIONS)     # tanh, sigmoid, relu, softplus, exp, log, maximum, ...
_elementwise_abs = FUNCTIONS["abs"]


def abs(v):     # noqa: A001 - Python's abs(v) for a Value comes here through __abs__
    """|v| elementwise (derivative sign(v), 0 at 0 as torch); any other value: builtins.abs."""
    if isinstance(v, (Value, sp.Expr)) and not isinstance(v, sp.Number):
        return _elementwise_abs(v)
    return builtins.abs(v)


I = Value(Identity(n))   # the n x n identity (also s.I in a declaration)


def sqrt(v):
    """The square root, applied elementwise: a vector's is its Hadamard power 1/2 (what
    the lowering prints and the chain rule differentiates; sqrt as a function would not
    lower)."""
    v = _value(v)
    return Value(HadamardPower(v.expr, sp.S.Half) if v.is_vector else sp.sqrt(v.expr))


def mean(v):
    """The mean over the units of a named vector r, as the scalar mu_r."""
    v, name = _named(v, "mean")
    ones = OneMatrix(1, v.expr.shape[0])
    return v.owner._let(f"mu_{name}", Value(al.scale(1 / v.expr.shape[0], al.mul(ones, v.expr))),
                        by=f"mean({v.expr.name})", checked=True)


def var(v):
    """The population variance over the units of a named vector r (mean removed, / n)."""
    v, name = _named(v, "var")
    centred = (v - mean(v)).expr
    rows = centred.shape[0]
    spread = al.mul(sp.Transpose(centred), centred)
    return v.owner._let(f"sigma_{name}^2", Value(al.scale(1 / rows, spread)),
                        by=f"var({v.expr.name})", checked=True)


def sum(v, *rest, **start):     # noqa: A001 - a plain iterable goes to builtins.sum
    """The sum over the units of a named vector r, as the scalar Σ_r; anything else is
    Python's sum (so `from gradlab import *` leaves sum([1, 2], start=5) working)."""
    if not isinstance(v, Value):
        return builtins.sum(v, *rest, **start)
    if rest or start:       # builtins' start (or a slip) would be dropped without a word
        extra = ", ".join([repr(a) for a in rest] + [f"{k}={a!r}" for k, a in start.items()])
        raise GradlabError(f"sum() of a named vector takes the vector alone, got also "
                           f"{extra}: add a term outside it, sum(r) + 2")
    v, name = _named(v, "sum", power="^")
    return v.owner._let(f"sum_{name}", Value(al.mul(OneMatrix(1, v.expr.shape[0]), v.expr)),
                        by=f"sum({v.expr.name})")


def norm(v):
    """The Euclidean norm over the units of a named vector r, as the scalar ‖r‖."""
    v, name = _named(v, "norm", power="^")
    squares = al.mul(sp.Transpose(v.expr), v.expr)
    return v.owner._let(f"norm_{name}", Value(HadamardPower(squares, sp.S.Half)),
                        by=f"norm({v.expr.name})")


def _named(v, what, power="pow"):
    if not (isinstance(v, Value) and v.owner is not None):
        raise GradlabError(f"{what}() takes a named vector: bind it first, r = s.let('r', ...)")
    if not v.is_vector:
        raise GradlabError(f"{what}() takes a named vector; {text(v.expr)} is a scalar")
    if v.expr.shape[1] != 1:
        raise GradlabError(f"{what}() takes a named vector; {text(v.expr)} is a matrix "
                           f"({v.expr.shape[0]} x {v.expr.shape[1]})")
    # the vector's own name in the reduction's (mu_a' for a', so it differs from mu_a),
    # a ~ spelled out (n~: mu_ntilde, read μ_ñ), so that sigma_ntilde^2 is a name too
    # (and a ^ spelled out: var of r^2 is sigma_rpow2^2, not sigma_r^2^2, nor μ_r^2;
    # norm and sum keep it, printed around the name: ‖r^2‖, Σ_{r^2})
    return v, v.expr.name.replace("~", "tilde").replace("^", power)


def symbol_of(builder, name):
    """The SymPy symbol of a name declared in `builder` (whose attributes are the cell's)."""
    return builder._symbols[name]


class Builder:
    """The namespace a declaration function receives: parameters, state parts, x and let.
    `s.NAME` is the parameter, state part or input called NAME, and nothing else: the sizes
    are `s.hidden_size` and `s.input_size` (the SymPy symbols n and m), so a state part may
    itself be called n or m (as in the xLSTM paper)."""

    def __init__(self, cell_name, state, params, inputs="x"):
        self._cell = cell_name
        self._symbols = {p: MatrixSymbol(p, n, 1) for p in state}
        self._symbols[inputs] = MatrixSymbol(inputs, m, 1)
        self._symbols.update({p: parameter_symbol(p, shape) for p, shape in params.items()})
        self._lets = {}       # let-bound symbol -> its definition, in order of declaration
        # lowered identifier -> the name that has it (h' and h_p, both v_h_p, would clash)
        self._printed = {identifier(str(s)): str(s) for s in self._symbols.values()}
        self._typeset = Typeset()     # what each name prints as: none reads as another
        for sym in self._symbols.values():
            self._typeset.add(str(sym), sym, f"cell '{cell_name}': ")

    def declared(self):
        """Every symbol an equation may use: state parts, input, parameters, lets, n, m."""
        return {*self._symbols.values(), *self._lets, n, m}

    @property
    def lets(self):
        """let-bound symbol -> its definition, in order of declaration."""
        return self._lets

    @property
    def I(self):     # noqa: E743 - the identity, as the papers write it
        """The n x n identity matrix."""
        return I

    hidden_size = property(lambda self: n, doc="The hidden size n (a SymPy symbol): a state "
                           "part is an n-vector.")
    input_size = property(lambda self: m, doc="The input size m (a SymPy symbol): the input "
                          "is an m-vector.")

    def __getattr__(self, name):
        if name.startswith("__") or "_symbols" not in self.__dict__:
            raise AttributeError(name)
        found = self._symbols.get(name, next((s for s in self._lets if s.name == name), None))
        if found is not None:                 # a part, parameter or let: mean(s.h) works
            return Value(found, owner=self)
        valid = ", ".join([*self._symbols, *(s.name for s in self._lets)])
        raise GradlabError(f"'{name}' is not declared in cell '{self._cell}'; "
                           f"declared: {valid}")

    def let(self, name, value):
        """Name a vector (or a 1 x 1 reduction); later equations and the Jacobians use the name."""
        if why := check_let_name(name):
            raise GradlabError(why)
        return self._let(name, value)

    def _let(self, name, value, by=None, checked=False):
        """let, and the reductions' names (mu_r `by` mean(r); `checked` as let checks)."""
        if checked and (why := check_let_name(name)):
            raise GradlabError(why)
        expr = _value(value).expr
        if not isinstance(expr, sp.MatrixExpr) or expr.shape[1] != 1:
            raise GradlabError(f"'{name}' must be a vector, got {_shape(expr)} "
                               f"{text(expr)}")
        sym = sp.Symbol(name, real=True) if expr.shape == (1, 1) else MatrixSymbol(name, *expr.shape)
        previous = self._lets.get(sym)
        if previous is not None and previous == expr:
            return Value(sym, owner=self)    # the same reduction asked for twice
        if name in self._symbols or any(str(s) == name for s in self._lets):
            raise GradlabError(f"'{name}' is already defined in cell '{self._cell}'" + (
                f": {by} names its value {name!r}, and a name given before (or another "
                "reduction's, whose vector's name spells the same) has it; rename that "
                "one, or the vector" if by else ""))
        printed = identifier(name)
        if printed in self._printed:
            raise GradlabError(f"let name {name!r} and {self._printed[printed]!r} would be the "
                               f"same variable ({printed}) in the lowered code; rename one")
        self._typeset.add(name, sym, f"{by} names its value {name!r}: " if by else "")
        self._printed[printed] = name
        self._lets[sym] = expr
        return Value(sym, owner=self)
