"""A cell's lowered step and Jacobians bound to one params dict, checked once; the forward run.

Everything is checked here, once per `gradient_flow` / `lyapunov` / `run_states` call
(`setup`, `arguments.prepare`); the lowered functions are then called step after step with
no check at all.
"""

import functools
import threading
import weakref
from collections.abc import Mapping

import numpy as np
import torch

from .. import progress
from ..budget import ensure_walk_fits
from ..errors import GradlabError, flag
from ..initialize import as_dtype
from ..lowering import arguments, hoist, lower
from ..lowering.backends import transformed
from ..registry import cell as lookup
from . import graphs
from .arrays import TRACED, as_inputs, as_real, converted, depth
from .workspace import Workspace

VIEW_CHUNK = 4096       # steps whose per-step views the forward run holds at once


@functools.lru_cache(maxsize=None)
def kinds(cell):
    """Each state-Jacobian block's structure (zero / diagonal / dense), read from SymPy."""
    from ..symbolic.structure import kind
    return tuple(tuple(kind(b, coupled=False) for b in row)
                 for row in cell.jacobian_blocks("state"))


@functools.lru_cache(maxsize=None)
def dims(cell):
    """{param: (its first dimension is n, its second is m)}, read from the declared shapes
    once per cell (printing SymPy sizes on every call cost ~0.3 ms a call at small n)."""
    return {p: (str(s[0]) == "n", str(s[1]) == "m") for p, s in cell.param_shapes.items()}


def assemble(rows, j, out):
    """Compact blocks [a][b] at step j (see `Bound.blocks`) as one dense (B, S, S) `out`."""
    n = out.shape[-1] // len(rows)
    for a, row in enumerate(rows):
        for b, block in enumerate(row):
            target = out[:, a * n:(a + 1) * n, b * n:(b + 1) * n]
            if block is not None and block.shape[-1] == n:
                target.copy_(block[j])
            else:
                target.zero_()
                if block is not None:
                    target.diagonal(dim1=-2, dim2=-1).copy_(block[j][..., 0])
    return out


def exclusive(fn):
    """fn(bound, ...), a walk over a Bound's steps, alone on that Bound in its thread. A
    walk holds what the lowered Jacobians returned (valid until their next call, `Bound`)
    across the progress listener's calls; a listener that asked the same Flow for another
    number mid-walk ran a second walk, which overwrote them: the first then returned
    wrong norms, and kept them. That is refused; other threads have workspaces of their
    own, and a torch module's steps (ModuleBound: fresh arrays from jacrev) none."""
    @functools.wraps(fn)
    def alone(bound, *args, **kwargs):
        if not isinstance(bound, Bound):
            return fn(bound, *args, **kwargs)
        me, walking = threading.get_ident(), _WALKING.setdefault(bound, set())
        if me in walking:
            raise GradlabError("a walk over this Flow's steps is running in this thread "
                               "already (a progress listener asked it for more mid-walk): "
                               "ask once the walk returns, or name every norm wanted in "
                               "gradient_flow(norms=...)")
        walking.add(me)
        try:
            return fn(bound, *args, **kwargs)
        finally:
            walking.discard(me)
    return alone


_WALKING = weakref.WeakKeyDictionary()     # Bound -> the threads walking it now (kept out
                                           # of the Bound: a copy or pickle starts idle)


