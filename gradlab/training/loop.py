"""Train a gradlab cell on a task with Adam, measuring its gradient flow along the way.

The cell's parameters come from `cell.init_params(...)` as torch leaf tensors with
requires_grad; the forward pass is the lowered step `cell.step_fn("torch")`, which autograd
differentiates. A linear readout reads the cell's first state part (h for the LSTM, the
state s for the R2RT cells): on the final state for the adding and parity tasks, at the
scored steps for copy. Everything is drawn from `seed` (parameters, readout, batches), so a
run is reproducible on one machine.

Recorded:
    every training step   task loss and state RMS at the final step, from the batch the
                          step trains on; over the first `drift_steps` steps also the mean
                          write gate (i, or 1 - z for the GRU) and the saturated share of
                          all gate values (nan after them).
    checkpoints           `gradient_flow` on a fixed batch of task sequences (rate, timescale,
                          why, λ₁ by `lyapunov`), in float64; test loss and accuracy.
"""

import dataclasses
import math

import torch

from .. import progress, registry
from ..errors import GradlabError, integer, real
from ..flow import gradient_flow, lyapunov
from ..initialize import as_dtype
from ..reports.measurements import SATURATED, rate_words, states_finite, timescale_of
from .tasks import TASKS, Task, copy

WRITE_GATES = {"i": False, "z": True}      # gate name -> is the write gate 1 - gate?


def largest_lr(dtype):
    """The largest learning rate Adam can take in `dtype`: its first step is lr / (1 -
    beta1) = 10 lr, a Python float that torch converts to the weights' dtype, which
    refuses a float32 past its range (3.4e37 for lr). In float64 the step is at worst inf,
    and the weights diverge (a verdict of their own): no limit."""
    if as_dtype(dtype) == torch.float64:
        return math.inf
    return torch.finfo(as_dtype(dtype)).max * (1 - 0.9)


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    hidden: int = 32
    batch: int = 32
    steps: int = 300               # training steps (Adam updates)
    lr: float = 1e-2
    clip: float = 1.0              # gradient norm clipping (0: none)
    gate_bias: float = 1.0
    init: str = "gaussian"
    checkpoints: int = 3           # gradient-flow checkpoints after step 0, evenly spaced
    measure_batch: int = 8         # sequences the gradient flow is measured on
    probe_steps: int = 60          # ... at least this long (the task at a longer delay)
    test_batch: int = 256
    drift_steps: int = 50          # gate statistics at every one of the first steps
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        """Numbers a run can use, refused in one line (the CLI checks its options; a
        TrainSetup made in Python with lr=nan or batch=0 ran to a verdict on nothing)."""
        for name in ("hidden", "batch", "steps", "checkpoints", "measure_batch",
                     "probe_steps", "test_batch"):
            integer(getattr(self, name), name, 1)
        integer(self.drift_steps, "drift_steps", 0)
        if real(self.lr, "lr", 0) == 0:
            raise GradlabError("lr must be a finite real number > 0, got 0")
        if self.lr > largest_lr(self.dtype):
            raise GradlabError(f"lr {self.lr:g} does not fit {self.dtype}: Adam's first "
                               f"step is 10 lr, so at most {largest_lr(self.dtype):.3g}; "
                               "give a smaller rate, or dtype float64")
        real(self.clip, "clip", 0)
        real(self.gate_bias, "gate_bias")

    def checkpoint_steps(self):
        """Training steps (0 = initialisation) at which the gradient flow is measured:
        `checkpoints` evenly spaced, plus two early ones (5% and 15% of training), where the
        seed places internal state drift."""
        n, T = max(1, self.checkpoints), self.steps
        marks = {0, T} | {round(T * (i + 1) / n) for i in range(n)}
        if T >= 20:
            marks |= {round(T * 0.05), round(T * 0.15)}
        return sorted(marks)


