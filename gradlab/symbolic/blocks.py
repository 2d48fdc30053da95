"""Block matrices made from a Jacobian, and their algebra, printed as `gradlab derive`
prints: J.T, J @ J, J**k (block matrices of the blocks' products), J + K, J - K, 2 J, -J,
J / 2 (of the blocks' sums and multiples), J**-1 and J.inverse() ([[A, B], [C, D]]^(-1)).
What has no meaning for gradlab (the inverse or power of a non-square block matrix, J + 2,
a sum of matrices split differently, sizes that do not chain) is refused in one line.
`Jacobian` (jacobian.py) is a `Blocks` with named blocks.
"""

import numbers

import sympy as sp
from sympy import BlockMatrix

from .algebra import transposed
from .expressions import Expression, as_expression, bounded, pretty_lines, substituted, sympy_of
from .printing import latex, text
from ..errors import GradlabError

AS_EXPLICIT_MAX = 1024    # entries SymPy's as_explicit is asked to write (32 x 32)


class Blocks(BlockMatrix):
    """A block matrix made from a Jacobian (J.T, J * J): rows of blocks, printed as
    derive prints a block, [[A, B], [C, D]]; products, powers, transposes, sums and
    multiples of it are block matrices again (of the blocks' products, sums, ...), not
    SymPy's MatMul; J**-1 prints [[A, B], [C, D]]^(-1); what means nothing is refused."""

    def subs(self, *args, **kwargs):
        """SymPy's subs, checked (`expressions.substituted`)."""
        return substituted(super().subs, args, kwargs)

    def diff(self, *args, **kwargs):
        """SymPy's diff, or one line where it recurses without end (it does on these)."""
        return bounded(super().diff, "diff", args, kwargs)

    def __getitem__(self, key):
        """Entries as SymPy's BlockMatrix gives them; a pair of part names (which only a
        cell's own Jacobian has) refused in one line, not SymPy's SympifyError."""
        if isinstance(key, str) or (isinstance(key, tuple) and any(isinstance(k, str)
                                                                   for k in key)):
            raise GradlabError(f"[{key!r}]: this block matrix (a transpose, product, sum or "
                               "multiple of Jacobians) has no named blocks; take blocks from "
                               "the Jacobian itself, e.g. J['c', 'c'], and combine those")
        return super().__getitem__(key)

    def as_explicit(self):
        """SymPy's, once the sizes are numbers; with n (and m) symbolic, one line naming
        the ways to numbers instead of SymPy's "symbolic shape" ValueError."""
        if not all(isinstance(d, (int, sp.Integer)) for d in self.shape):
            sizes = ", ".join(f"Symbol('{s}', integer=True, positive=True): {v}" for s, v in
                              (("n", 2), ("m", 1)) if any(str(d.free_symbols) == "{%s}" % s
                                                          for d in self.shape))
            raise GradlabError("as_explicit needs numeric sizes, and this has n (or m) "
                               "symbolic: J.explicit(n=2) writes each block out entry by "
                               f"entry (fast), or substitute the sizes first: J.subs("
                               f"{{{sizes}}}).as_explicit() (SymPy's, slow past n = 4)")
        rows, cols = (int(d) for d in self.shape)
        if rows * cols > AS_EXPLICIT_MAX:        # SymPy's: 42 s at 64 x 64, hours beyond
            raise GradlabError(f"as_explicit would write {rows} x {cols} = {rows * cols:,} "
                               f"entries through SymPy (at most {AS_EXPLICIT_MAX:,}: 64 x 64 "
                               "took 42 s); J.explicit(n) writes blocks entry by entry for "
                               "n up to 12")
        return super().as_explicit()

    def at(self, *args, **kwargs):
        """Refused: only a cell's own Jacobian (and its blocks) is lowered to numbers."""
        raise GradlabError("this block matrix (a transpose, product, sum or multiple of "
                           "Jacobians) has no lowered numbers of its own: take J.at(...) "
                           "and combine those (J.at(...).mT for J.T)")

    def _sympystr(self, printer):
        return "[" + ", ".join("[" + ", ".join(text(b) for b in row) + "]"
                               for row in self.blocks.tolist()) + "]"

    def _latex(self, printer):
        return r"\begin{bmatrix}" + r" \\ ".join(" & ".join(latex(b) for b in row)
                                                for row in self.blocks.tolist()) \
            + r"\end{bmatrix}"

    def _pretty(self, printer):
        return pretty_lines(self._sympystr(printer))

    def _repr_latex_(self):
        return f"$${self._latex(None)}$$"

    # arithmetic whose result is a block matrix: one of the blocks' products, sums or
    # multiples by a number; an inverse (no block formula gradlab shows) is an Expression
    def _eval_transpose(self):     # block by block, pushed down to the symbols: SymPy's
        rows = self.blocks.tolist()   # Transpose(...).doit() asked SymPy's assumptions
        return Blocks(sp.ImmutableMatrix([[transposed(rows[i][j]) for i in range(len(rows))]
                                          for j in range(len(rows[0]))]))

    def _eval_inverse(self):               # J.inverse(), Inverse(J).doit(): SymPy's own
        _square(self, "J.inverse()", "an inverse")
        return BlocksInverse(self)

    I = property(lambda self: self ** -1, doc="J**-1, printed as derive prints")

    def __matmul__(self, other, op="@"):
        if isinstance(other, BlockMatrix):
            return _product(self, other)
        return as_expression(super().__matmul__(_matrix(self, other, op)))

    def __rmatmul__(self, other, op="@"):
        return as_expression(super().__rmatmul__(_matrix(other, self, op)))

    def __mul__(self, other):
        if _scalar(other) is not None:
            return _scaled(self, _scalar(other))
        return self.__matmul__(other, "*")

    def __rmul__(self, other):
        if _scalar(other) is not None:
            return _scaled(self, _scalar(other))
        return self.__rmatmul__(other, "*")

    def __neg__(self):
        return _scaled(self, sp.S.NegativeOne)

    def __truediv__(self, c):              # by a number (or a SymPy scalar) only
        if _scalar(c) is None:
            raise GradlabError(f"a block matrix divides by a number, not by "
                               f"{type(c).__name__}")
        if c == 0:
            raise GradlabError("a block matrix divided by zero")
        return _scaled(self, 1 / _scalar(c))

    __add__ = lambda self, other: _sum(self, other, "+")                   # noqa: E731
    __radd__ = lambda self, other: _sum(other, self, "+")                  # noqa: E731
    __sub__ = lambda self, other: _sum(self, other, "-")                   # noqa: E731
    __rsub__ = lambda self, other: _sum(other, self, "-")                  # noqa: E731

    def __rtruediv__(self, c):
        raise GradlabError(f"{c!r} / J: a block matrix has no reciprocal; its inverse is "
                           "J**-1")

    def __pow__(self, k):                  # a matrix power: J @ J, for a square one
        if not (isinstance(k, numbers.Integral) and not isinstance(k, bool)):
            raise GradlabError(f"J**{k!r}: a block matrix's power is a whole number of "
                               "matrix products (J**2 is J @ J, J**-1 its inverse)")
        _square(self, f"J**{k}", "powers" if k >= 0 else "an inverse")
        if k == 0:
            return super().__pow__(0)                                   # I
        if k < 0:                          # [[A, B], [C, D]]^(-1), as derive writes it
            return Expression(sp.Inverse(self) if k == -1 else sp.MatPow(self, int(k)))
        out = self
        for _ in range(int(k) - 1):
            out = _product(out, self)
        return out


