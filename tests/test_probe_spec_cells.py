"""Cells against the catalogue's equations, by oracles written from them alone."""

import pytest
import torch

import gradlab


def _pseudo_lstm(P, s, x):
    """pseudo_lstm as the catalogue writes it: gates and candidate read phi(s),
    s' = f * s + i * s~."""
    phi = torch.tanh(s)
    gate = {a: torch.sigmoid(phi @ P[f"W_{a}"].T + x @ P[f"U_{a}"].T + P[f"b_{a}"])
            for a in "iof"}
    candidate = torch.tanh((gate["o"] * phi) @ P["W"].T + x @ P["U"].T + P["b"])
    return gate["f"] * s + gate["i"] * candidate


def test_stacked_pseudo_lstm_feeds_its_output_phi_of_s_to_the_layer_above():
    """The catalogue: pseudo_lstm's output is phi(s') = tanh(s'), not its unbounded state s';
    layer 2 of a stack reads layer 1's output (as nn.LSTM's layer 2 reads h', not c')."""
    cell = gradlab.stack("pseudo_lstm", 2)
    params = cell.init_params(4, 3, weight_scale=1.3, bias_scale=0.5, seed=0)
    gen = torch.Generator().manual_seed(1)
    s = tuple(3 * torch.randn(2, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    layer = [{k[:-1]: v for k, v in params.items() if k.endswith(str(l))} for l in (1, 2)]
    s1 = _pseudo_lstm(layer[0], s[0], x)
    s2 = _pseudo_lstm(layer[1], s[1], torch.tanh(s1))
    got = cell.step_fn()(params, s, x)
    assert (got[0] - s1).abs().max() < 1e-12
    assert (got[1] - s2).abs().max() < 1e-12


def test_declare_refuses_an_output_that_is_not_a_function():
    with pytest.raises(gradlab.GradlabError, match=r"output=.*'tanh'"):
        @gradlab.declare(state="h", params="W U b", source="test", output="tanh")
        def cell(s):
            return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)
