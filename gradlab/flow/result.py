"""The `Flow` object: one cell's gradient flow over a batch, its norms walked on demand."""

import math

import numpy as np
import torch

from ..errors import (GradlabAttributeError, GradlabError, arguments_checked, check_seed,
                      flag, integer, methods_checked)
from .benettin import exponents_along
from .lanczos import tolerance
from .loss import check_cut, kept_fraction, loss_vector, loss_walk
from .module import bind_call, own_width
from .reach import reach, unreadable
from .rates import GROW, NO_DECAY, SINGULAR, ZERO, slope, timescale_of_rate
from .walk import walk
NORMS = ("spectral", "frobenius", "min_singular")
BLOCK_NORMS = ("spectral", "frobenius")
FLOWS = type("Seed", (), {"__repr__": lambda self: "gradient_flow's"})()   # Flow.lyapunov's


def _numpy(a):
    """(T, B, ...) tensor -> (B, T, ...) float64 numpy array."""
    return a.transpose(0, 1).to(dtype=torch.float64, device="cpu").numpy().copy()


def _exp(logs):
    """exp of each array in a dict; norms below float64's range read 0 (as they are)."""
    with np.errstate(under="ignore", over="ignore"):
        return {k: np.exp(a) for k, a in logs.items()}


@methods_checked
class Flow:
    """The gradient flow of one cell over one batch of input sequences.

    Every array is numpy float64 with sequences on axis 0 and lag k = 1..T at column k-1
    (`lags`), natural logs, lag k meaning P_k = d s_T / d s_{T-k}. Nothing is walked
    until a norm is read: the first read of a norm asked of `gradient_flow` computes all
    of those in one walk; any other norm is computed on first use by a walk of its own.
    What reads no norm (`lyapunov`, `loss_grad_norms`, `states`) never walks for one.

    Attributes: cell, xs (T, B, m) as analysed (flipped when `reverse`), state0 and
    states (one (T+1, B, n) tensor per state part, s_0..s_T), T, B, n, S, parts (the
    state part names), reverse, seed, padding (state entries that are zero padding: the
    h of an nn.LSTM with proj_size p < n holds n - p of them; 0 otherwise), input_width
    (the columns of xs that are the input: for a direction of a bidirectional stack of
    nn modules, xs is the wide input x' and the module's own input is its first m columns;
    None: all of them)."""

    def __init__(self, cell, bound, xs, state0, states, *, reverse, seed, rtol=None,
                 norms=(), blocks=False, padding=None, input_width=None):
        self.cell, self._xs, self._states = cell, xs, states
        self._state0 = tuple(s.clone() for s in state0)     # the caller's may change
        self.input_width = input_width
        # state entries that are zero padding (proj_size): how many, and which (S,) bool
        self._pad = padding
        self.padding = 0 if padding is None else int(padding.sum())
        self.reverse, self.seed, self.rtol = reverse, seed, rtol
        self._bound = bound
        self.symbolic = getattr(bound, "symbolic", True)   # False: a module, by jacrev
        self.T, self.B = xs.shape[:2]
        self.n, self.S, self.parts = bound.n, bound.S, cell.state_names
        self._log, self._block, self._loss = {}, {}, {}
        self._pending = (tuple(norms), bool(blocks))    # asked for, not yet walked

    def __setattr__(self, key, value):
        """What was measured is fixed (flow.T = 3 changed rate(), silently; flow.revrse =
        True was taken): only the Flow's own caches, private, are set after it is made."""
        if not key.startswith("_") and "_pending" in self.__dict__:
            raise GradlabAttributeError(
                f"a Flow's {key} is fixed: call gradient_flow again for another analysis"
                if hasattr(self, key) else f"a Flow has no attribute {key!r}; options are "
                "given to gradient_flow")
        super().__setattr__(key, value)

    def __delattr__(self, key):        # refused where setting is: del flow.T broke the Flow
        if not key.startswith("_"):
            self.__setattr__(key, None)
        super().__delattr__(key)

    # copies: the walk reads the originals later, so changing these in place changes nothing
    xs = property(lambda self: self._xs.clone(), doc="xs (T, B, m) as analysed (a copy)")
    state0 = property(lambda self: tuple(s.clone() for s in self._state0), doc="s_0 (a copy)")
    states = property(lambda self: tuple(s.clone() for s in self._states),
                      doc="s_0..s_T, one (T+1, B, n) tensor per state part (copies)")

    def __repr__(self):
        return (f"<Flow {self.cell.name}: T={self.T}, B={self.B}, S={self.S}"
                f"{', reversed' if self.reverse else ''}"
                f"{'' if self.symbolic else ', not symbolic: Jacobians by jacrev'}>")

    lags = property(lambda self: np.arange(1, self.T + 1),
                    doc="1..T as an int array: column k-1 of every (B, T) array is lag k.")

    # -- norms -------------------------------------------------------------------------
    def _ensure(self, kind, blocks=False):
        """Walk for a norm (of the whole product, or of its blocks) not yet had: the first
        norm asked for that `gradient_flow` was asked for brings all of those in one walk;
        any other walks on its own."""
        had = self._block if blocks else self._log
        if kind in had:
            return
        if kind == "min_singular" and self.padding:
            raise GradlabError(NO_MIN_SINGULAR)
        norms, with_blocks = self._pending
        if kind in norms and (with_blocks or not blocks):
            self._walk_pending()
            if kind in had:
                return
        self._store(self._walk((kind,), blocks))

    def _walk_pending(self):
        norms, blocks = self._pending
        self._pending = ((), False)
        if norms:
            self._store(self._walk(norms, blocks))

    def _walk(self, norms, blocks):
        return walk(self._bound, self._states, self._xs, norms=norms, blocks=blocks,
                    seed=self.seed, rtol=self.rtol)

    def _store(self, out):
        for kind, value in out.items():
            if kind.startswith("block_"):
                self._block.setdefault(kind[6:], self._overflowed(_numpy(value), self.lags))
            else:
                self._log.setdefault(kind, self._overflowed(_numpy(value), self.lags))

    def _reach(self):
        """(B,) per sequence how many lags can be read (reach.py)."""
        if not hasattr(self, "_reach_of"):
            self._reach_of = reach(self._states, self._xs)
        return self._reach_of

    def _overflowed(self, a, lags):
        """a (B, T, ...) with nan where its lag (lags[column]) reads a state of that
        sequence that overflowed (inf or nan): its Jacobians, and so the number, mean
        nothing there, even where they come out as exact zeros (log -inf)."""
        bad = lags[None, :] > self._reach()[:, None]
        if bad.any():
            a[bad] = math.nan
        return a

    def log_norm(self, kind="spectral"):
        """log ||P_k|| (B, T), "spectral", "frobenius" or "min_singular": -inf where P_k is
        0 (min_singular: from the first J_t singular to working precision on, an LU pivot
        below S eps of the largest), nan where a state it reads overflowed (see `why`)."""
        check(kind, NORMS, "norm")
        self._ensure(kind)
        return self._log[kind].copy()

    def block_log_norm(self, out_part, in_part, kind="spectral"):
        """log of the norm ("spectral" or "frobenius") of the (out_part, in_part) block of
        P_k, (B, T): the LSTM's ("c", "c") is the cell path d c_T / d c_{T-k}. The
        block shares the product's normalisation, so a block that vanishes relative to the
        whole product (below 1e-308 of it) reads -inf."""
        check(kind, BLOCK_NORMS, "block norm")
        i, j = (self._part(p) for p in (out_part, in_part))
        if len(self.parts) == 1:
            return self.log_norm(kind)
        self._ensure(kind, blocks=True)
        return self._block[kind][:, :, i, j].copy()

    def _pair(self, block):
        if not isinstance(block, (tuple, list)) or len(block) != 2:
            raise GradlabError(f"block must be a pair (out_part, in_part) of the parts "
                               f"{', '.join(self.parts)}, got {block!r}")
        return block

    def _part(self, name):
        if name not in self.parts:
            raise GradlabError(f"cell '{self.cell.name}' has no state part {name!r}; its "
                               f"parts are {', '.join(self.parts)}")
        return self.parts.index(name)

    # -- summary numbers ------------------------------------------------------------------
    def mean_log_norm(self, kind="spectral", *, block=None):
        """The mean over sequences of the log norm, (T,): the curve a decay plot draws."""
        values = self.log_norm(kind) if block is None else self.block_log_norm(
            *self._pair(block), kind)
        with np.errstate(invalid="ignore"):      # +inf beside -inf: nan, as `why` says
            return values.mean(axis=0)

    def rate(self, kind="spectral", *, block=None, start=1, stop=None):
        """Per-step decay rate: the least-squares slope of the mean log norm against the lag,
        over lags start..stop (default all). A float, always (`why` says what a value that
        is not a plain number means):

            < 0     gradients vanish (finite: timescale -1 / (2 rate));
            >= 0    gradients grow (> 0) or keep their size (0);
            -inf    a product is zero: exactly (every unit of a ReLU cell dead, W = 0),
                    infinitely fast decay; or in floating point, where at some step every
                    tanh unit is saturated past it (a pre-activation beyond ~19 rounds 1 -
                    h'^2 to 0, as in autograd): decay faster than floating point follows
                    (a block: zero at lag stop; its zeros before are left out of the fit);
            nan     no measurement: a state the products read overflowed, or an input
                    was inf or nan (then its Jacobians are meaningless, even where they
                    come out as exact zeros), a norm overflowed, or a single lag.
        """
        return self._rate(kind, block, start, stop)[0]

    def why(self, kind="spectral", *, block=None, start=1, stop=None):
        """Why `rate` / `timescale` (same arguments) is not a plain decay, or None when the
        rate is finite and negative: OVERFLOW "state overflowed" (rate nan), INPUT "input
        not finite" (rate nan: an inf or nan in xs, not an overflow), NOT_FINITE
        "norm not finite" (nan), ONE_LAG (nan), ZERO "product zero" (rate -inf,
        timescale 0; for min_singular SINGULAR "product singular"), GROW "gradients grow"
        (rate > 0, timescale inf), NO_DECAY "no decay within T" (rate 0, timescale inf)."""
        rate, reason = self._rate(kind, block, start, stop)
        if reason is None and rate >= 0:
            return GROW if rate > 0 else NO_DECAY
        return reason

    def _rate(self, kind, block, start, stop):
        start = integer(start, "start", 1, self.T)
        stop = self.T if stop is None else integer(stop, "stop", 1, self.T)
        y = self.mean_log_norm(kind, block=block)
        if start > stop:
            raise GradlabError(f"lags {start}..{stop} are empty: start must be <= stop "
                               f"(both in 1..{self.T})")
        if int(self._reach().min()) < stop:   # every sequence's P_stop reads s_{T-stop}..
            return math.nan, unreadable(self._reach(), self._xs, stop)     # s_{T-1}
        rate, why = slope(y[start - 1:stop], torch.finfo(self._xs.dtype).eps,
                          lasting=block is None)
        return rate, SINGULAR if why == ZERO and kind == "min_singular" else why

    def timescale(self, kind="spectral", *, block=None, start=1, stop=None):
        """xi = -1 / (2 rate) of `rate` (same arguments) when gradients decay: the steps
        in which the squared norm falls by e (the norm by e in 2 xi), a positive number;
        0 at rate -inf (a product zero); inf when they do not decay (rate >= 0:
        they grow, or keep their size); nan with a nan rate. Never negative: `why` tells
        growth from no decay (`timescale_of_rate`)."""
        return timescale_of_rate(self.rate(kind, block=block, start=start, stop=stop))

    def horizon(self, fraction=1e-3, kind="spectral"):
        """The first lag where the mean log norm falls below log(fraction) plus its lag-1
        value (the norm below `fraction` of the lag-1 norm); None if it never does; nan
        where the log norms are nan (a state that overflowed: `why`), as the rate is; 1
        where the lag-1 product is already zero (rate -inf, timescale 0)."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) \
                or not 0 < fraction < 1:                     # (nan fails the comparison)
            raise GradlabError(f"fraction must be a number in (0, 1), got {fraction!r}")
        y = self.mean_log_norm(kind)
        if np.isnan(y).any():                     # no comparison with nan means anything
            return math.nan
        if y[0] == -math.inf:                     # gone at lag 1: nothing falls below 0
            return 1
        below = np.nonzero(y < y[0] + math.log(fraction))[0]
        return int(below[0]) + 1 if len(below) else None

    def log_condition(self, lag=None):
        """log of the condition number sigma_max / sigma_min of P_k: (B, T), or (B,) at one
        lag; inf where P_k is singular, nan where it is zero; >= 0 (the norms, apart, put a
        multiple of I at -2.2e-16)."""
        with np.errstate(invalid="ignore"):     # (np.maximum keeps nan)
            values = np.maximum(self.log_norm("spectral") - self.log_norm("min_singular"), 0)
        return values if lag is None else values[:, integer(lag, "lag", 1, self.T) - 1]

    def condition(self, lag=None):
        """Condition number of P_lag per sequence, (B,), or of every P_k, (B, T), for lag
        None (inf where it overflows float64)."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_condition(lag))

    # -- what a loss sees -------------------------------------------------------------------
    def loss_vector(self, v=None, *, seed=0):
        """v for L = <v, s_T>: the given (S,) or (B, S) tensor, else a random unit (S,) by seed."""
        return loss_vector(v, self.S, self.B, self._xs, check_seed(seed), self._pad)

    def loss_grad_norms(self, v=None, *, seed=0, log=False):
        """For L = <v, s_T> (v random unit from `seed` unless given): {"state": ||dL/ds_t||,
        "input": ||dL/dx_t||}, each (B, T) with column t for time step t: s_t is the state
        that xs[t] meets (s_0 = state0, lag T - t from s_T) and x_t = xs[t] (its first
        `input_width` columns: a bidirectional stack's own input, not the other
        direction's states within the wide input). Natural logs
        with log=True (exact where the norms underflow); by VJPs, O(T B S^2)."""
        seed, log = check_seed(seed), flag(log, "log")
        if v is not None or seed not in self._loss:     # a random v is kept per seed
            state, inputs = loss_walk(self._bound, self._states, self._xs,
                                       self.loss_vector(v, seed=seed), self.input_width)
            lags = self.T - np.arange(self.T)                 # column t: lag T - t
            found = {"state": self._overflowed(_numpy(state), lags),
                     "input": self._overflowed(_numpy(inputs), lags)}
            if v is not None:
                return found if log else _exp(found)
            self._loss[seed] = found
        out = {k: a.copy() for k, a in self._loss[seed].items()}
        return out if log else _exp(out)

    def bptt_fraction(self, K, v=None, *, seed=0):
        """Fraction of the gradient kept by truncated BPTT over the last K steps (L, v, seed:
        as in `loss_grad_norms`): per sequence, sum_{t >= T-K} ||dL/dx_t||^2 / sum_t ||dL/dx_t||^2
        (the share of the squared input-gradient mass within K steps of the loss), averaged over
        sequences. 1.0 for K >= T; nan where no gradient reaches any input."""
        check_cut(K)                                          # before any walk
        return kept_fraction(self.loss_grad_norms(v, seed=seed, log=True)["input"], K)

    def lyapunov(self, k=8, *, seed=FLOWS, discard=0):
        """Top-k Lyapunov exponents along this flow's inputs and initial state, the mean over
        sequences (k,): `gradlab.lyapunov(...).mean`, Q_0 from `seed` (by default gradient_flow's),
        the first `discard` steps a warm-up as there; no norm is computed for it."""
        return exponents_along(self._bound, self._xs, self._states, k, self.seed if seed is
                               FLOWS else check_seed(seed), discard, pad=self._pad).mean

    def summary(self):
        """Plain numbers (JSON-ready) from the norms computed so far; block (A, B)'s rate as
        rate_KIND_AB (rate_KIND_A->B where names run together alike: parts h, hc, ch)."""
        self._walk_pending()
        out = {"cell": self.cell.name, "T": self.T, "B": self.B, "S": self.S,
               "reverse": self.reverse}
        for kind in self._log:
            out[f"rate_{kind}"] = self.rate(kind)
        if "spectral" in self._log:
            out["timescale"] = self.timescale()
            out["horizon_1e-3"], out["horizon_1e-6"] = self.horizon(1e-3), self.horizon(1e-6)
            out["log_norm_lag1"] = float(self.mean_log_norm()[0])
        pairs = [(a, b) for a in self.parts for b in self.parts]
        sep = "" if len({a + b for a, b in pairs}) == len(pairs) else "->"
        for kind in self._block:
            for a, b in pairs:
                out[f"rate_{kind}_{a}{sep}{b}"] = self.rate(kind, block=(a, b))
        return out


