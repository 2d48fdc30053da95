"""The declaration API as a researcher uses it: cells of one's own, and declarations refused.

A user cell gets what a built-in one gets: derived Jacobians, lowered code, `verify_cell`.
Here each is also checked against an independent torch step written in the test.
"""

import os
import re
import shlex
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import gradlab
from gradlab import GradlabError, declare, relu, tanh
from gradlab.cli import cli
from gradlab.verification.verify import verify_cell
from conftest import (JANET_SOURCE, janet_cell, janet_oracle, random_inputs, relative_error,
                      sample_jacobians)

README = Path(__file__).resolve().parent.parent / "README.md"
TOL = 1e-10   # float64 against autograd; see test_cells.py


janet = janet_cell()


@declare(state="h", params={"W": "n m", "u": "n", "b": "n"}, source="Li et al. 2018, IndRNN")
def indrnn(s):
    """IndRNN: each unit recurs only on itself, through the vector u."""
    return relu(s.W @ s.x + s.u * s.h + s.b)


def indrnn_oracle(P, state, x):
    (h,) = state
    return (torch.relu(x @ P["W"].T + P["u"] * h + P["b"]),)


@pytest.mark.parametrize("cell, oracle", [(janet, janet_oracle), (indrnn, indrnn_oracle)],
                         ids=["janet", "indrnn"])
@pytest.mark.parametrize("size", [(1, 1, 1), (4, 3, 2)])
def test_user_cell_matches_an_independent_step(cell, oracle, size):
    n, m, batch = size
    assert isinstance(cell, gradlab.Cell) and cell.name not in gradlab.cells()
    params, state, x = random_inputs(cell, n, m, batch, seed=9)
    assert {k: tuple(v.shape) for k, v in params.items()} == (
        {"W_f": (n, n), "U_f": (n, m), "b_f": (n,), "W": (n, n), "U": (n, m), "b": (n,)}
        if cell is janet else {"W": (n, m), "u": (n,), "b": (n,)})
    (new,) = cell.step_fn()(params, state, x)
    assert relative_error(new, oracle(params, state, x)[0]) <= TOL

    J, Jx = sample_jacobians(oracle, params, state, x)
    assert relative_error(cell.jacobian_fn("state")(params, state, x), J) <= TOL
    assert relative_error(cell.jacobian_fn("input")(params, state, x), Jx) <= TOL


@pytest.mark.parametrize("cell", [janet, indrnn], ids=["janet", "indrnn"])
def test_user_cell_passes_verify(cell):
    checks = verify_cell(cell)
    assert checks and all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert gradlab.cell(cell) is cell


def test_indrnn_jacobian_is_diagonal_symbolically():
    from gradlab.symbolic.structure import kind
    assert kind(indrnn.jacobian()) == "diagonal"
    assert kind(indrnn.jacobian("input")) == "dense"


# -- declarations refused, naming the offending equation -----------------------------------

def _refused(declaration, **options):
    options = {"state": "h", "params": "W U b", "source": "a test", **options}
    with pytest.raises(GradlabError) as err:
        declare(**options)(declaration)
    return str(err.value)


def test_undeclared_symbol_names_the_equation():
    def cell(s):
        a = s.let("a", tanh(s.W @ s.h + s.U @ s.x + s.b))
        return tanh(s.W_q @ a)   # W_q: never declared

    msg = _refused(cell)
    assert "W_q" in msg and "not declared" in msg, msg
    assert "return tanh(s.W_q @ a)" in msg, msg          # the source line itself
    assert "test_language.py" in msg, msg


def test_shape_mismatch_names_the_equation():
    def cell(s):
        pre = s.let("pre", s.W @ s.h + s.b + s.x)   # b is n x 1, x is m x 1
        return tanh(pre + s.U @ s.x)

    msg = _refused(cell)
    assert 'pre = s.let("pre", s.W @ s.h + s.b + s.x)' in msg, msg
    assert "n x 1" in msg and "m x 1" in msg, msg


