"""Probes of the public contract: every user-facing error names the bad value and the
valid choices."""

from conftest import assert_one_line_error, invoke


def test_check_names_the_functions_a_file_holds(tmp_path):
    """`gradlab check FILE.py:NAME` with no function NAME there said only 'has no function
    'c'', where a missing cell in a file lists the cells there: now the file's own public
    functions are listed (not those it imports, not _private ones)."""
    f = tmp_path / "mine.py"
    f.write_text("from math import sqrt\n\ndef first(p, s, x):\n    pass\n\n"
                 "def second(p, s, x):\n    pass\n\ndef _helper():\n    pass\n")
    result = invoke("check", f"{f}:thrid", "--cell", "gru")
    assert_one_line_error(result, "has no function 'thrid'; functions there: first, second")
    assert "sqrt" not in result.stderr and "_helper" not in result.stderr
    (tmp_path / "empty.py").write_text("X = 1\n")
    assert_one_line_error(invoke("check", f"{tmp_path / 'empty.py'}:f", "--cell", "gru"),
                          "functions there: none")
