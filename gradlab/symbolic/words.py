"""A user's words in gradlab's Markdown: what a declaration says (its source, its doc)
can neither break the page nor put markup of its own in it."""


def prose(words):
    """A user's words (a cell's source or doc) for Markdown, on one line (a newline ended
    the index's table row): < and > as entities and [ escaped (no tag, script or link gets
    in through a declaration), $ and | escaped (they cannot open an equation or split a
    table row), and \\ escaped first (\\[ and \\$ undid those escapes)."""
    out = " ".join(str(words).split()).replace("<", "&lt;").replace(">", "&gt;")
    for c in "\\[$|":
        out = out.replace(c, "\\" + c)
    return out
