"""The `gradlab` command: a thin shell over the library (parse, call one function, print).

Only click loads at start; SymPy and torch load inside the commands that need them, so
`gradlab --help` is instant.
"""

import pathlib
import sys

import click

from .errors import GradlabError


class Gradlab(click.Group):
    """A group whose errors are one line on stderr with exit status 2, never a traceback."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            code = e.exit_code
        except click.exceptions.Abort:
            click.echo("gradlab: aborted", err=True)
            code = 1
        except click.ClickException as e:
            click.echo(f"gradlab: error: {e.format_message()}", err=True)
            code = e.exit_code
        except GradlabError as e:
            click.echo(f"gradlab: error: {e}", err=True)
            code = 2
        if standalone_mode:
            sys.exit(code)
        return code


def cell_list(value):
    """--cells a,b,path.py:NAME -> list of Cell (validated, one line on error)."""
    from . import registry
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise GradlabError(f"--cells {value!r} names no cell; valid: {', '.join(registry.cells())}")
    return [registry.cell(n) for n in names]


@click.group(cls=Gradlab, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradlab")
def cli():
    """Derive recurrent cells' Jacobians with SymPy and measure how gradients decay."""


@cli.command()
def cells():
    """List the registered cells: name, state parts, source."""
    from . import registry
    rows = [(c.name, ", ".join(c.state_names), c.source)
            for c in map(registry.cell, registry.cells())]
    width = max(len(r[0]) for r in rows)
    click.echo(f"{'cell':<{width}}  {'state':<13}  source")
    for name, state, source in rows:
        click.echo(f"{name:<{width}}  {state:<13}  {source}")


@cli.command()
@click.argument("cell", required=False)
@click.option("--all", "every", is_flag=True, help="Every registered cell (needs --out).")
@click.option("--latex", is_flag=True, help="Print LaTeX instead of plain text.")
@click.option("--out", type=click.Path(file_okay=False), help="Write Markdown documents here.")
def derive(cell, every, latex, out):
    """Show a cell's equations and Jacobian blocks, or write derivation documents."""
    from . import document, registry
    if every == bool(cell):
        raise GradlabError("give one CELL or --all (valid cells: "
                           f"{', '.join(registry.cells())})")
    if every and not out:
        raise GradlabError("--all writes documents: give --out DIR")
    if out:
        names = registry.cells() if every else [registry.cell(cell)]
        written = document.write_all(out, names)
        click.echo(f"wrote {len(written)} files to {out}")
        return
    click.echo(document.terminal(cell, as_latex=latex))


@cli.command()
@click.option("--cells", "names", default=None, help="Comma-separated cells (default: all); "
              "a cell may be path/to/file.py:NAME.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sizes and values.")
def verify(names, device, dtype, seed):
    """Check the lowered Jacobians against torch autograd, torch.nn and numpy."""
    from . import registry
    from .verify import resolve_device, verify_cell
    chosen = cell_list(names) if names else [registry.cell(n) for n in registry.cells()]
    resolve_device(device)
    failed = 0
    with click.progressbar(chosen, label="verifying", file=sys.stderr,
                           item_show_func=lambda c: c.name if c else "") as bar:
        results = [(c, verify_cell(c, device=device, dtype=dtype, seed=seed)) for c in bar]
    for c, checks in results:
        click.echo(f"\n{c.name}  ({device}, {dtype})")
        click.echo(f"  {'check':<8} {'against':<40} {'max rel error':>13}  {'tolerance':>9}")
        for ch in checks:
            mark = "ok" if ch.passed else "FAIL"
            failed += not ch.passed
            click.echo(f"  {ch.what:<8} {ch.reference:<40} {ch.error:>13.2e}  "
                       f"{ch.tolerance:>9.0e}  {mark}")
    total = sum(len(ch) for _, ch in results)
    worst = max(ch.error for _, checks in results for ch in checks)
    click.echo(f"\n{total - failed} passed, {failed} failed; worst relative error {worst:.2e}")
    if failed:
        sys.exit(1)


def _cells_option(value, default):
    from . import registry
    if value is None:
        return list(default)
    if value.strip() == "all":
        return registry.cells()
    return [c.name if ":" not in spec else spec
            for spec, c in zip([v.strip() for v in value.split(",") if v.strip()],
                               cell_list(value))]


POSITIVE = click.IntRange(min=1)


@cli.command()
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh and the seed's gated "
                   "cells).")
@click.option("--hidden", type=POSITIVE, default=64, show_default=True, help="Hidden size n.")
@click.option("--inputs", type=POSITIVE, default=8, show_default=True, help="Input size m.")
@click.option("--steps", type=POSITIVE, default=100, show_default=True, help="Sequence length T.")
@click.option("--batch", type=POSITIVE, default=16, show_default=True, help="Sequences.")
@click.option("--init", type=click.Choice(["gaussian", "orthogonal", "torch"]),
              default="gaussian", show_default=True)
@click.option("--weight-scale", type=float, default=1.0, show_default=True)
@click.option("--bias-scale", type=float, default=0.0, show_default=True)
@click.option("--input-scale", type=float, default=1.0, show_default=True,
              help="Inputs are i.i.d. N(0, scale²); 0 gives zero inputs.")
