"""The lowered variants the gradient-flow engine runs: compacted Jacobian blocks, the step
split by `hoist`, in-place sums and the workspace they write into. Each is checked
against the plain lowered functions (themselves verified against oracles in test_cells)."""

import types

import numpy as np
import pytest
import sympy as sp
import torch

import gradlab
from gradlab import flow as F
from gradlab.lowering import arguments, hoist
from gradlab.lowering import lower
from gradlab.lowering.backends import backend
from gradlab.symbolic.language import mean, sigmoid, tanh
from gradlab.symbolic.structure import diagonal, kind
from conftest import ALL, SIZES, random_inputs, relative_error, sample_jacobians, size_id


def lowered(cell, what):
    return lower.compiled(cell, what, "torch")


def call(cell, what, params, state, x):
    n, m, B, args = arguments.prepare(cell, params, state, x)
    return lowered(cell, what)(n, m, x, *args)


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("name", ALL)
def test_compact_blocks_are_the_blocks(name, size):
    """None where the block is zero, its diagonal where it is diagonal (and it is: nothing
    off the diagonal), the block itself where it is dense."""
    cell = gradlab.cell(name)
    n, m, B = size
    params, state, x = random_inputs(cell, n, m, B, seed=11)
    full = call(cell, "jacobian_state", params, state, x)
    compact = call(cell, "jacobian_state_blocks", params, state, x)
    for a, row in enumerate(cell.jacobian_blocks("state")):
        for b, block in enumerate(row):
            dense = torch.broadcast_to(full[a][b], (B, n, n))
            got = compact[a][b]
            if kind(block) == "zero":
                assert got is None and not dense.any()
            elif kind(block) == "diagonal":
                vector = torch.broadcast_to(got, (B, n, 1))[..., 0]
                assert torch.equal(dense, torch.diag_embed(dense.diagonal(dim1=-2, dim2=-1)))
                assert relative_error(vector, dense.diagonal(dim1=-2, dim2=-1)) < 1e-15
            else:
                assert relative_error(torch.broadcast_to(got, (B, n, n)), dense) < 1e-15


def test_diagonal_of_the_lstm_cell_path_is_f():
    lstm = gradlab.cell("lstm")
    assert diagonal(lstm.jacobian_blocks("state")[1][1]) == lstm.symbol("f")
    with pytest.raises(ValueError, match="not a diagonal block"):
        diagonal(lstm.jacobian_blocks("state")[0][0])


def test_diagonal_of_the_identity_is_the_ones_vector():
    n = sp.Symbol("n", integer=True, positive=True)
    assert diagonal(sp.Identity(n)) == sp.OneMatrix(n, 1)


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("name", ALL)
def test_hoisted_step_is_the_step(name, size):
    """step_hoisted(state, step_inputs(x)) == step(state, x), bit for bit up to the order
    of additions; the part moved out of the loop reads no state."""
    cell = gradlab.cell(name)
    n, m, B = size
    params, state, x = random_inputs(cell, n, m, B, seed=12)
    want = call(cell, "step", params, state, x)
    _, _, _, args = arguments.prepare(cell, params, state, x)
    pargs = args[:len(cell.param_names)]
    plan = hoist.plan(cell)
    pre = {s: torch.broadcast_to(r, (B, *r.shape[-2:])) for s, (r,) in
           zip(plan.carried, lowered(cell, "step_inputs")(n, m, x, *pargs, x[:, :, None]))}
    index = {p: k for k, p in enumerate(cell.param_symbols)}
    stacked = [torch.cat([pre[p] for _, p, _ in st.members], -2) for st in plan.stacks]
    weights = [torch.cat([pargs[index[W]] for W, _, _ in st.members]) for st in plan.stacks]
    got = lowered(cell, "step_hoisted")(n, m, x, *pargs, *(s[:, :, None] for s in state),
                                        *(pre[s] for s in plan.loop), *stacked, *weights)
    for (a,), (b,) in zip(got, want):
        assert relative_error(torch.broadcast_to(a, (B, n, 1)), b) < 1e-15
    numpy = lower.compiled(cell, "step_hoisted", "numpy")   # the numpy backend's stacks
    as_np = [a.numpy() if isinstance(a, torch.Tensor) else a for a in
             (*pargs, *(s[:, :, None] for s in state), *(pre[s] for s in plan.loop),
              *stacked, *weights)]
    with np.errstate(all="ignore"):
        for (a,), (b,) in zip(numpy(n, m, x.numpy(), *as_np), want):
            assert relative_error(np.array(np.broadcast_to(a, (B, n, 1))), b) < 1e-15
    states = set(cell.state_symbols)
    for _, expr in plan.before:
        assert not expr.free_symbols & states


