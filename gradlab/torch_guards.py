"""What gradlab refuses to read from a torch module, and which gradlab cell it is.

`from_torch` derives the Jacobian of the plain torch module (nn.RNN, nn.LSTM, nn.GRU and
their cell modules) from its weights alone. A module that computes something else than
those weights say is refused, in one line, rather than measured as its base class: one
whose class or instance replaces a method the base class computes with (forward,
__call__, or one forward calls, such as permute_hidden), one with a forward hook (the old
weight_norm and spectral_norm, pruning), an nn.RNN whose nonlinearity disagrees with the
mode torch runs, one whose weights are on the meta device or hold nan, and a quantized
one (its integer kernels have no autograd). What such a module does run can still be
measured, by jacrev, through `gradlab.flow.module.TorchStep`. Wrappers that run a module
with its own weights (torch.compile, DataParallel) are unwrapped (`unwrap`).
"""

from .errors import GradlabError, shown


def module_kind(module):
    import torch.nn as nn

    if not isinstance(module, nn.Module):
        raise GradlabError("from_torch takes nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU "
                           "or nn.GRUCell, got " + (
                               f"the class {module.__name__} (a module is built from it: "
                               f"{module.__name__}(input_size, hidden_size))"
                               if isinstance(module, type) else type(module).__name__))
    refuse_quantized(module)
    bases = (nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU, nn.GRUCell)
    base = next((b for b in type(module).__mro__ if b in bases), None)
    changed = _overridden(module, base) if base is not None else None
    if changed:
        raise GradlabError(f"{changed}, so it may compute something else than "
                           f"{base.__name__}, which is "
                           "what gradlab would derive; measure what it runs by jacrev, "
                           "gradlab.gradient_flow(gradlab.flow.module.TorchStep(module), xs)")
    if base is not None:
        _refuse_odd_sizes(module)
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return f"rnn_{_nonlinearity(module)}"
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "lstm_proj" if getattr(module, "proj_size", 0) else "lstm"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "gru_torch"
    name = type(module).__name__          # torch.ao.nn.quantizable.LSTM is no nn.LSTM
    got = f"{type(module).__module__}.{name}" if name in (b.__name__ for b in bases) else name
    raise GradlabError(f"from_torch takes nn.RNN, nn.RNNCell, nn.LSTM, nn.LSTMCell, nn.GRU or "
                       f"nn.GRUCell, got {got}")


def _refuse_odd_sizes(module):
    """torch builds input_size, hidden_size, num_layers and proj_size as ints (it refuses
    4.0 or '4'); one set to something else after it was built is named, not compared
    with numbers deep in gradlab (TypeError: '<' not supported between 'str' and 'int')."""
    for name in ("input_size", "hidden_size", "num_layers", "proj_size"):
        value = getattr(module, name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise GradlabError(f"{type(module).__name__}.{name} is {shown(value)} "
                               f"({type(value).__name__}); torch builds it an int: was it "
                               "changed after the module was built? build the module with "
                               "the sizes it runs")


def _nonlinearity(module):
    """tanh or relu, as torch runs it: nn.RNN's forward picks its kernel from `mode`, set
    when it was built; nn.RNNCell's reads `nonlinearity` at every call. A module whose
    two disagree (nonlinearity set after construction) is refused: which one it runs
    depends on the class, and a reader of the module would take the wrong one."""
    import torch.nn as nn

    kind = module.nonlinearity
    if isinstance(module, nn.RNN):
        runs = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}.get(module.mode)
        if runs != kind:
            raise GradlabError(f"this RNN's nonlinearity is {kind!r} but its mode is "
                               f"{module.mode!r}, which is what torch runs (mode is set "
                               "when the module is built): build the module with the "
                               "nonlinearity you want, nn.RNN(..., nonlinearity=...)")
    if kind not in ("tanh", "relu"):
        raise GradlabError(f"{type(module).__name__}(nonlinearity={kind!r}): torch runs "
                           "tanh or relu only")
    return kind


