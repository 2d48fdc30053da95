"""The command line at the edges a hostile probe found: an import that raises a
BaseException, an --out whose name is not UTF-8, names too long for the file system, and
integers spelt as Python reads them but a reader may not."""

import os
import subprocess
import sys

import pytest

import gradlab
from conftest import assert_ok, assert_one_line_error, invoke

TINY = ["--hidden", "2", "--inputs", "1", "--steps", "2", "--batch", "1"]
# a subprocess imports the gradlab this test process imported, wherever it runs
SAME = {**os.environ, "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.path.dirname(os.path.dirname(gradlab.__file__))}


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Run in a folder of the test's own: a command these tests expect refused, if it ran,
    would write its default --out (reports/...) where it stands."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("body,kind", [
    ('class Boom(BaseException):\n    pass\n\nraise Boom("x")\n', "Boom"),
    ('raise GeneratorExit("bye")\n', "GeneratorExit"),
])
def test_a_file_that_raises_a_base_exception_on_import_is_one_line(tmp_path, body, kind):
    """A BaseException that is not an Exception escaped as a 38-line traceback, exit 1."""
    bad = tmp_path / "bad.py"
    bad.write_text(body)
    for args in (["derive", f"{bad}:c"], ["check", f"{bad}:f", "--cell", "rnn_tanh"],
                 ["verify", "--cells", f"{bad}:c"],
                 ["report", "--cells", f"{bad}:c", *TINY, "--out", tmp_path / "r"]):
        assert_one_line_error(invoke(*args), f"cannot load {bad}")
        assert kind in invoke(*args).stderr


def test_an_out_whose_name_is_not_utf8_is_written_with_the_name_escaped(tmp_path):
    """The command line went into report.md after all the work, and could not be encoded:
    an 'internal error'. Run as a user runs it, so that the command line is the real one."""
    out = os.path.join(os.fsencode(tmp_path), b"r\xff")
    run = subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                          "report", "--cells", "rnn_tanh", *TINY, "--out", out],
                         capture_output=True, timeout=600, env=SAME)
    assert run.returncode == 0, run.stderr
    with open(os.path.join(out, b"report.md"), encoding="utf-8") as f:
        assert "r\\\\xff" in f.read()                 # markdown escapes the backslash
    assert b"wrote " in run.stdout
    result = invoke("report", "--cells", "rnn_tanh", *TINY, "--out",
                    os.fsdecode(out + b"2"))    # the "wrote" line, to a strict stream
    assert_ok(result)
    assert "r\\xff2/index.html" in result.stdout


def test_a_file_name_too_long_is_refused_before_any_work(tmp_path):
    """--write-torch with a 303-byte name ran the whole search, printed its results, then
    failed; a cell named with 300 characters was derived, then failed at the write."""
    target = tmp_path / ("x" * 300 + ".pt")
    result = invoke("init", "lstm", "--timescale", "3", "--hidden", "4", "--inputs", "2",
                    "--write-torch", target)
    assert_one_line_error(result, "is 303 bytes long; a file name may be at most 255")
    assert "measured" not in result.stderr
    cell = tmp_path / "long.py"
    cell.write_text("import gradlab\n"
                    f"@gradlab.declare(state='h', params='W U b', source='t', name='{'c' * 300}')\n"
                    "def f(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    assert_one_line_error(invoke("derive", f"{cell}:f", "--out", tmp_path / "d"),
                          "is 303 bytes long; a file name may be at most 255")


def test_an_option_given_twice_takes_the_last_value_as_click_does(tmp_path):
    """Last one wins (a default in a script, overridden after it), the usual convention."""
    assert_ok(invoke("derive", "rnn_tanh", "--out", tmp_path / "a", "--out", tmp_path / "b"))
    assert not (tmp_path / "a").exists() and (tmp_path / "b").is_dir()


