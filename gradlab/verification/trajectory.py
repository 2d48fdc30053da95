"""The trajectory a check measures along, and where rounding alone parts two of them.

On a chaotic trajectory (top exponent above 0) two implementations of one step, equally
right, agree to rounding at first and part after about ln(1/eps) / lambda_1 steps; from
then on their Jacobians are those of other states, and exponents along them differ by
more than start vectors make them differ (rnn_tanh, n = 16, weight scale 3, inputs of
scale 0.3: a user's jacrev step and gradlab's states 1.4 apart within 300 steps, and a
right routine called wrong at T = 2000). A check must allow that much where it happens
(there, up to 0.016 on gradlab's own exponents at T = 2000). gradlab measures it
by running its own trajectory again from inputs moved by a few units in the last place,
which parts as any other implementation's does; on a contracting trajectory nothing
parts, and nothing changes.
"""

import torch

from ..errors import GradlabError

ULPS = 4                 # how far xs[0] moves, in units of the dtype's eps (relative)
PARTED = 1e-9            # states further apart than this (relative): the runs parted,
ROUNDED = 1e4            # or than this many eps (float32 runs differ by an ulp or two
                         # for a while after the move, and contract no further)


def trajectory_jacobians(cell, params, xs, states=None):
    """J_1..J_T (T, B, S, S) along the run from a zero state (`states`, if already run),
    by the lowered Jacobian."""
    from ..flow import run_states
    states = run_states(cell, params, xs) if states is None else states
    if not all(bool(torch.isfinite(s).all()) for s in states):
        raise GradlabError("the state overflows (becomes inf or nan) along xs from a zero "
                           "state: there are no exact exponents to compare with; use smaller "
                           "weights or shorter xs")
    step_jacobian = cell.jacobian_fn("state")
    with torch.no_grad():                 # (params that require grad: numbers, no graph)
        return torch.stack([step_jacobian(params, tuple(s[t] for s in states), xs[t])
                            for t in range(xs.shape[0])])


def trajectories(cell, params, xs):
    """(J, parted): the Jacobians along xs (`trajectory_jacobians`), and along xs with
    xs[0] moved by ULPS eps (relative, fixed signs) where that run parts from the first
    by more than PARTED (or ROUNDED eps) at some step; else None (a contracting
    trajectory forgets the move, and a run that overflows has nothing to add)."""
    from ..flow import run_states
    first = run_states(cell, params, xs)
    J = trajectory_jacobians(cell, params, xs, first)
    eps = torch.finfo(xs.dtype).eps
    sign = torch.where(torch.arange(xs[0].numel()).view(xs[0].shape) % 2 == 0, 1.0, -1.0)
    nudge = ULPS * eps * sign.to(xs)
    moved = xs.clone()
    moved[0] = xs[0] * (1 + nudge) + (xs[0] == 0) * nudge
    second = run_states(cell, params, moved)
    if not all(bool(torch.isfinite(s).all()) for s in second):
        return J, None
    scale = max(float(s.abs().max()) for s in first) + 1.0
    apart = max(float((a - b).abs().max()) for a, b in zip(first, second))
    return J, (trajectory_jacobians(cell, params, moved, second)
               if apart > max(PARTED, ROUNDED * eps) * scale else None)
