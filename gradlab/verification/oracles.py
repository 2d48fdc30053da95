"""Independent oracles: one plain PyTorch step per cell, written by hand from the papers.

``gradlab verify`` and the tests compare the symbolically derived Jacobians against
``torch.func.jacrev`` of these functions, so nothing here is derived from the SymPy
declarations and no Jacobian is written here.

Each ``ORACLES[name]`` is ``step(params, state, x) -> new_state``: ``params`` maps the
names of derivations/conventions.md to tensors (``W_*``/``V``/``R_*`` (n, n), ``U_*`` (n, m),
``b_*``/``p_*`` (n,)), ``state`` is a tuple of (B, n) tensors in ``STATES[name]`` order and
``x`` is (B, m). A batched ``W h`` is ``h @ W.T``. ``PARAMS`` and ``STATES`` give the
parameter and state-part names in the order of derivations/conventions.md.
"""

from functools import partial

import torch

sigmoid = torch.sigmoid
tanh = torch.tanh


def _lin(h, W):
    """W h for a batch of row vectors h (B, k) and a matrix W (n, k)."""
    return h @ W.T


# --- Vanilla ---------------------------------------------------------------------------

def rnn_tanh(params, state, x):
    """Elman RNN: h' = tanh(W h + U x + b)."""
    (h,) = state
    P = params
    return (tanh(_lin(h, P["W"]) + _lin(x, P["U"]) + P["b"]),)


def rnn_relu(params, state, x):
    """Elman RNN with relu: h' = relu(W h + U x + b)."""
    (h,) = state
    P = params
    return (torch.relu(_lin(h, P["W"]) + _lin(x, P["U"]) + P["b"]),)


# --- R2RT "Written Memories" (2016) ------------------------------------------------------

def _r2rt_update(P, s, read, x):
    """Gates and candidate of R2RT's prototype, reading ``read`` (s or tanh(s)); returns f*s + i*s~."""
    i = sigmoid(_lin(read, P["W_i"]) + _lin(x, P["U_i"]) + P["b_i"])
    o = sigmoid(_lin(read, P["W_o"]) + _lin(x, P["U_o"]) + P["b_o"])
    f = sigmoid(_lin(read, P["W_f"]) + _lin(x, P["U_f"]) + P["b_f"])
    s_tilde = tanh(_lin(o * read, P["W"]) + _lin(x, P["U"]) + P["b"])
    return f * s + i * s_tilde


def prototype_lstm(params, state, x):
    """R2RT prototype LSTM: s' = f*s + i*tanh(W (o*s) + U x + b)."""
    (s,) = state
    return (_r2rt_update(params, s, s, x),)


def normalized_lstm(params, state, x):
    """R2RT normalized prototype: r as prototype, s' = r / sqrt(var(r) + 1), per-sample population variance."""
    (s,) = state
    r = _r2rt_update(params, s, s, x)
    mean = r.mean(dim=-1, keepdim=True)
    var = ((r - mean) ** 2).mean(dim=-1, keepdim=True)
    return (r / torch.sqrt(var + 1.0),)


def pseudo_lstm(params, state, x):
    """R2RT pseudo LSTM: gates and candidate read tanh(s); s' = f*s + i*s~ (output tanh(s') is not state)."""
    (s,) = state
    return (_r2rt_update(params, s, tanh(s), x),)


def gru(params, state, x):
    """GRU, Cho et al. 2014 / R2RT form: h' = z*h + (1-z)*tanh(W (r*h) + U x + b)."""
    (h,) = state
    P = params
    r = sigmoid(_lin(h, P["W_r"]) + _lin(x, P["U_r"]) + P["b_r"])
    z = sigmoid(_lin(h, P["W_z"]) + _lin(x, P["U_z"]) + P["b_z"])
    h_tilde = tanh(_lin(r * h, P["W"]) + _lin(x, P["U"]) + P["b"])
    return (z * h + (1 - z) * h_tilde,)


def gru_torch(params, state, x):
    """PyTorch's nn.GRUCell (cuDNN form): b_hn sits inside r * (W_n h + b_hn)."""
    (h,) = state
    P = params
    r = sigmoid(_lin(x, P["U_r"]) + P["b_ir"] + _lin(h, P["W_r"]) + P["b_hr"])
    z = sigmoid(_lin(x, P["U_z"]) + P["b_iz"] + _lin(h, P["W_z"]) + P["b_hz"])
    n = tanh(_lin(x, P["U_n"]) + P["b_in"] + r * (_lin(h, P["W_n"]) + P["b_hn"]))
    return ((1 - z) * n + z * h,)


