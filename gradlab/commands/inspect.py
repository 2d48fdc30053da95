"""Commands on cells and derivations: cells, derive, verify, check, shell.

Each parses its options, calls one function of the package and prints the result."""

import sys

import click

from ..errors import GradlabError
from ..options import CELL_FILES, DEVICE, DTYPE, FORCE, FRACTION, POSITIVE, SCALE, SEED, Progress, \
    echo, cell_files, cells_option, shown, strip_cell


@click.command()
def cells():
    """List the registered cells: name, state parts, source."""
    from .. import registry
    rows = [(c.name, ", ".join(c.state_names), c.source)
            for c in map(registry.cell, registry.cells())]
    width = max(len(r[0]) for r in rows)
    echo(f"{'cell':<{width}}  {'state':<13}  source")
    for name, state, source in rows:
        echo(f"{name:<{width}}  {state:<13}  {source}")


@click.command()
@click.argument("cell", required=False)
@click.option("--all", "every", is_flag=True, help="Every registered cell (needs --out).")
@click.option("--latex", is_flag=True, help="Print LaTeX instead of plain text.")
@click.option("--out", type=click.Path(), help="Write Markdown documents here (a folder "
              "gradlab owns: it updates its own files there and touches no other).")
@FORCE
def derive(cell, every, latex, out, force):
    """Show a cell's equations and Jacobian blocks, or write derivation documents."""
    from ..documents import derivation as document
    from .. import registry
    cell = strip_cell(cell)
    if every == bool(cell):
        raise GradlabError("give one CELL or --all (valid cells: "
                           f"{', '.join(registry.cells())})")
    if out is not None and not str(out).strip():
        raise GradlabError("--out is empty; give a folder path")
    if every and not out:
        raise GradlabError("--all writes documents: give --out DIR")
    if force and not out:
        raise GradlabError("--force is for --out (replacing files there); printing to the "
                           "terminal replaces nothing")
    if latex and out:
        raise GradlabError("--latex prints to the terminal, and --out writes Markdown "
                           "documents; give one of them")
    if out:
        names = registry.cells() if every else [registry.cell(cell)]
        written = document.write_all(out, names, force=force,
                                     cell_files=cell_files([cell] if cell else []))
        echo(f"wrote {len(written)} files to {shown(out)}")
        return
    echo(document.terminal(cell, as_latex=latex))


@click.command()
@click.option("--cells", "names", default=None, help="Comma-separated cells (default: all). "
              + CELL_FILES)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for sizes and values.")
def verify(names, device, dtype, seed):
    """Check the lowered Jacobians against torch autograd, torch.nn and numpy."""
    from .. import registry
    from ..device import resolve as resolve_device
    from ..verification.verify import independence_note, summarize, verify_cell
    # labelled as given: a file's cell as path/to/file.py:NAME (it may share a built-in's name)
    chosen = [(spec, registry.cell(spec)) for spec in cells_option(names, registry.cells())]
    resolve_device(device)
    results = []
    with Progress(len(chosen), "verified") as progress:    # as every long command shows it
        for label, c in chosen:
            results.append((label, c, verify_cell(c, device=device, dtype=dtype, seed=seed)))
            progress(label)
    for label, c, checks in results:
        echo(f"\n{label}  ({device}, {dtype})")
        echo(f"  {'check':<8} {'against':<40} {'max rel error':>13}  {'tolerance':>9}")
        for ch in checks:
            mark = "ok" if ch.passed else "FAIL" if ch.finite else (
                "FAIL (the equations give nan or inf here)" if ch.undefined
                else "FAIL (non-finite)")
            echo(f"  {ch.what:<8} {ch.reference:<40} {ch.error:>13.2e}  "
                       f"{ch.tolerance:>9.0e}  {mark}")
        note = independence_note(c, checks)
        if note:
            echo(f"  {note}")
    summary = summarize(ch for _, _, checks in results for ch in checks)
    echo(f"\n{summary}")
    if summary.failed:
        sys.exit(1)


@click.command()
@click.argument("function")
@click.option("--cell", "cell_name", required=True, help="The cell FUNCTION claims to "
              "differentiate (a name, or path/to/file.py:NAME).")
@click.option("--wrt", type=click.Choice(["state", "input"]), default="state", show_default=True)
@click.option("--block", default=None, help="OUT,IN when FUNCTION gives one block, e.g. h,h.")
@click.option("--layout", type=click.Choice(["numerator", "denominator"]), default="numerator",
              show_default=True, help="numerator: rows are outputs (as torch.func.jacrev).")
@click.option("--hidden", type=POSITIVE, default=8, show_default=True)
@click.option("--inputs", type=POSITIVE, default=4, show_default=True)
@click.option("--batch", type=POSITIVE, default=4, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--rtol", type=FRACTION, default=1e-8, show_default=True)
@click.option("--weight-scale", type=SCALE, default=1.5, show_default=True,
              help="Weights drawn at this scale (large enough that every term counts).")
@click.option("--bias-scale", type=SCALE, default=0.5, show_default=True,
              help="Biases drawn at this scale; 0 for a derivation without biases.")
def check(function, cell_name, wrt, block, layout, hidden, inputs, batch, seed, rtol,
          weight_scale, bias_scale):
    """Check your Jacobian FUNCTION (path/to/file.py:FN, FN(params, state, x)) against the
    exact one, at --hidden/--inputs, then at a second pair of sizes, at the first with
    other draws, and at the first again (an answer must not change); exit 0 when it
    agrees (and stdout starts "agrees:"), 1 with a diagnosis when it does not, or
    "inconclusive:" when the draws cannot tell (a term of the Jacobian at zero everywhere,
    two params alike), 2 when FUNCTION fails or exits (what it prints, even to file
    descriptor 1 or from a child process, goes to stderr: stdout is gradlab's alone). A
    FUNCTION that ends the process from a thread of its own cannot be stopped: a script
    should also look for "agrees:"."""
    from .. import budget
    from ..verification.spec import check_spec
    cell_name = strip_cell(cell_name)
    budget.ensure_check_fits(cell_name, hidden, inputs, batch)
    result = check_spec(function, cell_name, hidden=hidden, inputs=inputs, seed=seed,
                        weight_scale=weight_scale, bias_scale=bias_scale,   # --block as typed
                        wrt=wrt, layout=layout, block=block, batch=batch, rtol=rtol)
    echo(str(result))
    if not result.ok:
        sys.exit(1)


@click.command()
@click.option("--plain", is_flag=True, help="Python's own console even if IPython is there.")
def shell(plain):
    """A Python prompt with gradlab, torch and every catalogue cell loaded (IPython when
    installed: pip install 'gradlab[repl]')."""
    from ..repl import start
    start(plain=plain)
