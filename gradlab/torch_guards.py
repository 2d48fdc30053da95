"""What gradlab refuses to read from a torch module, and which gradlab cell it is.

`from_torch` derives the Jacobian of the plain torch module (nn.RNN, nn.LSTM, nn.GRU and
their cell modules) from its weights alone. A module that computes something else than
those weights say is refused, in one line, rather than measured as its base class: one
whose class or instance replaces a method the base class computes with (forward,
__call__, or one forward calls, such as permute_hidden), one with a forward hook (the old
weight_norm and spectral_norm), and one whose weights are on the meta device. What such
a module does run can still be measured, by jacrev, through
`gradlab.flow.module.TorchStep`.
"""

from .errors import GradlabError


def module_kind(module):
    import torch.nn as nn

    bases = (nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU, nn.GRUCell)
    base = next((b for b in type(module).__mro__ if b in bases), None)
    changed = _overridden(module, base) if base is not None else None
    if changed:
        raise GradlabError(f"{changed}, so it may compute something else than "
                           f"{base.__name__}, which is "
                           "what gradlab would derive; measure what it runs by jacrev, "
                           "gradlab.gradient_flow(gradlab.flow.module.TorchStep(module), xs)")
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return f"rnn_{module.nonlinearity}"
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "lstm_proj" if getattr(module, "proj_size", 0) else "lstm"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "gru_torch"
    raise GradlabError(f"from_torch takes nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU or "
                       f"nn.GRUCell, got {type(module).__name__}")


# what a subclass may define without changing what the module computes
HARMLESS = {"__init__", "__repr__", "extra_repr", "reset_parameters", "__doc__", "__module__",
            "__qualname__", "__dict__", "__weakref__", "__annotations__", "__firstlineno__",
            "__static_attributes__", "__getstate__", "__setstate__", "__deepcopy__",
            "__copy__", "__reduce__", "__reduce_ex__", "__init_subclass__",
            "__class_getitem__"}   # (torch's parametrized classes define copying ones)


def _overridden(module, base):
    """What replaces a method of `base` (forward, __call__, or one they call, such as
    permute_hidden) in module's class or in the module itself, in words, or None."""
    classes = type(module).__mro__
    for cls in (None, *classes[:classes.index(base)]):
        for name, value in vars(module if cls is None else cls).items():
            if cls is None and name.startswith("_"):      # torch's own (compile() sets
                continue                                  # _compiled_call_impl)
            if name not in HARMLESS and hasattr(base, name) and (
                    callable(value) or isinstance(value, (staticmethod, classmethod))):
                return (f"this {type(module).__name__} has its own {name}" if cls is None
                        else f"{cls.__name__} overrides {base.__name__}.{name}")
    return None


def refuse_hooks(module):
    """A forward (pre-)hook can change what the module computes (its inputs, its output,
    or its weights, as the old torch.nn.utils.weight_norm and spectral_norm do), and
    gradlab would derive the plain module: refused. torch.nn.utils.parametrizations
    (no hook: the weight is computed when read) are read as they are."""
    from torch.nn.modules import module as base

    own = [name for name in ("_forward_pre_hooks", "_forward_hooks")
           if getattr(module, name, None)]
    every = [name for name in ("_global_forward_pre_hooks", "_global_forward_hooks")
             if getattr(base, name, None)]
    if own or every:
        where = "it has" if own else "torch has global"
        kind = (own or every)[0].removeprefix("_global").strip("_").replace("_", " ")[:-1]
        raise GradlabError(f"{type(module).__name__} cannot be read as the plain module: "
                           f"{where} a {kind} (weight_norm and spectral_norm of "
                           "torch.nn.utils register one), which may change what it "
                           "computes; remove it, or use torch.nn.utils.parametrizations")


def refuse_meta(module):
    """A module whose parameters are on the meta device holds no weights to copy."""
    if any(t.device.type == "meta" for t in module.parameters()):
        raise GradlabError(f"{type(module).__name__}'s parameters are on the meta device, "
                           "which holds no numbers; move the module to cpu or cuda")
