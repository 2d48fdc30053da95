"""derivations/ is golden: it must be exactly what `gradlab derive --all` writes today."""

from pathlib import Path

from gradlab.documents.derivation import write_all

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