class Bound:
    """A cell's lowered step and Jacobians bound to one params dict and batch size.

    Each lowered function writes the results of its in-place sums (`xp.scaled_sum`, the
    dense blocks of most gated cells) into a workspace of its own, owned by this object
    and kept per thread: what `blocks` or `jacobian(wrt)` returns is valid until the next
    call of the same one in the same thread, and no longer."""

    def __init__(self, cell, params, state0, x0):
        n, m, B, args = arguments.prepare(cell, params, state0, x0)
        self.cell, self.n, self.m, self.B = cell, n, m, B
        self.parts = len(cell.state_names)
        self.S = n * self.parts
        # copies: the walk runs when a norm is first read, and an in-place change of the
        # caller's params before then (an optimizer step) must not meet the states
        # computed from the old ones
        self.pargs = tuple(a.clone() if isinstance(a, torch.Tensor) else a
                           for a in args[:len(cell.param_names)])
        self.functions = {}                  # what -> lowered function

    def __getstate__(self):              # a pickle holds no code: it is lowered again
        return {**self.__dict__, "functions": {}}

    def lowered(self, what):
        """The lowered `what` (see `lower.source`) bound to the torch backend, its in-place
        sums written into a workspace of its own, reset at each call."""
        if what not in self.functions:
            workspace = Workspace()
            fn = lower.bind(self.cell, what, "torch", empty=workspace.empty)

            def call(*args):
                workspace.reset()
                return fn(*args)

            self.functions[what] = call
        return self.functions[what]

    def _call(self, what, state, x):
        return self.lowered(what)(self.n, self.m, x, *self.pargs,
                                  *(s.unsqueeze(-1) for s in state), x.unsqueeze(-1))

    def inputs(self, xs):
        """The state-free part of every step (`hoist`), for xs (T, B, m) at once: a list
        of (T, B, r, 1) tensors, the hoisted step's per-step arguments (those its loop
        reads as they are, then each stack's pres, `hoist.Stack`). The stacked pres are
        formed from the separate ones, so for a moment both are held."""
        T, B, m = xs.shape
        rows = self.lowered("step_inputs")(self.n, self.m, xs, *self.pargs,
                                           xs.reshape(T * B, m, 1))
        plan = hoist.plan(self.cell)
        carried = {s: torch.broadcast_to(r, (T * B, *r.shape[-2:])).reshape(T, B, *r.shape[-2:])
                   for s, (r,) in zip(plan.carried, rows)}
        return [carried[s] for s in plan.loop] + [
            torch.cat([carried[pre] for _, pre, _ in st.members], dim=-2) for st in plan.stacks]

    @functools.cached_property
    def weights(self):
        """Each stack's weight [W_1; W_2; ...] (`hoist.Stack`), formed once: the hoisted
        step's last arguments."""
        index = {p: k for k, p in enumerate(self.cell.param_symbols)}
        return tuple(torch.cat([self.pargs[index[W]] for W, _, _ in st.members])
                     for st in hoist.plan(self.cell).stacks)

    def run(self, states, xs):
        """Fill states[part][1..T] ((T+1, B, n) each, [0] given) by the hoisted step: on a
        GPU in recorded chunks (`graphs`), else step by step. Every per-step view is made
        once per chunk of VIEW_CHUNK steps, before its loop: on the CPU at small sizes a
        step is a few dozen tiny kernels, and each view or select costs as much as one; a
        view costs ~0.5 KB too, so not all T at once."""
        T = xs.shape[0]
        inputs = self.inputs(xs)                                    # (T, B, r, 1) each
        if graphs.wanted(xs.device, T):
            return self.run_recorded(states, inputs, T)
        for t0 in range(0, T, VIEW_CHUNK):
            t1 = min(t0 + VIEW_CHUNK, T)
            pre = [p[t0:t1].unbind(0) for p in inputs]              # per step (B, r, 1)
            cols = [s[t0:t1 + 1].unsqueeze(-1).unbind(0) for s in states]   # (B, n, 1)
            self.steps(cols, pre, t1 - t0, t0, T)

    def steps(self, cols, pre, count, t0=0, T=None):
        """`count` steps: cols[part][i + 1] <- the step from cols[..][i] and pre[..][i]."""
        step, head = self.lowered("step_hoisted"), (self.n, self.m, cols[0][0], *self.pargs)
        for i in range(count):
            rows = step(*head, *(c[i] for c in cols), *(p[i] for p in pre), *self.weights)
            for c, (row,) in zip(cols, rows):
                c[i + 1].copy_(row)
            if T is not None and progress.due(t0 + i, T):
                progress.advance("forward run", t0 + i + 1, T)

    def run_recorded(self, states, inputs, T):
        """`run` in chunks of K steps on static arrays, the steps of a chunk recorded once
        as a CUDA graph and replayed for the next (`graphs`); the last T mod K eagerly."""
        K = graphs.chunk_steps(T)
        cols = [s.new_empty(K + 1, *s.shape[1:]) for s in states]   # static (K+1, B, n)
        pre = [p.new_empty(K, *p.shape[1:]) for p in inputs]       # static (K, B, r, 1)
        views = ([c.unsqueeze(-1).unbind(0) for c in cols], [p.unbind(0) for p in pre])
        run = None
        for t0 in range(0, T - T % K, K):
            for c, s in zip(cols, states):
                c[0].copy_(s[t0])
            for p, q in zip(pre, inputs):
                p.copy_(q[t0:t0 + K])
            if run is None:
                run = graphs.record(lambda: self.steps(*views, K), states[0].device)
            else:
                run()
            for c, s in zip(cols, states):
                s[t0 + 1:t0 + K + 1].copy_(c[1:])
            if progress.due(t0 + K - 1, T):
                progress.advance("forward run", t0 + K, T)
        t0 = T - T % K                                             # the rest, eagerly
        pre = [p[t0:].unbind(0) for p in inputs]
        self.steps([s[t0:].unsqueeze(-1).unbind(0) for s in states], pre, T - t0, t0, T)

    def states(self, xs, state0):
        """States s_0..s_T along xs (T, B, m) from state0: one (T+1, B, n) tensor per part."""
        T = xs.shape[0]
        states = tuple(torch.empty((T + 1, *s.shape), dtype=s.dtype, device=s.device)
                       for s in state0)
        with torch.no_grad():              # (a state0 that requires grad: the states do
            for buf, s in zip(states, state0):    # not, as nothing here is differentiable)
                buf[0].copy_(s)
            self.run(states, xs)
        return states

    def blocks(self, state, x, steps):
        """The blocks of d s' / d s for `steps` steps batched together (state, x hold
        steps * B rows), compacted by structure: None for a zero block, (steps, B, n, 1)
        for a diagonal one (its diagonal), (steps, B, n, n) for a dense one (a block that
        does not vary along a batch axis is a broadcast view)."""
        n, B = self.n, x.shape[0] // steps

        def shaped(b):
            if b is None:
                return None
            w = b.shape[-1]
            if b.ndim == 3 and b.shape[0] == steps * B:
                return b.view(steps, B, n, w)
            return torch.broadcast_to(b, (steps, B, n, w))

        return [[shaped(b) for b in row]
                for row in self._call("jacobian_state_blocks", state, x)]

    def jacobian(self, wrt, state, x, out=None):
        """d s' / d s (N, S, S) or d s' / d x (N, S, m) for N = len(x) rows: the block
        itself (`out` unused) for a one-part cell whose block is dense (state) or for any
        one-part cell (input), else the blocks written into `out`."""
        n, N = self.n, x.shape[0]
        if wrt == "state":
            rows = self.blocks(state, x, 1)
            if kinds(self.cell) == (("dense",),):
                return rows[0][0][0]
            return assemble(rows, 0, out)
        rows = self._call("jacobian_input", state, x)
        if len(rows) == 1:
            return torch.broadcast_to(rows[0][0], (N, n, self.m))
        for i, row in enumerate(rows):
            out[:, i * n:(i + 1) * n].copy_(row[0])
        return out


