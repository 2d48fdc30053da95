"""The `gradlab` command: a thin shell over the library (parse, call one function, print).

Only click loads at start; SymPy and torch load inside the commands that need them, so
`gradlab --help` is instant.
"""

import os
import shlex
import sys

import click

from .errors import GradlabError
from .options import (DEVICE, DTYPE, FINITE, POSITIVE, SCALE, SEED, Progress, cell_files,
                      cell_list, cells_option, floats, notice)


def _one_line(message):
    return " ".join(str(message).split())


class Gradlab(click.Group):
    """A group whose errors are one line on stderr, never a traceback: exit 2 for anything
    a user can fix (and for an unforeseen failure, which is named as one), 130 on Ctrl-C.
    GRADLAB_DEBUG=1 lets an unforeseen exception through with its traceback."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            code = e.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("gradlab: interrupted", err=True)
            code = 130
        except click.ClickException as e:
            click.echo(f"gradlab: error: {_one_line(e.format_message())}", err=True)
            code = e.exit_code
        except GradlabError as e:
            click.echo(f"gradlab: error: {_one_line(e)}", err=True)
            code = 2
        except MemoryError:
            click.echo("gradlab: error: out of memory; use a smaller --hidden, --steps or "
                       "--batch", err=True)
            code = 2
        except BrokenPipeError:
            code = 0 if standalone_mode else 1      # `gradlab cells | head`: not an error
        except Exception as e:
            if os.environ.get("GRADLAB_DEBUG"):
                raise
            kind = type(e).__name__
            if "OutOfMemory" in kind:
                message = "out of memory on the device; use a smaller --hidden, --steps or --batch"
            elif isinstance(e, OSError):
                message = f"{e.strerror or e}" + (f": {e.filename!r}" if e.filename else "")
            else:
                message = (f"internal error ({kind}: {_one_line(e)[:300]}); rerun with "
                           "GRADLAB_DEBUG=1 for the traceback and please report it")
            click.echo(f"gradlab: error: {message}", err=True)
            code = 2
        if standalone_mode:
            sys.exit(code)
        return code


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
@click.option("--out", type=click.Path(), help="Write Markdown documents here (a folder "
              "gradlab owns: it updates its own files there and touches no other).")
@click.option("--force", is_flag=True,
              help="Write into --out even if it holds files gradlab did not write (they are "
                   "never overwritten).")
def derive(cell, every, latex, out, force):
    """Show a cell's equations and Jacobian blocks, or write derivation documents."""
    from .documents import derivation as document
    from . import registry
    if every == bool(cell):
        raise GradlabError("give one CELL or --all (valid cells: "
                           f"{', '.join(registry.cells())})")
    if every and not out:
        raise GradlabError("--all writes documents: give --out DIR")
    if out:
        names = registry.cells() if every else [registry.cell(cell)]
        written = document.write_all(out, names, force=force,
                                     cell_files=cell_files([cell] if cell else []))
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
    from .device import resolve as resolve_device
    from .verification.verify import independence_note, summarize, verify_cell
    chosen = cell_list(names) if names is not None else \
        [registry.cell(n) for n in registry.cells()]
    resolve_device(device)
    with click.progressbar(chosen, label="verifying", file=sys.stderr,
                           item_show_func=lambda c: c.name if c else "") as bar:
        results = [(c, verify_cell(c, device=device, dtype=dtype, seed=seed)) for c in bar]
    for c, checks in results:
        click.echo(f"\n{c.name}  ({device}, {dtype})")
        click.echo(f"  {'check':<8} {'against':<40} {'max rel error':>13}  {'tolerance':>9}")
        for ch in checks:
            mark = "ok" if ch.passed else "FAIL" if ch.finite else "FAIL (non-finite)"
            click.echo(f"  {ch.what:<8} {ch.reference:<40} {ch.error:>13.2e}  "
                       f"{ch.tolerance:>9.0e}  {mark}")
        note = independence_note(c, checks)
        if note:
            click.echo(f"  {note}")
    summary = summarize(ch for _, checks in results for ch in checks)
    click.echo(f"\n{summary}")
    if summary.failed:
        sys.exit(1)


@cli.command()
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh and the seed's gated "
                   "cells). path/to/file.py:NAME imports, and so runs, that file.")
@click.option("--hidden", type=POSITIVE, default=64, show_default=True, help="Hidden size n.")
@click.option("--inputs", type=POSITIVE, default=8, show_default=True, help="Input size m.")
@click.option("--steps", type=POSITIVE, default=100, show_default=True, help="Sequence length T.")
@click.option("--batch", type=POSITIVE, default=16, show_default=True, help="Sequences.")
@click.option("--init", type=click.Choice(["gaussian", "orthogonal", "torch"]),
              default="gaussian", show_default=True)
@click.option("--weight-scale", type=SCALE, default=1.0, show_default=True)
@click.option("--bias-scale", type=SCALE, default=0.0, show_default=True)
@click.option("--input-scale", type=SCALE, default=1.0, show_default=True,
              help="Inputs are i.i.d. N(0, scale²); 0 gives zero inputs.")
@click.option("--gate-bias", type=FINITE, default=1.0, show_default=True,
              help="Added to each cell's memory-gate bias (positive keeps); 1 is the usual "
                   "forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--out", type=click.Path(), default="reports/gradient-decay", show_default=True)
@click.option("--force", is_flag=True,
              help="Write into --out even if it holds files gradlab did not write (they are "
                   "kept; only gradlab's own files are ever replaced).")
