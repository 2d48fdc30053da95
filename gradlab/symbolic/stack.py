"""`stack(layer, L)`: L copies of a layer cell composed into one cell, declared symbolically.

A stacked recurrent network (torch's nn.LSTM(num_layers=L)) updates its layers in order at
every step: layer 1 reads the input x_t, layer l >= 2 reads the NEW h of layer l-1 at the
same step (a layer cell with no part named h: its first state part), passed through the
layer cell's declared `output` where it has one (pseudo_lstm's output is tanh(s'), not
its state s'). `stack` writes that as one declaration, generated from the layer cell's
own declaration function: it runs the layer's equations once per layer against a view of
the builder in which every symbol carries the layer's number,

    state parts  h, c        ->  h1, c1, h2, c2, ...        (layer by layer)
    parameters   W_i, b_f    ->  W_i1, b_f1, W_i2, ...      (an n x m one is n x n above
                                                             layer 1: it reads h_{l-1}')
    named values i, c'       ->  i1, c1', i2, c2', ...
    input        x           ->  x for layer 1, h_{l-1}' (the previous layer's new h, or
                                 its output) above

and names each layer's new state (h1', ...). The stacked Jacobian d(h1, c1, h2, ...)' /
d(h1, c1, h2, ...) then comes from gradlab's chain rule through those names like any
other cell's: the cross-layer blocks (d h2'/d c1 through h1') included, nothing written
by hand. J["h2", "c1"] is a block by name.

`stack(layer, L, exogenous=True)` is one direction of a bidirectional stack (torch's
nn.LSTM(num_layers=L, bidirectional=True)): there layer l >= 2 reads concat(forward h,
backward h) of layer l-1, of which only its own direction's is state. The other half is
an input held fixed, so x is the wide input x' = concat(x_t, the other direction's h of
layers 1..L-1 at t), and above layer 1 every weight P that reads the layer input splits
in two, P{l} @ h_{l-1}' + P{l}_x @ x':

    U_i   ->  U_i1 (n x m, reads x')   U_i2 (n x n, reads h1')   U_i2_x (n x m, reads x')

(`exogenous_name`; gradlab.interop fills the P{l}_x with zeros outside the columns of x'
that hold layer l-1's other half). The layer must read its input only as P @ x.
"""

import functools
import re
import threading

from .cell import Cell
from .dag import free_symbols
from .language import Value, n
from ..errors import GradlabError, arguments_checked, flag, integer

MAX_LAYERS = 64


def layer_name(name, layer):
    """A layer's copy of a name: `W_i` -> `W_i2`, `c'` -> `c2'`, `r^2` -> `r2^2`, `h~` ->
    `h2~` (the number before any ^, ~ or primes: r^22 would read as a power 22)."""
    base = re.match(r"[^\^~']*", name)[0]
    return f"{base}{layer}{name[len(base):]}"


def exogenous_name(name, layer):
    """The weight by which layer `layer` >= 2 of an exogenous stack reads the wide input
    x' where its layer cell's weight `name` reads the layer input: `U_i` -> `U_i2_x`."""
    return f"{layer_name(name, layer)}_x"


class _SplitInput:
    """Layer l >= 2's input in an exogenous stack: the previous layer's new h (state) and
    the wide input x' (held fixed); only `P @ x` reads it (see `_SplitWeight`)."""

    def __init__(self, own, wide):
        self.own, self.wide = own, wide

    def __repr__(self):
        return ("the layer input of a stacked direction (h_{l-1}' and x'), which a layer "
                "of stack(..., exogenous=True) may read only as P @ x")


class _SplitWeight:
    """A weight P of layer l >= 2 in an exogenous stack: P @ x is P{l} @ h_{l-1}' +
    P{l}_x @ x'."""

    def __init__(self, name, own, wide):
        self.name, self.own, self.wide = name, own, wide

    def __matmul__(self, other):
        if not isinstance(other, _SplitInput):
            raise GradlabError(f"stack(..., exogenous=True): weight {self.name} reads "
                               "the layer input, so it may only appear as "
                               f"{self.name} @ x")
        return self.own @ other.own + self.wide @ other.wide

    def __repr__(self):
        return f"{self.name} (split: {self.name} @ x only)"


class _LayerView:
    """What layer `layer`'s equations see: the stacked builder with every name renamed,
    and `x` the layer's input (x itself, or the previous layer's new h, or both split
    for an exogenous stack, with `split` the weights that read it)."""

    def __init__(self, builder, layer, inputs, input_name, split=()):
        self._builder, self._layer = builder, layer
        self._inputs, self._input_name, self._split = inputs, input_name, split

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == self._input_name:
            return self._inputs
        if name in self._split:
            return _SplitWeight(name, getattr(self._builder, layer_name(name, self._layer)),
                                getattr(self._builder, exogenous_name(name, self._layer)))
        return getattr(self._builder, layer_name(name, self._layer))

    def let(self, name, value):
        return self._builder.let(layer_name(name, self._layer), value)

    @property
    def I(self):     # noqa: E743 - the identity, as the papers write it
        return self._builder.I

    @property
    def hidden_size(self):
        return n

    @property
    def input_size(self):
        return self._builder.input_size if self._layer == 1 else n


def _layer_outputs(layer_cell, out):
    """The layer declaration's return value as a list, one per state part."""
    if isinstance(out, dict):
        return [out[p] for p in layer_cell.state_names]
    return list(out) if isinstance(out, (tuple, list)) else [out]


