"""Running code gradlab did not write (a cell file, a Jacobian or Lyapunov routine under
test) so that no way it ends the process can pass for gradlab's own verdict.

sys.exit is an exception (SystemExit), which the callers turn into one GradlabError.
os._exit is not: it ends the process at once with the status it is given, so a routine
that printed "agrees: ..." and called os._exit(0) would read as a pass to a shell or a
CI job. While such code runs, os._exit (and posix._exit, the same function) raises
`ExitCalled` instead."""

import contextlib
import os


class ExitCalled(BaseException):
    """os._exit(code) called by code under test. A BaseException, so that the code's own
    `except Exception` does not swallow it."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _native():
    """The module os._exit comes from: posix, or nt on Windows."""
    try:
        import posix
        return posix
    except ImportError:
        import nt
        return nt


def _refuse(code):
    raise ExitCalled(code)


@contextlib.contextmanager
def no_exit():
    """os._exit raises ExitCalled inside the block; restored after it, however it ends."""
    homes = [os, _native()]
    saved = [(home, home._exit) for home in homes]
    for home, _ in saved:
        home._exit = _refuse
    try:
        yield
    finally:
        for home, original in saved:
            home._exit = original
