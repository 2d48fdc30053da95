"""The words the phase diagram and the gradient-decay report say, computed from their data
(an audit found three claims the committed data contradicted: gates lengthening memory
'at any weight scale' though the GRU's falls at sigma_w = 2.5 and 3; every block falling
at lambda_1 though peephole_lstm's do not within T; 'no state grows' beside a peephole
LSTM that drifts x3.08), and the theory crossings a leap to infinity leaves unplaced."""

import math

from gradlab.reports import phase_words as pw
from gradlab.reports.gradient_decay import drift_caption, paths_caption
from gradlab.reports.measurements import Setup
from gradlab.reports.sweep import Grid


def point(cell, ws, gb, rate, xi):
    return {"cell": cell, "weight_scale": ws, "gate_bias": gb, "rate": rate, "timescale": xi}


GRID = Grid(cells=("rnn_tanh", "gru"), weight_scales=(1.0, 3.0), gate_biases=(0.0, 2.0))


def test_the_gate_sentence_names_where_memory_falls_with_the_bias():
    points = [point("gru", 1.0, 0.0, -0.5, 2.0), point("gru", 1.0, 2.0, -0.1, 10.0),
              point("gru", 3.0, 0.0, 0.01, math.inf), point("gru", 3.0, 2.0, -0.02, 50.0)]
    text = pw.gate_words(GRID, points)
    assert "lengthens" not in text
    assert "The gate bias does not lengthen it everywhere for gru at σ_w = 3 (at σ_w = 3, " \
           "ξ = ∞ at gate bias 0 against 50 at 2)" in text
    points[2] = point("gru", 3.0, 0.0, -0.05, 20.0)
    assert pw.gate_words(GRID, points).startswith("The gate bias lengthens the memory of gru")


def test_the_gate_sentence_does_not_call_an_unchanged_memory_longer():
    """A probe found 'lengthens the memory ... at every weight scale' beside a table whose
    every point at sigma_w = 1e10 was xi = 0 at both gate biases, and beside a grid of one
    gate bias (nothing compared)."""
    points = [point("gru", 1.0, 0.0, -0.5, 2.0), point("gru", 1.0, 2.0, -0.1, 10.0),
              point("gru", 3.0, 0.0, -math.inf, 0.0), point("gru", 3.0, 2.0, -math.inf, 0.0)]
    text = pw.gate_words(GRID, points)
    assert "lengthens the memory of gru" not in text
    assert "The gate bias never shortens the memory, and leaves it unchanged at some " \
           "weight scales, for gru (unchanged at σ_w = 3: ξ = 0)" in text
    points[2:] = [point("gru", 3.0, 0.0, 0.1, math.inf), point("gru", 3.0, 2.0, 0.2, math.inf)]
    assert "unchanged at σ_w = 3: ξ = ∞" in pw.gate_words(GRID, points)
    one = Grid(cells=("gru",), weight_scales=(1.0, 3.0), gate_biases=(0.0,))
    assert pw.gate_words(one, [point("gru", 1.0, 0.0, -0.5, 2.0),
                               point("gru", 3.0, 0.0, -0.1, 10.0)]) == ""


def test_the_vanilla_sentence_says_where_memory_is_longest_and_where_it_grows():
    points = [point("rnn_tanh", 1.0, 0.0, -0.2, 5.0), point("rnn_tanh", 3.0, 0.0, 0.1, math.inf)]
    text = pw.vanilla_words(GRID, points)
    assert "longest among the decays at σ_w = 1 (ξ = 5)" in text
    assert "gradients do not decay from σ_w = 3 on" in text


def test_a_leap_to_infinity_leaves_its_crossings_unplaced_and_said():
    theory = {"curves": {"rnn_tanh": {"weight_scale": [1.8, 1.9, 2.0],
                                      "timescale": [20.0, 67.6, math.inf]}}}
    assert pw.unplaced_crossings(theory, [3, 10, 30, 100, 300]) == [
        ("rnn_tanh", [100, 300], 1.9, 2.0, 67.6)]


def _cell(lam, slopes, T=40, rms=(1.0, 1.0)):
    lags = list(range(1, T + 1))
    paths = {f"p{i}": [s * k / math.log(10) for k in lags] for i, s in enumerate(slopes)}
    drift = [rms[0]] * (T // 10 + 1) + [rms[1]] * (T - T // 10)
    return {"lags": lags, "paths": paths, "summary": {"lyapunov": [lam]},
            "path_kinds": {}, "drift": {"rms": drift}}


def test_one_rate_is_claimed_only_where_the_blocks_reach_it():
    cells = {"lstm": _cell(-0.2, [-0.199, -0.201]), "peephole_lstm": _cell(0.002, [-0.03, -0.008])}
    text = paths_caption(cells)
    assert "within 10% of λ₁ plus 0.002 for lstm" in text
    assert "not yet within T for peephole_lstm (slopes -0.03 to -0.008 against λ₁ = 0.002)" in text


def test_the_drift_caption_names_other_cells_that_grow():
    cells = {"prototype_lstm": _cell(-0.1, [], rms=(0.5, 0.5)),
             "peephole_lstm": _cell(0.0, [], rms=(0.45, 1.39))}
    text = drift_caption(Setup(cells=tuple(cells), steps=40), cells, ["prototype_lstm"])
    assert "None of these grows by ×2 or more" in text
    assert "Of the report's other cells, these grow by ×2 or more over the same steps: " \
           "peephole_lstm 0.45 → 1.39 (×3.09)" in text


def test_a_batch_rate_of_minus_infinity_says_how_many_sequences_died():
    """One sequence with an exactly zero product makes the mean log norm, and so the
    batch's rate, -inf; the findings said 'product exactly zero' as of the whole batch."""
    from gradlab.reports.gradient_decay import findings
    summary = {"rate": -math.inf, "status": "product zero", "lyapunov": [-0.5],
               "theory": None, "zero_sequences": 1, "sequences": 2}
    text = findings({"rnn_relu": {"summary": summary}})
    assert "rnn_relu: rate -∞, product zero in 1 of 2 sequences, so their mean log " \
           "norm is -∞ (ξ = 0 steps" in text
    summary["zero_sequences"] = 2
    assert "of 2 sequences" not in findings({"rnn_relu": {"summary": summary}})


def test_a_rise_too_small_to_tell_is_not_called_growth():
    """The committed report said "gradients do not decay from σ_w = 2 on" where its own
    table marked σ_w = 2 "gradients grow? (too slowly to tell from a slow decay)"."""
    from types import SimpleNamespace

    from gradlab.reports.phase_words import memory, vanilla_words
    grid = SimpleNamespace(cells=("rnn_tanh",), gates=lambda: [False])
    point = lambda ws, rate, ts, done=True: {"cell": "rnn_tanh", "weight_scale": ws,  # noqa
                                             "rate": rate, "timescale": ts, "converged": done}
    points = [point(1.0, -0.2, 2.5), point(2.0, 0.007, float("inf"), done=False),
              point(2.5, 0.05, float("inf")), point(3.0, 0.09, float("inf"))]
    assert memory(points[1]) is None and memory(points[2]) == float("inf")
    text = vanilla_words(grid, points)
    assert "do not decay from σ_w = 2.5 on" in text
    assert "at σ_w = 2 the norm rises too little to tell growth from a slow decay" in text