@pytest.mark.parametrize("args,message", [
    (["report", "--hidden", "1_0"], "'1_0' is not written in digits 0-9 alone; write '10'"),
    (["report", "--hidden", "+1"], "'+1' is not written in digits 0-9 alone; write '1'"),
    (["report", "--hidden", "0x4"], "'0x4' is not a whole number (digits 0-9) (an integer "
                                    ">= 1)"),
    (["report", "--weight-scale", "1_0"], "'1_0' holds '_'"),
    (["sweep", "--weight-scales", "1_0"], "'1_0' holds '_'"),
    (["train", "--tasks", "adding:1_0"], "delay '1_0' is not written in digits 0-9 alone"),
    (["train", "--tasks", "adding:+5"], "delay '+5' is not written in digits 0-9 alone"),
    (["report", "--arch", "lstm:hidden=1_0,inputs=2", "--model", "m.pt"],
     "hidden='1_0' is not written in digits 0-9 alone; write '10'"),
])
def test_one_integer_grammar_in_every_option(args, message):
    """--hidden 1_0 read as 10 while --shard 1_0/2_0 and --arch hidden=1_0 were refused."""
    assert_one_line_error(invoke(*args), message)


def test_an_arch_with_an_empty_entry_is_quoted_whole():
    """It was quoted back without its kind: --arch 'hidden=4,inputs=2,' has an empty entry."""
    assert_one_line_error(invoke("report", "--arch", "lstm:hidden=4,inputs=2,", "--model",
                                 "m.pt"), "--arch 'lstm:hidden=4,inputs=2,' has an empty entry")


def test_python_dash_m_gradlab_is_the_command_line():
    run = subprocess.run([sys.executable, "-m", "gradlab", "derive", "--hidden"],
                         capture_output=True, text=True, timeout=300, env=SAME)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == "gradlab: error: No such option '--hidden'."


def test_verify_says_when_the_equations_themselves_give_nan(tmp_path):
    """log of a negative pre-activation: both backends agree on nan, and verify blamed the
    numpy backend ('FAIL (non-finite)') for what the declared equations do."""
    cell = tmp_path / "logcell.py"
    cell.write_text("import gradlab\nfrom gradlab import log\n\n"
                    "@gradlab.declare(state='h', params='W U b', source='t')\n"
                    "def logcell(s):\n    return log(s.W @ s.h + s.U @ s.x + s.b)\n")
    result = invoke("verify", "--cells", f"{cell}:logcell")
    assert result.exit_code == 1
    rows = [line for line in result.stdout.splitlines() if "numpy backend" in line]
    assert any("FAIL (the equations give nan or inf here)" in r for r in rows)
    assert not any("FAIL (non-finite)" in r for r in rows)


def test_the_shell_prints_a_gradlab_error_in_one_line_and_has_sum():
    """J['q', 'c'] at the prompt printed a traceback (40 coloured lines under IPython); the
    namespace had mean, var, norm and sqrt but not the language's sum."""
    from gradlab import repl
    from gradlab.symbolic import language
    ns = repl.namespace()
    assert ns["sum"] is gradlab.sum and ns["sum"]([1, 2]) == 3 and ns["sum"]([1], start=2) == 3
    out = []
    console = repl.Console(locals=ns)
    console.write = out.append
    console.push("lstm.jacobian()['q', 'c']")
    assert out == ["gradlab: error: no output 'q' in this Jacobian; valid: h, c\n"]

    class Shell:
        def set_custom_exc(self, kinds, handler):
            self.kinds, self.handler = kinds, handler
    shell = Shell()
    repl.one_line_errors(shell)
    assert shell.kinds == (gradlab.GradlabError,)


def test_a_piped_shell_prints_a_gradlab_error_in_one_line():
    run = subprocess.run([sys.executable, "-m", "gradlab", "shell"], input="lstm.jacobian()"
                         "['q', 'c']\n", capture_output=True, text=True, timeout=300, env=SAME)
    assert "gradlab: error: no output 'q' in this Jacobian; valid: h, c" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("line, code", [("import sys; sys.exit(3)", 3), ("exit(5)", 5)])
def test_a_piped_shell_ends_with_the_status_its_commands_ask_for(line, code):
    """Piped into IPython, sys.exit(3) ended 0 (with IPython's warning on stderr) and exit(5)
    raised a TypeError traceback; --plain ended 3. Piped commands go to the plain console,
    which also prints no colours and no In [1]: prompts."""
    run = subprocess.run([sys.executable, "-m", "gradlab", "shell"], input=line + "\n",
                         capture_output=True, text=True, timeout=300, env=SAME)
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "\x1b[" not in run.stdout


