"""The one thing every start vector agrees on: the sum of all S exponents.

Benettin's exponents over a finite T depend on the start vector by O(1/T), so
`check_lyapunov` must allow that much; a routine off by O(1/T) (the mean over T - 1
steps, a warm-up nobody asked for, the first step skipped, the inputs shifted by one)
fits inside it however long xs is. But over the full spectrum the product of QR's
|R_ii| at each step is |det J_t|, whatever Q_{t-1} is, so the S exponents sum to
mean_t log |det J_t| exactly, for every sequence. Asked for k = S, a right routine meets
that to rounding; those mistakes miss it by their O(1/T).

Those mistakes miss by about |sum| / T, so a miss below FLOOR times that is none of
theirs, whatever else it is (a right routine's Jacobian of a saturated tanh, 1 - y^2,
carries a relative error eps / (1 - y^2); a float32 model inside one given float64 params
rounds at 1e-7). Nor is the sum judged where the routine does not resolve the full
spectrum (re-orthonormalised only every few steps, it is right for the top k it was
asked for, and its smallest exponents are not), or where rounding cannot keep log |det|:
a backward-stable QR of J_t Q_{t-1} is exact for some J_t + E with |E| ~ S eps |J_t|,
which moves log |det| by up to S |E| / sigma_min, about S^2 eps kappa(J_t), and a
saturated gate leaves sigma_min near rounding, or zero. The top-k comparison still is.
"""

import numpy as np
import torch

from .user import Exited, call_user, real_answer

QR_CONSTANT = 8          # |E| <= QR_CONSTANT * S * eps * |J_t| for Householder QR, generously
JUDGED_BELOW = 1e-3      # a step whose bound on log |det| reaches this: not judged
FLOOR = 0.1              # of |sum| / T: a miss below it is no O(1/T) mistake's
PARTED = 4               # times how far a parted run's sum moves (as exponents' SPREAD)
RESOLVED = 10            # times the top-k tolerance (or |sum| / T): fn's S exponents
                         # stray further, and it does not resolve the full spectrum


def rounding(J, eps):
    """Per sequence: (the bound on how far rounding alone moves sum_i log |R_ii| from
    mean_t log |det J_t|, whether the bound holds at every step)."""
    S = J.shape[-1]
    sigma = torch.linalg.svdvals(J).numpy()                          # (T, B, S)
    with np.errstate(divide="ignore", invalid="ignore"):             # (sigma_min 0)
        bound = QR_CONSTANT * S * S * eps * sigma[..., 0] / sigma[..., -1]
    bound = np.where(np.isnan(bound), np.inf, bound)                 # (J_t = 0)
    return bound.mean(0), bound.max(0) < JUDGED_BELOW


