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


def _documented(obj, name):
    import re
    return re.search(rf"\b{re.escape(name)}\b", inspect.getdoc(obj)) is not None


@pytest.mark.parametrize("where, names", [
    ("declare", ["fn"]),
    ("lyapunov", ["params", "reverse"]),
    ("check_jacobian", ["cell", "batch", "seed"]),
    ("check_lyapunov", ["cell"]),
    ("Flow.lyapunov", ["discard"]),
    ("Flow.bptt_fraction", ["v", "seed"]),
    ("Flow.loss_vector", ["seed"]),
    ("Cell.step_fn", ["backend"]),
    ("Cell.values_fn", ["backend"]),
    ("Cell.jacobian_fn", ["backend"]),
    ("Jacobian.at", ["backend"]),
    ("testing.assert_lyapunov", ["cell"]),
])
def test_every_parameter_help_shows_is_documented(where, names):
    import gradlab.testing  # noqa: F401
    obj = gradlab
    for part in where.split("."):
        obj = getattr(obj, part)
    assert set(names) <= set(inspect.signature(obj).parameters)
    assert [n for n in names if not _documented(obj, n)] == []


def test_declare_refuses_fn_as_its_docstring_says():
    def body(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x)
    with pytest.raises(gradlab.GradlabError, match="decorates"):
        gradlab.declare(body, state="h", params="W U", source="s")
    cell = gradlab.declare(state="h", params="W U", source="s")(body)
    assert cell.name == "body"


@pytest.mark.parametrize("home, name, fields", [
    ("gradlab.verification.check", "Result",
     ["ok", "max_error", "worst_block", "block_errors", "diagnosis", "checked",
      "inconclusive", "sizes"]),
    ("gradlab.verification.lyapunov_check", "LyapunovResult",
     ["ok", "yours", "exact", "max_error", "diagnosis"]),
])
def test_the_check_results_say_what_their_fields_mean(home, name, fields):
    # help(result) showed only the dataclass's generated signature
    import dataclasses
    import importlib
    cls = getattr(importlib.import_module(home), name)
    assert [f.name for f in dataclasses.fields(cls)] == fields
    doc = inspect.getdoc(cls)
    assert not doc.startswith(f"{name}(")
    assert [f for f in fields if not _documented(cls, f)] == []
