"""How fast `gradlab.lyapunov` is, against a published QR implementation for RNNs.

The baseline is a transcription of `calc_LEs_an` (with `oneStepVarQR`, `lstm_jac`,
`gru_jac` and their helpers) from lyapunov.py of

    https://github.com/lyapunov-hyperopt/lyapunov_hyperopt
    commit bc7fb8ae4f56bb3d3f9db87fbf7a2814edc2bdd6, file lyapunov.py

by Ryan Vogt, for Vogt, Puelma Touzel, Shlizerman & Lajoie, "On Lyapunov exponents for
RNNs: understanding information propagation using dynamical systems tools"
(arXiv:2006.14123, June 2020; Front. Appl. Math. Stat. 8:818799, 2022). The same functions,
with torch.linalg.qr for torch.qr, are in lyapunov.py of github.com/shlizee/LyapunovAutoEncode
(last changed in 2cf6e18fb6668573c910b7fc5d79246cd28fa5e1). Run as its LyapConfig runs it
(warmup=0, T_ons=1: a QR at every step). Kept as published: per step, the state advanced by
the torch module itself (batch_first, one step per call), the dense state Jacobian (B, S, S) built
from the closed-form expressions with every diagonal factor a `torch.diag_embed` matrix
(sigmoid_p, sech, ... of all 4n or 3n pre-activations, then sliced), Z = J Q by
torch.matmul, torch.linalg.qr(Z, "reduced") with the signs of R's diagonal moved into Q
by diag_embed matmuls, |R_ii| stored for every step and averaged at the end.

Changed, each because the published code does not compute the Lyapunov exponents of the
module it is given (found against a jacrev + torch.linalg.qr loop):
  * J Q, not J^T Q: oneStepVarQR multiplies by torch.transpose(J, 1, 2), while the
    Jacobians are in numerator layout (row = output), so it iterates the transposed,
    time-reversed product (J_1 ... J_T)^T (GRU: equal to a J^T loop to 1e-16, 6e-2 off
    the true exponents at n=8, T=50);
  * the LSTM's whole state (h, c): lstm_jac returns d h'/d h at fixed c (n x n) only, not
    the 2n x 2n tangent map; the three missing blocks are added in the same style
    (d h'/d c = diag(o sech^2 c') diag(f), d c'/d h = its a_h, d c'/d c = diag(f));
  * gru_jac with bias (the default of nn.GRU and of the published configs) reads `bi`,
    `bh` that exist only without bias (UnboundLocalError): they are bias_ih, bias_hh;
  * dtype: J, Q and the stored R values are allocated in torch's default dtype (float32),
    so a float64 module silently ran a float32 iteration; here they follow the module;
  * natural log (published: log2), one layer only, and Q_0 given by the caller (published:
    the first k columns of the identity; `run_lyapunov_bench` passes gradlab's seeded Q_0
    so that the two agree to round-off rather than to O(1/T)).
"""

import numpy as np
import torch

from . import __version__
from .bench import timed
from .errors import GradlabError, derived_seed, entries

MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
GRADLAB_CELLS = {"lstm": "lstm", "gru": "gru_torch"}     # what from_torch makes of each


# the published helpers: every diagonal factor is a (B, r, r) matrix
def _sig(X):
    return 1 / (1 + torch.exp(-X))


def _sigmoid(X):
    return torch.diag_embed(1 / (1 + torch.exp(-X)))


def _sigmoid_p(X):
    ones = torch.ones_like(X)
    return torch.diag_embed(_sig(X) * (ones - _sig(X)))


def _sech(X):
    return torch.diag_embed(1 / (torch.cosh(X)))


def _tanh(X):
    return torch.diag_embed(torch.tanh(X))


