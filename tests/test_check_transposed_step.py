"""A Jacobian exact for the step with a weight transposed in the step itself (h @ W where
the cell has W h): check names the weight, at every size, where a term-by-term fit of the
difference (which reads the weight in the activations right) could not."""

import pytest

import gradlab


def transposed_in_step(cell, names):
    exact = cell.jacobian_fn("state")

    def fn(params, state, x):
        return exact({**params, **{p: params[p].T.contiguous() for p in names}}, state, x)
    return fn


@pytest.mark.parametrize("name, n", [("rnn_tanh", 2), ("rnn_tanh", 8), ("lstm", 3),
                                     ("gru", 5), ("peephole_lstm", 4)])
def test_one_weight_read_transposed_in_the_step_is_named(name, n):
    cell = gradlab.cell(name)
    params = cell.init_params(n, 3, seed=1)
    W = next(p for p in cell.param_names if p.startswith("W"))
    result = gradlab.check_jacobian(transposed_in_step(cell, [W]), cell, params)
    assert not result.ok
    assert result.diagnosis[0].startswith(f"Your Jacobian is the exact one for the step "
                                          f"with {W} transposed")


def test_every_square_weight_read_transposed_is_named_at_once():
    """The row-vector convention throughout: at m = n the input weights are square too."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 4, seed=2)
    square = [p for p in cell.param_names if params[p].ndim == 2]
    result = gradlab.check_jacobian(transposed_in_step(cell, square), cell, params)
    assert not result.ok
    assert result.diagnosis == [result.diagnosis[0]] and \
        f"with {', '.join(square)} transposed: yours reads each of them" in result.diagnosis[0]


def test_the_right_jacobian_is_not_said_to_be_transposed():
    cell = gradlab.cell("gru")
    params = cell.init_params(5, 3, seed=3)
    result = gradlab.check_jacobian(cell.jacobian_fn("state"), cell, params)
    assert result.ok and not result.diagnosis
