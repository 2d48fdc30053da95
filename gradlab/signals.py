"""Signals held back while gradlab writes its files (`outputs.write_files`): a Ctrl-C, a
kill or a hangup that arrives mid-write takes effect once the write is whole."""

import contextlib
import signal
import threading


# Ctrl-C, a kill, and the terminal (or ssh session) closing: each ends a process by default
HELD = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
             if hasattr(signal, name))


@contextlib.contextmanager
def uninterrupted():
    """Hold SIGINT, SIGTERM and SIGHUP back while files are written: a Ctrl-C, a kill or a
    closed terminal lands once the folder is whole and new, not between two files of a
    write file by file, which mixed two reports. Python-level handlers that only note the
    signal, then
    the signal raised again under the previous ones (a blocked signal mask would not do:
    the kernel hands a process's signal to any thread, and torch's threads take it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
              for s in HELD}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        # SIGTERM and SIGHUP first: raising SIGINT raises KeyboardInterrupt here, and a
        # signal after it would never be delivered
        for s in sorted(set(caught), key=lambda s: s == signal.SIGINT):
            signal.raise_signal(s)


@contextlib.contextmanager
def noting_ctrl_c():
    """A list that a Ctrl-C (SIGINT) arriving inside the block appends to, or None where
    none can arrive as a KeyboardInterrupt there (outside the main thread, or SIGINT
    ignored or left to end the process): a KeyboardInterrupt raised in the block while it
    is an empty list (or None) is the code's own `raise KeyboardInterrupt`, not the user's
    Ctrl-C. The handler the block found, which still handles the signal, is put back after
    it, whatever the code in it installed."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    before = signal.getsignal(signal.SIGINT)
    if not callable(before):
        try:
            yield None
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)
        return
    noted = []

    def note(signum, frame):
        noted.append(signum)
        before(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, before)
