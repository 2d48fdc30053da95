"""Commands on learning and initialisation: train, init.

Each parses its options, calls one function of the package and prints the result."""

import math
import shlex
import sys

import click

from ..errors import GradlabError
from ..options import CELL_FILES, DTYPE, DEVICE, FINITE, FORCE, POSITIVE, SCALE, SEED, Integer, \
    Number, Progress, cell_files, cell_given, cells_option, check_report_target, echo, \
    given, invoked, notice, plural, shown


@click.command()
@click.option("--cells", "names", default=None,
              help="Comma-separated cells, or 'all' (default: rnn_tanh, lstm, gru, "
                   "prototype_lstm, normalized_lstm, pseudo_lstm). " + CELL_FILES)
@click.option("--tasks", "task_spec", default="adding:10,adding:30,copy:20",
              show_default=True, help="NAME:DELAY entries; NAME is adding, copy or parity.")
@click.option("--steps", type=POSITIVE, default=200, show_default=True,
              help="Adam steps per cell and task.")
@click.option("--hidden", type=POSITIVE, default=32, show_default=True)
@click.option("--batch", type=POSITIVE, default=32, show_default=True)
@click.option("--lr", type=Number(above=0.0), default=1e-2, show_default=True,
              help="Adam's learning rate (above 0).")
@click.option("--gate-bias", type=FINITE, default=1.0, show_default=True)
@click.option("--drift-steps", type=POSITIVE, default=50, show_default=True,
              help="The early training steps the drift measurement covers.")
