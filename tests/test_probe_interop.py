"""Real torch models and checkpoint files at gradlab's edges: what a probe of from_torch,
gradient_flow(module, xs) and `gradlab report --model` found."""

import pytest
import torch
from torch import nn

from gradlab.checkpoint import load_state_dict
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