def test_matrix_product_mismatch_names_the_equation():
    def cell(s):
        return tanh(s.U @ s.h + s.b + s.W @ s.h + s.U @ s.x)   # U is n x m, h is n x 1

    msg = _refused(cell)
    assert "return tanh(s.U @ s.h + s.b + s.W @ s.h + s.U @ s.x)" in msg, msg
    assert "n x m" in msg, msg


def test_state_part_never_updated_is_named():
    def fewer(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)   # one value for the state (h, c)

    msg = _refused(fewer, state="h c", params="W U b")
    assert "'c'" in msg and "never updated" in msg, msg

    def unchanged(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b), s.c   # c' = c: not an update

    msg = _refused(unchanged, state="h c", params="W U b")
    assert "'c'" in msg and "never updated" in msg, msg

    def by_name(s):
        return {"h": tanh(s.W @ s.h + s.U @ s.x + s.b)}

    msg = _refused(by_name, state="h c", params="W U b")
    assert "'c'" in msg and "never updated" in msg, msg


def test_unused_parameter_is_named():
    def cell(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)

    msg = _refused(cell, params="W U b V")
    assert "V" in msg and "used by no equation" in msg, msg


def test_bad_parameter_shape_spec():
    def cell(s):
        return tanh(s.W @ s.h + s.U @ s.x + s.b)

    msg = _refused(cell, params={"W": "n n", "U": "n k", "b": "n"})
    assert "'U'" in msg and "n k" in msg, msg


# -- cells from files and modules -----------------------------------------------------------

JANET_FILE = JANET_SOURCE


@pytest.fixture
def forget_new_modules():
    """Drop modules a test imported (user cell files) so tests stay independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("gradlab_user_", "usercells_")):
            del sys.modules[name]


def _check_janet(cell):
    assert isinstance(cell, gradlab.Cell) and cell.name == "janet"
    assert cell.param_names == ("W_f", "U_f", "b_f", "W", "U", "b")
    params, state, x = random_inputs(cell, 3, 2, 2, seed=4)
    assert relative_error(cell.step_fn()(params, state, x)[0],
                          janet_oracle(params, state, x)[0]) <= TOL


@pytest.mark.usefixtures("forget_new_modules")
def test_cell_from_a_file_path(tmp_path):
    path = tmp_path / "janet_cell.py"
    path.write_text(JANET_FILE)
    cell = gradlab.cell(f"{path}:janet")
    _check_janet(cell)
    assert gradlab.cell(f"{path}:janet") is cell      # loaded once
    assert all(c.passed for c in verify_cell(f"{path}:janet"))


@pytest.mark.usefixtures("forget_new_modules")
def test_cell_from_a_module(tmp_path, monkeypatch):
    module = f"usercells_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(JANET_FILE)
    package = tmp_path / f"{module}_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gated.py").write_text(JANET_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    _check_janet(gradlab.cell(f"{module}:janet"))
    _check_janet(gradlab.cell(f"{module}_pkg.gated:janet"))


@pytest.mark.usefixtures("forget_new_modules")
def test_bad_user_cell_specs(tmp_path, monkeypatch):
    path = tmp_path / "janet_cell.py"
    path.write_text(JANET_FILE)
    with pytest.raises(GradlabError, match=r"no cell 'jannet'.*cells there: janet"):
        gradlab.cell(f"{path}:jannet")
    other = tmp_path / "not_cells.py"
    other.write_text("COUNT = 42\n\n\ndef step(s):\n    return s.h\n")
    with pytest.raises(GradlabError, match=r"no cell 'COUNT' \('COUNT' there is an int\); "
                                           r"cells there: none"):
        gradlab.cell(f"{other}:COUNT")
    with pytest.raises(GradlabError, match=r"'step' there is a function: declare it with "
                                           r"@gradlab.declare"):
        gradlab.cell(f"{other}:step")
    with pytest.raises(GradlabError, match="no such file"):
        gradlab.cell(f"{tmp_path / 'missing.py'}:janet")
    with pytest.raises(GradlabError, match="cannot import 'usercells_nowhere_at_all'"):
        gradlab.cell("usercells_nowhere_at_all:janet")
    broken = tmp_path / "broken_cell.py"
    broken.write_text("import gradlab\nraise RuntimeError('boom')\n")
    with pytest.raises(GradlabError, match=r"cannot load .*broken_cell.py.*RuntimeError.*boom"):
        gradlab.cell(f"{broken}:janet")
    refused = tmp_path / "refused_cell.py"
    refused.write_text(JANET_FILE.replace("s.U @ s.x + s.b)", "s.U @ s.h + s.b)"))
    with pytest.raises(GradlabError) as err:
        gradlab.cell(f"{refused}:janet")
    assert "s.U @ s.h + s.b" in str(err.value) and "refused_cell.py" in str(err.value)
    with pytest.raises(GradlabError, match="a name or a Cell"):
        gradlab.cell(42)


# -- the README's custom-cell example, run as pasted -----------------------------------------

def _readme_example():
    """(fenced block, language) of the README block declaring a cell named janet."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    found = [(body, lang) for lang, body in blocks if "declare" in body and "janet" in body]
    assert found, "README.md has no fenced block declaring a cell named janet"
    return found[0]


