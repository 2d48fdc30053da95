"""Lowering: a cell's SymPy derivation becomes one batched Python function per backend.

The printed function computes each named quantity once (the cell's `let`s, in order),
then each repeated subterm of the Jacobian once (common subexpressions), then the blocks.
It is printed once per (cell, what) and bound once per backend; both are cached. Besides
the step and the Jacobians, the gradient-flow engine asks for the state Jacobian with its
blocks compacted by structure (`jacobian_state_blocks`) and for the step split into its
state-free part and the rest (`step_inputs`, `step_hoisted`; see `hoist`).

    def jacobian(n, m, like, v_W, v_U, v_b, v_h, v_x):
        v_h_p = xp.tanh((xp.matmul(v_W, v_h) + xp.matmul(v_U, v_x) + v_b))
        return [[((1 + (-1 * (v_h_p ** 2))) * v_W)]]
"""

import functools
import types
from collections import Counter

import numpy as np
import sympy as sp
from sympy.matrices.expressions.diagonal import DiagMatrix

from . import hoist
from .terms import (M, MAX_TERMS, N, block_terms, slips, square_slips,  # noqa: F401
                    term_count)
from .arguments import prepare
from .backends import backend
from .codeprinter import ArrayPrinter, identifier
from ..errors import GradlabError, arguments_checked
from ..symbolic.structure import atoms, diagonal, kind


def source(cell, what):
    """Python source of a lowered function: `step`, `values` (every named vector),
    `jacobian_state` / `jacobian_input` (rows of blocks), `jacobian_state_blocks` (the
    state Jacobian's blocks compacted by their structure, see `_compact`), or the step
    split in two (`hoist`): `step_inputs`, the state-free part for any number of rows
    at once, and `step_hoisted`, the rest, which takes its results as extra arguments
    (those the loop reads as they are, then the stacked pres and weights of its gates);
    or `terms_state` / `terms_input`: one row per block (row-major), the block's terms
    (`block_terms`), for taking a Jacobian apart numerically; `slips_state` /
    `slips_input` the same for `slips` (the terms as a hand derivation may get them), and
    `square_slips_input` for `square_slips`."""
    args = [*cell.param_symbols, *cell.state_symbols, cell.input_symbol]
    lets = cell.lets
    if what == "step":
        rows = [[sym] for sym in cell.outputs]
    elif what == "values":
        rows = [[sym] for sym in lets if isinstance(sym, sp.MatrixSymbol)]
    elif what == "jacobian_state_blocks":
        rows = [[_compact(b) for b in row] for row in cell.jacobian_blocks("state")]
    elif what == "step_inputs":
        plan = hoist.plan(cell)
        args, lets = [*cell.param_symbols, cell.input_symbol], dict(plan.before)
        rows = [[sym] for sym in plan.carried]
    elif what == "step_hoisted":
        plan = hoist.plan(cell)
        args = [*cell.param_symbols, *cell.state_symbols, *plan.loop,
                *(st.pre for st in plan.stacks), *(st.weight for st in plan.stacks)]
        lets, rows = plan.lets, [[sym] for sym in cell.outputs]
        return _function(what, args, lets, rows, plan.stacks)
    elif what.startswith("terms_"):
        rows = [list(block_terms(b)) or [None]
                for row in cell.jacobian_blocks(what.removeprefix("terms_")) for b in row]
    elif what.startswith(("slips_", "square_slips_")):
        kind, wrt = what.rsplit("_", 1)
        rows = [[v for _, _, v in SLIPS[kind](b)] or [None]
                for row in cell.jacobian_blocks(wrt) for b in row]
        if kind == "square_slips":          # its variants read m as n: so do its symbols
            args = [a.xreplace({M: N}) for a in args]
            lets = {s.xreplace({M: N}): e.xreplace({M: N}) for s, e in lets.items()}
    else:
        rows = cell.jacobian_blocks(what.removeprefix("jacobian_"))
    return _function(what, args, lets, rows)


