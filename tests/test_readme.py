"""The README's Python examples run as pasted (its shell example: tests/test_language.py)."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block):
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.slow
def test_first_command_runs_the_report(tmp_path):
    """The `gradlab ...` part of the README's first command, exactly as written (the default
    report, ~30 s), in a fresh interpreter in an empty folder: it writes the report there."""
    first = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[1]
    command = first.strip().split("&&")[-1]
    args = shlex.split(command)
    assert args[:2] == ["gradlab", "report"], command
    done = subprocess.run([sys.executable, "-c", "from gradlab.cli import main; main()",
                           *args[1:]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)                                    # a hang guard only
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "reports" / "gradient-decay"
    for name in ("index.html", "report.md", "data.json", "figures/decay.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / "data.json").read_text())["cells"], "no cell measured"
