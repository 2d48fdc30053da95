"""`gradlab report --model PATH --arch SPEC`: a checkpoint, loaded safely, checked, reported."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gradlab
from gradlab.checkpoint import Arch, load_model, model_entries, parse_arch
from gradlab.cli import cli
from conftest import assert_one_line_error

ARCH = "lstm:layers=2,hidden=6,inputs=3"


def run(*args):
    return CliRunner().invoke(cli, list(args))


class Anything:
    """An arbitrary object: a pickle of it runs code on load unless weights_only refuses."""


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(7)
    module = nn.LSTM(3, 6, num_layers=2)
    with torch.no_grad():                  # "trained": not what init gives
        module.weight_hh_l1.mul_(3.0)
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    return path, module


def test_arch_spec():
    assert parse_arch(ARCH) == Arch("lstm", hidden=6, inputs=3, layers=2)
    assert parse_arch("gru:hidden=4,inputs=2,bias=0") == Arch("gru", 4, 2, 1, False)
    assert str(parse_arch("rnn_relu:hidden=4, inputs=2")) == "rnn_relu:layers=1,hidden=4,inputs=2"
    for bad, needle in (("lstm", "KIND:key=value"), ("cnn:hidden=2,inputs=2", "unknown kind"),
                        ("lstm:hidden=2", "lacks inputs"), ("lstm:hidden=0,inputs=2", "hidden"),
                        ("lstm:hidden=2,inputs=2,depth=3", "depth"),
                        ("lstm:hidden=2,inputs=2,bias=maybe", "bias")):
        with pytest.raises(gradlab.GradlabError, match=needle) as err:
            parse_arch(bad)
        assert "\n" not in str(err.value)


def test_load_model_is_the_module_and_maps_exactly(checkpoint):
    path, module = checkpoint
    loaded = load_model(path, parse_arch(ARCH))
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(loaded(xs)[0], module.double()(xs)[0], rtol=0, atol=1e-14)
    entries = model_entries(path, parse_arch(ARCH))
    assert list(entries) == ["lstm (trained)", "lstm (init)"]
    (cell, trained), (_, init) = entries.values()
    assert cell.state_names == ("h1", "c1", "h2", "c2")
    assert torch.equal(trained["W_i2"], module.weight_hh_l1[:6].double())
    assert not torch.equal(trained["W_i2"], init["W_i2"])


def test_report_on_a_checkpoint(checkpoint, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "report"
    result = run("report", "--model", str(path), "--arch", ARCH, "--steps", "12",
                 "--batch", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "data.json").read_text())
    assert sorted(data["cells"]) == ["lstm (init)", "lstm (trained)"]
    assert data["setup"]["hidden"] == 6 and data["setup"]["inputs"] == 3
    assert ARCH in data["model"]
    trained, init = (data["cells"][f"lstm ({k})"]["summary"]["rate"] for k in ("trained", "init"))
    assert trained != init
    text = (out / "report.md").read_text()
    assert "| lstm (trained) |" in text and "| lstm (init) |" in text


def test_a_pickled_object_is_refused_in_one_line(checkpoint, tmp_path):
    path, module = checkpoint
    whole = tmp_path / "whole.pt"
    torch.save(module, whole)                      # the module object, not its state dict
    result = run("report", "--model", str(whole), "--arch", ARCH, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "not a plain state dict")
    assert "weights_only" in result.stderr
    assert not (tmp_path / "r").exists()

    other = tmp_path / "other.pt"
    torch.save({"thing": Anything()}, other)
    assert_one_line_error(run("report", "--model", str(other), "--arch", ARCH, "--out",
                              str(tmp_path / "r")), "not a plain state dict")
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": module.state_dict()}, nested)
    assert_one_line_error(run("report", "--model", str(nested), "--arch", ARCH, "--out",
                              str(tmp_path / "r")), "not a state dict")


@pytest.mark.parametrize("arch, needle", [
    ("lstm:layers=2,hidden=7,inputs=3", "'weight_ih_l0' has shape (24, 3), expected (28, 3)"),
    ("lstm:layers=3,hidden=6,inputs=3", "lacks 'weight_ih_l2'"),
    ("lstm:layers=1,hidden=6,inputs=3", "'weight_ih_l1' is not in"),
    ("gru:layers=2,hidden=6,inputs=3", "expected (18, 3)"),
    ("lstm:layers=2,hidden=6,inputs=3,bias=0", "'bias_ih_l0' is not in"),
])
def test_wrong_keys_or_shapes_are_refused_in_one_line(checkpoint, tmp_path, arch, needle):
    path, _ = checkpoint
    assert_one_line_error(run("report", "--model", str(path), "--arch", arch, "--out",
                              str(tmp_path / "r")), needle)


def test_missing_file_and_lone_options(tmp_path):
    assert_one_line_error(run("report", "--model", str(tmp_path / "none.pt"), "--arch", ARCH,
                              "--out", str(tmp_path / "r")), "no such checkpoint file")
    assert_one_line_error(run("report", "--arch", ARCH, "--out", str(tmp_path / "r")),
                          "go together")
    assert "--arch" in run("report", "--help").output
