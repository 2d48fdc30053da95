"""torch.func.vmap over steps that may call torch's own fused kernels.

On a CUDA device nn.LSTMCell runs the fused kernel aten::_thnn_fused_lstm_cell, which has
no batching rule: vmap then runs it sample by sample and warns "There is a performance
drop because we have not yet implemented the batching rule". The Jacobians are the same;
the warning names nothing a user of gradlab can act on, and where warnings are errors
(pytest -W error) it stopped `gradlab verify` and `gradient_flow` of an nn.LSTM on the GPU.
Where speed matters (the bench's baselines) `falls_back` asks whether a call would do so.
"""

import contextlib
import warnings

import torch

FALLBACK = "There is a performance drop because we have not yet implemented the batching rule"


@contextlib.contextmanager
def fallback_quiet():
    """Within it, vmap's per-sample fallback for an op without a batching rule is silent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FALLBACK, category=UserWarning)
        yield


def falls_back(fn, *args):
    """Whether calling fn(*args), a vmapped function, runs some op sample by sample (an op
    without a batching rule). Asked of torch with its fallback switched off, where this
    torch can (the op then raises "hit the vmap fallback"), and from torch's warning
    otherwise."""
    functorch = getattr(torch._C, "_functorch", None)
    switch = getattr(functorch, "_set_vmap_fallback_enabled", None)
    state = getattr(functorch, "_is_vmap_fallback_enabled", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if switch is None or state is None:
            fn(*args)
        else:
            was = state()
            switch(False)
            try:
                fn(*args)
            except RuntimeError as error:
                if "vmap fallback" in str(error):
                    return True
                raise
            finally:
                switch(was)
    return any(FALLBACK in str(w.message) for w in caught)
