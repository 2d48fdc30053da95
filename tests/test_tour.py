"""derivations/tour.md runs as a doctest, as generated and as committed."""

import doctest
from pathlib import Path

import pytest

from gradlab.documents.tour import TOUR

COMMITTED = Path(__file__).resolve().parent.parent / "derivations" / "tour.md"


@pytest.mark.parametrize("source", ["generated", "committed"])
def test_the_tour_runs(source):
    text = TOUR if source == "generated" else COMMITTED.read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(text, {}, "tour", str(COMMITTED), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 20 and result.failed == 0, result
