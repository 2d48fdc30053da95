"""gradlab as the oracle for other people's derivations: check_jacobian, check_lyapunov,
gradlab.testing and `gradlab check`, each mistake class diagnosed by name.

The Jacobians under test are written by hand here, the way a researcher writes them: the
GRU's (R2RT form) from its equations; the LSTM's and torch GRU's through torch.func.jacrev
of a plain torch step, then broken on purpose."""

import math
import re
import textwrap

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.testing import assert_jacobian, assert_lyapunov
from gradlab.verification.lyapunov_check import exponents

from conftest import assert_one_line_error, invoke

sig, tanh = torch.sigmoid, torch.tanh
D = torch.diag_embed


def lin(v, W):
    return v @ W.T


def gru_jacobian(P, state, x, *, drop=False, flip=False, transpose=False, slope=False,
                 extra=False, half=False, wrong_way=()):
    """d h'/d h of h' = z h + (1 - z) tanh(W (r h) + U x + b), by hand, optionally wrong;
    `wrong_way`: the weights used transposed."""
    (h,) = state
    r = sig(lin(h, P["W_r"]) + lin(x, P["U_r"]) + P["b_r"])
    z = sig(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])
    ht = tanh(lin(r * h, P["W"]) + lin(x, P["U"]) + P["b"])
    W = {k: P[k].T if k in wrong_way else P[k] for k in ("W", "W_z", "W_r")}
    dz = D(z * (1 - z)) @ W["W_z"]
    dr = D(r * (1 - r)) @ W["W_r"]
    dht = D((1 - ht) if slope else (1 - ht ** 2)) @ W["W"] @ (D(r) + D(h) @ dr)
    J = D(z) + (-1 if flip else 1) * D(h) @ dz + (0.5 if half else 1) * D(1 - z) @ dht
    if not drop:
        J = J - D(ht) @ dz
    if extra:
        J = J + D(z)
    return J.transpose(1, 2) if transpose else J


@pytest.fixture(scope="module")
def gru():
    cell = gradlab.cell("gru")
    return cell, cell.init_params(6, 3, weight_scale=1.5, bias_scale=0.5, seed=0)


def test_a_correct_hand_derived_jacobian_passes(gru):
    cell, params = gru
    result = gradlab.check_jacobian(gru_jacobian, cell, params)
    assert result.ok and result.max_error < 1e-12 and result.diagnosis == []
    assert result.max_error.absolute < 1e-12 and result.worst_block == ("h", "h")


@pytest.mark.parametrize("mistake, words", [
    ({"drop": True}, "the term -diag(h~ ⊙ z ⊙ (1 - z)) W_z is missing"),
    ({"flip": True}, "the term diag(h ⊙ z ⊙ (1 - z)) W_z has the wrong sign"),
    ({"extra": True}, "the term diag(z) appears twice"),
    ({"half": True}, "is scaled by 0.5 instead of 1"),
    ({"transpose": True}, "transpose of the exact one"),
    ({"slope": True}, "the factor diag((1 - z) ⊙ (1 - h~^2))"),
    # a transposed weight inside a term, or after a minus sign, not only diag(v) W: each
    # was "no missing, extra, sign-flipped or rescaled term explains the difference"
    ({"wrong_way": ("W_z",)}, "in the term -diag(h~ ⊙ z ⊙ (1 - z)) W_z, yours has W_zᵀ"),
    ({"wrong_way": ("W",)}, "in the term diag((1 - z) ⊙ (1 - h~^2)) W diag(r), yours has Wᵀ"),
    ({"wrong_way": ("W_r",)}, "W diag(h ⊙ r ⊙ (1 - r)) W_r, yours has W_rᵀ where W_r belongs"),
])
def test_each_mistake_is_named(gru, mistake, words):
    cell, params = gru
    result = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(P, s, x, **mistake),
                                    cell, params)
    assert not result.ok
    assert any(words in sentence for sentence in result.diagnosis), result.diagnosis


def test_layout_option_accepts_the_transpose(gru):
    cell, params = gru
    fn = lambda P, s, x: gru_jacobian(P, s, x, transpose=True)          # noqa: E731
    assert gradlab.check_jacobian(fn, cell, params, layout="denominator").ok


