"""Stacked and bidirectional torch modules through `from_torch`, against the module itself.

The oracle is torch.func.jacrev of the torch module (its fused kernels) run one step from
a given stacked state; gradlab's Jacobian is the stacked cell's, derived symbolically from
the layer cell's equations (gradlab.symbolic.stack) and lowered. float64, every block.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

import gradlab
from gradlab.flow.module import TorchStep, prepare
from gradlab.symbolic.stack import stack
from conftest import relative_error

TOL = 1e-12
N, M, B = 16, 8, 3

STACKS = {
    "LSTM-3": lambda: nn.LSTM(M, N, num_layers=3),
    "GRU-3": lambda: nn.GRU(M, N, num_layers=3),
    "RNN-3": lambda: nn.RNN(M, N, num_layers=3),
    "RNN-relu-2-nobias": lambda: nn.RNN(M, N, num_layers=2, nonlinearity="relu", bias=False),
    "LSTM-2-nobias-batchfirst": lambda: nn.LSTM(M, N, num_layers=2, bias=False,
                                                batch_first=True),
    "GRU-1-bidirectional": lambda: nn.GRU(M, N, bidirectional=True),
    "LSTM-1-bidirectional": lambda: nn.LSTM(M, N, bidirectional=True),
}


def _make(factory, seed=0):
    torch.manual_seed(seed)
    return factory().double()


def module_step(module, direction="forward"):
    """The torch module's own step as flat state (B, S) , x (B, m) -> flat new state, the
    state in gradlab's stacked order (h1, c1, h2, c2, ...) of the chosen direction."""
    lstm = isinstance(module, nn.LSTM)
    parts, L = (2 if lstm else 1), module.num_layers
    dirs = 2 if module.bidirectional else 1
    pick = 1 if direction == "backward" else 0

    def step(flat, x):
        Bn = flat.shape[0]
        chunks = flat.view(Bn, L, parts, N)                   # [b, layer, part, unit]
        full = []
        for p in range(parts):
            s = chunks[:, :, p].transpose(0, 1)                  # (L, B, n)
            if dirs == 2:                                        # the other direction: 0
                z = torch.zeros_like(s)
                s = torch.stack([z, s] if pick else [s, z], 1).reshape(L * 2, Bn, N)
            full.append(s)
        seq = x[:, None] if module.batch_first else x[None]
        _, last = module(seq, tuple(full) if lstm else full[0])
        last = last if lstm else (last,)
        new = [t.view(L, dirs, Bn, N)[:, pick] for t in last]    # (L, B, n) per part
        return torch.stack(new, 2).transpose(0, 1).reshape(Bn, -1)
    return step


def torch_jacobians(module, state, x, direction="forward"):
    """(d s'/d s, d s'/d x) per sample by jacrev of the whole batch (vmap cannot run the
    fused RNN kernels), the cross-sample blocks dropped."""
    step = module_step(module, direction)
    flat = torch.cat(state, -1)
    return tuple(torch.diagonal(jacrev(step, argnums=a)(flat, x), dim1=0, dim2=2)
                 .permute(2, 0, 1) for a in (0, 1))


def _random(cell, seed=1):
    gen = torch.Generator().manual_seed(seed)
    state = tuple(torch.randn(B, N, generator=gen, dtype=torch.float64)
                  for _ in cell.state_names)
    return state, torch.randn(B, M, generator=gen, dtype=torch.float64)


def block_errors(cell, J, ref):
    """Relative error of every (out part, in part) block, by name."""
    parts = cell.state_names
    return {(a, b): relative_error(J[:, i * N:(i + 1) * N, j * N:(j + 1) * N],
                                   ref[:, i * N:(i + 1) * N, j * N:(j + 1) * N])
            for i, a in enumerate(parts) for j, b in enumerate(parts)}


