"""Trust probes (session 36): hand-derived Jacobians of catalogue cells, written from the
equations `gradlab derive CELL` prints (and torch's GRUCell for gru_torch), are accepted
at default options in float64 and float32; the mistakes people make deriving them by hand
(a transposed weight, a sign, sigmoid' written as s, a dropped peephole, the GRUs' other
reset convention, (c, h) order, the transpose, d/dx for d/dh, a term right only at zero
state or biases, a batch broadcast, a factor 1 + 1e-6, one entry off, nan, a function that
writes into its inputs) are refused with the block named; and check_lyapunov refuses a
Benettin loop whose Jacobians are taken one state late."""

import math

import pytest
import torch
from torch.func import jacrev, vmap

import gradlab
from gradlab.testing import assert_jacobian

from conftest import invoke

sig, th, D = torch.sigmoid, torch.tanh, torch.diag_embed


def lin(W, v):
    return v @ W.T                      # W v for each row v of a batch


# --- hand derivations (mut: None for the right one) ----------------------------------------

def lstm(P, s, x, mut=None):
    h, c = s
    i = sig(lin(P["W_i"], h) + lin(P["U_i"], x) + P["b_i"])
    f = sig(lin(P["W_f"], h) + lin(P["U_f"], x) + P["b_f"])
    g = th(lin(P["W_g"], h) + lin(P["U_g"], x) + P["b_g"])
    o = sig(lin(P["W_o"], h) + lin(P["U_o"], x) + P["b_o"])
    t = th(f * c + i * g)
    Wf = P["W_f"].T if mut == "transpose_Wf" else P["W_f"]
    di = i if mut == "sigmoid_s" else i * (1 - i)
    sf = -1 if mut == "sign_f" else 1
    dch = D(g * di) @ P["W_i"] + D(i * (1 - g ** 2)) @ P["W_g"]
    if mut != "zero_c_only":            # the c-term, zero only where c = 0
        dch = dch + sf * D(c * f * (1 - f)) @ Wf
    dcc = D(f)
    dhh = D(t * o * (1 - o)) @ P["W_o"] + D(o * (1 - t ** 2)) @ dch
    dhc = D(o * (1 - t ** 2) * f) * (0 if mut == "c_frozen" else 1)
    top, bot = torch.cat([dhh, dhc], -1), torch.cat([dch, dcc], -1)
    if mut == "order_ch":
        top, bot = torch.cat([dcc, dch], -1), torch.cat([dhc, dhh], -1)
    return torch.cat([top, bot], -2)


def gru_torch(P, s, x, mut=None):
    h, = s
    r = sig(lin(P["U_r"], x) + P["b_ir"] + lin(P["W_r"], h) + P["b_hr"])
    z = sig(lin(P["U_z"], x) + P["b_iz"] + lin(P["W_z"], h) + P["b_hz"])
    hn = lin(P["W_n"], h) + (0 if mut == "no_b_hn" else P["b_hn"])
    n = th(lin(P["U_n"], x) + P["b_in"] + r * (lin(P["W_n"], h) + P["b_hn"]))
    if mut == "reset_before":           # Cho's W (r ⊙ h) derivative on torch's r ⊙ (W h)
        dn = D(1 - n ** 2) @ (P["W_n"] @ (D(h * r * (1 - r)) @ P["W_r"] + D(r)))
    else:
        dn = D(1 - n ** 2) @ (D(hn * r * (1 - r)) @ P["W_r"] + D(r) @ P["W_n"])
    return D((h - n) * z * (1 - z)) @ P["W_z"] + D(1 - z) @ dn + D(z)


