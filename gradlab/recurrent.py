"""`Cell`: one recurrent cell, declared once in SymPy; everything else is derived from it."""

import functools
import linecache

import sympy as sp
from sympy import BlockMatrix, MatrixSymbol

from .language import SIZES, Builder, Value, n
from .derive import Chain
from .errors import GradlabError

WRT = ("state", "input")
BACKENDS = ("torch", "numpy")


def declare(*, state, params, source, gate_bias=None, name=None, inputs="x"):
    """Turn a declaration function into a `Cell`.

    state:     the state parts, in order, e.g. "h c".
    params:    parameter names in order, e.g. "W U b" (W*, V*, R*: n x n; U*: n x m;
               b*, p*: n), or a dict {name: "n m"} to give shapes explicitly.
    source:    the paper or document the equations come from.
    gate_bias: the bias that sets the memory gate ("b_f"; "-b_f" where the gate forgets).
    """
    def wrap(fn):
        return Cell(fn, name=name or fn.__name__, state=state, params=params, source=source,
                    gate_bias=gate_bias, inputs=inputs)
    return wrap


def _shape_of(name, spec=None):
    if spec is not None:
        dims = spec.split() if isinstance(spec, str) else list(spec)
        if len(dims) == 1:
            dims.append("1")
        try:
            return tuple(SIZES[str(d)] for d in dims)
        except KeyError:
            raise GradlabError(f"parameter '{name}' has shape {spec!r}; use 'n', 'n n' or "
                               "'n m'") from None
    if name.startswith("U"):
        return (SIZES["n"], SIZES["m"])
    if name.startswith(("b", "p")):
        return (SIZES["n"], sp.S.One)
    return (SIZES["n"], SIZES["n"])


