"""Checking someone else's Jacobian against the exact one, and saying what is wrong with it.

`check_jacobian(fn, cell, params)` evaluates a user's `fn(params, state, x)` (torch or
numpy; (B, S, S), or (S, S) for one sample: a function that fails on a batch, or
returns one matrix for it, is called one sample at a time) at random states and inputs,
or at the ones given, and compares it with gradlab's lowered Jacobian. When they differ it looks for the
mistakes people make when they derive a Jacobian by hand, in the terms of the derivation:

    layout      the transpose (denominator layout: rows are inputs)
    order       the state parts in another order ((c, h) for (h, c))
    terms       a term missing, doubled, with the wrong sign or a wrong constant factor:
                each block is a sum of terms such as diag(h ⊙ z ⊙ (1 − z)) W_z, each is
                evaluated, and the combination of them that explains the difference found
                by least squares
    slope       a term whose diagonal factor is wrong row by row (an activation's slope)
    gates       weights read in another gate order (torch stacks i, f, g, o / r, z, n)
    batch       right one sample at a time, wrong on a batch (it does not broadcast)

and, when nothing simple explains the difference, says so and shows the worst entries.
"""

import dataclasses
import itertools
import math
import numbers

import torch
from sympy import MatMul
from sympy.matrices.expressions.diagonal import DiagMatrix

from .. import budget, registry
from ..errors import GradlabError, check_seed, choice, integer
from ..flow.bound import as_real, check_params, hidden_size
from ..interop import GATES
from ..lowering.lower import terms_function
from ..symbolic.printing import text
from .user import batched_jacobian, lower_precision, right_one_by_one

LAYOUTS = ("numerator", "denominator")
EXPLAINED = 1e-6          # a diagnosis must explain the difference to this relative residual


class Error(float):
    """The largest relative error (a float, compared with rtol), with `.absolute` and
    `.relative` beside it."""

    def __new__(cls, absolute, relative):
        self = super().__new__(cls, relative)
        self.absolute, self.relative = absolute, relative
        return self


@dataclasses.dataclass
class Result:
    ok: bool
    max_error: Error                 # relative; .absolute and .relative
    worst_block: tuple               # (out part, in part) of the largest relative error
    block_errors: dict               # {(out part, in part): relative error}
    diagnosis: list                  # plain sentences
    checked: int                     # samples compared

    def __str__(self):
        head = ("agrees" if self.ok else "differs") + (
            f": max relative error {self.max_error.relative:.3g} (absolute "
            f"{self.max_error.absolute:.3g}) over {self.checked} samples")
        return "\n".join([head, *self.diagnosis])


def _relative(a, b):
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


ROUNDOFF = 64         # eps of the largest exact entry: what an exactly-zero block may hold


def _block_error(a, b, whole):
    """The relative error of one block of yours (a) against the exact (b), on the block's
    own scale. An exactly-zero block has none to be relative to: entries beyond round-off
    of the whole Jacobian (ROUNDOFF eps of its largest entry) are wrong throughout, an
    infinite relative error, however small (5e-9 in a zero block used to pass, as an
    absolute error)."""
    if bool((b == 0).all()):
        tiny = ROUNDOFF * torch.finfo(a.dtype).eps * (float(whole.abs().max()) or 1.0)
        return 0.0 if float(a.abs().max()) <= tiny else math.inf
    return _relative(a, b)


