"""Verification: the lowered derivation against torch autograd, numbers against numbers.

For one cell, at random sizes, every check below compares two independent computations and
reports the max relative error  max|a - b| / max|b|:

    step        lowered step              vs the hand-written oracle (gradlab.verification.oracles)
    J state     lowered d s'/d s          vs torch.func.jacrev of the oracle
    J input     lowered d s'/d x          vs torch.func.jacrev of the oracle
    J state     lowered d s'/d s          vs jacrev of the lowered step (any cell, user cells too)
    J input     lowered d s'/d x          vs jacrev of the lowered step
    torch.nn    step and both Jacobians   vs nn.RNNCell / nn.LSTMCell / nn.GRUCell
    numpy       numpy backend             vs torch backend
    flow        gradient_flow's own path  vs the lowered step and d s'/d s (its compacted
                (hoisted step, blocks)       blocks and its step split around the inputs
                                             are lowered apart: `flow_path`)

Only the oracle and torch.nn checks are independent of the declared equations: jacrev of
the lowered step and the numpy backend are computed from the same declaration, so for a
user cell (no oracle) they prove the chain rule and the lowering, not that the equations
are the intended ones. `Check.independent` says which is which, `independence_note` says
it in words, and `summarize` counts a nan or inf error as a failure, never as a pass.
"""

import dataclasses
import math

import numpy as np
import sympy as sp
import torch
from torch.func import jacrev, vmap

from .. import budget, registry
from ..batching import fallback_quiet
from ..device import exact_float32, resolve
from ..errors import GradlabError, check_seed, derived_seed, integer
from ..initialize import as_dtype
from ..interop import MODULES, to_torch
from ..symbolic.activations import BUILTIN

# float64 agrees with autograd to a few ulps (~1e-16) times the handful of terms in a
# Jacobian entry; 1e-10 leaves six orders of margin yet catches any wrong term. float32's
# ulp is 1.2e-7: the same margin over a few hundred ulps gives 1e-4.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
NN = MODULES   # cells torch ships: checked against its nn cell module too


INDEPENDENT = ("oracle", "torch.nn.")   # references written apart from the declaration


@dataclasses.dataclass(frozen=True)
class Check:
    cell: str
    what: str          # "step", "J state", "J input"
    reference: str     # what it was compared with
    error: float       # max relative error (nan where either side is not finite)
    tolerance: float
    independent: bool = False   # the reference does not come from the declared equations
    undefined: bool = False     # gradlab's own value is nan or inf: the declared equations
                                # give no number at the drawn values (log of a negative)

    @property
    def finite(self):
        return math.isfinite(self.error)

    @property
    def passed(self):
        return self.finite and self.error <= self.tolerance


def worst_error(checks):
    """The largest error of `checks`: nan if any is nan (max() would skip it), inf if any
    is inf, 0.0 for none."""
    return _worst([c.error for c in checks])


def _worst(errors):
    errors = list(errors)
    if any(math.isnan(e) for e in errors):
        return math.nan
    return max(errors, default=0.0)


@dataclasses.dataclass(frozen=True)
class Summary:
    passed: int
    failed: int
    nonfinite: int     # failures whose error is nan or inf: the result was not a number
    worst: float       # worst_error of every check
    failing: tuple = ()  # the cells with a failed check, in order

    def __str__(self):
        line = f"{self.passed} passed, {self.failed} failed" + (
            f" ({', '.join(self.failing)})" if self.failing else "") + "; worst relative error "
        if math.isfinite(self.worst):
            return line + f"{self.worst:.2e}"
        return line + f"{self.worst} ({self.nonfinite} non-finite result" + \
            ("s)" if self.nonfinite != 1 else ")")


def summarize(checks):
    """Counts and worst error over `checks` (non-finite errors count as failures)."""
    checks = list(checks)
    failed = sum(not c.passed for c in checks)
    failing = tuple(dict.fromkeys(c.cell for c in checks if not c.passed))
    return Summary(len(checks) - failed, failed, sum(not c.finite for c in checks),
                   worst_error(checks), failing)


