"""A report's files: index.html, report.md, figures/*.png|svg and data.json.

`render` turns a report's parts into bytes; `write_report` hands them to `outputs`, which
writes them atomically into a folder gradlab owns (running again replaces what gradlab
wrote there and nothing else). Every file is byte-for-byte reproducible for the same inputs on
one machine (data.json with sorted keys, SVG ids from a fixed salt, no timestamps anywhere),
and, for a float64 run, on another CPU but for a rare number at a rounding boundary
(`DIGITS`; a float32 run's differ: `DTYPE_DIGITS`) and what a header
says of the machine (the gradient-decay report's device line names its architecture and
torch's thread count, on which the numbers do not depend); non-finite numbers
are written as the strings "nan", "inf" and "-inf" (JSON has no literal for them) and
never dropped.
"""

import base64
import dataclasses
import html
import io
import json
import math
import re
import warnings

import numpy as np

from ..errors import GradlabError
from ..outputs import write_files


@dataclasses.dataclass
class Section:
    title: str
    text: str = ""
    figure: str | None = None                      # a key of the figures dict
    table: tuple[list[str], list[list]] | None = None  # (header, rows)


SVG_SALT = "gradlab"      # the same figure gives the same SVG bytes, run after run


# Significant digits written for a float64 number. The numbers come from long chains of
# products whose last bits depend on the CPU's kernels: the default `gradlab report`, run
# with torch, MKL and numpy held to AVX2, differed from the same run on AVX-512 in 2890 of
# its 8008 numbers (by up to 3e-11 relative, a small singular value; most by ~1e-16). To
# 12 digits, 4 numbers and the decay figure still differed; to 9, one: a singular value
# on a rounding boundary (0.02116559405000001 against ...04999999). So a rerun on another
# CPU writes the same bytes unless a number lies that close to a boundary of its 9th
# digit, and the figures and tables, drawn from the numbers as written (`rounded`), follow.
DIGITS = 9
# Every float64 exactly as computed (repr's digits): a sweep's part.json, so that `sweep
# merge` rounds once, as the whole sweep does; and what a report was given (its setup, a
# grid's axes: `jsonable`'s keep), which 9 digits told apart no longer (1.0000000001).
FULL_DIGITS = 17
# A run in float32 carries far fewer: its products round at 6e-8 a step and its spectral
# norms are certified to 5e-7 relative (flow.lanczos.RTOL), so the 7th digit on is rounding
# (a float32 report wrote 12 digits, the last 5-6 of which moved with the random start of
# the norms' iteration, which the results do not depend on beyond rounding, and with the
# CPU's kernels). Such a run's gradient-decay report and phase diagram write 6 (a sweep's
# part.json keeps every digit, FULL_DIGITS). Another CPU does not write the same 6: the
# default report in float32 held to AVX2 differed from AVX-512 in 345 of 9084 numbers as
# written (float32 sums round differently with the vector width) and in every figure.
DTYPE_DIGITS = {"float64": DIGITS, "float32": 6}


