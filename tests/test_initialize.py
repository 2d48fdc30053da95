"""`init_params`: shapes, reproducibility, the statistics each scheme promises, gate bias."""

import math

import pytest
import torch

import gradlab
from gradlab import GradlabError
from gradlab.symbolic.language import n as N_SYMBOL
from conftest import ALL

SCHEMES = ("gaussian", "orthogonal", "torch")

# The memory-gate bias of each built-in cell (derivations/conventions.md): '-' where a positive
# gate_bias must be subtracted so that it still means "keep". None: no memory gate.
GATE_BIAS = {
    "rnn_tanh": None, "rnn_relu": None,
    "prototype_lstm": "b_f", "normalized_lstm": "b_f", "pseudo_lstm": "b_f",
    "gru": "b_z", "gru_torch": "b_iz",
    "lstm": "b_f", "peephole_lstm": "b_f", "lstm_nig": "b_f", "lstm_nfg": None,
    "lstm_nog": "b_f", "lstm_niaf": "b_f", "lstm_noaf": "b_f", "lstm_np": "b_f",
    "lstm_cifg": "-b_i", "lstm_fgr": "b_f",
    "minimal_rnn": "b_u", "mgu": "-b_f",
}


def expected_shape(cell, name, n, m):
    rows, cols = cell.param_shapes[name]
    if cols == 1:
        return (n,)
    return (n, n) if cols == N_SYMBOL else (n, m)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", ALL)
def test_shapes_dtype_and_determinism(name, scheme):
    cell = gradlab.cell(name)
    n, m = 3, 2
    scale = {} if scheme == "torch" else {"bias_scale": 0.5}     # torch's takes none
    a = cell.init_params(n, m, init=scheme, **scale, seed=4)
    assert tuple(a) == cell.param_names
    for p, v in a.items():
        assert tuple(v.shape) == expected_shape(cell, p, n, m), p
        assert v.dtype == torch.float64 and v.device.type == "cpu"
        assert torch.isfinite(v).all()
    b = cell.init_params(n, m, init=scheme, **scale, seed=4)
    assert all(torch.equal(a[p], b[p]) for p in a)
    c = cell.init_params(n, m, init=scheme, **scale, seed=5)
    assert not any(torch.equal(a[p], c[p]) for p in a)
    f32 = cell.init_params(n, m, init=scheme, **scale, seed=4, dtype="float32")
    assert all(f32[p].dtype == torch.float32 and torch.equal(f32[p], a[p].float()) for p in a)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm_fgr", "minimal_rnn"])
@pytest.mark.parametrize("ws", [1.0, 0.8, 2.5])
def test_orthogonal_recurrent_matrices(name, ws):
    cell = gradlab.cell(name)
    n = 7
    params = cell.init_params(n, 3, init="orthogonal", weight_scale=ws, seed=1)
    square = [p for p in params if expected_shape(cell, p, n, 3) == (n, n)]
    assert square
    eye = torch.eye(n, dtype=torch.float64)
    for p in square:
        W = params[p]
        # QR in float64: W W^T = ws^2 I to rounding (~1e-15 per entry)
        assert torch.allclose(W @ W.T, ws ** 2 * eye, atol=1e-12, rtol=0), p
        assert torch.allclose(W.T @ W, ws ** 2 * eye, atol=1e-12, rtol=0), p
    # distinct draws, not the same matrix reused
    assert len(square) < 2 or not torch.equal(params[square[0]], params[square[1]])


def test_orthogonal_at_n_1_is_plus_or_minus_scale():
    W = gradlab.cell("rnn_tanh").init_params(1, 1, init="orthogonal", weight_scale=1.5)["W"]
    assert W.abs().item() == pytest.approx(1.5, abs=1e-15)


def _check_normal(v, std, what):
    """Sample mean and std of v against N(0, std^2), with tolerances of about 6 standard
    errors: SE(mean) = std / sqrt(N), SE(sample std) ~= std / sqrt(2 N). A fixed seed makes
    the test deterministic; the margin makes it robust to changing the seed."""
    k = v.numel()
    assert abs(v.mean().item()) <= 6 * std / math.sqrt(k), what
    assert v.std().item() == pytest.approx(std, rel=6 / math.sqrt(2 * k)), what


