"""How fast `gradient_flow` is, against the ways one would otherwise get the same numbers.

The work: for one cell, inputs xs (T, B, m) from a zero state, the products
P_k = d s_T / d s_{T-k} for k = 1..T and the spectral norm of every one. Timed four ways on
one device, the best of at least `repeats` runs (quick methods get more, see `_best`),
CUDA synchronised around each timing:

    gradient_flow   gradient_flow(norms=("spectral", "frobenius"), blocks=False): lowered
                    step and Jacobians, one running product, warm-started Lanczos
    autograd        a step run with requires_grad keeping every state, rows of each P_k by
                    torch.autograd.grad(s_T, states, eye, is_grads_batched=True), norms by
                    torch.linalg.matrix_norm(ord=2)
    func            torch.func.vmap(jacrev(step)) at every step, chained products, the
                    same matrix_norm(ord=2)
    floor           T bare torch.bmm of (B, S, S), the same operands each time: the
                    matrix products alone, with nothing to compute them from

and each of the first three again without the spectral norms ("products alone": for
gradient_flow, norms=("frobenius",), which still runs the cell forward and evaluates every
Jacobian, all of which the floor leaves out). The baselines do not renormalise, so keep T
where ||P_k|| stays inside the dtype's range. Agreement is the largest relative error of a
baseline's per-lag spectral and Frobenius norms against gradient_flow's.
"""

import math
import platform
import time

import numpy as np
import torch

from .errors import GradlabError
from .flow import _as_dtype, gradient_flow, make_inputs
from .registry import cell as _lookup

FAST, FAST_BUDGET, FAST_RUNS = 0.25, 1.5, 15    # seconds, seconds, runs: see _best
WARM_UP_LIMIT = 10.0      # seconds: one-off costs (torch.func's first trace, ~1-2 s) are
                          # small beside a first run this long


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def _best(runs, device, repeats):
    """{name: (best wall time in seconds, result, runs timed)}. The methods take turns
    within each round, so a burst of load from elsewhere hits all of them alike; each is
    timed at least `repeats` times, and one that is quick (under FAST seconds a run) keeps
    taking turns with the other quick ones until it has had FAST_BUDGET seconds or
    FAST_RUNS runs, since the best of three 50 ms runs on a shared machine is still noise.
    A first round warms caches and is not counted for a method, unless that method's first
    run took over WARM_UP_LIMIT seconds: then one-off costs are noise beside it, and it
    counts (a slow baseline at n = 256 is not run once more just to be thrown away)."""
    times = {name: [] for name in runs}
    results = {}
    for name, fn in runs.items():
        first, results[name] = _timed(fn, device)
        if first > WARM_UP_LIMIT:
            times[name].append(first)

    def wanted(name):
        t = times[name]
        if len(t) < repeats:
            return True
        return min(t) < FAST and sum(t) < FAST_BUDGET and len(t) < FAST_RUNS

    while any(wanted(name) for name in runs):
        for name, fn in runs.items():
            if wanted(name):
                seconds, results[name] = _timed(fn, device)
                times[name].append(seconds)
    return {name: (min(times[name]), results[name], len(times[name])) for name in runs}


def _flow(cell, params, xs, norms):
    flow = gradient_flow(cell, params, xs, norms=norms, blocks=False)
    spectral = flow.log_norm("spectral") if "spectral" in norms else None
    return spectral, flow.log_norm("frobenius")


class _Norms:
    """Per-lag log spectral and Frobenius norms of products seen one at a time, with the
    spectral norm as the baselines compute it: torch.linalg.matrix_norm(ord=2) (an SVD)."""

    def __init__(self, wanted):
        self.wanted, self.spectral, self.frobenius, self.last = wanted, [], [], None

    def add(self, P):                                                  # P (B, S, S)
        self.last = P
        if self.wanted:
            self.spectral.append(torch.linalg.matrix_norm(P, ord=2).log())
            self.frobenius.append(torch.linalg.matrix_norm(P).log())

    def result(self):
        """(spectral, frobenius) as (B, T) float64 numpy, or the last product."""
        if not self.wanted:
            return self.last
        return [torch.stack(a, 1).to(dtype=torch.float64, device="cpu").numpy()
                for a in (self.spectral, self.frobenius)]


