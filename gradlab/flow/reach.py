"""How far back each sequence's products can be read: a state or input that is inf or nan
makes every Jacobian that reads it meaningless, even one that comes out as exact zeros."""

import torch

from .rates import INPUT, OVERFLOW


def reach(states, xs):
    """(B,) per sequence the largest L with s_{T-L}..s_T and x_{T-L}..x_{T-1} finite (-1:
    s_T is not), for the states (T + 1, B, ...) of each part and xs (T, B, I): lag k reads
    J_t at (s_{t-1}, x_{t-1}) for t = T-k+1..T."""
    T = len(xs)
    ok = torch.stack([torch.isfinite(s).flatten(2).all(2) for s in states]).all(0)
    ok[:-1] &= torch.isfinite(xs).all(2)
    t = torch.arange(T + 1, device=ok.device)[:, None]
    last = torch.where(ok, -1, t).max(0).values.cpu()                   # last bad time
    return torch.where(last >= 0, T - last - 1, T).numpy()


def unreadable(reached, xs, stop):
    """Why lags 1..stop cannot be read, given `reach`'s (B,): INPUT where a sequence that
    falls short has an inf or nan input (its states are then not finite from there on,
    with no overflow), else OVERFLOW."""
    short = torch.as_tensor(reached < stop, device=xs.device)
    return INPUT if bool((~torch.isfinite(xs[:, short])).any()) else OVERFLOW
