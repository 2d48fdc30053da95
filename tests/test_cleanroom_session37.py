"""Session 37 clean room: every cell re-implemented in torch from the cell specification
alone (derivations/conventions.md).

These oracles were written from the specification before reading gradlab's cell
declarations; they check step_fn (torch and numpy), jacobian_fn (state and input, against
torch.func.jacrev), init_params as the README states it, and from_torch of torch's modules.
"""
import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

import gradlab

D = torch.float64
sg, th = torch.sigmoid, torch.tanh


def lin(P, s, x, a):
    """W_a s + U_a x + b_a (a == '' for the plain / candidate weights)."""
    k = f"_{a}" if a else ""
    return s @ P["W" + k].T + x @ P["U" + k].T + P["b" + k]


def rnn(P, S, x, act):
    return (act(lin(P, S[0], x, "")),)


def r2rt(P, S, x, kind):
    s = S[0]
    read = th(s) if kind == "pseudo" else s
    i, o, f = (sg(lin(P, read, x, a)) for a in "iof")
    cand = th((o * read) @ P["W"].T + x @ P["U"].T + P["b"])
    r = f * s + i * cand
    if kind == "normalized":
        r = r / torch.sqrt(r.var(dim=-1, unbiased=False, keepdim=True) + 1)
    return (r,)


def gru(P, S, x):
    h = S[0]
    r, z = sg(lin(P, h, x, "r")), sg(lin(P, h, x, "z"))
    cand = th((r * h) @ P["W"].T + x @ P["U"].T + P["b"])
    return (z * h + (1 - z) * cand,)


def gru_torch(P, S, x):
    h = S[0]
    r = sg(x @ P["U_r"].T + P["b_ir"] + h @ P["W_r"].T + P["b_hr"])
    z = sg(x @ P["U_z"].T + P["b_iz"] + h @ P["W_z"].T + P["b_hz"])
    n = th(x @ P["U_n"].T + P["b_in"] + r * (h @ P["W_n"].T + P["b_hn"]))
    return ((1 - z) * n + z * h,)


def lstm(P, S, x):
    h, c = S
    i, f, o = (sg(lin(P, h, x, a)) for a in "ifo")
    g = th(lin(P, h, x, "g"))
    c2 = f * c + i * g
    return (o * th(c2), c2)


def greff(P, S, x, variant):
    """peephole_lstm and the eight variants of Greff et al. 2015 (derivations/conventions.md)."""
    h, c = S[0], S[1]
    peep = variant != "np"
    rec = {}
    if variant == "fgr":
        prev = dict(zip("ifo", S[2:]))
        for to in "ifo":
            rec[to] = sum(prev[fr] @ P[f"R_{fr}{to}"].T for fr in "ifo")

    def gate(a, cell_term):
        pre = lin(P, h, x, a) + rec.get(a, 0)
        if peep:
            pre = pre + P[f"p_{a}"] * cell_term
        return sg(pre)

    z = lin(P, h, x, "z")
    z = z if variant == "niaf" else th(z)
    i = torch.ones_like(c) if variant == "nig" else gate("i", c)
    if variant == "nfg":
        f = torch.ones_like(c)
    elif variant == "cifg":
        f = 1 - i
    else:
        f = gate("f", c)
    c2 = z * i + f * c
    o = torch.ones_like(c) if variant == "nog" else gate("o", c2)
    h2 = (c2 if variant == "noaf" else th(c2)) * o
    return (h2, c2, i, f, o) if variant == "fgr" else (h2, c2)


def minimal_rnn(P, S, x):
    h = S[0]
    z = th(x @ P["U"].T + P["b_z"])
    u = sg(h @ P["W"].T + z @ P["V"].T + P["b_u"])
    return (u * h + (1 - u) * z,)


def mgu(P, S, x):
    h = S[0]
    f = sg(lin(P, h, x, "f"))
    cand = th((f * h) @ P["W"].T + x @ P["U"].T + P["b"])
    return ((1 - f) * h + f * cand,)


PEEP = ["W_z", "W_i", "W_f", "W_o", "U_z", "U_i", "U_f", "U_o",
        "b_z", "b_i", "b_f", "b_o", "p_i", "p_f", "p_o"]
