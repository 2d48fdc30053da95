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


def test_init_reads_a_cell_with_spaces_around_as_derive_and_check_do():
    """`gradlab init ' lstm'` was "unknown cell ' lstm'" where `derive ' lstm'` and
    `check --cell ' lstm'` read lstm (`options.strip_cell`); the refusal that follows
    (a timescale past what init measures) shows the cell was read."""
    result = invoke("init", " lstm ", "--timescale", "5000000")
    assert_one_line_error(result, "--timescale 5e+06 is longer than gradlab init can measure")
