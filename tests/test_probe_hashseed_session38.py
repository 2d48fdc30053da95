"""Session 38 probe: gradlab's output for a given seed must not depend on the process's
str-hash salt (PYTHONHASHSEED), which Python draws anew for every process."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cwd, hashseed, *args):
    """`python -m gradlab ARGS` from `cwd`, this checkout first on the path, under the
    given PYTHONHASHSEED; the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed),
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gradlab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


CELL_FILE = '''\
import gradlab
from gradlab import tanh


@gradlab.declare(state="h", params="W U b", source=f"declared in module {__name__}")
def named(s):
    return tanh(s.W @ s.h + s.U @ s.x + s.b)
'''


def test_a_cell_files_module_name_is_the_same_in_every_process(tmp_path):
    """A cell file runs as a module whose __name__ its code sees (logging.getLogger(
    __name__), a source string, a class's repr): that name came from hash(path), salted
    per process, so `gradlab derive file.py:NAME` printed another source line each run."""
    path = tmp_path / "named_cell.py"
    path.write_text(CELL_FILE)
    outs = []
    for hashseed in (1, 2, 3):
        result = run(tmp_path, hashseed, "derive", f"{path}:named")
        assert result.returncode == 0, result.stderr
        outs.append(result.stdout)
    assert "declared in module gradlab_user_" in outs[0]
    assert outs[1] == outs[0] and outs[2] == outs[0]