def test_lstm_input_projections_move_out_of_the_loop():
    lstm = gradlab.cell("lstm")
    plan = hoist.split(lstm)
    assert [str(e) for _, e in plan.before] == ["U_i*x + b_i", "U_f*x + b_f", "U_g*x + b_g",
                                                "U_o*x + b_o"]
    assert plan.carried == [s for s, _ in plan.before]
    assert str(plan.lets[lstm.symbol("i")]) == "Lambda(_d, sigmoid(_d)).(W_i*h + pre0)"
    body = lower.source(lstm, "step_hoisted").split("\n", 1)[1]   # after the signature
    assert "matmul(v_U" not in body and "xp.matmul(" not in body      # the gates: stacked


def test_gate_products_on_one_state_part_are_stacked():
    """W_k s + pre_k on one state part s, two or more: one Stack, its members in the
    order the lets read them; a product on a let (the GRU's W (r * h)), one with no pre
    (torch's GRU: W_n h + b_hn) or a lone one (the tanh RNN) stays as it is."""
    def members(name):
        plan = hoist.plan(gradlab.cell(name))
        return [(str(st.operand), [(str(W), str(p)) for W, p, _ in st.members])
                for st in plan.stacks]

    assert members("lstm") == [("h", [("W_i", "pre0"), ("W_f", "pre1"), ("W_g", "pre2"),
                                      ("W_o", "pre3")])]
    assert members("gru") == [("h", [("W_r", "pre0"), ("W_z", "pre1")])]
    assert members("gru_torch") == [("h", [("W_r", "pre0"), ("W_z", "pre1")])]
    assert members("rnn_tanh") == [] and members("minimal_rnn") == []
    assert [W for _, m in members("lstm_fgr") for W, _ in m] == ["W_z", "W_i", "W_f", "W_o"]
    gru = hoist.plan(gradlab.cell("gru"))
    assert members("prototype_lstm")[0][1][0] == ("W_i", "pre0")
    assert [str(s) for s in gru.loop] == ["pre2"]                 # W (r * h) + pre2
    assert str(gru.stacks[0].weight.shape) == "(2*n, n)"
    body = lower.source(gradlab.cell("gru_torch"), "step_hoisted")
    assert "xp.matmul(v_W_n, v_h)" in body and body.count("xp.affine(") == 1


def test_a_let_of_the_input_alone_moves_out_whole():
    """The minimal RNN's z = tanh(U x + b_z) reads no state: computed before the loop,
    and V z + b_u with it."""
    cell = gradlab.cell("minimal_rnn")
    plan = hoist.split(cell)
    assert [str(s) for s, _ in plan.before] == ["z", "pre0"]
    assert str(plan.before[1][1]) == "V*z + b_u"
    assert [str(s) for s in plan.carried] == ["z", "pre0"]


def test_scaled_sum_prints_for_sums_of_row_scaled_matrices():
    src = lower.source(gradlab.cell("lstm"), "jacobian_state_blocks")
    assert src.count("xp.scaled_sum(") == 2
    assert "xp.eye" not in src                         # diagonal blocks stay vectors


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_scaled_sum_is_the_sum(name):
    rng = np.random.default_rng(0)
    v, u = rng.standard_normal((2, 4, 3, 1))
    A, C = rng.standard_normal((2, 3, 3))
    M = rng.standard_normal((4, 3, 3))
    want = v * A + u * M + C
    xp = backend(name)
    args = [torch.as_tensor(a) for a in (v, A, u, M, C)] if name == "torch" else [v, A, u, M, C]
    got = xp.scaled_sum((args[0], args[1]), (args[2], args[3]), (None, args[4]))
    assert tuple(got.shape) == (4, 3, 3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15, atol=1e-15)
    first = xp.scaled_sum((None, args[4]), (args[0], args[1]))       # a plain matrix first
    np.testing.assert_allclose(np.asarray(first), C + v * A, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("shapes", [[(4, 3, 1), (3, 3)], [(1, 3, 1), (4, 1, 3), (3, 3)],
                                    [(0, 3, 1), (3, 3)], [(2, 1, 3, 1), (5, 3, 3)]])
def test_torch_scaled_sum_broadcasts_as_torch_does(shapes):
    terms = [(None, torch.ones(s, dtype=torch.float64)) for s in shapes]
    got = backend("torch").scaled_sum(*terms)
    assert got.shape == torch.broadcast_shapes(*shapes)
    assert bool((got == len(shapes)).all())


def test_torch_scaled_sum_refuses_shapes_that_do_not_broadcast():
    terms = [(None, torch.ones(2, 3)), (None, torch.ones(4, 3))]
    with pytest.raises(RuntimeError):
        backend("torch").scaled_sum(*terms)


def test_workspace_hands_out_the_same_arrays_after_reset():
    ws = F.Workspace()
    a = ws.empty((2, 3), dtype=torch.float64, device="cpu")
    b = ws.empty((4,), dtype=torch.float64, device="cpu")
    assert a.data_ptr() != b.data_ptr()
    ws.reset()
    assert ws.empty((3, 2), dtype=torch.float64, device="cpu").data_ptr() == a.data_ptr()
    assert ws.empty((2, 2), dtype=torch.float64, device="cpu").data_ptr() == b.data_ptr()
    ws.reset()
    bigger = ws.empty((5, 5), dtype=torch.float64, device="cpu")      # outgrows: replaced
    assert bigger.shape == (5, 5) and bigger.data_ptr() != a.data_ptr()
    ws.reset()
    other = ws.empty((2, 3), dtype=torch.float32, device="cpu")       # another dtype
    assert other.dtype == torch.float32


@pytest.mark.parametrize("name", ["lstm", "peephole_lstm", "gru", "normalized_lstm"])
def test_bound_blocks_are_right_call_after_call(name):
    """The workspace is reused: each call's blocks are right when it returns, whatever
    the calls before it computed."""
    cell = gradlab.cell(name)
    n, m, B = 4, 3, 2
    params, _, _ = random_inputs(cell, n, m, B, seed=13)
    bound = F.Bound(cell, params, *random_inputs(cell, n, m, B, seed=14)[1:])
    for seed in (15, 16, 17):
        _, state, x = random_inputs(cell, n, m, B, seed=seed)
        full = call(cell, "jacobian_state", params, state, x)
        J = bound.jacobian("state", state, x, torch.empty(B, bound.S, bound.S,
                                                           dtype=torch.float64))
        want = torch.cat([torch.cat([torch.broadcast_to(b, (B, n, n)) for b in row], -1)
                          for row in full], -2)
        assert relative_error(J, want) < 1e-15


@gradlab.declare(state="h", params="W W_g U U_g b", source="a test cell")
def two_inputs(s):
    """h' = tanh(W h + U x + b) + sigmoid(U_g x) * (W_g h): both Jacobians are sums of
    row-scaled weights (d h' / d x = diag(.) U + diag(.) U_g), each lowered to one
    in-place sum in a workspace."""
    return tanh(s.W @ s.h + s.U @ s.x + s.b) + sigmoid(s.U_g @ s.x) * (s.W_g @ s.h)


def test_input_jacobian_survives_a_state_jacobian_call():
    """Each lowered Jacobian has its own workspace: the input Jacobian of a one-part cell
    (a view into its workspace) is not overwritten by the state Jacobian computed next,
    though with m >= n the state Jacobian's sum would fit in the same array."""
    cell = two_inputs
    n, m, B = 3, 6, 2
    params, state, x = random_inputs(cell, n, m, B, seed=18)
    bound = F.Bound(cell, params, state, x)
    assert "return [[xp.scaled_sum(" in lower.source(cell, "jacobian_input")
    assert "return [[xp.scaled_sum(" in lower.source(cell, "jacobian_state")
    K = bound.jacobian("input", state, x, torch.empty(B, n, m, dtype=torch.float64))
    want = K.clone()
    _, other, y = random_inputs(cell, n, m, B, seed=19)
    bound.jacobian("state", other, y)
    assert torch.equal(K, want)
    full = call(cell, "jacobian_input", params, state, x)[0][0]
    assert relative_error(K, torch.broadcast_to(full, (B, n, m))) < 1e-15


@gradlab.declare(state="h", params="W U b", source="a test cell")
def input_gain(s):
    """h' = mu(U x) (tanh(W h + b) + h): a scalar let that reads the input alone, and a
    state Jacobian with a scalar times the identity in it."""
    u = s.let("u", s.U @ s.x)
    return tanh(s.W @ s.h + s.b) * mean(u) + s.h * mean(u)


def test_a_scalar_let_of_the_input_moves_out_of_the_loop():
    plan = hoist.split(input_gain)
    assert [str(s) for s, _ in plan.before] == ["u", "mu_u"]
    assert [str(s) for s in plan.carried] == ["mu_u"]
    n, m, B = 4, 3, 2
    params, state, x = random_inputs(input_gain, n, m, B, seed=20)
    _, _, _, args = arguments.prepare(input_gain, params, state, x)
    pargs = args[:len(input_gain.param_names)]
    (pre,), = lowered(input_gain, "step_inputs")(n, m, x, *pargs, x[:, :, None])
    (got,), = lowered(input_gain, "step_hoisted")(n, m, x, *pargs, state[0][:, :, None], pre)
    (want,), = call(input_gain, "step", params, state, x)
    assert relative_error(got, want) < 1e-15


def test_scalar_times_identity_in_a_jacobian():
    """d (c h) / d h = c I for a scalar c: once a ValueError ("mul() needs at least one
    matrix factor") when the chain rule dropped the identity and nothing was left."""
    (block,), = input_gain.jacobian_blocks("state")
    assert "mu_u*I" in str(block)
    n, m, B = 4, 3, 2
    params, state, x = random_inputs(input_gain, n, m, B, seed=21)
    want, _ = sample_jacobians(input_gain.step_fn("torch"), params, state, x)
    got = input_gain.jacobian_fn("state", "torch")(params, state, x)
    assert relative_error(got, want) < 1e-14


def test_the_input_itself_is_carried_into_the_loop():
    """Where x enters a state-dependent term bare (x * h), the loop takes x as it is."""
    n = sp.Symbol("n", integer=True, positive=True)
    h, x, W = sp.MatrixSymbol("h", n, 1), sp.MatrixSymbol("x", n, 1), sp.MatrixSymbol("W", n, n)
    out = sp.MatrixSymbol("h'", n, 1)
    cell = types.SimpleNamespace(input_symbol=x, state_symbols=(h,), param_symbols=(W,),
                                 lets={out: W * h + x + sp.hadamard_product(x, h)},
                                 outputs=(out,))
    plan = hoist.split(cell)
    assert plan.before == [] and plan.carried == [x]
    assert plan.lets[out] == cell.lets[out]


def test_a_scalar_parameter_times_a_state_part_is_no_gate_product():
    """a h + U x + b, a a scalar parameter, beside a state part's other gates: left as it
    is (a stack of it would need a weight matrix a scalar does not have)."""
    @gradlab.declare(state="h", params={"W": "n n", "V": "n n", "U": "n m", "b": "n",
                                        "a": "1"}, source="a test cell")
    def scalar_gate(s):
        f = s.let("f", sigmoid(s.a * s.h + s.U @ s.x + s.b))
        g = s.let("g", sigmoid(s.V @ s.h + s.U @ s.x))
        return f * s.h + (1 - f) * g * tanh(s.W @ s.h + s.U @ s.x)

    plan = hoist.plan(scalar_gate)
    assert [str(W) for W, _, _ in plan.stacks[0].members] == ["V", "W"]
    params = scalar_gate.init_params(3, 2, seed=0)
    xs = torch.randn(5, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    states = F.run_states(scalar_gate, params, xs)
    step, s = scalar_gate.step_fn("torch"), torch.zeros(2, 3, dtype=torch.float64)
    for t in range(5):
        (s,) = step(params, (s,), xs[t])
    assert relative_error(states[0][-1], s) < 1e-14
