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


@pytest.mark.parametrize("module, arch, says", [
    (nn.LSTM(3, 4, 2, proj_size=2), "lstm:hidden=4,inputs=3,layers=2",
     "lstm:layers=2,hidden=4,inputs=3,proj=2"),
    (nn.LSTM(3, 4, 2, bidirectional=True), "lstm:hidden=4,inputs=3,layers=2",
     "lstm:layers=2,hidden=4,inputs=3,bidirectional=1"),
    (nn.LSTM(3, 4, 1), "lstm:hidden=4,inputs=3,layers=2", "lstm:layers=1,hidden=4,inputs=3"),
    (nn.GRU(3, 4, 2), "lstm:hidden=4,inputs=3,layers=2", "gru:layers=2,hidden=4,inputs=3"),
    (nn.RNN(5, 6, 3, bias=False), "rnn_relu:hidden=4,inputs=3",
     "rnn_relu:layers=3,hidden=6,inputs=5,bias=0"),
    (nn.GRUCell(3, 4), "lstm:hidden=4,inputs=3,layers=2", "gru:layers=1,hidden=4,inputs=3"),
    (nn.LSTM(3, 4, 2), "lstm:hidden=8,inputs=3,layers=2,prefix=rnn.",
     "lstm:layers=2,hidden=4,inputs=3,prefix=rnn."),
])
def test_a_checkpoint_of_another_architecture_names_the_arch_it_has(tmp_path, module, arch,
                                                                     says):
    # was: only the odd key and the keys --arch expects, not the --arch that reads the file
    from gradlab.checkpoint import load_model, parse_arch
    state = module.state_dict()
    if "prefix=" in arch:
        state = {f"rnn.{k}": v for k, v in state.items()}
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(gradlab.GradlabError) as err:
        load_model(tmp_path / "m.pt", parse_arch(arch))
    assert str(err.value).endswith(f"; the file's names and shapes are those of --arch {says}")
    assert "\n" not in str(err.value)
    load_model(tmp_path / "m.pt", parse_arch(says))          # and that one reads it


def test_no_arch_is_offered_where_none_fits(tmp_path):
    state = nn.LSTM(3, 4).state_dict()
    state["weight_ih_l0"] = state["weight_ih_l0"].t()        # transposed: no module's
    torch.save(state, tmp_path / "m.pt")
    from gradlab.checkpoint import load_model, parse_arch
    with pytest.raises(gradlab.GradlabError) as err:
        load_model(tmp_path / "m.pt", parse_arch("lstm:hidden=4,inputs=3"))
    assert "has shape (3, 16), expected (16, 3)" in str(err.value)
    assert "--arch" not in str(err.value)


@pytest.mark.parametrize("name, value", [("hidden_size", "4"), ("num_layers", "1"),
                                         ("input_size", 3.0), ("proj_size", None)])
def test_a_size_set_to_no_int_after_building_is_named(name, value):
    # was: TypeError: '<' not supported between instances of 'str' and 'int' (hidden_size),
    # 'str' object cannot be interpreted as an integer (num_layers)
    module = nn.LSTM(3, 4).double()
    setattr(module, name, value)
    with pytest.raises(gradlab.GradlabError, match=rf"LSTM\.{name} is {value!r} "
                       rf"\({type(value).__name__}\); torch builds it an int"):
        gradlab.gradient_flow(module, _xs())


class _OnMeta(nn.Module):
    def forward(self, w):
        return torch.zeros(w.shape, dtype=w.dtype, device="meta")


def test_a_parametrization_computing_the_weight_on_the_meta_device_is_refused():
    # was: RuntimeError: Tensor.item() cannot be called on meta tensors (refuse_updating)
    from torch.nn.utils import parametrize
    module = nn.LSTM(3, 4).double()
    parametrize.register_parametrization(module, "weight_hh_l0", _OnMeta(), unsafe=True)
    with pytest.raises(gradlab.GradlabError, match=r"weight_hh_l0 is parametrized by _OnMeta, "
                       r"which computes it on the meta device, which holds no numbers"):
        gradlab.gradient_flow(module, _xs())