def test_a_cell_file_that_is_a_folder_or_a_fifo_is_named_as_such(tmp_path):
    """Both said "no such file", though the path is there."""
    (tmp_path / "d.py").mkdir()
    with pytest.raises(GradlabError, match=r"^'.*d\.py' is a folder, not a Python file"):
        gradlab.cell(f"{tmp_path / 'd.py'}:janet")
    os.mkfifo(tmp_path / "f.py")
    with pytest.raises(GradlabError, match=r"^'.*f\.py' is a fifo or a device, not a Python"):
        gradlab.cell(f"{tmp_path / 'f.py'}:janet")


def _files_and_commands(body, lang):
    """The files a shell block writes (cat > F <<'TAG' ... TAG) and its gradlab commands."""
    if lang == "python":
        return {"janet.py": body}, [["derive", "janet.py:janet"],
                                    ["verify", "--cells", "janet.py:janet"]]
    files = dict((m.group(2), m.group(4)) for m in re.finditer(
        r"cat\s*>\s*(['\"]?)([\w./-]+)\1\s*<<-?\s*(['\"]?)(?:\w+)\3\n(.*?)\n\w+\n", body,
        flags=re.S))
    commands = [shlex.split(line, comments=True)[1:] for line in body.splitlines()
                if line.strip().startswith("gradlab ")]
    return files, commands


def test_readme_custom_cell_example_runs(tmp_path, monkeypatch, forget_new_modules):
    """Every gradlab command of the README's example, in-process, on the files it writes."""
    files, commands = _files_and_commands(*_readme_example())
    assert files and commands, "the README example writes no file or runs no gradlab command"
    for name, code in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    specs = [a for args in commands for a in args if re.fullmatch(r"[\w./-]+\.py:\w+", a)]
    assert specs, commands
    cell = gradlab.cell(specs[0])
    assert cell.name == "janet"
    assert all(c.passed for c in verify_cell(cell))
    runner = CliRunner()
    for args in commands:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        if args[0] == "verify":
            assert " 0 failed" in result.stdout


def test_readme_custom_cell_example_runs_in_a_shell(tmp_path):
    """The README's shell block, pasted into bash as a user would. `gradlab` there is this
    interpreter's gradlab.cli (a shim first on PATH), installed as a console script or not."""
    body, lang = _readme_example()
    assert lang in ("bash", "sh", "shell", "console"), f"the README example is a {lang!r} block"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "gradlab"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c '
                    f'"from gradlab.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout
