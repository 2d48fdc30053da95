"""`from_torch`: a torch recurrent module as a gradlab cell, checked against the module itself.

The reference is the module's own forward (torch's fused RNN kernels) and torch.func.jacrev
of it; gradlab's step and lowered Jacobians come from the mapped parameters alone.
"""

import pytest
import torch
from torch import nn

import gradlab
from gradlab.interop import state_sizes
from gradlab.verification.oracles import PARAMS
from conftest import relative_error, sample_jacobians

TOL = 1e-10   # float64 against torch's kernels; see test_cells.py
N, M, B = 5, 3, 4


def _make(factory, seed):
    torch.manual_seed(seed)       # torch's own default init, reproducibly
    return factory().double()


MODULES = {
    "RNNCell-tanh": (lambda: nn.RNNCell(M, N), "rnn_tanh"),
    "RNNCell-relu": (lambda: nn.RNNCell(M, N, nonlinearity="relu"), "rnn_relu"),
    "RNNCell-nobias": (lambda: nn.RNNCell(M, N, bias=False), "rnn_tanh"),
    "RNN-relu": (lambda: nn.RNN(M, N, nonlinearity="relu"), "rnn_relu"),
    "LSTMCell": (lambda: nn.LSTMCell(M, N), "lstm"),
    "LSTMCell-nobias": (lambda: nn.LSTMCell(M, N, bias=False), "lstm"),
    "LSTM-nobias-batchfirst": (lambda: nn.LSTM(M, N, bias=False, batch_first=True), "lstm"),
    "GRUCell": (lambda: nn.GRUCell(M, N), "gru_torch"),
    "GRUCell-nobias": (lambda: nn.GRUCell(M, N, bias=False), "gru_torch"),
    "GRU-1layer": (lambda: nn.GRU(M, N), "gru_torch"),
}
# stacked (num_layers > 1) and bidirectional modules: tests/test_stacked.py


def module_step(module, other):
    """(state tuple of (B, n), x (B, m)) -> new state tuple of layer 0, forward direction,
    computed by the module itself; `other` holds the initial state of every other layer."""
    lstm = isinstance(module, (nn.LSTM, nn.LSTMCell))

    def step(state, x):
        if isinstance(module, nn.RNNCellBase):
            out = module(x, tuple(state) if lstm else state[0])
            return tuple(out) if lstm else (out,)
        seq = x[:, None] if module.batch_first else x[None]      # one time step
        full = tuple(torch.cat([s[None], o], 0) for s, o in zip(state, other))
        _, last = module(seq, full if lstm else full[0])
        last = last if lstm else (last,)
        return tuple(t[0] for t in last)                        # layer 0, forward
    return step


@pytest.mark.parametrize("key", list(MODULES))
def test_from_torch_matches_the_module(key):
    factory, expected_name = MODULES[key]
    module = _make(factory, seed=len(key))
    cell, params = gradlab.from_torch(module)
    assert cell is gradlab.cell(expected_name)
    assert tuple(params) == PARAMS[expected_name] == cell.param_names
    assert all(v.dtype == torch.float64 for v in params.values())

    gen = torch.Generator().manual_seed(1)
    parts = len(cell.state_names)
    state = tuple(torch.randn(B, N, generator=gen, dtype=torch.float64) for _ in range(parts))
    x = torch.randn(B, M, generator=gen, dtype=torch.float64)
    layers = getattr(module, "num_layers", 1) * (2 if getattr(module, "bidirectional",
                                                                False) else 1)
    other = tuple(torch.randn(layers - 1, B, N, generator=gen, dtype=torch.float64)
                  for _ in range(parts))
    step = module_step(module, other)

    with torch.no_grad():
        reference = step(state, x)
    for a, b in zip(cell.step_fn()(params, state, x), reference):
        assert relative_error(a, b) <= TOL

    # jacrev of the whole batch: vmap cannot run torch's fused RNN kernels
    J, Jx = sample_jacobians(lambda _, s, xs: step(s, xs), None, state, x, batched=True)
    assert relative_error(cell.jacobian_fn("state")(params, state, x), J) <= TOL
    assert relative_error(cell.jacobian_fn("input")(params, state, x), Jx) <= TOL


def test_weights_are_copied_not_shared():
    module = nn.LSTMCell(M, N).double()
    _, params = gradlab.from_torch(module)
    before = {k: v.clone() for k, v in params.items()}
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    assert all(torch.equal(params[k], before[k]) for k in params)
    assert not any(v.requires_grad for v in params.values())


def test_float32_module_gives_float32_params():
    _, params = gradlab.from_torch(nn.GRUCell(M, N))
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in params.values())


def test_issue_command():
    c, p = gradlab.from_torch(torch.nn.LSTMCell(3, 5).double())
    assert c.name == "lstm"
    assert sorted(p) == sorted(PARAMS["lstm"])
    assert p["W_i"].shape == (5, 5) and p["U_i"].shape == (5, 3) and p["b_i"].shape == (5,)


def test_proj_size_maps_to_the_padded_projected_lstm():
    cell, params = gradlab.from_torch(nn.LSTM(M, N, proj_size=2).double())
    assert cell.name == "lstm_proj" and cell.param_names == PARAMS["lstm"] + ("W_r",)
    assert params["W_r"].shape == (N, N) and bool((params["W_r"][2:] == 0).all())
    assert params["W_i"].shape == (N, N) and bool((params["W_i"][:, 2:] == 0).all())
    assert state_sizes(nn.LSTM(M, N, proj_size=2)) == {"h": 2, "c": N}
    # the Jacobians against torch: tests/test_torch_models.py


@pytest.mark.parametrize("factory", [lambda: nn.Linear(3, 4), lambda: nn.Conv1d(3, 4, 2),
                                     lambda: nn.Sequential(nn.Linear(3, 4))],
                         ids=["Linear", "Conv1d", "Sequential"])
def test_unsupported_module_is_refused(factory):
    module = factory()
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.from_torch(module)
    assert type(module).__name__ in str(err.value) and "nn.LSTM" in str(err.value)