R2RT = ["W_i", "U_i", "b_i", "W_o", "U_o", "b_o", "W_f", "U_f", "b_f", "W", "U", "b"]


def less(gate):
    return [p for p in PEEP if p not in (f"W_{gate}", f"U_{gate}", f"b_{gate}", f"p_{gate}")]


R9 = [f"R_{a}{b}" for b in "ifo" for a in "ifo"]
# name: (oracle, state parts, params, memory gate bias, its sign)
SPEC = {
    "rnn_tanh": (lambda P, S, x: rnn(P, S, x, th), ("h",), ["W", "U", "b"], None),
    "rnn_relu": (lambda P, S, x: rnn(P, S, x, torch.relu), ("h",), ["W", "U", "b"], None),
    "prototype_lstm": (lambda P, S, x: r2rt(P, S, x, "prototype"), ("s",), R2RT, ("b_f", 1)),
    "normalized_lstm": (lambda P, S, x: r2rt(P, S, x, "normalized"), ("s",), R2RT, ("b_f", 1)),
    "pseudo_lstm": (lambda P, S, x: r2rt(P, S, x, "pseudo"), ("s",), R2RT, ("b_f", 1)),
    "gru": (gru, ("h",), ["W_r", "U_r", "b_r", "W_z", "U_z", "b_z", "W", "U", "b"], ("b_z", 1)),
    "gru_torch": (gru_torch, ("h",), ["W_r", "W_z", "W_n", "U_r", "U_z", "U_n", "b_ir", "b_iz",
                                      "b_in", "b_hr", "b_hz", "b_hn"], (("b_iz", "b_hz"), 1)),
    "lstm": (lstm, ("h", "c"), ["W_i", "W_f", "W_g", "W_o", "U_i", "U_f", "U_g", "U_o",
                                "b_i", "b_f", "b_g", "b_o"], ("b_f", 1)),
    "peephole_lstm": (lambda P, S, x: greff(P, S, x, ""), ("h", "c"), PEEP, ("b_f", 1)),
    "lstm_nig": (lambda P, S, x: greff(P, S, x, "nig"), ("h", "c"), less("i"), ("b_f", 1)),
    "lstm_nfg": (lambda P, S, x: greff(P, S, x, "nfg"), ("h", "c"), less("f"), None),
    "lstm_nog": (lambda P, S, x: greff(P, S, x, "nog"), ("h", "c"), less("o"), ("b_f", 1)),
    "lstm_niaf": (lambda P, S, x: greff(P, S, x, "niaf"), ("h", "c"), PEEP, ("b_f", 1)),
    "lstm_noaf": (lambda P, S, x: greff(P, S, x, "noaf"), ("h", "c"), PEEP, ("b_f", 1)),
    "lstm_np": (lambda P, S, x: greff(P, S, x, "np"), ("h", "c"),
                [p for p in PEEP if not p.startswith("p_")], ("b_f", 1)),
    "lstm_cifg": (lambda P, S, x: greff(P, S, x, "cifg"), ("h", "c"), less("f"), ("b_i", -1)),
    "lstm_fgr": (lambda P, S, x: greff(P, S, x, "fgr"), ("h", "c", "i", "f", "o"), PEEP + R9,
                 ("b_f", 1)),
    "minimal_rnn": (minimal_rnn, ("h",), ["U", "b_z", "W", "V", "b_u"], ("b_u", 1)),
    "mgu": (mgu, ("h",), ["W_f", "U_f", "b_f", "W", "U", "b"], ("b_f", -1)),
}
CELLS = sorted(SPEC)


def shape(name, n, m):
    if name[0] in "WRV":
        return (n, n)
    return (n, m) if name[0] == "U" else (n,)


def rand_params(name, n, m, g):
    return {p: torch.randn(shape(p, n, m), generator=g, dtype=D) * (1.5 if p[0] != "b" else 2.0)
            for p in SPEC[name][2]}


def rand_case(name, n, m, B, seed):
    g = torch.Generator().manual_seed(seed)
    P = rand_params(name, n, m, g)
    S = []
    for _ in SPEC[name][1]:
        s = torch.randn(B, n, generator=g, dtype=D) * (3 if seed % 10 < 3 else 1e4)
        s[0, 0] = 25.0 if B * n > 1 else -25.0      # large and negative values
        s[-1, -1] = -40.0
        S.append(s)
    x = torch.randn(B, m, generator=g, dtype=D) * 2
    return P, tuple(S), x