def test_a_numpy_function_of_one_sample(gru):
    cell, params = gru

    def one(P, state, x):                       # (n,) state, (m,) x -> (n, n) numpy
        J = gru_jacobian(P, tuple(s[None] for s in state), x[None])[0]
        return J.numpy()

    assert gradlab.check_jacobian(one, cell, params, batch=3).ok


def lstm_step(P, state, x):
    h, c = state
    gate = lambda a, f=sig: f(lin(h, P[f"W_{a}"]) + lin(x, P[f"U_{a}"]) + P[f"b_{a}"])  # noqa
    i, f, g, o = gate("i"), gate("f"), gate("g", tanh), gate("o")
    c2 = f * c + i * g
    return o * tanh(c2), c2


def lstm_jacobian(P, state, x, order=(0, 1)):
    n = state[0].shape[-1]

    def flat(s, x):
        h, c = s[:n], s[n:]
        return torch.cat(lstm_step(P, (h[None], c[None]), x[None]), -1)[0]

    J = vmap(jacrev(flat))(torch.cat(state, -1), x)
    idx = torch.cat([torch.arange(k * n, (k + 1) * n) for k in order])
    return J[:, idx][:, :, idx]


def test_lstm_blocks_order_and_the_h_only_block():
    cell = gradlab.cell("lstm")
    params = cell.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=1)
    assert gradlab.check_jacobian(lstm_jacobian, cell, params).ok
    swapped = gradlab.check_jacobian(lambda P, s, x: lstm_jacobian(P, s, x, (1, 0)), cell,
                                     params)
    assert not swapped.ok and "order (c, h)" in swapped.diagnosis[0]
    h_only = lambda P, s, x: lstm_jacobian(P, s, x)[:, :5, :5]        # noqa: E731
    assert gradlab.check_jacobian(h_only, cell, params, block=("h", "h")).ok
    wrong = gradlab.check_jacobian(h_only, cell, params, block=("h", "c"))
    assert not wrong.ok and wrong.worst_block == ("h", "c")


def test_torch_gru_weights_read_in_the_wrong_gate_order():
    """A Jacobian taken through nn.GRUCell, with weight_ih/hh stacked (z, r, n) instead of
    torch's (r, z, n): the diagnosis names the order."""
    cell = gradlab.cell("gru_torch")
    params = cell.init_params(4, 3, weight_scale=1.5, bias_scale=0.5, seed=2)

    def through_module(P, state, x, gates=("z", "r", "n")):
        module = torch.nn.GRUCell(3, 4).double()
        with torch.no_grad():
            module.weight_hh.copy_(torch.cat([P[f"W_{g}"] for g in gates]))
            module.weight_ih.copy_(torch.cat([P[f"U_{g}"] for g in gates]))
            module.bias_ih.copy_(torch.cat([P[f"b_i{g}"] for g in gates]))
            module.bias_hh.copy_(torch.cat([P[f"b_h{g}"] for g in gates]))
        return vmap(jacrev(lambda h, x: module(x[None], h[None])[0]))(state[0], x)

    right = lambda P, s, x: through_module(P, s, x, ("r", "z", "n"))  # noqa: E731
    assert gradlab.check_jacobian(right, cell, params).ok
    result = gradlab.check_jacobian(through_module, cell, params)
    assert not result.ok and "gate order (z, r, n)" in result.diagnosis[0], result.diagnosis


def test_nothing_simple_is_said_plainly(gru):
    cell, params = gru
    noisy = lambda P, s, x: gru_jacobian(P, s, x) + 0.01 * torch.ones(6, 6)    # noqa: E731
    result = gradlab.check_jacobian(noisy, cell, params)
    assert not result.ok and "no missing, extra" in result.diagnosis[0]
    assert "yours" in result.diagnosis[0] and "exact" in result.diagnosis[0]


def test_given_states_along_a_trajectory(gru):
    cell, params = gru
    flow = gradlab.gradient_flow(cell, params, torch.randn(6, 2, 3, dtype=torch.float64),
                                 norms=("frobenius",))
    state = (flow.states[0][3],)
    x = torch.randn(2, 3, dtype=torch.float64)
    assert gradlab.check_jacobian(gru_jacobian, cell, params, states=(state, x)).ok
    assert gradlab.check_jacobian(gru_jacobian, cell, params, states=state).checked == 2


