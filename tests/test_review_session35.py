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


def test_a_test_of_cli_main_does_not_end_the_test_run():
    """9033305 made `cli.main` end a success by sys.exit and `exits.end`, which ends the
    process by os._exit once code under test has run in it. test_cli_hostile called main()
    in-process: after a test that ran a user's cell (verify), pytest itself ended there,
    with status 0, no summary, and every later test unrun."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tests = ["tests/test_cli_hostile.py::test_verify_labels_a_files_cell_by_its_spec_beside_"
             "the_builtin_it_shadows",
             "tests/test_cli_hostile.py::test_a_ctrl_c_after_the_work_is_done_is_ignored"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *tests], cwd=root, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-2000:]