SIZES = [(1, 1, 1, 0), (3, 2, 4, 1), (7, 5, 2, 2), (4, 3, 3, 3)]   # the last: states ~ 1e4


def test_catalogue_matches_spec():
    assert sorted(gradlab.cells()) == CELLS
    for name in CELLS:
        cell = gradlab.cell(name)
        assert tuple(cell.state_names) == SPEC[name][1], name
        assert sorted(cell.param_names) == sorted(SPEC[name][2]), name


@pytest.mark.parametrize("name", CELLS)
def test_step_torch_and_numpy_match_oracle(name):
    cell = gradlab.cell(name)
    st, sn = cell.step_fn("torch"), cell.step_fn("numpy")
    for n, m, B, seed in SIZES:
        P, S, x = rand_case(name, n, m, B, seed)
        want = SPEC[name][0](P, S, x)
        got = st(P, S, x)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        gotn = sn({k: v.numpy() for k, v in P.items()}, tuple(s.numpy() for s in S), x.numpy())
        for a, b in zip(gotn, want):
            np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-12, atol=1e-12)


def oracle_jacobians(name, P, S, x):
    f = SPEC[name][0]
    sizes = [s.shape[1] for s in S]
    Js, Jx = [], []
    for bi in range(x.shape[0]):
        s0 = torch.cat([s[bi] for s in S])
        x0 = x[bi]

        def flat(sv, xv):
            parts = tuple(p.unsqueeze(0) for p in torch.split(sv, sizes))
            return torch.cat(f(P, parts, xv.unsqueeze(0)), dim=-1)[0]
        js, jx = jacrev(flat, argnums=(0, 1))(s0, x0)
        Js.append(js)
        Jx.append(jx)
    return torch.stack(Js), torch.stack(Jx)


