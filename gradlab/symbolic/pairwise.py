"""`Pairwise`: a two-argument function applied entry by entry to two vectors.

SymPy's `ElementwiseApplyFunction` takes one argument; maximum(a, b) and minimum(a, b)
take two. `Pairwise(f, a, b)` is the vector with entries f(a_i, b_i), kept as a tree node
(never expanded into entries) so that derivations stay dimension-free; `_entry` gives the
entries when a block is written out at a small n (`Jacobian.explicit`).
"""

import sympy as sp


class Pairwise(sp.MatrixExpr):
    """f applied to the entries of two vectors of one shape; f is a two-variable Lambda."""

    def __new__(cls, function, a, b):
        if not isinstance(function, sp.Lambda):
            x, y = sp.Dummy("a"), sp.Dummy("b")
            function = sp.Lambda((x, y), function(x, y))
        return sp.Basic.__new__(cls, function, a, b)

    function = property(lambda self: self.args[0])
    operands = property(lambda self: self.args[1:])
    shape = property(lambda self: self.args[1].shape)

    @property
    def name(self):
        """The function's name when the Lambda is just (a, b) -> f(a, b), else None."""
        body = self.function.expr
        if isinstance(body, sp.Function) and body.args == self.function.variables:
            return type(body).__name__
        return None

    def _entry(self, i, j, **kwargs):
        return self.function(*(v._entry(i, j, **kwargs) for v in self.operands))

    def doit(self, **hints):
        deep = hints.get("deep", True)
        return Pairwise(self.function, *(v.doit(**hints) if deep else v
                                         for v in self.operands))