def _sample(cell, params, batch, seed, states):
    """(state tuple (B, n), x (B, m)) at which to compare."""
    first = params[cell.param_names[0]]

    def tensor(t, name):
        return as_real(t, f"states: {name}", first.dtype, first.device)

    if states is not None:
        pair = (isinstance(states, (tuple, list)) and len(states) == 2
                and isinstance(states[0], (tuple, list)))
        state = states[0] if pair else (
            tuple(states) if isinstance(states, (tuple, list)) else (states,))
        if len(state) != len(cell.state_names):
            raise GradlabError(f"states: {len(state)} state part(s) given; cell "
                               f"'{cell.name}' has {', '.join(cell.state_names)}")
        state = tuple(tensor(t, n) for t, n in zip(state, cell.state_names))
        if pair:
            return state, tensor(states[1], cell.input_name)
        B = state[0].shape[0] if state[0].ndim else 0
    else:
        B = batch
    n = hidden_size(cell, params)
    m = next((params[p].shape[1] for p in cell.param_names
              if params[p].ndim == 2 and str(cell.param_shapes[p][1]) == "m"), 1)
    budget.ensure_check_fits(cell, n, m, B)            # as `gradlab check` does
    gen = torch.Generator().manual_seed(seed)
    draw = lambda *shape: (0.8 * torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa
                           ).to(dtype=first.dtype, device=first.device)
    if states is None:
        state = tuple(draw(B, n) for _ in cell.state_names)
    return state, draw(B, m)


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Where each block sits in a Jacobian (rows: the state parts; columns: the state parts
    or the input), and the one block checked, if one is named."""
    outs: tuple
    ins: tuple
    n: int
    width: int
    block: tuple = None

    @property
    def keys(self):
        return [self.block] if self.block else [(a, b) for a in self.outs for b in self.ins]

    def cut(self, M, key):
        a, b = self.outs.index(key[0]), self.ins.index(key[1])
        return M[:, a * self.n:(a + 1) * self.n, b * self.width:(b + 1) * self.width]

    def select(self, M):
        """The part of a whole Jacobian that is checked."""
        return self.cut(M, self.block) if self.block else M

    def part(self, M, key):
        """Block `key` of a checked matrix (which is that block when one is named)."""
        return M if self.block else self.cut(M, key)


def check_jacobian(fn, cell, params, *, wrt="state", layout="numerator", block=None, batch=4,
                   seed=0, rtol=None, states=None):
    """Compare `fn(params, state, x)` with gradlab's exact Jacobian; a `Result`.
    rtol: the largest relative error that agrees (default 1e-8, 1e-5 for float32 params).

    wrt: "state" ((B, S, S)) or "input" ((B, S, m)); layout: "numerator" (rows are
    outputs, as torch.func.jacrev) or "denominator" (the transpose); block=("h", "h") when
    fn gives one block (an LSTM analysed on h alone); states: a state tuple of (B, n)
    tensors (x drawn at random) or a pair (state tuple, x), e.g. points of a trajectory."""
    cell = registry.cell(cell)
    choice(wrt, ("state", "input"), "wrt")
    choice(layout, LAYOUTS, "layout")
    batch = integer(batch, "batch", 1)
    if rtol is None:
        first = params.get(cell.param_names[0]) if isinstance(params, dict) else None
        rtol = 1e-5 if getattr(first, "dtype", None) == torch.float32 else 1e-8
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 < rtol < 1:
        raise GradlabError(f"rtol must be a number in (0, 1), got {rtol!r}")
    seed = check_seed(seed)
    check_params(cell, params)
    state, x = _sample(cell, params, batch, seed, states)
    for name, t in zip((*cell.state_names, cell.input_name), (*state, x)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[0] < 1:
            raise GradlabError(f"states: {name} must be a (B, size) tensor with B >= 1, got "
                               f"{type(t).__name__} {tuple(getattr(t, 'shape', ()))}")
    bad = [p for p in cell.param_names if not bool(torch.isfinite(params[p]).all())]
    bad += [name for name, t in zip((*cell.state_names, cell.input_name), (*state, x))
            if not bool(torch.isfinite(t).all())]
    if bad:
        raise GradlabError(f"{', '.join(bad)} hold(s) nan or inf: the exact Jacobian there is "
                           "not a number to compare with")
    n = state[0].shape[-1]
    ins = cell.state_names if wrt == "state" else (cell.input_name,)
    if block is not None:
        given, block = block, tuple(block) if isinstance(block, (tuple, list)) else ()
        if len(block) == 2 and isinstance(block[0], str) and block[0].endswith("'"):
            block = (block[0][:-1], block[1])          # ("h'", "h"), as J["h'", "h"] reads
        if len(block) != 2 or block[0] not in cell.state_names or block[1] not in ins:
            raise GradlabError(f"block {given!r} is not (out part, in part) with parts from "
                               f"{', '.join(cell.state_names)} and {', '.join(ins)}")
    blocks = Blocks(cell.state_names, ins, n, n if wrt == "state" else x.shape[-1], block)
    exact = blocks.select(_exact(cell, wrt, params, state, x))
    rows, cols = exact.shape[1:]
    shape = (rows, cols) if layout == "numerator" else (cols, rows)
    theirs, one_by_one, dtype = batched_jacobian(fn, params, state, x, shape)
    if tuple(theirs.shape[1:]) != shape:      # (B, cols, rows): the other layout's shape
        return _other_shape(theirs, exact, layout, blocks)
    if layout == "denominator":
        theirs = theirs.transpose(1, 2)
    finite = torch.isfinite(theirs)
    if not bool(finite.all()):
        b, i, j = (int(v) for v in (~finite).nonzero()[0])
        nan = Error(math.nan, math.nan)
        return Result(False, nan, blocks.keys[0], {k: math.nan for k in blocks.keys}, [
            f"Your Jacobian holds {int((~finite).sum())} entries that are nan or inf, e.g. "
            f"[{b}, {i}, {j}] = {float(theirs[b, i, j])} where the exact value is "
            f"{float(exact[b, i, j]):.6g}."], x.shape[0])
    absolute = float((theirs - exact).abs().max())
    relative = absolute / (float(exact.abs().max()) or 1.0)
    errors = {k: _block_error(blocks.part(theirs, k), blocks.part(exact, k), exact)
              for k in blocks.keys}
    # every block on its own scale too: a block wrong throughout (diag(f) left out) is
    # small against a block a million times larger, and must not pass for it
    ok = relative <= rtol and all(e <= rtol for e in errors.values())
    relative = max(relative, *errors.values())
    batch_only = None if ok or one_by_one or x.shape[0] == 1 else right_one_by_one(
        fn, params, state, x, shape, layout, exact, rtol)
    rounded = None if ok else lower_precision(dtype, params[cell.param_names[0]].dtype,
                                              relative, rtol)
    diagnosis = [] if ok else batch_only or rounded or _diagnose(
        cell, params, state, x, theirs, exact, blocks, wrt, layout, rtol)
    return Result(ok, Error(absolute, relative), max(blocks.keys, key=errors.get), errors,
                  diagnosis, x.shape[0])


def _other_shape(theirs, exact, layout, blocks):
    """The Result for an answer shaped as the other layout's (B, cols, rows), rows != cols."""
    flipped = theirs if layout == "denominator" else theirs.transpose(1, 2)
    error = _relative(flipped, exact)
    other = "numerator" if layout == "denominator" else "denominator"
    said = (f"Your Jacobian has shape {tuple(theirs.shape)}, that of {other} layout "
            f"(rows are {'outputs' if other == 'numerator' else 'inputs'}); read so, it is "
            + ("right" if error <= 1e-9 else f"still wrong (max relative error {error:.3g})")
            + f": pass layout={other!r} (--layout {other}), or transpose it.")
    return Result(False, Error(math.nan, error), blocks.keys[0],
                  {k: math.nan for k in blocks.keys}, [said], theirs.shape[0])