@pytest.mark.parametrize("name", CELLS)
def test_jacobians_match_jacrev_of_oracle(name):
    cell = gradlab.cell(name)
    for n, m, B, seed in SIZES:
        P, S, x = rand_case(name, n, m, B, seed + 10)
        Js, Jx = oracle_jacobians(name, P, S, x)
        torch.testing.assert_close(cell.jacobian_fn("state")(P, S, x), Js, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(cell.jacobian_fn("input")(P, S, x), Jx, rtol=1e-10, atol=1e-12)
        npP, npS = {k: v.numpy() for k, v in P.items()}, tuple(s.numpy() for s in S)
        for wrt, J in (("state", Js), ("input", Jx)):
            got = cell.jacobian_fn(wrt, backend="numpy")(npP, npS, x.numpy())
            np.testing.assert_allclose(np.asarray(got), J.numpy(), rtol=1e-10, atol=1e-12)


def pooled_var(P, pick):
    return torch.cat([v.flatten() for k, v in P.items() if pick(k)]).var().item()


@pytest.mark.parametrize("name", CELLS)
def test_init_params_names_shapes_and_gaussian_variances(name):
    cell = gradlab.cell(name)
    n, m, ws, ins, bs = 400, 30, 1.7, 0.6, 0.8
    P = cell.init_params(n, m, weight_scale=ws, input_scale=ins, bias_scale=bs, seed=5)
    assert sorted(P) == sorted(SPEC[name][2])
    for k, v in P.items():
        assert v.shape == shape(k, n, m) and v.dtype == D, k
    # every n x n matrix (W_*, R_*, V) is recurrent: weight_scale^2 / hidden
    assert pooled_var(P, lambda k: k[0] in "WRV") == pytest.approx(ws ** 2 / n, rel=0.1)
    assert pooled_var(P, lambda k: k[0] == "U") == pytest.approx(ins ** 2 / m, rel=0.1)
    pooled = torch.cat([v for k, v in P.items() if k[0] == "b"])
    if pooled.numel() < 1200:        # few bias vectors: pool two more seeds (rel. sd ~ 4 %)
        more = [cell.init_params(n, m, weight_scale=ws, input_scale=ins, bias_scale=bs, seed=s)
                for s in (6, 7)]
        pooled = torch.cat([pooled] + [v for Q in more for k, v in Q.items() if k[0] == "b"])
    assert pooled.var().item() == pytest.approx(bs ** 2, rel=0.1)
    assert abs(pooled.mean().item()) < 0.1


@pytest.mark.parametrize("name", CELLS)
def test_gate_bias_goes_to_the_memory_gate_only(name):
    cell = gradlab.cell(name)
    base = cell.init_params(5, 3, bias_scale=0.3, seed=2)
    moved = cell.init_params(5, 3, bias_scale=0.3, gate_bias=2.5, seed=2)
    target = SPEC[name][3]
    delta = {k: moved[k] - base[k] for k in base}
    if target is None:               # no memory gate (vanilla RNNs, lstm_nfg): nothing moves
        assert all(torch.equal(moved[k], base[k]) for k in base)
        return
    names, sign = target
    names = names if isinstance(names, tuple) else (names,)
    total = sum(delta[k] for k in names)     # gru_torch: b_iz + b_hz together is z's bias
    torch.testing.assert_close(total, torch.full((5,), sign * 2.5, dtype=D))
    for k in base:
        if k not in names:
            assert torch.equal(moved[k], base[k]), k
    # and it opens the gate: a positive gate bias means "keep" for every cell
    P0 = cell.init_params(5, 3, weight_scale=0.0, input_scale=0.0, seed=2)
    P1 = cell.init_params(5, 3, weight_scale=0.0, input_scale=0.0, gate_bias=6.0, seed=2)
    S = tuple(torch.full((1, 5), 0.5, dtype=D) for _ in cell.state_names)
    x = torch.zeros(1, 3, dtype=D)
    keep0 = cell.jacobian_fn("state")(P0, S, x)[0].diagonal()[:5 * len(S)]
    keep1 = cell.jacobian_fn("state")(P1, S, x)[0].diagonal()[:5 * len(S)]
    assert keep1.abs().max() > keep0.abs().max()


@pytest.mark.parametrize("name", CELLS)
def test_orthogonal_torch_init_and_seeds(name):
    cell = gradlab.cell(name)
    n, m = 40, 6
    P = cell.init_params(n, m, init="orthogonal", weight_scale=1.3, seed=4)
    for k, v in P.items():
        if k[0] in "WRV":
            torch.testing.assert_close(v @ v.T, 1.69 * torch.eye(n, dtype=D), rtol=0, atol=1e-12)
    T = cell.init_params(n, m, init="torch", seed=4)
    bound = 1 / n ** 0.5
    for k, v in T.items():
        if name in ("rnn_tanh", "rnn_relu", "lstm") and k[0] == "b":
            bound_k = 2 * bound      # b = bias_ih + bias_hh: the sum of two draws (the "torch" init)
        else:
            bound_k = bound
        assert v.abs().max() <= bound_k and v.abs().max() > 0.7 * bound, k
        if bound_k == bound and v.numel() >= n * n:
            assert v.var().item() == pytest.approx(bound ** 2 / 3, rel=0.1), k
    for init in ("gaussian", "orthogonal", "torch"):
        a = cell.init_params(4, 2, init=init, seed=11)
        b = cell.init_params(4, 2, init=init, seed=11)
        c = cell.init_params(4, 2, init=init, seed=12)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert all(not torch.equal(a[k], c[k]) for k in a if a[k].abs().max() > 0)


def torch_modules():
    m, n = 3, 4
    return [
        nn.RNNCell(m, n), nn.RNNCell(m, n, nonlinearity="relu"), nn.LSTMCell(m, n),
        nn.GRUCell(m, n), nn.RNN(m, n), nn.RNN(m, n, nonlinearity="relu", num_layers=2),
        nn.LSTM(m, n, num_layers=2), nn.GRU(m, n), nn.GRU(m, n, num_layers=2, bias=False),
        nn.LSTM(m, n, batch_first=True), nn.LSTMCell(m, n, bias=False),
        nn.GRUCell(m, n, bias=False),
    ]



def module_step(mod, S, x):
    """One step of a torch module from state tuple S (gradlab order) -> new state tuple."""
    if isinstance(mod, nn.LSTMCell):
        return mod(x, (S[0], S[1]))
    if isinstance(mod, (nn.RNNCell, nn.GRUCell)):
        return (mod(x, S[0]),)
    L = mod.num_layers
    seq = x.unsqueeze(1) if mod.batch_first else x.unsqueeze(0)
    if isinstance(mod, nn.LSTM):
        h0 = torch.stack(S[0::2]) if L > 1 else S[0].unsqueeze(0)
        c0 = torch.stack(S[1::2]) if L > 1 else S[1].unsqueeze(0)
        _, (h, c) = mod(seq, (h0, c0))
        return tuple(t for layer in range(L) for t in (h[layer], c[layer]))
    _, h = mod(seq, torch.stack(S))
    return tuple(h)


@pytest.mark.parametrize("index", range(12))
def test_from_torch_matches_the_module(index):
    torch.manual_seed(index)
    mod = torch_modules()[index].double()      # one-layer modules are the catalogue's cells
    cell, P = gradlab.from_torch(mod)
    B, m = 3, 3
    g = torch.Generator().manual_seed(index)
    S = tuple(torch.randn(B, 4, generator=g, dtype=D) * 2 for _ in cell.state_names)
    x = torch.randn(B, m, generator=g, dtype=D) * 2
    with torch.no_grad():
        want = module_step(mod, S, x)
    got = cell.step_fn("torch")(P, S, x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    sizes = [4] * len(S)

    def flat(sv, xv):
        parts = tuple(p.unsqueeze(0) for p in torch.split(sv, sizes))
        return torch.cat(module_step(mod, parts, xv.unsqueeze(0)), dim=-1)[0]
    Js = cell.jacobian_fn("state")(P, S, x)
    Jx = cell.jacobian_fn("input")(P, S, x)
    for bi in range(B):
        js, jx = jacrev(flat, argnums=(0, 1))(torch.cat([s[bi] for s in S]), x[bi])
        torch.testing.assert_close(Js[bi], js, rtol=0, atol=1e-12)
        torch.testing.assert_close(Jx[bi], jx, rtol=0, atol=1e-12)
    if not isinstance(mod, (nn.RNNCell, nn.LSTMCell, nn.GRUCell)) and mod.num_layers == 1:
        want = {nn.LSTM: "lstm", nn.GRU: "gru_torch"}.get(type(mod))
        assert cell.name == (want or "rnn_" + mod.nonlinearity)


@pytest.mark.parametrize("name", CELLS)
def test_gradient_flow_from_zero_state_matches_the_oracle_chain(name):
    """Flow's last lag is d s_T / d s_0 from the zero state (lstm_fgr's gate parts too)."""
    cell = gradlab.cell(name)
    n, m, T, B = 3, 2, 4, 2
    P = cell.init_params(n, m, bias_scale=0.5, weight_scale=1.3, seed=3)
    xs = torch.randn(T, B, m, generator=torch.Generator().manual_seed(3), dtype=D)
    flow = gradlab.gradient_flow(cell, P, xs)
    parts = len(SPEC[name][1])
    for b in range(B):
        def run(s0):
            S = tuple(p.unsqueeze(0) for p in torch.split(s0, n))
            for t in range(T):
                S = SPEC[name][0](P, S, xs[t, b:b + 1])
            return torch.cat(S, -1)[0]
        J = jacrev(run)(torch.zeros(parts * n, dtype=D))
        want = torch.linalg.matrix_norm(J, ord=2).log().item()
        assert flow.log_norm("spectral")[b, -1] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_cli_cells_lists_every_cell_with_state_and_source():
    from click.testing import CliRunner
    from gradlab.cli import cli
    res = CliRunner().invoke(cli, ["cells"])
    assert res.exit_code == 0
    rows = {line.split()[0]: line for line in res.output.splitlines()[1:] if line.strip()}
    assert sorted(rows) == CELLS
    sources = {"rnn_tanh": "nn.RNN", "gru_torch": "nn.GRU", "lstm": "Hochreiter",
               "peephole_lstm": "Gers", "minimal_rnn": "1806.05394", "mgu": "Zhou",
               "lstm_fgr": "1503.04069", "prototype_lstm": "R2RT", "gru": "Cho"}
    for name in CELLS:
        assert ", ".join(SPEC[name][1]) in rows[name], name
    for name, src in sources.items():
        assert src in rows[name], name