def _function(what, args, lets, rows, stacks=()):
    """def what(n, m, like, *args): the stacked gates (`hoist.Stack`), the needed lets,
    shared subterms, then rows of blocks."""
    gates = [g for st in stacks for _, _, g in st.members]
    names = {s: identifier(s.name) for s in (*args, *lets, *gates)}
    outs = [e for row in rows for e in row if e is not None]
    needed = _needed_lets(lets, outs)
    printer = ArrayPrinter(names)
    lines = [f"def {what}(n, m, like, {', '.join(names[a] for a in args)}):"]
    for st in stacks:                 # gate_k = rows of [W_1; W_2; ...] s + [pre_1; ...]
        rows_k = ", ".join(printer._print(r) for r in st.rows)
        lines.append(f"    {', '.join(names[g] for _, _, g in st.members)} = xp.split_rows("
                     f"xp.affine({names[st.weight]}, {names[st.operand]}, {names[st.pre]}), "
                     f"({rows_k},))")
    shared = []            # subterms a let holds more than once, each computed once
    for s, e in lets.items():
        if s in needed:
            for sub in _repeated([e]):
                if sub not in names:
                    shared.append(sub)
                    lines.append(f"    s{len(shared) - 1} = {printer.definition(sub)}")
                    names[sub] = f"s{len(shared) - 1}"
            lines.append(f"    {names[s]} = {printer.definition(e)}")
    for sub in shared:     # the blocks name their own shared subterms, below
        del names[sub]
    for k, sub in enumerate(_repeated(outs)):
        name = f"t{k}"
        lines.append(f"    {name} = {printer.definition(sub)}")
        names[sub] = name
    body = ", ".join("[" + ", ".join("None" if e is None else printer._print(e) for e in row)
                     + "]" for row in rows)
    lines.append(f"    return [{body}]")
    return "\n".join(lines) + "\n"


def _compact(block):
    """A state-Jacobian block as `jacobian_state_blocks` returns it: None for a zero
    block, the diagonal (an n-vector) for a diagonal one, the matrix otherwise."""
    shape = kind(block, coupled=False)
    return None if shape == "zero" else diagonal(block) if shape == "diagonal" else block


def _needed_lets(lets, outs):
    """The lets the outputs depend on, directly or through other lets."""
    needed, todo = set(), atoms(e for e in outs if e is not None)
    while todo:
        s = todo.pop()
        if s in lets and s not in needed:
            needed.add(s)
            todo |= atoms([lets[s]])
    return needed


def _repeated(exprs):
    """Compound subterms occurring more than once, children before parents."""
    counts, order = Counter(), []

    def visit(e):
        if not isinstance(e, sp.Basic) or e.is_Atom or isinstance(e, (sp.MatrixSymbol, sp.Lambda)) \
                or not e.args or e.is_Number:
            return
        counts[e] += 1
        if counts[e] == 1:
            for a in e.args:
                visit(a)
            order.append(e)

    for e in exprs:
        visit(e)
    # diag(v) is printed through v wherever it multiplies (never as a matrix), so it is not
    # worth a name of its own; v is
    return [e for e in order if counts[e] > 1 and isinstance(e, sp.MatrixExpr)
            and not isinstance(e, (sp.Identity, sp.ZeroMatrix, sp.OneMatrix, DiagMatrix))]


@functools.lru_cache(maxsize=None)
def code(cell, what):
    """`source(cell, what)` compiled (cached): exec it in a namespace that holds `xp`.
    An expression nested past what Python's parser takes (~200 parentheses: tanh applied
    200 times over) is refused in one line."""
    try:
        return compile(source(cell, what), f"<gradlab {cell.name} {what}>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise GradlabError(f"cell '{cell.name}': its {what.replace('_', ' ')} nests too "
                           f"deeply for Python to compile ({type(err).__name__}: "
                           f"{getattr(err, 'msg', None) or err}); name intermediate values "
                           "with s.let so that each line stays shallow") from None


@functools.lru_cache(maxsize=None)
def compiled(cell, what, backend_name):
    """The lowered function bound to a backend's namespace (cached)."""
    return bind(cell, what, backend_name)


def bind(cell, what, backend_name, *, empty=None):
    """The lowered `what` bound to a backend, from the one compiled `code(cell, what)`.

    With `empty` (a function (shape, *, dtype, device) -> array, e.g. a workspace's), the
    in-place sums (`xp.scaled_sum`) write their results into arrays it hands out instead
    of fresh ones: a binding of its own, not cached (`compiled` is the shared, cached one)."""
    xp = backend(backend_name)
    if empty is not None:
        xp = types.SimpleNamespace(**vars(xp))
        xp.scaled_sum = functools.partial(backend(backend_name).scaled_sum, empty=empty)
    namespace = {"xp": xp}
    exec(code(cell, what), namespace)
    return namespace[what]


def _size(dim, n, m):
    """A declared length (n, m, or an expression in them) at the sizes of a call."""
    dim = sp.sympify(dim)
    return int(dim.subs({v: n if v.name == "n" else m for v in dim.free_symbols}))


def _full(xp, a, shape):
    """a as an array of exactly `shape` that owns its memory (a block may broadcast)."""
    return a if tuple(a.shape) == shape else xp.contiguous(xp.broadcast_to(a, shape))


@functools.lru_cache(maxsize=None)
def step_function(cell, backend_name):
    fn, xp = compiled(cell, "step", backend_name), backend(backend_name)

    def step(params, state, x):
        n, m, B, args = prepare(cell, params, state, x, backend_name)
        rows = fn(n, m, x, *args)
        return tuple(_full(xp, row[0], (B, n, 1))[:, :, 0] for row in rows)

    step.__doc__ = f"One step of {cell.name}: (params, state, x) -> new state ({backend_name})."
    return arguments_checked(step)       # step(param=p, ...): one line, as gradlab's own


