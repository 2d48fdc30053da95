"""How fast `gradient_flow` is, against the way a competent user would get the same numbers.

The work: for one cell, inputs xs (T, B, m) from a zero state, the products
P_k = d s_T / d s_{T-k} for k = 1..T and the spectral norm of every one. The baselines
(gradlab/baselines.py) step the cell the way a user would, not gradlab's way: torch's own
nn cell where torch ships one, else a plain eager step; only a user's own cell is stepped
by gradlab's lowered code (and the table says so).

    gradient_flow   gradient_flow(norms=("spectral", "frobenius"), blocks=False)
    autograd        the baseline step run with requires_grad, every state kept, rows of
                    every P_k from ONE batched backward pass (torch.autograd.grad with
                    is_grads_batched=True), norms by torch.linalg.matrix_norm(ord=2)
    func            ONE torch.func.vmap(jacrev(step)) over every stored state, chained
                    products, the same matrix_norm(ord=2)
    floor           T bare torch.bmm of (B, S, S): the matrix products alone
    svd             torch.linalg.matrix_norm(ord=2) of all T products at once: what the
                    baselines' spectral norms cost (on a CUDA device timed only here, and
                    added to the baselines' products: `svds_apart`)

each of the first three also without the spectral norms ("products alone"; for
gradient_flow norms=("frobenius",), which still runs the cell forward and evaluates every
Jacobian, all of which the floor leaves out). Three factors are reported apart: the
products (gradient_flow's against the baselines' and the floor), the norms (what
gradient_flow's per-lag spectral norms add, against the SVDs), and the whole.

Timing: the methods take turns in rounds (`best`), so load from elsewhere hits them alike;
each ratio is given for the best times and as its spread (min, median, max) over the
rounds. The baselines do not renormalise, so keep T where ||P_k|| stays inside the dtype's
range. Agreement is the largest relative error of a baseline's per-lag spectral and
Frobenius norms against gradient_flow's (where the SVDs are timed apart, `svds_apart`, the
spectral norms compared are those of func's products, and autograd's are not taken).
"""

import math
import platform
import time

import numpy as np
import torch

from . import __version__, progress, registry
from .baselines import (autograd, autograd_products, baseline_step, chain, floor, func,
                        jacobians)
from .device import exact_float32, resolve
from .errors import GradlabError, derived_seed
from .flow import gradient_flow, make_inputs
from .initialize import as_dtype

FAST, FAST_BUDGET, FAST_RUNS = 0.25, 1.5, 100   # seconds, seconds, runs: see best (the
                          # best of 15 runs of a 5 ms job gave 0.84-1.16x where 300 paired
                          # rounds give 1.25x, 10th-90th percentile 1.20-1.29x)
WARM_UP_LIMIT = 10.0      # seconds: one-off costs (torch.func's first trace, ~1-2 s) are
                          # small beside a first run this long


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device="cpu"):
    """(wall seconds, result) of fn(), the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def best(runs, device, repeats):
    """({name: [wall time of each run, in seconds]}, {name: result}). The methods take turns
    within each round, so a burst of load from elsewhere hits all of them alike; each is
    timed at least `repeats` times, and one that is quick (under FAST seconds a run) keeps
    taking turns with the other quick ones until it has had FAST_BUDGET seconds or
    FAST_RUNS runs, since the best of three 50 ms runs on a shared machine is still noise.
    A first round warms caches and is not counted for a method, unless that method's first
    run took over WARM_UP_LIMIT seconds: then one-off costs are noise beside it, and it
    counts (a slow baseline at n = 256 is not run once more just to be thrown away).
    Entry i of each list is round i, nan where the method did not run or did not count
    then: ratios pair runs of one round (`_spread`)."""
    times = {name: [] for name in runs}
    results = {}
    for name, fn in runs.items():
        progress.advance(f"timing {name}, warm-up round", 1, repeats + 1)
        first, results[name] = timed(fn, device)
        times[name].append(first if first > WARM_UP_LIMIT else math.nan)

    def wanted(name):
        t = counted(times[name])
        if len(t) < repeats:
            return True
        return min(t) < FAST and sum(t) < FAST_BUDGET and len(t) < FAST_RUNS

    while any(wanted(name) for name in runs):
        for name, fn in runs.items():
            seconds = math.nan
            if wanted(name):                 # (rounds past `repeats`: the quick ones only)
                done = len(counted(times[name])) + 1
                progress.advance(f"timing {name}, run {done} of at least {repeats}", done,
                                 max(repeats, done))
                seconds, results[name] = timed(fn, device)
            times[name].append(seconds)
    return times, results


def counted(t):
    """The runs that count, of one method's per-round times."""
    return [x for x in t if not math.isnan(x)]