def test_assert_jacobian_fails_with_the_diagnosis(gru):
    cell, params = gru
    assert_jacobian(gru_jacobian, cell, params)
    with pytest.raises(AssertionError, match="is missing"):
        assert_jacobian(lambda P, s, x: gru_jacobian(P, s, x, drop=True), cell, params)


def test_bad_input_is_one_error(gru):
    cell, params = gru
    with pytest.raises(gradlab.GradlabError, match="returned shape"):
        gradlab.check_jacobian(lambda P, s, x: torch.zeros(2, 2), cell, params)
    with pytest.raises(gradlab.GradlabError, match="raised ZeroDivisionError"):
        gradlab.check_jacobian(lambda P, s, x: 1 / 0, cell, params)
    with pytest.raises(gradlab.GradlabError, match="layout"):
        gradlab.check_jacobian(gru_jacobian, cell, params, layout="columns")
    with pytest.raises(gradlab.GradlabError, match="block"):
        gradlab.check_jacobian(gru_jacobian, cell, params, block=("h", "q"))


BROKEN = textwrap.dedent('''
    import torch

    def gru_jacobian(P, state, x):
        """d h'/d h of the R2RT GRU, missing the candidate's share of the update gate."""
        (h,) = state
        lin = lambda v, W: v @ W.T
        r = torch.sigmoid(lin(h, P["W_r"]) + lin(x, P["U_r"]) + P["b_r"])
        z = torch.sigmoid(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])
        ht = torch.tanh(lin(r * h, P["W"]) + lin(x, P["U"]) + P["b"])
        D = torch.diag_embed
        dr = D(r * (1 - r)) @ P["W_r"]
        return (D(z) + D(h * z * (1 - z)) @ P["W_z"]
                + D((1 - z) * (1 - ht ** 2)) @ P["W"] @ (D(r) + D(h) @ dr))

    def fixed(P, state, x):
        (h,) = state
        z = torch.sigmoid(h @ P["W_z"].T + x @ P["U_z"].T + P["b_z"])
        r = torch.sigmoid(h @ P["W_r"].T + x @ P["U_r"].T + P["b_r"])
        ht = torch.tanh((r * h) @ P["W"].T + x @ P["U"].T + P["b"])
        return gru_jacobian(P, state, x) - torch.diag_embed(ht * z * (1 - z)) @ P["W_z"]
''')


