"""Sweeps split across machines: shard I of N measures grid points I-1, I-1+N, ... in the
grid's fixed order and writes them to <out>/part.json; `read_parts` checks that the parts
come from one sweep (same grid and settings), are well formed, and cover the grid exactly
(no point missing, twice, or off the grid) before `sweep.report` draws them.
"""

import dataclasses
import hashlib
import json
import math
import pathlib
import re

from .. import theory
from ..ownership import MANIFEST, read_manifest
from ..errors import GradlabError, non_ascii
from .publish import FULL_DIGITS, dumps, loads
from .sweep import PART, STATUSES, Grid, is_int, is_number

PART_KEYS = ("grid", "gated", "shard", "points", "command", "equations")


def parse_shard(text):
    """'I/N' -> (I, N) with 1 <= I <= N, in ASCII digits (`errors.non_ascii`)."""
    if non_ascii(text):
        raise GradlabError(f"--shard {non_ascii(text)} (I/N, e.g. 2/8)")
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", text) if isinstance(text, str) else None
    if match is None:                  # digits only: int() reads ' 1', '+1' and '1_0' too
        raise GradlabError(f"--shard {text!r} is not I/N (e.g. 2/8)")
    i, n = int(match[1]), int(match[2])
    if not 1 <= i <= n:
        raise GradlabError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def shard_points(grid, shard=None):
    """The grid points shard (I, N) measures: points I-1, I-1+N, ... of `grid.points()`
    (all of them for None). Refuses N above the number of points, where some shard would
    measure nothing."""
    if shard is None:
        return grid.points()
    i, n = shard
    total = len(grid.points())
    if not (is_int(i) and is_int(n) and 1 <= i <= n):
        raise GradlabError(f"--shard {i}/{n}: need integers 1 <= I <= N")
    if n > total:
        raise GradlabError(f"--shard {i}/{n}: N = {n} is more than the grid's {total} "
                           f"points; use N <= {total}")
    return grid.points()[i - 1::n]


def default_out(shard):
    """Where a run writes without --out: its part for a shard, else the report."""
    if shard:
        return f"reports/phase-diagram-shards/{shard[0]}-of-{shard[1]}"
    return "reports/phase-diagram"


def equations(grid):
    """{cell spec: SHA-256 of its equations as printed} for the grid's cells of files: a
    merge does not import them, so parts of a file edited between shards are told apart by
    this, not merged as one cell."""
    from .. import registry
    return {c: hashlib.sha256(repr(registry.cell(c)).encode()).hexdigest()
            for c in grid.cells if ":" in c}


def write_part(grid, shard, points, out, *, command=None, **where):
    """Write <out>/part.json, with the command that made it (`command`) and the
    fingerprint of each file cell's equations; `where` (force, expect, notice, cell_files) goes to
    `outputs.write_files`, which writes through a temporary file removed on any failure
    (a full disk: one-line GradlabError, no part.json.tmp left)."""
    from ..outputs import write_files
    data = dumps({"grid": grid.as_dict(), "gated": list(grid.gates()), "shard": list(shard),
                  "points": points, "command": command, "equations": equations(grid)},
                 FULL_DIGITS)
    path = write_files(out, {PART: data.encode()}, replace=True, **where)
    return pathlib.Path(path) / PART


def check_merge_target(out, dirs):
    """Refuse an --out that is one of the part directories being merged (writing the
    report there would replace its part), holds one, or lies inside one (a report and the
    parts it was merged from are kept apart, so that neither is taken for the other)."""
    from ..outputs import resolve
    for d in dirs:              # '' is no folder: read as '.', it was named as the part
        if not str(d).strip():  # that --out lay inside
            shard_dir(d)
    # --out as the report is written there (~ expanded: `--out=~/p1`, which no shell
    # expands, named the part ~/p1 and passed); an empty or unusable one refused as usual
    target = resolve(out)
    for d in dirs:
        where = pathlib.Path(d).resolve()
        if where == target:
            raise GradlabError(f"--out {str(out)!r} is {str(d)!r}, one of the parts being "
                               "merged: writing the report there would replace its part; "
                               "choose another --out")
        if target in where.parents:
            raise GradlabError(f"--out {str(out)!r} holds {str(d)!r}, one of the parts being "
                               "merged: keep the report apart from its parts; choose "
                               "another --out")
        if where in target.parents:
            raise GradlabError(f"--out {str(out)!r} is inside {str(d)!r}, one of the parts "
                               "being merged: keep the report apart from its parts; choose "
                               "another --out")


def shard_dir(d):
    """`d` as a Path if it is a shard directory (a folder holding part.json), else a
    one-line GradlabError naming it: an empty DIR is refused as such, not read as '.'."""
    if not str(d).strip():
        raise GradlabError(f"shard directory {str(d)!r} is empty; give the --out folder of "
                           "each `gradlab sweep --shard I/N`")
    where = pathlib.Path(d)
    if not (where / PART).is_file():
        what = ("no such folder" if not where.exists() else "a file, not a folder"
                if not where.is_dir() else f"holds no {PART}")
        raise GradlabError(f"{str(d)!r}: {what}: not a sweep shard directory (each is "
                           "the --out of one `gradlab sweep --shard I/N`)")
    return where


