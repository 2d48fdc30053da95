"""Printing SymPy matrix expressions as batched array code.

Every value is an array whose last two axes are the matrix axes; a leading batch axis
broadcasts. So a vector is (B, n, 1), a scalar reduction (B, 1, 1), a weight (n, n), and

    A v           -> xp.matmul(A, v)
    diag(v) M     -> (v * M)                 a broadcast, never a diagonal matrix
    diag(u) A + diag(v) B + C  -> xp.scaled_sum((u, A), (v, B), (None, C))
                    where A, B, C are weights or named subterms: one output array,
                    accumulated in place (any other sum prints as a sum)
    M diag(v)     -> (M * xp.mT(v))
    u * v (Hadamard), u^k -> (u * v), (u ** k)
    f(v) elementwise      -> xp.f(v)

SymPy's own printers cannot print `DiagMatrix` or `ElementwiseApplyFunction`; this one can,
and anything it does not know fails loudly rather than printing something wrong.
"""

import keyword
import math
import re

import sympy as sp
from sympy import OneMatrix
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.printing.str import StrPrinter

from ..errors import GradlabError
from ..symbolic.activations import TABLE
from ..symbolic.printing import text

# factors past which a product prints as one xp.product call rather than nested calls (a
# chain of 100 lets gave a 200-factor Jacobian block, past Python's ~200 parentheses)
LONG_PRODUCT = 16


def identifier(name):
    """A Python identifier for a symbol name: h' -> h_p, sigma_r^2 -> sigma_r_2, and any
    character beyond ASCII by its code point (σ -> _u3c3_). Only ASCII letters and digits
    pass as they are: Python normalises identifiers (NFKC), so ℎ (U+210E) would be the
    variable h, and reads a₁ or σ² as a syntax error."""
    ascii_ = re.sub(r"[^\x00-\x7f]", lambda c: f"_u{ord(c.group()):x}_", name)
    ident = "v_" + re.sub(r"[^0-9A-Za-z_]", "_", ascii_.replace("'", "_p"))
    return ident + "_" if keyword.iskeyword(ident) else ident


def constant(expr):
    """A number-valued SymPy expression (no symbol in it) as a float literal, evaluated
    by the activation table's numpy implementations; refused where it is not finite.
    Each Float goes in as the exact rational it holds: lambdify prints a Float with its
    15 decimal digits, and 1/3 lowered as 0.333333333333333 (17 are needed)."""
    import numpy as np
    from ..symbolic.activations import implementations
    exact = expr.xreplace({f: sp.Rational(f) for f in expr.atoms(sp.Float)})
    try:
        value = float(sp.lambdify((), exact, [implementations("numpy", np), "numpy"])())
    except (OverflowError, TypeError, ValueError, ZeroDivisionError):
        value = math.nan
    if not math.isfinite(value):
        raise GradlabError(f"the constant {text(expr)} is not a finite float64 number")
    return repr(value)


def _gram(e):
    """Is `e` r^T r for a vector r (a norm's square)?"""
    return (isinstance(e, sp.MatMul) and len(e.args) == 2 and isinstance(e.args[0], sp.Transpose)
            and e.args[0].arg == e.args[1] and e.args[1].shape[1] == 1)


