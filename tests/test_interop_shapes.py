"""Torch modules whose weights were replaced by hand, objects that are not modules, and
parametrizations that change as they are read: refused in one line, never measured.

Found by probing from_torch: a (3, 4) weight_hr under proj_size 2 was padded into W_r and
measured (torch itself cannot run that module), a too-narrow weight_ih of an upper or a
reverse layer was padded with zeros, a too-wide one crashed in the padding, a string
raised AttributeError, and spectral_norm in training mode moved the module's u on every
read, so two identical calls disagreed."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

import gradlab
from gradlab.errors import GradlabError
from gradlab.flow.module import TorchStep

F64 = torch.float64


def xs(m=3):
    return torch.randn(5, 2, m, generator=torch.Generator().manual_seed(0), dtype=F64)


def replaced(module, name, *shape):
    setattr(module, name, nn.Parameter(torch.randn(*shape, dtype=F64)))
    return module


@pytest.mark.parametrize("module,name,shape,says", [
    (nn.LSTM(3, 4, proj_size=2), "weight_hr_l0", (3, 4), r"\(2, 4\).*proj_size 2 x hidden_size 4"),
    (nn.LSTM(3, 4, proj_size=2), "weight_hr_l0", (2, 5), r"\(2, 4\)"),
    (nn.LSTM(3, 4, num_layers=2, bidirectional=True), "weight_ih_l1", (16, 5),
     r"\(16, 8\).*2 x hidden_size 4 columns"),
    (nn.LSTM(3, 4, num_layers=2), "weight_ih_l1", (16, 7), r"\(16, 4\).*hidden_size 4 columns"),
    (nn.LSTM(3, 4, num_layers=2, proj_size=2), "weight_ih_l1", (16, 4),
     r"\(16, 2\).*proj_size 2 columns"),
    (nn.GRU(3, 4, bidirectional=True), "weight_ih_l0_reverse", (12, 2),
     r"\(12, 3\).*input_size 3 columns"),
    (nn.GRU(3, 4), "weight_ih_l0", (12, 7), r"\(12, 3\)"),
    (nn.LSTMCell(3, 4), "weight_ih", (16, 2), r"\(16, 3\)"),
])
def test_a_misshaped_weight_is_named(module, name, shape, says):
    module = replaced(module.double(), name, *shape)
    direction = "backward" if "reverse" in name else "forward" if module.__dict__.get(
        "bidirectional") else None
    with pytest.raises(GradlabError, match=rf"\.{name} has shape \({shape[0]}, {shape[1]}\), "
                                           rf"not {says}"):
        gradlab.from_torch(module, direction=direction)


def test_well_shaped_stacks_still_read():
    for module in (nn.LSTM(3, 4, 2, proj_size=2, bidirectional=True), nn.GRU(3, 4, 3),
                   nn.RNN(3, 4, 2, bidirectional=True)):
        for direction in ("forward", "backward") if module.bidirectional else (None,):
            gradlab.from_torch(module.double(), direction=direction)


@pytest.mark.parametrize("thing,got", [("lstm", "got str$"), (None, "got NoneType$"),
                                       (nn.LSTM, r"got the class LSTM \(a module is built")])
def test_not_a_module_is_named(thing, got):
    with pytest.raises(GradlabError, match=r"from_torch takes nn.RNN.*" + got):
        gradlab.from_torch(thing)
    with pytest.raises(GradlabError, match=got):
        gradlab.interop.state_sizes(thing)


def test_spectral_norm_in_training_mode_is_refused_and_left_as_it_was():
    module = parametrizations.spectral_norm(nn.LSTM(3, 4).double(), "weight_hh_l0")
    u = module.parametrizations.weight_hh_l0[0]._u.clone()
    for run in (lambda: gradlab.gradient_flow(module, xs()),
                lambda: gradlab.from_torch(module),
                lambda: gradlab.gradient_flow(TorchStep(module), xs())):
        with pytest.raises(GradlabError, match=r"weight_hh_l0 is parametrized by SpectralNorm"
                                               r".*call module.eval\(\) first"):
            run()
    assert torch.equal(u, module.parametrizations.weight_hh_l0[0]._u)
    module.eval()                       # evaluating: the weight stays put, runs agree
    a = gradlab.gradient_flow(module, xs()).log_norm()
    b = gradlab.gradient_flow(module, xs()).log_norm()
    assert (a == b).all()


def test_parametrizations_that_do_not_move_are_read():
    for module in (parametrizations.orthogonal(nn.LSTM(3, 4).double(), "weight_hh_l0"),
                   parametrizations.weight_norm(nn.GRU(3, 4).double(), "weight_hh_l0")):
        a = gradlab.gradient_flow(module, xs()).log_norm()
        b = gradlab.gradient_flow(TorchStep(module), xs()).log_norm()
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-10,
                                   atol=1e-12)


def test_torch_step_with_nan_weights_is_refused():
    module = nn.GRU(3, 4).double()
    with torch.no_grad():
        module.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(GradlabError, match="weight_hh_l0 holds nan"):
        gradlab.gradient_flow(TorchStep(module), xs())


def test_to_torch_names_the_odd_parameter_out():
    params = gradlab.cell("lstm").init_params(4, 3, seed=0)
    with pytest.raises(GradlabError, match=r"param 'W_i' of cell 'lstm' has shape \(5, 5\), "
                                           r"expected \(4, 4\)"):
        gradlab.to_torch("lstm", {**params, "W_i": torch.zeros(5, 5, dtype=F64)})
    with pytest.raises(GradlabError, match=r"none of the parameters of cell 'gru_torch'.*"
                                           r"got W_i, W_f"):
        gradlab.to_torch("gru_torch", params)


def test_a_cell_module_of_hidden_size_zero_is_refused_at_once():
    """torch builds nn.GRUCell(3, 0) (nn.GRU refuses it); from_torch returned a cell and
    (0, 0) weights, refused only later by whatever measured them."""
    with pytest.raises(GradlabError, match=r"GRUCell has hidden_size 0; gradlab measures "
                                           r"a hidden size >= 1"):
        gradlab.from_torch(torch.nn.GRUCell(3, 0))
