"""Real torch models at their edges (session 35's hostile probe of the real-model path):
each test failed before its fix."""

import pytest
import torch
from torch import nn

import gradlab
from gradlab.flow.module import TorchStep


def _xs(T=4, B=2, m=3):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def test_torch_step_backward_of_a_one_direction_module_is_refused_at_once():
    # was: "TorchStep(x, state) failed at step 1: IndexError: index 1 is out of bounds"
    with pytest.raises(gradlab.GradlabError, match=r"direction='backward' needs a "
                       r"bidirectional module; this GRU has one direction"):
        TorchStep(nn.GRU(3, 4), "backward")


@pytest.mark.parametrize("module, state0, says", [
    (nn.GRU(3, 4, 2), torch.zeros(2, 4), r"takes its state as \(B, 2, 4\), batch first"),
    (nn.GRU(3, 4, 2), torch.zeros(2, 4, 2), r"not torch's \(layers, B, size\)\); got \(2, 4, 2\)"),
    (nn.LSTM(3, 4, proj_size=2), (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)),
     r"a tuple \(h, c\) shaped \(B, 1, 2\) and \(B, 1, 4\)"),
    (nn.LSTM(3, 4), torch.zeros(2, 1, 4), r"a tuple \(h, c\)"),
])
def test_torch_step_names_the_state_it_takes(module, state0, says):
    # was torch's own words about hx ("For batched 3-D input, hx should also be 3-D")
    module = module.double()
    state0 = tuple(s.double() for s in state0) if isinstance(state0, tuple) else state0.double()
    with pytest.raises(gradlab.GradlabError, match=says) as err:
        gradlab.gradient_flow(TorchStep(module), _xs(), state0=state0)
    assert "\n" not in str(err.value)


def test_torch_step_takes_its_own_state_form():
    module = nn.LSTM(3, 4, 2, proj_size=2).double()
    s = (torch.zeros(2, 2, 2, dtype=torch.float64), torch.zeros(2, 2, 4, dtype=torch.float64))
    a = gradlab.gradient_flow(TorchStep(module), _xs(), state0=s).log_norm("frobenius")
    b = gradlab.gradient_flow(module, _xs()).log_norm("frobenius")
    assert abs(a - b).max() < 1e-12
