"""Edges a hostile probe of users' own cells and derivation checks found."""

import pytest
import sympy as sp

import gradlab
from gradlab.errors import GradlabError
from gradlab.symbolic import activations


def test_prose_is_one_line_and_a_backslash_does_not_undo_its_escapes(tmp_path):
    """A source with a newline split the index's table row (and the next run's index
    dropped the page), and \\[ or \\$ turned the escapes of [ and $ back into a link or an
    equation."""
    from gradlab.documents.derivation import kept_rows, write_all
    from gradlab.symbolic.printing import prose
    assert prose("a\n| b |\n\\[x](y) \\$z$") == "a \\| b \\| \\\\\\[x](y) \\\\\\$z\\$"

    @gradlab.declare(state="h", params="W U b", source="Me\n| [`x`](x.md) | h | y |")
    def probe_lined(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)

    write_all(tmp_path / "d", [probe_lined])
    rows = [r for r in (tmp_path / "d" / "README.md").read_text().splitlines()
            if "probe_lined" in r]
    assert len(rows) == 1 and rows[0].endswith("| h \\| y \\| |")
    assert kept_rows(tmp_path / "d", {}) == rows        # the next run keeps its row


def test_an_activation_key_the_lowered_code_uses_is_refused():
    """Registering sp.sqrt (key "sqrt") was accepted, and every cell's lowered code, the
    built-ins' too, then failed with a TypeError from the backend's namespace."""
    before = dict(activations.TABLE)
    with pytest.raises(GradlabError, match="'sqrt' is a name the lowered code uses"):
        activations.activation("mysqrt", sp.sqrt, text="sqrt({})", latex=r"\sqrt{{{}}}",
                               numpy=activations.call("sqrt"), torch=activations.call("sqrt"))
    kw = type("lambda", (sp.Function,), {})
    with pytest.raises(GradlabError, match="not a keyword"):
        activations.activation("kw", kw, text="k({})", latex="k({})",
                               numpy=activations.call("abs"), torch=activations.call("abs"))
    assert activations.TABLE == before


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_backend_names_are_the_namespaces_own(name):
    from gradlab.lowering.backends import backend
    own = set(vars(backend(name))) - set(activations.TABLE)
    assert own == set(activations.BACKEND_NAMES)
