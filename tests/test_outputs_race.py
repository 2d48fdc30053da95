"""A file the user saves into a report folder while a rerun builds its new copy: the swap
used to put it in the old folder, which was then removed whole (3 of 3 tries lost it)."""

import pytest

from gradlab import outputs
from gradlab.errors import GradlabError

FILES = {"index.html": b"new", "report.md": b"new", "figures/a.png": b"new"}


def saving_meanwhile(monkeypatch, out, name, data):
    """Make the user save out/name just before gradlab swaps its new folder in."""
    real = outputs._exchange
    calls = []

    def exchange(a, b):
        if not calls:
            (out / name).write_bytes(data)
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(outputs, "_exchange", exchange)
    return calls


def test_a_file_saved_while_a_rerun_writes_is_kept_beside_the_new_report(tmp_path,
                                                                         monkeypatch):
    out = tmp_path / "r"
    outputs.write_files(out, {**FILES, "old.txt": b"old"})
    calls = saving_meanwhile(monkeypatch, out, "my-notes.txt", b"mine")
    outputs.write_files(out, FILES)
    assert (out / "my-notes.txt").read_bytes() == b"mine"
    assert {p: (out / p).read_bytes() for p in FILES} == FILES
    assert not (out / "old.txt").exists()              # gradlab's stale file still goes
    assert len(calls) == 2                              # swapped, then swapped back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]      # no temporary left
    assert outputs.foreign(out) == ["my-notes.txt"]


def test_a_gradlab_file_edited_while_a_rerun_writes_is_refused_not_overwritten(
        tmp_path, monkeypatch):
    out = tmp_path / "r"
    outputs.write_files(out, {**FILES, "report.md": b"old"})
    saving_meanwhile(monkeypatch, out, "report.md", b"my edit")
    with pytest.raises(GradlabError, match="'report.md' is in the way"):
        outputs.write_files(out, FILES)
    assert (out / "report.md").read_bytes() == b"my edit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_another_kind_of_report_written_meanwhile_is_not_replaced_without_force(tmp_path):
    """The kind was checked when a run began, not when it wrote: a gradient-decay report
    replaced a sweep finished meanwhile, with only a note."""
    from matplotlib.figure import Figure
    from gradlab.reports.publish import write_report

    def report(names, **options):
        figs = {name: Figure() for name in names}
        return write_report(tmp_path / "r", title="t", intro="i", header={}, sections=[],
                            figures=figs, data={}, kind=names, **options)

    from gradlab import outputs
    before = outputs.snapshot(tmp_path / "r")      # the run began: nothing there
    report(["phase", "timescales"])               # a sweep finished while this run worked
    notes = []
    with pytest.raises(GradlabError, match=r"holds another kind of gradlab report \(its "
                                           r"figures: phase, timescales\)"):
        report(["decay", "spectra"], expect=before, notice=notes.append)
    assert notes == []            # not 'this run's output replaces it', then the refusal
    assert (tmp_path / "r" / "figures" / "phase.png").is_file()
    report(["decay", "spectra"], force=True)
    assert not (tmp_path / "r" / "figures" / "phase.png").exists()
    report(["decay", "spectra"])                  # its own kind: replaced, as ever
