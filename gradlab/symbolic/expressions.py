"""What a Jacobian is taken apart into, as objects that print as `gradlab derive` does:
`Expression` (any matrix expression SymPy hands back, J**-1), `Block` (one block of a
Jacobian, with its numbers), `Terms`, and a cell's update `Equation`s. Block matrices
(J.T, J @ J, J + J, 2 J) are in blocks.py, the Jacobian itself in jacobian.py.
"""

import numbers

import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

from . import algebra as al
from .explicit import entries
from .frozen import FrozenDict
from .mistakes import line_of
from .printing import block_name, latex, text
from .structure import kind, terms as block_terms
from ..errors import GradlabError, arguments_checked


DEPRECATED = ("expr_free_symbols",)   # SymPy's, which warns when a completer reads it
EXPLICIT_MAX = 12        # entries written out one by one (n = 12: 144 per n x n block)


def _sizes(n, m):
    from .language import SIZES
    sizes = {}
    for what, k in (("n", n), ("m", m)):
        if isinstance(k, bool) or not isinstance(k, (numbers.Integral, sp.Integer)) \
                or not 1 <= k <= EXPLICIT_MAX:
            raise GradlabError(f"explicit({what}={k!r}): give a small positive integer size, "
                               f"1..{EXPLICIT_MAX} (every entry is written out)")
        sizes[SIZES[what]] = int(k)
    return sizes


def block_sizes(shape, input_cols, n, m):
    """(n, m) for a block's explicit(n, m): by default the size subs fixed (J.subs(n, 3)),
    else n = 2, m = n; another than a fixed one refused (SymPy wrote the fixed one)."""
    fixed = {"n": shape[0], "m": shape[1] if input_cols else None}
    fixed = {k: int(d) for k, d in fixed.items() if isinstance(d, sp.Integer)}
    n = fixed.get("n", 2) if n is None else n
    m = fixed.get("m", n) if m is None else m
    for what, asked in (("n", n), ("m", m)):
        if what in fixed and isinstance(asked, numbers.Integral) and \
                not isinstance(asked, bool) and asked != fixed[what]:
            raise GradlabError(f"explicit({what}={asked!r}): this Jacobian's size {what} was "
                               f"substituted (subs) to {fixed[what]}; valid: {fixed[what]}")
    return n, m


def pretty_lines(printed):
    """Lines for SymPy's pretty printer, left-aligned (it centres lines of unequal width)."""
    lines = printed.split("\n")
    width = max(len(line) for line in lines)
    return prettyForm("\n".join(line.ljust(width) for line in lines))


def sympy_of(value):
    """The SymPy object of an Expression; anything else as it is."""
    return value.expr if isinstance(value, Expression) else value


def as_expression(value):
    """A matrix expression that SymPy hands back (J["c", "h"].T, .doit()) as an
    Expression, so that it prints as derive does; anything else as it is."""
    symbolic = isinstance(value, sp.MatrixExpr) and not isinstance(value, sp.MatrixBase)
    return Expression(value) if symbolic else value      # an explicit Matrix stays one


def _size(m):
    return " x ".join(str(d) for d in m.shape)


