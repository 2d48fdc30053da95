"""The bench's baselines where torch's own cell would handicap them: a step vmap cannot
batch (nn.LSTMCell and nn.GRUCell on CUDA run fused kernels without a batching rule) is
detected, and the cell's arithmetic is written out with the module's own weights instead,
computing exactly the same step and the same Jacobians."""

import math
import warnings

import pytest
import torch

import gradlab
from gradlab import baselines
from gradlab.interop import to_torch


@pytest.mark.parametrize("name", ["lstm", "gru_torch"])
def test_unfused_step_is_the_module_step(name):
    """The written-out step of nn.LSTMCell / nn.GRUCell gives the module's own output
    (torch's gate order and bias placement), and gradlab's step, in float64."""
    cell = gradlab.cell(name)
    params = cell.init_params(6, 4, weight_scale=1.5, bias_scale=0.5, seed=3)
    module = to_torch(cell, params)
    g = torch.Generator().manual_seed(0)
    state = tuple(torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in cell.state_names)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        theirs = module(x, state if name == "lstm" else state[0])
        got = baselines.unfused(module)(state, x)
    theirs = tuple(theirs) if name == "lstm" else (theirs,)
    ours = cell.step_fn("torch")(params, state, x)
    for a, b, c in zip(got, theirs, ours):
        torch.testing.assert_close(a, b, rtol=1e-15, atol=1e-15)
        torch.testing.assert_close(a, c, rtol=1e-13, atol=1e-14)


