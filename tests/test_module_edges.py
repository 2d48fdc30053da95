"""Edges of measuring what a user hands over (found by a hostile probe of the Python API):
a torch module whose hooks change what it computes, nested lists read in float32, the
padding of an LSTM with proj_size leaking into random starts, and a Flow whose exposed
states could be changed under its lazy walk."""

import math
import re

import numpy as np
import pytest
import torch

import gradlab
from gradlab import GradlabError
from gradlab.flow.module import TorchStep

D = torch.float64


def _xs(T=12, B=2, m=2, seed=0):
    return torch.randn(T, B, m, generator=torch.Generator().manual_seed(seed), dtype=D)


@pytest.mark.parametrize("hook", ["pre", "post", "weight_norm"])
def test_a_module_whose_hooks_may_change_it_is_refused(hook):
    """gradlab derives the plain module; a hook could feed it other inputs, change its
    output, or (old weight_norm) recompute its weights. Measured before: errors of 1.08
    (a pre-hook scaling x) and 0.12 (weight_norm after an optimizer-style update)."""
    module = torch.nn.GRU(2, 3).double()
    if hook == "pre":
        module.register_forward_pre_hook(lambda mod, args: (args[0] * 10,) + args[1:])
    elif hook == "post":
        module.register_forward_hook(lambda mod, args, out: (out[0] * 2, out[1]))
    else:
        with pytest.warns(FutureWarning):
            module = torch.nn.utils.weight_norm(module, name="weight_hh_l0")
    for call in (lambda: gradlab.from_torch(module),
                 lambda: gradlab.gradient_flow(module, _xs())):
        with pytest.raises(GradlabError, match="hook"):
            call()


def test_a_parametrized_module_is_read_as_it_computes():
    """torch.nn.utils.parametrizations adds no hook: the weight is computed when read."""
    module = torch.nn.utils.parametrizations.weight_norm(torch.nn.GRU(2, 3).double(),
                                                         name="weight_hh_l0")
    with torch.no_grad():
        module.parametrizations.weight_hh_l0.original0.mul_(3)
    xs = _xs()
    flow = gradlab.gradient_flow(module, xs)
    with torch.no_grad():
        out, h = module(xs)
    assert torch.allclose(flow.states[0][-1], h[-1], rtol=0, atol=1e-14)


def test_stacked_dropout_in_training_mode_is_refused_as_for_jacrev():
    module = torch.nn.LSTM(2, 3, num_layers=2, dropout=0.5).double()
    with pytest.raises(GradlabError, match=r"training mode.*module.eval\(\)"):
        gradlab.gradient_flow(module, _xs())
    assert math.isfinite(gradlab.gradient_flow(module.eval(), _xs()).rate())


def test_nested_lists_keep_float64():
    """Python floats went through torch.as_tensor, i.e. float32: log norms 4e-8 off."""
    cell = gradlab.cell("gru")
    params = cell.init_params(3, 2, seed=0)
    xs = _xs()
    a = gradlab.gradient_flow(cell, params, xs)
    b = gradlab.gradient_flow(cell, params, xs.tolist(),
                              state0=tuple(s.tolist() for s in a.state0))
    assert np.array_equal(a.log_norm(), b.log_norm())
    assert torch.equal(a.loss_vector(xs[0, 0].tolist() + [0.5]),
                       torch.tensor(xs[0, 0].tolist() + [0.5], dtype=D))
    with pytest.raises(GradlabError, match="xs must be an array of real numbers, got list"):
        gradlab.gradient_flow(cell, params, [[["a", 1.0]]])


def test_proj_size_padding_takes_no_part_in_random_starts():
    """Q_0 and the default loss vector were drawn over the padded state: the first QR step
    then measured Q_0's projection onto the true state (exponents' sum -15.013 against
    -14.954 by jacrev of the module), and v had norm 0.70-0.85 on torch's coordinates."""
    module = torch.nn.LSTM(2, 5, proj_size=2, num_layers=2).double()
    xs = _xs(T=30)
    flow, jacrev = gradlab.gradient_flow(module, xs), gradlab.gradient_flow(TorchStep(module), xs)
    assert flow.padding == 6
    k = flow.S - flow.padding
    # all k exponents: their sum is the mean log det of J on the true state, whatever Q_0
    assert flow.lyapunov(k).sum() == pytest.approx(jacrev.lyapunov(k).sum(), rel=1e-12)
    v = flow.loss_vector()
    pad = torch.cat([torch.arange(5) >= 2, torch.zeros(5, dtype=torch.bool)] * 2)
    assert torch.linalg.vector_norm(v) == pytest.approx(1, rel=1e-15)
    assert bool((v[pad] == 0).all()) and int((v[~pad] != 0).sum()) == k


