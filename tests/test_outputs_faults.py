"""Faults while gradlab.outputs writes a folder it owns: a full disk is one line and leaves
nothing, a killed run's leftovers are removed and do not refuse the rerun, a kill at any
point of writing leaves a whole report, concurrent runs take turns (and the CLI notes a
report written meanwhile), and a signal while writing file by file lands after the last
file."""

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from gradlab import outputs
from gradlab.errors import GradlabError
from conftest import tree

REPORT = {"index.html": b"<html>1</html>", "report.md": b"# one\n", "data.json": b"{}\n",
          "figures/decay.png": b"png1", "figures/decay.svg": b"svg1"}
SECOND = {"index.html": b"<html>2</html>", "report.md": b"# two\n", "data.json": b"{\"a\": 2}\n",
          "figures/loss.png": b"png2"}





def read_tree(out, files):
    return all((out / rel).read_bytes() == data for rel, data in files.items())


# --- faults while writing ---------------------------------------------------------------------

def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    before = tree(tmp_path)
    real = pathlib.Path.write_bytes

    def full(self, data):
        if "decay" in self.name or "loss" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(GradlabError, match="No space left"):
        outputs.write_files(out, SECOND)
    assert tree(tmp_path) == before


def test_a_leftover_of_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    stale = tmp_path / ".r.gradlab-abc1_345"      # mkdtemp's names: 8 of [a-z0-9_]
    stale.mkdir()
    (stale / outputs.MARK).touch()
    (stale / "index.html").write_text("half")
    empty = tmp_path / ".r.gradlab-empty_00"
    empty.mkdir()
    user = tmp_path / ".r.gradlab-mine"          # not gradlab's: no mark, not empty
    user.mkdir()
    (user / "x").write_text("x")
    outputs.write_files(out, SECOND)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.gradlab-mine", "r"]


def test_a_killed_runs_temporary_file_does_not_refuse_the_rerun(tmp_path):
    """A kill while writing file by file (into a folder the user made) left
    ..gradlab-manifest.json.gradlab-XXXXXXXX.tmp; the rerun's early check counted it as
    the user's and refused without --force, before the clean-up that removes it."""
    out = tmp_path / "mine"
    out.mkdir()                                   # the user's: written file by file
    outputs.write_files(out, REPORT)
    left = [out / "..gradlab-manifest.json.gradlab-pbbe_uhw.tmp",
            out / ".report.md.gradlab-abcd1234.tmp",
            out / "figures" / ".decay.png.gradlab-x_1y2z3w.tmp"]
    for path in left:
        path.write_bytes(b"half")
    assert outputs.foreign(out) == []
    outputs.check_target(out)                     # no --force needed
    outputs.write_files(out, SECOND)
    assert read_tree(out, SECOND) and not any(path.exists() for path in left)
    long = "a" * 230 + ".md"                  # its temporary name carries 200 bytes of it
    outputs.write_files(out, {long: b"1"})
    (out / f".{long[:200]}.gradlab-abcd1234.tmp").write_bytes(b"half")
    assert outputs.foreign(out) == []
    outputs.write_files(out, {long: b"2"})
    assert sorted(p.name for p in out.iterdir()) == [".gradlab-manifest.json", long]
    theirs = out / ".notes.txt.gradlab-abcd1234.tmp"     # of no file gradlab lists: kept
    theirs.write_bytes(b"user")
    assert outputs.foreign(out) == [theirs.name]
    with pytest.raises(GradlabError, match="holds 1 file"):
        outputs.check_target(out)


KILLER = textwrap.dedent("""
    import os, pathlib, shutil, signal, sys
    from gradlab import outputs
    out, kill_at, which = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    files = {"index.html": which.encode(), "report.md": which.encode(),
             "data.json": which.encode(), "figures/a.png": which.encode()}
    count = [0]
    def counting(fn):
        def wrapped(*a, **k):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return wrapped
    for mod, name in ((os, "rename"), (os, "replace"), (os, "unlink"), (os, "mkdir"),
                      (os, "chmod"), (shutil, "rmtree"), (outputs, "_exchange")):
        setattr(mod, name, counting(getattr(mod, name)))
    pathlib.Path.write_bytes = counting(pathlib.Path.write_bytes)
    pathlib.Path.touch = counting(pathlib.Path.touch)
    outputs.write_files(out, files)
    print("done", count[0])
""")


def test_a_kill_at_any_point_of_writing_leaves_a_whole_report(tmp_path):
    """SIGKILL at each filesystem call of the write phase in turn: the path always holds
    the old or the new report, whole, and the next run leaves no temporary behind."""
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "box" / "r"
    names = ("index.html", "report.md", "data.json", "figures/a.png")
    subprocess.run([sys.executable, str(script), str(out), "0", "old"], check=True,
                   timeout=600)
    kill_at = 1
    while True:
        run = subprocess.run([sys.executable, str(script), str(out), str(kill_at), "new"],
                             capture_output=True, text=True, timeout=600)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr
        contents = {(out / n).read_text() for n in names}
        assert contents in ({"old"}, {"new"}), (kill_at, contents)
        subprocess.run([sys.executable, str(script), str(out), "0", "old"], check=True,
                       timeout=600)
        assert sorted(p.name for p in out.parent.iterdir()) == ["r"], kill_at
        assert {(out / n).read_text() for n in names} == {"old"}
        kill_at += 1
    assert kill_at > 5                      # the write phase was really interrupted
    assert {(out / n).read_text() for n in names} == {"new"}


