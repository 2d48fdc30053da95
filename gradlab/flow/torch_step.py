"""`TorchStep`: torch's nn.RNN / nn.LSTM / nn.GRU as one protocol step (x, state) -> state,
so that `gradient_flow(TorchStep(module), xs)` measures the module by jacrev of torch's own
kernels, a cross-check of the symbolic flow `from_torch` gives (module.py: the protocol)."""

import torch

from ..errors import GradlabError
from ..torch_guards import unwrap


class TorchStep(torch.nn.Module):
    """A torch nn.LSTM / nn.GRU / nn.RNN as one step `(x, state) -> state`, state in
    batch-first parts (B, layers, size) of one direction: the protocol's form, for
    measuring a module by jacrev (`gradient_flow(TorchStep(module), xs)`). One direction
    of a bidirectional module with num_layers > 1 has no step of its own here (layer 2
    reads the other direction too): `from_torch` and `bidirectional.direction_inputs` have it."""

    def __init__(self, module, direction="forward"):
        if direction not in ("forward", "backward"):
            raise GradlabError(f"direction {direction!r} is not one of: forward, backward")
        module = unwrap(module)          # torch.compile, DataParallel: as gradient_flow
        if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
            raise GradlabError(f"TorchStep wraps nn.RNN, nn.LSTM or nn.GRU, got "
                               f"{type(module).__name__} (a cell module is already a step: "
                               "pass it to gradient_flow as it is)")
        if direction == "backward" and not module.bidirectional:
            raise GradlabError(f"direction='backward' needs a bidirectional module; this "
                               f"{type(module).__name__} has one direction (use 'forward')")
        super().__init__()
        self.module, self.pick = module, int(direction == "backward")
        self.dirs = 2 if module.bidirectional else 1
        if self.dirs == 2 and module.num_layers > 1:
            raise GradlabError("a bidirectional module with num_layers > 1 has no recurrent "
                               "step: layer 2 reads both directions of layer 1")

    def forward(self, x, state):
        lstm = isinstance(self.module, torch.nn.LSTM)
        self._check(state, lstm)
        parts = state if lstm else (state,)
        full = []
        for s in parts:
            s = s.transpose(0, 1)                                  # (L, B, size)
            if self.dirs == 2:
                z = torch.zeros_like(s)
                s = torch.stack([z, s] if self.pick else [s, z], 1).flatten(0, 1)
            full.append(s)
        seq = x[:, None] if self.module.batch_first else x[None]
        _, last = self.module(seq, tuple(full) if lstm else full[0])
        last = last if lstm else (last,)
        L = self.module.num_layers
        new = tuple(t.view(L, self.dirs, *t.shape[1:])[:, self.pick].transpose(0, 1)
                    for t in last)
        return new if lstm else new[0]

    def _check(self, state, lstm):
        """Refuse a state not in the step's form, (B, layers, size) parts, naming that form
        (torch would fail in its own words, about its (layers, B, size) hx)."""
        m = self.module
        sizes = (m.proj_size or m.hidden_size, m.hidden_size) if lstm else (m.hidden_size,)
        parts = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        given = [tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                 for p in parts]
        fits = (isinstance(state, (tuple, list)) == lstm and len(parts) == len(sizes) and
                all(isinstance(p, torch.Tensor) and p.ndim == 3 and p.shape[1:] ==
                    (m.num_layers, k) for p, k in zip(parts, sizes)))
        if not fits:
            want = " and ".join(f"(B, {m.num_layers}, {k})" for k in sizes)
            raise GradlabError(f"TorchStep of {type(m).__name__} takes its state as "
                               f"{'a tuple (h, c) shaped ' if lstm else ''}{want}, batch "
                               f"first, one direction's layers (not torch's (layers, B, "
                               f"size)); got {given if lstm or len(given) > 1 else given[0]}")

    def state0(self, B):
        m = self.module
        sizes = ((m.proj_size or m.hidden_size, m.hidden_size)
                 if isinstance(m, torch.nn.LSTM) else (m.hidden_size,))
        like = next(m.parameters())
        zeros = tuple(like.new_zeros(B, m.num_layers, k) for k in sizes)
        return zeros if len(zeros) > 1 else zeros[0]
