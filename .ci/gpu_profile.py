"""Where gradient_flow's time goes at the GPU goal's size, for `.ci/gpu` (CI has no GPU).

The bench says how gradient_flow compares; this says why. Best of REPEATS wall times of
the forward run alone (`run_states`), the products (forward and walk, Frobenius norms),
the same with per-lag spectral norms, and the bmm floor, each with the steps recorded as
CUDA graphs (gradlab.flow.graphs, the default) and eagerly; then torch's profiler over
one products run, eager and recorded: how many kernels it launched, their summed device
time against the wall time (a wall time far above the kernels' time is launch and host
overhead), and the ops that took the most device time (an op's total includes the ops
it calls: aten::linear holds its aten::addmm).

    python .ci/gpu_profile.py [--device cuda] [--hidden 256] [--steps 256] [--batch 32]
"""

import argparse
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from gradlab import gradient_flow, registry
from gradlab.device import exact_float32
from gradlab.errors import derived_seed
from gradlab.flow import graphs, make_inputs, run_states


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best(fn, device, repeats):
    fn()                                                  # warm-up: lowering, allocator
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), sorted(times)[len(times) // 2]


def kernels(fn, device):
    """(kernels run, their summed device time in s, wall time in s, the aten ops called
    most as (name, calls, device s)) of one run of fn (on a CPU: top-level aten ops)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    wall = time.perf_counter() - start
    if device.type != "cuda":                  # no device kernels: count top-level ops
        ops = [e for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
        counts = {}
        for e in ops:
            counts[e.name] = counts.get(e.name, 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:12]
        return len(ops), 0.0, wall, [(name, c, 0.0) for name, c in top]
    def device_time(e, total=False):                   # torch renamed cuda -> device
        for name in (("device_time_total", "cuda_time_total") if total else
                     ("self_device_time_total", "self_cuda_time_total")):
            if hasattr(e, name):
                return getattr(e, name) / 1e6
        return 0.0
    events = prof.key_averages()
    run = [e for e in events if e.device_type == DeviceType.CUDA]     # the kernels run
    launches, device_s = sum(e.count for e in run), sum(device_time(e) for e in run)
    top = sorted(((e.key, e.count, device_time(e, total=True)) for e in events
                  if e.key.startswith("aten::")), key=lambda r: -r[2])[:14]
    return launches, device_s, wall, top


def norms(cell, params, xs, device):
    """Where the per-lag spectral norms' time goes: each chunk's time and level
    (Spectral.measure), how many matrices went on to escalate, Lanczos and svdvals, and
    the float64 re-certification (in_float64); then the profiler's ops by device time."""
    from gradlab.flow import lanczos as L
    chunks, calls = [], {"escalate": 0, "lanczos": 0, "svdvals": 0, "in_float64 s": 0.0}
    originals = {name: getattr(L, name) for name in ("lanczos", "top_singular")}
    methods = {name: getattr(L.Spectral, name) for name in ("measure", "escalate",
                                                            "in_float64")}

    def measure(self, rows, lags, fro, finite):
        level = L.COLD_LEVEL if self.warm is None else self.level
        sync(device)
        start = time.perf_counter()
        out = methods["measure"](self, rows, lags, fro, finite)
        sync(device)
        chunks.append((level, rows[0].shape[0], time.perf_counter() - start))
        return out

    def escalate(self, rows, level, rest, *args):
        calls["escalate"] += len(rest)
        return methods["escalate"](self, rows, level, rest, *args)

    def in_float64(self, *args):
        sync(device)
        start = time.perf_counter()
        methods["in_float64"](self, *args)
        sync(device)
        calls["in_float64 s"] += time.perf_counter() - start

    def counted(name, key):
        def fn(M, *args):
            calls[key] += M.shape[0]
            return originals[name](M, *args)
        return fn

    def run():
        gradient_flow(cell, params, xs, norms=("spectral", "frobenius"),
                      blocks=False).log_norm()

    run()                                                     # warm-up
    L.Spectral.measure, L.Spectral.escalate = measure, escalate
    L.Spectral.in_float64 = in_float64
    L.lanczos, L.top_singular = counted("lanczos", "lanczos"), counted("top_singular",
                                                                       "svdvals")
    try:
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        wall = time.perf_counter() - start
    finally:
        for name, fn in methods.items():
            setattr(L.Spectral, name, fn)
        for name, fn in originals.items():
            setattr(L, name, fn)
    total = sum(t for *_, t in chunks)
    print(f"spectral norms, one walk: {1e3 * wall:.0f} ms wall, {1e3 * total:.0f} ms in "
          f"Spectral.measure over {len(chunks)} chunks of {chunks[0][1]} matrices "
          "(timed with a sync each)")
    for level in sorted({lv for lv, *_ in chunks}, reverse=True):
        times = [t for lv, _, t in chunks if lv == level]
        print(f"    level {level}: {len(times):3d} chunks, {1e3 * sum(times):8.1f} ms "
              f"({1e3 * min(times):.1f}-{1e3 * max(times):.1f} ms a chunk)")
    print(f"    matrices to escalate {calls['escalate']}, to Lanczos {calls['lanczos']}, to "
          f"svdvals {calls['svdvals']}; in_float64 {1e3 * calls['in_float64 s']:.0f} ms")
    launches, device_s, wall, top = kernels(run, device)
    print(f"spectral norms and products, one walk: {launches} kernels, device time "
          f"{1e3 * device_s:.1f} ms of {1e3 * wall:.1f} ms wall (profiled); the ops by "
          "device time:")
    for op, count, s in top:
        print(f"    {op:36}{count:8d}{1e3 * s:10.2f} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--norms", action="store_true",
                        help="only where the spectral norms' time goes")
    a = parser.parse_args()
    device = torch.device(a.device)
    n, T, B = a.hidden, a.steps, a.batch
    with exact_float32():
        cell = registry.cell("lstm")
        params = cell.init_params(n, n, seed=0, dtype=torch.float32, device=device)
        xs = make_inputs("gaussian", T, B, n, seed=derived_seed(0, 1), dtype=torch.float32,
                         device=device)
        S = 2 * n
        M = torch.randn(B, S, S, device=device) / S ** 0.5
        out = torch.empty_like(M)
        if a.norms:
            print(f"lstm n={n} T={T} B={B} float32 on {device}, TF32 off")
            return norms(cell, params, xs, device)
        runs = {
            "forward (run_states)": lambda: run_states(cell, params, xs),
            "products (forward + walk)": lambda: gradient_flow(
                cell, params, xs, norms=("frobenius",), blocks=False).log_norm("frobenius"),
            "with spectral norms": lambda: gradient_flow(
                cell, params, xs, norms=("spectral", "frobenius"), blocks=False).log_norm(),
            "floor (T bmm)": lambda: [torch.bmm(M, M, out=out) for _ in range(T)],
        }
        print(f"lstm n={n} T={T} B={B} float32 on {device}, TF32 off; best and median of "
              f"{a.repeats}, with the steps recorded as CUDA graphs (gradlab.flow.graphs) "
              "and eagerly")
        for name, fn in runs.items():
            cells = []
            for recorded in (True, False):
                graphs.ENABLED = recorded
                # (spectral norms take seconds a run on a GPU: fewer repeats)
                b, med = best(fn, device, 2 if "spectral" in name else a.repeats)
                cells.append(f"{1e3 * b:10.1f} ms{1e3 * med:10.1f} ms")
            print(f"  {name:28}" + "   |".join(cells), flush=True)
        for recorded in (False, True):
            graphs.ENABLED = recorded
            name = "products (forward + walk)"
            launches, device_s, wall, top = kernels(runs[name], device)
            what = "kernels" if device.type == "cuda" else "top-level aten ops"
            print(f"{name}, {'recorded' if recorded else 'eager'}: {launches} {what} "
                  f"({launches / T:.1f} a step), device time {1e3 * device_s:.1f} ms of "
                  f"{1e3 * wall:.1f} ms wall (profiled); the ops by device time:")
            for op, count, s in top:
                print(f"    {op:36}{count:8d}{1e3 * s:10.2f} ms")


if __name__ == "__main__":
    main()
