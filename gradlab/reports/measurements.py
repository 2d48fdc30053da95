"""The measurements behind a gradient-decay report, as plain numbers (data.json).

One `Setup` fixes everything a run depends on; `measure(setup, name)` returns the numbers
for one cell: decay curves of log ||d s_T / d s_{T-k}||_2 (median and quartiles over
sequences), the summary (rate, timescale, horizons, condition number, top Lyapunov
exponent, theory), the per-part paths, single-step singular values, what a loss sees,
state drift with gate saturation, and the share of gradient truncated BPTT keeps.
"""

import dataclasses
import math
import re

import numpy as np
import torch

from .. import registry, theory
from ..budget import LYAPUNOV_SPAN
from ..errors import GradlabError, derived_seed
from ..flow import CONVERGED, GROW, NO_DECAY, NOT_FINITE, OVERFLOW, ZERO, gradient_flow, \
    make_inputs, run_states, slope_stderr
from ..flow.benettin import lyapunov
from ..initialize import as_dtype, refuse_unused_scales
from ..symbolic.structure import kind

LOG10E = 1 / math.log(10)
SATURATED = 0.05      # a gate value below 0.05 or above 0.95 counts as saturated
LYAPUNOV_K = 4
THEORY_UNITS = 1024  # the dynamic mean-field population: the large-n limit a theory describes
GATED_EXACT = {"lstm": ("c", "c"), "gru": None, "gru_torch": None, "minimal_rnn": None}


@dataclasses.dataclass(frozen=True)
class Setup:
    cells: tuple
    hidden: int = 64
    inputs: int = 8
    steps: int = 100
    batch: int = 16
    init: str = "gaussian"
    weight_scale: float = 1.0
    bias_scale: float = 0.0
    input_scale: float = 1.0
    gate_bias: float = 0.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"

    def __post_init__(self):        # (the input scale also scales the inputs: kept)
        refuse_unused_scales(self.init, weight_scale=self.weight_scale,
                             bias_scale=self.bias_scale)

    def draw_options(self):
        """The init_params options every cell is drawn with (besides sizes and dtype)."""
        scales = {} if self.init == "torch" else dict(   # (torch's draw takes none; the
            weight_scale=self.weight_scale, bias_scale=self.bias_scale,   # input scale
            input_scale=self.input_scale)                     # still scales the inputs)
        return dict(init=self.init, **scales, gate_bias=self.gate_bias, seed=self.seed)

    def params(self, cell):
        return cell.init_params(self.hidden, self.inputs, **self.draw_options(),
                                dtype=as_dtype(self.dtype), device=self.device)

    def xs(self, steps=None):
        kind = "gaussian" if self.input_scale else "zeros"
        return make_inputs(kind, steps or self.steps, self.batch, self.inputs,
                           scale=self.input_scale, seed=derived_seed(self.seed, 1),
                           dtype=as_dtype(self.dtype), device=self.device)


FLOOR = -1e300    # stands in for -inf while percentiles interpolate (-inf - -inf is nan)


def _quartiles(values):
    """(median, q1, q3) over sequences (axis 0); -inf (a zero norm) stays -inf,
    nan (an overflowed state) stays nan."""
    values = np.where(values == -np.inf, FLOOR, values)
    q = np.percentile(values, [50, 25, 75], axis=0)
    q = np.where(q <= FLOOR / 2, -np.inf, q)
    return {"median": q[0], "q1": q[1], "q3": q[2]}


def states_finite(flow):
    """Did the forward run stay finite? If a state overflowed, every Jacobian after it
    (and so every product P_k, which all hold J_T) is meaningless: report nan."""
    return all(bool(torch.isfinite(s).all()) for s in flow.states)


def timescale_of(rate):
    return theory.timescale(rate)