def refuse_quantized(module):
    """A quantized module (torch.ao.quantization) computes with integer kernels that
    torch autograd cannot differentiate: its Jacobians would come back as zeros.
    (FloatFunctional lives beside them but computes in float, as the quantizable LSTM
    and modules prepared for quantization-aware training hold it.)"""
    from torch.ao.nn.quantized import FloatFunctional

    for sub in module.modules():
        where = type(sub).__module__
        if where.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")) and \
                not isinstance(sub, FloatFunctional):
            inner = "" if sub is module else f" (it holds a quantized {type(sub).__name__})"
            raise GradlabError(f"{type(module).__name__} is quantized ({where}){inner}: "
                               "torch autograd cannot differentiate its kernels; measure "
                               "the float module it was made from")


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
    if own and _pruned(module):
        raise GradlabError(f"{type(module).__name__} is pruned (torch.nn.utils.prune keeps "
                           "weight_orig and a mask, applied by a forward pre-hook): make "
                           "the pruning permanent with prune.remove(module, name) first")
    if own or every:
        where = "it has" if own else "torch has global"
        kind = (own or every)[0].removeprefix("_global").strip("_").replace("_", " ")[:-1]
        raise GradlabError(f"{type(module).__name__} cannot be read as the plain module: "
                           f"{where} a {kind} (weight_norm and spectral_norm of "
                           "torch.nn.utils register one), which may change what it "
                           "computes; remove it, or use torch.nn.utils.parametrizations")


def refuse_updating(module):
    """A parametrization that updates its buffers whenever its weight is read
    (spectral_norm's power iteration, in training mode): every step would see another
    weight, two runs would disagree, and the user's module would change. Found by reading
    each parametrized weight once and putting back any buffer that moved. One that
    computes nan from finite originals is refused as weights holding nan are."""
    import torch

    for owner in module.modules():
        found = getattr(owner, "parametrizations", None)
        if not isinstance(found, torch.nn.ModuleDict):
            continue
        for name, chain in found.items():
            kept = [(b, b.detach().clone()) for b in chain.buffers()]
            with torch.no_grad():
                first, again = getattr(owner, name).clone(), getattr(owner, name)
                moved = [not torch.equal(b, old) for b, old in kept]
                for b, old in kept:
                    b.copy_(old)
            if first.device.type == "meta":
                raise GradlabError(f"{type(owner).__name__}.{name} is parametrized by "
                                   f"{type(chain[0]).__name__}, which computes it on the meta "
                                   "device, which holds no numbers")
            if bool(first.isnan().any()) and not any(moved):   # (nan != nan: no draw)
                at = list(map(int, first.isnan().nonzero()[0]))
                raise GradlabError(
                    f"{type(owner).__name__}.{name} is parametrized by "
                    f"{type(chain[0]).__name__.lstrip('_')}, which computes nan from its "
                    f"originals (at {at}): there is no trajectory or Jacobian to measure")
            if not torch.equal(first, again) and not any(moved):     # no buffer: it draws
                raise GradlabError(
                    f"{type(owner).__name__}.{name} is parametrized by "
                    f"{type(chain[0]).__name__}, which gives another weight each time it is "
                    "read (random?): there is no one network to measure; make it "
                    "deterministic (module.eval(), or fix its draw)")
            if any(moved):
                kind = next(type(p).__name__.lstrip("_") for p in chain if any(
                    True for _ in p.buffers()))
                raise GradlabError(
                    f"{type(owner).__name__}.{name} is parametrized by {kind}, which "
                    "updates its buffers whenever the weight is read (training mode): "
                    "each step would see another weight (and your module would change); "
                    "call module.eval() first")


def own_weights(module):
    """The tensors the module's weights are made of (a parametrized weight by its
    originals, unread: a read may update it). A module whose weights are not the set its
    flags (bias, num_layers, bidirectional, proj_size) make, a flag changed after it was
    built, is refused naming the odd weight: torch's nn.RNN/LSTM/GRU would fail at
    forward, a cell module would use the tensors it holds, and gradlab reads the flags."""
    import re
    import torch

    if isinstance(module, torch.nn.RNNCellBase):
        suffixes = [""]
    else:
        ways = ["", "_reverse"] if module.bidirectional else [""]
        suffixes = [f"_l{k}{w}" for k in range(module.num_layers) for w in ways]
    kinds = ["weight_ih", "weight_hh"] + ["bias_ih", "bias_hh"] * bool(module.bias) \
        + ["weight_hr"] * bool(getattr(module, "proj_size", 0))
    expected = {k + s for s in suffixes for k in kinds}
    chains = getattr(module, "parametrizations", None) or {}
    held = {n for n, _ in module.named_parameters(recurse=False, remove_duplicate=False)} \
        | set(chains)                     # (a weight tied to another is still held)
    held = {n for n in held if re.fullmatch(r"(weight|bias)_(ih|hh|hr)(_l\d+(_reverse)?)?", n)}
    extra, missing = sorted(held - expected), sorted(expected - held)
    if extra or missing:
        flags = ", ".join(f"{f}={getattr(module, f)!r}" for f in (
            "bias", "num_layers", "bidirectional", "proj_size") if hasattr(module, f))
        raise GradlabError(f"{type(module).__name__} "
                           + (f"holds {extra[0]}, which its flags ({flags}) do not make"
                              if extra else f"lacks {missing[0]}, which its flags ({flags}) "
                              "make")
                           + ": a flag changed after it was built? build it with the flags "
                           "it runs")
    return [t for n in sorted(expected)
            for t in (chains[n].parameters() if n in chains else (getattr(module, n),))]


