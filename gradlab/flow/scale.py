"""Exact scaling of a running product: its norm as an integer power of two and a mantissa."""

import math

import torch

LN2 = math.log(2.0)


def largest_exponent(parts):
    """e (N,): the binary exponent (frexp) of each matrix's largest |entry| across `parts`
    ((N, ...) each), so that x 2^-e has entries below 1; 0 where it is zero or not finite."""
    big = torch.stack([p.abs().flatten(1).amax(1) for p in parts]).amax(0)
    return torch.where(torch.isfinite(big) & (big > 0), torch.frexp(big)[1], 0)


def power_of_two(x, e):
    """x (N, ...) times 2^e (N,) per leading index, exactly, in two factors so that
    neither 2^(e/2) overflows for e beyond the exponent range of x's dtype."""
    half = torch.div(e, 2, rounding_mode="floor")
    for part in (half, e - half):
        x = torch.ldexp(x, part.view([-1] + [1] * (x.dim() - 1)).to(x.dtype))
    return x


def log_norm(x, dim):
    """log of the 2-norm of x over the dims `dim`, float64, exact where the sum of squares
    overflows or loses digits (entries past ~1e154 or below ~1e-139 in float64, 1.8e19
    and 1e-12 in float32): those slices alone (one host read finds them) are divided by
    the power of two of their largest |entry| (exact, in two factors: 2^-e alone
    overflows for subnormal entries), whose exponent goes back into the log. -inf for a
    zero slice (a second host read tells it from an underflow); inf or nan as its
    entries are."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    fast = torch.linalg.vector_norm(x, dim=dims)
    info = torch.finfo(x.dtype)
    ok = ((fast >= info.tiny ** 0.5 / info.eps) & (fast < math.inf)) | fast.isnan()
    logs = fast.double().log()
    if bool(ok.all()):
        return logs
    # a zero slice (a block no path reaches: a stack's lower layer from an upper one) is
    # -inf as it is: its max and min (no copy, unlike the gather below) tell it from one
    # that underflowed
    bad = ~ok & ((x.amax(dims) != 0) | (x.amin(dims) != 0))
    if not bool(bad.any()):
        return logs
    sub = x.movedim(dims, tuple(range(-len(dims), 0)))[bad].flatten(1)    # (slices, rest)
    e = largest_exponent((sub,))
    logs[bad] = torch.linalg.vector_norm(power_of_two(sub, -e), dim=1).double().log() \
        + e.double() * LN2
    return logs


class Scale:
    """The scale of a running product, kept exactly. With ||Q||_F = m 2^e (m in [1/2, 1),
    frexp), log ||P_k|| = (E + e) ln 2 + ln m, where E is the sum of the exponents already
    divided out: integers, so nothing rounds as they add up over 10,000 steps. Q is
    multiplied by 2^-e (exact: a power of two) once e drifts past +-DRIFT[dtype] (on
    CUDA at every step, which costs no host sync, by at most 2^+-half a step so that the
    factor cannot overflow); in between it is left as it is.

    A call records references, not copies: the norm it measured and E before and after
    it (E is replaced, never changed in place). On the CPU at small sizes every kernel
    costs microseconds, so a step takes the norm and one host read of it (for the drift
    test); the frexp and the sums are taken once per chunk of rows, when they are read."""

    DRIFT = {torch.float64: 64, torch.float32: 16}   # 2^64 times a Jacobian is still far
                                                     # from float64's 2^1024

    def __init__(self, T, B, dtype, device):
        self.total = torch.zeros(B, dtype=torch.int64, device=device)      # E
        self.norms, self.before, self.after = [None] * T, [None] * T, [None] * T
        self.one = torch.ones(B, dtype=dtype, device=device)
        self.base = torch.tensor(0.5, dtype=dtype, device=device)      # 0.5^e = 2^-e
        self.drift = self.DRIFT[dtype] if torch.device(device).type == "cpu" else 0
        # ||M|| has frexp exponent e in [-drift, drift] exactly when it lies in [lo, hi)
        self.lo, self.hi = 2.0 ** (-self.drift - 1), 2.0 ** self.drift
        self.small = torch.finfo(dtype).tiny ** 0.5          # below: squares lose digits
        self.half = int(math.log2(torch.finfo(dtype).max)) // 2   # past: 2^-e in 2 steps
        self.read = None                                     # (rows, their arrays)

    def __call__(self, M, k, batch=0):
        """Record log ||M|| for row k - 1 (M has sequences on axis `batch`); rescale M in
        place when its norm has drifted far from 1."""
        norm, before = self.norm(M, batch), self.total
        drifted = 0
        if self.drift:                     # (CPU: where GPU runs sync-free; a list read
            values = norm.tolist()         # costs ~1 us, a torch kernel ~3-20)
            low, high = min(values), max(values)
            # (min and max skip a nan that is not first in the list; the sum does not)
            if not self.small <= low <= high < math.inf or math.isnan(sum(values)):
                norm = self.norm(M, batch, exact=True)
                if math.inf in norm.tolist():   # finite entries, a norm past the dtype's
                    rest = tuple(d for d in range(M.ndim) if d != batch)   # max: largest
                    big = torch.where(torch.isinf(norm), M.abs().amax(dim=rest), 0)
                    before = self.total = before + self.shrink(M, big, batch)  # brought
                    norm = self.norm(M, batch, exact=True)    # to 2^(e - half) first
                values = norm.tolist()
                drifted = max(abs(math.frexp(v)[1]) for v in values)
            elif low < self.lo or high >= self.hi:
                drifted = max(abs(math.frexp(v)[1]) for v in values)
        if not self.drift:             # a GPU: no host read
            self.total = before + self.shrink(M, norm, batch)
        elif drifted > self.drift:
            e = torch.frexp(norm)[1]                            # norm = m 2^e; 0 -> 0, 0
            self.total = before + e
            shape = [-1 if d == batch else 1 for d in range(M.ndim)]
            # (exponents as M's floats: torch 2.4's ldexp takes 2^e in float32 from int
            # exponents, 0 past 2^-149, and the product became zero)
            if drifted > self.half:    # 2^-e alone may overflow (subnormal entries)
                half = torch.div(e, 2, rounding_mode="trunc")
                for part in (-half, half - e):
                    M.mul_(torch.ldexp(self.one, part.to(M.dtype)).view(shape))
            else:
                M.mul_(torch.ldexp(self.one, (-e).to(M.dtype)).view(shape))
        self.norms[k - 1], self.before[k - 1], self.after[k - 1] = norm, before, self.total
        self.read = None

    def shrink(self, M, norm, batch):
        """The GPU's rescale, with no host read: M times 2^-e for norm = m 2^e, e clamped
        to +-half (2^-e alone could overflow; the rest goes at the next step), 2^-e as
        0.5^e in one kernel. Returns e, the exponent divided out."""
        e = torch.frexp(norm)[1].clamp_(-self.half, self.half)
        M.mul_(torch.pow(self.base, e).view([-1 if d == batch else 1 for d in range(M.ndim)]))
        return e

    def norm(self, M, batch, exact=False):
        """||M||_F per sequence (axis `batch`). Its sum of squares overflows for entries
        past ~1e154 (float64; 1.8e19 in float32) and loses digits below ~1e-154, which a
        single Jacobian of huge or tiny weights reaches before any rescale: `exact`
        divides each sequence by its largest entry first (an amax and a pass more)."""
        if exact:
            rest = tuple(d for d in range(M.ndim) if d != batch)
            big = M.abs().amax(dim=rest, keepdim=True)
            safe = torch.where((big > 0) & torch.isfinite(big), big, 1)
            return self.norm(M / safe, batch) * safe.reshape(-1)
        if batch and not self.drift:        # a GPU: one kernel (each costs a launch)
            return torch.linalg.vector_norm(M, dim=tuple(d for d in range(M.ndim) if d != batch))
        norm = torch.linalg.vector_norm(M, dim=tuple(range(batch + 1, M.ndim)))
        if batch:                           # leading slabs: combine their norms (faster
            norm = torch.linalg.vector_norm(norm, dim=tuple(range(batch)))   # than one pass)
        return norm

    def _rows(self, rows):
        """(m, E + e, E after) at rows (a slice), each (lags, B): the frexp of the norms
        measured there and the exponents before and after each row's rescale."""
        if self.read is None or self.read[0] != (rows.start, rows.stop, rows.step):
            picked = range(*rows.indices(len(self.norms)))
            if not picked:                                      # no rows: (0, B) arrays
                none = self.total.new_empty((0, len(self.one)))
                return self.one.new_empty((0, len(self.one))), none, none
            norms, before, after = self.recorded(picked)
            mant, e = torch.frexp(norms)
            exps = before + e
            self.read = ((rows.start, rows.stop, rows.step), (mant, exps, after))
        return self.read[1]

    def recorded(self, picked):
        """The norms, and E before and after, recorded at rows `picked` (a range)."""
        return tuple(torch.stack([a[i] for i in picked])
                     for a in (self.norms, self.before, self.after))

    def release(self, rows):
        """Drop what was recorded at rows (a slice) once they are read: a (B,) tensor a row
        costs ~1 KB, which over 10^6 steps is more than the states."""
        for i in range(*rows.indices(len(self.norms))):
            self.norms[i] = self.before[i] = self.after[i] = None
        self.read = None

    def log(self, rows):
        """E ln 2 at rows (a slice), float64 (lags, B): add the log of a norm of the
        matrix as it was left (rescaled or not) to get that norm of the product."""
        return self._rows(rows)[2].double() * LN2

    def stored(self, rows):
        """||M||_F of the matrices as they were left (rescaled or not) at rows, (lags, B)
        in M's dtype: m 2^(E + e - E after), exact."""
        mant, exps, after = self._rows(rows)
        return torch.ldexp(mant, (exps - after).int())

    def frobenius(self, rows):
        """log ||P||_F = (E + e) ln 2 + ln m at rows: -inf where the product is zero."""
        mant, exps, _ = self._rows(rows)
        return exps.double() * LN2 + mant.double().log()


