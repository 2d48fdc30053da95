"""A wrong answer that is right at the draws checked must not be called right: chunks of
units or sequences wider than the sizes checked, answers kept from an earlier call, a
batch folded into one matrix, an answer in a buffer the function reuses, and a Lyapunov
tolerance set by exponents far below the top one (each once agreed)."""

import textwrap

import numpy as np
import pytest
import torch

import gradlab
from gradlab.testing import assert_jacobian
from conftest import invoke

RNN = textwrap.dedent('''\
    import torch

    def slope(P, S, X):
        return 1 - torch.tanh(S[0] @ P["W"].T + X @ P["U"].T + P["b"].reshape(-1)) ** 2

    def sequences_in_chunks(P, S, X, chunk=8):
        # every chunk reads the first chunk's states: right for B <= 8
        h, out = S[0], []
        for i in range(0, h.shape[0], chunk):
            k = len(h[i:i + chunk])
            a = h[:k] @ P["W"].T + X[i:i + k] @ P["U"].T + P["b"].reshape(-1)
            out.append((1 - torch.tanh(a) ** 2)[:, :, None] * P["W"])
        return torch.cat(out)

    def units_in_chunks(P, S, X, chunk=32):
        # later chunks of rows take the first chunk's slope: right for n <= 32
        s, n, rows = slope(P, S, X), P["W"].shape[0], []
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            rows.append(s[:, :k, None] * P["W"][i:i + k])
        return torch.cat(rows, 1)

    def wrong_past_three(P, S, X):
        # a term halved where |h| > 3 (a clamp in the user's forward): the usual draws,
        # N(0, 0.8^2), reach 2.96 at most
        big = (S[0].abs() > 3).to(S[0].dtype)
        return slope(P, S, X)[:, :, None] * P["W"] * (1 - 0.5 * big[:, None, :])

    def wrong_at_large_inputs(P, S, X):
        # the input clamped to +-3 inside the slope: right at every N(0, 0.8^2) draw
        return slope(P, S, X.clamp(-3, 3))[:, :, None] * P["W"]

    def wrong_past_four_and_a_half(P, S, X):
        # a term halved where |h| > 4.5: states N(0, 2^2) reached 4.1 at seed 0
        big = (S[0].abs() > 4.5).to(S[0].dtype)
        return slope(P, S, X)[:, :, None] * P["W"] * (1 - 0.5 * big[:, None, :])

    _calls = [0]

    def wrong_from_the_fourth_call(P, S, X):
        _calls[0] += 1
        return slope(P, S, X)[:, :, None] * P["W"] * (1.01 if _calls[0] >= 4 else 1)

    _kept = {}

    def kept_by_shape(P, S, X):
        # the weights of the first call at each shape, kept: stale after a weight update
        key = (tuple(P["W"].shape), tuple(S[0].shape))
        if key not in _kept:
            _kept[key] = ({k: v.clone() for k, v in P.items()}, S[0].clone(), X.clone())
        Q, h, x = _kept[key]
        return slope(Q, (h,), x)[:, :, None] * Q["W"]

    _by_weights, _by_states = {}, {}

    def kept_by_weights(P, S, X):
        # memoised per model: the first answer for these weights, whatever the states
        key = tuple(P[k].numpy().tobytes() for k in sorted(P))
        if key not in _by_weights:
            _by_weights[key] = slope(P, S, X)[:, :, None] * P["W"]
        return _by_weights[key]

    def kept_by_states(P, S, X):
        # memoised per point: the first answer at these states, whatever the weights
        key = (S[0].numpy().tobytes(), X.numpy().tobytes())
        if key not in _by_states:
            _by_states[key] = slope(P, S, X)[:, :, None] * P["W"]
        return _by_states[key]
    ''')


@pytest.mark.parametrize("fn, why", [
    ("sequences_in_chunks", "sequences taken in fixed chunks"),
    ("units_in_chunks", "sequences taken in fixed chunks"),     # (one sentence for both)
    ("kept_by_shape", "keep an answer from an earlier call"),
    ("kept_by_weights", "(a cache keyed by shape or by the weights)"),   # both agreed
    ("kept_by_states", "(a cache keyed by the states or inputs)"),
    ("wrong_past_three", "or go wrong at large states or inputs (|h| > 3)"),
    ("wrong_past_four_and_a_half", "or go wrong at large states or inputs (|h| > 3)"),
    ("wrong_at_large_inputs", "or go wrong at large states or inputs (|h| > 3)"),
    ("wrong_from_the_fourth_call", "asked the first question again it answered otherwise")])
def test_gradlab_check_finds_what_one_draw_at_the_usual_sizes_hides(tmp_path, monkeypatch,
                                                                     fn, why):
    (tmp_path / "mine.py").write_text(RNN)
    monkeypatch.chdir(tmp_path)
    result = invoke("check", f"mine.py:{fn}", "--cell", "rnn_tanh")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("differs") and why in result.stdout     # (stderr: progress)


def test_gradlab_check_still_agrees_with_a_right_function_at_every_draw(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(RNN + textwrap.dedent('''
        def right(P, S, X):
            return slope(P, S, X)[:, :, None] * P["W"]
        '''))
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "mine.py:right", "--cell", "rnn_tanh")
    assert result.exit_code == 0, result.output
    assert "n = 8, m = 4, B = 4 and n = 33, m = 5, B = 33" in result.stdout


