"""Assertions for your own test suite: your hand-derived Jacobian or Lyapunov code against
gradlab's exact derivation, failing with a message that says what is wrong.

    import gradlab
    from gradlab.testing import assert_jacobian

    def test_my_gru_jacobian():
        cell = gradlab.cell("gru")
        params = cell.init_params(16, 4, weight_scale=1.5, bias_scale=0.5)
        assert_jacobian(my_gru_jacobian, cell, params)
"""

import warnings

from .errors import arguments_checked
from .verification.check import check_jacobian
from .verification.hidden import BIAS_NOTE
from .verification.lyapunov_check import check_lyapunov


@arguments_checked
def assert_jacobian(fn, cell, params, **options):
    """AssertionError (its message the diagnosis) unless `fn(params, state, x)` is the exact
    Jacobian of `cell`; options as `gradlab.check_jacobian` (wrt, layout, block, batch,
    seed, rtol, states). Returns the result when it agrees (a derivation right only where
    zero biases or state parts given hide a term it gets wrong does not); where it leaves
    out every bias the params give as zero (right for a model without them only), warns
    with the note that says so."""
    result = check_jacobian(fn, cell, params, **options)
    if not result.ok:
        raise AssertionError(str(result))
    for note in result.diagnosis:       # right at zero biases, for a model without them
        if note.startswith(BIAS_NOTE):
            warnings.warn(f"assert_jacobian: {note}", stacklevel=3)   # (past the check)
    return result


@arguments_checked
def assert_lyapunov(fn, cell, params, xs, k, **options):
    """AssertionError (its message the diagnosis) unless `fn(params, xs, k)` gives the
    exact top-k Lyapunov exponents of `cell` on xs; options as `gradlab.check_lyapunov`. Where a
    mistaken variant agrees as well on these inputs, warns with that note."""
    result = check_lyapunov(fn, cell, params, xs, k, **options)
    if not result.ok:
        raise AssertionError(str(result))
    for note in result.diagnosis:     # it agrees, but so would a mistake on these inputs
        warnings.warn(f"assert_lyapunov: {note}", stacklevel=3)
    return result
