"""Every registered cell, every check: a new cell gets all of these with no new test code.

The reference for the lowered step and Jacobians is `gradlab.verification.oracles`: one hand-written
torch step per cell, differentiated by torch.func.jacrev. Nothing there is derived from
the SymPy declarations, so agreement is evidence, not tautology.
"""

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import BlockMatrix, MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixElement

import gradlab
from gradlab.symbolic.derive import Chain
from gradlab.symbolic.language import m as M_SYMBOL, n as N_SYMBOL
from gradlab.verification.oracles import ORACLES, PARAMS, STATES
from conftest import ALL, SIZES, random_inputs, relative_error, sample_jacobians, size_id

pytestmark = pytest.mark.usefixtures("strict_numpy")

# float64 agrees with autograd to a few ulps (~1e-16) times the handful of terms in an
# entry; 1e-10 leaves six orders of magnitude of margin and still catches any wrong term
# (a wrong term is O(1) relative). float32: ulp 1.2e-7, a few hundred ulps of margin.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


CATALOGUE = ("rnn_tanh rnn_relu prototype_lstm normalized_lstm pseudo_lstm gru gru_torch lstm "
             "peephole_lstm lstm_nig lstm_nfg lstm_nog lstm_niaf lstm_noaf lstm_np lstm_cifg "
             "lstm_fgr minimal_rnn mgu").split()   # the 19 of derivations/README.md, in order


def test_registry_holds_the_catalogue():
    assert len(ALL) == len(set(ALL))
    assert ALL[:len(CATALOGUE)] == CATALOGUE
    assert set(ALL) == set(ORACLES), "every registered cell needs an oracle in gradlab.verification.oracles"
    assert ALL == list(ORACLES), "registry order is catalogue order (derivations/README.md)"


def test_unknown_cell_lists_the_valid_ones():
    with pytest.raises(gradlab.GradlabError) as err:
        gradlab.cell("lstn")
    assert "'lstn'" in str(err.value)
    assert all(name in str(err.value) for name in ALL)


@pytest.mark.parametrize("name", ALL)
def test_names_follow_cells_md(name):
    cell = gradlab.cell(name)
    assert cell.name == name
    assert cell.param_names == PARAMS[name]
    assert cell.state_names == STATES[name]
    assert isinstance(cell.param_names, tuple) and isinstance(cell.state_names, tuple)
    assert cell.source, "every cell names its source"


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("name", ALL)
def test_step_and_jacobians_match_the_oracle(name, size):
    n, m, batch = size
    cell = gradlab.cell(name)
    params, state, x = random_inputs(cell, n, m, batch, seed=n * 100 + m)
    oracle = ORACLES[name]

    new = cell.step_fn("torch")(params, state, x)
    expected = oracle(params, state, x)
    assert isinstance(new, tuple) and len(new) == len(cell.state_names)
    for part, a, b in zip(cell.state_names, new, expected):
        assert a.shape == (batch, n) and a.dtype == torch.float64
        assert relative_error(a, b) <= TOL[torch.float64], f"step, part {part}"

    J_ref, Jx_ref = sample_jacobians(oracle, params, state, x)
    J = cell.jacobian_fn("state", "torch")(params, state, x)
    Jx = cell.jacobian_fn("input", "torch")(params, state, x)
    S = n * len(cell.state_names)
    assert J.shape == (batch, S, S) and Jx.shape == (batch, S, m)
    assert relative_error(J, J_ref) <= TOL[torch.float64]
    assert relative_error(Jx, Jx_ref) <= TOL[torch.float64]


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("name", ALL)
def test_numpy_backend_equals_torch(name, size):
    n, m, batch = size
    cell = gradlab.cell(name)
    params, state, x = random_inputs(cell, n, m, batch, seed=3)
    as_np = lambda t: t.numpy()   # noqa: E731
    np_args = ({k: as_np(v) for k, v in params.items()}, tuple(map(as_np, state)), as_np(x))

    new_np = cell.step_fn("numpy")(*np_args)
    for a, b in zip(new_np, cell.step_fn("torch")(params, state, x)):
        assert isinstance(a, np.ndarray) and a.shape == (batch, n) and a.dtype == np.float64
        assert relative_error(a, b) <= TOL[torch.float64]
    for wrt, width in (("state", n * len(cell.state_names)), ("input", m)):
        J_np = cell.jacobian_fn(wrt, "numpy")(*np_args)
        assert isinstance(J_np, np.ndarray)
        assert J_np.shape == (batch, n * len(cell.state_names), width)
        assert J_np.dtype == np.float64
        assert relative_error(J_np, cell.jacobian_fn(wrt, "torch")(params, state, x)) <= 1e-12