def rate_words(rate, status=None):
    """What a table or sentence shows for a rate that is not a plain decay (None for a
    finite negative rate, whose timescale is a positive number): the status when one was
    recorded (`Flow.why`), else words read from the rate itself."""
    if isinstance(rate, (int, float)) and math.isfinite(rate) and rate < 0:
        return None
    if status:
        return status
    if rate is None or not isinstance(rate, (int, float)) or math.isnan(rate):
        return NOT_FINITE
    if rate == -math.inf:
        return ZERO
    return GROW if rate > 0 else NO_DECAY


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A cell name as reports print it: a registered name, package.module:NAME, or
# path/to/file.py:NAME whose path holds letters, digits, spaces and . / _ ~ + - = , @ %
# only: nothing that Markdown reads as structure (| ` [ ] < > * # \\ and line breaks).
CELL_NAME = re.compile(rf"{_IDENT}|{_IDENT}(\.{_IDENT})*:{_IDENT}|[\w ./~+=,@%-]*\.py:{_IDENT}")


def check_cell_name(name):
    """`name` if it is a plain identifier, package.module:NAME or path.py:NAME with a path
    of plain characters (CELL_NAME); else a one-line GradlabError."""
    if not isinstance(name, str) or not CELL_NAME.fullmatch(name):
        raise GradlabError(f"cell name {name!r} is not an identifier, package.module:NAME or "
                           "path/to/file.py:NAME (a path of letters, digits, spaces and "
                           ". / _ ~ + - = , @ % only)")
    return name


