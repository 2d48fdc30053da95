"""Reading a derivation: LaTeX (documents, notebooks) and plain text (the terminal).

Both printers show an elementwise function as f(v), diag(v) as diag(v), the Hadamard
product as a circled dot, and powers of vectors as elementwise powers; neither ever shows
SymPy's `Lambda(_d, ...)` dummies.
"""

import re

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import LatexPrinter, modifier_dict, translate
from sympy.printing.str import StrPrinter

from .activations import TABLE
from .dag import nesting, written_size
from .unicode_latex import ascii_latex
from ..errors import GradlabError

# nodes written out past which an expression is refused, not printed: megabytes of one
# formula, seconds to print (an unrolled e = e + tanh(W e) doubles with every level)
LONGEST = 10 ** 6
DISPLAYED = 20_000      # a cell's blocks written out in its display (~0.3 s of LaTeX)


def _function_name(expr):
    """The name of f in f.(v) when the Lambda is just `_d -> f(_d)`, else None."""
    body = expr.function.expr
    if isinstance(body, sp.Function) and body.args == expr.function.variables:
        return type(body).__name__
    return None


def _float(expr):
    """A constant as the declaration wrote it: 0.5, not 0.500000000000000."""
    return repr(float(expr))


def _signed_terms(expr):
    """(negative?, term) for a sum: the all-ones vector first, negated terms last, so that
    sums read 1 - i and r - mu 1, not -i + 1."""
    out = []
    for t in expr.args:
        coeff = t.as_coeff_mmul()[0] if isinstance(t, sp.MatMul) else sp.S.One
        negative = coeff.could_extract_minus_sign()
        out.append((negative, sp.MatMul(-coeff, *t.as_coeff_mmul()[1].args) if negative and
                    isinstance(t, sp.MatMul) else t))
    return sorted(out, key=lambda nt: (not isinstance(nt[1], sp.OneMatrix), nt[0]))


def _join_terms(expr, show):
    parts = []
    for k, (negative, term) in enumerate(_signed_terms(expr)):
        body = show(term)
        parts.append(("- " if k == 0 else " - ") + body if negative
                     else (body if k == 0 else " + " + body))
    return "".join(parts)


# a symbol whose LaTeX already carries a superscript (^, ², ⁿ, or a prime before a
# subscript: a'_b): a power of it is written in parentheses, as TeX refuses a double
# superscript (h'^{2} alone is fine: TeX merges the prime into it)
SCRIPTED = re.compile("\\^|'.*_|[\u00b2\u00b3\u00b9\u2070-\u209f]")

# SymPy's name endings that would make a let read as something else in LaTeX: hprime as
# h' (the new state), xnorm as the norm of x, rabs and rmag as |r|, ravg as <r>; such a
# name is printed as written. hbar is h with a bar, as abar is a with one (not Planck's ħ).
LITERAL_ENDINGS = ("prime", "prm", "norm", "abs", "mag", "avg")
REDUCED = ("mu_", "sigma_")          # the names of a mean's and a variance's values
BY_LENGTH = sorted(modifier_dict, key=len, reverse=True)


def _translate(piece):
    """SymPy's `translate` (greek letters, hat, bar, tilde, dot...), but a name ending in
    one of LITERAL_ENDINGS is written as it is; a non-ASCII letter (hα) as pdflatex reads
    it (`unicode_latex`)."""
    if piece.lower() in ("hbar", "hslash"):
        return r"\bar{%s}" % piece[0]
    for key in BY_LENGTH:
        if piece.lower().endswith(key) and len(piece) > len(key):
            if key in LITERAL_ENDINGS:
                return r"\mathit{%s}" % ascii_latex(piece)
            return modifier_dict[key](_translate(piece[:-len(key)]))
    return ascii_latex(translate(piece))


