"""Will a run fit? Memory estimated before anything is allocated, against what is free.

The estimates count the arrays each job keeps, in bytes, from the sizes alone:

    flow       the states and hoisted inputs, O(T B S) each, the per-lag logs, O(T B), and
               a handful of (B, S, S) arrays (running product, Jacobians, Lanczos work)
    report     the flow, plus Lyapunov exponents over 4 T steps (states kept, O(4T B S))
    bench      the flow, plus the autograd baseline, which keeps every P_k's rows:
               O(T B S^2) for its graph and its per-lag products

S is the state size (hidden size times state parts). The estimates are deliberately
generous (a factor for temporaries); a job is refused when its estimate exceeds the memory
available now, with both numbers in the message, before it allocates anything.
"""

import os

from .errors import GradlabError

SQUARE_ARRAYS = 8          # (B, S, S) arrays alive at once, temporaries included
VECTOR_ARRAYS = 6          # (T + 1, B, S) arrays: states, hoisted inputs, gradients
SLACK = 1.5                # allocator overhead and the temporaries not counted above


def available_bytes(device="cpu"):
    """Memory free for a new job on `device`, in bytes (None where it cannot be read)."""
    if str(device).startswith("cuda"):
        import torch
        try:                 # torch's cache of freed blocks is free to torch's next arrays
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(torch.cuda.mem_get_info(device)[0]) + cached
        except (RuntimeError, AssertionError, ValueError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def flow_bytes(*, hidden, inputs, steps, batch, parts=2, params=12, itemsize=8):
    """Bytes gradient_flow keeps for one cell (`parts` state parts, `params` parameters)."""
    S = hidden * parts
    square = SQUARE_ARRAYS * batch * S * S
    vectors = VECTOR_ARRAYS * (steps + 1) * batch * S + steps * batch * inputs
    weights = params * hidden * max(hidden, inputs)
    logs = 4 * steps * batch            # float64 logs and int64 exponents, per norm kind
    return int(SLACK * (itemsize * (square + vectors + weights) + 8 * logs))


LYAPUNOV_SPAN = 4     # a report's Lyapunov exponents run over 4 T steps, the first T
                      # discarded as transient (reports/measurements.py; here, torch-free)


def report_bytes(**sizes):
    """A report's cell: the flow, and Lyapunov exponents over LYAPUNOV_SPAN T steps."""
    long = dict(sizes, steps=LYAPUNOV_SPAN * sizes["steps"])
    return max(flow_bytes(**sizes), flow_bytes(**long))


def bench_bytes(**sizes):
    """A bench cell: the flow, and the autograd baseline's per-lag products, O(T B S^2)."""
    S = sizes["hidden"] * sizes.get("parts", 2)
    graph = 3 * sizes["steps"] * sizes["batch"] * S * S * sizes.get("itemsize", 8)
    return flow_bytes(**sizes) + int(SLACK * graph)


def describe(nbytes):
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes} B"


def ensure_fits(nbytes, *, what, device="cpu", available=None,
                advice="--hidden, --steps or --batch"):
    """Refuse (GradlabError, one line) a job whose estimate exceeds the memory available."""
    free = available_bytes(device) if available is None else available
    if free is not None and nbytes > free:
        raise GradlabError(f"{what} needs about {describe(nbytes)} of memory but "
                           f"{describe(free)} is available on {device}; use a smaller "
                           f"{advice}")
    return nbytes


def lyapunov_bench_bytes(**sizes):
    """`bench --lyapunov`: a report's Lyapunov run over T steps, and the published QR
    loop's per-step temporaries: diag_embed of every gate, (B, G n, G n) with G = 4."""
    n, B = sizes["hidden"], sizes["batch"]
    dense = SQUARE_ARRAYS * B * (4 * n) ** 2 * sizes.get("itemsize", 8)
    return flow_bytes(**sizes) + int(SLACK * dense)


ESTIMATES = {"report": report_bytes, "sweep": flow_bytes, "bench": bench_bytes,
             "bench --lyapunov": lyapunov_bench_bytes}


