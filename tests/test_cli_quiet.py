"""What the CLI prints beside its results (found by a hostile probe): one line of its own
where a browser cannot be opened (not the opener's error output), no numpy or matplotlib
warnings from values near float64's ends, and progress lines in gradlab's own words."""

import subprocess
import warnings

import pytest

from conftest import assert_ok, invoke

SMALL = ["--hidden", "3", "--steps", "4", "--batch", "1", "--inputs", "2"]


def test_open_without_a_browser_is_one_line_of_ours(tmp_path, monkeypatch):
    calls = []

    def opener(args, **kw):
        calls.append((args, kw))
        return subprocess.CompletedProcess(args, 3)
    monkeypatch.setattr(subprocess, "run", opener)
    result = invoke("report", "--cells", "rnn_tanh", *SMALL, "--out", tmp_path / "r", "--open")
    assert_ok(result)
    assert calls and calls[0][1]["stderr"] == subprocess.DEVNULL
    assert result.stderr.splitlines()[-1] == (f"gradlab: no browser opened the report; open "
                                              f"{tmp_path / 'r' / 'index.html'} yourself")


@pytest.mark.parametrize("scale", ["1e308", "1e-320"])
def test_extreme_weight_scales_draw_without_warnings(tmp_path, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke("report", "--cells", "rnn_tanh,lstm", *SMALL, "--weight-scale", scale,
                        "--out", tmp_path / "r")
    assert_ok(result)
    assert "Warning" not in result.stderr


def test_verify_shows_progress_in_gradlabs_words():
    result = invoke("verify", "--cells", "rnn_tanh")
    assert_ok(result)
    assert result.stderr.splitlines()[0] == "gradlab: verified rnn_tanh (1/1)"
