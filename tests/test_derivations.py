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
