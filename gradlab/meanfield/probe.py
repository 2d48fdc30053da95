"""Measured Frobenius-norm rates at widths where gradient_flow is slow: random probes.

For any matrix P, E ||P^T v||^2 = ||P||_F^2 over v ~ N(0, I). So K random vectors carried
backward by vector-Jacobian products, v^T P_k = v^T J_T ... J_{T-k+1} (autograd through
the cell's lowered step, all K probes of all sequences in one batch), estimate
||P_k||_F^2 by their mean square: O(K T n^2) per sequence where gradient_flow's running
product is O(T n^3). The log-norm curve is the mean over sequences of
1/2 ln mean_v ||v^T P_k||^2, the rate its least-squares slope over lags (start, stop), as
Flow.rate fits it. With 32 probes it matches gradient_flow's Frobenius rate to 0.2-0.5 %
(gru at n = 96 and 256, lstm at n = 256); at n = 1024 it takes ~4 s (minimal_rnn) to
~40 s (lstm) per pair of sequences on one CPU core, where gradient_flow takes minutes.
"""

import numpy as np
import torch

from ..errors import GradlabError, derived_seed, integer
from ..flow import make_inputs
from ..flow.bound import setup
from ..lowering.lower import compiled
from ..registry import cell as as_cell
from .lag_window import lags as check_lags


def probe_curve(cell, params, xs, *, probes=32, seed=0):
    """(B, T) array: 1/2 ln of the mean over `probes` random v of ||v^T P_k||^2, per
    sequence of xs (T, B, m), lag k at column k - 1."""
    cell, bound, xs, state0 = setup(as_cell(cell), params, xs, call="probe_curve")
    states = bound.states(xs, state0)
    T, B, m = xs.shape
    n, K = bound.n, integer(probes, "probes", 1)
    step = compiled(cell, "step", "torch")
    gen = torch.Generator().manual_seed(int(seed))
    vs = [torch.randn(B * K, n, 1, generator=gen, dtype=xs.dtype) for _ in states]
    logs = np.zeros((B, T))
    total = torch.zeros(B, dtype=torch.float64)
    for k in range(1, T + 1):
        t = T - k + 1                            # step t reads s_{t-1} and xs[t - 1]
        state = [s[t - 1].repeat_interleave(K, 0).unsqueeze(-1).requires_grad_(True)
                 for s in states]
        x = xs[t - 1].repeat_interleave(K, 0).unsqueeze(-1)
        out = [row[0] for row in step(n, m, x, *bound.pargs, *state, x)]
        vs = list(torch.autograd.grad(out, state, grad_outputs=vs))
        size = sum(v.pow(2).sum((1, 2)) for v in vs).view(B, K).mean(1).sqrt()
        total += size.log().double()
        logs[:, k - 1] = total.numpy()
        vs = [v.detach() / size.repeat_interleave(K)[:, None, None] for v in vs]
    return logs


def probe_rate(cell, options, *, hidden, inputs, steps, batch=2, probes=32, seed=0,
               lags=None):
    """The Frobenius-norm rate of `cell` initialised by init_params(hidden, inputs,
    seed=seed, **options) (gaussian) and driven by make_inputs("gaussian", steps, batch,
    inputs, seed=seed + 1), estimated from `probes` random probes per sequence (generator
    seeded by `seed`), fitted over lags (start, stop) (default `lag_window.default_lags`:
    (steps // 8, steps - 20), or up to the last lag under 40 steps)."""
    c = as_cell(cell)
    steps = integer(steps, "steps", 2)              # a slope needs two lags
    if options is None or not isinstance(options, dict):
        raise GradlabError(f"options must be a dict of init_params options (weight_scale, "
                           f"gate_bias, ...), got {type(options).__name__}")
    start, stop = check_lags(lags, steps)
    params = c.init_params(hidden, inputs, seed=seed, **options)
    xs = make_inputs("gaussian", steps, batch, inputs, seed=derived_seed(seed, 1))
    curve = probe_curve(c, params, xs, probes=probes, seed=seed).mean(0)
    x = np.arange(start, stop + 1, dtype=np.float64)
    return float(np.polyfit(x, curve[start - 1:stop], 1)[0])