def gru(P, s, x, mut=None):
    h, = s
    r = sig(lin(P["W_r"], h) + lin(P["U_r"], x) + P["b_r"])
    z = sig(lin(P["W_z"], h) + lin(P["U_z"], x) + P["b_z"])
    ht = th(lin(P["W"], r * h) + lin(P["U"], x) + P["b"])
    if mut == "reset_after":            # torch's r ⊙ (W h) derivative on Cho's W (r ⊙ h)
        dht = D(1 - ht ** 2) @ (D(lin(P["W"], h) * r * (1 - r)) @ P["W_r"] + D(r) @ P["W"])
    else:
        dht = D(1 - ht ** 2) @ P["W"] @ (D(h * r * (1 - r)) @ P["W_r"] + D(r))
    J = D((h - ht) * z * (1 - z)) @ P["W_z"] + D(z) + D(1 - z) @ dht
    if mut == "dx":                     # d h'/d x where d h'/d h was asked (n == m)
        dx = D(1 - ht ** 2) @ (P["W"] @ D(h * r * (1 - r)) @ P["U_r"] + P["U"])
        J = D((h - ht) * z * (1 - z)) @ P["U_z"] + D(1 - z) @ dx
    if mut == "factor":
        J = J * (1 + 1e-6)
    if mut == "one_entry":
        J = J.clone()
        J[:, 1, 2] += 1e-6 * J.abs().max()
    if mut in ("nan", "inf"):
        J = J.clone()
        J[-1, 0, 1] = float(mut)
    return J


def peephole(P, s, x, mut=None, cifg=False):
    h, c = s
    z = th(lin(P["W_z"], h) + lin(P["U_z"], x) + P["b_z"])
    i = sig(lin(P["W_i"], h) + lin(P["U_i"], x) + P["b_i"] + P["p_i"] * c)
    if cifg:                            # f = 1 - i
        f, dfh, dfc = 1 - i, -D(c * i * (1 - i)) @ P["W_i"], -i * (1 - i) * P["p_i"]
    else:
        f = sig(lin(P["W_f"], h) + lin(P["U_f"], x) + P["b_f"] + P["p_f"] * c)
        dfh, dfc = D(c * f * (1 - f)) @ P["W_f"], f * (1 - f) * P["p_f"]
    c2 = z * i + f * c
    o = sig(lin(P["W_o"], h) + lin(P["U_o"], x) + P["b_o"] + P["p_o"] * c2)
    t = th(c2)
    dch = D(i * (1 - z ** 2)) @ P["W_z"] + D(z * i * (1 - i)) @ P["W_i"] + dfh
    dcc = D(z * i * (1 - i) * P["p_i"] + (0 if mut == "drop_p_f" else c * dfc) + f)
    po = torch.zeros_like(P["p_o"]) if mut == "drop_p_o" else P["p_o"]
    dhh = D(o * (1 - t ** 2)) @ dch + D(t * o * (1 - o)) @ (P["W_o"] + D(po) @ dch)
    dhc = D((1 - t ** 2 + t * (1 - o) * po) * o) @ dcc
    return torch.cat([torch.cat([dhh, dhc], -1), torch.cat([dch, dcc], -1)], -2)


def cifg(P, s, x, mut=None):
    return peephole(P, s, x, mut, cifg=True)


def minimal_rnn(P, s, x, mut=None):
    h, = s
    z = th(lin(P["U"], x) + P["b_z"])
    u = sig(lin(P["W"], h) + lin(P["V"], z) + P["b_u"])
    return D((h - (0 if mut == "no_z" else z)) * u * (1 - u)) @ P["W"] + D(u)


def mgu(P, s, x, mut=None):
    h, = s
    f = sig(lin(P["W_f"], h) + lin(P["U_f"], x) + P["b_f"])
    ht = th(lin(P["W"], f * h) + lin(P["U"], x) + P["b"])
    df = f if mut == "sigmoid_s" else f * (1 - f)
    W = P["W"].T if mut == "transpose_W" else P["W"]
    return (D((ht - h) * df) @ P["W_f"] + D(1 - f)
            + D(f * (1 - ht ** 2)) @ W @ (D(h * df) @ P["W_f"] + D(f)))


def _proto(P, s, x, phi, dphi):
    """(r, ∂r/∂s) of the R2RT prototype with phi(s) fed to the gates."""
    i = sig(lin(P["W_i"], phi) + lin(P["U_i"], x) + P["b_i"])
    o = sig(lin(P["W_o"], phi) + lin(P["U_o"], x) + P["b_o"])
    f = sig(lin(P["W_f"], phi) + lin(P["U_f"], x) + P["b_f"])
    st = th(lin(P["W"], o * phi) + lin(P["U"], x) + P["b"])
    Dp = D(dphi)
    dr = (D(s * f * (1 - f)) @ P["W_f"] @ Dp + D(f) + D(st * i * (1 - i)) @ P["W_i"] @ Dp
          + D(i * (1 - st ** 2)) @ P["W"] @ (D(phi * o * (1 - o)) @ P["W_o"] @ Dp
                                            + D(o * dphi)))
    return f * s + i * st, dr