def lstm_jac(weights, h, c, x):
    """d (h', c') / d (h, c) (B, 2n, 2n) of one nn.LSTM layer at h, c (B, n), x (B, m):
    published lstm_jac (its J_h is the top-left block), plus the three blocks it left out."""
    W, U, b_i, b_h = weights                   # weight_ih, weight_hh, bias_ih, bias_hh
    B, n = h.shape
    h_in, c_in, x_in = h.t(), c.t(), x.t()
    b = b_i + b_h
    i_x, f_x, c_x, o_x = (slice(j * n, (j + 1) * n) for j in range(4))
    y = (W @ x_in + U @ h_in + b.repeat(B, 1).t()).t()
    c1 = _sig(y[:, f_x]).t() * c_in
    c2 = (_sig(y[:, i_x]) * torch.tanh(y[:, c_x])).t()
    c_out = c1 + c2
    a1_h = (_sigmoid_p(y)[:, f_x, f_x] @ torch.diag_embed(c_in.t())) @ U[f_x]
    a2_h = (_sigmoid_p(y)[:, i_x, i_x] * _tanh(y)[:, c_x, c_x]) @ U[i_x]
    a3_h = (_sigmoid(y)[:, i_x, i_x] * (_sech(y) ** 2)[:, c_x, c_x]) @ U[c_x]
    a_h = a1_h + a2_h + a3_h
    b_h = ((_sigmoid_p(y)[:, o_x, o_x]) * _tanh(c_out.t())) @ U[o_x]
    c_h = (_sigmoid(y)[:, o_x, o_x] @ _sech(c_out.t()) ** 2)
    J = torch.zeros(B, 2 * n, 2 * n, dtype=h.dtype, device=h.device)
    J[:, :n, :n] = c_h @ a_h + b_h             # published J_h
    f = _sigmoid(y)[:, f_x, f_x]               # added: d c'/d c, d h'/d c, d c'/d h
    J[:, :n, n:] = c_h @ f
    J[:, n:, :n] = a_h
    J[:, n:, n:] = f
    return J


def gru_jac(weights, h, x):
    """d h' / d h (B, n, n) of one nn.GRU layer at h (B, n), x (B, m): published gru_jac,
    its biases read as bias_ih, bias_hh."""
    W, U, bi, bh = weights
    B, n = h.shape
    h_in, x_in = h.t(), x.t()
    r_x, z_x, n_x = (slice(j * n, (j + 1) * n) for j in range(3))
    y1 = (W @ x_in + bi.repeat(B, 1).t()).t()
    y2 = (U @ h_in + bh.repeat(B, 1).t()).t()
    y = y1 + y2
    n_t = torch.tanh(y1[:, n_x] + _sig(y[:, r_x]) * y2[:, n_x])
    a_h = -_sigmoid_p(y[:, z_x]) @ torch.diag_embed(n_t) @ U[z_x]
    b0 = torch.diag_embed(1 - _sig(y[:, z_x]))
    b1 = _sech(y1[:, n_x] + _sig(y[:, r_x]) * y2[:, n_x]) ** 2
    b2_h = _sigmoid_p(y[:, r_x]) @ torch.diag_embed(y2[:, n_x]) @ U[r_x]
    b3_h = _sigmoid(y[:, r_x]) @ U[n_x]
    b_h = b0 @ (b1 @ (b2_h + b3_h))
    c_h = _sigmoid_p(y[:, z_x]) @ torch.diag_embed(h_in.t()) @ U[z_x] + _sigmoid(y[:, z_x])
    J = torch.zeros(B, n, n, dtype=h.dtype, device=h.device)
    J[:, :, :] = a_h + b_h + c_h
    return J


def one_step_var_qr(J, Q):
    """Published oneStepVarQR, with J Q for J^T Q: (Q with R_ii > 0, R's diagonal)."""
    Z = torch.matmul(J, Q)
    q, r = torch.linalg.qr(Z, mode="reduced")
    s = torch.diag_embed(torch.sign(torch.diagonal(r, dim1=1, dim2=2)))
    return torch.matmul(q, s), torch.diagonal(torch.matmul(s, r), dim1=1, dim2=2)


def published_lyapunov(module, xs, k, q0=None):
    """Per-sequence top-k exponents (B, k), natural log, of a one-layer nn.LSTM / nn.GRU
    along xs (T, B, m) from a zero state: published calc_LEs_an (warmup=0, T_ons=1) with
    the changes above. q0 (B, S, k): the starting basis (default: identity columns)."""
    kind = "lstm" if isinstance(module, torch.nn.LSTM) else "gru"
    if module.num_layers != 1 or module.bidirectional:
        raise GradlabError("the transcription covers one unidirectional layer")
    weights = [p.detach() for p in module.all_weights[0]]
    T, B, _ = xs.shape
    n, dtype = module.hidden_size, xs.dtype
    L = 2 * n if kind == "lstm" else n
    k = max(min(L, k), 1)
    Q = (torch.eye(L, dtype=dtype).reshape(1, L, L).repeat(B, 1, 1)[:, :, :k]
         if q0 is None else q0.to(dtype))
    ht = torch.zeros(1, B, n, dtype=dtype)
    ct = torch.zeros(1, B, n, dtype=dtype)
    rvals = torch.ones(B, T, k, dtype=dtype)
    axis = 1 if module.batch_first else 0
    for t in range(T):
        xt = xs[t].unsqueeze(axis)
        if kind == "lstm":
            J = lstm_jac(weights, ht[0].detach(), ct[0].detach(), xs[t])
            _, (ht, ct) = module(xt, (ht, ct))
        else:
            J = gru_jac(weights, ht[0].detach(), xs[t])
            _, ht = module(xt, ht)
        Q, r = one_step_var_qr(J, Q)
        rvals[:, t, :] = r
    return torch.sum(torch.log(rvals.detach()), dim=1) / T