@functools.lru_cache(maxsize=None)
def values_function(cell, backend_name):
    fn, xp = compiled(cell, "values", backend_name), backend(backend_name)
    lets = [s for s in cell.lets if isinstance(s, sp.MatrixSymbol)]
    names = [str(s) for s in lets]

    def values(params, state, x):
        n, m, B, args = prepare(cell, params, state, x, backend_name)
        rows = fn(n, m, x, *args)
        return {k: _full(xp, row[0], (B, _size(s.shape[0], n, m), 1))[:, :, 0]
                for k, s, row in zip(names, lets, rows)}

    values.__doc__ = f"Every named vector of {cell.name} (gates, candidates, new state), batched."
    return arguments_checked(values)


@functools.lru_cache(maxsize=None)
def jacobian_function(cell, wrt, backend_name):
    what = f"jacobian_{wrt}"
    fn, xp = compiled(cell, what, backend_name), backend(backend_name)

    def jacobian(params, state, x):
        n, m, B, args = prepare(cell, params, state, x, backend_name)
        return _assembled(xp, fn(n, m, x, *args), (B, n, n if wrt == "state" else m))

    jacobian.__doc__ = (f"d {cell.name} state' / d {wrt}, batched: (params, state, x) -> "
                        f"(B, S, {'S' if wrt == 'state' else 'm'}) ({backend_name}).")
    return arguments_checked(jacobian)


def _assembled(xp, rows, shape):
    """The blocks `rows` of one Jacobian as one (B, S, w) array, each block `shape`."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return _full(xp, rows[0][0], shape)
    return xp.cat([xp.cat([xp.broadcast_to(b, shape) for b in row], -1) for row in rows], -2)


def extended_jacobian(cell, wrt, params, state, x):
    """The Jacobian at float64 numpy arguments, evaluated by the numpy code in
    np.longdouble (x86: 80 bits, 64 of mantissa) and rounded to float64: where float64
    loses digits (1 - h'^2 at h' within 1e-12 of 1) it keeps ~3 more. None where
    longdouble is no wider than float64 (MSVC, Apple silicon)."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        return None
    fn, xp = compiled(cell, f"jacobian_{wrt}", "numpy"), backend("numpy")
    n, m, B, args = prepare(cell, params, state, x, "numpy")
    wide = [a.astype(np.longdouble) if getattr(a, "dtype", None) == np.float64 else a
            for a in (x, *args)]
    with np.errstate(all="ignore"):
        J = _assembled(xp, fn(n, m, *wide), (B, n, n if wrt == "state" else m))
    return np.asarray(J, dtype=np.float64)


@functools.lru_cache(maxsize=None)
def terms_function(cell, wrt, backend_name):
    """f(params, state, x) -> {(out part, in part): [(term, (B, n, w) array), ...]}: every
    term of every block of the state (or input) Jacobian, evaluated; a block's terms sum to
    the block as `jacobian_function` gives it."""
    return _labelled(cell, wrt, backend_name, "terms",
                     [[(t,) for t in block_terms(b)] for row in cell.jacobian_blocks(wrt)
                      for b in row])


SLIPS = {"slips": slips, "square_slips": square_slips}


@functools.lru_cache(maxsize=None)
def slips_function(cell, wrt, backend_name, kind="slips"):
    """f(params, state, x) -> {(out part, in part): [(term, slip, (B, n, w) array), ...]}:
    each term of each block as a hand derivation may get it wrong (`slips`), evaluated:
    what a Jacobian with that slip holds in place of the term. kind="square_slips": those
    that keep their shape only where m = n (`square_slips`; call it there alone)."""
    return _labelled(cell, wrt, backend_name, kind,
                     [[(t, slip) for t, slip, _ in SLIPS[kind](b)]
                      for row in cell.jacobian_blocks(wrt) for b in row])


def _labelled(cell, wrt, backend_name, what, labels):
    """f(params, state, x) -> {(out part, in part): [(*label, (B, n, w) array), ...]} for
    the lowered `what`_`wrt`, whose row for each block holds one value per label."""
    fn, xp = compiled(cell, f"{what}_{wrt}", backend_name), backend(backend_name)
    ins = cell.state_names if wrt == "state" else (cell.input_name,)
    keys = [(a, b) for a in cell.state_names for b in ins]

    def evaluate(params, state, x):
        n, m, B, args = prepare(cell, params, state, x, backend_name)
        width = n if wrt == "state" else m
        rows = fn(n, m, x, *args)
        return {key: [(*label, _full(xp, v, (B, n, width))) for label, v in zip(ls, row)
                      if v is not None] for key, ls, row in zip(keys, labels, rows)}

    return evaluate
