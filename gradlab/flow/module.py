"""The fallback for a torch module gradlab cannot declare: Jacobians by torch.func.jacrev.

The protocol: `module(x, state)` is one recurrent step, x (B, m) and state a (B, ...)
tensor or a tuple of them, returning the new state in the same structure and shapes.
The initial state is `state0=` (that structure), else `module.state0`: a tensor or tuple
of one sequence's state (no batch axis; expanded over the batch) or a callable taking B
and returning the batched state. The state is analysed flattened, one vector of
S = sum of the parts' sizes per sequence (`Flow.parts == ("state",)`).

torch's own recurrent modules (nn.RNN, nn.LSTM, nn.GRU and their cells, proj_size and
bidirectional stacks included) are not run through this protocol: `gradient_flow` maps
them all by `from_torch` to their symbolic cells. `TorchStep(module)` wraps one as a
protocol step, so `gradient_flow(TorchStep(module), xs)` measures the same module by
jacrev of torch's own kernels: an independent cross-check of the symbolic flow (its state
is torch's, h of size proj_size unpadded; the norms agree to rounding).

`ModuleBound` stands where the symbolic `Bound` stands in the flow engine (the same walk,
loss walk and Benettin iteration read it): its Jacobians come from
vmap(jacrev(step)) over the batch, or one jacrev per sequence where vmap cannot run the
module (torch's fused RNN kernels). `Flow.symbolic` is False for it.
"""

import copy

import numpy as np
import sympy as sp
import torch

from ..batching import fallback_quiet
from ..budget import ensure_walk_fits
from ..errors import GradlabError, flag
from ..torch_guards import refuse_nonfinite, refuse_quantized, refuse_updating, unwrap
from ..torch_state import kept
from .arrays import converted
from .bound import as_inputs, setup
from .initial import module_state0, structure
from .torch_step import TorchStep  # noqa: F401 (gradlab.flow.module.TorchStep, as before)


class ModuleCell:
    """What the flow engine reads of a cell, for a module: a name and one dense part."""

    symbolic = False

    def __init__(self, name, S):
        self.name, self.S = name, S
        self.state_names, self.input_name = ("state",), "x"

    def __repr__(self):
        return f"<{self.name}: one dense state of size {self.S}, Jacobians by jacrev>"

    def jacobian_blocks(self, wrt="state"):
        return [[sp.MatrixSymbol("J", self.S, self.S)]]