def paired(times, a, b):
    """(a's time, b's time) of every round where both ran and counted."""
    return [(ta, tb) for ta, tb in zip(times[a], times[b])
            if not (math.isnan(ta) or math.isnan(tb))]


def _flow(cell, params, xs, norms):
    flow = gradient_flow(cell, params, xs, norms=norms, blocks=False)
    spectral = flow.log_norm("spectral") if "spectral" in norms else None
    return spectral, flow.log_norm("frobenius")


def relative_error(logs, reference, dtype):
    """max |a / b - 1| over every lag and sequence, given natural logs a and b, where the
    baseline can hold the value: the baselines' norms are not scaled, and the Frobenius
    norm squares entries, which underflow below sqrt(tiny) (1e-154 in float64) long before
    the norm itself does, and overflow above sqrt(max) (1e154) long before the dtype's
    range ends. A lag is compared where either norm lies within 1e6 of those bounds
    (gradient_flow carries an exact power-of-two scale, so its norm is right beyond them);
    it is left out only where neither does, so gradient_flow's -inf or 1e-300 where a
    baseline holds 1 is a disagreement. A nan where the other has a value is a
    disagreement (inf), never left out."""
    info = torch.finfo(dtype)
    low = 0.5 * math.log(info.tiny) + math.log(1e6)
    high = 0.5 * math.log(info.max) - math.log(1e6)
    logs, reference = np.asarray(logs), np.asarray(reference)
    with np.errstate(invalid="ignore", over="ignore"):      # (inf: a disagreement)
        error = np.abs(np.expm1(logs - reference))
    held = [(a > low) & (a < high) for a in (logs, reference)]
    error = error[held[0] | held[1] | (np.isnan(reference) & ~np.isnan(logs))]
    return float(np.where(np.isnan(error), math.inf, error).max()) if error.size else 0.0


