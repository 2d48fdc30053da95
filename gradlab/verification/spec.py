"""`gradlab check FILE.py:FN`: a function named on the command line, checked at draws
chosen so that the common ways to be right at one draw only are found.

One draw can be fooled by what does not depend on the numbers: a size written into the
function (torch.eye(8)), units or sequences taken in fixed chunks (a power of two, a
chunk of 8, 16 or 32 read where the next begins), or answers kept from an earlier call (a
cache keyed by shape, by the weights or by the states), or answers that change from call
to call. So the function is checked at the sizes given, at a second pair of sizes past
the usual chunk widths (`second_size`), at the first sizes and weights with states and
inputs drawn wider (a term wrong only at large states; an answer kept for the weights),
at the first states and inputs with other weights (an answer kept for the states), and
is asked the first question once more (its answer must not change).
"""

import dataclasses
import inspect

import torch

from .. import registry
from ..errors import GradlabError, derived_seed
from .check import check_jacobian
from .user import Exited

CHUNKS = 32      # the second size crosses chunks of 8, 16 and 32 units and sequences
WIDE = 3.0       # the third draw's states and inputs: N(0, 3^2), the others' N(0, 0.8^2)


def check_spec(spec, cell, *, hidden=8, inputs=4, seed=0, weight_scale=1.5, bias_scale=0.5,
               **options):
    """check_jacobian for the function `spec` ("path/to/file.py:FN" or "module:FN"), at
    parameters drawn for `cell` with weights large enough and biases away from zero that
    every term of the Jacobian carries weight (as `gradlab verify` draws them), unless
    other scales are given (bias_scale=0 for a derivation without biases); at the sizes
    given and, where it agrees there, at a second pair (`second_size`), at the first
    sizes and weights with states and inputs WIDE times as wide (a function that keeps
    answers from an earlier call agrees only at the draw it kept; one wrong only at
    |h| > 3 agreed at every narrow draw), at the first states and inputs with other
    weights (an answer kept for the states), and at the first draw once more (an answer
    that changes from call to call: random, or counting its calls)."""
    cell = registry.cell(cell)
    module, where, name = registry.load(spec, "function")
    if not hasattr(module, name):
        there = [k for k, v in vars(module).items()       # its own, not those it imports
                 if inspect.isfunction(v) and v.__module__ == module.__name__
                 and not k.startswith("_")]
        raise GradlabError(f"{where} has no function {name!r}; functions there: "
                           f"{', '.join(there) or 'none'}")
    fn = getattr(module, name)
    if not callable(fn):
        raise GradlabError(f"{where}: {name!r} is not a function (its type: "
                           f"{type(fn).__name__})")

    def at(n, m, batch, draw=seed, spread=None, weights=None):
        """The check at sizes n, m, batch: states and inputs drawn from `draw` (at `spread`
        if given), weights from `weights` (else `draw` too)."""
        params = cell.init_params(n, m, weight_scale=weight_scale, bias_scale=bias_scale,
                                  seed=draw if weights is None else weights)
        states = None
        if spread is not None:           # one stream for all: each part, and x, its own
            gen = torch.Generator().manual_seed(derived_seed(draw, 2))
            states = (tuple(spread * torch.randn(batch, n, generator=gen,
                                                 dtype=torch.float64)
                            for _ in cell.state_names),
                      spread * torch.randn(batch, m, generator=gen, dtype=torch.float64))
        return check_jacobian(fn, cell, params, seed=draw, states=states,
                              **{**options, "batch": batch})

    batch = options.pop("batch", 4)
    first = at(hidden, inputs, batch)
    if not first.ok:
        return dataclasses.replace(first, sizes=f"n = {hidden}, m = {inputs}")
    n, m = second_size(hidden, inputs)
    # past chunks of sequences; one sample stays one (a function written for a sample)
    b = max(batch + 3, CHUNKS + 1) if n > hidden and batch > 1 else batch
    try:
        again = at(n, m, b)
    except Exited:
        raise
    except GradlabError as err:        # torch.eye(8) in it: it fails only at other sizes
        raise GradlabError(f"it agrees at n = {hidden}, m = {inputs}, but at a second size, "
                           f"n = {n}, m = {m}, B = {b}: {err} (a size written into it?)") \
            from None
    sizes = f"n = {hidden}, m = {inputs}, B = {batch} and n = {n}, m = {m}, B = {b}"
    if not again.ok:
        return dataclasses.replace(again, sizes=f"n = {n}, m = {m}, B = {b}", diagnosis=[
            f"It agrees at n = {hidden}, m = {inputs}, B = {batch}, but not at these sizes: "
            "a size written into your function (torch.eye(8), a reshape, units or "
            "sequences taken in fixed chunks)?"] * (
                not again.inconclusive) + again.diagnosis)   # (inconclusive: draws can't tell)
    other = at(hidden, inputs, batch, draw=derived_seed(seed, 3), spread=WIDE, weights=seed)
    if not other.ok:
        return dataclasses.replace(other, sizes=f"n = {hidden}, m = {inputs}, B = {batch}, "
                                   "the first weights, wider states and inputs", diagnosis=[
            f"It agrees at {sizes}, but not at the first sizes and weights with states and "
            f"inputs drawn {WIDE:g}x as wide: does your function keep an answer from an "
            "earlier call (a cache keyed by shape or by the weights), or go wrong at large "
            "states or inputs (|h| > 3)?"] * (not other.inconclusive) + other.diagnosis)
    repeat = at(hidden, inputs, batch)
    if not repeat.ok:
        return dataclasses.replace(repeat, sizes=f"n = {hidden}, m = {inputs}, B = {batch}, "
                                   "asked again", diagnosis=[
            f"It agrees at {sizes} and at other draws, but asked the first question again it "
            "answered otherwise: does your function draw random numbers, or change with "
            "the number of times it is called?"] * (not repeat.inconclusive)
            + repeat.diagnosis)
    swapped = at(hidden, inputs, batch, weights=derived_seed(seed, 4))
    if not swapped.ok:
        return dataclasses.replace(swapped, sizes=f"n = {hidden}, m = {inputs}, B = {batch}, "
                                   "the first states and inputs, other weights", diagnosis=[
            f"It agrees at {sizes}, but not at the first states and inputs with other "
            "weights: does your function keep an answer from an earlier call (a cache keyed "
            "by the states or inputs)?"] * (not swapped.inconclusive) + swapped.diagnosis)
    worst = max((first, again, other, swapped), key=lambda r: r.max_error.relative)
    said = {d.split(",")[0] for d in first.diagnosis}      # a note of one kind once
    notes = list(first.diagnosis)
    for result in (again, other, swapped):
        notes += [d for d in result.diagnosis if d.split(",")[0] not in said]
        said |= {d.split(",")[0] for d in result.diagnosis}
    return dataclasses.replace(worst, checked=first.checked + again.checked + other.checked
                               + swapped.checked + repeat.checked,
                               sizes=sizes + " (and at the first sizes with other draws, "
                               "and asked again)",
                               diagnosis=notes)


def second_size(hidden, inputs):
    """The second (n, m) `gradlab check` draws at: up to n = 64, 3 more units and at least
    33 (a function wrong past the first size, or on units in chunks of 8, 16 or 32, is
    found; `check_spec` takes at least 33 sequences too, unless given one), 3 fewer above (it
    fits where the first does, with as many sequences); one more input (two where one
    more would make m = n, at which a transposed U keeps its shape)."""
    n = max(hidden + 3, CHUNKS + 1) if hidden <= 64 else hidden - 3
    return n, inputs + (2 if inputs + 1 == n else 1)


__all__ = ["check_spec", "second_size"]
