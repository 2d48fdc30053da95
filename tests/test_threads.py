"""gradlab from several threads at once, and from inside its own progress listener:
the process's stdout and os._exit are left as they were found, a cell file loads once,
a cached stack is one Cell, and a walk is never run over another walk's arrays."""

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import gradlab
from gradlab import progress
from gradlab.errors import GradlabError


def test_overlapping_checks_restore_stdout_and_os_exit():
    """Each check put its own stdout back in the order they ended: the one that ended
    last restored the other's replacement, and os._exit stayed refused for good."""
    cell = gradlab.cell("gru")
    params = cell.init_params(4, 3, seed=0)
    jac = cell.jacobian_fn()
    stdout, exit_ = sys.stdout, os._exit
    started = threading.Barrier(2)

    def slow(i):
        def fn(p, s, x):
            if i is not None:
                started.wait(timeout=10)
                time.sleep(0.05 * (1 + i))
            return jac(p, s, x)
        return fn

    with ThreadPoolExecutor(2) as pool:
        oks = list(pool.map(lambda i: gradlab.check_jacobian(slow(i), cell, params,
                                                             batch=1).ok, (1, 0)))
    assert oks == [True, True]
    assert sys.stdout is stdout and os._exit is exit_


SLOW_CELL = '''
import time
import gradlab
time.sleep(0.3)                   # a slow import: the second thread arrives meanwhile

@gradlab.declare(state="h", params="W U b", source="a test")
def slowpoke(s):
    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)
'''


def test_a_cell_file_asked_for_by_two_threads_at_once_loads_once(tmp_path):
    """The second thread found the module half run and was told the file has no cell."""
    path = tmp_path / "slow_cells.py"
    path.write_text(SLOW_CELL)
    spec = f"{path}:slowpoke"
    stdout = sys.stdout
    with ThreadPoolExecutor(3) as pool:
        cells = list(pool.map(lambda _: gradlab.cell(spec), range(3)))
    assert len({id(c) for c in cells}) == 1 and cells[0].name == "slowpoke"
    assert sys.stdout is stdout


def test_a_stack_made_in_several_threads_is_one_cell():
    with ThreadPoolExecutor(4) as pool:
        cells = list(pool.map(lambda _: gradlab.stack("rnn_relu", 7), range(4)))
    assert len({id(c) for c in cells}) == 1 and gradlab.stack("rnn_relu", 7) is cells[0]


def test_a_listener_that_asks_the_same_flow_mid_walk_is_refused_not_misled():
    """Its walk overwrote the arrays the first walk held: the first returned spectral
    norms 0.45 off in the log, and kept them."""
    cell = gradlab.stack("lstm", 2)
    params = cell.init_params(16, 4, seed=3)
    xs = torch.randn(40, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = gradlab.gradient_flow(cell, params, xs).log_norm("spectral")
    flow = gradlab.gradient_flow(cell, params, xs)
    asked = []

    def listener(what, done, total):
        if what == "backward walk" and done == 3 and not asked:
            asked.append(what)
            flow.log_norm("min_singular")

    with progress.listening(listener):
        with pytest.raises(GradlabError, match="running in this thread already"):
            flow.log_norm("spectral")
    assert asked
    assert np.array_equal(flow.log_norm("spectral"), want)     # nothing wrong was kept
    with progress.listening(lambda *a: flow.lyapunov(2)):      # (its own walk, too)
        with pytest.raises(GradlabError, match="running in this thread already"):
            flow.loss_grad_norms(seed=5)


INNER = '''
import gradlab

@gradlab.declare(state="h", params="W U b", source="a test")
def inner(s):
    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)
'''

OUTER = '''
import sys, threading
import gradlab
sys.stdout.buffer.write(b"")           # a file's import may use what a stream offers
assert sys.stdout.encoding
found = []
t = threading.Thread(target=lambda: found.append(gradlab.cell({inner!r})))
t.start()
t.join(timeout=60)
assert found, "the thread loading another file waited on this one"

@gradlab.declare(state="h", params="W U b", source="a test")
def outer(s):
    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)
'''


def test_a_cell_file_may_load_another_in_a_thread_and_use_its_stdout(tmp_path):
    """One lock for every file made a thread that loads another file wait on the file
    whose import started it; stdout was moved to an object with no buffer or encoding."""
    (tmp_path / "inner_cells.py").write_text(INNER)
    (tmp_path / "outer_cells.py").write_text(
        OUTER.format(inner=f"{tmp_path / 'inner_cells.py'}:inner"))
    assert gradlab.cell(f"{tmp_path / 'outer_cells.py'}:outer").name == "outer"


class _Step(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3 + 5, 5).double()

    def forward(self, x, h):
        return torch.tanh(self.lin(torch.cat([x, h], -1)))


def test_a_listener_may_ask_a_torch_module_flow_for_more_mid_walk():
    """A module's steps come fresh from jacrev: a second walk overwrites nothing of the
    first, and is not refused."""
    torch.manual_seed(0)
    step = _Step()
    xs = torch.randn(24, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 5, dtype=torch.float64)
    want = gradlab.gradient_flow(step, xs, state0=h0).log_norm("spectral")
    flow = gradlab.gradient_flow(step, xs, state0=h0)
    asked = []

    def listener(what, done, total):
        if what == "backward walk" and not asked:
            asked.append(None)                  # (the inner walk calls the listener too)
            asked[0] = flow.log_norm("min_singular")

    with progress.listening(listener):
        got = flow.log_norm("spectral")
    assert asked[0] is not None and np.array_equal(got, want)