@pytest.mark.parametrize("key", list(STACKS))
def test_stacked_jacobian_matches_jacrev_of_the_module(key):
    module = _make(STACKS[key])
    directions = ("forward", "backward") if module.bidirectional else (None,)
    for direction in directions:
        cell, params = gradlab.from_torch(module, direction=direction)
        layers = module.num_layers
        parts = 2 if isinstance(module, nn.LSTM) else 1
        assert len(cell.state_names) == layers * parts
        state, x = _random(cell)
        J_ref, Jx_ref = torch_jacobians(module, state, x, direction or "forward")
        J = cell.jacobian_fn("state")(params, state, x)
        errors = block_errors(cell, J, J_ref)
        assert max(errors.values()) <= TOL, errors
        assert relative_error(cell.jacobian_fn("input")(params, state, x), Jx_ref) <= TOL
        new = cell.step_fn()(params, state, x)
        with torch.no_grad():
            ref = module_step(module, direction or "forward")(torch.cat(state, -1), x)
        assert relative_error(torch.cat(new, -1), ref) <= TOL


def test_cross_layer_blocks_by_name():
    cell, _ = gradlab.from_torch(_make(STACKS["LSTM-3"]))
    assert cell.state_names == ("h1", "c1", "h2", "c2", "h3", "c3")
    assert cell is stack(gradlab.cell("lstm"), 3)
    J = cell.jacobian()
    assert "U_f2" in str(J["h2", "c1"]) and "f1" in str(J["h2", "c1"])   # through h1'
    assert "U_o3" in str(J["c3", "h1"]) or "U_f3" in str(J["c3", "h1"])
    assert J["h1", "h2"].is_ZeroMatrix and J["c1", "c3"].is_ZeroMatrix   # no feedback down
    assert "diag(f2)" == str(J["c2", "c2"])


def test_stacked_flow_runs_the_module_forward_and_reverse():
    module = _make(STACKS["GRU-1-bidirectional"])
    xs = torch.randn(12, B, M, dtype=torch.float64)
    with torch.no_grad():
        out, _ = module(xs)
    for direction, half in (("forward", out[..., :N]), ("backward", out[..., N:])):
        cell, params = gradlab.from_torch(module, direction=direction)
        flow = gradlab.gradient_flow(cell, params, xs, reverse=direction == "backward")
        h = flow.states[0][1:]
        assert relative_error(h.flip(0) if flow.reverse else h, half) <= 1e-12
        assert flow.log_norm("spectral").shape == (B, 12)

    module = _make(STACKS["LSTM-3"])
    cell, params = gradlab.from_torch(module)
    flow = gradlab.gradient_flow(cell, params, xs)
    with torch.no_grad():
        out, _ = module(xs)
    assert relative_error(flow.states[4][1:], out) <= 1e-12            # h3 is the output
    assert flow.block_log_norm("h3", "c1").shape == (B, 12)
    assert flow.symbolic is True


def test_bidirectional_needs_a_direction():
    with pytest.raises(gradlab.GradlabError, match="direction") as err:
        gradlab.from_torch(nn.GRU(M, N, bidirectional=True))
    assert "\n" not in str(err.value)
    with pytest.raises(gradlab.GradlabError, match="direction") as err:
        gradlab.from_torch(nn.LSTM(M, N, num_layers=2, bidirectional=True))
    assert "\n" not in str(err.value)
    with pytest.raises(gradlab.GradlabError, match="bidirectional"):
        gradlab.from_torch(nn.LSTM(M, N), direction="backward")
    # num_layers > 1: each direction its own flow, reading the other's outputs as input
    cell, params = gradlab.from_torch(nn.LSTM(M, N, num_layers=2, bidirectional=True),
                                      direction="forward")
    assert cell is stack(gradlab.cell("lstm"), 2, exogenous=True)
    assert params["U_f2_x"].shape == (N, M + N)         # proj_size, more: test_torch_models.py


# -- the fallback: any module with a recurrent step, by jacrev -------------------------------

class ElmanStep(nn.Module):
    """rnn_tanh written as a plain module step: (x, h) -> tanh(W h + U x + b)."""

    def __init__(self, m, n):
        super().__init__()
        self.U, self.W = nn.Linear(m, n), nn.Linear(n, n, bias=False)
        self.state0 = torch.zeros(n)

    def forward(self, x, h):
        return torch.tanh(self.W(h) + self.U(x))


