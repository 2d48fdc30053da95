"""The Lyapunov benchmark's baseline (a transcription of a published QR implementation,
gradlab.bench_lyapunov) computes what gradlab.lyapunov computes, and what an independent
jacrev + torch.linalg.qr loop computes; run_lyapunov_bench returns its documented fields.
No timing is asserted."""

import json

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.bench_lyapunov import (format_lyapunov_table, gru_jac, lstm_jac,
                                    published_lyapunov, run_lyapunov_bench, seeded_basis)
from gradlab.flow import make_inputs
from conftest import assert_ok, assert_one_line_error, invoke

N, M, T, B, K = 8, 3, 50, 2, 4


def module(kind, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return cls(M, N, batch_first=True).to(dtype)


def torch_step(kind, mod):
    """s (S,), x (m,) -> s' (S,): torch's LSTM / GRU equations written out, state (h, c)."""
    Wi, Wh = mod.weight_ih_l0.detach(), mod.weight_hh_l0.detach()
    bi, bh = mod.bias_ih_l0.detach(), mod.bias_hh_l0.detach()
    n = Wh.shape[1]
    if kind == "lstm":
        def step(s, x):
            i, f, g, o = (Wi @ x + bi + Wh @ s[:n] + bh).chunk(4)
            c = torch.sigmoid(f) * s[n:] + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c])
        return step

    def step(s, x):
        gi, gh = Wi @ x + bi, Wh @ s + bh
        r, z = torch.sigmoid(gi[:2 * n] + gh[:2 * n]).chunk(2)
        return (1 - z) * torch.tanh(gi[2 * n:] + r * gh[2 * n:]) + z * s
    return step


