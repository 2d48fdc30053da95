"""Folders gradlab owns: what it may write, replace or delete, atomically, one run at a time.

Ownership, not a flag, decides what may be deleted. Every folder gradlab writes holds a
manifest, `.gradlab-manifest.json`, naming each file it wrote with the SHA-256 of the bytes
it wrote (read in `ownership`). A file is gradlab's to replace or delete only while it is
listed there, is a plain file (not a link) and still has those bytes; anything else (a
file the user added or edited, a link, a folder of theirs) is left as it is. `force`
lets gradlab write its files into a folder that also holds such files; it never lets it
delete or overwrite one. Some folders are refused outright (`refuse_unsafe`): a filesystem
root, the home folder, the current folder or one above it, a repository's root, a folder
inside `.git`, a folder that holds a cell file in use, and a link.

Writing (`write_files`) happens under a lock on the parent folder (`flock`, released by
the kernel when a process dies), so concurrent runs to one place take turns and none is
lost. A folder gradlab owns whole is built beside its target and swapped in with one
atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`): at every instant either the old or
the new folder is at the path, complete. Where the folder also holds the user's files, or
the exchange (or the parent folder) is not available, each file is replaced atomically
on its own (`os.replace`) and the manifest last. Temporary names start with
`.<target>.gradlab-`; a later run removes what a killed run left, and a failed write the
folders it made above its target. A new file (`write_new`: a checkpoint) is staged the
same way and hard-linked into place: it never replaces one.
"""

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import pathlib
import shutil
import stat
import tempfile

from .errors import GradlabError
from .paths import make_parents, name_fits, remove_empty
from .signals import uninterrupted
from .ownership import (LEFTOVER, MANIFEST, TEMP_TAG, digest, foreign, made_here,
                        manifest_bytes, other_kind, owned, plain_name, read_manifest,
                        readable_foreign, temp_stem)
from .targets import check_target, refuse_unsafe, resolve   # (outputs.check_target too)

MARK = ".gradlab-partial"       # inside a temporary folder: it is gradlab's, and unfinished


def snapshot(out):
    """What gradlab has written at `out` now (its manifest's bytes, or b""): a run compares
    it before and after its work (did another run write there meanwhile?)."""
    try:
        return (resolve(out) / MANIFEST).read_bytes()
    except (OSError, GradlabError):
        return b""


# -- locking and leftovers -----------------------------------------------------------------
@contextlib.contextmanager
def locked(parent):
    """Hold an exclusive lock on the folder `parent` (no file is created for it)."""
    fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:                  # (closing releases the lock)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clean_leftovers(path):
    """Remove what a killed run writing `path` left, and nothing else (call with the lock
    held): beside it, `_whole`'s folders (.<name>.gradlab-<8 random characters>, holding
    the unfinished-mark, nothing, or only files gradlab wrote); inside it, the temporary
    files of `_atomic_bytes` (.<file>.gradlab-<8>.tmp) of files its manifest lists."""
    for entry in list(os.scandir(path.parent)):
        match = LEFTOVER.match(entry.name)
        if not match or match["target"] != path.name or match["tmp"]:
            continue
        if entry.is_dir(follow_symlinks=False):
            inside = os.listdir(entry.path)
            if MARK in inside or not inside or (MANIFEST in inside and not foreign(entry.path)):
                shutil.rmtree(entry.path, ignore_errors=True)
    if not path.is_dir() or path.is_symlink():
        return
    names = {}                                 # folder inside path -> names gradlab writes
    for rel in (*read_manifest(path), MANIFEST):
        *folders, name = pathlib.PurePosixPath(rel).parts
        if not any(path.joinpath(*folders[:i + 1]).is_symlink() for i in range(len(folders))):
            names.setdefault(path.joinpath(*folders), set()).add(name)
    for folder, listed in names.items():
        stems = {temp_stem(name) for name in listed}          # as temporary names carry them
        for entry in list(os.scandir(folder)) if folder.is_dir() else ():
            match = LEFTOVER.match(entry.name)
            if (match and match["tmp"] and match["target"] in stems
                    and entry.is_file(follow_symlinks=False)):
                os.unlink(entry.path)


# -- writing -----------------------------------------------------------------------------
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a, b):
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()    # (EBUSY: b is a mount point, such as a volume: it cannot move)
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EBUSY):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _check_names(files):
    for rel in files:
        if not plain_name(rel):
            raise GradlabError(f"refusing to write {rel!r}: not a plain name inside the folder")
        for part in pathlib.PurePosixPath(rel).parts:
            name_fits(part, rel, "refusing to write")