class UnequalParts(nn.Module):
    """A state of two parts of different sizes (5 and 3), which no gradlab cell declares."""

    def __init__(self, m):
        super().__init__()
        self.a, self.b = nn.Linear(m + 8, 5), nn.Linear(5 + 3, 3)

    def forward(self, x, state):
        h, c = state
        h = torch.tanh(self.a(torch.cat([x, h, c], -1)))
        return h, 0.9 * c + 0.1 * torch.sigmoid(self.b(torch.cat([h, c], -1)))


def test_module_flow_matches_the_symbolic_flow_of_the_same_cell():
    torch.manual_seed(0)
    module = ElmanStep(M, N).double()
    params = {"W": module.W.weight.detach(), "U": module.U.weight.detach(),
              "b": module.U.bias.detach()}
    xs = torch.randn(20, B, M, dtype=torch.float64)
    by_jacrev = gradlab.gradient_flow(module, xs)
    exact = gradlab.gradient_flow("rnn_tanh", params, xs)
    assert by_jacrev.symbolic is False and exact.symbolic is True
    assert "not symbolic" in repr(by_jacrev) and "jacrev" in repr(by_jacrev)
    for kind in ("spectral", "frobenius"):
        assert abs(by_jacrev.log_norm(kind) - exact.log_norm(kind)).max() <= 1e-10
    assert abs(by_jacrev.rate() - exact.rate()) <= 1e-10
    a, b = by_jacrev.loss_grad_norms(log=True), exact.loss_grad_norms(log=True)
    assert abs(a["input"] - b["input"]).max() <= 1e-10
    assert abs(by_jacrev.lyapunov(3) - exact.lyapunov(3)).max() <= 1e-10


def test_module_flow_with_unequal_state_parts_against_brute_force_products():
    torch.manual_seed(1)
    module = UnequalParts(M).double()
    xs = torch.randn(6, 2, M, dtype=torch.float64)
    state0 = (torch.zeros(2, 5, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64))
    flow = gradlab.gradient_flow(module, xs, state0=state0)
    assert flow.S == 8 and flow.parts == ("state",)

    def run(s, t0):                       # s_{t0} (8,) -> s_T, one sequence (0)
        h, c = s[:5][None], s[5:][None]
        for t in range(t0, 6):
            h, c = module(xs[t, :1], (h, c))
        return torch.cat([h, c], -1)[0]
    for k in (1, 3, 6):
        s = flow.states[0][6 - k, 0]
        P = jacrev(run)(s, 6 - k)
        assert abs(flow.log_norm("spectral")[0, k - 1]
                   - torch.linalg.matrix_norm(P, 2).log().item()) <= 1e-10


def test_module_flow_of_a_projected_lstm_and_torch_modules():
    torch.manual_seed(2)
    module = nn.LSTM(M, N, num_layers=2, proj_size=4).double()
    xs = torch.randn(5, B, M, dtype=torch.float64)
    flow = gradlab.gradient_flow(TorchStep(module), xs)     # torch's own step, by jacrev
    assert flow.symbolic is False and flow.S == 2 * 4 + 2 * N
    with torch.no_grad():
        out, _ = module(xs)
    h2 = flow.states[0][1:, :, 4:8]                              # h of layer 2
    assert relative_error(h2, out) <= 1e-12
    assert flow.rate() < 0
    exact = gradlab.gradient_flow(module, xs)           # declared: lstm_proj, zero padded
    assert exact.symbolic is True and exact.parts == ("h1", "c1", "h2", "c2")
    assert relative_error(exact.states[2][1:, :, :4], out) <= 1e-12
    for kind in ("spectral", "frobenius"):
        assert abs(exact.log_norm(kind) - flow.log_norm(kind)).max() <= 1e-10

    gru = _make(STACKS["GRU-3"])                        # torch's own: symbolic
    flow = gradlab.gradient_flow(gru, xs)
    assert flow.symbolic is True and flow.parts == ("h1", "h2", "h3")
    with pytest.raises(gradlab.GradlabError, match="TorchStep") as err:
        prepare(gru, xs, None, False)
    assert "\n" not in str(err.value)


