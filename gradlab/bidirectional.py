"""A direction of a bidirectional multi-layer torch module, as one recurrence: the inputs
it reads from the other direction.

With num_layers = L > 1, layer l of a bidirectional module reads concat(forward h,
backward h) of layer l-1, and the other direction runs in the opposite time, so the
whole network is no causal recurrence. `from_torch(module, direction=...)` gives one
direction's L layers stacked, reading x' = concat(x_t, the other direction's h of layers
1..L-1 at t) as an input held fixed at its values on the actual sequence;
`direction_inputs` computes x' by running the module's own layers (torch's kernels) from
zero initial states, or from the direction's own `state0` (with L > 2 the other
direction's layer 2 reads this one's layer-1 outputs, which depend on it).
"""

import re

from .errors import GradlabError
from .interop import check_direction, module_sizes, state_sizes, wide_input
from .torch_guards import module_kind, refuse_meta, unwrap


def _one_layer(module, k):
    """Layer k (from 0) of a bidirectional module as its own one-layer module, both
    directions, torch's weights: torch's kernels compute what layer k computes."""
    import torch
    import torch.nn as nn

    cls = next(c for c in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(module, c))
    n, p, m = module_sizes(module)
    like = next(module.parameters())
    options = {"nonlinearity": module.nonlinearity} if cls is nn.RNN else {}
    if getattr(module, "proj_size", 0):
        options["proj_size"] = p
    with torch.random.fork_rng(devices=[]):        # its init draws must not move the user's
        one = cls(m if k == 0 else 2 * p, n, num_layers=1, bias=module.bias,
                  bidirectional=True, **options).to(dtype=like.dtype, device=like.device)
    # each weight as the module computes it (getattr): a parametrized one (weight_norm,
    # orthogonal) is not among named_parameters under its own name
    state = {name: getattr(module, re.sub(r"_l0(?=_reverse$|$)", f"_l{k}", name)).detach()
             for name in one.state_dict()}
    one.load_state_dict(state)
    return one


def direction_inputs(module, xs, direction, state0=None):
    """The sequence a direction of `module` reads, from its input sequence xs (T, B, m):
    for a bidirectional module with num_layers = L > 1, x' = concat(x_t, the other
    direction's h of layers 1..L-1 at t), (T, B, m + (L-1)*p), computed by running the
    module's own layers on xs from zero initial states (the module docstring), or, for
    this direction, from `state0` (its state as from_torch's cell holds it: h1, c1, h2,
    ..., (B, n) each): from layer 2 on the other direction reads this one's outputs, so
    with L > 2 they depend on it. For any other torch recurrent module, xs itself. Always
    in natural time order, on the module's dtype and device: pass it with
    reverse=(direction == "backward")."""
    import torch

    module = unwrap(module)                  # torch.compile, DataParallel: as from_torch
    module_kind(module)
    refuse_meta(module)
    if not hasattr(module, "num_layers"):
        raise GradlabError(f"direction_inputs takes nn.RNN, nn.LSTM or nn.GRU, got "
                           f"{type(module).__name__} (a cell module reads xs itself)")
    check_direction(module, direction)
    like = next(module.parameters())
    _, p, m = module_sizes(module)
    from .flow.arrays import converted
    from .flow.bound import as_inputs
    xs = as_inputs(xs)                   # real numbers, (T, B, .) with T, B >= 1
    if xs.shape[2] != m:
        raise GradlabError(f"xs has shape {tuple(xs.shape)}, expected (T, B, {m}) (time "
                           f"first, whatever batch_first says) with T >= 1")
    xs = converted(xs, "xs", like.dtype, like.device)
    if not wide_input(module):
        return xs
    other = slice(p, 2 * p) if direction == "forward" else slice(0, p)
    if state0 is not None:
        state0 = _direction_state0(module, state0, xs.shape[1], like)
    inputs, halves = xs, []
    with torch.no_grad():
        for k in range(module.num_layers - 1):
            start = None if state0 is None else _layer_state(module, state0, k, direction)
            inputs, _ = _one_layer(module, k)(inputs, start)
            halves.append(inputs[..., other])
    return torch.cat([xs, *halves], -1)


def _direction_state0(module, state0, B, like):
    """state0 for direction_inputs, each part a (B, width) tensor on the module's dtype
    and device (width: torch's, or the cell's padded n), refused in one line otherwise."""
    from .flow.bound import as_real
    sizes, (n, _, _) = state_sizes(module), module_sizes(module)
    if not isinstance(state0, (tuple, list)) or len(state0) != len(sizes):
        raise GradlabError(f"state0 is this direction's state as from_torch's cell holds it, "
                           f"one (B, width) part each for {', '.join(sizes)}; got "
                           + (f"{len(state0)} parts" if isinstance(state0, (tuple, list))
                              else type(state0).__name__))
    parts = []
    for (name, size), part in zip(sizes.items(), state0):
        part = as_real(part, f"state0 part {name!r}", like.dtype, like.device)
        if part.ndim != 2 or part.shape[0] != B or part.shape[1] not in (size, n):
            raise GradlabError(f"state0 part {name!r} has shape {tuple(part.shape)}; "
                               f"expected ({B}, {size})")
        parts.append(part)
    return parts


def _layer_state(module, state0, k, direction):
    """torch's initial state of bidirectional layer k, this direction's from `state0` (the
    stacked cell's parts, (B, n) each; torch's h is the first p entries of its h), the
    other direction's zero."""
    n, p, _ = module_sizes(module)
    per = len(state0) // module.num_layers
    mine = state0[k * per:(k + 1) * per]
    side = 0 if direction == "forward" else 1
    out = []
    for part, width in zip(mine, (p, n)):
        both = part.new_zeros(2, part.shape[0], width)
        both[side] = part[:, :width]
        out.append(both)
    return out[0] if per == 1 else tuple(out)


__all__ = ["direction_inputs"]