def check_params(cell, params):
    """(dtype, device) of a params dict for `cell`, refusing anything else with a message."""
    if not isinstance(params, Mapping) or not params:
        got = "an empty dict" if isinstance(params, Mapping) else type(params).__name__
        if isinstance(params, torch.nn.ParameterDict):
            got += " (dict(params) makes a dict of its tensors)"
        raise GradlabError(f"params must be a dict of tensors for cell '{cell.name}' "
                           f"({', '.join(cell.param_names)}), got {got}")
    tensors = [params[p] for p in cell.param_names if p in params]
    if not tensors:                  # none of the names: another cell's params, say
        raise GradlabError(f"params hold none of the parameters of cell '{cell.name}' ("
                           f"{', '.join(cell.param_names)}); got "
                           f"{', '.join(map(str, list(params)[:6]))}"
                           + (", ..." if len(params) > 6 else ""))
    odd = next((p for p in cell.param_names if p in params
                and not isinstance(params[p], torch.Tensor)), None)
    if odd is not None:
        raise GradlabError(f"param '{odd}' of cell '{cell.name}' is a "
                           f"{type(params[odd]).__name__}, not a torch tensor (torch."
                           "as_tensor makes one)")
    for p in cell.param_names:       # before any op on them: torch's own error otherwise
        t = params.get(p)
        kind = None if t is None else "nested" if t.is_nested else "quantized" \
            if t.is_quantized else str(t.layout).removeprefix("torch.")
        if kind not in (None, "strided"):
            raise GradlabError(f"param '{p}' of cell '{cell.name}' is a {kind} tensor; give "
                               "a dense one" + {"nested": " (one array of the n entries)",
                                                "quantized": " (.dequantize())"}.get(
                                                    kind, " (.to_dense())"))
    arguments.require_params(cell, params)
    traced = next((p for p in cell.param_names if transformed(params[p])), None)
    if traced is not None:
        raise GradlabError(TRACED.format(f"param '{traced}'"))
    dtype, device = tensors[0].dtype, tensors[0].device
    if any(t.dtype != dtype or t.device != device for t in tensors):
        raise GradlabError("params mix dtypes or devices: "
                           + ", ".join(f"{p}: {params[p].dtype} on {params[p].device}"
                                       for p in cell.param_names if p in params))
    try:
        as_dtype(dtype)
    except GradlabError as err:          # which argument: the params (xs is cast to them)
        raise GradlabError(f"params of cell '{cell.name}': {err}") from None
    if device.type == "meta":
        raise GradlabError("params are on the meta device, which holds no numbers; move "
                           "them to cpu or cuda")
    _same_width(cell, params)
    return dtype, device


