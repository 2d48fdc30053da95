"""gradlab.flow's API around its numbers: walks only for what is read, rtol bounding the
spectral norms' error, run_states as the forward run, truncated BPTT, lazy norms and a
JSON-ready summary, chunking and rescaling, float32 following float64, make_inputs,
errors as GradlabErrors, and CUDA (and gradlab.bench there) matching the CPU."""

import json

import numpy as np
import pytest
import torch

import gradlab
from gradlab import flow as F
from gradlab.bench import run_bench
from conftest import relative

pytestmark = pytest.mark.usefixtures("strict_numpy")

# gradient_flow's spectral norms stop on a certified bound of relative error < 1e-11 in
# sigma (the default rtol, flow.lanczos.RTOL), its other numbers are float64 round-off over a few dozen
# products (~1e-14); 1e-10 keeps an order of magnitude of margin above both.
TOL = 1e-10





def params_for(cell, n, m, seed=0, **options):
    options = {"weight_scale": 1.3, "bias_scale": 0.4, **options}
    return cell.init_params(n, m, seed=seed, **options)


def test_flow_walks_only_for_what_is_read(monkeypatch):
    """gradient_flow runs the cell forward and no walk: Lyapunov exponents and loss
    gradients never pay for norms; the first norm read brings every norm asked for (and
    their blocks) in one walk; a norm not asked for walks on its own."""
    from gradlab.flow import result
    walks = []

    def counted(*args, **kwargs):
        walks.append(kwargs["norms"])
        return real(*args, **kwargs)

    real = result.walk
    monkeypatch.setattr(result, "walk", counted)
    cell = gradlab.cell("lstm")
    params = params_for(cell, 4, 3)
    xs = F.make_inputs("gaussian", 10, 2, 3)
    flow = gradlab.gradient_flow(cell, params, xs)
    flow.lyapunov(3)
    flow.loss_grad_norms()
    flow.bptt_fraction(3)
    assert walks == []
    flow.log_norm("spectral")
    flow.log_norm("frobenius")
    flow.block_log_norm("c", "c")
    flow.rate()
    assert walks == [("spectral", "frobenius")]
    flow.log_norm("min_singular")
    assert walks == [("spectral", "frobenius"), ("min_singular",)]
    assert "rate_spectral" in gradlab.gradient_flow(cell, params, xs).summary()


@pytest.mark.parametrize("name", ["lstm", "rnn_tanh"])
def test_rtol_bounds_the_spectral_norms_error(name):
    """S = 32 > DENSE_BELOW, so Lanczos runs: the default rtol agrees with
    torch.linalg.matrix_norm(ord=2) to 1e-8 (and to TOL), a loose rtol to itself."""
    cell = gradlab.cell(name)
    n = 32 // len(cell.state_names)
    B, T = 2, 12
    assert n * len(cell.state_names) > F.lanczos.DENSE_BELOW
    params = params_for(cell, n, 4, seed=5, gate_bias=1.0)
    xs = F.make_inputs("gaussian", T, B, 4, seed=6)
    states = F.run_states(cell, params, xs)
    jacobian = cell.jacobian_fn("state")
    products, P = [], None
    for t in range(T, 0, -1):
        J = jacobian(params, tuple(s[t - 1] for s in states), xs[t - 1])
        P = J if P is None else P @ J
        products.append(P)
    want = torch.stack([torch.linalg.matrix_norm(P, ord=2) for P in products], 1).log()
    default = gradlab.gradient_flow(cell, params, xs, blocks=False).log_norm()
    assert relative(default, want.numpy()) < min(1e-8, TOL)
    for rtol in (1e-4, 1e-7):
        loose = gradlab.gradient_flow(cell, params, xs, blocks=False, rtol=rtol).log_norm()
        assert relative(loose, want.numpy()) < rtol
    for bad in (0, 1.5, "tight", True):
        with pytest.raises(gradlab.GradlabError, match="rtol must be"):
            gradlab.gradient_flow(cell, params, xs, rtol=bad)


def test_run_states_is_the_forward_run():
    """run_states against the lowered one-step function called step by step (checked on
    every call), from zeros and from a given state, forwards and reversed."""
    cell = gradlab.cell("gru")
    params = params_for(cell, 5, 3, seed=8)
    xs = F.make_inputs("gaussian", 7, 2, 3, seed=9)
    step = cell.step_fn("torch")
    h0 = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for state0, reverse in ((None, False), (h0, False), ((h0,), True)):
        (states,) = F.run_states(cell, params, xs, state0, reverse=reverse)
        h = (torch.zeros(2, 5, dtype=torch.float64) if state0 is None else h0,)
        assert torch.equal(states[0], h[0])
        for t, x in enumerate(xs.flip(0) if reverse else xs):
            h = step(params, h, x)
            assert torch.allclose(states[t + 1], h[0], rtol=0, atol=1e-14)
    assert torch.equal(gradlab.gradient_flow(cell, params, xs).states[0],
                       F.run_states(cell, params, xs)[0])


# --- the rest of the API --------------------------------------------------------------------

def test_truncated_bptt_fraction():
    cell = gradlab.cell("gru")
    params = params_for(cell, 6, 3, seed=11)
    flow = gradlab.gradient_flow(cell, params, F.make_inputs("gaussian", 20, 3, 3, seed=12))
    mass = flow.loss_grad_norms()["input"] ** 2                  # (B, T)
    for K in (0, 1, 5, 20, 50):
        want = (mass[:, 20 - min(K, 20):].sum(1) / mass.sum(1)).mean()
        assert flow.bptt_fraction(K) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert flow.bptt_fraction(20) == pytest.approx(1.0)
    fractions = [flow.bptt_fraction(K) for K in range(21)]
    assert all(a <= b for a, b in zip(fractions, fractions[1:]))