@click.option("--open", "open_", is_flag=True, help="Open the report in a browser.")
def report(names, out, force, open_, **options):
    """Write a gradient-decay report: vanilla RNN against gated cells, with theory."""
    from . import budget, outputs
    from .reports import gradient_decay as rp
    from .device import resolve as resolve_device
    cells = cells_option(names, rp.DEFAULT_CELLS)
    where = {"cell_files": cell_files(cells)}
    outputs.check_target(out, force=force, **where)
    resolve_device(options["device"])
    setup = rp.Setup(cells=tuple(cells), **options)
    budget.ensure_cells_fit("report", cells, setup.hidden, setup.inputs, setup.steps,
                            setup.batch, dtype=setup.dtype, device=setup.device)
    command = "gradlab " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["report"] else \
        "gradlab report"
    before = outputs.snapshot(out)
    with Progress(len(cells), "measured") as progress:
        path = rp.report(setup, out, force=force, command=command, progress=progress,
                         expect=before, notice=notice, **where)
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")
    if open_:
        click.launch(str(path / "index.html"))


@cli.command()
@click.option("--cells", "names", default="lstm", show_default=True,
              help="Comma-separated cells, or 'all'.")
@click.option("--hidden", type=POSITIVE, default=64, show_default=True)
@click.option("--inputs", type=POSITIVE, default=None, help="Input size m [default: hidden].")
@click.option("--steps", type=POSITIVE, default=64, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--repeats", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Best of N.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(names, hidden, inputs, steps, batch, device, dtype, repeats, seed, as_json):
    """Time gradient_flow against autograd, torch.func and the bare bmm floor."""
    from . import budget
    from .bench import disagreement, format_table, run_bench
    from .reports.publish import dumps
    from .device import resolve as resolve_device
    cells = cells_option(names, ())
    resolve_device(device)
    budget.ensure_cells_fit("bench", cells, hidden, inputs or hidden, steps, batch,
                            dtype=dtype, device=device)
    results = []
    with Progress(len(cells), "timed") as progress:
        for name in cells:
            results += run_bench([name], hidden, steps, batch, device, dtype, seed=seed,
                                 repeats=repeats, inputs=inputs)
            progress(name)
    click.echo(dumps(results) if as_json else format_table(results), nl=not as_json)
    problem = disagreement(results, dtype)
    if problem:
        click.echo(f"gradlab: {problem}", err=True)
        sys.exit(1)


@cli.group(invoke_without_command=True)
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh, lstm, gru, minimal_rnn).")
@click.option("--weight-scales", default="0.5,0.75,1,1.25,1.5,2,2.5,3", show_default=True)
@click.option("--gate-biases", default="-2,-1,0,1,2,3,4", show_default=True)
@click.option("--hidden", type=POSITIVE, default=32, show_default=True)
@click.option("--inputs", type=POSITIVE, default=8, show_default=True)
@click.option("--steps", type=POSITIVE, default=60, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--shard", default=None, help="I/N: compute only shard I of N and write its "
              "part to --out (join the parts with `gradlab sweep merge`).")
@click.option("--out", type=click.Path(), default=None,
              help="Report directory [default: reports/phase-diagram; with --shard I/N: "
                   "reports/phase-diagram-shards/I-of-N].")
@click.option("--force", is_flag=True,
              help="Write into --out even if it holds files gradlab did not write (they are "
                   "kept; only gradlab's own files are ever replaced).")
@click.pass_context
def sweep(ctx, names, weight_scales, gate_biases, shard, out, force, **options):
    """Phase diagram: gradient timescale over weight scale x gate bias, per cell."""
    if ctx.invoked_subcommand is not None:
        return
    from . import budget, outputs
    from .reports import shards
    from .reports import sweep as sw
    from .device import resolve as resolve_device
    cells = cells_option(names, sw.DEFAULT_CELLS)
    grid = sw.Grid(cells=tuple(cells), weight_scales=floats(weight_scales, "--weight-scales"),
                   gate_biases=floats(gate_biases, "--gate-biases"), **options)
    part = shards.parse_shard(shard) if shard is not None else None
    points = shards.shard_points(grid, part)
    out = shards.default_out(part) if out is None else out
    where = {"cell_files": cell_files(cells)}
    outputs.check_target(out, force=force, **where)
    resolve_device(grid.device)
    budget.ensure_cells_fit("sweep", cells, grid.hidden, grid.inputs, grid.steps, grid.batch,
                            dtype=grid.dtype, device=grid.device, lyapunov=False)
    before = outputs.snapshot(out)
    with Progress(len(points), "swept") as progress:
        measured = sw.run_points(grid, points, progress=lambda p: progress())
    if part:
        path = shards.write_part(grid, part, measured, out, force=force, expect=before,
                             notice=notice, **where)
        click.echo(f"wrote {path}")
        return
    path = sw.report(grid, measured, out, force=force, command="gradlab sweep",
                     expect=before, notice=notice, **where)
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")


@sweep.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), default="reports/phase-diagram", show_default=True)
@click.option("--force", is_flag=True,
              help="Write into --out even if it holds files gradlab did not write (they are "
                   "kept; only gradlab's own files are ever replaced).")
def merge(dirs, out, force):
    """Join shard directories (from --shard I/N) into one phase-diagram report."""
    from . import outputs
    from .reports import shards
    from .reports import sweep as sw
    shards.check_merge_target(out, dirs)
    grid, points = shards.read_parts(dirs)
    outputs.check_target(out, force=force)
    before = outputs.snapshot(out)
    path = sw.report(grid, points, out, force=force, command="gradlab sweep merge",
                     expect=before, notice=notice)
    click.echo(f"wrote {path}/index.html, report.md, data.json and figures/")


def main():
    cli.main(prog_name="gradlab")
