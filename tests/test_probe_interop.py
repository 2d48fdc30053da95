"""Real torch models and checkpoint files at gradlab's edges: what a probe of from_torch,
gradient_flow(module, xs) and `gradlab report --model` found."""

import pytest
import torch
from torch import nn

import gradlab
from gradlab.checkpoint import load_state_dict, report_models
from gradlab.errors import GradlabError


@pytest.mark.parametrize("entry, words", [
    (("bias_hh_l0", 3), "its 'bias_hh_l0' is 3 (int), not a tensor"),
    (("bias_hh_l0", None), "its 'bias_hh_l0' is None (NoneType), not a tensor"),
    ((1, torch.zeros(1)), "its key 1 (int) is not a name"),
])
def test_a_state_dict_with_one_entry_that_is_no_tensor_names_it(tmp_path, entry, words):
    """A state dict with one entry that is no tensor (an int, None) or one key that is no
    name was refused as "holds a dict, not a state dict of named tensors", naming no entry:
    the user, holding what looks like module.state_dict(), could not tell which was wrong."""
    state = dict(nn.LSTM(3, 4).state_dict())
    key, value = entry
    state[key] = value
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(GradlabError) as err:
        load_state_dict(tmp_path / "model.pt")
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu"])
def test_reading_an_rnn_checkpoint_says_it_assumes_tanh(tmp_path, kind):
    """A state dict cannot tell an nn.RNN's relu from its tanh, and `--arch rnn` read a
    relu model as tanh without a word (report and stderr alike): the assumption is now
    said on stderr and in the report's note, with the kind that reads a relu model."""
    torch.save(nn.RNN(3, 4, nonlinearity="relu").state_dict(), tmp_path / "relu.pt")
    heard = []
    options = {"seed": 0, "dtype": "float64", "device": "cpu"}
    models, note = report_models(tmp_path / "relu.pt", f"{kind}:hidden=4,inputs=3", options,
                                 notice=heard.append)
    assert len(models) == 2
    if kind == "rnn":
        assert len(heard) == 1 and "nonlinearity='tanh'" in heard[0]
        assert "rnn_relu" in heard[0] and "\n" not in heard[0] and heard[0] in note
    else:
        assert heard == [] and "tanh" not in note


@pytest.mark.parametrize("names", [("notes.txt",), ()])
def test_a_zip_file_torch_did_not_write_is_named_for_what_it_is(tmp_path, names):
    """A zip archive of other files (or none) was refused with torch's own words,
    "[enforce fail at inline_container.cc:180] .", which say nothing of the file."""
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, "not weights")
    with pytest.raises(GradlabError) as err:
        load_state_dict(path)
    said = str(err.value)
    assert ("a zip archive of 'notes.txt'" if names else "an empty zip archive") in said
    assert "enforce fail" not in said and "save module.state_dict() with torch.save" in said


def test_a_projected_lstms_state0_in_torchs_layout_is_refused_with_the_shape_given():
    """torch's (h0, c0) of an LSTM with proj_size, (1, B, p) and (1, B, n), was padded to
    (1, B, n) before it was checked and refused as "state part 'h' has shape (1, 2, 4)": a
    shape the user never gave, and no word of the (B, p) that is asked for."""
    lstm = nn.LSTM(3, 4, proj_size=2).double()
    xs = torch.zeros(3, 2, 3, dtype=torch.float64)
    h0, c0 = torch.zeros(1, 2, 2, dtype=torch.float64), torch.zeros(1, 2, 4, dtype=torch.float64)
    with pytest.raises(GradlabError) as err:
        gradlab.gradient_flow(lstm, xs, state0=(h0, c0))
    assert "has shape (1, 2, 2)" in str(err.value) and "h as (B, 2)" in str(err.value)
    flow = gradlab.gradient_flow(lstm, xs, state0=(h0[0], c0[0]))       # (B, p), (B, n)
    assert flow.log_norm().shape == (2, 3)
