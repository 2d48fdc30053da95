"""Hostile arguments to the Python API are refused as one-line GradlabErrors, naming the
bad value (probe report §12): gradient_flow / Flow / lyapunov, init_params, to_torch /
from_torch, stack, and block-Jacobian indexing. What is merely unusual but meaningful
(numpy integers) is accepted."""

import math

import numpy as np
import pytest
import sympy
import torch

import gradlab
import gradlab.flow as F
from gradlab.errors import GradlabError

LSTM = gradlab.cell("lstm")


@pytest.fixture(scope="module")
def setup():
    params = LSTM.init_params(3, 2, seed=1)
    xs = F.make_inputs("gaussian", 5, 2, 2, seed=2)
    return params, xs


@pytest.fixture(scope="module")
def flow(setup):
    return gradlab.gradient_flow(LSTM, *setup)


def refused(match, fn, *args, **kwargs):
    with pytest.raises(GradlabError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return err.value


class Step(torch.nn.Module):
    """A recurrent step by the module protocol, measured by jacrev."""

    def __init__(self, device=None):
        super().__init__()
        self.lin = torch.nn.Linear(5, 3, device=device, dtype=torch.float64)

    def forward(self, x, h):
        return torch.tanh(self.lin(torch.cat([x, h], -1)))

    def state0(self, B):
        return torch.zeros(B, 3, dtype=torch.float64)


# -- gradient_flow / lyapunov: inputs and state ------------------------------------------
def test_batch_size_zero_is_refused_symbolic_and_module(setup):
    params, xs = setup
    refused(r"xs has shape \(5, 0, 2\).*B >= 1", gradlab.gradient_flow, LSTM, params,
            xs[:, :0])
    refused(r"B >= 1", gradlab.lyapunov, LSTM, params, xs[:, :0], 2)
    refused(r"B >= 1", F.run_states, LSTM, params, xs[:, :0])
    refused(r"xs has shape \(4, 0, 2\).*B >= 1", gradlab.gradient_flow, Step(),
            torch.zeros(4, 0, 2))


def test_xs_must_be_real_numbers_with_data(setup):
    params, xs = setup
    refused(r"xs must be an array of real numbers, got str", gradlab.gradient_flow, LSTM,
            params, "abc")
    refused(r"xs must hold real numbers, got dtype torch.complex128", gradlab.gradient_flow,
            LSTM, params, xs.to(torch.complex128))
    refused(r"xs is on the meta device", gradlab.gradient_flow, LSTM, params, xs.to("meta"))
    refused(r"xs must be an array of real numbers, got str", gradlab.gradient_flow, Step(),
            "abc")


def test_params_and_modules_on_the_meta_device_are_refused(setup):
    params, xs = setup
    meta = {k: v.to("meta") for k, v in params.items()}
    refused(r"params are on the meta device", gradlab.gradient_flow, LSTM, meta, xs)
    refused(r"Step's parameters are on the meta device", gradlab.gradient_flow,
            Step(device="meta"), xs)
    refused(r"LSTM's parameters are on the meta device", gradlab.from_torch,
            torch.nn.LSTM(2, 3, device="meta"))


def test_state0_parts_must_be_arrays(setup):
    params, xs = setup
    refused(r"state0\[0\] must be an array of real numbers, got NoneType",
            gradlab.gradient_flow, LSTM, params, xs, state0=(None,))


@pytest.mark.parametrize("norms", [None, "spectral"])
def test_norms_must_be_a_tuple_of_names(setup, norms):
    refused(r"norms is a tuple of names from spectral, frobenius, min_singular, got "
            + repr(norms), gradlab.gradient_flow, LSTM, *setup, norms=norms)


@pytest.mark.parametrize("seed", ["x", 1.5, True, -1, 2 ** 63, 2 ** 70, None])
def test_bad_seeds_are_refused_everywhere(setup, flow, seed):
    message = r"seed must be an integer in \[0, 2\*\*63\), got " + repr(seed).replace(
        ".", r"\.")
    refused(message, gradlab.gradient_flow, LSTM, *setup, seed=seed)
    refused(message, gradlab.lyapunov, LSTM, *setup, 2, seed=seed)
    refused(message, flow.loss_grad_norms, seed=seed)
    refused(message, flow.lyapunov, 2, seed=seed)
    refused(message, LSTM.init_params, 3, 2, seed=seed)
    refused(message, F.make_inputs, "gaussian", 3, 2, 2, seed=seed)


@pytest.mark.parametrize("what", ["reverse", "blocks"])
def test_flags_must_be_bools(setup, what):
    refused(rf"{what} must be True or False, got 'no'", gradlab.gradient_flow, LSTM, *setup,
            **{what: "no"})
    assert gradlab.gradient_flow(LSTM, *setup, **{what: np.bool_(True)}).T == 5


def test_reverse_must_be_a_bool_for_lyapunov_and_modules(setup):
    refused(r"reverse must be True or False", gradlab.lyapunov, LSTM, *setup, 2, reverse=2)
    refused(r"reverse must be True or False", gradlab.lyapunov, LSTM, *setup, 2, reverse="no")
    assert gradlab.lyapunov(LSTM, *setup, 2, reverse=1).exponents.shape[1] == 2   # 0 / 1 ok
    refused(r"reverse must be True or False", gradlab.gradient_flow, Step(), setup[1],
            reverse="no")


# -- Flow's own arguments ------------------------------------------------------------------
@pytest.mark.parametrize("start", [2.5, "1", None, True, 0, 6])
def test_rate_start_is_an_integer_lag(flow, start):
    refused(rf"start must be an integer in 1\.\.5, got {re_repr(start)}", flow.rate,
            start=start)


@pytest.mark.parametrize("stop", [2.5, "3", 0, 6])
def test_rate_stop_is_an_integer_lag(flow, stop):
    refused(rf"stop must be an integer in 1\.\.5, got {re_repr(stop)}", flow.why, stop=stop)


def re_repr(value):
    return repr(value).replace(".", r"\.")


def test_numpy_integers_are_accepted_by_every_flow_argument(flow, setup):
    assert flow.rate(start=np.int64(2), stop=np.int32(4)) == flow.rate(start=2, stop=4)
    assert np.array_equal(flow.condition(np.int64(2)), flow.condition(2))
    assert np.array_equal(flow.lyapunov(np.int64(2), discard=np.int64(1)),
                          flow.lyapunov(2, discard=1))
    assert np.array_equal(gradlab.lyapunov(LSTM, *setup, np.int64(2)).mean,
                          gradlab.lyapunov(LSTM, *setup, 2).mean)
    assert flow.horizon(np.float32(0.5)) == flow.horizon(0.5)
    ours = gradlab.gradient_flow(LSTM, *setup, seed=np.int64(3)).log_norm("spectral")
    theirs = gradlab.gradient_flow(LSTM, *setup, seed=3).log_norm("spectral")
    assert np.array_equal(ours, theirs)
    assert torch.equal(LSTM.init_params(3, 2, seed=np.int64(5))["W_i"],
                       LSTM.init_params(3, 2, seed=5)["W_i"])


def test_start_after_stop_is_refused(flow):
    refused(r"lags 4\.\.2 are empty", flow.rate, start=4, stop=2)


@pytest.mark.parametrize("fraction", ["a", None, math.nan, True, 0, 1, math.inf, -0.5])
def test_horizon_fraction_is_a_real_number(flow, fraction):
    refused(r"fraction must be a number in \(0, 1\), got ", flow.horizon, fraction)


def test_block_is_a_pair_of_parts(flow):
    refused(r"block must be a pair \(out_part, in_part\) of the parts h, c, got 'cc'",
            flow.rate, block="cc")


# -- init_params ---------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["weight_scale", "bias_scale", "input_scale"])
@pytest.mark.parametrize("value", [-1.0, -math.inf, "1", None, True])
def test_init_scales_are_non_negative_real_numbers(what, value):
    refused(rf"{what} must be a finite real number >= 0, got {re_repr(value)}", LSTM.init_params,
            3, 2, **{what: value})


@pytest.mark.parametrize("value", ["1", None, False])
def test_init_gate_bias_is_a_real_number(value):
    refused(rf"gate_bias must be a finite real number, got {value!r}", LSTM.init_params, 3, 2,
            gate_bias=value)


@pytest.mark.parametrize("option", ["weight_scale", "bias_scale", "input_scale", "gate_bias"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_init_non_finite_options_are_refused(option, value):
    """nan or inf became nan or inf weights without a word; a large finite scale is still
    how a caller drives a flow to overflow (tests/test_trust_nonfinite.py)."""
    with pytest.raises(GradlabError, match=rf"^{option} must be a finite real number"):
        LSTM.init_params(3, 2, **{option: value})
    big = LSTM.init_params(3, 2, weight_scale=1e300)
    assert torch.isfinite(big["W_i"]).all()


def test_init_numpy_scales_and_sizes_are_accepted():
    ours = LSTM.init_params(np.int64(3), np.int64(2), weight_scale=np.float32(1.5),
                            gate_bias=np.float64(1.0))
    theirs = LSTM.init_params(3, 2, weight_scale=1.5, gate_bias=1.0)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_init_device_is_checked():
    refused(r"unknown device 'bogus'; valid: cpu, cuda", LSTM.init_params, 3, 2,
            device="bogus")
    if not torch.cuda.is_available():
        refused(r"device 'cuda' .*valid here: cpu", LSTM.init_params, 3, 2, device="cuda")
    assert LSTM.init_params(3, 2, device=torch.device("cpu"))["W_i"].device.type == "cpu"


# -- to_torch / from_torch / stack -----------------------------------------------------------
def test_to_torch_checks_its_params(setup):
    params, _ = setup
    refused(r"params must be a dict of tensors for cell 'lstm' .*got an empty dict",
            gradlab.to_torch, "lstm", {})
    refused(r"params for cell 'lstm' lack W_f", gradlab.to_torch, "lstm",
            {"W_i": params["W_i"]})
    bad = {**params, "W_f": torch.zeros(2, 2, dtype=torch.float64)}
    refused(r"param 'W_f' of cell 'lstm' has shape \(2, 2\), expected \(3, 3\)",
            gradlab.to_torch, "lstm", bad)
    refused(r"param 'W_i' of cell 'lstm' has shape \(3,\), expected \(3, 3\)",
            gradlab.to_torch, "lstm", {**params, "W_i": torch.zeros(3, dtype=torch.float64)})
    refused(r"param 'W_i' of cell 'lstm' is a ndarray, not a torch tensor", gradlab.to_torch,
            "lstm",
            {k: v.numpy() for k, v in params.items()})
    refused(r"params mix dtypes", gradlab.to_torch, "lstm",
            {**params, "W_i": params["W_i"].float()})
    module = gradlab.to_torch("lstm", params)                # the good case still works
    assert isinstance(module, torch.nn.LSTMCell) and module.hidden_size == 3


def test_stack_of_an_unknown_cell_names_the_valid_ones():
    err = refused(r"unknown cell 'nosuch'; valid cells: .*lstm", gradlab.stack, "nosuch", 2)
    assert "rnn_tanh" in str(err)
    assert gradlab.stack("lstm", 2) is gradlab.stack(LSTM, 2)


def test_stack_of_a_stack_is_refused_clearly():
    refused(r"cannot stack 'lstm_x2', itself a stack of layers", gradlab.stack,
            gradlab.stack(LSTM, 2), 2)


# -- block-Jacobian indexing -----------------------------------------------------------------
@pytest.mark.parametrize("key", [(5, 5), (2, 0), (0, -3)])
def test_jacobian_index_out_of_range_is_refused(key):
    J = LSTM.jacobian()
    with pytest.raises(IndexError):
        J[key]
    refused(r"integers i in 0\.\.1 and j in 0\.\.1", J.__getitem__, key)


@pytest.mark.parametrize("key", [(1.5, 0), (True, 0), 0, ("h", 0)])
def test_jacobian_index_must_be_integers_or_names(key):
    refused(r"index a block by part names, J\['h', 'h'\], or by position",
            LSTM.jacobian().__getitem__, key)


def test_jacobian_integer_index_is_a_block_by_position():
    J = LSTM.jacobian()
    assert J[-1, -1] == J["c", "c"] and J[1, 1].expr == J["c", "c"].expr
    assert str(J[np.int64(0), 1]) == str(J["h", "c"])
    assert (J[1, 0].out, J[1, 0].wrt) == (J["c", "h"].out, J["c", "h"].wrt)


def test_a_scalar_or_misshaped_param_is_named_against_the_others():
    """The state size came from the first parameter alone: a scalar there raised a bare
    IndexError, and a (2, 8) one made every other parameter look wrong ("expected (2, 2)").
    Now the parameters declared (n, .) vote, and the odd one is named."""
    params = LSTM.init_params(4, 3, seed=0)
    xs = torch.randn(6, 2, 3, dtype=torch.float64)
    for bad in (torch.tensor(1.0, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)):
        err = refused("param 'W_i'", gradlab.gradient_flow, LSTM,
                      {**params, "W_i": bad}, xs)
        assert "expected (4, 4)" in str(err)
        refused("param 'W_i'", gradlab.lyapunov, LSTM, {**params, "W_i": bad}, xs, 2)
    rnn = gradlab.cell("rnn_tanh")
    scalars = {p: torch.tensor(1.0, dtype=torch.float64) for p in rnn.param_names}
    refused("give no state size", gradlab.gradient_flow, rnn, scalars, xs)


@pytest.mark.parametrize("v", ["abc", object(), torch.ones(6, dtype=torch.complex128),
                               torch.full((6,), math.nan), [1.0] * 5])
def test_a_bad_loss_vector_is_refused(flow, v):
    """v was converted unchecked: a string or an object raised torch's own errors, a
    complex v lost its imaginary part with only a warning, a nan v gave nan everywhere."""
    refused("loss vector", flow.loss_grad_norms, v)
    refused("loss vector", flow.bptt_fraction, 2, v)


def test_loss_grad_norms_log_must_be_a_bool(flow):
    refused("log must be True or False", flow.loss_grad_norms, log="no")
    assert flow.loss_grad_norms(log=True)["state"].shape == (flow.B, flow.T)


def test_lstm_with_proj_size_refuses_min_singular_and_caps_lyapunov():
    """nn.LSTM(proj_size=p) maps to lstm_proj, h padded with n - p zeros: every product
    is singular on the padding. min_singular came out -inf at every lag (torch's own state
    by jacrev: finite), and lyapunov(8) returned 8 exponents for 6 true dimensions, the
    last two from the padding. Now min_singular and the condition number are refused in
    one line, and the exponents stop at the true size; the spectral norms stand."""
    from gradlab.flow.module import TorchStep
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, proj_size=2).double()
    xs = torch.randn(12, 2, 3, dtype=torch.float64)
    flow = gradlab.gradient_flow(module, xs)
    assert flow.padding == 2
    for call in (lambda: flow.log_norm("min_singular"), lambda: flow.condition(1),
                 lambda: gradlab.gradient_flow(module, xs, norms=("min_singular",))):
        refused("proj_size", call)
    assert len(flow.lyapunov(8)) == 6
    jacrev = gradlab.gradient_flow(TorchStep(module), xs)
    assert np.allclose(flow.log_norm("spectral"), jacrev.log_norm("spectral"), rtol=1e-9)
    assert gradlab.gradient_flow(torch.nn.LSTM(3, 4).double(), xs).padding == 0


def test_an_unknown_norm_in_a_set_is_refused_by_name(setup):
    refused("unknown norm 'spectrall'", gradlab.gradient_flow, LSTM, *setup,
            norms={"spectral", "spectrall"})


def test_a_loss_vector_that_requires_grad_is_read_as_numbers(flow):
    v = torch.ones(flow.S, dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(flow.loss_grad_norms(v)["state"],
                                  flow.loss_grad_norms(v.detach())["state"])
    assert 0 <= flow.bptt_fraction(2, v) <= 1


def test_numpy_float32_rtol_is_a_number(setup):
    rates = [gradlab.gradient_flow(LSTM, *setup, rtol=r).log_norm() for r in
             (np.float32(1e-6), 1e-6)]
    np.testing.assert_allclose(*rates, rtol=1e-5)


def test_an_overflowed_flow_has_no_horizon():
    params = LSTM.init_params(3, 2, seed=1)
    xs = F.make_inputs("gaussian", 6, 2, 2, seed=2)
    xs[2, 0, 0] = math.nan
    flow = gradlab.gradient_flow(LSTM, params, xs)
    assert flow.why() == "input not finite" and math.isnan(flow.horizon(0.5))
    assert math.isnan(flow.summary()["horizon_1e-3"])


def test_params_and_xs_changed_in_place_after_the_call_change_nothing(setup):
    """The walk waits until a norm is read; it used to read the caller's live tensors,
    so an optimizer step in between mixed old states with new Jacobians (off by 1.05)."""
    params, xs = setup
    truth = gradlab.gradient_flow(LSTM, params, xs).log_norm()
    mine = {k: v.clone() for k, v in params.items()}
    xs2 = xs.clone()
    flow = gradlab.gradient_flow(LSTM, mine, xs2)
    with torch.no_grad():
        for v in mine.values():
            v.mul_(2.0)
    xs2.zero_()
    np.testing.assert_array_equal(flow.log_norm(), truth)


def test_check_lyapunov_ignores_entries_the_cell_does_not_read():
    params = dict(LSTM.init_params(3, 2, seed=1), note="not a tensor")
    xs = F.make_inputs("gaussian", 1000, 2, 2, seed=2)
    mine = lambda p, x, k: gradlab.lyapunov(LSTM, p, x, k).mean           # noqa: E731
    assert gradlab.check_lyapunov(mine, LSTM, params, xs, 2).ok


def test_check_lyapunov_passes_gradlab_past_a_singular_jacobians_rank():
    """Exponents past the rank of J (exactly -inf) come out of QR as round-off near log
    eps, different from run to run: they used to fail gradlab's own routine (lstm_nog,
    -36.23 against -36.18) or refuse the run as too short (an all-zero LSTM)."""
    gen = torch.Generator().manual_seed(0)
    for name, zero in (("lstm_nog", False), ("lstm", True)):
        cell = gradlab.cell(name)
        params = cell.init_params(4, 3, seed=0)
        if zero:
            params = {k: torch.zeros_like(v) for k, v in params.items()}
        xs = torch.randn(1500, 2, 3, dtype=torch.float64, generator=gen)
        mine = lambda p, x, k, c=cell: gradlab.lyapunov(c, p, x, k).mean    # noqa: E731
        assert gradlab.check_lyapunov(mine, cell, params, xs, 8).ok
        wrong = lambda p, x, k, m=mine: m(p, x, k).clip(min=-10)             # noqa: E731
        assert not gradlab.check_lyapunov(wrong, cell, params, xs, 8).ok


def test_check_lyapunov_still_checks_exponents_qr_resolves_far_below_the_top():
    """A diagonal W keeps exp(-46) a step apart exactly: a wrong answer there must fail
    (the round-off allowance once let -60 and -100 pass for -46.48)."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(2, 1, seed=0)
    params["W"] = torch.diag(torch.tensor([0.9, 1e-20], dtype=torch.float64))
    xs = torch.randn(400, 3, 1, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1)) * 0.5
    exact = gradlab.lyapunov(cell, params, xs, 2).mean
    for wrong in (-60.0, -100.0, -math.inf):
        fn = lambda p, x, k, w=wrong: torch.tensor([exact[0], w])           # noqa: E731
        assert not gradlab.check_lyapunov(fn, cell, params, xs, 2).ok
    assert gradlab.check_lyapunov(lambda p, x, k: torch.tensor(exact), cell, params, xs, 2).ok


def test_verify_cell_checks_its_arguments_and_devices_follow_one_rule():
    """verify_cell took batch=0 to a torch RuntimeError, sizes=[(1, 1, 1)] to a Python
    ValueError and batch=1e9 to the OOM killer; and it refused 'cpu:0', which init_params
    takes, and named 'cuda:1' unknown where it is only absent here."""
    from gradlab.verification.verify import verify_cell
    refused("batch must be an integer >= 1, got 0", verify_cell, "rnn_tanh", sizes=[(2, 2)],
            batch=0)
    refused(r"sizes must be a list of \(n, m\) pairs", verify_cell, "lstm", sizes=[(1, 1, 1)])
    refused(r"verify_cell at hidden 2, inputs 2, batch 1000000000 needs about", verify_cell, "lstm",
            sizes=[(2, 2)], batch=10 ** 9)
    assert all(c.error <= c.tolerance for c in verify_cell("rnn_tanh", device="cpu:0",
                                                         sizes=[(2, 2)]))
    if not torch.cuda.is_available():
        refused("device 'cuda:1' asked for but torch sees no CUDA device", verify_cell,
                "rnn_tanh", device="cuda:1")
    refused("unknown device 'meta'", verify_cell, "rnn_tanh", device=torch.device("meta"))


def test_a_half_precision_params_dict_is_named_as_the_params():
    """'unsupported dtype torch.float16' did not say the params were float16 (xs is cast
    to the params' dtype, so they are the ones to change)."""
    params = {k: v.half() for k, v in LSTM.init_params(3, 2, seed=0).items()}
    refused(r"params of cell 'lstm': unsupported dtype torch.float16", gradlab.gradient_flow,
            LSTM, params, torch.zeros(3, 2, 2))


def test_a_nested_tensor_is_named_not_torch_internal_error():
    """A nested tensor as xs reached 'RuntimeError: Internal error: NestedTensorImpl
    doesn't support sizes. Please file an issue.' in gradient_flow, lyapunov and J.at."""
    gru = gradlab.cell("gru")
    params = gru.init_params(3, 2, seed=0)
    xs = torch.randn(4, 2, 2, dtype=torch.float64)
    nested = torch.nested.nested_tensor([xs[:, 0], xs[:, 1]], layout=torch.jagged)
    for call in (lambda: gradlab.gradient_flow(gru, params, nested),
                 lambda: gradlab.lyapunov(gru, params, nested, 2)):
        with pytest.raises(GradlabError, match="xs is a nested tensor"):
            call()
    state = torch.nested.nested_tensor([torch.zeros(1, 3, dtype=torch.float64)],
                                       layout=torch.jagged)
    with pytest.raises(GradlabError, match="state part 'h' .* got a nested tensor"):
        gru.jacobian().at(params, (state,), xs[0])


def test_a_masked_array_with_masked_entries_is_refused():
    """np.asarray dropped the mask: masked inputs were measured as their hidden data."""
    gru = gradlab.cell("gru")
    params = gru.init_params(3, 2, seed=0)
    xs = np.random.default_rng(0).normal(size=(4, 2, 2))
    with pytest.raises(GradlabError, match="masked array with masked entries"):
        gradlab.gradient_flow(gru, params, np.ma.masked_array(xs, mask=xs > 1))
    plain = gradlab.gradient_flow(gru, params, np.ma.masked_array(xs)).log_norm("frobenius")
    assert np.array_equal(plain, gradlab.gradient_flow(gru, params, xs).log_norm("frobenius"))


def test_len_and_malformed_subs_of_a_jacobian_are_one_line():
    """len(J) raised Python's TypeError; J.subs() SymPy's 'missing 1 required positional
    argument: arg1', J.subs(f) 'cannot unpack non-iterable MatrixElement object'."""
    lstm = gradlab.cell("lstm")
    J, f = lstm.jacobian(), lstm.symbol("f")
    with pytest.raises(GradlabError, match=r"no len\(\).*len\(J.parts\)"):
        len(J)
    assert J
    for args in [(), (f,), (f, 0, 1), ([f],)]:
        with pytest.raises(GradlabError, match=r"subs takes \(old, new\)"):
            J.subs(*args)
    zero = sympy.ZeroMatrix(*f.shape)
    assert str(J.subs({f: zero})) == str(J.subs([(f, zero)])) == str(J.subs(f, zero))


def test_stacking_a_cell_that_never_reads_its_input_is_refused():
    """stack(noinput, 2) declared h1' = tanh(W1 h1 + b1), h2' = tanh(W2 h2 + b2): two
    layers with nothing between them, since layer l reads layer l-1 through x."""
    @gradlab.declare(state="h", params="W b", source="test", name="noinput")
    def noinput(s):
        return gradlab.tanh(s.W @ s.h + s.b)
    with pytest.raises(GradlabError, match="never reads its input x.*not be connected"):
        gradlab.stack(noinput, 2)
    assert gradlab.stack(noinput, 1).state_names == ("h1",)


@pytest.mark.parametrize("call", ["gradient_flow", "lyapunov"])
def test_a_walk_that_cannot_fit_is_refused_before_the_forward_run(monkeypatch, call):
    """From Python too (the CLI checks its options itself): the estimate against the
    memory free, both in one line, before any state is computed; a kernel would otherwise
    swap for minutes and end in torch's allocator error."""
    import gradlab.budget
    monkeypatch.setattr(gradlab.budget, "available_bytes", lambda device="cpu": 10 ** 6)
    params = LSTM.init_params(64, 4, seed=0)
    xs = torch.randn(50, 8, 4, dtype=torch.float64)
    ran = []
    monkeypatch.setattr(F.Bound, "states", lambda *a, **k: ran.append(1))
    with pytest.raises(GradlabError, match=r"^" + call + r" at state size S = 128, T = 50 "
                       r"steps, batch B = 8 \(float64\) needs about .* of memory but 977 kB "
                       r"is available on cpu; use a smaller hidden size, fewer inputs or "
                       r"steps, or a smaller batch$"):
        getattr(gradlab, call)(LSTM, params, xs)
    assert ran == []


@pytest.mark.parametrize("edit", [
    lambda c: c.lets.pop(next(iter(c.lets))),
    lambda c: c.lets.clear(),
    lambda c: c.lets.update({}),
    lambda c: c.param_shapes.__delitem__("b_i"),
    lambda c: c.param_shapes.__setitem__("W_i", 1),
    lambda c: setattr(c, "name", "oops"),
    lambda c: setattr(c, "state_names", ("h",)),
    lambda c: setattr(c, "gate_biases", ()),              # init_params would not move b_f
    lambda c: setattr(c, "stacked", True),                # stack would refuse it
    lambda c: delattr(c, "doc"),
])
def test_a_catalogue_cell_cannot_be_edited_for_the_whole_session(edit):
    """gradlab.cell("lstm") is one shared object: popping a let dropped a term from every
    later Jacobian, silently; deleting a shape made init_params leave out b_i."""
    cell = gradlab.cell("lstm")
    before = str(cell.jacobian()), dict(cell.param_shapes), cell.name
    with pytest.raises((GradlabError, AttributeError, TypeError), match="fixed once"):
        edit(cell)
    again = gradlab.cell("lstm")
    assert (str(again.jacobian()), dict(again.param_shapes), again.name) == before
    assert sorted(again.init_params(3, 2)) == sorted(before[1])


def test_a_cells_fixed_parts_still_copy_and_pickle():
    import copy
    import pickle
    cell = gradlab.cell("gru")
    assert pickle.loads(pickle.dumps(cell.param_shapes)) == cell.param_shapes
    assert copy.deepcopy(cell.lets) == cell.lets and dict(cell.lets) == cell.lets


def test_what_a_flow_measured_cannot_be_rebound():
    """flow.T = 3 changed rate() and summary()["T"], silently; flow.revrse = True (a typo)
    was taken as if it meant something."""
    params = LSTM.init_params(3, 2, seed=0)
    flow = gradlab.gradient_flow(LSTM, params, F.make_inputs("gaussian", 6, 2, 2, seed=1))
    rate = flow.rate()
    with pytest.raises(GradlabError, match="^a Flow's T is fixed: call gradient_flow again"):
        flow.T = 3
    with pytest.raises(GradlabError, match="^a Flow has no attribute 'revrse'; options are "
                       "given to gradient_flow$"):
        flow.revrse = True
    assert flow.rate() == rate and flow.T == 6 and flow.summary()["T"] == 6


def test_a_flow_of_a_catalogue_cell_pickles_and_measures_the_same():
    """Pickling raised AttributeError: Can't pickle local object 'Bound.lowered.<locals>
    .call'. The lowered code is not pickled; it is lowered again on load."""
    import pickle
    params = LSTM.init_params(3, 2, seed=0)
    flow = gradlab.gradient_flow(LSTM, params, F.make_inputs("gaussian", 6, 2, 2, seed=1))
    fresh = pickle.loads(pickle.dumps(flow))               # before any walk
    assert fresh.rate() == flow.rate()
    np.testing.assert_array_equal(fresh.log_norm("frobenius"), flow.log_norm("frobenius"))
    walked = pickle.loads(pickle.dumps(flow))              # after, with its norms
    np.testing.assert_array_equal(walked.lyapunov(2), flow.lyapunov(2))
