"""The array namespaces lowered code runs against: `xp.tanh(a)`, `xp.eye(n, like)`, ...

Lowered code is printed once, against the names below, and bound to a backend at load
time; a backend is a small table, so adding one (JAX, CuPy) is one more table. torch is
imported only when the torch backend is first asked for.
"""

import functools
import types

import numpy as np

from ..symbolic.activations import generation, implementations


def _numpy():
    def like_kw(like):
        return {"dtype": like.dtype}

    return types.SimpleNamespace(
        name="numpy",
        matmul=np.matmul,
        mT=lambda a: np.swapaxes(a, -1, -2),
        eye=lambda k, like: np.eye(k, **like_kw(like)),
        zeros=lambda r, c, like: np.zeros((r, c), **like_kw(like)),
        ones=lambda r, c, like: np.ones((r, c), **like_kw(like)),
        **implementations("numpy", np),     # the activation table: tanh, sigmoid, ...
        sqrt=np.sqrt,
        gram_power=lambda g, k: np.where(g == 0, 0.0, np.where(g == 0, 1.0, g) ** k),
        asarray=np.asarray,
        broadcast_to=np.broadcast_to,
        contiguous=np.ascontiguousarray,
        cat=lambda arrays, axis: np.concatenate(arrays, axis=axis),
        scaled_sum=_numpy_scaled_sum,
        product=_product(np.matmul),
        affine=lambda W, v, b: np.matmul(W, v) + b,
        split_rows=lambda a, rows: np.split(a, np.cumsum(rows)[:-1], axis=-2),
    )


def _product(matmul):
    def product(acc, *factors):
        """A long product applied to acc factor by factor, right to left, as one call
        (printed nested, 100 factors passed the ~200 parentheses Python's parser takes):
        a factor (v,) is diag(v), multiplied as the broadcast v * acc."""
        for f in factors:
            acc = f[0] * acc if isinstance(f, tuple) else matmul(f, acc)
        return acc
    return product


def _numpy_scaled_sum(*terms):
    """sum of v * M over (v, M) terms (v None: M alone), accumulated in one array."""
    shape = np.broadcast_shapes(*(a.shape for term in terms for a in term if a is not None))
    out = np.zeros(shape, dtype=np.result_type(*(M for _, M in terms)))
    for v, M in terms:
        out += M if v is None else v * M
    return out


def transformed(a):
    """Is `a` a tensor that a torch.func transform (vmap, grad, jacrev) is tracing? vmap
    has no rule for writing into an array (out=, in-place sums), and nothing computed
    without autograd can be differentiated by grad."""
    import torch
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor",
                      None)
    return wrapped is not None and isinstance(a, torch.Tensor) and bool(wrapped(a))


def _torch():
    import torch

    def scaled_sum(*terms, empty=torch.empty):
        """sum of v * M over (v, M) terms (v None: M alone): one output, from
        empty(shape, dtype=, device=), written in place (addcmul_) rather than a
        temporary per product and per sum."""
        shapes = {a.shape for term in terms for a in term if a is not None}
        # one shape (most sums): no broadcast to work out (torch.broadcast_shapes is
        # Python, ~0.1 ms a call, as much as the sum itself at small sizes)
        shape = next(iter(shapes)) if len(shapes) == 1 else broadcast(shapes)
        if any(a is not None and (a.requires_grad and torch.is_grad_enabled()
                                  or transformed(a)) for term in terms for a in term):
            return functools.reduce(torch.add, (M if v is None else v * M   # out= has no
                                                for v, M in terms))   # autograd, nor vmap
        (v, M), rest = terms[0], terms[1:]
        out = empty(shape, dtype=M.dtype, device=M.device)
        if v is None:
            out.copy_(M)
        else:
            torch.mul(v, M.expand(shape), out=out)
        for v, M in rest:
            if v is None:
                out.add_(M)
            else:
                out.addcmul_(v, M)
        return out

    def broadcast(shapes):
        """torch.broadcast_shapes(*shapes), worked out here for shapes that broadcast
        (torch's own for the error of those that do not)."""
        out = [1] * max(map(len, shapes))
        for s in shapes:
            for i, d in enumerate(s, len(out) - len(s)):
                if d != 1 and out[i] != d:
                    if out[i] != 1:
                        return torch.broadcast_shapes(*shapes)
                    out[i] = d
        return torch.Size(out)

    def matmul(a, b):
        """a @ b; for a weight a (r, k) times a batch of columns b (B, k, 1), one GEMM
        reading a once (`F.linear`), where torch.matmul would broadcast a to (B, r, k)
        and run B matrix-vector products."""
        if a.ndim == 2 and b.ndim == 3 and b.shape[-1] == 1:
            return torch.nn.functional.linear(b[..., 0], a).unsqueeze(-1)
        return torch.matmul(a, b)

    def affine(W, v, b):
        """W @ v + b for a weight W (r, k), columns v (B, k, 1) and b (B, r, 1): one addmm
        (b + v W^T) reading W once; any other shapes (a vmap's), matmul and a sum."""
        if W.ndim == 2 and v.ndim == 3 and v.shape[-1] == 1 and b.ndim == 3 \
                and b.shape[-1] == 1 and b.shape[0] == v.shape[0]:
            return torch.addmm(b[..., 0], v[..., 0], W.t()).unsqueeze(-1)
        return matmul(W, v) + b

    def like_kw(like):
        return {"dtype": like.dtype, "device": like.device}

    return types.SimpleNamespace(
        name="torch",
        matmul=matmul,
        mT=lambda a: a.transpose(-1, -2),
        eye=lambda k, like: torch.eye(k, **like_kw(like)),
        zeros=lambda r, c, like: torch.zeros((r, c), **like_kw(like)),
        ones=lambda r, c, like: torch.ones((r, c), **like_kw(like)),
        **implementations("torch", torch),  # the activation table: tanh, sigmoid, ...
        sqrt=torch.sqrt,
        gram_power=lambda g, k: torch.where(g == 0, 0.0, torch.where(g == 0, 1.0, g) ** k),
        asarray=torch.as_tensor,
        broadcast_to=torch.broadcast_to,
        contiguous=lambda a: a.contiguous(),
        cat=lambda arrays, axis: torch.cat(arrays, dim=axis),
        scaled_sum=scaled_sum,
        product=_product(matmul),
        affine=affine,
        split_rows=lambda a, rows: a.split_with_sizes(list(rows), dim=-2),
    )


LOADERS = {"numpy": _numpy, "torch": _torch}


def backend(name):
    """The namespace of backend `name`, with every activation registered so far."""
    return _built(name, generation())


@functools.lru_cache(maxsize=None)
def _built(name, registered):
    return LOADERS[name]()
