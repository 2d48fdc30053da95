"""What a hostile probe of the CLI found: `sweep merge` dropping sweep options given before
`merge` (and recording the wrong command), a cell file named twice in two spellings, one
shard directory merged twice, and small wording gaps (an empty --out, a learning rate of
0, an rtol that rounds to 0). Each is now a one-line refusal, exit 2."""

import json

import pytest

from conftest import JANET_SOURCE, assert_ok, assert_one_line_error, invoke

GRID = ["--cells", "rnn_tanh", "--weight-scales", "0.5,1", "--gate-biases", "0", "--hidden",
        "3", "--inputs", "2", "--steps", "8", "--max-steps", "8", "--batch", "2"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    dirs = [base / f"p{i}" for i in (1, 2)]
    for i, d in enumerate(dirs, 1):
        assert_ok(invoke("sweep", *GRID, "--shard", f"{i}/2", "--out", d))
    return dirs


@pytest.mark.parametrize("early,named", [
    (["--shard", "1/2", "--force"], "--shard, --force given before 'merge'"),
    (["--cells", "rnn_tanh"], "--cells given before 'merge'"),
    (["--out", "elsewhere"], "--out given before 'merge'")])
def test_sweep_options_before_merge_are_refused_not_dropped(parts, tmp_path, early, named):
    result = invoke("sweep", *early, "merge", *parts, "--out", tmp_path / "m")
    assert_one_line_error(result, named)
    assert "takes its own after 'merge'" in result.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "elsewhere").exists()


def test_merge_records_the_command_it_ran(parts, tmp_path, monkeypatch):
    import sys
    argv = ["gradlab", "sweep", "merge", *map(str, parts), "--out", str(tmp_path / "m")]
    monkeypatch.setattr(sys, "argv", argv)
    assert_ok(invoke(*argv[1:]))
    shown = json.loads((tmp_path / "m" / "data.json").read_text())
    assert "sweep merge" in json.dumps(shown) or "sweep merge" in (
        tmp_path / "m" / "report.md").read_text()
    assert f"--out {tmp_path / 'm'}" in (tmp_path / "m" / "report.md").read_text()


def test_one_shard_directory_given_twice_is_named(parts, tmp_path):
    assert_one_line_error(invoke("sweep", "merge", parts[0], parts[0], "--out", tmp_path / "m"),
                          f"{str(parts[0])!r} is given twice: give each shard directory once")
    other = f"{parts[0]}/./"
    assert_one_line_error(invoke("sweep", "merge", parts[0], other, parts[1], "--out",
                                 tmp_path / "m"), "are the same directory")


def test_a_shard_that_is_missing_or_a_file_is_named_as_such(tmp_path):
    """Both said "holds no part.json", of a path that is not there or not a folder."""
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(invoke("sweep", "merge", str(tmp_path / "nowhere")),
                          "nowhere': no such folder: not a sweep shard directory")
    assert_one_line_error(invoke("sweep", "merge", str(tmp_path / "afile")),
                          "afile': a file, not a folder: not a sweep shard directory")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("sweep", "merge", str(tmp_path / "empty")),
                          "empty': holds no part.json: not a sweep shard directory")


def test_an_empty_out_for_merge_is_said_to_be_empty(parts):
    assert_one_line_error(invoke("sweep", "merge", *parts, "--out", ""),
                          "--out is empty; give a folder path")


def test_a_cell_file_named_twice_in_two_spellings_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cf").mkdir()
    (tmp_path / "cf" / "janet.py").write_text(JANET_SOURCE)
    result = invoke("report", "--cells", "rnn_tanh,cf/janet.py:janet,cf/./janet.py:janet",
                    "--hidden", "2", "--steps", "4", "--batch", "1", "--inputs", "1",
                    "--out", tmp_path / "r")
    assert_one_line_error(result, "names a cell twice (cf/./janet.py:janet)")
    assert not (tmp_path / "r").exists()


def test_a_learning_rate_of_zero_and_an_rtol_that_rounds_to_zero_are_refused(tmp_path):
    assert_one_line_error(invoke("train", "--lr", "0", "--out", tmp_path / "t"),
                          "'--lr': '0' is not above 0")
    assert_one_line_error(invoke("check", "x.py:f", "--cell", "gru", "--rtol", "1e-400"),
                          "'1e-400' is not above 0 (too small for a float: it rounds to 0)")


def test_a_merged_report_says_how_its_parts_were_made(tmp_path, monkeypatch):
    """A merged phase diagram recorded only 'gradlab sweep merge DIRS': its own text could
    not say how to make it again. The parts now keep their sweep command."""
    import sys
    dirs = [tmp_path / f"p{i}" for i in (1, 2)]
    for i, d in enumerate(dirs, 1):
        argv = ["gradlab", "sweep", *GRID, "--shard", f"{i}/2", "--out", str(d)]
        monkeypatch.setattr(sys, "argv", argv)
        assert_ok(invoke(*argv[1:]))
    argv = ["gradlab", "sweep", "merge", *map(str, dirs), "--out", str(tmp_path / "m")]
    monkeypatch.setattr(sys, "argv", argv)
    assert_ok(invoke(*argv[1:]))
    text = (tmp_path / "m" / "report.md").read_text()
    assert "(of parts made by: gradlab sweep --cells rnn_tanh" in text
    assert f"--shard 2/2 --out {dirs[1]})" in text


def test_parts_of_a_cell_file_edited_between_shards_are_not_merged(tmp_path):
    """Each shard imports the cell file itself: a file edited between two shards gave two
    different cells, merged as one. Parts now carry the equations' fingerprint."""
    cell = tmp_path / "c.py"
    cell.write_text(JANET_SOURCE)
    grid = ["--cells", f"{cell}:janet", *GRID[2:]]
    assert_ok(invoke("sweep", *grid, "--shard", "1/2", "--out", tmp_path / "p1"))
    import sys                      # the next shard as another process would: the file
    for name in [m for m in sys.modules if m.startswith("gradlab_user_")]:   # read anew
        del sys.modules[name]
    cell.write_text(JANET_SOURCE.replace("(1 - f) * candidate", "(1 - f) * 0.5 * candidate"))
    assert JANET_SOURCE != cell.read_text()
    assert_ok(invoke("sweep", *grid, "--shard", "2/2", "--out", tmp_path / "p2"))
    assert_one_line_error(invoke("sweep", "merge", tmp_path / "p1", tmp_path / "p2", "--out",
                                 tmp_path / "m"),
                          f"the shards measured different equations for {cell}:janet")
