"""Dynamic mean field: each unit keeps its own history, for any declared cell.

With W fixed, the field (W v)_i(t) a unit receives is, at large n, a Gaussian process
over time whose covariance is the population's own autocorrelation,

    E[(W v)_i(t) (W v)_i(s)] = sw^2 C_v(t, s),   C_v(t, s) = (1/n) sum_j v_j(t) v_j(s),

(Sompolinsky, Crisanti & Sommers 1988; for gated cells the same argument holds field by
field). C_v(t, s) for s <= t needs nothing later than t, so the self-consistent solution
is found in one sweep forward in time, with no iteration over whole runs: a population
of N units runs from the zero state (as gradient_flow runs), and at each step every
recurrent field is drawn *conditionally on the same unit's earlier draws* of that field,
with the population's kernel of the vectors seen so far (`Fields`: Gram-Schmidt of the
new vector against the earlier ones; the part in their span gets the same combination
of the unit's earlier fields, the orthogonal rest a fresh Gaussian). A unit's fields
therefore carry exactly the persistence that the population's own history implies.
Biases and peepholes are quenched per unit. The inputs are white fields of variance
sv^2 R, or, with `inputs=m`, exactly U x_t: per-unit input weights (N x m) and one
shared input sequence x_t in R^m, as gradient_flow drives the network (at small m each
unit's input variance varies from unit to unit by sqrt(2/m), and the inputs of a unit's
gates are correlated, which gives each unit a static offset: at m = 32 it doubles the
static part of a GRU's state).

The gradient then runs backward along the sampled histories: a unit's diagonal gains
(the Jacobian's k = 0 terms, e.g. the LSTM's diag(f)) multiply along its *own* history,
and every term through a weight, c diag(D0) M1 diag(D1) ... Mk diag(Dk), applies M^T as
a Gaussian field of the backward vectors drawn the same causal way. The transposed
Jacobian holds the same W at every step, so the backward field a unit receives at lag k
is correlated with the one at lag k - 1 as much as the population's gradient vectors
are: a persistent gradient meets persistent fields, which add up coherently (white
backward fields miss this: gru forgets 15 %, lstm 45-135 % too fast). M^T is drawn
independently of the forward M (gradient independence: the gradient is linear in a
random, zero-mean start). The log of the root mean squared gradient over units against
the lag is the theory's curve (1/2 ln (1/n)||P_k||_F^2 up to a constant); its
least-squares slope over the same lags as the measurement is the rate.

At N units the sampling draws each weight's action exactly as an N-unit Gaussian matrix
would act on the same vectors, so the finite-width effects of a measurement (e.g. which
units keep their gates open longest) are reproduced at units = n; as N grows it tends
to the N -> infinity solution. Several settings (`solve`, a list of Scales) run as one
population of separate groups of N units, each with its own fields and its own random
stream (the same seed gives the same numbers alone or in a batch).
"""

import math
import numbers

import numpy as np

from .. import progress
from ..errors import GradlabError, check_seed, integer
from .lag_window import lags as check_lags
from .population import normal, population
from .sampling import Sampled, refuse_undersampled

SAMPLE_EVERY = 4     # steps between the participation counts the backward pass takes


