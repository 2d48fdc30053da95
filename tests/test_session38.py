"""Reports read the same on a CPU that rounds differently: numbers written to the digits a
float64 chain determines on any CPU, and every figure and table drawn from those numbers.

Found: the default `gradlab report`, run with torch, MKL and numpy held to AVX2
(ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, NPY_DISABLE_CPU_FEATURES) against the same
run on AVX-512, differed in 2890 of its 8008 numbers in their last bits: written to 12
digits, 4 numbers and the decay figure differed, where publish.py said a rerun on another
CPU writes the same bytes. Here another CPU is stood in for by a relative perturbation of
~1e-15 of every number measured, the size seen there for all but a few singular values.
"""

import collections
import json
import re
from pathlib import Path

import numpy as np

from gradlab.reports import gradient_decay as rp
from gradlab.reports import shards, sweep
from gradlab.reports.publish import DIGITS, FULL_DIGITS, jsonable, rounded
from conftest import assert_ok, invoke


def perturbed(value, rng, size=1e-15):
    """value with every float moved by a relative ~size, as another CPU's rounding moves it."""
    if isinstance(value, dict):
        return {k: perturbed(v, rng, size) for k, v in value.items()}
    if isinstance(value, list):
        return [perturbed(v, rng, size) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value * (1 + size * rng.standard_normal(value.shape))
    if isinstance(value, float):
        return value * (1 + size * rng.standard_normal())
    return value


def test_a_report_is_the_same_bytes_on_a_cpu_that_rounds_differently(tmp_path, monkeypatch):
    setup = rp.Setup(cells=("rnn_tanh", "lstm"), hidden=6, inputs=3, steps=12, batch=2)
    measured = rp.run(setup)
    written = []
    for seed in (None, 1):
        rng = np.random.default_rng(seed)
        monkeypatch.setattr(rp, "run", lambda *a, m=measured, r=rng, s=seed, **k:
                            m if s is None else perturbed(m, r))
        out = rp.report(setup, tmp_path / f"r{seed}", command="gradlab report")
        written.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*"))
                        if p.is_file() and p.name != ".gradlab-manifest.json"})
    assert written[0].keys() == written[1].keys()
    assert [name for name in written[0] if written[0][name] != written[1][name]] == []
    # and the perturbation moved what was measured: the check is not idle
    assert perturbed(measured, np.random.default_rng(1))["lstm"]["spectrum"][0] != \
        measured["lstm"]["spectrum"][0]


def test_rounded_rounds_every_float_as_json_writes_it_and_keeps_the_rest():
    Pair = collections.namedtuple("Pair", "a b")
    value = {"x": 1 / 3, "arr": np.array([[2 / 3, 1e-300]]), "f32": np.array([1 / 7], np.float32),
             "n": 7, "flag": True, "none": None, "name": "lstm", "scalar": np.float64(1 / 9),
             "pair": Pair(1 / 11, 2), "list": [1 / 13, "s"], "tuple": (1 / 17,),
             "weight_scale": 0.1234567891234, "nan": float("nan")}
    out = rounded(value, keep=("weight_scale",))
    assert out["x"] == jsonable(1 / 3) == 0.333333333
    assert isinstance(out["arr"], np.ndarray) and out["arr"].shape == (1, 2)
    assert out["arr"].tolist() == [[0.666666667, 1e-300]]
    assert out["f32"].dtype == np.float32 and jsonable(out["f32"], 6) == [0.142857]
    assert (out["n"], out["flag"], out["none"], out["name"]) == (7, True, None, "lstm")
    assert type(out["scalar"]) is np.float64 and out["scalar"] == 0.111111111
    assert type(out["pair"]) is Pair and out["pair"] == Pair(0.0909090909, 2)
    assert out["list"] == [0.0769230769, "s"] and out["tuple"] == (0.0588235294,)
    assert out["weight_scale"] == 0.1234567891234                  # kept as given
    assert np.isnan(out["nan"])
    assert DIGITS == 9
    # what is written is what was drawn: rounding again changes nothing
    assert json.dumps(jsonable(rounded(value))) == json.dumps(jsonable(value))


def test_a_sweep_part_keeps_every_digit_so_a_merge_rounds_once(tmp_path):
    """part.json held 12 digits and the merged report rounded them again, to 12 or to 6
    (float32): two roundings, which can differ from the whole sweep's one."""
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(0.5, 1.5), gate_biases=(0.0,),
                      hidden=4, inputs=2, steps=8, max_steps=8, batch=2)
    points = sweep.run_points(grid, grid.points())
    path = shards.write_part(grid, (1, 1), points, tmp_path / "part")
    back = json.loads(path.read_text())["points"]
    assert FULL_DIGITS == 17
    assert [p["rate"] for p in back] == [p["rate"] for p in points]      # exactly
    assert [p["rate_stderr"] for p in back] == [p["rate_stderr"] for p in points]


