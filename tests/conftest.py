"""Shared helpers: the whole registry, random cell inputs, strict numpy, the `cuda` marker,
running the CLI and checking what it says, the JANET test cell, and per-sample Jacobians by
torch.func.jacrev (the independent reference every Jacobian test compares against)."""

import hashlib
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp
import torch
from torch.func import jacrev, vmap

import gradlab
from click.testing import CliRunner
from gradlab.cli import cli

ALL = gradlab.cells()   # every registered cell: a new cell gets every registry-wide check

# Random sizes for registry-wide checks, always including n = 1, m = 1 and batch 1 (the
# shapes where a squeezed or broadcast axis goes wrong first); the rest drawn from a seeded
# generator so a failure reproduces. Each entry is (n, m, batch).
_RNG = random.Random(20240611)
SIZES = [(1, 1, 1), (1, 3, 2), (4, 1, 1)] + [
    (_RNG.randint(2, 7), _RNG.randint(2, 5), _RNG.randint(2, 4)) for _ in range(2)]


def pytest_configure(config):
    """Ctrl-C as a terminal delivers it. A shell without job control starts a background
    command (`nohup pytest ... &`, some CI runners) with SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: the tests that press Ctrl-C in-process
    (signal.raise_signal) saw nothing and failed for the launch, not for gradlab."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def size_id(size):
    return "n{}-m{}-B{}".format(*size)


def random_params(cell, n, m, *, seed=0, dtype=torch.float64, device="cpu"):
    """Parameters with weights scaled up (1.5) and nonzero biases (0.5), so gates sit away
    from 1/2 and from saturation and every term of a Jacobian carries weight."""
    return cell.init_params(n, m, weight_scale=1.5, bias_scale=0.5, seed=seed, dtype=dtype,
                            device=device)


def random_inputs(cell, n, m, batch, *, seed=0, dtype=torch.float64, device="cpu"):
    """(params, state tuple of (B, n), x (B, m)), reproducible from `seed`."""
    params = random_params(cell, n, m, seed=seed, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed + 7919)
    state = tuple(torch.randn(batch, n, generator=gen, dtype=torch.float64)
                  .to(dtype=dtype, device=device) for _ in cell.state_names)
    x = torch.randn(batch, m, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return params, state, x


def relative_error(a, b):
    """max |a - b| / max |b| (as `gradlab verify` reports it), in float64 on the CPU."""
    a = torch.as_tensor(np.asarray(a) if isinstance(a, np.ndarray) else a).detach()
    b = torch.as_tensor(np.asarray(b) if isinstance(b, np.ndarray) else b).detach()
    a, b = a.cpu().to(torch.float64), b.cpu().to(torch.float64)
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    scale = b.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return float((a - b).abs().max() / scale)


@pytest.fixture
def strict_numpy():
    """numpy floating-point errors (overflow, invalid, divide) raise instead of warning."""
    with np.errstate(all="raise"):
        yield


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip cleanly where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def invoke(*args):
    """Run the CLI in-process (arguments as strings); click's Result."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_gradlab(cwd, *args, timeout=300):
    """Run `python -m gradlab ARGS` in a subprocess from `cwd`, this checkout's gradlab
    first on the path (for what only a process shows: exit status, signals, the real
    streams); subprocess's CompletedProcess, text."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gradlab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output


def assert_one_line_error(result, needle=""):
    """Exit status 2, nothing on stdout, one line on stderr naming `needle`."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradlab: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def listing(root):
    """Every path below root, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- the JANET test cell: one declaration, as a file's source and as a Cell ------------------

JANET_SOURCE = textwrap.dedent('''
    """JANET (van der Westhuizen & Lasenby 2018), declared outside gradlab."""
    from gradlab import declare, sigmoid, tanh


    @declare(state="h", params="W_f U_f b_f W U b", gate_bias="b_f",
             source="van der Westhuizen & Lasenby 2018, JANET (forget gate only)")
    def janet(s):
        """JANET: a GRU-like cell with a single forget gate."""
        f = s.let("f", sigmoid(s.W_f @ s.h + s.U_f @ s.x + s.b_f))
        candidate = s.let("htilde", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return f * s.h + (1 - f) * candidate
''')


def janet_cell():
    """JANET_SOURCE declared in memory: a Cell that is not in the registry."""
    namespace = {"__name__": "janet_test_cell"}
    exec(compile(JANET_SOURCE, "<conftest.JANET_SOURCE>", "exec"), namespace)
    return namespace["janet"]


def janet_oracle(P, state, x):
    """JANET's step written by hand in torch (shares nothing with the declaration)."""
    (h,) = state
    f = torch.sigmoid(h @ P["W_f"].T + x @ P["U_f"].T + P["b_f"])
    return (f * h + (1 - f) * torch.tanh(h @ P["W"].T + x @ P["U"].T + P["b"]),)


# -- per-sample Jacobians by autograd: the reference for every lowered Jacobian --------------

def flat_step(step, params, n):
    """One sample of step(params, state tuple, x) with its state parts (each of size n)
    concatenated: (S,), (m,) -> (S,), the form torch.func.jacrev differentiates."""
    def flat(s, x):
        parts = tuple(p[None] for p in s.split(n))
        return torch.cat(step(params, parts, x[None]), -1)[0]
    return flat


def sample_jacobians(step, params, state, x, *, batched=False):
    """(d s'/d s (B, S, S), d s'/d x (B, S, m)) of step(params, state, x) by jacrev.

    By default vmap over a one-sample step (`flat_step`). batched=True differentiates the
    whole batch at once and keeps each sample's diagonal block (the cross-sample blocks are
    zero): for steps vmap cannot run, such as torch's fused RNN kernels."""
    n = state[0].shape[-1]
    s = torch.cat(state, -1)
    if not batched:
        flat = flat_step(step, params, n)
        return vmap(jacrev(flat, 0))(s, x), vmap(jacrev(flat, 1))(s, x)

    def whole(s, x):
        return torch.cat(step(params, tuple(s.split(n, -1)), x), -1)

    return tuple(torch.diagonal(jacrev(whole, argnums=a)(s, x), dim1=0, dim2=2).permute(2, 0, 1)
                 for a in (0, 1))                                    # (B, S, B, in) -> (B, S, in)


def entries_at(expr, n=2):
    """A symbolic matrix expression's entries at n = m = 2, its matrix symbols replaced
    by fixed random numbers: what printing and block algebra must leave unchanged."""
    expr = sp.sympify(expr)
    sizes = {sp.Symbol(s, integer=True, positive=True): n for s in "nm"}
    g = torch.Generator().manual_seed(0)
    numbers = {}
    for M in sorted(expr.atoms(sp.MatrixSymbol), key=str):
        rows, cols = (int(d.xreplace(sizes)) for d in M.shape)
        numbers[M] = sp.Matrix(torch.rand(rows, cols, generator=g, dtype=torch.float64).tolist())
    return sp.Matrix(expr.xreplace(numbers).xreplace(sizes).doit().as_explicit()).evalf()


def tree(root):
    """{relative path: sha256 of bytes, or '<dir>' / '-> target'} for everything below root."""
    root = pathlib.Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def relative(logs, reference_logs):
    """max |a / b - 1| given natural logs a and b (equal -inf entries agree)."""
    a = np.asarray(logs)
    b = np.broadcast_to(reference_logs, a.shape)
    both = np.isneginf(a) & np.isneginf(b)
    assert not (np.isneginf(a) ^ np.isneginf(b)).any(), "one side is -inf, the other not"
    return float(np.max(np.abs(np.expm1(a[~both] - b[~both])), initial=0.0))
