"""A folder that exists but takes no new file (sysfs, a full disk, a mount os.access does not
see through; as root os.access says yes to all of them) is refused before any work: gradlab
tries to make a file there first. It used to be found only at the write, after the work."""

import errno
import os
import tempfile

import gradlab.paths

from conftest import assert_one_line_error, invoke


def test_an_existing_folder_that_takes_no_file_is_refused_before_work(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_open, real_mkstemp = os.open, tempfile.mkstemp

    def refused(folder):
        if folder is not None and os.path.isdir(folder) and os.path.samefile(folder, out):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def open_(path, flags, *args, **kw):
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            refused(path)
        return real_open(path, flags, *args, **kw)

    def mkstemp(*args, dir=None, **kw):
        refused(dir)
        return real_mkstemp(*args, dir=dir, **kw)
    monkeypatch.setattr(gradlab.paths.os, "open", open_)
    monkeypatch.setattr(gradlab.paths.tempfile, "mkstemp", mkstemp)
    result = invoke("report", "--cells", "rnn_tanh", "--hidden", "4", "--inputs", "2",
                    "--steps", "4", "--batch", "1", "--out", out)
    assert_one_line_error(result, f"--out {str(out)!r}: cannot write in {str(out)!r}: "
                                  "Read-only file system")
    assert list(out.iterdir()) == []


def test_a_file_system_without_unnamed_files_is_probed_by_a_named_one(tmp_path,
                                                                        monkeypatch):
    real_open, made = os.open, []

    def open_(path, flags, *args, **kw):
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        made.append(path)
        return real_open(path, flags, *args, **kw)
    monkeypatch.setattr(gradlab.paths.os, "open", open_)
    gradlab.paths.can_create_in(tmp_path, "x", "--out")
    assert any(".gradlab-probe-" in str(p) for p in made) and list(tmp_path.iterdir()) == []


def test_the_probe_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("derive", "rnn_tanh", "--out", out)
    assert result.exit_code == 0, result.output
    assert not [p for p in os.listdir(out) if p.startswith(".gradlab-probe-")]
