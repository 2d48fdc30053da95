"""`from_torch`: a torch recurrent module as a gradlab cell with its weights, copied exactly.

    nn.RNN / nn.RNNCell (tanh, relu) -> rnn_tanh / rnn_relu   W = weight_hh, U = weight_ih,
                                                              b = bias_ih + bias_hh
    nn.LSTM / nn.LSTMCell             -> lstm       gate rows i, f, g, o; b_a = sum of biases
    nn.LSTM(proj_size=p)              -> lstm_proj  the same, and W_r = weight_hr (padded)
    nn.GRU / nn.GRUCell               -> gru_torch  gate rows r, z, n; both biases kept

A module with num_layers = L > 1 gives the stacked cell `stack(layer cell, L)`
(gradlab.symbolic.stack): state h1, c1, h2, c2, ... (layer by layer, numbered from 1;
torch's weight_ih_l0 is layer 1's U), each parameter P of layer l as P{l}, its Jacobian
derived symbolically from the layer cell's equations. `bias=False` gives zero biases;
`batch_first` changes only how the module lays out its input, not the step; inter-layer
dropout is not modelled (the step is the module's eval-mode step).

proj_size = p > 0 (an LSTM whose h has p < n entries, c n; h' = W_hr (o * tanh(c'))):
the declaration language sizes every state part n, so `lstm_proj` (gradlab.catalogue.lstm)
declares h an n-vector and W_r n x n, and the weights are zero padded: W_r = weight_hr in
rows 0..p-1 and zero rows below, weight_hh's gate blocks W_* and the upper layers' U_*
(which read h) with zero columns p..n-1. Exact, not an approximation: every h (h1, h2,
...) holds torch's p entries first and zeros after them (at every step, from any h0,
since nothing reads entries p..), the Jacobian on the real coordinates is torch's and
its padded rows and columns are zero, so the spectral and Frobenius norm of every
product (and every block, J["h2", "c1"], flow.block_log_norm) is torch's; a spectrum
(singular values, Lyapunov exponents) gains L*(n-p) exact zeros (-inf exponents), so
`gradient_flow(module, xs)` refuses min_singular for it and stops lyapunov at the true size.
`state_sizes(module)` says, per state part, how many leading entries are torch's.

A bidirectional module is two recurrences: `direction="forward"` or `"backward"` picks one
(it must be given); the backward one reads the sequence reversed, so analyse it with
`gradient_flow(cell, params, xs, reverse=True)`. With num_layers = L > 1, layer l reads
concat(forward h, backward h) of layer l-1 at each step, and the other direction's half
runs in the opposite time: the whole network is no causal recurrence. Each direction is
its own flow, that direction's L layers stacked, with the other direction's layer outputs
an input held fixed (at their values on the actual sequence): the cell is
`stack(layer cell, L, exogenous=True)` reading x' = concat(x_t, the other direction's h of
layers 1..L-1 at t), m + (L-1)*p wide (p = proj_size or hidden_size). Layer 1's U is
weight_ih_l0 with zero columns for the rest of x'; layer l's U{l} is its own direction's
columns of weight_ih (forward h first in torch's concat, backward h second), U{l}_x the
other direction's, placed at layer l-1's columns of x' (zeros elsewhere).
`direction_inputs(module, xs, direction)` (gradlab.bidirectional, also here) builds x'
from xs: pass it to gradient_flow, or let `gradient_flow(module, xs, reverse=...)` do it.
The Jacobian is then that of the direction's step with the other half fixed: d s'/d s of
one direction's state.

`to_torch` is the inverse for one layer: the torch cell module (nn.RNNCell, nn.LSTMCell,
nn.GRUCell) computing exactly what a gradlab cell computes with given parameters.
"""

import re

from .errors import GradlabError, arguments_checked
from .registry import builtin, cell
from .torch_guards import (module_kind, own_weights, refuse_hooks, refuse_meta,
                           refuse_nonfinite, refuse_updating, unwrap)

# torch stacks the gates' rows in this order in weight_ih, weight_hh, bias_ih, bias_hh
GATES = {"lstm": ("i", "f", "g", "o"), "lstm_proj": ("i", "f", "g", "o"),
         "gru_torch": ("r", "z", "n")}
# the gradlab cells that torch ships, and the torch cell module computing each
MODULES = {"rnn_tanh": ("RNNCell", {"nonlinearity": "tanh"}),
           "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
           "lstm": ("LSTMCell", {}), "gru_torch": ("GRUCell", {})}
DIRECTIONS = ("forward", "backward")


