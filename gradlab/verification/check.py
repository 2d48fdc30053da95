"""Checking someone else's Jacobian against the exact one, and saying what is wrong with it.

`check_jacobian(fn, cell, params)` evaluates a user's `fn(params, state, x)` (torch or
numpy; (B, S, S), or (S, S) for one sample: a function that fails on a batch, or
returns one matrix for it, is called one sample at a time, and the second is at best
inconclusive: it folds a batch into one matrix) at random states and inputs, or at the
ones given, and compares it with gradlab's lowered Jacobian. When they differ it looks for the
mistakes people make when they derive a Jacobian by hand, in the terms of the derivation:

    layout      the transpose (denominator layout: rows are inputs)
    order       the state parts in another order ((c, h) for (h, c))
    terms       a term missing, doubled, with the wrong sign or a wrong constant factor:
                each block is a sum of terms such as diag(h ⊙ z ⊙ (1 − z)) W_z, each is
                evaluated, and the combination of them that explains the difference found
                by least squares
    slope       a term whose diagonal factor is wrong row by row (an activation's slope)
    weight      a term diag(v) W with W used transposed
    biases      biases left out (exact with every bias zero)
    gate swap   two gates' parameters swapped; a gate z written as 1 - z (its parameters
                negated: the GRUs' two conventions); the batch axis last
    gates       weights read in another gate order (torch stacks i, f, g, o / r, z, n)
    step        square weights transposed in the step itself (h @ W for W h), not only in
                a term of the derivative
    batch       right one sample at a time, wrong on a batch (it does not broadcast)

and, when nothing simple explains the difference, says so and shows the worst entries.
Where the reference itself is short of digits (precision.py: float64 at saturated units,
or float32 params, whose own evaluation there loses more than rtol) it says so.
"""

import dataclasses
import inspect
import math
import numbers

import numpy as np
import torch

from .. import budget, progress, registry
from ..errors import (GradlabError, arguments_checked, check_seed, choice, derived_seed,
                      integer)
from ..flow.bound import as_real, check_params, hidden_size
from ..lowering.lower import terms_function
from .blind import alike, alike_words, unseen, unseen_words, zero_parts
from .conventions import exact_jacobian
from .diagnosis import UNEXPLAINED, diagnose, measured, relative
from .hidden import UNASKED, Asked, with_biases, with_states, with_units
from .precision import (FINER_NOTE, UNSURE_NOTE, extended_reference, float32_lost,
                        float32_loses, rounding_explains, within_rounding)
from .user import (COLLAPSED, batched_jacobian, cell_part, coarsest, float32_rounding,
                   lower_precision, right_one_by_one)
from .verify import own_activations_mismatch

LAYOUTS = ("numerator", "denominator")


class Error(float):
    """The largest relative error (a float, compared with rtol), `.absolute`, `.relative`."""

    def __new__(cls, absolute, relative):
        self = super().__new__(cls, relative)
        self.absolute, self.relative = absolute, relative
        return self

    def __reduce__(self):            # copy and pickle (float's own drops `absolute`)
        return Error, (self.absolute, self.relative)


@dataclasses.dataclass
class Result:
    """What `check_jacobian` found: ok (also `bool(result)`: it agrees), max_error (the
    largest relative error, an `Error` with .absolute), worst_block and block_errors
    ({(out part, in part): relative error}), diagnosis (sentences; print(result) shows them),
    checked (samples compared), inconclusive (it agrees, but a term of the exact Jacobian
    vanishes at every sample) and sizes (where it was checked, if said)."""
    ok: bool
    max_error: Error                 # relative; .absolute and .relative
    worst_block: tuple               # (out part, in part) of the largest relative error
    block_errors: dict               # {(out part, in part): relative error}
    diagnosis: list                  # plain sentences
    checked: int                     # samples compared
    inconclusive: bool = False       # it agrees, but these draws cannot tell (a term of
                                     # the exact Jacobian vanishes at every sample)
    sizes: str = ""                  # where it was checked, if said ("n = 8, m = 4 and ...")
    __bool__ = lambda self: bool(self.ok)    # noqa: E731 - `if check_jacobian(...)`: agrees

    def __str__(self):
        if math.isnan(self.max_error.relative):   # nan entries, or another shape
            head = f"differs: no error to measure over {self.checked} samples"
        else:
            head = ("agrees" if self.ok else "inconclusive" if self.inconclusive
                    else "differs") + (
                f": max relative error {self.max_error.relative:.3g} (absolute "
                f"{self.max_error.absolute:.3g}) over {self.checked} samples")
        head += f" at {self.sizes}" if self.sizes else ""
        return "\n".join([head, *self.diagnosis])

    def _repr_pretty_(self, p, cycle):     # IPython and notebooks show what print shows
        p.text(str(self))


