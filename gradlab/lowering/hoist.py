"""Splitting a step into what depends on the state and what does not.

In W h + U x + b only W h changes with the state; U x + b depends on the input alone, so
it can be computed for every step of a sequence in one batched call before the loop (as
cuDNN does with input projections) and the loop is left with W h + pre0. `split` finds
those pieces in a cell's SymPy lets: every let that depends on the input but not on the
state moves out whole (the minimal RNN's z = tanh(U x + b_z)), and inside the others every
maximal state-free vector that involves the input is named, a sum's state-free terms
grouped together, so the loop does one addition where it did several.
"""

import sympy as sp
from sympy import MatAdd, MatrixExpr, MatrixSymbol

from ..symbolic.dag import free_symbols


class Split:
    """`before`: (symbol, expr) computed from params and inputs, all steps at once, in
    order, under names no let, parameter or state already has; `carried`: those symbols
    (and x itself) that the loop reads or returns (a state part that reads no state is
    computed before the loop), its extra arguments; `lets`: the loop's lets, rewritten
    to read them."""

    def __init__(self, before, carried, lets):
        self.before, self.carried, self.lets = before, carried, lets


def split(cell):
    x = cell.input_symbol
    varying = set(cell.state_symbols)     # symbols whose value changes with the state
    inputs = {x}                          # symbols that depend on the input, not the state
    before, named, lets = [], {}, {}
    found, rewritten = {}, {}    # each distinct subexpression read and rewritten once

    def free(expr):
        return free_symbols([expr], found)

    taken = {str(s) for s in (*cell.lets, *cell.param_symbols, *cell.state_symbols, x)}

    def name(expr):
        if expr not in named:
            k = len(named)
            while f"pre{k}" in taken:
                k += 1
            taken.add(f"pre{k}")
            named[expr] = MatrixSymbol(f"pre{k}", *expr.shape)
            before.append((named[expr], expr))
        return named[expr]

    def movable(expr):
        symbols = free(expr)
        return not (symbols & varying) and bool(symbols & inputs)

    def rewrite(expr):
        if expr not in rewritten:
            rewritten[expr] = rewrite_once(expr)
        return rewritten[expr]

    def rewrite_once(expr):
        if expr in inputs:                  # x, or a let moved out whole: carried as itself
            return expr
        if isinstance(expr, MatrixExpr) and movable(expr):
            return name(expr)
        if not isinstance(expr, sp.Basic) or not expr.args or isinstance(expr, MatrixSymbol):
            return expr
        if isinstance(expr, MatAdd):
            fixed = [a for a in expr.args if not (free(a) & varying)]
            if 1 < len(fixed) < len(expr.args) and any(free(a) & inputs for a in fixed):
                rest = [rewrite(a) for a in expr.args if free(a) & varying]
                return MatAdd(*rest, name(MatAdd(*fixed)))
        args = [rewrite(a) for a in expr.args]
        return expr.func(*args) if args != list(expr.args) else expr

    for sym, expr in cell.lets.items():
        if movable(expr):
            before.append((sym, expr))
            inputs.add(sym)
        else:
            lets[sym] = rewrite(expr)
            varying.add(sym)
    used = set(cell.outputs) | free_symbols(lets.values(), found)
    carried = [s for s in (x, *(s for s, _ in before)) if s in used]
    return Split(before, carried, lets)
