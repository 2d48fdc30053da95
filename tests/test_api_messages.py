"""What a hostile probe of the Python API found: a right float32 answer called wrong at a
fine rtol (gradlab's reference was itself float32), a wrong-width input weight blamed on
x and on a right one, Flow methods raising Python's TypeError, mean_field's options not
named, and torch's formatting and warnings leaking into messages."""

import re
import warnings

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import GradlabError

D = torch.float64


def _rnn(dtype):
    """rnn_tanh's Jacobian by autograd, computed in `dtype` (the params converted)."""
    def fn(p, s, x):
        p = {k: v.to(dtype) for k, v in p.items()}
        step = lambda h, u: torch.tanh(p["W"] @ h + p["U"] @ u + p["b"])      # noqa: E731
        return vmap(jacrev(step))(s[0].to(dtype), x.to(dtype))
    return fn


def _params32():
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(4, 3, weight_scale=1.5, bias_scale=0.5, seed=1)
    return cell, {k: v.float() for k, v in params.items()}


def test_float32_params_are_judged_against_the_exact_jacobian_at_a_fine_rtol():
    """The reference was evaluated in float32 (an entry 2.08e-7 where the exact one is
    1.56e-7), so an exact float64 answer 'differed' by 1.05e-7 at rtol 1e-8."""
    cell, params = _params32()
    result = gradlab.check_jacobian(_rnn(D), cell, params, rtol=1e-8)
    assert result.ok and float(result.max_error.relative) < 1e-14


def test_a_float32_answer_at_a_fine_rtol_is_said_to_be_float32_rounding():
    cell, params = _params32()
    result = gradlab.check_jacobian(_rnn(torch.float32), cell, params, rtol=1e-8)
    assert not result.ok
    assert "returned float32 numbers" in str(result) and "within what that rounding" \
        in str(result)
    assert gradlab.check_jacobian(_rnn(torch.float32), cell, params).ok     # default 1e-5
    wrong = lambda p, s, x: _rnn(torch.float32)(p, s, x).mT                 # noqa: E731
    assert "transpose" in str(gradlab.check_jacobian(wrong, cell, params))


def test_an_input_weight_of_another_width_is_named_not_x_or_a_right_one():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(4, 3, seed=1)
    params["U_i"] = torch.zeros(4, 5, dtype=D)
    want = (r"^param 'U_i' of cell 'lstm' has shape \(4, 5\), for 5 inputs a step, but "
            r"U_f, U_g, U_o have 3")
    with pytest.raises(GradlabError, match=want):
        gradlab.check_jacobian(_rnn(D), lstm, params)
    for m in (3, 5):
        with pytest.raises(GradlabError, match=want):
            gradlab.gradient_flow(lstm, params, torch.zeros(5, 2, m, dtype=D))


def test_flow_methods_called_wrongly_name_their_signature():
    gru = gradlab.cell("gru")
    flow = gradlab.gradient_flow(gru, gru.init_params(4, 3, seed=0), torch.zeros(6, 2, 3,
                                                                                dtype=D))
    with pytest.raises(GradlabError, match=r"^Flow.rate\(\): too many positional arguments; "
                                           r"it takes Flow.rate\(kind='spectral', \*"):
        flow.rate("spectral", ("h", "h"))
    with pytest.raises(GradlabError, match=r"^Flow.timescale\(\): got an unexpected keyword "):
        flow.timescale(kidn="spectral")
    assert flow.rate() == flow.rate("spectral")          # right calls are untouched


def test_mean_field_names_its_methods_options():
    with pytest.raises(GradlabError, match=r"^mean_field\(method='annealed'\) takes no option "
                                           r"'foo'; valid: weight_scale, .*, gate_bias, "
                                           r"input_power, method, and the method's own: "
                                           r"units, burn_in, steps, seed$"):
        gradlab.mean_field("rnn_tanh", foo=1)
    with pytest.raises(GradlabError, match=r"^mean_field\(method='dynamic'\) takes no option "
                                           r"'burn_in'; valid: .* the method's own: units, "
                                           r"steps, inputs"):
        gradlab.mean_field("rnn_tanh", method="dynamic", burn_in=1)
    with pytest.raises(GradlabError, match=r"'gatebias'; valid: .*gate_bias"):   # a typo
        gradlab.mean_field("lstm", gatebias=2.0)


