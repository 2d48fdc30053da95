"""Session 35's hostile-input probe of the command line: each test a defect it found."""


import pytest
from conftest import run_gradlab

CELL = ('import gradlab\n\n@gradlab.declare(state="h", params="W U b", source="a test")\n'
        'def few(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n')


_gradlab = run_gradlab


@pytest.mark.parametrize("hook", ["os._exit(3)", "1 / 0"])
def test_a_cell_files_exit_hook_cannot_change_a_success(tmp_path, hook):
    """A run that succeeded returned from click's main without sys.exit, so `exits.end`
    never ran and the cell file's exit hooks did: atexit os._exit(3) made a derive (or a
    passing verify) exit 3, and a hook that raised printed a traceback after 'wrote'."""
    (tmp_path / "few.py").write_text(CELL + f"import atexit, os\natexit.register(lambda: {hook})\n")
    run = _gradlab(tmp_path, "derive", "few.py:few")
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and run.stdout.strip(), run.stderr


def test_a_thread_a_cell_file_left_running_does_not_hold_a_finished_run(tmp_path):
    """A non-daemon thread the cell file started kept the finished command alive."""
    (tmp_path / "few.py").write_text(
        CELL + "import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\n")
    run = _gradlab(tmp_path, "derive", "few.py:few", timeout=90)
    assert run.returncode == 0 and run.stdout.strip(), run.stderr


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("earlier", [False, True])
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5])
def test_a_write_file_by_file_that_fails_leaves_the_folder_as_it_was(tmp_path, monkeypatch,
                                                                     earlier, fail_at):
    """`report --force` into a folder of the user's on a full disk: the files written before
    the disk filled stayed (figures/ and two of its figures), under a manifest naming all
    the report's files, most of them missing; the earlier report, if any, was half replaced.
    A failed write is now undone."""
    from gradlab import outputs
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    if earlier:
        outputs.write_files(out, {"report.md": b"old", "data.json": b"old",
                                  "figures/a.png": b"old", "stale.md": b"old"}, force=True)
    before = _tree(out)
    real, calls = outputs._atomic_bytes, [0]

    def full(target, data):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OSError(28, "No space left on device")
        return real(target, data)

    monkeypatch.setattr(outputs, "_atomic_bytes", full)
    with pytest.raises(outputs.GradlabError, match="No space left on device"):
        outputs.write_files(out, {"report.md": b"new", "data.json": b"new",
                                  "figures/b.png": b"new", "figures/c/d.svg": b"new"},
                            force=True)
    assert _tree(out) == before
