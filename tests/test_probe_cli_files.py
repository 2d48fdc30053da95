"""Probe of the command line's files: edges found by a hostile but fair user, each test
failing on the code before its fix."""

import errno
import tempfile

from gradlab import outputs
from gradlab.ownership import read_manifest

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