def test_lazy_norms_and_summary_are_json_ready():
    cell = gradlab.cell("lstm")
    params = params_for(cell, 4, 3)
    xs = F.make_inputs("gaussian", 10, 2, 3)
    eager = gradlab.gradient_flow(cell, params, xs, norms=F.NORMS)
    lazy = gradlab.gradient_flow(cell, params, xs, norms=(), blocks=False)
    for kind in F.NORMS:
        assert relative(lazy.log_norm(kind), eager.log_norm(kind)) < TOL
    assert relative(lazy.block_log_norm("h", "c"), eager.block_log_norm("h", "c")) < TOL
    summary = eager.summary()
    json.dumps(summary)
    assert summary["rate_spectral"] == eager.rate() and summary["S"] == 8


def test_chunking_and_rescaling_do_not_change_the_numbers(monkeypatch):
    """Chunks of 1, 3 and all 11 lags; the product rescaled at every step (as on CUDA)
    or only when its norm drifts past 2^64 (CPU)."""
    cell = gradlab.cell("lstm_np")
    params = params_for(cell, 14, 3)
    xs = F.make_inputs("gaussian", 11, 2, 3)
    runs = []
    for size, drift in ((1, 64), (3 * 4 * 2 * 28 * 28 * 8, 0), (1 << 30, 64), (1 << 30, 0)):
        monkeypatch.setitem(F.CHUNK_BYTES, "cpu", size)
        monkeypatch.setitem(F.Scale.DRIFT, torch.float64, drift)
        runs.append(gradlab.gradient_flow(cell, params, xs, norms=F.NORMS))
    for run in runs[:2] + runs[3:]:
        for kind in F.NORMS:
            assert relative(run.log_norm(kind), runs[2].log_norm(kind)) < TOL
    assert relative(runs[3].loss_grad_norms(log=True)["input"],
                    runs[2].loss_grad_norms(log=True)["input"]) < TOL


def test_float32_follows_float64():
    cell = gradlab.cell("lstm")
    p64 = params_for(cell, 16, 4)
    p32 = {k: v.float() for k, v in p64.items()}
    xs = F.make_inputs("gaussian", 20, 2, 4)
    a = gradlab.gradient_flow(cell, p64, xs).log_norm()
    b = gradlab.gradient_flow(cell, p32, xs).log_norm()
    assert np.abs(b - a).max() < 1e-4


def test_make_inputs():
    assert F.make_inputs("zeros", 3, 2, 4).abs().max() == 0
    g = F.make_inputs("gaussian", 400, 5, 6, scale=2.0, seed=1)
    assert g.shape == (400, 5, 6) and g.dtype == torch.float64
    assert float(g.pow(2).mean()) == pytest.approx(4.0, rel=0.05)
    assert torch.equal(g, F.make_inputs("gaussian", 400, 5, 6, scale=2.0, seed=1))
    c = F.make_inputs("constant", 7, 2, 3, dtype="float32")
    assert c.dtype == torch.float32 and torch.equal(c[0], c[-1])
    given = torch.ones(2, 3, 4)
    assert F.make_inputs(given, 2, 3, 4).dtype == torch.float64
    with pytest.raises(gradlab.GradlabError, match="zeros, gaussian, constant"):
        F.make_inputs("uniform", 2, 3, 4)
    with pytest.raises(gradlab.GradlabError, match=r"expected \(T, B, m\)"):
        F.make_inputs(given, 3, 3, 4)


def test_errors_are_gradlab_errors():
    cell = gradlab.cell("lstm")
    params = params_for(cell, 4, 3)
    xs = F.make_inputs("gaussian", 5, 2, 3)
    flow = gradlab.gradient_flow(cell, params, xs)
    with pytest.raises(gradlab.GradlabError, match=r"expected \(T, B, m\)"):
        gradlab.gradient_flow(cell, params, xs[0])
    with pytest.raises(gradlab.GradlabError, match="valid: spectral, frobenius, min_singular"):
        flow.log_norm("nuclear")
    with pytest.raises(gradlab.GradlabError, match="parts are h, c"):
        flow.block_log_norm("h", "x")
    with pytest.raises(gradlab.GradlabError, match="lag must be"):
        flow.condition(6)
    with pytest.raises(gradlab.GradlabError, match="mix dtypes"):
        gradlab.gradient_flow(cell, {**params, "W_f": params["W_f"].float()}, xs)
    with pytest.raises(gradlab.GradlabError, match="loss vector"):
        flow.loss_grad_norms(torch.ones(3))


# --- devices ----------------------------------------------------------------------

@pytest.mark.cuda
def test_cuda_matches_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    cell = gradlab.cell("lstm")
    params = params_for(cell, 24, 5)
    xs = F.make_inputs("gaussian", 30, 3, 5)
    cpu = gradlab.gradient_flow(cell, params, xs, norms=F.NORMS)
    gpu = gradlab.gradient_flow(cell, {k: v.cuda() for k, v in params.items()}, xs.cuda(),
                                norms=F.NORMS)
    for kind in F.NORMS:
        assert relative(gpu.log_norm(kind), cpu.log_norm(kind)) < TOL
    assert relative(gpu.block_log_norm("c", "c"), cpu.block_log_norm("c", "c")) < TOL
    results = run_bench(["lstm"], hidden=16, steps=8, batch=2, device="cuda", repeats=1)
    assert results[0]["max_relative_error"] <= 1e-10