CONCURRENT = textwrap.dedent("""
    import sys
    from gradlab import outputs
    out, tag = sys.argv[1], sys.argv[2]
    for k in range(40):
        body = f"{tag}{k}".encode()
        outputs.write_files(out, {"index.html": body, "report.md": body, "data.json": body,
                                  "figures/a.png": body * 1000})
    print("ok")
""")


def test_concurrent_runs_take_turns(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(CONCURRENT)
    out = tmp_path / "r"
    procs = [subprocess.Popen([sys.executable, str(script), str(out), tag],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in "ab"]
    seen = 0
    try:
        while any(p.poll() is None for p in procs):   # a reader never sees a mixed report
            try:
                fd = os.open(out, os.O_RDONLY)        # one version of the folder, pinned
            except FileNotFoundError:
                assert seen == 0              # missing only before the first write lands
                continue
            try:
                texts = set()
                for name in ("index.html", "report.md", "data.json"):
                    f = os.open(name, os.O_RDONLY, dir_fd=fd)
                    texts.add(os.read(f, 100))
                    os.close(f)
            except FileNotFoundError:         # the version pinned was replaced and is
                assert out.is_dir()           # being removed; the path holds the next
                continue
            finally:
                os.close(fd)
            seen += 1
            assert len(texts) == 1, texts
    finally:
        for p in procs:
            if p.poll() is None:
                p.wait(timeout=600)
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in stderr, stderr
    assert {(out / n).read_text() for n in ("index.html", "report.md")} in ({"a39"}, {"b39"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "writer.py"]


def test_the_cli_notes_a_report_written_meanwhile(tmp_path):
    out = tmp_path / "r"
    seen = []
    before = outputs.snapshot(out)
    outputs.write_files(out, REPORT)
    outputs.write_files(out, SECOND, expect=before, notice=seen.append)
    assert seen and "another run" in seen[0]


def test_a_signal_while_writing_file_by_file_lands_after_the_last_file(tmp_path, monkeypatch):
    """With a user's file beside the report, files are replaced one by one; a Ctrl-C
    between two of them left half the old report and half the new one."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "mine.txt").write_text("mine\n")
    outputs.write_files(out, REPORT, force=True)
    real, calls = outputs._atomic_bytes, []

    def interrupted(target, data):
        calls.append(target)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)         # Ctrl-C mid-write
        real(target, data)
    monkeypatch.setattr(outputs, "_atomic_bytes", interrupted)
    # Python's own Ctrl-C handler, whatever the process inherited: a shell starts a
    # background job with SIGINT ignored, and then no Ctrl-C reaches gradlab at all
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            outputs.write_files(out, SECOND, force=True)
    finally:
        signal.signal(signal.SIGINT, before)
    assert read_tree(out, SECOND) and len(calls) > 3
    assert not (out / "figures" / "decay.png").exists()      # the old report is gone whole


def test_a_failed_write_takes_away_the_folders_it_made_above_its_target(tmp_path, monkeypatch):
    """--out tiny/a/b/r on a full disk: refused in one line, but the empty tiny/a/b it had
    made stayed. Folders that were there before stay."""
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(outputs, "_whole", full)
    monkeypatch.setattr(outputs, "_each", full)
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "a" / "b" / "r"
    with pytest.raises(GradlabError, match=r"cannot write .*: No space left on device$"):
        outputs.write_files(out, {"report.md": b"x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


def test_only_folders_this_write_made_are_noted_for_removal(tmp_path, monkeypatch):
    """The folders to take away after a failed write were those missing before it began,
    so one another run made meanwhile was counted as this run's: now only those whose
    os.mkdir this call made succeed."""
    from gradlab import paths
    real = os.mkdir

    def racing(folder, *args):
        if pathlib.Path(folder) == tmp_path / "a":      # another run makes it first
            real(folder, *args)
        return real(folder, *args)
    monkeypatch.setattr(paths.os, "mkdir", racing)
    made = []
    paths.make_parents(tmp_path / "a" / "b" / "r", made)
    assert made == [tmp_path / "a" / "b"] and (tmp_path / "a" / "b").is_dir()


def test_a_folder_inside_out_that_cannot_be_read_is_one_line_naming_out(tmp_path, monkeypatch):
    """A subfolder of --out at mode 000 (as a user without root sees it) gave the bare
    "Permission denied: '.../sec'", which named neither --out nor what to do."""
    out = tmp_path / "u1"
    (out / "sec").mkdir(parents=True)
    real = os.scandir

    def scandir(path="."):
        if pathlib.Path(path).name == "sec":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(GradlabError) as err:
        outputs.check_target(out)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"--out {str(out)!r}: cannot read ")
    assert "sec" in text and "permission denied" in text and "choose another folder" in text
