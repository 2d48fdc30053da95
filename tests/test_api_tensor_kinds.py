"""Tensors and arrays of unusual kinds, and torch.func transforms, at the Python API: each
either gives the numbers plain float64 tensors give, or one GradlabError; never a silent
zero gradient, and never a traceback from inside gradlab."""

import types

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

import gradlab
from gradlab.errors import GradlabError
from gradlab.flow import run_states


def setup(name="lstm", n=4, m=3, T=6, B=2):
    cell = gradlab.cell(name)
    params = cell.init_params(n, m, seed=0)
    xs = torch.randn(T, B, m, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return cell, params, xs


def test_a_state0_that_requires_grad_gives_states_that_do_not():
    """The forward run is not differentiable: its states had a graph back to state0 with
    a zero gradient (the first row was copied in outside no_grad)."""
    cell, params, xs = setup("rnn_tanh")
    s0 = torch.full((2, 4), 0.3, dtype=torch.float64, requires_grad=True)
    (h,) = run_states(cell, params, xs, (s0,))
    assert not h.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        h[-1].sum().backward()                 # torch's own refusal, not a zero gradient
    flow = gradlab.gradient_flow(cell, params, xs, state0=(s0,))
    plain = gradlab.gradient_flow(cell, params, xs, state0=(s0.detach(),))
    assert np.array_equal(flow.states[0].numpy(), plain.states[0].numpy())
    assert np.array_equal(flow.log_norm(), plain.log_norm())


@pytest.mark.parametrize("call", ["gradient_flow", "lyapunov", "run_states"])
def test_torch_func_transforms_are_refused_in_one_line(call):
    cell, params, xs = setup()
    run = {"gradient_flow": lambda p, x: torch.as_tensor(
               gradlab.gradient_flow(cell, p, x).log_norm()).sum(),
           "lyapunov": lambda p, x: torch.as_tensor(gradlab.lyapunov(cell, p, x, 2).mean).sum(),
           "run_states": lambda p, x: run_states(cell, p, x)[0][-1].sum()}[call]
    with pytest.raises(GradlabError, match="traced by a torch.func transform") as err:
        grad(lambda x: run(params, x))(xs)                  # was zeros, or a raw error
    assert "\n" not in str(err.value) and str(err.value).startswith("xs ")
    with pytest.raises(GradlabError, match="param 'W_i' is traced"):
        grad(lambda W: run({**params, "W_i": W}, xs))(params["W_i"])
    with pytest.raises(GradlabError, match="traced by a torch.func transform"):
        vmap(lambda x: run(params, x[:, None]), in_dims=1)(xs)


@pytest.mark.parametrize("name", ["lstm", "gru", "peephole_lstm"])
def test_vmap_over_the_lowered_jacobian_is_the_batched_jacobian(name):
    """The LSTM's lowered Jacobian writes its sums in place (out=), which vmap cannot
    batch: under a transform they are taken out of place."""
    cell, params, _ = setup(name)
    jac = cell.jacobian_fn("state")
    gen = torch.Generator().manual_seed(2)
    state = tuple(torch.randn(3, 4, dtype=torch.float64, generator=gen)
                  for _ in cell.state_names)
    x = torch.randn(3, 3, dtype=torch.float64, generator=gen)
    mapped = vmap(lambda *a: jac(params, tuple(s[None] for s in a[:-1]), a[-1][None])[0])(
        *state, x)
    assert torch.allclose(mapped, jac(params, state, x), rtol=1e-14, atol=1e-15)


def test_a_sparse_loss_vector_is_refused_in_one_line():
    cell, params, xs = setup()
    flow = gradlab.gradient_flow(cell, params, xs)
    with pytest.raises(GradlabError, match="sparse_coo tensor; give a dense one"):
        flow.loss_grad_norms(torch.ones(8, dtype=torch.float64).to_sparse())


def test_check_lyapunov_takes_params_that_require_grad():
    cell, params, _ = setup()
    xs = torch.randn(20, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    leaves = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    result = gradlab.check_lyapunov(lambda P, X, k: gradlab.lyapunov(cell, P, X, k).mean,
                                    cell, leaves, xs.clone().requires_grad_(), 2, atol=1e-6)
    assert result.ok


def test_numpy_subclasses_compute_as_plain_arrays():
    """np.matrix (whose * is a matrix product) and an unmasked masked array reached the
    lowered numpy code as they were and failed inside it."""
    cell, params, _ = setup("rnn_tanh")
    plain = {k: v.numpy() for k, v in params.items()}
    step = cell.step_fn("numpy")
    h, x = np.full((2, 4), 0.1), np.linspace(-1, 1, 6).reshape(2, 3)
    (want,) = step(plain, (h,), x)
    with pytest.warns(PendingDeprecationWarning):         # numpy's, on making a matrix
        W = np.asmatrix(plain["W"])
    (got,) = step({**plain, "W": W}, (h,), np.ma.masked_array(x, False))
    assert type(got) is np.ndarray and np.array_equal(got, want)
    with pytest.raises(GradlabError, match="x of cell 'rnn_tanh' is a masked array with "
                                           "masked entries"):
        step(plain, (h,), np.ma.masked_array(x, [[True, False, False], [False] * 3]))


def test_a_tensor_subclass_is_a_torch_tensor():
    """It was refused as 'params, state and x ... are __main__ and torch arrays'."""
    class Tagged(torch.Tensor):
        pass

    cell, params, xs = setup()
    tagged = {k: v.as_subclass(Tagged) for k, v in params.items()}
    want = gradlab.gradient_flow(cell, params, xs).log_norm()
    assert np.array_equal(gradlab.gradient_flow(cell, tagged, xs.as_subclass(Tagged))
                          .log_norm(), want)
    state = (torch.zeros(2, 4, dtype=torch.float64),) * 2
    assert torch.equal(torch.as_tensor(cell.step_fn("torch")(tagged, state, xs[0])[0]),
                       cell.step_fn("torch")(params, state, xs[0])[0])


def test_read_only_and_reversed_numpy_inputs_are_copied_without_a_warning():
    cell, params, xs = setup()
    want = gradlab.gradient_flow(cell, params, xs).log_norm()
    frozen = xs.numpy().copy()
    frozen.setflags(write=False)                 # torch warned that it is not writable
    reversed_ = np.ascontiguousarray(xs.numpy()[::-1])[::-1]     # torch refused: stride < 0
    for a in (frozen, reversed_):
        assert np.array_equal(gradlab.gradient_flow(cell, params, a).log_norm(), want)
    s0 = np.ascontiguousarray(np.zeros((2, 4))[::-1])[::-1]
    assert np.array_equal(gradlab.gradient_flow(cell, params, xs, state0=(s0, s0)).log_norm(),
                          want)


def test_a_read_only_mapping_of_params_is_a_dict_of_params():
    cell, params, xs = setup()
    want = gradlab.gradient_flow(cell, params, xs).log_norm()
    proxy = types.MappingProxyType(dict(params))
    assert np.array_equal(gradlab.gradient_flow(cell, proxy, xs).log_norm(), want)
    assert np.array_equal(gradlab.lyapunov(cell, proxy, xs, 2).mean,
                          gradlab.lyapunov(cell, params, xs, 2).mean)
