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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
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
