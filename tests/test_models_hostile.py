"""Torch models, checkpoints and Lyapunov checks against inputs that looked valid: a module
that computes something else than its torch base class, dropout in training mode, inputs
that are not numbers on the bidirectional path, checkpoints with sparse or meta tensors or
code, and absurd layer counts. Each test failed before its fix (wrong numbers measured
silently, a bare torch error, or a hang)."""

import pickle
import re
import warnings

import numpy as np
import pytest
import torch

import gradlab
from gradlab import GradlabError
from gradlab.flow.module import TorchStep
from gradlab.interop import direction_inputs
from conftest import assert_one_line_error, invoke


class ScaledGRU(torch.nn.GRU):
    """An nn.GRU whose forward scales its input: not what nn.GRU's weights compute."""

    def forward(self, x, hx=None):
        return super().forward(3 * x, hx)


def test_a_module_overriding_forward_is_not_measured_as_its_base_class():
    module = ScaledGRU(3, 4).double()
    xs = torch.randn(6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(GradlabError, match="ScaledGRU overrides GRU.forward.*TorchStep"):
        gradlab.gradient_flow(module, xs)
    with pytest.raises(GradlabError, match="overrides GRU.forward"):
        gradlab.from_torch(module)
    own = gradlab.gradient_flow(TorchStep(module), xs)   # what it runs, by jacrev
    assert np.isfinite(own.log_norm()).all()


def test_dropout_between_layers_in_training_mode_is_refused():
    module = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"training mode with LSTM\(dropout=0.5\).*eval"):
        gradlab.gradient_flow(TorchStep(module), xs)
    module.eval()
    assert np.isfinite(gradlab.gradient_flow(TorchStep(module), xs).log_norm()).all()


@pytest.mark.parametrize("xs, needle", [
    ("abc", "xs must be an array of real numbers, got str"),
    (None, "xs must be an array of real numbers, got NoneType"),
    (torch.zeros(5, 2, 3, device="meta"), "meta device"),
    (torch.zeros(5, 2, 3, dtype=torch.complex128), "real numbers, got dtype torch.complex128"),
    (torch.zeros(5, 2, 3, dtype=torch.bool), "real numbers, got dtype torch.bool"),
    (torch.zeros(5, 0, 3), r"xs has shape \(5, 0, 3\)"),
])
def test_bidirectional_stacks_check_xs_as_every_other_path(xs, needle):
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).double()
    with pytest.raises(GradlabError, match=needle):
        direction_inputs(module, xs, "forward")
    with pytest.raises(GradlabError, match=needle):
        gradlab.gradient_flow(module, xs)