@pytest.mark.parametrize("name", ALL)
def test_jacobian_is_dimension_free(name):
    cell = gradlab.cell(name)
    parts = len(cell.state_names)
    named = {*cell.lets, *cell.state_symbols, cell.input_symbol, *cell.param_symbols}
    for wrt, width in (("state", parts * N_SYMBOL), ("input", M_SYMBOL)):
        J = cell.jacobian(wrt)
        assert sp.simplify(J.shape[0] - parts * N_SYMBOL) == 0, J.shape
        assert sp.simplify(J.shape[1] - width) == 0, J.shape
        # only the size symbols n, m and the cell's own named quantities: no entries
        # W[0, 1], no scalars per unit, nothing that fixes a numeric size
        assert J.free_symbols <= named | {N_SYMBOL, M_SYMBOL}, J.free_symbols - named
        assert not J.atoms(MatrixElement, sp.Indexed, sp.Idx)
        for sym in J.atoms(MatrixSymbol):
            assert set(sym.shape) <= {N_SYMBOL, M_SYMBOL, sp.S.One}, (sym, sym.shape)
        if parts > 1 and wrt == "state":
            assert isinstance(J, BlockMatrix) and J.blockshape == (parts, parts)


@pytest.mark.parametrize("name", ALL)
def test_latex_has_no_dummies(name):
    cell = gradlab.cell(name)
    text = cell.latex()
    assert "Lambda" not in text and "_d" not in text and "Dummy" not in text
    assert text.startswith("$$") and text.rstrip().endswith("$$")
    assert cell._repr_latex_() == text


def _sympy_spelled(cell):
    """Each new state part spelled out from its definition (no let names left)."""
    subs = {}
    for sym, expr in cell.lets.items():
        subs[sym] = expr.xreplace(subs)
    return subs


def _explicit_equal(a, b, sizes=((1, 1), (2, 3))):
    for n_, m_ in sizes:   # entrywise at concrete sizes: exact symbolic entries
        at = {N_SYMBOL: n_, M_SYMBOL: m_}
        A, B_ = a.subs(at).as_explicit(), b.subs(at).as_explicit()
        if A.shape != B_.shape or not (A - B_).applyfunc(sp.expand).is_zero_matrix:
            return False
    return True


@pytest.mark.parametrize("name, wrts", [("rnn_tanh", {"h'": ("h", "x")}),
                                        ("lstm", {"c'": ("c", "h", "x")})],
                         ids=["rnn_tanh", "lstm"])
