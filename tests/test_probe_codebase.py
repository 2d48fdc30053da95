"""A new engineer's review of the codebase: what its own texts say about its layout and
commands, held to what the code is."""

import pathlib
import re

import gradlab

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gradlab"


def test_the_flow_package_lists_every_one_of_its_modules():
    """flow/__init__'s "Modules, one concern each" named neither reach.py nor initial.py."""
    import gradlab.flow
    modules = gradlab.flow.__doc__.split("Modules, one concern")[1]
    listed = set(re.findall(r"^    ([a-z_]+)  ", modules, re.M))
    present = {p.stem for p in (PACKAGE / "flow").glob("*.py") if p.stem != "__init__"}
    assert present - listed == set(), f"flow modules not listed: {present - listed}"
    assert listed - present == set(), f"listed but not in flow/: {listed - present}"


def test_the_commands_package_names_the_module_of_each_command():
    """gradlab/commands/__init__ said the report commands live in gradlab.cli, which holds
    none: they are in commands/reports.py."""
    import gradlab.commands
    from gradlab.cli import cli
    doc = gradlab.commands.__doc__
    for name, command in cli.commands.items():
        module = command.callback.__module__.rsplit(".", 1)[1]
        assert f"`{module}` (" in doc and name in doc, (name, module)
    assert "live in `gradlab.cli`" not in doc


def test_init_help_names_both_ways_it_exits_1():
    """init exits 1 where fresh sequences do not confirm the timescale the search reached
    (critical_init's fresh_timescale, f58348a); its --help named only 'never got there'."""
    from click.testing import CliRunner
    from gradlab.cli import cli
    out = CliRunner().invoke(cli, ["init", "--help"]).output
    words = " ".join(out.split())
    assert "fresh" in words and "not confirmed" in words, words


def test_the_mean_field_lag_window_lives_in_a_module_named_for_it():
    """meanfield/checks.py once checked every number the mean-field API takes; since
    a28cdd3 it holds the lag window alone (default_lags, lags), under a name that no longer
    said so."""
    from gradlab.meanfield import lag_window
    assert not (PACKAGE / "meanfield" / "checks.py").exists()
    assert lag_window.default_lags(100) == (12, 80)
    assert lag_window.lags(None, 30) == (3, 30)


def test_jacobian_reads_the_chain_rule_s_totals_through_its_public_api():
    """jacobian.py named the sums it shows from derive.Chain's private `_totals`; Chain
    now says what it derived (`totals`), and jacobian.py reaches into no other module's
    private attribute of it."""
    from gradlab.symbolic.derive import Chain
    lstm = gradlab.cell("lstm")
    h = lstm.state_symbols[0]
    chain = Chain(lstm.lets, h)
    chain.total(lstm.outputs[0])
    totals = chain.totals
    assert list(totals) == [q for q in lstm.lets if q in totals]      # in the lets' order
    assert set(lstm.outputs[:1]) <= set(totals)
    totals.clear()                                                    # a copy: Chain keeps its own
    assert chain.totals
    assert "._totals" not in (PACKAGE / "symbolic" / "jacobian.py").read_text()


def test_the_theory_module_lists_every_formula_it_holds():
    """theory.py's docstring lists its formulas; timescale and mean_field_rate, which the
    reports, the sweep and the flow's rates all call, were not among them."""
    import inspect
    from gradlab import theory
    public = [name for name, f in vars(theory).items() if inspect.isfunction(f)
              and f.__module__ == theory.__name__ and not name.startswith("_")]
    listed = set(re.findall(r"^    ([a-z_]+) ", theory.__doc__, re.M))
    assert set(public) - listed == set(), set(public) - listed


def test_ci_run_says_of_torch_what_its_command_and_the_readme_do():
    """.ci/run's comment said it installs torch's CPU build so that pip pulls no CUDA one;
    its command (README's, as written) names no CPU index, and README says pip may fetch
    the CUDA build away from this project's machines."""
    text = (ROOT / ".ci" / "run").read_text()
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    command = text.splitlines()[-1]
    assert command in (ROOT / "README.md").read_text()
    if "--index-url" not in command:
        assert "does not pull" not in comment and "installs the CPU build" not in comment


def test_the_readme_module_map_names_every_module_of_the_package():
    """README's "How it works" map, completed once (a4d3336), had fallen behind: registry,
    exits, torch_state, testing, device, batching, progress, bidirectional, new_files,
    errors and repl were in no row."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How it works")[1].split("\n\n")[1]
    top = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    top |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    missing = {m for m in top if not re.search(rf"\b{m}(\.py|/)", section)}
    assert not missing, sorted(missing)


def test_a_reports_memory_estimate_follows_the_lyapunov_span(monkeypatch):
    """budget.report_bytes counts the Lyapunov run the report makes, LYAPUNOV_SPAN T steps,
    from the one constant measurements runs it by (it wrote 4 T by hand)."""
    from gradlab import budget
    from gradlab.reports import measurements
    assert measurements.LYAPUNOV_SPAN is budget.LYAPUNOV_SPAN
    sizes = dict(hidden=8, inputs=8, steps=100, batch=4)
    monkeypatch.setattr(budget, "LYAPUNOV_SPAN", 10)
    assert budget.report_bytes(**sizes) == budget.flow_bytes(**dict(sizes, steps=1000))