def prototype(P, st, x, mut=None):
    s, = st
    return _proto(P, s, x, s, torch.ones_like(s))[1]


def pseudo(P, st, x, mut=None):
    s, = st
    slope = torch.ones_like(s) if mut == "no_phi_slope" else 1 - th(s) ** 2
    return _proto(P, s, x, th(s), slope)[1]


def normalized(P, st, x, mut=None):
    s, = st
    r, dr = _proto(P, s, x, s, torch.ones_like(s))
    n = r.shape[-1] - (1 if mut == "unbiased" else 0)       # the variance's count
    mu = r.mean(-1, keepdim=True)
    a = 1 / torch.sqrt(((r - mu) ** 2).sum(-1, keepdim=True) / n + 1)
    dvar = 2 / n * ((r - mu)[:, None, :] @ dr)                 # (B, 1, n)
    return a[..., None] * dr - 0.5 * (a ** 3)[..., None] * r[..., None] * dvar


def rnn_relu(P, s, x, mut=None):
    h, = s
    pre = h if mut == "slope_at_h" else lin(P["W"], h) + lin(P["U"], x) + P["b"]
    return D((pre > 0).to(h.dtype)) @ P["W"]


HAND = {"lstm": lstm, "gru": gru, "gru_torch": gru_torch, "peephole_lstm": peephole,
        "lstm_cifg": cifg, "minimal_rnn": minimal_rnn, "mgu": mgu,
        "normalized_lstm": normalized, "pseudo_lstm": pseudo, "prototype_lstm": prototype,
        "rnn_relu": rnn_relu}


def params_of(name, n=5, m=5, dtype=torch.float64, **scales):
    cell = gradlab.cell(name)
    options = {"weight_scale": 1.5, "bias_scale": 0.5, **scales}
    p = cell.init_params(n, m, seed=1, **options)
    return cell, {k: v.to(dtype) for k, v in p.items()}


def mutant(name, mut):
    return lambda P, s, x: HAND[name](P, s, x, mut)


@pytest.mark.parametrize("name", sorted(HAND))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_right_hand_derivation_of_each_cell_is_accepted(name, dtype):
    cell, params = params_of(name, 5, 3, dtype)
    result = gradlab.check_jacobian(mutant(name, None), cell, params)
    assert result.ok and not result.inconclusive, str(result)


MISTAKES = [   # (cell, mistake, a block the diagnosis must name, words it must hold)
    ("lstm", "transpose_Wf", "∂c'/∂h", "W_fᵀ where W_f belongs"),
    ("lstm", "sign_f", "∂c'/∂h", "wrong sign"),
    ("lstm", "sigmoid_s", "∂c'/∂h", ""),
    ("lstm", "zero_c_only", "∂c'/∂h", "is missing"),
    ("lstm", "c_frozen", "∂h'/∂c", "is missing"),
    ("lstm", "order_ch", "", "order (c, h)"),
    ("gru_torch", "no_b_hn", "∂h'/∂h", ""),
    ("gru_torch", "reset_before", "∂h'/∂h", ""),
    ("gru", "reset_after", "∂h'/∂h", ""),
    ("gru", "dx", "∂h'/∂h", ""),
    ("gru", "factor", "", "times 1.000001"),
    ("gru", "one_entry", "∂h'/∂h", ""),
    ("peephole_lstm", "drop_p_f", "∂c'/∂c", "is missing"),
    ("peephole_lstm", "drop_p_o", "∂h'/∂h", "is missing"),
    ("lstm_cifg", "drop_p_o", "∂h'/∂h", "is missing"),
    ("minimal_rnn", "no_z", "∂h'/∂h", "is missing"),
    ("mgu", "sigmoid_s", "∂h'/∂h", "leaves out the factor 1 - f"),
    ("mgu", "transpose_W", "∂h'/∂h", "Wᵀ where W belongs"),
    ("pseudo_lstm", "no_phi_slope", "∂s'/∂s", "1 - phi^2"),
    ("normalized_lstm", "unbiased", "∂s'/∂s", ""),
    ("rnn_relu", "slope_at_h", "∂h'/∂h", ""),
]