class MatrixLatexPrinter(LatexPrinter):
    def _split_super_sub(self, name):
        if name is None or "{" in name or self._settings["disable_split_super_sub"]:
            return super()._split_super_sub(name)
        name, supers, subs = split_super_sub(name)
        base = _translate(name)               # r₁ is r_{1}: braced before _t or ^2 (TeX
        if (supers or subs) and re.search(r"[_^]\{[^{}]*\}$", base):   # refuses r_{1}_{t})
            base = "{%s}" % base
        return base, [_translate(p) for p in supers], [_translate(p) for p in subs]

    def _deal_with_super_sub(self, string, style="plain"):
        # n~ is ñ (as ntilde is): a ~ left in LaTeX is a space, and n~ would read as n
        base, primes = re.fullmatch(r"(.*?)('*)", string).groups()
        if base.endswith("~"):
            return super()._deal_with_super_sub(base.rstrip("~") + "tilde",
                                                style=style) + primes
        for prefix, form in (("norm_", r"\left\lVert %s \right\rVert"), ("sum_", r"\Sigma_{%s}")):
            if string.startswith(prefix) and len(string) > len(prefix):  # norm(r), sum(r)
                return form % self._deal_with_super_sub(string[len(prefix):], style=style)
        # a stack's h1' as h_{1}' (h1 is h_{1}), a part h_a's new value as h_{a}' (not h_{a'});
        # a reduction's mu_a' keeps its prime in the subscript: \mu_{a'}, the mean of a'
        if primes and base and not base.startswith(REDUCED):
            body = super()._deal_with_super_sub(base, style=style)
            if re.search(r"\^\{[^{}]*\}$", body):        # r²': {r^{2}}', one superscript
                body = "{%s}" % body
            return body + primes
        return super()._deal_with_super_sub(string, style=style)

    def _print_MatAdd(self, expr):
        return _join_terms(expr, self._print)

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        parts = [r"\left(%s\right)" % self._print(m) if isinstance(m, (sp.MatAdd, sp.HadamardProduct))
                 else self._print(m) for m in mats]
        if coeff == -1:
            return "- " + " ".join(parts)
        if coeff != 1:
            c = self._print(coeff)
            parts.insert(0, r"\left(%s\right)" % c if isinstance(coeff, sp.Add) else c)
        return " ".join(parts)

    def _print_ElementwiseApplyFunction(self, expr):
        name = _function_name(expr)
        arg = self._print(expr.expr)
        if name in TABLE:
            return TABLE[name].latex.format(arg)
        if name is None:
            return super()._print_ElementwiseApplyFunction(expr)
        return r"\operatorname{%s}\left(%s\right)" % (name, arg)

    def _print_Pairwise(self, expr):
        args = _subtrahend(expr, [self._print(a) for a in expr.operands], r"\left(%s\right)")
        if expr.name in TABLE:
            return TABLE[expr.name].latex.format(*args)
        return r"\left(%s\right).\left(%s\right)" % (self._print(expr.function),
                                                      ", ".join(args))

    def _print_Float(self, expr):            # 1e-05 would typeset as 1 e - 05
        mantissa, _, exponent = _float(expr).partition("e")
        if not exponent:
            return mantissa
        power = r"10^{%d}" % int(exponent)
        if float(mantissa) in (1, -1):
            return power if float(mantissa) == 1 else "-" + power
        return r"%s \cdot %s" % (mantissa, power)

    def _print_Transpose(self, expr):
        arg = self._print(expr.arg)
        return (r"%s^{T}" % arg if isinstance(expr.arg, sp.MatrixSymbol)   # q^2 or a'_b:
                and not SCRIPTED.search(arg) else r"\left(%s\right)^{T}" % arg)  # (q^{2})^{T}

    def _print_DiagMatrix(self, expr):      # of a 1 x 1 (a reduction's slope): the scalar
        inner = self._print(expr.args[0])
        return inner if expr.shape == (1, 1) else r"\operatorname{diag}\left(%s\right)" % inner

    def _print_HadamardProduct(self, expr):
        return r" \odot ".join(self.parenthesize(a, 60) if isinstance(a, sp.MatAdd)
                               else self._print(a) for a in expr.args)

    def _print_HadamardPower(self, expr):
        base = self._print(expr.base)
        if not isinstance(expr.base, (sp.MatrixSymbol, sp.matrices.expressions.applyfunc.ElementwiseApplyFunction)) \
                or isinstance(expr.base, sp.MatrixSymbol) and SCRIPTED.search(base):
            base = r"\left(%s\right)" % base   # s_r^2, a', σ² squared: one superscript
        ring = r"\circ " if _is_matrix(expr.base) else ""     # W^{∘2}: entry by entry
        return r"%s^{%s%s}" % (base, ring, self._print(expr.exp))

    def _print_OneMatrix(self, expr):
        rows, cols = expr.shape
        return r"\mathbf{1}^{T}" if rows == 1 else r"\mathbf{1}" if cols == 1 else \
            r"\mathbf{1} \mathbf{1}^{T}"

    def _print_Identity(self, expr):
        return "I"

    def _print_ZeroMatrix(self, expr):
        return "0"


def _text_name(name):
    """stilde -> s~ (a stack's htilde2 -> h~2), mu_r -> μ_r, sigma_r^2 -> σ_r^2, sum_r ->
    Σ_r, norm_r -> ‖r‖: the names as a reader writes them."""
    name = re.sub(r"(?<=\w)tilde(?=\d*'*(\^2)?$)", "~", name)
    if name.startswith("norm_"):
        return f"‖{name[5:]}‖"
    for word, letter in (("mu_", "μ_"), ("sigma_", "σ_"), ("sum_", "Σ_")):
        if name.startswith(word):            # at the start only, as LaTeX reads it: a
            return letter + name[len(word):]  # let named emu_x is emu_x, not eμ_x
    return name