def test_a_reader_that_goes_away_is_not_an_error():
    """`gradlab cells | true` exited 1 (click's own EPIPE exit, before gradlab's handler):
    a script under `set -o pipefail` failed. It exits 0 and prints nothing more."""
    with subprocess.Popen([sys.executable, "-m", "gradlab", "cells"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        proc.stdout.close()                           # gone before gradlab writes a line
        assert proc.wait(timeout=120) == 0
        assert proc.stderr.read() == b""


def _gone(args, cwd, close):
    """gradlab ARGS with the reader of stdout or stderr (`close`) gone before it writes."""
    with subprocess.Popen([sys.executable, "-m", "gradlab", *args], cwd=cwd, env=SAME,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        getattr(proc, close).close()
        code = proc.wait(timeout=600)
        rest = {"stdout": proc.stderr, "stderr": proc.stdout}[close].read()
    return code, rest


def test_a_reader_gone_does_not_change_the_verdict(tmp_path):
    """`gradlab check ... | true` exited 0 for a function that disagrees (the verdict
    line met the closed pipe, and that was taken for `cells | head`): it is still 1."""
    (tmp_path / "fn.py").write_text("import torch\n\n\ndef bad(params, state, x):\n"
                                    "    B, n = state[0].shape\n"
                                    "    return torch.zeros(B, n, n, dtype=torch.float64)\n")
    code, _ = _gone(["check", "--cell", "rnn_tanh", "--hidden", "3", "--inputs", "2",
                     "--batch", "2", "fn.py:bad"], tmp_path, "stdout")
    assert code == 1


def test_a_closed_stderr_drops_progress_not_the_work(tmp_path):
    """`gradlab report ... 2>&1 | head -1` exited 0 with no report: the second progress
    line met the closed pipe and ended the run. The report is written, exit 0; and a bad
    value is still exit 2 with no one to read its line."""
    code, _ = _gone(["report", "--cells", "rnn_tanh,lstm", "--hidden", "3", "--steps", "5",
                     "--batch", "2", "--out", "r"], tmp_path, "stderr")
    assert code == 0 and (tmp_path / "r" / "report.md").is_file()
    code, out = _gone(["report", "--cells", "nosuch"], tmp_path, "stderr")
    assert code == 2 and out == b""


def test_a_full_disk_under_stdout_is_still_an_error(tmp_path):
    """Output that cannot be written is an error, not a reader that went away: `gradlab
    cells > /dev/full` must not exit 0 with nothing written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "gradlab", "cells"], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=120, env=SAME)
    assert run.returncode == 2 and run.stderr == (
        "gradlab: error: cannot write to standard output: No space left on device\n")


def test_option_slips_are_named_as_typed(tmp_path, monkeypatch):
    """'1e-400,0' said only 'needs distinct numbers' (1e-400 is 0 in float64); '1,1' did
    not name the repeat; --block , showed ('', '')."""
    for value, said in (("1e-400,0", "1e-400 and 0 are one float64 (0)"),
                        ("0.5,1,0.5", "0.5 is given twice")):
        assert_one_line_error(invoke("sweep", "--weight-scales", value, "--out", "unused"),
                              f"--weight-scales {value!r} needs one or more distinct "
                              f"numbers: {said}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.py").write_text("def f(p, s, x):\n    return None\n")
    assert_one_line_error(invoke("check", "x.py:f", "--cell", "lstm", "--block", ","),
                          "block ',' is not (out part, in part)")


def test_a_block_of_two_names_is_named_as_typed(tmp_path):
    """--block x,y said "block ('x', 'y') is not (out part, in part)", a Python tuple,
    where the same line names a block as it is typed (e.g. h,c); spaces around the names
    are still read past."""
    (tmp_path / "x.py").write_text(
        "import gradlab\nJ = gradlab.cell('lstm').jacobian_fn('state')\n"
        "def f(p, s, x):\n    n = s[0].shape[-1]\n    return J(p, s, x)[:, :n, n:]\n")
    for value in ("x,y", "h, z"):
        result = invoke("check", "x.py:f", "--cell", "lstm", "--block", value)
        assert_one_line_error(result, f"block {value!r} is not (out part, in part): the out "
                              "part one of h, c, the in part one of h, c; e.g. h,c")
        assert "('" not in result.stderr, result.stderr
    assert_one_line_error(invoke("check", "x.py:f", "--cell", "rnn_tanh", "--block", "x,y"),
                          "block 'x,y' is not a block of rnn_tanh's Jacobian: it has one, "
                          "(h, h), the whole (leave block out)")
    right = invoke("check", "x.py:f", "--cell", "lstm", "--block", " h , c")
    assert right.exit_code == 0 and right.stdout.startswith("agrees:"), right.output


def _closed_stderr(args, cwd):
    """gradlab run with file descriptor 2 closed before it starts (`2>&-`)."""
    return subprocess.run([sys.executable, "-m", "gradlab", *args], cwd=cwd, timeout=300,
                          stdout=subprocess.PIPE, text=True, env=SAME,
                          preexec_fn=lambda: os.close(2))


def test_a_stderr_closed_before_gradlab_starts_stops_no_work(tmp_path):
    """Python's sys.stderr is then None, and the progress shown on it ended every command
    that shows progress: exit 2, nothing written, nothing said."""
    run = _closed_stderr(["report", "--cells", "rnn_tanh", "--hidden", "3", "--steps", "3",
                          "--batch", "1", "--out", "ra"], tmp_path)
    assert run.returncode == 0 and (tmp_path / "ra" / "index.html").is_file()


def test_what_a_checked_function_prints_cannot_decide_its_verdict(tmp_path):
    """A right function that prints, with stderr on a full disk or closed, was "the
    function under test raised OSError": exit 2 (its prints go to stderr)."""
    (tmp_path / "mine.py").write_text(
        "import gradlab\n"
        "exact = gradlab.cell('rnn_tanh').jacobian_fn('state')\n"
        "def f(p, s, x):\n"
        "    print('debug' * 1000)\n"
        "    return exact(p, s, x)\n")
    args = ["check", "mine.py:f", "--cell", "rnn_tanh"]
    runs = [_closed_stderr(args, tmp_path)]
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            runs.append(subprocess.run([sys.executable, "-m", "gradlab", *args], cwd=tmp_path,
                                       stdout=subprocess.PIPE, stderr=full, text=True,
                                       timeout=300, env=SAME))
    for run in runs:
        assert run.returncode == 0 and run.stdout.startswith("agrees: "), run.stdout


def test_with_stdin_and_stderr_closed_a_checked_function_cannot_write_the_verdict(tmp_path):
    """/dev/null, opened for the closed stderr, took the lowest free descriptor (0, with
    stdin closed too), so fd 2 stayed closed and what the function wrote to fd 1 reached
    stdout: "agrees: forged" before the real "differs"."""
    (tmp_path / "forge.py").write_text(
        "import os, gradlab\n"
        "exact = gradlab.cell('rnn_tanh').jacobian_fn('state')\n"
        "def jac(p, s, x):\n"
        "    os.write(1, b'agrees: forged\\n')\n"
        "    return 2 * exact(p, s, x)\n")

    def close_both():
        os.close(0)
        os.close(2)
    run = subprocess.run([sys.executable, "-m", "gradlab", "check", "forge.py:jac", "--cell",
                          "rnn_tanh"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                         timeout=300, env=SAME, preexec_fn=close_both)
    assert run.returncode == 1 and run.stdout.startswith("differs: ") and \
        "forged" not in run.stdout, run.stdout


def test_init_without_a_cell_lists_the_cells():
    """`gradlab init` said click's "Missing argument 'CELL'." and named no cell, where
    `gradlab derive` lists them."""
    for args in (("init",), ("init", "--timescale", "5")):
        result = invoke(*args)
        assert_one_line_error(result, "give a CELL (valid cells: rnn_tanh, ")
        assert "lstm" in result.output
