"""Probe of the command line against hostile paths and file-system situations: each test
fails on the code before its fix."""

import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

import gradlab
from conftest import assert_one_line_error, invoke

ROOT = pathlib.Path(gradlab.__file__).resolve().parent.parent   # the gradlab under test


@pytest.mark.parametrize("dirs", [[""], [" "], ["part", ""]])
def test_merge_refuses_an_empty_dir_as_empty(tmp_path, monkeypatch, dirs):
    """`sweep merge ''` was refused as "--out 'merged' is inside '', one of the parts
    being merged": the empty DIR read as the current folder, which holds every relative
    --out."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "part.json").write_text("{}")
    result = invoke("sweep", "merge", *dirs, "--out", "merged")
    assert_one_line_error(result, f"shard directory {dirs[-1]!r} is empty")
    assert "is inside" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part"]


def test_init_reads_a_cell_with_spaces_around_as_derive_and_check_do():
    """`gradlab init ' lstm'` was "unknown cell ' lstm'" where `derive ' lstm'` and
    `check --cell ' lstm'` read lstm (`options.strip_cell`); the refusal that follows
    (a timescale past what init measures) shows the cell was read."""
    result = invoke("init", " lstm ", "--timescale", "5000000")
    assert_one_line_error(result, "--timescale 5e+06 is longer than gradlab init can measure")


HANGUP = '''
import os, signal, sys
signal.signal(signal.SIGHUP, signal.SIG_DFL)   # (a run under nohup inherits it ignored)
from gradlab import outputs
out = sys.argv[1]
outputs.write_files(out, {name: b"old" for name in ("data.json", "index.html", "report.md")},
                    force=True)
real, calls = outputs._atomic_bytes, []
def hangup(target, data):
    calls.append(target)
    if len(calls) == 3:                      # the manifest, data.json, then this
        os.kill(os.getpid(), signal.SIGHUP)
    real(target, data)
outputs._atomic_bytes = hangup
outputs.write_files(out, {name: b"new" for name in ("data.json", "index.html", "report.md")},
                    force=True)
'''


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_hangup_while_writing_file_by_file_lands_after_the_last_file(tmp_path):
    """The terminal or ssh session closing (SIGHUP) while a report is replaced file by file
    (a user's file beside it) killed gradlab between two files: data.json and index.html
    of the new report beside report.md of the old. Held back as Ctrl-C and kill are, it
    lands once the report is whole."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "mine.txt").write_text("mine\n")
    done = subprocess.run([sys.executable, "-c", HANGUP, str(out)], timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert done.returncode == -signal.SIGHUP, done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix != ".txt"
            and not p.name.startswith(".")} == {"data.json": b"new", "index.html": b"new",
                                                 "report.md": b"new"}
    assert (out / "mine.txt").read_text() == "mine\n"
    assert "pending" not in (out / ".gradlab-manifest.json").read_text()


def test_a_current_folder_since_removed_is_named_not_a_bare_no_such_file(tmp_path,
                                                                         monkeypatch):
    """Run from a folder removed while the shell was in it, `derive lstm --out /abs/path`
    ended in "gradlab: error: No such file or directory", naming nothing (and commands that
    load torch in Intel MKL's "FATAL ERROR: Cannot load libtorch_cpu.so"); --help still
    answers there."""
    def gone():
        raise FileNotFoundError(2, "No such file or directory")
    monkeypatch.setattr(os, "getcwd", gone)
    result = invoke("derive", "lstm", "--out", tmp_path / "docs")
    assert_one_line_error(result, "the current folder no longer exists")
    assert list(tmp_path.iterdir()) == []
    for args in (["derive", "--help"], ["sweep", "merge", "--help"]):
        assert invoke(*args).exit_code == 0


def test_two_runs_writing_one_new_file_leave_one_whole_and_refuse_the_other(tmp_path,
                                                                            monkeypatch):
    """Two `init --write-torch same.pt` at once: the second one's sweep of a killed run's
    leftovers removed the first one's staged file before it was linked into place, and the
    first failed "No such file or directory" (the folder is there). Under the folder's
    lock the first writes its file whole, and the second is told it exists."""
    from gradlab import outputs
    target, second, real = tmp_path / "same.pt", {}, outputs._staged

    def run_second():
        try:
            outputs.write_new(target, b"second")
        except OSError as err:
            second["error"] = err

    def staged(path, data):
        tmp = real(path, data)
        if data == b"first":                     # the second run starts meanwhile
            thread = threading.Thread(target=run_second)
            thread.start()
            thread.join(0.5)                     # (with the lock it waits for the first)
            second["thread"] = thread
        return tmp

    monkeypatch.setattr(outputs, "_staged", staged)
    outputs.write_new(target, b"first")
    second["thread"].join(10)
    assert target.read_bytes() == b"first"
    assert isinstance(second.get("error"), FileExistsError), second
    assert [p.name for p in tmp_path.iterdir()] == ["same.pt"]
