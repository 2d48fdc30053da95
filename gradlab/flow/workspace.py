"""Arrays reused from call to call: where a lowered Jacobian's in-place sums write."""

import math
import threading

import torch


class Workspace(threading.local):
    """Arrays handed out in the order asked for and handed out again, the same ones, after
    `reset`: the outputs of a lowered Jacobian's in-place sums (`xp.scaled_sum`), one per
    call site. A fresh array of a few megabytes costs a page fault per 4 KiB on first touch
    on the CPU, as long as the arithmetic that fills it; reused, it costs nothing. Thread-
    local, so each thread has its own. `empty` is the allocator handed to
    `lower.bind(..., empty=)`."""

    def __init__(self):
        self.arrays, self.taken = [], 0

    def reset(self):
        self.taken = 0

    def empty(self, shape, *, dtype, device):
        size, k = math.prod(shape), self.taken
        self.taken += 1
        if k == len(self.arrays):
            self.arrays.append(None)
        a = self.arrays[k]
        if a is None or a.numel() < size or a.dtype != dtype or a.device != torch.device(device):
            a = self.arrays[k] = torch.empty(size, dtype=dtype, device=device)
        return a[:size].view(shape)