class Ring(Scale):
    """Scale's GPU form for the backward walk, where a chunk of lags can be recorded as a
    CUDA graph (`graphs`): a call writes its records in place (out=), into a ring of C
    rows (row k - 1 in slot (k - 1) mod C), so every chunk of C lags writes the very
    arrays the recorded one did, and E after the last slot is where the next chunk's
    first lag starts. Rows are read a chunk at a time, chunks aligned on C, in order, each
    before the next is written (as the walk reads them)."""

    def __init__(self, T, B, dtype, device, C):
        super().__init__(T, B, dtype, device)
        if self.drift:
            raise ValueError("Ring is the GPU's Scale: it rescales at every step")
        self.C = C
        self.ring = torch.empty(C, B, dtype=dtype, device=device)          # norms
        self.ends = torch.zeros(C, B, dtype=torch.int64, device=device)   # E after each
        self.start = torch.zeros(B, dtype=torch.int64, device=device)     # E before slot 0

    def __call__(self, M, k, batch=0):
        slot = (k - 1) % self.C
        before = self.total if k == 1 else self.ends[slot - 1]        # (slot 0: slot C - 1)
        if slot == 0:
            self.start.copy_(before)
        rest = tuple(d for d in range(M.ndim) if d != batch)
        torch.linalg.vector_norm(M, dim=rest, out=self.ring[slot])
        torch.add(before, self.shrink(M, self.ring[slot], batch), out=self.ends[slot])
        self.read = None

    def recorded(self, picked):
        first, count = picked.start % self.C, len(picked)
        if picked.step != 1 or first + count > self.C:
            raise ValueError(f"rows {picked} are not within one chunk of {self.C}")
        ends = self.ends[first:first + count]
        before = torch.cat([self.start[None] if first == 0 else self.ends[first - 1:first],
                            ends[:-1]])
        return self.ring[first:first + count].clone(), before, ends.clone()

    def release(self, rows):
        self.read = None
