"""Progress of long loops: on stderr by default, or for whoever listens (the CLI).

The loops over time steps (the forward run, the backward walk, Lyapunov's QR iteration,
training) call `advance(what, done, total)` at every step. With no listener, work that
has gone on for more than SILENT seconds says how far it is on stderr, one line every
SILENT seconds (and one when a loop it spoke of ends), so a long call from Python or a
notebook is never silent:

    gradlab: backward walk: step 1,200 of 10,000 (10 s)

`listening(fn)` makes `fn(what, done, total)` hear every step instead, for the duration of
a `with` block, in this thread and context only (the CLI draws its own bar that way;
a thread started inside the block has a context of its own); `listening(None)` silences it.
"""

import contextlib
import contextvars
import math
import sys
import time

from .errors import arguments_checked, callback

SILENT = 10.0            # seconds a loop runs before its first line, and between lines


class _Stderr:
    """The default listener: a line on stderr every SILENT seconds of steady work. The
    clock runs from the first step after SILENT seconds with none, whatever loops take
    turns meanwhile (training, and the flows it measures between its steps); a loop it
    spoke of says so when it ends."""

    clock = staticmethod(time.monotonic)

    def __init__(self):
        self.begun = self.seen = self.last = -math.inf
        self.spoke = None                     # the loop last spoken of, until it ends

    def __call__(self, what, done, total):
        now = self.clock()
        if now - self.seen >= SILENT:         # work again after a pause: a new clock
            self.begun = self.last = now
        self.seen = now
        ending = done == total and self.spoke == what
        if (now - self.last >= SILENT or ending) and sys.stderr is not None:
            self.last, self.spoke = now, None if done == total else what
            end = " done" if done == total else ""
            try:
                print(f"gradlab: {what}: step {done:,} of {total:,}{end} "
                      f"({now - self.begun:.0f} s)", file=sys.stderr, flush=True)
            except (OSError, ValueError):           # a closed or broken stderr: no word
                pass


_LISTENER = contextvars.ContextVar("gradlab_progress", default=None)


def _listener():
    listener = _LISTENER.get()
    if listener is None:                     # first use in this context: its own printer
        listener = _Stderr()
        _LISTENER.set(listener)
    return listener


def _silent(what, done, total):
    pass


def new_command():
    """A command begins: the default printer's clock starts afresh (in one process running
    several commands, as a test suite does, the last one's clock would time this one and
    a progress line land in the middle of a short command's output). A listener of the
    caller's, or silence, stays as it is."""
    if isinstance(_LISTENER.get(), _Stderr):
        _LISTENER.set(_Stderr())


def advance(what, done, total):
    """Report that `done` of `total` steps of `what` ("forward", "backward", ...) are done."""
    _listener()(what, done, total)


def due(step, total):
    """Should a loop at `step` (0-based) of `total` report now? At every step, but where
    progress is silenced (`listening(None)`): the listener decides how often to show it (a
    step of a large state can take seconds, so a fixed count of steps could leave minutes
    silent)."""
    return _LISTENER.get() is not _silent


@arguments_checked                       # listening(func=f): one line, as gradlab's own
@contextlib.contextmanager
def listening(fn):
    """Within the block, fn(what, done, total) hears every `advance`; None: nothing does."""
    callback(fn, "fn", ("what", "done", "total"), "listening(fn) takes a function "
             "fn(what, done, total) or None (silence)")
    token = _LISTENER.set(_silent if fn is None else fn)
    try:
        yield
    finally:
        _LISTENER.reset(token)
