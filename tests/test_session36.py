"""Regressions fixed in session 36, each reproduced before its fix."""

import pytest

import gradlab


@pytest.mark.parametrize("call", [lambda: gradlab.I(3), lambda: gradlab.I(n=4)])
def test_the_identity_is_not_a_function_of_its_size(call):
    # I(3) was "TypeError: 'Value' object is not callable", from Python, not gradlab
    with pytest.raises(gradlab.GradlabError, match=r"^I is a value of the cell language, "
                       r"not a function: it takes no arguments \(I is the n x n identity"):
        call()


def test_a_value_called_in_a_declaration_is_one_line():
    with pytest.raises(gradlab.GradlabError, match=r"^cell 'cell', equation `.*`"
                       r" \(.*test_session36.py:\d+\): W is a value of the cell language, not a "
                       r"function: it takes no arguments$") as err:
        @gradlab.declare(state="h", params="W U b", source="test")
        def cell(s):
            return gradlab.tanh(s.W(s.h) + s.U @ s.x + s.b)
    assert "\n" not in str(err.value)


def test_public_calls_run_without_tf32_and_leave_the_callers_setting(monkeypatch):
    # set_float32_matmul_precision("high") turns TF32 on for CUDA matrix products; float32
    # norms certified to 5e-7 would have been computed from products rounded at ~5e-4
    import torch
    seen = []

    def fn(params, state, x):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        h = torch.tanh(state[0] @ params["W"].T + x @ params["U"].T + params["b"])
        return (1 - h ** 2)[:, :, None] * params["W"]          # d h' / d h, exact

    g = torch.Generator().manual_seed(0)
    W, U, b = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in
               ((3, 3), (3, 2), (3,)))
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    assert torch.backends.cuda.matmul.allow_tf32
    result = gradlab.check_jacobian(fn, gradlab.cell("rnn_tanh"), {"W": W, "U": U, "b": b})
    assert seen and not any(seen)
    assert torch.backends.cuda.matmul.allow_tf32          # the caller's setting, restored
    assert result.ok
