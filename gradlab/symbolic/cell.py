"""`Cell`: one recurrent cell, declared once in SymPy; everything else is derived from it."""

import functools
import inspect

import sympy as sp
from sympy import MatrixSymbol

from .language import SIZES, Builder, Value, n, parameter_symbol, symbol_of
from .mistakes import NEW_NAME_TAKEN, hint, line_of, where
from .declared import (check_cell_name, check_gate_bias, check_names, param_specs, refuse,
                       state_parts)
from .derive import Chain
from .equations import check_constants, check_reached, check_symbols, repeatable
from .expressions import Lets
from .frozen import FrozenDict, shape_of
from ..errors import (GradlabAttributeError, GradlabError, choice, methods_checked,
                      shown)

WRT = ("state", "input")
BACKENDS = ("torch", "numpy")


def declare(fn=None, /, *, state=None, params=None, source=None, gate_bias=None, name=None,
            inputs="x", output=None):
    """Turn a declaration function into a `Cell`; state, params and source are required.
    A decorator with arguments, `@gradlab.declare(state=..., params=..., source=...)`
    above `def cell(s): ...`, or `gradlab.declare(...)(fn)`; `fn` is not taken (declare(fn,
    ...) is refused, naming the decorator form).

    state:     the state parts, in order, e.g. "h c".
    params:    parameter names in order, e.g. "W U b" (W*, V*, R*: n x n; U*: n x m;
               b*, p*: n), or a dict {name: "n m"} to give shapes explicitly.
    source:    the paper or document the equations come from.
    gate_bias: the bias that sets the memory gate ("b_f"; "-b_f" where the gate forgets).
    name:      the cell's name (default: the function's __name__).
    inputs:    the name of the input vector in the equations (default "x": s.x).
    output:    what the cell passes on (to the layer above in a `stack`), as a function of
               the new value of its part h (or its first part), e.g. `tanh` where the
               output is tanh(s'); default: that part itself.
    """
    missing = [k for k, v in (("state", state), ("params", params), ("source", source))
               if v is None]
    if fn is not None or missing:
        raise GradlabError("declare takes its arguments by name, then decorates: "
                           "@gradlab.declare(state=\"h\", params=\"W U b\", source=\"...\")"
                           + (f"; missing: {', '.join(missing)}" if missing else ""))
    if not missing and (not isinstance(source, str) or not source.strip()):
        raise GradlabError(f"declare(source=...) names the paper or document the equations "
                           f"come from, as text; got {source!r}")
    def wrap(fn):
        if not callable(fn):
            raise GradlabError(f"declare(...) decorates a function of s (the cell's "
                               f"equations), got {type(fn).__name__}")
        if name is None and not isinstance(getattr(fn, "__name__", None), str):
            raise GradlabError(f"declare(...): {type(fn).__name__} {fn!r} has no __name__; "
                               "give the cell one, declare(..., name='my_cell')")
        return Cell(fn, name=fn.__name__ if name is None else name, state=state,
                    params=params, source=source, gate_bias=gate_bias, inputs=inputs,
                    output=output)
    return wrap