def seeded_basis(B, S, k, seed, dtype):
    """Q_0 as gradlab.lyapunov documents it: torch.Generator().manual_seed(seed).randn(B,
    S, k) in float64, orthonormalised, then cast to dtype."""
    gen = torch.Generator().manual_seed(int(seed))
    A = torch.randn(B, S, k, generator=gen, dtype=torch.float64)
    return torch.linalg.qr(A)[0].to(dtype)


def _case(kind, dtype, n, m, T, B, k, repeats, seed):
    from . import from_torch, lyapunov
    from .flow import make_inputs

    torch.manual_seed(seed)
    module = MODULES[kind](m, n, batch_first=True).to(dtype)
    cell, params = from_torch(module)
    xs = make_inputs("gaussian", T, B, m, seed=derived_seed(seed, 1), dtype=dtype)
    S = 2 * n if kind == "lstm" else n
    q0 = seeded_basis(B, S, min(k, S), seed, dtype)
    runs = {"gradlab": lambda: lyapunov(cell, params, xs, k, seed=seed).exponents,
            "baseline": lambda: published_lyapunov(module, xs, k, q0).double().numpy()}
    lyapunov(cell, params, xs[:2], k, seed=seed)     # one-off costs (lowering): untimed
    published_lyapunov(module, xs[:2], k, q0)
    times = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):                    # alternate, so load hits both alike
        for name, fn in runs.items():
            seconds, results[name] = timed(fn)
            times[name].append(seconds)
    rounds = [b / g for g, b in zip(times["gradlab"], times["baseline"])]
    return {
        "cell": kind, "gradlab_cell": cell.name, "dtype": str(dtype).removeprefix("torch."),
        "hidden": n, "inputs": m, "steps": T, "batch": B, "k": min(k, S), "state_size": S,
        "threads": torch.get_num_threads(), "repeats": repeats,
        "torch": torch.__version__, "gradlab": __version__,
        "gradlab_seconds": min(times["gradlab"]), "baseline_seconds": min(times["baseline"]),
        "gradlab_runs": times["gradlab"], "baseline_runs": times["baseline"],
        "ratio": {"best": min(times["baseline"]) / min(times["gradlab"]),
                  "min": min(rounds), "median": float(np.median(rounds)), "max": max(rounds)},
        "max_abs_difference": float(np.abs(results["gradlab"] - results["baseline"]).max()),
    }


def ensure_k_fits(cells, hidden, k):
    """Refuse k exponents where a cell's state has fewer entries (before any timing)."""
    sizes = {c: 2 * hidden if c == "lstm" else hidden for c in cells}   # LSTM: (h, c)
    small = min(sizes, key=sizes.get)
    if k > sizes[small]:
        raise GradlabError(f"k = {k} exponents, but the state of {small} at hidden {hidden} "
                           f"has {sizes[small]} entries; give k (--lyapunov) at most "
                           f"{sizes[small]}")


def bench_cells(names, device="cpu"):
    """The cells `gradlab bench --lyapunov --cells NAMES` times, checked: lstm and gru
    ('all': both), on the CPU (the reference job of the published code)."""
    if device != "cpu":
        raise GradlabError(f"bench --lyapunov runs on the CPU (the published baseline's "
                           f"reference job), got --device {device}")
    if isinstance(names, str) and names.strip() == "all":    # all that the baseline has
        return list(MODULES)
    cells = entries(names, "--cells")
    if not cells:
        raise GradlabError(f"--cells {names!r} names no cell; valid: {', '.join(MODULES)}")
    for k, c in enumerate(cells):
        if c not in MODULES:
            raise GradlabError(f"unknown cell {c!r} for bench --lyapunov; valid: "
                               f"{', '.join(MODULES)}")
        if c in cells[:k]:
            raise GradlabError(f"--cells {names!r} names a cell twice ({c}); name each once")
    return cells


