"""Annealed mean field: the standard theory, for any declared cell.

Forward: a population of N units (quenched biases and peepholes, each unit's state kept
from step to step) is driven by fields that are fresh Gaussians at every step, of
variance sw^2 E[v^2] (recurrent, v the population's vector at that step) or sv^2 R
(input): the statistics settle on the fixed point of the forward dynamics.

Backward: a gradient u (one entry per unit and state part) goes through the transposed
Jacobian, term by term (`population.Chain`): c diag(D0) M1 diag(D1) ... Mk diag(Dk) maps
u_out to D_k M_k^T ... M_1^T (D0 u_out). With every M a fresh Gaussian (the gradient-
independence assumption) and u independent of this step's gates, the second moments
S[a, b] = E[u_a u_b] (jointly over state parts: diagonal terms of several blocks act on
one unit together) obey one linear map,

    S'[b_t, b_s] += prod_levels( E[D_t^l D_s^l] ) (prod sigma^2) S[a_t, a_s]

over pairs of terms (t, s) that are both diagonal, or both carry the same sequence of
weights (the same M applied to two vectors gives correlated fields; different M
independent ones). The E[.] are population means, averaged over steps at the fixed
point. (1/n)||P_k||_F^2 grows as rho(L)^k: the rate is (1/2) ln rho(L).
For the vanilla RNN the one term diag(tanh') W gives rho = sw^2 E[tanh'^2] = chi.
"""

import math

import numpy as np

from .. import progress
from ..errors import check_seed, integer
from .population import normal, population, start
from .sampling import Sampled, refuse_undersampled


def forward_fields(pop, scales, rng, N):
    """fields_for(field, env) for `Population.step`: fresh Gaussians of the annealed
    variance; records each field's variance in `fields_for.variance`."""
    factors = {f.symbol: pop.field_variance_factor(f, scales) for f in pop.fields}

    def fields_for(field, env):
        if field.is_input:
            var = factors[field.symbol]
        else:
            v = pop.vector(field, env, N)
            var = factors[field.symbol] * float(np.mean(v * v))
        fields_for.variance[field.symbol.name] = var
        return normal(rng, N) * np.sqrt(var)

    fields_for.variance = {}
    return fields_for


def pairs(pop):
    """(t, s) pairs of chains whose products correlate: both diagonal, or the same
    sequence of weights."""
    chains = pop.chains
    return [(t, s) for t in range(len(chains)) for s in range(len(chains))
            if chains[t].matrices == chains[s].matrices]


def annealed(cell, scales, *, units=20000, burn_in=100, steps=300, seed=0):
    """(rate, moments) of the annealed theory: `units` >= 2 units, `burn_in` >= 0 steps to
    the fixed point, then `steps` >= 1 steps averaged; nan where a variance overflows."""
    N = integer(units, "units", 2)
    burn_in, steps = integer(burn_in, "burn_in", 0), integer(steps, "steps", 1)
    seed = check_seed(seed)
    pop = population(cell)
    rng = np.random.default_rng(seed)
    params = pop.quenched(N, scales, rng)
    state = start(cell.state_names, N)
    fields_for = forward_fields(pop, scales, rng, N)
    links = pairs(pop)
    coeff = np.zeros(len(links))
    sigma2 = [np.prod([pop.weight_variance(k, scales) for k in c.matrices])
              for c in pop.chains]
    sums, variances, sampled = {}, {}, Sampled(pop, [scales], 1, N)
    total = burn_in + steps
    for step in range(total):
        env = pop.step(state, params, fields_for, N)
        state = pop.new_state(env)
        if progress.due(step, total):
            progress.advance("annealed mean field", step + 1, total)
        if step < burn_in:
            continue
        diags = pop.diags(env, N)
        sampled.add(diags)
        for k, (t, s) in enumerate(links):     # sums here, divided once below: 120
            value = sigma2[t]                   # terms of 1/120 summed short of 1, and
            for a, b in zip(diags[t], diags[s]):     # an exact rate 0 became -5.6e-16
                value *= float(np.mean(a * b))
            coeff[k] += value
        for sym in pop.vectors:
            v = env[sym]
            m1, m2 = sums.get(sym.name, (0.0, 0.0))
            sums[sym.name] = (m1 + float(np.mean(v)), m2 + float(np.mean(v * v)))
        for name, var in fields_for.variance.items():
            variances[name] = variances.get(name, 0.0) + var
    coeff /= steps
    sums = {name: (m1 / steps, m2 / steps) for name, (m1, m2) in sums.items()}
    variances = {name: var / steps for name, var in variances.items()}
    L = transfer(pop, links, coeff, len(cell.state_names))
    finite = np.isfinite(coeff).all() and all(np.isfinite(v).all() for v in sums.values()) \
        and pop.variances_finite(scales)
    if not finite:     # the state or a variance overflowed: no statistics, no rate
        rho = math.nan
    else:
        rho = float(np.max(np.abs(np.linalg.eigvals(L)))) if L.size else 0.0
    if finite:
        refuse_undersampled(sampled.thin()[0], sampled.fewest()[0], N, scales, "annealed")
    rate = math.nan if math.isnan(rho) else 0.5 * np.log(rho) if rho > 0 else -np.inf
    moments = {"mean": {k: v[0] for k, v in sums.items()},
               "mean_square": {k: v[1] for k, v in sums.items()},
               "field_variance": _field_names(pop, variances),
               "rho": rho}
    return float(rate), moments


def transfer(pop, links, coeff, parts):
    """The linear map S -> S' on vec(S) (parts^2 x parts^2), backward in time."""
    L = np.zeros((parts * parts, parts * parts))
    for (t, s), c in zip(links, coeff):
        ct, cs = pop.chains[t], pop.chains[s]
        # term t maps u[out] (time t) to part `into` (time t-1)
        L[ct.into * parts + cs.into, ct.out * parts + cs.out] += c
    return L


def _field_names(pop, variances):
    """Field variances keyed by what they multiply: 'W_f @ h' and so on."""
    out = {}
    for f in pop.fields:
        label = " + ".join(w for w, _ in f.weights) + f" @ {f.vector}"
        if f.symbol.name in variances:
            out[label] = variances[f.symbol.name]
    return out