def _exponent(printed):
    """An exponent as written after ^: bare if a plain name or count, else in parentheses
    (x^(-1/2), not x^-1/2)."""
    return printed if re.fullmatch(r"\w+", printed) else f"({printed})"


class MatrixTextPrinter(StrPrinter):
    def _print_Symbol(self, expr):
        return _text_name(expr.name)

    _print_MatrixSymbol = _print_Symbol

    def _print_MatAdd(self, expr):
        return _join_terms(expr, self._print)

    def _print_ElementwiseApplyFunction(self, expr):
        name = _function_name(expr)
        arg = self._print(expr.expr)
        if name in TABLE:
            return TABLE[name].text.format(arg)
        if name is None:       # a composite (y -> f(g(y))): written with its variable
            y = expr.function.variables[0]
            body = self._print(expr.function.expr.xreplace({y: sp.Symbol("y")}))
            return f"(y ↦ {body})({arg})"
        return f"{name}({arg})"

    def _print_Pairwise(self, expr):
        args = _subtrahend(expr, [self._print(a) for a in expr.operands], "(%s)")
        if expr.name in TABLE:
            return TABLE[expr.name].text.format(*args)
        a, b = expr.function.variables
        body = self._print(expr.function.expr.xreplace({a: sp.Symbol("a"), b: sp.Symbol("b")}))
        return f"((a, b) ↦ {body})({', '.join(args)})"

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name in TABLE:
            return TABLE[name].text.format(*_subtrahend(
                expr, [self._print(a) for a in expr.args], "(%s)"))
        return super()._print_Function(expr)

    def _print_Float(self, expr):
        return _float(expr)

    def _print_Dummy(self, expr):
        return expr.name

    def _print_DiagMatrix(self, expr):      # of a 1 x 1 (a reduction's slope): the scalar
        inner = self._print(expr.args[0])
        return inner if expr.shape == (1, 1) else f"diag({inner})"

    def _print_Mul(self, expr, **kwargs):          # 1/(n (σ^2 + 1)), not n*(..): a product
        return super()._print_Mul(expr, **kwargs).replace("*", " ")   # is juxtaposition

    def _print_Pow(self, expr, rational=False):     # ‖r‖^2, not ‖r‖**2: one notation, ^
        if expr.exp.is_Rational and expr.exp < -1:     # 1/‖r‖^2, as 2/‖r‖^2 reads
            return "1/" + self._print(sp.Pow(expr.base, -expr.exp, evaluate=False))
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_HadamardProduct(self, expr):
        return " ⊙ ".join(f"({self._print(a)})" if isinstance(a, sp.MatAdd) or (
            isinstance(a, sp.MatMul) and a.args[0].could_extract_minus_sign())
            else self._print(a) for a in expr.args)

    def _print_HadamardPower(self, expr):
        base = self._print(expr.base)
        if not isinstance(expr.base, sp.MatrixSymbol) or "^" in base:   # (s_r^2)^2
            base = f"({base})"
        ring = "∘" if _is_matrix(expr.base) else ""      # W^∘2, not the matrix power W^2
        return f"{base}^{ring}{_exponent(self._print(expr.exp))}"

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        if coeff.is_Number and len(mats) == 1 and isinstance(mats[0], sp.OneMatrix) \
                and mats[0].shape[1] == 1:
            return self._print(coeff)       # 2 𝟏 as 2, as 1 - h reads 𝟏 - h ("2 1" read 21)
        parts = [f"({self._print(m)})" if isinstance(m, (sp.MatAdd, sp.HadamardProduct))
                 else self._print(m) for m in mats]
        if coeff == -1:
            return "-" + " ".join(parts)
        if coeff != 1:
            c = self._print(coeff)
            parts.insert(0, f"({c})" if isinstance(coeff, sp.Add) else c)
        return " ".join(parts)

    def _print_Transpose(self, expr):
        arg = self._print(expr.arg)
        return f"{arg}ᵀ" if isinstance(expr.arg, sp.MatrixSymbol) and not SCRIPTED.search(arg) \
            else f"({arg})ᵀ"                                   # (q^2)ᵀ, not q^2ᵀ

    def _print_MatPow(self, expr):          # (J)^2 and W^2, not **: one notation, ^
        base = self._print(expr.base)
        if not isinstance(expr.base, (sp.MatrixSymbol, sp.BlockMatrix)):
            base = f"({base})"
        return f"{base}^{_exponent(self._print(expr.exp))}"

    def _print_Inverse(self, expr):
        return self._print_MatPow(sp.MatPow(expr.arg, -1, evaluate=False))

    def _print_BlockMatrix(self, expr):     # J.T, block_collapse(J * J): rows of blocks
        return "[" + ", ".join("[" + ", ".join(self._print(b) for b in row) + "]"
                               for row in expr.blocks.tolist()) + "]"

    def _print_OneMatrix(self, expr):       # 1 1ᵀ for the all-ones matrix: I + 1 read 2
        rows, cols = expr.shape
        return "1ᵀ" if rows == 1 else "1" if cols == 1 else "1 1ᵀ"

    def _print_Identity(self, expr):
        return "I"

    def _print_ZeroMatrix(self, expr):
        return "0"


