"""Which state part of layer l-1 a stacked layer l reads: its new h, wherever h sits
among the parts (a probe found a cell declared as "c h" fed c), else its first part."""

import numpy as np
import torch

import gradlab
from gradlab import tanh


def _cell(state, name):
    first, second = state.split()

    def equations(s):
        a, b = getattr(s, first), getattr(s, second)
        if first == "c":           # c' = 0.5 c + tanh(W h + U x + b), h' = tanh(c)
            return 0.5 * a + tanh(s.W @ b + s.U @ s.x + s.b), tanh(a)
        return tanh(s.W @ a + s.U @ s.x + s.b), 0.5 * b + a
    equations.__doc__ = f"a two-part test cell, state {state}"
    return gradlab.declare(state=state, params="W U b", source="a test", name=name)(equations)


def test_a_layer_reads_the_previous_layers_h_wherever_it_sits():
    two = gradlab.stack(_cell("c h", "feed_ch"), 2)
    text = str(two)
    assert "U2 h1'" in text and "U2 c1'" not in text, text
    # h1' = tanh(c1) reads the old c1 only: at lag 1, c2' depends on c1, not on h1
    params = two.init_params(3, 2, seed=0)
    xs = torch.randn(4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = gradlab.gradient_flow(two, params, xs)
    assert np.isfinite(flow.block_log_norm("c2", "c1", "frobenius")[:, 0]).all()
    assert np.isneginf(flow.block_log_norm("c2", "h1", "frobenius")[:, 0]).all()


def test_a_layer_without_h_reads_the_first_part():
    two = gradlab.stack(_cell("a d", "feed_ad"), 2)
    assert "U2 a1'" in str(two), str(two)
    assert "layer l-1's new a" in two.doc
