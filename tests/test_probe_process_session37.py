"""Session 37 probe: what a gradlab process leaves in the user's folders when the real world
meets it (a kill, a hangup, a Ctrl-C at the worst moment; two runs at once)."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

HERE = str(pathlib.Path(__file__).resolve().parents[1])


def _python(code, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL)
                                              for s in (signal.SIGINT, signal.SIGHUP)])


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_write_new_killed_between_staging_and_link_leaves_no_temp_file(tmp_path, name):
    """`gradlab init --write-torch` writes its checkpoint through `outputs.write_new`: a
    kill (no finally runs) after the bytes were staged beside the target and before they
    were linked into place left `.model.pt.gradlab-XXXXXXXX.tmp` in the user's folder, for
    good unless the same name was written again; the signal now lands once the file is
    whole and the staged one gone."""
    sig = getattr(signal, name)
    done = _python(f"""
        import os, signal
        from gradlab import outputs
        real = os.link
        def link(a, b):
            os.kill(os.getpid(), {int(sig)})
            return real(a, b)
        outputs.os.link = link
        outputs.write_new("model.pt", b"x" * 4096)
        print("went on past the signal")
    """, tmp_path)
    assert done.returncode == -sig, (done.returncode, done.stderr)
    assert "went on" not in done.stdout
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert (tmp_path / "model.pt").read_bytes() == b"x" * 4096


def test_writability_probe_killed_leaves_no_named_file(tmp_path):
    """Where a file system has no O_TMPFILE (NFS, some FUSE mounts), `paths.can_create_in`
    proves a folder writable with a named file, .gradlab-probe-XXXXXXXX, removed at once: a
    kill between its making and its removal left it in the user's folder for good (no
    later run knows the name). The signal now lands once it is gone."""
    (tmp_path / "folder").mkdir()
    done = _python("""
        import os, signal
        from gradlab import paths
        del os.O_TMPFILE
        real = os.close
        def close(fd):
            os.kill(os.getpid(), signal.SIGTERM)
            return real(fd)
        os.close = close
        paths.can_create_in("folder", "folder", "--out")
        print("went on past the signal")
    """, tmp_path)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stderr)
    assert "went on" not in done.stdout
    assert os.listdir(tmp_path / "folder") == []