def layer_cell(name):
    """The gradlab cell of one torch layer: a registered one, or `lstm_proj`."""
    if name == "lstm_proj":
        from .catalogue.lstm import lstm_proj
        return lstm_proj
    return cell(name)


def _weights(module, suffix=""):
    """(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr or None) under `suffix` ("_l0",
    "_l1_reverse", or "" for a cell module); zero biases where bias=False."""
    import torch

    w_ih = getattr(module, f"weight_ih{suffix}").detach().clone()
    w_hh = getattr(module, f"weight_hh{suffix}").detach().clone()
    if getattr(module, "bias", True):
        b_ih = getattr(module, f"bias_ih{suffix}").detach().clone()
        b_hh = getattr(module, f"bias_hh{suffix}").detach().clone()
    else:
        b_ih = b_hh = torch.zeros(w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
    w_hr = (getattr(module, f"weight_hr{suffix}").detach().clone()
            if getattr(module, "proj_size", 0) else None)
    _check_weights(module, suffix, w_ih, w_hh, b_ih, b_hh, w_hr)
    return w_ih, w_hh, b_ih, b_hh, w_hr


def _check_weights(module, suffix, w_ih, w_hh, b_ih, b_hh, w_hr=None):
    """Refuse weights whose shapes are not what the module's sizes say (a weight replaced
    by hand): torch would fail in its own words, or a cell module compute with them, and
    gradlab would pad a narrow one with zeros and measure a network torch cannot run."""
    n, p, m = module_sizes(module)
    gates = len(GATES.get(module_kind(module), "h"))       # the RNN's one block
    rows, proj = gates * n, bool(getattr(module, "proj_size", 0))
    layer = re.match(r"_l(\d+)", suffix)
    h = f"{'proj_size' if proj else 'hidden_size'} {p}"
    if layer is None or layer.group(1) == "0":
        width, reads = m, f"input_size {m}"
    else:                                   # an upper layer reads the h below (both halves)
        two = bool(getattr(module, "bidirectional", False))
        width, reads = (2 * p, f"2 x {h}") if two else (p, h)
    rows_are = f"{gates} x hidden_size {n} rows"
    checks = [(f"weight_ih{suffix}", w_ih, (rows, width), f"{rows_are}, {reads} columns"),
              (f"weight_hh{suffix}", w_hh, (rows, p), f"{rows_are}, {h} columns"),
              (f"bias_ih{suffix}", b_ih, (rows,), rows_are),
              (f"bias_hh{suffix}", b_hh, (rows,), rows_are)]
    if w_hr is not None:
        checks.append((f"weight_hr{suffix}", w_hr, (p, n), f"proj_size {p} x hidden_size {n}"))
    for name, t, shape, says in checks:
        if tuple(t.shape) != shape:
            raise GradlabError(f"{type(module).__name__}.{name} has shape {tuple(t.shape)}, "
                               f"not {shape} as the module's sizes say ({says})")
    clash = b_ih.isinf() & b_hh.isinf() & (b_ih != b_hh)   # inf + -inf: nan
    if bool(clash.any()):
        i = int(clash.nonzero()[0, 0])
        raise GradlabError(f"{type(module).__name__}.bias_ih{suffix}[{i}] + bias_hh{suffix}"
                           f"[{i}] is {float(b_ih[i])} + {float(b_hh[i])}, which is nan: that "
                           "gate has no value (torch computes nan there too)")


def layer_params(name, w_ih, w_hh, b_ih, b_hh, w_hr=None):
    """One layer's torch weights as the params of the gradlab cell `name` (for lstm_proj
    already padded to n columns, and w_hr to n x n)."""
    if name.startswith("rnn_"):
        return {"W": w_hh, "U": w_ih, "b": b_ih + b_hh}
    gates = GATES[name]
    rows = dict(zip(gates, zip(*(t.chunk(len(gates), 0) for t in (w_hh, w_ih, b_ih, b_hh)))))
    params = {"W_r": w_hr} if name == "lstm_proj" else {}
    for g, (w, u, bi, bh) in rows.items():
        if name.startswith("lstm"):
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_{g}": bi + bh})
        else:
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_i{g}": bi, f"b_h{g}": bh})
    return {p: params[p] for p in layer_cell(name).param_names}


def check_direction(module, direction):
    """The weight-name suffix of the direction asked for ("" or "_reverse")."""
    bidirectional = getattr(module, "bidirectional", False)
    if direction is None and not bidirectional:
        return ""
    if direction not in DIRECTIONS:
        raise GradlabError(f"direction must be one of {', '.join(DIRECTIONS)}"
                           + (" for a bidirectional module (each direction is its own flow)"
                              if bidirectional and direction is None else f", got {direction!r}"))
    if direction == "backward" and not bidirectional:
        raise GradlabError(f"direction='backward' needs a bidirectional module; this "
                           f"{type(module).__name__} has one direction (use 'forward')")
    return "_reverse" if direction == "backward" else ""


def _pad(t, rows, cols, at=0):
    """`t` inside a zero (rows, cols) matrix, its first column at column `at`."""
    out = t.new_zeros(rows, cols)
    out[:t.shape[0], at:at + t.shape[1]] = t
    return out


def module_sizes(module):
    """(n, p, m): hidden size, h's torch size (proj_size or n), input size."""
    n = module.hidden_size
    return n, getattr(module, "proj_size", 0) or n, module.input_size


def wide_input(module):
    """Does a direction of `module` read the wide input x' (bidirectional, num_layers > 1)?"""
    return bool(getattr(module, "bidirectional", False)) and getattr(module, "num_layers", 1) > 1


@arguments_checked
def from_torch(module, direction=None):
    """(Cell, params) computing exactly what `module` computes, every layer: a stacked cell
    (gradlab.symbolic.stack) for num_layers > 1. `direction` ("forward" / "backward") is
    required for a bidirectional module and picks its half; the backward half is analysed
    with reverse=True, and with num_layers > 1 a half reads `direction_inputs(module, xs,
    direction)`, not xs. proj_size > 0: lstm_proj, h zero padded to n entries (torch's p
    first; `state_sizes`). The module docstring has every mapping."""
    module = unwrap(module)                  # torch.compile, DataParallel: the same weights
    name = module_kind(module)
    refuse_meta(module)
    refuse_hooks(module)
    weights = own_weights(module)               # its own: not a submodule's beside them
    refuse_nonfinite(module)
    refuse_updating(module)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in weights})
    if any(d not in ("float32", "float64") for d in dtypes) or len(dtypes) > 1:
        raise GradlabError(f"{type(module).__name__}'s weights are {', '.join(dtypes)}; "
                           "gradlab measures one of float32, float64 (module.double() or "
                           "module.float())")
    if module.hidden_size < 1:                     # torch builds one; nothing to measure
        raise GradlabError(f"{type(module).__name__} has hidden_size "
                           f"{module.hidden_size}; gradlab measures a hidden size >= 1")
    if not hasattr(module, "num_layers"):          # a cell module: nn.LSTMCell, ...
        if direction not in (None, "forward"):
            raise GradlabError(f"{type(module).__name__} has one direction; direction="
                               f"{direction!r} does not apply")
        return cell(name), {p: t.contiguous()
                            for p, t in layer_params(name, *_weights(module)).items()}
    rev = check_direction(module, direction)
    layers, wide = module.num_layers, wide_input(module)
    n, p, m = module_sizes(module)
    width = m + (layers - 1) * p if wide else m
    own = int(rev == "_reverse")                   # which half of an upper layer's input
    per_layer, split = [], []
    for k in range(layers):
        w_ih, w_hh, b_ih, b_hh, w_hr = _weights(module, f"_l{k}{rev}")
        rows = w_hh.shape[0]
        if w_hr is not None:
            w_hh, w_hr = _pad(w_hh, rows, n), _pad(w_hr, n, n)
        other = None
        if k == 0:
            w_ih = _pad(w_ih, rows, width)          # x' beyond x: read by layers above
        elif module.bidirectional:
            halves = w_ih.split(p, 1)
            w_ih, other = _pad(halves[own], rows, n), halves[1 - own]
        else:
            w_ih = _pad(w_ih, rows, n)
        per_layer.append(layer_params(name, w_ih, w_hh, b_ih, b_hh, w_hr))
        if other is not None:                      # its U_* are the layer's U{l}_x
            other = _pad(other, rows, width, at=m + (k - 1) * p)
            split.append(layer_params(name, other, w_hh, b_ih, b_hh, w_hr))
    if layers == 1:
        return layer_cell(name), {q: t.contiguous() for q, t in per_layer[0].items()}
    from .symbolic.stack import exogenous_name, layer_name, stack
    c = stack(layer_cell(name), layers, exogenous=wide)
    params = {layer_name(q, k + 1): t for k, layer in enumerate(per_layer)
              for q, t in layer.items()}
    params.update({exogenous_name(q, k + 2): t for k, layer in enumerate(split)
                   for q, t in layer.items()})         # (only those reading x are kept)
    return c, {q: params[q].contiguous() for q in c.param_names}


