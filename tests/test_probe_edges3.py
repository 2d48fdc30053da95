"""Probed edges, third round: a function under test that changes torch's process-wide
state or ends the check its own way, the display of what the language returns, and the
folders the writing commands are pointed at."""

import random
import signal
import sys

import numpy as np
import pytest
import torch

import gradlab
from gradlab.torch_state import default_device
from conftest import assert_one_line_error, invoke


def _right(p, state, x):
    pre = state[0] @ p["W"].T + x @ p["U"].T + p["b"]
    return torch.diag_embed(1 - torch.tanh(pre) ** 2) @ p["W"]


def _torch_state():
    return (torch.get_default_dtype(), default_device(), torch.is_grad_enabled(),
            torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(),
            torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
            sys.getrecursionlimit())


def _same(a, b):
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else
               np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in zip(a, b))


SETS = {
    "default device": lambda: torch.set_default_device("meta"),
    "default dtype": lambda: torch.set_default_dtype(torch.float16),
    "grad mode": lambda: torch.set_grad_enabled(False),
    "seeds": lambda: (torch.manual_seed(123), np.random.seed(1), random.seed(2)),
    "deterministic": lambda: torch.use_deterministic_algorithms(True),
    "threads": lambda: torch.set_num_threads(1),
    "recursion limit": lambda: sys.setrecursionlimit(60),
}


@pytest.mark.parametrize("what", sorted(SETS))
def test_what_the_function_under_test_sets_of_torch_is_put_back(what):
    """A Jacobian that calls torch.set_default_device("meta") (or set_default_dtype,
    set_grad_enabled(False), manual_seed...) for itself: the check went on under it (an
    internal error, a RecursionError, on the meta device) and the caller's session kept
    it. It agrees, and torch is left as it was found."""
    rnn = gradlab.cell("rnn_tanh")
    params = rnn.init_params(3, 2)
    before = _torch_state()

    def fn(p, state, x):
        SETS[what]()
        return _right(p, state, x)

    try:
        assert gradlab.check_jacobian(fn, rnn, params, batch=2).ok
        assert _same(before, _torch_state())
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(before[0])
        torch.set_grad_enabled(True)
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before[7])
        sys.setrecursionlimit(before[8])


def test_a_keyboard_interrupt_the_function_raises_itself_is_one_line(tmp_path, monkeypatch):
    """`raise KeyboardInterrupt` in the function under test, with no Ctrl-C pressed, read
    as the user's Ctrl-C: `gradlab: interrupted`, exit 130, from Python a bare
    KeyboardInterrupt. It is the function's failure: one line naming it, exit 2."""
    rnn = gradlab.cell("rnn_tanh")

    def fn(p, state, x):
        raise KeyboardInterrupt("stop")

    with pytest.raises(gradlab.GradlabError, match=r"raised KeyboardInterrupt at .*: stop "
                                                   r"\(no Ctrl-C was pressed\)"):
        gradlab.check_jacobian(fn, rnn, rnn.init_params(3, 2), batch=2)
    (tmp_path / "mine.py").write_text("def jac(p, s, x):\n    raise KeyboardInterrupt\n")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke("check", "mine.py:jac", "--cell", "rnn_tanh"),
                          "KeyboardInterrupt")


def test_a_ctrl_c_inside_the_function_under_test_is_still_the_users():
    rnn = gradlab.cell("rnn_tanh")

    def fn(p, state, x):
        signal.raise_signal(signal.SIGINT)
        return _right(p, state, x)

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        gradlab.check_jacobian(fn, rnn, rnn.init_params(3, 2), batch=2)
    assert signal.getsignal(signal.SIGINT) is handler


class _Answer:
    """A returned object whose reading as an array runs code of its own."""

    def __init__(self, value, then):
        self.value, self.then = value, then

    def __array__(self, dtype=None, copy=None):
        self.then()
        return self.value.numpy()


@pytest.mark.parametrize("how", ["sys.exit", "default device"])
def test_reading_the_returned_object_runs_guarded(how):
    """The object the function returns is read by its own __array__: a sys.exit(0) there
    ended `gradlab check` with status 0 and nothing said (a pass, to a shell), and a
    default device it set made its numbers a meta tensor. Now sys.exit is one line, and
    what it sets is put back."""
    rnn = gradlab.cell("rnn_tanh")
    then = {"sys.exit": lambda: sys.exit(0),
            "default device": lambda: torch.set_default_device("meta")}[how]

    def fn(p, state, x):
        return _Answer(_right(p, state, x), then)

    try:
        if how == "sys.exit":
            with pytest.raises(gradlab.GradlabError,
                               match=r"reading the _Answer the function under test "
                                     r"returned called sys.exit\(0\)"):
                gradlab.check_jacobian(fn, rnn, rnn.init_params(3, 2), batch=2)
        else:
            assert gradlab.check_jacobian(fn, rnn, rnn.init_params(3, 2), batch=2).ok
            assert default_device().type == "cpu"
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("args", [["derive", "rnn_tanh", "--out", "link/report"],
                                  ["init", "rnn_tanh", "--timescale", "5", "--write-torch",
                                   "link/a/model.pt"]])
def test_no_folder_is_made_through_a_dangling_link(tmp_path, monkeypatch, args):
    """A folder above --out that is a symbolic link to nothing: gradlab made the folders
    where the link points (Path.resolve follows it), here outside the folder the user
    gave, and wrote the report there; --write-torch called the link 'a file'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "deep")
    assert_one_line_error(invoke(*args), "link' is a symbolic link to")
    assert not (tmp_path / "elsewhere").exists()


def test_a_deep_stacks_notebook_display_names_its_recurring_sums():
    """A notebook's display of a 5-layer LSTM stack (cell._repr_latex_, and its Markdown)
    wrote every block out in full: each layer doubles them, 1.2 million characters of
    LaTeX in 4 s (6 layers: 4.8 million, 16 s). Past `DISPLAYED` nodes it shows the blocks
    as the Jacobian itself prints them, a sum that recurs named; every block still has its
    line."""
    from gradlab.symbolic.printing import DISPLAYED, block_name, written_size
    stack = gradlab.stack("lstm", 5)
    jacobians = [stack.jacobian("state"), stack.jacobian("input")]
    assert written_size([b for J in jacobians for b in J.blocks]) > 10 * DISPLAYED
    shown = stack._repr_latex_()
    assert shown is not None and len(shown) < 100_000
    for J in jacobians:
        for out in J.outs:
            for wrt in J.ins:
                assert block_name(out, wrt, "latex") + " &= " in shown
    small = gradlab.cell("lstm")._repr_latex_()       # a cell's own: written out in full
    assert all(block_name(o, w, "latex") + " &= " in small
               for o in ("h'", "c'") for w in ("h", "c", "x"))
