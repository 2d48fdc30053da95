"""The methods `gradlab bench` races gradient_flow against: what a competent user writes.

The step: for the cells torch ships (rnn_tanh, rnn_relu, lstm, gru_torch) torch's own
nn.RNNCell / nn.LSTMCell / nn.GRUCell with the same weights (`interop.to_torch`); for the
other built-in cells a plain eager torch step written by hand (`verification.oracles`:
`h @ W.T` products, no validation); only a user's own cell, for which no plain step
exists, is stepped by gradlab's lowered code.

One exception, where torch's cell would hand the baselines a handicap no user would keep:
on a CUDA device nn.LSTMCell and nn.GRUCell run fused kernels (aten::_thnn_fused_lstm_cell,
_thnn_fused_gru_cell) that have no vmap batching rule, so torch.func and a batched
backward (both vmap) run them sample by sample, and say so in a warning. A user who sees
it writes the cell's arithmetic out; so does `baseline_step` (`unfused`: the module's own
weights, F.linear products, the gates as torch documents them), and the label says why.

    autograd   every state kept, the rows of every P_k from ONE batched backward pass
               (torch.autograd.grad with is_grads_batched=True)
    func       ONE torch.func.vmap(jacrev(step)) over all T B stored states, the
               Jacobians chained by bmm
    floor      T bare torch.bmm of (B, S, S): the matrix products alone
Both baselines take spectral norms by torch.linalg.matrix_norm(ord=2) when asked (on a
CUDA device the bench times those SVDs once instead, `bench.svds_apart`).
"""

import math

import torch
import torch.nn.functional as F

from . import registry
from .batching import fallback_quiet, falls_back
from .budget import available_bytes
from .interop import MODULES, to_torch
from .verification.oracles import ORACLES
from .verification.verify import flat_step

# Bytes of temporaries one vmap(jacrev(step)) call may hold (at most half of the
# device's free memory where that can be read): a sample's backward holds a few (S, gates)
# arrays per cotangent, taken as 8 S^2 elements; past this the func baseline vmaps in
# chunks of samples (vmap's chunk_size), as a user whose device ran out of memory would
# (n = 256, T = 256, B = 32 in float32 would otherwise want ~70 GB).
FUNC_BYTES = 16 << 30


def baseline_step(cell, params):
    """(label, step(state tuple, x) -> state tuple): the step a user would write."""
    builtin = registry.builtin(cell)
    if builtin and cell.name in MODULES:
        module = to_torch(cell, params).requires_grad_(False)   # gradients wrt states only
        two = cell.name == "lstm"

        def step(state, x):
            out = module(x, state if two else state[0])
            return tuple(out) if two else (out,)
        label = f"torch.nn.{MODULES[cell.name][0]}"
        step.parts = cell.state_names
        if isinstance(module, (torch.nn.LSTMCell, torch.nn.GRUCell)) and not vmappable(
                step, module.hidden_size * len(step.parts), module.input_size,
                module.weight_hh.dtype, module.weight_hh.device):
            device = module.weight_hh.device.type
            return (f"{label}'s weights, stepped unfused (on {device} its fused kernel has "
                    "no vmap batching rule: vmap would run it sample by sample)",
                    unfused(module))
        return label, step
    if builtin and cell.name in ORACLES:
        oracle = ORACLES[cell.name]
        return "plain torch step", lambda state, x: oracle(params, state, x)
    lowered = cell.step_fn("torch")
    return ("gradlab's lowered step (a user cell has no plain torch step)",
            lambda state, x: lowered(params, state, x))


def unfused(module):
    """The step of an nn.LSTMCell or nn.GRUCell written out as torch documents it, with the
    module's own weights: gates from two F.linear products, then elementwise."""
    w_ih, w_hh, b_ih, b_hh = module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh
    if isinstance(module, torch.nn.LSTMCell):
        def step(state, x):
            h, c = state
            i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
    else:
        def step(state, x):
            (h,) = state
            xr, xz, xn = F.linear(x, w_ih, b_ih).chunk(3, -1)
            hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            return ((1 - z) * n + z * h,)
    return step


