"""What gradlab wrote in a folder: the manifest (`.gradlab-manifest.json`) naming each file
with the SHA-256 of the bytes gradlab wrote, and the ownership read from it. A file is
gradlab's only while it is listed, is a plain file reached through no link, and still has
those bytes; a manifest is data from the folder, so every name in it is checked."""

import hashlib
import json
import os
import pathlib
import re

from .errors import GradlabError

MANIFEST = ".gradlab-manifest.json"
TEMP_TAG = ".gradlab-"          # temporary names: .<target name>.gradlab-<random>
# what mkstemp / mkdtemp append to a prefix: eight characters from [a-z0-9_]
LEFTOVER = re.compile(r"^\.(?P<target>.+)\.gradlab-[a-z0-9_]{8}(?P<tmp>\.tmp)?$")


def temp_stem(name):
    """A file's name as its temporary files carry it: at most 200 bytes, so that with
    `.`, TEMP_TAG, mkstemp's 8 characters and `.tmp` it still fits in a name."""
    return os.fsdecode(os.fsencode(name)[:200])


def digest(data):
    return hashlib.sha256(data).hexdigest()


def file_digest(path):
    """The SHA-256 of a file's bytes (hex), read in blocks; None where it cannot be read
    or is not a regular file (/dev/zero never ends, a FIFO waits for a writer forever)."""
    try:
        if not pathlib.Path(path).is_file():
            return None
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        return sha.hexdigest()
    except (OSError, ValueError):
        return None


def plain_name(rel):
    """Is `rel` a plain relative path inside a folder (no root, no '.' or '..', not the
    manifest or a temporary name)? The only names gradlab writes, deletes or trusts."""
    if not isinstance(rel, str) or not rel or any(c in rel for c in "\0\\"):
        return False
    return not (rel.startswith("/") or rel.endswith("/") or "//" in rel or rel == MANIFEST
                or TEMP_TAG in rel or any(p in (".", "..") for p in rel.split("/")))


def _manifest(folder):
    """The parsed manifest if `folder` holds gradlab's (a plain JSON file "written by"
    gradlab), else None: a link or any other file of that name is the user's."""
    path = pathlib.Path(folder) / MANIFEST
    try:
        data = None if path.is_symlink() or not path.is_file() else json.loads(
            path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):   # (nested too deep)
        return None
    return data if isinstance(data, dict) and data.get("written by") == "gradlab" else None


def read_manifest(folder):
    """{relative path: hashes} of what gradlab wrote in `folder` ({} if none): SHA-256s of
    the written bytes and, while a write file by file is under way ("pending"), of the
    bytes it replaces. A name that is not a plain path inside the folder is ignored: a
    manifest is data, and must never point gradlab at a file elsewhere."""
    data, listed = _manifest(folder) or {}, {}
    for key in ("files", "pending"):
        table = data.get(key, {})
        for rel, sha in (table.items() if isinstance(table, dict) else ()):
            if plain_name(rel) and isinstance(sha, str):
                listed[rel] = listed.get(rel, ()) + (sha,)
    return listed


def owner_above(path):
    """The nearest folder above `path` whose gradlab output holds files inside `path` or
    inside a folder between them (a report's figures/ is part of that report, not a folder
    of its own, and so is figures/x: a report there would be written into another's), or
    None."""
    path = pathlib.Path(path)
    for above in path.parents:
        parts = path.relative_to(above).parts
        inside = tuple("/".join(parts[:k]) + "/" for k in range(1, len(parts) + 1))
        if any(rel.startswith(inside) for rel in read_manifest(above)):
            return above
    return None


def manifest_bytes(files, pending=None, made=False):
    """The manifest for {relative path: bytes}: sorted, so the same files give the same
    bytes. `pending` {relative path: sha256}: bytes still there until a write file by file
    has finished, gradlab's all the same (so an interrupted write can be retried). `made`:
    gradlab created the folder itself (`made_here`)."""
    listed = {name: digest(data) for name, data in sorted(files.items())}
    table = {"written by": "gradlab", "files": listed}
    if made:
        table["folder"] = "made by gradlab"
    if pending:
        table["pending"] = dict(sorted(pending.items()))
    return (json.dumps(table, indent=1, sort_keys=True) + "\n").encode()


