"""The CLI's vocabulary: option types that refuse bad values in one line, the parsing of
--cells and number lists, and progress on stderr. Parsing and printing only: the commands
in `gradlab.commands` call the library with what these return."""

import errno
import math
import os
import shlex
import sys
import time

import click

from . import progress
from .errors import GradlabError, entries, not_decimal, not_whole


CELL_FILES = ("path/to/file.py:NAME imports, and so runs, that file; a comma inside a "
              "file's path is part of it (a folder 'runs,2024').")


def cell_entries(value):
    """--cells' entries (`registry.cell_entries`: a comma inside a cell file's path is
    part of it)."""
    from . import registry
    return registry.cell_entries(value, "--cells")


def cell_list(value):
    """--cells a,b,path.py:NAME -> list of Cell (validated, one line on error)."""
    from . import registry
    names = cell_entries(value)
    if not names:
        raise GradlabError(f"--cells {value!r} names no cell; valid: {', '.join(registry.cells())}")
    return [registry.cell(n) for n in names]


def cells_option(value, default):
    """--cells for report, bench, sweep, train and verify: names (or specs) as given, 'all',
    or the default."""
    from . import registry
    if value is None:
        return list(default)
    if value.strip() == "all":
        return registry.cells()
    entries = cell_entries(value)
    if "all" in entries and "all" not in registry.cells():
        raise GradlabError(f"--cells {value!r}: 'all' stands alone (every cell); give it by "
                           "itself or name the cells")
    chosen = [c.name if ":" not in spec else spec
              for spec, c in zip(entries, cell_list(value))]
    same = [_identity(n) for n in chosen]          # a file's cell by its file and name
    twice = [n for k, n in enumerate(chosen) if same[k] in same[:k]]
    if twice:
        raise GradlabError(f"--cells {value!r} names a cell twice ({twice[0]}); name each once")
    return chosen


def _identity(spec):
    """What a --cells entry names: a built-in by its name, FILE:NAME by the file's real
    path and the name (cf/janet.py:janet and cf/./janet.py:janet are one cell)."""
    if ":" not in spec:
        return spec
    path, name = spec.rsplit(":", 1)
    return (os.path.realpath(os.path.expanduser(path)), name)


REPORT_FILES = ("index.html", "report.md", "data.json")


def check_report_target(out, *, force=False, figures=(), cell_files=(), files=REPORT_FILES):
    """`outputs.check_target`, and a file of the user's (kept with --force) in the way of
    one the report writes (its pages, data and the `figures` every run draws) refused now,
    before any measurement, in the words `outputs.write_files` would use at the end."""
    from . import outputs
    from .ownership import other_kind, read_manifest
    path = outputs.check_target(out, force=force, cell_files=cell_files)
    manifest = read_manifest(path)
    if manifest and not all(f in manifest for f in files) and not force:
        shown = sorted(manifest)
        kind = "a report" if files == REPORT_FILES else "a sweep part"
        raise GradlabError(f"--out {str(out)!r} holds gradlab output that is not {kind} "
                           f"({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''}), "
                           "which this run would replace; choose another --out, or pass "
                           "--force to replace it")
    if not force and (refusal := other_kind(manifest, figures, out)):
        raise GradlabError(refusal)
    names = [*files, *(f"figures/{f}.{e}" for f in figures for e in ("png", "svg"))]
    outputs.in_the_way(out, path, [*names, outputs.MANIFEST])
    return path


def cell_files(specs):
    """The files that `path/to/file.py:NAME` and `package.module:NAME` specs load (a
    report may not overwrite them, nor be written into their folder): a module's file as
    imported (the cells are loaded before this is asked)."""
    files = []
    for spec in specs:
        source = spec.rpartition(":")[0] if ":" in spec else ""
        if source.endswith(".py"):
            files.append(source)
        elif source and getattr(sys.modules.get(source), "__file__", None):
            files.append(sys.modules[source].__file__)
    return files


class Number(click.ParamType):
    """A finite float, optionally bounded: nan, inf and words are refused in one line."""

    name = "number"

    def __init__(self, low=None, above=None, below=None):
        self.low, self.above, self.below = low, above, below

    def convert(self, value, param, ctx):
        if not_decimal(value):
            self.fail(not_decimal(value), param, ctx)
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and number < self.low:
            self.fail(f"{value!r} is below {self.low:g}", param, ctx)
        if self.above is not None and number <= self.above:
            mantissa = str(value).lower().split("e")[0]
            small = " (too small for a float: it rounds to 0)" if number == 0 and any(
                c in "123456789" for c in mantissa) else ""
            self.fail(f"{value!r} is not above {self.above:g}{small}", param, ctx)
        if self.below is not None and number >= self.below:
            self.fail(f"{value!r} is not below {self.below:g}", param, ctx)
        return number + 0.0                       # -0 is 0 (a report said "scale -0.0")


