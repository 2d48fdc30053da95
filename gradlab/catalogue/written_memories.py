"""The essay's path from RNN to LSTM: R2RT, "Written Memories" (2016).

Gates are selective writes (i), reads (o) and forgets (f, really "keep"). The prototype's
state is unbounded and drifts; the normalized LSTM, the pseudo LSTM and the GRU bound it.
"""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, sqrt, tanh, var
from ..registry import register

GATED = "W_i U_i b_i W_o U_o b_o W_f U_f b_f W U b"
R2RT = 'R2RT, "Written Memories: Understanding, Deriving and Extending the LSTM" (2016)'


def _write(s, read):
    """Gates and candidate from what the cell reads of its state; returns f * s + i * s~."""
    i = s.let("i", sigmoid(s.W_i @ read + s.U_i @ s.x + s.b_i))
    o = s.let("o", sigmoid(s.W_o @ read + s.U_o @ s.x + s.b_o))
    f = s.let("f", sigmoid(s.W_f @ read + s.U_f @ s.x + s.b_f))
    candidate = s.let("stilde", tanh(s.W @ (o * read) + s.U @ s.x + s.b))
    return f * s.s + i * candidate


@register
@declare(state="s", params=GATED, gate_bias="b_f", source=R2RT)
def prototype_lstm(s):
    """Selective write, read and forget on an unbounded state: internal state drift."""
    return _write(s, s.s)


@register
@declare(state="s", params=GATED, gate_bias="b_f", source=R2RT)
def normalized_lstm(s):
    """The prototype with its new state divided by sqrt(var + 1), the variance taken over
    the units of each sample: bounded, with a variance just below 1 once it is large."""
    r = s.let("r", _write(s, s.s))
    return r / sqrt(var(r) + 1)


@register
@declare(state="s", params=GATED, gate_bias="b_f", source=R2RT, output=tanh)
def pseudo_lstm(s):
    """Gates and candidate read tanh(s), a bounded view of the unbounded state. The
    cell's output is that view, phi(s') = tanh(s'); the state and every Jacobian here
    are those of s itself (the recurrence), not of the output."""
    return _write(s, s.let("phi", tanh(s.s)))


@register
@declare(state="h", params="W_r U_r b_r W_z U_z b_z W U b", gate_bias="b_z",
         source="Cho et al. 2014; " + R2RT)
def gru(s):
    """The GRU: forget is 1 - write (z keeps), so the state stays bounded. The reset r
    acts before the matrix, W (r h), as Cho et al. write it; torch's nn.GRU acts after
    it (gru_torch)."""
    r = s.let("r", sigmoid(s.W_r @ s.h + s.U_r @ s.x + s.b_r))
    z = s.let("z", sigmoid(s.W_z @ s.h + s.U_z @ s.x + s.b_z))
    candidate = s.let("htilde", tanh(s.W @ (r * s.h) + s.U @ s.x + s.b))
    return z * s.h + (1 - z) * candidate
