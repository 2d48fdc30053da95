"""Splitting a step into what depends on the state and what does not.

In W h + U x + b only W h changes with the state; U x + b depends on the input alone, so
it can be computed for every step of a sequence in one batched call before the loop (as
cuDNN does with input projections) and the loop is left with W h + pre0. `split` finds
those pieces in a cell's SymPy lets: every let that depends on the input but not on the
state moves out whole (the minimal RNN's z = tanh(U x + b_z)), and inside the others every
maximal state-free vector that involves the input is named, a sum's state-free terms
grouped together, so the loop does one addition where it did several.

Then `stack` gathers the loop's gate products: where several lets read W_k s + pre_k for
one state part s (an LSTM's four gates on h), the loop computes them all as one product
[W_1; W_2; ...] s + [pre_1; pre_2; ...] (one addmm where there were a product and a sum
per gate; the stacked weight is formed once per call, the stacked pre once per
sequence) and reads each gate as its rows of the result.
"""

import functools

import sympy as sp
from sympy import MatAdd, MatMul, MatrixExpr, MatrixSymbol

from ..symbolic.dag import free_symbols


class Split:
    """`before`: (symbol, expr) computed from params and inputs, all steps at once, in
    order, under names no let, parameter or state already has; `carried`: those symbols
    (and x itself) that the loop reads or returns (a state part that reads no state is
    computed before the loop); `lets`: the loop's lets, rewritten to read them and the
    gates of `stacks` (each a `Stack`); `loop`: the carried symbols the loop still reads
    itself, its extra arguments before the stacks' pres and weights."""

    def __init__(self, before, carried, lets, stacks=(), loop=None):
        self.before, self.carried, self.lets = before, carried, lets
        self.stacks, self.loop = tuple(stacks), list(carried if loop is None else loop)


class Stack:
    """Gates W_k s + pre_k on one state part s, computed together: `weight` ([W_1; ...],
    a parameter formed from the W_k), `pre` ([pre_1; ...], carried), `members`
    ((W_k, pre_k, gate_k) in row order: gate_k names rows of weight s + pre)."""

    def __init__(self, operand, members, weight, pre):
        self.operand, self.members, self.weight, self.pre = operand, members, weight, pre

    @property
    def rows(self):
        return [W.shape[0] for W, _, _ in self.members]


@functools.lru_cache(maxsize=None)
def plan(cell):
    """`stack(split(cell), cell)`, once per cell."""
    return stack(split(cell), cell)


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
            named[expr] = fresh("pre", expr.shape, taken, len(named))
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


def fresh(stem, shape, taken, k=0):
    """A MatrixSymbol named stem + the first number from k on that `taken` (a set of
    names, added to) does not hold."""
    while f"{stem}{k}" in taken:
        k += 1
    taken.add(f"{stem}{k}")
    return MatrixSymbol(f"{stem}{k}", *shape)


def stack(split, cell):
    """`split` with its gate products stacked (see the module's doc): every MatAdd term
    pair W s + pre (W a parameter, s a state part, pre carried) becomes a gate symbol,
    and the gates on one s, where there are two or more, one Stack."""
    params, states = set(cell.param_symbols), set(cell.state_symbols)
    pres = set(split.carried) - {cell.input_symbol}

    order = {s: k for k, s in enumerate(cell.state_symbols)}

    def pair(expr):      # (W, s, pre) of a MatAdd holding W s + pre (s: the first part
        products = [t for t in expr.args if isinstance(t, MatMul) and len(t.args) == 2
                    and isinstance(t.args[0], MatrixSymbol) and t.args[0] in params
                    and t.args[1] in states]       # that has a W s; a scalar a s is no W s)
        summands = [t for t in expr.args if t in pres]
        if products and len(summands) == 1:
            return (*min(products, key=lambda t: order[t.args[1]]).args, summands[0])
        return None

    found = {}                            # s -> {(W, pre): None}, in the order met

    def visit(expr):
        if isinstance(expr, MatAdd) and pair(expr):
            W, s, pre = pair(expr)
            found.setdefault(s, {})[W, pre] = None
        for a in getattr(expr, "args", ()):
            if isinstance(a, sp.Basic):
                visit(a)

    for expr in split.lets.values():
        visit(expr)
    taken = {str(s) for s in (*split.lets, *params, *states, *split.carried)}

    stacks, gates = [], {}
    for s, pairs in found.items():
        if len(pairs) < 2:
            continue
        members = [(W, pre, fresh("gate", (W.shape[0], 1), taken)) for W, pre in pairs]
        rows = sp.Add(*(W.shape[0] for W, _ in pairs))
        stacks.append(Stack(s, members, fresh("weights", (rows, s.shape[0]), taken),
                            fresh("pres", (rows, 1), taken)))
        gates.update({(W, s, pre): g for W, pre, g in members})
    if not stacks:
        return split

    def rewrite(expr):
        if not isinstance(expr, sp.Basic) or not expr.args or isinstance(expr, MatrixSymbol):
            return expr
        if isinstance(expr, MatAdd) and pair(expr) in gates:
            W, s, pre = pair(expr)
            rest = [rewrite(t) for t in expr.args if t != pre and t != MatMul(W, s)]
            return MatAdd(*rest, gates[W, s, pre]) if rest else gates[W, s, pre]
        args = [rewrite(a) for a in expr.args]
        return expr.func(*args) if args != list(expr.args) else expr

    lets = {sym: rewrite(expr) for sym, expr in split.lets.items()}
    used = set(cell.outputs) | free_symbols(lets.values(), {})
    loop = [s for s in split.carried if s in used]
    return Split(split.before, split.carried, lets, stacks, loop)
