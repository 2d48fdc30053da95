"""Writing a report directory: index.html, report.md, figures/*.png|svg and data.json.

A report is built in a temporary directory beside its target and moved into place only
when complete, so an interrupted run never leaves half a report. Running again over an
earlier report replaces it; a directory holding anything a report does not is replaced
only with `force`. Every file is byte-for-byte reproducible for the same inputs (data.json
with sorted keys, SVG ids from a fixed salt, no timestamps anywhere); non-finite numbers
are written as the strings "nan", "inf" and "-inf" (JSON has no literal for them) and
never dropped.
"""

import base64
import dataclasses
import html
import io
import json
import math
import os
import pathlib
import shutil
import tempfile

import matplotlib

from .errors import GradlabError


@dataclasses.dataclass
class Section:
    title: str
    text: str = ""
    figure: str | None = None                      # a key of the figures dict
    table: tuple[list[str], list[list]] | None = None  # (header, rows)


SVG_SALT = "gradlab"      # the same figure gives the same SVG bytes, run after run
REPORT_FILES = {"index.html", "report.md", "data.json"}
FIGURE_SUFFIXES = {".png", ".svg"}


def is_report(out):
    """Does the directory hold nothing but what `write_report` writes (or nothing at all)?"""
    for entry in pathlib.Path(out).iterdir():
        if entry.name == "figures" and entry.is_dir():
            if any(not f.is_file() or f.suffix not in FIGURE_SUFFIXES for f in entry.iterdir()):
                return False
        elif entry.name not in REPORT_FILES or not entry.is_file():
            return False
    return True


def check_target(out, force):
    """Refuse early (before any work) a target that cannot be written, or that exists
    and holds more than an earlier report (unless `force`)."""
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise GradlabError(f"--out {str(out)!r} is a file; give a directory")
    if out.exists() and not force and not is_report(out):
        raise GradlabError(f"{str(out)!r} exists and holds files that are not a gradlab "
                           "report; pass --force to replace it")
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK) or not probe.is_dir():
        raise GradlabError(f"cannot write to {str(out)!r}: {str(probe)!r} is not writable")
    return out


def jsonable(value):
    """Numbers as JSON can hold them: floats finite or "nan"/"inf"/"-inf"; arrays as lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def dumps(data):
    return json.dumps(jsonable(data), sort_keys=True, indent=1, allow_nan=False) + "\n"


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


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell_text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}
.header td{text-align:left}code{background:#f5f5f5;padding:0 3px}"""


def write_report(out, *, title, intro, header, sections, figures, data, force=False):
    """Write the report at `out` atomically; figures maps name -> matplotlib Figure."""
    out = check_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)          # mkdtemp's 0700 is for secrets, not reports
    try:
        (tmp / "figures").mkdir()
        pngs = {}
        for name, fig in figures.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
            pngs[name] = buf.getvalue()
            (tmp / "figures" / f"{name}.png").write_bytes(pngs[name])
            with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):   # ids from a fixed
                fig.savefig(tmp / "figures" / f"{name}.svg", format="svg",   # salt, not random
                            metadata={"Date": None, "Creator": None})
        (tmp / "data.json").write_text(dumps(data), encoding="utf-8")
        (tmp / "report.md").write_text(_markdown(title, intro, header, sections),
                                       encoding="utf-8")
        (tmp / "index.html").write_text(_html(title, intro, header, sections, pngs),
                                        encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _markdown(title, intro, header, sections):
    lines = [f"# {title}", "", intro, "", "| | |", "|---|---|"]
    lines += [f"| {k} | {cell_text(v)} |" for k, v in header.items()]
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
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.figure:
            b64 = base64.b64encode(pngs[s.figure]).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{b64}'>")
        if s.table:
            parts.append(_html_table(*s.table))
    parts.append("</body></html>\n")
    return "\n".join(parts)
