"""Closed forms pinned symbolically, and the exact facts of derivations/theory.md §3.

Symbolic equalities are checked two ways: structurally, after putting the commutative nodes
(sums, Hadamard products) of both sides in a canonical order, which holds for every n; and
entrywise at concrete sizes via `as_explicit()`, which is exact (no floating point).
"""

import pytest
import sympy as sp
import torch
from torch.func import jacrev
from sympy import (BlockMatrix, HadamardPower, HadamardProduct, Identity, MatAdd, MatMul,
                   MatrixSymbol, OneMatrix, ZeroMatrix)
from sympy.matrices.expressions.diagonal import DiagMatrix

import gradlab
from gradlab.symbolic.language import m as M_SYMBOL, n as N_SYMBOL
from gradlab.symbolic.structure import kind
from conftest import random_inputs, relative_error

pytestmark = pytest.mark.usefixtures("strict_numpy")

# Exact facts computed two ways in float64 differ only by rounding: a few ulps of O(1)
# quantities. 1e-12 is four orders above that and far below any real discrepancy.
EXACT = 1e-12


def canonical(expr):
    """expr with the arguments of every commutative node (sums, Hadamard products) sorted."""
    if not isinstance(expr, sp.Basic) or not expr.args or isinstance(expr, sp.MatrixSymbol):
        return expr
    args = [canonical(a) for a in expr.args]
    if isinstance(expr, (MatAdd, HadamardProduct)):
        args.sort(key=sp.default_sort_key)
        return type(expr)(*args)
    return expr.func(*args)


def same_everywhere(a, b, sizes=(1, 2, 3)):
    """a == b entrywise at the given hidden sizes (m = 2): an exact symbolic check."""
    for k in sizes:
        at = {N_SYMBOL: k, M_SYMBOL: 2}
        diff = (a.subs(at).as_explicit() - b.subs(at).as_explicit()).applyfunc(sp.expand)
        if not diff.is_zero_matrix:
            return False
    return True


def vanishes_with(expr, p):
    """Is expr zero whenever the vector p is zero, by the Hadamard/product rules alone?"""
    if expr == p:
        return True
    if isinstance(expr, (HadamardProduct, MatMul)):
        return any(vanishes_with(a, p) for a in expr.args if isinstance(a, sp.MatrixExpr))
    if isinstance(expr, DiagMatrix):
        return vanishes_with(expr.args[0], p)
    if isinstance(expr, MatAdd):
        return all(vanishes_with(a, p) for a in expr.args)
    return False


# -- closed forms ---------------------------------------------------------------------------

def test_rnn_tanh_jacobian_is_diag_one_minus_h_squared_times_W():
    cell = gradlab.cell("rnn_tanh")
    W, h_new = cell.symbol("W"), cell.symbol("h'")
    expected = DiagMatrix(OneMatrix(N_SYMBOL, 1) - HadamardPower(h_new, 2)) * W
    J = cell.jacobian()["h", "h"].expr         # the one block of a one-part state
    assert J.shape == (N_SYMBOL, N_SYMBOL)
    assert canonical(J) == canonical(expected), f"{J} != {expected}"
    assert same_everywhere(J, expected)
    # and through the definition of h', against tanh' written out
    U, b, h, x = (cell.symbol(s) for s in ("U", "b", "h", "x"))
    pre = W * h + U * x + b
    spelled = DiagMatrix(OneMatrix(N_SYMBOL, 1) - HadamardPower(pre.applyfunc(sp.tanh), 2)) * W
    assert same_everywhere(J.xreplace({h_new: cell.lets[h_new]}), spelled, sizes=(1, 2))


def test_rnn_tanh_input_jacobian():
    cell = gradlab.cell("rnn_tanh")
    expected = DiagMatrix(OneMatrix(N_SYMBOL, 1) - HadamardPower(cell.symbol("h'"), 2)) * \
        cell.symbol("U")
    assert canonical(cell.jacobian("input")["h", "x"].expr) == canonical(expected)


def test_lstm_state_jacobian_is_two_by_two_with_diag_f_on_the_cell_path():
    cell = gradlab.cell("lstm")
    J = cell.jacobian("state")
    assert isinstance(J, BlockMatrix) and J.blockshape == (2, 2)
    assert J.shape == (2 * N_SYMBOL, 2 * N_SYMBOL)
    # rows (h', c'), columns (h, c): the (c', c) block is diag(f), nothing else
    assert J.blocks[1, 1] == DiagMatrix(cell.symbol("f"))
    assert kind(J.blocks[1, 1]) == "diagonal"
    assert kind(J.blocks[0, 0]) == "dense" and kind(J.blocks[1, 0]) == "dense"
    # h' = o * tanh(c'): d h'/d c = diag(o * (1 - tanh(c')^2)) diag(f), diagonal
    assert kind(J.blocks[0, 1]) == "diagonal"
    Jx = cell.jacobian("input")
    assert isinstance(Jx, BlockMatrix) and Jx.blockshape == (2, 1)


