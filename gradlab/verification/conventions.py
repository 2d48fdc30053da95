"""A Jacobian that is exact for the cell read another way, named by the way: weights in
torch's gate order, biases left out, two gates swapped, a gate written 1 - z, or (for
Cho's GRU) the reset applied after the matrix, as torch's GRU has it. Each test returns
sentences, or [] where that reading does not explain the Jacobian."""

import itertools
import re

import torch

from .. import registry
from ..interop import GATES, layer_cell


def exact_jacobian(cell, wrt, params, state, x):
    return cell.jacobian_fn(wrt)(params, state, x).to(dtype=torch.float64, device="cpu")


def gate_order(cell, params, state, x, theirs, wrt, blocks, close):
    """Weights read in another gate order (torch stacks gates in GATES order)."""
    gates = GATES.get(cell.name) if cell.name in GATES and layer_cell(cell.name) is cell \
        else None
    if not gates:                        # (a user's cell named lstm stacks nothing)
        return []
    for order in itertools.permutations(gates):
        if order == gates:
            continue
        swap = dict(zip(gates, order))
        moved = {}
        for p, v in params.items():
            head, _, g = p.rpartition("_")
            g0 = g[1:] if cell.name == "gru_torch" and p.startswith("b_") else g
            if g0 in swap and head:
                prefix = p[:len(p) - len(g0)]
                moved[p] = params[prefix + swap[g0]]
            else:
                moved[p] = v
        other = blocks.select(exact_jacobian(cell, wrt, moved, state, x))
        if close(theirs, other):
            return [f"Your Jacobian is the exact one for weights read in gate order "
                    f"({', '.join(order)}); torch stacks the gates as ({', '.join(gates)}) in "
                    "weight_ih, weight_hh and the biases: split them in that order, or, "
                    "reading gradlab's named params, use each gate's own."]
    return []


def without_biases(cell, params, state, x, theirs, wrt, blocks, close):
    """A derivation that leaves the biases out (a bias-free model's code), told apart
    from one that is wrong: exact once every nonzero bias (b*, a vector) is zero."""
    biases = [p for p in cell.param_names if re.fullmatch(r"b(_\w*|\d*)", p)
              and cell.param_shapes[p][1] == 1 and bool((params[p] != 0).any())]
    if not biases:
        return []
    zeroed = {p: torch.zeros_like(v) if p in biases else v for p, v in params.items()}
    other = blocks.select(exact_jacobian(cell, wrt, zeroed, state, x))
    if not bool(other.abs().max() > 0) or not close(theirs, other):   # (a gain, not a bias)
        return []
    return [f"Your Jacobian is the exact one with the biases ({', '.join(biases)}) set to "
            "zero: your derivation leaves them out. If the model has no biases, check it "
            "at zero biases (--bias-scale 0, or params with zero biases)."]


def gate_groups(cell):
    """{gate: its parameters}, by the last letter of each name's suffix: W_z, U_z, b_z
    (and gru_torch's b_iz, b_hz) are z's."""
    groups = {}
    for p in cell.param_names:
        head, _, suffix = p.rpartition("_")
        if head and suffix:
            groups.setdefault(suffix[-1], []).append(p)
    return groups


def swapped_gates(cell, params, state, x, theirs, wrt, blocks, close):
    """Two gates' parameters swapped (a derivation with r where z belongs, and z for r)."""
    groups = gate_groups(cell)
    for a, b in itertools.combinations(groups, 2):
        pairs = {p: p[:-1] + b for p in groups[a]}
        if sorted(pairs.values()) != sorted(groups[b]) or any(
                params[p].shape != params[q].shape for p, q in pairs.items()):
            continue
        moved = dict(params, **{p: params[q] for p, q in pairs.items()},
                     **{q: params[p] for p, q in pairs.items()})
        if close(theirs, blocks.select(exact_jacobian(cell, wrt, moved, state, x))):
            shown = ", ".join(f"{p} ↔ {q}" for p, q in pairs.items())
            return [f"Your Jacobian is the exact one with the parameters of {a} and {b} "
                    f"swapped ({shown}): your derivation uses {a} where {b} belongs and {b} "
                    f"where {a} belongs."]
    return []


