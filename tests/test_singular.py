"""The smallest singular value of a product whose Jacobian is singular to working
precision: -inf from that lag on, said as "product singular" (not "exactly zero").
Before, only an exact zero pivot counted, so W with two equal columns gave min_singular
falling by ~40 per lag, rounding noise read as a decay (third hostile probe)."""

import math

import numpy as np

import gradlab
import gradlab.flow as F


def test_a_jacobian_singular_to_working_precision_reads_minus_inf():
    cell = gradlab.cell("rnn_tanh")
    p = cell.init_params(5, 3, seed=0)
    W = p["W"].clone()
    W[:, 0] = W[:, 1]                     # J_t = diag(1 - h'^2) W: rank 4 of 5
    p["W"] = W
    flow = gradlab.gradient_flow(cell, p, F.make_inputs("gaussian", 12, 2, 3, seed=1))
    assert np.isneginf(flow.log_norm("min_singular")).all()
    assert np.isposinf(flow.log_condition()).all()
    assert np.isfinite(flow.log_norm("spectral")).all()
    assert flow.rate("min_singular") == -math.inf
    assert flow.why("min_singular") == F.SINGULAR and flow.why() is None


def test_a_dead_unit_is_singular_not_zero():
    cell = gradlab.cell("rnn_relu")
    p = cell.init_params(4, 2, seed=0)
    p["U"][0], p["W"][0], p["b"][0] = 0.0, 0.0, -1.0     # unit 0 never fires
    p["b"][1:] = 3.0                                         # the others always do
    flow = gradlab.gradient_flow(cell, p, F.make_inputs("gaussian", 10, 2, 2, seed=1))
    assert np.isfinite(flow.log_norm("spectral")).all()
    assert flow.why("min_singular") == F.SINGULAR and flow.timescale("min_singular") == 0