def test_gradlab_check_command(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(BROKEN)
    bad = invoke("check", f"{f}:gru_jacobian", "--cell", "gru")
    assert bad.exit_code == 1 and "W_z is missing" in bad.stdout, bad.output
    good = invoke("check", f"{f}:fixed", "--cell", "gru", "--hidden", "5")
    assert good.exit_code == 0 and good.stdout.startswith("agrees"), good.output
    assert_one_line_error(invoke("check", f"{f}:nope", "--cell", "gru"), "nope")
    assert_one_line_error(invoke("check", f"{f}:fixed", "--cell", "nope"), "nope")
    assert_one_line_error(invoke("check", "missing.py:f", "--cell", "gru"), "missing.py")
    assert_one_line_error(invoke("check", f"{f}:fixed", "--cell", "gru", "--block", "h"),
                          "block")


# --- Lyapunov ----------------------------------------------------------------------------

def periodic_inputs(T=300, B=2, m=3, period=3, scale=2.0, seed=0):
    """Inputs repeating with period 3: the state settles on a periodic orbit, J_t repeats,
    and the forward product (J_3 J_2 J_1)^k and the reverse one (J_1 J_2 J_3)^k have
    different spectra."""
    gen = torch.Generator().manual_seed(seed)
    base = scale * torch.randn(period, B, m, generator=gen, dtype=torch.float64)
    return base.repeat(T // period, 1, 1)


def benettin(transpose=False, part=None, base=math.e):
    """A user's routine: jacrev Jacobians along the run and a QR step per step."""
    def fn(P, xs, k):
        step = gradlab.cell("lstm").step_fn("torch")
        T, B, _ = xs.shape
        n = P["W_i"].shape[0]
        s, states = (torch.zeros(B, n, dtype=xs.dtype),) * 2, []
        for t in range(T):
            states.append(torch.cat(s, -1))
            s = step(P, s, xs[t])

        def flat(v, x):
            return torch.cat(step(P, (v[None, :n], v[None, n:]), x[None]), -1)[0]

        J = vmap(jacrev(flat))(torch.cat(states), xs.reshape(T * B, -1)).view(T, B, 2 * n, 2 * n)
        if part:
            J = J[:, :, :n, :n]
        gen = torch.Generator().manual_seed(7)
        Q = torch.linalg.qr(torch.randn(B, J.shape[-1], k, generator=gen, dtype=xs.dtype))[0]
        total = torch.zeros(B, k, dtype=xs.dtype)
        for Jt in J:
            Q, R = torch.linalg.qr((Jt.mT if transpose else Jt) @ Q)
            total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log() / math.log(base)
        return total / T
    return fn


@pytest.fixture(scope="module")
def lstm_case():
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 3, weight_scale=2.0, gate_bias=1.0, seed=4)
    return cell, params, periodic_inputs()


def test_check_lyapunov_agrees_with_a_correct_routine(lstm_case):
    cell, params, xs = lstm_case
    result = gradlab.check_lyapunov(benettin(), cell, params, xs, 2)
    assert result.ok, str(result)
    assert_lyapunov(benettin(), cell, params, xs, 2)


def test_check_lyapunov_flags_the_transposed_qr_on_periodic_input(lstm_case):
    cell, params, xs = lstm_case
    J = torch.stack([cell.jacobian_fn("state")(params, s, x) for s, x in
                     zip(_states(cell, params, xs), xs)])
    forward, reverse = exponents(J, 2).mean(0), exponents(J, 2, transpose=True).mean(0)
    assert np.max(np.abs(forward - reverse)) > 3 * 10 / len(xs)    # the spectra differ
    result = gradlab.check_lyapunov(benettin(transpose=True), cell, params, xs, 2)
    assert not result.ok and "reverse time order" in result.diagnosis[0], str(result)


def test_check_lyapunov_names_log_base_and_partial_state(lstm_case):
    cell, params, xs = lstm_case
    two = gradlab.check_lyapunov(benettin(base=2), cell, params, xs, 2)
    assert not two.ok and "log base 2" in two.diagnosis[0], str(two)
    h_only = gradlab.check_lyapunov(benettin(part=True), cell, params, xs, 2)
    assert not h_only.ok and "state part h alone" in h_only.diagnosis[0], str(h_only)
    with pytest.raises(AssertionError, match="log base 2"):
        assert_lyapunov(benettin(base=2), cell, params, xs, 2)


def _states(cell, params, xs, n=3):
    step = cell.step_fn("torch")
    s = tuple(torch.zeros(xs.shape[1], n, dtype=xs.dtype) for _ in cell.state_names)
    for x in xs:
        yield s
        s = step(params, s, x)


def test_the_readme_example_prints_what_the_readme_says(capsys):
    import pathlib
    import re
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Check your own derivation"):]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip() == shown.strip()


def test_check_lyapunov_names_mistakes_made_together(lstm_case):
    """The published LSTM code (lyapunov-hyperopt) makes three mistakes at once: J^T in the
    QR step, h alone with c frozen, and log2. Each must be named."""
    cell, params, xs = lstm_case
    result = gradlab.check_lyapunov(benettin(transpose=True, part=True, base=2), cell,
                                    params, xs, 2)
    assert not result.ok, str(result)
    text = result.diagnosis[0]
    assert "together" in text and "reverse time order" in text
    assert "state part h alone" in text and "log base 2" in text


@pytest.mark.parametrize("T", [300, 1200])
def test_check_lyapunov_never_passes_a_transposed_routine_without_a_caveat(T):
    """On Gaussian inputs a routine on the transposed Jacobian differs from the exact
    exponents by little (a fixed 10/T let it pass as correct). The measured tolerance (the
    spread over start vectors) either flags it or says the check cannot tell them apart."""
    cell = gradlab.cell("gru_torch")
    params = cell.init_params(4, 3, weight_scale=1.5, seed=2)
    xs = torch.randn(T, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def transposed(P, xs, k):
        J = torch.stack([cell.jacobian_fn("state")(P, s, x)
                         for s, x in zip(_states(cell, P, xs, n=4), xs)])
        return torch.as_tensor(exponents(J, k, transpose=True))

    result = gradlab.check_lyapunov(transposed, cell, params, xs, 2)
    assert (not result.ok and "reverse time order" in result.diagnosis[0]) or \
        (result.ok and "cannot tell" in result.diagnosis[0]), str(result)


def test_a_wrong_factor_in_one_term_is_not_pinned_on_its_first_factor():
    """sigma'(i) written as i: the term diag(o ⊙ (1 - tanh(c')^2)) diag(g ⊙ i ⊙ (1 - i)) W_i
    of dh'/dh was blamed on its first factor, diag(o ⊙ (1 - tanh(c')^2)), which is right;
    and the dc'/dh line named another factor. Both now name the term and its factors."""
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=1)

    def wrong(P, state, x):
        h, c = state
        pre = lambda a: lin(h, P[f"W_{a}"]) + lin(x, P[f"U_{a}"]) + P[f"b_{a}"]  # noqa: E731
        i, f, o, g = sig(pre("i")), sig(pre("f")), sig(pre("o")), tanh(pre("g"))
        c2 = f * c + i * g
        dc_dh = (D(c * f * (1 - f)) @ P["W_f"] + D(g * i) @ P["W_i"]      # slope of i: i
                 + D(i * (1 - g ** 2)) @ P["W_g"])
        k = D(o * (1 - tanh(c2) ** 2))
        dh_dh = D(tanh(c2) * o * (1 - o)) @ P["W_o"] + k @ dc_dh
        top = torch.cat([dh_dh, k @ D(f)], -1)
        return torch.cat([top, torch.cat([dc_dh, D(f)], -1)], 1)

    result = gradlab.check_jacobian(wrong, lstm, P)
    assert not result.ok and len(result.diagnosis) == 2, result.diagnosis
    for line in result.diagnosis:
        assert "diag(g ⊙ i ⊙ (1 - i)) W_i is off row by row" in line, line
        assert "diagonal factors" in line and ", 1 - i, is written wrong or missing" in line
    assert "the factor diag(o" not in " ".join(result.diagnosis)


def test_a_derivation_without_biases_is_told_so_and_checks_at_zero_biases(tmp_path):
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(4, 3, weight_scale=1.5, bias_scale=0.5, seed=2)

    def no_bias(P, state, x):
        zero = {k: torch.zeros_like(v) if k.startswith("b_") else v for k, v in P.items()}
        return lstm_jacobian(zero, state, x)

    result = gradlab.check_jacobian(no_bias, lstm, P)
    assert not result.ok
    assert result.diagnosis == [
        "Your Jacobian is the exact one with the biases (b_i, b_f, b_g, b_o) set to zero: "
        "your derivation leaves them out. If the model has no biases, check it at zero "
        "biases (--bias-scale 0, or params with zero biases)."]
    assert gradlab.check_jacobian(no_bias, lstm, lstm.init_params(4, 3, seed=2)).ok


def test_one_block_for_the_whole_jacobian_is_pointed_at_block(tmp_path):
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import torch
        def h_only(params, state, x):
            return torch.zeros(x.shape[0], state[0].shape[1], state[0].shape[1],
                               dtype=torch.float64)
        '''))
    result = invoke("check", f"{tmp_path / 'mine.py'}:h_only", "--cell", "lstm")
    assert_one_line_error(result, "(8, 8) is the shape of one block: to check one, pass "
                                  "block=('h', 'h') (--block h,h)")


def test_check_cli_draws_at_the_scales_given(tmp_path):
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import torch
        from torch.func import jacrev, vmap
        def rnn(params, state, x):      # a bias-free model's Jacobian
            W, U = params["W"], params["U"]
            f = lambda h, x: torch.tanh(h @ W.T + x @ U.T)
            return vmap(jacrev(f))(state[0], x)
        '''))
    spec = f"{tmp_path / 'mine.py'}:rnn"
    told = invoke("check", spec, "--cell", "rnn_tanh")
    assert told.exit_code == 1 and "with the biases (b) set to zero" in told.output
    fine = invoke("check", spec, "--cell", "rnn_tanh", "--bias-scale", "0")
    assert fine.exit_code == 0 and fine.output.startswith("agrees:"), fine.output


