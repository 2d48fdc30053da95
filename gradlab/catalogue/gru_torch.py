"""PyTorch's GRU (the cuDNN form): the reset gate multiplies W_n h + b_hn."""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, tanh
from ..registry import register


@register
@declare(state="h", params="W_r W_z W_n U_r U_z U_n b_ir b_iz b_in b_hr b_hz b_hn",
         gate_bias="b_iz",
         source="torch nn.GRU / nn.GRUCell (cuDNN form: r after the matrix, a variant of "
                "Cho et al. 2014)")
def gru_torch(s):
    """torch's GRU: r gates the whole recurrent term W_n h + b_hn, not h itself."""
    r = s.let("r", sigmoid(s.U_r @ s.x + s.b_ir + s.W_r @ s.h + s.b_hr))
    z = s.let("z", sigmoid(s.U_z @ s.x + s.b_iz + s.W_z @ s.h + s.b_hz))
    candidate = s.let("ntilde", tanh(s.U_n @ s.x + s.b_in + r * (s.W_n @ s.h + s.b_hn)))
    return (1 - z) * candidate + z * s.h
