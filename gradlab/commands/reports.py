"""The report commands: report, bench, sweep (and sweep merge).

Each parses its options, calls one function of the package and prints the result."""

import sys

import click

from ..errors import GradlabError
from ..options import CELL_FILES, DEVICE, DTYPE, FINITE, FORCE, POSITIVE, SCALE, SEED, Integer, \
    Progress, REPORT_FILES, cell_files, cells_option, check_report_target, echo, floats, \
    given, invoked, notice, open_page, shown


@click.command()
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh and the essay's gated "
                   "cells). " + CELL_FILES)
@click.option("--hidden", type=POSITIVE, default=64, show_default=True, help="Hidden size n.")
@click.option("--inputs", type=POSITIVE, default=8, show_default=True, help="Input size m.")
@click.option("--steps", type=POSITIVE, default=100, show_default=True, help="Sequence length T.")
@click.option("--batch", type=POSITIVE, default=16, show_default=True, help="Sequences.")
@click.option("--init", type=click.Choice(["gaussian", "orthogonal", "torch"]),
              default="gaussian", show_default=True)
@click.option("--weight-scale", type=SCALE, default=1.0, show_default=True)
@click.option("--bias-scale", type=SCALE, default=0.0, show_default=True)
@click.option("--input-scale", type=SCALE, default=1.0, show_default=True,
              help="Inputs are i.i.d. N(0, scale²), and the input weights U are drawn with "
                   "this scale too (gaussian init: N(0, scale²/m); --init torch: the inputs "
                   "only); 0 gives zero inputs.")
@click.option("--gate-bias", type=FINITE, default=1.0, show_default=True,
              help="Added to each cell's memory-gate bias (positive keeps); 1 is the usual "
                   "forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--out", type=click.Path(), default="reports/gradient-decay", show_default=True)
@FORCE
@click.option("--open", "open_", is_flag=True, help="Open the report in a browser.")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="A checkpoint: torch.save(module.state_dict(), PATH) of an nn.RNN, nn.LSTM "
                   "or nn.GRU, read with torch.load(weights_only=True) only. Reported trained "
                   "and at torch's default init (--seed); needs --arch; sizes come from "
                   "--arch, and the report holds the model alone unless --cells is given.")
@click.option("--arch", default=None, metavar="KIND:key=value,...",
              help="The checkpoint's architecture, e.g. lstm:layers=2,hidden=256,inputs=64; "
                   "KIND rnn (nn.RNN, tanh), rnn_relu, lstm or gru; keys hidden, inputs "
                   "(required), layers "
                   "(default 1), bias (1/0, default 1), bidirectional (1/0, default 0; both "
                   "directions are reported), proj (lstm's proj_size), prefix (e.g. rnn. to "
                   "read model.rnn from a whole model's state dict). Every tensor name and "
                   "shape under the prefix is checked.")
