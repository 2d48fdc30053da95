"""Real torch models at their edges: what a hostile probe of checkpoints, from_torch and
to_torch found."""

import warnings

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.parametrizations import weight_norm

import gradlab
from gradlab import from_torch, gradient_flow
from gradlab.checkpoint import load_model, parse_arch
from gradlab.cli import cli
from gradlab.errors import GradlabError


class WithMask(nn.Module):
    """A whole model: its recurrent module `rnn`, a head, and a causal mask of -inf."""

    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.LSTM(3, 4, num_layers=2), nn.Linear(4, 2)
        self.register_buffer("mask", torch.full((3, 3), float("-inf")).triu(1))


def test_tensors_outside_the_prefix_are_ignored_even_when_not_finite(tmp_path):
    """prefix= ignores the names not under it, but a -inf causal mask beside the module
    refused the whole file ("'mask' holds nan or inf")."""
    torch.manual_seed(0)
    model, path = WithMask(), tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    spec = "lstm:layers=2,hidden=4,inputs=3,prefix=rnn."
    loaded = load_model(path, parse_arch(spec))
    assert all(torch.equal(a, b.double()) for a, b in zip(loaded.state_dict().values(),
                                                          model.rnn.state_dict().values()))
    state = model.state_dict()
    state["rnn.weight_hh_l1"][0, 0] = float("nan")        # under the prefix: still refused
    torch.save(state, path)
    result = CliRunner().invoke(cli, ["report", "--model", str(path), "--arch", spec,
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "'rnn.weight_hh_l1' holds nan or inf" in result.output


def test_direction_inputs_and_state_sizes_take_the_wrappers_from_torch_takes():
    """from_torch(torch.compile(m) or nn.DataParallel(m), direction=...) worked, but the
    inputs that direction reads, direction_inputs(wrapped, xs, ...), and state_sizes
    refused the same module: "from_torch takes nn.RNN, ..., got DataParallel" (both
    wrappers go through one unwrap; DataParallel here, as compiling costs seconds)."""
    from gradlab.bidirectional import direction_inputs
    from gradlab.interop import state_sizes
    torch.manual_seed(0)
    module = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    wrapped = nn.DataParallel(module)
    assert torch.equal(direction_inputs(wrapped, xs, "backward"),
                       direction_inputs(module, xs, "backward"))
    assert state_sizes(wrapped) == state_sizes(module) == {"h1": 2, "c1": 4, "h2": 2, "c2": 4}


def test_a_parametrization_computing_nan_is_named_as_nan_not_as_random():
    """weight_norm with a zero row of v computes 0/0 = nan; as nan != nan, the weight read
    twice differed and it was refused as "gives another weight each time it is read
    (random?)", for the module and the jacrev path alike."""
    module = weight_norm(nn.GRU(3, 4).double(), "weight_hh_l0")
    with torch.no_grad():
        module.parametrizations.weight_hh_l0.original1[2].zero_()
    needle = r"weight_hh_l0 is parametrized by WeightNorm, which computes nan .*\(at \[2, 0\]\)"
    with pytest.raises(GradlabError, match=needle):
        from_torch(module)

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = weight_norm(nn.RNNCell(3, 4).double(), "weight_hh")

        def forward(self, x, h):
            return self.cell(x, h)

    step = Step()
    with torch.no_grad():
        step.cell.parametrizations.weight_hh.original1[1].zero_()
    with pytest.raises(GradlabError, match="computes nan from its originals"):
        gradient_flow(step, torch.randn(4, 2, 3, dtype=torch.float64),
                      state0=torch.zeros(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("hook, needle", [
    (lambda m: torch.nn.utils.spectral_norm(m, "weight_hh_l0"),
     "'weight_hh_l0_orig' is not in .* \\(saved with torch.nn.utils.spectral_norm: "
     "remove_spectral_norm\\(module, name\\) before state_dict\\(\\)\\)$"),
    (lambda m: torch.nn.utils.weight_norm(m, "weight_hh_l0"),
     "'weight_hh_l0_g' is not in .*remove_weight_norm\\(module, name\\) before"),
    (lambda m: prune.l1_unstructured(m, "weight_hh_l0", 0.5),
     "'weight_hh_l0_orig' is not in .*saved pruned: .*prune.remove\\(module, name\\)")])
def test_a_checkpoint_saved_with_a_weight_hook_is_told_which_hook_to_remove(tmp_path, hook,
                                                                            needle):
    """The old spectral_norm saves weight_orig, _u and _v: it was told "saved pruned:
    prune.remove(module, name)", which cannot undo it; weight_norm's _g and _v had no hint."""
    module = nn.GRU(3, 4)
    with warnings.catch_warnings():                  # (torch deprecates the old hooks)
        warnings.simplefilter("ignore")
        hook(module)
    torch.save(module.state_dict(), tmp_path / "hooked.pt")
    with pytest.raises(GradlabError, match=needle):
        load_model(tmp_path / "hooked.pt", parse_arch("gru:hidden=4,inputs=3"))


def test_float_functional_is_float_not_quantized():
    """A step holding torch.ao.nn.quantized.FloatFunctional (a module prepared for
    quantization-aware training; the quantizable LSTM) computes in float and autograd
    differentiates it, but it was refused: "is quantized ... (it holds a quantized
    FloatFunctional): torch autograd cannot differentiate its kernels"."""
    from torch.ao.nn.quantized import FloatFunctional

    class Step(nn.Module):
        def __init__(self, functional):
            super().__init__()
            self.a, self.add = nn.Linear(7, 4).double(), functional

        def forward(self, x, h):
            new = torch.tanh(self.a(torch.cat([x, h], -1)))
            return self.add.add(h, new) if self.add is not None else h + new

    torch.manual_seed(0)
    xs, h0 = torch.randn(5, 2, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    step, plain = Step(FloatFunctional()), Step(None)
    plain.a.load_state_dict(step.a.state_dict())
    got = gradient_flow(step, xs, state0=h0).log_norm()
    assert (got == gradient_flow(plain, xs, state0=h0).log_norm()).all()
    with pytest.raises(GradlabError, match=r"got torch\.ao\.nn\.quantizable\..*\.LSTM$"):
        from_torch(torch.ao.nn.quantizable.LSTM(3, 4))    # not an nn.LSTM, by name


def test_another_modules_extra_state_outside_the_prefix_is_ignored(tmp_path):
    """A whole model's state dict, saved as told, holding a submodule's _extra_state (a
    dict: get_extra_state) beside model.rnn was refused with prefix=rnn. as "holds a
    OrderedDict, not a state dict of named tensors", advising to save the extra state."""
    class Config(nn.Module):
        def get_extra_state(self):
            return {"vocab": 100}

        def set_extra_state(self, state):
            pass

    model = nn.Module()
    model.rnn, model.config = nn.GRU(3, 4), Config()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt", parse_arch("gru:hidden=4,inputs=3,prefix=rnn."))
    assert torch.equal(loaded.weight_hh_l0, model.rnn.weight_hh_l0.double())
    with pytest.raises(GradlabError, match="holds a OrderedDict, not a state dict of named "
                                           "tensors"):      # under the prefix: still refused
        load_model(tmp_path / "model.pt", parse_arch("gru:hidden=4,inputs=3,prefix=config."))


@pytest.mark.parametrize("module", ["GRUCell", "LSTMCell", "RNNCell"])
def test_to_torch_builds_a_cell_of_input_size_zero_as_torch_does(module):
    """torch's cell modules take input_size 0, and from_torch reads them; to_torch refused
    its inverse, saying a torch module needs input_size >= 1."""
    torch.manual_seed(0)
    original = getattr(torch.nn, module)(0, 4).double()
    back = gradlab.to_torch(*gradlab.from_torch(original))
    x, h = torch.zeros(2, 0, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    state = (h, h) if module == "LSTMCell" else h
    with torch.no_grad():
        want, got = original(x, state), back(x, state)
    want, got = (w[0] if isinstance(w, tuple) else w for w in (want, got))
    # (exact but for the order of a sum: nn.RNNCell and LSTMCell's two biases are one b)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=1e-15)