class Model:
    """A cell with a linear readout; `params` and `readout` are leaf tensors."""

    def __init__(self, cell, task, setup, seed):
        self.cell, self.task, self.setup = registry.cell(cell), task, setup
        dtype, device = as_dtype(setup.dtype), setup.device
        params = self.cell.init_params(setup.hidden, task.inputs, init=setup.init,
                                       gate_bias=setup.gate_bias, seed=seed, dtype=dtype,
                                       device=device)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        gen = torch.Generator().manual_seed(int(seed) + 7)
        V = torch.randn(task.outputs, setup.hidden, generator=gen, dtype=torch.float64)
        self.readout = {"V": (V / math.sqrt(setup.hidden)).to(dtype=dtype, device=device)
                        .requires_grad_(True),
                        "c": torch.zeros(task.outputs, dtype=dtype, device=device)
                        .requires_grad_(True)}
        self.step = self.cell.step_fn("torch")
        self.values = self.cell.values_fn() if self.cell.gates else None

    def leaves(self):
        return [*self.params.values(), *self.readout.values()]

    def run(self, xs):
        """States s_1..s_T (list of tuples of (B, n)) from zeros."""
        B, n = xs.shape[1], self.setup.hidden
        state = tuple(torch.zeros(B, n, dtype=xs.dtype, device=xs.device)
                      for _ in self.cell.state_names)
        states = []
        for x in xs:
            state = self.step(self.params, state, x)
            states.append(state)
        return states

    def outputs(self, states, batch):
        V, c = self.readout["V"], self.readout["c"]
        if self.task.kind == "sequence":
            steps = sorted({int(t) for t in batch.mask.any(1).nonzero().flatten()})
            return {t: states[t][0] @ V.T + c for t in steps}
        return states[-1][0] @ V.T + c

    def loss(self, batch):
        """(loss, accuracy or None, states) for one batch."""
        states = self.run(batch.xs)
        out = self.outputs(states, batch)
        return (*score(self.task, out, batch), states)


def score(task, out, batch):
    """(mean loss, accuracy or None) of readout `out` against the batch's target."""
    if task.kind == "regression":
        return torch.mean((out[:, 0] - batch.target) ** 2), None
    if task.kind == "classify":
        loss = torch.nn.functional.cross_entropy(out, batch.target)
        return loss, float((out.argmax(-1) == batch.target).double().mean())
    logits = torch.cat([out[t][batch.mask[t]] for t in out])
    target = torch.cat([batch.target[t][batch.mask[t]] for t in out])
    loss = torch.nn.functional.cross_entropy(logits, target)
    return loss, float((logits.argmax(-1) == target).double().mean())


def gate_stats(model, states, xs):
    """(mean write gate or nan, saturated share of all gate values or nan) over the run."""
    cell = model.cell
    if model.values is None:
        return math.nan, math.nan
    n = model.setup.hidden
    before = [tuple(torch.zeros_like(s) for s in states[0])] + states[:-1]
    flat = tuple(torch.cat([s[i] for s in before]).reshape(-1, n)
                 for i in range(len(cell.state_names)))
    with torch.no_grad():
        values = model.values({k: v.detach() for k, v in model.params.items()},
                              tuple(f.detach() for f in flat), xs.reshape(-1, xs.shape[-1]))
    gates = torch.stack([values[g] for g in cell.gates])
    saturated = float(((gates < SATURATED) | (gates > 1 - SATURATED)).double().mean())
    write = next((1 - values[g] if flip else values[g]
                  for g, flip in WRITE_GATES.items() if g in cell.gates), None)
    return (math.nan if write is None else float(write.double().mean())), saturated


def state_rms(states):
    """RMS over units and sequences of the full state at the final step (nan if not finite)."""
    last = torch.cat([s.detach().double() for s in states[-1]], -1)
    rms = float(torch.sqrt((last ** 2).mean()))
    return rms if math.isfinite(rms) else math.nan