def test_gaussian_statistics():
    n, m = 600, 300
    ws, ins, bs = 1.7, 0.6, 0.4
    P = gradlab.cell("peephole_lstm").init_params(n, m, weight_scale=ws, input_scale=ins,
                                                    bias_scale=bs, seed=3)
    _check_normal(P["W_f"], ws / math.sqrt(n), "recurrent W ~ N(0, ws^2 / n)")
    _check_normal(P["U_f"], ins / math.sqrt(m), "input U ~ N(0, input_scale^2 / m)")
    biases = torch.cat([P[f"b_{g}"] for g in "zifo"])   # 4 n = 2400 samples
    _check_normal(biases, bs, "bias ~ N(0, bias_scale^2)")
    peepholes = torch.cat([P[f"p_{g}"] for g in "ifo"])
    _check_normal(peepholes, ws, "peephole ~ N(0, ws^2)")


def test_default_bias_is_zero():
    P = gradlab.cell("lstm").init_params(4, 2)
    assert all(torch.equal(P[b], torch.zeros(4, dtype=torch.float64))
               for b in ("b_i", "b_f", "b_g", "b_o"))


def test_orthogonal_keeps_gaussian_inputs_and_biases():
    kwargs = dict(weight_scale=1.3, input_scale=0.7, bias_scale=0.2, seed=8)
    P = gradlab.cell("rnn_tanh").init_params(400, 400, init="orthogonal", **kwargs)
    _check_normal(P["U"], 0.7 / math.sqrt(400), "input U under orthogonal")
    _check_normal(P["b"], 0.2, "bias under orthogonal")


def test_torch_scheme_is_uniform():
    n, m = 500, 300
    P = gradlab.cell("gru_torch").init_params(n, m, init="torch", seed=2)
    bound = 1 / math.sqrt(n)
    for p, v in P.items():
        assert v.abs().max().item() <= bound, p
    W = torch.cat([P[p].flatten() for p in ("W_r", "W_z", "W_n")])
    # U(-a, a): std a / sqrt(3); max near a on 750,000 draws
    _check_normal(W, bound / math.sqrt(3), "torch scheme U(-1/sqrt(n), 1/sqrt(n))")
    assert W.abs().max().item() > 0.999 * bound


@pytest.mark.parametrize("name", ["lstm", "rnn_tanh"])
def test_torch_scheme_bias_is_a_torch_modules_two_biases_summed(name):
    """torch's LSTM and RNN add bias_ih and bias_hh, each U(-1/sqrt(n), 1/sqrt(n)): their
    sum has variance 2 / (3 n), not the 1 / (3 n) of one draw (which this scheme gave)."""
    n = 1000
    cell = gradlab.cell(name)
    P = cell.init_params(n, 8, init="torch", seed=3)
    b = torch.cat([P[p] for p in cell.param_names if p.startswith("b")])
    assert n * b.var().item() == pytest.approx(2 / 3, rel=0.12)
    assert b.abs().max().item() <= 2 / math.sqrt(n)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = torch.nn.LSTMCell(8, n) if name == "lstm" else torch.nn.RNNCell(8, n)
    summed = (module.bias_ih + module.bias_hh).detach()
    assert n * summed.var().item() == pytest.approx(2 / 3, rel=0.12)  # what torch draws


@pytest.mark.parametrize("name", ALL)
def test_gate_bias_lands_on_the_memory_gate(name):
    cell = gradlab.cell(name)
    assert cell.gate_bias == GATE_BIAS[name]
    base = cell.init_params(4, 3, bias_scale=0.3, seed=6)
    shifted = cell.init_params(4, 3, bias_scale=0.3, seed=6, gate_bias=2.0)
    changed = [p for p in base if not torch.equal(base[p], shifted[p])]
    if cell.gate_bias is None:
        assert changed == []
        return
    target = cell.gate_bias.lstrip("-")
    sign = -1.0 if cell.gate_bias.startswith("-") else 1.0
    assert changed == [target]
    assert torch.allclose(shifted[target] - base[target],
                          torch.full((4,), sign * 2.0, dtype=torch.float64), atol=1e-15)
    assert target in cell.param_names and cell.param_shapes[target][1] == 1


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_torch", "minimal_rnn", "mgu",
                                  "lstm_cifg"])
