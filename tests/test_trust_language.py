"""Trust at the edges: names a declaration may use (state parts and parameters called n and
m, sizes spelled apart from them, names and lets refused at declaration with the reason,
constants that are not finite, too many values, a let no new state reads). Each test here
failed before the fix it names. Cell files and an honest verify: test_trust_verify.py."""

import textwrap

import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import GradlabError, declare, sigmoid, sqrt, tanh
from gradlab.symbolic.language import m as M_SYMBOL, n as N_SYMBOL
from conftest import random_inputs, relative_error

TIGHT = 1e-12   # float64, lowered Jacobian against jacrev of an independent step


def _refused(fn, **options):
    """The one-line message of a declaration gradlab refuses."""
    options = {"state": "h", "params": "W U b", "source": "a test cell", **options}
    with pytest.raises(GradlabError) as err:
        declare(**options)(fn)
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def _rnn(s):
    return tanh(s.W @ s.h + s.U @ s.x + s.b)


def _flat_jacobian(step, params, state, x):
    """(B, S, S) by torch.func.jacrev of a hand-written one-sample step."""
    k = state[0].shape[-1]

    def flat(s, xi):
        parts = tuple(p[None] for p in torch.split(s, k))
        return torch.cat(step(params, parts, xi[None]), -1)[0]

    return vmap(jacrev(flat, 0))(torch.cat(state, -1), x)


# -- 1. the sizes are not s.n / s.m: state parts and parameters may be called n and m -------

def xlstm_names(s):
    """State parts named n and m, as in the xLSTM paper."""
    h = s.let("h'", tanh(s.W_h @ s.h + s.W_n @ s.n + s.U @ s.x + s.b))
    n = sigmoid(s.W_m @ s.m + s.U_n @ s.x + s.b_n) * s.n + s.m
    m = tanh(s.m * s.n + s.U_m @ s.x + s.b_m)
    return h, n, m


def xlstm_names_step(P, state, x):
    h, n, m = state
    h2 = torch.tanh(h @ P["W_h"].T + n @ P["W_n"].T + x @ P["U"].T + P["b"])
    n2 = torch.sigmoid(m @ P["W_m"].T + x @ P["U_n"].T + P["b_n"]) * n + m
    m2 = torch.tanh(m * n + x @ P["U_m"].T + P["b_m"])
    return h2, n2, m2


def param_m(s):
    """A parameter named m (it used to be refused as 'declared but used by no equation')
    and a let named n."""
    a = s.let("n", tanh(s.m @ s.h + s.U @ s.x + s.b))
    return a * s.h + a


def param_m_step(P, state, x):
    a = torch.tanh(state[0] @ P["m"].T + x @ P["U"].T + P["b"])
    return (a * state[0] + a,)


DECLARED = {  # declared in the tests, so that a refusal fails a test, not the collection
    "xlstm_names": dict(state="h n m", params="W_h W_n W_m U U_n U_m b b_n b_m"),
    "param_m": dict(state="h", params={"m": "n n", "U": "n m", "b": "n"}),
}


def declared(fn):
    return declare(source="a test cell", **DECLARED[fn.__name__])(fn)


@pytest.mark.parametrize("fn, step", [(xlstm_names, xlstm_names_step),
                                      (param_m, param_m_step)], ids=["state-n-m", "param-m"])
@pytest.mark.parametrize("size", [(1, 1, 1), (5, 3, 2)], ids=["n1", "n5"])
def test_names_n_and_m_get_correct_jacobians(fn, step, size):
    n, m, batch = size
    cell = declared(fn)
    params, state, x = random_inputs(cell, n, m, batch, seed=3)
    for ours, theirs in zip(cell.step_fn()(params, state, x), step(params, state, x)):
        assert relative_error(ours, theirs) <= TIGHT
    assert relative_error(cell.jacobian_fn("state")(params, state, x),
                          _flat_jacobian(step, params, state, x)) <= TIGHT


def test_size_symbols_are_not_the_state():
    """s.m * s.h with a state part m was the size m times h: verify passed it."""
    @declare(state="h m", params="W U b", source="a test cell")
    def sized(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b), s.m * s.h

    (_, m_new), = [sized.outputs]
    assert sized.lets[m_new].free_symbols >= {sized.symbol("m"), sized.symbol("h")}
    assert N_SYMBOL not in sized.lets[m_new].free_symbols
    assert M_SYMBOL not in sized.lets[m_new].free_symbols
    params, state, x = random_inputs(sized, 3, 2, 2, seed=1)
    assert relative_error(sized.step_fn()(params, state, x)[1], state[1] * state[0]) <= TIGHT


def test_sizes_have_their_own_spelling():
    seen = {}

    @declare(state="h", params="W U b", source="a test cell")
    def scaled(s):
        seen["sizes"] = (s.hidden_size, s.input_size)
        return tanh(s.W @ s.h + s.U @ s.x + s.b) * (1 / s.hidden_size)

    assert seen["sizes"] == (N_SYMBOL, M_SYMBOL)
    params, state, x = random_inputs(scaled, 4, 2, 2, seed=2)
    expected = torch.tanh(state[0] @ params["W"].T + x @ params["U"].T + params["b"]) / 4
    assert relative_error(scaled.step_fn()(params, state, x)[0], expected) <= TIGHT


# -- names refused at declaration, with the reason ------------------------------------------