def _sample(cell, params, batch, seed, states):
    """(state tuple (B, n), x (B, m)) at which to compare."""
    first = params[cell.param_names[0]]

    def tensor(t, name):
        t = t.detach() if isinstance(t, torch.Tensor) else t      # (a graph: values only)
        return as_real(t, f"states: {name}", first.dtype, first.device)

    if states is not None:
        shaped = (isinstance(states, (tuple, list)) and len(states) == 2
                  and isinstance(states[0], (tuple, list)) and len(states[0]) > 0)
        pair = shaped and np.ndim(states[0][0]) == 2    # (state parts, x), not h as a list
        if shaped and all(np.ndim(t) == 1 for t in (*states[0], states[1])):
            raise GradlabError("states: a pair (state parts, x) of 1-D arrays; each must be "
                               "(B, size), a batch of samples: add the batch dimension "
                               "(h[None], x[None] for one sample)")
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
    budget.ensure_check_fits(cell, n, m, B, job="check_jacobian",   # as `gradlab check`
                             advice="hidden size, fewer inputs or a smaller batch")  # does
    gen = torch.Generator().manual_seed(derived_seed(seed, 1))   # not the params' stream
    draw = lambda *shape: (0.8 * torch.randn(*shape, generator=gen, dtype=torch.float64,  # noqa
                                              device="cpu")
                           ).to(dtype=first.dtype, device=first.device)
    if states is None:
        state = tuple(draw(B, n) for _ in cell.state_names)
    return state, draw(B, m)


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Where each block sits in a Jacobian (rows: state parts; columns: state parts or x)."""
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


class DefaultRtol(float):
    """The default rtol, 1e-8, read as 1e-5 for float32 params (their rounding is ~1e-7)."""


DEFAULT_RTOL = DefaultRtol(1e-8)


@arguments_checked
def check_jacobian(fn, cell, params, *, wrt="state", layout="numerator", block=None, batch=4,
                   seed=0, rtol=DEFAULT_RTOL, states=None):
    """Compare `fn(params, state, x)` with gradlab's exact Jacobian of `cell` (a name or
    Cell) at `params` (its dict of tensors); a `Result` (ok only
    when it agrees at draws where every term of the exact Jacobian carries weight; else
    `inconclusive`, with the terms that vanish). Where it agrees at the params or states
    given but their all-zero biases, state parts or inputs hide a term it gets wrong (it
    differs with them drawn nonzero), it differs, at the error found there; except for a
    derivation that leaves those biases out altogether, right for a model without them,
    as zero biases given say: it agrees, with a note.
    rtol: the largest relative error that agrees (default 1e-8, 1e-5 for float32 params).

    wrt: "state" ((B, S, S)) or "input" ((B, S, m)); layout: "numerator" (rows are
    outputs, as torch.func.jacrev) or "denominator" (the transpose); block=("h", "h") (or
    "h,h", as --block reads it) when fn gives one block (an LSTM analysed on h alone);
    states: a state tuple of (B, n) tensors (x drawn at random) or a pair (state tuple,
    x), e.g. points of a trajectory; without it, `batch` random states and inputs are
    drawn (4 by default). seed: the draws' (states, inputs, and nonzero biases)."""
    if not callable(fn):
        raise GradlabError(f"fn must be a function fn(params, state, x), got "
                           f"{type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):       # (its call returns a coroutine, never run)
        raise GradlabError("fn is an async function (async def): gradlab calls it as a plain "
                           "function, fn(params, state, x), and reads what it returns")
    cell = registry.cell(cell)
    choice(wrt, ("state", "input"), "wrt")
    choice(layout, LAYOUTS, "layout")
    batch = integer(batch, "batch", 1)
    if rtol is None or rtol is DEFAULT_RTOL:
        first = params.get(cell.param_names[0]) if isinstance(params, dict) else None
        rtol = 1e-5 if getattr(first, "dtype", None) == torch.float32 else 1e-8
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 < rtol < 1:
        raise GradlabError(f"rtol must be a number in (0, 1), got {rtol!r}")
    seed = check_seed(seed)
    if not isinstance(params, dict):
        check_params(cell, params)                   # refuses it, in one line
    yours = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in params.items()}
    params = cell_part(cell, yours)                  # gradlab's side; fn gets `yours`
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
    fn_state, fn_x = state, x                        # what fn is given: the params' dtype
    given_dtype = params[cell.param_names[0]].dtype
    if given_dtype == torch.float32:
        # gradlab's side in float64 from the same values (exact in float64): its reference
        # is the exact Jacobian there, not one rounded to float32 (an rtol below ~1e-7
        # called a right answer wrong)
        params = {p: t.double() for p, t in params.items()}
        state, x = tuple(s.double() for s in state), x.double()
    n = state[0].shape[-1]
    ins = cell.state_names if wrt == "state" else (cell.input_name,)
    if block is not None:
        given = block          # named as given: --block x,y as typed, not as a tuple
        block = tuple(p.strip() for p in block.split(",")) if isinstance(block, str) else \
            tuple(block) if isinstance(block, (tuple, list)) else ()
        if len(block) == 2 and isinstance(block[0], str) and block[0].endswith("'"):
            block = (block[0][:-1], block[1])          # ("h'", "h"), as J["h'", "h"] reads
        if len(block) != 2 or block[0] not in cell.state_names or block[1] not in ins:
            if len(cell.state_names) == len(ins) == 1:
                raise GradlabError(f"block {given!r} is not a block of {cell.name}'s "
                                   f"Jacobian: it has one, ({cell.state_names[0]}, {ins[0]}), "
                                   f"the whole (leave block out)")
            raise GradlabError(f"block {given!r} is not (out part, in part): the out part one "
                               f"of {', '.join(cell.state_names)}, the in part one of "
                               f"{', '.join(ins)}; e.g. {cell.state_names[0]},{ins[-1]}")
    blocks = Blocks(cell.state_names, ins, n, n if wrt == "state" else x.shape[-1], block)
    progress.advance("check: the exact Jacobian", 1, 3)    # (a line only on long work)
    whole = exact_jacobian(cell, wrt, params, state, x)
    if (why := own_activations_mismatch(cell, wrt, params, state, x, whole)) is not None:
        raise GradlabError(why)
    exact = blocks.select(whole)
    if not bool(torch.isfinite(exact).all()):
        where = "given" if states is not None else "drawn"
        raise GradlabError(f"the exact Jacobian of cell '{cell.name}' holds "
                           f"{int((~torch.isfinite(exact)).sum())} entries that are nan or inf "
                           f"at the {where} states: its equations give no number there (a "
                           "sqrt or log of a negative value?); pass states= where the cell "
                           "is defined")
    stepped = cell.step_fn()(params, state, x)     # a finite Jacobian of a step that is not
    if not all(bool(torch.isfinite(s).all()) for s in stepped):     # (log(-exp(h)): d = 1)
        where = "given" if states is not None else "drawn"
        raise GradlabError(f"cell '{cell.name}' steps to nan or inf at the {where} states: its "
                           "equations give no number there (a sqrt or log of a negative "
                           "value?), so neither has a Jacobian; pass states= where the cell "
                           "is defined")
    rows, cols = exact.shape[1:]
    shape = (rows, cols) if layout == "numerator" else (cols, rows)
    hints = {}
    if block is None and len(blocks.keys) > 1:       # one block given for the whole
        o, i = blocks.keys[0]
        one = (n, blocks.width) if layout == "numerator" else (blocks.width, n)
        hints[one] = (f"the shape of one block: to check one, pass block=('{o}', '{i}') "
                      f"(--block {o},{i})")
    progress.advance("check: your function", 2, 3)
    theirs, one_by_one, dtype = batched_jacobian(fn, yours, fn_state, fn_x, shape, hints)
    theirs = theirs.to(exact.dtype)
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
    absolute, relative, errors = measured(theirs, exact, blocks)
    ok = relative <= rtol
    # where gradlab's float64 reference lost digits the finer one judges, an answer that
    # agrees with it too (one that rounds as it does agreed, a more accurate one did not)
    finer = extended_reference(cell, wrt, params, state, x, blocks, exact, rtol)
    if finer is not None:
        exact, lost = finer
        absolute, relative, errors = measured(theirs, exact, blocks)
        ok = relative <= rtol
        unsure = 4 * lost * np.finfo(np.longdouble).eps / np.finfo(np.float64).eps
        # within what the finer one may be off by, or what float64 itself loses here
        why = None if ok else UNSURE_NOTE.format(unsure, relative) if relative <= unsure \
            else within_rounding(torch.float64, lost, relative)
        if why:
            return Result(False, Error(absolute, relative), max(blocks.keys, key=errors.get),
                          errors, [FINER_NOTE.format(lost), why], x.shape[0],
                          inconclusive=True)
    loses = None if ok or fn_x.dtype != torch.float32 else float32_loses(
        cell, wrt, params, fn_state, fn_x, blocks, exact, relative, rtol)
    if loses:                    # float32 itself cannot tell, at these draws
        return Result(False, Error(absolute, relative), max(blocks.keys, key=errors.get),
                      errors, [loses], x.shape[0], inconclusive=True)
    batch_only = None if ok or one_by_one or x.shape[0] == 1 else right_one_by_one(
        fn, yours, fn_state, fn_x, shape, layout, exact, rtol)
    # what rounding in the answer's precision explains (for float16 or bfloat16, measured
    # from float32's evaluation of the exact formulas here: their 64 eps, up to 0.5, let a
    # term left out pass for rounding)
    explains = rounding_explains(coarsest(dtype, given_dtype), lambda: float32_lost(
        cell, wrt, params, fn_state, fn_x, blocks, exact))
    rounded = None if ok else lower_precision(dtype, params[cell.param_names[0]].dtype,
                                              relative, rtol, explains)
    progress.advance("check: the comparison and its diagnosis", 3, 3)
    terms = terms_function(cell, wrt, "torch")(params, state, x)    # evaluated once
    faint = unseen(terms, exact, blocks, rtol)
    same = [] if faint == ["n = 1"] else alike(cell, params, state, wrt, rtol)
    diagnosis = [] if ok else batch_only or rounded or diagnose(
        cell, params, state, x, theirs, exact, blocks, wrt, layout, rtol, terms,
        bool(faint or same), answer=coarsest(dtype, given_dtype), rounding=explains)
    if not (ok or batch_only or rounded or same) and all(UNEXPLAINED in d for d in diagnosis):
        # no term explains it (a small missing term would): float32 rounding may
        diagnosis = float32_rounding(theirs, exact, relative,
                                     params[cell.param_names[0]].dtype) or diagnosis
    unchecked = False
    if ok and not (faint or same):                   # the verdict is at the params given
        asked = Asked(fn, cell, params, yours, (state, x), (fn_state, fn_x), shape, layout,
                      wrt, blocks, rtol, seed, theirs)
        hidden = with_biases(asked) + with_units(asked) + with_states(asked)
        unchecked = any(e is UNASKED for _, e in hidden)
        wrong = [e for _, e in hidden if e is not None and e is not UNASKED]
        if wrong:                   # right only where the values given hide a term: wrong
            absolute, relative, errors = max(wrong, key=lambda e: e[1])
            return Result(False, Error(absolute, relative), max(blocks.keys, key=errors.get),
                          errors, [note for note, _ in hidden], x.shape[0])
        diagnosis = [note for note, _ in hidden]     # a bias-free model's, at zero biases
    doubt = bool(faint or same or unchecked) or (ok and one_by_one == COLLAPSED)
    if one_by_one == COLLAPSED:
        diagnosis = diagnosis + [COLLAPSED_NOTE.format(x.shape[0], *shape)]
    return Result(ok and not doubt, Error(absolute, relative),
                  max(blocks.keys, key=errors.get), errors,
                  ([] if finer is None else [FINER_NOTE.format(lost)]) + diagnosis
                  + (alike_words(same, ok) if same else [])
                  + (unseen_words(faint, ok, zero_parts(cell, state, x)) if faint else []),
                  x.shape[0],
                  inconclusive=ok and doubt)


