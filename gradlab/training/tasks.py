"""Synthetic long-range tasks, made in code from a seed: no data set, no download.

Each task is a `Task`: `task.batch(size, generator)` returns `Batch(xs, target, mask)` with
xs (T, B, m) float and a target the readout must produce, and says how it is scored
(`kind`: "regression" on the final state, "classify" on the final state, or "sequence",
a per-step classification scored where `mask` is true), what chance does (`chance_loss`,
`chance_accuracy`: the best a model that ignores the inputs can do) and how long the
dependency is (`delay`).

    adding(T)        Hochreiter & Schmidhuber 1997, as in Le et al. 2015: two channels,
                     values ~ U(0, 1) and a marker; one marker in the first half of the
                     sequence, one in the second; the target is the sum of the two marked
                     values. Chance: predict the mean 1, MSE = var = 1/6.
    copy(delay, L)   Symbols 1..K at steps 0..L-1, blanks (symbol 0) after, a cue at step
                     delay - 1; the output at step t is the input at step t - delay
                     (the recall steps delay..delay+L-1 are the ones scored). Chance: ln K.
                     A delayed recall of L symbols (`gradlab train` uses L = 1), not the
                     copy task of Arjovsky et al. 2016 (10 symbols, every step scored,
                     chance 10 ln 8 / (T + 20)): its results are not theirs to compare.
    parity(T)        A bit (+-1) at every step; the target is the parity (XOR) of all T
                     bits, read at the end. Chance: ln 2, accuracy 1/2.
"""

import dataclasses
import math

import torch

from ..errors import GradlabError

KINDS = ("regression", "classify", "sequence")


@dataclasses.dataclass(frozen=True)
class Batch:
    xs: torch.Tensor            # (T, B, m)
    target: torch.Tensor        # (B,) float for regression, (B,) long for classify,
                                # (T, B) long for sequence
    mask: torch.Tensor | None = None   # (T, B) bool: the scored steps of a sequence task


@dataclasses.dataclass(frozen=True)
class Task:
    name: str          # "adding", "copy", "parity"
    delay: int         # how many steps the dependency spans (the task's difficulty)
    steps: int         # sequence length T
    inputs: int        # m
    outputs: int       # readout size (1 for regression, K classes else)
    kind: str
    chance_loss: float
    chance_accuracy: float | None
    options: tuple = ()

    @property
    def label(self):
        return f"{self.name}@{self.delay}"

    def batch(self, size, generator, *, dtype=torch.float32, device="cpu"):
        """A batch of `size` sequences drawn from `generator` (a CPU torch.Generator), on
        `device` in `dtype`: the same generator state gives the same batch."""
        make = MAKERS[self.name]
        out = make(self, int(size), generator)
        xs = out.xs.to(dtype=dtype, device=device)
        target = out.target.to(device=device)
        if self.kind == "regression":
            target = target.to(dtype)
        mask = None if out.mask is None else out.mask.to(device)
        return Batch(xs, target, mask)


def _positive(value, what, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GradlabError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def adding(steps):
    """The adding problem over `steps` steps (T >= 2)."""
    T = _positive(steps, "adding delay (its sequence length)", 2)
    return Task("adding", T, T, 2, 1, "regression", 1 / 6, None)


def copy(delay, length=1, symbols=8):
    """Recall `length` symbols (of `symbols`) `delay` steps after they were shown."""
    D = _positive(delay, "copy delay", 1)
    L = _positive(length, "copy length", 1)
    K = _positive(symbols, "copy symbols", 2)
    if L > D:
        raise GradlabError(f"copy length {L} must not exceed the delay {D}")
    # channels: blank, symbols 1..K, cue
    return Task("copy", D, D + L, K + 2, K, "sequence", math.log(K), 1 / K,
                (("length", L), ("symbols", K)))


def parity(steps):
    """The parity (XOR) of `steps` random bits, read at the end."""
    T = _positive(steps, "parity length", 1)
    return Task("parity", T, T, 1, 2, "classify", math.log(2), 0.5)


def _adding(task, B, gen):
    T = task.steps
    values = torch.rand(T, B, generator=gen, dtype=torch.float64)
    half = T // 2
    first = torch.randint(0, half, (B,), generator=gen)
    second = torch.randint(half, T, (B,), generator=gen)
    marks = torch.zeros(T, B, dtype=torch.float64)
    rows = torch.arange(B)
    marks[first, rows] = 1.0
    marks[second, rows] = 1.0
    target = (values * marks).sum(0)
    return Batch(torch.stack([values, marks], -1), target)


def _copy(task, B, gen):
    opts = dict(task.options)
    L, K, D = opts["length"], opts["symbols"], task.delay
    T = task.steps
    symbols = torch.zeros(T, B, dtype=torch.long)
    symbols[:L] = torch.randint(1, K + 1, (L, B), generator=gen)
    xs = torch.nn.functional.one_hot(symbols, K + 2).to(torch.float64)
    xs[D - 1, :, K + 1] = 1.0                          # the cue: recall starts next step
    target = torch.zeros(T, B, dtype=torch.long)
    target[D:D + L] = symbols[:L]                      # the input, delayed by D
    mask = torch.zeros(T, B, dtype=torch.bool)
    mask[D:D + L] = True
    # classes: the symbols 1..K as 0..K-1 where scored; -1 (never scored) elsewhere
    target = torch.where(mask, target - 1, torch.full_like(target, -1))
    return Batch(xs, target, mask)


def _parity(task, B, gen):
    bits = torch.randint(0, 2, (task.steps, B), generator=gen)
    return Batch(bits.unsqueeze(-1).to(torch.float64) * 2 - 1, bits.sum(0) % 2)


MAKERS = {"adding": _adding, "copy": _copy, "parity": _parity}
TASKS = {"adding": adding, "copy": copy, "parity": parity}


def make(name, delay):
    """The task `name` ("adding", "copy", "parity") at `delay`; one line on a bad name."""
    if name not in TASKS:
        raise GradlabError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name](delay)


__all__ = ["Batch", "Task", "TASKS", "adding", "copy", "parity", "make"]