def _autograd(cell, params, xs, norms):
    """Rows of every P_k from one batched backward pass over the retained states."""
    step = cell.step_fn("torch")
    T, B, _ = xs.shape
    n = params[cell.param_names[0]].shape[0]
    S = n * len(cell.state_names)
    s = torch.zeros(B, S, dtype=xs.dtype, device=xs.device, requires_grad=True)
    states = [s]
    for t in range(T):
        states.append(torch.cat(step(params, states[-1].split(n, -1), xs[t]), -1))
    eye = torch.eye(S, dtype=xs.dtype, device=xs.device)[:, None, :].expand(S, B, S)
    rows = torch.autograd.grad(states[T], states[:T], grad_outputs=eye, is_grads_batched=True)
    out = _Norms(norms)
    for k in range(1, T + 1):
        out.add(rows[T - k].transpose(0, 1))                          # (B, S, S): P_k
    return out.result()


def _func(cell, params, xs, norms):
    """vmap(jacrev(step)) at every step, chained back from s_T."""
    step = cell.step_fn("torch")
    T, B, _ = xs.shape
    n = params[cell.param_names[0]].shape[0]

    def single(s, x):                                                  # (S,), (m,) -> (S,)
        return torch.cat(step(params, tuple(p[None] for p in s.split(n)), x[None]), -1)[0]

    jacobian = torch.func.vmap(torch.func.jacrev(single))
    with torch.no_grad():
        states = [torch.zeros(B, n * len(cell.state_names), dtype=xs.dtype, device=xs.device)]
        for t in range(T):
            states.append(torch.cat(step(params, states[-1].split(n, -1), xs[t]), -1))
    out, P = _Norms(norms), None
    for t in range(T, 0, -1):
        J = jacobian(states[t - 1], xs[t - 1])
        P = J if P is None else torch.bmm(P, J)
        out.add(P)
    return out.result()


def _floor(T, B, S, dtype, device):
    gen = torch.Generator().manual_seed(0)
    A, J = (torch.randn(B, S, S, generator=gen, dtype=torch.float64).div(math.sqrt(S))
            .to(dtype=dtype, device=device) for _ in range(2))
    out = torch.empty_like(A)

    def floor():
        for _ in range(T):
            torch.bmm(A, J, out=out)
        return out

    return floor


def _relative(logs, reference):
    """max |a / b - 1| over every lag and sequence, given natural logs a and b."""
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(np.expm1(logs - reference))))