def ensure_cells_fit(job, cells, hidden, inputs, steps, batch, *, dtype="float64",
                     device="cpu", lyapunov=True, steps_option="--steps"):
    """Refuse a `job` ("report", "sweep", "bench", "bench --lyapunov") whose largest cell
    cannot fit."""
    from .registry import cell as lookup
    itemsize = 4 if str(dtype) in ("float32", "torch.float32") else 8
    estimate = ESTIMATES[job] if lyapunov or job != "report" else flow_bytes
    need = max(estimate(hidden=hidden, inputs=inputs, steps=steps, batch=batch,
                        parts=len(c.state_names), params=len(c.param_names),
                        itemsize=itemsize)
               for c in map(lookup, cells))
    return ensure_fits(need, what=f"gradlab {job} at hidden {hidden}, inputs {inputs}, "
                                  f"steps {steps}, batch {batch}", device=device,
                       advice=f"--hidden, --inputs, {steps_option} or --batch")


def ensure_walk_fits(call, T, B, m, S, dtype, device, products=True, rows=0):
    """`gradient_flow`, `lyapunov` and `run_states` called from Python (the CLI checks its
    options before this): the states of xs (T, B, m) at state size S, and where the call
    builds them (`products`) the (B, S, S) products and Jacobians, in dtype, refused in
    one line before xs is copied where they cannot fit (a notebook kernel would swap, or
    die, instead). `rows`: the inputs' part of each step, hoisted out of the loop for all
    T at once (4n for an LSTM's gates)."""
    # what any of them certainly keeps (the CLI's estimate is generous; a refusal here must
    # never stop a call that fits): the states and hoisted inputs (and xs, copied), and a
    # running product with a Jacobian and the product of the two, (B, S, S) each
    # (measured, lstm n = 16, m = 5, B = 1, T = 80,000: 167 numbers a step; this, 138)
    import torch
    size = torch.finfo(dtype).bits // 8
    need = size * (2 * (T + 1) * B * (S + m) + T * B * rows + 3 * B * S * S * bool(products))
    return ensure_fits(need, what=f"{call} at state size S = {S}, T = {T} steps, batch "
                                  f"B = {B} ({str(dtype).removeprefix('torch.')})",
                       device=device,
                       advice="hidden size, fewer inputs or steps, or a smaller batch")


def ensure_check_fits(cell, hidden, inputs, batch, *, available=None, job="gradlab check",
                      advice="--hidden, --inputs or --batch"):
    """`gradlab check` (and verify_cell, `job`): the exact Jacobians (B, S, S), the
    function's own or a reference's and their difference, and the cell's weights; one
    step of a flow covers them."""
    from .registry import cell as lookup
    c = lookup(cell)
    need = flow_bytes(hidden=hidden, inputs=inputs, steps=1, batch=batch,
                      parts=len(c.state_names), params=len(c.param_names))
    return ensure_fits(need, what=f"{job} at hidden {hidden}, inputs {inputs}, batch "
                                  f"{batch}", available=available, advice=advice)


def ensure_params_fit(cell, hidden, inputs, *, device="cpu", available=None):
    """`init_params`: every parameter of `cell` at (hidden, inputs), drawn in float64 and
    then converted (two copies at once)."""
    sizes = {"n": hidden, "m": inputs, "1": 1}
    count = sum(sizes[str(rows)] * sizes[str(cols)] for rows, cols in cell.param_shapes.values())
    return ensure_fits(2 * 8 * count, what=f"parameters of cell '{cell.name}' at hidden "
                       f"{hidden}, inputs {inputs}", device=device, available=available,
                       advice="hidden or inputs")


def ensure_meanfield_fits(cell, method, units, steps, *, inputs=None, available=None):
    """`mean_field`: a population of `units` units, a few float64 arrays per named quantity
    (annealed: ~160 B a unit per quantity measured); the dynamic theory keeps each step's
    vectors for the backward pass (~40 B a unit, step and quantity), and with `inputs=m`
    draws each input weight (units x m) and the inputs (steps x m). Twice that, and more
    for small counts, is what is asked for."""
    from .registry import cell as lookup
    quantities = len(lookup(cell).lets) + 1
    if method == "annealed":
        return ensure_fits(8 * 40 * quantities * units, available=available,
                           what=f"mean field (annealed) of {units} units", advice="units=")
    need = 8 * 10 * quantities * (steps + 10) * units \
        + 8 * 2 * (inputs or 0) * (quantities * units + steps)
    return ensure_fits(need, what=f"mean field (dynamic) of {units} units over {steps} steps"
                       + (f" with inputs={inputs}" if inputs else ""), available=available,
                       advice="units=, steps= or inputs=" if inputs else "units= or steps=")