def digits_of(dtype):
    """The significant digits a report of a run in `dtype` (a name, or a torch dtype) writes."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_DIGITS:
        raise GradlabError(f"dtype {dtype!r} has no report precision; valid: "
                           f"{', '.join(DTYPE_DIGITS)}")
    return DTYPE_DIGITS[name]


def significant(x, digits=DIGITS):
    """The float x to `digits` significant digits (as data.json writes it)."""
    return float(f"{x:.{digits}g}")


def jsonable(value, digits=DIGITS, keep=()):
    """Numbers as JSON can hold them: floats to `digits` significant digits, or "nan"/"inf"/
    "-inf"; arrays as lists; the values of dict keys in `keep` (what the run was given: a
    grid's axes, a setup) to every digit (FULL_DIGITS), as given."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v, FULL_DIGITS if k in keep else digits, keep)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, digits, keep) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return significant(value, digits)
    return value


def rounded(value, digits=DIGITS, keep=()):
    """`value` with every float rounded to `digits` significant digits, as data.json writes
    it, structure and types kept (dicts, lists, tuples, numpy arrays), the values of dict
    keys in `keep` (a grid's coordinates, which figures look up) left as they are. A report
    draws its figures and tables from these numbers: what it shows is what it writes, and
    a CPU that rounds differently in the last bits draws the same pixels."""
    if isinstance(value, dict):
        return {k: v if k in keep else rounded(v, digits, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [rounded(v, digits, keep) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        flat = [significant(v, digits) for v in value.ravel().tolist()]
        return np.array(flat, dtype=value.dtype).reshape(value.shape)
    if isinstance(value, (float, np.floating)):
        return type(value)(significant(float(value), digits))
    return value


def dumps(data, digits=DIGITS, keep=()):
    return json.dumps(jsonable(data, digits, keep), sort_keys=True, indent=1,
                      allow_nan=False) + "\n"


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def loads(text):
    """Inverse of `dumps` for numbers: "nan", "inf", "-inf" strings become floats again."""
    def back(v):
        if isinstance(v, dict):
            return {k: back(x) for k, x in v.items()}
        if isinstance(v, list):
            return [back(x) for x in v]
        return NON_FINITE.get(v, v) if isinstance(v, str) else v
    return back(json.loads(text))


def cell_text(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    return "—" if value is None else str(value)


MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`|<>[]"})


def markdown_text(text):
    """Text as one Markdown line that renders as itself: no table cell ends early, no tag,
    link or code span starts (the characters that do so are escaped; newlines are spaces)."""
    return " ".join(str(text).split()).translate(MARKDOWN_SPECIAL)


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(map(markdown_text, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_text(cell_text(v)) for v in row) + " |"
              for row in rows]
    return "\n".join(lines)


def _html_table(header, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    # in a box of its own that scrolls: a wide table no longer runs past the page's column
    return (f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}"
            "</tbody></table></div>")


def _html_prose(text):
    """Escaped prose with its `code` spans as <code> (they showed their backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}
.header td{text-align:left}code{background:#f5f5f5;padding:0 3px}.wide{overflow-x:auto}"""


def _saved(name, fig):
    """{figures/NAME.png: bytes, figures/NAME.svg: bytes} of one figure."""
    import matplotlib        # here, not above: a refused command never loads it (its
    files = {}               # first import builds a font cache in $HOME)
    buf = io.BytesIO()
    with warnings.catch_warnings():     # a long label (a cell file's path) leaves the
        warnings.filterwarnings(        # layout no room: drawn as it is, not an error
            "ignore", message="constrained_layout not applied", category=UserWarning)
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    files[f"figures/{name}.png"] = buf.getvalue()
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}), warnings.catch_warnings():
        warnings.filterwarnings(                             # (ids from a fixed salt)
            "ignore", message="constrained_layout not applied", category=UserWarning)
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    files[f"figures/{name}.svg"] = buf.getvalue()
    return files


def render(*, title, intro, header, sections, figures, data, digits=DIGITS, keep=()):
    """{relative path: bytes} of a report; figures maps name -> matplotlib Figure; data.json's
    floats to `digits` significant digits (`digits_of` the run's dtype), those under the
    keys in `keep` as given (`jsonable`)."""
    files, pngs = {}, {}
    for name, fig in figures.items():
        with np.errstate(all="ignore"):      # values near float64's ends (a weight scale
            files.update(_saved(name, fig))  # of 1e308) are drawn clipped, not warned of
        pngs[name] = files[f"figures/{name}.png"]
    files["data.json"] = dumps(data, digits, keep).encode()
    # a name that is not UTF-8 (a path's bytes) is written escaped, never fails the write
    files["report.md"] = _markdown(title, intro, header, sections).encode(
        "utf-8", "backslashreplace")
    files["index.html"] = _html(title, intro, header, sections, pngs).encode(
        "utf-8", "backslashreplace")
    return files


def write_report(out, *, title, intro, header, sections, figures, data, kind, force=False,
                 dtype="float64", digits=None, keep=(), **where):
    """Render the report and write it at `out` atomically (`outputs.write_files`: gradlab
    replaces only what it wrote); `kind`: the figures every report of its kind draws
    (`ownership.other_kind`); `dtype`: the run's, whose precision data.json's floats are
    written to (`digits_of`), unless `digits` says how many, but for those under the keys
    in `keep`, written as given (`jsonable`); `where` passes cell_files, expect and notice
    on."""
    files = render(title=title, intro=intro, header=header, sections=sections,
                   figures=figures, data=data,
                   digits=digits_of(dtype) if digits is None else digits, keep=keep)
    return write_files(out, files, replace=True, force=force, kind=tuple(kind), **where)


def _markdown(title, intro, header, sections):
    lines = [f"# {title}", "", intro, "", "| | |", "|---|---|"]
    lines += [f"| {markdown_text(k)} | {markdown_text(cell_text(v))} |"
              for k, v in header.items()]
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.figure:
            lines += [f"![{s.title}](figures/{s.figure}.png)", ""]
        if s.table:
            lines += [_markdown_table(*s.table), ""]
    return "\n".join(lines).rstrip() + "\n"


def _html(title, intro, header, sections, pngs):
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(intro)}</p><table class='header'>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(cell_text(v))}</td></tr>"
              for k, v in header.items()]
    parts.append("</table>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{_html_prose(s.text)}</p>")
        if s.figure:
            b64 = base64.b64encode(pngs[s.figure]).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{b64}'>")
        if s.table:
            parts.append(_html_table(*s.table))
    parts.append("</body></html>\n")
    return "\n".join(parts)