class Cell:
    """A recurrent cell: its SymPy update equations and what gradlab derives from them.

    Jacobians are in numerator layout (J[i, j] = d out_i / d in_j, as torch.func.jacrev);
    a multi-part state (h, c) gives the block matrix with parts in `state_names` order.
    """

    def __init__(self, fn, *, name, state, params, source, gate_bias=None, inputs="x"):
        self.name, self.source, self.gate_bias = name, source, gate_bias
        self.doc = " ".join((fn.__doc__ or "").split())
        self.state_names = tuple(state.split() if isinstance(state, str) else state)
        specs = dict(params) if isinstance(params, dict) else dict.fromkeys(params.split())
        self.param_shapes = {p: _shape_of(p, s) for p, s in specs.items()}
        self.param_names = tuple(self.param_shapes)
        self.input_name = inputs
        self._fn = fn
        self.lets, self.outputs = self._build(fn)

    def __repr__(self):
        return f"<Cell {self.name}: state ({', '.join(self.state_names)})>"

    # -- declaration ---------------------------------------------------------------------
    def _build(self, fn):
        builder = Builder(self.name, self.state_names, self.param_shapes, self.input_name)
        try:
            out = fn(builder)
            outputs = self._bind_outputs(builder, out)
        except (GradlabError, sp.ShapeError) as err:
            raise GradlabError(f"cell '{self.name}'{_where(fn, err)}: {err}") from None
        used = set().union(*(e.free_symbols for e in builder.lets.values()))
        unused = [p for p in self.param_names if builder._symbols[p] not in used]
        if unused:
            raise GradlabError(f"cell '{self.name}': parameter(s) {', '.join(unused)} "
                               "declared but used by no equation")
        return builder.lets, outputs

    def _bind_outputs(self, builder, out):
        parts = self.state_names
        if isinstance(out, dict):
            missing = [p for p in parts if p not in out]
            if missing:
                raise GradlabError(f"state part '{missing[0]}' is never updated: return a "
                                   f"new value for each of {', '.join(parts)}")
            out = [out[p] for p in parts]
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(out) != len(parts):
            missing = parts[len(out):] or parts
            raise GradlabError(f"state part '{missing[0]}' is never updated: the declaration "
                               f"returns {len(out)} value(s) for the state ({', '.join(parts)})")
        symbols = []
        for part, value in zip(parts, out):
            value = value if isinstance(value, Value) else Value(value)
            old = builder._symbols[part]
            if value.expr == old:
                raise GradlabError(f"state part '{part}' is never updated: its new value "
                                   f"is the old {part}")
            if getattr(value.expr, "shape", None) != old.shape:
                raise GradlabError(f"the new value of state part '{part}' must be an n-vector, "
                                   f"got {value.expr}")
            if value.owner is not builder or not isinstance(value.expr, MatrixSymbol):
                value = builder.let(f"{part}'", value)
            symbols.append(value.expr)
        return tuple(symbols)

    # -- symbolic views ------------------------------------------------------------------
    def symbol(self, name):
        """The SymPy symbol of a parameter, state part, input or named quantity."""
        for s in (*self.lets, *self.state_symbols, self.input_symbol, *self.param_symbols):
            if str(s) == name:
                return s
        raise GradlabError(f"cell '{self.name}' has no symbol '{name}'")

    @property
    def state_symbols(self):
        return tuple(MatrixSymbol(p, n, 1) for p in self.state_names)

    @property
    def input_symbol(self):
        return MatrixSymbol(self.input_name, SIZES["m"], 1)

    @property
    def param_symbols(self):
        return tuple(MatrixSymbol(p, *s) for p, s in self.param_shapes.items())

    def equations(self):
        """The update equations, in order, as SymPy `Eq(name, definition)`."""
        return [sp.Eq(sym, expr, evaluate=False) for sym, expr in self.lets.items()]

    def jacobian_blocks(self, wrt="state"):
        """Rows of blocks d out_part / d in_part (numerator layout), as a list of lists."""
        return [list(row) for row in self._blocks(_check(wrt, WRT, "wrt"))]

    @functools.lru_cache(maxsize=None)
    def _blocks(self, wrt):
        ins = self.state_symbols if wrt == "state" else (self.input_symbol,)
        chains = [Chain(self.lets, s) for s in ins]
        return tuple(tuple(c.total(out) for c in chains) for out in self.outputs)

    def jacobian(self, wrt="state"):
        """d state' / d state (the block matrix) or d state' / d x, dimension-free."""
        blocks = self.jacobian_blocks(wrt)
        return blocks[0][0] if len(blocks) == 1 and len(blocks[0]) == 1 else BlockMatrix(blocks)

    def latex(self):
        from .printing import cell_latex
        return cell_latex(self)

    def _repr_latex_(self):
        return self.latex()

    # -- numbers -------------------------------------------------------------------------
    def init_params(self, hidden, inputs, **options):
        """Random parameters; see `gradlab.initialize.init_params` for the schemes."""
        from .initialize import init_params
        return init_params(self, hidden, inputs, **options)

    def step_fn(self, backend="torch"):
        """step(params, state: tuple of (B, n), x: (B, m)) -> new state tuple."""
        from .lower import step_function
        return step_function(self, _check(backend, BACKENDS, "backend"))

    def values_fn(self, backend="torch"):
        """values(params, state, x) -> {name: (B, n)} for every named vector (gates, ...)."""
        from .lower import values_function
        return values_function(self, _check(backend, BACKENDS, "backend"))

    @property
    def gates(self):
        """Names of the quantities that are a sigmoid of something: the cell's gates."""
        from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
        from .functions import sigmoid
        return tuple(str(s) for s, e in self.lets.items()
                     if isinstance(e, ElementwiseApplyFunction) and e.function(sp.Dummy()).func
                     is sigmoid)

    def jacobian_fn(self, wrt="state", backend="torch"):
        """f(params, state, x) -> (B, S, S) for wrt="state", (B, S, m) for wrt="input"."""
        from .lower import jacobian_function
        return jacobian_function(self, _check(wrt, WRT, "wrt"), _check(backend, BACKENDS,
                                                                       "backend"))


def _check(value, valid, what):
    if value not in valid:
        raise GradlabError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def _where(fn, err):
    """' at equation `...` (file:line)' for the line of `fn` an error was raised from."""
    tb, line = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code is fn.__code__:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None:
        return ""
    text = linecache.getline(fn.__code__.co_filename, line).strip()
    return f", equation `{text}` ({fn.__code__.co_filename}:{line})"