BAD_NAMES = {
    "leading underscore": (dict(state="_h"), "'_h'", "starts with '_'"),
    "state named let": (dict(state="let"), "'let'", "reserved"),
    "parameter named let": (dict(params="W U b let"), "'let'", "reserved"),
    "state named hidden_size": (dict(state="hidden_size"), "'hidden_size'", "reserved"),
    "keyword parameter": (dict(params="W U b lambda"), "'lambda'", "keyword"),
    "not an identifier": (dict(params={"W": "n n", "U": "n m", "b": "n", "b-1": "n"}),
                          "'b-1'", "not a Python identifier"),
    "spaces in a state list": (dict(state=["h", "a b"]), "'a b'", "not a Python identifier"),
    "input reused as state": (dict(state="h x"), "'x'", "state part and as an input"),
    "inputs= a state part": (dict(inputs="h"), "'h'", "state part and as an input"),
    "state twice": (dict(state="h h"), "'h'", "twice"),
    "parameter twice": (dict(params="W U b W"), "'W'", "twice"),
    "parameter named like a state": (dict(params="W U b h"), "'h'", "as a parameter"),
    "h_p shadows h'": (dict(params="W U b h_p"), "h_p", "h'"),
    "no state": (dict(state=""), "state=", "names no part"),
    "gate_bias names nothing": (dict(gate_bias="b_f"), "'b_f'", "valid: b"),
    "-gate_bias names nothing": (dict(gate_bias="-b_x"), "'-b_x'", "valid: b"),
    "gate_bias not a bias": (dict(gate_bias="W"), "'W'", "valid: b"),
}


@pytest.mark.parametrize("options, bad, why", BAD_NAMES.values(), ids=BAD_NAMES)
def test_bad_names_are_refused_at_declaration(options, bad, why):
    body = _rnn if "h_p" not in str(options) else (
        lambda s: tanh(s.W @ s.h + s.U @ s.x + s.b + s.h_p))
    body.__name__ = "named_cell"
    msg = _refused(body, **options)
    assert msg.startswith("cell 'named_cell'") and bad in msg and why in msg, msg


@pytest.mark.parametrize("name", ["../../ESCAPED", "a/b", "x y", "", "class", "3d"])
def test_cell_names_that_are_not_identifiers_are_refused(name):
    msg = _refused(_rnn, name=name)
    assert repr(name) in msg and "identifier" in msg, msg


def test_a_let_that_would_share_a_lowered_variable_is_refused():
    """c_p and the new c (c') both print as v_c_p: one would overwrite the other."""
    def shared(s):
        a = s.let("c_p", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return a, a * s.c

    msg = _refused(shared, state="h c")
    assert "'c_p'" in msg and "c'" in msg and "v_c_p" in msg, msg


def test_a_python_slip_in_a_declaration_names_the_equation():
    def slip(s):
        return tanh(s.W.t @ s.h + s.U @ s.x + s.b)     # .T is the transpose; .t a slip

    msg = _refused(slip)
    assert "cell 'slip'" in msg and "AttributeError" in msg, msg
    assert "return tanh(s.W.t @ s.h + s.U @ s.x + s.b)" in msg, msg


def test_sqrt_of_a_vector_lowers():
    @declare(state="h", params="W U b", source="a test cell")
    def rooted(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b) / sqrt(s.h * s.h + 1)

    def step(P, state, x):
        h = state[0]
        return (torch.tanh(h @ P["W"].T + x @ P["U"].T + P["b"]) / torch.sqrt(h * h + 1),)

    params, state, x = random_inputs(rooted, 3, 2, 2, seed=5)
    assert relative_error(rooted.step_fn()(params, state, x)[0],
                          step(params, state, x)[0]) <= TIGHT
    assert relative_error(rooted.jacobian_fn("state")(params, state, x),
                          _flat_jacobian(step, params, state, x)) <= TIGHT


@pytest.mark.parametrize("factor, shown", [("/ 0", "cannot divide by 0: it is zero"),
                                           ("* float('inf')", "not finite.*oo"),
                                           ("* float('nan')", "not finite.*nan")])
def test_a_constant_that_is_not_finite_is_refused_at_declaration(factor, shown):
    """`tanh(...) / 0` used to be accepted (h' = zoo tanh(...)) and then fail in every
    backend with NameError: name 'zoo' is not defined."""
    source = textwrap.dedent(f"""
        @declare(state="h", params="W U b", source="x")
        def broken(s):
            return tanh(s.W @ s.h + s.U @ s.x + s.b) {factor}
    """)
    with pytest.raises(GradlabError, match=shown):
        exec(source, {"declare": declare, "tanh": tanh})


def test_too_many_values_for_the_state_say_so():
    with pytest.raises(GradlabError, match=r"returns 3 values for the state \(h, c\)"):
        @declare(state="h c", params="W U b", source="x")
        def three(s):
            a = tanh(s.W @ s.h + s.U @ s.x + s.b)
            return a, a, a


def test_a_let_no_new_state_reads_is_refused():
    """An LSTM whose output gate o is computed and never applied (h' = tanh(c')) was
    declared, verified and checked as correct: its W_o, U_o, b_o counted as used because
    an equation (o's own) named them."""
    from gradlab import sigmoid, tanh

    def forgot_o(s):
        f = s.let("f", sigmoid(s.W_f @ s.h + s.b_f))
        s.let("o", sigmoid(s.W_o @ s.h + s.b_o))
        c2 = s.let("c'", f * s.c + tanh(s.W @ s.h + s.U @ s.x))
        return tanh(c2), c2
    with pytest.raises(gradlab.GradlabError, match="cell 'forgot_o': o is computed but no "
                                                   "new state reads it, directly or through "
                                                   "other lets"):
        gradlab.declare(state="h c", params="W_f b_f W_o b_o W U", source="test")(forgot_o)
