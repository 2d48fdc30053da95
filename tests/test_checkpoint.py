"""`gradlab report --model PATH --arch SPEC`: a checkpoint, loaded safely, checked, reported."""

import hashlib
import json
import re
import os

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gradlab
from gradlab.checkpoint import Arch, load_model, model_entries, parse_arch
from gradlab.cli import cli
from conftest import assert_one_line_error, invoke

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
    # which checkpoint, pinned by its bytes (the path alone names whatever is there now)
    assert f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}..." in data["model"]
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


# -- bidirectional, proj_size and a prefix ---------------------------------------------------

BIARCH = "lstm:layers=2,hidden=6,inputs=3,bidirectional=1,proj=2"


def test_arch_spec_bidirectional_proj_prefix():
    arch = parse_arch("lstm:hidden=6,inputs=3,layers=2,bidirectional=true,proj=2,prefix=rnn.")
    assert arch == Arch("lstm", 6, 3, 2, True, True, 2, "rnn.")
    assert parse_arch(str(arch)) == arch
    assert str(arch) == "lstm:layers=2,hidden=6,inputs=3,bidirectional=1,proj=2,prefix=rnn."
    module = arch.module()
    assert module.bidirectional and module.proj_size == 2 and module.num_layers == 2
    assert parse_arch("gru:hidden=4,inputs=2,bidirectional=0").bidirectional is False


@pytest.mark.parametrize("spec, needle", [
    ("gru:hidden=6,inputs=3,proj=2", "proj=2 (proj_size) applies to lstm only, not gru; "
                                     "valid keys for gru: layers, hidden, inputs, bias, "
                                     "bidirectional, prefix"),
    ("rnn:hidden=6,inputs=3,proj=2", "applies to lstm only"),
    ("lstm:hidden=6,inputs=3,proj=6", "proj=6 must be below hidden=6 (torch's proj_size < "
                                      "hidden_size); valid: 1..5"),
    ("lstm:hidden=1,inputs=3,proj=1", "proj=1 must be below hidden=1 (torch's proj_size < "
                                      "hidden_size); hidden=1 leaves none: hidden must be "
                                      "at least 2 for a projection"),
    ("lstm:hidden=6,inputs=3,proj=0", "proj='0' is not a positive integer"),
    ("lstm:hidden=6,inputs=3,bidirectional=2", "bidirectional='2' is not 1, 0, true or false"),
    ("lstm:hidden=6,inputs=3,prefix=rnn/x", "prefix='rnn/x' is not the start of a state-dict"),
    ("lstm:hidden=6,inputs=3,prefix=", "prefix=''"),
    ("lstm:hidden=6,inputs=3,proj=2,proj=3", "proj is given twice"),
])
def test_hostile_arch_values_exit_2_in_one_line(checkpoint, tmp_path, spec, needle):
    with pytest.raises(gradlab.GradlabError) as err:
        parse_arch(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)
    path, _ = checkpoint
    result = run("report", "--model", str(path), "--arch", spec, "--out", str(tmp_path / "r"))
    assert_one_line_error(result, needle)
    assert not (tmp_path / "r").exists()


def _save_bidirectional(tmp_path, prefix=""):
    """A 'trained' bidirectional projected LSTM, saved alone or inside a model."""
    torch.manual_seed(3)
    rnn = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    with torch.no_grad():
        rnn.weight_hh_l1_reverse.mul_(3.0)
    path = tmp_path / "bi.pt"
    if prefix:
        model = nn.Module()
        model.embed, model.rnn, model.head = nn.Embedding(5, 3), rnn, nn.Linear(4, 2)
        torch.save(model.state_dict(), path)
    else:
        torch.save(rnn.state_dict(), path)
    return path, rnn.double()


