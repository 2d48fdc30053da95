"""Edges of the public numeric API found by probing (gradient_flow, Flow, lyapunov,
make_inputs): each bad input a one-line GradlabError naming it, never a raw torch or
Python error deep inside, nor a silently wrong number."""

import numpy as np
import pytest
import torch

import gradlab
import gradlab.flow as F
from gradlab.errors import GradlabError

GRU = gradlab.cell("gru")


def refused(match, fn, *args, **kwargs):
    with pytest.raises(GradlabError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return err.value


def test_what_a_flow_measured_cannot_be_deleted():
    """del flow.T went through (only setting was refused), leaving a Flow whose repr,
    rate() and summary() raised a bare AttributeError."""
    flow = gradlab.gradient_flow(GRU, GRU.init_params(2, 2, seed=0),
                                 F.make_inputs("gaussian", 4, 1, 2, seed=1))
    rate = flow.rate()
    for name in ("T", "cell", "xs", "rate"):
        refused(f"^a Flow's {name} is fixed: call gradient_flow again", delattr, flow, name)
    refused("^a Flow has no attribute 'revrse'", delattr, flow, "revrse")
    assert flow.T == 4 and flow.rate() == rate and "T=4" in repr(flow)
