"""Gradient flow through time: products of state Jacobians, their norms in log space.

For a cell s_t = F(s_{t-1}, x_t) driven by inputs x_1..x_T (xs[0..T-1]) from s_0, the
gradient that reaches s_{T-k} from s_T is carried by

    P_k = d s_T / d s_{T-k} = J_T J_{T-1} ... J_{T-k+1},    J_t = d s_t / d s_{t-1},

k = 1..T (numerator layout, parts in `state_names` order, S = n * parts). `gradient_flow`
runs the lowered step forward and keeps the states (O(T B S)); what of a step reads no
state (U x + b) is computed for all T steps in one call first (`hoist`). Then it walks
back in time with one running product, P_k = P_{k-1} J_{T-k+1}, evaluating the lowered
Jacobian for a chunk of C steps per call, its blocks compacted by structure (a diagonal
block as its diagonal), its in-place sums written into arrays reused from chunk to chunk.
Memory beyond the states and the hoisted inputs (O(T B S) both) is O(C B S^2), C set by
a byte budget (CHUNK_BYTES), never O(T B S^2).

The product is kept transposed, P^T = J^T ... J^T, in one row slab per state part, so
a cell with diagonal or zero Jacobian blocks (read from SymPy: the LSTM's d c'/d c =
diag(f)) multiplies those blocks as broadcasts and skips zeros: half the flops of a
dense (S, S) product for the LSTM. Its Frobenius norm is m 2^e (frexp); whenever e drifts
past +-64 (at every step on CUDA) the product is multiplied by 2^-e, which is exact, and
the exponents divided out are summed as integers, so log ||P_k|| is finite and correct to
float64 round-off at lag 10,000, where ||P_k|| itself is far outside float64.

Norms of every P_k, per sequence, natural log, lag k at column k-1:
    frobenius     the scale and the norm that is left (free).
    spectral      the top eigenvalue of P P^T, on its left vectors (they live at time T),
                  by subspace iteration: the first chunk of lags from random vectors on
                  (P P^T)^8, every later chunk from the previous chunk's top 8 Ritz
                  vectors (range(P_k) holds range(P_{k+1}), and P_k is numerically of low
                  rank past the first lags) on P P^T or a power of it, each stopped on a
                  residual bound, rounding allowed for (subspace.py); what a chunk's
                  level leaves uncertified, again a level higher; block Lanczos, on
                  the same bound, for what the iteration cannot certify; svdvals for what
                  neither proves (a flat spectrum) and for S <= 24. The relative error of
                  sigma is below `rtol` (default 1e-11 in float64; worst seen 9.7e-12
                  against svdvals).
                  Cost: a few thin passes over P per lag (and three products per lag in
                  the first chunk), not an SVD (~11 products) per lag, and no host
                  synchronisation per lag.
    min_singular  1 / ||P_k^{-1}||_2, P_k^{-1} = J_{T-k+1}^{-1} P_{k-1}^{-1} streamed the
                  same way (one LU solve per lag, ~1.3 products, plus the Lanczos
                  passes): it resolves sigma_min / sigma_max far below 1e-16, which
                  svdvals of P_k could not; each solve adds its rounding, ~cond(J_t) eps
                  relative (a linear step with cond(J) = 1e8 gave 1e-9 over 32 lags, at
                  1e12 6e-6), which rtol does not cover; and sigma_min moves with the
                  rounding of the Jacobians' own entries (1 - h'^2 at a saturated unit)
                  by up to cond(P_k) times it: rnn_tanh at weight scale 3, cond(P_20) ~
                  e^130, was 3e-3 off 60-digit arithmetic (a float64 jacrev chain 7e-3,
                  on the same states). From the first J_t singular to
                  working precision on (an LU pivot below S eps of the largest: cond(J_t)
                  past ~1 / (S eps), where its sigma_min is rounding), every longer
                  product is reported singular: -inf. Computed on request.
Blocks of P_k (out part, in part), e.g. the LSTM's cell path ("c", "c"), get spectral and
Frobenius norms in the same walk. What a loss L = <v, s_T> sees, ||dL/ds_t|| and
||dL/dx_t||, comes from vector-Jacobian products, O(T B S^2) (`Flow.loss_grad_norms`).

On a GPU each step is a few dozen small kernels, and launching them one by one from
Python leaves the device idle; there the forward run and the walk's products record the
kernels of a chunk of steps once as a CUDA graph and replay it on static arrays for the
next chunks (`graphs`, `products`), and the gates that multiply one state part are one
product with the stacked weights everywhere (`hoist.stack`).

`gradient_flow` checks its arguments once and runs the cell forward; the walk waits
until a norm is read (`Flow`). `lyapunov` (gradlab.lyapunov) is Benettin's QR iteration
along the same states; `run_states` the forward run alone.

Modules, one concern each:
    inputs      make_inputs: input sequences by name
    workspace   Workspace: arrays the lowered in-place sums write into, reused
    arrays      as_real, as_inputs, converted: a user's xs and state0 as tensors on the
                params' dtype (a value the cast would make inf refused)
    graphs      record: a chunk of steps as a CUDA graph, replayed (GPU only)
    bound       Bound: the lowered step and Jacobians bound to params, checked once;
                setup (the one check of a call), run_states (the forward run)
    linalg      thin_qr (geqrf + Householder product), orthonormalized (on a GPU by
                Cholesky QR), top_singular
    subspace    certified subspace iteration for sigma_max, on a power of P P^T
    lanczos     Spectral (chunk after chunk), block Lanczos, the tolerance
    chain       Chain: the running product, transposed, in slabs by block structure
    scale       largest_exponent, power_of_two (exact power-of-two rescaling), log_norm;
                Scale: a product's norm as an exact power of two and a mantissa; Ring,
                its form for recorded chunks
    products    Products: a chunk's running products, eager or replayed
    walk        walk: the backward pass over chunks of lags, every norm
    loss        loss_walk: what a loss at the end sees of each step
    rates       slope, slope_stderr, timescale_of_rate, why a rate is not a plain number
    reach       reach: how far back each sequence's products can be read (an inf or nan
                state or input ends it), and why not further
    benettin    Lyapunov exponents: lyapunov, the Lyapunov result
    result      Flow, gradient_flow
    module      ModuleBound: a torch module's own step, Jacobians by jacrev (the fallback
                for what gradlab cannot declare; Flow.symbolic is False)
    initial     module_state0: the initial state of a module's run (state0= or the
                module's own state0)
    torch_step  TorchStep: torch's nn.RNN/LSTM/GRU as such a step (a cross-check)
"""


