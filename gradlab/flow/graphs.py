"""Replaying a chunk of identical steps as one CUDA graph.

On a GPU one step of a cell is a few dozen small kernels, each launched from Python at
~10-20 us of host time apiece, far more than the device needs to run them: a loop of steps
is bound by the host. A CUDA graph records the kernels of a chunk of K steps once and
launches them all again with one call (`torch.cuda.CUDAGraph.replay`), each time on the
same arrays. So a chunk's loop runs on fixed ("static") arrays: the caller copies the
chunk's inputs in, replays, and copies its outputs out; a few copies per K steps in place
of K steps of launches. The same kernels run on the same arrays as eagerly.

    body = ...                           # K steps on static arrays, no host reads
    again = record(body, device)         # runs body once (real work), then records it
    ...                                  # later chunks: copy in, again(), copy out

`record` returns body itself where no graph is recorded (a CPU, `ENABLED` off, or a body
whose capture fails: one that reads a value back to the host, or runs out of memory), so
the caller's loop is the same either way. A graph keeps the memory its chunk's
temporaries took while it is held (the walk's: the chunk's Jacobian blocks, about C B
S^2 numbers, for each of its at most four graphs), until the call that recorded it
returns.
"""

import math

import torch

ENABLED = True          # False: run every chunk eagerly (to time the eager path)
CHUNK = (8, 64)         # the fewest and most steps a graph records


def wanted(device, steps):
    """Is it worth recording chunks of `steps` steps on `device`? A CUDA device, ENABLED,
    and enough steps that the recording (as costly as one eager chunk) is repaid."""
    return ENABLED and torch.device(device).type == "cuda" and steps >= 3 * CHUNK[0]


def chunk_steps(T):
    """Steps per recorded chunk for a loop of T: about sqrt(T) / 2, within CHUNK. The
    first chunk runs eagerly and is then recorded, two chunks' worth of launches from
    Python; each later chunk costs a replay and a few copies, which must stay below the
    device's time for the chunk's kernels. On an H200 (lstm n = 256, B = 32, T = 256) the
    forward run took 63 ms eagerly (0.25 ms a step) and 21 ms in chunks of 16 steps, of
    which the first chunk's two eager passes are about 8 ms: T = 256 now gets 8."""
    return int(min(max(round(math.sqrt(T) / 2), CHUNK[0]), CHUNK[1]))


def record(body, device):
    """Run body() once, eagerly, on a side stream (its real work, and the warm-up a
    capture needs: cuBLAS handles and workspaces made outside the graph), then record it
    as a CUDA graph; return a callable that replays the graph, or body itself where none
    was recorded (see `wanted`, and a capture that fails). Recorded by capture_begin and
    capture_end rather than `torch.cuda.graph`, which empties the allocator's cache at
    each recording (and in some torch versions runs the garbage collector: ~0.1 s in a
    process holding SymPy's derivations)."""
    if not (ENABLED and torch.device(device).type == "cuda"):
        body()
        return body
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(side):
        body()
    try:                          # (a capture runs nothing: body's arrays stay as it left them)
        with torch.cuda.stream(side):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                body()
            finally:
                graph.capture_end()
    except RuntimeError:          # a body the graph cannot hold (torch.cuda.CudaError is
        current.wait_stream(side)     # one): it runs eagerly from here on
        return body
    current.wait_stream(side)
    return graph.replay
