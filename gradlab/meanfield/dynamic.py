"""Dynamic mean field: each unit keeps its own history, for any declared cell.

With W fixed, the field (W v)_i(t) a unit receives is, at large n, a Gaussian process
over time whose covariance is the population's own autocorrelation,

    E[(W v)_i(t) (W v)_i(s)] = sw^2 C_v(t, s),   C_v(t, s) = (1/n) sum_j v_j(t) v_j(s),

(Sompolinsky, Crisanti & Sommers 1988; for gated cells the same argument holds field by
field). Solved self-consistently by sampling: a population of N units is run from the
zero state (as gradient_flow runs), first with the annealed (white) fields; each pass
then measures C_v over the whole run (a T x T matrix, transients included) and redraws
every recurrent field as that Gaussian process; a few passes settle it. Input fields
stay white (i.i.d. inputs), biases and peepholes are quenched per unit.

The gradient then runs backward along the sampled histories: a unit's diagonal gains
(the Jacobian's k = 0 terms, e.g. the LSTM's diag(f)) multiply along its *own* history,
so a unit whose gate stays open carries its gradient for long, while the terms through a
weight (diag(D0) M1 ... Mk diag(Dk)) are fresh Gaussian fields of the population's
current second moments, correlated between terms that share their weights. The log of
the mean squared gradient over units against the lag is the theory's curve
(1/2 ln (1/n)||P_k||_F^2); its slope over the same lags as the measurement is the rate.
"""

import numpy as np

from .annealed import forward_fields
from .population import normal, population


def _root(C):
    """A symmetric square root of a covariance matrix (eigenvalues clipped at 0)."""
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def _run(pop, scales, params, rng, N, T, roots):
    """One pass forward. roots: field name -> (T, T) root of its covariance, or None
    (the first pass: annealed fields). Returns (envs, vectors: name -> (T, N))."""
    annealed = forward_fields(pop, scales, rng, N)
    recurrent = [f for f in pop.fields if not f.is_input]
    drawn = {}
    if roots is not None:
        for f in recurrent:
            drawn[f.symbol] = roots[f.symbol] @ rng.standard_normal((T, N))
    vectors = {f.symbol: np.empty((T, N)) for f in recurrent}
    clock = {"t": 0}

    def fields_for(field, env):
        t = clock["t"]
        if not field.is_input:
            vectors[field.symbol][t] = pop.vector(field, env, N)[:, 0]
            if roots is not None:
                return drawn[field.symbol][t][:, None]
        return annealed(field, env)

    state = tuple(np.zeros((N, 1)) for _ in pop.cell.state_names)
    envs = []
    for t in range(T):
        clock["t"] = t
        env = pop.step(state, params, fields_for, N)
        state = pop.new_state(env)
        envs.append(env)
    return envs, vectors


def _backward(pop, scales, envs, rng, N, passes):
    """log of the root mean squared gradient per lag k = 1..T, backward from the last step.

    The first pass draws every field through a weight fresh at each step; each later pass
    redraws them as Gaussian processes over time with the population's own cross-time
    covariance of what the weight multiplies (the transposed Jacobian holds the same W at
    every step, so a persistent gradient meets correlated fields that add up). Vectors
    are carried divided by the previous pass's norm at each lag, so the covariances are
    of order one over hundreds of lags."""
    parts, chains = len(pop.cell.state_names), pop.chains
    sig = [[pop.weight_variance(k, scales) for k in c.matrices] for c in chains]
    groups = {}
    for t, c in enumerate(chains):
        if c.matrices:
            groups.setdefault(c.matrices, []).append(t)
    diags = [pop.diags(env, N) for env in reversed(envs)]         # backward order
    T = len(diags)
    u0 = rng.standard_normal((parts, N))
    curve, draws = np.zeros(T), None
    for _ in range(passes + 1):
        records = {(g, level): np.zeros((T, len(m), N)) for g, m in groups.items()
                   for level in range(len(g))}
        u, logs = u0, np.zeros(T)
        for k, step in enumerate(diags):
            ratio = np.exp(curve[k - 1] - curve[k]) if k else (np.exp(-curve[0]) if
                                                                 curve[0] else 1.0)
            new = np.zeros_like(u)
            for t, c in enumerate(chains):
                if not c.matrices:
                    new[c.into] += step[t][0] * u[c.out]
            for g, members in groups.items():
                x = np.stack([step[t][0] * u[chains[t].out] for t in members])    # (k, N)
                for level in range(len(g)):
                    records[(g, level)][k] = x
                    if draws is None:
                        G = sig[members[0]][level] * (x @ x.T) / N
                        f = _root(G) @ rng.standard_normal((len(members), N))
                    else:
                        f = draws[(g, level)][k]
                    x = np.stack([step[t][level + 1] for t in members]) * f
                for j, t in enumerate(members):
                    new[chains[t].into] += x[j]
            u = new * ratio
            size = float(np.mean(np.sum(u * u, 0)))
            logs[k] = (curve[k] + 0.5 * np.log(size)) if size > 0 else -np.inf
        if not np.isfinite(logs).all():
            return logs
        curve = logs
        draws = {}
        for (g, level), X in records.items():
            k = X.shape[1]
            flat = X.reshape(T * k, N)
            root = _root(sig[groups[g][0]][level] * (flat @ flat.T) / N)
            draws[(g, level)] = (root @ rng.standard_normal((T * k, N))).reshape(T, k, N)
    return curve


def dynamic(cell, scales, *, units=2000, steps=400, iterations=5, passes=0, lags=None,
            seed=0):
    """(rate, moments) of dynamic mean field: the slope of the theory's log-norm curve over
    lags (start, stop) (default (steps // 8, steps - 20)), as Flow.rate fits it."""
    pop = population(cell)
    rng = np.random.default_rng(seed)
    N, T = units, steps
    params = pop.quenched(N, scales, rng)
    roots, factors = None, {f.symbol: pop.field_variance_factor(f, scales) for f in pop.fields}
    for _ in range(iterations + 1):
        envs, vectors = _run(pop, scales, params, rng, N, T, roots)
        roots = {s: _root(factors[s] * (v @ v.T) / N) for s, v in vectors.items()}
    curve = _backward(pop, scales, envs, rng, N, passes)
    start, stop = lags if lags is not None else (max(1, T // 8), max(2, T - 20))
    y = curve[start - 1:stop]
    x = np.arange(start, stop + 1, dtype=float)
    rate = float(np.polyfit(x, y, 1)[0]) if np.isfinite(y).all() else -np.inf
    last = envs[-1]
    moments = {"mean": {s.name: float(np.mean(last[s])) for s in pop.vectors},
               "mean_square": {s.name: float(np.mean(last[s] ** 2)) for s in pop.vectors},
               "autocorrelation": {str(f.vector): _lagged(vectors[f.symbol])
                                   for f in pop.fields if not f.is_input},
               "curve": curve}
    return rate, moments


def _lagged(v, lags=(0, 1, 5, 20)):
    """The population autocorrelation C(t, t - l) / C(t, t), averaged over the run's
    second half, at a few lags l."""
    T = v.shape[0]
    t = np.arange(T // 2, T)
    c0 = np.mean(v[t] ** 2)
    return {lag: float(np.mean(v[t] * v[t - lag]) / c0) if c0 > 0 else float("nan")
            for lag in lags}
