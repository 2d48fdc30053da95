"""proj_size and bidirectional stacks through `from_torch`, against torch's own kernels.

The oracle is torch.func.jacrev of a step written here from torch modules alone: the whole
module run one time step (one direction), or, for a bidirectional stack, each layer of the
chosen direction as its own one-layer torch module with that layer's weights, the other
direction's layer outputs an input held fixed. gradlab's Jacobians come from the cells
derived symbolically (lstm_proj, stack(..., exogenous=True)) and lowered. float64.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

import gradlab
from gradlab.flow.module import TorchStep
from gradlab.interop import direction_inputs, state_sizes
from conftest import relative_error

TOL = 1e-12
N, M, B = 16, 8, 3


def _make(factory, seed=0):
    torch.manual_seed(seed)
    return factory().double()


PROJ = {
    "LSTM-proj3-1": lambda: nn.LSTM(M, N, proj_size=3),
    "LSTM-proj5-1-nobias": lambda: nn.LSTM(M, N, proj_size=5, bias=False),
    "LSTM-proj5-3": lambda: nn.LSTM(M, N, num_layers=3, proj_size=5),
    "LSTM-proj4-3-nobias-batchfirst": lambda: nn.LSTM(M, N, num_layers=3, proj_size=4,
                                                      bias=False, batch_first=True),
    "LSTM-proj6-2-batchfirst": lambda: nn.LSTM(M, N, num_layers=2, proj_size=6,
                                               batch_first=True),
}

BIDIRECTIONAL = {
    "LSTM-2": lambda: nn.LSTM(M, N, num_layers=2, bidirectional=True),
    "LSTM-3-nobias-batchfirst": lambda: nn.LSTM(M, N, num_layers=3, bidirectional=True,
                                                bias=False, batch_first=True),
    "GRU-2": lambda: nn.GRU(M, N, num_layers=2, bidirectional=True),
    "GRU-3": lambda: nn.GRU(M, N, num_layers=3, bidirectional=True),
    "RNN-tanh-2": lambda: nn.RNN(M, N, num_layers=2, bidirectional=True),
    "RNN-relu-3-nobias": lambda: nn.RNN(M, N, num_layers=3, bidirectional=True,
                                        nonlinearity="relu", bias=False),
    "LSTM-proj4-2": lambda: nn.LSTM(M, N, num_layers=2, bidirectional=True, proj_size=4),
    "LSTM-proj3-3-batchfirst": lambda: nn.LSTM(M, N, num_layers=3, bidirectional=True,
                                               proj_size=3, batch_first=True),
    "LSTM-proj5-1": lambda: nn.LSTM(M, N, bidirectional=True, proj_size=5),
}


def _parts(module):
    return 2 if isinstance(module, nn.LSTM) else 1


def _p(module):
    return getattr(module, "proj_size", 0) or N


def torch_layer(module, k, direction):
    """Layer k (from 0), one direction, as a one-layer one-way torch module of the same
    kind holding that layer's weights: torch computes the layer's step."""
    suffix = f"_l{k}" + ("_reverse" if direction == "backward" else "")
    kind = next(c for c in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(module, c))
    options = {"nonlinearity": module.nonlinearity} if kind is nn.RNN else {}
    if _p(module) != N:
        options["proj_size"] = _p(module)
    width = getattr(module, f"weight_ih{suffix}").shape[1]
    one = kind(width, N, bias=module.bias, **options).double()
    with torch.no_grad():
        for name, value in one.named_parameters():
            value.copy_(getattr(module, name.replace("_l0", suffix)))
    return one


def direction_step(module, direction="forward"):
    """(flat state (B, S) in gradlab's order h1, c1, h2, ... each padded to N, x' (B, m')) ->
    flat new state: the module's step in one direction, the other direction's layer
    outputs (x'[:, M:], p per layer) fixed. A one-way module is run whole, one time step."""
    L, parts, p = module.num_layers, _parts(module), _p(module)
    lstm = parts == 2

    def pad(t):
        return torch.cat([t, t.new_zeros(*t.shape[:-1], N - t.shape[-1])], -1)

    def whole(flat, x):                          # a one-way module: its own fused step
        s = flat.view(-1, L, parts, N).transpose(0, 1)                # (L, B, parts, N)
        hx = (s[:, :, 0, :p].contiguous(), s[:, :, 1].contiguous()) if lstm else \
            s[:, :, 0].contiguous()
        seq = x[:, None] if module.batch_first else x[None]
        _, last = module(seq, hx)
        last = last if lstm else (last,)
        new = [pad(last[0])] + list(last[1:])                         # (L, B, N) each
        return torch.stack(new, 2).transpose(0, 1).reshape(flat.shape[0], -1)

    layers = [torch_layer(module, k, direction) for k in range(L)]

    def layered(flat, xw):
        s = flat.view(-1, L, parts, N)
        x, others = xw[:, :M], xw[:, M:].split(p, 1) if L > 1 else ()
        inp, new = x, []
        for k, layer in enumerate(layers):
            if k > 0:        # torch's concat: forward h first, backward h second
                pair = [inp, others[k - 1]]
                inp = torch.cat(pair if direction == "forward" else pair[::-1], -1)
            hx = (s[None, :, k, 0, :p], s[None, :, k, 1]) if lstm else s[None, :, k, 0]
            _, last = layer(inp[None], hx)
            last = last if lstm else (last,)
            inp = last[0][0]
            new += [pad(inp)] + [t[0] for t in last[1:]]
        return torch.cat(new, -1)

    return layered if module.bidirectional else whole


def torch_jacobians(step, flat, x):
    """(d s'/d s, d s'/d x) per sample, by jacrev of the whole batch (torch's fused
    kernels do not vmap), the cross-sample blocks dropped."""
    return tuple(torch.diagonal(jacrev(step, argnums=a)(flat, x), dim1=0, dim2=2)
                 .permute(2, 0, 1) for a in (0, 1))


def _state(cell, module, seed=1):
    """A random state, zero where h is padding (as every reachable state is)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = state_sizes(module)
    parts = []
    for name in cell.state_names:
        s = torch.randn(B, N, generator=gen, dtype=torch.float64)
        s[:, sizes[name]:] = 0
        parts.append(s)
    return tuple(parts), gen


def check_step(module, direction):
    """Max relative errors (step, J state, J input) of from_torch's cell against the
    oracle, and that padded rows and columns of J are exactly zero."""
    cell, params = gradlab.from_torch(module, direction=direction)
    state, gen = _state(cell, module)
    width = params[next(q for q in cell.param_names if q.startswith("U"))].shape[1]   # m'
    x = torch.randn(B, width, generator=gen, dtype=torch.float64)
    flat = torch.cat(state, -1)
    step = direction_step(module, direction or "forward")
    J_ref, Jx_ref = torch_jacobians(step, flat, x)
    J = cell.jacobian_fn("state")(params, state, x)
    Jx = cell.jacobian_fn("input")(params, state, x)
    with torch.no_grad():
        new_ref = step(flat, x)
    errors = (relative_error(torch.cat(cell.step_fn()(params, state, x), -1), new_ref),
              relative_error(J, J_ref), relative_error(Jx, Jx_ref))
    sizes = state_sizes(module)
    pad = torch.cat([torch.arange(N) >= sizes[q] for q in cell.state_names])
    assert torch.all(J[:, pad] == 0) and torch.all(J[:, :, pad] == 0)
    assert torch.all(Jx[:, pad] == 0)
    return cell, errors


@pytest.mark.parametrize("key", list(PROJ))
def test_proj_size_jacobian_matches_jacrev_of_the_module(key):
    module = _make(PROJ[key])
    cell, errors = check_step(module, None)
    layers = module.num_layers
    assert cell.name == ("lstm_proj" if layers == 1 else f"lstm_proj_x{layers}")
    assert max(errors) <= TOL, errors
    assert len(cell.state_names) == 2 * layers


@pytest.mark.parametrize("key", list(BIDIRECTIONAL))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_bidirectional_stack_jacobian_matches_jacrev(key, direction):
    module = _make(BIDIRECTIONAL[key])
    cell, errors = check_step(module, direction)
    assert max(errors) <= TOL, errors
    assert len(cell.state_names) == module.num_layers * _parts(module)


@pytest.mark.parametrize("key", ["LSTM-3-nobias-batchfirst", "GRU-2", "LSTM-proj3-3-batchfirst"])
def test_each_direction_runs_as_the_module_does(key):
    """Over a sequence: each direction's top h is that half of the module's output, and its
    lower layers' h are what the other direction reads of it in direction_inputs."""
    module = _make(BIDIRECTIONAL[key])
    L, p, parts = module.num_layers, _p(module), _parts(module)
    xs = torch.randn(9, B, M, dtype=torch.float64)
    with torch.no_grad():
        out, _ = module(xs.transpose(0, 1) if module.batch_first else xs)
    out = out.transpose(0, 1) if module.batch_first else out
    flows, wide = {}, {}
    for direction, half in (("forward", out[..., :p]), ("backward", out[..., p:])):
        cell, params = gradlab.from_torch(module, direction=direction)
        wide[direction] = direction_inputs(module, xs, direction)
        assert wide[direction].shape == (9, B, M + (L - 1) * p)
        assert torch.equal(wide[direction][..., :M], xs)
        flow = gradlab.gradient_flow(cell, params, wide[direction],
                                     reverse=direction == "backward")
        flows[direction] = [s[1:].flip(0) if flow.reverse else s[1:] for s in flow.states]
        assert relative_error(flows[direction][(L - 1) * parts][..., :p], half) <= TOL
        by_module = gradlab.gradient_flow(module, xs, reverse=direction == "backward")
        assert by_module.symbolic and by_module.cell is cell
        assert np.array_equal(by_module.log_norm("frobenius"), flow.log_norm("frobenius"))
    for direction, other in (("forward", "backward"), ("backward", "forward")):
        for k in range(L - 1):
            seen = wide[other][..., M + k * p:M + (k + 1) * p]
            assert relative_error(flows[direction][k * parts][..., :p], seen) <= TOL


@pytest.mark.parametrize("key, reverse", [("LSTM-proj5-3", False),
                                          ("LSTM-proj4-3-nobias-batchfirst", False),
                                          ("LSTM-proj3-1", False), ("LSTM-proj5-1", True)])
def test_projected_flow_norms_match_the_module_by_jacrev(key, reverse):
    """The padded symbolic flow and torch's unpadded one (jacrev of the module's own step,
    TorchStep) have the same per-lag spectral and Frobenius norms."""
    module = _make({**PROJ, **BIDIRECTIONAL}[key])
    xs = torch.randn(14, B, M, dtype=torch.float64)
    direction = ("backward" if reverse else "forward") if module.bidirectional else None
    cell, params = gradlab.from_torch(module, direction=direction)
    exact = gradlab.gradient_flow(cell, params, xs, reverse=reverse)
    by_jacrev = gradlab.gradient_flow(TorchStep(module, direction or "forward"), xs,
                                      reverse=reverse)
    assert exact.symbolic and not by_jacrev.symbolic
    L, p = module.num_layers, _p(module)
    assert exact.S == 2 * N * L and by_jacrev.S == (p + N) * L
    for kind in ("spectral", "frobenius"):
        assert np.abs(exact.log_norm(kind) - by_jacrev.log_norm(kind)).max() <= 1e-10, kind
    assert abs(exact.rate() - by_jacrev.rate()) <= 1e-10
    h = exact.states[0][1:]                   # h1: torch's p entries, then zeros
    assert torch.all(h[..., p:] == 0)
    assert relative_error(h[..., :p], by_jacrev.states[0][1:, :, :p]) <= TOL


def test_projected_cell_is_declared_and_its_params_padded():
    module = _make(PROJ["LSTM-proj5-3"])
    cell, params = gradlab.from_torch(module)
    assert state_sizes(module) == {"h1": 5, "c1": N, "h2": 5, "c2": N, "h3": 5, "c3": N}
    assert "W_r2" in str(cell.jacobian()["h2", "c2"])
    assert params["W_r1"].shape == (N, N)
    assert torch.equal(params["W_r1"][:5], module.weight_hr_l0)
    assert torch.all(params["W_r1"][5:] == 0)
    assert torch.equal(params["W_i1"][:, :5], module.weight_hh_l0[:N])
    assert torch.all(params["W_i1"][:, 5:] == 0) and torch.all(params["U_o3"][:, 5:] == 0)
    assert torch.equal(params["U_o3"][:, :5], module.weight_ih_l2[3 * N:])
    with pytest.raises(gradlab.GradlabError, match="torch ships") as err:
        gradlab.to_torch(cell, params)
    assert "\n" not in str(err.value)


def test_bidirectional_params_split_the_input_weights():
    module = _make(BIDIRECTIONAL["LSTM-proj3-3-batchfirst"])
    for direction, own, other in (("forward", slice(0, 3), slice(3, 6)),
                                  ("backward", slice(3, 6), slice(0, 3))):
        cell, params = gradlab.from_torch(module, direction=direction)
        assert cell.name == "lstm_proj_x3_bidir"
        rev = "_reverse" if direction == "backward" else ""
        w = getattr(module, f"weight_ih_l2{rev}")[:N]                  # gate i of layer 3
        assert torch.equal(params["U_i3"][:, :3], w[:, own])
        assert torch.all(params["U_i3"][:, 3:] == 0)
        wide = params["U_i3_x"]
        assert wide.shape == (N, M + 2 * 3)
        assert torch.equal(wide[:, M + 3:], w[:, other])             # layer 2's other half
        assert torch.all(wide[:, :M + 3] == 0)
        assert torch.equal(params["U_i1"][:, :M], getattr(module, f"weight_ih_l0{rev}")[:N])
        assert torch.all(params["U_i1"][:, M:] == 0)


def test_direction_inputs_refuses_in_one_line():
    module = _make(BIDIRECTIONAL["GRU-2"])
    for call, needle in ((lambda: direction_inputs(module, torch.zeros(4, 2, M + 1), "forward"),
                          r"expected \(T, B, 8\)"),
                         (lambda: direction_inputs(module, torch.zeros(4, 2, M), None),
                          "direction"),
                         (lambda: direction_inputs(nn.GRUCell(M, N), torch.zeros(4, 2, M),
                                                   "forward"), "cell module"),
                         (lambda: gradlab.from_torch(module), "direction")):
        with pytest.raises(gradlab.GradlabError, match=needle) as err:
            call()
        assert "\n" not in str(err.value)
    xs = torch.randn(4, 2, M, dtype=torch.float64)
    one_way = _make(PROJ["LSTM-proj5-3"])
    assert torch.equal(direction_inputs(one_way, xs, "forward"), xs)
    before = torch.random.get_rng_state()
    direction_inputs(module, xs, "backward")
    assert torch.equal(torch.random.get_rng_state(), before)       # the user's draws untouched
