"""The `gradlab` command: a thin shell over the library (parse, call one function, print).

Only click loads at start; SymPy and torch load inside the commands that need them, so
`gradlab --help` is instant.
"""

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


def main():
    cli.main(prog_name="gradlab")