def test_a_sweep_on_weight_scales_of_many_digits_still_draws_them(tmp_path):
    """The figures look each point up on the grid's axes by its weight scale and gate bias:
    those stay as given (a scale of 13 digits rounded to 9 was no longer on the axis)."""
    scales = (0.1234567891234, 1.0)
    grid = sweep.Grid(cells=("rnn_tanh", "gru"), weight_scales=scales,
                      gate_biases=(0.0, 1.00000000001), hidden=4, inputs=2, steps=8,
                      max_steps=8, batch=2)
    points = sweep.run_points(grid, grid.points())
    out = sweep.report(grid, points, tmp_path / "phase")
    data = json.loads((out / "data.json").read_text())
    assert [p["rate"] for p in data["points"]] == [jsonable(p["rate"]) for p in points]
    assert (out / "figures" / "phase.png").stat().st_size > 0


def test_a_float32_report_still_writes_six_digits(tmp_path):
    setup = rp.Setup(cells=("rnn_tanh",), hidden=6, inputs=3, steps=12, batch=2,
                     dtype="float32")
    out = rp.report(setup, tmp_path / "r")
    spectrum = json.loads((out / "data.json").read_text())["cells"]["rnn_tanh"]["spectrum"]
    assert all(len(f"{abs(v):.6e}".split("e")[0].replace(".", "").rstrip("0")) <= 6
               for v in spectrum if isinstance(v, float))


def test_derive_block_table_columns_fit_their_widest_entry(tmp_path):
    """`gradlab derive` printed each block-kind column 12 wide, and "rank-one coupled" is
    16: a row of a two-part cell read "dense    denserank-one coupled"."""
    (tmp_path / "two.py").write_text(
        "import gradlab\n"
        "from gradlab import tanh, sqrt, var\n\n\n"
        "@gradlab.declare(state='h c', params='W U b', source='a test')\n"
        "def two(s):\n"
        "    r = s.let('r', tanh(s.W @ s.h + s.U @ s.x + s.b) + s.c)\n"
        "    return r, r / sqrt(var(r) + 1)\n")
    result = invoke("derive", f"{tmp_path / 'two.py'}:two")
    assert_ok(result)
    lines = result.stdout.splitlines()
    entry = re.compile(r"rank-one coupled|\S+")
    tables = [i for i, line in enumerate(lines) if line.endswith("Jacobian:")]
    assert len(tables) == 2 and "rank-one coupled" in result.stdout
    for i in tables:
        names = lines[i + 1]
        ends = [m.end() for m in entry.finditer(names)]
        rows = lines[i + 2:lines.index("", i + 2)]
        assert rows
        for row in rows:           # every entry ends under its column's name, 2 apart
            found = list(entry.finditer(row))[1:]
            assert [m.end() for m in found] == ends, (names, row)
            assert all(row[m.start() - 2:m.start()] == "  " for m in found), row


def test_a_round_off_answer_agrees_with_gradlabs_noisy_round_off_below_the_floor():
    """rnn_tanh with W of rank 2: its bottom exponents are -inf, and every QR reports
    round-off there. On one CPU gradlab's own came out -36.9 and -38.7 (start vectors 0.09
    apart), a routine's -36, and check_lyapunov called the right routine wrong: below the
    floor only an exact -inf was excused against noisy estimates, a finite one had to fall
    within 4 spreads. (tests/test_lyapunov_precision.py runs the whole check.)"""
    from gradlab.verification.exponents import distance
    answer, exact = np.array([-0.76, -1.94, -36.0, -36.0]), np.array([-0.76, -1.94, -36.9, -38.7])
    floor, slack = np.full(4, -33.6), np.array([0.0, 0.0, 0.46, 0.46])
    noisy = np.array([False, False, True, True])
    low = (floor, slack, noisy, np.full(4, np.nan), np.full(4, -np.inf))
    assert distance(answer, exact, low) == 0.0
    # above the floor, and below it where gradlab's estimates do not scatter, still checked
    assert distance(answer, exact, (floor, slack, np.zeros(4, bool), *low[3:])) > 2
    assert distance(np.array([-0.76, -1.94, -5.0, -5.0]), exact, low) > 30


def test_version_answers_where_gradlab_is_not_installed(monkeypatch):
    """`python -m gradlab --version` from a source checkout (PYTHONPATH, no installed
    package) was "internal error (RuntimeError: 'gradlab' is not installed ...)", exit 2:
    click looked the version up in the installed package's metadata."""
    import importlib.metadata
    import tomllib
    import gradlab

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    result = invoke("--version")
    assert_ok(result)
    assert result.stdout.strip() == f"gradlab, version {gradlab.__version__}"
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert project["project"]["version"] == gradlab.__version__     # one version, told alike
