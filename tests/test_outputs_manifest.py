"""A folder's manifest is data from the folder, so it is checked like any input: it can
never point gradlab at a file outside the folder or through a link; a write cut short
leaves a folder the next run still recognises as gradlab's; and leftovers are only the
exact temporary names gradlab makes. Each test failed before (hostile-input review)."""

import hashlib
import json

import pytest

from gradlab import outputs

REPORT = {"report.md": b"# one\n", "data.json": b"{}\n", "figures/a.png": b"png1"}
SECOND = {"report.md": b"# two\n", "data.json": b"{\"a\": 2}\n", "figures/b.png": b"png2"}


def plant(folder, key, victim):
    """A manifest in `folder` claiming `victim` (by `key`) with its true hash."""
    sha = hashlib.sha256(victim.read_bytes()).hexdigest()
    (folder / outputs.MANIFEST).write_text(json.dumps(
        {"written by": "gradlab", "files": {key: sha}}))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link"])
def test_a_manifest_cannot_point_outside_the_folder(tmp_path, how):
    victims = tmp_path / "victims"
    victims.mkdir()
    victim = victims / "v.txt"
    victim.write_text("precious")
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")           # the user's: --force, file by file
    if how == "absolute":
        key = str(victim)
    elif how == "dotdot":
        key = "../victims/v.txt"
    else:
        (out / "sub").symlink_to(victims)
        key = "sub/v.txt"
    plant(out, key, victim)
    outputs.write_files(out, REPORT, force=True)
    assert victim.read_text() == "precious"
    assert (out / "notes.txt").read_text() == "mine"
    assert key not in json.loads((out / outputs.MANIFEST).read_text())["files"]
    # and derivation documents (replace=False) do not carry such a name forward either
    plant(out, key, victim)
    outputs.write_files(out, {"x.md": b"x"}, replace=False, force=True)
    assert victim.read_text() == "precious"
    assert key not in json.loads((out / outputs.MANIFEST).read_text())["files"]


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_write_cut_short_leaves_a_folder_gradlab_still_owns(tmp_path, monkeypatch, fail_at):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")           # so files are replaced one by one
    outputs.write_files(out, REPORT, force=True)
    real, calls = outputs._atomic_bytes, [0]

    def failing(target, data):
        if target.name != outputs.MANIFEST:
            calls[0] += 1
            if calls[0] == fail_at:
                raise OSError(28, "No space left on device")
        return real(target, data)

    monkeypatch.setattr(outputs, "_atomic_bytes", failing)
    with pytest.raises(outputs.GradlabError, match="No space left"):
        outputs.write_files(out, SECOND, force=True)
    monkeypatch.setattr(outputs, "_atomic_bytes", real)
    assert outputs.foreign(out) == ["notes.txt"]      # every other file is still gradlab's
    outputs.write_files(out, SECOND, force=True)       # so a retry goes through
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        outputs.MANIFEST, "data.json", "figures/b.png", "notes.txt", "report.md"]
    assert (out / "report.md").read_bytes() == SECOND["report.md"]
    assert "pending" not in json.loads((out / outputs.MANIFEST).read_text())


def test_leftovers_are_only_gradlabs_own_temporary_names(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    outputs.write_files(out, REPORT, force=True)
    users = [out / ".my.gradlab-draft.tmp",            # inside, but names nothing listed
             out / ".notes.txt.gradlab-abcd1234.tmp",  # beside a file of the user's
             tmp_path / ".rep.gradlab-notes.tmp"]
    for f in users:
        f.write_text("mine")
    photos = tmp_path / ".rep.gradlab-photos"          # not mkdtemp's 8 characters
    photos.mkdir()
    (photos / outputs.MARK).touch()
    (photos / "img.jpg").write_text("precious")
    ours = [out / ".data.json.gradlab-k2_9zq0a.tmp",
            out / "figures" / ".a.png.gradlab-00000000.tmp",
            out / f".{outputs.MANIFEST}.gradlab-abcdefgh.tmp"]
    for f in ours:
        f.write_text("half")
    outputs.write_files(out, SECOND, force=True)
    assert all(f.read_text() == "mine" for f in users)
    assert (photos / "img.jpg").read_text() == "precious"
    assert not any(f.exists() for f in ours if f.parent.exists())


def test_manifest_names_are_checked():
    for bad in ("/etc/passwd", "../x", "a/../b", "./a", "a//b", "a/", "", "a\\b", "a\0b",
                outputs.MANIFEST, ".x.gradlab-abcdefgh.tmp"):
        assert not outputs.plain_name(bad), bad
    for good in ("report.md", "figures/decay.png", "a b/c.md", "é.md"):
        assert outputs.plain_name(good), good


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_manifest_name_that_is_not_gradlabs_is_never_overwritten(tmp_path, kind):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    manifest = out / outputs.MANIFEST
    if kind == "link":
        manifest.symlink_to(target)
    else:
        manifest.write_text("my own notes, not JSON")
    with pytest.raises(outputs.GradlabError, match="in the way"):
        outputs.write_files(out, REPORT, force=True)
    assert target.read_text() == "precious"
    assert (manifest.is_symlink() if kind == "link" else
            manifest.read_text() == "my own notes, not JSON")