def test_numerator_layout_agrees_with_sympy_diff(name, wrts):
    """SymPy's own matrix diff answers in denominator layout (rnn_tanh: W.T * diag(...)),
    so its transpose must equal gradlab's numerator-layout block. Where SymPy 1.14's diff
    raises (the LSTM's Hadamard-of-sigmoid pattern wrt h or x: "index is larger than
    expression shape", see README.md, How it works) there is nothing to compare; rnn_tanh must succeed."""
    cell = gradlab.cell(name)
    spelled = _sympy_spelled(cell)
    compared = 0
    for out_name, ins in wrts.items():
        out = cell.symbol(out_name)
        row = [str(o) for o in cell.outputs].index(out_name)
        for wrt in ins:
            wrt_sym = cell.symbol(wrt)
            try:
                theirs = spelled[out].diff(wrt_sym)
            except ValueError:
                assert name != "rnn_tanh"
                continue
            kind_ = "input" if wrt == cell.input_name else "state"
            col = 0 if kind_ == "input" else cell.state_names.index(wrt)
            ours = cell.jacobian_blocks(kind_)[row][col].xreplace(spelled)
            assert _explicit_equal(ours, theirs.T), (out_name, wrt, ours, theirs)
            compared += 1
    assert compared >= (2 if name == "rnn_tanh" else 1)


@pytest.mark.parametrize("name", ALL)
def test_jacobian_fn_is_cached(name):
    cell = gradlab.cell(name)
    for wrt in ("state", "input"):
        for backend in ("torch", "numpy"):
            assert cell.jacobian_fn(wrt, backend) is cell.jacobian_fn(wrt, backend)
        assert cell.step_fn(backend) is cell.step_fn(backend)
    blocks = cell.jacobian_blocks("state")
    assert all(a is b for row, again in zip(blocks, cell.jacobian_blocks("state"))
               for a, b in zip(row, again)), "derived once"
    fresh = [[Chain(cell.lets, s).total(out) for s in cell.state_symbols]
             for out in cell.outputs]
    # what an uncached derivation gives (compared as printed: Lambda dummies are fresh)
    assert [list(map(str, r)) for r in blocks] == [list(map(str, r)) for r in fresh]


def test_bad_wrt_and_backend():
    cell = gradlab.cell("lstm")
    with pytest.raises(gradlab.GradlabError, match="'hidden'.*state, input"):
        cell.jacobian_fn("hidden")
    with pytest.raises(gradlab.GradlabError, match="'jax'.*torch, numpy"):
        cell.jacobian_fn("state", "jax")
    with pytest.raises(gradlab.GradlabError, match="'jax'"):
        cell.step_fn("jax")
    with pytest.raises(gradlab.GradlabError, match="'hidden'"):
        cell.jacobian("hidden")


# -- shape errors: what was received, what was expected ------------------------------------

def _lstm_inputs(n=4, m=3, batch=2):
    cell = gradlab.cell("lstm")
    return (cell, *random_inputs(cell, n, m, batch))


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("what", ["step", "state", "input"])
def test_wrong_x_shape(what, backend):
    cell, params, state, x = _lstm_inputs()
    fn = cell.step_fn(backend) if what == "step" else cell.jacobian_fn(what, backend)
    conv = (lambda t: t.numpy()) if backend == "numpy" else (lambda t: t)
    params = {k: conv(v) for k, v in params.items()}
    state = tuple(map(conv, state))
    for bad in (x[0], x[None]):   # (m,) and (1, B, m): not (B, m)
        with pytest.raises(gradlab.GradlabError) as err:
            fn(params, state, conv(bad))
        msg = str(err.value)
        assert str(tuple(bad.shape)) in msg and "(B, m)" in msg, msg
    # x of the right rank but the wrong batch: named against the state it disagrees with
    with pytest.raises(gradlab.GradlabError) as err:
        fn(params, state, conv(torch.cat([x, x])))
    msg = str(err.value)
    assert "(4, 3)" in msg and "(2, 4)" in msg, msg
    # x with the wrong input size m: named as x's, against U_* (n, m) that no longer fits
    with pytest.raises(gradlab.GradlabError) as err:
        fn(params, state, conv(torch.zeros(2, 5, dtype=torch.float64)))
    msg = str(err.value)
    assert msg.startswith("x has 5 inputs a step (shape (2, 5))") and "(4, 3)" in msg, msg


