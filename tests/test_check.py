"""gradlab as the oracle for other people's derivations: check_jacobian, gradlab.testing and
`gradlab check` on a hand-derived GRU Jacobian, right or broken on purpose (a term
dropped, a sign, a layout, a wrong diagonal term, the other convention, swapped gates, the
reset after the matrix, float32 rounding beside a missing term), an LSTM's blocks, torch's
GRU weights read in the wrong gate order, states along a trajectory, bad input as one
error, a derivation without biases, one block for the whole Jacobian, the README example.

The Jacobians under test are written by hand here, the way a researcher writes them: the
GRU's (R2RT form) from its equations; the LSTM's and torch GRU's through torch.func.jacrev
of a plain torch step, then broken on purpose. Lyapunov routines: test_check_lyapunov.py;
mistakes in other cells' Jacobians: test_check_mistakes.py."""

import textwrap

import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.testing import assert_jacobian

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


def test_the_readme_example_prints_what_the_readme_says(capsys):
    import pathlib
    import re
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Check your own derivation"):]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip() == shown.strip()


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
