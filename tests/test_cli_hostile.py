"""Hostile input at the CLI: memory refused up front, `sweep merge` that never imports a
cell file and checks every number it reads, and the validation gaps of the probe report
(each a one-line refusal, exit 2): cells named twice, train's rates and drift steps,
init's timescales, empty list entries, the largest seed, small messages, Ctrl-C and an
unknown command. Where output goes and what it may replace: test_cli_hostile_outputs.py."""

import json
import shutil
import warnings

import pytest
import torch

import gradlab.registry
from conftest import JANET_SOURCE, assert_ok, assert_one_line_error, invoke, listing

HUGE = "100000"          # a hidden size whose weights alone need about 80 GB


# -- memory: refused before anything is allocated ------------------------------------------

def test_an_allocator_failure_is_the_out_of_memory_message(monkeypatch):
    def fail():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 80000000000 bytes.")
    monkeypatch.setattr(gradlab.registry, "cells", fail)
    result = invoke("cells")
    assert_one_line_error(result, "out of memory; use a smaller --hidden")
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("sizes", [["--hidden", HUGE], ["--batch", "100000000"]])
def test_check_refuses_a_size_that_cannot_fit(tmp_path, sizes):
    (tmp_path / "mine.py").write_text("def good(params, state, x):\n    return None\n")
    assert_one_line_error(invoke("check", f"{tmp_path / 'mine.py'}:good", "--cell",
                                 "rnn_tanh", *sizes), "of memory but")


def test_train_refuses_a_size_that_cannot_fit(tmp_path):
    result = invoke("train", "--cells", "rnn_tanh", "--tasks", "adding:3", "--steps", "1",
                    "--hidden", HUGE, "--batch", "1", "--char-steps", "0", "--drift-steps",
                    "1", "--out", tmp_path / "t")
    assert_one_line_error(result, "of memory but")
    assert listing(tmp_path) == []


def test_report_refuses_an_arch_too_large_before_building_it(tmp_path):
    path = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(2, 3).state_dict(), path)
    result = invoke("report", "--steps", "3", "--batch", "1", "--model", path, "--arch",
                    "lstm:hidden=200000,inputs=2", "--out", tmp_path / "r")
    assert_one_line_error(result, "of memory but")
    assert listing(tmp_path) == ["lstm.pt"]


def test_report_refuses_a_size_that_conflicts_with_the_arch(tmp_path):
    path = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(2, 3).state_dict(), path)
    for option, value in (("--hidden", "50"), ("--inputs", "7")):
        result = invoke("report", "--steps", "3", "--batch", "1", "--model", path, "--arch",
                        "lstm:hidden=3,inputs=2", option, value, "--out", tmp_path / "r")
        assert_one_line_error(result, f"{option} {value} conflicts with --arch")


# -- sweep merge: parts are data -------------------------------------------------------------

MARKER_CELL = "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('ran')\n"
GRID = ["--weight-scales", "0.5,2", "--gate-biases", "0,2", "--hidden", "3", "--steps", "8",
        "--max-steps", "16", "--batch", "2", "--inputs", "2"]


@pytest.fixture(scope="module")
def janet_parts(tmp_path_factory):
    """Shards 1/2 and 2/2 of a sweep over a cell file; the file is then replaced by one
    that leaves a mark when it runs."""
    base = tmp_path_factory.mktemp("parts")
    cell = base / "janet.py"
    cell.write_text(JANET_SOURCE)
    dirs = [base / f"p{i}" for i in (1, 2)]
    for i, d in enumerate(dirs, 1):
        assert_ok(invoke("sweep", "--cells", f"{cell}:janet", *GRID, "--shard", f"{i}/2",
                         "--out", d))
    cell.write_text(MARKER_CELL + JANET_SOURCE)
    return base, dirs


def test_merge_does_not_import_a_cell_file(janet_parts, tmp_path):
    base, dirs = janet_parts
    result = invoke("sweep", "merge", *dirs, "--out", tmp_path / "m")
    assert_ok(result)
    assert not (base / "RAN").exists()
    data = json.loads((tmp_path / "m" / "data.json").read_text())
    assert len(data["points"]) == 4                        # janet has a gate bias: 2 x 2
    assert "does not import cell files" in (tmp_path / "m" / "report.md").read_text()


@pytest.mark.parametrize("field, value", [("horizon", -5), ("horizon", 2.5),
                                          ("timescale", -3), ("rate_stderr", -1),
                                          ("rate", "inf"), ("rate", float("nan"))])
