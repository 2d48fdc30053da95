"""A gradient-decay report at a weight scale near float64's end, and `gradlab train`'s
duplicate tasks, as a probe ran them: a matplotlib overflow warning reached the terminal
(its log axis autoscaled past 1e308), a 2-unit rnn_relu reported four nan Lyapunov
exponents where its state has two, and '--tasks adding:02,adding:2' did not say which
task it named twice."""

import json
import warnings

import pytest

from gradlab.errors import GradlabError
from gradlab.training.learnability import parse_tasks
from conftest import assert_ok, invoke


def test_a_report_at_weight_scale_1e300_is_quiet_and_sized(tmp_path):
    out = tmp_path / "big"
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # any warning on the way is a failure
        result = invoke("report", "--out", out, "--cells", "rnn_relu,lstm", "--hidden", "2",
                        "--inputs", "1", "--batch", "2", "--steps", "4",
                        "--weight-scale", "1e300")
    assert_ok(result)
    assert "Warning" not in result.output
    cells = json.loads((out / "data.json").read_text())["cells"]
    assert len(cells["rnn_relu"]["summary"]["lyapunov"]) == 2      # S = 2, not k = 4
    assert len(cells["lstm"]["summary"]["lyapunov"]) == 4


def test_a_task_named_twice_is_named():
    with pytest.raises(GradlabError, match=r"names the task adding:2 twice"):
        parse_tasks("adding:02,adding:2")
    assert parse_tasks("adding:2,copy:2") == (("adding", 2), ("copy", 2))


def test_singular_values_near_the_float64_limit_are_kept_and_the_figure_drawn(tmp_path):
    """rnn_relu, orthogonal W at weight scale 1e308, an even batch: numpy's median of the
    two sequences' top singular values (each ~1e308) overflowed to inf with a
    RuntimeWarning and data.json said 'inf'; drawn on a log axis with its margins, 1e308
    made matplotlib's transform singular (an internal error)."""
    out = tmp_path / "edge"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke("report", "--out", out, "--cells", "rnn_relu", "--init",
                        "orthogonal", "--weight-scale", "1e308", "--hidden", "3", "--steps",
                        "4", "--batch", "2")
    assert_ok(result)
    top = json.loads((out / "data.json").read_text())["cells"]["rnn_relu"]["spectrum"][0]
    assert isinstance(top, float) and 1e307 < top < 1.8e308
    assert (out / "figures" / "spectra.png").stat().st_size > 0


@pytest.mark.parametrize("scale", ["1e300", "1e280"])
def test_the_spectra_figure_of_unbounded_cells_at_huge_weights_is_drawn(tmp_path, scale):
    """prototype, normalized and pseudo LSTM at weight scale 1e280..1e305: one step's
    singular values reach ~1e300, inside the 1e+-300 the figure drew, and matplotlib's
    decade ticks overflowed at savefig: 'internal error (OverflowError: cannot convert
    float infinity to integer)', no report."""
    out = tmp_path / "big"
    result = invoke("report", "--out", out, "--cells", "prototype_lstm,pseudo_lstm",
                    "--hidden", "4", "--batch", "2", "--steps", "5", "--weight-scale", scale)
    assert_ok(result)
    assert (out / "figures" / "spectra.png").stat().st_size > 0
