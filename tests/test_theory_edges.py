"""gradlab.theory at the edges a referee's probe found: a nan scale is no number (it read
-inf, "the product is zero"), an integer past float's range is one line (it raised
OverflowError), and a finite W whose norm overflows still has a log."""

import math

import numpy as np
import pytest

import gradlab
from gradlab import GradlabError, theory
from gradlab.errors import real


@pytest.mark.parametrize("key", ["bias_scale", "input_scale", "input_power"])
def test_a_nan_scale_gives_nan_not_minus_infinity(key):
    assert math.isnan(theory.mean_field_rate(1.0, **{key: math.nan}))
    assert theory.mean_field_rate(1.0, **{key: math.inf}) == -math.inf   # the limit


def test_an_integer_past_floats_range():
    for call in (lambda: gradlab.mean_field("lstm", weight_scale=10 ** 400),
                 lambda: gradlab.critical_init("gru", 10 ** 400)):
        with pytest.raises(GradlabError, match=r"must be a finite real number.*"
                                               r"\(401 characters\)") as err:
            call()
        assert len(str(err.value)) < 200
    assert real(10 ** 400, "x", finite=False) == math.inf           # where inf may pass
    assert theory.gate_rate(10 ** 400) == 0.0 and theory.gate_rate(-10 ** 400) == -math.inf
    assert theory.timescale(-10 ** 400) == 0.0
    # theory's own functions take inf (documented: nan past sigma_w ~ 1e154), so 10**400 too
    assert math.isnan(theory.mean_field_rate(10 ** 400)) and math.isnan(
        theory.mean_field_rate(math.inf))


def test_pascanu_rate_of_a_matrix_whose_norm_overflows():
    W = np.full((3, 3), 1e308)
    assert theory.pascanu_rate(W) == pytest.approx(math.log(3) + math.log(1e308), rel=1e-14)
    assert theory.pascanu_rate(2 * np.eye(3), 1.5) == pytest.approx(math.log(3.0))
    assert theory.pascanu_rate(np.zeros((2, 2))) == -math.inf
    assert theory.pascanu_rate(np.eye(2), 0.0) == -math.inf
    assert math.isnan(theory.pascanu_rate(np.array([[1.0, math.nan], [0, 1]])))
