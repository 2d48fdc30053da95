"""Torch modules that are not what they seem (found by a hostile probe of real models): an
nn.RNN whose nonlinearity was changed after it was built, quantized and wrapped modules,
steps that leave autograd, nan weights and state0 given as plain numbers. Each was
measured as something else (wrong numbers, a product "exactly zero") or ended in a raw
traceback."""

import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

import gradlab
from gradlab import GradlabError
from gradlab.checkpoint import parse_arch, select
from gradlab.flow.module import TorchStep

D = torch.float64


def _xs(T=6, B=2, m=3, seed=0):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(seed), dtype=D)


@pytest.mark.parametrize("built,set_to", [("tanh", "relu"), ("relu", "tanh")])
def test_an_rnn_whose_nonlinearity_disagrees_with_its_mode_is_refused(built, set_to):
    """torch's nn.RNN runs the kernel `mode` names, fixed when it is built; gradlab read
    `nonlinearity` and measured rnn_relu (every norm -inf) for a module running tanh."""
    torch.manual_seed(0)
    module = torch.nn.RNN(3, 4, nonlinearity=built).double()
    module.nonlinearity = set_to
    with pytest.raises(GradlabError, match=r"^this RNN's nonlinearity is .* but its mode is"):
        gradlab.gradient_flow(module, _xs())
    module.nonlinearity = built                    # consistent again: agrees with jacrev
    ours = gradlab.gradient_flow(module, _xs()).log_norm()
    theirs = gradlab.gradient_flow(TorchStep(module), _xs()).log_norm()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_a_cell_module_with_a_nonlinearity_torch_does_not_run_is_named():
    cell = torch.nn.RNNCell(3, 4).double()
    cell.nonlinearity = "gelu"
    with pytest.raises(GradlabError, match=r"^RNNCell\(nonlinearity='gelu'\): torch runs "
                                           r"tanh or relu only$"):
        gradlab.from_torch(cell)


def _quantized(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = {"GRUCell": torch.nn.GRUCell, "LSTM": torch.nn.LSTM}[kind]
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(cls(3, 4)), {cls}, dtype=torch.qint8)[0]


@pytest.mark.parametrize("kind", ["GRUCell", "LSTM"])
def test_a_quantized_module_is_refused_not_measured_as_zero(kind):
    """Its integer kernels have no autograd: jacrev gave zeros, reported as a product
    exactly zero, where a finite difference of the module is clearly not zero."""
    module = _quantized(kind)
    state0 = torch.zeros(2, 4) if kind == "GRUCell" else None
    with pytest.raises(GradlabError, match=rf"^{kind} is quantized .*cannot differentiate"):
        gradlab.gradient_flow(module, _xs().float(), state0=state0)
    with pytest.raises(GradlabError, match=rf"^{kind} is quantized"):
        gradlab.from_torch(module)


def test_compiled_and_data_parallel_modules_are_measured_as_the_module_inside():
    module = torch.nn.GRU(3, 4).double()
    want = gradlab.gradient_flow(module, _xs()).log_norm()
    with warnings.catch_warnings():            # (torch's own deprecations, at compile)
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = torch.compile(module)
    for wrapped in (compiled, torch.nn.DataParallel(module)):
        got = gradlab.gradient_flow(wrapped, _xs()).log_norm()
        np.testing.assert_array_equal(got, want)
        cell, params = gradlab.from_torch(wrapped)
        assert cell.name == "gru_torch" and torch.equal(params["W_r"], gradlab.from_torch(
            module)[1]["W_r"])


