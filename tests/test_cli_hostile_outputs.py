"""Hostile places for the CLI's output, refused in one line (exit 2) before any work:
derive pages that cannot collide with the index, an --out that is empty, under a file,
holds a newline or takes no file, a user's file or linked folder in a report's way,
derivation documents and reports of another kind not replaced without --force, derive
beside a report, a checkpoint that is not a regular file; and write-torch leaves no file
when interrupted."""

import pytest
import torch

import gradlab.registry
from conftest import JANET_SOURCE, assert_ok, assert_one_line_error, invoke, listing


# -- derive ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tour", "README", "theory", "conventions"])
def test_derive_refuses_a_cell_named_like_an_index_page(tmp_path, name):
    source = JANET_SOURCE.replace("def janet(s):", f"def {name}(s):")
    (tmp_path / "cell.py").write_text(source)
    result = invoke("derive", f"{tmp_path / 'cell.py'}:{name}", "--out", tmp_path / "d")
    assert_one_line_error(result, f"{name}.md")
    assert not (tmp_path / "d").exists()


def test_derive_refuses_latex_with_out_and_strips_the_cell(tmp_path):
    assert_one_line_error(invoke("derive", "lstm", "--latex", "--out", tmp_path / "d"),
                          "--latex")
    result = invoke("derive", " lstm ")
    assert_ok(result)
    assert result.stdout.startswith("lstm: state (h, c)")


def test_report_refuses_a_user_file_in_the_way_before_measuring(tmp_path):
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "decay.png").write_text("mine")
    result = invoke("report", "--cells", "rnn_tanh", "--hidden", "2", "--inputs", "1",
                    "--steps", "3", "--batch", "1", "--out", out, "--force")
    assert_one_line_error(result, "'figures/decay.png' is in the way")   # no progress lines
    assert listing(tmp_path) == ["r", "r/figures", "r/figures/decay.png"]


def test_a_linked_figures_folder_is_named_as_what_is_in_the_way(tmp_path):
    """A link `figures` to a folder of the user's was refused as 'figures/decay.png' in
    the way: a file the user never made."""
    out, mine = tmp_path / "r", tmp_path / "mine"
    mine.mkdir()
    out.mkdir()
    (out / "figures").symlink_to(mine)
    result = invoke("report", "--cells", "rnn_tanh", "--hidden", "2", "--inputs", "1",
                    "--steps", "3", "--batch", "1", "--out", out, "--force")
    assert_one_line_error(result, "'figures' is in the way")
    assert list(mine.iterdir()) == []


def test_derive_refuses_an_empty_out():
    """--out '' printed to the terminal and exited 0, as if --out had not been given."""
    assert_one_line_error(invoke("derive", "lstm", "--out", ""), "--out is empty")


