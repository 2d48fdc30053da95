"""The cell registry: built-in cells register themselves; lookups list the valid names."""

import contextlib
import hashlib
import importlib
import importlib.util
import os
import pathlib
import sys
import threading
import traceback

from .errors import GradlabError, entries
from . import exits
from .exits import ExitCalled, guarded
from .signals import noting_ctrl_c

CELLS = {}
USER_MODULE = "gradlab_user_"   # a cell file, loaded by path, is this module + a digest


def cell_entries(value, what="cells"):
    """The entries of a comma-separated list of cells (`what` names it in errors), split
    at its commas but for those inside a cell file's path (a folder 'runs,2024'); an
    empty entry ('lstm,,gru') refused. Pieces up to the next that holds a ':' are one
    entry where they join into FILE.py:NAME and FILE is a file, or the first is a path's
    start, no cell's name ('/tmp/a', '~/a': then 'no such file' names the whole path; a
    typo such as 'rnn-tanh' stays an unknown cell). A path is no longer than PATH_MAX:
    one stat a piece at most, however long the list."""
    pieces = str(value).split(",")
    ends = [k for k, piece in enumerate(pieces) if ":" in piece]
    sizes = [0]
    for piece in pieces:
        sizes.append(sizes[-1] + len(piece) + 1)
    joined, i, e = [], 0, 0
    while i < len(pieces):
        while e < len(ends) and ends[e] < i:        # the next piece with a ':', this one's
            e += 1                                   # own (a spec itself: joins nothing)
        j = i + 1
        if e < len(ends) and ends[e] > i and sizes[ends[e] + 1] - sizes[i] <= 4096:
            where = ",".join(pieces[i:ends[e] + 1]).rpartition(":")[0].strip()
            first = pieces[i].strip()                # ('' : an empty entry, refused)
            path_start = not first.isidentifier() and (first.startswith("~") or any(
                sep and sep in first for sep in ("/", os.sep, os.altsep)))
            if where.endswith(".py") and (path_start
                                          or os.path.isfile(os.path.expanduser(where))):
                j = ends[e] + 1
        joined.append(",".join(pieces[i:j]))
        i = j
    return entries(value, what, joined)


def builtin(c):
    """Is `c` the registered cell of its name (not a user's cell that shares the name)?
    What gradlab knows by name (torch modules, closed-form theory, oracles) is only for it."""
    return CELLS.get(getattr(c, "name", None)) is c


def spec_of(c):
    """Where a cell declared outside the catalogue can be found again, as `cell` takes it
    ("path/to/file.py:NAME" for a cell file, else "package.module:NAME"): the name it is
    bound to at the top level of the module its declaration was written in; None where
    it is bound to none (declared inside a function)."""
    fn = getattr(c, "declaration", None)
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    for attr, value in list(vars(module).items()) if module is not None else ():
        if value is c and attr.isidentifier():
            file = getattr(module, "__file__", None)
            if module.__name__.startswith(USER_MODULE) and file:
                return f"{file}:{attr}"
            return f"{module.__name__}:{attr}"
    return None


def register(cell):
    """Add a declared cell to the registry (used as a decorator above `@declare`)."""
    if cell.name in CELLS:
        raise GradlabError(f"a cell named '{cell.name}' is already registered")
    CELLS[cell.name] = cell
    return cell


def _load():
    from . import catalogue  # noqa: F401  (declaring the built-in cells registers them)


def cells():
    """Every registered cell name, in catalogue order."""
    _load()
    return list(CELLS)


def cell(name):
    """A cell by registered name, by "path/to/file.py:NAME" or "package.module:NAME", or a
    `Cell` object as it is."""
    from .symbolic.cell import Cell
    if isinstance(name, Cell):
        return name
    if not isinstance(name, str):
        hint = ("; for a torch module, cell, params = gradlab.from_torch(module)"
                if type(name).__module__.startswith("torch.nn") else "")
        raise GradlabError(f"a cell is a name or a Cell object, got {type(name).__name__}"
                           + hint)
    if ":" in name:
        return _user_cell(name, Cell)
    _load()
    try:
        return CELLS[name]
    except KeyError:
        shown = name if len(name) <= 60 else name[:57] + "..."
        if name.strip().endswith(".py"):      # a cell file, named without its cell
            raise GradlabError(f"{shown!r} names a file, not a cell: name the cell in it as "
                               f"{shown.strip()}:NAME (NAME: the variable its "
                               "@gradlab.declare cell is bound to)") from None
        raise GradlabError(f"unknown cell {shown!r}; valid cells: {', '.join(CELLS)}, or "
                           "path/to/file.py:NAME for a cell of your own") from None