def test_changing_what_a_flow_exposes_changes_nothing_it_reports():
    """Flow.states and Flow.xs were the tensors the lazy walk reads: f.states[0].mul_(2)
    before the first norm moved log_norm by 0.63."""
    cell = gradlab.cell("lstm")
    params = cell.init_params(3, 2, seed=0)
    xs = _xs()
    expected = gradlab.gradient_flow(cell, params, xs).log_norm()
    flow = gradlab.gradient_flow(cell, params, xs)
    for s in flow.states + flow.state0:
        s.mul_(2)
    flow.xs.mul_(-3)
    assert np.array_equal(flow.log_norm(), expected)


def test_a_dead_product_has_a_horizon_of_one_step():
    """rate -inf and timescale 0, but horizon None ('never falls') in the same summary."""
    params = {"W": torch.randn(3, 3, dtype=D), "U": torch.zeros(3, 2, dtype=D),
              "b": torch.full((3,), -5.0, dtype=D)}
    flow = gradlab.gradient_flow("rnn_relu", params, _xs(T=6))
    summary = flow.summary()
    assert flow.rate() == -math.inf and flow.timescale() == 0
    assert flow.horizon(1e-3) == 1 and summary["horizon_1e-3"] == 1


def test_lyapunov_of_a_module_is_that_of_its_flow():
    """lyapunov(module, xs, k) goes through from_torch as gradient_flow(module, xs) does
    (it was refused, pointing to from_torch)."""
    module = torch.nn.GRU(2, 3).double()
    xs = _xs().double()
    assert (gradlab.lyapunov(module, xs, 2).mean
            == gradlab.gradient_flow(module, xs).lyapunov(2)).all()


def test_a_step_that_leaves_autograd_fails_in_one_line_when_differentiated():
    """The forward run needs no gradient, so a step through numpy runs; its Jacobian (by
    torch.func.jacrev, on the first norm read) was a raw RuntimeError. The step moves
    with the state where autodiff sees no dependence: refused when the states are run."""
    class ViaNumpy(torch.nn.Module):
        def forward(self, x, h):
            return torch.tensor(h.detach().numpy() * 0.5)

    with pytest.raises(gradlab.GradlabError, match=r"^ViaNumpy\(x, state\) moves with the "
                       r"state, but autodiff sees no dependence on it"):
        gradlab.gradient_flow(ViaNumpy(), torch.randn(5, 2, 3, dtype=torch.float64),
                              state0=torch.ones(2, 4, dtype=torch.float64)).rate()


@pytest.mark.parametrize("k", [2.5, True, "3", 0])
def test_a_bad_k_in_the_module_form_of_lyapunov_is_named_as_k(k):
    xs = torch.randn(10, 2, 3, dtype=torch.float64)
    with pytest.raises(gradlab.GradlabError, match=r"^k must be a positive integer"):
        gradlab.lyapunov(torch.nn.GRU(3, 4).double(), xs, k)


def test_sparse_arrays_are_refused_in_one_line():
    p = gradlab.cell("lstm").init_params(hidden=4, inputs=3, seed=0)
    xs = torch.randn(10, 2, 3, dtype=torch.float64)
    with pytest.raises(gradlab.GradlabError, match=r"^xs is a sparse_coo tensor; give a dense"):
        gradlab.gradient_flow("lstm", p, xs.to_sparse())
    q = {**p, "W_i": p["W_i"].to_sparse()}
    with pytest.raises(gradlab.GradlabError, match=r"param 'W_i' .* sparse_coo .*to_dense"):
        gradlab.lyapunov("lstm", q, xs, 2)


