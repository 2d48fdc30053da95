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


@pytest.mark.parametrize("given, match", [
    (torch.ones(3, 2, 4, dtype=torch.complex64), "^inputs must hold real numbers, got dtype "
                                                 "torch.complex64$"),
    (torch.ones(3, 2, 4, dtype=torch.bool), "^inputs must hold real numbers, got dtype "
                                            "torch.bool$"),
    (torch.ones(3, 2, 4, device="meta"), "^inputs is on the meta device"),
    (torch.full((3, 2, 4), 1e300, dtype=torch.float64),
     r"^inputs holds 1e\+300, beyond the range of float32 \(the dtype asked for"),
])
def test_make_inputs_refuses_a_tensor_it_cannot_hold(given, match):
    """A complex tensor lost its imaginary part (with a UserWarning, an error under
    pytest), a meta one raised NotImplementedError, a bool one was taken as 0/1, and
    1e300 became inf in float32: make_inputs now reads a tensor as gradient_flow reads xs."""
    refused(match, F.make_inputs, given, 3, 2, 4, dtype=torch.float32)


def test_make_inputs_refuses_a_kind_that_is_no_name_and_sizes_past_memory():
    """A list as the kind raised TypeError (unhashable); sizes past memory raised torch's
    RuntimeError (storage size overflowed) or tried to allocate."""
    refused(r"^unknown inputs \['gaussian'\]; valid: zeros, gaussian, constant",
            F.make_inputs, ["gaussian"], 3, 2, 4)
    refused(r"^inputs of T = 1000000000000 steps, batch 1000000000000, width 1000000000000 "
            r"needs about .* of memory but .* is available on cpu; use a smaller T, B or m$",
            F.make_inputs, "gaussian", 10 ** 12, 10 ** 12, 10 ** 12)
    xs = np.arange(24.0).reshape(3, 2, 4)         # what is fine stays fine
    assert torch.equal(F.make_inputs(xs, 3, 2, 4), torch.as_tensor(xs))
