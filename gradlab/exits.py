"""Running code gradlab did not write (a cell file, a Jacobian or Lyapunov routine under
test) so that no way it ends the process can pass for gradlab's own verdict.

sys.exit is an exception (SystemExit), which the callers turn into one GradlabError.
os._exit is not: it ends the process at once with the status it is given, so a routine
that printed "agrees: ..." and called os._exit(0) would read as a pass to a shell or a
CI job. While such code runs, os._exit (and posix._exit, the same function) raises
`ExitCalled` instead, and what it prints goes to stderr (`guarded`)."""

import contextlib
import io
import os
import sys
import threading


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
    if os.getpid() != _held["pid"]:      # a child the code forked (multiprocessing's own
        _EXIT(code)                      # end of one): its exit is no verdict of ours
    raise ExitCalled(code)


class _ToStderr(io.TextIOBase):
    """What code under test prints goes to stderr; closing it closes nothing. Whatever
    else a stream offers (encoding, buffer, fileno) is stderr's."""

    def writable(self):
        return True

    @property
    def encoding(self):
        return sys.stderr.encoding

    @property
    def errors(self):
        return sys.stderr.errors

    @property
    def buffer(self):
        return sys.stderr.buffer

    def fileno(self):
        return sys.stderr.fileno()

    def isatty(self):
        return sys.stderr.isatty()

    def write(self, text):
        """Written to stderr where it can be; dropped where it cannot (a full disk, a
        closed stream), as gradlab's own notes are: what the code under test prints
        must not decide its verdict."""
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError, AttributeError):
            return len(text)

    def flush(self):
        _flush(sys.stderr)

    def close(self):
        pass


_TO_STDERR = _ToStderr()
_EXIT = os._exit                         # the real one, whatever is patched later
_LOCK = threading.Lock()
_held = {"depth": 0, "saved": None, "ran": False, "pid": None, "verdict": True,  # guards
         "threads": []}
    # open now, what the first replaced, whether any ever ran, where, whether the
    # process's status is a verdict (`end`), and the codes of os._exit called in threads


def _thread_exit(args, hook):
    """threading.excepthook while a guard is open: os._exit called in a thread the code
    started (its ExitCalled ends that thread) is noted, for the guard to raise where the
    code was called, not printed as a traceback while the verdict goes on ("agrees").
    Noted for the process: with guards open in several threads at once, the first to
    close raises it. (A thread that calls os._exit after every guard has closed ends the
    process, as it would without gradlab.)"""
    if isinstance(args.exc_value, ExitCalled):
        with _LOCK:
            _held["threads"].append(args.exc_value.code)
        return
    hook(args)


def _flush(*streams):
    for stream in streams:
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _to_stderr():
    """Point file descriptor 1 at stderr's (a write to fd 1, or a child process's echo,
    would reach gradlab's stdout past sys.stdout); the saved descriptor, or None where
    there is none to move (a closed stdout or stderr)."""
    _flush(sys.stdout, sys.__stdout__)      # what gradlab wrote goes out first
    try:
        saved = os.dup(1)
    except OSError:
        return None
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        return None
    return saved


def _back(saved):
    """fd 1 back where it was, after what the code left in stdout's buffer has gone to
    stderr (a write to sys.__stdout__ without a flush would otherwise reach stdout)."""
    _flush(sys.__stdout__)
    if saved is not None:
        try:
            os.dup2(saved, 1)
        except OSError:                  # (the code closed it: stdout stays on stderr)
            pass
        finally:
            if _open(saved):
                os.close(saved)


def _open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def guarded():
    """Inside the block os._exit raises ExitCalled, and stdout (sys.stdout and file
    descriptor 1) writes to stderr: what gradlab prints on stdout, such as "agrees:",
    stays its own. All restored after it, however it ends. They are the process's, so
    blocks open in several threads at once share one replacement, put in by the first
    and taken out by the last (each restoring what it found, in whatever order they
    ended, left stdout and os._exit replaced for good). Code that forks and returns in
    the child ends there: the child does not go on to run gradlab's own verdict."""
    pid = os.getpid()
    with _LOCK:
        if not _held["depth"]:
            homes = [os, _native()]
            _held["saved"] = ([(home, home._exit) for home in homes], sys.stdout,
                              _to_stderr(), threading.excepthook)
            _held["pid"] = pid
            for home in homes:
                home._exit = _refuse
            sys.stdout = _TO_STDERR
            hook = threading.excepthook
            threading.excepthook = lambda args: _thread_exit(args, hook)
        _held["depth"] += 1
        _held["ran"] = True
        seen = len(_held["threads"])
    try:
        yield
        with _LOCK:
            late = _held["threads"][seen:]
        if late:                          # os._exit in a thread the code started
            raise ExitCalled(late[0])
    finally:
        if os.getpid() != pid:                       # a child the code forked
            _EXIT(70)
        with _LOCK:
            _held["depth"] -= 1
            if not _held["depth"]:
                exits, stdout, fd, hook = _held["saved"]
                for home, original in exits:
                    home._exit = original
                threading.excepthook = hook
                _held["threads"].clear()
                sys.stdout, _held["saved"] = stdout, None
                _back(fd)


def end(code):
    """Where code under test ran in this process, end it now with `code` (the verdict's
    status), past any exit hook that code registered (atexit.register(lambda: os._exit(0))
    made a check that printed "differs" exit 0); else return."""
    if not (_held["ran"] and _held["verdict"]) or not isinstance(code, (int, type(None))):
        return                           # (a message to print: Python's own end prints it)
    _flush(sys.stdout, sys.stderr)
    _EXIT(code or 0)


def no_verdict():
    """This process's exit status is no verdict (`gradlab shell`): it ends as Python does,
    its exit hooks run (IPython saves the session's history in one)."""
    _held["verdict"] = False