def test_merge_refuses_a_tampered_number(janet_parts, tmp_path, field, value):
    _, dirs = janet_parts
    copies = [tmp_path / d.name for d in dirs]
    for d, c in zip(dirs, copies):
        shutil.copytree(d, c)
    part = copies[0] / "part.json"
    data = json.loads(part.read_text())
    data["points"][0][field] = value
    part.write_text(json.dumps(data))
    result = invoke("sweep", "merge", *copies, "--out", tmp_path / "m")
    assert_one_line_error(result, "is not what gradlab wrote there: its SHA-256 is not")
    assert str(part) in result.stderr
    (copies[0] / ".gradlab-manifest.json").unlink()      # a part with no manifest: read
    result = invoke("sweep", "merge", *copies, "--out", tmp_path / "m")
    assert_one_line_error(result, f"{field} = ")
    assert str(part) in result.stderr


def test_sweep_refuses_a_negative_weight_scale_and_steps_over_the_budget(tmp_path):
    assert_one_line_error(invoke("sweep", "--cells", "rnn_tanh", "--weight-scales", "-1",
                                 "--out", tmp_path / "s"), "--weight-scales")
    assert_one_line_error(invoke("sweep", "--cells", "rnn_tanh", "--steps", "10",
                                 "--max-steps", "3", "--out", tmp_path / "s"), "--max-steps")
    assert listing(tmp_path) == []


# -- the other gaps --------------------------------------------------------------------------

def test_report_refuses_a_cell_named_twice(tmp_path):
    assert_one_line_error(invoke("report", "--cells", "rnn_tanh,rnn_tanh", "--out",
                                 tmp_path / "r"), "twice")


def test_verify_accepts_all(monkeypatch):
    import gradlab.verification.verify as verify

    def stop(cell, **options):
        raise gradlab.GradlabError(f"reached {cell.name}")
    monkeypatch.setattr(verify, "verify_cell", stop)
    result = invoke("verify", "--cells", "all")          # the progress bar's label first
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == "gradlab: error: reached rnn_tanh"


def test_a_bare_gradlab_prints_the_help():
    result = invoke()
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: ") and "\nCommands:\n" in result.stderr
    assert "error" not in result.stderr


TRAIN = ["--cells", "rnn_tanh", "--tasks", "adding:3", "--hidden", "2", "--batch", "2",
         "--char-steps", "0"]


def test_train_refuses_drift_steps_over_the_steps(tmp_path):
    assert_one_line_error(invoke("train", *TRAIN, "--steps", "1", "--drift-steps", "5",
                                 "--out", tmp_path / "t"), "--drift-steps")


def test_train_with_a_diverging_rate_warns_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke("train", *TRAIN, "--steps", "2", "--drift-steps", "1", "--lr",
                        "1e308", "--dtype", "float64", "--out", tmp_path / "t")
    assert_ok(result)
    assert "Warning" not in result.stderr


@pytest.mark.parametrize("lr", ["1e300", "1e38"])
def test_train_refuses_a_rate_its_dtype_cannot_hold(tmp_path, lr):
    """--lr 1e300 in float32 ended in 'internal error (RuntimeError: value cannot be
    converted to type float without overflow)' once training ran; so did 1e38, below the
    float32 maximum the check then used: Adam's first step is 10 lr."""
    out = tmp_path / "t"
    assert_one_line_error(invoke("train", "--cells", "lstm", "--tasks", "adding:3", "--steps",
                                 "2", "--hidden", "4", "--batch", "2", "--char-steps", "0",
                                 "--drift-steps", "1", "--lr", lr, "--out", out),
                          f"--lr {float(lr):g} does not fit float32: Adam's first step is "
                          "10 lr, so at most 3.4e+37")
    assert not out.exists()


def test_train_takes_the_largest_float32_rate(tmp_path):
    assert_ok(invoke("train", "--cells", "rnn_tanh", "--tasks", "adding:2", "--steps", "2",
                     "--hidden", "2", "--batch", "2", "--char-steps", "0", "--drift-steps",
                     "1", "--lr", "3.4e37", "--out", tmp_path / "t"))


