"""The one check of a lowered function's arguments: params, state and x as one call gives
them, refused in one line where anything is off, else laid out for the lowered code (matrix
axes last). Callers that run many steps check once here and call the lowered function
directly."""

import functools

import numpy as np
import sympy as sp

from ..errors import GradlabError

FLOATS = ("float32", "float64")       # what the lowered code computes in


def require_params(cell, params):
    """Refuse params that lack any of the cell's parameters, or hold other arrays, naming
    them (an extra array is a sign of the wrong cell: an LSTM with a projection read as
    'lstm' would drop its W_r and measure another model). Entries that are not arrays (a
    note, a config) are left alone."""
    missing = [p for p in cell.param_names if p not in params]
    if missing:
        raise GradlabError(f"params for cell '{cell.name}' lack {', '.join(missing)}; "
                           f"expected {', '.join(cell.param_names)}")
    extra = [k for k in params.keys()
             if k not in cell.param_names and getattr(params[k], "ndim", 0) >= 1]
    if extra:
        raise GradlabError(f"params for cell '{cell.name}' hold "
                           f"{', '.join(k if isinstance(k, str) else repr(k) for k in extra)}"
                           f", which it does not take; expected exactly "
                           f"{', '.join(cell.param_names)}")


@functools.lru_cache(maxsize=None)
def rows_of_n(cell):
    """The params declared with n rows, read once per cell (printing a SymPy size costs
    ~10 us, a dozen of them a tenth of a small gradient_flow call)."""
    return tuple(p for p in cell.param_names if str(cell.param_shapes[p][0]) == "n")


def library(a):
    """"torch" or "numpy" for their arrays and any subclass of one (nn.Parameter, a user's
    Tensor subclass, np.matrix), else the package the type comes from."""
    roots = [c.__module__.split(".")[0] for c in type(a).__mro__]
    return next((r for r in roots if r in ("torch", "numpy")), roots[0])


