"""The README's Python examples run as pasted (its shell example: tests/test_language.py)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block):
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def test_first_command_runs_the_report():
    first = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[1]
    assert first.strip().endswith("gradlab report")
