"""gradlab: why recurrent networks forget, derived symbolically and measured exactly.

    import gradlab
    lstm = gradlab.cell("lstm")
    lstm.jacobian()                       # SymPy block matrix d(h', c') / d(h, c)
    params = lstm.init_params(64, 8)
    flow = gradlab.gradient_flow(lstm, params, xs)

Names load lazily, so `import gradlab` (and `gradlab --help`) pulls in neither SymPy nor
torch until something needs them.
"""

import importlib

from .errors import GradlabError

__version__ = "0.1.0"

_HOMES = {
    "cells": "registry", "cell": "registry",
    "Cell": "symbolic.cell", "declare": "symbolic.cell",
    "sigmoid": "symbolic.language", "tanh": "symbolic.language", "relu": "symbolic.language",
    "sqrt": "symbolic.language", "exp": "symbolic.language", "mean": "symbolic.language",
    "var": "symbolic.language", "elementwise": "symbolic.language",
    "from_torch": "interop",
    "gradient_flow": "flow", "Flow": "flow",
}

__all__ = ["GradlabError", *_HOMES]


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gradlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
