"""The one thing every start vector agrees on: the sum of all S exponents.

Benettin's exponents over a finite T depend on the start vector by O(1/T), so
`check_lyapunov` must allow that much; a routine off by O(1/T) (the mean over T - 1
steps, a warm-up nobody asked for, the first step skipped, the inputs shifted by one)
fits inside it however long xs is. But over the full spectrum the product of QR's
|R_ii| at each step is |det J_t|, whatever Q_{t-1} is, so the S exponents sum to
mean_t log |det J_t| exactly, for every sequence. Asked for k = S, a right routine meets
that to rounding; those mistakes miss it by their O(1/T).

To rounding, which the conditioning of J_t sets: a backward-stable QR of J_t Q_{t-1}
is exact for some J_t + E with |E| ~ S eps |J_t|, which moves log |det| by up to
S |E| / sigma_min, about S^2 eps kappa(J_t). Summed over steps that is the tolerance; a
sequence with a step where it is not small (a saturated gate leaves sigma_min near
rounding, or zero) is not judged here at all: the top-k comparison still is.
"""

import numpy as np
import torch

from .user import Exited, call_user, real_answer

QR_CONSTANT = 8          # |E| <= QR_CONSTANT * S * eps * |J_t| for Householder QR, generously
JUDGED_BELOW = 1e-3      # a step whose bound on log |det| reaches this: not judged


def rounding(J, eps):
    """Per sequence: (the bound on how far rounding alone moves sum_i log |R_ii| from
    mean_t log |det J_t|, whether the bound holds at every step)."""
    S = J.shape[-1]
    sigma = torch.linalg.svdvals(J).numpy()                          # (T, B, S)
    with np.errstate(divide="ignore", invalid="ignore"):             # (sigma_min 0)
        bound = QR_CONSTANT * S * S * eps * sigma[..., 0] / sigma[..., -1]
    bound = np.where(np.isnan(bound), np.inf, bound)                 # (J_t = 0)
    return bound.mean(0), bound.max(0) < JUDGED_BELOW


def volume_mismatch(fn, params, xs, J, slack=0.0):
    """A sentence saying how the sum of fn(params, xs, S) misses mean_t log |det J_t|, or
    None where it meets it (to rounding, or `slack`), cannot be asked (fn fails at
    k = S, or answers in another shape: the check stands on the top-k comparison) or
    cannot be judged (a sequence whose J_t are too ill-conditioned for log |det| to
    survive rounding)."""
    T, B, S = J.shape[0], J.shape[1], J.shape[-1]
    params = {name: v.clone() if isinstance(v, torch.Tensor) else v      # copies: fn may
              for name, v in params.items()} if isinstance(params, dict) else params  # write
    try:
        got, dtype = real_answer(call_user(fn, params, xs.detach().clone(), S))
    except Exited:
        raise
    except Exception:                   # noqa: BLE001 (a routine written for k < S only)
        return None
    rows = got.numpy()
    if rows.shape not in ((S,), (B, S)):
        return None
    eps = max(torch.finfo(d).eps for d in (dtype, xs.dtype, J.dtype) if d.is_floating_point)
    want = torch.linalg.slogdet(J)[1].mean(0).numpy()                 # (B,)
    if rows.ndim == 1:                                                 # their mean
        want, sums, scale = np.array([want.mean()]), rows.sum()[None], np.abs(rows).sum()[None]
    else:
        sums, scale = rows.sum(-1), np.abs(rows).sum(-1)
    tol = 64 * S * eps * np.maximum(scale, 1.0) + slack
    with np.errstate(invalid="ignore"):
        off = np.abs(sums - want)
        off = np.where(np.isnan(off), np.inf, off)
    if (off <= tol).all():
        return None
    # beyond plain rounding: what the conditioning of J_t allows (singular values, taken
    # only here: for T B = 8000 matrices of S = 128 they cost ~10 s, a right answer none)
    drift, judged = rounding(J, eps)
    if rows.ndim == 1:
        drift, judged = np.array([drift.mean()]), np.array([judged.all()])
    tol = tol + drift
    off = np.where(judged, off, 0.0)
    worst = int(np.argmax(off - tol))
    if off[worst] <= tol[worst]:
        return None
    which = f"sequence {worst}'s" if rows.ndim == 2 else "their mean's"
    return (f"Asked for all {S} exponents, yours sum to {sums[worst]:.10g} ({which}), but "
            f"the sum of all exponents is mean_t log |det J_t| = {want[worst]:.10g} exactly, "
            "whatever the start vector (QR's |R_ii| multiply to |det J_t| at every step): "
            f"off by {off[worst]:.3g}, where rounding allows {tol[worst]:.2g}. An error of "
            f"order 1/T, which the top-{S} comparison cannot see: the mean over T - 1 steps, "
            f"or over {T} steps of which some were skipped (a warm-up, the first step), or "
            "the inputs shifted by a step? Exponents are the mean over all T steps from a "
            "zero state.")
