"""A cell's Jacobian as an object to take apart: blocks by name, terms, entries, numbers.

    >>> import gradlab
    >>> J = gradlab.cell("lstm").jacobian()
    >>> J["c", "c"]                       # the block ∂c'/∂c, by state-part names
    diag(f)
    >>> J.explicit(n=2)[("c", "c")]       # written out entry by entry at n = 2
    Matrix([
    [f[0, 0],       0],
    [      0, f[1, 0]]])

`Jacobian` is a SymPy `BlockMatrix` (rows: the new state parts; columns: the state parts,
or the input) that prints as `gradlab derive` does; its blocks are the derived ones with
terms that share a right factor collected (`algebra.collect`). `J.at(params, state, x)`
evaluates the cell's lowered code, the same numbers `cell.jacobian_fn` gives.
"""

import numbers

import sympy as sp
from sympy import BlockMatrix, MatAdd, MatrixSymbol
from sympy.core.symbol import Str

from . import algebra as al
from .derive import Chain
from .blocks import Blocks
from .dag import once
from .expressions import Block, pretty_lines
from .structure import atoms
from .mistakes import line_of
from .printing import Partial, block_name, latex, text
from ..errors import (GradlabError, GradlabIndexError, GradlabKeyError, GradlabTypeError,
                      arguments_checked)

_MATRIX_NODES = (sp.MatMul, sp.MatrixExpr)   # sums, products and every other matrix node


def readable_blocks(cell, wrt):
    """(named, rows): the blocks, collected, with reused intermediate Jacobians written
    as ∂q/∂s.

    A quantity q whose Jacobian is a sum and appears inside the blocks (the LSTM's c'
    inside ∂h'/∂h; the normalized LSTM's r) is shown once, by name, as ∂q/∂s.
    """
    ins = cell.state_symbols if wrt == "state" else (cell.input_symbol,)
    named, rows = [], [[None] * len(ins) for _ in cell.outputs]
    for j, s in enumerate(ins):
        chain = Chain(cell.lets, s)
        blocks = [chain.total(out) for out in cell.outputs]
        subs = {J: Partial(q, s) for q, J in chain.totals.items()
                if isinstance(q, MatrixSymbol) and isinstance(J, MatAdd)}
        for i, block in enumerate(blocks):
            rows[i][j] = al.collect(_name_sums(block, subs, keep=block))
        used = atoms([r[j] for r in rows], Partial)
        for J, p in subs.items():
            if p in used and p.out not in cell.outputs:
                named.append((p, al.collect(_name_sums(J, subs, keep=J))))
    return named, rows


def _name_sums(expr, subs, keep):
    """Replace each sum in `subs` by its name, also where it was merged into a larger sum
    (each distinct subexpression once)."""
    return once(lambda e, again: _name_sums_node(e, subs, keep, again), expr)


def _name_sums_node(expr, subs, keep, again):
    if expr in subs and expr != keep:
        return subs[expr]
    if not expr.args or isinstance(expr, MatrixSymbol) or not isinstance(expr, _MATRIX_NODES):
        return expr
    if isinstance(expr, MatAdd):
        terms = list(expr.args)
        for J, p in subs.items():
            if J != keep and isinstance(J, MatAdd) and set(J.args) < set(terms):
                terms = [p] + [t for t in terms if t not in J.args]
        if terms != list(expr.args):
            return MatAdd(*(again(t) for t in terms))
    return expr.func(*(again(a) for a in expr.args))


def _key(key):
    """An index as written inside J[...]."""
    return ", ".join(map(repr, key)) if isinstance(key, tuple) else repr(key)


def _backend(x):
    return "numpy" if type(x).__module__.split(".")[0] == "numpy" else "torch"


