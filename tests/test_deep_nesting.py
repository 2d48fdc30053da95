"""A declaration that reuses a value nests it: e = e + tanh(W e), unrolled d times in one
expression, holds each e twice in the next, so written out it is 2^d long while it holds
only O(d) distinct subexpressions. Deriving, checking and lowering it read each distinct
subexpression once (12 levels took 16 s and 16 over 100 s, each level doubling: every
subexpression was derived, and its symbols read, once per occurrence); printing it, which
must write it out, is refused in one line past a million nodes, naming s.let.

No timing here: 20 and 30 levels are out of reach of anything exponential (2^20 and 2^30
occurrences), so that these tests finish at all is the check."""

import re

import pytest
import torch

import gradlab
from conftest import assert_one_line_error, invoke, random_inputs, relative_error, sample_jacobians
from gradlab import GradlabError, tanh
from gradlab.documents.derivation import terminal
from gradlab.lowering.lower import bind, prepare
from gradlab.symbolic.structure import kind

CELL_FILE = '''
import gradlab
from gradlab import tanh


@gradlab.declare(state="h", params="W U b", source="test: an unrolled residual update")
def unrolled(s):
    e = s.h
    for _ in range({depth}):
        e = e + tanh(s.W @ e + s.U @ s.x + s.b)
    return e
'''


def unrolled(depth, divide=False):
    """h' = e_depth with e_0 = h, e_k = e_{k-1} + tanh(W e_{k-1} + U x + b), as one
    expression (no let); with divide, the step is also divided by 2 + e_{k-1}^2."""
    @gradlab.declare(state="h", params="W U b", source="test: an unrolled residual update",
                     name=f"unrolled{depth}{'_divided' if divide else ''}")
    def cell(s):
        e = s.h
        for _ in range(depth):
            step = tanh(s.W @ e + s.U @ s.x + s.b)
            e = e + (step / (2 + e * e) if divide else step)
        return e
    return cell


def unrolled_oracle(depth, divide=False):
    """The same update written in torch, sharing nothing with the declaration."""
    def step(P, state, x):
        (e,) = state
        for _ in range(depth):
            rise = torch.tanh(e @ P["W"].T + x @ P["U"].T + P["b"])
            e = e + (rise / (2 + e * e) if divide else rise)
        return (e,)
    return step


@pytest.mark.parametrize("depth, divide", [(20, False), (30, False), (20, True)])
def test_an_unrolled_update_derives_and_lowers_exactly(depth, divide):
    cell = unrolled(depth, divide)
    params, state, x = random_inputs(cell, 4, 3, 2, seed=depth)
    params = {k: v * 0.3 for k, v in params.items()}     # 30 residual steps stay finite
    oracle = unrolled_oracle(depth, divide)
    by_autograd = sample_jacobians(oracle, params, state, x)
    for wrt, expected in zip(("state", "input"), by_autograd):
        got = cell.jacobian_fn(wrt)(params, state, x)
        assert relative_error(got, expected) < 1e-12, wrt
    assert relative_error(cell.step_fn()(params, state, x)[0], oracle(params, state, x)[0]) \
        < 1e-12
    assert kind(cell.jacobian()) == "dense"


def test_a_deep_diagonal_block_is_lowered_as_its_diagonal():
    """e = e + tanh(c ⊙ e + b): d h'/d h is diagonal at every depth; the flow engine's
    compacted blocks read that through the whole nest and lower its diagonal."""
    depth = 30

    @gradlab.declare(state="h c", params="W b", source="test: a diagonal nest")
    def diagonal_nest(s):
        e = s.h
        for _ in range(depth):
            e = e + tanh(s.c * e + s.b)
        return e, s.c + s.W @ s.h

    def oracle(P, state, x):
        h, c = state
        e = h
        for _ in range(depth):
            e = e + torch.tanh(c * e + P["b"])
        return e, c + h @ P["W"].T

    cell = diagonal_nest
    assert kind(cell.jacobian_blocks()[0][0]) == "diagonal"
    params, state, x = random_inputs(cell, 3, 2, 2, seed=1)
    params = {k: v * 0.3 for k, v in params.items()}
    expected = sample_jacobians(oracle, params, state, x)[0][:, :3, :3]
    n, m, _, args = prepare(cell, params, state, x, "torch")
    compact = bind(cell, "jacobian_state_blocks", "torch")(n, m, x, *args)[0][0]
    assert relative_error(compact[:, :, 0], torch.diagonal(expected, dim1=1, dim2=2)) < 1e-12


def test_printing_what_is_too_long_to_write_out_is_refused_in_one_line():
    cell = unrolled(30)
    for show in (terminal, lambda c: str(c.jacobian())):
        with pytest.raises(GradlabError, match=r"^an expression nested \d+ deep is [\d,]+ "
                                               r"symbols and operations long .*s\.let") as err:
            show(cell)
        assert "\n" not in str(err.value)
    # a repr never raises (IPython would show a traceback): it says why, in one line
    for shown in (repr(cell).splitlines()[1], repr(cell.jacobian())):
        assert re.search(r"an expression nested \d+ deep is [\d,]+ symbols and operations "
                         r"long .*s\.let", shown), shown


def test_derive_of_a_deep_cell_file_is_one_line(tmp_path):
    (tmp_path / "deep.py").write_text(CELL_FILE.format(depth=40))
    result = invoke("derive", f"{tmp_path / 'deep.py'}:unrolled")
    assert_one_line_error(result, "with s.let so that each equation stays short")


def test_a_short_unrolled_update_still_prints_in_full():
    text = terminal(unrolled(3))
    assert "h' = h + tanh(W h + U x + b) + tanh(W (h + tanh(W h + U x + b)) + U x + b)" in text
    assert "∂h'/∂h = I + diag(" in text


def test_a_long_chain_of_lets_derives_lowers_and_checks_exactly():
    """120 lets, each tanh(W v) + b of the one before (an inner loop unrolled): deriving
    the last let's total from the first recursed 120 deep through SymPy (a bare
    RecursionError), and its Jacobian block, a product of 240 factors, printed as 240
    nested calls, which Python's parser refuses ('name intermediate values with s.let':
    every value had a name)."""
    @gradlab.declare(state="h", params="W U b", source="test")
    def inner_loop(s):
        v = s.h
        for k in range(120):
            v = s.let(f"v{k}", tanh(s.W @ v) + s.b)
        return v + s.U @ s.x

    params, state, x = random_inputs(inner_loop, 3, 2, 2, seed=5)

    def oracle(P, st, xx):
        v = st[0]
        for _ in range(120):
            v = torch.tanh(v @ P["W"].T) + P["b"]
        return (v + xx @ P["U"].T,)
    by_autograd = sample_jacobians(oracle, params, state, x)
    for wrt, expected in zip(("state", "input"), by_autograd):
        assert relative_error(inner_loop.jacobian_fn(wrt)(params, state, x), expected) < 1e-12
        numpy = inner_loop.jacobian_fn(wrt, backend="numpy")(
            {k: v.numpy() for k, v in params.items()}, tuple(s.numpy() for s in state),
            x.numpy())
        assert relative_error(torch.as_tensor(numpy), expected) < 1e-12
    assert gradlab.check_jacobian(lambda P, st, xx: inner_loop.jacobian_fn()(P, st, xx),
                                  inner_loop, params).ok