class Fields:
    """M v for one Gaussian matrix M (entries N(0, 1/N)) per group of N units, on the
    groups' vectors v over time, each unit's field drawn conditionally on its earlier
    fields of M.

    Keeps, per group, an orthonormal basis q_l (mean q_l^2 = 1 over units) of the vectors
    seen and each unit's field of it, z_l = (M q_l), i.i.d. N(0, 1): v = sum a_l q_l + w
    with w orthogonal to them gives M v = sum a_l z_l + sqrt(mean w^2) z_new. Cost
    O(r N) per vector and group, r <= vectors seen; once N vectors span a group's space
    its fields are determined (a zero row stands for a vector already in the span)."""

    def __init__(self, N, rngs):
        self.N, self.rngs, self.r = N, list(rngs), 0
        self.Q = np.empty((len(self.rngs), 32, N))
        self.Z = np.empty_like(self.Q)

    def __call__(self, v):
        G, N, r = len(self.rngs), self.N, self.r
        w = np.array(v, dtype=np.float64).reshape(G, N)
        norm2 = np.einsum("gn,gn->g", w, w) / N
        a, s, Q = np.zeros((G, r)), norm2, self.Q[:, :r]
        again = np.ones(G, dtype=bool)
        for _ in range(2 if r else 0):   # Gram-Schmidt; again where it cancelled (round-off)
            c = np.matmul(Q, w[:, :, None])[:, :, 0] / N * again[:, None]
            w -= np.matmul(c[:, None, :], Q)[:, 0]
            a += c
            last, s = s, np.einsum("gn,gn->g", w, w) / N
            again = s <= 0.25 * last          # a group alone would go round again: the same
            if not again.any():
                break
        f = np.matmul(a[:, None, :], self.Z[:, :r])[:, 0] if r else np.zeros((G, N))
        new = (s > 1e-13 * norm2) & (s > 0)
        if new.any():
            if r == self.Q.shape[1]:
                self.Q = np.concatenate([self.Q, np.empty_like(self.Q)], axis=1)
                self.Z = np.concatenate([self.Z, np.empty_like(self.Z)], axis=1)
            root = np.sqrt(np.where(new, s, 1.0))[:, None]
            z = np.stack([g.standard_normal(N) if fresh else np.zeros(N)
                          for g, fresh in zip(self.rngs, new)])
            self.Q[:, r] = np.where(new[:, None], w / root, 0.0)
            self.Z[:, r] = z
            self.r = r + 1
            f = f + np.where(new[:, None], root, 0.0) * z
        return f.reshape(G * N)


def _per_unit(values, N):
    """One number per group -> an (N_groups * N, 1) column."""
    return np.repeat(np.asarray(values, dtype=np.float64), N)[:, None]


def _quenched(pop, scales, rngs, N):
    """Each group's biases, peepholes and scalars (pop.quenched), side by side."""
    draws = [pop.quenched(N, s, g) for s, g in zip(scales, rngs)]
    return {k: (np.concatenate([d[k] for d in draws]) if np.ndim(draws[0][k])
                else _per_unit([d[k] for d in draws], N)) for k in draws[0]}


def _forward(pop, scales, rngs, N, T, inputs):
    """The groups run forward: (envs per step, vectors: field symbol -> (T, G N))."""
    G = len(scales)
    params = _quenched(pop, scales, rngs, N)
    factors = {f.symbol: _per_unit([pop.field_variance_factor(f, s) for s in scales], N)
               for f in pop.fields}
    fields, weights, xs = {}, {}, None
    if inputs:
        for f in pop.fields:
            for w, _ in (f.weights if f.is_input else ()):
                weights.setdefault(w, [g.standard_normal((N, inputs)) / math.sqrt(inputs)
                                       for g in rngs])
        xs = [g.standard_normal((T, inputs)) * math.sqrt(s.input_power)
              for s, g in zip(scales, rngs)]
    vectors = {f.symbol: np.empty((T, G * N)) for f in pop.fields if not f.is_input}
    clock = {"t": 0}

    def fields_for(field, env):
        t = clock["t"]
        if field.is_input:
            if xs is None:
                return np.concatenate([normal(g, N) for g in rngs]) * np.sqrt(
                    factors[field.symbol])
            return np.concatenate([s.input_scale * sum(c * (weights[w][k] @ xs[k][t])
                                                       for w, c in field.weights)
                                   for k, s in enumerate(scales)])[:, None]
        v = pop.vector(field, env, G * N)[:, 0]
        vectors[field.symbol][t] = v
        draw = fields.setdefault(field.weights, Fields(N, rngs))
        return np.sqrt(factors[field.symbol]) * draw(v)[:, None]

    # from the zero state, as a measured flow starts by default (state0=None): with no
    # input and no bias both stay at that fixed point (the annealed theory instead starts
    # away from it, `population.start`, as the standard theory iterates q to q*)
    state = tuple(np.zeros((G * N, 1)) for _ in pop.cell.state_names)
    envs = []
    for t in range(T):
        clock["t"] = t
        env = pop.step(state, params, fields_for, G * N)
        state = pop.new_state(env)
        envs.append(env)
        if progress.due(t, T):
            progress.advance("mean-field forward", t + 1, T)
    return envs, vectors


