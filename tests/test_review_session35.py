"""Defects a review of session 35's commits found, each test one of them."""

import numpy as np


def _run(cell, delay, loss, xi_init=2.0, xi_trained=3.0):
    return {"cell": cell, "task": "copy", "delay": delay, "final": {"loss": loss},
            "checkpoints": [{"timescale": xi_init}, {"timescale": xi_trained}]}


def test_a_learning_panel_whose_every_loss_is_0_is_framed_by_its_thresholds():
    """Losses of exactly 0 are no longer drawn (ed56988), but still counted as drawn, so a
    panel where every cell learned perfectly was not framed by the thresholds: matplotlib
    warned of identical ylims (and printed the warning under `gradlab train`)."""
    from gradlab.training import figures
    runs = [_run("lstm", 10, 0.0), _run("lstm", 20, 0.0), _run("gru", 10, 0.0)]
    fig = figures.learning(runs, {"lstm": "#000000", "gru": "#ff7f0e"}, {"copy": 1.0},
                           ((0.1, "learned"),))
    fig.canvas.draw_idle()
    low, high = fig.axes[0].get_ylim()
    assert np.isclose(low, 0.1 / 3) and np.isclose(high, 0.3)


def test_a_real_argument_check_quotes_a_refused_object_on_one_line():
    """003b7cc put every argument check's quote on one line (errors.shown) but for
    errors.real's, which kept its own repr: gradlab.mean_field(cell, weight_scale=
    np.eye(2)) raised a message of two lines."""
    import pytest

    import gradlab
    with pytest.raises(gradlab.GradlabError, match="weight_scale must be") as err:
        gradlab.mean_field(gradlab.cell("rnn_tanh"), weight_scale=np.eye(2))
    assert "\n" not in str(err.value) and "array([[1., 0.], [0., 1.]])" in str(err.value)
