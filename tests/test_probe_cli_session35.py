"""Session 35's hostile-input probe of the command line: each test a defect it found."""

import os
import subprocess
import sys

import pytest

CELL = ('import gradlab\n\n@gradlab.declare(state="h", params="W U b", source="a test")\n'
        'def few(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n')


def _gradlab(tmp_path, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gradlab", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=env)


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
