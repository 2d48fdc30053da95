"""Session 36 probes of the Python API from the README's "In Python", "Your own cells" and
"Check your own derivation": misspelt keywords named as such, the public functions that
are not gradlab's top-level names (gradlab.testing, gradlab.progress, the functions a cell
lowers) refusing a call their signature does not take in one line."""

import pytest
import torch

import gradlab
from gradlab import GradlabError

D = torch.float64


def _rnn():
    cell = gradlab.cell("rnn_tanh")
    return cell, cell.init_params(4, 3, seed=0)


def _xs(T=6, B=2, m=3):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(0), dtype=D)


@pytest.mark.parametrize("call, bad, meant", [
    (lambda c, p: gradlab.check_jacobian(c.jacobian_fn("state"), c, param=p), "param", "params"),
    (lambda c, p: gradlab.check_lyapunov(lambda *a: None, c, p, x=_xs(), k=2), "x", "xs"),
    (lambda c, p: gradlab.to_torch(c, param=p), "param", "params"),
    (lambda c, p: gradlab.from_torch(modul=torch.nn.LSTMCell(3, 4)), "modul", "module"),
    (lambda c, p: gradlab.cell(nam="lstm"), "nam", "name"),
    (lambda c, p: gradlab.critical_init("gru", time_scale=50), "time_scale", "timescale"),
    (lambda c, p: gradlab.mean_field(cel="gru"), "cel", "cell"),
    (lambda c, p: c.init_params(hiden=4, inputs=3), "hiden", "hidden"),
    (lambda c, p: c.jacobian().at(param=p, state=(torch.zeros(2, 4, dtype=D),),
                                  x=torch.zeros(2, 3, dtype=D)), "param", "params"),
])
def test_a_misspelt_keyword_is_named_not_reported_as_a_missing_argument(call, bad, meant):
    """to_torch(c, param=p) said "missing a required argument: 'params'": Python's bind
    reports what is missing before what it does not take, so the misspelt name (the bad
    value) went unnamed; it is named, with the name meant."""
    cell, params = _rnn()
    with pytest.raises(GradlabError) as err:
        call(cell, params)
    message = str(err.value)
    assert f"unexpected keyword argument {bad!r}" in message, message
    assert f"did you mean {meant!r}" in message and "\n" not in message


def _lowered():
    lstm = gradlab.cell("lstm")
    return {"step": lstm.step_fn(), "jacobian": lstm.jacobian_fn("state"),
            "jacobian_input": lstm.jacobian_fn("input"), "values": lstm.values_fn(),
            "jacobian_numpy": lstm.jacobian_fn("state", backend="numpy")}


@pytest.mark.parametrize("which", ["step", "jacobian", "jacobian_input", "values",
                                   "jacobian_numpy"])
@pytest.mark.parametrize("args, kwargs, said", [
    ((), {"param": {}, "state": (), "x": None}, "unexpected keyword argument 'param'"),
    (({}, ()), {}, "missing a required argument: 'x'"),
    (({}, (), None, None), {}, "too many positional arguments"),
])
def test_a_lowered_function_called_wrongly_is_one_line(which, args, kwargs, said):
    """`J.at` is `lstm.jacobian_fn("state")(params, state, x)` (README); those functions,
    and step_fn's and values_fn's, raised Python's TypeError from
    'jacobian_function.<locals>.jacobian()' for a misspelt keyword or a missing argument,
    where gradlab's own functions say it in one GradlabError naming what they take."""
    fn = _lowered()[which]
    with pytest.raises(GradlabError, match=r"^\w+\(\): .*; it takes \w+\(params, state, x\)") \
            as err:
        fn(*args, **kwargs)
    assert said in str(err.value)


@pytest.mark.parametrize("call, said", [
    (lambda J, c, p: gradlab.testing.assert_jacobian(J, c, param=p),
     "unexpected keyword argument 'param'"),
    (lambda J, c, p: gradlab.testing.assert_jacobian(J, c), "missing a required argument"),
    (lambda J, c, p: gradlab.testing.assert_lyapunov(lambda *a: None, c, p, x=_xs(), k=2),
     "unexpected keyword argument 'x'"),
    (lambda J, c, p: gradlab.testing.assert_lyapunov(lambda *a: None, c, p, _xs()),
     "missing a required argument: 'k'"),
])
def test_gradlab_testing_called_wrongly_is_one_line(call, said):
    """gradlab.testing.assert_jacobian(fn, cell) raised Python's TypeError ('missing 1
    required positional argument'), where gradlab.check_jacobian says it in one line."""
    cell, params = _rnn()
    with pytest.raises(GradlabError, match=r"^assert_(jacobian|lyapunov)\(\): ") as err:
        call(cell.jacobian_fn("state"), cell, params)
    assert said in str(err.value) and "it takes assert_" in str(err.value)


@pytest.mark.parametrize("args, kwargs", [((), {"func": print}), ((print, print), {}),
                                          ((), {})])
def test_progress_listening_called_wrongly_is_one_line(args, kwargs):
    """`with gradlab.progress.listening(fn):` (README): listening(func=f) raised Python's
    TypeError from inside contextlib."""
    import gradlab.progress
    with pytest.raises(GradlabError, match=r"^listening\(\): .*; it takes listening\(fn\)"):
        gradlab.progress.listening(*args, **kwargs)


@pytest.mark.parametrize("which", ["step", "jacobian", "values"])
@pytest.mark.parametrize("state, said", [(None, "got one NoneType, not a tuple of them"),
                                         ("h", "got one str, not a tuple of them")])
def test_a_state_that_is_no_tuple_is_named_as_what_it_is(which, state, said):
    """lstm.jacobian_fn("state")(params, None, x) said "takes a state of 2 part(s) (h, c),
    got 1": the None given was counted as one state part, and never named."""
    lstm = gradlab.cell("lstm")
    params = lstm.init_params(4, 3, seed=0)
    with pytest.raises(GradlabError, match=r"^cell 'lstm' takes a state of 2 part\(s\) "
                                           r"\(h, c\), got one ") as err:
        _lowered()[which](params, state, torch.zeros(2, 3, dtype=D))
    assert str(err.value).endswith(said)
