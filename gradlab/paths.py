"""Paths a user gives gradlab to write to, refused before any work where they cannot
work: a name with a control character (a newline would split the one line that reports
it), or a folder that will not take a new file (as root, os.access says yes even of
/proc; only trying tells)."""

import contextlib
import errno
import os
import pathlib
import tempfile

from .errors import GradlabError
from .signals import uninterrupted

NAME_MAX = 255                  # bytes in one name (Linux, macOS)
PATH_MAX = 4096                 # bytes in a whole path, with its NUL (Linux)


def plain(text, what):
    """Refuse a path holding a control character (NUL, a newline, a tab, ...)."""
    bad = next((c for c in str(text) if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise GradlabError(f"{what} {str(text)!r} holds the control character {bad!r}; "
                           "give a name without one")


def ensure_working_folder():
    """Refuse, in one line, to work in a current folder that no longer exists (removed
    while a shell was in it): every relative path would fail later as a bare "No such file
    or directory" naming nothing, and torch cannot even load there."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise GradlabError("the current folder no longer exists (it was removed while this "
                           "shell was in it); cd to a folder that exists and run again") \
            from None


UNNAMED_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT)


def can_create_in(folder, shown, what):
    """Refuse, in one line, a folder in which a new file cannot be made: one is made there.
    Where the file system can (Linux's O_TMPFILE) the file has no name, so a run killed
    at this moment leaves nothing in the folder; elsewhere it is named and removed at once,
    with SIGINT, SIGTERM and SIGHUP held between (a kill there left .gradlab-probe-XXXXXXXX
    in the user's folder for good: no later run knows it)."""
    try:
        if hasattr(os, "O_TMPFILE"):
            try:
                os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
                return
            except OSError as err:
                if err.errno not in UNNAMED_UNSUPPORTED:
                    raise
        with uninterrupted():
            fd, probe = tempfile.mkstemp(prefix=".gradlab-probe-", dir=folder)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as err:       # (/proc says ENOENT of a folder that is there)
        why = "it takes no new files" if err.errno == errno.ENOENT and os.path.isdir(folder) \
            else err.strerror or err
        raise GradlabError(f"{what} {shown!r}: cannot write in {str(folder)!r}: {why}") \
            from None


def name_fits(name, shown, what):
    """Refuse, in one line, a name (one part of a path) longer than a file name may be."""
    size = len(os.fsencode(name))
    if size > NAME_MAX:
        raise GradlabError(f"{what} {shown[:40]!r}...: its name {name[:20]!r}... is {size} "
                           f"bytes long; a file name may be at most {NAME_MAX}")


def path_fits(path, shown, what, spare=0):
    """Refuse, in one line naming `what`, a path too long for the system (with `spare`
    bytes left for the names gradlab writes under it), not OSError's "File name too
    long" echoing it whole."""
    size = len(os.fsencode(str(path)))
    if size + spare >= PATH_MAX:
        raise GradlabError(f"{what} {str(shown)[:40]!r}...: the path is {size} bytes long; "
                           f"a path may be at most {PATH_MAX - 1 - spare} bytes here")


def refuse_dangling(folder, shown, what):
    """Refuse, in one line, a folder path through a symbolic link to nothing: the folders
    gradlab makes (mkdir -p) would be made where the link points, anywhere, not at the
    path given (mkdir -p itself refuses such a link)."""
    for part in (*reversed(pathlib.Path(folder).parents), pathlib.Path(folder)):
        if not os.path.lexists(part):
            return
        if os.path.islink(part) and not os.path.exists(part):
            raise GradlabError(f"{what} {str(shown)!r}: {str(part)!r} is a symbolic link to "
                               f"{os.readlink(part)!r}, which does not exist; gradlab makes "
                               "no folders through it: create its target, or give another "
                               "path")


def make_parents(path, made):
    """Make the folders above `path` that are missing, as mkdir -p does, appending to
    `made` (deepest first) only those this call created itself: not one that another
    process made meanwhile (`remove_empty` takes them away again if the write fails)."""
    for folder in reversed(pathlib.Path(path).parents):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        made.insert(0, folder)


def remove_empty(folders):
    """Remove each of `folders` (deepest first) while it is empty; stop at the first that
    is not, or cannot be removed: a write that failed leaves no folders it made behind."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return