def _same_width(cell, params):
    """Every (n, m) param reads the same m: where they disagree, the odd one out is named
    (not x, which the caller may never have passed, nor a param that is right)."""
    widths = {p: params[p].shape[1] for p in cell.param_names
              if dims(cell)[p][1] and params[p].dim() == 2}
    counts = {}
    for m in widths.values():
        counts[m] = counts.get(m, 0) + 1
    if len(counts) < 2:
        return
    common = max(counts, key=lambda m: (counts[m], -list(widths.values()).index(m)))
    odd = next(p for p, m in widths.items() if m != common)
    rest = [p for p, m in widths.items() if m == common]
    raise GradlabError(f"param '{odd}' of cell '{cell.name}' has shape "
                       f"{tuple(params[odd].shape)}, for {widths[odd]} inputs a step, but "
                       f"{', '.join(rest)} {'have' if len(rest) > 1 else 'has'} {common}: "
                       "every input weight reads the same x")


def hidden_size(cell, params, state0=None):
    """n, the state size, as the first dimension most of the parameters declared (n, .)
    agree on: a single mis-shaped one (or a scalar) is then named by the shape check
    against the others, not taken as the truth. A cell whose parameters are all scalars
    reads n from state0, where given."""
    votes = [params[p].shape[0] for p in cell.param_names
             if dims(cell)[p][0] and params[p].dim() >= 1]
    first = state0[0] if isinstance(state0, (tuple, list)) and state0 else state0
    if not votes and len(np.shape(first)) == 2 and not any(dims(cell)[p][0]
                                                          for p in cell.param_names):
        return int(np.shape(first)[1])
    if not any(dims(cell)[p][0] for p in cell.param_names):
        raise GradlabError(f"no parameter of cell '{cell.name}' has the state size n: pass "
                           "state0= (a (B, n) tensor per state part) to give it")
    if not votes:
        raise GradlabError(f"params for cell '{cell.name}' give no state size: "
                           + ", ".join(f"{p} has shape {tuple(params[p].shape)}, expected "
                                       f"{cell.param_shapes[p]}" for p in cell.param_names))
    n = max(set(votes), key=lambda v: (votes.count(v), -votes.index(v)))
    if n == 0:
        raise GradlabError(f"params for cell '{cell.name}' give a state of size 0 ("
                           + ", ".join(f"{p} has shape {tuple(params[p].shape)}"
                                       for p in cell.param_names[:3])
                           + "); the hidden size n must be at least 1")
    return n


