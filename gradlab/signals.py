"""Signals held back while gradlab writes its files (`outputs.write_files`): a Ctrl-C or
a kill that arrives mid-write takes effect once the write is whole."""

import contextlib
import signal
import threading


@contextlib.contextmanager
def uninterrupted():
    """Hold SIGINT and SIGTERM back while files are written: a Ctrl-C or kill lands once
    the folder is whole and new, not between two files of a write file by file, which
    mixed two reports. Python-level handlers that only note the signal, then
    the signal raised again under the previous ones (a blocked signal mask would not do:
    the kernel hands a process's signal to any thread, and torch's threads take it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
              for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        # SIGTERM first: raising SIGINT raises KeyboardInterrupt here, and a SIGTERM after
        # it would never be delivered
        for s in sorted(set(caught), key=lambda s: s != signal.SIGTERM):
            signal.raise_signal(s)
