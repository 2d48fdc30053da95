"""The running product of state Jacobians, kept transposed in row slabs by block structure."""

import torch

from .bound import assemble, kinds as block_kinds


class Chain:
    """The running product kept transposed, P_k^T = J_{T-k+1}^T P_{k-1}^T, normalised.

    P^T is stored as g row slabs of width w, (g, B, w, S): for a cell whose Jacobian has
    diagonal or zero blocks (the LSTM's d c'/d c = diag(f)) one slab per state part, so
    slab j of J^T P^T is sum_i J_ij^T slab_i with a bmm for a dense block, a broadcast
    multiply for a diagonal one (held as its diagonal) and nothing for a zero one (the
    LSTM: half the flops of a dense product); otherwise one slab, J assembled, one bmm.
    """

    def __init__(self, bound, C, dtype, device):
        kinds, parts, n, S = block_kinds(bound.cell), bound.parts, bound.n, bound.S
        dense = sum(k == "dense" for row in kinds for k in row)
        self.structured = parts > 1 and 2 * dense <= parts * parts
        self.g, self.w = (parts, n) if self.structured else (1, S)
        self.kinds = kinds if self.structured else (("dense",),)
        self.bound, self.C, self.S = bound, C, S
        self.assemble = not self.structured and kinds != (("dense",),)
        if self.assemble:        # several parts, or one that is diagonal or zero
            self.jbuf = torch.empty(C, bound.B, S, S, dtype=dtype, device=device)

    def jacobians(self, state, x, steps):
        """Blocks [i][j] of J for `steps` steps at once, each (steps, B, w, w), or
        (steps, B, w, 1) for a diagonal block, None for a zero one (structured)."""
        rows = self.bound.blocks(state, x, steps)
        if not self.assemble:
            return rows
        J = self.jbuf[:steps]
        for j in range(steps):
            assemble(rows, j, J[j])
        return [[J]]

    def dense(self, rows, j, out):
        """J at step j of the chunk as one (B, S, S) matrix (for the inverse product)."""
        return assemble(rows, j, out) if self.structured else rows[0][0][j]

    def transposed(self, rows, steps):
        """The chunk's blocks step by step, as the product uses them: [j][a][b] is
        J_ab^T at step j ((B, w, w) views made once per chunk), J_ab's diagonal (B, w, 1)
        for a diagonal block, None for a zero one."""
        split = [[None if b is None else (b.mT if k == "dense" else b).unbind(0)
                  for b, k in zip(row, kinds)] for row, kinds in zip(rows, self.kinds)]
        return [[[None if b is None else b[j] for b in row] for row in split]
                for j in range(steps)]

    def first(self, Jt, Q):
        """Q (g, B, w, S) <- J^T, from one step of `transposed`."""
        w = self.w
        for a, row in enumerate(Jt):
            for b, kind in enumerate(self.kinds[a]):
                target = Q[b, :, :, a * w:(a + 1) * w]             # block (b, a) of J^T
                if kind == "dense":
                    target.copy_(row[b])
                else:
                    target.zero_()
                    if kind == "diagonal":
                        target.diagonal(dim1=-2, dim2=-1).copy_(row[b][..., 0])

    def step(self, Jt, Q, out):
        """out <- J^T Q, from one step of `transposed`; Q and out are tuples of the g slabs
        (B, w, S) of the product: slab b of the result is sum_a J_ab^T Q[a]."""
        for b in range(self.g):
            first = True
            for a in range(self.g):
                kind = self.kinds[a][b]
                if kind == "zero":
                    continue
                block = Jt[a][b]
                if kind == "diagonal":                               # block: (B, w, 1)
                    if first:
                        torch.mul(Q[a], block, out=out[b])
                    else:
                        out[b].addcmul_(Q[a], block)
                elif first:
                    torch.bmm(block, Q[a], out=out[b])
                else:
                    out[b].baddbmm_(block, Q[a])
                first = False
            if first:
                out[b].zero_()

    def rows(self, Qc, lags):
        """A chunk's products (g, C, B, w, S) as the row slabs of its P^T matrices, g of
        (lags * B, w, S), views: what `Spectral.of_rows` reads, with no copy."""
        return tuple(q[:lags].reshape(lags * q.shape[1], self.w, self.S) for q in Qc)

    def blocks_of(self, Qc, lags, parts, n):
        """X (lags, B, in part, n, out part, n) with X[.., b, r, a, c] = P[(a, c), (b, r)],
        from the chunk's products (g, C, B, w, S)."""
        g, _, B = Qc.shape[:3]
        if g == 1:
            return Qc[0, :lags].view(lags, B, parts, n, parts, n)
        return Qc[:, :lags].view(g, lags, B, n, parts, n).permute(1, 2, 0, 3, 4, 5)
