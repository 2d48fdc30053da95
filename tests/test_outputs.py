"""Folders gradlab owns (gradlab.outputs): it replaces only what it wrote (never a folder,
an edited file, a link or a file in the way that is the user's), refuses folders no
report may take over (a checkout, the cell file's folder), writes into an empty folder of
the user's and keeps a private one private. Every test here failed on the code before
ownership (where `--force` deleted a whole folder). Faults while writing:
test_outputs_faults.py."""

import errno
import textwrap

import pytest

from gradlab import outputs
from gradlab.errors import GradlabError

from conftest import assert_one_line_error, invoke, tree

REPORT = {"index.html": b"<html>1</html>", "report.md": b"# one\n", "data.json": b"{}\n",
          "figures/decay.png": b"png1", "figures/decay.svg": b"svg1"}
SECOND = {"index.html": b"<html>2</html>", "report.md": b"# two\n", "data.json": b"{\"a\": 2}\n",
          "figures/loss.png": b"png2"}
TINY = ("--cells", "rnn_tanh", "--hidden", "3", "--inputs", "2", "--steps", "4", "--batch", "2")





def home_like(root):
    """A folder such as a user's home: notes, a thesis, a dotfile."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "docs").mkdir()
    (root / "docs" / "thesis.tex").write_text("\\begin{document}\n")
    (root / ".bashrc").write_text("export X=1\n")
    return root


def read_tree(out, files):
    return all((out / rel).read_bytes() == data for rel, data in files.items())


# --- ownership: what may be replaced ----------------------------------------------------------

def test_a_rerun_replaces_gradlabs_own_files_and_removes_stale_ones(tmp_path):
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    outputs.write_files(out, SECOND)
    assert read_tree(out, SECOND)
    assert not (out / "figures" / "decay.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]       # no temporary left
    assert outputs.foreign(out) == []


def test_a_folder_inside_gradlabs_own_output_is_not_a_folder_of_its_own(tmp_path):
    """--out r/figures (part of report r) said it "holds 2 file(s) gradlab did not write";
    gradlab wrote them, as part of r, and they must not be taken over either way."""
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    for force in (False, True):
        with pytest.raises(GradlabError, match=r"^--out '.*figures' is part of gradlab's "
                                               r"output in '.*r'; give a folder of its own$"):
            outputs.check_target(out / "figures", force=force)
    assert read_tree(out, REPORT)
    outputs.check_target(out)                          # the report itself, as ever
    outputs.check_target(tmp_path / "beside")


def test_a_report_in_a_read_only_parent_is_rewritten_file_by_file(tmp_path, monkeypatch):
    """The folder is writable but its parent is not (chmod 555): the swap beside it cannot
    be built there, and the run failed after all its work ("Permission denied"). It writes
    into the folder file by file instead, gradlab's stale files removed as ever."""
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)

    def no_write_in_parent(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))
    monkeypatch.setattr(outputs.tempfile, "mkdtemp", no_write_in_parent)
    outputs.write_files(out, SECOND)
    assert read_tree(out, SECOND) and not (out / "figures" / "decay.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"] and outputs.foreign(out) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_of_the_users_is_never_deleted(tmp_path, force):
    out = home_like(tmp_path / "home")
    before = tree(out)
    if not force:
        with pytest.raises(GradlabError, match="did not write.*--force"):
            outputs.write_files(out, REPORT, force=force)
        assert tree(out) == before
        return
    outputs.write_files(out, REPORT, force=True)
    outputs.write_files(out, SECOND, force=True)
    after = tree(out)
    assert {k: v for k, v in after.items() if k in before} == before   # byte-identical
    assert read_tree(out, SECOND)
    assert not (out / "figures" / "decay.png").exists()


def test_an_edited_report_file_is_the_users(tmp_path):
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    (out / "report.md").write_text("my edits\n")
    with pytest.raises(GradlabError, match="report.md"):
        outputs.write_files(out, SECOND)
    with pytest.raises(GradlabError, match="in the way"):
        outputs.write_files(out, SECOND, force=True)
    assert (out / "report.md").read_text() == "my edits\n"


