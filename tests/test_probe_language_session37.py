"""Edges session 37's probe of the cell language and the Jacobian object found."""

import pytest
import torch

import gradlab
from gradlab import GradlabError, tanh


def _declare(output):
    return gradlab.declare(state="h", params="W U b", source="probe", name="passes_on",
                           output=output)(lambda s: tanh(s.W @ s.h + s.U @ s.x + s.b))


@pytest.mark.parametrize("output, said", [
    (torch.tanh, r"declare\(output=tanh\): TypeError: .*use gradlab's"),
    (lambda v: 1.0, r"declare\(output=<lambda>\) must give an n-vector.*1\.0 \(float\)$"),
    (gradlab.sum, r"declare\(output=sum\) must give an n-vector.*Σ_h' \(scalar\)$"),
    (lambda v: (v, v), r"must give an n-vector.*\(tuple\)$"),
    (gradlab.maximum, r"declare\(output=maximum\): maximum\(\): missing .*'b'"),
])
def test_an_output_that_cannot_give_an_n_vector_is_refused_where_declared(output, said):
    """declare(output=torch.tanh), or one giving a number, a scalar or a tuple, was taken,
    and gradlab.stack of the cell then failed naming gradlab's own code as the equation
    (`inputs = layer_cell.output(inputs)` (gradlab/symbolic/stack.py:218), or the layer
    cell's `U2 @ 1.0`); it is refused where it is declared, in one line naming it."""
    with pytest.raises(GradlabError, match=said) as err:
        _declare(output)
    message = str(err.value)
    assert "\n" not in message and "gradlab/symbolic" not in message


def test_an_output_that_raises_names_its_own_line():
    def passes_on(v):
        return v.undefined_attribute
    with pytest.raises(GradlabError, match=r"output=passes_on\), equation `return .*"
                       r"test_probe_language_session37\.py:\d+\): AttributeError"):
        _declare(passes_on)


def test_a_good_output_still_feeds_the_layer_above():
    cell = _declare(lambda v: 2 * tanh(v))
    stacked = gradlab.stack(cell, 2)
    params = stacked.init_params(3, 2, seed=0)
    state = tuple(torch.randn(2, 3, dtype=torch.float64) for _ in range(2))
    x = torch.randn(2, 2, dtype=torch.float64)
    h1 = torch.tanh(state[0] @ params["W1"].T + x @ params["U1"].T + params["b1"])
    h2 = torch.tanh(state[1] @ params["W2"].T + 2 * torch.tanh(h1) @ params["U2"].T
                    + params["b2"])
    got = stacked.step_fn()(params, state, x)
    assert torch.allclose(got[0], h1, rtol=1e-14, atol=0)
    assert torch.allclose(got[1], h2, rtol=1e-14, atol=0)
