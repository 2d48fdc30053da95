"""Checks written from published papers and code (Hochreiter & Schmidhuber 1997; Gers et
al. 2000; Cho et al. 2014; Pascanu et al. 2013; Engelken et al. 2020; Vogt et al. 2022):
where gradlab departs from a paper's convention, its documents say so."""

from gradlab.documents.derivation import markdown


def test_lstm_page_says_how_it_differs_from_the_1997_lstm():
    """`lstm` cites Hochreiter & Schmidhuber 1997, whose cell has no forget gate and squashes
    with scaled logistic sigmoids; the page called it "the basic LSTM" and said neither, so
    a reader writing the 1997 equations got other numbers with nothing to tell why."""
    page = markdown("lstm")
    assert "Hochreiter & Schmidhuber 1997" in page
    assert "had none, f = 1" in page
    assert "scaled logistic sigmoids" in page and "both squashings are tanh" in page
