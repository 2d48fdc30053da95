"""Probes of generated reports' words against their numbers (session 36)."""

from gradlab.training import learnability as ln


def _run(cell, rms, lyapunov):
    """A record as loop.train makes one, trained len(rms) steps on copy@20."""
    steps = len(rms)
    point = {"rate": -0.1, "timescale": 10.0, "why": None, "words": None,
             "lyapunov": lyapunov, "loss": 0.01, "accuracy": 1.0, "state_rms": 0.5,
             "write_gate": 0.5, "saturation": 0.0}
    return {"cell": cell, "task": "copy", "delay": 20, "steps": list(range(steps)),
            "loss": [0.1] * steps, "state_rms": list(rms), "write_gate": [0.5] * steps,
            "saturation": [0.0] * steps, "verdict": "learned",
            "checkpoints": [{**point, "step": 0}, {**point, "step": steps}],
            "final": {"loss": 0.01, "accuracy": 1.0, "step": steps}}


def test_drift_verdict_names_whose_dynamics_were_chaotic():
    """The committed learnability report: '... but so does the state of pseudo_lstm, which
    the essay says is bounded; the measurement disagrees with the essay there; its dynamics
    were chaotic (λ₁ > 0)': 'its' read as pseudo_lstm's, whose λ₁ was -0.023; the positive
    exponent was the prototype's. Two drifting bounded cells 'are' bounded."""
    runs = [_run("prototype_lstm", [0.7, 3.0, 5.5], 0.0659),
            _run("pseudo_lstm", [0.55, 1.5, 2.5], -0.0234)]
    text, numbers = ln.drift_findings(runs, 3)
    assert numbers["prototype_chaotic"] and numbers["bounded_drifting"] == ["pseudo_lstm"]
    assert "its dynamics" not in text
    assert "the prototype's dynamics were chaotic (λ₁ > 0)" in text
    assert "which the essay says is bounded" in text
    runs.append(_run("gru", [0.3, 1.2, 2.0], -0.1))
    text, numbers = ln.drift_findings(runs, 3)
    assert numbers["bounded_drifting"] == ["pseudo_lstm", "gru"]
    assert "which the essay says are bounded" in text
    runs[0] = _run("prototype_lstm", [0.7, 3.0, 5.5], -0.05)
    text, _ = ln.drift_findings(runs, 3)
    assert "the prototype's dynamics were not chaotic" in text and "its dynamics" not in text


def test_train_drift_figure_panels_share_the_training_steps():
    """`gradlab train ... --steps 20 --drift-steps 5`: the state RMS was drawn over steps
    0..19 and the write gate, recorded over the first 5 steps only, over 0..4 on an axis
    of its own (the committed report: 0..199 above 0..49), reading as the whole of
    training. Both panels share the steps, and the lower one says where the record ends."""
    from gradlab.training import figures
    run = {"cell": "gru", "state_rms": [0.3 + 0.01 * i for i in range(20)],
           "write_gate": [0.27] * 5 + [float("nan")] * 15}
    top, bottom = figures.drift([run], {"gru": "#ff7f0e"}, "t").axes
    assert top.get_xlim() == bottom.get_xlim()
    assert "first 5" in bottom.get_xlabel()