# --- LSTM family -----------------------------------------------------------------------

def lstm(params, state, x):
    """LSTM as nn.LSTMCell (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000)."""
    h, c = state
    P = params
    i = sigmoid(_lin(h, P["W_i"]) + _lin(x, P["U_i"]) + P["b_i"])
    f = sigmoid(_lin(h, P["W_f"]) + _lin(x, P["U_f"]) + P["b_f"])
    o = sigmoid(_lin(h, P["W_o"]) + _lin(x, P["U_o"]) + P["b_o"])
    g = tanh(_lin(h, P["W_g"]) + _lin(x, P["U_g"]) + P["b_g"])
    c_new = f * c + i * g
    h_new = o * tanh(c_new)
    return (h_new, c_new)


def _peephole(params, state, x, *, input_gate=True, forget_gate=True, output_gate=True,
              input_activation=True, output_activation=True, peepholes=True, coupled=False,
              gate_recurrence=False):
    """Peephole LSTM (Gers & Schmidhuber 2000; Greff et al. 2015's "vanilla") with the Greff switches.

    i and f peep at the old c, o peeps at the new c'. With ``gate_recurrence`` the state is
    (h, c, i_prev, f_prev, o_prev), each gate adds R_ia i_prev + R_fa f_prev + R_oa o_prev
    (R_<from><to>) and the new gate activations are returned as state.
    """
    P = params
    if gate_recurrence:
        h, c, i_prev, f_prev, o_prev = state
    else:
        h, c = state

    def recur(a):
        # gate recurrence into gate a: R_ia i_prev + R_fa f_prev + R_oa o_prev
        if not gate_recurrence:
            return 0.0
        return (_lin(i_prev, P["R_i" + a]) + _lin(f_prev, P["R_f" + a])
                + _lin(o_prev, P["R_o" + a]))

    z_pre = _lin(h, P["W_z"]) + _lin(x, P["U_z"]) + P["b_z"]
    z = tanh(z_pre) if input_activation else z_pre

    if input_gate:
        i_pre = _lin(h, P["W_i"]) + _lin(x, P["U_i"]) + P["b_i"] + recur("i")
        if peepholes:
            i_pre = i_pre + P["p_i"] * c
        i = sigmoid(i_pre)
    else:
        i = torch.ones_like(c)

    if coupled:
        f = 1 - i
    elif forget_gate:
        f_pre = _lin(h, P["W_f"]) + _lin(x, P["U_f"]) + P["b_f"] + recur("f")
        if peepholes:
            f_pre = f_pre + P["p_f"] * c
        f = sigmoid(f_pre)
    else:
        f = torch.ones_like(c)

    c_new = z * i + f * c

    if output_gate:
        o_pre = _lin(h, P["W_o"]) + _lin(x, P["U_o"]) + P["b_o"] + recur("o")
        if peepholes:
            o_pre = o_pre + P["p_o"] * c_new
        o = sigmoid(o_pre)
    else:
        o = torch.ones_like(c)

    h_new = (tanh(c_new) if output_activation else c_new) * o

    if gate_recurrence:
        return (h_new, c_new, i, f, o)
    return (h_new, c_new)


peephole_lstm = partial(_peephole)
lstm_nig = partial(_peephole, input_gate=False)
lstm_nfg = partial(_peephole, forget_gate=False)
lstm_nog = partial(_peephole, output_gate=False)
lstm_niaf = partial(_peephole, input_activation=False)
lstm_noaf = partial(_peephole, output_activation=False)
lstm_np = partial(_peephole, peepholes=False)
lstm_cifg = partial(_peephole, coupled=True)
lstm_fgr = partial(_peephole, gate_recurrence=True)


# --- Later gated cells -----------------------------------------------------------------

def minimal_rnn(params, state, x):
    """MinimalRNN (Chen, Pennington & Schoenholz 2018): h' = u*h + (1-u)*z."""
    (h,) = state
    P = params
    z = tanh(_lin(x, P["U"]) + P["b_z"])
    u = sigmoid(_lin(h, P["W"]) + _lin(z, P["V"]) + P["b_u"])
    return (u * h + (1 - u) * z,)


