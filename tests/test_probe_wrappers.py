"""Real-world wrappers of torch's recurrent modules (found by a probe of how people hold
their RNNs): a LightningModule-like model holding an nn.LSTM as an attribute, and
TorchStep (the jacrev cross-check) given a torch.compile'd or DataParallel module."""

import numpy as np
import pytest
import torch

import gradlab
from gradlab import GradlabError
from gradlab.flow.module import TorchStep

D = torch.float64


def _xs(T=5, B=2, m=3, seed=0):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(seed), dtype=D)


class Model(torch.nn.Module):
    """A model as Lightning holds it: the recurrent module an attribute, forward(x)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(3, 4).double()
        self.head = torch.nn.Linear(4, 2).double()

    def forward(self, x):
        return self.head(self.rnn(x)[0])


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.GRU(3, 4).double()])

    def forward(self, x):
        return self.layers[0](x)[0]


class Deep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def forward(self, x):
        return self.encoder(x)


def test_a_model_holding_its_rnn_as_an_attribute_says_which_module_to_pass():
    """It was told to pass state0= (and given one, failed calling forward(x, state))."""
    model = Model()
    said = (r"^Model holds an nn.LSTM at module.rnn and its forward does not take a "
            r"recurrent step \(x, state\): pass the recurrent module itself \(module.rnn\)$")
    for call in (lambda m: gradlab.gradient_flow(m, _xs()), lambda m: gradlab.from_torch(m),
                 lambda m: gradlab.lyapunov(m, _xs(), k=2),
                 lambda m: gradlab.gradient_flow(m, _xs(), state0=torch.zeros(2, 4, dtype=D))):
        with pytest.raises(GradlabError, match=said):
            call(model)
    with pytest.raises(GradlabError, match=r"^Deep holds an nn.GRU at "
                                           r"module.encoder.layers\[0\] and .*"
                                           r"\(module.encoder.layers\[0\]\)$"):
        gradlab.gradient_flow(torch.nn.DataParallel(Deep()), _xs())
    assert eval("module.rnn", {"module": model}) is model.rnn       # the way it names


class Stepper(torch.nn.Module):
    """forward(x, hidden=None) could be a step, but gives no state0 of its own."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRUCell(3, 4).double()

    def forward(self, x, hidden=None):
        return self.rnn(x, hidden)


def test_a_step_holding_an_rnn_without_state0_also_names_the_rnn():
    with pytest.raises(GradlabError, match=r"^Stepper gives no initial state: pass state0= .*"
                                           r"; or, to measure the nn.GRUCell it holds, pass "
                                           r"that module itself \(module.rnn\)$"):
        gradlab.gradient_flow(Stepper(), _xs())
    flow = gradlab.gradient_flow(Stepper(), _xs(), state0=torch.zeros(2, 4, dtype=D))
    assert not flow.symbolic                   # a step after all, measured by jacrev


def test_torch_step_measures_a_wrapped_module_as_the_one_inside():
    """gradient_flow takes a DataParallel or torch.compile'd module as the module it
    wraps; TorchStep, its cross-check, refused both ('got DataParallel (a cell module is
    already a step ...)'). (torch.compile's first call imports dynamo, seconds: the same
    unwrap takes its ._orig_mod, as test_module_wrappers checks for gradient_flow.)"""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, proj_size=2, batch_first=True).double()
    want = gradlab.gradient_flow(TorchStep(lstm), _xs()).log_norm()
    for wrapped in (torch.nn.DataParallel(lstm),
                    torch.nn.DataParallel(torch.nn.DataParallel(lstm))):
        got = gradlab.gradient_flow(TorchStep(wrapped), _xs()).log_norm()
        np.testing.assert_array_equal(got, want)
