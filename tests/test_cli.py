"""Every `gradlab` command through click's CliRunner, and the start-up cost via subprocess.

Errors must be one line on stderr naming the bad value, exit status 2, no traceback.
(click >= 8.2 keeps stderr apart: `result.stdout`, `result.stderr`; `result.output` is
both, as a terminal would show them.)
"""

import os
import re
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import gradlab
from gradlab.cli import cli
from conftest import ALL, JANET_SOURCE, assert_one_line_error

ERROR_CASES = {
    "unknown cell": (["derive", "nope"], "'nope'"),
    "unknown cell, latex": (["derive", "--latex", "nope"], "'nope'"),
    "unknown --cells": (["verify", "--cells", "nope"], "'nope'"),
    "one bad of two --cells": (["verify", "--cells", "lstm,lsmt"], "'lsmt'"),
    "empty --cells": (["verify", "--cells", ","], "names no cell"),
    "bad --device": (["verify", "--device", "gpu"], "'gpu'"),
    "bad --dtype": (["verify", "--dtype", "float16"], "'float16'"),
    "derive without CELL or --all": (["derive"], "--all"),
    "derive CELL and --all": (["derive", "lstm", "--all", "--out", "x"], "--all"),
    "derive --all without --out": (["derive", "--all"], "--out"),
    "unknown command": (["derivee", "lstm"], "derivee"),
    "unknown option": (["cells", "--colour"], "--colour"),
}


def run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line(case):
    args, needle = ERROR_CASES[case]
    assert_one_line_error(run(*args), needle)


def test_errors_list_the_valid_choices():
    assert all(name in run("derive", "nope").stderr for name in ALL)
    assert "cpu" in run("verify", "--device", "gpu").stderr
    assert "float64" in run("verify", "--dtype", "float16").stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_verify_on_cuda_without_cuda():
    result = run("verify", "--cells", "rnn_tanh", "--device", "cuda")
    assert_one_line_error(result, "'cuda'")
    assert "cpu" in result.stderr


def test_cells_lists_every_cell():
    result = run("cells")
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()
    assert rows[0].split()[:3] == ["cell", "state", "source"]
    assert [r.split()[0] for r in rows[1:]] == ALL
    lstm = next(r for r in rows if r.startswith("lstm "))
    assert "h, c" in lstm and "Hochreiter" in lstm
    assert "h, c, i, f, o" in next(r for r in rows if r.startswith("lstm_fgr "))


def _block_names(cell, wrt):
    ins = cell.state_names if wrt == "state" else (cell.input_name,)
    return [f"∂{o}/∂{i}" for o in map(str, cell.outputs) for i in ins]


def test_derive_lstm_shows_the_two_by_two_blocks():
    result = run("derive", "lstm")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2x2 block state Jacobian" in out and "2x1 block input Jacobian" in out
    for name in _block_names(gradlab.cell("lstm"), "state"):
        assert f"  {name} = " in out, name
    assert "∂c'/∂c = diag(f)" in out
    assert "c' = f ⊙ c + i ⊙ g" in out


def test_derive_lstm_fgr_shows_five_by_five_blocks():
    result = run("derive", "lstm_fgr")
    assert result.exit_code == 0, result.output
    assert "5x5 block state Jacobian" in result.stdout
    names = _block_names(gradlab.cell("lstm_fgr"), "state")
    assert len(names) == 25 and all(f"  {name} = " in result.stdout for name in names)


def test_derive_latex():
    result = run("derive", "--latex", "rnn_tanh")
    assert result.exit_code == 0, result.output
    assert r"\frac{\partial h'}{\partial h} = \operatorname{diag}\left(\mathbf{1} - h'^{2}\right) W" \
        in result.stdout
    assert "Lambda" not in result.stdout and "_d" not in result.stdout


def test_derive_all_writes_one_document_per_cell(tmp_path):
    out = tmp_path / "docs"
    result = run("derive", "--all", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.md" for n in ALL] + ["README.md", "conventions.md", "theory.md", "tour.md",
                                    ".gradlab-manifest.json"])
    assert f"wrote {len(ALL) + 4} files" in result.stdout      # and README, conventions, theory, tour
    lstm = (out / "lstm.md").read_text(encoding="utf-8")
    assert lstm.startswith("# `lstm`") and "$$" in lstm and "Lambda" not in lstm
    index = (out / "README.md").read_text(encoding="utf-8")
    assert all(f"({n}.md)" in index for n in ALL)