def jacrev_qr_loop(kind, mod, xs, q0):
    """Per-sequence exponents (B, k): J by jacrev, Q R = J Q by torch.linalg.qr."""
    step = torch_step(kind, mod)
    s = torch.zeros(xs.shape[1], q0.shape[1], dtype=torch.float64)
    Q, total = q0, 0
    for x in xs:
        J = vmap(jacrev(step))(s, x)
        s = vmap(step)(s, x)
        Q, R = torch.linalg.qr(J @ Q)
        total = total + torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
    return (total / len(xs)).numpy()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_transcribed_baseline_agrees_with_gradlab_and_a_jacrev_loop(kind):
    mod = module(kind)
    cell, params = gradlab.from_torch(mod)
    xs = make_inputs("gaussian", T, B, M, seed=1)
    S = 2 * N if kind == "lstm" else N
    q0 = seeded_basis(B, S, K, 0, torch.float64)
    with torch.no_grad():
        baseline = published_lyapunov(mod, xs, K, q0).numpy()
    ours = gradlab.lyapunov(cell, params, xs, K, seed=0).exponents
    loop = jacrev_qr_loop(kind, mod, xs, q0)
    assert baseline.shape == ours.shape == (B, K)
    np.testing.assert_allclose(baseline, ours, rtol=0, atol=1e-10)
    np.testing.assert_allclose(baseline, loop, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours, loop, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_baseline_jacobians_are_the_modules_state_jacobians(kind):
    """The closed-form Jacobians (the published expressions, the LSTM's completed to its
    (h, c) state) against jacrev of the torch equations, and the step against the module."""
    mod = module(kind)
    step = torch_step(kind, mod)
    weights = [p.detach() for p in mod.all_weights[0]]
    gen = torch.Generator().manual_seed(3)
    S = 2 * N if kind == "lstm" else N
    s, x = torch.randn(B, S, generator=gen, dtype=torch.float64), torch.randn(
        B, M, generator=gen, dtype=torch.float64)
    want = vmap(jacrev(step))(s, x)
    got = lstm_jac(weights, s[:, :N], s[:, N:], x) if kind == "lstm" else gru_jac(weights, s, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    with torch.no_grad():
        if kind == "lstm":
            _, (h, c) = mod(x[:, None], (s[None, :, :N].contiguous(), s[None, :, N:].contiguous()))
            out = torch.cat([h[0], c[0]], 1)
        else:
            out = mod(x[:, None], s[None].contiguous())[1][0]
    torch.testing.assert_close(vmap(step)(s, x), out, rtol=1e-13, atol=1e-14)


def test_run_lyapunov_bench_returns_its_documented_fields():
    results = run_lyapunov_bench(cells=("lstm", "gru"), hidden=N, steps=12, batch=B, k=K,
                                 dtypes=("float64", "float32"), repeats=2, inputs=M,
                                 threads=1)
    assert [(r["cell"], r["dtype"]) for r in results] == [
        ("lstm", "float64"), ("lstm", "float32"), ("gru", "float64"), ("gru", "float32")]
    for r in results:
        assert r["gradlab_cell"] == {"lstm": "lstm", "gru": "gru_torch"}[r["cell"]]
        assert (r["hidden"], r["inputs"], r["steps"], r["batch"], r["k"], r["threads"],
                r["repeats"]) == (N, M, 12, B, K, 1, 2)
        assert (r["torch"], r["gradlab"]) == (torch.__version__, gradlab.__version__)
        assert len(r["gradlab_runs"]) == len(r["baseline_runs"]) == 2
        assert r["gradlab_seconds"] == min(r["gradlab_runs"]) > 0
        assert r["baseline_seconds"] == min(r["baseline_runs"]) > 0
        q = r["ratio"]
        assert q["best"] == pytest.approx(r["baseline_seconds"] / r["gradlab_seconds"])
        assert q["min"] <= q["median"] <= q["max"]
        assert r["max_abs_difference"] < (1e-10 if r["dtype"] == "float64" else 1e-3)
    table = format_lyapunov_table(results)
    assert len(table.splitlines()) == 5 and "gru" in table and "float32" in table


def test_run_lyapunov_bench_refuses_what_it_cannot_run():
    with pytest.raises(gradlab.GradlabError, match="unknown cell"):
        run_lyapunov_bench(cells=("rnn_tanh",), hidden=4, steps=2, batch=1, k=2, repeats=1)
    with pytest.raises(gradlab.GradlabError, match="steps must be"):
        run_lyapunov_bench(hidden=4, steps=0, batch=1, k=2, repeats=1)


def test_cli_bench_lyapunov_prints_the_comparison_and_refuses_in_one_line():
    result = invoke("bench", "--lyapunov", "4", "--cells", "lstm,gru", "--hidden", "6",
                     "--inputs", "3", "--steps", "20", "--batch", "2", "--repeats", "1",
                     "--json")
    assert_ok(result)
    rows = json.loads(result.stdout)
    assert [r["cell"] for r in rows] == ["lstm", "gru"]
    assert all(r["max_abs_difference"] < 1e-10 and r["k"] == 4 for r in rows)
    assert_one_line_error(invoke("bench", "--lyapunov", "4", "--cells", "rnn_tanh"),
                          "rnn_tanh")
    assert_one_line_error(invoke("bench", "--lyapunov", "4", "--device", "cuda"), "CPU")


@pytest.mark.parametrize("args, needle", [
    (("--cells", ",,"), "names no cell"),
    (("--cells", "lstm", "--hidden", "100000", "--steps", "10"), "memory"),
    (("--cells", "gru", "--batch", "100000000", "--steps", "10"), "memory"),
])
def test_cli_bench_lyapunov_refuses_what_cannot_run_before_allocating(args, needle):
    assert_one_line_error(invoke("bench", "--lyapunov", "8", *args), needle)


def test_more_exponents_than_the_state_holds_are_refused():
    """bench --lyapunov 5 on an lstm at --hidden 2 (S = 4) quietly timed 4 exponents."""
    from gradlab.bench_lyapunov import run_lyapunov_bench
    from gradlab.errors import GradlabError
    with pytest.raises(GradlabError, match="k = 5 exponents, but the state of lstm at hidden "
                                           "2 has 4 entries"):
        run_lyapunov_bench(["lstm"], hidden=2, steps=3, batch=1, k=5)
    with pytest.raises(GradlabError, match="state of gru at hidden 2 has 2"):
        run_lyapunov_bench(["lstm", "gru"], hidden=2, steps=3, batch=1, k=3)


def test_all_cells_with_lyapunov_means_the_cells_the_baseline_has():
    """--help says --cells takes 'all'; with --lyapunov that was refused as a cell name."""
    from gradlab.bench_lyapunov import bench_cells
    assert bench_cells("all") == ["lstm", "gru"] == bench_cells(" all ")
