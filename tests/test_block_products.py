"""J @ J multiplies block by block (blocks.py `_product`), one level deep, without
SymPy's block_collapse, whose doit asked the assumptions system of every diagonal factor
(lstm_fgr's J @ J took 10-30 s). The blocks must still equal block_collapse's."""

import pytest
import sympy as sp

import gradlab
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