def _exact(cell, wrt, params, state, x):
    return cell.jacobian_fn(wrt)(params, state, x).to(dtype=torch.float64, device="cpu")


def _diagnose(cell, params, state, x, theirs, exact, blocks, wrt, layout, rtol):
    close = lambda a, b: _relative(a, b) <= max(rtol, 1e-9)      # noqa: E731
    if theirs.shape[1] == theirs.shape[2] and close(theirs.transpose(1, 2), exact):
        other = "numerator" if layout == "denominator" else "denominator"
        if other == "numerator":
            return ["You passed layout='denominator', but your Jacobian is in numerator "
                    "layout (rows are outputs, J[i, j] = ∂out_i/∂in_j, as torch.func.jacrev):"
                    " pass layout='numerator' (--layout numerator), the default."]
        return ["Your Jacobian is the transpose of the exact one: it is in denominator layout "
                "(rows are inputs). gradlab uses numerator layout, J[i, j] = ∂out_i/∂in_j, "
                "as torch.func.jacrev; transpose it or pass layout='denominator' (--layout "
                "denominator)."]
    parts = cell.state_names
    if blocks.block is None and wrt == "state" and len(parts) > 1:
        for order in itertools.permutations(range(len(parts))):
            if list(order) == list(range(len(parts))):
                continue
            n = blocks.n
            idx = torch.cat([torch.arange(k * n, (k + 1) * n) for k in order])
            if close(theirs, exact[:, idx][:, :, idx]):
                return [f"Your state parts are in the order ({', '.join(parts[k] for k in order)}"
                        f"); gradlab's state is ({', '.join(parts)}). Reorder the rows and "
                        "columns of your blocks."]
    found = _gate_order(cell, params, state, x, theirs, wrt, blocks, close)
    if found:
        return found
    terms = terms_function(cell, wrt, "torch")(params, state, x)
    sentences = []
    unexplained = []
    for key in blocks.keys:
        mine, ref = blocks.part(theirs, key), blocks.part(exact, key)
        if _block_error(mine, ref, exact) <= rtol:
            continue
        said = _explain_block(key, mine - ref, terms.get(key, []), float(ref.abs().max()) or 1.0)
        if said:
            sentences += said
        else:
            unexplained.append(key)
    for key in unexplained:
        sentences.append(f"Block ∂{key[0]}'/∂{key[1]}: no missing, extra, sign-flipped or "
                         "rescaled term explains the difference. Worst entries "
                         + _worst_entries(blocks.part(theirs, key), blocks.part(exact, key))
                         + ".")
    return sentences


