"""Values with no trajectory behind them, refused on every path into a walk: a torch
module measured by jacrev, a multi-layer bidirectional one, and biases that make a nan
gate. Each once came back as a measurement whose diagnosis ("state overflowed", "input
not finite") named something that never happened."""

import math

import pytest
import torch

import gradlab
from gradlab.errors import GradlabError


class Step(torch.nn.Module):
    """One recurrent step h' = tanh(A [x, h]): a module gradlab measures by jacrev."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 5)

    def forward(self, x, h):
        return torch.tanh(self.a(torch.cat([x, h], -1)))


def xs(dtype=torch.float64):
    return torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_modules_state0_without_a_value_is_refused(value):
    """The cell path refused a nan or inf state0; the jacrev path measured it and said
    "state overflowed"."""
    torch.manual_seed(0)
    state0 = torch.full((2, 5), value, dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"^state0 holds nan or inf: there is no trajectory"):
        gradlab.gradient_flow(Step().double(), xs(), state0=state0)
    with pytest.raises(GradlabError, match=r"^state0 holds nan or inf"):
        gradlab.lyapunov(Step().double(), xs(), 1, state0=state0)


def test_a_cast_that_overflows_is_refused_on_the_module_paths():
    """A finite float64 1e39 given to a float32 module: refused naming it, as on the cell
    path, not measured as an infinite input or an overflowed state."""
    torch.manual_seed(0)
    big = xs()
    big[2, 0, 1] = 1e39
    with pytest.raises(GradlabError, match=r"^xs holds 1e\+39, beyond the range of float32"):
        gradlab.gradient_flow(Step(), big, state0=torch.zeros(2, 5))
    with pytest.raises(GradlabError, match=r"^state0 holds 1e\+39, beyond the range of float32"):
        gradlab.gradient_flow(Step(), xs(), state0=torch.full((2, 5), 1e39, dtype=torch.float64))
    two = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(GradlabError, match=r"^xs holds 1e\+39, beyond the range of float32"):
        gradlab.gradient_flow(two, big)


def test_opposite_infinite_biases_are_named_as_torch_holds_them():
    """bias_ih = -inf and bias_hh = +inf in one row make the cell's summed bias nan: named
    by the module's own tensors, not as 'b_f' of a cell the user never wrote."""
    module = torch.nn.LSTM(3, 4).double()
    with torch.no_grad():
        module.bias_hh_l0[4] = math.inf
        module.bias_ih_l0[4] = -math.inf
    message = r"^LSTM.bias_ih_l0\[4\] \+ bias_hh_l0\[4\] is -inf \+ inf, which is nan"
    with pytest.raises(GradlabError, match=message):
        gradlab.from_torch(module)
    with pytest.raises(GradlabError, match=message):
        gradlab.gradient_flow(module, xs())


def test_a_parameter_dict_is_told_how_to_become_a_dict():
    params = torch.nn.ParameterDict({"W_i": torch.nn.Parameter(torch.zeros(2, 2))})
    with pytest.raises(GradlabError, match=r"got ParameterDict \(dict\(params\) makes"):
        gradlab.gradient_flow("lstm", params, torch.zeros(3, 1, 2))