def flow_checkpoint(model, xs):
    """Gradient flow of the current parameters on the inputs `xs`, in float64."""
    params = {k: v.detach().to(torch.float64) for k, v in model.params.items()}
    xs = xs.to(torch.float64)
    if any(bool(torch.isnan(v).any()) for v in params.values()):
        return diverged()
    flow = gradient_flow(model.cell, params, xs)
    if states_finite(flow):
        rate, why = flow.rate(), flow.why()
        T = xs.shape[0]
        lyap = float(lyapunov(model.cell, params, xs, k=1, discard=T // 4)[0])
    else:
        rate, why, lyap = math.nan, "state overflowed", math.nan
    return {"rate": rate, "timescale": timescale_of(rate), "why": why,
            "words": rate_words(rate, why), "lyapunov": lyap}


DIVERGED = "weights diverged"              # training left a weight nan


def diverged(**more):
    """The record of a flow checkpoint whose weights training left nan: no trajectory to
    measure."""
    return {"rate": math.nan, "timescale": math.nan, "why": DIVERGED, "words": DIVERGED,
            "lyapunov": math.nan, **more}


def evaluate(model, batch):
    with torch.no_grad():
        loss, acc, states = model.loss(batch)
    write, saturated = gate_stats(model, states, batch.xs)
    return {"loss": float(loss), "accuracy": acc, "state_rms": state_rms(states),
            "write_gate": write, "saturation": saturated}


def probe_task(task, steps):
    """The sequences the gradient flow is measured on: the task itself, or where it is
    shorter than `steps`, the same task at delay `steps` (so a timescale longer than a short
    task is still measured)."""
    if task.steps >= steps:
        return task
    return TASKS[task.name](steps) if task.name != "copy" else copy(steps, **dict(
        (k, v) for k, v in task.options))


def train(cell, task, setup, *, seed=None):
    """Train `cell` on `task`; returns the record (plain numbers) of the whole run."""
    if not isinstance(task, Task):
        raise GradlabError(f"task must be a gradlab.training.tasks.Task, got {task!r}")
    seed = setup.seed if seed is None else seed
    torch.manual_seed(seed)
    model = Model(cell, task, setup, seed)
    dtype, device = as_dtype(setup.dtype), setup.device
    data = torch.Generator().manual_seed(int(seed) + 1)
    fixed = torch.Generator().manual_seed(int(seed) + 2)
    probe = probe_task(task, setup.probe_steps).batch(setup.measure_batch, fixed,
                                                      dtype=dtype, device=device)
    test = task.batch(setup.test_batch, fixed, dtype=dtype, device=device)
    optimizer = torch.optim.Adam(model.leaves(), lr=setup.lr)
    marks = set(setup.checkpoint_steps())
    record = {"cell": model.cell.name, "task": task.name, "delay": task.delay,
              "steps": [], "loss": [], "state_rms": [], "write_gate": [], "saturation": [],
              "checkpoints": []}

    def checkpoint(step):
        point = {"step": step, **flow_checkpoint(model, probe.xs), **evaluate(model, test)}
        record["checkpoints"].append(point)

    stopped = None                       # the step whose training loss was not finite
    for step in range(setup.steps + 1):
        if step in marks:
            checkpoint(step)
        if step == setup.steps:
            break
        batch = task.batch(setup.batch, data, dtype=dtype, device=device)
        loss, _, states = model.loss(batch)
        write, saturated = (gate_stats(model, states, batch.xs) if step < setup.drift_steps
                            else (math.nan, math.nan))
        record["steps"].append(step)
        record["loss"].append(float(loss.detach()))
        record["state_rms"].append(state_rms(states))
        record["write_gate"].append(write)
        record["saturation"].append(saturated)
        optimizer.zero_grad()
        if not torch.isfinite(loss):
            stopped = step                 # diverged: the record says where
            break
        loss.backward()
        if setup.clip:
            torch.nn.utils.clip_grad_norm_(model.leaves(), setup.clip)
        optimizer.step()
        if progress.due(step, setup.steps):
            progress.advance("training", step + 1, setup.steps)
    if stopped is not None and record["checkpoints"][-1]["step"] != stopped:
        checkpoint(stopped)              # the model as it diverged, not an earlier point
    final = record["checkpoints"][-1]
    record["final"] = {"loss": final["loss"], "accuracy": final["accuracy"],
                       "step": final["step"]}
    # a run whose training loss left the finite numbers diverged, whatever an earlier
    # point's test loss says (it was judged 'not learned', or could be 'learned', on it)
    record["verdict"] = ("diverged" if stopped is not None else
                         verdict(task, final["loss"], final["accuracy"]))
    return record


LEARNED = 0.1       # learned: test loss at most 10% of chance loss (classification: and
PARTLY = 0.5        # accuracy at least 90%); partly: loss at most 50% of chance


def criterion_text():
    return (f"learned: final test loss at most {LEARNED:.0%} of the chance loss (and, for a "
            f"classification, test accuracy at least 90%); partly: loss at most {PARTLY:.0%} "
            "of chance; else not learned. Chance: the best a model that ignores its inputs "
            "can do (adding: MSE 1/6 by predicting 1; copy: ln K; parity: ln 2)")


def verdict(task, loss, accuracy):
    if loss is None or not math.isfinite(loss):
        return "diverged"
    ratio = loss / task.chance_loss
    if ratio <= LEARNED and (accuracy is None or accuracy >= 0.9):
        return "learned"
    return "partly" if ratio <= PARTLY else "not learned"


__all__ = ["TrainSetup", "Model", "train", "score", "verdict", "criterion_text",
           "flow_checkpoint", "gate_stats", "state_rms"]
