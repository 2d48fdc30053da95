"""Unusual but valid user cells through the whole gradient-flow path (hoisted step,
compacted Jacobian blocks, in-place sums), against brute force: per-step jacrev of the
plain lowered step, dense products, SVD. Each cell here once broke something."""

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab import sigmoid, tanh
from conftest import flat_step, relative_error, sample_jacobians


@gradlab.declare(state="h c", params="W U b", source="a test cell")
def shift(s):
    """c' = h: a let that is exactly another symbol (a shift register)."""
    return tanh(s.W @ s.h + s.U @ s.x + s.b), s.h


@gradlab.declare(state="h c", params="W U b U_c b_c", source="a test cell")
def free_part(s):
    """c' reads no state: computed before the loop, yet still a state part the loop returns."""
    return tanh(s.W @ s.h + s.U @ s.x + s.b), tanh(s.U_c @ s.x + s.b_c)


@gradlab.declare(state="h", params="U b", source="a test cell")
def free_cell(s):
    """No state dependence at all: every product is zero."""
    return tanh(s.U @ s.x + s.b)


@gradlab.declare(state="h", params="U b", source="a test cell")
def diagonal_cell(s):
    """A one-part cell with a diagonal Jacobian (assembled, not structured)."""
    return sigmoid(s.U @ s.x + s.b) * s.h


@gradlab.declare(state="h", params={"W": "n n", "V": "n n", "U": "n m", "b": "n", "a_g": "n"},
                 source="a test cell")
def param_gate(s):
    """sigmoid(a_g) W + ...: the first row-scaled term's scale reads parameters alone, so
    it is (n, n) where the sum is (B, n, n)."""
    return sigmoid(s.a_g) * (s.W @ s.h) + tanh(s.V @ s.h + s.U @ s.x + s.b)


@gradlab.declare(state="h", params="W U b V", source="a test cell")
def named_pre0(s):
    """A let named like the hoisted input projections (pre0)."""
    a = s.let("pre0", tanh(s.W @ s.h + s.U @ s.x + s.b))
    return tanh(s.V @ a + s.U @ s.x + s.b)


@gradlab.declare(state="h", params="W U b", source="a test cell")
def input_alias(s):
    """A let that is x itself."""
    xa = s.let("xa", s.x)
    return tanh(s.W @ s.h + s.U @ xa + s.b)


CELLS = [shift, free_part, free_cell, diagonal_cell, param_gate, named_pre0, input_alias]


def brute_force(cell, params, xs):
    """(B, T) log spectral and Frobenius norms of every P_k from jacrev of the step."""
    step = cell.step_fn("torch")
    T, B, _ = xs.shape
    n = params[cell.param_names[0]].shape[0]

    single = flat_step(step, params, n)                          # (S,), (m,) -> (S,)
    state = tuple(torch.zeros(B, n, dtype=xs.dtype) for _ in cell.state_names)
    jacobians = []
    for t in range(T):
        jacobians.append(vmap(jacrev(single))(torch.cat(state, -1), xs[t]))
        state = step(params, state, xs[t])
    P, spectral, frobenius = None, [], []
    for J in reversed(jacobians):
        P = J if P is None else P @ J
        spectral.append(torch.linalg.matrix_norm(P, 2).log())
        frobenius.append(torch.linalg.matrix_norm(P).log())
    return torch.stack(spectral, 1).numpy(), torch.stack(frobenius, 1).numpy()


def same_logs(a, b):
    """Equal to 1e-12 where finite; -inf exactly where the other is."""
    assert (np.isneginf(a) == np.isneginf(b)).all()
    finite = np.isfinite(b)
    return np.abs(a[finite] - b[finite]).max(initial=0.0) < 1e-12