@pytest.mark.parametrize("name, mut, block, words", MISTAKES,
                         ids=[f"{c}-{m}" for c, m, _, _ in MISTAKES])
def test_each_subtle_mistake_is_refused_with_its_block_named(name, mut, block, words):
    """n == m = 5 so that d/dx has d/dh's shape; the default options throughout."""
    cell, params = params_of(name)
    result = gradlab.check_jacobian(mutant(name, mut), cell, params)
    assert not result.ok and not result.inconclusive, str(result)
    said = "\n".join(result.diagnosis)
    assert block in said and words in said, said
    with pytest.raises(AssertionError):
        assert_jacobian(mutant(name, mut), cell, params)


def test_nan_or_inf_in_an_answer_is_refused_naming_the_entry():
    cell, params = params_of("gru")
    for mut in ("nan", "inf"):
        result = gradlab.check_jacobian(mutant("gru", mut), cell, params)
        assert not result.ok and "nan or inf" in result.diagnosis[0], str(result)
        assert "[3, 0, 1]" in result.diagnosis[0], str(result)


def test_layouts_and_one_block_are_told_apart():
    cell, params = params_of("lstm", 4, 3)
    right = mutant("lstm", None)
    assert gradlab.check_jacobian(lambda P, s, x: right(P, s, x).mT, cell, params,
                                  layout="denominator").ok
    flipped = gradlab.check_jacobian(lambda P, s, x: right(P, s, x).mT, cell, params)
    assert not flipped.ok and "denominator layout" in flipped.diagnosis[0], str(flipped)
    assert gradlab.check_jacobian(lambda P, s, x: right(P, s, x)[:, :4, :4], cell, params,
                                  block=("h", "h")).ok
    other = gradlab.check_jacobian(lambda P, s, x: right(P, s, x)[:, 4:, :4], cell, params,
                                   block=("h", "h"))           # ∂c'/∂h given for ∂h'/∂h
    assert not other.ok and other.worst_block == ("h", "h"), str(other)


def test_a_derivation_right_only_at_zero_biases_is_refused_at_zero_biases_given():
    cell, params = params_of("gru_torch", 5, 3)
    for zero in (["b_hn"], [p for p in params if p.startswith("b_")]):
        given = {**params, **{p: torch.zeros_like(params[p]) for p in zero}}
        assert gradlab.check_jacobian(mutant("gru_torch", None), cell, given).ok
        result = gradlab.check_jacobian(mutant("gru_torch", "no_b_hn"), cell, given)
        assert not result.ok and "drawn nonzero" in result.diagnosis[0], str(result)


def test_a_derivation_right_only_at_zero_biases_is_refused_at_tiny_biases():
    """b_hn = 1e-12 hides a b_hn left out of (W_n h + b_hn) as b_hn = 0 does: the check
    certified it (max relative error 1.2e-13) before biases that small were redrawn."""
    cell, params = params_of("gru_torch", 5, 3)
    given = {**params, "b_hn": torch.full_like(params["b_hn"], 1e-12)}
    assert gradlab.check_jacobian(mutant("gru_torch", None), cell, given).ok
    result = gradlab.check_jacobian(mutant("gru_torch", "no_b_hn"), cell, given)
    assert not result.ok and "b_hn" in result.diagnosis[0], str(result)
    with pytest.raises(AssertionError):
        assert_jacobian(mutant("gru_torch", "no_b_hn"), cell, given)


def test_a_derivation_right_only_at_zero_state_is_not_certified_there():
    cell, params = params_of("lstm", 5, 3)
    gen = torch.Generator().manual_seed(0)
    h, x = (torch.randn(3, k, generator=gen, dtype=torch.float64) for k in (5, 3))
    for c in (torch.zeros_like(h), 1e-13 * h):
        result = gradlab.check_jacobian(mutant("lstm", "zero_c_only"), cell, params,
                                        states=((h, c), x))
        assert not result.ok, str(result)
    one = gradlab.check_jacobian(mutant("lstm", "zero_c_only"), cell, params,
                                 states=((h[:1], h[1:2]), x[:1]))     # B = 1, c nonzero
    assert not one.ok and "∂c'/∂h" in "\n".join(one.diagnosis), str(one)