def report(names, out, force, open_, model, arch, **options):
    """Write a gradient-decay report: vanilla RNN against gated cells, with theory."""
    from .. import budget, outputs
    from ..reports import gradient_decay as rp
    from ..device import resolve as resolve_device
    from ..checkpoint import parse_arch, report_models
    from ..initialize import SCALE_DEFAULTS, refuse_unused_scales
    resolve_device(options["device"])
    if model is not None and arch is not None:      # sizes from --arch, checked first
        shape = parse_arch(arch)
        for key in ("hidden", "inputs"):
            if given(key) and options[key] != getattr(shape, key):
                raise GradlabError(f"--{key} {options[key]} conflicts with --arch {arch!r} "
                                   f"({key}={getattr(shape, key)}): with --model the sizes "
                                   f"come from --arch; leave --{key} out")
        budget.ensure_arch_fits(shape, options["steps"], options["batch"],
                                dtype=options["dtype"], device=options["device"])
    models, model_note = report_models(model, arch, options, notice=notice)
    cells = cells_option(names, () if models else rp.DEFAULT_CELLS)
    unused = [k for k in ("init", "weight_scale", "bias_scale", "gate_bias")
              if models and not cells and given(k)]
    if unused:                  # they set how --cells are drawn, and there are none
        flag = "--" + unused[0].replace("_", "-")
        raise GradlabError(f"{flag} sets how the --cells are drawn, and a report of --model "
                           f"alone draws none (the model's weights are its own, its init "
                           f"entry torch's): leave {flag} out, or add --cells")
    where = {"cell_files": cell_files(cells)}
    check_report_target(out, force=force, figures=rp.FIGURES, **where)
    refuse_unused_scales(options["init"], {k: "--" + k.replace("_", "-") for k in
                                           SCALE_DEFAULTS}, weight_scale=options["weight_scale"],
                         bias_scale=options["bias_scale"])
    setup = rp.Setup(cells=tuple(cells), **options)
    budget.ensure_cells_fit("report", [*cells, *(c for c, _ in (models or {}).values())],
                            setup.hidden, setup.inputs, setup.steps,
                            setup.batch, dtype=setup.dtype, device=setup.device)
    from ..initialize import ensure_drawable
    ensure_drawable(cells, setup.hidden, setup.inputs, dtype=setup.dtype,
                    **setup.draw_options(), flags={
                        "weight_scale": "--weight-scale", "bias_scale": "--bias-scale",
                        "input_scale": "--input-scale", "gate_bias": "--gate-bias"})
    command = invoked("report")
    before = outputs.snapshot(out)
    with Progress(len(cells) + len(models or {}), "measured") as progress:
        path = rp.report(setup, out, force=force, command=command, progress=progress,
                         expect=before, notice=notice, models=models,
                         model_note=model_note, **where)
    echo(f"wrote {shown(path)}/index.html, report.md, data.json and figures/")
    if open_:
        open_page(path / "index.html")


@click.command()
@click.option("--cells", "names", default="lstm", show_default=True,
              help="Comma-separated cells, or 'all' (with --lyapunov: lstm, gru). " + CELL_FILES)
@click.option("--hidden", type=POSITIVE, default=64, show_default=True)
@click.option("--inputs", type=POSITIVE, default=None, help="Input size m [default: hidden].")
@click.option("--steps", type=POSITIVE, default=64, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--repeats", type=Integer(1, 1000), default=3, show_default=True,
              help="Best of at least N runs (a method under 0.25 s a run takes more turns, "
                   "up to 1.5 s or 100 runs: best of 3 is noise at that size).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--lyapunov", "lyapunov_k", type=Integer(1, 4096), default=None,
              metavar="K", help="Instead: time gradlab.lyapunov (top K exponents) against a "
              "published QR implementation (lstm, gru; e.g. --cells lstm,gru --steps 1000).")
def bench(names, hidden, inputs, steps, batch, device, dtype, repeats, seed, as_json,
          lyapunov_k):
    """Time gradient_flow against autograd, torch.func and the bare bmm floor."""
    from ..reports.publish import dumps
    if lyapunov_k is not None:
        from ..bench_lyapunov import (bench_cells, format_lyapunov_table, lyapunov_disagreement,
                                      lyapunov_each)
        cells = bench_cells(names, device)
        with Progress(len(cells), "timed") as progress:
            results = lyapunov_each(cells, hidden, inputs or hidden, steps, batch, lyapunov_k,
                                    dtype, repeats=repeats, seed=seed, progress=progress)
        text, problem = format_lyapunov_table(results), lyapunov_disagreement(results)
    else:
        from ..bench import bench_each, disagreement, format_table
        cells = cells_option(names, ())
        with Progress(len(cells), "timed") as progress:
            results = bench_each(cells, hidden, inputs, steps, batch, device, dtype,
                                 seed=seed, repeats=repeats, progress=progress)
        text, problem = format_table(results), disagreement(results, dtype)
    echo(dumps(results) if as_json else text, nl=not as_json)
    if problem:
        echo(f"gradlab: {problem}", err=True)
        sys.exit(1)


@click.group(invoke_without_command=True)
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh, lstm, gru, "
                   "minimal_rnn). " + CELL_FILES)
@click.option("--weight-scales", default="0.5,0.75,1,1.25,1.5,2,2.5,3", show_default=True)
@click.option("--gate-biases", default="-2,-1,0,1,2,3,4", show_default=True)
@click.option("--hidden", type=POSITIVE, default=32, show_default=True)
@click.option("--inputs", type=POSITIVE, default=8, show_default=True)
@click.option("--steps", type=POSITIVE, default=60, show_default=True,
              help="First horizon T; doubled until T is 8 timescales or --max-steps.")
