"""Session 37: edges found by hand."""

import pytest

import gradlab
from gradlab.errors import GradlabError

from conftest import run_gradlab


@pytest.mark.parametrize("name", ["mine.py", "./cells/mine.py", " mine.py "])
def test_a_cell_file_named_without_its_cell_says_how_to_name_the_cell(name):
    with pytest.raises(GradlabError) as info:
        gradlab.cell(name)
    message = str(info.value)
    assert "\n" not in message
    assert "names a file, not a cell" in message
    assert f"{name.strip()}:NAME" in message


def test_the_cli_says_the_same_for_a_cell_file_without_its_cell(tmp_path):
    (tmp_path / "mine.py").write_text("import gradlab\n")
    result = run_gradlab(tmp_path, "derive", "mine.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "mine.py:NAME" in result.stderr and len(result.stderr.strip().splitlines()) == 1
