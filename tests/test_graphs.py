"""The forward run in recorded chunks (gradlab.flow.graphs): on static arrays, chunk by
chunk, the same states as step by step, for every registered cell; on a GPU, the recorded
graph replayed gives the eager numbers, and a body that reads a value back to the host is
run eagerly instead of recorded."""

import pytest
import torch

import gradlab
from gradlab.flow import graphs, make_inputs, run_states, walk
from gradlab.flow.scale import Scale
from conftest import ALL, random_params, relative_error


@pytest.fixture
def chunked(monkeypatch):
    """The chunked run wherever it is asked for, on the CPU too (where nothing is
    recorded: the chunks run eagerly on the static arrays, through the same copies)."""
    monkeypatch.setattr(graphs, "wanted", lambda device, steps: True)


def test_chunk_steps():
    assert [graphs.chunk_steps(T) for T in (1, 24, 256, 1024, 4096, 10 ** 6)] == \
        [8, 8, 8, 16, 32, 64]


def test_wanted_only_on_cuda_for_long_enough_loops():
    assert not graphs.wanted("cpu", 10 ** 6)
    assert not graphs.wanted("cuda", 3 * graphs.CHUNK[0] - 1)


def test_record_runs_the_body_once_where_nothing_is_recorded():
    calls = []
    again = graphs.record(lambda: calls.append(1), "cpu")
    assert calls == [1]
    again()
    assert calls == [1, 1]


@pytest.mark.parametrize("name", ALL)
def test_chunks_give_the_states_step_by_step_does(name, chunked):
    """T = 37: four chunks of 8 steps (the first the one a GPU records), then 5 eagerly."""
    cell = gradlab.cell(name)
    params = random_params(cell, 5, 3, seed=2)
    xs = make_inputs("gaussian", 37, 2, 3, seed=4)
    state0 = tuple(torch.randn(2, 5, generator=torch.Generator().manual_seed(k),
                               dtype=torch.float64) for k in range(len(cell.state_names)))
    chunks = run_states(cell, params, xs, state0)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(graphs, "wanted", lambda device, steps: False)
        steps = run_states(cell, params, xs, state0)
    for a, b in zip(chunks, steps):
        assert a.shape == (38, 2, 5) and torch.equal(a, b)


def test_chunks_with_no_remainder_and_reversed(chunked):
    """T = 32: four chunks of 8 and nothing left over; and the run backwards."""
    cell = gradlab.cell("gru")
    params = random_params(cell, 4, 2)
    xs = make_inputs("gaussian", 32, 3, 2, seed=1)
    chunks = [run_states(cell, params, xs, reverse=r)[0] for r in (False, True)]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(graphs, "wanted", lambda device, steps: False)
        steps = [run_states(cell, params, xs, reverse=r)[0] for r in (False, True)]
    assert torch.equal(chunks[0], steps[0]) and torch.equal(chunks[1], steps[1])
    assert not torch.equal(chunks[0], chunks[1])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recorded_walk_gives_the_eager_numbers(name, monkeypatch):
    """The backward walk as on a GPU (rescaled at every step), its full chunks after the
    first run as recordings would replay them: the recording chunk's own code, again, on
    the static arrays (on the CPU `graphs.record` records nothing). T = 41 in chunks of 6:
    one recording per arrangement of the product buffers (two when the products are kept
    for the spectral norms, one for Frobenius norms alone), the last 5 lags eagerly."""
    cell = gradlab.cell(name)
    params = cell.init_params(6, 3, seed=0, weight_scale=1.3, bias_scale=0.4)
    xs = make_inputs("gaussian", 41, 2, 3)
    S = 6 * len(cell.state_names)
    monkeypatch.setitem(walk.CHUNK_BYTES, "cpu", 2 * 6 * 2 * S * S * 8)   # 6 lags a chunk
    monkeypatch.setitem(Scale.DRIFT, torch.float64, 0)
    runs = (("frobenius", "spectral"), True), (("frobenius",), False), (("min_singular",), False)
    eager = []
    for norms, blocks in runs:                  # each walked now (a Flow walks when read)
        flow = gradlab.gradient_flow(cell, params, xs, norms=norms, blocks=blocks)
        eager.append({kind: flow.log_norm(kind) for kind in norms})
        if blocks and name == "lstm":
            eager[-1]["h", "c"] = flow.block_log_norm("h", "c")
    recorded = []

    def record(body, device):
        recorded.append(body)
        body()
        return body

    monkeypatch.setattr(graphs, "wanted", lambda device, steps: True)
    monkeypatch.setattr(graphs, "record", record)
    # two recordings of the walk where its products are kept for the spectral norms (one
    # per buffer), one for Frobenius norms alone; none for smallest singular values
    # (walked with a per-lag inverse, eagerly); one of the forward run each time
    for (norms, blocks), want, walks in zip(runs, eager, (2, 1, 0)):
        recorded.clear()
        flow = gradlab.gradient_flow(cell, params, xs, norms=norms, blocks=blocks)
        for kind in norms:
            assert torch.equal(torch.as_tensor(flow.log_norm(kind)),
                               torch.as_tensor(want[kind]))
        if blocks and name == "lstm":
            assert torch.equal(torch.as_tensor(flow.block_log_norm("h", "c")),
                               torch.as_tensor(want["h", "c"]))
        assert len(recorded) == 1 + walks


# --- on a GPU -------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "peephole_lstm"])
def test_recorded_runs_match_eager_on_cuda(name, monkeypatch):
    """The forward run and the walk's products, recorded and replayed, against the same
    kernels run eagerly: the same numbers, but where cuBLAS picks another algorithm for
    a recorded product (round-off, which 100 steps can grow by a few orders)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    cell = gradlab.cell(name)
    params = random_params(cell, 24, 5, device="cuda")
    xs = make_inputs("gaussian", 100, 3, 5).cuda()
    assert graphs.wanted(xs.device, 100)
    norms = ("frobenius", "spectral")
    runs = []
    for recorded in (True, False):
        monkeypatch.setattr(graphs, "ENABLED", recorded)
        flow = gradlab.gradient_flow(cell, params, xs, norms=norms)
        runs.append((run_states(cell, params, xs),
                     [torch.as_tensor(flow.log_norm(kind)) for kind in norms]))
    (states, logs), (states0, logs0) = runs
    for a, b in zip(states, states0):
        assert relative_error(a, b) < 1e-12
    for a, b in zip(logs, logs0):
        assert relative_error(a, b) < 1e-10


@pytest.mark.cuda
def test_a_body_that_reads_the_host_runs_eagerly():
    x = torch.zeros(4, device="cuda")
    seen = []

    def body():                          # .item() syncs: no graph can hold it
        x.add_(1)
        seen.append(float(x.sum().item()))

    again = graphs.record(body, "cuda")
    again()
    torch.cuda.synchronize()
    assert float(x[0]) == len(seen) and len(seen) >= 2
