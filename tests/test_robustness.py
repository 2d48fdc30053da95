"""Hostile input to the CLI, drawn by hypothesis: whatever the options, gradlab exits 0 or 2,
never prints a traceback (nor an 'internal error'), and writes nothing outside --out.

Each example runs in a fresh sandbox folder (the current folder during the run) that also
holds a user's files; every path below the sandbox except --out (and its gradlab-owned
contents) must be byte-identical afterwards. Sizes that would really run are kept tiny so
that an example that passes every check finishes in seconds.
"""

import contextlib
import hashlib
import os
import pathlib
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import invoke

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

HUGE = ["0", "-1", "-5", str(10 ** 9), str(2 ** 70), "1e3", "1.5", "", "x", "nan", " 3"]
SMALL = st.sampled_from(["1", "2", "3"])
SIZE = st.one_of(SMALL, st.sampled_from(HUGE))
FLOAT = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e308", "-1e308", "-1", "0", "0.5",
                                   "2", "abc", "", "1e-320", "1,2", "0x10"]),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))
SEED = st.sampled_from(["0", "1", "-1", str(2 ** 63), str(2 ** 70), "x", "1.0", ""])
CELLS = st.sampled_from(["rnn_tanh", "gru", "nope", "", ",", " ,rnn_tanh", "rnn_tanh,rnn_tanh",
                         "cell.py:mine", "cell.py:nope", "missing.py:x", "os:path", ":x",
                         "cell.py:", "a.py:b:c", "raises.py:x", "exits.py:x", "json:loads",
                         "gradlab.nope:x", "../escape.py:x"])
OUT = st.sampled_from(["out", "sub/out", "", ".", "..", "notes.txt", "home", "home/docs",
                       "link", "cell.py", "/", "~", "out/../out", "out//x", "dot/.git/x",
                       "a\nb", "-out"])
CHOICE = st.sampled_from(["gaussian", "orthogonal", "torch", "bad", ""])
DEVICE = st.sampled_from(["cpu", "cuda", "gpu", ""])
DTYPE = st.sampled_from(["float64", "float32", "float16", ""])

USER_CELL = """import gradlab
from gradlab import tanh


@gradlab.declare(state="h", params="W U b", source="test")
def mine(s):
    return tanh(s.W @ s.h + s.U @ s.x + s.b)
"""


