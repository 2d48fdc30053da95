"""torch.func.vmap over steps that may call torch's own fused kernels.

On a CUDA device nn.LSTMCell runs the fused kernel aten::_thnn_fused_lstm_cell, which has
no batching rule: vmap then runs it sample by sample and warns "There is a performance
drop because we have not yet implemented the batching rule". The Jacobians are the same;
the warning names nothing a user of gradlab can act on, and where warnings are errors
(pytest -W error) it stopped `gradlab verify` and `gradient_flow` of an nn.LSTM on the GPU.
"""

import contextlib
import warnings

FALLBACK = "There is a performance drop because we have not yet implemented the batching rule"


@contextlib.contextmanager
def fallback_quiet():
    """Within it, vmap's per-sample fallback for an op without a batching rule is silent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FALLBACK, category=UserWarning)
        yield
