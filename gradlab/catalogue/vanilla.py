"""Vanilla recurrent cells: a squashing function of an affine map (torch nn.RNN)."""

from ..symbolic.cell import declare
from ..symbolic.language import relu, tanh
from ..registry import register


@register
@declare(state="h", params="W U b", source="Elman 1990; torch nn.RNN (nonlinearity='tanh')")
def rnn_tanh(s):
    """The Elman RNN: every step squashes and multiplies by W, so gradients decay or explode."""
    return tanh(s.W @ s.h + s.U @ s.x + s.b)


@register
@declare(state="h", params="W U b", source="torch nn.RNN (nonlinearity='relu')")
def rnn_relu(s):
    """The Elman RNN with relu; relu'(0) = 0, as in torch."""
    return relu(s.W @ s.h + s.U @ s.x + s.b)
