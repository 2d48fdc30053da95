"""gradlab: why recurrent networks forget, derived symbolically and measured exactly.

    import gradlab, torch
    lstm = gradlab.cell("lstm")
    lstm.jacobian()                       # SymPy block matrix d(h', c') / d(h, c)
    params = lstm.init_params(64, 8)
    xs = torch.randn(100, 16, 8, dtype=torch.float64)      # (T, B, m), time first
    flow = gradlab.gradient_flow(lstm, params, xs)
    flow.rate()                           # per-step decay of log ||d s_T / d s_{T-k}||

Names load lazily, so `import gradlab` (and `gradlab --help`) pulls in neither SymPy nor
torch until something needs them.
"""

import importlib
import importlib.util
import inspect

from .errors import GradlabError, arguments_checked

__version__ = "0.1.0"

_HOMES = {
    "cells": "registry", "cell": "registry",
    "Cell": "symbolic.cell", "declare": "symbolic.cell",
    "sigmoid": "symbolic.language", "tanh": "symbolic.language", "relu": "symbolic.language",
    "sqrt": "symbolic.language", "exp": "symbolic.language", "mean": "symbolic.language",
    "var": "symbolic.language", "elementwise": "symbolic.language",
    "softplus": "symbolic.language", "log": "symbolic.language", "abs": "symbolic.language",
    "maximum": "symbolic.language", "minimum": "symbolic.language", "I": "symbolic.language",
    "sum": "symbolic.language", "norm": "symbolic.language", "Jacobian": "symbolic.jacobian",
    "from_torch": "interop", "to_torch": "interop", "stack": "symbolic.stack",
    "check_jacobian": "verification.check", "check_lyapunov": "verification.lyapunov_check",
    "gradient_flow": "flow", "Flow": "flow", "lyapunov": "flow.benettin",
    "mean_field": "meanfield", "critical_init": "meanfield",
}

__all__ = ["GradlabError", *_HOMES]


SUBMODULES = ("testing", "interop")   # `gradlab.testing` without importing it first


def __getattr__(name):
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gradlab' has no attribute {name!r} ({_hint(name)})")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    if inspect.isfunction(value) and not hasattr(value, "__wrapped__"):
        value = arguments_checked(value)   # a call its signature does not take: one line
    globals()[name] = value
    return value


def _hint(name):
    """Where a name that gradlab does not hold lives, or what it does hold."""
    try:
        module = importlib.util.find_spec(f"{__name__}.{name}")     # `from . import x`
    except (ImportError, ValueError):                               # ("a.b": no module)
        module = None
    if not name.startswith("_") and module is None:
        from .symbolic.cell import Cell
        if hasattr(Cell, name):
            return f"it is a cell's own: gradlab.cell('lstm').{name}"
    language = ", ".join(k for k, v in _HOMES.items() if v == "symbolic.language")
    return f"the cell language's functions: {language}"


def __dir__():                     # tab completion finds gradlab.testing, gradlab.interop
    return sorted([*__all__, *SUBMODULES, "__version__"])