def test_wrong_state_part_shape():
    cell, params, state, x = _lstm_inputs()
    h, c = state
    with pytest.raises(gradlab.GradlabError) as err:
        cell.jacobian_fn("state")(params, (h, c[:, :3]), x)
    msg = str(err.value)
    assert "'c'" in msg and "(2, 3)" in msg and "(2, 4)" in msg, msg
    with pytest.raises(gradlab.GradlabError) as err:
        cell.step_fn()(params, (h, c[:1]), x)
    msg = str(err.value)
    assert "'c'" in msg and "(1, 4)" in msg and "(2, 4)" in msg, msg


def test_wrong_param_shape():
    cell, params, state, x = _lstm_inputs()
    params = dict(params, W_f=params["W_f"][:, :3])
    with pytest.raises(gradlab.GradlabError) as err:
        cell.jacobian_fn("input")(params, state, x)
    msg = str(err.value)
    assert "'W_f'" in msg and "(4, 3)" in msg and "(4, 4)" in msg, msg
    params = dict(params, W_f=params["W_i"], b_o=params["b_o"][:, None])   # (n, 1) not (n,)
    with pytest.raises(gradlab.GradlabError) as err:
        cell.step_fn()(params, state, x)
    msg = str(err.value)
    assert "'b_o'" in msg and "(4, 1)" in msg and "(4,)" in msg, msg


def test_missing_param():
    cell, params, state, x = _lstm_inputs()
    del params["U_g"]
    with pytest.raises(gradlab.GradlabError) as err:
        cell.jacobian_fn("state")(params, state, x)
    msg = str(err.value)
    assert "U_g" in msg and "lstm" in msg, msg


def test_wrong_number_of_state_parts():
    cell, params, state, x = _lstm_inputs()
    for bad in (state[:1], state + state[:1]):
        with pytest.raises(gradlab.GradlabError) as err:
            cell.jacobian_fn("state")(params, bad, x)
        msg = str(err.value)
        assert f"got {len(bad)}" in msg and "2 part" in msg and "h, c" in msg, msg


def test_verify_refuses_an_unsupported_dtype():
    """verify_cell takes "float32"/"float64" or the torch dtypes; any other is a user error
    (GradlabError naming it), not a KeyError from inside the tolerance table."""
    from gradlab.verification.verify import verify_cell
    for dtype in ("float16", torch.float16, torch.int64):
        with pytest.raises(gradlab.GradlabError) as err:
            verify_cell("rnn_tanh", dtype=dtype)
        assert "float16" in str(err.value) or "int64" in str(err.value)


# -- CUDA: the same checks on the GPU in float32 and float64 -------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_the_oracle(name, dtype):
    torch.backends.cuda.matmul.allow_tf32 = False   # checks need true float32 products
    torch.backends.cudnn.allow_tf32 = False
    cell = gradlab.cell(name)
    n, m, batch = 5, 3, 4
    params, state, x = random_inputs(cell, n, m, batch, seed=11, dtype=dtype, device="cuda")
    oracle = ORACLES[name]
    for a, b in zip(cell.step_fn()(params, state, x), oracle(params, state, x)):
        assert a.device.type == "cuda" and a.dtype == dtype
        assert relative_error(a, b) <= TOL[dtype]
    J_ref, Jx_ref = sample_jacobians(oracle, params, state, x)
    J = cell.jacobian_fn("state")(params, state, x)
    Jx = cell.jacobian_fn("input")(params, state, x)
    assert J.device.type == "cuda" and J.dtype == dtype and Jx.dtype == dtype
    assert relative_error(J, J_ref) <= TOL[dtype]
    assert relative_error(Jx, Jx_ref) <= TOL[dtype]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_verify_passes(dtype):
    from gradlab.verification.verify import verify_cell
    for name in ("rnn_tanh", "lstm", "normalized_lstm", "gru_torch"):
        checks = verify_cell(name, device="cuda", dtype=dtype)
        failed = [c for c in checks if not c.passed]
        assert not failed, failed
