"""Probe of the command line's files: edges found by a hostile but fair user, each test
failing on the code before its fix."""

import errno
import tempfile
from types import SimpleNamespace

from gradlab import outputs
from gradlab.ownership import read_manifest

from conftest import assert_one_line_error, invoke, tree

FIRST = {"index.html": b"<html>1</html>", "data.json": b"{}\n"}
SECOND = {"index.html": b"<html>2</html>", "data.json": b"{\"a\": 2}\n"}


def test_own_folder_under_a_read_only_mount_is_written_file_by_file(tmp_path, monkeypatch):
    """A folder gradlab made, writable itself, below a read-only mount (a container's
    read-only root with the output folder a writable volume): its parent takes no
    temporary folder (EROFS, not EACCES), and the write goes file by file, as it does
    under a parent that is merely not writable; it ended in "Read-only file system"."""
    out = tmp_path / "report"
    outputs.write_files(out, FIRST)
    real = tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and str(dir) == str(tmp_path):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", read_only)
    outputs.write_files(out, SECOND)
    assert {rel: (out / rel).read_bytes() for rel in SECOND} == SECOND
    assert set(read_manifest(out)) == set(SECOND)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_merge_refuses_a_part_named_with_a_tilde(tmp_path, monkeypatch):
    """`sweep merge ~/p1 ~/p2 --out=~/p1` (no shell expands the ~ after '='): --out is
    written with ~ expanded, so it is the part ~/p1, and is refused as one; compared
    unexpanded it passed, and with --force the report replaced the part."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("p1", "p2"):
        (tmp_path / name).mkdir()
    before = tree(tmp_path)
    result = invoke("sweep", "merge", tmp_path / "p1", tmp_path / "p2", "--out=~/p1",
                    "--force")
    assert_one_line_error(result, "one of the parts being merged")
    assert tree(tmp_path) == before


def test_derive_refuses_a_sweep_part_folder_as_it_refuses_a_report(tmp_path):
    """Documents written beside a sweep part (`sweep --shard I/N --out DIR`) were removed,
    without a word, by that shard's next run, which replaces the folder; derive refuses a
    report's folder for that reason, and now a part's too (--force writes them anyway)."""
    part = tmp_path / "1-of-2"
    outputs.write_files(part, {"part.json": b"{}\n"})
    before = tree(tmp_path)
    assert_one_line_error(invoke("derive", "lstm", "--out", part), "a sweep part")
    assert tree(tmp_path) == before


def test_a_manifest_nested_too_deep_to_parse_is_the_users_file(tmp_path):
    """A file named .gradlab-manifest.json that json cannot parse for its depth (forged,
    or a user's own) is not gradlab's, like any other that is not its manifest: it raised
    RecursionError, an "internal error", at that folder and at every --out below it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".gradlab-manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    before = tree(tmp_path)
    assert_one_line_error(invoke("derive", "lstm", "--out", mine), "gradlab did not write")
    assert tree(tmp_path) == before
    result = invoke("derive", "lstm", "--out", mine / "docs")
    assert result.exit_code == 0, result.output
    assert (mine / "docs" / "lstm.md").is_file()


def test_a_folder_holding_a_deep_tree_is_looked_through(tmp_path):
    """gradlab reads what a folder holds before writing there; a user's tree 1,100
    folders deep (a path of 2,200 bytes, well within the system's) raised RecursionError
    there, an "internal error", where the folder is to be refused as the user's."""
    mine = tmp_path / "mine"
    deep = mine
    for _ in range(1100):
        deep = deep / "a"
        deep.mkdir(parents=deep.parent == mine)
    (deep / "notes.txt").write_text("mine\n")
    try:
        assert_one_line_error(invoke("derive", "lstm", "--out", mine), "gradlab did not write")
        result = invoke("derive", "lstm", "--out", mine, "--force")
        assert result.exit_code == 0, result.output
        assert (deep / "notes.txt").read_text() == "mine\n" and (mine / "lstm.md").is_file()
    finally:        # from the bottom up: shutil.rmtree (pytest's cleanup) recurses too
        (deep / "notes.txt").unlink()
        while deep != mine:
            deep.rmdir()
            deep = deep.parent


def test_own_folder_that_is_a_mount_point_is_written_file_by_file(tmp_path, monkeypatch):
    """A folder gradlab made, then mounted where it is (a container's volume): the atomic
    swap cannot move a mount point (renameat2 answers EBUSY), and the write goes file by
    file, as where the system has no swap; it ended in "Device or resource busy"."""
    out = tmp_path / "report"
    outputs.write_files(out, FIRST)

    def renameat2(*args):
        return -1

    monkeypatch.setattr(outputs.ctypes, "CDLL", lambda *a, **k: SimpleNamespace(
        renameat2=renameat2))
    monkeypatch.setattr(outputs.ctypes, "get_errno", lambda: errno.EBUSY)
    outputs.write_files(out, SECOND)
    assert {rel: (out / rel).read_bytes() for rel in SECOND} == SECOND
    assert set(read_manifest(out)) == set(SECOND)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