class _Step(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = torch.nn.Linear(3 + 4, 4).double()

    def forward(self, x, h):
        z = self.lin(torch.cat([x, h], -1))
        if self.kind == "noisy":
            z = z + torch.randn_like(h)
        elif self.kind == "centred":
            z = z - z.mean(0, keepdim=True)
        return torch.tanh(z)


@pytest.mark.parametrize("kind, said", [
    ("noisy", r"_Step\(x, state\) gave two different new states for one \(x, state\): it "
              r"draws noise"),
    ("centred", r"_Step\(x, state\) mixes the sequences of a batch")])
def test_a_step_that_draws_noise_or_mixes_the_batch_is_refused(kind, said):
    """A step with torch.randn in forward measured states from one draw and Jacobians from
    others (two calls differed by 3.6 in a log norm); one centring over the batch gave
    each sequence's Jacobian without the mean's share, a silent 'product zero'."""
    torch.manual_seed(0)
    xs = torch.randn(5, 3, 3, dtype=torch.float64)
    h0 = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(GradlabError, match=said):
        gradlab.gradient_flow(_Step(kind), xs, state0=h0)
    with pytest.raises(GradlabError, match=said):
        gradlab.lyapunov(_Step(kind), xs, 2, state0=h0)
    plain = gradlab.gradient_flow(_Step("plain"), xs, state0=h0)
    assert np.isfinite(plain.log_norm()).all()


class _Hidden(torch.nn.Module):
    """Noise, or a count of calls, that multiplies the state: invisible at a zero state0."""

    def __init__(self, kind):
        super().__init__()
        self.kind, self.calls = kind, 0
        self.W = torch.nn.Parameter(0.9 * torch.eye(4, dtype=torch.float64))

    def forward(self, x, h):
        self.calls += 1
        gain = 1 + (0.5 * torch.randn_like(h) if self.kind == "noisy" else 0.01 * self.calls)
        return torch.tanh(h @ self.W.T * gain + x.sum(-1, keepdim=True))


@pytest.mark.parametrize("kind", ["noisy", "counting"])
def test_noise_that_a_zero_state_hides_is_still_refused(kind):
    """The check replayed only the first step, from state0: noise or a call counter that
    multiplies the state changed nothing there, and a zero state0 let the walk measure
    states of one draw with Jacobians of others (its rate moved from run to run). The last
    step is replayed too."""
    torch.manual_seed(0)
    xs = torch.randn(20, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"gave two different new states .* counts its calls"):
        gradlab.gradient_flow(_Hidden(kind), xs, state0=h0)


def test_a_projected_lstms_state0_padding_must_be_zero():
    """nn.LSTM(proj_size=p): gradlab holds h as (B, n), entries p.. zero padding. A (B, n)
    h with nonzero padding was taken (flow.states showed it, as if torch's h had n
    entries); a ragged list raised numpy's ValueError."""
    module = torch.nn.LSTM(3, 6, proj_size=2).double()
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    h, c = torch.zeros(2, 6, dtype=torch.float64), torch.zeros(2, 6, dtype=torch.float64)
    assert np.isfinite(gradlab.gradient_flow(module, xs, state0=(h, c)).rate())
    h[:, 4] = 1.0
    with pytest.raises(GradlabError, match=r"state0 part 'h' has nonzero entries past 2"):
        gradlab.gradient_flow(module, xs, state0=(h, c))
    with pytest.raises(GradlabError, match=r"state0 part 'h' is no \(B, width\) array"):
        gradlab.gradient_flow(module, xs, state0=([[1.0] * 6, [1.0, 2.0]], c))


def test_a_module_changed_after_gradient_flow_changes_nothing_measured():
    """The walk runs when a norm is first read, and it took its Jacobians from the module
    as it was then: weights scaled by 3 after gradient_flow gave a rate (-0.158) of
    neither model (-0.911 before, -0.504 after). The module is copied at the call."""
    torch.manual_seed(0)
    xs = torch.randn(30, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    step = _Step("plain")
    flow, before = gradlab.gradient_flow(step, xs, state0=h0), \
        gradlab.gradient_flow(step, xs, state0=h0).rate()
    with torch.no_grad():
        for p in step.parameters():
            p.mul_(3)
    assert flow.rate() == before
    assert gradlab.gradient_flow(step, xs, state0=h0).rate() != before


def test_a_step_that_changes_its_state_in_place_is_named():
    """h.mul_(0.5) inside forward changed the stored state (views of it reach the module)
    and was then diagnosed as 'draws noise ... or counts its calls'."""
    class InPlace(torch.nn.Module):
        state0 = torch.zeros(3, dtype=torch.float64)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(3, dtype=torch.float64))

        def forward(self, x, h):
            h.mul_(0.5)
            return torch.tanh(h @ self.w + x)
    xs = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(GradlabError, match="changes the state it is given in place"):
        gradlab.gradient_flow(InPlace(), xs)


def test_a_step_returning_none_is_named_as_returning_it():
    """'failed at step 1: AttributeError: NoneType object has no attribute shape' blamed
    the module for gradlab's own output check."""
    class Nothing(torch.nn.Module):
        state0 = torch.zeros(3, dtype=torch.float64)

        def forward(self, x, h):
            return None
    xs = torch.zeros(2, 1, 3, dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"returned NoneType; the protocol wants"):
        gradlab.gradient_flow(Nothing(), xs)


@pytest.mark.parametrize("kind, direction", [("gru", "forward"), ("lstm", "backward")])
def test_a_deep_bidirectional_module_runs_from_the_state0_given(kind, direction):
    """With num_layers >= 3 the other direction's layer 2 reads this one's layer-1
    outputs, which state0 changes: they were computed from zeros, and layer 3's states
    were up to 0.08 from the module's own run, without a word."""
    torch.manual_seed(0)
    T, B, m, H, p = 6, 2, 2, 3, 2
    module = (torch.nn.GRU(m, H, num_layers=3, bidirectional=True) if kind == "gru" else
              torch.nn.LSTM(m, H, num_layers=3, bidirectional=True, proj_size=p)).double()
    xs = torch.randn(T, B, m, dtype=torch.float64)
    side = 0 if direction == "forward" else 1
    width = H if kind == "gru" else p
    hs = [2.0 * torch.randn(B, width, dtype=torch.float64) for _ in range(3)]
    h0 = torch.zeros(6, B, width, dtype=torch.float64)
    h0[side::2] = torch.stack(hs)                  # torch's order: l0 fwd, l0 bwd, l1 fwd...
    if kind == "gru":
        state0, start = tuple(hs), h0
    else:
        cs = [torch.randn(B, H, dtype=torch.float64) for _ in range(3)]
        c0 = torch.zeros(6, B, H, dtype=torch.float64)
        c0[side::2] = torch.stack(cs)
        state0, start = tuple(v for pair in zip(hs, cs) for v in pair), (h0, c0)
    flow = gradlab.gradient_flow(module, xs, state0=state0, reverse=direction == "backward")
    with torch.no_grad():
        out, _ = module(xs, start)
    mine = out[..., side * width:(side + 1) * width]
    if direction == "backward":
        mine = mine.flip(0)                          # analysed in reverse time
    top = flow.states[2 if kind == "gru" else 4][1:, :, :width]      # layer 3's h
    assert torch.allclose(top, mine, atol=1e-14, rtol=0)


def test_direction_inputs_refuses_a_state0_it_cannot_read_in_one_line():
    """Its state0 (public since it reads one) took torch's (2L, B, H) tensor or too few
    parts to a raw AttributeError, a float32 one to torch's dtype RuntimeError."""
    from gradlab.interop import direction_inputs
    module = torch.nn.GRU(2, 3, num_layers=3, bidirectional=True).double()
    xs = torch.randn(5, 2, 2, dtype=torch.float64)
    for state0, needle in ((torch.zeros(6, 2, 3), "one (B, width) part each for h1, h2, h3; "
                                                  "got Tensor"),
                           ((torch.zeros(2, 3),) * 2, "got 2 parts"),
                           ((torch.zeros(2, 4),) * 3, "state0 part 'h1' has shape (2, 4); "
                                                     "expected (2, 3)")):
        with pytest.raises(GradlabError, match=re.escape(needle)):
            direction_inputs(module, xs, "forward", state0=state0)
    single = (torch.zeros(2, 3, dtype=torch.float32),) * 3          # read on the module's
    assert torch.equal(direction_inputs(module, xs, "forward", state0=single),   # dtype
                       direction_inputs(module, xs, "forward"))


class _SetsGlobals(torch.nn.Module):
    """A protocol step whose forward sets torch's default dtype and seeds its generator."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(0.3 * torch.eye(3, dtype=D))

    def forward(self, x, state):
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(123)
        return (torch.tanh(state[0] @ self.W + x),)


def test_a_modules_global_settings_do_not_outlive_gradient_flow():
    """The forward run and the walk keep torch's process-wide settings (torch_state.kept):
    the caller's default dtype stayed float64 and its random state moved."""
    dtype, rng = torch.get_default_dtype(), torch.get_rng_state()
    try:
        flow = gradlab.gradient_flow(_SetsGlobals(), _xs(T=4, B=2, m=3),
                                     state0=(torch.zeros(2, 3, dtype=D),))
        assert torch.get_default_dtype() == dtype                  # after the forward run
        assert np.isfinite(flow.log_norm("spectral")).all()        # and after the walk
        assert torch.get_default_dtype() == dtype
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        torch.set_default_dtype(dtype)
