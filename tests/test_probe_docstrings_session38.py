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


def test_mean_field_quotes_the_gru_rates_at_the_settings_it_names():
    # it quoted -0.204 against -0.218 with no setting: at mean_field's own defaults
    # (gate_bias 0) the two rates are -0.38 and -0.39; they hold at gate_bias 1
    import torch

    from gradlab.flow import make_inputs
    doc = inspect.getdoc(gradlab.mean_field)
    assert "gate_bias=1.0" in doc
    cell = gradlab.cell("gru")
    params = cell.init_params(128, 8, gate_bias=1.0)
    xs = make_inputs("gaussian", 100, 8, 8, dtype=torch.float64, seed=0)
    flow = gradlab.gradient_flow(cell, params, xs)
    quoted = f"{flow.rate():.3f} against {flow.rate('frobenius'):.3f}"
    assert quoted in " ".join(doc.split())


def test_critical_init_quotes_what_it_measures_and_says_its_tolerance_is_relative():
    # it quoted 5.00 measured at timescale 5, n = 128, and "within tolerance of the
    # target" without saying that 0.1 means 10 %: the search accepts 4.51 for 5
    doc = " ".join(inspect.getdoc(gradlab.critical_init).split())
    found = gradlab.critical_init("rnn_tanh", 5, hidden=128)
    assert found.reached
    assert f"timescale 5, n = 128: {found.measured_timescale:.2f} measured" in doc
    assert "|measured / target - 1| <= tolerance" in doc
    assert abs(found.measured_timescale / 5 - 1) <= found.tolerance