def test_report_on_a_bidirectional_projected_checkpoint(tmp_path):
    path, module = _save_bidirectional(tmp_path)
    entries = model_entries(path, parse_arch(BIARCH))
    assert list(entries) == ["lstm (trained, forward)", "lstm (trained, backward)",
                             "lstm (init, forward)", "lstm (init, backward)"]
    xs = torch.randn(7, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        out, _ = module(xs)
    for direction, half in (("forward", out[..., :2]), ("backward", out[..., 2:].flip(0))):
        model = entries[f"lstm (trained, {direction})"]
        cell, params = model                       # still a (cell, params) pair
        assert cell.name == "lstm_proj_x2_bidir"
        h2 = gradlab.gradient_flow(cell, params, model.inputs(xs)).states[2][1:]
        assert torch.allclose(h2[..., :2], half, rtol=0, atol=1e-13)    # its own time order

    out = tmp_path / "report"
    result = run("report", "--model", str(path), "--arch", BIARCH, "--steps", "10",
                 "--batch", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "data.json").read_text())
    assert sorted(data["cells"]) == sorted(entries)
    assert BIARCH in data["model"] and "each direction" in data["model"]
    rates = {k: v["summary"]["rate"] for k, v in data["cells"].items()}
    assert all(isinstance(r, float) and r == r for r in rates.values()), rates
    assert rates["lstm (trained, backward)"] != rates["lstm (init, backward)"]
    assert "| lstm (trained, backward) |" in (out / "report.md").read_text()


def test_prefix_reads_the_module_out_of_a_whole_model(tmp_path):
    path, module = _save_bidirectional(tmp_path, prefix="rnn.")
    arch = parse_arch(BIARCH + ",prefix=rnn.")
    loaded = load_model(path, arch)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 module.state_dict().values()))
    for spec, needle in ((BIARCH + ",prefix=cnn.", "no checkpoint key starts with "
                          "prefix='cnn.'; the file's keys begin 'embed.weight', "
                          "'rnn.weight_ih_l0'"),
                         (BIARCH + ",prefix=rnn", "did you mean prefix=rnn. ?"),
                         (BIARCH, "'embed.weight' is not in"),
                         (BIARCH.replace("proj=2", "proj=3") + ",prefix=rnn.",
                          "'rnn.weight_hh_l0' has shape (24, 2), expected (24, 3)")):
        assert_one_line_error(run("report", "--model", str(path), "--arch", spec, "--out",
                                  str(tmp_path / "r")), needle)
    state = torch.load(path, weights_only=True)    # strict under the prefix
    state["rnn.extra"] = torch.zeros(2)
    torch.save(state, tmp_path / "extra.pt")
    assert_one_line_error(run("report", "--model", str(tmp_path / "extra.pt"), "--arch",
                              BIARCH + ",prefix=rnn.", "--out", str(tmp_path / "r")),
                          "'rnn.extra' is not in")


def test_save_new_takes_a_long_multibyte_name_and_clears_a_killed_runs_leftover(tmp_path):
    import torch
    from gradlab.checkpoint import save_new
    name = "模" * 80 + ".pt"                        # 243 bytes: legal, but not + a suffix
    stem = os.fsdecode(os.fsencode(name)[:200])
    (tmp_path / f".{stem}.gradlab-abcd1234.tmp").write_bytes(b"half")   # a kill's leftover
    save_new({"w": torch.zeros(2)}, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# -- found by a hostile probe of the CLI ------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused(checkpoint, tmp_path, value):
    """It was reported, every entry 'state overflowed', exit 0."""
    path, module = checkpoint
    state = module.state_dict()
    state["weight_hh_l0"][0, 0] = value
    torch.save(state, path)
    assert_one_line_error(run("report", "--model", str(path), "--arch", ARCH, "--out",
                              str(tmp_path / "r")), "'weight_hh_l0' holds nan or inf")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option", [("--weight-scale", "3"), ("--init", "orthogonal"),
                                    ("--gate-bias", "5"), ("--bias-scale", "0.5")])
def test_options_that_draw_cells_are_refused_for_a_model_alone(checkpoint, tmp_path, option):
    """They were accepted and changed nothing: the report held the same numbers."""
    path, _ = checkpoint
    assert_one_line_error(run("report", "--model", str(path), "--arch", ARCH, *option,
                              "--out", str(tmp_path / "r")),
                          f"{option[0]} sets how the --cells are drawn")


def test_write_torch_under_a_file_says_so(tmp_path):
    """It said 'the folder ... does not exist' of a path under a regular file."""
    (tmp_path / "ex.pt").write_text("x")
    target = tmp_path / "ex.pt" / "x.pt"
    result = run("init", "gru_torch", "--timescale", "5", "--hidden", "8", "--write-torch",
                 str(target))
    assert_one_line_error(result, "is a file, not a folder")


