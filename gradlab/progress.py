"""Progress of long loops, for whoever listens (the CLI), at no cost to anyone else.

The loops over time steps (the forward run, the backward walk, Lyapunov's QR iteration)
call `advance(what, done, total)` every so often; `listening(fn)` makes `fn` hear those
calls for the duration of a `with` block, in this thread and context only. Nothing is
printed by the library itself.
"""

import contextlib
import contextvars

_LISTENER = contextvars.ContextVar("gradlab_progress", default=None)


def advance(what, done, total):
    """Report that `done` of `total` steps of `what` ("forward", "backward", ...) are done."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(what, done, total)


def due(step, total):
    """Should a loop at `step` (0-based) of `total` report now? At every step while
    someone listens (the listener decides how often to show it: a step of a large state
    can take seconds, so a fixed count of steps could leave minutes silent), else never."""
    return _LISTENER.get() is not None


@contextlib.contextmanager
def listening(fn):
    """Within the block, fn(what, done, total) hears every `advance`."""
    token = _LISTENER.set(fn)
    try:
        yield
    finally:
        _LISTENER.reset(token)