def _explain_block(key, D, terms, scale):
    """Sentences naming the terms whose wrong coefficients (or slopes) explain D."""
    name = f"∂{key[0]}'/∂{key[1]}"
    if not terms:
        return [f"Block {name} is exactly zero, but yours is not (largest entry "
                f"{float(D.abs().max()):.3g}): that block has no term at all."]
    T = torch.stack([v.to(dtype=torch.float64, device="cpu") for _, v in terms])  # (K, B, n, w)
    A = T.reshape(len(terms), -1).T
    d = D.reshape(-1)
    coef = torch.linalg.lstsq(A, d[:, None]).solution[:, 0]
    residual = float((A @ coef - d).abs().max()) / scale
    if residual <= EXPLAINED:
        out = []
        for (term, _), c in zip(terms, coef.tolist()):
            c = round(c, 10)           # a factor 1 + 1e-7 is still told (rtol 1e-8)
            if abs(c) < 1e-9:
                continue
            shown = text(term)
            if abs(c + 1) < 1e-6:
                out.append(f"Block {name}: the term {shown} is missing.")
            elif abs(c + 2) < 1e-6:
                out.append(f"Block {name}: the term {shown} has the wrong sign.")
            elif abs(c - 1) < 1e-6:
                out.append(f"Block {name}: the term {shown} appears twice (an extra copy).")
            else:
                out.append(f"Block {name}: the term {shown} is scaled by {1 + c:.10g} "
                           "instead of 1 (a wrong constant factor).")
        return out
    for factor, group in _by_leading_factor(terms):      # terms sharing a wrong slope
        V = sum(value.to(dtype=torch.float64, device="cpu") for _, value in group)
        norm = (V * V).sum(-1)
        w = torch.where(norm > 0, (D * V).sum(-1) / norm.clamp_min(1e-300), torch.zeros_like(norm))
        if (float(w.abs().max()) > 0
                and float((w[..., None] * V - D).abs().max()) / scale <= EXPLAINED):
            ratio = (1 + w)[norm > 0]
            shown = " + ".join(text(t) for t, _ in group)
            return [f"Block {name}: the factor {text(factor)} of {shown} is wrong: yours "
                    f"is it times {float(ratio.min()):.4g} to {float(ratio.max()):.4g}, row "
                    "by row, not 1 (an activation's slope written wrong?)."]
    return []


def _by_leading_factor(terms):
    """Groups of terms that share their leftmost diag(...) factor, largest first: a slope
    written wrong changes that factor in every term it leads."""
    groups = {}
    for term, value in terms:
        args = term.args if isinstance(term, MatMul) else (term,)
        lead = next((a for a in args if isinstance(a, DiagMatrix)), None)
        if lead is not None:
            groups.setdefault(lead, []).append((term, value))
    singles = [(t.args[0] if isinstance(t, MatMul) else t, [(t, v)]) for t, v in terms]
    return sorted(groups.items(), key=lambda g: -len(g[1])) + singles


def _gate_order(cell, params, state, x, theirs, wrt, blocks, close):
    """Weights read in another gate order (torch stacks gates in GATES order)."""
    gates = GATES.get(cell.name)
    if not gates:
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
        other = blocks.select(_exact(cell, wrt, moved, state, x))
        if close(theirs, other):
            return [f"Your Jacobian is the exact one for weights read in gate order "
                    f"({', '.join(order)}); torch stacks the gates as ({', '.join(gates)}) in "
                    "weight_ih, weight_hh and the biases. Split them in that order."]
    return []


def _worst_entries(mine, ref, count=3):
    diff = (mine - ref).abs().reshape(-1)
    top = torch.topk(diff, min(count, diff.numel())).indices
    B, r, c = mine.shape
    out = []
    for i in top.tolist():
        b, rest = divmod(i, r * c)
        row, col = divmod(rest, c)
        out.append(f"[sample {b}, {row}, {col}] yours {float(mine[b, row, col]):.6g}, exact "
                   f"{float(ref[b, row, col]):.6g}")
    return "; ".join(out)


def check_spec(spec, cell, *, hidden=8, inputs=4, seed=0, **options):
    """check_jacobian for the function `spec` ("path/to/file.py:FN" or "module:FN"), at
    parameters drawn for `cell` with weights large enough and biases away from zero that
    every term of the Jacobian carries weight (as `gradlab verify` draws them)."""
    cell = registry.cell(cell)
    module, where, name = registry.load(spec, "function")
    fn = getattr(module, name, None)
    if not callable(fn):
        raise GradlabError(f"{where} has no function {name!r}")
    params = cell.init_params(hidden, inputs, weight_scale=1.5, bias_scale=0.5, seed=seed)
    return check_jacobian(fn, cell, params, seed=seed, **options)


__all__ = ["check_jacobian", "check_spec", "Result", "Error", "LAYOUTS"]