def run_lyapunov_bench(cells=("lstm", "gru"), hidden=64, steps=1000, batch=8, k=8,
                       dtypes=("float32", "float64"), repeats=3, seed=0, *, inputs=32,
                       threads=None):
    """Time gradlab.lyapunov against the published baseline (see the module's text) on the
    same work: a torch nn.LSTM / nn.GRU (hidden n, `inputs` m, seeded default init, in each
    dtype) converted by gradlab.from_torch, Gaussian inputs xs (steps, batch, m), zero
    initial state, top-k exponents, the same Q_0. CPU; `threads` sets torch's thread count
    for the run (restored after). Both run under torch.no_grad() (the published loop
    records autograd history through the module's step, which only slows it). The two
    take turns `repeats` times after an untimed warm-up. Returns one dict per (cell, dtype): "gradlab_seconds" and "baseline_seconds"
    (best of the runs), "gradlab_runs" and "baseline_runs" (every run), "ratio" (baseline
    over gradlab: "best" for the best times, "min" / "median" / "max" over the rounds),
    "max_abs_difference" (largest |difference| of the per-sequence exponents, natural
    log per step), and the sizes."""
    if isinstance(cells, str):
        cells = [c for c in cells.split(",") if c]
    if isinstance(dtypes, str):
        dtypes = [d for d in dtypes.split(",") if d]
    for c in cells:
        if c not in MODULES:
            raise GradlabError(f"unknown cell {c!r}; valid: {', '.join(MODULES)}")
    for value, what in ((hidden, "hidden"), (steps, "steps"), (batch, "batch"), (k, "k"),
                        (repeats, "repeats"), (inputs, "inputs")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradlabError(f"{what} must be a positive integer, got {value!r}")
    ensure_k_fits(cells, hidden, k)
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        with torch.no_grad():
            return [_case(c, getattr(torch, d), hidden, inputs, steps, batch, k, repeats, seed)
                    for c in cells for d in dtypes]
    finally:
        torch.set_num_threads(saved)


def lyapunov_each(cells, hidden, inputs, steps, batch, k, dtype="float64", *, repeats=3,
                  seed=0, progress=None):
    """`gradlab bench --lyapunov`: k and the memory checked first for every cell, then
    `run_lyapunov_bench` for each in turn, `progress(name)` after each; one list."""
    from . import budget
    ensure_k_fits(cells, hidden, k)
    budget.ensure_cells_fit("bench --lyapunov", [GRADLAB_CELLS[c] for c in cells], hidden,
                            inputs, steps, batch, dtype=dtype, device="cpu")
    results = []
    for name in cells:
        results += run_lyapunov_bench([name], hidden, steps, batch, k, (dtype,), repeats,
                                      seed, inputs=inputs)
        if progress is not None:
            progress(name)
    return results


# the largest |difference| of the exponents (natural log per step) that is still
# agreement: measured 1e-15 in float64 and 2.6e-7 in float32 at n = 64, T = 1000 (the same
# Q_0, the same trajectory; they differ only in rounding)
LYAPUNOV_AGREEMENT = {"float64": 1e-10, "float32": 1e-4}


def lyapunov_disagreement(results):
    """A sentence if gradlab's exponents and the baseline's differ beyond
    LYAPUNOV_AGREEMENT in any result (nan counts as a difference), else None."""
    bad = [r for r in results
           if not r["max_abs_difference"] <= LYAPUNOV_AGREEMENT[r["dtype"]]]
    if not bad:
        return None
    r = max(bad, key=lambda r: (np.nan_to_num(r["max_abs_difference"], nan=np.inf)))
    return (f"gradlab and the published baseline disagree: {r['cell']} {r['dtype']} "
            f"exponents differ by {r['max_abs_difference']:.2e} > "
            f"{LYAPUNOV_AGREEMENT[r['dtype']]:.0e}")


def format_lyapunov_table(results):
    """The results of run_lyapunov_bench as a plain-text table."""
    lines = [f"{'cell':<5} {'dtype':<8} {'gradlab s':>10} {'baseline s':>11} "
             f"{'ratio (rounds)':>22} {'max |diff|':>11}"]
    for r in results:
        q = r["ratio"]
        spread = f"{q['best']:.2f}x ({q['min']:.2f}-{q['max']:.2f}x)"
        lines.append(f"{r['cell']:<5} {r['dtype']:<8} {r['gradlab_seconds']:>10.3f} "
                     f"{r['baseline_seconds']:>11.3f} {spread:>22} "
                     f"{r['max_abs_difference']:>11.2e}")
    return "\n".join(lines)


__all__ = ["GRADLAB_CELLS", "LYAPUNOV_AGREEMENT", "MODULES", "bench_cells",
           "format_lyapunov_table", "gru_jac", "lstm_jac", "lyapunov_disagreement",
           "one_step_var_qr", "published_lyapunov", "run_lyapunov_bench", "seeded_basis"]