def test_a_checkpoint_saved_the_usual_wrong_ways_is_told_how_to_save_it(tmp_path):
    """A pruned or parametrized module's state dict, a DataParallel one without prefix=,
    and {"model": state_dict, "epoch": 3} were refused without a word on what to do."""
    from torch.nn.utils import parametrizations, prune
    plain = torch.nn.LSTM(3, 4)
    pruned = torch.nn.LSTM(3, 4)
    prune.l1_unstructured(pruned, "weight_hh_l0", 0.3)
    normed = torch.nn.LSTM(3, 4)
    parametrizations.weight_norm(normed, "weight_hh_l0")
    cases = {"wrapped": ({"model": plain.state_dict(), "epoch": 3},
                         "its 'model' is a dict: torch.save(checkpoint['model'], path)"),
             "pruned": (pruned.state_dict(), "saved pruned: prune.remove(module, name)"),
             "normed": (normed.state_dict(), "parametrize.remove_parametrizations"),
             "parallel": ({"module." + k: v for k, v in plain.state_dict().items()},
                          "saved from a wrapper? try prefix=module."),
             # a whole model whose embedding comes first: its first key is no RNN weight
             "whole": ({"emb.weight": torch.zeros(5, 3),
                        **{"rnn." + k: v for k, v in plain.state_dict().items()},
                        "head.weight": torch.zeros(2, 4)},
                       "'emb.weight' is not in lstm:layers=1,hidden=4,inputs=3 (expected keys: "
                       "weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0) (saved from a "
                       "wrapper? try prefix=rnn.)")}
    for name, (state, says) in cases.items():
        torch.save(state, tmp_path / f"{name}.pt")
        result = invoke("report", "--model", tmp_path / f"{name}.pt", "--arch",
                        "lstm:hidden=4,inputs=3", "--out", tmp_path / name, "--steps", "4",
                        "--batch", "2")
        assert_one_line_error(result, says)


def test_checkpoint_files_that_are_not_torch_saves_are_named_for_what_they_are(tmp_path):
    """A text file was refused as '(KeyError: 101)', a truncated save with torch's message
    cut mid-word ('... If yo)', and a loop of links as 'no such checkpoint file'."""
    from gradlab.checkpoint import load_state_dict
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(nn.LSTM(3, 4).state_dict(), tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save(nn.LSTM(3, 4).state_dict(), tmp_path / "old.pt", pickle_protocol=0,
               _use_new_zipfile_serialization=False)       # a real torch.save, unreadable
    os.symlink(tmp_path / "b.pt", tmp_path / "a.pt")
    os.symlink(tmp_path / "a.pt", tmp_path / "b.pt")
    for name, words in (("text.pt", "is not a file torch.save wrote (neither its zip format "
                                    "nor a pickle; it begins b'he')"),
                        ("empty.pt", "is empty"),
                        # (torch 2.13 ends its message with a full stop, 2.4.1 not)
                        ("cut.pt", re.compile(r"failed finding central directory\.?\); save")),
                        ("a.pt", "is a symbolic link to no file"),
                        ("old.pt", "was saved with a pickle protocol torch.load(weights_only="
                                   "True) cannot read")):
        pattern = words if isinstance(words, re.Pattern) else re.escape(words)
        with pytest.raises(gradlab.GradlabError, match=pattern):
            load_state_dict(tmp_path / name)


def test_a_checkpoint_replaced_while_it_is_read_is_refused(checkpoint, monkeypatch):
    """The note names the checkpoint by the hash of its bytes: those must be the bytes
    measured, not a file put there while the weights were loaded."""
    from gradlab import checkpoint as ck
    path, _ = checkpoint
    loading = ck.model_entries

    def then_replaced(*args, **kwargs):
        models = loading(*args, **kwargs)
        torch.save(nn.LSTM(3, 6, num_layers=2).state_dict(), path)
        return models
    options = {"seed": 0, "dtype": "float64", "device": "cpu"}
    ck.report_models(path, ARCH, dict(options))                       # unchanged: fine
    monkeypatch.setattr(ck, "model_entries", then_replaced)
    with pytest.raises(gradlab.GradlabError, match="changed while it was read; run again"):
        ck.report_models(path, ARCH, dict(options))


def test_a_fifo_given_as_checkpoint_is_refused_before_it_is_read(tmp_path):
    """--model on a FIFO (or /dev/zero) was hashed whole before any check: it waited for a
    writer forever (or filled memory, then said "out of memory")."""
    import subprocess
    import sys
    fifo = tmp_path / "ff.pt"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "gradlab", "report", "--model", str(fifo),
                           "--arch", "lstm:hidden=8,inputs=4", "--steps", "10", "--batch", "2",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.endswith("is not a regular file; give a .pt "
                                                         "file\n"), done.stderr
    assert not (tmp_path / "r").exists()
