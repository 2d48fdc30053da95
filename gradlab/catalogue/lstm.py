"""The LSTM with a forget gate, as torch.nn.LSTM computes it, and its projected form.

`lstm_proj` is torch's nn.LSTM(proj_size=p): h' = W_hr (o * tanh(c')), h of size p < n.
The declaration language has the sizes n, m and 1 only, so h is declared an n-vector and
W_r an n x n matrix; `gradlab.from_torch` fills W_r with torch's weight_hr (p x n) in its
first p rows and zeros below, and every matrix that reads h (the W_* here, a layer above's
U_*) with zero columns beyond p. Then entries p.. of the new h are zero, no equation reads
entries p.. of h, and the Jacobian on the first p entries of h (with all of c) is torch's
exactly, its other rows and columns zero; padding a matrix with zero rows
and columns adds zero singular values only, so every product's spectral and Frobenius
norms are torch's too. It is not registered: it is the building block `from_torch` uses,
reached as "gradlab.catalogue.lstm:lstm_proj" (`gradlab verify --cells ...` takes that).
"""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, tanh
from ..registry import register


@register
@declare(state="h c", params="W_i W_f W_g W_o U_i U_f U_g U_o b_i b_f b_g b_o", gate_bias="b_f",
         source="Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000; torch nn.LSTM")
def lstm(s):
    """The basic LSTM: a cell c written additively, read through o into the shadow state h.
    This is torch.nn.LSTM's form, not the 1997 paper's: the forget gate f is Gers et al.'s
    (2000; Hochreiter & Schmidhuber's cell had none, f = 1) and both squashings are tanh
    (the 1997 paper's were scaled logistic sigmoids, g = 2 tanh(a/2) and h = tanh(c/2));
    no peepholes (those are peephole_lstm's)."""
    i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    g = s.let("g", tanh(s.W_g @ s.h + s.U_g @ s.x + s.b_g))
    o = s.let("o", sigmoid(s.W_o @ s.h + s.U_o @ s.x + s.b_o))
    c = s.let("c'", f * s.c + i * g)
    return o * tanh(c), c


@declare(state="h c", params="W_i W_f W_g W_o U_i U_f U_g U_o b_i b_f b_g b_o W_r",
         gate_bias="b_f", source="Sak, Senior & Beaufays 2014 (LSTMP); torch nn.LSTM proj_size")
def lstm_proj(s):
    """The LSTM with a projected output: h' = W_r (o * tanh(c')). From torch (proj_size p),
    W_r holds weight_hr in its first p rows (zeros below), so h's entries p.. are zero."""
    i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    g = s.let("g", tanh(s.W_g @ s.h + s.U_g @ s.x + s.b_g))
    o = s.let("o", sigmoid(s.W_o @ s.h + s.U_o @ s.x + s.b_o))
    c = s.let("c'", f * s.c + i * g)
    return s.W_r @ (o * tanh(c)), c