def run_bench(cells, hidden, steps, batch, device="cpu", dtype="float64", seed=0, repeats=3,
              inputs=None):
    """Time gradient_flow against the baselines on the same work (see the module's text).

    cells: names (or one comma-separated string, parsed as --cells is: an empty entry
    refused, a comma inside a cell file's path part of it); hidden = n, steps = T, batch = B;
    inputs = m (default hidden). Returns one JSON-ready dict per cell: "baseline" (the step
    the baselines use), "seconds" (best time per method), "runs", and "factors": for
    "products", "norms" and "whole", each ratio as {"best", "min", "median", "max"} over
    the rounds; "agreement" and "max_relative_error".
    """
    if isinstance(cells, str):
        cells = registry.cell_entries(cells, "cells")
    if not len(cells):
        raise GradlabError(f"cells {cells!r} names no cell; valid: {', '.join(registry.cells())}")
    dtype = as_dtype(dtype)
    for value, what in ((hidden, "hidden"), (steps, "steps"), (batch, "batch"),
                        (repeats, "repeats")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradlabError(f"{what} must be a positive integer, got {value!r}")
    device = resolve(device)
    m = hidden if inputs is None else inputs
    with exact_float32():
        return [_bench_one(registry.cell(name), hidden, m, steps, batch, device, dtype, seed,
                           repeats, label=name) for name in cells]


def bench_each(cells, hidden, inputs, steps, batch, device="cpu", dtype="float64", *,
               seed=0, repeats=3, progress=None):
    """`gradlab bench`: the cells' memory checked first, all of them, then `run_bench` for
    each in turn, `progress(name)` after each; their results, one list."""
    from . import budget
    resolve(device)                      # (an unknown device or no CUDA: one line, first)
    budget.ensure_cells_fit("bench", cells, hidden, inputs or hidden, steps, batch,
                            dtype=dtype, device=device)
    results = []
    for name in cells:
        results += run_bench([name], hidden, steps, batch, device, dtype, seed=seed,
                             repeats=repeats, inputs=inputs)
        if progress is not None:
            progress(name)
    return results


def _spread(times, a, b):
    """b's time over a's: at the best times, and min / median / max over the rounds, all
    from the rounds where both ran (so the best lies within the rounds' range: it used to
    take each method's best over runs the other had no partner for, 8.12x against rounds
    of 3.11-6.04x under load)."""
    pairs = paired(times, a, b) or [(min(counted(times[a])), min(counted(times[b])))]
    rounds = [tb / ta for ta, tb in pairs]
    return {"best": min(tb for _, tb in pairs) / min(ta for ta, _ in pairs),
            "min": min(rounds), "median": float(np.median(rounds)), "max": max(rounds)}


def _bench_one(cell, n, m, T, B, device, dtype, seed, repeats, label=None):
    params = cell.init_params(n, m, seed=seed, dtype=dtype, device=device)
    xs = make_inputs("gaussian", T, B, m, seed=derived_seed(seed, 1), dtype=dtype, device=device)
    S = n * len(cell.state_names)
    shown = label or cell.name           # as given: a file's cell as path/to/file.py:NAME
    label, step = baseline_step(cell, params)
    step.parts = cell.state_names
    both = ("spectral", "frobenius")
    J = jacobians(step, S, xs)
    if not bool(torch.isfinite(J).all()):        # (SVDs raise on them: nothing to time)
        raise GradlabError(f"cell '{shown}': its products are not finite at these params "
                           f"(n = {n}, seed {seed}): the state or a Jacobian is nan or inf, "
                           "and there is nothing to time (gradlab verify --cells shows where)")
    P = chain(J)                                 # every P_k once, to time the SVDs alone
    del J
    if not bool(torch.isfinite(P).all()):        # finite Jacobians, a product past the range
        k = int((~torch.isfinite(P)).flatten(1).any(1).int().argmax()) + 1
        raise GradlabError(f"cell '{shown}': its products overflow "
                           f"{str(dtype).removeprefix('torch.')} from lag {k} of T = {T} "
                           f"(n = {n}, seed {seed}; the states and Jacobians are finite), "
                           "and the baselines do not rescale: give fewer --steps"
                           + (" or --dtype float64" if dtype == torch.float32 else ""))
    runs = {
        "gradient_flow": lambda: _flow(cell, params, xs, both),
        "gradient_flow_products": lambda: _flow(cell, params, xs, ("frobenius",)),
        "autograd": lambda: autograd(step, S, xs, True),
        "autograd_products": lambda: autograd(step, S, xs, False),
        "func": lambda: func(step, S, xs, True),
        "func_products": lambda: func(step, S, xs, False),
        "floor": floor(T, B, S, dtype, device),
        "svd": lambda: torch.linalg.matrix_norm(P, ord=2),
    }
    apart = svds_apart(device)
    stride = svd_stride(T, B, apart)
    if apart:
        del runs["autograd"], runs["func"]
        runs["svd"] = lambda: torch.linalg.matrix_norm(P[::stride], ord=2)
    times, results = best(runs, device, repeats)
    if apart:
        _compose(times, results, P, step, S, xs, stride)
    spectral, fro = results["gradient_flow"]
    agreement = {}
    for name in ("autograd", "func"):
        spec_b, fro_b = results[name]
        if spec_b is not None:                   # (at the lags whose SVDs were taken)
            agreement[f"spectral_{name}"] = relative_error(spec_b, spectral[:, ::stride],
                                                           dtype)
        agreement[f"frobenius_{name}"] = relative_error(fro_b, fro, dtype)
    seconds = {name: min(counted(t)) for name, t in times.items()}
    gf, gfp = "gradient_flow", "gradient_flow_products"
    norm_cost = [a - b for b, a in paired(times, gfp, gf)] or [seconds[gf] - seconds[gfp]]
    return {
        "cell": shown, "baseline": label, "device": str(device), "svds_apart": apart,
        "svd_stride": stride,
        "dtype": str(dtype).removeprefix("torch."), "hidden": n, "inputs": m, "steps": T,
        "batch": B, "state_size": S, "repeats": repeats,
        "runs": {name: len(counted(t)) for name, t in times.items()},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "gradlab": __version__,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "seconds": seconds,
        "factors": {
            "products": {"autograd": _spread(times, gfp, "autograd_products"),
                         "func": _spread(times, gfp, "func_products"),
                         "over_floor": _spread(times, "floor", gfp)},
            # what the norms add: the median over rounds of (whole - products alone) taken
            # in the same round, against the median products time (a median of the
            # differences over the best products time would mix two statistics); and the
            # same from the best times
            "norms": {"gradient_flow_seconds": max(0.0, float(np.median(norm_cost))),
                      "svd_seconds": seconds["svd"],
                      "share_of_products": max(0.0, float(np.median(norm_cost)))
                      / float(np.median(counted(times[gfp]))),
                      "share_at_best": max(0.0, seconds[gf] - seconds[gfp]) / seconds[gfp]},
            "whole": {"autograd": _spread(times, gf, "autograd"),
                      "func": _spread(times, gf, "func")}},
        "agreement": agreement,
        "max_relative_error": max(agreement.values()),
    }


def svds_apart(device):
    """Whether the baselines' SVDs are timed once, apart from their products: on a CUDA
    device, where torch's SVD of a batch of matrices larger than 32 x 32 runs one matrix at
    a time (cuSOLVER batches only up to 32 x 32), so that the T B SVDs of the GPU goal's
    size take minutes a call, and timing them three times over is not affordable."""
    return torch.device(device).type == "cuda"


# Matrices whose SVDs the bench times where they run one at a time (svds_apart): at the GPU
# goal's size an H200 took 40 ms each for 64 of the (512, 512) float32 products, and 100 ms
# each for the 256 the bench took (some needed cuSOLVER's slower fallback), so all T B =
# 8192 would take 330-830 s a run; past this many, every stride-th lag is timed and the
# time scaled by the lags left out (`svd_stride`).
SVD_SAMPLE = 256


def svd_stride(T, B, apart):
    """Every how many lags the SVDs are timed: 1 (all of them), or where the SVDs are
    timed apart and T B > SVD_SAMPLE, the least stride that keeps to SVD_SAMPLE matrices
    (at least one lag's B). Their time is an extrapolation: one call per matrix there, but
    not the same time per matrix (cuSOLVER retries some with a slower driver)."""
    return math.ceil(T / max(1, SVD_SAMPLE // B)) if apart else 1


def _compose(times, results, P, step, S, xs, stride=1):
    """With the SVDs timed apart: each baseline's time with norms is its products' time,
    round by round, plus the SVDs' best time (of every stride-th lag, scaled by T over the
    lags timed); its norms are those of the SVDs of func's products (the "svd" run: every
    stride-th lag) and, for autograd, the Frobenius norms of its own products (its
    spectral norms are not taken: one more batch of SVDs)."""
    T = P.shape[0]
    times["svd"] = [t * T / math.ceil(T / stride) for t in times["svd"]]
    svd = min(counted(times["svd"]))
    for name in ("autograd", "func"):
        times[name] = [t + svd for t in times[f"{name}_products"]]
    logs = [torch.linalg.matrix_norm(p, ord="fro").log().T.to(dtype=torch.float64, device="cpu")
            .numpy() for p in (P, autograd_products(step, S, xs))]
    spectral = results["svd"].log().T.to(dtype=torch.float64, device="cpu").numpy()
    results["func"], results["autograd"] = (spectral, logs[0]), (None, logs[1])


# float64 products agree to ~1e-13 (the spectral iteration stops at 1e-12); float32 to a
# few hundred ulps of its 1.2e-7. Beyond these the methods disagree.
AGREEMENT = {"float64": 1e-8, "float32": 1e-3}


def disagreement(results, dtype):
    """A sentence if any method's norms disagree with gradient_flow's beyond AGREEMENT
    (nan counts as disagreement), else None."""
    worst = max(r["max_relative_error"] for r in results)
    if worst <= AGREEMENT[str(dtype).removeprefix("torch.")]:
        return None
    return (f"methods disagree: max relative error {worst:.2e} > "
            f"{AGREEMENT[str(dtype).removeprefix('torch.')]:.0e}")


def _ratio(r):
    return f"{r['best']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f}x)"


def format_table(results):
    """A plain-text table of `run_bench` results: times, the three factors, agreement."""
    lines = []
    for r in results:
        s = {k: 1e3 * v for k, v in r["seconds"].items()}
        f = r["factors"]
        lines += [
            f"{r['cell']}: n={r['hidden']} m={r['inputs']} T={r['steps']} B={r['batch']} "
            f"S={r['state_size']} {r['dtype']} on {r['device']} ({r['threads']} threads, "
            f"best of {min(r['runs'].values())} to {max(r['runs'].values())} runs); "
            f"baselines step with {r['baseline']}",
            f"  {'':16}{'with norms':>14}{'products alone':>18}",
        ]
        for name in ("gradient_flow", "autograd", "func"):
            lines.append(f"  {name:16}{s[name]:>11.1f} ms{s[name + '_products']:>15.1f} ms")
        lines += [
            f"  {'floor (T bmm)':16}{'':>14}{s['floor']:>15.1f} ms",
            f"  {'SVDs (T norms)':16}{s['svd']:>11.1f} ms",
            "  products: speed-up " + _ratio(f["products"]["autograd"]) + " over autograd, "
            + _ratio(f["products"]["func"]) + " over torch.func; time "
            + _ratio(f["products"]["over_floor"]) + " the floor's",
            f"  norms: per-lag spectral norms add {1e3 * f['norms']['gradient_flow_seconds']:.1f}"
            f" ms ({100 * f['norms']['share_of_products']:.0f}% of the products; at the best "
            f"times {100 * f['norms']['share_at_best']:.0f}%) against {s['svd']:.1f} ms for "
            "the SVDs",
            "  whole (with norms): speed-up " + _ratio(f["whole"]["autograd"]) + " over "
            "autograd, " + _ratio(f["whole"]["func"]) + " over torch.func",
            "  agreement (max relative error vs gradient_flow): "
            + ", ".join(f"{k} {v:.1e}" for k, v in r["agreement"].items()),
            "  (a time: its method's best run; a ratio: at the best times within the rounds "
            "both methods ran, so not always the quotient of the times shown)",
        ]
        if r.get("svds_apart"):
            k = r.get("svd_stride", 1)
            sampled = (f", of one lag in {k} ({math.ceil(r['steps'] / k) * r['batch']} of "
                       f"{r['steps'] * r['batch']} matrices, one SVD call each there), their "
                       f"time scaled by T over the lags timed" if k > 1 else "")
            lines.append(f"  (on {r['device']} the SVDs were timed apart, best of "
                         f"{r['runs']['svd']}{sampled}: a baseline's time with norms is its "
                         "products' plus the SVDs' best, and the spectral norms compared are "
                         "the SVDs of func's products; autograd's are not taken)")
    return "\n".join(lines)