def test_derive_one_cell_to_a_directory(tmp_path):
    """`derive CELL --out DIR` writes DIR/CELL.md (and an index naming it)."""
    result = run("derive", "lstm", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".gradlab-manifest.json", "README.md", "conventions.md", "lstm.md", "theory.md",
        "tour.md"]
    assert "(lstm.md)" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_derive_again_into_one_folder_indexes_every_page_it_keeps(tmp_path):
    """Derivation folders accumulate: the pages of an earlier run stay, so the index names
    them too (it used to name the last run's cells only), but not a page the user edited."""
    out = tmp_path / "docs"
    for cell in ("gru", "lstm", "gru"):
        assert run("derive", cell, "--out", str(out)).exit_code == 0
    index = (out / "README.md").read_text(encoding="utf-8")
    assert index.count("(gru.md)") == 1 and index.count("(lstm.md)") == 1
    with open(out / "lstm.md", "a", encoding="utf-8") as f:
        f.write("my note\n")                            # now the user's page, not gradlab's
    assert run("derive", "rnn_tanh", "--out", str(out), "--force").exit_code == 0
    index = (out / "README.md").read_text(encoding="utf-8")
    assert "(rnn_tanh.md)" in index and "(gru.md)" in index and "(lstm.md)" not in index
    assert (out / "lstm.md").read_text(encoding="utf-8").endswith("my note\n")


def test_verify_two_cells():
    result = run("verify", "--cells", "rnn_tanh,lstm")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "rnn_tanh  (cpu, float64)" in out and "lstm  (cpu, float64)" in out
    assert "torch.nn.LSTMCell" in out and "torch.nn.RNNCell" in out and "oracle" in out
    errors = [float(e) for e in re.findall(r"\s(\d\.\d+e[-+]\d+)\s+1e-10\s+ok$", out, re.M)]
    rows = [line for line in out.splitlines() if line.rstrip().endswith((" ok", " FAIL"))]
    assert errors and len(errors) == len(rows), out
    assert max(errors) <= 1e-10
    assert re.search(rf"{len(rows)} passed, 0 failed; worst relative error", out)


def test_verify_float32():
    result = run("verify", "--cells", "gru_torch", "--dtype", "float32", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "gru_torch  (cpu, float32)" in result.stdout and " 0 failed" in result.stdout


def test_user_cell_on_the_command_line(tmp_path):
    path = tmp_path / "my_janet.py"
    path.write_text(JANET_SOURCE, encoding="utf-8")
    spec = f"{path}:janet"
    result = run("derive", spec)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("janet: state (h)") and "∂h'/∂h = " in result.stdout
    result = run("verify", "--cells", f"rnn_tanh,{spec}")
    assert result.exit_code == 0, result.output
    assert "janet  (cpu, float64)" in result.stdout and " 0 failed" in result.stdout
    assert_one_line_error(run("derive", f"{path}:nobody"), "'nobody'")


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and gradlab.__version__ in result.stdout


# -- start-up: the CLI and `import gradlab` load neither SymPy nor torch -----------------------

def _python(code, *args):
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_import_gradlab_is_light():
    done = _python("import sys, gradlab\n"
                   "heavy = sorted({'sympy', 'torch'} & set(sys.modules))\n"
                   "print(heavy)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_loads_neither_sympy_nor_torch():
    done = _python("import sys\nfrom gradlab.cli import cli\n"
                   "cli.main(['--help'], prog_name='gradlab', standalone_mode=False)\n"
                   "print(sorted({'sympy', 'torch'} & set(sys.modules)))")
    assert done.returncode == 0, done.stderr
    assert "Usage: gradlab" in done.stdout and "derive" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_console_script_help():
    """What the console script runs (gradlab.cli:main, see pyproject.toml), in a fresh
    interpreter: it need not be on PATH."""
    done = subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           "--help"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for command in ("cells", "derive", "verify"):
        assert command in done.stdout