def _user_cell(spec, Cell):
    module, where, attr = load(spec, "cell")
    found = getattr(module, attr, None)
    if not isinstance(found, Cell) and module.__name__ in _LOADING:
        raise GradlabError(f"{where} asks for its own cell {attr!r} by path while it is "
                           f"still loading, before that cell exists; use the cell itself")
    if not isinstance(found, Cell):
        cells_there = [k for k, v in vars(module).items() if isinstance(v, Cell)]
        what = ("" if found is None and not hasattr(module, attr) else
                f" ({attr!r} there is {_article(type(found).__name__)}" + (
                    ": declare it with @gradlab.declare(state=..., params=..., source=...)"
                    if callable(found) else "") + ")")
        raise GradlabError(f"{where} has no cell {attr!r}{what}; cells there: "
                           f"{', '.join(cells_there) or 'none'}")
    return found


def _article(word):
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


@contextlib.contextmanager
def _on_path(folder):
    """`folder` first on sys.path for the block (the file's neighbours import), then as
    before: importing a cell file leaves the process's path, and its working directory,
    as it found them (a file that called os.chdir moved a relative --out elsewhere; one
    that called sys.path.clear() failed report's later imports with an internal error).
    The folders of other loads under way (in other threads) stay on the path."""
    folder = str(folder)
    try:
        cwd = os.getcwd()
    except OSError:                      # a working directory since removed: nothing to keep
        cwd = None
    # the path as the caller has it: without the folders of other loads under way, which
    # put them back themselves (kept, one that ended first left its folder on for good)
    before = [p for p in sys.path if p not in _PLACED]
    added = folder not in before      # (placed by another load too: on while either runs)
    if added:
        if folder not in sys.path:
            sys.path.insert(0, folder)
        _PLACED.append(folder)
    try:
        yield
    finally:
        if added:
            _PLACED.remove(folder)
        others = [p for p in dict.fromkeys(reversed(_PLACED)) if p not in before]
        sys.path[:] = others + before
        if cwd is not None and os.getcwd() != cwd:
            os.chdir(cwd)


_PLACED = []     # the folders `_on_path` has put first on sys.path, for loads under way


@contextlib.contextmanager
def _running(folder):
    """The block runs a file or module of the user's: `folder` on the path (`_on_path`),
    stdout on stderr and os._exit refused (`guarded`), torch's process-wide settings put
    back after it (`_torch_kept`); yields `noting_ctrl_c`'s list."""
    with guarded(), _on_path(folder), _torch_kept(), noting_ctrl_c() as noted:
        yield noted


@contextlib.contextmanager
def _torch_kept():
    """Where torch is imported already (every command that computes imports it before it
    loads a cell), what the file sets of torch's process-wide state (default device and
    dtype, grad mode, seeds) is put back after it, as after a function under test
    (`torch_state.kept`): a file that set the default device to "meta" failed verify and
    bench with an internal error, and a file's manual_seed moved the caller's random
    numbers. Where torch is not (derive), nothing gradlab does later reads them, and
    torch is not imported for it."""
    if "torch" not in sys.modules:
        yield
        return
    from .torch_state import kept
    with kept():
        yield


