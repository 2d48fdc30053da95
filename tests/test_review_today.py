"""Regression tests for defects found reviewing the day's commits (eac0f44..8511374)."""

import builtins
import sys
import textwrap
import threading

import gradlab

WAITING_CELL = textwrap.dedent('''
    import builtins
    import gradlab

    _events = builtins._review_today_events
    _events[{start!r}].set()
    _events[{wait!r}].wait(10)


    @gradlab.declare(state="h", params="W", source="test")
    def mine(s):
        return s.W @ s.h
''')


def test_a_load_that_began_during_another_leaves_no_folder_of_it_on_sys_path(
        tmp_path, monkeypatch):
    """Thread A loads a/cell.py, thread B loads b/cell.py while A runs, A ends first: B
    kept the path as it found it, A's folder included, and put a/ back on sys.path for
    good after both had ended."""
    monkeypatch.setattr(sys, "path", list(sys.path))        # (restored, whatever happens)
    events = {k: threading.Event() for k in ("a_started", "b_started", "a_done")}
    monkeypatch.setattr(builtins, "_review_today_events", events, raising=False)
    paths = {}
    for who, start, wait in (("a", "a_started", "b_started"), ("b", "b_started", "a_done")):
        (tmp_path / who).mkdir()
        paths[who] = tmp_path / who / "cell.py"
        paths[who].write_text(WAITING_CELL.format(start=start, wait=wait))
    before = list(sys.path)
    failed = []

    def load(who):
        try:
            if who == "b":
                events["a_started"].wait(10)
            gradlab.cell(f"{paths[who]}:mine")
        except BaseException as err:  # noqa: BLE001  (reported below)
            failed.append(err)
        finally:
            if who == "a":
                events["a_done"].set()

    threads = [threading.Thread(target=load, args=(who,)) for who in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not failed
    assert sys.path == before


def test_log_norm_of_zero_slices_copies_and_rescales_nothing(monkeypatch):
    """walk takes every block's Frobenius norm by log_norm (e0ee3f9), on every chunk, by
    default: a stack's blocks from an upper layer to a lower one are exactly zero, and
    each went through the rescaling pass (a gather of the slices, two ldexp), twice the
    cost of the norms. A zero slice is -inf as it is; one that underflowed is still
    rescaled, exactly."""
    import math

    import torch

    from gradlab.flow.scale import log_norm

    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    x[:, 1] = 0
    want = torch.linalg.vector_norm(x, dim=(2, 3)).log()
    real = torch.ldexp

    def refuse(*args, **kwargs):
        raise AssertionError("a zero slice was rescaled")

    monkeypatch.setattr(torch, "ldexp", refuse)
    got = log_norm(x, (2, 3))
    assert torch.equal(got, want) and bool((got[:, 1] == -math.inf).all())
    monkeypatch.setattr(torch, "ldexp", real)
    x[:, 2] = 1e-200 * torch.eye(4, dtype=torch.float64)
    got = log_norm(x, (2, 3))
    assert bool((got[:, 1] == -math.inf).all())
    torch.testing.assert_close(got[:, 2], torch.full((5,), math.log(2e-200),
                                                     dtype=torch.float64), rtol=1e-15, atol=0)