class ModuleBound:
    """A module's step and its jacrev Jacobians, in the flattened state (see the module
    docstring); the interface of `bound.Bound` that the walks read."""

    symbolic = False

    def __init__(self, module, state0, m):
        self.module, self.m = module, m
        self.tuple = isinstance(state0, (tuple, list))
        parts = structure(state0)
        self.shapes = [tuple(p.shape[1:]) for p in parts]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.B, self.S = parts[0].shape[0], sum(self.sizes)
        self.n, self.parts = self.S, 1
        self.cell = ModuleCell(f"{type(module).__name__} (jacrev)", self.S)
        self.vmap = True

    def flatten(self, state):
        return torch.cat([p.reshape(p.shape[0], -1) for p in structure(state)], -1)

    def unflatten(self, flat):
        parts = [c.reshape(flat.shape[0], *s)
                 for c, s in zip(flat.split(self.sizes, -1), self.shapes)]
        return tuple(parts) if self.tuple else parts[0]

    def step(self, flat, x):
        new = self.module(x, self.unflatten(flat))
        got = [tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
               for p in structure(new)]                          # None: 'NoneType'
        if isinstance(new, (tuple, list)) != self.tuple or \
                got != [(flat.shape[0], *s) for s in self.shapes]:
            got = got if isinstance(new, (tuple, list, torch.Tensor)) else type(new).__name__
            raise GradlabError(f"{type(self.module).__name__}(x, state) returned {got}; the "
                               f"protocol wants the new state shaped as state0: "
                               f"{[(flat.shape[0], *s) for s in self.shapes]}")
        if not all(p.is_floating_point() for p in structure(new)):
            raise GradlabError(f"{type(self.module).__name__}(x, state) returned "
                               f"{[p.dtype for p in structure(new)]}: a state is real numbers")
        return self.flatten(new)

    def states(self, xs, state0):
        """(T+1, B, S): the flattened states s_0..s_T, one tuple entry (one part). Here,
        in `blocks` and in `jacobian`, torch's process-wide settings are `kept`: a module
        whose forward sets a default dtype or device (or draws from torch's generator)
        leaves the caller's session as it was."""
        with kept():
            return self._states(xs, state0)

    def _states(self, xs, state0):
        T = xs.shape[0]
        out = torch.empty(T + 1, self.B, self.S, dtype=xs.dtype, device=xs.device)
        out[0] = self.flatten(state0)
        with torch.no_grad():
            for t in range(T):
                try:
                    before = out[t].clone()             # the module gets views of out[t]
                    out[t + 1] = self.step(out[t], xs[t])
                    if not torch.equal(out[t], before) and not out[t].isnan().any():
                        raise GradlabError(f"{type(self.module).__name__}(x, state) changes "
                                           "the state it is given in place (h.mul_(...)?); "
                                           "make it return a new state, h = h * ...")
                except GradlabError:
                    raise
                except Exception as err:     # the module's own failure, one line
                    raise GradlabError(f"{type(self.module).__name__}(x, state) failed at "
                                       f"step {t + 1}: {type(err).__name__}: "
                                       f"{' '.join(str(err).split())}") from None
        if T:
            self.probe(out[0, :1], xs[0, :1])
            # at the first step and the last: a zero state0 hides noise (or a call
            # counter) that multiplies the state, which the last state shows
            for t in sorted({0, T - 1}):
                self.consistent(out[t], xs[t], out[t + 1])
        return (out,)

    def consistent(self, s0, x0, s1):
        """Refuse a step whose new state is not a function of its own sequence's (x, state):
        one that draws noise (torch.randn in forward: the states would come from one draw,
        the Jacobians from others) or mixes the batch (a mean over it: each sequence's
        Jacobian, taken on its own, would miss it). s1 = step(s0, x0) as the walk took it
        (`states` asks at the first step and at the last)."""
        with torch.no_grad():
            again = self.step(s0, x0)
            alone = self.step(s0[:1], x0[:1]) if s0.shape[0] > 1 else s1[:1]
        eps = torch.finfo(s1.dtype).eps
        tol = 1e3 * eps * (1 + float(s1.abs().max()))       # batched BLAS rounds otherwise
        name = f"{type(self.module).__name__}(x, state)"
        if float((again - s1).abs().max()) > tol:
            raise GradlabError(f"{name} gave two different new states for one (x, state): "
                               "it draws noise (torch.randn, dropout in forward?) or counts "
                               "its calls, so its Jacobians are not those of the states "
                               "measured; make it deterministic (module.eval(), no noise)")
        if float((alone - s1[:1]).abs().max()) > tol:
            raise GradlabError(f"{name} mixes the sequences of a batch (sequence 0's new "
                               "state changes with the others: a mean or norm over the "
                               "batch?); gradlab takes each sequence's Jacobian on its own, "
                               "so its step must treat each sequence on its own")

    def probe(self, s, x):
        """Refuse a step that autodiff sees as independent of the state while it is not
        (a step under torch.no_grad(), a .detach() or .item() of the state): its
        Jacobians would come back as zeros, a "product zero". The new state at
        the first step has no autograd path to the old one at all (a path whose gradient
        is zero, relu at its kink or floor, is the step's own derivative); where it has
        none, a central difference says whether the step moves with the state after all.
        (Run outside inference mode, which a caller's would otherwise turn off autograd.)"""
        gen = torch.Generator().manual_seed(0)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                s1 = s.detach().clone().requires_grad_(True)
                new = self.step(s1, x.clone())
                grad = torch.autograd.grad(new.sum(), s1, allow_unused=True)[0] \
                    if new.requires_grad else None
        except GradlabError:
            raise
        except Exception:                    # (weights made in inference mode, ...): jacrev
            return                           # names what autodiff cannot do, in one line
        if grad is not None:
            return
        u = torch.randn(s.shape, generator=gen, dtype=torch.float64, device="cpu").to(s)
        eps = torch.finfo(s.dtype).eps
        h = eps ** 0.5 * (1 + float(s.abs().max()))
        with torch.no_grad():
            moved = (self.step(s + h * u, x) - self.step(s - h * u, x)).abs().max()
        if float(moved) > 1e3 * eps * (1 + float(new.detach().abs().max())):
            raise GradlabError(
                f"{type(self.module).__name__}(x, state) moves with the state, but autodiff "
                "sees no dependence on it (a step under torch.no_grad(), or a .detach(), "
                ".item() or .numpy() of the state): its Jacobians would all be zero")

    def _jacrev(self, argnum, s, x):
        """(N, S, S) or (N, S, m): per-sample jacrev, by vmap where the module allows it."""
        from torch.func import jacrev, vmap

        def one(s1, x1):
            return self.step(s1[None], x1[None])[0]

        with torch.inference_mode(False), torch.enable_grad():   # (a caller's: in torch
            if self.vmap:                                          # 2.4 every J was zero)
                try:
                    with fallback_quiet():     # (CUDA nn.LSTMCell: no batching rule)
                        return vmap(jacrev(one, argnums=argnum))(s, x)
                except GradlabError:
                    raise
                except Exception:       # fused kernels, data-dependent control flow, ...
                    self.vmap = False
            try:
                return torch.stack([jacrev(one, argnums=argnum)(a, b) for a, b in zip(s, x)])
            except GradlabError:
                raise
            except Exception as err:    # a step torch.func cannot differentiate, one line
                raise GradlabError(
                    f"torch.func.jacrev of {type(self.module).__name__}(x, state) failed: "
                    f"{type(err).__name__}: {' '.join(str(err).split())}; gradlab takes a "
                    "module's Jacobians by autodiff, so its step must be differentiable "
                    "torch code (no .numpy(), .item() or in-place writes to its inputs)"
                ) from None

    def blocks(self, state, x, steps):
        with kept():
            J = self._jacrev(0, state[0], x)
        return [[J.detach().view(steps, x.shape[0] // steps, self.S, self.S)]]

    def jacobian(self, wrt, state, x, out=None):
        with kept():
            return self._jacrev(0 if wrt == "state" else 1, state[0], x).detach()


def torch_recurrent(module):
    return isinstance(module, (torch.nn.RNNBase, torch.nn.RNNCellBase))


# layers that act differently in training mode: a Jacobian of one is noise, or changes it
NOISY = tuple(getattr(torch.nn, name) for name in (
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d") if hasattr(torch.nn, name))


def refuse_noisy(module):
    """Refuse a module whose steps would draw noise or update statistics as it runs."""
    # each layer's own mode decides (TorchStep(module.eval()) wraps an evaluating module)
    noisy = [type(m).__name__ for m in module.modules() if isinstance(m, NOISY) and m.training]
    noisy += [f"{type(m).__name__}(dropout={m.dropout})" for m in module.modules()
              if isinstance(m, torch.nn.RNNBase) and m.training and m.dropout > 0
              and m.num_layers > 1]                 # dropout between stacked layers
    refuse_updating(module)
    if noisy:
        raise GradlabError(f"{type(module).__name__} is in training mode with {noisy[0]}: "
                           "each step would draw new noise or update running statistics "
                           "(and change your module); call module.eval() first")


def prepare(module, xs, state0, reverse):
    """(bound, xs (T, B, m) as analysed, flattened state0 tuple) for a module (a torch
    recurrent module goes to `from_torch` instead; `TorchStep` wraps one for jacrev)."""
    if torch_recurrent(module):
        raise GradlabError(f"{type(module).__name__} is measured symbolically "
                           "(gradlab.from_torch); wrap it as TorchStep(module) to measure "
                           "it by jacrev")
    refuse_quantized(module)
    like = next(iter(module.parameters()), None)
    if like is not None and like.device.type == "meta":
        raise GradlabError(f"{type(module).__name__}'s parameters are on the meta device, "
                           "which holds no numbers; move the module to cpu or cuda")
    refuse_noisy(module)
    refuse_nonfinite(module)              # (as from_torch: no trajectory to follow)
    xs = as_inputs(xs)
    like = like if like is not None and like.is_floating_point() else xs
    if like.dtype not in (torch.float32, torch.float64):
        raise GradlabError(f"{type(module).__name__} computes in {like.dtype}; gradlab "
                           "measures float32 or float64 (module.double() and float xs)")
    xs = converted(xs, "xs", like.dtype, like.device)
    xs = xs.flip(0) if flag(reverse, "reverse") else xs.clone()    # a copy, as `setup`
    state0 = module_state0(module, state0, xs.shape[1], xs)
    try:       # the Flow's walk runs later: a copy, so that an optimizer step (or any change
        with torch.inference_mode(False):  # to the module) afterwards changes nothing; made
            module = copy.deepcopy(module)     # outside a caller's inference mode, whose
    except Exception:                          # weights jacrev cannot use (torch 2.4)
        pass                               # (a module that cannot be copied: as it is)
    bound = ModuleBound(module, state0, xs.shape[2])
    return bound, xs, (bound.flatten(state0),)


def from_module(module, xs, state0, reverse):
    """(cell, params, xs, None) for a torch recurrent module, mapped by `from_torch` (a
    bidirectional multi-layer one's direction reads `direction_inputs`); else (None, {},
    xs, the module's (bound, xs, state0) from `gradlab.flow.module.prepare`), by jacrev."""
    if torch_recurrent(module):
        from ..bidirectional import direction_inputs
        from ..interop import from_torch, wide_input
        refuse_noisy(module)              # gradlab derives the eval-mode step
        bidirectional = getattr(module, "bidirectional", False)
        direction = ("backward" if reverse else "forward") if bidirectional else None
        cell, params = from_torch(module, direction=direction)
        if wide_input(module):            # from layer 2 on the other direction reads this
            xs = direction_inputs(module, xs, direction, state0=state0)   # one's outputs
        return cell, params, xs, None, padded(module)
    return None, {}, xs, prepare(module, xs, state0, reverse), None


def bind_call(cell, params, xs, state0, reverse, call):
    """(bound, xs, state0, padding) for `call` ("gradient_flow", "lyapunov") of a cell
    with params, or of a torch module with its inputs in the params' place (its weights
    are its own): the one check of the arguments both take, and of the memory they need
    (`budget.ensure_walk_fits`)."""
    return _bind(cell, params, xs, state0, reverse, call)


def _bind(cell, params, xs, state0, reverse, call):
    if isinstance(cell, torch.nn.Module):
        cell = unwrap(cell)                  # torch.compile, DataParallel: the same weights
        if params is not None and xs is not None:
            raise GradlabError(f"a torch module carries its own weights: call "
                               f"{call}(module, xs), without params")
        module = cell
        cell, params, xs, bound, padding = from_module(cell, params if xs is None else xs,
                                                       state0, reverse)
        if bound is not None:            # a module's own step, not through setup:
            _, xs_, state0_ = bound        # its memory checked here
            T, B, m = xs_.shape
            ensure_walk_fits(call, T, B, m, sum(s.shape[-1] for s in state0_), xs_.dtype,
                             xs_.device)
            return (*bound, padding)
        if padding is not None and state0 is not None:
            state0 = padded_state0(module, state0)
    else:
        padding = None
    if params is None or xs is None:
        raise GradlabError(f"{call}(cell, params, xs) needs params and xs (or "
                           f"{call}(module, xs) for a torch module)")
    _, bound, xs, state0 = setup(cell, params, xs, state0, reverse, call)
    return bound, xs, state0, padding


def padded_state0(module, state0):
    """state0 for from_torch(module)'s cell, given as torch holds it: an LSTM with
    proj_size p takes each h as (B, p), which the cell holds as (B, n), zeros after p
    (gradlab's own (B, n) is taken as it is)."""
    from ..interop import state_sizes
    sizes = state_sizes(module)
    parts = tuple(state0) if isinstance(state0, (tuple, list)) else (state0,)
    if len(parts) != len(sizes):
        return state0                       # the cell's own check names the count
    full, out = max(sizes.values()), []
    for (name, size), part in zip(sizes.items(), parts):
        try:
            shape = tuple(np.shape(part))
        except ValueError:                   # rows of different lengths
            raise GradlabError(f"state0 part {name!r} is no (B, width) array: its rows "
                               "differ in length") from None
        width = shape[-1] if len(shape) == 2 else None    # torch's (1, B, p): refused
        if width == full:                    # gradlab's own (B, n): the cell's check reads
            tail = part[..., size:] if size < full and isinstance(part, torch.Tensor) \
                else np.asarray(part)[..., size:] if size < full and np.ndim(part) == 2 else None
            if tail is not None and bool((tail != 0).any()):   # it, but not its padding
                raise GradlabError(f"state0 part {name!r} has nonzero entries past {size}: "
                                   f"they pad torch's h (proj_size {size}) to {full} and "
                                   "are zero; give h as (B, "
                                   f"{size}) or zeros there")
            out.append(part)
            continue
        if width != size:
            want = ", ".join(f"{q} as (B, {v})" for q, v in sizes.items())
            raise GradlabError(f"state0 part {name!r} has shape {shape}; this "
                               f"{type(module).__name__}(proj_size={min(sizes.values())}) "
                               f"takes {want}")
        if isinstance(part, torch.Tensor):
            out.append(torch.nn.functional.pad(part, (0, full - width)))
        else:                                # a list or array: numbers as float64 reads them
            a = np.asarray(part)
            a = a if a.dtype.kind == "f" else a.astype(np.float64)
            out.append(np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, full - width)]))
    return tuple(out)


def padded(module):
    """Which state entries of from_torch(module)'s cell are zero padding, (S,) bool, or
    None: the h of an LSTM with proj_size p < n holds p of torch's entries and n - p
    zeros, in every layer. They never move, so every product is singular on them, a
    Lyapunov exponent beyond the true state size is theirs, not the module's, and random
    starts (Lyapunov's Q_0, the default loss vector) are drawn on the other entries."""
    from ..interop import state_sizes
    sizes = state_sizes(module)
    full = max(sizes.values())
    if all(v == full for v in sizes.values()):
        return None
    return torch.cat([torch.arange(full) >= v for v in sizes.values()])


def own_width(module, xs):
    """The width of a torch module's own input where a direction reads a wider one (a
    bidirectional stack: `interop.wide_input`), else None."""
    from ..interop import wide_input
    if not isinstance(module, torch.nn.Module) or xs is None or not wide_input(module):
        return None
    return as_inputs(xs).shape[-1]