def mgu(params, state, x):
    """Minimal gated unit (Zhou et al. 2016): h' = (1-f)*h + f*tanh(W (f*h) + U x + b)."""
    (h,) = state
    P = params
    f = sigmoid(_lin(h, P["W_f"]) + _lin(x, P["U_f"]) + P["b_f"])
    h_tilde = tanh(_lin(f * h, P["W"]) + _lin(x, P["U"]) + P["b"])
    return ((1 - f) * h + f * h_tilde,)


# --- Registry --------------------------------------------------------------------------

ORACLES = {
    "rnn_tanh": rnn_tanh,
    "rnn_relu": rnn_relu,
    "prototype_lstm": prototype_lstm,
    "normalized_lstm": normalized_lstm,
    "pseudo_lstm": pseudo_lstm,
    "gru": gru,
    "gru_torch": gru_torch,
    "lstm": lstm,
    "peephole_lstm": peephole_lstm,
    "lstm_nig": lstm_nig,
    "lstm_nfg": lstm_nfg,
    "lstm_nog": lstm_nog,
    "lstm_niaf": lstm_niaf,
    "lstm_noaf": lstm_noaf,
    "lstm_np": lstm_np,
    "lstm_cifg": lstm_cifg,
    "lstm_fgr": lstm_fgr,
    "minimal_rnn": minimal_rnn,
    "mgu": mgu,
}

_R2RT = ("W_i", "U_i", "b_i", "W_o", "U_o", "b_o", "W_f", "U_f", "b_f", "W", "U", "b")
_PEEPHOLE = ("W_z", "W_i", "W_f", "W_o", "U_z", "U_i", "U_f", "U_o",
             "b_z", "b_i", "b_f", "b_o", "p_i", "p_f", "p_o")


def _without(*removed):
    return tuple(name for name in _PEEPHOLE if name not in removed)


PARAMS = {
    "rnn_tanh": ("W", "U", "b"),
    "rnn_relu": ("W", "U", "b"),
    "prototype_lstm": _R2RT,
    "normalized_lstm": _R2RT,
    "pseudo_lstm": _R2RT,
    "gru": ("W_r", "U_r", "b_r", "W_z", "U_z", "b_z", "W", "U", "b"),
    "gru_torch": ("W_r", "W_z", "W_n", "U_r", "U_z", "U_n",
                  "b_ir", "b_iz", "b_in", "b_hr", "b_hz", "b_hn"),
    "lstm": ("W_i", "W_f", "W_g", "W_o", "U_i", "U_f", "U_g", "U_o",
             "b_i", "b_f", "b_g", "b_o"),
    "peephole_lstm": _PEEPHOLE,
    "lstm_nig": _without("W_i", "U_i", "b_i", "p_i"),
    "lstm_nfg": _without("W_f", "U_f", "b_f", "p_f"),
    "lstm_nog": _without("W_o", "U_o", "b_o", "p_o"),
    "lstm_niaf": _PEEPHOLE,
    "lstm_noaf": _PEEPHOLE,
    "lstm_np": _without("p_i", "p_f", "p_o"),
    "lstm_cifg": _without("W_f", "U_f", "b_f", "p_f"),
    "lstm_fgr": _PEEPHOLE + ("R_ii", "R_fi", "R_oi", "R_if", "R_ff", "R_of",
                             "R_io", "R_fo", "R_oo"),
    "minimal_rnn": ("U", "b_z", "W", "V", "b_u"),
    "mgu": ("W_f", "U_f", "b_f", "W", "U", "b"),
}

STATES = {
    name: ("h", "c") for name in
    ("lstm", "peephole_lstm", "lstm_nig", "lstm_nfg", "lstm_nog", "lstm_niaf",
     "lstm_noaf", "lstm_np", "lstm_cifg")
}
STATES.update({name: ("h",) for name in
               ("rnn_tanh", "rnn_relu", "gru", "gru_torch", "minimal_rnn", "mgu")})
STATES.update({name: ("s",) for name in ("prototype_lstm", "normalized_lstm", "pseudo_lstm")})
STATES["lstm_fgr"] = ("h", "c", "i", "f", "o")
STATES = {name: STATES[name] for name in ORACLES}  # catalogue order