def test_force_never_overwrites_a_file_in_the_way(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(GradlabError, match="index.html.*in the way"):
        outputs.write_files(out, REPORT, force=True)
    assert (out / "index.html").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]


def test_a_link_inside_the_folder_is_never_written_through(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").symlink_to(target)
    (out / "figures").symlink_to(tmp_path)
    for force in (False, True):
        with pytest.raises(GradlabError):
            outputs.write_files(out, REPORT, force=force)
    assert target.read_text() == "precious"
    assert (out / "report.md").is_symlink()


def test_an_empty_folder_of_the_users_counts_as_theirs(tmp_path):
    out = tmp_path / "r"
    (out / "keep").mkdir(parents=True)
    with pytest.raises(GradlabError, match="keep/"):
        outputs.write_files(out, REPORT)
    outputs.write_files(out, REPORT, force=True)
    outputs.write_files(out, SECOND, force=True)
    assert (out / "keep").is_dir()


# --- folders refused outright -----------------------------------------------------------------

def test_refused_folders(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "sub")
    cell = tmp_path / "cells" / "mine.py"
    cell.parent.mkdir()
    cell.write_text("")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "cells")
    cases = {repo: "root of a repository", tmp_path / "work": "current folder",
             ".": "current folder", "..": "current folder", tmp_path / "home": "home folder",
             "~": "home folder", "/": "filesystem root", repo / ".git" / "x": "metadata",
             tmp_path / "cells": "cell file", link: "symbolic link", "": "empty"}
    for out, needle in cases.items():
        for force in (False, True):
            with pytest.raises(GradlabError, match=needle):
                outputs.check_target(out, force=force, cell_files=[cell])
            with pytest.raises(GradlabError, match=needle):
                outputs.write_files(out, REPORT, force=force, cell_files=[cell])
    assert not (repo / "index.html").exists() and not (repo / "src" / "index.html").exists()


def test_cli_report_refuses_a_checkout_and_the_cell_files_folder(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("project")
    checkout = tree(repo)
    assert_one_line_error(invoke("report", *TINY, "--out", repo, "--force"), "repository")
    assert tree(repo) == checkout
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "mine.py").write_text(textwrap.dedent("""
        import gradlab
        from gradlab import tanh
        @gradlab.declare(state="h", params="W U b", source="test")
        def mine(s):
            return tanh(s.W @ s.h + s.U @ s.x + s.b)
    """))
    before = tree(cells)
    result = invoke("report", "--cells", f"{cells / 'mine.py'}:mine", "--hidden", "3",
                    "--steps", "4", "--batch", "2", "--out", cells, "--force")
    assert_one_line_error(result, "cell file")
    assert tree(cells) == before
    monkeypatch.chdir(repo)
    assert_one_line_error(invoke("derive", "lstm", "--out", "."), "current folder")
    assert_one_line_error(invoke("derive", "lstm", "--out", ".", "--force"), "current folder")
    assert tree(repo) == checkout


def test_cli_report_force_into_a_home_like_folder_keeps_every_file(tmp_path):
    out = home_like(tmp_path / "home")
    before = tree(out)
    assert_one_line_error(invoke("report", *TINY, "--out", out), "--force")
    assert tree(out) == before
    result = invoke("report", *TINY, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in tree(out).items() if k in before} == before
    assert (out / "index.html").is_file() and (out / "data.json").is_file()


def test_cli_derive_writes_no_file_it_did_not_write(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "README.md").write_text("the user's readme")
    assert_one_line_error(invoke("derive", "lstm", "--out", out), "--force")
    assert_one_line_error(invoke("derive", "lstm", "--out", out, "--force"), "README.md")
    assert (out / "README.md").read_text() == "the user's readme"
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    fresh = tmp_path / "e"
    assert invoke("derive", "lstm", "--out", fresh).exit_code == 0
    assert invoke("derive", "gru", "--out", fresh).exit_code == 0     # adds, keeps lstm.md
    assert {"lstm.md", "gru.md", "README.md"} <= {p.name for p in fresh.iterdir()}


