"""torch's process-wide settings, kept while code gradlab did not write runs (a Jacobian or
Lyapunov routine under test) and put back after it, however it ends: that code may call
torch.set_default_device, set_default_dtype, set_grad_enabled(False), manual_seed and
the like for itself, and neither gradlab's own work after it nor the caller's session
must run under them (a default device of "meta" left behind failed gradlab's next
step; a seed left behind moved the caller's random numbers). Kept: the default dtype and
device, grad mode, the random states of torch (CPU, and CUDA where it has started), numpy
and Python, deterministic-algorithms and anomaly modes, the thread count, cuDNN's
deterministic and benchmark flags, and the recursion limit. (Not TF32: where both its
legacy and its new flags were set torch refuses to read them, and a check's reference
is computed in float64, which TF32 does not touch.)"""

import contextlib
import random
import sys

import numpy as np
import torch


def default_device():
    """The device torch's factory functions make a tensor on now: the innermost `with
    torch.device(...)` block open, else what torch.set_default_device set, else the CPU,
    as torch.get_default_device() says it from torch 2.8 on (pytorch#148621). Before, it
    sees only set_default_device (inside `with torch.device("meta")` torch 2.4's says
    "cpu", so gradlab computed on the meta device and failed), and 2.4's raises
    AttributeError once set_default_device(None) has put the default back; there this
    reads both itself (a device named without an index is then returned as named)."""
    if SEES_DEVICE_BLOCKS:
        with contextlib.suppress(AttributeError):     # (then as below, whatever it was)
            return torch.get_default_device()
    try:
        from torch.overrides import _get_current_function_mode_stack
        from torch.utils._device import DeviceContext
        modes = _get_current_function_mode_stack()
        context = getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None)
    except (ImportError, AttributeError):       # a build that keeps them otherwise
        try:
            return torch.get_default_device()
        except AttributeError:
            return torch.device("cpu")
    found = next((m for m in reversed(modes) if isinstance(m, DeviceContext)), context)
    return torch.device("cpu") if found is None else found.device


SEES_DEVICE_BLOCKS = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 8)


def _device_state():
    """What torch.set_default_device and `with torch.device(...)` set: the torch-function
    mode stack (a default device is a mode on it), the context set_default_device keeps,
    and the device torch.utils._device notes; None where this torch keeps them otherwise.
    Put back whole (`_put_device_state`): set_default_device called while a `with
    torch.device` block is open (gradlab runs in one under another default device)
    rearranges the stack, which set_default_device alone cannot undo."""
    try:
        from torch.overrides import _get_current_function_mode_stack
        from torch.utils import _device
        holder = torch._GLOBAL_DEVICE_CONTEXT
        return (tuple(_get_current_function_mode_stack()),
                getattr(holder, "device_context", None), _device.CURRENT_DEVICE)
    except (ImportError, AttributeError):
        return None


def _put_device_state(state):
    from torch.overrides import _pop_mode, _push_mode
    from torch.utils import _device

    stack, context, current = state
    while _device_state()[0]:
        _pop_mode()
    for mode in stack:
        _push_mode(mode)
    torch._GLOBAL_DEVICE_CONTEXT.device_context = context
    _device.CURRENT_DEVICE = current


def _same_device_state(a, b):
    return a is not None and b is not None and len(a[0]) == len(b[0]) and all(
        x is y for x, y in zip(a[0], b[0])) and a[1] is b[1] and a[2] == b[2]


def _settings():
    """(what is compared, how to put it back) for each setting, as they are now."""
    cudnn = torch.backends.cudnn
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    anomaly = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    threads, limit = torch.get_num_threads(), sys.getrecursionlimit()
    flags = (cudnn.deterministic, cudnn.benchmark)

    def put_flags():
        cudnn.deterministic, cudnn.benchmark = flags

    return [
        (dtype, torch.get_default_dtype, lambda: torch.set_default_dtype(dtype)),
        (grad, torch.is_grad_enabled, lambda: torch.set_grad_enabled(grad)),
        (deterministic, lambda: (torch.are_deterministic_algorithms_enabled(),
                                 torch.is_deterministic_algorithms_warn_only_enabled()),
         lambda: torch.use_deterministic_algorithms(deterministic[0],
                                                    warn_only=deterministic[1])),
        (anomaly, lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
         lambda: torch.autograd.set_detect_anomaly(*anomaly)),
        (threads, torch.get_num_threads, lambda: torch.set_num_threads(threads)),
        (flags, lambda: (cudnn.deterministic, cudnn.benchmark), put_flags),
        (limit, sys.getrecursionlimit, lambda: sys.setrecursionlimit(limit)),
    ]


def _random_states():
    """A function that puts torch's, numpy's and Python's random states back as they are
    now."""
    cpu, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), \
        random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def put_back():
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    return put_back


@contextlib.contextmanager
def kept():
    """torch's (and numpy's and Python's) process-wide settings as they are now, put back
    when the block ends, however it ends; a setting the block did not change is left
    alone."""
    settings, put_randoms = _settings(), _random_states()
    device, default = _device_state(), default_device()
    try:
        yield
    finally:
        if device is not None and not _same_device_state(device, _device_state()):
            _put_device_state(device)
        elif device is None and default_device() != default:   # (another torch)
            torch.set_default_device(None if default.type == "cpu" else default)
        for before, now, put in settings:
            if now() != before:
                put()
        put_randoms()