def test_vmappable_tells_a_per_sample_fallback():
    """A step whose op has no batching rule (cummax, on any device) is reported, even
    where warnings are errors; torch's LSTM cell on the CPU is not."""
    def cumulative(state, x):
        (h,) = state
        return (torch.cummax(h + x, -1)[0],)
    cumulative.parts = ("h",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not baselines.vmappable(cumulative, 4, 4, torch.float64, "cpu")
    cell = gradlab.cell("lstm")
    _, step = baselines.baseline_step(cell, cell.init_params(4, 3, seed=0))
    assert baselines.vmappable(step, 8, 3, torch.float64, "cpu")


@pytest.mark.parametrize("name, module", [("lstm", "LSTMCell"), ("gru_torch", "GRUCell")])
def test_a_cell_vmap_cannot_batch_is_stepped_unfused(monkeypatch, name, module):
    """Where vmap would run torch's cell sample by sample (as on CUDA), baseline_step
    says so and steps the written-out cell: the same products P_k as the module's."""
    cell = gradlab.cell(name)
    params = cell.init_params(5, 3, weight_scale=1.5, seed=2)
    xs = gradlab.flow.make_inputs("gaussian", 6, 2, 3, seed=4)
    S = 5 * len(cell.state_names)
    label, step = baselines.baseline_step(cell, params)
    assert label == f"torch.nn.{module}"
    step.parts = cell.state_names
    expected = baselines.chained_products(step, S, xs)
    monkeypatch.setattr(baselines, "vmappable", lambda *args: False)
    label, step = baselines.baseline_step(cell, params)
    assert label.startswith(f"torch.nn.{module}'s weights, stepped unfused")
    assert "no vmap batching rule" in label
    step.parts = cell.state_names
    torch.testing.assert_close(baselines.chained_products(step, S, xs), expected,
                               rtol=1e-13, atol=1e-15)
    rows = baselines.autograd(step, S, xs, False)
    torch.testing.assert_close(rows, expected[-1], rtol=1e-13, atol=1e-15)


def test_func_baseline_in_chunks_gives_the_same_products(monkeypatch):
    """Past FUNC_BYTES of temporaries the func baseline vmaps in chunks of samples: the
    same Jacobians, so the same products, to rounding."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(4, 3, seed=5)
    xs = gradlab.flow.make_inputs("gaussian", 5, 3, 3, seed=6)
    _, step = baselines.baseline_step(cell, params)
    step.parts = cell.state_names
    whole = baselines.chained_products(step, 8, xs)
    calls = []
    original = torch.func.vmap

    def spy(fn, *args, **kwargs):
        calls.append(kwargs.get("chunk_size"))
        return original(fn, *args, **kwargs)
    monkeypatch.setattr(torch.func, "vmap", spy)
    monkeypatch.setattr(baselines, "FUNC_BYTES", 4 * 8 * 8 * 8 * 8)     # 4 samples a chunk
    torch.testing.assert_close(baselines.chained_products(step, 8, xs), whole,
                               rtol=1e-14, atol=1e-16)
    assert calls == [4]


def svds_forced_apart(monkeypatch):
    """bench.svds_apart forced on (as on CUDA); returns the list the shapes of every
    spectral matrix_norm call go into."""
    from gradlab import bench
    calls = []
    original = torch.linalg.matrix_norm

    def spy(A, ord="fro", *args, **kwargs):
        if ord == 2:
            calls.append(A.shape)
        return original(A, ord, *args, **kwargs)
    monkeypatch.setattr(bench, "svds_apart", lambda device: True)
    monkeypatch.setattr(torch.linalg, "matrix_norm", spy)
    return calls


def test_svds_timed_apart_compose_the_baselines(monkeypatch):
    """Where the SVDs are timed once (CUDA, forced here on the CPU), each baseline's time
    with norms is its products' time plus the SVDs' best, its rounds are its products'
    rounds, and agreement comes from the SVDs of func's products and autograd's own
    Frobenius norms; the table says so."""
    from gradlab import bench
    calls = svds_forced_apart(monkeypatch)
    (r,) = bench.run_bench(["lstm"], hidden=14, steps=6, batch=2, repeats=2)
    assert r["svds_apart"] is True
    s = r["seconds"]
    for name in ("autograd", "func"):
        assert s[name] == pytest.approx(s[f"{name}_products"] + s["svd"], rel=1e-12)
        assert r["runs"][name] == r["runs"][f"{name}_products"]
    assert set(r["agreement"]) == {"spectral_func", "frobenius_func", "frobenius_autograd"}
    assert r["max_relative_error"] <= 1e-10, r["agreement"]
    assert all(shape == (6, 2, 28, 28) for shape in calls)   # only the "svd" runs
    assert len(calls) == r["runs"]["svd"] + 1                 # and its warm-up round
    assert f"SVDs were timed apart, best of {r['runs']['svd']}:" in bench.format_table([r])


def test_svds_apart_of_many_matrices_are_timed_on_every_stride_th_lag(monkeypatch):
    """Past SVD_SAMPLE matrices the SVDs timed apart are those of every stride-th lag
    (T = 7, B = 2 at a sample of 6: stride 3, lags 0, 3, 6), their time scaled by T over
    the lags timed; the spectral norms compared are those lags', and the table says so."""
    from gradlab import bench
    calls = svds_forced_apart(monkeypatch)
    monkeypatch.setattr(bench, "SVD_SAMPLE", 6)
    monkeypatch.setattr(bench, "timed", lambda fn, device: (1.0, fn()))   # 1 s a run
    (r,) = bench.run_bench(["gru"], hidden=5, steps=7, batch=2, repeats=2)
    assert r["svd_stride"] == 3 and set(calls) == {(3, 2, 5, 5)}
    assert r["seconds"]["svd"] == pytest.approx(7 / 3, rel=1e-12)
    assert r["seconds"]["func"] == pytest.approx(1 + 7 / 3, rel=1e-12)
    assert r["max_relative_error"] <= 1e-10, r["agreement"]
    assert "spectral_func" in r["agreement"]
    assert "of one lag in 3 (6 of 14 matrices" in bench.format_table([r])
    assert bench.svd_stride(7, 2, apart=False) == 1


def test_vmappable_asks_torch_even_with_its_warning_off():
    """With torch's fallback warning switched off the probe still tells (it asks with the
    fallback itself switched off, and restores it)."""
    functorch = torch._C._functorch
    if not hasattr(functorch, "_set_vmap_fallback_enabled"):
        pytest.skip("this torch cannot switch vmap's fallback off")

    def cumulative(state, x):
        return (torch.cummax(state[0] + x, -1)[0],)
    cumulative.parts = ("h",)
    functorch._set_vmap_fallback_warning_enabled(False)
    try:
        assert not baselines.vmappable(cumulative, 4, 4, torch.float64, "cpu")
    finally:
        functorch._set_vmap_fallback_warning_enabled(True)
    assert functorch._is_vmap_fallback_enabled()


def test_a_baselines_nan_is_a_disagreement_not_left_out():
    """Where gradient_flow has a value and a baseline has nan (an SVD that failed, say),
    the error is inf; lags below the floor gradient_flow's norm is compared at stay out."""
    import numpy as np

    from gradlab import bench
    reference = np.array([[0.0, -1.0, -1e4]])
    assert bench.relative_error(np.array([[0.0, np.nan, 0.0]]), reference,
                                torch.float64) == math.inf
    assert bench.relative_error(np.array([[0.0, -1.0, np.nan]]), reference,
                                torch.float64) == 0.0