def single_sample(step, S):
    """step as a function of one state (S,) and one input (m,) -> (S,), for vmap(jacrev)."""
    return flat_step(lambda params, state, x: step(state, x), None, S // len(step.parts))


def vmappable(step, S, m, dtype, device):
    """False if vmap(jacrev(step)) on two samples falls back to running some op sample by
    sample (the op has no batching rule), else True."""
    jac = torch.func.vmap(torch.func.jacrev(single_sample(step, S)))
    return not falls_back(jac, torch.zeros(2, S, dtype=dtype, device=device),
                          torch.zeros(2, m, dtype=dtype, device=device))


def norms(P, wanted):
    """log spectral and Frobenius norms of P (T, B, S, S) as (B, T) float64 numpy arrays,
    or just the last product when norms are not wanted."""
    if not wanted:
        return P[-1]
    return [torch.linalg.matrix_norm(P, ord=o).log().T.detach()
            .to(dtype=torch.float64, device="cpu").numpy() for o in (2, "fro")]


def autograd_products(step, S, xs):
    """P_1 .. P_T (T, B, S, S), their rows from one batched backward pass over the
    retained states."""
    T, B, _ = xs.shape
    n = S // len(step.parts)
    s = torch.zeros(B, S, dtype=xs.dtype, device=xs.device, requires_grad=True)
    states = [s]
    for t in range(T):
        states.append(torch.cat(step(states[-1].split(n, -1), xs[t]), -1))
    eye = torch.eye(S, dtype=xs.dtype, device=xs.device)[:, None, :].expand(S, B, S)
    rows = torch.autograd.grad(states[T], states[:T], grad_outputs=eye, is_grads_batched=True)
    return torch.stack(rows[::-1]).transpose(1, 2)


def autograd(step, S, xs, wanted):
    return norms(autograd_products(step, S, xs), wanted)


def chained_products(step, S, xs):
    """P_1 .. P_T (T, B, S, S): every J_t from ONE vmap(jacrev(step)) over the T B stored
    states (`jacobians`), chained back from s_T by T bmm calls (`chain`)."""
    return chain(jacobians(step, S, xs))


def jacobians(step, S, xs):
    """J_1 .. J_T (T, B, S, S), J_t = d s_t / d s_{t-1}: ONE vmap(jacrev(step)) over the T B
    stored states (per step it was T calls, 2.3-4.6x slower at n = 16-32; in chunks of
    samples past FUNC_BYTES)."""
    T, B, m = xs.shape
    n = S // len(step.parts)
    with torch.no_grad():
        states = [torch.zeros(B, S, dtype=xs.dtype, device=xs.device)]
        for t in range(T - 1):
            states.append(torch.cat(step(states[-1].split(n, -1), xs[t]), -1))
    free = available_bytes(xs.device)
    room = FUNC_BYTES if free is None else min(FUNC_BYTES, free // 2)
    chunk = max(1, room // (8 * S * S * xs.element_size()))
    jac = torch.func.vmap(torch.func.jacrev(single_sample(step, S)),
                          chunk_size=chunk if chunk < T * B else None)
    with fallback_quiet():           # (a user's own step may still fall back: same numbers)
        J = jac(torch.stack(states).reshape(T * B, S), xs.reshape(T * B, m))
    return J.view(T, B, S, S)


def chain(J):
    """P_1 .. P_T (T, B, S, S) of the Jacobians J (T, B, S, S): P_1 = J_T, P_k = P_{k-1}
    J_{T-k+1}, by T - 1 bmm calls."""
    T = J.shape[0]
    P = [J[T - 1]]
    for t in range(T - 1, 0, -1):
        P.append(torch.bmm(P[-1], J[t - 1]))
    return torch.stack(P)


def func(step, S, xs, wanted):
    return norms(chained_products(step, S, xs), wanted)


def floor(T, B, S, dtype, device):
    """A function running T bare bmm calls of (B, S, S) matrices."""
    gen = torch.Generator().manual_seed(0)
    A, J = (torch.randn(B, S, S, generator=gen, dtype=torch.float64).div(math.sqrt(S))
            .to(dtype=dtype, device=device) for _ in range(2))
    out = torch.empty_like(A)

    def run():
        for _ in range(T):
            torch.bmm(A, J, out=out)
        return out

    return run