def made_here(folder):
    """Did gradlab create `folder` itself (not write into a folder the user made)? Only
    such a folder may be replaced whole: the user's keeps its inode, mode, ACLs."""
    return (_manifest(folder) or {}).get("folder") == "made by gradlab"


def owned(folder, manifest, rel):
    """Is folder/rel a plain file gradlab wrote, unchanged since, reached through no link?"""
    if rel not in manifest:
        return False
    path = folder
    for part in pathlib.PurePosixPath(rel).parts:
        path = path / part
        if path.is_symlink():
            return False
    if not path.is_file():
        return False
    try:
        return digest(path.read_bytes()) in manifest[rel]
    except OSError:
        return False


def foreign(folder):
    """Relative paths in `folder` that gradlab did not write (or that changed since), sorted:
    files, links, and empty folders (written "name/"). The manifest itself is gradlab's,
    and so is what a killed run left of a file it lists (`leftover`)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    manifest, ours, found = read_manifest(folder), _manifest(folder) is not None, []
    # depth first, each folder's entries by name; a stack of the folders being read, not
    # recursion: a user's tree 1,000 folders deep raised RecursionError
    walking = [("", iter(sorted(os.scandir(folder), key=lambda e: e.name)))]
    while walking:
        prefix, entries = walking[-1]
        entry = next(entries, None)
        if entry is None:
            walking.pop()
            continue
        rel = prefix + entry.name
        if rel == MANIFEST and ours:
            continue
        if entry.is_dir(follow_symlinks=False):
            inside = sorted(os.scandir(entry.path), key=lambda e: e.name)
            if not inside:
                found.append(rel + "/")
            walking.append((rel + "/", iter(inside)))
        elif not owned(folder, manifest, rel) and not leftover(entry, prefix, manifest):
            found.append(rel)
    return found


def readable_foreign(out, path, what="--out"):
    """`foreign(path)`, refused in one line naming `what` where a folder in it cannot be
    read (gradlab must see what is there before it writes beside it)."""
    try:
        return foreign(path)
    except OSError as err:
        inside = err.filename if err.filename is not None else path
        raise GradlabError(f"{what} {str(out)!r}: cannot read {str(inside)!r} in it "
                           f"({(err.strerror or str(err)).lower()}); gradlab looks at what "
                           "a folder holds before it writes there: make it readable, or "
                           "choose another folder") from None


def leftover(entry, prefix, manifest):
    """Is `entry` (a DirEntry in the subfolder `prefix` of a folder whose manifest lists
    `manifest`) the temporary file a killed run left of a listed file or of the manifest,
    .<name>.gradlab-<8>.tmp, which the next run removes (`outputs.clean_leftovers`)?
    Counted as the user's, it refused that run before it could remove it."""
    match = LEFTOVER.match(entry.name)
    if not (match and match["tmp"] and entry.is_file(follow_symlinks=False)):
        return False
    return match["target"] in {temp_stem(rel[len(prefix):]) for rel in (*manifest, MANIFEST)
                               if rel.startswith(prefix) and "/" not in rel[len(prefix):]}


def nested(others):
    """'; <sub> is another report's folder' where the files `foreign` lists hold one of
    gradlab's own manifests in a subfolder (a report written inside this one: gradlab
    wrote those files, but not as part of this folder's report), else ''."""
    sub = next((o for o in others if o.endswith("/" + MANIFEST)), None)
    return f"; {sub.rsplit('/', 1)[0]!r} is another report's folder" if sub else ""


def other_kind(manifest, figures, out):
    """The one-line refusal when the folder's `manifest` lists another kind of report than
    one whose every report draws `figures` (their names: a report of that kind lists them
    all), else None. Sharing a figure is not enough: a gradient-decay report of gated
    cells draws `drift` too, which a learnability report replaced without --force."""
    theirs = {pathlib.PurePosixPath(rel).stem for rel in manifest if rel.startswith("figures/")}
    if figures and theirs and not set(figures) <= theirs:
        return (f"--out {str(out)!r} holds another kind of gradlab report (its figures: "
                f"{', '.join(sorted(theirs))}), which this one would replace; choose another "
                "--out, or pass --force to replace it")
    return None