def plain(a, what, cell):
    """A numpy array of a subclass as the plain ndarray lowered code computes with: the
    subclass would compute otherwise (np.matrix's * is a matrix product and it keeps two
    axes; a masked array carries its mask along). Masked entries are refused; data of
    the other byte order ('>f8') is read in this machine's (it is float64 all the same)."""
    if not isinstance(a, np.ndarray):
        return a
    if type(a) is not np.ndarray:
        if np.ma.is_masked(a):
            raise GradlabError(f"{what} of cell '{cell.name}' is a masked array with masked "
                               "entries; give plain numbers (e.g. .filled(0))")
        a = np.asarray(a)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def prepare(cell, params, state, x, backend_name=None):
    """Check the shapes and dtypes of one call's arguments; return (n, m, B, argument
    arrays with matrix axes last), ready for a lowered function: `fn(n, m, x, *args)`.
    Callers that run many steps check once here and call the lowered function directly."""
    if not callable(getattr(params, "keys", None)) or not callable(getattr(params, "get", None)):
        raise GradlabError(f"params of cell '{cell.name}' must be a dict of name -> array "
                           f"({', '.join(cell.param_names)}), got {type(params).__name__}")
    given = state
    state = state if isinstance(state, (tuple, list)) else (state,)
    if len(state) != len(cell.state_names):       # (state=None for an LSTM: "got 1")
        raise GradlabError(f"cell '{cell.name}' takes a state of {len(cell.state_names)} "
                           f"part(s) ({', '.join(cell.state_names)}), got " + (
                               f"{len(state)}" if state is given else
                               f"one {type(given).__name__}, not a tuple of them"))
    require_params(cell, params)
    named = [("x", x), *((f"state part '{p}'", t) for p, t in zip(cell.state_names, state)),
             *((f"param '{p}'", params[p]) for p in cell.param_names)]
    for what, a in named:
        got = "a nested tensor" if getattr(a, "is_nested", False) else type(a).__name__
        if got.startswith("a ") or not all(hasattr(a, k) for k in ("shape", "ndim", "dtype")):
            raise GradlabError(f"{what} of cell '{cell.name}' must be an array (a torch "
                               f"tensor or a numpy array), got {got}")
    libraries = {library(a) for _, a in named}
    if len(libraries) > 1 or backend_name is not None and libraries != {backend_name}:
        given = " and ".join(sorted(libraries))
        raise GradlabError(f"params, state and x of cell '{cell.name}' are {given} arrays"
                           + (f" for the {backend_name} backend" if backend_name else "")
                           + "; give one kind, the backend's (numpy arrays or torch tensors)")
    if libraries == {"numpy"}:
        x, state = plain(x, "x", cell), tuple(plain(s, f"state part '{p}'", cell)
                                              for p, s in zip(cell.state_names, state))
        params = {p: plain(params[p], f"param '{p}'", cell) for p in cell.param_names}
    if tuple(x.shape[:-1]) == () or x.ndim != 2:
        raise GradlabError(f"x has shape {tuple(x.shape)}, expected (B, m)")
    B, m = x.shape
    for part, s in zip(cell.state_names, state):
        if s.ndim != 2:
            raise GradlabError(f"state part '{part}' has shape {tuple(s.shape)}, expected "
                               f"(B, n) with B = {B} from x {tuple(x.shape)}")
    # n as most parameters declared (n, .) say, so that a mis-sized state part is the one
    # named, not its neighbours (the first part's size, where no parameter says)
    votes = [params[p].shape[0] for p in rows_of_n(cell) if params[p].ndim >= 1]
    votes += [s.shape[-1] for s in state]            # the state parts vote too; a tie goes
    n = max(set(votes), key=lambda v: (votes.count(v), -votes.index(v)))   # to the first
    dtypes = {str(t.dtype) for t in (x, *state, *(params[p] for p in cell.param_names))}
    if len(dtypes) > 1:
        raise GradlabError(f"params, state and x of cell '{cell.name}' mix dtypes "
                           f"{', '.join(sorted(dtypes))}; use one")
    dtype = dtypes.pop().removeprefix("torch.")
    if dtype not in FLOATS:               # integers fail inside; float16 would run silently
        raise GradlabError(f"params, state and x of cell '{cell.name}' are {dtype}; "
                           f"valid: {', '.join(FLOATS)}")
    for what, a in named:                  # sparse, quantized, ...: nothing below reads them
        layout = str(getattr(a, "layout", "torch.strided")).removeprefix("torch.")
        if layout != "strided":
            raise GradlabError(f"{what} of cell '{cell.name}' is a {layout} tensor; give a "
                               "dense one (.to_dense())")
    devices = {str(t.device) for t in (x, *state, *(params[p] for p in cell.param_names))
               if hasattr(t, "device") and not isinstance(t.device, str)}
    if "meta" in devices or len(devices) > 1:
        raise GradlabError(f"params, state and x of cell '{cell.name}' are on "
                           f"{', '.join(sorted(devices))}: " + (
                               "the meta device holds no numbers" if "meta" in devices
                               else "use one device"))
    for part, s in zip(cell.state_names, state):
        if tuple(s.shape) != (B, n):
            raise GradlabError(f"state part '{part}' has shape {tuple(s.shape)}, expected "
                               f"(B, n) = ({B}, {n}) with B from x {tuple(x.shape)}")
    sizes = {sp.Symbol("n", integer=True, positive=True): n,
             sp.Symbol("m", integer=True, positive=True): m, sp.S.One: 1}
    args = []
    for p in cell.param_names:
        shape = cell.param_shapes[p]
        vector = shape[1] == 1                 # symbolically: an n-vector, not n x n at n = 1
        rows, cols = (int(sizes[d]) for d in shape)
        expected = (rows,) if vector else (rows, cols)
        value = params[p]
        if tuple(value.shape) != expected:
            if shape[1] == sp.Symbol("m", integer=True, positive=True) and \
                    value.ndim == 2 and value.shape[0] == rows and value.shape[1] != m:
                raise GradlabError(f"x has {m} inputs a step (shape {tuple(x.shape)}), but "
                                   f"param '{p}' of cell '{cell.name}' has shape "
                                   f"{tuple(value.shape)}, for {value.shape[1]} inputs")
            scalar = (": a scalar parameter holds one number in shape (1,), as [x] not as "
                      "a 0-d x") if shape == (1, 1) and value.ndim == 0 else ""
            raise GradlabError(f"param '{p}' of cell '{cell.name}' has shape "
                               f"{tuple(value.shape)}, expected {expected} (n = {n} from the "
                               f"state, m = {m} from x {tuple(x.shape)}){scalar}")
        args.append(value[:, None] if vector else value)
    args += [s[:, :, None] for s in state]
    args.append(x[:, :, None])
    return n, m, B, args
