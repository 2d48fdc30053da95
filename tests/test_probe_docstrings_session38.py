"""Session 38's docstring audit: what help(gradlab.X) says, run as written."""

import inspect
import textwrap

import pytest

import gradlab


def _example(doc):
    """The first indented block of a docstring, dedented: its example."""
    lines, block = inspect.cleandoc(doc).splitlines(), []
    for line in lines:
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line)
        elif block:
            break
    return textwrap.dedent("\n".join(block))


def test_the_package_docstring_example_runs_as_written():
    namespace = {}
    exec(_example(gradlab.__doc__), namespace)      # no name the reader must supply
    assert isinstance(namespace["flow"].rate(), float)


def test_the_testing_docstring_example_runs_as_written():
    import gradlab.testing
    namespace = {"my_gru_jacobian": gradlab.cell("gru").jacobian_fn()}   # the reader's own
    exec(_example(gradlab.testing.__doc__), namespace)
    namespace["test_my_gru_jacobian"]()
