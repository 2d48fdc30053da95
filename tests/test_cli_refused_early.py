"""Options refused before any work, found by a hostile probe of the command line: a gate
bias whose weights overflow the dtype (refused after the first cells were measured),
more Lyapunov exponents than a later cell's state holds (after the first was timed),
a report into the folder of a cell given as package.module:NAME, a long list with a
repeat (20 s, echoed whole), -0 shown as "-0.0", an async or binary function file."""

import functools

from conftest import assert_one_line_error, invoke


def test_weights_that_overflow_the_dtype_are_refused_before_any_cell_is_measured(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["report", "--cells", "rnn_tanh,gru", "--hidden", "4", "--steps", "5", "--batch",
          "2", "--gate-bias", "1e308", "--dtype", "float32", "--out", "r"],
         "--gate-bias 1e+308: the weights of cell 'gru' overflow float32"),
        (["sweep", "--cells", "rnn_tanh,gru", "--hidden", "4", "--inputs", "2", "--steps",
          "5", "--max-steps", "5", "--batch", "2", "--weight-scales", "1,2",
          "--gate-biases", "0,1e308", "--dtype", "float32", "--out", "s"],
         "--gate-biases 1e+308: the weights of cell 'gru' overflow float32"),
        (["train", "--cells", "rnn_tanh,gru", "--hidden", "4", "--steps", "3", "--batch",
          "2", "--gate-bias", "1e308", "--dtype", "float32", "--out", "t"],
         "--gate-bias 1e+308: the weights of cell 'gru' overflow float32")]
    for args, said in cases:
        result = invoke(*args)
        assert_one_line_error(result, said)
        assert "measured" not in result.stderr and "swept" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_more_exponents_than_a_later_cells_state_holds_are_refused_before_timing():
    result = invoke("bench", "--lyapunov", "6", "--cells", "lstm,gru", "--hidden", "4",
                    "--steps", "4", "--batch", "2", "--repeats", "1")
    assert_one_line_error(result, "k = 6 exponents, but the state of gru at hidden 4")
    assert "timed" not in result.stderr


def test_a_report_is_not_written_into_the_folder_of_a_cell_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "modc").mkdir()
    (tmp_path / "modc" / "cells.py").write_text(
        "import gradlab\nfrom gradlab import tanh\n\n"
        "@gradlab.declare(state='h', params='W U b', source='mine')\n"
        "def janet_mod(s):\n    return tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    result = invoke("report", "--cells", "modc.cells:janet_mod", "--hidden", "3", "--steps",
                    "4", "--batch", "2", "--out", "modc", "--force")
    assert_one_line_error(result, "holds the cell file")
    assert sorted(p.name for p in (tmp_path / "modc").iterdir() if p.name != "__pycache__") \
        == ["cells.py"]


def test_a_long_list_with_a_repeat_is_refused_at_once_and_shown_cut_short(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    value = ",".join(str(i) for i in range(20000)) + ",5"
    result = invoke("sweep", "--weight-scales", value, "--out", "s")
    assert_one_line_error(result, "5 is given twice")
    assert len(result.stderr) < 300 and "..." in result.stderr


def test_minus_zero_is_zero():
    from gradlab.options import SCALE, floats
    assert str(SCALE.convert("-0", None, None)) == "0.0"
    assert [str(v) for v in floats("-0,1", "--weight-scales")] == ["0.0", "1.0"]


def test_an_async_function_and_a_file_with_null_bytes_are_named_in_one_line(tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asyncf.py").write_text("async def f(p, s, x):\n    return 1\n")
    (tmp_path / "binary.py").write_bytes(b"def f(p, s, x):\n    return 1\x00\n")
    assert_one_line_error(invoke("check", "asyncf.py:f", "--cell", "rnn_tanh"),
                          "fn is an async function (async def)")
    assert_one_line_error(invoke("check", "binary.py:f", "--cell", "rnn_tanh"),
                          "SyntaxError: source code string cannot contain null bytes")


def test_the_weights_are_drawn_at_the_runs_own_seed(tmp_path, monkeypatch):
    """Drawn at seed 0, a --weight-scale that overflows only at seed 0's draws refused a
    run at --seed 1 that works."""
    import gradlab.initialize as init
    seeds = []
    real = init.init_params

    @functools.wraps(real)
    def recorded(*a, **kw):
        seeds.append(kw.get("seed"))
        return real(*a, **kw)
    monkeypatch.setattr(init, "init_params", recorded)
    monkeypatch.chdir(tmp_path)
    for args in (["report", "--cells", "rnn_tanh", "--hidden", "2", "--steps", "3", "--batch",
                  "1", "--seed", "7", "--out", "r"],
                 ["sweep", "--cells", "rnn_tanh", "--hidden", "2", "--inputs", "2", "--steps",
                  "3", "--max-steps", "3", "--batch", "1", "--weight-scales", "1",
                  "--gate-biases", "0", "--seed", "7", "--out", "s"]):
        seeds.clear()
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert seeds and set(seeds[:1]) == {7}


def test_a_list_entry_that_is_not_a_finite_number_is_named_though_the_list_is_cut():
    from gradlab.options import floats
    import pytest
    from gradlab.errors import GradlabError
    head = ",".join(str(i) for i in range(60))
    tail = ",".join(str(i) for i in range(100, 200))
    for bad in ("abc", "1e999"):
        with pytest.raises(GradlabError, match=f"'{bad}' is not a"):
            floats(f"{head},{bad},{tail}", "--weight-scales")


def test_a_path_longer_than_the_system_takes_is_named_as_the_option(tmp_path, monkeypatch):
    """It ended in "File name too long: '<5 KB path>'", not naming --out."""
    monkeypatch.chdir(tmp_path)
    long = "/".join(["a" * 200] * 25)
    assert_one_line_error(invoke("report", "--cells", "rnn_tanh", "--hidden", "2", "--steps",
                                 "3", "--batch", "1", "--out", long),
                          "--out 'aaaa")
    assert_one_line_error(invoke("init", "gru_torch", "--timescale", "5", "--hidden", "4",
                                 "--write-torch", long + ".pt"), "--write-torch 'aaaa")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_command_never_loads_matplotlib(tmp_path):
    """report, sweep and train imported matplotlib before reading --cells: a refused
    command built matplotlib's font cache in $HOME (seconds, on a fresh machine) and
    left it there. Each runs in a fresh process, with HOME a folder of its own."""
    import os
    import subprocess
    import sys
    probe = ("import sys; from click.testing import CliRunner; from gradlab.cli import cli; "
             "r = CliRunner().invoke(cli, sys.argv[1:]); "
             "print(r.exit_code, 'matplotlib' in sys.modules)")
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("MPLCONFIGDIR", None)
    for command in ("report", "sweep", "train"):
        out = subprocess.run([sys.executable, "-c", probe, command, "--cells", "nosuch",
                              "--out", str(tmp_path / "out")], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300).stdout.split()
        assert out == ["2", "False"], (command, out)
    assert list(tmp_path.iterdir()) == []