def test_lstm_fgr_has_five_by_five_blocks():
    cell = gradlab.cell("lstm_fgr")
    J = cell.jacobian("state")
    assert isinstance(J, BlockMatrix) and J.blockshape == (5, 5)
    assert J.shape == (5 * N_SYMBOL, 5 * N_SYMBOL)
    assert cell.jacobian("input").blockshape == (5, 1)


@pytest.mark.parametrize("name", gradlab.cells())
def test_block_grid_matches_state_parts(name):
    cell = gradlab.cell(name)
    k = len(cell.state_names)
    blocks = cell.jacobian_blocks("state")
    assert len(blocks) == k and all(len(row) == k for row in blocks)
    assert all(b.shape == (N_SYMBOL, N_SYMBOL) for row in blocks for b in row)
    assert all(row[0].shape == (N_SYMBOL, M_SYMBOL) for row in cell.jacobian_blocks("input"))


# -- theory.md §3: lstm_np and lstm are the same function ------------------------------------

LSTM_NP = {f"{kind_}_{g_np}": f"{kind_}_{g}" for kind_ in "WUb"
           for g_np, g in (("z", "g"), ("i", "i"), ("f", "f"), ("o", "o"))}


@pytest.mark.parametrize("size", [(1, 1, 1), (3, 2, 2), (6, 4, 3)])
def test_lstm_np_equals_lstm_under_the_parameter_map(size):
    n, m, batch = size
    lstm, np_ = gradlab.cell("lstm"), gradlab.cell("lstm_np")
    assert sorted(LSTM_NP) == sorted(np_.param_names)
    assert sorted(LSTM_NP.values()) == sorted(lstm.param_names)
    params, state, x = random_inputs(lstm, n, m, batch, seed=5 + n)
    mapped = {p: params[q] for p, q in LSTM_NP.items()}
    for a, b in zip(np_.step_fn()(mapped, state, x), lstm.step_fn()(params, state, x)):
        assert relative_error(a, b) <= EXACT
    for wrt in ("state", "input"):
        assert relative_error(np_.jacobian_fn(wrt)(mapped, state, x),
                              lstm.jacobian_fn(wrt)(params, state, x)) <= EXACT


def commuted(e):
    """e as a string in which the arguments of every commutative operation are sorted (and
    a Lambda's dummy is unnamed): equal for expressions that are the same terms and
    factors in another order."""
    if isinstance(e, sp.Lambda):
        return type(e).__name__ + str(e.expr.func)
    if not e.args:
        return str(e)
    kids = [commuted(a) for a in e.args]
    if isinstance(e, (MatAdd, HadamardProduct, sp.Add, sp.Mul)):
        kids.sort()
    return f"{type(e).__name__}({', '.join(kids)})"


@pytest.mark.parametrize("wrt", ["state", "input"])
def test_lstm_np_and_lstm_have_one_jacobian_symbolically(wrt):
    """Exact in the symbols: every block of lstm's Jacobian, its names mapped to
    lstm_np's, is lstm_np's block (the same terms; SymPy orders them by name, so the
    lowered sums add them in another order and agree numerically to rounding only)."""
    lstm, np_ = gradlab.cell("lstm"), gradlab.cell("lstm_np")
    names = {q: p for p, q in LSTM_NP.items()} | {"g": "z"}
    for row_a, row_b in zip(lstm.jacobian_blocks(wrt), np_.jacobian_blocks(wrt)):
        for a, b in zip(row_a, row_b):
            mapped = a.xreplace({s: MatrixSymbol(names.get(s.name, s.name), *s.shape)
                                 for s in a.atoms(MatrixSymbol)})
            assert commuted(mapped) == commuted(b)
    assert commuted(lstm.jacobian_blocks(wrt)[0][0]) != commuted(np_.jacobian_blocks(wrt)[0][0])


# -- theory.md §3: the constant error carousel -----------------------------------------------

def test_lstm_nfg_cell_path_is_identity_symbolically_when_p_i_is_zero():
    cell = gradlab.cell("lstm_nfg")
    block = cell.jacobian_blocks("state")[1][1]          # d c' / d c
    terms = block.args if isinstance(block, MatAdd) else (block,)
    assert Identity(N_SYMBOL) in terms, block
    p_i = cell.symbol("p_i")
    rest = [t for t in terms if t != Identity(N_SYMBOL)]
    assert all(vanishes_with(t, p_i) for t in rest), block
    zeroed = block.xreplace({p_i: ZeroMatrix(N_SYMBOL, 1)})
    assert same_everywhere(zeroed, Identity(N_SYMBOL))


@pytest.mark.parametrize("size", [(1, 1, 1), (5, 3, 4)])
def test_lstm_nfg_cell_path_is_identity_numerically_when_p_i_is_zero(size):
    n, m, batch = size
    cell = gradlab.cell("lstm_nfg")
    params, state, x = random_inputs(cell, n, m, batch, seed=2)
    params["p_i"] = torch.zeros_like(params["p_i"])
    J = cell.jacobian_fn("state")(params, state, x)
    eye = torch.eye(n, dtype=torch.float64).expand(batch, n, n)
    assert torch.equal(J[:, n:, n:], eye)           # exactly: 1 + 0, no rounding
    # with the peephole on, the carousel leaks: the block is no longer I
    params["p_i"] = torch.full_like(params["p_i"], 0.7)
    J = cell.jacobian_fn("state")(params, state, x)
    assert not torch.allclose(J[:, n:, n:], eye)


# -- theory.md §3: zero recurrent weights make the gate products exact -----------------------

def _zero_recurrent(cell, params):
    """Every n x n matrix that reads the state zero (W_*; R_*). minimal_rnn's V is n x n
    but maps z = tanh(U x + b_z), the input side, so it stays."""
    keep = {"V"} if cell.name == "minimal_rnn" else set()
    return {k: torch.zeros_like(v)
            if cell.param_shapes[k] == (N_SYMBOL, N_SYMBOL) and k not in keep else v
            for k, v in params.items()}


def _lin(x, U):
    return x @ U.T


GATE_PRODUCTS = {
    # cell: (state block rows/cols, the gate vector from params and x with W = 0)
    "lstm": (1, lambda P, x: torch.sigmoid(_lin(x, P["U_f"]) + P["b_f"])),
    "gru": (0, lambda P, x: torch.sigmoid(_lin(x, P["U_z"]) + P["b_z"])),
    "gru_torch": (0, lambda P, x: torch.sigmoid(_lin(x, P["U_z"]) + P["b_iz"] + P["b_hz"])),
}


def _minimal_u(P, x):
    z = torch.tanh(_lin(x, P["U"]) + P["b_z"])
    return torch.sigmoid(_lin(z, P["V"]) + P["b_u"])


GATE_PRODUCTS["minimal_rnn"] = (0, _minimal_u)


@pytest.mark.parametrize("size", [(1, 1, 1), (4, 3, 2), (7, 2, 3)])
@pytest.mark.parametrize("name", list(GATE_PRODUCTS))
def test_zero_recurrent_weights_give_diag_gate(name, size):
    n, m, batch = size
    cell = gradlab.cell(name)
    params, state, x = random_inputs(cell, n, m, batch, seed=17)
    params = _zero_recurrent(cell, params)
    part, gate = GATE_PRODUCTS[name]
    g = gate(params, x)                                    # (B, n)
    J = cell.jacobian_fn("state")(params, state, x)
    block = J[:, part * n:(part + 1) * n, part * n:(part + 1) * n]
    assert relative_error(block, torch.diag_embed(g)) <= EXACT
    off = block - torch.diag_embed(torch.diagonal(block, dim1=-2, dim2=-1))
    assert torch.equal(off, torch.zeros_like(off))      # no weight matrix: exactly diagonal
    if name == "lstm":    # nothing reaches h' or c' from h when every W is zero
        assert torch.equal(J[:, :, :n], torch.zeros_like(J[:, :, :n]))


@pytest.mark.parametrize("name", list(GATE_PRODUCTS))
def test_zero_recurrent_weights_chain_is_the_gate_power(name):
    """Constant input, zero recurrent weights: d s_T / d s_{T-k} on the memory path is
    diag(gate)^k, the product of per-step Jacobians taken along a real trajectory."""
    n, m, batch, steps = 3, 2, 2, 6
    cell = gradlab.cell(name)
    params, state, x = random_inputs(cell, n, m, batch, seed=23)
    params = _zero_recurrent(cell, params)
    part, gate = GATE_PRODUCTS[name]
    g = gate(params, x)
    S = n * len(cell.state_names)
    product = torch.eye(S, dtype=torch.float64).expand(batch, S, S)
    step, jac = cell.step_fn(), cell.jacobian_fn("state")
    for k in range(1, steps + 1):
        product = jac(params, state, x) @ product
        state = step(params, state, x)
        block = product[:, part * n:(part + 1) * n, part * n:(part + 1) * n]
        assert relative_error(block, torch.diag_embed(g ** k)) <= EXACT, k


# -- normalized_lstm: the variance couples every unit (rank-one part) -----------------------

def test_normalized_lstm_symbolic_jacobian_has_a_rank_one_part():
    J = gradlab.cell("normalized_lstm").jacobian("state")
    assert kind(J) == "rank-one coupled"
    assert J.atoms(OneMatrix), "the coupling is written with the all-ones vector"


@pytest.mark.parametrize("n", [2, 5])
def test_normalized_lstm_is_dense_even_with_zero_weights(n):
    cell = gradlab.cell("normalized_lstm")
    m, batch = 3, 2
    params, state, x = random_inputs(cell, n, m, batch, seed=31)
    params = {k: torch.zeros_like(v) if k.startswith(("W", "U")) else v
              for k, v in params.items()}
    J = cell.jacobian_fn("state")(params, state, x)
    off = J - torch.diag_embed(torch.diagonal(J, dim1=-2, dim2=-1))
    assert off.abs().amax(dim=(-2, -1)).min() > 1e-3, "not diagonal in any sample"
    # the closed form: s' = r / sqrt(v + 1), r = f * s + i * tanh(b) (all weights zero),
    # d s'/d s = (I - r (r - mean r)^T / (n (v + 1))) diag(f) / sqrt(v + 1)
    sig = torch.sigmoid
    f, i = sig(params["b_f"]), sig(params["b_i"])
    (s,) = state
    r = f * s + i * torch.tanh(params["b"])
    centred = r - r.mean(-1, keepdim=True)
    v = (centred ** 2).mean(-1, keepdim=True)[..., None]                 # (B, 1, 1)
    eye = torch.eye(n, dtype=torch.float64)
    expected = (eye - r[:, :, None] * centred[:, None, :] / (n * (v + 1))) * f / torch.sqrt(v + 1)
    assert relative_error(J, expected) <= EXACT


# -- rnn_relu: relu'(0) = 0, as torch takes it ----------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_relu_slope_at_zero_is_zero(backend):
    cell = gradlab.cell("rnn_relu")
    n, m = 3, 2
    params = {k: torch.zeros_like(v) for k, v in cell.init_params(n, m).items()}
    params["W"] = torch.eye(n, dtype=torch.float64)
    state = (torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64),)   # pre-activation 0, 1, -1
    x = torch.zeros(1, m, dtype=torch.float64)
    args = (params, state, x)
    if backend == "numpy":
        args = ({k: v.numpy() for k, v in params.items()}, (state[0].numpy(),), x.numpy())
    J = torch.as_tensor(cell.jacobian_fn("state", backend)(*args))
    assert torch.equal(J[0], torch.diag(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)))
    reference = jacrev(lambda h: torch.relu(h))(state[0][0])
    assert torch.equal(J[0], reference)


def test_a_diagonal_times_a_sum_of_diagonals_is_diagonal():
    """The peephole LSTM's ∂h'/∂c is diag(.) (diag(.) + diag(.) + diag(f)): read term by
    term it was called dense, and the documents said it 'multiplies the gradient by weight
    matrices' (nine blocks across the LSTM variants). Its lowered diagonal is exact."""
    import torch
    from gradlab.symbolic.structure import kind

    @gradlab.declare(state="c", params={"p": "n", "U": "n m"}, source="test")
    def elementwise(s):
        r = s.let("r", gradlab.sigmoid(s.p * s.c) * s.c + s.U @ s.x)
        return gradlab.tanh(r)
    assert elementwise.jacobian()["c", "c"].kind == "diagonal"
    for name in ("peephole_lstm", "lstm_nig", "lstm_cifg", "lstm_fgr"):
        J = gradlab.cell(name).jacobian()
        assert J["h", "c"].kind == "diagonal", name
    J = gradlab.cell("peephole_lstm").jacobian_fn("state")
    cell = gradlab.cell("peephole_lstm")
    params = cell.init_params(4, 3, seed=0)
    state = (torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64))
    x = torch.randn(2, 3, dtype=torch.float64)
    block = J(params, state, x)[:, :4, 4:]                       # ∂h'/∂c
    assert torch.count_nonzero(block - torch.diag_embed(block.diagonal(dim1=1, dim2=2))) == 0
    step = lambda c: cell.step_fn()(params, (state[0], c), x)[0]          # noqa: E731
    exact = torch.func.jacrev(step)(state[1])                            # (2, 4, 2, 4)
    exact = torch.stack([exact[b, :, b] for b in range(2)])
    assert torch.allclose(block, exact, rtol=1e-13, atol=1e-15)
    assert kind(gradlab.cell("lstm").jacobian()["h", "h"]) == "dense"
