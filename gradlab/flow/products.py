"""A chunk of the backward walk's running products, eagerly or replayed from a CUDA graph.

A chunk of lags k0..k1 takes its Jacobians J_t (t = T-k1+1..T-k0+1) from one lowered call,
then forms P_k^T = J^T P_{k-1}^T lag by lag (`Chain`), each scaled exactly (`Scale`). On a
GPU that loop is a dozen small kernels a lag, bound by the host's launches, so the full
chunks after the first are recorded (`graphs`) on static arrays: the chunk's states and
inputs are copied into them, and the products are written where the recorded chunk wrote
them. Which arrays those are depends on the chunk's place in the ping-pong of product
buffers, so one graph is recorded per arrangement (at most four, usually two).
"""

from .. import progress
from . import graphs


class Products:
    """The walk's products chunk by chunk: `products(c, k0, lags, each)` fills chunk c
    (lags k0..k0+lags-1) and returns its Jacobians (their blocks, see `Chain.jacobians`),
    or None where the chunk was replayed. `each(i, k, j, J)`, if given, runs after lag k
    (the i-th of the chunk, Jacobian j of J), eagerly: a chunk with it is never recorded.

    `Qs`: the chunks' products (ping, g, C, B, w, S) when they are kept for norms after
    the chunk; else None, and `alternate` holds two (g, B, w, S) buffers, lag k in k % 2.
    """

    def __init__(self, bound, chain, states, xs, scale, C, Qs, alternate, record):
        self.bound, self.chain, self.states, self.xs, self.scale = bound, chain, states, xs, scale
        self.C, self.Qs, self.alternate = C, Qs, alternate
        self.T, self.B = xs.shape[:2]
        self.ping = 1 if Qs is None else Qs.shape[0]
        self.record = record and self.T // C >= 4     # chunk 0, two recorded, one replay
        self.replays = {}                             # arrangement -> replay (or eager)
        if self.record:                               # static copies of a chunk's inputs
            self.sbuf = tuple(s.new_empty(C, *s.shape[1:]) for s in states)
            self.xbuf = xs.new_empty(C, *xs.shape[1:])

    def __call__(self, c, k0, lags, each=None):
        if not (self.record and c > 0 and lags == self.C and each is None):
            return self.eager(c, k0, lags, *self.inputs(k0, lags), each=each)
        states, x = self.inputs(k0, lags)
        for buf, s in zip(self.sbuf, states):
            buf.copy_(s)
        self.xbuf.copy_(x)
        key = (c % self.ping, k0 % 2)
        if key in self.replays:
            self.replays[key]()
        else:
            self.replays[key] = graphs.record(
                lambda: self.eager(c, k0, lags, self.sbuf, self.xbuf, report=False),
                self.xs.device)
        k = k0 + lags - 1
        if progress.due(k - 1, self.T):
            progress.advance("backward walk", k, self.T)
        return None

    def inputs(self, k0, lags):
        """The states and inputs the chunk's Jacobians read: J_t at (s_{t-1}, xs[t-1])."""
        lo, hi = self.T - (k0 + lags - 1), self.T - k0 + 1
        return tuple(s[lo:hi] for s in self.states), self.xs[lo:hi]

    def slabs(self, c, lags):
        """P_k^T for the chunk's lags, each as (whole (g, B, w, S), its g slabs): slot i
        of chunk c's buffer (views made once a chunk), or None: the alternating buffers."""
        if self.Qs is None:
            return None
        return [(q, q.unbind(0)) for q in self.Qs[c % self.ping][:, :lags].unbind(1)]

    def eager(self, c, k0, lags, states, x, each=None, report=True):
        chain, n, B = self.chain, self.bound.n, self.B
        J = chain.jacobians(tuple(s.reshape(-1, n) for s in states),
                            x.reshape(lags * B, -1), lags)      # [a][b][j]: lag k0+lags-1-j
        Jt = chain.transposed(J, lags)
        slabs, held = self.slabs(c, lags), None
        if k0 > 1 and slabs is None:                        # P_{k0-1}^T: the chunk before
            held = self.alternate[(k0 - 1) % 2]
        elif k0 > 1:                                        # ended it in its last slot
            q = self.Qs[(c - 1) % self.ping][:, self.C - 1]
            held = q, q.unbind(0)
        for i in range(lags):
            k, j = k0 + i, lags - 1 - i
            cur = self.alternate[k % 2] if slabs is None else slabs[i]   # P_k^T, slabs
            if k == 1:
                chain.first(Jt[j], cur[0])
            else:                                           # from P_{k-1}^T, still held
                chain.step(Jt[j], held[1], cur[1])          # (ping-pong)
            self.scale(cur[0], k, batch=1)
            held = cur
            if each is not None:
                each(i, k, j, J)
            if report and progress.due(k - 1, self.T):
                progress.advance("backward walk", k, self.T)
        return J
