"""A user's words in gradlab's Markdown: what a declaration says (its source, its doc)
can neither break the page nor put markup of its own in it."""

import re

# what opens a block where a line starts with it (> is &gt; already): a heading, list, rule, setext
# underline or code fence (an unclosed ``` or ~~~ made the rest of the page code)
BLOCK_START = re.compile(r"[#+*=_~`-]|\d+(?=[.)])")


def prose(words):
    """A user's words (a cell's source or doc) for Markdown, on one line (a newline ended
    the index's table row): < and > as entities and [ escaped (no tag, script or link gets
    in through a declaration), $ and | escaped (they cannot open an equation or split a
    table row), \\ escaped first (\\[ and \\$ undid those escapes), and a first character
    that would open a block (# heading, > quote, - list, ``` code fence, 1. list) escaped."""
    out = " ".join(str(words).split()).replace("<", "&lt;").replace(">", "&gt;")
    for c in "\\[$|":
        out = out.replace(c, "\\" + c)
    start = BLOCK_START.match(out)
    if start:                       # 1. as 1\., any other marker with a backslash before
        end = start.end()
        out = out[:end] + "\\" + out[end:] if out[:1].isdigit() else "\\" + out
    return out