def ensure_init_fits(cell, hidden, inputs, steps, *, available=None, job="gradlab init",
                     advice="--hidden or --inputs"):
    """`gradlab init` (critical_init, `job`): the flows it measures on, one sequence of
    `steps` at `hidden`."""
    from .registry import cell as lookup
    c = lookup(cell)
    need = flow_bytes(hidden=hidden, inputs=inputs, steps=steps, batch=1,
                      parts=len(c.state_names), params=len(c.param_names))
    return ensure_fits(need, what=f"{job} at hidden {hidden}, inputs {inputs}, steps {steps}",
                       available=available, advice=advice)


GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}     # weight blocks per torch kind
ARCH_COPIES = 6     # the checkpoint, the trained and the fresh module, the shape check's
                    # module, and both as cell parameters


def arch_numbers(arch):
    """How many numbers the state dict of `arch` (a checkpoint.Arch: kind, hidden, inputs,
    layers, bias, bidirectional, proj) holds, from its sizes alone: per layer and direction
    weight_ih (G H, in), weight_hh (G H, H or proj), the biases (G H each) and weight_hr."""
    G, H = GATES[arch.kind], arch.hidden
    out = arch.proj or H
    directions = 2 if arch.bidirectional else 1
    total = 0
    for layer in range(arch.layers):
        width = arch.inputs if layer == 0 else out * directions
        per = G * H * (width + out) + (2 * G * H if arch.bias else 0) + arch.proj * H
        total += directions * per
    return total


def ensure_arch_fits(arch, steps, batch, *, dtype="float64", device="cpu", available=None):
    """`report --model --arch`: refuse before a module is built, from the arch's numbers."""
    itemsize = 4 if str(dtype) in ("float32", "torch.float32") else 8
    parts = 2 if arch.kind == "lstm" else 1
    weights = ARCH_COPIES * 8 * arch_numbers(arch)
    flow = report_bytes(hidden=arch.hidden * arch.layers, inputs=arch.inputs, steps=steps,
                        batch=batch, parts=parts, params=0, itemsize=itemsize)
    return ensure_fits(weights + flow, what=f"gradlab report --arch {arch}", device=device,
                       available=available, advice="--arch hidden or inputs, --steps or --batch")


def train_bytes(*, hidden, inputs, steps, batch, parts, params, itemsize=8, test_batch=256,
                measure_batch=8, probe_steps=60):
    """One `train` run on a task of `steps` steps and `inputs` channels: its batches (made
    in float64), the states, gate values and autograd graph of every step on the larger of
    the training and test batches, and a gradient-flow checkpoint with its Lyapunov run."""
    B = max(batch, test_batch)
    data = 8 * steps * B * (3 * inputs + 4)
    graph = itemsize * steps * B * hidden * (4 * parts + params)
    probe = report_bytes(hidden=hidden, inputs=inputs, steps=max(steps, probe_steps),
                         batch=measure_batch, parts=parts, params=params)
    return int(SLACK * (data + graph)) + probe


def ensure_train_fits(cells, tasks, hidden, batch, *, dtype="float32", device="cpu",
                      available=None, **sizes):
    """Refuse `gradlab train` whose largest (cell, task) cannot fit; `tasks` are
    (label, steps, inputs) triples."""
    from .registry import cell as lookup
    itemsize = 4 if str(dtype) in ("float32", "torch.float32") else 8
    shapes = [(len(c.state_names), len(c.param_names)) for c in map(lookup, cells)]
    need, label = max((train_bytes(hidden=hidden, inputs=m, steps=T, batch=batch, parts=s,
                                   params=p, itemsize=itemsize, **sizes), label)
                      for s, p in shapes for label, T, m in tasks)
    return ensure_fits(need, what=f"gradlab train on {label} at hidden {hidden}, batch "
                                  f"{batch}", device=device, available=available,
                       advice="--tasks delay, --hidden or --batch")