class Partial(sp.MatrixExpr):
    """∂out/∂wrt as a name, standing in for a Jacobian a document shows separately."""

    def __new__(cls, out, wrt):
        return sp.Basic.__new__(cls, out, wrt)

    out = property(lambda self: self.args[0])
    wrt = property(lambda self: self.args[1])
    shape = property(lambda self: (self.out.shape[0], self.wrt.shape[0]))

    def doit(self, **hints):
        return self

    def _latex(self, printer):
        return block_name(self.out, self.wrt, "latex")

    def _sympystr(self, printer):
        return block_name(self.out, self.wrt, "text")


def latex(expr):
    return printed(MatrixLatexPrinter(), expr)


def text(expr):
    return printed(MatrixTextPrinter(), expr)


def printed(printer, expr):
    """expr by `printer`, if it is short and shallow enough to write out; else a one-line
    GradlabError (counting takes time linear in its distinct subexpressions, printing in
    its written size; SymPy's printers recurse per level: ~120 tanh(W ...) deep was an
    internal RecursionError from `gradlab derive`, and from a cell's repr)."""
    if isinstance(expr, sp.Basic) and (size := written_size([expr])) > LONGEST:
        raise GradlabError(f"an expression nested {nesting(expr)} deep is {size:,} symbols "
                           "and operations long written out (a value used twice is written "
                           "twice, at every level): too long to print; name intermediate "
                           "values with s.let so that each equation stays short")
    try:
        return printer.doprint(expr)
    except RecursionError:
        raise GradlabError(f"an expression nested {nesting(expr)} deep is too deep to print; "
                           "name intermediate values with s.let so that each equation "
                           "stays short") from None


def block_name(out, wrt, fmt):
    """'∂h'/∂c' in text, '\\frac{\\partial h'}{\\partial c}' in LaTeX."""
    out, wrt = (sp.Symbol(p) if isinstance(p, str) else p for p in (out, wrt))
    if fmt == "latex":
        return r"\frac{\partial %s}{\partial %s}" % (latex(out), latex(wrt))
    return f"∂{out}/∂{wrt}"


def cell_latex(cell):
    """The update equations and every Jacobian block as one LaTeX `aligned` display (past
    DISPLAYED nodes, as J prints them, a recurring sum named: a stack's double per layer)."""
    from .jacobian import named_lines           # (it imports this module)
    lines = [r"%s &= %s" % (latex(s), latex(e)) for s, e in cell.lets.items()]
    jacobians = [cell.jacobian("state"), cell.jacobian("input")]
    if written_size([b for J in jacobians for b in J.blocks]) > DISPLAYED:
        lines += [line.replace(" = ", " &= ", 1) for J in jacobians
                  for line in named_lines(J, "latex")]
    else:
        for J, ins in zip(jacobians, (cell.state_symbols, (cell.input_symbol,))):
            for out, row in zip(cell.outputs, J.blocks.tolist()):  # collected
                lines += [r"%s &= %s" % (block_name(out, s, "latex"), latex(b))
                          for s, b in zip(ins, row)]
    return "$$\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}$$"


def _subtrahend(expr, args, parens):
    """The printed arguments of `expr`, the second in `parens` where it is subtracted (H(a
    - b), `activations.above`) and is a sum: H(h - (c + b)), not H(h - c + b)."""
    name = getattr(expr, "name", None) or type(expr).__name__
    operands = getattr(expr, "operands", None) or expr.args
    if name != "above" or not (isinstance(operands[1], (sp.Add, sp.MatAdd))
                               or args[1].startswith("-")):
        return args
    return [args[0], parens % args[1]]


def _is_matrix(expr):
    """Is `expr` a matrix, not a vector or scalar? A power of one is taken entry by entry
    (HadamardPower), which the notation must say: W^2 reads as the matrix power W W."""
    rows, cols = expr.shape
    return rows != 1 and cols != 1