def negated_gate(cell, params, state, x, theirs, wrt, blocks, close):
    """A gate's parameters negated: for a sigmoid gate z, sigma(-a) = 1 - z, so this is a
    derivation with 1 - z where the cell has z (the GRUs' two conventions)."""
    for g, names in gate_groups(cell).items():
        flipped = dict(params, **{p: -params[p] for p in names})
        if close(theirs, blocks.select(exact_jacobian(cell, wrt, flipped, state, x))):
            return [f"Your Jacobian is the exact one with the parameters of {g} "
                    f"({', '.join(names)}) negated, which turns a sigmoid gate {g} into "
                    f"1 - {g}: your derivation has 1 - {g} where the cell has {g} (GRUs are "
                    "written both ways, h' = z h + (1 - z) h~ and h' = (1 - z) h + z h~; "
                    f"`gradlab derive {cell.name}` shows this cell's)."]
    return []


# Cho's GRU's weights (gru) -> the same weights in torch's GRU (gru_torch)
GRU_WEIGHTS = {"W_r": "W_r", "W_z": "W_z", "W": "W_n", "U_r": "U_r", "U_z": "U_z", "U": "U_n"}


def reset_after(cell, params, state, x, theirs, wrt, blocks, close):
    """Cho's GRU (h~ = tanh(W (r ⊙ h) + U x + b)) derived as torch's, the reset applied
    after the matrix (r ⊙ (W h)): the exact Jacobian of gru_torch with the same weights
    and the biases where the input's are."""
    if not (registry.builtin(cell) and cell.name == "gru"):
        return []
    p = params
    zero = torch.zeros_like(p["b"])
    torch_params = {theirs_: p[ours] for ours, theirs_ in GRU_WEIGHTS.items()}
    torch_params.update(b_ir=p["b_r"], b_iz=p["b_z"], b_in=p["b"], b_hr=zero, b_hz=zero,
                        b_hn=zero)
    other = registry.cell("gru_torch")
    if close(theirs, blocks.select(exact_jacobian(other, wrt, torch_params, state, x))):
        return ["Your Jacobian is that of the GRU with its reset applied after the matrix, "
                "h~ = tanh(r ⊙ (W h) + U x + b), as torch's nn.GRU has it (gradlab's "
                "gru_torch); this cell, Cho's, applies it before: h~ = tanh(W (r ⊙ h) + U x "
                "+ b). Check against --cell gru_torch, or move the reset."]
    return []


def reset_before(cell, params, state, x, theirs, wrt, blocks, close):
    """torch's GRU (gru_torch, h~ = tanh(U_n x + b_in + r ⊙ (W_n h + b_hn))) derived as
    Cho's, the reset applied before the matrix (W_n (r ⊙ h)): the exact Jacobian of gru
    with the same weights, each gate's two biases as one, b_hn either added to b_in (a
    derivation that moved the reset and kept b_hn outside it) or left out."""
    if not (registry.builtin(cell) and cell.name == "gru_torch"):
        return []
    p = params
    cho = {ours: p[theirs_] for ours, theirs_ in GRU_WEIGHTS.items()}
    cho.update(b_r=p["b_ir"] + p["b_hr"], b_z=p["b_iz"] + p["b_hz"])
    other = registry.cell("gru")
    for b in (p["b_in"] + p["b_hn"], p["b_in"]):
        if close(theirs, blocks.select(exact_jacobian(other, wrt, dict(cho, b=b), state, x))):
            return ["Your Jacobian is that of the GRU with its reset applied before the "
                    "matrix, h~ = tanh(W_n (r ⊙ h) + U_n x + b), as Cho et al. write it "
                    "(gradlab's gru); this cell, torch's nn.GRU, applies it after: h~ = "
                    "tanh(U_n x + b_in + r ⊙ (W_n h + b_hn)). Check against --cell gru, or "
                    "move the reset."]
    return []

def transposed_weights(cell, params, state, x, theirs, wrt, blocks, close):
    """Square weights read transposed in the step itself (a row-vector convention, h @ W
    where the cell has W h), every one of them or one alone: the Jacobian of another
    cell, exact for it. (A weight transposed in the derivative alone is a slip of one
    term: slips.py names those.)"""
    square = [p for p in cell.param_names if params[p].ndim == 2
              and params[p].shape[0] == params[p].shape[1] > 1]
    for chosen in [square] + ([[p] for p in square] if len(square) > 1 else []):
        moved = dict(params, **{p: params[p].mT for p in chosen})
        if chosen and close(theirs, blocks.select(exact_jacobian(cell, wrt, moved, state, x))):
            names = ", ".join(chosen)
            return [f"Your Jacobian is the exact one for the step with {names} transposed: "
                    f"yours reads {'each of them' if len(chosen) > 1 else names} as its "
                    "transpose (h @ W where the cell has W h, the row-vector convention), "
                    "in the step itself, not only in the derivative. Transpose "
                    f"{'them' if len(chosen) > 1 else 'it'} in your step, or check against "
                    "params holding the transposes."]
    return []
