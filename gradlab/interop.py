"""`from_torch`: a torch recurrent module as a gradlab cell with its weights, copied exactly.

    nn.RNN / nn.RNNCell (tanh, relu) -> rnn_tanh / rnn_relu   W = weight_hh, U = weight_ih,
                                                              b = bias_ih + bias_hh
    nn.LSTM / nn.LSTMCell             -> lstm       gate rows i, f, g, o; b_a = sum of biases
    nn.GRU / nn.GRUCell               -> gru_torch  gate rows r, z, n; both biases kept

A module with num_layers = L > 1 gives the stacked cell `stack(layer cell, L)`
(gradlab.symbolic.stack): state h1, c1, h2, c2, ... (layer by layer, numbered from 1;
torch's weight_ih_l0 is layer 1's U), each parameter P of layer l as P{l}, its Jacobian
derived symbolically from the layer cell's equations. `bias=False` gives zero biases;
`batch_first` changes only how the module lays out its input, not the step.

A bidirectional module is two recurrences: `direction="forward"` or `"backward"` picks one
(it must be given); the backward one reads the sequence reversed, so analyse it with
`gradient_flow(cell, params, xs, reverse=True)`. Only num_layers = 1 is accepted: above
it, layer l reads both directions of layer l-1 at every step, so the backward half's
future enters the forward half's step and neither direction is a recurrence in its own
state. An LSTM with proj_size > 0 is refused: its h (proj_size) and c (hidden_size)
differ in size, and every state part of a gradlab cell is an n-vector (the language has
the sizes n, m and 1 only); `gradient_flow(module, xs)` measures it by jacrev instead.

`to_torch` is the inverse for one layer: the torch cell module (nn.RNNCell, nn.LSTMCell,
nn.GRUCell) computing exactly what a gradlab cell computes with given parameters.
"""

from .errors import GradlabError
from .registry import cell

# torch stacks the gates' rows in this order in weight_ih, weight_hh, bias_ih, bias_hh
GATES = {"lstm": ("i", "f", "g", "o"), "gru_torch": ("r", "z", "n")}
# the gradlab cells that torch ships, and the torch cell module computing each
MODULES = {"rnn_tanh": ("RNNCell", {"nonlinearity": "tanh"}),
           "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
           "lstm": ("LSTMCell", {}), "gru_torch": ("GRUCell", {})}
DIRECTIONS = ("forward", "backward")


def _kind(module):
    import torch.nn as nn

    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return f"rnn_{module.nonlinearity}"
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        if getattr(module, "proj_size", 0):
            raise GradlabError("nn.LSTM with proj_size > 0 is refused: its h (proj_size) and "
                               "c (hidden_size) differ in size, and every state part of a "
                               "gradlab cell is an n-vector; gradlab.gradient_flow(module, "
                               "xs) measures it by jacrev instead")
        return "lstm"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "gru_torch"
    raise GradlabError(f"from_torch takes nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU or "
                       f"nn.GRUCell, got {type(module).__name__}")


def _weights(module, suffix=""):
    """(weight_ih, weight_hh, bias_ih, bias_hh) under `suffix` ("_l0", "_l1_reverse", or
    "" for a cell module); zero biases where bias=False."""
    import torch

    w_ih = getattr(module, f"weight_ih{suffix}").detach().clone()
    w_hh = getattr(module, f"weight_hh{suffix}").detach().clone()
    if getattr(module, "bias", True):
        b_ih = getattr(module, f"bias_ih{suffix}").detach().clone()
        b_hh = getattr(module, f"bias_hh{suffix}").detach().clone()
    else:
        b_ih = b_hh = torch.zeros(w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
    return w_ih, w_hh, b_ih, b_hh


def layer_params(name, w_ih, w_hh, b_ih, b_hh):
    """One layer's torch weights as the params of the gradlab cell `name`."""
    if name.startswith("rnn_"):
        return {"W": w_hh, "U": w_ih, "b": b_ih + b_hh}
    gates = GATES[name]
    rows = dict(zip(gates, zip(*(t.chunk(len(gates), 0) for t in (w_hh, w_ih, b_ih, b_hh)))))
    params = {}
    for g, (w, u, bi, bh) in rows.items():
        if name == "lstm":
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_{g}": bi + bh})
        else:
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_i{g}": bi, f"b_h{g}": bh})
    return {p: params[p] for p in cell(name).param_names}


def _direction(module, direction):
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
    if bidirectional and module.num_layers > 1:
        raise GradlabError(f"bidirectional {type(module).__name__} with num_layers="
                           f"{module.num_layers} is refused: layer 2 reads both directions "
                           "of layer 1, so neither direction is a recurrence in its own state "
                           "(use num_layers=1, or one module per layer)")
    return "_reverse" if direction == "backward" else ""


def from_torch(module, direction=None):
    """(Cell, params) computing exactly what `module` computes, every layer: a stacked cell
    (gradlab.symbolic.stack) for num_layers > 1. `direction` ("forward" / "backward") is
    required for a bidirectional module (num_layers = 1 only) and picks its half; the
    backward half is analysed with reverse=True."""
    name = _kind(module)
    if not hasattr(module, "num_layers"):          # a cell module: nn.LSTMCell, ...
        if direction not in (None, "forward"):
            raise GradlabError(f"{type(module).__name__} has one direction; direction="
                               f"{direction!r} does not apply")
        c = cell(name)
        return c, {p: t.contiguous() for p, t in layer_params(name, *_weights(module)).items()}
    rev = _direction(module, direction)
    layers = module.num_layers
    per_layer = [layer_params(name, *_weights(module, f"_l{k}{rev}")) for k in range(layers)]
    if layers == 1:
        return cell(name), {p: t.contiguous() for p, t in per_layer[0].items()}
    from .symbolic.stack import layer_name, stack
    c = stack(cell(name), layers)
    params = {layer_name(p, k + 1): t.contiguous()
              for k, layer in enumerate(per_layer) for p, t in layer.items()}
    return c, {p: params[p] for p in c.param_names}


def to_torch(c, params):
    """The torch cell module (nn.RNNCell, nn.LSTMCell or nn.GRUCell) that computes what the
    gradlab cell `c` computes with `params`, on their dtype and device: from_torch's inverse.
    The LSTM's and RNN's single bias b goes to bias_ih (bias_hh is zero)."""
    import torch

    c = cell(c)
    if c.name not in MODULES:
        raise GradlabError(f"cell '{c.name}' has no torch module; torch ships: "
                           f"{', '.join(MODULES)}")
    cls, options = MODULES[c.name]
    first = params[c.param_names[0]]
    n, m = first.shape[0], params["U" if c.name.startswith("rnn_") else "U_" + GATES[c.name][0]].shape[1]
    module = getattr(torch.nn, cls)(m, n, **options).to(dtype=first.dtype, device=first.device)
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
