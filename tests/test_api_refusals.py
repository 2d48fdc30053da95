"""What the Python API refuses in one line, and what it accepts as gradient_flow does
(found by a hostile probe of the API)."""

import pytest
import torch

import gradlab
from gradlab.errors import GradlabError
from gradlab.initialize import init_params


def _xs(T=6, B=2, m=3):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def test_params_the_cell_does_not_take_are_refused():
    """An LSTM with a projection read as 'lstm' dropped its W_r without a word and
    measured another model."""
    module = torch.nn.LSTM(3, 4, proj_size=2).double()
    cell, params = gradlab.from_torch(module)
    with pytest.raises(GradlabError, match=r"^params for cell 'lstm' hold W_r, which it "
                                           r"does not take; expected exactly W_i, "):
        gradlab.gradient_flow("lstm", params, _xs())
    gradlab.gradient_flow(cell, params, _xs()).rate()                 # the right cell
    lstm = gradlab.cell("lstm")
    good = lstm.init_params(4, 3)
    gradlab.gradient_flow(lstm, {**good, "note": "not an array"}, _xs()).rate()   # left alone
    for extra in ({"bogus": good["W_i"]}, {1: good["W_i"]}, {"W_r": good["W_i"].numpy()}):
        with pytest.raises(GradlabError, match="which it does not take"):
            gradlab.gradient_flow(lstm, {**good, **extra}, _xs())
        with pytest.raises(GradlabError, match="which it does not take"):
            lstm.jacobian().at({**good, **extra}, (torch.zeros(2, 4, dtype=torch.float64),) * 2,
                               torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16])
def test_jacobian_at_refuses_what_the_lowered_code_does_not_compute_in(dtype):
    """int64 failed inside the lowered code; float16 ran at half precision in silence."""
    lstm = gradlab.cell("lstm")
    params = {k: v.to(dtype) for k, v in lstm.init_params(4, 3).items()}
    with pytest.raises(GradlabError, match=rf"are {str(dtype)[6:]}; valid: float32, float64"):
        lstm.jacobian().at(params, (torch.zeros(2, 4, dtype=dtype),) * 2,
                           torch.zeros(2, 3, dtype=dtype))


def test_lyapunov_takes_a_torch_module_as_gradient_flow_does():
    module = torch.nn.LSTM(3, 4).double()
    xs = _xs(T=30)
    want = gradlab.gradient_flow(module, xs).lyapunov(3)
    cell, params = gradlab.from_torch(module)
    assert (gradlab.lyapunov(module, xs, 3).mean == want).all()
    assert (gradlab.lyapunov(module, xs, k=3).mean == want).all()
    assert (gradlab.lyapunov(cell, params, xs, 3).mean == want).all()
    with pytest.raises(GradlabError, match="carries its own weights"):
        gradlab.lyapunov(module, xs, xs)
    with pytest.raises(GradlabError, match=r"needs params and xs"):
        gradlab.lyapunov("lstm", xs)


def test_a_key_naming_no_block_of_explicit_is_refused_with_the_valid_ones():
    explicit = gradlab.cell("lstm").jacobian().explicit(n=2)
    assert explicit["c", "c"].shape == (2, 2)
    with pytest.raises(KeyError, match=r"no block \('c', 'z'\); valid: \('h', 'h'\)"):
        explicit["c", "z"]
    with pytest.raises(GradlabError):
        explicit["c", "z"]


def test_init_params_takes_a_registered_name():
    assert init_params("gru", 3, 2).keys() == gradlab.cell("gru").init_params(3, 2).keys()
    with pytest.raises(GradlabError, match="unknown cell 'bogus'"):
        init_params("bogus", 3, 2)


def test_an_expression_too_deep_for_python_is_refused_in_one_line():
    """tanh applied 200 times over: the declaration was accepted, then gradient_flow ended
    in a raw SyntaxError ('too many nested parentheses') from the lowered code."""
    def deep(s):
        e = s.h
        for _ in range(200):
            e = gradlab.tanh(e)
        return e + s.W @ s.h + s.U @ s.x + s.b

    cell = gradlab.declare(state="h", params="W U b", source="test")(deep)
    with pytest.raises(GradlabError, match=r"nests too deeply .*s\.let"):
        gradlab.gradient_flow(cell, cell.init_params(3, 2), _xs(T=3, B=1, m=2))