@arguments_checked
def stack(layer_cell, layers, name=None, exogenous=False):
    """The cell of `layers` copies of `layer_cell` (a Cell or a cell's name; not itself
    a stack) stacked as torch stacks them (layer l reads layer l-1's new h, or its first
    state part where it has no h, through the layer cell's `output` if it declares one):
    state h1, c1, h2, c2, ...; a parameter P of layer l is P{l}. `exogenous`: layers 2..
    also read the input x through weights P{l}_x (one direction of a bidirectional stack;
    the module docstring). Cached: the same stack is the same Cell."""
    from ..registry import cell
    layer_cell = cell(layer_cell)
    if getattr(layer_cell, "stacked", False):
        raise GradlabError(f"cannot stack '{layer_cell.name}', itself a stack of layers: its "
                           "layer numbers would collide; stack the one-layer cell instead, "
                           "stack(layer, layers)")
    layers = integer(layers, "layers", 1, MAX_LAYERS)
    if layers > 1 and layer_cell.input_symbol not in free_symbols(
            [*layer_cell.lets.values(), *layer_cell.outputs]):
        raise GradlabError(f"cannot stack '{layer_cell.name}': it never reads its input "
                           f"{layer_cell.input_name}, through which layer l reads layer "
                           f"l-1, so its {layers} layers would not be connected")
    with _MAKING:        # (lru_cache does not lock: two threads would make two Cells)
        return _stack(layer_cell, layers, name, flag(exogenous, "exogenous"))


_MAKING = threading.RLock()


def _refuse_collisions(layer_cell, layers):
    """Two names that number to one (b of layer 11 and b1 of layer 1 are both b11) would
    tie two weights, or two state parts, into one: refused, naming both."""
    seen = {}
    names = (*layer_cell.state_names, *layer_cell.param_names, layer_cell.input_name)
    for l in range(1, layers + 1):
        for p in names:
            mine = layer_name(p, l)
            if mine in seen and seen[mine] != (p, l):
                q, k = seen[mine]
                raise GradlabError(f"stack of {layers} layers of {layer_cell.name}: {q!r} of "
                                   f"layer {k} and {p!r} of layer {l} would both be "
                                   f"{mine!r}; rename {q if q[-1:].isdigit() else p!r} "
                                   "in the layer cell (a name ending in a digit collides "
                                   "with the layer numbers)")
            seen[mine] = (p, l)


@functools.lru_cache(maxsize=None)
def _stack(layer_cell, layers, name, exogenous):
    made_by = (stack, (layer_cell, layers, name, exogenous))     # how pickle makes it again
    parts, x = layer_cell.state_names, layer_cell.input_name
    fed = "h" if "h" in parts else parts[0]       # the part the next layer reads
    state = [layer_name(p, l) for l in range(1, layers + 1) for p in parts]
    split = tuple(p for p, (_, cols) in layer_cell.param_shapes.items()
                  if exogenous and str(cols) == "m")
    plain = {layer_name(p, l) for l in range(1, layers + 1) for p in layer_cell.param_names}
    _refuse_collisions(layer_cell, layers)
    params = {}
    for l in range(1, layers + 1):
        for p, (rows, cols) in layer_cell.param_shapes.items():
            dims = [str(rows), "n" if l > 1 and str(cols) == "m" else str(cols)]
            params[layer_name(p, l)] = " ".join(d for d in dims if d != "1") or "1"
            if l > 1 and p in split:
                if exogenous_name(p, l) in plain:
                    raise GradlabError(f"stack(..., exogenous=True) of {layer_cell.name}: "
                                       f"the split weight {exogenous_name(p, l)!r} has the "
                                       "name of a stacked parameter")
                params[exogenous_name(p, l)] = f"{rows} m"
    gate_bias, every = layer_cell.gate_bias, ()
    if gate_bias is not None:   # named by layer 1's; init_params sets every layer's
        sign = "-" if gate_bias.startswith("-") else ""
        every = tuple(sign + layer_name(gate_bias.lstrip("-"), l) for l in range(1, layers + 1))
        gate_bias = every[0]

    def declaration(s):
        inputs, new = getattr(s, x), {}
        for l in range(1, layers + 1):
            view = _LayerView(s, l, inputs, x, split if l > 1 else ())
            outs = _layer_outputs(layer_cell, layer_cell.declaration(view))
            for p, value in zip(parts, outs):
                value = value if isinstance(value, Value) else Value(value)
                target = layer_name(f"{p}'", l)
                if str(getattr(value.expr, "name", "")) != target:
                    value = s.let(target, value)
                new[layer_name(p, l)] = value
            inputs = new[layer_name(fed, l)]
            if layer_cell.output is not None:
                inputs = layer_cell.output(inputs)
            inputs = _SplitInput(inputs, getattr(s, x)) if split else inputs
        return new

    wide = (f", and x (layers 2.. through {', '.join(exogenous_name(p, 2) for p in split)}, "
            "...)") if split else ""
    read = f"new {fed}" if layer_cell.output is None else f"output (of its new {fed})"
    declaration.__doc__ = (f"{layers} layers of {layer_cell.name}, layer l reading layer "
                           f"l-1's {read}{wide}. {layer_cell.doc}")
    if name is None:     # (a name given, "" or 0 too, is checked as declare checks it)
        name = f"{layer_cell.name}_x{layers}" + ("_bidir" if exogenous else "")
    one_way = " (one direction of a bidirectional stack)" if exogenous else ""
    stacked = Cell(declaration, name=name, state=state, params=params, inputs=x,
                   source=f"{layers} stacked layers of {layer_cell.name}{one_way} "
                          f"({layer_cell.source})", gate_bias=gate_bias)
    object.__setattr__(stacked, "stacked", True)    # `stack` refuses to stack it again
    object.__setattr__(stacked, "gate_biases", every)   # (set as it is made: Cell.FIXED)
    object.__setattr__(stacked, "made_by", made_by)
    return stacked