@click.option("--char-steps", type=Integer(min=0), default=200, show_default=True,
              help="Steps of the character-level LSTM (0: leave it out).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="cpu", show_default=True)
@click.option("--dtype", type=DTYPE, default="float32", show_default=True)
@click.option("--out", type=click.Path(), default="reports/learnability", show_default=True)
@FORCE
def train(names, task_spec, out, force, **options):
    """Train cells on long-range tasks; report learning beside gradient timescales."""
    from .. import outputs
    from ..device import resolve as resolve_device
    from ..training import learnability as ln
    from ..training.loop import largest_lr
    cells = cells_option(names, ln.DEFAULT_CELLS)
    if options["drift_steps"] > options["steps"]:
        if given("drift_steps"):
            raise GradlabError(f"--drift-steps {options['drift_steps']} is more than --steps "
                               f"{options['steps']}: the drift measurement covers the first "
                               "training steps; give --drift-steps <= --steps")
        options["drift_steps"] = options["steps"]    # the default: all the steps there are
    top = largest_lr(options["dtype"])               # Adam's first step, 10 lr, in the
    if options["lr"] > top:                          # model's dtype
        raise GradlabError(f"--lr {options['lr']:g} does not fit {options['dtype']}: Adam's "
                           f"first step is 10 lr, so at most {top:.3g}; give a smaller rate"
                           + (", or --dtype float64" if options["dtype"] != "float64" else ""))
    setup = ln.LearnSetup(cells=tuple(cells), tasks=ln.parse_tasks(task_spec), **options)
    where = {"cell_files": cell_files(cells)}
    check_report_target(out, force=force, figures=ln.FIGURES, **where)
    resolve_device(setup.device)
    ln.ensure_fits(setup)
    from ..initialize import ensure_drawable
    ensure_drawable(cells, setup.hidden, 1, dtype=setup.dtype, gate_bias=setup.gate_bias,
                    seed=setup.seed, flags={"gate_bias": "--gate-bias"})
    command = invoked("train")
    before = outputs.snapshot(out)
    total = len(cells) * len(setup.tasks) + (1 if setup.char_steps else 0)
    with Progress(total, "trained") as progress:
        path = ln.report(setup, out, force=force, command=command, progress=progress,
                         expect=before, notice=notice, **where)
    echo(f"wrote {shown(path)}/index.html, report.md, data.json and figures/")


MEASUREMENTS = 8          # `gradlab init` measures at most this often (critical_init's default)
MAX_MEASUREMENTS = 64     # and at most this often when asked (--measurements)


@click.command("init")
@click.argument("cell", required=False, callback=cell_given, metavar="CELL")
@click.option("--timescale", type=Number(above=1.0), required=True,
              help="Target gradient timescale ξ in steps: the mean squared gradient the "
                   "mean-field theory predicts, (1/n) ||ds_T/ds_(T-k)||_F^2, falls by e in ξ "
                   "steps (the spectral norm, the report's ξ, falls more slowly: printed "
                   "too).")
@click.option("--hidden", type=POSITIVE, default=512, show_default=True,
              help="Width n the correction measures at.")
@click.option("--inputs", type=POSITIVE, default=32, show_default=True, help="Input size m.")
@click.option("--weight-scale", type=SCALE, default=1.0, show_default=True,
              help="Kept for a gated cell; for a cell without a gate bias it is what init "
                   "searches (from where the theory puts the timescale: a value here is not "
                   "used).")
@click.option("--bias-scale", type=SCALE, default=0.1, show_default=True)
@click.option("--input-scale", type=SCALE, default=1.0, show_default=True)
@click.option("--gate-bias", type=FINITE, default=0.0, show_default=True,
              help="What init searches for a gated cell (from where the theory puts the "
                   "timescale: a value here is not used); a cell without a gate bias has "
                   "none to set.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--measurements", type=Integer(1, MAX_MEASUREMENTS), default=MEASUREMENTS,
              show_default=True, help="Measure at most this often (a gated cell's search "
              "near the edge may need 16).")
@click.option("--write-torch", "write_torch", type=click.Path(), default=None,
              help="Save the torch cell module's state dict here (a new file in an existing "
                   "folder, checked before any work; torch-shipped cells). `gradlab report "
                   "--model FILE --arch KIND:hidden=N,inputs=M` reads it (the command "
                   "prints the --arch).")
def init_(cell, timescale, hidden, inputs, weight_scale, bias_scale, input_scale, gate_bias,
          seed, measurements, write_torch):
    """Critical initialisation: init_params options whose gradients decay over TIMESCALE
    steps, from mean-field theory corrected by measurement at --hidden.

    Exit 0 when the measured timescale is within 10 % of TIMESCALE, on the search's sequence
    and again on fresh ones; exit 1, with a warning on stderr (and no --write-torch file),
    when it never got there (the options printed are then only the closest measured) or
    when the fresh sequences do not confirm it ("not confirmed")."""
    from .. import registry
    from ..checkpoint import CELL_ARCH, new_file, save_new
    from ..meanfield import critical_init
    c = registry.cell(cell)
    target = None
    if write_torch is not None:
        from ..interop import MODULES
        if c.name not in MODULES or not registry.builtin(c):
            raise GradlabError(f"cell '{c.name}' has no torch module for --write-torch" + (
                " (a cell of your own that shares a built-in's name)" if c.name in MODULES
                else "") + f"; torch ships: {', '.join(MODULES)}")
        target = new_file(write_torch, "--write-torch")
    from .. import budget
    from ..meanfield.critical import FRESH, longest_timescale, measure_steps
    if timescale > longest_timescale(measure_steps(timescale)):
        raise GradlabError(f"--timescale {timescale:g} is longer than gradlab init can "
                           f"measure: at most {longest_timescale(measure_steps(timescale))} "
                           f"steps (one sequence of {measure_steps(timescale)})")
    budget.ensure_init_fits(c, hidden, inputs, measure_steps(timescale))
    with Progress(measurements, f"init {c.name}: measured") as progress:
        found = critical_init(c, timescale, hidden=hidden, inputs=inputs,
                              weight_scale=weight_scale, bias_scale=bias_scale,
                              input_scale=input_scale, gate_bias=gate_bias, seed=seed,
                              measurements=measurements,
                              report=lambda knob, value, measured: progress(
                                  f"{knob.replace('_', '-')} {value:.4g}: timescale "
                                  f"{measured:.4g}"))
    opts = found["options"]
    echo(f"{c.name}: " + " ".join(f"--{k.replace('_', '-')} {v:.4g}"
                                         for k, v in opts.items()) + f" (seed {seed})")
    theory, aimed = found["theory_timescale"], found["predicted_timescale"]
    start = found["measurements"][0][0] if found["measurements"] else None
    how = "mean field in closed form" if c.name == "rnn_tanh" and registry.builtin(c) \
        else "annealed mean field"
    echo(f"  timescale: target {timescale:.12g}, theory ({how}) "
               + (f"{theory:.4g} at these options" if not math.isnan(theory) else
                  "none at these options (its population overflows float64)")
               + (f" (the search started where it says {aimed:.4g})" if not math.isnan(aimed)
                  else f" (with none to aim at, the search started at {found.knob.replace('_', '-')} "
                  f"{start:.4g})" if start is not None else "")
               + f", measured at n = {hidden} "
               f"{found['measured_timescale']:.4g} steps "
               f"({plural(len(found['measurements']), 'measurement')}; Frobenius norm)")
    echo(f"  the spectral norm at these options (Flow.timescale(), the report's ξ): "
               f"{found['spectral_timescale']:.4g} steps")
    echo(f"  measured again on {FRESH} fresh sequences: {found['fresh_timescale']:.4g} steps")
    if not found["converged"] and found["reached"]:     # the search's sequence only
        echo(f"gradlab: warning: timescale {timescale:.12g} not confirmed: the search's "
             f"sequence gave {found['measured_timescale']:.4g} steps, {FRESH} fresh ones "
             f"{found['fresh_timescale']:.4g}, not within {found['tolerance']:.0%}: at n = "
             f"{hidden} the timescale scatters from sequence to sequence (a wider --hidden "
             "measures it more steadily)"
             + ("; --write-torch not written" if target is not None else ""), err=True)
        sys.exit(1)
    if not found["converged"]:
        more = len(found["measurements"]) >= measurements and measurements < MAX_MEASUREMENTS
        echo(f"gradlab: warning: did not reach timescale {timescale:.12g}: the closest "
                   f"measured at n = {hidden} is {found['measured_timescale']:.4g} steps, "
                   f"not within {found['tolerance']:.0%}, after "
                   f"{plural(len(found['measurements']), 'measurement')}"
                   + ("; --write-torch not written" if target is not None else "")
                   + (f"; more --measurements (now {measurements}) may reach it"
                      if more else ""), err=True)
        sys.exit(1)
    if target is not None:
        from ..interop import to_torch
        params = c.init_params(hidden, inputs, seed=seed, **opts)
        save_new(to_torch(c, params).state_dict(), target, "--write-torch")
        echo(f"  wrote {shown(write_torch)} (gradlab report --model "
                   f"{shlex.quote(shown(write_torch))} --arch {CELL_ARCH[c.name]}:"
                   f"hidden={hidden},inputs={inputs})")