def test_a_wrong_diagonal_term_in_a_dense_block_is_not_called_a_diagonal_block(gru):
    """GRU with diag(1 - z) for diag(z): it said "Block ∂h'/∂h: yours is diagonal", of a
    dense block; the term is the diagonal one."""
    cell, params = gru
    z_of = lambda P, h, x: sig(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])  # noqa: E731
    result = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(P, s, x) - D(z_of(P, s[0], x))
                                    + D(1 - z_of(P, s[0], x)), cell, params)
    said = " ".join(result.diagnosis)
    assert "the diagonal term diag(z) is off entry by entry" in said, said
    assert "yours is diagonal" not in said


def test_a_weight_used_transposed_is_named():
    """min-char-rnn's backward with Whh where Whh.T belongs, as a Jacobian: diag(1 - h'^2) W^T."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def transposed(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return D(1 - h2 ** 2) @ P["W"].T

    result = gradlab.check_jacobian(transposed, rnn, P)
    assert result.diagnosis == ["Block ∂h'/∂h: in the term diag(1 - h'^2) W, yours has Wᵀ "
                                "where W belongs (a weight transposed)."]


def test_an_input_weight_used_transposed_is_named_where_its_shape_hides_it():
    """At m = n, diag(1 - h'^2) U^T has U's shape: it was "no missing, extra, sign-flipped
    or rescaled term explains the difference"; the LSTM's U_o the same way."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 5, weight_scale=1.5, bias_scale=0.5, seed=3)

    def transposed(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return D(1 - h2 ** 2) @ P["U"].T

    result = gradlab.check_jacobian(transposed, rnn, P, wrt="input")
    assert result.diagnosis == ["Block ∂h'/∂x: in the term diag(1 - h'^2) U, yours has Uᵀ "
                                "where U belongs (a weight transposed)."]

    def columns(P, state, x):             # (1 - h'^2)[:, None, :] * U: U diag(v)
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return P["U"] @ D(1 - h2 ** 2)

    said = " ".join(gradlab.check_jacobian(columns, rnn, P, wrt="input").diagnosis)
    assert "on the other side of the weight, scaling its columns" in said, said
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(4, 4, weight_scale=1.5, bias_scale=0.5, seed=1)
    exact = lstm.jacobian_fn("input")
    o_of = lambda P, s, x: sig(lin(s[0], P["W_o"]) + lin(x, P["U_o"]) + P["b_o"])  # noqa: E731

    def slipped(P, s, x):                 # d h'/d x's term diag(tanh(c') o (1 - o)) U_o
        c2 = lstm.step_fn("torch")(P, s, x)[1]
        o = o_of(P, s, x)
        wrong = D(torch.tanh(c2) * o * (1 - o)) @ (P["U_o"].T - P["U_o"])
        return exact(P, s, x) + torch.cat([wrong, torch.zeros_like(wrong)], 1)

    said = " ".join(gradlab.check_jacobian(slipped, lstm, P, wrt="input").diagnosis)
    assert "yours has U_oᵀ where U_o belongs" in said, said


def test_a_slope_broadcast_along_the_wrong_axis_is_named():
    """(1 - h'^2)[:, None, :] * W scales W's columns: W diag(v) where diag(v) W belongs,
    the numpy slip v * W; it was "no ... term explains the difference"."""
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(5, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def columns(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return (1 - h2 ** 2)[:, None, :] * P["W"]

    result = gradlab.check_jacobian(columns, rnn, P)
    assert result.diagnosis == ["Block ∂h'/∂h: in the term diag(1 - h'^2) W, yours has "
                                "diag(1 - h'^2) on the other side of the weight, scaling its "
                                "columns where it scales rows (a vector broadcast along the "
                                "wrong axis: v * W for v[:, None] * W in numpy)."]


def test_a_block_written_in_another_blocks_place_is_named():
    """∂h'/∂c put where ∂c'/∂h belongs (or two blocks' rows swapped) was "no ... term
    explains the difference": each such block is named as the exact block it is."""
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(4, 3, weight_scale=1.5, bias_scale=0.5, seed=0)
    exact = lstm.jacobian_fn("state")

    def misplaced(P, state, x):
        J = exact(P, state, x).clone()
        J[:, 4:, :4] = J[:, :4, 4:]
        return J

    assert gradlab.check_jacobian(misplaced, lstm, P).diagnosis == [
        "Block ∂c'/∂h: yours is gradlab's ∂h'/∂c, a block written in the wrong place (rows "
        "are the new state's parts, columns the old state's)."]


def test_the_other_gru_convention_and_swapped_gates_are_named(gru):
    """h' = (1 - z) h + z h~ checked against Cho's h' = z h + (1 - z) h~ is gru's exact
    Jacobian with z's parameters negated (sigma(-a) = 1 - z); r and z read the other way
    round is it with their parameters swapped."""
    cell, params = gru
    flip = {p: -params[p] for p in ("W_z", "U_z", "b_z")}
    swap = {f"{a}_{g}": params[f"{a}_{h}"] for a in "WUb" for g, h in (("r", "z"), ("z", "r"))}
    other = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(dict(P, **flip), s, x),
                                   cell, params)
    assert other.diagnosis[0].startswith(
        "Your Jacobian is the exact one with the parameters of z (W_z, U_z, b_z) negated, "
        "which turns a sigmoid gate z into 1 - z")
    swapped = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(dict(P, **swap), s, x),
                                     cell, params)
    assert swapped.diagnosis == [
        "Your Jacobian is the exact one with the parameters of r and z swapped (W_r ↔ W_z, "
        "U_r ↔ U_z, b_r ↔ b_z): your derivation uses r where z belongs and z where r belongs."]


@pytest.mark.parametrize("n, words", [
    (4, "Your Jacobian has the batch last, (rows, columns, B), read here as (B, rows, columns)"),
    (5, "(5, 5, 4) is (rows, columns, B), the batch last: put it first")])
def test_a_jacobian_with_the_batch_last_is_told_so(n, words):
    rnn = gradlab.cell("rnn_tanh")
    P = rnn.init_params(n, 3, weight_scale=1.5, bias_scale=0.5, seed=3)

    def batch_last(P, state, x):
        h2 = tanh(lin(state[0], P["W"]) + lin(x, P["U"]) + P["b"])
        return (D(1 - h2 ** 2) @ P["W"]).permute(1, 2, 0)

    if n == 4:                               # B = S: the shape cannot tell, the numbers do
        assert words in gradlab.check_jacobian(batch_last, rnn, P).diagnosis[0]
    else:
        with pytest.raises(gradlab.GradlabError, match=re.escape(words)):
            gradlab.check_jacobian(batch_last, rnn, P)


def test_the_reset_applied_after_the_matrix_is_named_for_chos_gru(gru):
    """torch's GRU convention, h~ = tanh(r ⊙ (W h) + U x + b), checked against Cho's gru
    was 'no ... term explains the difference'; and diag(r) written on the wrong side of W
    (diag(r) W for W diag(r)) likewise."""
    cell, params = gru
    torch_gru = gradlab.cell("gru_torch")
    zero = torch.zeros_like(params["b"])
    as_torch = {"W_n": params["W"], "U_n": params["U"], "b_ir": params["b_r"],
                "b_iz": params["b_z"], "b_in": params["b"], "b_hr": zero, "b_hz": zero,
                "b_hn": zero, **{k: params[k] for k in ("W_r", "W_z", "U_r", "U_z")}}
    after = gradlab.check_jacobian(lambda P, s, x: torch_gru.jacobian_fn()(as_torch, s, x),
                                   cell, params)
    assert not after.ok and after.diagnosis[0].startswith(
        "Your Jacobian is that of the GRU with its reset applied after the matrix")

    def wrong_side(P, state, x):              # diag(r) W where W diag(r) belongs
        (h,) = state
        r = sig(lin(h, P["W_r"]) + lin(x, P["U_r"]) + P["b_r"])
        J = gru_jacobian(P, state, x)
        z = sig(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])
        ht = tanh(lin(r * h, P["W"]) + lin(x, P["U"]) + P["b"])
        left = D((1 - z) * (1 - ht ** 2))
        return J - left @ P["W"] @ D(r) + left @ D(r) @ P["W"]
    said = gradlab.check_jacobian(wrong_side, cell, params).diagnosis
    assert said == ["Block ∂h'/∂h: in the term diag((1 - z) ⊙ (1 - h~^2)) W diag(r), yours "
                    "has diag(r) on the other side of the weight, scaling its rows where it "
                    "scales columns (applied after the product where it belongs before it, "
                    "as r ⊙ (W h) for W (r ⊙ h): the GRU's reset, in torch's convention and "
                    "Cho's)."]


