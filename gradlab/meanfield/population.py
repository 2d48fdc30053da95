"""A cell's declaration, read for mean-field theory: units as a population.

At large n every product `M @ v` of a Gaussian weight M (init_params' gaussian scheme)
with a vector v is, unit by unit, a Gaussian *field* of variance

    recurrent M (n x n, entries N(0, sw^2 / n)):  sw^2 * mean over units of v^2
    input M     (n x m, entries N(0, sv^2 / m)):  sv^2 * R,  R = |x|^2 / m

so each let of the declaration becomes an elementwise function of the state parts, the
per-unit parameters (biases, peepholes: quenched, one draw per unit) and these fields.
`Population` holds that rewriting, lowered with gradlab's own array printer, so the
units of a population of N evaluate exactly as the declaration says.

The state Jacobian is read the same way from its SymPy terms (`lowering.lower.
block_terms`): each term of block (a, b) is c diag(D0) M1 diag(D1) ... Mk diag(Dk), a
*chain*; k = 0 is a diagonal term, a unit's own gain. Nothing here is written per cell.
"""

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.matrices.expressions.diagonal import DiagMatrix

from ..errors import GradlabError, real
from ..symbolic.printing import text
from ..lowering.backends import backend
from ..lowering.codeprinter import ArrayPrinter, identifier
from ..lowering.lower import block_terms


@dataclass(frozen=True)
class Scales:
    """The init_params options the theory reads (gaussian scheme), and R = |x|^2 / m."""
    weight_scale: float = 1.0
    bias_scale: float = 0.0
    input_scale: float = 1.0
    gate_bias: float = 0.0
    input_power: float = 1.0

    def __post_init__(self):      # each a finite float; every one but the gate bias >= 0
        for name in ("weight_scale", "bias_scale", "input_scale", "gate_bias", "input_power"):
            low = None if name == "gate_bias" else 0.0
            object.__setattr__(self, name, real(getattr(self, name), name, low))


@dataclass
class Field:
    """One `M @ v` of the declaration: its stand-in symbol, v, and its weights."""
    symbol: MatrixSymbol
    vector: sp.Basic            # v (an n-vector expression, or the input x)
    weights: tuple              # ((name, coefficient), ...): a sum of weights times v
    is_input: bool


@dataclass
class Chain:
    """One term c diag(D0) M1 diag(D1) ... Mk diag(Dk) of block (out, into)."""
    out: int
    into: int
    diags: tuple                # k + 1 vector expressions (D0 carries the coefficient)
    matrices: tuple             # k keys (name, transposed)


def _is_weight(cell, m):
    return isinstance(m, MatrixSymbol) and str(m) in cell.param_shapes \
        and m.shape[1] != 1


def _has_weight(cell, m):
    return m.shape[1] != 1 and any(_is_weight(cell, s) for s in m.atoms(MatrixSymbol))


def _weights(cell, matrix):
    """((name, coefficient), ...) of a matrix that is a weight, its transpose, or a sum of
    those with numeric coefficients; `None` for a matrix gradlab cannot read as fields."""
    parts = matrix.args if isinstance(matrix, MatAdd) else (matrix,)
    found = []
    for part in parts:
        coeff, mats = part.as_coeff_matrices() if isinstance(part, MatMul) else (1, [part])
        if len(mats) != 1:
            return None
        m = mats[0]
        m = m.arg if isinstance(m, Transpose) else m
        if not _is_weight(cell, m) or not sp.sympify(coeff).is_number:
            return None
        found.append((str(m), float(coeff)))
    return tuple(found)


