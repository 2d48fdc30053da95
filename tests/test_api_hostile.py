"""Hostile arguments to gradient_flow, Flow and lyapunov are refused as one-line
GradlabErrors, naming the bad value (probe report §12): inputs and state (batch 0, meta,
nested and masked arrays, half-precision params, a scalar param), Flow's own arguments, a
loss vector, a walk too large to fit. What is merely unusual but meaningful (numpy
integers, a loss vector that requires grad) is accepted, and what a flow measured stays
fixed (params changed in place after the call, attributes rebound, a pickled copy).
init_params, to_torch / from_torch, stack, Jacobian indexing and the checks:
test_api_hostile_cells.py."""

import math

import numpy as np
import pytest
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
