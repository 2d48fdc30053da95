"""What a declaration's equations may hold: finite real constants, and only the symbols
the cell declares. Both are checked when a cell is declared, naming the equation."""

import hashlib
import sys

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from ..errors import GradlabError
from .printing import text
from .dag import fold, free_symbols, subexpressions

_NOT_FINITE = (sp.zoo, sp.oo, -sp.oo, sp.nan)


def repeatable(name, built, again):
    """`built`, a declaration's (lets, outputs), if building it `again()` gives the same
    equations; else a GradlabError: a declaration that reads random numbers or state it
    changes (a global counter) is another cell each time it runs, and a stack, which runs
    it once per layer, would stack cells other than the one declared (x2, x4, x8)."""
    if _written(again()) != _written(built):
        raise GradlabError(f"cell '{name}' gives other equations each time its declaration "
                           "runs (it reads random numbers, or state that changes as it "
                           "runs): a cell's equations must be one function of its symbols")
    return built


def _written(built):
    """A digest of each let and output of a declaration's (lets, outputs): the exact tree
    (srepr of every leaf), but for the index sympy gives each Dummy (the bound variable of
    an elementwise function, new at every build). Each shared subtree is read once: srepr
    of the whole expands a DAG into its tree, exponential for a let used many times."""
    memo = {}

    def digest(root):
        stack = [(root, False)]
        while stack:
            e, ready = stack.pop()
            if id(e) in memo:
                continue
            if not ready and e.args:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if id(a) not in memo)
                continue
            text_ = (f"Dummy {e.name}" if isinstance(e, sp.Dummy) else
                     type(e).__name__ + "(" + ",".join(memo[id(a)] for a in e.args) + ")"
                     if e.args else sp.srepr(e))
            memo[id(e)] = hashlib.sha256(text_.encode()).hexdigest()
        return memo[id(root)]

    lets, outputs = built
    return [(digest(k), digest(v)) for k, v in lets.items()], [digest(o) for o in outputs]


def check_constants(name, lets):
    """Refuse a constant no float64 holds: inf, nan, a division by zero, 1e309."""
    for symbol, expr in lets.items():
        parts = subexpressions(expr)     # each once: a shared subtree is not read again
        if any(p in _NOT_FINITE for p in parts):
            raise GradlabError(f"cell '{name}': the equation for {text(symbol)} "
                               "holds a constant that is not finite (a division by zero, "
                               f"inf or nan): {text(expr)}")
        entries = constant_entries(expr)  # log(0 h), exp(1000 + 0 h), sqrt(-1 + 0 h):
        for p, value in entries.items():  # a function of a constant vector, each entry
            if value is _VARIES or not isinstance(p, (ElementwiseApplyFunction,
                                                      sp.HadamardPower)):
                continue
            # (σ(2) stays unevaluated: is_finite None, not False; only a sure no refuses)
            size = abs(value.evalf(30)) if value.is_number else None
            if value.is_finite is False or value.is_extended_real is False or (
                    size is not None and size.is_real and not size < sp.Float(
                        sys.float_info.max)):
                raise GradlabError(f"cell '{name}': the equation for {text(symbol)} "
                                   f"holds {text(p)}, the same in every entry, and not a "
                                   "finite real number float64 holds")
        for number in (p for p in parts if isinstance(p, sp.Number)):
            if not abs(number) < sp.Float(sys.float_info.max):
                raise GradlabError(f"cell '{name}': the equation for {text(symbol)} "
                                   f"holds the constant {sp.Float(number, 3)}, beyond "
                                   "float64's range (1.8e308)")
        for value in _constant_terms(expr):          # exp(1000): each number fits, not it
            size = abs(value.evalf(30))
            if size.is_real and not size < sp.Float(sys.float_info.max):
                raise GradlabError(f"cell '{name}': the equation for {text(symbol)} "
                                   f"holds the constant {text(value)} = {sp.Float(size, 3)}"
                                   ", beyond float64's range (1.8e308)")