@pytest.mark.parametrize("name", ["rnn_relu", "indrnn"])
def test_a_forgotten_relu_slope_is_named(name):
    """relu's slope θ(a) is 0 or 1: where it is 0 the exact row is zero, so the row-by-row
    ratio that names a forgotten tanh' cannot name it ('no ... term explains')."""
    if name == "indrnn":
        cell = gradlab.declare(state="h", params={"u": "n", "W": "n m", "b": "n"},
                               source="test", name="indrnn")(
            lambda s: gradlab.relu(s.u * s.h + s.W @ s.x + s.b))
        forgot = lambda P, s, x: D(P["u"].expand(x.shape[0], -1))        # noqa: E731
        factor, term = "θ(u ⊙ h + W x + b)", "diag(θ(u ⊙ h + W x + b) ⊙ u)"
    else:
        cell = gradlab.cell(name)
        forgot = lambda P, s, x: P["W"].expand(x.shape[0], -1, -1)       # noqa: E731
        factor, term = "θ(W h + U x + b)", "diag(θ(W h + U x + b)) W"
    params = cell.init_params(8, 3, bias_scale=0.5, seed=0)
    assert gradlab.check_jacobian(forgot, cell, params).diagnosis == [
        f"Block ∂h'/∂h: in the term {term}, yours leaves out the factor {factor} (an "
        "activation's slope?)."]