def refuse_nonfinite(module):
    """Weights holding nan have no trajectory to follow: refused by name. (An inf is
    taken as IEEE arithmetic takes it: an inf bias pins a gate at 0 or 1.)"""
    import torch

    for name, t in module.named_parameters():
        if bool(torch.isnan(t).any()):
            raise GradlabError(f"{type(module).__name__}'s {name} holds nan: there is no "
                               "trajectory or Jacobian to measure")


def unwrap(module):
    """The module a wrapper runs with the same weights (torch.compile's OptimizedModule,
    nn.DataParallel and DistributedDataParallel: `.module` / `._orig_mod`), else module
    itself; a container or TorchScript copy of torch's recurrent modules is refused with
    the way to the module itself (they do not take the protocol's (x, state))."""
    import torch

    for _ in range(8):                       # (wrappers of wrappers; never a loop)
        inner = getattr(module, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):                    # torch.compile
            module = inner
        elif isinstance(module, (torch.nn.DataParallel,
                                 torch.nn.parallel.DistributedDataParallel)):
            module = module.module
        else:
            break
    recurrent = (torch.nn.RNNBase, torch.nn.RNNCellBase)
    if isinstance(module, torch.jit.ScriptModule):
        name = getattr(module, "original_name", type(module).__name__)
        if name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"):
            raise GradlabError(f"a TorchScript {name}: gradlab reads the nn.{name} itself; "
                               "pass the module before torch.jit.script or trace")
    if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)) and type(module).forward \
            in (torch.nn.Sequential.forward, torch.nn.Module.forward):   # not its own step
        inside = [i for i, m in enumerate(module) if isinstance(m, recurrent)]
        if inside:
            raise GradlabError(f"{type(module).__name__} holding a "
                               f"{type(module[inside[0]]).__name__} at [{inside[0]}]: pass "
                               f"the recurrent module itself (module[{inside[0]}])")
    held = recurrent_inside(module) if isinstance(module, torch.nn.Module) else None
    if held and not _takes_a_step(module):
        raise GradlabError(f"{type(module).__name__} holds an nn.{held[1]} at {held[0]} and its "
                           "forward does not take a recurrent step (x, state): pass the "
                           f"recurrent module itself ({held[0]})")
    return module


def recurrent_inside(module):
    """(where, class name) of the first torch recurrent module that `module` holds below
    itself, as Python reaches it (`module.rnn`, `module.layers[0]`), or None: what to pass
    instead of a model (a LightningModule, ...) whose forward is no recurrent step."""
    import torch

    for name, sub in module.named_modules():
        if name and isinstance(sub, (torch.nn.RNNBase, torch.nn.RNNCellBase)):
            where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in name.split("."))
            return f"module{where}", type(sub).__name__
    return None


def _takes_a_step(module):
    """Whether module(x, state) can call its forward at all (a model's forward(x) cannot)."""
    import inspect

    try:
        inspect.signature(module.forward).bind(None, None)
    except TypeError:
        return False
    except ValueError:                     # no signature to read: let the call say
        return True
    return True


def _pruned(module):
    from torch.nn.utils import prune

    return any(isinstance(h, prune.BasePruningMethod)
               for h in getattr(module, "_forward_pre_hooks", {}).values())


def refuse_meta(module):
    """A module whose parameters are on the meta device holds no weights to copy."""
    if any(t.device.type == "meta" for t in module.parameters()):
        raise GradlabError(f"{type(module).__name__}'s parameters are on the meta device, "
                           "which holds no numbers; move the module to cpu or cuda")
