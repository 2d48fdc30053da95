"""Property tests: hypothesis builds random cells from the declaration language's parts and
the derived, lowered Jacobians must equal torch.func.jacrev of the lowered step.

A cell is drawn as a recipe (nested tuples), then declared with `gradlab.declare` like any
user cell. The parts are the smooth ones: sigmoid, tanh, exp (of a bounded argument), sqrt
(of a positive one), `+`, `-`, `*`, `/` (by a positive vector or a scalar), `@` with
declared n x n parameters, and `s.let`. relu is left out: at its kink jacrev and the
derivation may both be right and still differ. Sizes, batch and values are drawn too.

The reference is autograd of `cell.step_fn("torch")` (tests/conftest.py, sample_jacobians),
which shares the lowered forward pass but nothing of the symbolic chain rule or of the
printed Jacobian code. Deterministic: derandomized, so every run sees the same examples.
"""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradlab
from gradlab import exp, sigmoid, sqrt, tanh
from conftest import relative_error, sample_jacobians

RTOL = 1e-10          # float64 against autograd, as in test_cells.py
WEIGHTS = ("W1", "W2")
INPUTS = ("U1", "U2")
BIASES = ("b1", "b2")

# -- recipes ---------------------------------------------------------------------------------


def leaves(parts):
    return st.one_of(
        st.tuples(st.just("state"), st.integers(0, parts - 1)),
        st.tuples(st.just("input"), st.sampled_from(INPUTS)),
        st.tuples(st.just("bias"), st.sampled_from(BIASES)),
        st.tuples(st.just("recur"), st.sampled_from(WEIGHTS), st.integers(0, parts - 1)))


def extend(children):
    unary = st.sampled_from(["sigmoid", "tanh", "exp", "sqrt", "let", "half"])
    binary = st.sampled_from(["add", "sub", "mul", "div"])
    return st.one_of(
        st.tuples(unary, children),
        st.tuples(st.just("matmul"), st.sampled_from(WEIGHTS), children),
        st.tuples(binary, children, children))


def recipes(parts):
    return st.recursive(leaves(parts), extend, max_leaves=6)


def used_params(recipe, found):
    """The parameter names a recipe uses (a declared but unused parameter is refused)."""
    for item in recipe:
        if isinstance(item, tuple):
            used_params(item, found)
        elif isinstance(item, str) and item in WEIGHTS + INPUTS + BIASES:
            found.add(item)
    return found


def build(s, recipe, parts, names):
    """The language value of a recipe; names counts the s.let names handed out."""
    op, *args = recipe
    sub = lambda r: build(s, r, parts, names)   # noqa: E731
    if op == "state":
        return getattr(s, parts[args[0]])
    if op == "input":
        return getattr(s, args[0]) @ s.x
    if op == "bias":
        return getattr(s, args[0])
    if op == "recur":
        return getattr(s, args[0]) @ getattr(s, parts[args[1]])
    if op == "matmul":
        return getattr(s, args[0]) @ sub(args[1])
    if op == "sigmoid":
        return sigmoid(sub(args[0]))
    if op == "tanh":
        return tanh(sub(args[0]))
    if op == "exp":
        return exp(tanh(sub(args[0])))                       # bounded argument
    if op == "sqrt":
        return sqrt(sigmoid(sub(args[0])) + 0.5)             # positive argument
    if op == "half":
        return sub(args[0]) / 2
    if op == "let":
        names.append(f"q{len(names)}")
        return s.let(names[-1], sub(args[0]))
    a, b = sub(args[0]), sub(args[1])
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    return a / (1 + sigmoid(b))                              # div: by a vector in (1, 2)


@st.composite
def cells(draw):
    """(Cell, recipes): one or two state parts, each updated by a drawn recipe on top of a
    tanh RNN term (so each new part depends on the old state and on x)."""
    parts = ("h", "c")[:draw(st.integers(1, 2))]
    drawn = [draw(recipes(len(parts))) for _ in parts]
    params = sorted(used_params(drawn, {"W1", "U1"}))

    def random_cell(s):
        names = []
        return tuple(tanh(s.W1 @ getattr(s, p) + s.U1 @ s.x) + build(s, r, parts, names)
                     for p, r in zip(parts, drawn))

    cell = gradlab.declare(state=" ".join(parts), params=" ".join(params),
                           source="drawn by hypothesis")(random_cell)
    return cell, drawn


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(drawn=cells(), n=st.integers(1, 4), m=st.integers(1, 3), batch=st.integers(1, 3),
       seed=st.integers(0, 2 ** 16))
def test_derived_jacobians_match_autograd_of_the_step(drawn, n, m, batch, seed):
    cell, recipe = drawn
    params = cell.init_params(n, m, weight_scale=1.2, bias_scale=0.5, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    state = tuple(torch.randn(batch, n, generator=gen, dtype=torch.float64)
                  for _ in cell.state_names)
    x = torch.randn(batch, m, generator=gen, dtype=torch.float64)
    S = n * len(cell.state_names)

    J_ref, Jx_ref = sample_jacobians(cell.step_fn("torch"), params, state, x)
    J = cell.jacobian_fn("state")(params, state, x)
    Jx = cell.jacobian_fn("input")(params, state, x)
    assert J.shape == (batch, S, S) and Jx.shape == (batch, S, m)
    assert torch.isfinite(J_ref).all() and torch.isfinite(Jx_ref).all(), recipe
    assert relative_error(J, J_ref) <= RTOL, recipe
    assert relative_error(Jx, Jx_ref) <= RTOL, recipe
