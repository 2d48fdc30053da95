"""Reading an expression as the graph it is: each distinct subexpression once.

A declaration that reuses a value builds a graph, not a tree: e = e + tanh(W e), unrolled
d times, holds each e twice in the next, so written out (printed, or read by SymPy's
`free_symbols`, `has`, `atoms`, `doit`, `xreplace` or a plain recursion) it is 2^d long
while it holds only O(d) distinct subexpressions. Everything here reads each distinct
subexpression once, and without recursion where it only reads.
"""

import sympy as sp

# written-out nodes past which a SymPy rewrite that reads every occurrence (`doit`) is not
# asked for: an expression as large as that stays as it stands
REWRITTEN = 10_000


def once(step, expr):
    """step(expr, again), where step rewrites one node and calls again(child) for the
    children it needs: each distinct subexpression is rewritten once."""
    done = {}

    def again(e):
        if e not in done:
            done[e] = step(e, again)
        return done[e]
    return again(expr)


def fold(exprs, own, combine, found=None):
    """{subexpression: value} for every distinct subexpression of `exprs`, children first:
    own(e) where that is not None, else combine(e, the values of e's arguments). `found`
    (such a dict) keeps the values for the next call."""
    found, todo = {} if found is None else found, list(exprs)
    while todo:
        e = todo[-1]
        if e in found:
            todo.pop()
        elif (value := own(e)) is not None:
            found[todo.pop()] = value
        elif waiting := [a for a in e.args if a not in found]:
            todo.extend(waiting)
        else:
            found[todo.pop()] = combine(e, [found[a] for a in e.args])
    return found


_OWN_ARGS = sp.Basic.free_symbols         # a node's free symbols: those of its arguments


def free_symbols(exprs, found=None):
    """The free symbols of `exprs` together, as SymPy's `free_symbols` gives them; a node
    that binds symbols (a Lambda's variable) answers for itself."""
    def own(e):
        if not isinstance(e, sp.Basic):
            return frozenset()
        return None if type(e).free_symbols is _OWN_ARGS else frozenset(e.free_symbols)
    exprs = list(exprs)
    found = fold(exprs, own, lambda e, sets: frozenset().union(*sets), found)
    return set().union(*(found[e] for e in exprs))


def _leaf(e):
    return None if getattr(e, "args", ()) else 1


def written_size(exprs, found=None):
    """How many nodes `exprs` hold written out, every occurrence of a shared subexpression
    counted (what a printer reads)."""
    exprs = list(exprs)
    found = fold(exprs, _leaf, lambda e, sizes: 1 + sum(sizes), found)
    return sum(found[e] for e in exprs)


def nesting(expr):
    """How deep `expr` nests: 1 for a symbol, 1 + its deepest argument's otherwise."""
    return fold([expr], _leaf, lambda e, depths: 1 + max(depths))[expr]


def subexpressions(expr):
    """Every distinct subexpression of `expr` (the names and shapes of matrix symbols too),
    in the order a preorder traversal first meets it."""
    seen, todo = {}, [expr]
    while todo:
        e = todo.pop()
        if e not in seen:
            seen[e] = None
            todo.extend(reversed(getattr(e, "args", ())))
    return list(seen)


def doit(expr):
    """expr.doit() where expr is short written out; else expr as it stands (SymPy's doit
    rewrites every occurrence of every subexpression)."""
    return expr.doit() if written_size([expr]) <= REWRITTEN else expr
