"""Gated cells after the LSTM and GRU, each with theory to check against."""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, tanh
from ..registry import register


@register
@declare(state="h", params="U b_z W V b_u", gate_bias="b_u",
         source="Chen, Pennington & Schoenholz 2018 (arXiv 1806.05394)")
def minimal_rnn(s):
    """The minimalRNN: the input is mapped once, z = Phi(x), and u blends it into the
    state. The paper leaves the map Phi open; here it is tanh(U x + b_z)."""
    z = s.let("z", tanh(s.U @ s.x + s.b_z))
    u = s.let("u", sigmoid(s.W @ s.h + s.V @ z + s.b_u))
    return u * s.h + (1 - u) * z


@register
@declare(state="h", params="W_f U_f b_f W U b", gate_bias="-b_f",
         source="Zhou, Wu, Zhang & Zhou 2016, minimal gated unit")
def mgu(s):
    """The minimal gated unit: one gate f both resets the read and writes the state."""
    f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
    candidate = s.let("htilde", tanh(s.W @ (f * s.h) + s.U @ s.x + s.b))
    return (1 - f) * s.h + f * candidate