def test_containers_and_torchscript_copies_say_which_module_to_pass():
    gru = torch.nn.GRU(3, 4).double()
    with pytest.raises(GradlabError, match=r"^Sequential holding a GRU at \[1\]: pass the "
                                           r"recurrent module itself \(module\[1\]\)$"):
        gradlab.gradient_flow(torch.nn.Sequential(torch.nn.Identity(), gru), _xs())
    with warnings.catch_warnings():                   # (newer torch deprecates it)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(gru)
    with pytest.raises(GradlabError, match=r"^a TorchScript GRU: .*before torch.jit.script "
                                           r"or trace$"):
        gradlab.gradient_flow(scripted, _xs())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # (TracerWarning, deprecation)
        traced = torch.jit.trace(gru, (_xs()[0],))
    with pytest.raises(GradlabError, match=r"^a TorchScript GRU: .*or trace$"):
        gradlab.gradient_flow(traced, _xs())


def test_nan_weights_are_refused_by_name_not_explained_as_overflow():
    gru = torch.nn.GRU(3, 4).double()
    with torch.no_grad():
        gru.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(GradlabError, match=r"^GRU's weight_hh_l0 holds nan: there is no "):
        gradlab.gradient_flow(gru, _xs())
    cell = gradlab.cell("gru")
    params = cell.init_params(4, 3, seed=1)
    params["W"] = torch.full((4, 4), float("nan"), dtype=D)  # was 'the state overflows'
    for call in (lambda: gradlab.gradient_flow(cell, params, _xs()).rate(),
                 lambda: gradlab.lyapunov(cell, params, _xs(), 2),
                 lambda: gradlab.check_lyapunov(lambda p, xs, k: np.zeros(k), cell, params,
                                                _xs(T=30), 2, atol=0.1)):
        with pytest.raises(GradlabError, match=r"^param 'W' of cell 'gru' holds nan: "):
            call()