def test_check_lyapunov_takes_xs_and_k_as_lyapunov_does():
    gru = gradlab.cell("gru_torch")
    params = gru.init_params(3, 2, seed=0)
    xs = torch.randn(1200, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mine = lambda P, xs, k: gradlab.lyapunov(gru, P, xs, k).exponents    # noqa: E731
    assert gradlab.check_lyapunov(mine, gru, params, xs.float(), 3).ok
    assert gradlab.check_lyapunov(mine, gru, params, xs.tolist(), np.int64(3)).ok
    with pytest.raises(GradlabError, match="xs must be an array of real numbers, got str"):
        gradlab.check_lyapunov(mine, gru, params, "abc", 3)
    with pytest.raises(GradlabError, match="xs holds nan or inf"):
        gradlab.check_lyapunov(mine, gru, params, xs * float("nan"), 3)


REPORT = ("report", "--steps", "5", "--batch", "2")


def test_checkpoints_that_are_not_dense_tensors_are_refused(tmp_path):
    state = dict(torch.nn.LSTM(3, 4).state_dict())
    arch = ("--arch", "lstm:hidden=4,inputs=3")
    sparse = dict(state, weight_hh_l0=state["weight_hh_l0"].to_sparse())
    torch.save(sparse, tmp_path / "sparse.pt")
    meta = dict(state, weight_hh_l0=torch.zeros(16, 4, device="meta"))
    torch.save(meta, tmp_path / "meta.pt")
    with open(tmp_path / "legacy.pt", "wb") as f:                     # a plain pickle
        pickle.dump({"weight_hh_l0": [1.0]}, f, protocol=4)
    for name, needle in [("sparse", "'weight_hh_l0' is a sparse_coo tensor"),
                         ("meta", "'weight_hh_l0' is a meta tensor"),
                         ("legacy", "was saved with a pickle protocol torch.load(weights_only="
                                    "True) cannot read (operand")]:
        out = tmp_path / f"out_{name}"
        assert_one_line_error(invoke(*REPORT, "--out", out, "--model", tmp_path / f"{name}.pt",
                                     *arch), needle)
        assert not out.exists()


def test_a_weight_beyond_float32s_range_is_refused_under_dtype_float32(tmp_path):
    module = torch.nn.LSTM(3, 4).double()
    state = {k: v for k, v in module.state_dict().items()}
    state["weight_hh_l0"] = state["weight_hh_l0"].clone()
    state["weight_hh_l0"][0, 0] = 1e300                           # finite in float64
    torch.save(state, tmp_path / "big.pt")
    out = tmp_path / "out"
    result = invoke(*REPORT, "--out", out, "--model", tmp_path / "big.pt",
                    "--arch", "lstm:hidden=4,inputs=3", "--dtype", "float32")
    assert_one_line_error(result, "'weight_hh_l0' holds 1e+300, beyond float32's range "
                                  "(3.4e+38); use --dtype float64")
    assert not out.exists()


def test_a_layer_count_beyond_the_stack_limit_is_refused_at_once(tmp_path):
    torch.save(torch.nn.LSTM(3, 4).state_dict(), tmp_path / "lstm.pt")
    out = tmp_path / "out"
    result = invoke(*REPORT, "--out", out, "--model", tmp_path / "lstm.pt",
                    "--arch", "lstm:hidden=4,inputs=3,layers=99999999999")
    assert_one_line_error(result, "layers=99999999999 is more than gradlab stacks (at most 64)")


def test_to_torch_leaves_the_users_random_stream_alone():
    cell, params = gradlab.from_torch(torch.nn.LSTMCell(3, 4).double())
    torch.manual_seed(0)
    before = torch.randn(3)
    torch.manual_seed(0)
    gradlab.to_torch(cell, params)
    assert torch.equal(torch.randn(3), before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_from_torch_refuses_what_gradlab_cannot_measure(dtype):
    with pytest.raises(GradlabError, match="weights are .*; gradlab measures one of float32"):
        gradlab.from_torch(torch.nn.LSTMCell(3, 4).to(dtype))
    mixed = torch.nn.GRUCell(3, 4)
    mixed.bias_ih.data = mixed.bias_ih.data.double()
    with pytest.raises(GradlabError, match="weights are float32, float64"):
        gradlab.from_torch(mixed)


def test_a_block_wrong_throughout_fails_however_small_against_the_others():
    from gradlab.testing import assert_jacobian
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 3, seed=0)
    exact = cell.jacobian_fn("state")

    def forgets_the_carry(P, s, x):                  # d c'/d c = diag(f) replaced by 0
        J = exact(P, s, x).clone()
        J[:, 4:, 4:] = 0
        return J
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    c = 1e9 * torch.randn(4, 4, generator=gen, dtype=torch.float64)   # d c'/d h ~ 1e9
    result = gradlab.check_jacobian(forgets_the_carry, cell, params, states=(h, c))
    assert not result.ok and result.block_errors[("c", "c")] == 1.0
    assert result.max_error == 1.0
    with pytest.raises(AssertionError):
        assert_jacobian(forgets_the_carry, cell, params, states=(h, c))
    # at c ~ 1e9 tanh(c') saturates: every term through 1 - tanh(c')^2 is exactly 0, so
    # even the exact Jacobian cannot be told from one without them
    same = gradlab.check_jacobian(exact, cell, params, states=(h, c))
    assert not same.ok and same.inconclusive and same.max_error == 0
    assert "(1 - (tanh(c'))^2)" in same.diagnosis[0]


def test_a_weight_of_the_wrong_shape_is_named():
    lstm = torch.nn.LSTM(3, 4)
    lstm.weight_hh_l0 = torch.nn.Parameter(torch.randn(15, 4))
    with pytest.raises(GradlabError, match=r"LSTM.weight_hh_l0 has shape \(15, 4\)"):
        gradlab.from_torch(lstm)
    cell = torch.nn.GRUCell(3, 4)                  # used to give (2, 4) params silently
    cell.weight_hh = torch.nn.Parameter(torch.randn(6, 4))
    with pytest.raises(GradlabError, match=r"GRUCell.weight_hh has shape \(6, 4\)"):
        gradlab.from_torch(cell)


class CalledGRUCell(torch.nn.GRUCell):
    """Scales its input in __call__, leaving forward as GRUCell's."""

    def __call__(self, x, hx=None):
        return super().__call__(3 * x, hx)


class PermutedGRU(torch.nn.GRU):
    """Doubles its initial state in permute_hidden, which GRU.forward calls."""

    def permute_hidden(self, hx, permutation):
        return None if hx is None else 2 * hx


class InitOnlyLSTM(torch.nn.LSTM):
    """Only its constructor is its own: it computes what nn.LSTM does."""

    def __init__(self, *args):
        super().__init__(*args)


def test_every_way_of_replacing_what_the_base_class_computes_is_refused():
    replaced = torch.nn.GRUCell(3, 4).double()
    replaced.forward = lambda x, hx=None: torch.nn.GRUCell.forward(replaced, 3 * x, hx)
    for module, needle in [(CalledGRUCell(3, 4), "CalledGRUCell overrides GRUCell.__call__"),
                           (PermutedGRU(3, 4), "PermutedGRU overrides GRU.permute_hidden"),
                           (replaced, "this GRUCell has its own forward")]:
        with pytest.raises(GradlabError, match=needle + ".*TorchStep"):
            gradlab.from_torch(module.double())
    cell, params = gradlab.from_torch(InitOnlyLSTM(3, 4).double())
    assert cell.name == "lstm"


def test_review_a_compiled_module_is_read_as_the_plain_one():
    module = torch.nn.LSTM(3, 4).double()
    with warnings.catch_warnings():            # (torch's own deprecations, at compile)
        warnings.simplefilter("ignore")
        module.compile()                       # sets _compiled_call_impl on the instance
    cell, _ = gradlab.from_torch(module)
    assert cell.name == "lstm"


def test_review_a_projected_lstms_state0_may_be_nested_lists():
    module = torch.nn.LSTM(3, 4, proj_size=2).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h0, c0 = [[0.1, 0.2], [0.3, 0.4]], [[0.0] * 4, [0.5] * 4]
    flow = gradlab.gradient_flow(module, xs, state0=(h0, c0))
    out, _ = module(xs, (torch.tensor(h0, dtype=torch.float64)[None],
                         torch.tensor(c0, dtype=torch.float64)[None]))
    assert torch.allclose(flow.states[0][1:, :, :2], out, rtol=1e-12, atol=0)


@pytest.mark.parametrize("build, change, says", [
    (lambda: torch.nn.GRUCell(3, 4), {"bias": False}, "GRUCell holds bias_hh"),
    (lambda: torch.nn.LSTM(3, 4, 2), {"bias": False}, "LSTM holds bias_hh_l0"),
    (lambda: torch.nn.LSTM(3, 4, 3), {"num_layers": 2}, "LSTM holds bias_hh_l2"),
    (lambda: torch.nn.LSTM(3, 4, 2), {"num_layers": 3}, "LSTM lacks bias_hh_l2"),
    (lambda: torch.nn.LSTM(3, 4, bidirectional=True), {"bidirectional": False},
     "holds bias_hh_l0_reverse"),
    (lambda: torch.nn.LSTM(3, 4), {"proj_size": 2}, "LSTM lacks weight_hr_l0")])
def test_a_flag_changed_after_building_is_refused_naming_the_weight(build, change, says):
    """GRUCell(...).bias = False was measured with zero biases, while torch's cell forward
    uses the tensors it holds (log norms off by 2.5); nn.LSTM's changed num_layers,
    bidirectional or bias measured a network torch cannot run, or raised AttributeError."""
    module = build().double()
    for flag, value in change.items():
        setattr(module, flag, value)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    with pytest.raises(GradlabError, match=re.escape(says) + ".*a flag changed after it"):
        gradlab.gradient_flow(module, xs)


def test_a_parametrization_that_draws_a_new_weight_each_read_is_refused():
    """weight + 0.1 randn as a parametrization (no buffer to see move) was measured as one
    draw: two runs of the same call disagreed."""
    from torch.nn.utils import parametrize

    class Noise(torch.nn.Module):
        def forward(self, w):
            return w + 0.1 * torch.randn_like(w)

    class Double(torch.nn.Module):
        def forward(self, w):
            return 2 * w
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    noisy = torch.nn.GRU(3, 4).double().eval()
    parametrize.register_parametrization(noisy, "weight_hh_l0", Noise())
    with pytest.raises(GradlabError, match="by Noise, which gives another weight each time"):
        gradlab.gradient_flow(noisy, xs)
    steady = torch.nn.GRU(3, 4).double()
    parametrize.register_parametrization(steady, "weight_hh_l0", Double())
    assert gradlab.gradient_flow(steady, xs).log_norm("frobenius").shape == (2, 5)


def test_a_submodule_beside_the_weights_does_not_set_the_dtype():
    """A float32 nn.Linear attached to a float64 LSTM was read as one of its weights:
    "LSTM's weights are float32, float64", though its own are all float64."""
    lstm = torch.nn.LSTM(3, 4).double()
    lstm.extra = torch.nn.Linear(2, 2)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    plain = torch.nn.LSTM(3, 4).double()
    plain.load_state_dict({k: v for k, v in lstm.state_dict().items() if "extra" not in k})
    assert np.array_equal(gradlab.gradient_flow(lstm, xs).log_norm("frobenius"),
                          gradlab.gradient_flow(plain, xs).log_norm("frobenius"))


def test_to_torch_of_a_stack_or_projected_lstm_says_what_to_build_instead():
    """'has no torch module (torch ships: ... lstm ...)' for lstm_x2 and lstm_proj, which
    nn.LSTM computes: it named no way forward."""
    from gradlab.catalogue.lstm import lstm_proj
    for cell in (gradlab.stack("lstm", 2), lstm_proj):
        with pytest.raises(GradlabError, match=r"build nn.LSTM\(num_layers=..., proj_size="):
            gradlab.to_torch(cell, {})


def test_a_module_with_tied_weights_is_measured_as_its_untied_copy():
    """Layer 2's weight_hh tied to layer 1's (torch runs it) was refused as 'lacks
    weight_hh_l1, which its flags make: a flag changed after it was built?': the tied
    name is left out of named_parameters."""
    torch.manual_seed(0)
    tied = torch.nn.RNN(5, 5, num_layers=2).double()
    tied.weight_hh_l1 = tied.weight_hh_l0
    untied = torch.nn.RNN(5, 5, num_layers=2).double()
    untied.load_state_dict({k: v.clone() for k, v in tied.state_dict().items()})
    xs = torch.randn(4, 2, 5, dtype=torch.float64)
    assert np.array_equal(gradlab.gradient_flow(tied, xs).log_norm(),
                          gradlab.gradient_flow(untied, xs).log_norm())


def test_a_packed_sequence_is_refused_by_name():
    """It was 'xs must be an array of real numbers, got PackedSequence: setting an array
    element with a sequence. The requested array has an inhomogeneous shape ...'."""
    packed = torch.nn.utils.rnn.pack_sequence([torch.randn(5, 3, dtype=torch.float64),
                                               torch.randn(3, 3, dtype=torch.float64)])
    with pytest.raises(GradlabError, match="xs is a PackedSequence; give one dense "
                                           "\\(T, B, m\\) tensor"):
        gradlab.gradient_flow(torch.nn.LSTM(3, 4).double(), packed)


def test_a_parametrized_weight_below_the_top_of_a_bidirectional_stack():
    """weight_norm on weight_ih_l0 of a 2-layer bidirectional LSTM: direction_inputs built
    layer 1 from named_parameters, where the weight is
    parametrizations.weight_ih_l0.original, and load_state_dict raised RuntimeError."""
    from torch.nn.utils.parametrizations import weight_norm
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    weight_norm(lstm, "weight_ih_l0")
    with torch.no_grad():                                   # moves the weight it computes
        lstm.parametrizations.weight_ih_l0.original0.mul_(1.7)
    plain = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    plain.load_state_dict({name: getattr(lstm, name).detach() for name in plain.state_dict()})
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    for reverse in (False, True):
        got = gradlab.gradient_flow(lstm, xs, reverse=reverse).log_norm()
        expected = gradlab.gradient_flow(plain, xs, reverse=reverse).log_norm()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)