def test_positive_gate_bias_means_keep(name):
    """A large gate bias with zero weights makes the state Jacobian's memory path ~ I."""
    cell = gradlab.cell(name)
    n = 3
    P = cell.init_params(n, 2, gate_bias=30.0, weight_scale=0.0, input_scale=0.0)
    state = tuple(torch.zeros(1, n, dtype=torch.float64) for _ in cell.state_names)
    J = cell.jacobian_fn("state")(P, state, torch.zeros(1, 2, dtype=torch.float64))
    part = cell.state_names.index("c") if "c" in cell.state_names else 0
    block = J[0, part * n:(part + 1) * n, part * n:(part + 1) * n]
    # sigma(30) = 1 - 9e-14: the kept fraction is 1 to 1e-12
    assert torch.allclose(block, torch.eye(n, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("options, needle", [
    ({"init": "xavier"}, "'xavier'"),
    ({"dtype": "float16"}, "'float16'"),
    ({"dtype": "double"}, "'double'"),
], ids=["scheme", "dtype-float16", "dtype-double"])
def test_bad_options(options, needle):
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.cell("lstm").init_params(4, 3, **options)
    assert needle in str(err.value)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool], ids=["int64", "bool"])
def test_non_float_torch_dtype_is_refused(dtype):
    """A torch.dtype passes `as_dtype` as it is; a non-float one would silently truncate
    N(0, s^2) weights to integers, so it must be refused like the string 'int64' is."""
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.cell("rnn_tanh").init_params(4, 3, weight_scale=1.5, dtype=dtype)
    assert str(dtype).removeprefix("torch.") in str(err.value)


@pytest.mark.parametrize("hidden, inputs, bad", [
    (0, 3, "0"), (4, 0, "0"), (-2, 3, "-2"), (2.5, 3, "2.5"), (4, "3", "'3'"), (True, 3, "True")])
def test_bad_sizes(hidden, inputs, bad):
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.cell("lstm").init_params(hidden, inputs)
    msg = str(err.value)
    assert "positive integer" in msg and msg.endswith(f"got {bad}"), msg


@pytest.mark.cuda
def test_init_on_cuda():
    P = gradlab.cell("lstm").init_params(4, 3, seed=2, device="cuda", dtype="float32")
    cpu = gradlab.cell("lstm").init_params(4, 3, seed=2, dtype="float32")
    assert all(v.device.type == "cuda" and torch.equal(v.cpu(), cpu[k]) for k, v in P.items())


def test_torch_init_refuses_a_scale_it_would_ignore():
    """init='torch' returned PyTorch's default draw bit for bit whatever weight_scale,
    bias_scale or input_scale said: a user's scale silently did nothing."""
    lstm = gradlab.cell("lstm")
    for option in ({"weight_scale": 5}, {"bias_scale": 3}, {"input_scale": 0.5}):
        (name, value), = option.items()
        with pytest.raises(GradlabError, match=f"init='torch' .* takes no scale: "
                                               f"{name}={value:g} would change nothing"):
            lstm.init_params(6, 3, init="torch", **option)
    assert lstm.init_params(6, 3, init="torch", weight_scale=1.0, bias_scale=0.0)


def test_init_params_options_are_taken_by_name():
    """A third positional argument (init_params(8, 3, "orthogonal")) raised a bare
    TypeError from Python, where every other misuse is one GradlabError line."""
    with pytest.raises(GradlabError, match="takes its options by name: 'orthogonal' was "
                                           "given third; options: init, weight_scale"):
        gradlab.cell("lstm").init_params(8, 3, "orthogonal")


def test_params_that_overflow_their_dtype_are_refused():
    """gate_bias=1e300 in float32 gave b_z = inf, and a flow of nan, without a word."""
    with pytest.raises(GradlabError, match="init_params: b_z overflows float32 \\(beyond "
                                           "3.4e\\+38\\) at .*gate_bias=1e\\+300"):
        gradlab.cell("gru").init_params(3, 2, gate_bias=1e300, dtype=torch.float32)
    with pytest.raises(GradlabError, match="init_params: W overflows float32"):
        gradlab.cell("rnn_tanh").init_params(3, 2, weight_scale=1e300, dtype="float32")
    assert torch.isfinite(gradlab.cell("gru").init_params(3, 2, gate_bias=1e300)["b_z"]).all()