def test_cli_derive_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.md"
    victim.write_text("keep me")
    out = tmp_path / "d"
    out.mkdir()
    (out / "lstm.md").symlink_to(victim)
    for force in ([], ["--force"]):
        result = invoke("derive", "lstm", "--out", out, *force)
        assert result.exit_code == 2, result.output
    assert victim.read_text() == "keep me"


# --- found by a probe of the CLI --------------------------------------------------------------

def test_an_empty_folder_of_the_users_is_written_into_not_replaced(tmp_path):
    """It used to be swapped for a new folder: a new inode, and mode 0700 (plus setgid)
    turned into 0755, a private folder made world-readable."""
    out = tmp_path / "private"
    out.mkdir(mode=0o700)
    before = out.stat()
    outputs.write_files(out, REPORT)
    after = out.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert read_tree(out, REPORT)
    outputs.write_files(out, SECOND)             # and on every later write (the manifest
    again = out.stat()                           # the first left made it look gradlab's)
    assert (again.st_ino, again.st_mode) == (before.st_ino, before.st_mode)
    assert read_tree(out, SECOND)


def test_a_gradlab_folder_made_private_stays_private_when_replaced(tmp_path):
    out = tmp_path / "r"
    outputs.write_files(out, REPORT)
    out.chmod(0o700)
    outputs.write_files(out, SECOND)
    assert (out.stat().st_mode & 0o777) == 0o700 and read_tree(out, SECOND)


def test_a_name_too_long_for_the_temporary_folder_is_refused_before_any_work(tmp_path):
    out = tmp_path / ("c" * 240)
    assert_one_line_error(invoke("report", *TINY, "--out", str(out)), "at most 237 bytes")
    assert not out.exists()


def test_one_set_of_derived_pages_has_one_index_whatever_was_derived_when(tmp_path):
    """Re-deriving lstm into a folder of every cell moved its row to the top of the index:
    the committed derivations/README.md would change with what was run last."""
    for order in (["gru", "lstm"], ["lstm", "gru"], ["gru", "lstm", "gru"]):
        out = tmp_path / "-".join(order)
        for cells in order:
            assert invoke("derive", cells, "--out", out).exit_code == 0
        rows = [line for line in (out / "README.md").read_text().splitlines()
                if line.startswith("| [`")]
        assert [r.split("`")[1] for r in rows] == ["gru", "lstm"]     # the catalogue's order


def test_a_report_inside_the_folder_is_named_as_another_reports(tmp_path):
    """A report written into a subfolder, then --out the folder above: refused (right),
    but its files were called files 'gradlab did not write'."""
    from gradlab.outputs import check_target
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gradlab-manifest.json").write_text("{}")
    with pytest.raises(GradlabError, match=r"not of this report \(e.g. 'sub/.gradlab-manifest"
                                           r".json'; 'sub' is another report's folder\)"):
        check_target(tmp_path)
    (tmp_path / "mine.txt").write_text("x")
    (tmp_path / "sub" / ".gradlab-manifest.json").unlink()
    with pytest.raises(GradlabError, match="gradlab did not write"):
        check_target(tmp_path)


def test_a_folder_inside_another_reports_folder_is_refused(tmp_path):
    """--out q/figures was refused as part of q's report, but --out q/figures/x was
    written, into q's figures/; q's next run then refused q itself until --force."""
    outputs.write_files(tmp_path / "q", {"report.md": b"r", "figures/decay.png": b"p"})
    for inner in ("figures", "figures/x", "figures/x/y"):
        with pytest.raises(GradlabError, match=r"is part of gradlab's output in "):
            outputs.write_files(tmp_path / "q" / inner, {"report.md": b"s"})
    assert sorted(p.name for p in (tmp_path / "q" / "figures").iterdir()) == ["decay.png"]
    outputs.write_files(tmp_path / "q" / "other", {"report.md": b"s"})   # beside: its own