def setup(cell, params, xs, state0=None, reverse=False, call="run_states"):
    """(cell, bound, xs (T, B, m), state0 tuple), everything on the params' dtype/device,
    every shape checked: the one check of a gradient_flow / lyapunov / run_states call
    (`call`, named where the memory it needs is refused, before xs is copied; only
    gradient_flow and lyapunov build (B, S, S) Jacobians)."""
    cell = lookup(cell)
    dtype, device = check_params(cell, params)
    bad = [p for p in cell.param_names if params[p].layout == torch.strided and  # (others:
           params[p].is_floating_point() and bool(torch.isnan(params[p]).any())]  # below)
    if bad:     # (nan states were reported as an overflow; an inf bias may pin a gate)
        raise GradlabError(f"param{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))} "
                           f"of cell '{cell.name}' hold{'' if len(bad) > 1 else 's'} nan: "
                           "there is no trajectory or Jacobian to measure")
    # a copy (flip makes one too): the walk reads xs when a norm is first read, and the
    # caller's in-place changes (to a tensor, or a numpy array torch shares) must miss it
    xs = as_inputs(xs)                                   # (not copied yet)
    T, B, m = xs.shape
    n = hidden_size(cell, params, state0)
    ensure_walk_fits(call, T, B, m, n * len(cell.state_names), dtype, device,
                     products=call in ("gradient_flow", "lyapunov"),
                     rows=n * sum(1 for p in cell.param_names if dims(cell)[p][1]))
    xs = converted(xs, "xs", dtype, device)
    xs = xs.flip(0) if flag(reverse, "reverse") else xs.clone()
    for p in cell.param_names:           # the inputs' width, named as xs's (not as a param's)
        if dims(cell)[p][1] and params[p].dim() == 2 \
                and params[p].shape[1] != m:
            raise GradlabError(f"xs has shape {tuple(xs.shape)}: {m} inputs a step, but "
                               f"param '{p}' of cell '{cell.name}' has shape "
                               f"{tuple(params[p].shape)}, for {params[p].shape[1]}")
    if state0 is None:
        state0 = tuple(torch.zeros(B, n, dtype=dtype, device=device) for _ in cell.state_names)
    else:
        rows = isinstance(state0, list) and depth(state0) == 2   # [[...], ...]: one
        one = rows or not isinstance(state0, (tuple, list))         # (B, n) part, not B
        state0 = (state0,) if one else tuple(state0)
        if one and len(cell.state_names) > 1:      # (an LSTM's h alone: not "got 1")
            raise GradlabError(f"state0: cell '{cell.name}' takes a tuple of its state parts "
                               f"({', '.join(cell.state_names)}), (B, n) each; got one part")
        state0 = tuple(as_real(s, f"state0[{i}]", dtype, device)
                       for i, s in enumerate(state0))
        bad = next((i for i, s in enumerate(state0) if s.is_floating_point()
                    and not bool(torch.isfinite(s).all())), None)
        if bad is not None:      # (reported as an overflow of the run, which it was not)
            raise GradlabError(f"state0[{bad}] holds nan or inf: there is no trajectory "
                               "to measure from it")
    return cell, Bound(cell, params, state0, xs[0]), xs, state0


def run_states(cell, params, xs, state0=None, *, reverse=False):
    """Run `cell` forward over xs (T, B, m) from state0 (zeros by default; a (B, n) tensor
    per state part): the states s_0..s_T, one (T+1, B, n) tensor per part, in the params'
    dtype and on their device, without autograd. Shapes are checked once, then the lowered
    step (its state-free part hoisted out of the loop) runs T times unchecked. The forward
    run every gradient-flow measurement starts from; `reverse` runs xs backwards."""
    cell, bound, xs, state0 = setup(cell, params, xs, state0, reverse)
    return bound.states(xs, state0)
