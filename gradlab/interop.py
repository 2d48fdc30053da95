"""`from_torch`: a torch recurrent module as a gradlab cell with its weights, copied exactly.

    nn.RNN / nn.RNNCell (tanh, relu) -> rnn_tanh / rnn_relu   W = weight_hh, U = weight_ih,
                                                              b = bias_ih + bias_hh
    nn.LSTM / nn.LSTMCell             -> lstm       gate rows i, f, g, o; b_a = sum of biases
    nn.GRU / nn.GRUCell               -> gru_torch  gate rows r, z, n; both biases kept

A stacked or bidirectional module gives its layer 0, forward direction. `to_torch` is the
inverse: the torch cell module (nn.RNNCell, nn.LSTMCell, nn.GRUCell) computing exactly
what a gradlab cell computes with given parameters.
"""

from .errors import GradlabError
from .registry import cell

# torch stacks the gates' rows in this order in weight_ih, weight_hh, bias_ih, bias_hh
GATES = {"lstm": ("i", "f", "g", "o"), "gru_torch": ("r", "z", "n")}
# the gradlab cells that torch ships, and the torch cell module computing each
MODULES = {"rnn_tanh": ("RNNCell", {"nonlinearity": "tanh"}),
           "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
           "lstm": ("LSTMCell", {}), "gru_torch": ("GRUCell", {})}


def _kind(module):
    import torch.nn as nn

    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return f"rnn_{module.nonlinearity}"
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        if getattr(module, "proj_size", 0):
            raise GradlabError("nn.LSTM with proj_size > 0 has no gradlab cell; use proj_size=0")
        return "lstm"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "gru_torch"
    raise GradlabError(f"from_torch takes nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU or "
                       f"nn.GRUCell, got {type(module).__name__}")


def _weights(module):
    """(weight_ih, weight_hh, bias_ih, bias_hh) of layer 0; zero biases where bias=False."""
    import torch

    suffix = "_l0" if hasattr(module, "weight_ih_l0") else ""
    w_ih = getattr(module, f"weight_ih{suffix}").detach().clone()
    w_hh = getattr(module, f"weight_hh{suffix}").detach().clone()
    if getattr(module, "bias", True):
        b_ih = getattr(module, f"bias_ih{suffix}").detach().clone()
        b_hh = getattr(module, f"bias_hh{suffix}").detach().clone()
    else:
        b_ih = b_hh = torch.zeros(w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
    return w_ih, w_hh, b_ih, b_hh


def from_torch(module):
    """(Cell, params) computing exactly what `module` computes (layer 0, forward)."""
    name = _kind(module)
    w_ih, w_hh, b_ih, b_hh = _weights(module)
    if name.startswith("rnn_"):
        return cell(name), {"W": w_hh, "U": w_ih, "b": b_ih + b_hh}
    gates = GATES[name]
    rows = dict(zip(gates, zip(*(t.chunk(len(gates), 0) for t in (w_hh, w_ih, b_ih, b_hh)))))
    params = {}
    for g, (w, u, bi, bh) in rows.items():
        if name == "lstm":
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_{g}": bi + bh})
        else:
            params.update({f"W_{g}": w, f"U_{g}": u, f"b_i{g}": bi, f"b_h{g}": bh})
    c = cell(name)
    return c, {p: params[p].contiguous() for p in c.param_names}


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
