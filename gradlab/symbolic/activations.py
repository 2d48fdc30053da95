"""Scalar activation functions SymPy lacks, with their derivatives in the usual forms.

SymPy differentiates these like any built-in function, so the matrix chain rule in
`derive` can ask for f'(x) and get sigma(x) (1 - sigma(x)) rather than an opaque
`Derivative` object.
"""

import sympy as sp


class sigmoid(sp.Function):
    """The logistic function 1 / (1 + exp(-x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _latex(self, printer, exp=None):
        body = r"\sigma\left(%s\right)" % printer._print(self.args[0])
        return body if exp is None else r"%s^{%s}" % (body, exp)


class step(sp.Function):
    """The Heaviside step with step(0) = 0: the derivative torch gives relu at 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _latex(self, printer, exp=None):
        body = r"\theta\left(%s\right)" % printer._print(self.args[0])
        return body if exp is None else r"%s^{%s}" % (body, exp)


class relu(sp.Function):
    """max(x, 0), differentiated as torch does: relu'(0) = 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0])

    def _latex(self, printer, exp=None):
        body = r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])
        return body if exp is None else r"%s^{%s}" % (body, exp)