def test_check_lyapunov_shows_shapes_as_tuples():
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(4, 3, seed=1)
    xs = torch.randn(30, 2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    with pytest.raises(GradlabError, match=r"returned shape \(2, 2, 2\); expected \(2,\)"):
        gradlab.check_lyapunov(lambda p, x, k: torch.zeros(2, 2, 2), cell, params, xs, 2,
                               atol=0.1)


def test_states_that_carry_a_graph_are_read_without_torch_s_warning():
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(4, 3, seed=1, bias_scale=0.5)
    h = torch.randn(2, 4, dtype=D, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradlab.check_jacobian(_rnn(D), cell, params,
                                        states=((h,), torch.randn(2, 3, dtype=D)))
    assert result.ok


def _linear():
    cell = gradlab.declare(state="h", params="W U b", source="test", name="linear")(
        lambda s: s.W @ s.h + s.U @ s.x + s.b)
    params = cell.init_params(6, 2, seed=0, weight_scale=1.0)
    xs = torch.randn(2000, 1, 2, dtype=D, generator=torch.Generator().manual_seed(0))
    return cell, params, xs


def _eigen_exponents(params, xs, k):
    """A linear cell's exponents: the log-moduli of W's eigenvalues, as a reversed view."""
    return np.sort(np.log(np.abs(np.linalg.eigvals(params["W"].numpy()))))[::-1][:k]


def test_check_lyapunov_reads_a_reversed_numpy_view():
    """A [::-1] view has a negative stride, which torch.as_tensor refuses: the answer
    was called 'an object that cannot be read as an array of real numbers'."""
    cell, params, xs = _linear()
    assert gradlab.check_lyapunov(_eigen_exponents, cell, params, xs, 3, atol=0.01).ok


def test_check_lyapunov_names_the_simplest_mistake_that_matches():
    """A constant Jacobian cannot tell reverse time from forward: log10 exponents were
    diagnosed as 'transposed Jacobian and log base 10', log base 10 alone as an aside."""
    cell, params, xs = _linear()
    result = gradlab.check_lyapunov(lambda p, x, k: _eigen_exponents(p, x, k) / np.log(10),
                                    cell, params, xs, 3, atol=0.01)
    assert not result.ok
    assert result.diagnosis[0] == "Your exponents match log base 10 instead of the natural log."


def test_dir_lists_the_submodules_the_readme_uses():
    """dir(gradlab) left out testing, interop and __version__: tab completion could not
    find gradlab.testing, which the README uses."""
    import gradlab
    assert {"testing", "interop", "__version__", "gradient_flow"} <= set(dir(gradlab))


def test_a_misspelt_option_on_a_cell_jacobian_or_block_is_one_line():
    """Cell, Jacobian and Block methods let Python's TypeError through (an IPython
    traceback), where gradlab's functions and Flow's methods named the signature."""
    import inspect
    lstm = gradlab.cell("lstm")
    J = lstm.jacobian()
    p = lstm.init_params(4, 3)
    s = (torch.zeros(2, 4, dtype=torch.float64),) * 2
    for call, said in ((lambda: lstm.jacobian(wtr="input"), "Cell.jacobian(wrt='state')"),
                       (lambda: lstm.step_fn(backed="numpy"), "Cell.step_fn(backend='torch')"),
                       (lambda: J.explicit(N=2), "Jacobian.explicit(n=None, m=None)"),
                       (lambda: J.terms(outt="c"), "Jacobian.terms(out=None, wrt=None)"),
                       (lambda: J["c", "h"].at(p, s), "Block.at(params, state, x, backend=None)")):
        with pytest.raises(gradlab.GradlabError, match=re.escape(f"it takes {said}")):
            call()
    assert str(inspect.signature(lstm.jacobian)) == "(wrt='state')"       # still its own


def test_a_matrix_put_in_at_another_n_says_which_n():
    """J.subs(f, OneMatrix(Symbol('n'), 1)) said 'f is n x 1; ... not 1 (n x 1)': two
    shapes that print alike."""
    import sympy as sp
    lstm = gradlab.cell("lstm")
    with pytest.raises(gradlab.GradlabError, match=re.escape(
            "its n is not the size n, Symbol('n', integer=True, positive=True)")):
        lstm.jacobian().subs(lstm.symbol("f"), sp.OneMatrix(sp.Symbol("n"), 1))


def test_a_weight_put_in_at_another_n_says_which_n():
    import sympy as sp
    lstm = gradlab.cell("lstm")
    with pytest.raises(gradlab.GradlabError, match=re.escape("its n is not the size n")):
        lstm.jacobian().subs(lstm.symbol("W_f"),
                             sp.MatrixSymbol("V", sp.Symbol("n"), sp.Symbol("n")))


def test_a_misspelt_option_is_also_a_type_error():
    """A caller's `except TypeError` around a call still catches it."""
    with pytest.raises(TypeError):
        gradlab.cell("lstm").jacobian(wtr="input")


def test_a_block_is_named_by_position_in_block_and_terms_as_in_indexing():
    """J[0, 1] worked, J.block(0, 1) and J.terms(0, 1) said 'no output 0'."""
    J = gradlab.cell("lstm").jacobian()
    assert (J.block(0, 1).out, J.block(0, 1).wrt) == (J[0, 1].out, J[0, 1].wrt) == ("h'", "c")
    assert J.block(-1, "h").out == "c'"
    assert [str(t) for t in J.terms(0, 1)] == [str(t) for t in J.terms("h", "c")]
    with pytest.raises(gradlab.GradlabError, match=r"no output at position 5 .*0\.\.1 \(h, c"):
        J.block(5, 0)
    explicit = J.explicit(2)                              # 'no block (0, 1)' before
    assert explicit[0, 1] == explicit["h", "c"] and explicit[-1, -1] == explicit["c", "c"]
    with pytest.raises(gradlab.GradlabError, match=r"no block \(2, 0\); valid: \('h', 'h'\)"):
        explicit[2, 0]