COLLAPSED_NOTE = ("Given a batch of {}, your function returned one {} x {} matrix: one sample "
                  "at a time it was checked as a function written for one sample, but for "
                  "a batch it folds the samples into one matrix (a mean or sum over the "
                  "batch?) or answers one sample for all, which no check of one sample can "
                  "tell from right; return (B, rows, cols) for a batch, or check with "
                  "batch=1 (--batch 1).")
def _other_shape(theirs, exact, layout, blocks):
    """The Result for an answer shaped as the other layout's (B, cols, rows), rows != cols."""
    flipped = theirs if layout == "denominator" else theirs.transpose(1, 2)
    error = relative(flipped, exact)
    other = "numerator" if layout == "denominator" else "denominator"
    said = (f"Your Jacobian has shape {tuple(theirs.shape)}, that of {other} layout "
            f"(rows are {'outputs' if other == 'numerator' else 'inputs'}); read so, it is "
            + ("right" if error <= 1e-9 else f"still wrong (max relative error {error:.3g})")
            + f": pass layout={other!r} (--layout {other}), or transpose it.")
    # no error to give: the answer is not the Jacobian's shape (read as the other
    # layout's, `error` is in the sentence)
    return Result(False, Error(math.nan, math.nan), blocks.keys[0],
                  {k: math.nan for k in blocks.keys}, [said], theirs.shape[0])


__all__ = ["check_jacobian", "Result", "Error", "LAYOUTS"]