def _paths(pop):
    """The Jacobian's terms through weights, those that differ only in D0 (and the part
    they read) summed: [(matrices, into, [chain index, ...], reads), ...]; the diagonal
    terms [(chain index, out, into), ...]. `reads` names what a path's first weight
    multiplies, so that two paths that start alike share that field."""
    paths, diagonal = {}, []
    for t, c in enumerate(pop.chains):
        if not c.matrices:
            diagonal.append((t, c.out, c.into))
            continue
        key = (c.matrices, c.into, tuple(str(d) for d in c.diags[1:]))
        paths.setdefault(key, []).append(t)
    out = []
    for (matrices, into, _), members in paths.items():
        reads = tuple((pop.chains[t].out, str(pop.chains[t].diags[0])) for t in members)
        out.append((matrices, into, members, reads))
    return out, diagonal


def _backward(pop, scales, envs, rngs, N):
    """(G, T): per group, the log of the root mean squared gradient per lag k = 1..T
    (column k - 1), backward from the last step, each weight's transpose drawn causally
    (`Fields`); -inf from the lag where a group's gradient is exactly zero, nan where it
    is not finite."""
    parts, chains, G = len(pop.cell.state_names), pop.chains, len(scales)
    paths, diagonal = _paths(pop)
    sigma = {key: np.sqrt(_per_unit([pop.weight_variance(key, s) for s in scales], N))[:, 0]
             for c in chains for key in c.matrices}
    fields = {}
    T = len(envs)
    u = np.concatenate([g.standard_normal((parts, N)) for g in rngs], axis=1)
    curve, total, alive = np.zeros((G, T)), np.zeros(G), np.ones(G, dtype=bool)
    sampled = Sampled(pop, scales, G, N)
    for k, env in enumerate(reversed(envs)):
        step = pop.diags(env, G * N)
        if k % SAMPLE_EVERY == 0:
            sampled.add(step)
        new = np.zeros_like(u)
        for t, out, into in diagonal:
            new[into] += step[t][0] * u[out]
        seen = {}                  # the same first field of two paths (GRU: W and W, W_r)
        for matrices, into, members, reads in paths:
            x = sum(step[t][0] * u[chains[t].out] for t in members)
            for level, key in enumerate(matrices):
                if level == 0 and (key, reads) in seen:
                    f = seen[(key, reads)]
                else:
                    f = sigma[key] * fields.setdefault(key, Fields(N, rngs))(x)
                    if level == 0:
                        seen[(key, reads)] = f
                x = step[members[0]][level + 1] * f
            new[into] += x
        size = np.mean(np.sum(new * new, 0).reshape(G, N), 1)
        dead = alive & ~(np.isfinite(size) & (size > 0))
        for g in np.nonzero(dead)[0]:
            curve[g, k:] = -np.inf if size[g] == 0 else np.nan
        alive &= ~dead
        total = np.where(alive, total + 0.5 * np.log(np.where(alive, size, 1.0)), total)
        curve[alive, k] = total[alive]
        scale = np.where(alive, 1 / np.sqrt(np.where(alive, size, 1.0)), 0.0)
        u = np.where(np.isfinite(new), new, 0.0) * np.repeat(scale, N)
        if progress.due(k, T):
            progress.advance("mean-field backward", k + 1, T)
    return curve, sampled


