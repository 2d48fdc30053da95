"""Where gradlab refuses to write a report (`refuse_unsafe`, `check_target`, both before
any work): a filesystem root, the home folder, the current folder or one above it, a
repository's root or its metadata, a folder that holds a cell file in use, a link, a
folder inside another report, and a folder holding files gradlab did not write (unless
`force`). `outputs.write_files` checks again under its lock."""

import os
import pathlib

from .errors import GradlabError
from .ownership import TEMP_TAG, nested, owner_above, readable_foreign
from .paths import NAME_MAX, can_create_in, path_fits, plain, refuse_dangling

REPOSITORY_MARKERS = (".git", ".hg", ".svn")


# -- where gradlab refuses to write ------------------------------------------------------
def resolve(out, what="--out"):
    """`out` as an absolute path (links in its parents resolved, the last part kept)."""
    if out is None or str(out).strip() == "":
        raise GradlabError(f"{what} is empty; give a folder path")
    if str(out).strip() == "-":             # (elsewhere: standard output, which holds no folder)
        raise GradlabError(f"{what} '-': standard output cannot hold a folder of files; "
                           "give a folder path (./- for a folder named -)")
    plain(out, what)
    path = pathlib.Path(os.path.expanduser(str(out)))
    path_fits(path.absolute(), out, what, spare=128)    # (figures/..., the temporary name)
    refuse_dangling(path.absolute().parent, out, what)
    try:
        parent = path.absolute().parent.resolve()
    except (OSError, RuntimeError) as err:
        raise GradlabError(f"{what} {str(out)!r}: {err}") from None
    if (name := path.absolute().name) in ("", ".", ".."):
        return pathlib.Path(os.path.normpath(path.absolute())).resolve()
    return parent / name


def refuse_unsafe(out, *, cell_files=(), what="--out"):
    """Refuse a folder no report may take over; returns its resolved path."""
    path = resolve(out, what)
    shown = str(out)
    room = NAME_MAX - len(f".{TEMP_TAG}xxxxxxxx")     # the temporary folder's name is longer
    if (size := len(os.fsencode(path.name))) > room:
        raise GradlabError(f"{what} {shown[:40]!r}...: its last part is {size} bytes "
                           f"long; gradlab's folder names are at most {room} bytes")
    if path.is_symlink():
        raise GradlabError(f"{what} {shown!r} is a symbolic link; gradlab writes only into "
                           "real folders")
    if path.exists() and not path.is_dir():
        raise GradlabError(f"{what} {shown!r} is a file, not a folder; give a folder path")
    if path == pathlib.Path(path.anchor):
        raise GradlabError(f"{what} {shown!r} is a filesystem root; give a folder of its own")
    home = pathlib.Path.home().resolve()
    if path == home:
        raise GradlabError(f"{what} {shown!r} is the home folder; give a folder of its own")
    cwd = pathlib.Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise GradlabError(f"{what} {shown!r} is the current folder or one above it; give "
                           "a folder of its own, e.g. reports/mine")
    if any(part in REPOSITORY_MARKERS for part in path.parts):
        raise GradlabError(f"{what} {shown!r} is inside a repository's own metadata")
    for marker in REPOSITORY_MARKERS:
        if (path / marker).exists():
            raise GradlabError(f"{what} {shown!r} is the root of a repository (it holds "
                               f"{marker}); give a folder of its own inside it")
    for cell_file in cell_files:
        if path in pathlib.Path(cell_file).resolve().parents:
            raise GradlabError(f"{what} {shown!r} holds the cell file {str(cell_file)!r} "
                               "being used; write elsewhere")
    if (above := owner_above(path)) is not None:
        raise GradlabError(f"{what} {shown!r} is part of gradlab's output in {str(above)!r}; "
                           "give a folder of its own")
    return path


def check_target(out, *, force=False, cell_files=(), what="--out"):
    """Refuse early (before any work) a folder gradlab may not write. Without `force` the
    folder must be new, empty, or hold only files gradlab wrote there."""
    path = refuse_unsafe(out, cell_files=cell_files, what=what)
    others = readable_foreign(out, path, what)
    if others and not force:
        inner = nested(others)           # gradlab's, but another report's (a subfolder)
        raise GradlabError(f"{what} {str(out)!r} holds {len(others)} file(s) "
                           f"{'not of this report' if inner else 'gradlab did not write'} "
                           f"(e.g. {others[0]!r}{inner}); pass --force to write beside "
                           "them (they are never deleted), or choose an empty folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise GradlabError(f"cannot write to {str(out)!r}: {str(probe)!r} is a file, not a "
                           "folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GradlabError(f"cannot write to {str(out)!r}: {str(probe)!r} is not writable")
    can_create_in(probe, str(out), what)   # the folder itself, or where it will be made:
    return path                            # only trying tells (a read-only mount, /proc)
