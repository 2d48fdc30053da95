"""Hostile arguments to the Python API's cells are refused as one-line GradlabErrors, naming
the bad value (probe report §12): init_params, to_torch / from_torch, stack (of an unknown
cell, a stack, a cell that never reads its input), block-Jacobian indexing, len and subs
of a Jacobian, check_lyapunov and verify_cell. A catalogue cell cannot be edited for the
whole session, and its fixed parts still copy and pickle."""

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


def refused(match, fn, *args, **kwargs):
    with pytest.raises(GradlabError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return err.value


def re_repr(value):
    return repr(value).replace(".", r"\.")


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