import torch

from .benettin import Lyapunov, lyapunov_mean as lyapunov
from .bound import Bound, run_states
from .inputs import INPUTS, make_inputs
from .lanczos import (DENSE_BELOW, LANCZOS_BASIS, LANCZOS_BLOCK, LANCZOS_FIRST_CHECK,
                      LANCZOS_STEPS, RTOL, Spectral, tolerance)
from .rates import (CONVERGED, GROW, INPUT, NO_DECAY, NOT_FINITE, ONE_LAG, OVERFLOW, SINGULAR,
                    ZERO, slope_stderr, timescale_of_rate)
from .result import BLOCK_NORMS, NORMS, Flow, gradient_flow
from .scale import LN2, Scale
from .walk import CHUNK_BYTES
from .workspace import Workspace

DTYPES = (torch.float32, torch.float64)
# quad = 2 rtol of the default spectral tolerance per dtype, as `lanczos.tolerance` gives it
TOLERANCE = {dtype: tolerance(dtype) for dtype in DTYPES}

__all__ = ["BLOCK_NORMS", "CHUNK_BYTES", "CONVERGED", "DENSE_BELOW", "DTYPES", "Flow", "GROW",
           "INPUT", "INPUTS",
           "LANCZOS_BASIS", "LANCZOS_BLOCK", "LANCZOS_FIRST_CHECK", "LANCZOS_STEPS", "LN2",
           "Bound", "Lyapunov", "NORMS", "NO_DECAY", "NOT_FINITE", "ONE_LAG", "OVERFLOW", "RTOL",
           "Scale", "SINGULAR", "Spectral", "Workspace", "TOLERANCE", "ZERO", "gradient_flow",
           "lyapunov", "make_inputs", "run_states", "slope_stderr", "timescale_of_rate"]