def _slope(curve, lags):
    start, stop = lags
    y = curve[start - 1:stop]
    if not np.isfinite(y).all():
        return -np.inf if np.isneginf(y).any() and not np.isnan(y).any() else np.nan
    x = np.arange(start, stop + 1, dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def solve(cell, scales, *, units=1024, steps=400, inputs=None, lags=None, seed=0):
    """Dynamic mean field for each of a list of Scales, one group of `units` units each:
    (rates, curves (G, steps), envs, vectors); see `dynamic`."""
    N, T = integer(units, "units", 2), integer(steps, "steps", 3)
    if inputs is not None and not (isinstance(inputs, numbers.Integral)
                                   and not isinstance(inputs, bool) and inputs >= 1):
        raise GradlabError(f"inputs must be None (white input fields) or an integer >= 1 "
                           f"(the input size), got {inputs!r}")
    start, stop = check_lags(lags, T)
    seed = check_seed(seed)
    pop = population(cell)
    rngs = [np.random.default_rng(seed) for _ in scales]
    envs, vectors = _forward(pop, scales, rngs, N, T, inputs and int(inputs))
    curves, sampled = _backward(pop, scales, envs,
                               [np.random.default_rng([seed, 1]) for _ in scales], N)
    overflowed = _overflowed(pop, envs, len(scales), N) \
        | ~np.array([pop.variances_finite(s) for s in scales])
    # a group whose expectations rest on a handful of units has no rate either
    thin = sampled.thin() & ~overflowed
    rates = [math.nan if bad or few else _slope(c, (start, stop))
             for c, bad, few in zip(curves, overflowed, thin)]
    return rates, curves, envs, vectors, (thin, sampled.fewest())


def _overflowed(pop, envs, G, N):
    """Per group, whether any unit's state or named value left the finite numbers: then
    the population has no statistics and the theory no rate (nan, as Flow.rate gives for
    an overflowed state), whatever its gradient curve says. So has a group one of whose
    variances overflows (`Population.variances_finite`)."""
    bad = np.zeros(G, dtype=bool)
    for env in envs:
        for sym in pop.vectors:
            bad |= ~np.isfinite(np.asarray(env[sym], dtype=float).reshape(G, -1)).all(1)
    return bad


def dynamic(cell, scales, *, units=1024, steps=400, inputs=None, lags=None, seed=0):
    """(rate, moments) of dynamic mean field for a population of `units` units over
    `steps` >= 3 steps from the zero state (inputs: None for white input fields, or m, the
    input size, for exact U x_t), the slope of the theory's log-norm curve over lags
    (start, stop), 1 <= start < stop <= steps, as Flow.rate fits it (default
    `lag_window.default_lags`: (steps // 8, steps - 20), or up to the last lag under 40
    steps)."""
    rates, curves, envs, vectors, (thin, counts) = solve(
        cell, [scales], units=units, steps=steps, inputs=inputs, lags=lags, seed=seed)
    refuse_undersampled(thin[0], counts[0], int(units), scales, "dynamic")
    pop, last = population(cell), envs[-1]
    moments = {"mean": {s.name: float(np.mean(last[s])) for s in pop.vectors},
               "mean_square": {s.name: float(np.mean(last[s] ** 2)) for s in pop.vectors},
               "autocorrelation": {str(f.vector): _lagged(vectors[f.symbol])
                                   for f in pop.fields if not f.is_input},
               "curve": curves[0]}
    return rates[0], moments


def _lagged(v, lags=(0, 1, 5, 20)):
    """The population autocorrelation C(t, t - l) / C(t, t), averaged over the run's
    second half, at a few lags l."""
    T = v.shape[0]
    t = np.arange(T // 2, T)
    c0 = np.mean(v[t] ** 2)
    return {lag: float(np.mean(v[t] * v[t - lag]) / c0) if c0 > 0 else float("nan")
            for lag in lags if lag < T // 2}