_size = lambda a: " x ".join(str(d).replace("*", "") for d in a.shape)   # noqa: E731
_split = lambda a: f"{a.blockshape[0]} x {a.blockshape[1]} blocks"            # noqa: E731
_shown = lambda x: "J" if isinstance(x, BlockMatrix) else repr(x)             # noqa: E731


def _square(a, what, has):
    """Refuse `what` unless a is square and split alike in rows and columns (a state
    Jacobian, J.T @ J): only then do J**k and J**-1 mean anything."""
    if list(a.rowblocksizes) != list(a.colblocksizes):
        raise GradlabError(f"{what}: this block matrix is {_size(a)} in {_split(a)}; only "
                           "a square one, split alike in rows and columns (a state "
                           f"Jacobian, or J.T @ J), has {has}")


def _scalar(c):
    """c as a SymPy scalar (a number or a scalar expression), else None."""
    if isinstance(c, bool) or not isinstance(c, (numbers.Number, sp.Expr)) \
            or isinstance(c, sp.MatrixExpr):
        return None
    return sp.sympify(c)


def _matrix(a, b, op):
    """The SymPy matrix of the operand that is not a block matrix, checked to fit
    (SymPy takes sizes that do not chain, 2n x 2n times n x n, and prints nonsense)."""
    left, right = sympy_of(a), sympy_of(b)
    other = left if isinstance(b, Blocks) else right
    if not isinstance(other, (sp.MatrixExpr, sp.MatrixBase)):
        raise GradlabError(f"{_shown(a)} {op} {_shown(b)}: a block matrix multiplies "
                           "numbers and matrices only")
    if left.shape[1] != right.shape[0]:
        raise GradlabError(f"{_size(left)} {op} {_size(right)}: the sizes do not chain "
                           "(the left's columns must be the right's rows)")
    return other


