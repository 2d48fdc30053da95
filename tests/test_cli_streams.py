"""The command line's own streams: an encoding that cannot hold gradlab's symbols."""

import os
import subprocess
import sys

import pytest


def gradlab_cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "gradlab", *args], capture_output=True,
                          env={**os.environ, **env}, timeout=300)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_an_encoding_without_greek_letters_gets_them_escaped_not_a_crash(encoding):
    """PYTHONIOENCODING=latin-1 gradlab derive lstm ended in 'internal error
    (UnicodeEncodeError ...)' half-way through the equations (click forces UTF-8 only on
    an ASCII stream)."""
    run = gradlab_cli("derive", "lstm", PYTHONIOENCODING=encoding)
    assert run.returncode == 0, run.stderr
    assert b"i = \\u03c3(W_i h + U_i x + b_i)" in run.stdout and run.stderr == b""