class ByName(dict):
    """{(out, in): value}, one entry per block; a key that names no block is refused with
    the valid ones (a plain dict said only KeyError: ('c', 'z'))."""

    def __missing__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            plain = tuple(k.rstrip("'") for k in key)     # ("c'", "c"): the new c, as J[]
            if plain != key and plain in self:
                return self[plain]
        if isinstance(key, tuple) and len(key) == 2 and all(       # (i, j): by position,
                isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in key):
            outs, ins = (list(dict.fromkeys(k[a] for k in self)) for a in (0, 1))  # as J[]
            if -len(outs) <= key[0] < len(outs) and -len(ins) <= key[1] < len(ins):
                return self[outs[key[0]], ins[key[1]]]
        raise GradlabKeyError(f"no block {key!r}; valid: "
                                + ", ".join(f"({o!r}, {w!r})" for o, w in self))

    def _repr_latex_(self):    # a notebook shows J.explicit(2) in gradlab's notation (n~ as
        """Blocks that are SymPy matrices, as LaTeX; None otherwise (never raises)."""
        if not self or not all(isinstance(v, sp.MatrixBase) for v in self.values()):
            return None                                         # ñ, not a TeX space)
        try:
            rows = [r"\frac{\partial %s}{\partial %s} &= %s" % (
                latex(sp.Symbol(f"{o}'")), latex(sp.Symbol(w)), latex(v))
                for (o, w), v in self.items()]
        except GradlabError:                                    # too long to print
            return None
        return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def named_lines(J, fmt="text"):
    """J's blocks as J prints them, one "∂out/∂in = ..." line each ("text" or "latex")."""
    return J._lines(latex if fmt == "latex" else text, fmt)