# --- reading parts: every field checked, one line naming the file --------------------------

POINT_KEYS = {"cell": str, "weight_scale": "number", "gate_bias": "number", "rate": "number",
              "rate_stderr": "number", "timescale": "number", "horizon": "number",
              "converged": bool}


def _point_problem(p, grid):
    """What is wrong with a point's measured numbers (None if nothing): a horizon that is
    not a whole number of steps the sweep could have run, a growing rate of inf, a negative
    standard error, a negative timescale for a decay."""
    top = max(grid.steps, grid.max_steps)
    if not is_int(p["horizon"]) or not 1 <= p["horizon"] <= top:
        return f"horizon = {p['horizon']!r} is not a whole number of steps from 1 to {top}"
    if p["rate"] == math.inf:
        return "rate = inf is not a measured rate (finite, -inf or nan)"
    if math.isnan(p["rate"]) and p.get("status") is None:
        return "rate = nan with no status saying why (the sweep writes one with every nan)"
    if p["rate_stderr"] < 0:
        return f"rate_stderr = {p['rate_stderr']!r} is negative"
    if p["timescale"] < 0 and not p["rate"] > 0:      # older parts: -1 / rate for growth
        return f"timescale = {p['timescale']!r} is negative"
    return None


def _read_part(path):
    """The part at `path` as {"grid": Grid, "shard": (I, N), "points": [dict]}."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise GradlabError(f"cannot read {where!r}: {err.strerror or err}") from None
    written = read_manifest(path.parent).get(PART)
    if written and hashlib.sha256(raw).hexdigest() not in written:
        raise GradlabError(f"{where!r} is not what gradlab wrote there: its SHA-256 is not "
                           f"the one {MANIFEST} lists (edited since?); run that shard again")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GradlabError(f"{where!r} is not a sweep part: not UTF-8 text (binary?)") \
            from None
    if not text.strip():
        raise GradlabError(f"{where!r} is empty: not a sweep part (was its write "
                           "interrupted?)")
    try:
        part = loads(text)
    except (ValueError, RecursionError) as err:
        detail = (f"line {err.lineno} column {err.colno}: {err.msg}"
                  if isinstance(err, json.JSONDecodeError) else type(err).__name__)
        raise GradlabError(f"{where!r} is not valid JSON ({detail}): truncated or not a "
                           "sweep part") from None

    def bad(what):
        return GradlabError(f"{where!r} is not a sweep part: {what}")

    if not isinstance(part, dict):
        raise bad(f"holds a {type(part).__name__}, expected an object with grid, shard, "
                  "points")
    if not {"grid", "shard", "points"} <= set(part) <= set(PART_KEYS):
        raise bad(f"keys {sorted(part)}, expected {sorted(PART_KEYS)}")
    if not isinstance(part.get("command") or "", str) or not isinstance(
            part.get("equations") or {}, dict):
        raise bad("command must be a string and equations an object")
    g = part["grid"]
    fields = [f.name for f in dataclasses.fields(Grid) if f.compare]
    if not isinstance(g, dict) or set(g) != set(fields):
        raise bad(f"grid must be an object with keys {', '.join(fields)}")
    if not all(isinstance(g[k], list) for k in ("cells", "weight_scales", "gate_biases")):
        raise bad("grid cells, weight_scales and gate_biases must be lists")
    gated = part.get("gated")
    if gated is None and any(":" in str(c) for c in g["cells"]):
        raise bad("it names a cell file but not whether each cell has a gate bias (gated), "
                  "and merge does not import cell files; re-run the shard with this gradlab")
    try:
        grid = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()},
                    gated=tuple(gated) if isinstance(gated, list) else gated)
    except GradlabError as err:
        raise bad(str(err)) from None
    shard = part["shard"]
    if (not isinstance(shard, list) or len(shard) != 2 or not all(map(is_int, shard))
            or not 1 <= shard[0] <= shard[1]):
        raise bad(f"shard {shard!r} is not [I, N] with integers 1 <= I <= N")
    points = part["points"]
    if not isinstance(points, list):
        raise bad(f"points must be a list, got {type(points).__name__}")
    for k, p in enumerate(points):
        if not isinstance(p, dict):
            raise bad(f"point {k} is a {type(p).__name__}, expected an object")
        missing = sorted(set(POINT_KEYS) - set(p))
        extra = sorted(set(p) - set(POINT_KEYS) - {"status"})
        if missing or extra:
            raise bad(f"point {k} " + (f"lacks {', '.join(missing)}" if missing else
                                       f"has unknown keys {', '.join(extra)}"))
        for key, kind in POINT_KEYS.items():
            ok = (isinstance(p[key], kind) if kind in (str, bool) else is_number(p[key]))
            if not ok:
                raise bad(f"point {k}: {key} = {p[key]!r} is not a "
                          f"{ {str: 'string', bool: 'boolean'}.get(kind, 'number') }")
        if p.get("status") not in STATUSES:
            raise bad(f"point {k}: status {p['status']!r} is not one of "
                      f"{', '.join(repr(s) for s in STATUSES)}")
        check = (p["cell"], p["weight_scale"], p["gate_bias"])
        if not all(is_number(v) and math.isfinite(v) for v in check[1:]):
            raise bad(f"point {k}: weight_scale and gate_bias must be finite")
        problem = _point_problem(p, grid)
        if problem:
            raise bad(f"point {k}: {problem}")
    return {"grid": grid, "shard": tuple(shard), "points": points,
            "command": part.get("command"), "equations": part.get("equations") or {}}


def read_parts(dirs):
    """(grid, points) from shard directories; refuses a part that is not one (truncated,
    empty, binary, wrong types), parts of different sweeps, gaps and overlaps: together the
    parts must hold every grid point exactly once, and nothing else."""
    parts, paths, real = [], [], {}
    for d in dirs:
        path = shard_dir(d) / PART
        if path.resolve() in real:
            same = real[path.resolve()]
            raise GradlabError((f"{same!r} is given twice" if same == str(d) else
                                f"{same!r} and {str(d)!r} are the same directory")
                               + ": give each shard directory once")
        real[path.resolve()] = str(d)
        parts.append(_read_part(path))
        paths.append(str(path))
    if not parts:
        raise GradlabError("no shard directories given")
    grid = parts[0]["grid"]
    for p, path in zip(parts, paths):
        if p["grid"] != grid or p["grid"].gated != grid.gated:
            differ = [f"{f.name} {getattr(p['grid'], f.name)!r} against "
                      f"{getattr(grid, f.name)!r}" for f in dataclasses.fields(grid)
                      if getattr(p["grid"], f.name) != getattr(grid, f.name)]
            raise GradlabError(f"the shards come from different sweeps (their grids differ"
                               f"{': ' + '; '.join(differ) if differ else ''}): "
                               f"{path!r} against {paths[0]!r}")
    total = parts[0]["shard"][1]
    other = next((path for p, path in zip(parts, paths) if p["shard"][1] != total), None)
    if other is not None:
        split = next(p["shard"] for p, path in zip(parts, paths) if path == other)
        raise GradlabError(f"the shards come from different splits: {paths[0]!r} is "
                           f"{parts[0]['shard'][0]}/{total}, {other!r} is "
                           f"{split[0]}/{split[1]}; merge the N parts of one --shard I/N split")
    seen = sorted(p["shard"][0] for p in parts)
    if seen != list(range(1, total + 1)) or any(p["shard"][1] != total for p in parts):
        missing = sorted(set(range(1, total + 1)) - set(seen))
        raise GradlabError(f"shards {seen} of {total} given; missing {missing or 'none'}, "
                           "each must appear exactly once")
    order = {p: k for k, p in enumerate(grid.points())}
    found = {}
    for p, path in zip(parts, paths):
        for q in p["points"]:
            key = (q["cell"], q["weight_scale"], q["gate_bias"])
            axis = grid.gate_axis(q["cell"]) if q["cell"] in grid.cells else ()
            if key not in order and len(axis) == 1 and q["gate_bias"] in grid.gate_biases:
                # a cell without a gate bias is measured at one of the grid's, the first:
                # of the list as typed, in parts written before the axes were sorted
                q, key = {**q, "gate_bias": axis[0]}, (*key[:2], axis[0])
            if key not in order:
                raise GradlabError(f"{path!r} holds point {key!r}, which is not on the grid")
            if key in found:
                raise GradlabError(f"point {key!r} appears twice ({found[key][0]!r} and "
                                   f"{path!r}); each grid point must appear exactly once")
            # a decay keeps the timescale measured (-1 / (2 rate) before the rate was
            # rounded); other timescales follow from the rate, and so do those of older
            # parts, which held -1 / rate (for growth too)
            xi = theory.timescale(q["rate"])
            kept = q["rate"] < 0 and 0 < q["timescale"] and abs(q["timescale"] - xi) <= 1e-9 * xi
            found[key] = (path, {**q, "timescale": q["timescale"] if kept else xi})
    missing = [key for key in order if key not in found]
    if missing:
        owner = {p["shard"][0]: path for p, path in zip(parts, paths)}
        should = owner[order[missing[0]] % total + 1]          # the shard that measures it
        raise GradlabError(f"the parts lack {len(missing)} grid point(s), e.g. "
                           f"{missing[0]!r}, which {should!r} should hold; each grid point "
                           "must appear exactly once")
    for cell in (c for c in grid.cells if ":" in c):     # a file edited between shards
        prints = {p["equations"].get(cell) for p in parts} - {None}   # (None: older parts)
        if len(prints) > 1:
            raise GradlabError(f"the shards measured different equations for {cell} (its "
                               "file changed between them); re-run every shard with the "
                               "same file")
    return grid, [found[key][1] for key in order]


def part_commands(dirs):
    """The commands that made the parts in `dirs` (read by `read_parts` first), in shard
    order, where they recorded one."""
    parts = sorted((_read_part(pathlib.Path(d) / PART) for d in dirs),
                   key=lambda p: p["shard"][0])
    return [p["command"] for p in parts if p["command"]]