def test_one_samples_answer_for_the_whole_batch_is_refused():
    cell, params = params_of("gru", 5, 3)
    first = lambda P, s, x: gru(P, (s[0][:1],), x[:1]).expand(len(x), -1, -1)  # noqa: E731
    result = gradlab.check_jacobian(first, cell, params)
    assert not result.ok and "depends on which sample" in result.diagnosis[0], str(result)


def test_a_function_that_writes_into_its_inputs():
    """Zeroing the state before deriving is a Jacobian at the wrong state: refused. Zeroing
    it after a right Jacobian does not make gradlab judge the answer elsewhere."""
    cell, params = params_of("gru", 5, 3)

    def zero_first(P, s, x):
        s[0].mul_(0)
        return gru(P, s, x)

    def zero_after(P, s, x):
        J = gru(P, s, x)
        s[0].mul_(0)
        x.mul_(0)
        for v in P.values():
            v.mul_(2)
        return J

    kept = {k: v.clone() for k, v in params.items()}
    assert not gradlab.check_jacobian(zero_first, cell, params).ok
    result = gradlab.check_jacobian(zero_after, cell, params)
    assert result.ok, str(result)
    assert all(torch.equal(kept[k], params[k]) for k in params)


def test_gradlab_check_at_bias_scale_0_refuses_a_bias_read_wrongly(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(
        "import torch\n"
        "sig, th, D = torch.sigmoid, torch.tanh, torch.diag_embed\n"
        "def J(P, s, x):\n"
        "    h, = s\n"
        "    r = sig(x @ P['U_r'].T + P['b_ir'] + h @ P['W_r'].T + P['b_hr'])\n"
        "    z = sig(x @ P['U_z'].T + P['b_iz'] + h @ P['W_z'].T + P['b_hz'])\n"
        "    hn = h @ P['W_n'].T\n"                                   # b_hn left out here
        "    n = th(x @ P['U_n'].T + P['b_in'] + r * (hn + P['b_hn']))\n"
        "    dn = D(1 - n ** 2) @ (D(hn * r * (1 - r)) @ P['W_r'] + D(r) @ P['W_n'])\n"
        "    return D((h - n) * z * (1 - z)) @ P['W_z'] + D(1 - z) @ dn + D(z)\n")
    out = invoke("check", f"{f}:J", "--cell", "gru_torch", "--bias-scale", "0")
    assert out.exit_code == 1 and "drawn nonzero" in out.stdout, out.output
    out = invoke("check", f"{f}:J", "--cell", "gru_torch")
    assert out.exit_code == 1, out.output


# --- Lyapunov -----------------------------------------------------------------------------

def benettin(late=0):
    """A Benettin loop on torch's GRUCell, its Jacobians taken at the state `late` steps
    after the one each step starts from (1: at h_{t+1}, a common off-by-one)."""
    def fn(P, xs, k):
        module = gradlab.to_torch("gru_torch", P).double()
        T, B, _ = xs.shape
        h, states = torch.zeros(B, module.hidden_size, dtype=xs.dtype), []
        with torch.no_grad():
            for t in range(T):
                states.append(h)
                h = module(xs[t], h)
        states.append(h)
        one = lambda v, x: module(x[None], v[None])[0]              # noqa: E731
        J = vmap(jacrev(one))(torch.cat(states[late:late + T]),
                              xs.reshape(T * B, -1)).detach().view(T, B, len(h[0]), -1)
        gen = torch.Generator().manual_seed(3)
        Q = torch.linalg.qr(torch.randn(B, len(h[0]), k, generator=gen, dtype=xs.dtype))[0]
        total = torch.zeros(B, k, dtype=xs.dtype)
        for Jt in J:
            Q, R = torch.linalg.qr(Jt @ Q)                          # no sign correction
            total += torch.diagonal(R, dim1=-2, dim2=-1).abs().log()
        return total / T
    return fn


def test_check_lyapunov_refuses_jacobians_taken_one_state_late():
    cell, params = params_of("gru_torch", 4, 3, weight_scale=2.0)
    xs = 1.5 * torch.randn(2000, 2, 3, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    assert gradlab.check_lyapunov(benettin(), cell, params, xs, 2).ok
    late = gradlab.check_lyapunov(benettin(late=1), cell, params, xs, 2)
    assert not late.ok and math.isfinite(late.max_error), str(late)