def _fill(folder, files):
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def write_files(out, files, *, replace=True, force=False, cell_files=(), what="--out",
                expect=None, notice=None, complete=None, kind=()):
    """Write {relative path: bytes} into the folder `out`, which gradlab then owns.

    replace=True (a report): the files gradlab wrote there before and does not write now
    are removed. replace=False (derivation documents): its other files of gradlab's stay.
    Files gradlab did not write are never touched; one in the way is refused. `expect`: the
    `snapshot` taken when the run began; if another run wrote here since, `notice` is told
    before this run's output replaces it. `complete(path)`, if given, returns more
    {relative path: bytes} computed under the lock from what the folder holds then (an
    index of another run's pages). `kind`: the figures every report of its kind draws, so
    that another kind of report is not replaced without `force`."""
    _check_names(files)
    path = refuse_unsafe(out, cell_files=cell_files, what=what)
    made = []                            # folders this write makes above --out
    try:
        make_parents(path, made)
        with locked(path.parent):
            clean_leftovers(path)
            if kind and not force and (refusal := other_kind(read_manifest(path), kind, out)):
                raise GradlabError(refusal)          # (written meanwhile: checked at start too)
            if expect is not None and notice is not None and snapshot(out) != expect:
                notice(f"another run wrote {str(out)!r} while this one worked; this run's "
                       "output replaces it")
            if complete is not None:
                files = {**files, **complete(path)}
            others = in_the_way(out, check_target(out, force=force, cell_files=cell_files,
                                                  what=what), (*files, MANIFEST), what)
            if not replace:
                manifest = read_manifest(path)
                kept = {rel: (path / rel).read_bytes() for rel in manifest
                        if rel not in files and owned(path, manifest, rel)}
                files = {**kept, **files}
            # a folder that exists is swapped whole only if gradlab made it (its manifest
            # says so, and it holds nothing else): a folder the user made is written into,
            # so that it stays theirs, with its inode, mode, group, ACLs and attributes
            ours = not path.exists() or made_here(path)
            with uninterrupted():
                if not (ours and not others and _whole(path, files)):
                    in_the_way(out, path, (*files, MANIFEST), what)   # saved meanwhile
                    _each(path, files)
    except BaseException as err:         # (the folders it made above --out: if empty, gone)
        remove_empty(made)
        raise (GradlabError(f"cannot write {str(out)!r}: {err.strerror or err}") if
               isinstance(err, OSError) else err) from None
    return path


def in_the_way(out, path, names, what="--out"):
    """The entries of `path` gradlab did not write (`foreign`), refusing in one line when one
    sits where a name in `names` (relative paths gradlab is about to write) would go."""
    others = readable_foreign(out, path, what)
    blocked = [rel for rel in names if any(rel == o.rstrip("/") or o.startswith(rel + "/")
               or (not o.endswith("/") and rel.startswith(o + "/")) for o in others)]
    if blocked:            # named as what is there: a link `figures`, not figures/decay.png
        rel = blocked[0]
        shown = next((o for o in others if not o.endswith("/") and rel.startswith(o + "/")),
                     rel)
        raise GradlabError(f"{what} {str(out)!r}: {shown!r} is in the way and gradlab "
                           "did not write it; move it away or choose another folder")
    return others


def _whole(path, files):
    """Build the folder beside `path` and swap it in; False if the system cannot swap, or
    the parent takes no new folder (read-only, EROFS too): the caller writes file by file."""
    try:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}{TEMP_TAG}", dir=path.parent))
    except OSError:            # (a folder that does not exist yet: check_target told)
        return False
    try:
        (tmp / MARK).touch()
        os.chmod(tmp, 0o777 & ~_umask())       # mkdtemp's 0700 is for secrets, not reports
        _fill(tmp, files)
        (tmp / MANIFEST).write_bytes(manifest_bytes(files, made=True))
        if not path.exists():
            (tmp / MARK).unlink()
            os.rename(tmp, path)
            return True
        _keep_mode(path, tmp)
        (tmp / MARK).unlink()
        if not _exchange(tmp, path):
            (tmp / MARK).touch()
            return False
        if foreign(tmp):      # tmp holds the old folder, and the user saved a file there
            _exchange(tmp, path)               # while this run built the new one: put it
            (tmp / MARK).touch()               # back; the caller writes file by file
            return False
        (tmp / MARK).touch()                   # tmp now holds the old folder: gradlab's
        return True
    finally:
        if tmp.exists():
            remove_marked(tmp)