LSTM = textwrap.dedent('''\
    import torch
    from torch.func import jacrev, vmap

    def step(P, h, c, x):
        a = lambda g: h @ P["W_" + g].T + x @ P["U_" + g].T + P["b_" + g]
        i, f, o = (torch.sigmoid(a(g)) for g in "ifo")
        c2 = f * c + i * torch.tanh(a("g"))
        return torch.cat([o * torch.tanh(c2), c2])

    def right(P, S, X):
        n = S[0].shape[1]
        one = lambda s, x: step(P, s[:n], s[n:], x)
        return vmap(jacrev(one))(torch.cat(S, 1), X)
    ''')


PEEPHOLE = LSTM.replace('''    i, f, o = (torch.sigmoid(a(g)) for g in "ifo")
    c2 = f * c + i * torch.tanh(a("g"))
''', '''    i, f = (torch.sigmoid(a(g) + P["p_" + g] * c) for g in "if")
    c2 = f * c + i * torch.tanh(a("z"))
    o = torch.sigmoid(a("o") + P["p_o"] * c2)
''')


@pytest.mark.parametrize("cell, source", [("lstm", LSTM), ("peephole_lstm", PEEPHOLE)],
                         ids=["lstm", "peephole_lstm"])
def test_gradlab_check_agrees_with_a_right_function_of_two_state_parts(tmp_path, monkeypatch,
                                                                       cell, source):
    # the third draw once gave every state part the same numbers (h = c at every
    # sample), so no right LSTM Jacobian agreed: "inconclusive", exit 1
    assert source.count("sigmoid") == (1 if cell == "lstm" else 2)
    (tmp_path / "mine.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "mine.py:right", "--cell", cell)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("agrees: ")


def test_an_answer_in_a_reused_buffer_is_read_before_the_next_call_overwrites_it():
    """A numpy function writing into one buffer per shape (out=) that forgets the bias:
    at zero biases the note that it is wrong with biases was lost, as the second call
    overwrote the first answer and both looked alike (a closure over fixed weights)."""
    cell = gradlab.cell("rnn_tanh")
    params = cell.init_params(8, 4, weight_scale=1.5, bias_scale=0.0, seed=0)
    buffers = {}

    def no_bias(P, S, X):
        W, U = np.asarray(P["W"]), np.asarray(P["U"])
        a = np.asarray(S[0]) @ W.T + np.asarray(X) @ U.T                   # b forgotten
        out = buffers.setdefault(a.shape, np.empty((*a.shape, W.shape[1])))
        return np.multiply((1 - np.tanh(a) ** 2)[:, :, None], W[None], out=out)

    with pytest.warns(UserWarning, match="assert_jacobian: .*but not with it drawn nonzero"):
        assert_jacobian(no_bias, cell, params)


def _qr_exponents(cell, P, xs, k, shift=0):
    """Exponents by QR from the identity; shift=1 takes J at the state after the step."""
    step, jac = cell.step_fn(), cell.jacobian_fn("state")
    T, B, _ = xs.shape
    s = tuple(torch.zeros(B, P["W_i"].shape[0], dtype=xs.dtype) for _ in cell.state_names)
    states = [s]
    for t in range(T):
        s = step(P, s, xs[t])
        states.append(s)
    at = states[shift:shift + T]                     # one Jacobian call for all T steps
    J = jac(P, tuple(torch.cat([s[i] for s in at]) for i in range(len(s))),
            xs.reshape(T * B, -1)).reshape(T, B, *jac_shape(s))
    Q = torch.eye(J.shape[-1], dtype=xs.dtype)[:, :k].expand(B, -1, k).clone()
    total = torch.zeros(B, k, dtype=xs.dtype)
    for t in range(T):
        Q, R = torch.linalg.qr(J[t] @ Q)
        total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
    return (total / T).mean(0)


def jac_shape(state):
    S = sum(part.shape[-1] for part in state)
    return S, S


def test_check_lyapunov_judges_the_top_exponent_at_its_own_scale():
    """With every exponent asked for (k = S = 16), the tolerance was measured against
    the most negative (-5.05): a top exponent 30 % off (-0.44 for -0.34) agreed, and so
    did a Jacobian taken after the step at k = 4, T = 300. Too short a run is refused."""
    lstm = gradlab.cell("lstm")
    P = lstm.init_params(8, 4, weight_scale=1.5, bias_scale=0.5, seed=3)
    gen = torch.Generator().manual_seed(5)
    short = 0.8 * torch.randn(100, 4, 4, dtype=torch.float64, generator=gen)
    right = _qr_exponents(lstm, P, short, 16)
    top_off = right.clone()
    top_off[0] *= 1.3
    for answer in (right, top_off):
        with pytest.raises(gradlab.GradlabError, match="xs is too short to check exponents"):
            gradlab.check_lyapunov(lambda p, x, k, a=answer: a, lstm, P, short, 16)
    gen = torch.Generator().manual_seed(5)
    long = 0.8 * torch.randn(1200, 4, 4, dtype=torch.float64, generator=gen)
    right = _qr_exponents(lstm, P, long, 4)
    assert gradlab.check_lyapunov(lambda p, x, k: right, lstm, P, long, 4).ok
    top_off = right.clone()
    top_off[0] *= 1.3                              # judged, and wrong, on a long enough run
    assert not gradlab.check_lyapunov(lambda p, x, k: top_off, lstm, P, long, 4).ok
    after = gradlab.check_lyapunov(lambda p, x, k: _qr_exponents(lstm, p, x, k, shift=1),
                                   lstm, P, long, 4)
    assert not after.ok
