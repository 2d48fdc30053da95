"""A new file gradlab writes for the user (`gradlab init --write-torch`'s checkpoint): the
path checked before any work (never one that exists: gradlab overwrites nothing it did
not write), the bytes written atomically."""

import io
import os
import pathlib

from .errors import GradlabError
from .paths import can_create_in, name_fits, path_fits, plain, refuse_dangling


def new_file(path, what="--write-torch"):
    """Refuse, before any work, a path a new checkpoint may not be written to: empty, one
    that exists (a file, a folder, a link, even a dangling one: gradlab never overwrites
    a file), or whose folder is missing or not writable; the path."""
    text = "" if path is None else str(path)
    if text.strip() == "":
        raise GradlabError(f"{what} {text!r} is not a file path; give a new file, e.g. "
                           "model.pt")
    if text.strip() == "-":                 # (elsewhere: standard output; a checkpoint is binary)
        raise GradlabError(f"{what} '-': a checkpoint is written to a file, not to standard "
                           "output; give a new file, e.g. model.pt (./- for a file named -)")
    plain(text, what)
    target = pathlib.Path(os.path.expanduser(text))
    name_fits(target.name, text, what)
    path_fits(target.absolute(), text, what)
    if os.path.lexists(target) or text.endswith(("/", os.sep)):
        kind = ("is a symbolic link" if target.is_symlink() else "is a folder"
                if target.is_dir() or text.endswith(("/", os.sep)) else "exists")
        raise GradlabError(f"{what} {text!r} {kind}; give a new file (gradlab never "
                           "overwrites one)")
    folder = target.absolute().parent
    refuse_dangling(folder, text, what)
    above = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), None)
    if above is not None and not above.is_dir():
        raise GradlabError(f"{what} {text!r}: {str(above)!r} is a file, not a folder; give "
                           "a file in an existing folder")
    if not folder.is_dir():
        raise GradlabError(f"{what} {text!r}: the folder {str(folder)!r} does not exist; "
                           "create it, or give a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GradlabError(f"{what} {text!r}: the folder {str(folder)!r} is not writable")
    can_create_in(folder, text, what)
    return target


def save_new(state, path, what="--write-torch"):
    """torch.save(state) to `path` as a new file (never replacing one), atomically
    (`outputs.write_new`): a kill or Ctrl-C leaves no file there or the whole one."""
    import torch

    from .outputs import write_new

    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        write_new(path, buffer.getvalue())
    except OSError as err:
        raise GradlabError(f"{what} {str(path)!r}: {err.strerror or err}") from None
    return path