def run_bench(cells, hidden, steps, batch, device="cpu", dtype="float64", seed=0, repeats=3,
              inputs=None):
    """Time gradient_flow, autograd, torch.func and the bmm floor on the same work.

    cells: names (or one comma-separated string); hidden = n, steps = T, batch = B;
    inputs = m (default hidden). Returns one JSON-ready dict per cell: "seconds" (best of
    at least `repeats` runs per method, "<method>_products" without the norms; "runs" says
    how many each had), "speedup" (a baseline's
    time over gradient_flow's, same work), "floor_ratio" (gradient_flow's time over the
    floor's, with and without norms), "agreement" (max relative errors against
    gradient_flow) and "max_relative_error".
    """
    if isinstance(cells, str):
        cells = [c for c in cells.split(",") if c]
    dtype = _as_dtype(dtype)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GradlabError("device 'cuda' asked for, but torch sees no CUDA device")
    for value, what in ((hidden, "hidden"), (steps, "steps"), (batch, "batch"),
                        (repeats, "repeats")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradlabError(f"{what} must be a positive integer, got {value!r}")
    m = hidden if inputs is None else inputs
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return [_bench_one(_lookup(name), hidden, m, steps, batch, device, dtype, seed,
                           repeats) for name in cells]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _bench_one(cell, n, m, T, B, device, dtype, seed, repeats):
    params = cell.init_params(n, m, seed=seed, dtype=dtype, device=device)
    xs = make_inputs("gaussian", T, B, m, seed=seed + 1, dtype=dtype, device=device)
    S = n * len(cell.state_names)
    both = ("spectral", "frobenius")
    runs = {
        "gradient_flow": lambda: _flow(cell, params, xs, both),
        "gradient_flow_products": lambda: _flow(cell, params, xs, ("frobenius",)),
        "autograd": lambda: _autograd(cell, params, xs, True),
        "autograd_products": lambda: _autograd(cell, params, xs, False),
        "func": lambda: _func(cell, params, xs, True),
        "func_products": lambda: _func(cell, params, xs, False),
        "floor": _floor(T, B, S, dtype, device),
    }
    best = _best(runs, device, repeats)
    seconds = {name: t for name, (t, _, _) in best.items()}
    results = {name: r for name, (_, r, _) in best.items()}
    timed = {name: k for name, (_, _, k) in best.items()}
    spectral, fro = results["gradient_flow"]
    agreement = {}
    for name in ("autograd", "func"):
        spec_b, fro_b = results[name]
        agreement[f"spectral_{name}"] = _relative(spec_b, spectral)
        agreement[f"frobenius_{name}"] = _relative(fro_b, fro)
    gf, gfp = seconds["gradient_flow"], seconds["gradient_flow_products"]
    return {
        "cell": cell.name, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "hidden": n, "inputs": m, "steps": T, "batch": B, "state_size": S,
        "repeats": repeats, "runs": timed, "threads": torch.get_num_threads(),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "seconds": seconds,
        "speedup": {"autograd": seconds["autograd"] / gf, "func": seconds["func"] / gf,
                    "autograd_products": seconds["autograd_products"] / gfp,
                    "func_products": seconds["func_products"] / gfp},
        "floor_ratio": {"gradient_flow": gf / seconds["floor"],
                        "products": gfp / seconds["floor"]},
        "agreement": agreement,
        "max_relative_error": max(agreement.values()),
    }


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


def format_table(results):
    """A plain-text table of `run_bench` results: milliseconds per method, ratios, agreement."""
    lines = []
    for r in results:
        s = {k: 1e3 * v for k, v in r["seconds"].items()}
        lines += [
            f"{r['cell']}: n={r['hidden']} m={r['inputs']} T={r['steps']} B={r['batch']} "
            f"S={r['state_size']} {r['dtype']} on {r['device']} ({r['threads']} threads, "
            f"best of {min(r['runs'].values())} to {max(r['runs'].values())} runs)",
            f"  {'':16}{'with norms':>14}{'products alone':>18}",
        ]
        for name in ("gradient_flow", "autograd", "func"):
            lines.append(f"  {name:16}{s[name]:>11.1f} ms{s[name + '_products']:>15.1f} ms")
        lines.append(f"  {'floor (T bmm)':16}{'':>14}{s['floor']:>15.1f} ms")
        sp, fr = r["speedup"], r["floor_ratio"]
        lines += [
            "  speedup of gradient_flow (baseline time / gradient_flow time): "
            f"autograd {sp['autograd']:.1f}x, torch.func {sp['func']:.1f}x with norms; "
            f"{sp['autograd_products']:.1f}x, {sp['func_products']:.1f}x products alone",
            f"  gradient_flow time / floor: {fr['products']:.2f}x products alone, "
            f"{fr['gradient_flow']:.2f}x with per-lag spectral norms",
            "  agreement (max relative error vs gradient_flow): "
            + ", ".join(f"{k} {v:.1e}" for k, v in r["agreement"].items()),
        ]
    return "\n".join(lines)