def test_an_inf_bias_that_pins_a_gate_is_measured():
    """IEEE arithmetic gives b_f = +inf a forget gate of exactly 1 and a finite trajectory:
    measured as it was, not refused."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 3, seed=1)
    params["b_f"] = torch.full((3,), float("inf"), dtype=D)
    flow = gradlab.gradient_flow(lstm, params, _xs())
    assert np.isfinite(flow.log_norm()).all() and flow.why() is not None


def test_a_pruned_module_is_told_to_make_its_pruning_permanent():
    lstm = torch.nn.LSTM(3, 4).double()
    prune.l1_unstructured(lstm, "weight_hh_l0", 0.3)
    with pytest.raises(GradlabError, match=r"^LSTM is pruned .*prune.remove\(module, name\)"):
        gradlab.gradient_flow(lstm, _xs())
    prune.remove(lstm, "weight_hh_l0")
    gradlab.gradient_flow(lstm, _xs()).rate()


class Step(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(7, 4).double()
        gen = torch.Generator().manual_seed(0)
        torch.nn.init.normal_(self.a.weight, generator=gen)
        torch.nn.init.normal_(self.a.bias, generator=gen)

    def forward(self, x, h):
        return torch.tanh(self.a(torch.cat([x, h], -1)))


class NoGrad(Step):
    @torch.no_grad()
    def forward(self, x, h):
        return torch.tanh(self.a(torch.cat([x, h], -1)))


class Detached(Step):
    def forward(self, x, h):
        return torch.tanh(self.a(torch.cat([x, h.detach()], -1)))


class Ignores(Step):
    def forward(self, x, h):
        return torch.tanh(self.a(torch.cat([x, 0 * h], -1)))


@pytest.mark.parametrize("cls", [NoGrad, Detached])
def test_a_step_autograd_cannot_see_through_is_refused(cls):
    """It moves with the state but its Jacobians came back as zeros: 'exactly zero'."""
    with pytest.raises(GradlabError, match=rf"^{cls.__name__}\(x, state\) moves with the "
                                           "state, but autodiff sees no dependence"):
        gradlab.gradient_flow(cls(), _xs(), state0=torch.zeros(2, 4, dtype=D))


def test_a_step_that_truly_ignores_its_state_is_exactly_zero():
    flow = gradlab.gradient_flow(Ignores(), _xs(), state0=torch.zeros(2, 4, dtype=D))
    assert np.all(flow.log_norm() == -np.inf)


@pytest.mark.parametrize("state0", [np.zeros(4), [0.0] * 4, torch.zeros(4, dtype=D)])
def test_a_module_state0_of_plain_numbers_is_one_sequence_state(state0):
    step = Step()
    step.state0 = state0
    want = gradlab.gradient_flow(Step(), _xs(), state0=torch.zeros(2, 4, dtype=D)).log_norm()
    np.testing.assert_array_equal(gradlab.gradient_flow(step, _xs()).log_norm(), want)
    for given in (np.zeros((2, 4)), [[0.0] * 4] * 2):          # state0= as arrays, lists
        got = gradlab.gradient_flow(Step(), _xs(), state0=given).log_norm()
        np.testing.assert_array_equal(got, want)


def test_a_module_state0_that_fails_or_is_not_numbers_is_one_line():
    class Forgets(Step):
        def state0(self):
            return torch.zeros(2, 4, dtype=D)

    with pytest.raises(GradlabError, match=r"^Forgets.state0\(B\) failed with B = 2: "
                                           r"TypeError: "):
        gradlab.gradient_flow(Forgets(), _xs())
    step = Step()
    step.state0 = "zeros"
    with pytest.raises(GradlabError, match=r"^state0 must be an array of real numbers, got str"):
        gradlab.gradient_flow(step, _xs())


def test_a_prefix_on_a_module_s_own_checkpoint_says_drop_it():
    state = torch.nn.GRU(3, 4).state_dict()
    with pytest.raises(GradlabError, match=r"^no checkpoint key starts with prefix='x': the "
                                           r"file's keys are a module's own .*; drop prefix=$"):
        select(state, parse_arch("gru:hidden=4,inputs=3,prefix=x"))


class Pair(torch.nn.ModuleList):
    """Two stacked GRU cells with a step of their own: a container that is a step."""
    def forward(self, x, state):
        h1 = self[0](x, state[0])
        return h1, self[1](h1, state[1])


def test_a_container_with_its_own_step_is_measured_not_refused():
    module = Pair([torch.nn.GRUCell(3, 4), torch.nn.GRUCell(4, 4)]).double()
    zeros = torch.zeros(2, 4, dtype=D)
    flow = gradlab.gradient_flow(module, _xs(), state0=(zeros, zeros))
    assert np.isfinite(flow.log_norm()).all()


def test_inference_mode_kinks_and_zero_derivatives_pass_the_autodiff_probe():
    """The probe refuses only a step with no autograd path to its state: a caller's
    inference mode, relu at its kink (torch's relu'(0) = 0) and floor are the step's own
    derivatives, measured as before."""
    step = Step()
    zeros = torch.zeros(2, 4, dtype=D)
    want = gradlab.gradient_flow(step, _xs(), state0=zeros).log_norm()
    with torch.inference_mode():
        got = gradlab.gradient_flow(step, _xs(), state0=zeros).log_norm()
    np.testing.assert_array_equal(got, want)

    class Kink(Step):
        def forward(self, x, h):
            return torch.relu(torch.nn.functional.linear(torch.cat([x, h], -1),
                                                         self.a.weight))

    class Floor(Step):
        def forward(self, x, h):
            return torch.floor(h) + self.a(torch.cat([x, 0 * h], -1))

    xs = _xs()
    xs[:2, 0] = 0                                  # sequence 0 starts at the kink
    for cls in (Kink, Floor):
        flow = gradlab.gradient_flow(cls(), xs, state0=zeros)
        assert flow.log_norm().shape == (2, 6)


def test_only_torch_s_quantized_namespaces_are_quantized():
    class Mine(Step):
        pass

    Mine.__module__ = "myproject.quantized.cells"
    flow = gradlab.gradient_flow(Mine(), _xs(), state0=torch.zeros(2, 4, dtype=D))
    assert np.isfinite(flow.log_norm()).all()
