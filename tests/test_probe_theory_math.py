"""Probes of gradlab's theory against the papers it cites (derivations/theory.md), each a
regression test for a defect found and fixed."""

import math

import numpy as np
import pytest
import torch

import gradlab
from gradlab import registry, theory
from gradlab.reports.measurements import Setup, measure


def test_pascanu_bound_is_drawn_for_rnn_relu_too():
    # derivations/theory.md §1: the bound is overlaid where a vanilla cell's decay is
    # plotted; relu' <= 1, so (||W||_2)^k bounds rnn_relu's products as it does rnn_tanh's
    setup = Setup(cells=("rnn_relu",), hidden=4, inputs=2, steps=6, batch=2)
    d = measure(setup, "rnn_relu")
    W = setup.params(registry.cell("rnn_relu"))["W"].numpy()
    assert d["pascanu_rate"] == pytest.approx(math.log(np.linalg.norm(W, 2)), rel=1e-12)
    k = np.asarray(d["lags"])
    median = np.asarray(d["decay_log10"]["median"])
    bound = median[0] + (k - 1) * d["pascanu_rate"] / math.log(10)
    assert (median <= bound + 1e-12).all()
