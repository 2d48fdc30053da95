"""Devices: which are valid here, and exact float32 arithmetic while numbers are compared.

`resolve(device)` checks a device name and returns a torch.device; it changes nothing.
`exact_float32()` turns TF32 off (matrix products and cuDNN) for the `with` block and
restores the caller's settings after it: checks and benchmarks compare true float32
products, and a user's own settings survive a call into gradlab.
"""

import contextlib

from .errors import GradlabError

DEVICES = ("cpu", "cuda")


def resolve(device):
    """torch.device for a device torch knows and this machine has ("cpu", "cuda",
    "cuda:1", "cpu:0", a torch.device), refused in one line naming it otherwise: the one
    rule every command and function applies."""
    import torch

    shown = str(device) if isinstance(device, torch.device) else device
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GradlabError(f"unknown device {shown!r}; valid: {', '.join(DEVICES)} (or "
                           "cuda:N)") from None
    if found.type not in DEVICES:
        raise GradlabError(f"unknown device {shown!r}; valid: {', '.join(DEVICES)} (or "
                           "cuda:N)")
    if found.type == "cuda" and not torch.cuda.is_available():
        raise GradlabError(f"device {shown!r} asked for but torch sees no CUDA device; "
                           "valid here: cpu")
    if found.type == "cuda" and found.index is not None \
            and found.index >= torch.cuda.device_count():
        raise GradlabError(f"device {shown!r} is not available here; valid: cuda:0.."
                           f"cuda:{torch.cuda.device_count() - 1}, cpu")
    return found


@contextlib.contextmanager
def exact_float32():
    """TF32 off inside the block (matmul and cuDNN), the caller's settings restored after."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def one_thread(device):
    """On the CPU, one thread for the block: float32 sums then come out the same whatever
    the machine's thread count (with two, the character model's bits moved in the 7th
    digit, and its timescales after), and these small models train no slower for it."""
    import torch
    if torch.device(device).type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
