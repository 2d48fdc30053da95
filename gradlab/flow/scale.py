"""Exact scaling of a running product: its norm as an integer power of two and a mantissa."""

import math

import torch

LN2 = math.log(2.0)


class Scale:
    """The scale of a running product, kept exactly. With ||Q||_F = m 2^e (m in [1/2, 1),
    frexp), log ||P_k|| = (E + e) ln 2 + ln m, where E is the sum of the exponents already
    divided out: integers, so nothing rounds as they add up over 10,000 steps. Q is
    multiplied by 2^-e (exact: a power of two) once e drifts past +-DRIFT[dtype] (on
    CUDA at every step, which costs no host sync); in between it is left as it is."""

    DRIFT = {torch.float64: 64, torch.float32: 16}   # 2^64 times a Jacobian is still far
                                                     # from float64's 2^1024

    def __init__(self, T, B, dtype, device):
        self.total = torch.zeros(B, dtype=torch.int64, device=device)      # E
        self.exps = torch.empty(T, B, dtype=torch.int64, device=device)    # E + e per row
        self.applied = torch.empty(T, B, dtype=torch.int64, device=device) # E after it
        self.mants = torch.empty(T, B, dtype=dtype, device=device)
        self.e = torch.empty(B, dtype=torch.int32, device=device)
        self.one = torch.ones(B, dtype=dtype, device=device)
        self.drift = self.DRIFT[dtype] if torch.device(device).type == "cpu" else 0
        self.small = torch.finfo(dtype).tiny ** 0.5          # below: squares lose digits
        self.half = int(math.log2(torch.finfo(dtype).max)) // 2   # past: 2^-e in 2 steps
        # one view per row, made once: a select per call costs as much as a small kernel
        self.rows = tuple(zip(self.mants.unbind(0), self.exps.unbind(0),
                              self.applied.unbind(0)))

    def __call__(self, M, k, batch=0):
        """Record log ||M|| for row k - 1 (M has sequences on axis `batch`); rescale M in
        place when its norm has drifted far from 1."""
        mant, exp, applied = self.rows[k - 1]
        norm = self.norm(M, batch)
        if self.drift and not all(self.small <= v < math.inf for v in norm.tolist()):
            norm = self.norm(M, batch, exact=True)    # (CPU: where GPU runs sync-free;
                                                      # a list read costs ~1 us, torch ~20)
        torch.frexp(norm, out=(mant, self.e))                   # norm = m 2^e; 0 -> 0, 0
        torch.add(self.total, self.e, out=exp)
        drifted = self.drift and int(self.e.abs().max())
        if not self.drift or drifted > self.drift:
            self.total += self.e
            shape = [-1 if d == batch else 1 for d in range(M.ndim)]
            if drifted > self.half:    # 2^-e alone may overflow (subnormal entries)
                half = torch.div(self.e, 2, rounding_mode="trunc")
                M.mul_(torch.ldexp(self.one, -half).view(shape))
                M.mul_(torch.ldexp(self.one, half - self.e).view(shape))
            else:
                M.mul_(torch.ldexp(self.one, -self.e).view(shape))
        applied.copy_(self.total)

    def norm(self, M, batch, exact=False):
        """||M||_F per sequence (axis `batch`). Its sum of squares overflows for entries
        past ~1e154 (float64; 1.8e19 in float32) and loses digits below ~1e-154, which a
        single Jacobian of huge or tiny weights reaches before any rescale: `exact`
        divides each sequence by its largest entry first (an amax and a pass more)."""
        rest = tuple(d for d in range(M.ndim) if d != batch)
        if exact:
            big = M.abs().amax(dim=rest, keepdim=True)
            safe = torch.where((big > 0) & torch.isfinite(big), big, 1)
            return self.norm(M / safe, batch) * safe.reshape(-1)
        norm = torch.linalg.vector_norm(M, dim=tuple(range(batch + 1, M.ndim)))
        if batch:                           # leading slabs: combine their norms (faster
            norm = torch.linalg.vector_norm(norm, dim=tuple(range(batch)))   # than one pass)
        return norm

    def log(self, rows):
        """E ln 2 at rows (a slice), float64 (lags, B): add the log of a norm of the
        matrix as it was left (rescaled or not) to get that norm of the product."""
        return self.applied[rows].double() * LN2

    def stored(self, rows):
        """||M||_F of the matrices as they were left (rescaled or not) at rows, (lags, B)
        in M's dtype: m 2^(E + e - E after), exact."""
        return torch.ldexp(self.mants[rows], (self.exps[rows] - self.applied[rows]).int())

    def frobenius(self, rows):
        """log ||P||_F = (E + e) ln 2 + ln m at rows: -inf where the product is zero."""
        return self.exps[rows].double() * LN2 + self.mants[rows].double().log()
