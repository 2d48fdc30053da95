"""J @ J multiplies block by block (blocks.py `_product`), one level deep, without
SymPy's block_collapse, whose doit asked the assumptions system of every diagonal factor
(lstm_fgr's J @ J took 10-30 s). The blocks must still equal block_collapse's."""

import pytest
import sympy as sp

import gradlab
from conftest import entries_at
from gradlab.symbolic.blocks import Blocks


@pytest.mark.parametrize("name", ["lstm", "gru", "normalized_lstm"])
def test_block_product_equals_sympys(name):
    J = gradlab.cell(name).jacobian()
    ours = J @ J.T
    theirs = sp.block_collapse(sp.MatMul(J, J.T))
    theirs = theirs if isinstance(theirs, sp.BlockMatrix) else sp.BlockMatrix([[theirs]])
    assert ours.blocks.shape == theirs.blocks.shape
    for a, b in zip(ours.blocks, theirs.blocks):
        assert (a - b).doit() in (0, sp.ZeroMatrix(*a.shape))


def test_identity_and_zero_blocks():
    J = gradlab.cell("lstm").jacobian()
    n = J.blocks[0, 0].shape[0]
    one = Blocks([[sp.Identity(n), sp.ZeroMatrix(n, n)], [sp.ZeroMatrix(n, n), sp.Identity(n)]])
    for a, b in zip((J @ one).blocks, J.blocks):
        assert str(a) == str(b) and (a - b).doit() in (0, sp.ZeroMatrix(n, n))
    zero = Blocks([[sp.ZeroMatrix(n, n)] * 2] * 2)
    assert all(isinstance(b, sp.ZeroMatrix) and b.shape == (n, n) for b in (J @ zero).blocks)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_transpose_is_block_by_block_and_equals_sympys(name):
    """J.T's blocks equal SymPy's transposes of J's blocks, entry by entry."""
    J = gradlab.cell(name).jacobian()
    ours = J.T
    assert isinstance(ours, Blocks) and ours.blocks.shape == J.blocks.shape[::-1]
    for i in range(J.blocks.shape[0]):
        for j in range(J.blocks.shape[1]):
            mine, want = ours.blocks[j, i], sp.Transpose(J.blocks[i, j])
            assert mine.shape == want.shape
            assert _close(entries_at(mine), entries_at(want))
    assert all(isinstance(t.arg, sp.MatrixSymbol) for t in sp.sympify(ours).atoms(sp.Transpose))


def _close(a, b):
    return a.shape == b.shape and max(abs(x) for x in (a - b)) < 1e-12


def test_transpose_of_a_stack_does_not_ask_sympys_doit(monkeypatch):
    """J.T transposes each block pushed down to the symbols (algebra.transposed), not by
    SymPy's Transpose(...).doit(), which asked the assumptions system of every diagonal
    factor: a 3-layer lstm stack's J.T took 13 s, 4 layers over a minute."""
    J = gradlab.stack("lstm", 3).jacobian()
    corner = str(J.blocks[0, 1].T)                    # one block, by SymPy's own .T

    def refused(self, **hints):
        raise AssertionError("SymPy's Transpose.doit was called")
    monkeypatch.setattr(sp.Transpose, "doit", refused)
    T = J.T
    assert isinstance(T, Blocks) and T.blocks.shape == J.blocks.shape[::-1]
    assert str(T.blocks[1, 0]) == corner