def test_module_flow_refuses_in_one_line():
    module = UnequalParts(M).double()
    xs = torch.randn(4, 2, M, dtype=torch.float64)
    with pytest.raises(gradlab.GradlabError, match="state0") as err:
        gradlab.gradient_flow(module, xs)
    assert "\n" not in str(err.value)
    with pytest.raises(gradlab.GradlabError, match="failed at step 1") as err:
        gradlab.gradient_flow(module, xs, state0=torch.zeros(2, 8, dtype=torch.float64))
    assert "\n" not in str(err.value)
    with pytest.raises(gradlab.GradlabError, match="protocol"):
        gradlab.gradient_flow(lambda_module(), xs, state0=torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(gradlab.GradlabError, match="own weights"):
        gradlab.gradient_flow(module, {}, xs)


class _Shrinks(nn.Module):
    def forward(self, x, h):
        return h[:, :3]


def lambda_module():
    return _Shrinks()


def test_a_stacked_let_keeps_its_power_and_tilde_after_the_layer_number():
    """layer_name put the layer after the ^: r^2 became r^21, r^22 (powers 21 and 22), and
    a let h~ could not be stacked at all ('h~1' is not a name)."""
    from gradlab.symbolic.stack import layer_name
    assert [layer_name(n, 2) for n in ("W_i", "c'", "r^2", "h~", "n~'")] == [
        "W_i2", "c2'", "r2^2", "h2~", "n2~'"]

    def tilded(s):
        h = s.let("h~", gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b))
        return 0.5 * h + 0.5 * s.h

    cell = gradlab.declare(state="h", params="W U b", source="t", name="tilded")(tilded)
    shown = str(gradlab.stack(cell, 2).equations())
    assert "h1~ = tanh(W1 h1 + U1 x + b1)" in shown and "h2~ = tanh(" in shown


def test_gate_bias_reaches_every_layer_of_a_stack():
    """init_params(gate_bias=5) on a 3-layer LSTM moved b_f1 alone: layers 2 and 3 kept
    forgetting at the rate of gate bias 0. Every layer's gate bias moves, with its sign
    (the CIFG's forget gate is 1 - i: b_i goes down); a cell without one is unchanged."""
    st = gradlab.stack("lstm", 3)
    before, after = st.init_params(4, 3), st.init_params(4, 3, gate_bias=5.0)
    moved = sorted(k for k in after if not torch.equal(after[k], before[k]))
    assert moved == ["b_f1", "b_f2", "b_f3"]
    assert all(torch.allclose(after[k] - before[k], torch.full_like(after[k], 5.0))
               for k in moved)
    cifg = gradlab.stack("lstm_cifg", 2)
    low, high = cifg.init_params(4, 3), cifg.init_params(4, 3, gate_bias=1.0)
    assert all(torch.allclose(high[k] - low[k], torch.full_like(low[k], -1.0))
               for k in ("b_i1", "b_i2"))
    rnn = gradlab.cell("rnn_tanh")
    assert all(torch.equal(a, b) for a, b in zip(rnn.init_params(4, 3).values(),
                                                  rnn.init_params(4, 3, gate_bias=1.0).values()))


def test_a_stack_pickles_as_the_same_stack_and_a_flow_of_a_torch_stack_pickles():
    """A stack, and so a Flow of a two-layer torch LSTM, could not be pickled at all
    (joblib, multiprocessing and caches of results failed); a stack is made again from
    its layer cell and layer count, and is the same cached Cell."""
    import pickle
    for made in (gradlab.stack("gru", 2), gradlab.stack("lstm", 3, name="deep"),
                 gradlab.stack("lstm", 2, exogenous=True)):
        assert pickle.loads(pickle.dumps(made)) is made
    module = torch.nn.LSTM(3, 4, num_layers=2).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = gradlab.gradient_flow(module, xs)
    again = pickle.loads(pickle.dumps(flow))
    assert again.cell is flow.cell
    assert np.array_equal(again.log_norm(), flow.log_norm())