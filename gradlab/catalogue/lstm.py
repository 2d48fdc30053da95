"""The LSTM with a forget gate, as torch.nn.LSTM computes it."""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, tanh
from ..registry import register


@register
@declare(state="h c", params="W_i W_f W_g W_o U_i U_f U_g U_o b_i b_f b_g b_o", gate_bias="b_f",
         source="Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000; torch nn.LSTM")
def lstm(s):
    """The basic LSTM: a cell c written additively, read through o into the shadow state h."""
    i = s.let("i", sigmoid(s.W_i @ s.h + s.U_i @ s.x + s.b_i))
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    g = s.let("g", tanh(s.W_g @ s.h + s.U_g @ s.x + s.b_g))
    o = s.let("o", sigmoid(s.W_o @ s.h + s.U_o @ s.x + s.b_o))
    c = s.let("c'", f * s.c + i * g)
    return o * tanh(c), c