@click.option("--gate-bias", type=float, default=1.0, show_default=True,
              help="Added to each cell's memory-gate bias (positive keeps); 1 is the usual "
                   "forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)
@click.option("--out", type=click.Path(), default="reports/gradient-decay", show_default=True)
@click.option("--force", is_flag=True,
              help="Replace --out even if it holds more than an earlier report.")
@click.option("--open", "open_", is_flag=True, help="Open the report in a browser.")
def report(names, out, force, open_, **options):
    """Write a gradient-decay report: vanilla RNN against gated cells, with theory."""
    from . import report as rp
    from .publish import check_target
    from .verify import resolve_device
    cells = _cells_option(names, rp.DEFAULT_CELLS)
    check_target(out, force)
    resolve_device(options["device"])
    setup = rp.Setup(cells=tuple(cells), **options)
    command = "gradlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["report"] else \
        "gradlab report"
    with click.progressbar(length=len(cells), label="measuring", file=sys.stderr,
                           show_pos=True) as bar:
        path = rp.report(setup, out, force=force, command=command,
                         progress=lambda name: bar.update(1, name))
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")
    if open_:
        click.launch(str(path / "index.html"))


# float64 products agree to ~1e-13 (the spectral iteration stops at 1e-12); float32 to a
# few hundred ulps of its 1.2e-7. Beyond these the methods disagree.
AGREEMENT = {"float64": 1e-8, "float32": 1e-3}


@cli.command()
@click.option("--cells", "names", default="lstm", show_default=True,
              help="Comma-separated cells, or 'all'.")
@click.option("--hidden", type=POSITIVE, default=64, show_default=True)
@click.option("--inputs", type=POSITIVE, default=None, help="Input size m [default: hidden].")
@click.option("--steps", type=POSITIVE, default=64, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)
@click.option("--repeats", type=POSITIVE, default=3, show_default=True, help="Best of N.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(names, hidden, inputs, steps, batch, device, dtype, repeats, seed, as_json):
    """Time gradient_flow against autograd, torch.func and the bare bmm floor."""
    from .bench import format_table, run_bench
    from .publish import dumps
    from .verify import resolve_device
    cells = _cells_option(names, ())
    resolve_device(device)
    results = []
    with click.progressbar(cells, label="timing", file=sys.stderr) as bar:
        for name in bar:
            results += run_bench([name], hidden, steps, batch, device, dtype, seed=seed,
                                 repeats=repeats, inputs=inputs)
    click.echo(dumps(results) if as_json else format_table(results), nl=not as_json)
    worst = max(r["max_relative_error"] for r in results)
    if not worst <= AGREEMENT[dtype]:
        click.echo(f"gradlab: methods disagree: max relative error {worst:.2e} > "
                   f"{AGREEMENT[dtype]:.0e}", err=True)
        sys.exit(1)


def _floats(value, what):
    try:
        values = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise GradlabError(f"{what} {value!r} is not a comma-separated list of numbers") \
            from None
    if not values or len(set(values)) != len(values):
        raise GradlabError(f"{what} {value!r} needs one or more distinct numbers")
    return values


@cli.group(invoke_without_command=True)
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh, lstm, gru, minimal_rnn).")
@click.option("--weight-scales", default="0.5,0.75,1,1.25,1.5,2,2.5,3", show_default=True)
@click.option("--gate-biases", default="-2,-1,0,1,2,3,4", show_default=True)
@click.option("--hidden", type=POSITIVE, default=32, show_default=True)
@click.option("--inputs", type=POSITIVE, default=8, show_default=True)
@click.option("--steps", type=POSITIVE, default=60, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)
@click.option("--shard", default=None, help="I/N: compute only shard I of N and write its "
              "part to --out (join the parts with `gradlab sweep merge`).")
@click.option("--out", type=click.Path(), default=None,
              help="Report directory [default: reports/phase-diagram; with --shard I/N: "
                   "reports/phase-diagram-shards/I-of-N].")
@click.option("--force", is_flag=True,
              help="Replace --out even if it holds more than an earlier report.")
@click.pass_context
def sweep(ctx, names, weight_scales, gate_biases, shard, out, force, **options):
    """Phase diagram: gradient timescale over weight scale x gate bias, per cell."""
    if ctx.invoked_subcommand is not None:
        return
    from . import sweep as sw
    from .publish import check_target
    from .verify import resolve_device
    grid = sw.Grid(cells=tuple(_cells_option(names, sw.DEFAULT_CELLS)),
                   weight_scales=_floats(weight_scales, "--weight-scales"),
                   gate_biases=_floats(gate_biases, "--gate-biases"), **options)
    part = sw.parse_shard(shard) if shard is not None else None
    if out is None:
        out = f"reports/phase-diagram-shards/{part[0]}-of-{part[1]}" if part \
            else "reports/phase-diagram"
    check_target(out, force)
    resolve_device(grid.device)
    count = len(grid.points()[(part or (1, 1))[0] - 1::(part or (1, 1))[1]])
    with click.progressbar(length=count, label="sweeping", file=sys.stderr,
                           show_pos=True) as bar:
        points = sw.run(grid, part or (1, 1), progress=lambda p: bar.update(1))
    if part:
        click.echo(f"wrote {sw.write_part(grid, part, points, out)}")
        return
    path = sw.report(grid, points, out, force=force, command="gradlab sweep")
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")


@sweep.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), default="reports/phase-diagram", show_default=True)
@click.option("--force", is_flag=True,
              help="Replace --out even if it holds more than an earlier report.")
def merge(dirs, out, force):
    """Join shard directories (from --shard I/N) into one phase-diagram report."""
    from . import sweep as sw
    from .publish import check_target
    target = pathlib.Path(out).resolve()
    inside = [d for d in dirs if target in pathlib.Path(d).resolve().parents
              or pathlib.Path(d).resolve() == target]
    if inside:
        raise GradlabError(f"--out {out!r} holds {inside[0]!r}, one of the parts being "
                           "merged, and writing the report would delete it; choose another "
                           "--out")
    grid, points = sw.read_parts(dirs)
    check_target(out, force)
    path = sw.report(grid, points, out, force=force, command="gradlab sweep merge")
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")


def main():
    cli.main(prog_name="gradlab")