def test_a_report_at_a_huge_weight_scale_warns_nothing(tmp_path):
    """numpy's 'invalid value encountered in reduce' leaked to stderr (a mean over +inf
    and -inf log norms: nan, which the table already says why)."""
    for command in (["report", "--cells", "lstm", "--weight-scale", "1e300"],
                    ["sweep", "--cells", "lstm", "--weight-scales", "1e300",
                     "--gate-biases", "0"]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = invoke(*command, "--hidden", "4", "--steps", "4", "--batch", "2",
                            "--inputs", "2", "--out", tmp_path / command[0])
        assert_ok(result)
        assert "Warning" not in result.stderr


def test_bench_lyapunov_refuses_a_cell_named_twice():
    """Plain bench refused a repeated cell; bench --lyapunov timed it twice and exited 0."""
    assert_one_line_error(invoke("bench", "--lyapunov", "2", "--cells", "lstm,lstm"), "twice")


@pytest.mark.parametrize("value", ["-5", "0", "0.001", "1"])
def test_init_timescale_says_what_is_valid(value):
    """-5 was 'below 0', which made 0 look valid; 0 then failed as 'timescale must be a
    finite number > 1, got 0.0', without the option's name or the value as given."""
    assert_one_line_error(invoke("init", "rnn_tanh", "--timescale", value),
                          f"'--timescale': '{value}' is not above 1")


def test_init_refuses_a_size_that_cannot_fit():
    """init ran into torch's allocator and then advised '--steps or --batch', which it
    does not take; now the estimate is checked first and names its own options."""
    assert_one_line_error(invoke("init", "rnn_tanh", "--timescale", "10", "--hidden", HUGE),
                          "use a smaller --hidden or --inputs")


@pytest.mark.parametrize("args", [["bench", "--cells", "lstm,,gru"],
                                  ["bench", "--lyapunov", "2", "--cells", "lstm,,gru"],
                                  ["verify", "--cells", "lstm,"],
                                  ["sweep", "--weight-scales", "1,,2", "--out", "{tmp}"],
                                  ["train", "--tasks", "adding:3,", "--out", "{tmp}"],
                                  ["report", "--model", "{tmp}.pt", "--arch",
                                   "lstm:hidden=4,inputs=2,", "--out", "{tmp}"]])
def test_an_empty_entry_in_a_list_is_refused(args, tmp_path):
    """'lstm,,gru' and '1,,2' ran with the empty entry dropped: a typo taken silently."""
    result = invoke(*[a.format(tmp=tmp_path / "out") for a in args])
    assert_one_line_error(result)
    assert "empty entry" in result.stderr or "comma-separated" in result.stderr


# -- found by a probe of report, bench, init ---------------------------------------------------

def test_the_largest_seed_the_options_take_works(tmp_path):
    """Every command took seed + 1 for its inputs, past 2**63 - 1: refused after the
    work, naming a seed the user never gave."""
    top = str(2 ** 63 - 1)
    assert_ok(invoke("report", "--cells", "rnn_tanh", "--hidden", "3", "--inputs", "2",
                     "--steps", "4", "--batch", "2", "--seed", top, "--out", tmp_path / "r"))
    assert_ok(invoke("bench", "--cells", "rnn_tanh", "--hidden", "3", "--steps", "3",
                     "--batch", "2", "--repeats", "1", "--seed", top))


def test_init_never_counts_an_unmeasured_timescale_as_reached(monkeypatch):
    """inf (no decay) scored as e^10 = 22026 steps: a target near it 'converged' on inf."""
    import gradlab.meanfield.critical as critical
    monkeypatch.setattr(critical, "measure_timescale", lambda *a, **k: float("inf"))
    found = critical.critical_init("lstm", 22000, hidden=4, inputs=2, measurements=3,
                                   steps=30000)
    assert not found["converged"]


def test_init_write_torch_refuses_a_user_cell_named_like_a_builtin_before_work(tmp_path):
    (tmp_path / "fake.py").write_text(
        "import gradlab\n"
        "@gradlab.declare(state='h', params='W U b', source='mine')\n"
        "def lstm(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    result = invoke("init", f"{tmp_path / 'fake.py'}:lstm", "--timescale", "5", "--hidden",
                    "4", "--inputs", "2", "--write-torch", tmp_path / "m.pt")
    assert_one_line_error(result, "a cell of your own that shares a built-in's name")
    assert "measured" not in result.stderr and not (tmp_path / "m.pt").exists()


def test_what_a_function_file_prints_on_import_goes_to_stderr(tmp_path):
    """stdout starts with the verdict: a file that printed at import put its line first."""
    fns = tmp_path / "loud.py"
    fns.write_text("import torch\nprint('hello from import')\n\n"
                   "def good(params, state, x):\n"
                   "    h = state[0] if isinstance(state, (tuple, list)) else state\n"
                   "    a = torch.tanh(h @ params['W'].T + x @ params['U'].T + params['b'])\n"
                   "    return torch.diag_embed(1 - a ** 2) @ params['W']\n")
    result = invoke("check", f"{fns}:good", "--cell", "rnn_tanh")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("agrees:") and "hello from import" in result.stderr


def test_small_messages_read_as_written(tmp_path):
    """--block h printed a Python tuple, ('h',); an object answer is named by its type;
    a 5000-character cell name came back whole; two splits' shards read as one with a
    shard missing."""
    fns = tmp_path / "fns.py"
    fns.write_text("class Evil:\n    pass\n\n"
                   "def obj(params, state, x):\n    return Evil()\n")
    assert_one_line_error(invoke("check", f"{fns}:obj", "--cell", "rnn_tanh", "--block", "h"),
                          "block 'h' is not a block of rnn_tanh's Jacobian: it has one, "
                          "(h, h), the whole (leave block out)")
    assert_one_line_error(invoke("check", f"{fns}:obj", "--cell", "lstm", "--block", "h,x"),
                          "block 'h,x' is not (out part, in part): the out part one of "
                          "h, c, the in part one of h, c; e.g. h,c")
    assert_one_line_error(invoke("check", f"{fns}:obj", "--cell", "rnn_tanh"),
                          "returned Evil; expected an array of real numbers")
    result = invoke("derive", "x" * 5000)
    assert_one_line_error(result, "unknown cell 'xxx")
    assert len(result.stderr) < 700
    small = ["--cells", "rnn_tanh", "--gate-biases", "0", "--hidden", "2", "--steps", "3",
             "--batch", "1"]
    five = ["sweep", *small, "--weight-scales", "1,2,3,4,5"]
    assert_ok(invoke(*five, "--shard", "1/2", "--out", tmp_path / "a"))
    assert_ok(invoke(*five, "--shard", "2/5", "--out", tmp_path / "b"))
    assert_one_line_error(invoke("sweep", "merge", tmp_path / "a", tmp_path / "b", "--out",
                                 tmp_path / "m"), "the shards come from different splits: ")


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch):
    """click printed an empty line of its own before 'gradlab: interrupted'."""
    from gradlab import device
    monkeypatch.setattr(device, "resolve", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    result = invoke("report", "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert result.stderr == "gradlab: interrupted\n" and result.stdout == ""


def test_verify_labels_a_files_cell_by_its_spec_beside_the_builtin_it_shadows(tmp_path,
                                                                              monkeypatch):
    """Both were printed as 'rnn_tanh', so a reader could not tell which passed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        "import gradlab\n"
        "@gradlab.declare(state='h', params='W U b', source='mine')\n"
        "def rnn_tanh(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    result = invoke("verify", "--cells", "rnn_tanh,mine.py:rnn_tanh")
    assert_ok(result)
    headers = [line for line in result.stdout.splitlines() if "(cpu, float64)" in line]
    assert headers == ["rnn_tanh  (cpu, float64)", "mine.py:rnn_tanh  (cpu, float64)"]


def test_a_ctrl_c_after_the_work_is_done_is_ignored():
    """A SIGINT landing as a sweep finished (report written) printed 'KeyboardInterrupt'
    from the interpreter's shutdown, with exit status 0. Once `main` is done, SIGINT is
    ignored. (`main` ends its process, a success too, past exit hooks once code under
    test has run there (`exits.end`): in its own process, never in pytest's, which it
    ended with status 0 and no summary.)"""
    import os
    import subprocess
    import sys
    code = ("import signal, sys\nfrom gradlab.cli import main\nsys.argv = ['gradlab', 'cells']\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    print('ignored' if signal.getsignal(signal.SIGINT) is signal.SIG_IGN "
            "else 'not ignored', e.code, file=sys.stderr)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0 and done.stderr.strip() == "ignored 0", done.stderr
    assert "lstm" in done.stdout


@pytest.mark.parametrize("args, valid", [(["nosuch"], "Valid: bench, cells, check"),
                                         (["sweep", "nosuch"], "Valid: merge.")])
def test_an_unknown_command_lists_the_valid_ones(args, valid):
    """'No such command' named neither the commands there are nor where to look."""
    assert_one_line_error(invoke(*args), valid)