def load(spec, what="cell"):
    """(module, where, name) for "path/to/file.py:NAME" or "package.module:NAME": the file
    or module imported (and so run), once per process; every failure one line."""
    if not isinstance(spec, str):
        raise GradlabError(f"a {what} is given as path/to/file.py:NAME or "
                           f"package.module:NAME, got {type(spec).__name__}")
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier() or ":" in where and not where.endswith(".py"):
        raise GradlabError(f"{what} {spec!r} is not path/to/file.py:NAME or "
                           f"package.module:NAME (one ':', a file or module before it, a {what} "
                           "name after it)")
    if where.endswith(".py"):
        path = pathlib.Path(os.path.expanduser(where))   # (as --out and --cells take ~)
        if not path.is_file():
            kind = ("a folder" if path.is_dir() else "a fifo or a device"
                    if path.exists() else None)
            raise GradlabError(f"{where!r} is {kind}, not a Python file (in {what} {spec!r})"
                               if kind else f"no such file {where!r} (in {what} {spec!r})")
        # a digest of the path, not hash(): str hashes are salted per process, and the
        # file's code sees its module's name (logging.getLogger(__name__), a repr)
        digest = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:16]
        file_key = f"{USER_MODULE}{digest}"
        with _lock_of(file_key):        # (a second thread would find it half run, and no
            module = _load_file(path, file_key, where, what, spec)              # cell)
    else:
        if not all(part.isidentifier() for part in where.split(".")):
            raise GradlabError(f"{what} {spec!r}: {where!r} is neither a .py file nor a module "
                               "name (package.module)")
        noted = [None]   # (a Ctrl-C before the block began is the user's)
        try:     # from the working directory too, as `python -m` would find it
            with _running(pathlib.Path.cwd()) as noted:
                module = importlib.import_module(where)
        except GradlabError:
            raise
        except BaseException as err:
            _own_interrupt(err, noted)
            raise GradlabError(f"cannot import {where!r} (in {what} {spec!r}): "
                               f"{_describe(err)}") from None
    return module, where, attr


_LOCKS, _LOCKS_LOCK = {}, threading.Lock()
_LOADING = set()   # the modules of cell files whose code is running now


def _lock_of(module_name):
    """The lock of one file's loading: it loads once, however many threads ask for it, and
    a file whose import loads another file in a thread of its own does not wait on itself."""
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(module_name, threading.RLock())


def _load_file(path, file_key, where, what, spec):
    """The module of the file at `path` as it reads now, run once per process for each
    contents the file has had (as `file_key` + a digest of them): a file edited while a
    REPL or notebook runs is run again at its next load, not served from the first, and
    a load of an unchanged file reads it and finds the module it ran (no run)."""
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as err:
        raise GradlabError(f"cannot load {where} (in {what} {spec!r}): {_describe(err)}") \
            from None
    module_name = f"{file_key}_{hashlib.sha256(source).hexdigest()[:16]}"
    module = sys.modules.get(module_name)
    if module is None:
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        noted = [None]
        try:         # its folder on the path while it loads, as `python path.py` has it;
            with _running(path.resolve().parent) as noted:     # what it prints: stderr
                _LOADING.add(module_name)
                try:        # (the bytes read above, not the file read again: it may
                    exec(loader.loader.source_to_code(source, str(path)),   # change)
                         vars(module))
                finally:
                    _LOADING.discard(module_name)
        except GradlabError:
            del sys.modules[module_name]
            raise
        except BaseException as err:        # SystemExit, GeneratorExit, its own kinds too
            del sys.modules[module_name]
            _own_interrupt(err, noted)
            raise GradlabError(f"cannot load {where} (in {what} {spec!r}): "
                               f"{_describe(err)}") from None
    return module


def _own_interrupt(err, noted):
    """Re-raise `err` where it is the user's Ctrl-C (one arrived while the code ran, as
    `noting_ctrl_c` noted); a KeyboardInterrupt the code raised itself is its failure,
    one line like any other (it read as 'gradlab: interrupted', exit 130)."""
    if isinstance(err, KeyboardInterrupt) and noted:
        raise err


def _describe(err):
    """One line: what was raised, where in the user's code, and its message."""
    if isinstance(err, SyntaxError):
        at = f" at {err.filename}:{err.lineno}" if err.filename else ""   # (null bytes:
        return f"SyntaxError{at}: {err.msg}"                              # no place)
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<frozen") and f.filename not in (__file__, exits.__file__)
              and pathlib.Path(f.filename).parent.name != "importlib"]
    at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if isinstance(err, (SystemExit, ExitCalled)):
        how = "sys.exit" if isinstance(err, SystemExit) else "os._exit"
        return f"it called {how}({err.code!r}){at}"
    said = " ".join(str(err).split())
    if isinstance(err, KeyboardInterrupt):
        return f"it raised KeyboardInterrupt{at}{': ' + said if said else ''} (no Ctrl-C " \
               "was pressed)"
    return f"{type(err).__name__}{at}{': ' + said if said else ''}"