class ArrayPrinter(StrPrinter):
    """Prints one expression, using `names` for symbols and already-computed subterms."""

    printmethod = "_arraycode"

    def __init__(self, names):
        super().__init__({"order": "none"})
        self.names = names   # expr -> identifier (symbols, and common subexpressions)

    def _print(self, expr, **kwargs):
        name = self.names.get(expr)
        if name is not None:
            return name
        if isinstance(expr, sp.Expr) and not isinstance(expr, (sp.MatrixExpr, sp.Integer)) \
                and expr.is_number:
            return constant(expr)        # e, pi, log(2), relu(-1): a number, not a call
        return super()._print(expr, **kwargs)

    def definition(self, expr):
        """Print expr itself even if it has a name (used to define that name)."""
        if isinstance(expr, (sp.Symbol, sp.MatrixSymbol)):   # an alias: print the name
            return self._print(expr)
        name = self.names.pop(expr, None)
        try:
            return self._print(expr)
        finally:
            if name is not None:
                self.names[expr] = name

    def emptyPrinter(self, expr):
        raise GradlabError(f"cannot lower {type(expr).__name__}: {text(expr)}")

    def _print_Symbol(self, expr):
        if expr.name in ("n", "m"):
            return expr.name
        raise GradlabError(f"unbound symbol {text(expr)} in lowered code")

    _print_MatrixSymbol = _print_Symbol

    def _print_Integer(self, expr):
        return str(expr) if abs(expr) < 2 ** 53 else constant(expr)

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Pow(self, expr, rational=False):
        return f"({self._print(expr.base)} ** {self._print(expr.exp)})"

    def _print_Function(self, expr):
        args = ", ".join(self._print(a) for a in expr.args)
        return f"xp.{type(expr).__name__}({args})"

    def _print_Add(self, expr, order=None):
        return "(" + " + ".join(self._print(a) for a in expr.args) + ")"

    def _print_Mul(self, expr, order=None):
        return "(" + " * ".join(self._print(a) for a in expr.args) + ")"

    def _print_MatAdd(self, expr):
        terms = [self._row_scaled(a) for a in expr.args]
        if expr.shape[1] != 1 and all(terms):
            pairs = ", ".join(f"({scale}, {matrix})" for scale, matrix in terms)
            return f"xp.scaled_sum({pairs})"
        # an all-ones term broadcasts as the scalar 1 against the others (same shape)
        terms = ["1" if isinstance(a, OneMatrix) else self._print(a) for a in expr.args]
        return "(" + " + ".join(terms) + ")"

    def _row_scaled(self, term):
        """(printed v, printed M) for a term diag(v) M or c diag(v) M, ("None", printed M)
        for M, where M is a weight or a named subterm; None for any other term."""
        def held(m):                                 # a weight or a named subterm
            return isinstance(m, sp.MatrixSymbol) or m in self.names

        if held(term):
            return "None", self._print(term)
        if not isinstance(term, sp.MatMul):
            return None
        coeff, mats = term.as_coeff_matrices()
        if len(mats) != 2 or not isinstance(mats[0], DiagMatrix) or not held(mats[1]):
            return None
        scale = self._print(mats[0].args[0])
        return (scale if coeff == 1 else f"({self._print(coeff)} * {scale})",
                self._print(mats[1]))

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        acc = self._print(mats[-1])
        if isinstance(mats[-1], DiagMatrix) and len(mats) > 1:
            acc = f"xp.mT({self._print(mats[-1].args[0])})"
            left = mats[-2]
            acc = f"({self._print(left)} * {acc})"
            mats = mats[:-1]
        if len(mats) > LONG_PRODUCT:          # one call, not a nesting per factor
            acc = f"xp.product({acc}, " + ", ".join(
                f"({self._print(f.args[0])},)" if isinstance(f, DiagMatrix) else self._print(f)
                for f in reversed(mats[:-1])) + ")"
        for f in reversed(mats[:-1]) if len(mats) <= LONG_PRODUCT else ():
            if isinstance(f, DiagMatrix):
                acc = f"({self._print(f.args[0])} * {acc})"
            else:
                acc = f"xp.matmul({self._print(f)}, {acc})"
        return acc if coeff == 1 else f"({self._print(coeff)} * {acc})"

    def _print_MatPow(self, expr):          # W^2 as W W: ** is elementwise in the backends
        k = expr.exp
        if not (k.is_Integer and k > 0):
            raise GradlabError(f"cannot lower the matrix power {text(expr)}: only a positive "
                               "whole power (a product of the matrix with itself) lowers")
        base = self._print(expr.base)
        acc = base
        for _ in range(int(k) - 1):
            acc = f"xp.matmul({base}, {acc})"
        return acc

    def _print_HadamardProduct(self, expr):
        return "(" + " * ".join(self._print(a) for a in expr.args) + ")"

    def _print_HadamardPower(self, expr):
        base, exp = self._print(expr.base), self._print(expr.exp)
        if expr.exp.is_negative and _gram(expr.base):
            # (r^T r)^(-1/2), the slope of ||r||: at r = 0 torch's subgradient, 0, where the
            # power is inf and its products with r (zero) nan: ||h|| h has slope 0 at h = 0
            return f"xp.gram_power({base}, {exp})"
        return f"({base} ** {exp})"

    def _print_ElementwiseApplyFunction(self, expr):
        fn, arg = expr.function, expr.expr
        body = fn.expr.xreplace({fn.variables[0]: sp.Dummy("arg")})
        if isinstance(body, sp.Function) and len(body.args) == 1 and body.args[0].is_Dummy:
            return f"xp.{type(body).__name__}({self._print(arg)})"
        # a composition the chain rule merged (y -> σ(σ(y)) on a diagonal block): the body
        # printed with the variable standing for the vector, if every function is the table's
        unknown = [f for f in body.atoms(sp.Function) if type(f).__name__ not in TABLE]
        if unknown:
            raise GradlabError(f"cannot lower {text(expr)}: {type(unknown[0]).__name__} is not "
                               "a function of the activation table")
        variable = fn.variables[0]
        self.names[variable] = f"({self._print(arg)})"
        try:
            return self._print(fn.expr)
        finally:
            del self.names[variable]

    def _print_Pairwise(self, expr):
        if expr.name is None:
            raise GradlabError(f"cannot lower {text(expr)}: a two-argument elementwise "
                               "function must be one of the activation table's")
        return f"xp.{expr.name}({', '.join(self._print(a) for a in expr.operands)})"

    def _print_Transpose(self, expr):
        return f"xp.mT({self._print(expr.arg)})"

    def _print_DiagMatrix(self, expr):
        return f"({self._print(expr.args[0])} * xp.eye({self._print(expr.shape[0])}, like))"

    def _print_Identity(self, expr):
        return f"xp.eye({self._print(expr.shape[0])}, like)"

    def _print_ZeroMatrix(self, expr):
        r, c = map(self._print, expr.shape)
        return f"xp.zeros({r}, {c}, like)"

    def _print_OneMatrix(self, expr):
        r, c = map(self._print, expr.shape)
        return f"xp.ones({r}, {c}, like)"