class Population:
    """A cell rewritten for mean field: lets as elementwise functions of fields."""

    def __init__(self, cell):
        self.cell = cell
        self.fields, lets, self._memo = [], {}, {}
        for sym, expr in cell.lets.items():
            lets[sym] = self._rewrite(expr)
        self.lets = lets
        self.vectors = [s for s in lets if isinstance(s, MatrixSymbol)]
        self.scalars = [s for s in cell.param_symbols if not isinstance(s, MatrixSymbol)]
        self.unit_params = [s for s in cell.param_symbols
                            if isinstance(s, MatrixSymbol) and s.shape[1] == 1]
        state = self.state_symbols = cell.state_symbols   # the same objects every step
        self.outputs = tuple(cell.outputs)
        args = [*state, *self.unit_params, *self.scalars, *(f.symbol for f in self.fields)]
        self._names = {s: identifier(s.name) for s in (*args, *lets)}
        self._args = args
        # fields are needed by the first let that reads them
        self.field_of_let = {s: [f for f in self.fields if f.symbol in expr.free_symbols]
                             for s, expr in lets.items()}
        self._let_fns = {s: self._compile(expr, extra=list(lets)) for s, expr in lets.items()}
        self._vector_fns = {f.symbol: self._compile(f.vector, extra=list(lets))
                            for f in self.fields if not f.is_input}
        self.chains = self._chains()
        keys = {key for c in self.chains for key in c.matrices}
        both = sorted(name for name, transposed in keys if not transposed and (name, True) in keys)
        if both:              # W - W.T, W + W.T: fields of W and of W^T are not independent
            raise GradlabError(f"mean field cannot read cell '{cell.name}': it reads "
                               f"{both[0]} and {both[0]}ᵀ together (as in W - Wᵀ), whose "
                               "fields are correlated, not the independent ones the theory "
                               "draws (W - Wᵀ keeps a norm the theory would see decay)")
        self._diag_fns = [[self._compile(d, extra=list(lets)) for d in c.diags]
                          for c in self.chains]

    # -- reading the declaration ---------------------------------------------------------
    def _rewrite(self, expr, new_fields=True):
        """expr with every weight product M @ v replaced by a field symbol (the same symbol
        wherever the same product recurs, e.g. in a Jacobian term)."""
        cell = self.cell
        if expr in self._memo:
            return self._memo[expr]
        if isinstance(expr, MatMul):
            coeff, mats = expr.as_coeff_matrices()
            if any(_has_weight(cell, m) for m in mats[:-1]):
                if len(mats) != 2:
                    raise GradlabError(f"mean field: cell '{cell.name}' multiplies "
                                       f"{len(mats)} matrices in {text(expr)}; only M @ v "
                                       "is read")
                if not new_fields:
                    raise GradlabError(
                        f"mean field cannot read cell '{cell.name}': its Jacobian applies "
                        f"{text(MatMul(*mats))} on its own, which no equation computes (a "
                        "combination of weights such as W - W.T is read in an equation, "
                        "not term by term in its Jacobian)")
                inner = MatMul(*mats) if coeff != 1 else expr
                if inner not in self._memo:
                    self._memo[inner] = self._field(mats[0], self._rewrite(mats[1]), expr)
                return coeff * self._memo[inner]
        if isinstance(expr, (MatrixSymbol, sp.Symbol)) or not expr.args:
            return expr
        args = [self._rewrite(a, new_fields) if isinstance(a, sp.Basic) else a
                for a in expr.args]
        return expr.func(*args) if args != list(expr.args) else expr

    def _field(self, matrix, vector, expr):
        cell = self.cell
        identity = []
        if isinstance(matrix, MatAdd):       # (W - W.T - gamma I) @ h: I-parts stay exact
            keep = []
            for part in matrix.args:
                coeff, mats = part.as_coeff_matrices() if isinstance(part, MatMul) \
                    else (1, [part])
                (identity if mats and isinstance(mats[0], Identity) else keep).append(
                    (coeff, part))
            matrix = MatAdd(*(p for _, p in keep)) if len(keep) > 1 else keep[0][1]
        weights = _weights(cell, matrix)
        if weights is None:
            raise GradlabError(f"mean field: cannot read {text(expr)} in cell '{cell.name}' as a "
                               "Gaussian field (a weight, its transpose, or a numeric "
                               "combination of them, times a vector)")
        is_input = vector == cell.input_symbol
        if not is_input and cell.input_symbol in vector.free_symbols:
            raise GradlabError(f"mean field: cell '{cell.name}' reads the input through "
                               f"{text(expr)}; only U @ x is read")
        shapes = {cell.param_shapes[w][1] for w, _ in weights}
        if is_input != (shapes == {cell.input_symbol.shape[0]}):
            raise GradlabError(f"mean field: {text(expr)} in cell '{cell.name}' mixes input and "
                               "recurrent weights")
        symbol = MatrixSymbol(f"phi{len(self.fields)}", self.cell.state_symbols[0].shape[0], 1)
        self.fields.append(Field(symbol, vector, weights, is_input))
        out = symbol
        for coeff, _ in identity:
            out = out + coeff * vector
        return out

    def _chains(self):
        cell, chains = self.cell, []
        for i, row in enumerate(cell.jacobian_blocks("state")):
            for j, block in enumerate(row):
                for term in block_terms(block):
                    chain = self._chain(i, j, term)
                    if chain is not None:
                        chains.append(chain)
        return chains

    def _chain(self, out, into, term):
        n = self.cell.state_symbols[0].shape[0]
        coeff, mats = term.as_coeff_matrices() if isinstance(term, MatMul) else (1, [term])
        diags, matrices, current = [], [], []
        for m in mats:
            if isinstance(m, DiagMatrix):
                current.append(m.args[0])
            elif isinstance(m, Identity):
                continue
            elif isinstance(m, OneMatrix) or (m.shape[1] == 1 and m.shape[0] != 1) \
                    or m.shape[0] == 1:
                return None    # a rank-one coupling through a mean: O(1/sqrt(n)), dropped
            else:
                base = m.arg if isinstance(m, Transpose) else m
                key = (str(base), isinstance(m, Transpose))
                if not _is_weight(self.cell, base):
                    raise GradlabError(f"mean field: cannot read the Jacobian term {term} "
                                       f"of cell '{self.cell.name}'")
                diags.append(current)
                matrices.append(key)
                current = []
        diags.append(current)
        vectors = [self._rewrite(sp.hadamard_product(*d), new_fields=False) if len(d) > 1
                   else self._rewrite(d[0], new_fields=False) if d else OneMatrix(n, 1)
                   for d in diags]
        if coeff != 1:
            vectors[0] = coeff * vectors[0]
        return Chain(out, into, tuple(vectors), tuple(matrices))

    def _compile(self, expr, extra):
        names = dict(self._names)
        printer = ArrayPrinter(names)
        order = [*self._args, *extra]
        code = f"lambda n, m, like, {', '.join(names[a] for a in order)}: " \
               f"{printer.definition(expr) if isinstance(expr, sp.Basic) else expr}"
        return eval(code, {"xp": backend("numpy")}), order

    # -- numbers -------------------------------------------------------------------------
    def weight_variance(self, key, scales):
        """sw^2 for a recurrent weight, sv^2 R for an input weight, per unit coefficient.
        Products, not powers: beyond float64 they are inf (float ** 2 raises
        OverflowError), and `variances_finite` says the theory has no rate there."""
        name = key[0] if isinstance(key, tuple) else key
        if self.cell.param_shapes[name][1] == self.cell.input_symbol.shape[0]:
            return scales.input_scale * scales.input_scale * scales.input_power
        return scales.weight_scale * scales.weight_scale

    def field_variance_factor(self, field, scales):
        return sum(c * c * self.weight_variance(w, scales) for w, c in field.weights)

    def variances_finite(self, scales):
        """Whether every variance the theory multiplies by (each weight's, each field's,
        each chain's product) is a float64: where one overflows (a scale past ~1e154) the
        theory has no rate, nan, as for a population whose state overflows."""
        chains = [math.prod(self.weight_variance(k, scales) for k in c.matrices)
                  for c in self.chains]
        fields = [self.field_variance_factor(f, scales) for f in self.fields]
        return all(math.isfinite(v) for v in chains + fields)

    def quenched(self, N, scales, rng):
        """Per-unit draws of the vector parameters (biases, peepholes) and the scalars."""
        values = {}
        gate = self.cell.gate_bias or ""
        sign, gate = (-1.0, gate[1:]) if gate.startswith("-") else (1.0, gate)
        for s in self.unit_params:
            std = scales.bias_scale if s.name.startswith("b") else scales.weight_scale
            v = normal(rng, N) * std
            if s.name == gate:
                v = v + sign * scales.gate_bias
            values[s] = v
        for s in self.scalars:
            values[s] = float(rng.standard_normal() * scales.weight_scale)
        return values

    def evaluate(self, fn_order, env, N):
        fn, order = fn_order
        like = np.zeros(1)
        out = fn(N, 1, like, *(env.get(a, _ZERO) for a in order))
        return np.broadcast_to(out, (N, 1)) if np.ndim(out) else np.full((N, 1), float(out))

    def step(self, state, params, fields_for, N):
        """One step of every unit: env of every let, given the old state (tuple of (N, 1))
        and `fields_for(field, env)` -> (N, 1) samples of each field."""
        env = dict(params)
        env.update(zip(self.state_symbols, state))
        for sym in self.lets:
            for f in self.field_of_let[sym]:
                env[f.symbol] = fields_for(f, env)
            env[sym] = self.evaluate(self._let_fns[sym], env, N)
        return env

    def vector(self, field, env, N):
        """The population's v of a recurrent field, (N, 1)."""
        return self.evaluate(self._vector_fns[field.symbol], env, N)

    def diags(self, env, N):
        """Per chain, its diagonal vectors evaluated at this step: [[(N,), ...], ...]."""
        return [[self.evaluate(fn, env, N)[:, 0] for fn in fns] for fns in self._diag_fns]

    def new_state(self, env):
        return tuple(env[s] for s in self.outputs)