def remove_marked(folder):
    """Remove a temporary folder of `_whole`'s, its unfinished-mark last: a run killed
    part way leaves the mark, by which the next run's `clean_leftovers` knows the folder
    for gradlab's (a folder that kept some files but lost both the mark and its manifest
    would stay beside the report for good)."""
    for entry in list(os.scandir(folder)):
        if entry.name == MARK:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    shutil.rmtree(folder, ignore_errors=True)


def _keep_mode(old, new):
    """Give the folder `new`, about to replace `old`, old's mode and group (private stays)."""
    st = os.stat(old)
    with contextlib.suppress(OSError):
        os.chown(new, -1, st.st_gid)
    os.chmod(new, stat.S_IMODE(st.st_mode))


def _each(path, files):
    """Replace file by file (each atomically), remove gradlab's stale files, manifest last.
    First the manifest lists the new files with the bytes they replace as pending, so a
    write cut short (a kill) leaves every file there gradlab's, and the next run can
    replace them; the final manifest drops the pending ones. A write that fails (a full
    disk) is undone (`_undo`): the folder is left as it was."""
    before, made = read_manifest(path), made_here(path) or not path.exists()
    folders = []                         # the folders this write makes, deepest first
    make_parents(path / MANIFEST, folders)
    old = {rel: (path / rel).read_bytes() for rel in before if owned(path, before, rel)}
    manifest = (path / MANIFEST).read_bytes() if (path / MANIFEST).is_file() else None
    try:
        if old or files:
            _atomic_bytes(path / MANIFEST, manifest_bytes(
                files, {rel: digest(data) for rel, data in old.items()}, made))
        for rel, data in files.items():
            make_parents(path / rel, folders)
            _atomic_bytes(path / rel, data)
        for rel in before:
            if rel not in files and rel in old and owned(path, before, rel):
                (path / rel).unlink()
                parent = (path / rel).parent
                while parent != path and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
        _atomic_bytes(path / MANIFEST, manifest_bytes(files, made=made))
    except BaseException:
        _undo(path, files, old, manifest, folders)
        raise


def _undo(path, files, old, manifest, folders):
    """Put back what a failed `_each` changed: its new files out first (a full disk has room
    again), then the files of gradlab's it replaced or removed, the folders it made, the
    manifest last. At a failure it stops, the pending manifest naming every file there."""
    try:
        for rel, data in files.items():
            target = path / rel
            if rel not in old and target.is_file() and not target.is_symlink() and \
                    target.read_bytes() == data:
                target.unlink()
        for rel, data in old.items():
            if not (path / rel).is_file() or (path / rel).read_bytes() != data:
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                _atomic_bytes(path / rel, data)
        if manifest is None:
            (path / MANIFEST).unlink(missing_ok=True)
        else:
            _atomic_bytes(path / MANIFEST, manifest)
        remove_empty(folders)
    except OSError:
        pass


def _staged(target, data):
    """A temporary file beside `target` (.<stem>.gradlab-XXXXXXXX.tmp) holding `data`,
    with the mode a new file gets (mkstemp's 0600 is for secrets)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{temp_stem(target.name)}{TEMP_TAG}", suffix=".tmp",
                               dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _atomic_bytes(target, data):
    tmp = _staged(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_new(target, data):
    """Write `data` to `target` as a new file, atomically and never replacing one: staged
    beside it, then hard-linked into place (the link fails if `target` exists), so a kill
    at any point leaves no file there or the whole one, never an empty file that refuses
    every rerun. Under the folder's lock, what a killed call left beside it is removed
    first. Raises OSError (FileExistsError where `target` exists)."""
    target = pathlib.Path(target)
    # signals held from staging to linking: a kill (SIGTERM, SIGHUP: no finally runs)
    # between them left the staged .<name>.gradlab-XXXXXXXX.tmp in the user's folder
    with locked(target.parent), uninterrupted():
        with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
            for entry in entries:
                match = LEFTOVER.match(entry.name)
                if (match and match["tmp"] and match["target"] == temp_stem(target.name)
                        and entry.is_file(follow_symlinks=False)):
                    os.unlink(entry.path)
        tmp = _staged(target, data)
        try:
            os.link(tmp, target)
        except OSError as err:                   # a filesystem without hard links: a
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise                            # rename, the check for an existing file
            if os.path.lexists(target):          # just before it
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST)) from None
            os.rename(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
