"""Session 37: edges found by hand."""

import pytest

import gradlab
from gradlab.errors import GradlabError

from conftest import run_gradlab


@pytest.mark.parametrize("name", ["mine.py", "./cells/mine.py", " mine.py "])
def test_a_cell_file_named_without_its_cell_says_how_to_name_the_cell(name):
    with pytest.raises(GradlabError) as info:
        gradlab.cell(name)
    message = str(info.value)
    assert "\n" not in message
    assert "names a file, not a cell" in message
    assert f"{name.strip()}:NAME" in message


def test_the_cli_says_the_same_for_a_cell_file_without_its_cell(tmp_path):
    (tmp_path / "mine.py").write_text("import gradlab\n")
    result = run_gradlab(tmp_path, "derive", "mine.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "mine.py:NAME" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _cho_jacobian(fold_b_hn):
    """A user's derivation for torch's GRU written with the reset before the matrix."""
    cho = gradlab.cell("gru").jacobian_fn("state")

    def fn(p, state, x):
        b = p["b_in"] + p["b_hn"] if fold_b_hn else p["b_in"]
        return cho({"W_r": p["W_r"], "W_z": p["W_z"], "W": p["W_n"], "U_r": p["U_r"],
                    "U_z": p["U_z"], "U": p["U_n"], "b_r": p["b_ir"] + p["b_hr"],
                    "b_z": p["b_iz"] + p["b_hz"], "b": b}, state, x)
    return fn


@pytest.mark.parametrize("fold_b_hn", [True, False])
def test_cho_s_gru_checked_against_torch_s_is_named_as_the_reset_before_the_matrix(fold_b_hn):
    cell = gradlab.cell("gru_torch")
    params = cell.init_params(5, 3, seed=1, bias_scale=0.5)
    result = gradlab.check_jacobian(_cho_jacobian(fold_b_hn), cell, params)
    assert not result.ok
    said = " ".join(result.diagnosis)
    assert "reset applied before the matrix" in said and "--cell gru" in said, said


def test_a_temporary_report_folder_loses_its_mark_last(tmp_path, monkeypatch):
    """A run killed while removing the old report folder leaves the mark, so the next run
    knows the folder for gradlab's and removes it."""
    import os

    from gradlab import outputs

    target = tmp_path / "out"
    leftover = tmp_path / ".out.gradlab-abcdefgh"
    (leftover / "figs").mkdir(parents=True)
    for name in (outputs.MARK, outputs.MANIFEST, "a.md", "figs/b.png"):
        (leftover / name).write_text("x")
    real, calls = os.unlink, []

    def killed(path, *args, **kwargs):        # the second removal never happens
        calls.append(os.path.basename(path))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        outputs.remove_marked(leftover)
    monkeypatch.setattr(os, "unlink", real)
    assert (leftover / outputs.MARK).exists()
    outputs.clean_leftovers(target)
    assert not leftover.exists()


def test_a_let_is_reached_by_its_own_name_as_the_readme_says():
    import torch

    from gradlab import mean, tanh

    def q(s):
        s.let("a", tanh(s.W @ s.h))
        s.let("b2", s.a * s.a)
        return 2 * s.a + mean(s.b2) * s.a + s.U @ s.x
    cell = gradlab.declare(state="h", params="W U", source="test", name="let_by_name")(q)
    params = cell.init_params(4, 3, seed=0)
    h = torch.randn(2, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    step = cell.step_fn("torch")
    reference = torch.func.vmap(torch.func.jacrev(
        lambda hh, xx: step(params, (hh[None],), xx[None])[0][0]))(h, x)
    assert torch.allclose(cell.jacobian_fn("state")(params, (h,), x), reference,
                          rtol=1e-12, atol=1e-14)
    a = torch.tanh(h @ params["W"].T)
    expected = 2 * a + (a * a).mean(-1, keepdim=True) * a + x @ params["U"].T
    assert torch.allclose(step(params, (h,), x)[0], expected, rtol=1e-13, atol=1e-14)


def test_an_undeclared_name_lists_the_lets_among_the_declared():
    from gradlab import tanh

    def q(s):
        s.let("a", tanh(s.W @ s.h))
        return s.zz
    with pytest.raises(GradlabError, match=r"'zz' is not declared .*declared: h, x, W, U, a$"):
        gradlab.declare(state="h", params="W U", source="test", name="undeclared")(q)


@pytest.mark.parametrize("args", [("derive", "lstm", "--out", "-"),
                                  ("report", "--cells", "rnn_tanh", "--steps", "2", "--out", "-")])
def test_out_dash_is_refused_not_made_a_folder_named_dash(tmp_path, args):
    result = run_gradlab(tmp_path, *args)
    assert result.returncode == 2
    assert "--out '-': standard output cannot hold a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_write_torch_dash_is_refused_before_any_work(tmp_path):
    result = run_gradlab(tmp_path, "init", "gru_torch", "--timescale", "10", "--hidden", "4",
                         "--write-torch", "-")
    assert result.returncode == 2
    assert "--write-torch '-': a checkpoint is written to a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