def independence_note(cell, checks):
    """A sentence saying what `checks` of `cell` cannot prove, or None if some check has
    an independent reference (a hand-written oracle or torch.nn)."""
    if any(c.independent for c in checks):
        return None
    name = getattr(cell, "name", cell)
    return (f"note: no hand-written oracle for {name}: these checks compare gradlab with "
            "itself (jacrev of the lowered step, numpy), so they prove the chain rule and the "
            "lowering, not that the declared equations are the intended ones")


def relative_error(a, b):
    a, b = torch.as_tensor(a).to(torch.float64), torch.as_tensor(b).to(torch.float64)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.nan      # inf - inf would be nan anyway, inf alone "agrees" with inf
    scale = b.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return float(((a.cpu() - b.cpu()).abs().max() / scale.cpu()).item())


def flat_step(step, params, n):
    """s -> s' on one sample with the state as one flat vector (what jacrev wants)."""
    def f(s, x):
        parts = tuple(p[None] for p in torch.split(s, n))
        return torch.cat(step(params, parts, x[None]), -1)[0]
    return f


def jacobians(step, params, state, x):
    """(d s'/d s, d s'/d x), batched, by torch.func.jacrev of a one-sample step."""
    f = flat_step(step, params, state[0].shape[-1])
    s = torch.cat(state, -1)
    with fallback_quiet():          # (the CUDA nn.LSTMCell's fused kernel: no batching rule)
        return vmap(jacrev(f, 0))(s, x), vmap(jacrev(f, 1))(s, x)


OWN_RTOL = 1e-6        # (own_activations_mismatch) float64 both ways: a wrong derivative is
                       # off by O(1)


def own_activations_mismatch(cell, wrt, params, state, x, exact):
    """A sentence where `exact`, the cell's lowered Jacobian wrt "state" or "input" at
    float64 params, is not jacrev of its own lowered step, as only an activation a user
    registered can make (its SymPy derivative not its implementation's, or an
    implementation not elementwise); None where they agree, where jacrev cannot run the
    step, or where the cell uses gradlab's own activations alone (`verify` tests those)."""
    own = sorted({type(f).__name__ for e in cell.lets.values()
                  for f in e.atoms(sp.Function)} - BUILTIN)
    if not own:
        return None
    try:
        J = jacobians(cell.step_fn(), params, state, x)[0 if wrt == "state" else 1]
    except Exception:           # noqa: BLE001 - (a user's implementation jacrev cannot run)
        return None
    error = relative_error(exact, J)
    if math.isnan(error) or error <= OWN_RTOL:
        return None
    return (f"cell '{cell.name}': its derivation is not the Jacobian of its own step "
            f"(torch autograd of it differs by {error:.3g} relative), so no derivation can "
            f"be checked against it: the activation(s) {', '.join(own)} registered with a "
            "derivative that is not their implementation's, or an implementation that is "
            "not elementwise (gradlab verify names the blocks)")


def sample(cell, n, m, batch, *, seed, dtype, device):
    """Random params (weights scaled to keep gates unsaturated), state and inputs."""
    params = cell.init_params(n, m, weight_scale=1.5, bias_scale=0.5, seed=seed, dtype=dtype,
                              device=device)
    gen = torch.Generator().manual_seed(derived_seed(seed, 1))
    state = tuple(torch.randn(batch, n, generator=gen, dtype=torch.float64).to(dtype=dtype,
                  device=device) for _ in cell.state_names)
    x = torch.randn(batch, m, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return params, state, x


def _module(cell, params):
    """A step by the torch module that computes `cell` (interop.to_torch)."""
    module = to_torch(cell, params)

    def step(_, state, x):
        out = module(x, state if cell.name == "lstm" else state[0])
        return tuple(out) if isinstance(out, tuple) else (out,)
    return step


def verify_cell(cell, *, device="cpu", dtype="float64", sizes=None, batch=3, seed=0):
    """Every check for one cell; `sizes` is a list of (n, m), random ones by default.
    float32 is compared as true float32 (TF32 off during the checks, then as it was)."""
    cell, batch, seed = registry.cell(cell), integer(batch, "batch", 1), check_seed(seed)
    if sizes is not None:                # as the checks read them: pairs of sizes >= 1
        if not isinstance(sizes, (list, tuple)) or not sizes or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in sizes):
            raise GradlabError(f"sizes must be a list of (n, m) pairs, got {sizes!r}")
        sizes = [(integer(n, "n", 1), integer(m, "m", 1)) for n, m in sizes]
        for n, m in sizes:               # the Jacobians and references, not only params
            budget.ensure_check_fits(cell, n, m, batch, job="verify_cell",
                                     advice="sizes or batch")
    with exact_float32():
        return _checks(cell, device, dtype, sizes, batch, seed)


