"""Whether a population samples its theory's expectations, or a handful of units.

Every expectation a theory multiplies into a gradient's rate, E[D^2] for a diagonal factor
D of a Jacobian chain (tanh', a gate's sigma', ...), is a mean over the population's units.
At a large weight scale the fields are so wide that almost every unit saturates (D = 0 to
working precision): the mean then rests on the few units whose field happened to land in
the narrow unsaturated band, and is noise. At 20,000 units the annealed theory of the
vanilla RNN follows the closed form to weight scale 1e4 (rate 4.29 against 4.29) and is
wrong past it (-1.03 at 1e5, -inf at 1e6, where gradients grow: 5.44 and 6.59).

The count of units a mean rests on is the participation ratio (sum x)^2 / sum x^2 of
x = D^2 over the unit draws: their number where all weigh alike, 1 where one carries it.
At 20,000 units and 300 steps the annealed theory rests on ~4,500 draws at weight scale
1e3 and ~600 at 1e4 (both right to 0.5 %); at 1e5 on 4, at 1e6 on none.
"""

import math

import numpy as np

from ..errors import GradlabError

WIDE = 10.0           # a field this wide (weight, bias or input scale) can saturate units
MIN_UNITS = 50        # fewer unit draws than this carry an expectation: noise, where they
SHARE = 0.05          # are also under this share of all the draws (a small population
                      # whose units all take part is as good as it can be)
DOMINANT = 0.01       # a chain counts if it carries at least this share of the gain


class Undersampled(GradlabError):
    """A theory whose expectations rest on too few of its sampled units to mean anything."""


class Sampled:
    """The participation of units in each chain's expectations, pooled over the steps
    `add` is given (fresh fields at every step, annealed, make each step a new draw),
    for G groups of N units (one group per Scales in `scales`)."""

    def __init__(self, pop, scales, G, N):
        self.pop, self.G, self.N, self.steps = pop, G, N, 0
        self.draws = 0
        # only fields this wide saturate units to a derivative of 0 to working precision;
        # below it a zero is exact (a zero state with no input: c = 0 in c f (1 - f))
        self.wide = np.array([max(s.weight_scale, s.bias_scale,
                                  s.input_scale * math.sqrt(s.input_power)) > WIDE
                              for s in scales])
        chains = pop.chains
        self.var = np.array([[float(np.prod([pop.weight_variance(k, s) for k in c.matrices]))
                              for c in chains] for s in scales])          # (G, chains)
        self.gain = np.zeros((G, len(chains)))
        self.s1 = [[np.zeros(G) for _ in c.diags] for c in chains]
        self.s2 = [[np.zeros(G) for _ in c.diags] for c in chains]

    def add(self, step_diags):
        """One step's diagonal factors (`Population.diags` over G * N units)."""
        for c, levels in enumerate(step_diags):
            product = np.ones(self.G)
            for k, level in enumerate(levels):
                x = np.asarray(level, dtype=float).reshape(self.G, self.N) ** 2
                x = np.where(np.isfinite(x), x, 0.0)
                self.s1[c][k] += x.sum(1)
                self.s2[c][k] += (x * x).sum(1)
                product *= x.mean(1)
            self.gain[:, c] += self.var[:, c] * product
        self.steps += 1
        self.draws += self.N

    def fewest(self):
        """Per group, the fewest unit draws (pooled over steps) that a chain carrying at
        least DOMINANT of the gain, or any chain through weights, rests on (0: a level
        zero at every draw, all saturated); inf where there is nothing to sample."""
        chains = len(self.s1)
        if not self.steps or not chains:           # (no chain: s' does not read s)
            return np.full(self.G, np.inf)
        units = np.full((self.G, chains), np.inf)
        for c in range(chains):
            for s1, s2 in zip(self.s1[c], self.s2[c]):
                ratio = np.where(s2 > 0, s1 * s1 / np.where(s2 > 0, s2, 1.0), 0.0)
                units[:, c] = np.minimum(units[:, c], ratio)
        gain = self.gain / self.steps
        top = gain.max(1, keepdims=True)
        dominant = (gain >= DOMINANT * top) & (top > 0)
        weighed = np.where(dominant, units, np.inf).min(1)
        # and every chain through weights, however small its sampled gain: a level that
        # rests on a few draws (or is zero at all) is not a closed gate (a diagonal
        # chain's zero is exact) but fields beyond the unsaturated band, and its true
        # gain, sw^2 times a mean the draws missed, may be the largest of all
        through = np.array([bool(c.matrices) for c in self.pop.chains]) & (self.var > 0)
        unsampled = np.where(through, units, np.inf).min(1)
        return np.minimum(weighed, unsampled)

    def thin(self):
        """Per group, whether its expectations rest on too few draws (`fewest`): under
        MIN_UNITS, and under SHARE of all the draws taken, where its fields are WIDE
        enough to saturate units (a heavy tail of a narrow field, a gate bias of 12 in
        sigma'(12 + 3 z), is a negligible term estimated roughly, not saturation)."""
        return self.wide & (self.fewest() < min(MIN_UNITS, SHARE * self.draws))


def refuse_undersampled(thin, count, N, scales, method):
    """Raise `Undersampled` where a group is `thin` (`Sampled.thin`): its expectations
    rest on `count` unit draws of its N units over the steps."""
    if thin:
        raise Undersampled(
            f"mean_field({method}): at weight_scale={scales.weight_scale:g} the theory's "
            f"expectations rest on {count:.0f} unit draws (of {N} units, over its steps; "
            f"the rest saturate): its rate would be noise; give "
            "more units= (about in proportion to the weight scale) or a smaller scale")
