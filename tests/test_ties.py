"""maximum and minimum at an exact tie give each argument half the gradient (torch's rule,
derivations/conventions.md), whatever the arguments' sums: H(a - b) was lowered from the
difference rearranged by SymPy, which rounded to +-1e-17 at a tie and gave one argument
all of the gradient (or 1.5 of it)."""

import torch

import gradlab
from gradlab import maximum, minimum, mean


def jacrev_of(cell, params, state, x):
    step = cell.step_fn()
    n = state[0].shape[-1]

    def flat(s):
        parts = tuple(s[i * n:(i + 1) * n][None] for i in range(len(state)))
        return torch.cat(step(params, parts, x), -1)[0]
    return torch.func.jacrev(flat)(torch.cat([p[0] for p in state]))


def test_a_tie_between_two_sums_gives_half_each():
    @gradlab.declare(state="h c", params="b_1 b_2", source="test")
    def tied(s):
        return maximum(s.h + s.b_1, s.c + s.b_2), minimum(s.h + s.b_1, s.c + s.b_2)
    params = {"b_1": torch.tensor([0.2], dtype=torch.float64),
              "b_2": torch.tensor([0.1], dtype=torch.float64)}
    h = torch.tensor([[0.1]], dtype=torch.float64)
    c = (h + 0.2) - 0.1
    assert torch.equal(h + params["b_1"], c + params["b_2"])          # an exact tie
    x = torch.zeros(1, 1, dtype=torch.float64)
    J = tied.jacobian_fn("state")(params, (h, c), x)[0]
    assert J.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert torch.equal(J, jacrev_of(tied, params, (h, c), x))
    Jn = tied.jacobian_fn("state", "numpy")({k: v.numpy() for k, v in params.items()},
                                            (h.numpy(), c.numpy()), x.numpy())[0]
    assert Jn.tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_a_tie_between_two_forms_of_one_value_matches_jacrev():
    """q - mean(q) and h + b - mean(q) are equal everywhere: rows came out 0.5x and 1.5x."""
    @gradlab.declare(state="h", params="b", source="test")
    def centred(s):
        q = s.let("q", s.h + s.b)
        return maximum(q - mean(q), s.h + s.b - mean(q))
    params = {"b": torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64)}
    h = torch.tensor([[0.1, 0.4, -0.3]], dtype=torch.float64)
    x = torch.zeros(1, 1, dtype=torch.float64)
    J = centred.jacobian_fn("state")(params, (h,), x)[0]
    assert torch.allclose(J, jacrev_of(centred, params, (h,), x), rtol=0, atol=1e-15)


def test_the_tie_function_prints_its_subtrahend_in_parentheses():
    @gradlab.declare(state="h", params="W b", source="test")
    def m(s):
        return maximum(s.W @ s.h, s.h + s.b)
    assert str(m.jacobian()) == "∂h'/∂h = diag(H(W h - (h + b))) W + diag(H(h + b - W h))"


def test_a_matrix_power_prints_as_taken_entry_by_entry():
    """W ** 2 computes W ⊙ W but printed W^2 (and W ** -1 as W^(-1)), a matrix power."""
    @gradlab.declare(state="h", params="W", source="test")
    def powers(s):
        return gradlab.tanh((s.W ** 2) @ s.h + (s.W ** -1) @ s.h)
    text = str(powers.jacobian())
    assert "W^∘2" in text and "W^∘(-1)" in text and "W^2" not in text
    assert r"W^{\circ 2}" in powers.jacobian()._repr_latex_()
    assert "h'^2" in text                                    # a vector's power: as before


def test_a_let_cannot_be_named_as_the_identity_prints():
    """s.let("I", ...) printed 2 diag(I ⊙ (1 - I^2)) W + 0.5 I: one name, two meanings."""
    import pytest
    with pytest.raises(gradlab.GradlabError, match="let name 'I' is how the identity prints"):
        @gradlab.declare(state="h", params="W", source="test")
        def named_i(s):
            return s.let("I", gradlab.tanh(s.W @ s.h)) + 0.5 * s.h