def _checks(cell, device, dtype, sizes, batch, seed):
    from .oracles import ORACLES

    dtype, device = as_dtype(dtype), resolve(device)
    tol = TOLERANCE[dtype]
    if sizes is None:
        gen = torch.Generator().manual_seed(seed)
        sizes = [(int(a), int(b)) for a, b in torch.randint(2, 9, (1, 2), generator=gen)]
        sizes.append((1, 1))
    checks = []
    builtin = registry.builtin(cell)
    for n, m in sizes:
        params, state, x = sample(cell, n, m, batch, seed=seed, dtype=dtype, device=device)
        step = cell.step_fn("torch")
        new = step(params, state, x)
        J, Jx = (cell.jacobian_fn(w, "torch")(params, state, x) for w in ("state", "input"))
        where = f" (n={n}, m={m})"
        refs = [("jacrev(lowered step)", None, jacobians(step, params, state, x))]
        if builtin and cell.name in ORACLES:
            oracle = ORACLES[cell.name]
            refs.insert(0, ("oracle", oracle(params, state, x), jacobians(oracle, params,
                                                                          state, x)))
        if builtin and cell.name in NN:
            module = _module(cell, params)
            refs.append((f"torch.nn.{NN[cell.name][0]}", module(None, state, x),
                         jacobians(module, params, state, x)))
        for label, ref_step, (rJ, rJx) in refs:
            independent = label.startswith(INDEPENDENT)
            if ref_step is not None:
                err = _worst(relative_error(a, b) for a, b in zip(new, ref_step))
                checks.append(Check(cell.name, "step", label + where, err, tol, independent))
            checks.append(Check(cell.name, "J state", label + where, relative_error(J, rJ), tol,
                                independent))
            checks.append(Check(cell.name, "J input", label + where, relative_error(Jx, rJx),
                                tol, independent))
        flow_J, flow_new = flow_path(cell, params, state, x)
        checks.append(Check(cell.name, "step", "gradient_flow's hoisted step" + where,
                            relative_error(flow_new, torch.cat(new, -1)), tol))
        checks.append(Check(cell.name, "J state", "gradient_flow's blocks" + where,
                            relative_error(flow_J, J), tol))
        cpu = lambda t: t.detach().cpu().numpy()   # noqa: E731
        np_args = ({k: cpu(v) for k, v in params.items()}, tuple(map(cpu, state)), cpu(x))
        for what, ours, theirs in (
                ("step", torch.cat(new, -1), lambda: torch.cat([torch.as_tensor(a.copy()) for a in
                                                               cell.step_fn("numpy")(*np_args)], -1)),
                ("J state", J, lambda: cell.jacobian_fn("state", "numpy")(*np_args)),
                ("J input", Jx, lambda: cell.jacobian_fn("input", "numpy")(*np_args))):
            with np.errstate(all="ignore"):   # a nan here is reported as a failure
                theirs = theirs()
            checks.append(Check(cell.name, what, "numpy backend" + where,
                                relative_error(theirs, ours), tol,
                                undefined=not bool(torch.isfinite(ours).all())))
    return checks


def flow_path(cell, params, state, x):
    """The state Jacobian and the new state as gradient_flow computes them, from lowered
    functions of their own: the compacted blocks (`jacobian_state_blocks`) assembled, and
    the step split around its state-free part (`step_inputs`, `step_hoisted`)."""
    from ..flow.bound import Bound
    bound = Bound(cell, params, state, x)
    J = bound.jacobian("state", state, x, out=x.new_empty(x.shape[0], bound.S, bound.S))
    J = J.clone()                        # (valid until the next call: a workspace's)
    states = [torch.stack([s, torch.empty_like(s)]) for s in state]
    bound.run(states, x[None])
    return J, torch.cat([s[1] for s in states], -1)