def substituted(subs, args, kwargs):
    """subs(*args, **kwargs), a SymPy subs, with a matrix replaced by a matrix of its shape
    only (a vector put for a matrix printed as nonsense) and what SymPy refuses (a size
    of -1, rows that do not line up) said in one line."""
    pairs = (args[0].items() if len(args) == 1 and isinstance(args[0], dict) else
             args[0] if len(args) == 1 else [args] if len(args) == 2 else None)
    if pairs is None or not isinstance(pairs, (list, tuple, set, type({}.items()))) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise GradlabError("subs takes (old, new), a dict {old: new} or a list of (old, new) "
                           f"pairs, got {', '.join(map(repr, args)) or 'nothing'}")
    held = getattr(subs, "__self__", None)                       # the expression itself
    names = {}                       # name -> its symbols (a parameter n beside the size n)
    for a in (held.atoms(sp.MatrixSymbol, sp.Symbol) if held else ()):
        names.setdefault(str(a), set()).add(a)
    sizes = {sp.Symbol(d, integer=True, positive=True) for d in ("n", "m")}
    absent = []                      # symbols the expression does not hold
    for old, new in pairs:
        if old in sizes and not (isinstance(new, numbers.Integral) and not isinstance(new, bool)
                                 and new >= 1 or isinstance(new, sp.Integer) and new >= 1
                                 or isinstance(new, sp.Basic) and not new.is_number):
            raise GradlabError(f"subs: the size {old} is a positive integer (every block's "
                               f"shape is written in it), not {new!r}")
        if str(old) in ("n", "m") and isinstance(old, (str, sp.Symbol)) and old not in \
                sizes and not names.get(str(old), set()) - sizes:   # no parameter so named
            raise GradlabError(f"subs: {old!r} is not the size {old} of this expression, "
                               f"Symbol({str(old)!r}, integer=True, positive=True); "
                               f"J.explicit({old}=3) writes the blocks out at a size")
        if isinstance(old, str) or (isinstance(old, (sp.MatrixSymbol, sp.Symbol)) and
                                    old not in names.get(str(old), {old})):
            raise GradlabError(f"subs: {old!r} is not a symbol of this expression (SymPy "
                               "would leave it unchanged, silently); take it from the cell: "
                               f"cell.symbol({str(old)!r})")
        if held is not None and isinstance(old, (sp.MatrixSymbol, sp.Symbol)) and \
                str(old) not in names and old not in sizes:
            absent.append(old)
        old, new = sympy_of(old), sympy_of(new)
        if isinstance(old, sp.MatrixExpr) and (
                not hasattr(new, "shape") or tuple(new.shape) != tuple(old.shape)):
            dims = [d for d in getattr(new, "shape", ()) if isinstance(d, sp.Basic)]
            foreign = {str(s) for d in dims for s in d.free_symbols
                       if str(s) in ("n", "m") and s not in sizes}
            raise GradlabError(f"subs: {old} is {_size(old)}; it is replaced by a matrix of "
                               f"that shape, not {new} ("
                               + (_size(new) if hasattr(new, "shape") else "a scalar") + ")"
                               + "".join(f": its {d} is not the size {d}, Symbol({d!r}, "
                                         "integer=True, positive=True)"
                                         for d in sorted(foreign)[:1]))
    try:
        done = subs(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise GradlabError(f"subs: {' '.join(str(err).split())}") from None
    if absent and done == held:      # nothing changed, and something named is not there
        raise GradlabError(f"subs: {absent[0]} does not occur in this expression (SymPy "
                           "would leave it unchanged, silently); its symbols: "
                           + ", ".join(sorted(k for k in names
                                              if k not in ("n", "m") and not k.startswith("_"))))
    return done


def bounded(method, name, args, kwargs):
    """A SymPy method's result, or one line where it recurses without end (diff of a
    diag(...) block: SymPy's matrix calculus does, on expressions like these)."""
    try:
        return method(*args, **kwargs)
    except RecursionError:
        raise GradlabError(f"{name}: SymPy recursed without end on this expression (its "
                           "matrix calculus cannot take it); J.explicit(n=2) gives the "
                           "blocks entry by entry, where SymPy's diff works") from None


class Expression:
    """A SymPy matrix expression that prints as `gradlab derive` does; `expr` is the SymPy
    object, SymPy's methods reach it, and it compares equal to it."""

    def __init__(self, expr):
        self.expr = expr

    def _sympy_(self):
        return self.expr

    def _mathml_content(self, printer):          # (SymPy's printers look these up by name,
        return printer._print(self.expr)           # not through __getattr__)

    _mathml_presentation = _mathml_content

    def __getattr__(self, name):           # shape, free_symbols, atoms, xreplace, T, ...
        if name.startswith("__") or name == "expr":
            raise AttributeError(name)
        value = getattr(self.expr, name)
        if not callable(value):
            return as_expression(value)
        return lambda *args, **kwargs: as_expression(bounded(value, name, args, kwargs))

    def __dir__(self):     # tab completion offers what __getattr__ reaches (b.shape, b.T),
        return sorted({*super().__dir__(), *(a for a in dir(self.expr)    # less SymPy's
                                             if not a.startswith("_") and a not in DEPRECATED)})

    # SymPy's arithmetic on the expression, the result printed as derive prints
    def __neg__(self):
        return Expression(-self.expr)

    __add__ = lambda self, other: self._sum(other, 1, False)                     # noqa: E731
    __radd__ = lambda self, other: self._sum(other, 1, True)                     # noqa: E731
    __sub__ = lambda self, other: self._sum(other, -1, False)                    # noqa: E731
    __rsub__ = lambda self, other: self._sum(other, -1, True)                    # noqa: E731
    __mul__ = lambda self, other: Expression(self.expr * self._number(other, "*"))  # noqa
    __rmul__ = lambda self, other: Expression(self._number(other, "*") * self.expr)  # noqa
    __matmul__ = lambda self, other: self._product(other, False)                 # noqa: E731
    __rmatmul__ = lambda self, other: self._product(other, True)                 # noqa: E731

    def _matrix(self, other, op):
        """`other` as a SymPy matrix expression, or a one-line refusal naming `op`."""
        other = sympy_of(other)
        if not isinstance(other, (sp.MatrixExpr, sp.MatrixBase)):
            what = ("adds to a matrix of its shape" if op == "+" else
                    "multiplies (@) a matrix")
            raise GradlabError(f"a block {what} (another block, a weight), not "
                               f"{type(other).__name__}" + (
                                   "; scale it with * instead" if op == "@" else ""))
        return other

    def _number(self, other, op):
        other = sympy_of(other)
        if isinstance(other, (sp.MatrixExpr, sp.MatrixBase)):
            raise GradlabError(f"a block {op} a matrix is ambiguous here (* is entrywise "
                               "in the cell language): use @ for the matrix product")
        if not isinstance(other, (numbers.Number, sp.Expr)) or isinstance(other, bool):
            raise GradlabError(f"a block scales by a number, not by {type(other).__name__}")
        return other

    def _sum(self, other, sign, left):
        other = self._matrix(other, "+")
        if tuple(other.shape) != tuple(self.expr.shape):
            raise GradlabError(f"a block of shape {_size(self.expr)} cannot be added to one "
                               f"of shape {_size(other)}")
        return Expression(other + sign * self.expr if left else self.expr + sign * other)

    def _product(self, other, left):
        other = self._matrix(other, "@")
        a, b = (other, self.expr) if left else (self.expr, other)
        if a.shape[1] != b.shape[0]:
            raise GradlabError(f"{_size(a)} @ {_size(b)}: the sizes do not chain")
        return Expression(a @ b)

    def __pow__(self, k):                  # a matrix power: b @ b, for a square block
        if not (isinstance(k, numbers.Integral) and not isinstance(k, bool)):
            raise GradlabError(f"a block's power is a whole number of matrix products "
                               f"(b**2 is b @ b), got {k!r}; for entrywise powers "
                               "substitute into the block's numbers")
        if self.expr.shape[0] != self.expr.shape[1]:
            raise GradlabError(f"b**{k}: the block is {self.expr.shape[0]} x "
                               f"{self.expr.shape[1]}, and only a square one has powers")
        return Expression(self.expr ** k)

    def __truediv__(self, c):              # by a number (or a SymPy scalar) only
        if isinstance(c, (Expression, sp.MatrixBase, sp.MatrixExpr)) \
                or not isinstance(c, (numbers.Number, sp.Expr)):
            raise GradlabError(f"a block divides by a number, not by {type(c).__name__}")
        if c == 0:
            raise GradlabError("a block divided by zero")
        return Expression(self.expr * (1 / sp.sympify(c)))

    def _sympystr(self, printer):          # sympy.sstr / pretty / latex of a block: ours
        return text(self.expr)

    def _pretty(self, printer):
        return pretty_lines(text(self.expr))

    def _latex(self, printer):
        return latex(self.expr)

    def __eq__(self, other):
        return self.expr == (other.expr if isinstance(other, Expression) else other)

    def __hash__(self):
        return hash(self.expr)

    def __repr__(self):              # a display never raises: IPython would show a traceback
        try:
            return text(self.expr)
        except GradlabError as err:  # too long to print
            return f"<expression: {line_of(err)}>"

    def __str__(self):               # asked for in so many words: says why it cannot
        return text(self.expr)

    def _repr_latex_(self):
        try:
            return f"$${latex(self.expr)}$$"
        except GradlabError:
            return None              # (IPython then shows the repr)

    def latex(self):
        return latex(self.expr)

    @property
    def kind(self):
        """'zero', 'diagonal', 'rank-one coupled' or 'dense'."""
        return kind(self.expr)

    def explicit(self, n=2, m=None):
        """A SymPy Matrix with explicit entries at hidden size n (input size m, n by
        default)."""
        return entries(self.expr, _sizes(n, n if m is None else m))

    def subs(self, *args, **kwargs):
        """SymPy's subs on the expression (printed as derive does), checked (`substituted`)."""
        return Expression(al.collect(al.rebuild(substituted(self.expr.subs, args, kwargs))))

    def simplify(self, **kwargs):
        return Expression(al.collect(al.rebuild(sp.simplify(self.expr, **kwargs))))


class Block(Expression):
    """One block ∂out/∂wrt of a Jacobian; `at` gives its numbers."""

    def __init__(self, jacobian, i, j):
        super().__init__(jacobian.blocks[i, j])
        self.jacobian, self.i, self.j = jacobian, i, j
        self.out, self.wrt = jacobian.outs[i], jacobian.ins[j]

    def explicit(self, n=None, m=None):
        """A SymPy Matrix with explicit entries at hidden size n (input size m, n by
        default); where subs fixed a size (J.subs(n, 3)), at that size only (and by
        default), else n = 2 by default."""
        inputs = self.wrt not in self.jacobian.parts
        return super().explicit(*block_sizes(self.expr.shape, inputs, n, m))

    def _repr_latex_(self):
        try:
            return f"$${block_name(self.out, self.wrt, 'latex')} = {latex(self.expr)}$$"
        except GradlabError:
            return None

    @arguments_checked
    def terms(self):
        """The terms of the block's sum (one term if it is not a sum), each printable."""
        return Terms(Expression(t) for t in block_terms(self.expr))

    @arguments_checked
    def at(self, params, state, x, backend=None):
        """This block's numbers, batched: (B, n, n) or (B, n, m)."""
        full = self.jacobian.at(params, state, x, backend)
        n = state[0].shape[-1] if isinstance(state, (tuple, list)) else state.shape[-1]
        cols = slice(self.j * n, (self.j + 1) * n) if self.wrt in self.jacobian.parts \
            else slice(None)                  # a state part's columns, or all of x's
        return full[:, self.i * n:(self.i + 1) * n, cols]


class Terms(list):
    """A block's terms: a list of `Expression`s, printed in derive's notation."""

    def __repr__(self):
        return "[" + ", ".join(map(repr, self)) + "]"

    __str__ = __repr__


class Equation(sp.Equality):
    """name = definition, one update equation; prints as `gradlab derive` does."""

    def __new__(cls, lhs, rhs):
        return sp.Equality.__new__(cls, lhs, rhs, evaluate=False)

    # each side prints as derive does too (SymPy's own code reads self.args)
    lhs = property(lambda self: as_expression(self.args[0]))
    rhs = property(lambda self: as_expression(self.args[1]))

    def _sympystr(self, printer):
        return f"{text(self.args[0])} = {text(self.args[1])}"

    def _latex(self, printer):
        return f"{latex(self.args[0])} = {latex(self.args[1])}"

    def _pretty(self, printer):
        return pretty_lines(self._sympystr(printer))

    # a display never raises (IPython would show a traceback); str() says why it cannot
    def __repr__(self):
        try:
            return str(self)
        except GradlabError as err:         # too long to print
            return f"{text(self.args[0])} = <expression: {line_of(err)}>"

    def _repr_latex_(self):
        try:
            return f"$\\displaystyle {self._latex(None)}$"
        except GradlabError:
            return None


class Lets(FrozenDict):
    """A cell's named quantities, {symbol: expression} in the order declared: a dict
    that prints as its `equations()` do, as `gradlab derive` writes them."""

    def equations(self):
        return Equations(Equation(s, e) for s, e in self.items())

    def __repr__(self):
        return repr(self.equations())

    def __str__(self):
        return str(self.equations())

    def _repr_latex_(self):
        return self.equations()._repr_latex_()


class Equations(list):
    """A cell's update equations: one per line, in derive's notation."""

    def __repr__(self):                    # (an equation too long to print says so)
        return "\n".join(repr(e) for e in self)

    def __str__(self):
        return "\n".join(str(e) for e in self)

    def latex(self):
        return "\\begin{aligned}\n" + " \\\\\n".join(
            f"{latex(e.args[0])} &= {latex(e.args[1])}" for e in self) + "\n\\end{aligned}"

    def _repr_latex_(self):
        try:
            return f"$${self.latex()}$$"
        except GradlabError:
            return None                      # (IPython then shows the repr)