NO_MIN_SINGULAR = (
    "min_singular (and the condition number) is not measured for an LSTM with proj_size: "
    "its h is padded to hidden_size with zeros, so every product is singular on the "
    "padding; gradient_flow(TorchStep(module), xs), TorchStep from gradlab.flow.module, "
    "measures torch's own state")


def check(value, valid, what):
    if not isinstance(value, str) or value not in valid:
        raise GradlabError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


@arguments_checked
def gradient_flow(cell, params=None, xs=None, *, state0=None, reverse=False,
                  norms=("spectral", "frobenius"), blocks=True, seed=0, rtol=None):
    """Jacobian products P_k = d s_T / d s_{T-k} of `cell` over inputs xs (T, B, m), k=1..T.

    xs:      (T, B, m), time first (for a torch module too, whatever its batch_first).
    cell:    a registered name or a Cell; params: its dict of tensors, whose dtype
             (float32/float64) and device every computation uses. Or a torch module,
             `gradient_flow(module, xs)`: nn.RNN / nn.LSTM / nn.GRU (and their cells) go
             through `from_torch` to their symbolic cells (a bidirectional one's backward
             half with reverse=True, each half of a multi-layer one reading the other's
             outputs on xs, `bidirectional.direction_inputs`); any other module is one recurrent step
             `module(x, state) -> state` measured by torch.func.jacrev, not symbolically
             (`Flow.symbolic` is False; the protocol: `gradlab.flow.module`).
    state0:  tuple of (B, n) per state part (zeros by default).
    reverse: analyse the sequence backwards in time (xs flipped): the backward half of a
             bidirectional model.
    norms:   those computed in this walk ("spectral", "frobenius", "min_singular"); others
             are computed on first use. blocks: also the norms of the per-part blocks.
    seed:    for the random starts of the spectral iteration (results do not depend on it
             beyond rounding).
    rtol:    relative accuracy of every spectral norm and smallest singular value of
             the products as computed, as a bound on each: a residual bound (with an
             allowance for rounding), proven by the subspace iteration or by Lanczos,
             else svdvals (default 1e-11 in float64; 5e-7 in float32, the bound taken
             in float64 past the first lags, and before them half for the bound and
             half for float32 rounding, measured, not bounded; the worst errors seen
             against torch.linalg.matrix_norm(ord=2) in float64 are 9.7e-12 in float64
             and 2.4e-7 in float32). Forming the
             products rounds as any float chain does (more where a product is
             ill-conditioned), and the inverse chain behind min_singular adds ~cond(J_t)
             eps a step: rtol does not cover those. A looser rtol (1e-6 is plenty for a
             decay rate) costs fewer iterations.

    Shapes and dtypes are checked here, once; the cell runs forward here (`states`);
    the backward walk for the norms waits until a norm is read (`Flow`). params and xs are
    copied here, so changing them in place afterwards (an optimizer step) changes nothing
    the Flow reports; a module measured by jacrev (not one from_torch converts) is read
    when the walk runs: read the norms before changing it.
    """
    if isinstance(norms, (set, frozenset)) or type(norms).__name__ == "ndarray":
        for kind in norms:                        # before sorting by place in NORMS
            check(kind, NORMS, "norm")
        norms = tuple(sorted(norms, key=NORMS.index) if isinstance(norms, (set, frozenset))
                      else norms.tolist())
    if not isinstance(norms, (tuple, list)):
        raise GradlabError(f"norms is a tuple of names from {', '.join(NORMS)}, got "
                           f"{norms!r}" + (f"; write ({norms!r},)" if isinstance(norms, str)
                                           else ""))
    for kind in norms:
        check(kind, NORMS, "norm")
    seed, reverse = check_seed(seed), flag(reverse, "reverse")
    blocks = flag(blocks, "blocks")
    width = own_width(cell, params if xs is None else xs)
    bound, xs, state0, padding = bind_call(cell, params, xs, state0, reverse, "gradient_flow")
    if padding is not None and "min_singular" in norms:
        raise GradlabError(NO_MIN_SINGULAR)
    tolerance(xs.dtype, rtol)                                    # refuse a bad rtol now
    states = bound.states(xs, state0)
    wanted = tuple(dict.fromkeys((*norms, "frobenius")))
    return Flow(bound.cell, bound, xs, state0, states, reverse=reverse, seed=seed, rtol=rtol,
                norms=wanted, blocks=blocks, padding=padding, input_width=width)