def _overflow_to_nan(values):
    """+inf in a log norm means the norm overflowed: no measurement, nan. -inf (an exactly
    zero norm) and nan stay as they are."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isposinf(values), np.nan, values)


def _runs_finite(cell, params, xs):
    """Does the forward run over xs stay finite (so Lyapunov exponents mean something)?"""
    return all(bool(torch.isfinite(s).all()) for s in run_states(cell, params, xs))


def _theory(setup, cell, params):
    """Predicted per-step rate (natural log) where theory gives one, with its name."""
    known = registry.builtin(cell)       # a user's cell may share a built-in's name
    if known and cell.name == "rnn_tanh" and setup.init == "gaussian":
        return "mean-field ½ ln χ", theory.mean_field_rate(          # x ~ N(0, s^2): R = s^2
            setup.weight_scale, input_scale=setup.input_scale, bias_scale=setup.bias_scale,
            input_power=setup.input_scale * setup.input_scale)
    if (known and cell.name in GATED_EXACT and setup.weight_scale == 0
            and setup.input_scale == 0 and setup.bias_scale == 0):
        return "exact ln σ(gate bias)", theory.gate_rate(setup.gate_bias)
    if setup.init == "gaussian" and math.isfinite(setup.weight_scale * setup.input_scale):
        from ..meanfield import mean_field          # any declared cell, from its Jacobian
        T = setup.steps
        try:       # a cell mean field cannot read has no theory; an overflowing one: nan
            predicted = mean_field(cell, weight_scale=setup.weight_scale,
                                   bias_scale=setup.bias_scale, input_scale=setup.input_scale,
                                   input_power=setup.input_scale * setup.input_scale,
                                   gate_bias=setup.gate_bias, method="dynamic",
                                   units=THEORY_UNITS, steps=T, inputs=setup.inputs,
                                   lags=(max(1, T // 4), T), seed=setup.seed).rate
        except GradlabError:
            return None, None
        if math.isnan(predicted) or predicted == math.inf:     # (overflow: no theory)
            return None, None
        return "dynamic mean field", predicted          # -inf: a zero product, as measured
    return None, None


def _model_xs(model, xs):
    """The inputs as the model's cell reads them: a direction of a bidirectional checkpoint
    reads its own sequence (`gradlab.checkpoint.Model.inputs`)."""
    inputs = getattr(model, "inputs", None)
    return xs if inputs is None else inputs(xs)


def measure(setup, name, model=None):
    """Every number the report shows for one cell; `model` = (cell, params) measures those
    (a checkpoint, `gradlab.checkpoint`) under the label `name`, with no theory line."""
    cell = registry.cell(name) if model is None else model[0]
    params = setup.params(cell) if model is None else model[1]
    xs = _model_xs(model, setup.xs())
    module, keep = getattr(model, "module", None), _kept(model)
    norms = ("spectral", "frobenius") + (("min_singular",) if keep is None else ())
    flow = (gradient_flow(cell, params, xs, norms=norms) if module is None else
            gradient_flow(module, setup.xs(), reverse=model.reverse, norms=norms))
    T, mid = setup.steps, max(1, setup.steps // 2)
    finite = states_finite(flow)
    nan = np.full((setup.batch, T), np.nan)
    log_spec = _overflow_to_nan(flow.log_norm("spectral")) if finite else nan
    out = {"cell": name, "state": list(cell.state_names), "lags": flow.lags,
           "finite": finite, "decay_log10": _quartiles(log_spec * LOG10E)}
    rate, status = (flow.rate(), flow.why()) if finite else (math.nan, OVERFLOW)
    # a curve with nan in it (an overflowed norm) has no horizon either
    measured = finite and not np.isnan(log_spec).any()
    long_xs = _model_xs(model, setup.xs(LYAPUNOV_SPAN * T))
    lyap, lyap_err = np.full(min(LYAPUNOV_K, flow.S), np.nan), math.nan   # (k capped at S)
    if _runs_finite(cell, params, long_xs):
        result = (lyapunov(cell, params, long_xs, k=LYAPUNOV_K, discard=T) if module is None
                  else lyapunov(module, setup.xs(LYAPUNOV_SPAN * T), k=LYAPUNOV_K, discard=T,
                                reverse=model.reverse))
        lyap, lyap_err = result.mean, float(result.stderr[0])
    label, predicted = _theory(setup, cell, params) if model is None else (None, None)
    with np.errstate(invalid="ignore", over="ignore"):
        conds = (nan[:, 0] if not finite else flow.log_condition(mid) if keep is None
                 else _log_condition(cell, params, flow, mid, keep))
        cond = float(np.median(conds)) * LOG10E if not np.isnan(conds).all() else math.nan
    xi = theory.timescale(rate)
    out["summary"] = {
        "rate": rate, "timescale": xi, "status": status,
        # spread of the rate over sequences, and whether T is long enough for xi
        "rate_stderr": slope_stderr(log_spec) if measured else math.nan,
        # the mean log norm is -inf where one sequence's product is: how many were
        "zero_sequences": int(np.isneginf(log_spec).any(axis=1).sum()) if finite else 0,
        "sequences": int(log_spec.shape[0]),
        "converged": bool(rate < 0 and CONVERGED * xi <= T) if status is None else None,
        "horizon_1e-3": flow.horizon(1e-3) if measured else math.nan,
        "horizon_1e-6": flow.horizon(1e-6) if measured else math.nan,
        "log10_condition_mid": cond, "condition_lag": mid,
        "lyapunov": lyap, "lyapunov_stderr": lyap_err, "theory": predicted, "theory_label": label,
        # what a mean-field theory predicts: the rate of the mean squared gradient, i.e. of
        # the Frobenius norm, which over a finite T falls faster than the spectral norm
        "rate_frobenius": flow.rate("frobenius") if finite else math.nan,
        "theory_timescale": None if predicted is None else theory.timescale(predicted)}
    if registry.builtin(cell) and cell.name in theory.VANILLA_GAMMA:  # every vanilla cell
        out["pascanu_rate"] = theory.pascanu_rate(params["W"], theory.VANILLA_GAMMA[cell.name])
    if len(cell.state_names) > 1:
        out["paths"] = {f"{a}->{b}": _quartiles((_overflow_to_nan(flow.block_log_norm(b, a))
                                                 if finite else nan) * LOG10E)["median"]
                        for a in cell.state_names for b in cell.state_names}
        # each block's structure, read from SymPy: what the caption may say of a path
        blocks = cell.jacobian_blocks("state")
        out["path_kinds"] = {f"{b}->{a}": kind(blocks[i][j], coupled=False)
                             for i, a in enumerate(cell.state_names)
                             for j, b in enumerate(cell.state_names)}
    out["spectrum"] = _spectrum(cell, params, flow, keep)
    loss = (_overflow_to_nan(flow.loss_grad_norms(log=True)["input"]) * LOG10E if finite
            else nan)
    out["loss_input_log10"] = _quartiles(loss)
    out["drift"] = _drift(cell, params, flow, keep)
    ks = sorted({int(k) for k in np.unique(np.geomspace(1, T, num=min(T, 24)).round())})
    out["bptt"] = {"K": ks, "fraction": [flow.bptt_fraction(k) if finite else math.nan
                                         for k in ks]}
    return out


def _kept(model):
    """The state entries that are the model's own, (S,) bool, or None for all of them: a
    projected LSTM's h is padded with zeros that no product, spectrum or RMS may count."""
    padding = getattr(model, "padding", None)
    return None if padding is None else ~padding