class Jacobian(Blocks):
    """d(new state parts) / d(state parts or input): a BlockMatrix with named blocks.

    J["c", "h"] or J.block("c", "h") (or by position, J[1, 0]): one block ∂c'/∂h, with
    .terms() and .at(params, state, x); J.terms(): every block's terms by name;
    J.explicit(n=2): each block entry by entry at a size; J.at(params, state, x): the
    numbers, (B, S, S) or (B, S, m); J.parts and J.ins: the names of its rows and columns.
    (The rest of help() is SymPy's BlockMatrix, which it is.)"""

    def __new__(cls, blocks, outs, ins, parts=None):
        plain = BlockMatrix(blocks.tolist() if isinstance(blocks, sp.MatrixBase) else blocks)
        parts = [str(p).rstrip("'") for p in outs] if parts is None else parts
        names = [sp.Tuple(*(Str(str(p)) for p in part)) for part in (outs, ins, parts)]
        obj = sp.Basic.__new__(cls, plain.blocks, *names)
        obj._cell = obj._wrt = None
        return obj

    @classmethod
    def of(cls, cell, wrt, blocks, outs, ins, parts=None):
        """The cell's own Jacobian (blocks collected); `at` evaluates it. outs: the names
        of the new state parts as the equations give them (h', or hnew); parts: the state
        parts they update, by which J[out, in] finds a row (default: outs unprimed)."""
        J = cls([[al.collect(b) for b in row] for row in blocks], outs, ins, parts)
        J._cell, J._wrt = cell, wrt
        return J

    def __getstate__(self):            # copies and pickles keep the cell `at` evaluates
        return {"_cell": getattr(self, "_cell", None), "_wrt": getattr(self, "_wrt", None)}

    outs = property(lambda self: tuple(str(p) for p in self.args[1]))
    ins = property(lambda self: tuple(str(p) for p in self.args[2]))
    parts = property(lambda self: tuple(str(p) for p in self.args[3]))

    # -- blocks by name ------------------------------------------------------------------
    def _index(self, name, names, what, aliases=()):
        """The position of `name` among the state parts `names` (primed or not), or else
        among `aliases` (the outputs' own names, e.g. hnew); an integer is a position, as
        in J[i, j] (negative from the end)."""
        if isinstance(name, numbers.Integral) and not isinstance(name, bool):
            if -len(names) <= name < len(names):
                return int(name) % len(names)
            raise GradlabIndexError(f"no {what} at position {name} in this Jacobian: "
                                    f"0..{len(names) - 1} ({', '.join(names)})")
        key = str(name)
        for group in (names, aliases):
            for k, p in enumerate(group):
                if key in (p, p.rstrip("'"), p.rstrip("'") + "'"):
                    return k
        valid = ", ".join(p.rstrip("'") for p in names)
        raise GradlabError(f"no {what} {name!r} in this Jacobian; valid: {valid}")

    @arguments_checked     # a misspelt option: one line, not Python's TypeError
    def block(self, out, wrt):
        """The block ∂out'/∂wrt, by state-part names ("c" or "c'" for the new c) or
        positions (as J[i, j])."""
        i = self._index(out, self.parts, "output", self.outs)
        j = self._index(wrt, self.ins, "input")
        return Block(self, i, j)

    def __getitem__(self, key):
        """J["c", "h"]: a block by part names; J[i, j] (integers, negative from the end):
        a block by position. Entries by SymPy's indexing only once the sizes are numbers
        (after xreplace of n and m), where they mean one entry."""
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            return self.block(*key)
        example = f"J[{self.parts[0]!r}, {self.ins[0]!r}]"
        if isinstance(key, str):
            raise GradlabError(f"J[{key!r}]: name a block by two parts, J[out, in], e.g. "
                               f"{example}")
        if all(isinstance(d, (int, sp.Integer)) for d in self.shape):
            return super().__getitem__(key)             # sizes are numbers: an entry
        rows, cols = self.blocks.shape
        pair = isinstance(key, tuple) and len(key) == 2 and all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in key)
        if not pair or not (-rows <= key[0] < rows and -cols <= key[1] < cols):
            error = GradlabIndexError if pair else GradlabError
            raise error(f"J[{_key(key)}]: index a block by part names, {example}, or by "
                        f"position J[i, j] with integers i in 0..{rows - 1} and j in "
                        f"0..{cols - 1} (negative from the end)")
        return Block(self, int(key[0]) % rows, int(key[1]) % cols)

    def __iter__(self):
        raise GradlabTypeError("a Jacobian is not iterated block by block; "
                               "J.blocks_by_name() gives {(out, in): block}, and J.parts and "
                               "J.ins the names of its rows and columns")

    def __len__(self):           # its size is symbolic (n per part); the blocks are counted
        raise GradlabTypeError("a Jacobian has no len(): its size is n per state part; "
                               "len(J.parts) and len(J.ins) count its block rows and columns")

    def __bool__(self):          # (with __len__ defined, truth would call it)
        return True

    def blocks_by_name(self):
        """{(out, in): Block} for every block, rows first."""
        return {(o, w): self.block(o, w) for o in self.parts for w in self.ins}

    @arguments_checked
    def terms(self, out=None, wrt=None):
        """The terms of one block (a list) given both names; else {(out, in): terms} of
        every block, or of out's row or wrt's column where one name is given."""
        if out is not None and wrt is not None:
            return self.block(out, wrt).terms()
        rows = self.parts if out is None else (self.parts[self._index(out, self.parts,
                                                                      "output", self.outs)],)
        cols = self.ins if wrt is None else (self.ins[self._index(wrt, self.ins, "input")],)
        return ByName({(o, w): self.block(o, w).terms() for o in rows for w in cols})

    @arguments_checked
    def explicit(self, n=None, m=None):
        """{(out, in): SymPy Matrix} of every block written entry by entry at hidden size
        n (2 by default; and input size m, n by default): what a student checks by hand.
        Where subs fixed a size (J.subs(n, 3)), that size is the default and the only one
        taken."""
        return ByName({k: b.explicit(n, m) for k, b in self.blocks_by_name().items()})

    # -- numbers -------------------------------------------------------------------------
    @arguments_checked
    def at(self, params, state, x, backend=None):
        """The Jacobian at (params, state, x), batched: (B, S, S) or (B, S, m), from the
        cell's lowered code (`cell.jacobian_fn`); backend "torch" or "numpy", by default
        the arguments' kind."""
        if getattr(self, "_cell", None) is None:
            raise GradlabError("at() evaluates a cell's own Jacobian (cell.jacobian(), or "
                               "it simplified); this one was changed by subs or built by "
                               "hand: substitute into the numbers instead")
        return self._cell.jacobian_fn(self._wrt, backend or _backend(x))(params, state, x)

    def _tidied(self, blocks, cell=None):
        """A Jacobian of these blocks (rows of expressions) with the derivation's
        identities applied again (`algebra.rebuild`: a term with a factor 1 - 1 is 0)
        and collected; `cell`: the cell whose numbers they still are (`at`)."""
        J = Jacobian([[al.collect(al.rebuild(b)) for b in row] for row in blocks],
                     self.outs, self.ins, self.parts)
        J._cell, J._wrt = cell, (self._wrt if cell is not None else None)
        return J

    def subs(self, *args, **kwargs):
        """SymPy's subs, checked, each block then reading as the derivation would:
        J.subs(f, OneMatrix(n, 1)) has ∂c'/∂c = I, not diag(1), and no term in
        diag(c ⊙ 1 ⊙ (1 - 1)). Its numbers are no longer the cell's (`at` refuses)."""
        J = super().subs(*args, **kwargs)
        if J == self:                          # nothing to substitute: still the cell's
            return self
        return self._tidied(J.blocks.tolist()) if isinstance(J, Jacobian) else J

    def doit(self, **hints):
        """SymPy's doit on every block (where SymPy's own gives a block of the wrong
        shape, as DiagMatrix(ZeroMatrix(n, 1)).doit() does, the block as rebuilt)."""
        def done(b):
            d = b.doit(**hints)
            return d if d.shape == b.shape else b
        return self._tidied([[done(b) for b in row] for row in self.blocks.tolist()],
                            getattr(self, "_cell", None))

    def simplify(self, **kwargs):
        """Every block through SymPy's simplify (and collected again); still evaluable.
        kwargs: simplify's own options (ratio, measure, rational, inverse, doit)."""
        import inspect
        known = [k for k, p in inspect.signature(sp.simplify).parameters.items()
                 if p.kind is p.POSITIONAL_OR_KEYWORD and k != "expr"]
        unknown = [k for k in kwargs if k not in known]
        if unknown:                          # SymPy's simplify would ignore it silently
            raise GradlabError(f"simplify: unknown option {unknown[0]!r}; SymPy's simplify "
                               f"takes {', '.join(known)}")
        J = Jacobian([[al.collect(al.rebuild(sp.simplify(b, **kwargs))) for b in row]
                      for row in self.blocks.tolist()], self.outs, self.ins, self.parts)
        J._cell, J._wrt = getattr(self, "_cell", None), getattr(self, "_wrt", None)
        return J

    # -- printing ------------------------------------------------------------------------
    def _lines(self, show, fmt):
        """One line a block; a block that is a sum and recurs inside another block of its
        column (the LSTM's ∂c'/∂h inside ∂h'/∂h) is written there by name, as derive does.
        (derive also names the reused Jacobian of a quantity that is not a state part, the
        normalized LSTM's ∂r/∂s, on a line of its own; here each line is a block.)"""
        rows = self.blocks.tolist()
        lines = []
        for i, o in enumerate(self.outs):
            for j, w in enumerate(self.ins):
                subs = {r[j]: Partial(MatrixSymbol(out, r[j].shape[0], 1),
                                      MatrixSymbol(w, r[j].shape[1], 1))
                        for out, r in zip(self.outs, rows) if isinstance(r[j], MatAdd)}
                named = _name_sums(rows[i][j], subs, keep=rows[i][j])
                lines.append(f"{block_name(o, w, fmt)} = {show(named)}")
        return lines

    def _nested(self, printer):
        """True where J is printed inside a larger expression (J**-1, J + W): its lines
        "∂h'/∂h = ..." would then read as equations that the expression does not satisfy,
        so it prints as a plain block matrix there."""
        return printer is not None and getattr(printer, "_print_level", 1) > 1

    def _sympystr(self, printer):
        if self._nested(printer):
            return super()._sympystr(printer)
        return "\n".join(self._lines(text, "text"))

    def _latex(self, printer):
        if self._nested(printer):
            return super()._latex(printer)
        return "\\begin{aligned}\n" + " \\\\\n".join(
            line.replace(" = ", " &= ", 1) for line in self._lines(latex, "latex")) \
            + "\n\\end{aligned}"

    def _pretty(self, printer):
        return pretty_lines(self._sympystr(printer))

    # a display hook never raises: IPython would show nothing, or a traceback
    def __repr__(self):
        try:
            return super().__repr__()
        except GradlabError as err:          # too long to print
            return (f"<Jacobian d({', '.join(self.outs)})/d({', '.join(self.ins)}): "
                    f"{line_of(err)}>")

    def _repr_latex_(self):
        try:
            return f"$${self._latex(None)}$$"
        except GradlabError:
            return None                      # (IPython then shows the repr)


