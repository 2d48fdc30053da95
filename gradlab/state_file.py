"""Reading a checkpoint file: a torch state dict, loaded with torch.load(weights_only=True)
and nothing else, so that a pickle holding a module or any other object is refused, never
run. A file that is not one torch.save wrote (empty, truncated, another format) and a
state dict that is not named dense finite tensors are refused in one line
(gradlab.checkpoint checks the names and shapes against an architecture)."""

import pathlib
import re
import warnings

from .errors import GradlabError


def _first_sentence(message, limit=160):
    """A library's error message to its first sentence, whole words, at most `limit`."""
    words = " ".join(message.split())
    first = re.split(r"(?<=[.!?])\s", words, maxsplit=1)[0]
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + " ..."


def load_state_dict(path, prefix=""):
    """The state dict in `path`, read with torch.load(weights_only=True) only; the tensors
    under `prefix` (all without one) checked dense and finite (a whole model's others, a
    causal mask of -inf, are not the module's: `select` drops them)."""
    import torch

    if str(path).strip() == "":                     # pathlib reads '' as '.'
        raise GradlabError("the checkpoint path is empty; give a .pt file")
    path = pathlib.Path(path)
    if not path.is_file():
        if path.exists():                           # /dev/null, a folder, a FIFO
            raise GradlabError(f"checkpoint {str(path)!r} is not a regular file; give a .pt "
                               "file")
        if path.is_symlink():
            raise GradlabError(f"checkpoint {str(path)!r} is a symbolic link to no file (a "
                               "missing target, or a loop of links)")
        raise GradlabError(f"no such checkpoint file {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(2)
    if not head:
        raise GradlabError(f"checkpoint {str(path)!r} is empty; save module.state_dict() "
                           "with torch.save")
    try:
        with warnings.catch_warnings():   # a legacy pickle's two-line UserWarning
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:            # weights_only refuses whatever is not plain data
        if head[:1] not in (b"P", b"\x80", b"L", b"("):   # zip, pickle (protocols 0-1: L, ()
            raise GradlabError(f"{str(path)!r} is not a file torch.save wrote (neither its "
                               f"zip format nor a pickle; it begins {head!r}); save "
                               "module.state_dict() with torch.save") from None
        other = _other_zip(path) if head == b"PK" else None
        if other:
            raise GradlabError(f"{str(path)!r} is {other}, not one torch.save wrote (its "
                               "zip format holds a folder with data.pkl); save "
                               "module.state_dict() with torch.save") from None
        protocol = re.search(r"Unsupported operand (\d+)", str(err))
        if protocol:
            raise GradlabError(f"{str(path)!r} was saved with a pickle protocol "
                               f"torch.load(weights_only=True) cannot read (operand "
                               f"{protocol.group(1)}); save it again with torch.save's "
                               "default protocol") from None
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+)",
                          str(err))
        said = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        why = (f"it pickles {found.group(1) or found.group(2)}" if found else
               said.group(1).strip()[:120] if said else
               f"{type(err).__name__}: {_first_sentence(str(err))}")
        raise GradlabError(f"{str(path)!r} is not a plain state dict: torch.load(weights_only="
                           f"True) refused it ({why}); save module.state_dict(), not the "
                           "module or another object") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state) or not all(
            isinstance(v, torch.Tensor) for k, v in state.items() if k.startswith(prefix)):
        inner = [k for k, v in state.items() if isinstance(v, dict) and str(k).startswith(
            prefix)] if isinstance(state, dict) else []     # {"model": state_dict, "epoch": 3}
        raise GradlabError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict "
                           "of named tensors; save module.state_dict()" + (
                               f" (its {inner[0]!r} is a dict: torch.save(checkpoint"
                               f"[{inner[0]!r}], path) may be it)" if inner else
                               _odd_entry(state, prefix)))
    under = {k: v for k, v in state.items() if k.startswith(prefix)}   # not a whole model's
    odd = next(((k, v) for k, v in under.items()
                if v.layout != torch.strided or v.device.type == "meta"), None)
    if odd is not None:
        what = "a meta tensor (no numbers)" if odd[1].device.type == "meta" else \
            f"a {str(odd[1].layout).removeprefix('torch.')} tensor"
        raise GradlabError(f"{str(path)!r}: {odd[0]!r} is {what}; a checkpoint holds dense "
                           "tensors (save module.state_dict() of the trained module)")
    under = _widened(path, under)
    state = {**state, **under}
    bad = next((k for k, v in under.items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:            # a diverged training run: no weights to measure
        raise GradlabError(f"{str(path)!r}: {bad!r} holds nan or inf; a checkpoint's weights "
                           "must be finite (was it saved after training diverged?)")
    return state


def _widened(path, tensors):
    """`tensors` with float8 values as float32, which holds each exactly (torch has no
    isfinite for most float8 kinds: it raised NotImplementedError from inside gradlab); a
    kind no float32 can hold (float4_e2m1fn_x2 packs two values in one element) refused
    in one line."""
    import torch

    usual = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    out = {}
    for key, value in tensors.items():
        if value.is_floating_point() and value.dtype not in usual:
            try:
                value = value.to(torch.float32)
            except (RuntimeError, NotImplementedError, TypeError):
                raise GradlabError(
                    f"{str(path)!r}: {key!r} holds {str(value.dtype).removeprefix('torch.')}, "
                    "which gradlab cannot read; save the weights as float16, bfloat16, "
                    "float32 or float64") from None
        out[key] = value
    return out


def _odd_entry(state, prefix):
    """Which entry of a dict keeps it from being a state dict, in words: a key that is no
    name, or a value under `prefix` that is no tensor ({'bias_hh_l0': 3}); else ''."""
    import torch

    if not isinstance(state, dict):
        return ""
    key = next((k for k in state if not isinstance(k, str)), None)
    if key is not None:
        return f" (its key {key!r} ({type(key).__name__}) is not a name)"
    key = next((k for k, v in state.items() if k.startswith(prefix) and
                not isinstance(v, torch.Tensor)), None)
    if key is None:
        return ""
    value = repr(state[key])
    value = value if len(value) <= 40 else value[:37] + "..."
    return f" (its {key!r} is {value} ({type(state[key]).__name__}), not a tensor)"


def _other_zip(path):
    """What a whole zip file torch.load cannot read is, in words ("a zip archive of
    'a.txt'"), or None where it looks like torch.save's (some folder's data.pkl) or is
    damaged (torch's own words say that): torch says "[enforce fail at
    inline_container.cc:180] ." of a zip it did not write."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):   # truncated: "failed finding
        return None                                     # central directory"
    if any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
        return None
    shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    return f"a zip archive of {shown}" if names else "an empty zip archive"
