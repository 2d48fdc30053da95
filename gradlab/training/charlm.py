"""A sequence model people know: a character-level torch.nn.LSTM trained on text that ships
with Python itself, then measured by gradlab.

The corpus is the text of Python's interactive help topics (`pydoc_data.topics`, part of
the standard library: no download), or, where a distribution left that module out, the Zen
of Python (`this`, read without printing). Characters outside printable ASCII and newline
share one symbol. The last tenth of the text is held out. After training, the LSTM's
weights go into an nn.LSTMCell, `gradlab.from_torch` turns that into the gradlab cell
"lstm" with exactly those weights, and `gradient_flow` measures the trained network and the
same architecture at initialisation on held-out text.
"""

import codecs
import contextlib
import dataclasses
import io
import math
import string

import torch

from .. import progress as steps_progress
from ..errors import derived_seed
from ..flow import gradient_flow, lyapunov
from ..initialize import as_dtype
from ..interop import from_torch
from ..reports.measurements import rate_words, states_finite, timescale_of
from .loop import diverged

ALPHABET = string.printable[:-2]    # printable ASCII less \x0b \x0c; index 0 is '0'


def corpus():
    """(name, text) of the corpus that ships with this Python."""
    try:
        from pydoc_data.topics import topics
        return "pydoc_data.topics (Python's help() topics)", "".join(
            topics[k] for k in sorted(topics))
    except ImportError:                                   # pragma: no cover (a trimmed Python)
        with contextlib.redirect_stdout(io.StringIO()):   # `import this` prints the Zen
            import this
        return "this (the Zen of Python)", codecs.decode(this.s, "rot13")


def encode(text):
    """Characters to indices into ALPHABET; anything else to one extra index."""
    index = {c: i for i, c in enumerate(ALPHABET)}
    other = len(ALPHABET)
    return torch.tensor([index.get(c, other) for c in text], dtype=torch.long)


@dataclasses.dataclass(frozen=True)
class CharSetup:
    hidden: int = 64
    embed: int = 16
    steps: int = 300            # Adam updates
    window: int = 64            # characters per training sequence (BPTT length)
    batch: int = 32
    lr: float = 1e-2
    measure_steps: int = 200    # held-out characters the gradient flow runs over
    measure_batch: int = 8
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab, setup):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, setup.embed)
        self.lstm = torch.nn.LSTM(setup.embed, setup.hidden)
        self.out = torch.nn.Linear(setup.hidden, vocab)

    def forward(self, ids):                       # ids (T, B) -> logits (T, B, vocab)
        h, _ = self.lstm(self.embed(ids))
        return self.out(h)


def _windows(data, starts, length):
    return torch.stack([data[s:s + length] for s in starts.tolist()], 1)     # (T, B)


def _bits(model, data, setup):
    """Mean cross-entropy in bits per character on `data` (chunks of `window + 1`)."""
    n = (len(data) - 1) // setup.window
    starts = torch.arange(n) * setup.window
    ids = _windows(data, starts, setup.window + 1).to(setup.device)
    with torch.no_grad():
        logits = model(ids[:-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[1:].flatten())
    return float(loss) / math.log(2)


def _unigram_bits(train, held):
    """Bits per character of the best input-blind model: character frequencies of the
    training text, scored on the held-out text."""
    counts = torch.bincount(train, minlength=len(ALPHABET) + 1).double() + 1
    p = counts / counts.sum()
    return float(-(torch.log2(p[held])).mean())


def _cell_of(model):
    """The gradlab cell and params (float64) computing what the trained nn.LSTM computes."""
    lstm = model.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size).to(lstm.weight_ih_l0)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l0"))
    return from_torch(cell.double())


def _flow(model, held, setup):
    """Gradient flow of the model's LSTM on held-out text (its embedded characters)."""
    if any(bool(torch.isnan(p).any()) for p in model.parameters()):
        return diverged(cell_path_rate=math.nan)      # (from_torch refuses nan weights)
    cell, params = _cell_of(model)
    gen = torch.Generator().manual_seed(derived_seed(setup.seed, 3))
    starts = torch.randint(0, len(held) - setup.measure_steps, (setup.measure_batch,),
                           generator=gen)
    ids = _windows(held, starts, setup.measure_steps).to(setup.device)
    with torch.no_grad():
        xs = model.embed(ids).double()
    flow = gradient_flow(cell, params, xs)
    if not states_finite(flow):
        return {"rate": math.nan, "timescale": math.nan, "why": "state overflowed",
                "words": "state overflowed", "lyapunov": math.nan, "cell_path_rate": math.nan}
    rate, why = flow.rate(), flow.why()
    cpath = flow.rate(block=("c", "c"))
    return {"rate": rate, "timescale": timescale_of(rate), "why": why,
            "words": rate_words(rate, why), "cell_path_rate": cpath,
            "cell_path_timescale": timescale_of(cpath),
            "lyapunov": float(lyapunov(cell, params, xs, k=1,
                                       discard=setup.measure_steps // 4)[0])}


def train_charlm(setup, *, progress=None):
    """Train the character LSTM; returns its record (plain numbers)."""
    torch.manual_seed(setup.seed)
    name, text = corpus()
    data = encode(text)
    split = int(len(data) * 0.9)
    train, held = data[:split], data[split:]
    model = CharLSTM(len(ALPHABET) + 1, setup).to(device=setup.device,
                                                 dtype=as_dtype(setup.dtype))
    record = {"corpus": name, "characters": len(text), "vocabulary": len(ALPHABET) + 1,
              "held_out": len(held), "unigram_bits": _unigram_bits(train, held),
              "setup": dataclasses.asdict(setup)}
    record["init"] = {"bits": _bits(model, held, setup), **_flow(model, held, setup)}
    gen = torch.Generator().manual_seed(derived_seed(setup.seed, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    losses = []
    for step in range(setup.steps):
        starts = torch.randint(0, len(train) - setup.window - 1, (setup.batch,), generator=gen)
        ids = _windows(train, starts, setup.window + 1).to(setup.device)
        logits = model(ids[:-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()) / math.log(2))
        if steps_progress.due(step, setup.steps):
            steps_progress.advance("training", step + 1, setup.steps)
    record["train_bits"] = losses
    record["trained"] = {"bits": _bits(model, held, setup), **_flow(model, held, setup)}
    if progress is not None:
        progress("char-lstm")
    return record


__all__ = ["CharSetup", "CharLSTM", "corpus", "encode", "train_charlm"]