@click.option("--max-steps", type=POSITIVE, default=240, show_default=True)
@click.option("--batch", type=POSITIVE, default=8, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float64", show_default=True)
@click.option("--shard", default=None, help="I/N: compute only shard I of N and write its "
              "part to --out (join the parts with `gradlab sweep merge`).")
@click.option("--out", type=click.Path(), default=None,
              help="Report directory [default: reports/phase-diagram; with --shard I/N: "
                   "reports/phase-diagram-shards/I-of-N].")
@FORCE
@click.pass_context
def sweep(ctx, names, weight_scales, gate_biases, shard, out, force, **options):
    """Phase diagram: gradient timescale over weight scale x gate bias, per cell."""
    if ctx.invoked_subcommand is not None:
        early = [p.opts[0] for p in ctx.command.params if p.name and given(p.name)]
        if early:        # sweep's options, which merge would silently drop
            raise GradlabError(f"{', '.join(early)} given before '{ctx.invoked_subcommand}': "
                               f"those are options of a sweep; `gradlab sweep merge DIRS "
                               "[--out DIR] [--force]` takes its own after 'merge'")
        return
    from .. import budget, outputs
    from ..reports import shards
    from ..reports import sweep as sw
    from ..device import resolve as resolve_device
    cells = cells_option(names, sw.DEFAULT_CELLS)
    if options["steps"] > options["max_steps"]:
        if given("max_steps"):
            raise GradlabError(f"--steps {options['steps']} is more than --max-steps "
                               f"{options['max_steps']}: the horizon starts at --steps and "
                               "doubles up to --max-steps; give --steps <= --max-steps")
        options["max_steps"] = options["steps"]      # the default budget: no doubling
    grid = sw.Grid(cells=tuple(cells), weight_scales=floats(weight_scales, "--weight-scales",
                                                            low=0.0),
                   gate_biases=floats(gate_biases, "--gate-biases"), **options)
    part = shards.parse_shard(shard) if shard is not None else None
    points = shards.shard_points(grid, part)
    out = shards.default_out(part) if out is None else out
    where = {"cell_files": cell_files(cells)}
    check_report_target(out, force=force, figures=() if part else sw.FIGURES,
                        files=(sw.PART,) if part else REPORT_FILES, **where)
    resolve_device(grid.device)
    budget.ensure_cells_fit("sweep", cells, grid.hidden, grid.inputs,
                            max(grid.steps, grid.max_steps), grid.batch,
                            dtype=grid.dtype, device=grid.device, lyapunov=False,
                            steps_option="--max-steps")
    from ..initialize import ensure_drawable
    ensure_drawable(cells, grid.hidden, grid.inputs, dtype=grid.dtype, seed=grid.seed,
                    weight_scale=grid.weight_scales, gate_bias=grid.gate_biases,
                    flags={"weight_scale": "--weight-scales", "gate_bias": "--gate-biases"})
    before = outputs.snapshot(out)
    with Progress(len(points), "swept") as progress:
        measured = sw.run_points(grid, points, progress=lambda p: progress())
    if part:
        path = shards.write_part(grid, part, measured, out, force=force, expect=before,
                                 notice=notice, command=invoked("sweep"), **where)
        echo(f"wrote {shown(path)}")
        return
    path = sw.report(grid, measured, out, force=force, command=invoked("sweep"),
                     expect=before, notice=notice, **where)
    echo(f"wrote {shown(path)}/index.html, report.md, data.json and figures/")


@sweep.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), default="reports/phase-diagram", show_default=True)
@FORCE
def merge(dirs, out, force):
    """Join shard directories (from --shard I/N) into one phase-diagram report."""
    from .. import outputs
    from ..reports import shards
    from ..reports import sweep as sw
    shards.check_merge_target(out, dirs)
    grid, points = shards.read_parts(dirs)
    made = shards.part_commands(dirs)    # how the parts were made, for the header
    command = invoked("sweep merge") + (f" (of parts made by: {'; '.join(made)})"
                                        if made else "")
    check_report_target(out, force=force, figures=sw.FIGURES)
    before = outputs.snapshot(out)
    path = sw.report(grid, points, out, force=force, command=command,
                     expect=before, notice=notice, import_cells=False)
    echo(f"wrote {shown(path)}/index.html, report.md, data.json and figures/")
