"""derivations/ is golden: it must be exactly what `gradlab derive --all` writes today."""

from pathlib import Path

from gradlab.documents.derivation import write_all
from conftest import assert_ok, assert_one_line_error, invoke

COMMITTED = Path(__file__).resolve().parent.parent / "derivations"
FIX = "regenerate with `gradlab derive --all --out derivations` and commit the result"


def test_derivations_match_the_generator(tmp_path):
    write_all(tmp_path)
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    missing, extra = sorted(set(fresh) - set(committed)), sorted(set(committed) - set(fresh))
    assert not missing and not extra, (
        f"derivations/ lacks {missing} and has stale {extra}: {FIX}")
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"derivations/ differs from the generator in {stale}: {FIX}"


def test_a_dense_block_with_a_gated_diagonal_term_is_not_called_the_way_it_forgets():
    """The GRU's ∂h'/∂h holds diag(z) beside its weights: the page called it 'the vanilla
    RNN's only path, and the way it forgets'; and every input block was said to multiply
    the gradient 'at every step'."""
    from gradlab.documents.derivation import markdown
    gru, rnn = markdown("gru"), markdown("rnn_tanh")
    assert "Dense, with a diagonal part" in gru and "the way it forgets" not in gru
    assert "the way it forgets" in rnn
    inputs = gru.split("## Input Jacobian")[1]
    assert "every step" not in inputs and "reads every unit of x" in inputs


def test_a_users_cell_does_not_replace_the_builtin_page_of_its_name(tmp_path):
    """derive path.py:lstm into a folder holding gradlab's lstm.md replaced it (and the
    index's lstm row) with the user's cell; a user's own earlier page is still updated."""
    cells = tmp_path / "mycells.py"
    cells.write_text("import gradlab\n\n\n"
                     "@gradlab.declare(state='h', params='W U b', source='mine')\n"
                     "def lstm(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    out = tmp_path / "docs"
    assert_ok(invoke("derive", "lstm", "--out", out))
    builtin = (out / "lstm.md").read_text(encoding="utf-8")
    result = invoke("derive", f"{cells}:lstm", "--out", out)
    assert_one_line_error(result, "shares the name of gradlab's built-in lstm")
    assert (out / "lstm.md").read_text(encoding="utf-8") == builtin
    mine = tmp_path / "mine"
    for _ in range(2):
        assert_ok(invoke("derive", f"{cells}:lstm", "--out", mine))