_VARIES = object()        # an entry that is not one constant


def constant_entries(expr):
    """{subexpression: the one value of its every entry} for each of expr's subexpressions
    (_VARIES where they differ or depend on a symbol): 0, 1, c 1, f(c 1), (c 1)^k, and
    their sums and multiples are constant vectors."""
    def own(e):
        if isinstance(e, sp.ZeroMatrix):
            return sp.S.Zero
        if isinstance(e, sp.OneMatrix):
            return sp.S.One
        if not getattr(e, "is_Matrix", False):
            return e if isinstance(e, sp.Expr) and e.is_number else _VARIES
        return _VARIES if isinstance(e, sp.MatrixSymbol) else None   # from its arguments

    def combine(e, values):
        if not isinstance(e, (ElementwiseApplyFunction, sp.HadamardPower, sp.MatMul,
                              sp.MatAdd)):
            return _VARIES               # (its arguments are read: a constant inside)
        if any(v is _VARIES for v in values[isinstance(e, ElementwiseApplyFunction):]):
            return _VARIES
        if isinstance(e, ElementwiseApplyFunction):
            return sp.sympify(e.function(values[1]))
        if isinstance(e, sp.HadamardPower):
            return sp.Pow(values[0], values[1], evaluate=False)   # (10^(10^8): not
                                                                  # written out, judged)
        if isinstance(e, sp.MatMul):
            return (sp.Mul(*values) if sum(getattr(a, "is_Matrix", False) for a in e.args)
                    == 1 else _VARIES)
        return sp.Add(*values)
    return fold([expr], own, combine)


def _constant_terms(expr):
    """The largest sub-expressions of `expr` free of symbols that are not plain numbers,
    each once, in the order they are written."""
    found, seen, todo = [], set(), [expr]
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, sp.Expr) and not getattr(e, "is_Matrix", False) \
                and e.is_number and not isinstance(e, sp.Number):
            found.append(e)
        else:
            todo.extend(reversed(e.args))
    return found


def check_symbols(name, lets, declared):
    """Refuse a symbol the cell does not declare (a sympy.Symbol made outside the
    language) and the imaginary unit: a cell is real, and its equations name only
    what it declares."""
    for symbol, expr in lets.items():
        stray = sorted(str(s) for s in free_symbols([expr]) - declared)
        if stray:
            size = {"n": " (the hidden size is s.hidden_size)",
                    "m": " (the input size is s.input_size)"}.get(stray[0], "")
            raise GradlabError(f"cell '{name}': the equation for {text(symbol)} uses "
                               f"'{stray[0]}', a symbol the cell does not declare{size}: "
                               "an equation may use its state parts, parameters, input, "
                               "let names and the sizes s.hidden_size, s.input_size")
        if sp.I in subexpressions(expr):
            raise GradlabError(f"cell '{name}': the equation for {text(symbol)} "
                               f"holds the imaginary unit I: cells are real: {text(expr)}")


def check_reached(name, lets, outputs, params):
    """Refuse what the new state never reads, directly or through lets: a let (an output
    gate computed and never applied) or a parameter: slips the Jacobian cannot show, the
    derivation being exact for the equations as written. (A state part no equation reads
    is a design, a shift register c' = h or a part driven by x alone, and is taken.)"""
    reached, todo = set(), list(outputs)
    while todo:
        symbol = todo.pop()
        if symbol not in reached:
            reached.add(symbol)
            if symbol in lets:
                todo.extend(free_symbols([lets[symbol]]) - reached)
    dead = [s for s in lets if s not in reached]
    if dead:
        raise GradlabError(f"cell '{name}': {text(dead[0])} is computed but no new state "
                           "reads it, directly or through other lets (a gate never "
                           "applied?): use it, or leave it out")
    unused = [p for p, symbol in params if symbol not in reached]
    if unused:
        raise GradlabError(f"cell '{name}': parameter(s) {', '.join(unused)} declared but "
                           "used by no equation")