def state_sizes(module):
    """{state part of from_torch(module)'s cell: how many of its leading entries are
    torch's}: n for every part except the h of an LSTM with proj_size p (p: its entries
    p.. are the zero padding). The same for both directions."""
    module = unwrap(module)                  # torch.compile, DataParallel: as from_torch
    name = module_kind(module)
    layers = getattr(module, "num_layers", None)
    n, p, _ = module_sizes(module) if layers else (module.hidden_size, module.hidden_size, 0)
    parts = layer_cell(name).state_names
    sizes = {q: (p if q == "h" else n) for q in parts}
    if not layers or layers == 1:
        return sizes
    from .symbolic.stack import layer_name
    return {layer_name(q, k): s for k in range(1, layers + 1) for q, s in sizes.items()}


def _checked_sizes(c, params):
    """(n, m) of a params dict for the one-layer cell `c`, every name, type, dtype, device
    and shape checked (as gradient_flow checks them), refused in one line."""
    from .flow.bound import check_params, hidden_size

    check_params(c, params)
    n = hidden_size(c, params)          # the sizes most parameters agree on, so that
    wide = [params[p].shape[1] for p, (_, cols) in c.param_shapes.items()    # the odd one
            if str(cols) == "m" and params[p].ndim == 2]                     # out is named
    m = max(set(wide), key=lambda v: (wide.count(v), -wide.index(v))) if wide else 0
    sizes = {"n": n, "m": m, "1": 1}
    for p, (rows, cols) in c.param_shapes.items():
        expected = (sizes[str(rows)],) if str(cols) == "1" else (sizes[str(rows)],
                                                                 sizes[str(cols)])
        if tuple(params[p].shape) != expected:
            raise GradlabError(f"param '{p}' of cell '{c.name}' has shape "
                               f"{tuple(params[p].shape)}, expected {expected} (n = {n}, "
                               f"m = {m}: what most of its parameters say)")
    return n, m                         # (m = 0: torch's cell modules take input_size 0)