class Integer(click.IntRange):
    """click.IntRange in gradlab's one integer grammar (`errors.not_whole`): int() also
    reads '１６', '+1' and '1_0', which gradlab's own parsers (--arch, --shard, --tasks)
    refuse."""

    def convert(self, value, param, ctx):
        if not_whole(value):
            self.fail(not_whole(value) + self._bounds(), param, ctx)
        return super().convert(value, param, ctx)

    def _bounds(self):
        if self.min is None:
            return ""
        return f" (an integer >= {self.min})" if self.max is None else \
            f" (an integer in {self.min}..{self.max})"


POSITIVE = Integer(min=1)
SEED = Integer(0, 2 ** 63 - 1)                 # what torch.Generator.manual_seed takes
SCALE = Number(low=0.0)
FRACTION = Number(above=0.0, below=1.0)        # a relative tolerance: 0 < rtol < 1
FINITE = Number()
DEVICE = click.Choice(["cpu", "cuda"])
DTYPE = click.Choice(["float64", "float32"])
# --force, the same for every command that writes a folder gradlab owns (gradlab.outputs)
FORCE = click.option("--force", is_flag=True,
                     help="Write into --out even if it holds files gradlab did not write "
                          "(they are kept; only gradlab's own files are ever replaced), or "
                          "another kind of gradlab report (a report or sweep replaces it; "
                          "derive writes its documents beside it).")


class Progress:
    """Progress on stderr: a bar on a terminal, else one line per item done; inside an
    item, the steps of long loops (`gradlab.progress`) at most every few seconds."""

    QUIET = {True: 0.5, False: 5.0}      # seconds between step reports: terminal, log

    def __init__(self, total, label):
        self.total, self.label, self.done = total, label, 0
        self.bar, self.last = None, time.monotonic()
        self.listening = progress.listening(self.steps)
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr,
                                         show_pos=True)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        self.listening.__enter__()
        return self

    def __exit__(self, *exc):
        self.listening.__exit__(*exc)
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, item=None):
        self.done += 1
        if self.bar is not None:
            self.bar.label = self.label
            self.bar.update(1, item)
        else:
            name = f" {item}" if item is not None else ""
            echo(f"gradlab: {self.label}{name} ({self.done}/{self.total})", err=True)

    def steps(self, what, done, total):
        now = time.monotonic()
        if now - self.last < self.QUIET[self.bar is not None]:
            return
        self.last = now
        where = f"{what}: step {done:,} of {total:,}"
        if self.bar is not None:
            self.bar.label = f"{self.label} ({where})"
            self.bar.render_progress()
        else:
            echo(f"gradlab: item {self.done + 1} of {self.total}, {where}", err=True)


def echo(message="", *, err=False, nl=True):
    """click.echo that a reader who went away cannot stop (`| head`, `| true`, `>&-`): the
    work goes on and the exit status stays the verdict's (a disagreeing `check` piped into
    `true` exited 0, and a report whose progress line met a closed stderr was dropped,
    exit 0). The stream then goes to /dev/null, so later writes and the interpreter's last
    flush are dropped too. On stdout, the output itself, any other failure (a full disk)
    is an error; on stderr, where only notes and progress go, none stops the work."""
    try:
        click.echo(message, err=err, nl=nl)
    except (OSError, ValueError) as failed:
        gone = isinstance(failed, BrokenPipeError) or getattr(failed, "errno", None) == \
            errno.EBADF or (isinstance(failed, ValueError) and "closed file" in str(failed))
        if not (err or gone):                 # (a full disk: said to be stdout's, not
            raise GradlabError(                   # the report's, written whole before it)
                f"cannot write to standard output: {getattr(failed, 'strerror', None) or failed}"
            ) from None
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), (sys.stderr if err else sys.stdout)
                    .fileno())
        except (OSError, ValueError, AttributeError):    # (no real stream: a test runner)
            pass