def volume_mismatch(fn, params, xs, J, *, k, near, full, slack=0.0, parted=None):
    """(miss, caveat): a sentence saying how the sum of fn(params, xs, S) misses mean_t
    log |det J_t|, or None where it meets it; and where it cannot be asked, or misses
    where it cannot be judged, a sentence saying errors of order 1/T went unchecked (a
    routine off by one step passes the top-k comparison: the caveat is all that shows).

    It meets it within plain rounding (or `slack`), and within FLOOR |sum| / T: the
    mistakes hunted here miss by about |sum| / T each (a mean over T - 1 steps, a warm-up),
    and whatever a right routine's own rounding adds (the Jacobian of a saturated tanh
    taken as 1 - y^2, a float32 model inside) stays far below that. It cannot be asked
    where fn fails at k = S or answers in another shape, and cannot be judged where fn
    does not resolve the full spectrum (its S exponents stray from `full()`, gradlab's
    (B, S), by more than RESOLVED times the top-k tolerance `near` or |sum| / T: a routine
    re-orthonormalised only every few steps, right for the top k it was asked for) or a
    sequence's J_t are singular to rounding. `k`: the exponents the check was asked for;
    `parted`: the Jacobians along a run that rounding parted from J's (a chaotic one), whose
    sum the routine's trajectory may follow as well: PARTED times that far is allowed."""
    T, B, S = J.shape[0], J.shape[1], J.shape[-1]
    params = {name: v.clone() if isinstance(v, torch.Tensor) else v      # copies: fn may
              for name, v in params.items()} if isinstance(params, dict) else params  # write
    want = torch.linalg.slogdet(J.double())[1].mean(0).numpy()                 # (B,)
    if np.isneginf(want).any():         # a J_t singular exactly (dead units): no sum to meet
        return None, (f"But some J_t are exactly singular (a dead unit at a step), so the sum "
                      f"of all {S} exponents is -inf and says nothing: errors of order 1/T, "
                      f"which the top {k} cannot show (a mean over T - 1 steps, a warm-up, the "
                      "first step skipped), went unchecked here.")
    unasked = (f"But asked for all {S} exponents, your routine {{}}, so errors of order "
               f"1/T, which the top {k} cannot show (a mean over T - 1 steps, a warm-up, the "
               "first step skipped), went unchecked: the sum of all S exponents, the one "
               "thing every start vector agrees on, is what finds them.")
    try:
        got, dtype = real_answer(call_user(fn, params, xs.detach().clone(), S))
    except Exited:
        raise
    except Exception as err:            # noqa: BLE001 (a routine written for k < S only)
        return None, unasked.format(f"failed ({' '.join(str(err).split())[:120]})")
    rows = got.numpy()
    if rows.shape not in ((S,), (B, S)):
        return None, unasked.format(f"returned shape {rows.shape}, not ({S},) or ({B}, {S})")
    eps = max(torch.finfo(d).eps for d in (dtype, xs.dtype, J.dtype) if d.is_floating_point)
    finite = np.where(np.isfinite(rows), np.abs(rows), 0.0)
    if rows.ndim == 1:                                                 # their mean
        want, sums, scale = np.array([want.mean()]), rows.sum()[None], finite.sum()[None]
    else:
        sums, scale = rows.sum(-1), finite.sum(-1)
    per_step = np.where(np.isfinite(want), np.maximum(np.abs(want), 1.0), np.inf) / T
    tol = np.maximum(64 * S * eps * np.maximum(scale, 1.0) + slack, FLOOR * per_step)
    if parted is not None:
        other = torch.linalg.slogdet(parted.double())[1].mean(0).numpy()
        other = other if rows.ndim == 2 else np.array([other.mean()])
        with np.errstate(invalid="ignore"):
            tol = tol + PARTED * np.nan_to_num(np.abs(other - want), nan=0.0, posinf=0.0)
    with np.errstate(invalid="ignore"):
        off = np.abs(sums - want)
        off = np.where(np.isnan(off), np.inf, off)
    if (off <= tol).all():
        return None, None
    if not np.isfinite(sums).all():     # no rounding makes a finite sum nan or infinite
        i = int(np.argmax(~np.isfinite(sums)))
        return (f"Your top {k} agree, but asked for all {S} exponents, yours hold nan or inf "
                f"({'sequence %d' % i if rows.ndim == 2 else 'their mean'}: sum {sums[i]}), "
                f"where the sum of all exponents is mean_t log |det J_t| = {want[i]:.10g}, "
                "finite (QR's |R_ii| multiply to |det J_t| at every step)."), None
    # where it misses: does fn resolve all S at all, and can rounding keep log |det|?
    exact = full()                                                    # (B, S)
    exact = exact if rows.ndim == 2 else exact.mean(0, keepdims=True)
    mine = rows if rows.ndim == 2 else rows[None]
    with np.errstate(invalid="ignore"):
        stray = np.where(np.isfinite(exact) & np.isfinite(mine), np.abs(mine - exact), 0.0)
    resolved = stray.max(-1) <= RESOLVED * np.maximum(near, per_step)
    drift, judged = rounding(J, eps)
    if rows.ndim == 1:
        drift, judged = np.array([drift.mean()]), np.array([judged.all()])
    which = lambda i: f"sequence {i}'s" if rows.ndim == 2 else "their mean's"    # noqa: E731
    unjudged = (off > tol) & ~((off > tol + drift) & judged & resolved)
    caveat = None
    if unjudged.any():                  # it misses where rounding or fn's spectrum may be why
        i = int(np.argmax(np.where(unjudged, off - tol, -np.inf)))
        why = (f"your exponents stray from gradlab's by up to {stray[i].max():.3g}, so "
               f"your routine does not resolve all {S} (re-orthonormalised every few steps, "
               f"not every step?)" if not resolved[i] else "some J_t are near singular (a saturated "
               f"gate), and there rounding in precision {eps:.2g} may move log |det J_t| by "
               f"up to {QR_CONSTANT} S^2 eps kappa(J_t): {drift[i]:.3g} on the mean")
        caveat = (f"But asked for all {S} exponents, yours sum to {sums[i]:.10g} ({which(i)}), "
                  f"{off[i]:.3g} from mean_t log |det J_t| = {want[i]:.10g} "
                  f"({off[i] * T / max(abs(want[i]), 1.0):.2g} times |sum| / T; an error of order "
                  f"1/T misses by about 1), and the sum cannot judge here: {why}. An error of "
                  f"order 1/T would pass the top {k} unseen.")
    tol = tol + drift
    off = np.where(judged & resolved, off, 0.0)
    worst = int(np.argmax(off - tol))
    if off[worst] <= tol[worst]:
        return None, caveat
    return (f"Your top {k} agree, but asked for all {S} exponents, yours sum to "
            f"{sums[worst]:.10g} ({which(worst)}), and the sum of all exponents is mean_t log |det "
            f"J_t| = {want[worst]:.10g} exactly, whatever the start vector (QR's |R_ii| "
            f"multiply to |det J_t| at every step): off by {off[worst]:.3g}, "
            f"{off[worst] * T / max(abs(want[worst]), 1.0):.2g} times |sum| / T. An error of "
            f"order 1/T, which the comparison of the top {k} cannot see: the mean over T - 1 "
            f"steps, or over {T} steps of which some were skipped (a warm-up, the first "
            "step), or the inputs shifted by a step? Exponents are the mean over all T steps "
            "from a zero state."), None