def test_write_torch_leaves_no_file_when_interrupted(tmp_path, monkeypatch):
    """The file was created empty, then written: a kill in between left a 0-byte file
    that refused every rerun."""
    from gradlab import checkpoint
    import os as _os
    monkeypatch.setattr(_os, "link", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_new({"w": torch.zeros(2)}, tmp_path / "m.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    checkpoint.save_new({"w": torch.zeros(2)}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["w"].shape == (2,)
    with pytest.raises(gradlab.GradlabError, match="exists"):
        checkpoint.save_new({"w": torch.zeros(2)}, tmp_path / "m.pt")


@pytest.mark.parametrize("command", [["derive", "lstm"], ["report", "--cells", "rnn_tanh"]])
def test_an_out_under_a_file_is_named_as_such(tmp_path, command):
    """derive said 'File exists' and report 'is not writable (or not a folder)' of an
    --out below a regular file."""
    (tmp_path / "afile").write_text("mine")
    result = invoke(*command, "--out", tmp_path / "afile" / "sub")
    assert_one_line_error(result, "afile' is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("command", [
    ["report", "--cells", "rnn_tanh", "--hidden", "2", "--steps", "3", "--batch", "1"],
    ["sweep", "--cells", "rnn_tanh", "--weight-scales", "1", "--gate-biases", "0",
     "--hidden", "2", "--steps", "3", "--batch", "1"],
    ["sweep", "--shard", "1/2", "--cells", "rnn_tanh", "--weight-scales", "1,2",
     "--gate-biases", "0", "--hidden", "2", "--steps", "3", "--batch", "1"],
    ["train", "--cells", "rnn_tanh", "--tasks", "adding:3", "--steps", "1", "--hidden", "2",
     "--batch", "2", "--char-steps", "0", "--drift-steps", "1"]], ids=lambda c: c[0])
def test_derivation_documents_are_not_replaced_by_a_report_without_force(tmp_path, command):
    """gradlab derive --out DIR, then a report into DIR: every derivation document was
    deleted without a word (the kind check knew reports only by their figures)."""
    out = tmp_path / "docs"
    assert_ok(invoke("derive", "lstm", "--out", out))
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    assert_one_line_error(invoke(*command, "--out", out), "holds gradlab output that is "
                                                           "not a ")
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before
    assert_ok(invoke(*command, "--out", out, "--force"))
    assert "lstm.md" not in listing(out)


def test_a_report_of_another_kind_is_not_replaced_without_force(tmp_path):
    """gradlab sweep --out DIR, where DIR held a gradient-decay report, deleted that
    report's figures without a word (they were gradlab's, but the user's report)."""
    out = tmp_path / "mix"
    small = ["--hidden", "2", "--steps", "3", "--batch", "1"]
    assert_ok(invoke("report", "--cells", "rnn_tanh", *small, "--out", out))
    before = listing(out)
    sweep = ["sweep", "--cells", "rnn_tanh", "--weight-scales", "1", "--gate-biases", "0",
             *small, "--out", out]
    assert_one_line_error(invoke(*sweep), "holds another kind of gradlab report")
    assert listing(out) == before
    assert_ok(invoke("report", "--cells", "rnn_tanh", *small, "--out", out))   # same kind
    assert_ok(invoke(*sweep, "--force"))
    assert "figures/phase.png" in listing(out) and "figures/decay.png" not in listing(out)


def test_a_report_sharing_a_figure_is_still_another_kind(tmp_path):
    """A gradient-decay report of gated cells draws `drift`, which every learnability
    report draws too: `gradlab train --out` replaced it without --force, exit 0."""
    out = tmp_path / "decay"
    small = ["--hidden", "2", "--steps", "3", "--batch", "1"]
    assert_ok(invoke("report", "--cells", "rnn_tanh,gru", *small, "--out", out))
    before = listing(out)
    assert "figures/drift.png" in before
    train = ["train", "--cells", "rnn_tanh", "--tasks", "adding:3", "--steps", "2",
             "--hidden", "2", "--batch", "2", "--char-steps", "0", "--drift-steps", "1",
             "--out", out]
    assert_one_line_error(invoke(*train), "holds another kind of gradlab report")
    assert listing(out) == before
    assert_ok(invoke("report", "--cells", "rnn_tanh,gru", *small, "--out", out))  # its own


@pytest.mark.parametrize("command", [
    ["report", "--cells", "lstm", "--hidden", "4", "--steps", "4", "--batch", "2",
     "--out", "/proc/gradlab-x"],
    ["init", "gru_torch", "--hidden", "4", "--inputs", "2", "--timescale", "5",
     "--write-torch", "/proc/gradlab-x.pt"]], ids=lambda c: c[0])
def test_a_place_that_takes_no_file_is_refused_before_any_work(command):
    """As root os.access says /proc is writable: the report ran, then failed to write.
    /proc's ENOENT ("'/proc': No such file or directory") is told as what it means."""
    result = invoke(*command)
    assert_one_line_error(result, f"{command[-2]} '/proc/gradlab-x")
    assert "cannot write in '/proc': it takes no new files" in result.stderr
    assert "measured" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("option", ["--out", "--write-torch"])
def test_a_path_with_a_newline_is_refused(tmp_path, option):
    """'wrote 5 files to nl' / 'name': the one line that names the output split in two."""
    target = tmp_path / ("nl\nname" + (".pt" if option == "--write-torch" else ""))
    command = (["derive", "lstm"] if option == "--out" else
               ["init", "gru_torch", "--hidden", "4", "--inputs", "2", "--timescale", "5"])
    assert_one_line_error(invoke(*command, option, target), "holds the control character")
    assert not target.exists()


def test_a_checkpoint_that_is_not_a_regular_file_is_named_so(tmp_path):
    result = invoke("report", "--steps", "4", "--batch", "2", "--arch", "gru:hidden=4,inputs=2",
                    "--model", "/dev/null", "--out", tmp_path / "r")
    assert_one_line_error(result, "checkpoint '/dev/null' is not a regular file")


def test_derive_refuses_to_write_beside_a_report(tmp_path):
    """derive added its pages to a report's folder, and the report's next run deleted them
    without --force (they were in the manifest, as the report's files were)."""
    out = tmp_path / "mix"
    small = ["report", "--cells", "rnn_tanh", "--steps", "3", "--batch", "1", "--hidden", "2"]
    assert_ok(invoke(*small, "--out", out))
    assert_one_line_error(invoke("derive", "rnn_tanh", "--out", out), "holds a gradlab report")
    assert "rnn_tanh.md" not in listing(out)


def test_derive_refuses_force_without_out():
    """derive lstm --force printed and ignored --force, where --latex with --out is refused."""
    assert_one_line_error(invoke("derive", "lstm", "--force"), "--force is for --out")
