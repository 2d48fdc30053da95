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


@pytest.mark.parametrize("dtype, big", [(torch.float64, 1e307), (torch.float32, 1e37)])
def test_a_finite_jacobian_whose_norm_passes_the_dtype_max_is_measured(dtype, big):
    """J = big * ones (50, 50) at a finite state has ||J||_2 = ||J||_F = 50 big, past the
    dtype's largest float though each entry is not: lag 1 read +inf ('norm not finite')
    in both norms, where it is log(50 big)."""
    n = 50
    params = {"W": torch.full((n, n), big, dtype=dtype), "U": torch.zeros(n, 2, dtype=dtype),
              "b": torch.ones(n, dtype=dtype)}                    # s_1 = relu(1) = 1
    flow = gradlab.gradient_flow("rnn_relu", params, torch.zeros(1, 1, 2, dtype=dtype))
    rtol = 1e-13 if dtype == torch.float64 else 1e-7
    for kind in ("spectral", "frobenius"):
        np.testing.assert_allclose(flow.log_norm(kind), [[np.log(n) + np.log(big)]], rtol=rtol)


def test_a_loss_vector_whose_norm_passes_the_float_max_is_measured():
    """v of entries 1.7e308 (finite; ||v|| past float64's max) read ||dL/dx_T|| = inf:
    every norm is that of v = 1 times 1.7e308."""
    flow = gradlab.gradient_flow(GRU, GRU.init_params(3, 2, seed=1),
                                 F.make_inputs("gaussian", 4, 2, 2, seed=3))
    one = flow.loss_grad_norms(torch.ones(3, dtype=torch.float64), log=True)
    big = flow.loss_grad_norms(torch.full((3,), 1.7e308, dtype=torch.float64), log=True)
    for part in ("state", "input"):
        np.testing.assert_allclose(big[part], one[part] + np.log(1.7e308), rtol=1e-14)


@pytest.mark.parametrize("tiny", [1e-308, 1e-310])
def test_min_singular_of_an_invertible_jacobian_of_tiny_entries_is_measured(tiny):
    """J_t = W of entries ~1e-308 is invertible (log sigma_min = -710.55 k at 1e-308), but
    its inverse overflowed float64, and every lag read -inf, 'product singular'."""
    W = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = {"W": W * tiny, "U": torch.zeros(3, 2, dtype=torch.float64),
              "b": torch.zeros(3, dtype=torch.float64)}                # h = 0: J_t = W
    flow = gradlab.gradient_flow("rnn_tanh", params, torch.zeros(3, 1, 2, dtype=torch.float64),
                                 norms=("min_singular",))
    want = [float(torch.linalg.svdvals(torch.linalg.matrix_power(W, k))[-1].log())
            + k * np.log(tiny) for k in (1, 2, 3)]
    np.testing.assert_allclose(flow.log_norm("min_singular")[0], want, rtol=1e-12)
    assert flow.why("min_singular") is None


@pytest.mark.parametrize("T", ["3", 3.0, True])
def test_make_inputs_checks_the_sizes_a_tensor_is_held_against(T):
    """With a tensor, T, B and m were only compared with its shape: T = 3.0 was taken,
    and T = '3' read 'inputs have shape (3, 2, 4), expected (T, B, m) = (3, 2, 4)'."""
    refused(f"^T must be an integer >= 1, got {T!r}$", F.make_inputs, torch.zeros(3, 2, 4),
            T, 2, 4)
