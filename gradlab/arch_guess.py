"""What architecture a checkpoint's names and shapes say, for the one-line refusal of a
state dict that is not `--arch`'s (gradlab.checkpoint.check_state_dict): the flags a
state dict records (layers, bias, bidirectional, proj) and the sizes its shapes give
(hidden, inputs), so that the refusal names the valid --arch, not only the odd key.

Read off weight_hh_l0 (gates x hidden rows; hidden or proj columns), weight_hr_l0 (proj
x hidden), weight_ih_l0 (inputs columns) and the names' layer numbers and _reverse. The
kind is --arch's where the shapes fit it, else the one of rnn / lstm / gru they fit (a
state dict cannot tell rnn from rnn_relu: --arch's is kept). The guess is offered only
where the architecture it names has exactly the file's names and shapes.
"""

import dataclasses
import re

GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
NAME = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?")


def _sizes(state, kind):
    """(hidden, proj) that layer 0's shapes give for `kind`, or None where they do not fit."""
    w_hh, w_hr = state.get("weight_hh_l0"), state.get("weight_hr_l0")
    if w_hh is None or w_hh.ndim != 2 or w_hh.shape[0] % GATES[kind]:
        return None
    n, cols = w_hh.shape[0] // GATES[kind], w_hh.shape[1]
    if w_hr is None:
        return (n, 0) if cols == n else None
    if kind != "lstm" or w_hr.ndim != 2 or tuple(w_hr.shape) != (cols, n) or not 0 < cols < n:
        return None
    return n, cols


def said(state, arch):
    """The `Arch` (gradlab.checkpoint) that `state` (its names under the prefix, a torch
    cell's read as layer 0's) is the state dict of, or None: none fits, or it is `arch`."""
    import torch

    from .checkpoint import CELL_KEYS      # (a torch cell's names)
    from .symbolic.stack import MAX_LAYERS

    if state and all(k in CELL_KEYS for k in state):     # a torch cell's: layer 0's
        state = {f"{k}_l0": v for k, v in state.items()}
    found = [NAME.fullmatch(k) for k in state]
    if not found or not all(found) or "weight_ih_l0" not in state:
        return None
    layers = 1 + max(int(f.group(3)) for f in found)
    w_ih = state["weight_ih_l0"]
    if layers > MAX_LAYERS or w_ih.ndim != 2 or w_ih.shape[1] < 1:
        return None
    family = ("rnn", "rnn_relu") if arch.kind.startswith("rnn") else (arch.kind,)
    kinds = [arch.kind] + [k for k in ("lstm", "gru", "rnn") if k not in family]
    for kind in kinds:
        sizes = _sizes(state, kind)
        if sizes is None:
            continue
        guess = dataclasses.replace(
            arch, kind=kind, hidden=sizes[0], inputs=int(w_ih.shape[1]), layers=layers,
            bias=any(f.group(1) == "bias" for f in found), proj=sizes[1],
            bidirectional=any(f.group(4) for f in found))
        if guess == arch:
            return None
        with torch.device("meta"):          # (shapes only: nothing allocated or drawn)
            module = guess.module(device="meta")
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        if expected == {k: tuple(v.shape) for k, v in state.items()}:
            return guess
    return None


def hint(state, arch):
    """'; its names and shapes are those of --arch X' where `said` finds one, else ''."""
    try:
        guess = said(state, arch)
    except Exception:                    # (a shape torch will not build): no guess
        guess = None
    return f"; the file's names and shapes are those of --arch {guess}" if guess else ""