def test_float32_rounding_is_not_named_as_wrongly_scaled_terms(gru):
    """With float32 params and one term really missing, right terms were said to be
    'scaled by 1.000000073 instead of 1 (a wrong constant factor)': float32 rounding."""
    cell, params = gru
    p32 = {k: v.float() for k, v in params.items()}
    said = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(P, s, x, drop=True), cell,
                                  p32).diagnosis
    assert said == ["Block ∂h'/∂h: the term -diag(h~ ⊙ z ⊙ (1 - z)) W_z is missing."]
    # float64 params, a float32 answer, a small term missing: that term alone, not the
    # rounding of the others
    small = dict(params, W_z=params["W_z"] * 1e-3)
    said = gradlab.check_jacobian(lambda P, s, x: gru_jacobian(P, s, x, drop=True).float(),
                                  cell, small).diagnosis
    assert said == ["Block ∂h'/∂h: the term -diag(h~ ⊙ z ⊙ (1 - z)) W_z is missing."]


def test_a_missing_term_that_vanishes_at_some_samples_is_named_alone():
    """At saturated draws the missing term is ~0 in some samples, which then agree: the
    diagnosis named the term and also said 'your function is wrong at some points only
    (... a branch on the state's values ...)', a second, vaguer story for the same slip."""
    cell = gradlab.cell("gru")
    params = cell.init_params(9, 3, weight_scale=30, bias_scale=10, seed=2)

    def no_reset_path(P, state, x):
        (h,) = state
        r = sig(lin(h, P["W_r"]) + lin(x, P["U_r"]) + P["b_r"])
        z = sig(lin(h, P["W_z"]) + lin(x, P["U_z"]) + P["b_z"])
        ht = tanh(lin(r * h, P["W"]) + lin(x, P["U"]) + P["b"])
        return (D(z) + D((h - ht) * z * (1 - z)) @ P["W_z"]
                + D((1 - z) * (1 - ht ** 2)) @ P["W"] @ D(r))
    said = gradlab.check_jacobian(no_reset_path, cell, params).diagnosis
    assert said == ["Block ∂h'/∂h: the term diag((1 - z) ⊙ (1 - h~^2)) W diag(h ⊙ r ⊙ "
                    "(1 - r)) W_r is missing."]