def _restricted(J, keep):
    return J if keep is None else J[:, keep][:, :, keep]


def _log_condition(cell, params, flow, k, keep):
    """ln cond(P_k) on the kept entries, (B,): P_k formed step by step (J_T ... J_(T-k+1)),
    for a model whose padded entries make every product singular (no inverse chain)."""
    J = cell.jacobian_fn("state")
    T = flow.xs.shape[0]
    P = None
    for t in range(T, T - k, -1):       # J_t at (s_(t-1), x_t)
        Jt = _restricted(J(params, tuple(s[t - 1] for s in flow.states), flow.xs[t - 1])
                         .to(torch.float64), keep)
        P = Jt if P is None else P @ Jt
    if not bool(torch.isfinite(P).all()):
        return np.full(P.shape[0], np.nan)
    sv = torch.linalg.svdvals(P)
    return (torch.log(sv[:, 0]) - torch.log(sv[:, -1])).cpu().numpy()


def _spectrum(cell, params, flow, keep=None):
    """Singular values of the last single-step Jacobian J_T on the kept entries, sorted,
    median over sequences; those below numpy's rank tolerance, S eps sigma_1 (S the
    state size), as 0: rounding alone (a rank-deficient J: lstm_nog, lstm_fgr, rnn_relu's
    dead units) made them, whose digits moved with the CPU's kernels (4.24161539e-16
    with AVX-512, 4.72280103e-16 with AVX2: 40 such numbers in `--cells all`)."""
    state = tuple(s[-2] for s in flow.states)
    J = _restricted(cell.jacobian_fn("state")(params, state, flow.xs[-1]).to(torch.float64),
                    keep)
    if not bool(torch.isfinite(J).all()):
        return np.full(J.shape[-1], np.nan)
    try:
        sv = torch.linalg.svdvals(J)
    except torch.linalg.LinAlgError:            # did not converge: no numbers, no crash
        return np.full(J.shape[-1], np.nan)
    tolerance = sv[:, :1] * (J.shape[-1] * torch.finfo(sv.dtype).eps)   # (no overflow)
    return median(torch.where(sv < tolerance, 0.0, sv).cpu().numpy(), axis=0)


def median(a, axis):
    """np.median of numbers >= 0 (nan where any is nan or inf), without overflow: numpy
    averages the two middle values of an even count as (lo + hi) / 2, inf for two near
    1e308; lo + (hi - lo) / 2 is the same number."""
    a = np.sort(np.where(np.isfinite(a), a, np.nan), axis=axis)       # nan sorts last
    count = a.shape[axis]
    lo, hi = np.take(a, (count - 1) // 2, axis=axis), np.take(a, count // 2, axis=axis)
    return np.where(np.isnan(a).any(axis=axis), np.nan, lo + (hi - lo) / 2)


def _drift(cell, params, flow, keep=None):
    """RMS of the state (its kept entries) over time and the share of gate values that
    are saturated."""
    T1, B = flow.states[0].shape[:2]
    state = torch.cat(flow.states, -1).to(torch.float64)              # (T+1, B, S)
    state = state if keep is None else state[..., keep]
    ok = torch.isfinite(state).all(-1)                               # (T+1, B)
    # an overflowed state (or one whose square overflows) has no RMS: nan, not inf
    rms = torch.sqrt((state ** 2).mean(-1))
    rms = torch.where(ok & torch.isfinite(rms), rms, math.nan).cpu().numpy()
    out = {"rms": median(rms, axis=1)}
    if cell.gates:
        flat = tuple(s[:-1].reshape((T1 - 1) * B, -1) for s in flow.states)
        values = cell.values_fn()(params, flat, flow.xs.reshape((T1 - 1) * B, -1))
        gates = torch.stack([values[g] for g in cell.gates])         # (G, T*B, n)
        sat = ((gates < SATURATED) | (gates > 1 - SATURATED)).to(torch.float64)
        share = sat.reshape(len(cell.gates), T1 - 1, -1).mean((0, 2))
        # gates read at an overflowed state (nan compares as unsaturated) are no data
        share = torch.where(ok[:-1].all(-1), share, math.nan)
        out["saturation"] = share.cpu().numpy()
    return out
