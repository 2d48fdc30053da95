"""Outputs other than the gradient-decay report and the sweep, on a CPU that rounds
differently: `gradlab init` and its checkpoint.

Found by running each command natively (AVX-512) and with torch, MKL, numpy and OpenBLAS
held to AVX2 (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, NPY_DISABLE_CPU_FEATURES,
OPENBLAS_CORETYPE): `gradlab init gru_torch --timescale 12 --hidden 40 --inputs 5
--bias-scale 0.3 --input-scale 0.5 --seed 7 --write-torch FILE` printed the same lines but
found gate bias 2.580242608529121 on one and 2.5802426085291206 on the other (a secant
step through measured timescales that differed by ~3e-16), so 39 entries of bias_ih, and
the checkpoint's bytes, differed. Here another CPU is stood in for by a relative
perturbation of ~1e-15 of every timescale measured, the size seen there.
"""

import math

import numpy as np
import torch

import gradlab.meanfield.critical as critical
from gradlab.meanfield import critical_init

from conftest import assert_ok, invoke


def measuring(monkeypatch, size, seed):
    """Measurements from a made-up curve of the gate bias (the target of 30 steps at 2.0,
    bent so that the search takes secant steps), each moved by a relative ~size."""
    rng = np.random.default_rng(seed)

    def measure(cell, options, **kw):
        b = options["gate_bias"] - 2.0
        return 30.0 * math.exp(1.3 * b + 0.4 * b * b) * (1 + size * rng.standard_normal())
    monkeypatch.setattr(critical, "measure_timescale", measure)


def test_critical_init_finds_the_same_options_on_a_cpu_that_rounds_differently(monkeypatch):
    monkeypatch.setattr(critical, "_theory_start", lambda *a: 4.5)   # (the theory: not here)
    found = []
    for size, seed in ((0.0, 0), (1e-15, 1), (1e-15, 2)):
        measuring(monkeypatch, size, seed)
        found.append(critical_init("gru_torch", 30, hidden=4, inputs=2, tolerance=0.005))
    assert found[0]["converged"] and len(found[0]["measurements"]) >= 4   # secant steps
    assert [dict(f) for f in found[1:]] == [dict(found[0])] * 2             # exactly
    assert [f["measurements"] for f in found[1:]] != [found[0]["measurements"]] * 2  # moved
    # the options are the values measured, 9 significant digits
    assert found[0]["gate_bias"] == float(f"{found[0]['gate_bias']:.9g}")


def test_init_writes_the_same_checkpoint_on_a_cpu_that_rounds_differently(monkeypatch,
                                                                           tmp_path):
    monkeypatch.setattr(critical, "_theory_start", lambda *a: 4.5)
    written = []
    for size, seed in ((0.0, 0), (1e-15, 1)):
        measuring(monkeypatch, size, seed)
        (tmp_path / str(seed)).mkdir()
        path = tmp_path / str(seed) / "gru.pt"
        result = invoke("init", "gru_torch", "--timescale", "30", "--hidden", "4",
                        "--inputs", "2", "--write-torch", path)
        assert_ok(result)
        written.append((result.stdout.replace(str(seed) + "/gru.pt", ""), path.read_bytes(),
                        torch.load(path, weights_only=True)))
    (text, data, tensors), (text1, data1, tensors1) = written
    assert text == text1
    assert all(torch.equal(tensors[k], tensors1[k]) for k in tensors)
    assert data == data1


def test_a_report_on_another_thread_count_differs_in_its_device_line_alone(tmp_path):
    """README said another CPU writes the same bytes; the gradient-decay report's header
    records torch's thread count (`cpu (x86_64, 2 threads)`), so a machine with another
    count writes another report.md and index.html. The numbers, data.json and the figures
    do not depend on it; the device line is the one difference (README now says so)."""
    from gradlab.reports import gradient_decay as rp
    setup = rp.Setup(cells=("rnn_tanh", "lstm"), hidden=6, inputs=3, steps=12, batch=2)
    saved, written = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = rp.report(setup, tmp_path / str(threads), command="gradlab report")
            written.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                            if p.is_file() and p.name != ".gradlab-manifest.json"})
    finally:
        torch.set_num_threads(saved)
    one, two = written
    assert one.keys() == two.keys()
    differ = sorted(name for name in one if one[name] != two[name])
    assert differ == ["index.html", "report.md"]
    for name in differ:
        lines = [(a, b) for a, b in zip(one[name].decode().splitlines(),
                                        two[name].decode().splitlines()) if a != b]
        assert len(lines) == 1 and "1 thread" in lines[0][0] and "2 threads" in lines[0][1]


def test_a_rank_deficient_jacobians_null_singular_values_are_written_as_zero(monkeypatch):
    """lstm_nog's h' = tanh(c') leaves J_T of rank n in 2n: its other n singular values are
    rounding, and `gradlab report --cells all` wrote 40 such numbers (lstm_nog, lstm_fgr,
    rnn_relu) differently with AVX2 (4.24161539e-16 against 4.72280103e-16). Another CPU
    stood in for by moving J's entries by a relative ~1e-15 before the SVD."""
    from gradlab.reports import gradient_decay as rp
    from gradlab.reports.publish import rounded
    setup = rp.Setup(cells=("lstm_nog",), hidden=6, inputs=3, steps=12, batch=3)
    svdvals, rng, spectra = torch.linalg.svdvals, np.random.default_rng(1), []
    for size in (0.0, 1e-15):
        monkeypatch.setattr(torch.linalg, "svdvals", lambda J, *a, s=size, **k: svdvals(
            J * (1 + s * torch.as_tensor(rng.standard_normal(J.shape), dtype=J.dtype)),
            *a, **k))
        spectra.append(rounded(rp.run(setup)["lstm_nog"]["spectrum"]))
    assert spectra[0].tolist() == spectra[1].tolist()
    assert (spectra[0][6:] == 0).all() and (spectra[0][:6] > 1e-3).all()
