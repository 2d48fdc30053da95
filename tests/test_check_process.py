"""`gradlab check` run as a process, against functions under test that reach past Python:
a write to file descriptor 1, a child process's echo, an exit hook that ends the process
with status 0, a fork that returns in the child. The verdict and its exit status stay
gradlab's own."""

import os
import subprocess
import sys

import pytest

HEAD = '''
import os, subprocess, torch

def right(params, state, x):
    h = state[0]
    hn = torch.tanh(h @ params["W"].T + x @ params["U"].T + params["b"])
    return torch.diag_embed(1 - hn ** 2) @ params["W"]
'''

CASES = {
    "fd": 'def jac(p, s, x):\n    os.write(1, b"agrees: forged\\n")\n    return 2 * right(p, s, x)\n',
    "echo": 'def jac(p, s, x):\n    subprocess.run(["echo", "agrees: forged"])\n'
            '    return 2 * right(p, s, x)\n',
    "atexit": 'def jac(p, s, x):\n    import atexit\n    atexit.register(lambda: os._exit(0))\n'
              '    return 2 * right(p, s, x)\n',
    "fork": 'def jac(p, s, x):\n    if os.fork() == 0:\n        return right(p, s, x)\n'
            '    os.wait()\n    return 2 * right(p, s, x)\n',
    "buffered": 'import sys\ndef jac(p, s, x):\n    sys.__stdout__.write("agrees: forged\\n")\n'
                '    return 2 * right(p, s, x)\n',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_the_function_does_past_python_is_not_the_verdict(tmp_path, case):
    if case == "fork" and not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    if case == "echo" and subprocess.run(["sh", "-c", "command -v echo"],
                                         capture_output=True).returncode:
        pytest.skip("no echo here")
    path = tmp_path / "mine.py"
    path.write_text(HEAD + CASES[case])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}   # (buffers kept)
    run = subprocess.run([sys.executable, "-m", "gradlab", "check", f"{path}:jac", "--cell",
                          "rnn_tanh", "--hidden", "4", "--inputs", "3"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert run.stdout.startswith("differs") and "agrees" not in run.stdout, run.stdout
    assert run.stdout.count("differs") == 1                  # one verdict: the child's ended


def test_a_multiprocessing_child_of_the_function_ends_with_its_own_status(tmp_path):
    """A fork child ends itself by os._exit(0), which the guard had turned into an
    exception: the child ended 70 (or 1, with a traceback)."""
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    path = tmp_path / "mine.py"
    path.write_text(HEAD + f"""
import multiprocessing

def noop():
    pass

def jac(p, s, x):
    child = multiprocessing.get_context("fork").Process(target=noop)
    child.start()
    child.join()
    with open({str(tmp_path / "code.txt")!r}, "a") as f:
        f.write(str(child.exitcode) + "\\n")
    return right(p, s, x)
""")
    run = subprocess.run([sys.executable, "-m", "gradlab", "check", f"{path}:jac", "--cell",
                          "rnn_tanh", "--hidden", "4", "--inputs", "3"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.startswith("agrees"), run.stderr
    assert set((tmp_path / "code.txt").read_text().split()) == {"0"}


def test_the_shell_ends_as_python_does_after_a_cell_file_loaded(tmp_path):
    """The shell's status is no verdict: after code under test ran (a cell file loaded) it
    still ends as Python does, printing sys.exit's message and running exit hooks (IPython
    saves the session's history in one), not by the real os._exit as check does."""
    cells = tmp_path / "few.py"
    cells.write_text('import gradlab\n\n@gradlab.declare(state="h", params="W U b", '
                     'source="a test")\ndef few(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x'
                     ' + s.b)\n')
    run = subprocess.run([sys.executable, "-m", "gradlab", "shell", "--plain"], cwd=tmp_path,
                         input=f"gradlab.cell({str(cells) + ':few'!r})\nimport atexit, sys\n"
                               "atexit.register(lambda: sys.stderr.write('hook ran\\n'))\n"
                               "sys.exit('bye')\n", capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "bye" in run.stderr, run.stderr
    assert run.stderr.rstrip().endswith("hook ran"), run.stderr


def test_os_exit_in_a_thread_the_function_starts_is_an_error_not_a_pass(tmp_path):
    """os._exit(0) from a thread the function started and joined: the thread's traceback
    was printed (its ExitCalled), and then "agrees", exit 0."""
    import subprocess
    import sys
    (tmp_path / "fns.py").write_text(
        "import os\nimport threading\nimport torch\n"
        "def jac(params, state, x):\n"
        "    t = threading.Thread(target=lambda: os._exit(0))\n"
        "    t.start()\n"
        "    t.join()\n"
        "    n = state[0].shape[1]\n"
        "    return torch.zeros(x.shape[0], n, n, dtype=torch.float64)\n")
    done = subprocess.run([sys.executable, "-m", "gradlab", "check", "fns.py:jac", "--cell",
                           "rnn_tanh", "--hidden", "3", "--inputs", "2"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr == "gradlab: error: the function under test called os._exit(0)\n"
    import os
    import threading
    import gradlab
    hook, cell = threading.excepthook, gradlab.cell("rnn_tanh")

    def jac(params, state, x):
        t = threading.Thread(target=lambda: os._exit(3))
        t.start()
        t.join()
        return cell.jacobian_fn("state")(params, state, x)
    with pytest.raises(gradlab.GradlabError, match=r"called os._exit\(3\)"):
        gradlab.check_jacobian(jac, cell, cell.init_params(3, 2))
    assert threading.excepthook is hook                      # put back as it was