def snapshot(root, skip):
    """{path: sha256 or kind} for everything below root except below `skip`."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = pathlib.Path(dirpath, name)
            if skip is not None and (p == skip or skip in p.parents):
                continue
            if p.is_symlink():
                out[str(p)] = "link " + os.readlink(p)
            elif p.is_dir():
                out[str(p)] = "dir"
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def sandbox():
    root = pathlib.Path(tempfile.mkdtemp(prefix="gradlab-hostile-")).resolve()
    (root / "notes.txt").write_text("notes")
    (root / "home" / "docs").mkdir(parents=True)
    (root / "home" / "docs" / "thesis.tex").write_text("thesis")
    (root / "home" / ".bashrc").write_text("rc")
    (root / "dot" / ".git").mkdir(parents=True)
    (root / "link").symlink_to(root / "home")
    (root / "cell.py").write_text(USER_CELL)
    (root / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (root / "exits.py").write_text("import sys\nsys.exit(0)\n")
    here = os.getcwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(here)
        shutil.rmtree(root, ignore_errors=True)


def run_and_check(args, out):
    with sandbox() as root:
        target = None
        if out is not None and out.strip() and "\n" not in out:
            target = pathlib.Path(os.path.normpath(root / os.path.expanduser(out)))
        before = snapshot(root, target)
        result = invoke(*args)
        assert result.exit_code in (0, 2), (args, result.exit_code, result.output,
                                            result.exception)
        text = result.output
        assert "Traceback" not in text and "internal error" not in text, (args, text)
        if result.exit_code == 2:
            assert text.strip().count("\n") == 0 or text.count("gradlab: error:") == 1, text
        after = snapshot(root, target)
        if target is None or target == root or target in root.parents:
            assert after == before, args
        else:                                  # new entries only inside --out's folder chain
            lost = {k: v for k, v in before.items() if after.get(k) != v}
            assert not lost, (args, lost)
            added = set(after) - set(before)
            assert all(target in pathlib.Path(p).parents or p == str(target)
                       or pathlib.Path(p) in target.parents for p in added), (args, added)


def options(**strategies):
    """A dict of option -> value, each option present or left at its default."""
    return st.fixed_dictionaries({}, optional=strategies)


def flatten(opts, flags=()):
    args = []
    for k, v in opts.items():
        if k in flags:
            if v:
                args.append(k)
        else:
            args += [k, v]
    return args


@SETTINGS
@given(opts=options(**{"--cells": CELLS, "--hidden": SIZE, "--inputs": SIZE, "--batch": SIZE,
                       "--init": CHOICE, "--weight-scale": FLOAT, "--bias-scale": FLOAT,
                       "--input-scale": FLOAT, "--gate-bias": FLOAT, "--seed": SEED,
                       "--device": DEVICE, "--dtype": DTYPE, "--force": st.booleans()}),
       steps=SIZE, out=OUT)
def test_report_options(opts, steps, out):
    opts.setdefault("--cells", "rnn_tanh")
    opts.setdefault("--hidden", "2")
    opts.setdefault("--batch", "2")
    args = ["report", *flatten(opts, ("--force",)), "--steps", steps, "--out", out]
    run_and_check(args, out)


@SETTINGS
@given(opts=options(**{"--cells": CELLS, "--hidden": SIZE, "--inputs": SIZE, "--batch": SIZE,
                       "--seed": SEED, "--device": DEVICE, "--dtype": DTYPE,
                       "--shard": st.sampled_from(["1/1", "1/2", "2/2", "0/1", "3/2", "1/0",
                                                   "1/1000000000", "a/b", "1/2/3", "", "-1/2"]),
                       "--force": st.booleans()}),
       scales=st.sampled_from(["0.5", "0.5,3", "nan", "", ",", "1,1", "x", "1e308", "-1"]),
       biases=st.sampled_from(["0", "0,1", "inf", "", "y", "1e400"]), steps=SIZE, out=OUT)
def test_sweep_options(opts, scales, biases, steps, out):
    opts.setdefault("--cells", "rnn_tanh")
    opts.setdefault("--hidden", "2")
    opts.setdefault("--batch", "2")
    args = ["sweep", *flatten(opts, ("--force",)), "--weight-scales", scales,
            "--gate-biases", biases, "--steps", steps, "--out", out]
    run_and_check(args, out)


PART = st.one_of(st.binary(max_size=64),
                 st.sampled_from([b"", b"{", b"[]", b"null", b'{"grid": 1}',
                                  b'{"grid": {}, "shard": [1, 1], "points": []}',
                                  b'{"grid": {"cells": ["x|y"]}, "shard": "1/1", "points": 3}']))


@SETTINGS
@given(parts=st.lists(PART, min_size=1, max_size=3), out=OUT, force=st.booleans())
def test_sweep_merge_of_hostile_parts(parts, out, force):
    with sandbox() as root:
        dirs = []
        for k, data in enumerate(parts):
            d = root / f"part{k}"
            d.mkdir()
            (d / "part.json").write_bytes(data)
            dirs.append(str(d))
        before = snapshot(root, None)
        result = invoke("sweep", "merge", *dirs, "--out", out, *(["--force"] if force else []))
        assert result.exit_code == 2, (parts, result.output)
        assert "Traceback" not in result.output and "internal error" not in result.output
        assert snapshot(root, None) == before


@SETTINGS
@given(cell=CELLS, out=st.one_of(st.none(), OUT), force=st.booleans(),
       latex=st.booleans(), every=st.booleans())
def test_derive_options(cell, out, force, latex, every):
    args = ["derive"]
    if every:
        args.append("--all")
    else:
        args.append(cell)
    if out is not None:
        args += ["--out", out]
    args += (["--force"] if force else []) + (["--latex"] if latex else [])
    run_and_check(args, out)


@SETTINGS
@given(cells=CELLS, device=DEVICE, dtype=DTYPE, seed=SEED)
def test_verify_options(cells, device, dtype, seed):
    run_and_check(["verify", "--cells", cells, "--device", device, "--dtype", dtype,
                   "--seed", seed], None)


@SETTINGS
@given(opts=options(**{"--cells": CELLS, "--inputs": SIZE, "--batch": SIZE, "--seed": SEED,
                       "--device": DEVICE, "--dtype": DTYPE,
                       "--repeats": st.sampled_from(["1", "0", "-1", "x", str(10 ** 9)])}),
       hidden=SIZE, steps=SIZE)
def test_bench_options(opts, hidden, steps):
    opts.setdefault("--cells", "rnn_tanh")
    opts.setdefault("--repeats", "1")
    opts.setdefault("--batch", "2")
    run_and_check(["bench", *flatten(opts), "--hidden", hidden, "--steps", steps], None)
