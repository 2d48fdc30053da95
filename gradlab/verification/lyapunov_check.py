"""Checking someone else's Lyapunov exponents on the same trajectory, and naming the mistake.

`check_lyapunov(fn, cell, params, xs, k)` runs the user's `fn(params, xs, k)` (top-k
exponents per step, natural log, from a zero state; (k,) or (B, k)) and gradlab's exact
Benettin iteration (Q_t R_t = J_t Q_{t-1}, J_t from the symbolic derivation) on the same
inputs. When they differ it recomputes the exponents the ways published code gets them
wrong, and says which one the user's matches:

    reverse time   a QR step on the transposed Jacobian, Q_t R_t = J_t^T Q_{t-1}: the
                   product J_1 J_2 ... J_T, the dynamics run backwards (its spectrum differs
                   from the forward one, e.g. under periodic input)
    partial state  the first state part alone (an LSTM analysed on h with c frozen)
    log base       log2 or log10 instead of the natural log
    not averaged   the sum over steps instead of the mean per step
"""

import dataclasses
import math

import numpy as np
import torch

from .. import registry
from ..errors import GradlabError


@dataclasses.dataclass
class LyapunovResult:
    ok: bool
    yours: np.ndarray            # (k,): the user's exponents (mean over sequences)
    exact: np.ndarray            # (k,): gradlab's on the same trajectory
    max_error: float             # max |yours - exact|
    diagnosis: list

    def __str__(self):
        head = ("agrees" if self.ok else "differs") + f": max |difference| {self.max_error:.3g}"
        return "\n".join([head, *self.diagnosis])


def _trajectory_jacobians(cell, params, xs):
    """J_1..J_T (T, B, S, S) along the run from a zero state, by the lowered Jacobian."""
    from ..flow import run_states
    states = run_states(cell, params, xs)
    step_jacobian = cell.jacobian_fn("state")
    return torch.stack([step_jacobian(params, tuple(s[t] for s in states), xs[t])
                        for t in range(xs.shape[0])])


def exponents(J, k, *, transpose=False, seed=0):
    """Top-k exponents (B, k) of the product of J (T, B, S, S) by repeated QR, per step."""
    T, B, S, _ = J.shape
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(B, S, k, generator=gen, dtype=torch.float64))[0].to(J)
    total = torch.zeros(B, k, dtype=torch.float64)
    for Jt in J:
        M = Jt.mT if transpose else Jt
        a, tau = torch.geqrf(M @ Q)          # Householder QR (torch.linalg.qr is slow on
        Q = torch.linalg.householder_product(a, tau)     # small thin matrices on the CPU)
        total += torch.diagonal(a, dim1=-2, dim2=-1).abs().log().double().cpu()
    return (total / T).numpy()


def _mean(a):
    a = np.asarray(a.detach().cpu() if torch.is_tensor(a) else a, dtype=np.float64)
    return a.mean(0) if a.ndim == 2 else a


def check_lyapunov(fn, cell, params, xs, k, *, atol=None):
    """Compare the user's `fn(params, xs, k)` with gradlab's exponents on inputs xs
    (T, B, m) from a zero state; a `LyapunovResult`. `atol`: per-step exponents agree when
    within it; by default 10 / T, since finite-T estimates from different start vectors
    differ by O(1/T) (seen here: 0.002 at T = 600 for an LSTM's second exponent)."""
    cell = registry.cell(cell)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GradlabError(f"k must be a positive integer, got {k!r}")
    xs = torch.as_tensor(xs)
    if xs.ndim != 3:
        raise GradlabError(f"xs has shape {tuple(xs.shape)}, expected (T, B, m)")
    try:
        got = fn(params, xs, k)
    except Exception as err:                          # noqa: BLE001  (the user's code)
        raise GradlabError(f"the function under test raised {type(err).__name__}: "
                           f"{' '.join(str(err).split())}") from None
    atol = 10 / xs.shape[0] if atol is None else atol
    yours = _mean(got)
    if yours.shape != (k,):
        raise GradlabError(f"the function under test returned shape {np.shape(got)}; "
                           f"expected ({k},) or (B, {k})")
    J = _trajectory_jacobians(cell, params, xs)
    k = min(k, J.shape[-1])
    exact = exponents(J, k).mean(0)
    error = float(np.max(np.abs(yours - exact)))
    if error <= atol:
        return LyapunovResult(True, yours, exact, error, [])
    n = J.shape[-1] // len(cell.state_names)
    candidates = [
        ("the transposed Jacobian in each QR step (Q R = J_t^T Q): that measures the product "
         "in reverse time order, J_1 J_2 ⋯ J_T, not J_T ⋯ J_1",
         lambda: exponents(J, k, transpose=True).mean(0)),
        ("log base 2 instead of the natural log", lambda: exact / math.log(2)),
        ("log base 10 instead of the natural log", lambda: exact / math.log(10)),
        ("the sum over steps, not the mean per step", lambda: exact * J.shape[0]),
    ]
    if len(cell.state_names) > 1 and k <= n:
        part = cell.state_names[0]
        candidates.insert(1, (
            f"the state part {part} alone (the other parts held fixed): gradlab's state is "
            f"({', '.join(cell.state_names)}), and every part carries gradient",
            lambda: exponents(J[:, :, :n, :n].contiguous(), k).mean(0)))
    for words, other in candidates:
        if float(np.max(np.abs(yours - other()))) <= atol:
            return LyapunovResult(False, yours, exact, error,
                                  [f"Your exponents match {words}."])
    shown = ", ".join(f"{a:.4g} vs {b:.4g}" for a, b in zip(yours, exact))
    return LyapunovResult(False, yours, exact, error, [
        "Your exponents differ from the exact ones and match none of: the transposed "
        "Jacobian (reverse time), a partial state, another log base, a sum over steps. "
        f"Yours vs exact: {shown}."])