_ZERO = None


@functools.lru_cache(maxsize=8)
def _quantiles(N):
    from statistics import NormalDist
    inv = NormalDist().inv_cdf
    return np.array([inv((k + 0.5) / N) for k in range(N)])


def start(names, N):
    """The population's state before its first step: 1 in every part at every unit. Zero
    is a fixed point of a cell with no input and no bias (h = tanh(W 0) = 0 for ever),
    unstable where sw > 1; a population started there never left it and gave the rate of
    h = 0, ln sw, instead of the nonzero fixed point q* the standard theory iterates to
    (rnn_tanh at sw = 1.2: 0.182 against 0.0165, `theory.mean_field`). With an input or a
    bias the vanilla RNN, the LSTM and the GRU forget the start within the burn-in (their
    rates as from a zero start to 1e-12); the peephole variants, whose cells settle
    slowly, do not quite (lstm_noaf's rate moves by 2e-3, and still drifts with the
    burn-in from either start). (The dynamic theory follows a network from the zero
    state, as a measured flow starts by default.)"""
    return tuple(np.ones((N, 1)) for _ in names)


def normal(rng, N):
    """N standard normal draws, stratified: the N quantiles (k + 1/2) / N of N(0, 1) in a
    random order, so population means of smooth functions are exact to O(1/N^2) rather
    than O(1/sqrt(N)) (what makes the vanilla closed form come out to 1e-4)."""
    return rng.permutation(_quantiles(N))[:, None]


@contextlib.contextmanager
def overflow_is_nan():
    """A population whose statistics overflow (a cell whose state explodes at this
    initialisation) has no theory: its rate comes out nan, with no floating-point warning
    (a warning a caller, or the CLI, would have to swallow)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@functools.lru_cache(maxsize=None)
def population(cell):
    """The (cached) `Population` of a cell."""
    return Population(cell)