@pytest.mark.parametrize("size", [(3, 2, 2, 5), (1, 1, 1, 3)],
                         ids=lambda s: "n{}-m{}-B{}-T{}".format(*s))
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_gradient_flow_matches_brute_force(cell, size):
    n, m, B, T = size
    params = cell.init_params(n, m, seed=1, bias_scale=0.5)
    for name, shape in cell.param_shapes.items():          # a parameter-only gate too
        if name.startswith("a_"):
            params[name] = torch.randn(n, generator=torch.Generator().manual_seed(2),
                                       dtype=torch.float64)
    xs = torch.randn(T, B, m, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    flow = gradlab.gradient_flow(cell, params, xs)
    spectral, frobenius = brute_force(cell, params, xs)
    assert same_logs(flow.log_norm("frobenius"), frobenius)
    assert same_logs(flow.log_norm("spectral"), spectral)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_a_parameter_only_scale_first_in_an_in_place_sum(backend):
    n, m, B = 3, 2, 2
    params = param_gate.init_params(n, m, seed=4)
    state = (torch.randn(B, n, dtype=torch.float64),)
    x = torch.randn(B, m, dtype=torch.float64)
    want, _ = sample_jacobians(param_gate.step_fn(), params, state, x)
    if backend == "numpy":
        params = {k: v.numpy() for k, v in params.items()}
        state, x = (state[0].numpy(),), x.numpy()
    got = param_gate.jacobian_fn("state", backend)(params, state, x)
    assert relative_error(got, want) < 1e-14


@pytest.mark.parametrize("wrt", ["state", "input"])
def test_autograd_runs_through_the_lowered_jacobians(wrt):
    """Differentiating a Jacobian (a penalty on its norm, say): the in-place sums step
    aside for ordinary ones whenever autograd is recording."""
    lstm = gradlab.cell("lstm")
    params = {k: v.requires_grad_(True) for k, v in lstm.init_params(4, 3, seed=5).items()}
    state = (torch.randn(2, 4, dtype=torch.float64),) * 2
    x = torch.randn(2, 3, dtype=torch.float64)
    J = lstm.jacobian_fn(wrt)(params, state, x)
    J.square().sum().backward()
    assert params["W_f"].grad is not None and params["W_f"].grad.abs().sum() > 0
    with torch.no_grad():
        assert relative_error(lstm.jacobian_fn(wrt)(params, state, x), J) < 1e-15


def test_spectral_norm_of_a_diagonal_product_whose_top_entry_changes_places(monkeypatch):
    """P_k = diag(prod of gates): its spectral norm is the largest entry, which moves
    from unit to unit as k grows. The warm start carried across chunks is then an exact
    eigenvector (residual 0) of an eigenvalue that is no longer the largest; Lanczos once
    certified it (an error of 0.009 in the log)."""
    from gradlab import flow as F
    monkeypatch.setitem(F.CHUNK_BYTES, "cpu", 4000)              # chunks of a lag or two
    n, m, B, T = 30, 1, 3, 9
    params = diagonal_cell.init_params(n, m, seed=1)
    xs = torch.randn(T, B, m, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = gradlab.gradient_flow(diagonal_cell, params, xs, norms=("spectral",))
    gates = torch.sigmoid(xs @ params["U"].T + params["b"])          # (T, B, n)
    exact = torch.cumsum(gates.flip(0).log(), 0).max(-1).values.T      # (B, T)
    assert np.abs(got.log_norm("spectral") - exact.numpy()).max() < 1e-10


def test_a_cell_file_imports_its_neighbours_and_a_module_is_found_from_here(
        tmp_path, monkeypatch):
    """README: a file is imported 'as python path.py would', which puts its folder on the
    path; 'from fns import _J' in a checked file failed with ModuleNotFoundError, and
    package.module:NAME was not found from the working directory. The path is left as it
    was found."""
    import sys
    (tmp_path / "helpers.py").write_text("SOURCE = 'neighbour'\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    cell_text = ("import gradlab\nfrom helpers import SOURCE\n\n\n"
                 "@gradlab.declare(state='h', params='W U b', source=SOURCE)\n"
                 "def plain(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    (tmp_path / "mine.py").write_text(cell_text)
    (tmp_path / "pkg" / "mod.py").write_text(cell_text.replace("from helpers", "from .helpers")
                                             .replace("SOURCE = ", ""))
    (tmp_path / "pkg" / "helpers.py").write_text("SOURCE = 'in a package'\n")
    before = list(sys.path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert gradlab.cell(f"{tmp_path / 'mine.py'}:plain").source == "neighbour"
    monkeypatch.chdir(tmp_path)
    assert gradlab.cell("pkg.mod:plain").source == "in a package"
    assert sys.path == before
    for name in ("helpers", "pkg", "pkg.mod", "pkg.helpers"):      # this test's modules
        sys.modules.pop(name, None)
