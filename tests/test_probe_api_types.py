"""Hostile argument values and types through the public API: each call gives a correct
result or one GradlabError line naming the bad value and the valid choices, refuses a
size past memory before it allocates, and leaves the caller's tensors and torch's state
as they were."""

import warnings

import numpy as np

import pytest

import gradlab
from gradlab.errors import GradlabError


def test_a_dynamic_mean_field_with_inputs_past_memory_is_refused_before_drawing():
    """inputs=m draws (units x m) input weights and (steps x m) inputs: 10**9 inputs
    asked numpy for 119 GiB (a MemoryError), unchecked by the memory estimate."""
    with pytest.raises(GradlabError, match=r"inputs=1000000000 needs about .* smaller "
                                           r"units=, steps= or inputs="):
        gradlab.mean_field("gru", method="dynamic", units=16, steps=5, inputs=10**9)


def test_a_dynamic_mean_field_past_memory_by_its_steps_names_steps():
    """The refusal said 'use a smaller units=' where steps was what was too large."""
    with pytest.raises(GradlabError, match=r"over 1000000000 steps .* units= or steps="):
        gradlab.mean_field("gru", method="dynamic", units=16, steps=10**9)


@pytest.mark.parametrize("name", ["", 0, False])
def test_a_stack_named_by_an_empty_or_false_value_is_refused_as_declare_refuses_it(name):
    """stack(..., name="") silently named the cell gru_x2 (`name or default`), where
    declare(name="") refuses the same name in one line."""
    with pytest.raises(GradlabError, match=r"cell name .* is not a plain Python identifier"):
        gradlab.stack("gru", 2, name=name)


def _lstm_params():
    import torch
    return torch, gradlab.cell("lstm"), gradlab.cell("lstm").init_params(3, 2, seed=0)


@pytest.mark.parametrize("kind", ["sparse", "csr", "nested"])
@pytest.mark.parametrize("call", ["check_jacobian", "to_torch", "gradient_flow"])
def test_a_sparse_or_nested_param_is_refused_by_name_in_every_call(kind, call):
    """check_params let a sparse, CSR or (strided) nested param through: check_jacobian
    and to_torch then ended in torch's NotImplementedError / 'Internal error', and
    gradient_flow with a nested one in 'aten::any ... NestedTensorCPU'."""
    torch, lstm, params = _lstm_params()
    W = params["W_f"]
    with warnings.catch_warnings():          # (torch: CSR is beta, nested a prototype)
        warnings.simplefilter("ignore")
        params["W_f"] = {"sparse": W.to_sparse, "csr": W.to_sparse_csr,
                         "nested": lambda: torch.nested.nested_tensor([W])}[kind]()
    xs = torch.zeros(4, 2, 2, dtype=torch.float64)
    calls = {"check_jacobian": lambda: gradlab.check_jacobian(lstm.jacobian_fn(), lstm, params),
             "to_torch": lambda: gradlab.to_torch(lstm, params),
             "gradient_flow": lambda: gradlab.gradient_flow(lstm, params, xs)}
    with pytest.raises(GradlabError, match=r"param 'W_f' of cell 'lstm' is a "
                                           r"(sparse_coo|sparse_csr|nested) tensor; give a "
                                           r"dense one"):
        calls[call]()


def test_numpy_data_of_the_other_byte_order_is_read_as_its_numbers():
    """'>f8' arrays (data written on a big-endian machine, or by np.dtype('>f8')) are the
    same float64 numbers: the numpy backend refused them as mixing '>f8, float64', and
    gradient_flow's xs ended in torch's byte-order error."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 2)
    native = {k: v.numpy() for k, v in params.items()}
    x, state = np.linspace(-1, 1, 4).reshape(2, 2), (np.full((2, 3), 0.1),) * 2
    swapped = {k: v.astype(">f8") for k, v in native.items()}
    fn = cell.jacobian_fn("state", "numpy")
    got = fn(swapped, tuple(s.astype(">f8") for s in state), x.astype(">f8"))
    assert np.array_equal(got, fn(native, state, x))
    xs = np.random.default_rng(0).normal(size=(4, 2, 2))
    flows = [gradlab.gradient_flow(cell, params, a) for a in (xs, xs.astype(">f8"))]
    assert np.array_equal(flows[0].log_norm("spectral"), flows[1].log_norm("spectral"))