def lenient_streams():
    """stdout and stderr in an encoding that cannot hold gradlab's symbols (σ, ∂, ξ:
    PYTHONIOENCODING=latin-1, a cp1252 console) write them escaped (\\u03c3), not fail
    half-way through the output (click forces UTF-8 only on an ASCII stream). A stream
    closed before gradlab started (`2>&-`: Python's is then None, and progress on it
    ended the work) goes to /dev/null: the work and its exit status stand."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:           # its descriptor is /dev/null's, then: a
            null = os.open(os.devnull, os.O_WRONLY)    # checked function writing to fd 1
            if null != fd:                             # or 2 reaches nothing of gradlab's
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.errors == "strict":
                try:
                    "σ∂ξλ₁≥−—".encode(stream.encoding)
                except UnicodeEncodeError:
                    stream.reconfigure(errors="backslashreplace")
        except (AttributeError, LookupError, ValueError, TypeError):   # not a plain
            pass                                                      # text stream


def notice(message):
    """A note on stderr that is not an error."""
    echo(f"gradlab: note: {message}", err=True)


def floats(value, what, low=None):
    """A comma-separated list of distinct finite numbers (none below `low`); a long value
    is shown cut short in the one line that refuses it."""
    text = str(value)
    shown = repr(text if len(text) <= 80 else f"{text[:50]}...{text[-20:]}")
    texts = entries(value, what)
    bad = next((not_decimal(v) for v in texts if not_decimal(v)), None)
    if bad:
        raise GradlabError(f"{what} {shown}: {bad}")
    def number(v):
        try:
            return float(v) + 0.0                           # (-0 is 0)
        except ValueError:
            raise GradlabError(f"{what} {shown}: {v!r} is not a number; give a "
                               "comma-separated list of numbers") from None
    values = tuple(number(v) for v in texts)
    if not values or len(set(values)) != len(values):
        first, twice = {}, None                  # (one pass: 20,000 entries took 20 s)
        for text, v in zip(texts, values):
            if v in first:
                twice = (first[v], text)
                break
            first[v] = text
        said = "" if twice is None else f": {twice[0]} is given twice" if twice[0] == twice[1] \
            else f": {twice[0]} and {twice[1]} are one float64 ({float(twice[0]) + 0.0:g})"
        raise GradlabError(f"{what} {shown} needs one or more distinct numbers{said}")
    odd = next((t for t, v in zip(texts, values) if not math.isfinite(v)), None)
    if odd is not None:
        raise GradlabError(f"{what} {shown}: {odd!r} is not a finite number")
    below = [v for v in values if low is not None and v < low]
    if below:
        raise GradlabError(f"{what} {shown}: {below[0]:g} is below {low:g}")
    return values


def given(name):
    """Whether the running command's option `name` was given (command line or environment),
    not left at its default."""
    source = click.get_current_context().get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE,
                      click.core.ParameterSource.ENVIRONMENT)


def shown(path):
    """A path for the terminal: bytes that are not UTF-8 (a name made elsewhere) as \\xff,
    where printing the name itself would fail (an output stream that encodes strictly)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def invoked(words):
    """The command line as run ("gradlab sweep --cells lstm ..."), for a report's header,
    when this process runs `gradlab <words>`; else (called from Python) "gradlab <words>"."""
    if sys.argv[1:1 + len(words.split())] == words.split():
        return "gradlab " + shlex.join(shown(a) for a in sys.argv[1:])
    return "gradlab " + words


def open_page(path):
    """Open `path` in the user's browser; a machine with none (a server, a container) gets
    one line saying where the page is, not the opener's own error output."""
    import os
    import subprocess

    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        if sys.platform == "win32":
            os.startfile(path)                                    # noqa: S606
            return
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        failed = subprocess.run([opener, str(path)], check=False, timeout=30, **quiet).returncode
    except (OSError, subprocess.TimeoutExpired):
        failed = True
    if failed:
        echo(f"gradlab: no browser opened the report; open {shown(path)} yourself", err=True)


def plural(count, noun):
    """'1 measurement', '3 measurements'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def cell_given(ctx, param, value):
    """A required CELL argument's callback: the value without surrounding spaces (as
    `strip_cell`: derive and check read ' lstm' as lstm, and so does init), or a one-line
    error listing the cells (click's own 'Missing argument' names none, and comes after
    missing options)."""
    if value is None:
        from . import registry
        raise GradlabError(f"give a CELL (valid cells: {', '.join(registry.cells())})")
    return strip_cell(value)


def strip_cell(name):
    """A cell name or spec as given on the command line, without surrounding spaces (as
    --cells reads each of its names)."""
    return name.strip() if isinstance(name, str) else name


# what torch's CPU allocator says when an allocation fails (a RuntimeError, not MemoryError)
ALLOCATOR_FAILED = ("can't allocate memory", "not enough memory", "DefaultCPUAllocator")


def allocator_failed(err):
    """Is `err` torch's CPU allocator running out of memory?"""
    return isinstance(err, RuntimeError) and any(s in str(err) for s in ALLOCATOR_FAILED)