def test_an_option_a_function_does_not_take_is_one_line():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2)
    xs = _xs(T=4, m=2)
    for call, word in ((lambda: gradlab.gradient_flow(lstm, params, xs, norm=("spectral",)),
                        r"^gradient_flow\(\): got an unexpected keyword argument 'norm'; it "
                        r"takes gradient_flow\(cell, params=None"),
                       (lambda: gradlab.lyapunov(lstm, params, xs, 2, warmup=3),
                        r"^lyapunov\(\): .*'warmup'"),
                       (lambda: gradlab.check_jacobian(lambda *a: None, lstm, params, samples=3),
                        r"^check_jacobian\(\): .*'samples'")):
        with pytest.raises(GradlabError, match=word):
            call()
    with pytest.raises(GradlabError, match=r"^Flow.timescale\(\): got an unexpected keyword "
                                           r"argument 'foo'; it takes Flow.timescale\("):
        gradlab.gradient_flow(lstm, params, xs).timescale(foo=1)


def test_checks_name_a_function_that_is_not_one():
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(3, 2)
    with pytest.raises(GradlabError, match=r"^fn must be a function fn\(params, state, x\), "
                                           r"got int"):
        gradlab.check_jacobian(3, lstm, params)
    with pytest.raises(GradlabError, match=r"^fn must be a function fn\(params, xs, k\)"):
        gradlab.check_lyapunov(3, lstm, params, _xs(T=50, m=2), 2)


def test_a_nan_answer_to_check_lyapunov_is_named_as_nan():
    """It read 'differs: max |difference| inf'."""
    import numpy as np
    gru = gradlab.cell("gru")
    params = gru.init_params(4, 2, seed=0)
    result = gradlab.check_lyapunov(lambda p, xs, k: np.full(k, np.nan), gru, params,
                                    _xs(T=400, m=2), 3)
    assert not result.ok and "Your exponents hold nan (entries [0, 1, 2])" in str(result)
    assert "take log |R_ii|" in str(result)


def test_entries_that_are_not_parameter_arrays_still_pass():
    """Scalars and 0-d tensors are notes, not weights; a check's function gets every entry
    (a helper array of its own too) while gradlab's side reads the cell's parameters."""
    import numpy as np
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(3, 2)
    gradlab.gradient_flow(rnn, {**params, "lr": np.float64(0.1), "step": torch.tensor(3)},
                          _xs(T=4, m=2)).rate()

    def mine(P, state, x):
        h = state[0] if isinstance(state, (tuple, list)) else state
        a = torch.tanh(h @ P["W_T"] + x @ P["U"].T + P["b"])
        return torch.diag_embed(1 - a ** 2) @ P["W"]

    biased = rnn.init_params(3, 2, bias_scale=0.5)   # (at zero biases: a note, see below)
    helper = {**biased, "W_T": biased["W"].T.clone()}
    assert gradlab.check_jacobian(mine, rnn, helper).ok
    gradlab.testing.assert_jacobian(mine, rnn, helper)
    gru = gradlab.cell("gru")
    q = gru.init_params(4, 2)
    exponents = lambda P, xs, k: gradlab.lyapunov(                             # noqa: E731
        gru, {n: v for n, v in P.items() if n != "extra"}, xs, k).mean
    assert gradlab.check_lyapunov(exponents, gru, {**q, "extra": q["W"].clone()},
                                  _xs(T=2000, m=2), 2).ok


def test_the_api_functions_pickle_and_are_the_modules_own():
    """Wrapped on export, they could not be pickled (multiprocessing) and were not the
    objects their modules hold."""
    import pickle
    for name in ("gradient_flow", "lyapunov", "check_jacobian", "check_lyapunov",
                 "mean_field", "critical_init", "from_torch", "to_torch", "stack"):
        fn = getattr(gradlab, name)
        assert pickle.loads(pickle.dumps(fn)) is fn
    assert gradlab.gradient_flow is gradlab.flow.gradient_flow


def test_a_zero_state_with_no_input_is_exact_not_undersampled():
    """input_scale 0: c = 0 exactly in c f (1 - f), and the theory was refused as resting
    on 0 unit draws; the quick theory critical_init probes with at gate bias 12 was too."""
    from gradlab.meanfield.critical import _theory_timescale
    for name in ("lstm", "gru", "minimal_rnn"):
        for method in ("annealed", "dynamic"):
            assert gradlab.mean_field(name, input_scale=0.0, method=method).rate < 0
    _theory_timescale(gradlab.cell("lstm"), dict(weight_scale=3.0, bias_scale=0.1,
                                                 input_scale=1.0, gate_bias=12.0))
