"""Probe of the command line against hostile paths and file-system situations: each test
fails on the code before its fix."""

import pytest

from conftest import assert_one_line_error, invoke


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