@methods_checked      # a misspelt option is one line naming the method, not a TypeError
class Cell:
    """A recurrent cell: its SymPy update equations and what gradlab derives from them.

    Jacobians are in numerator layout (J[i, j] = d out_i / d in_j, as torch.func.jacrev);
    a multi-part state (h, c) gives the block matrix with parts in `state_names` order.
    Made by `declare` (whose arguments, name, state, params, source, gate_bias, inputs
    and output, are this constructor's), from a declaration function `fn` of s.
    """

    def __init__(self, fn, *, name, state, params, source, gate_bias=None, inputs="x",
                 output=None):
        check_cell_name(name)
        if output is not None and not callable(output):
            raise GradlabError(f"cell '{name}': declare(output=...) is a function of the new "
                               f"h (such as tanh) or None, got {output!r}")
        self.name, self.source, self.gate_bias = name, source, gate_bias
        self.output = output
        self.gate_biases = (gate_bias,) if gate_bias else ()   # all init moves (a stack: more)
        self.doc = " ".join((fn.__doc__ or "").split())
        self.state_names = state_parts(name, "state", state)
        specs = param_specs(name, params)
        self.input_name = inputs
        check_names(name, self.state_names, tuple(specs), inputs)
        try:
            self.param_shapes = FrozenDict({p: shape_of(p, s) for p, s in specs.items()})
        except GradlabError as err:
            refuse(name, err)
        self.param_names = tuple(self.param_shapes)
        check_gate_bias(name, gate_bias, self.param_shapes)
        self._fn = fn
        self.lets, self.outputs = repeatable(name, self._build(fn), lambda: self._build(fn))
        self._check_output()
        self._made = True

    @property
    def declaration(self):
        """The declaration function the cell was built from (its equations, in the
        language): a stacked cell runs it once per layer on renamed symbols."""
        return self._fn

    FIXED = ("name", "source", "gate_bias", "gate_biases", "doc", "state_names",
             "param_shapes", "param_names", "input_name", "lets", "outputs", "stacked",
             "made_by", "output")

    def __setattr__(self, key, value):
        """What a cell is (its name, parts, parameters, equations, the biases init moves)
        is set once, when it is made (`stack` sets its own two then): the catalogue's
        cells are shared, and an edit would change them for every later gradlab.cell(...)
        in the session."""
        self._unfixed(key)
        super().__setattr__(key, value)

    def __delattr__(self, key):
        self._unfixed(key)
        super().__delattr__(key)

    def _unfixed(self, key):
        if key in self.FIXED and self.__dict__.get("_made"):
            raise GradlabAttributeError(f"cell '{self.name}': {key} is fixed once the cell "
                                        "is declared; declare a new cell (gradlab.declare)")

    # a Cell is immutable: copies are itself, and a registered one pickles by its name
    __copy__ = lambda self: self                                  # noqa: E731
    __deepcopy__ = lambda self, memo: self                        # noqa: E731

    def __reduce__(self):
        """A catalogue cell pickles by its name, a stack by how it was stacked, a cell
        declared at the top level of a module by that module and name (as pickle refers
        to a function); any other declared cell cannot be pickled."""
        from .. import registry
        if registry.builtin(self):
            return registry.cell, (self.name,)
        if self.__dict__.get("made_by") is not None:
            return self.made_by
        spec = registry.spec_of(self)
        if spec is not None:
            return registry.cell, (spec,)
        raise GradlabError(f"cell '{self.name}' cannot be pickled: it is not in gradlab's "
                           "catalogue, not a stack, and not bound to a name at the top level "
                           "of the module that declares it, by which pickle could find it "
                           "again; declare it at a module's top level, or pickle its params "
                           "and declare it again to load")

    def __repr__(self):
        from .printing import text
        head = f"{self.name}: state ({', '.join(self.state_names)})   {self.source}"
        lets = getattr(self, "lets", {})     # (not yet there while it is being declared)
        try:                                 # (a display hook never raises)
            outs = [(p, text(o)) for p, o in zip(self.state_names, getattr(self, "outputs",
                                                                            ()))]
            named = [f"{p}' = {o}" for p, o in outs if o != f"{p}'"]  # a let returned as is
            return "\n".join([head, *(f"  {text(s)} = {text(e)}" for s, e in lets.items()),
                              *([f"  new state: {', '.join(named)}"] if named else [])])
        except GradlabError as err:
            return f"{head}\n  (equations not shown: {line_of(err)})"

    def _repr_markdown_(self):
        try:
            return self._markdown()
        except GradlabError:
            return None                      # (IPython then shows the repr)

    def _markdown(self):       # (Jupyter shows this before the LaTeX: it has it all too)
        from .words import prose
        lines = [f"**{self.name}**: state ({', '.join(self.state_names)}); "
                 f"{prose(self.source)}", ""]
        if self.doc:
            lines += [prose(self.doc), ""]
        return "\n".join(lines + [self.latex()])

    def _build(self, fn):
        builder = Builder(self.name, self.state_names, self.param_shapes, self.input_name)
        try:
            out = fn(builder)
            outputs = self._bind_outputs(builder, out)
        except (GradlabError, sp.ShapeError) as err:
            raise GradlabError(f"cell '{self.name}'{where(fn, err)}: {line_of(err)}") from None
        except Exception as err:   # a Python slip in the declaration (s.W.T, a typo, ...)
            raise GradlabError(f"cell '{self.name}'{where(fn, err)}: {type(err).__name__}: "
                               f"{line_of(err)}{hint(err)}") from None
        check_constants(self.name, builder.lets)
        check_symbols(self.name, builder.lets, builder.declared())
        check_reached(self.name, builder.lets, outputs,
                      list(zip(self.param_names, self.param_symbols)))
        return Lets(builder.lets), outputs

    def _check_output(self):
        """declare(output=f): f applied to the new h (of a throwaway builder) must give an
        n-vector in the language. One that cannot (torch.tanh, sum, a constant) is refused
        here, naming its line; a stack of the cell failed later, naming gradlab's own."""
        if self.output is None:
            return
        fed = "h" if "h" in self.state_names else self.state_names[0]
        builder = Builder(self.name, self.state_names, self.param_shapes, self.input_name)
        new = Value(MatrixSymbol(f"{fed}'", n, 1), owner=builder)
        named = getattr(self.output, "__name__", None) or type(self.output).__name__
        head = f"cell '{self.name}': declare(output={named})"
        line = functools.partial(where, inspect.unwrap(self.output))   # (gradlab.maximum's
        try:                                                     # wrapper: not its line)
            out = self.output(new)
        except (GradlabError, sp.ShapeError) as err:
            raise GradlabError(f"{head}{line(err)}: {line_of(err)}") from None
        except Exception as err:     # (a user's function: any error is its problem)
            raise GradlabError(f"{head}{line(err)}: {type(err).__name__}: "
                               f"{line_of(err)}{hint(err)}") from None
        expr = out.expr if isinstance(out, Value) else out
        if not isinstance(expr, sp.MatrixExpr) or expr.shape != (n, 1):
            kind = (" x ".join(map(str, expr.shape)) if isinstance(expr, sp.MatrixExpr)
                    else "scalar" if isinstance(out, Value) else type(out).__name__)
            got = f"{shown(out)} ({kind})"
            raise GradlabError(f"{head} must give an n-vector, a function of the new {fed} "
                               f"({fed}' itself, tanh({fed}'), ...); it gave {got}")

    def _bind_outputs(self, builder, out):
        parts = self.state_names
        if isinstance(out, dict):
            extra = [k for k in out if k not in parts]
            if extra:
                raise GradlabError(f"the declaration returns a value for {extra[0]!r}, which "
                                   f"is not a state part ({', '.join(parts)})")
            missing = [p for p in parts if p not in out]
            if missing:
                raise GradlabError(f"state part '{missing[0]}' is never updated: return a "
                                   f"new value for each of {', '.join(parts)}")
            out = [out[p] for p in parts]
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(out) > len(parts):
            raise GradlabError(f"the declaration returns {len(out)} values for the state "
                               f"({', '.join(parts)}): return one per state part")
        if len(out) != len(parts):
            missing = parts[len(out):] or parts
            raise GradlabError(f"state part '{missing[0]}' is never updated: the declaration "
                               f"returns {len(out)} value(s) for the state ({', '.join(parts)})")
        symbols = []
        for part, value in zip(parts, out):
            if not isinstance(value, (Value, sp.MatrixExpr)):   # np.zeros(n), "h", 3, None
                raise GradlabError(f"the new value of state part '{part}' must be an n-vector "
                                   f"of the cell's values (s.h, s.W, ...), got "
                                   f"{shown(value)} ({type(value).__name__})")
            value = value if isinstance(value, Value) else Value(value)
            old = symbol_of(builder, part)
            if value.expr == old:
                raise GradlabError(f"state part '{part}' is never updated: its new value "
                                   f"is the old {part}")
            if getattr(value.expr, "shape", None) != old.shape:
                raise GradlabError(f"the new value of state part '{part}' must be an n-vector, "
                                   f"got {value.expr}")
            if value.owner is not builder or value.expr not in builder.lets \
                    or value.expr in symbols:     # one let for two parts: each its own name
                if any(str(s) == f"{part}'" for s in builder.lets):   # a let h' not returned
                    raise GradlabError(NEW_NAME_TAKEN.format(part))
                value = builder.let(f"{part}'", value)
            other = str(value.expr).rstrip("'")
            if str(value.expr).endswith("'") and other != part and other in parts:
                raise GradlabError(f"the new value of state part '{part}' is named "
                                   f"{value.expr}, the name of the new {other}: name it "
                                   f"{part}' (or return it unnamed)")
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
        """A MatrixSymbol (n x 1) per state part, in `state_names` order."""
        return tuple(MatrixSymbol(p, n, 1) for p in self.state_names)

    @property
    def input_symbol(self):
        """The input x as a MatrixSymbol (m x 1)."""
        return MatrixSymbol(self.input_name, SIZES["m"], 1)

    @property
    def param_symbols(self):
        """A MatrixSymbol per parameter; a real Symbol for a scalar (shape "1") one."""
        return tuple(parameter_symbol(p, s) for p, s in self.param_shapes.items())

    def equations(self):
        """The update equations, in order: SymPy `Eq(name, definition)`s that print as
        `gradlab derive` does (a list; `Equations.latex()` for all of them)."""
        return self.lets.equations()

    def jacobian_blocks(self, wrt="state"):
        """Rows of blocks d out_part / d in_part (numerator layout), as a list of lists."""
        return [list(row) for row in self._blocks(choice(wrt, WRT, "wrt"))]

    @functools.lru_cache(maxsize=None)
    def _blocks(self, wrt):
        ins = self.state_symbols if wrt == "state" else (self.input_symbol,)
        chains = [Chain(self.lets, s) for s in ins]
        return tuple(tuple(c.total(out) for c in chains) for out in self.outputs)

    def jacobian(self, wrt="state"):
        """d state' / d state or d state' / d x, dimension-free: a `Jacobian` (a SymPy
        BlockMatrix, one block per pair of state parts) that prints as `gradlab derive`
        does. J["c", "c"] is a block by name, J.terms(), J.explicit(n=2), J.at(params,
        state, x), J.subs(...), J.simplify(); see `gradlab.symbolic.jacobian`."""
        return self._jacobian(choice(wrt, WRT, "wrt"))

    @functools.lru_cache(maxsize=None)
    def _jacobian(self, wrt):
        from .jacobian import Jacobian
        ins = self.state_names if wrt == "state" else (self.input_name,)
        return Jacobian.of(self, wrt, self._blocks(wrt), [str(s) for s in self.outputs], ins,
                           self.state_names)

    def latex(self):
        """The equations and the state Jacobian's blocks in LaTeX (what a notebook shows)."""
        from .printing import cell_latex
        return cell_latex(self)

    def _repr_latex_(self):
        try:
            return self.latex()
        except GradlabError:
            return None

    # -- numbers -------------------------------------------------------------------------
    def init_params(self, hidden, inputs, *extra, **options):
        """Random parameters {name: tensor} at hidden size n and input size m, with
        options init="gaussian" | "orthogonal" | "torch", weight_scale=1.0,
        bias_scale=0.0, input_scale=1.0, gate_bias=0.0, seed=0, dtype=torch.float64,
        device="cpu" (`gradlab.initialize.init_params` says what each draws). A scalar
        parameter (shape "1") is one number, stored with shape (1,)."""
        from ..initialize import init_params
        known = [k for k, v in inspect.signature(init_params).parameters.items()
                 if v.kind is inspect.Parameter.KEYWORD_ONLY]
        if extra:
            raise GradlabError(f"init_params(hidden, inputs, ...) takes its options by name: "
                               f"{extra[0]!r} was given third; options: {', '.join(known)}")
        unknown = [k for k in options if k not in known]
        if unknown:
            raise GradlabError(f"init_params: unknown option {unknown[0]!r}; valid: "
                               f"{', '.join(known)}")
        return init_params(self, hidden, inputs, **options)

    def step_fn(self, backend="torch"):
        """step(params, state: tuple of (B, n), x: (B, m)) -> new state tuple; backend
        "torch" (tensors) or "numpy" (arrays), for arguments and results alike."""
        from ..lowering.lower import step_function
        return step_function(self, choice(backend, BACKENDS, "backend"))

    def values_fn(self, backend="torch"):
        """values(params, state, x) -> {name: (B, n)} for every named vector (gates, ...);
        backend "torch" or "numpy", as `step_fn`."""
        from ..lowering.lower import values_function
        return values_function(self, choice(backend, BACKENDS, "backend"))

    @property
    def gates(self):
        """Names of the quantities that are a sigmoid of something: the cell's gates."""
        from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
        from .activations import sigmoid
        return tuple(str(s) for s, e in self.lets.items()
                     if isinstance(e, ElementwiseApplyFunction) and e.function(sp.Dummy()).func
                     is sigmoid)

    def jacobian_fn(self, wrt="state", backend="torch"):
        """f(params, state, x) -> (B, S, S) for wrt="state", (B, S, m) for wrt="input";
        backend "torch" or "numpy", as `step_fn`."""
        from ..lowering.lower import jacobian_function
        return jacobian_function(self, choice(wrt, WRT, "wrt"), choice(backend, BACKENDS,
                                                                       "backend"))