@arguments_checked
def to_torch(c, params):
    """The torch cell module (nn.RNNCell, nn.LSTMCell or nn.GRUCell) that computes what the
    gradlab cell `c` computes with `params`, on their dtype and device: from_torch's inverse.
    The LSTM's and RNN's single bias b goes to bias_ih (bias_hh is zero)."""
    import torch

    c = cell(c)
    if c.name not in MODULES or not builtin(c):
        raise GradlabError(f"cell '{c.name}' has no torch cell module (" + (
            "a cell of your own that shares a built-in's name; " if c.name in MODULES
            else "to_torch builds one layer of a torch cell; build nn.LSTM(num_layers=..., "
            "proj_size=...) yourself and read it with from_torch; " if getattr(c, "stacked", False)
            or c.name == "lstm_proj" else "")
            + f"torch ships: {', '.join(MODULES)}, gradlab's built-in cells)")
    cls, options = MODULES[c.name]
    n, m = _checked_sizes(c, params)
    first = params[c.param_names[0]]
    with torch.random.fork_rng(devices=[]):        # its init draws must not move the user's
        module = getattr(torch.nn, cls)(m, n, **options,    # random stream (the weights
                                        dtype=first.dtype,  # are overwritten below)
                                        device=first.device)
    if c.name.startswith("rnn_"):
        w_hh, w_ih, b_ih, b_hh = params["W"], params["U"], params["b"], torch.zeros_like(params["b"])
    else:
        gates = GATES[c.name]
        w_hh = torch.cat([params[f"W_{g}"] for g in gates])
        w_ih = torch.cat([params[f"U_{g}"] for g in gates])
        if c.name == "lstm":
            b_ih = torch.cat([params[f"b_{g}"] for g in gates])
            b_hh = torch.zeros_like(b_ih)
        else:
            b_ih = torch.cat([params[f"b_i{g}"] for g in gates])
            b_hh = torch.cat([params[f"b_h{g}"] for g in gates])
    with torch.no_grad():
        for name, value in (("weight_hh", w_hh), ("weight_ih", w_ih), ("bias_ih", b_ih),
                            ("bias_hh", b_hh)):
            getattr(module, name).copy_(value)
    return module


def __getattr__(name):          # interop.direction_inputs, as documented: a module of its own
    if name == "direction_inputs":
        from .bidirectional import direction_inputs
        return direction_inputs
    raise AttributeError(f"module 'gradlab.interop' has no attribute {name!r}")
