"""Probes of `gradlab train`'s findings: the text a report prints follows its numbers."""

import math

import pytest

from gradlab.training import learnability as ln


def run(cell, rms, lyapunov=-0.1):
    """A record as loop.train makes one, trained len(rms) steps on adding@10."""
    steps = len(rms)
    point = {"rate": -0.1, "timescale": 10.0, "why": None, "words": None,
             "lyapunov": lyapunov, "loss": 0.01, "accuracy": None, "state_rms": 0.5,
             "write_gate": 0.5, "saturation": 0.0}
    return {"cell": cell, "task": "adding", "delay": 10, "steps": list(range(steps)),
            "loss": [0.1] * steps, "state_rms": list(rms), "write_gate": [0.5] * steps,
            "saturation": [0.0] * steps, "verdict": "learned",
            "checkpoints": [{**point, "step": 0}, {**point, "step": steps}],
            "final": {"loss": 0.01, "accuracy": None, "step": steps}}


@pytest.mark.parametrize("cell", ["prototype_lstm", "normalized_lstm"])
def test_a_state_that_went_nan_is_not_reported_as_infinite_growth(cell):
    """Weights training left nan make the state RMS nan (these cells' states grow by at
    most 1 a step, so it never overflows): the report said 'went from 0.5 to a peak of 0.6
    (×∞)' and then 'did not drift' (`gradlab train --cells prototype_lstm,normalized_lstm
    --tasks adding:3 --steps 5 --hidden 2 --batch 2 --lr 1e19` printed 'normalized_lstm
    ×∞ (peak RMS 1.08)'). The growth is the finite steps', and the step the state stopped
    being finite is said."""
    other = "gru" if cell == "prototype_lstm" else "prototype_lstm"
    runs = [run(cell, [0.5, 0.6, math.nan]), run(other, [0.5, 0.5, 0.5])]
    text, numbers = ln.drift_findings(runs, 3)
    stats = numbers["cells"][cell]
    assert stats["growth"] == pytest.approx(1.2) and stats["not_finite_from"] == 2
    assert "×∞" not in text and "×1.2" in text
    assert "not finite from step 2: training diverged" in text
    assert not numbers["prototype_drifts"] and numbers["bounded_drifting"] == []


def test_an_exponent_of_round_off_is_not_called_chaotic():
    """Saturated gates keep the state's norm: λ₁ is 0, measured as ~1e-18 of either sign.
    `gradlab train --cells prototype_lstm --tasks adding:10 --steps 1 --lr 1e37
    --char-steps 0` measured 1.23e-18 and wrote 'positive: nearby states separate,
    chaotic' and 'its dynamics were chaotic (λ₁ > 0), as the essay's “chaotic” says'."""
    runs = [run("prototype_lstm", [0.5, 0.5], lyapunov=1.23e-18), run("gru", [0.5, 0.5])]
    text, numbers = ln.drift_findings(runs, 2)
    assert not numbers["prototype_chaotic"] and "were not chaotic" in text
    assert "nearby states separate" not in text
    runs[0] = run("prototype_lstm", [0.5, 0.5], lyapunov=0.0659)   # the committed report's
    text, numbers = ln.drift_findings(runs, 2)
    assert numbers["prototype_chaotic"] and "were chaotic (λ₁ > 0)" in text