def _scaled(a, c):
    """c a for a number c, as one block matrix of the blocks times c."""
    return Blocks([[c * b for b in row] for row in a.blocks.tolist()])


def _sum(a, b, op):
    """a + b or a - b for block matrices of one shape split alike, as one block matrix
    of the blocks' sums; a number or another shape refused in one line."""
    if not all(isinstance(x, BlockMatrix) for x in (a, b)):
        a, b = sympy_of(a), sympy_of(b)
        if not all(isinstance(x, (sp.MatrixExpr, sp.MatrixBase)) for x in (a, b)):
            raise GradlabError(f"{_shown(a)} {op} {_shown(b)}: a block matrix adds or "
                               "subtracts a matrix of its shape, not a number (for a "
                               "multiple of I, add sympy.Identity of J's size)")
        if a.shape != b.shape:
            raise GradlabError(f"{_size(a)} {op} {_size(b)}: only matrices of one shape "
                               "add or subtract")
        return as_expression(sp.MatAdd(a, b if op == "+" else -b).doit())
    if (list(a.rowblocksizes), list(a.colblocksizes)) != \
            (list(b.rowblocksizes), list(b.colblocksizes)):
        raise GradlabError(f"{_size(a)} in {_split(a)} {op} {_size(b)} in {_split(b)}: "
                           "block matrices add or subtract only at one shape, split "
                           "into the same blocks")
    return Blocks([[x + y if op == "+" else x - y for x, y in zip(r, s)]
                   for r, s in zip(a.blocks.tolist(), b.blocks.tolist())])


def _product(a, b):
    """a b for block matrices, as one block matrix of the blocks' products."""
    if list(a.colblocksizes) != list(b.rowblocksizes):
        raise GradlabError(f"{_size(a)} in {_split(a)} @ {_size(b)} in {_split(b)}: the "
                           "blocks do not chain (the left's column blocks must be the "
                           "right's row blocks)")
    # block by block, each product and sum put together one level deep: SymPy's
    # block_collapse also ran doit on every factor, whose diagonal matrices each ask the
    # assumptions system (lstm_fgr's J @ J took 10-30 s, 25 of 30 in `ask`; now 0.2)
    A, B = a.blocks.tolist(), b.blocks.tolist()
    zero = lambda m: isinstance(m, sp.ZeroMatrix)                           # noqa: E731
    rows = []
    for i, left in enumerate(A):
        row = []
        for j in range(len(B[0])):
            terms = [sp.MatMul(x, B[k][j]).doit(deep=False)
                     for k, x in enumerate(left) if not (zero(x) or zero(B[k][j]))]
            terms = [t for t in terms if not zero(t)]
            row.append(sp.MatAdd(*terms).doit(deep=False) if terms
                       else sp.ZeroMatrix(a.rowblocksizes[i], b.colblocksizes[j]))
        rows.append(row)
    return Blocks(rows)


class BlocksInverse(sp.Inverse):
    """J.inverse(): SymPy's Inverse of a block matrix, printed as derive prints it,
    [[A, B], [C, D]]^(-1) (J**-1 is the same, as an `Expression`)."""

    def _sympystr(self, printer):
        return text(sp.Inverse(self.arg))

    def _latex(self, printer):
        return latex(sp.Inverse(self.arg))

    def _pretty(self, printer):
        return pretty_lines(text(sp.Inverse(self.arg)))

    def _repr_latex_(self):
        return f"$${self._latex(None)}$$"
