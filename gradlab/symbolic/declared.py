"""What a declaration names, checked as the cell is made: the cell's name (a file name
and a registry key), its state parts, parameters and input (each a plain name, each
once), and the gate bias (an n-vector parameter)."""

import keyword

import sympy as sp

from .names import check_name
from ..errors import GradlabError


def refuse(cell, why):
    raise GradlabError(f"cell {cell!r}: {why}")


def check_cell_name(name):
    """A cell's name is a file name (`gradlab derive --out`) and a registry key."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise GradlabError(f"cell name {name!r} is not a plain Python identifier (letters, "
                           "digits, _; not a keyword): it names the cell's files, so give "
                           "name='my_cell' or rename the function")


def state_parts(cell, what, value):
    """`state=` as "h c" or a sequence of names, each checked."""
    if isinstance(value, str):
        names = tuple(value.split())
    elif isinstance(value, (tuple, list)):
        names = tuple(value)
    else:
        refuse(cell, f"{what}= must be a string of names (\"h c\") or a list of them, got "
                      f"{type(value).__name__}")
    if not names:
        refuse(cell, f"{what}= {value!r} names no part; give at least one, e.g. \"h\"")
    for p in names:
        why = check_name(p, "state part")
        if why:
            refuse(cell, f"state={value!r}: {why}")
    return names


def param_specs(cell, params):
    """`params=` as "W U b", a list of names, or a dict {name: shape}, each name checked."""
    if isinstance(params, dict):
        names, specs = list(params), dict(params)
    elif isinstance(params, str):
        names = params.split()
        specs = dict.fromkeys(names)
    elif isinstance(params, (tuple, list)):
        names = list(params)
        specs = dict.fromkeys(p for p in names if isinstance(p, str))
    else:
        refuse(cell, f"params= must be a string of names (\"W U b\"), a list or a dict "
                      f"{{name: shape}}, got {type(params).__name__}")
    if not names:       # the params carry the dtype, device and sizes every call reads
        refuse(cell, "params= names no parameter; a cell needs at least one (e.g. \"W\")")
    for p in names:
        why = check_name(p, "parameter")
        if why:
            refuse(cell, f"params: {why}")
    twice = sorted({p for p in names if names.count(p) > 1})
    if twice:
        refuse(cell, f"parameter {twice[0]!r} is declared twice in params; each parameter "
                      "needs its own name")
    return specs


def check_names(cell, state, params, inputs):
    """Every name once across state, input and parameters; h' (the new h, printed h_p in
    lowered code) not shadowed by a declared h_p."""
    why = check_name(inputs, "input")
    if why:
        refuse(cell, f"inputs={inputs!r}: {why}")
    seen = {}
    for role, names in (("state part", state), ("input", (inputs,)), ("parameter", params)):
        for p in names:
            if p in seen:
                again = "twice" if seen[p] == role else f"as {_a(seen[p])} and as {_a(role)}"
                refuse(cell, f"{p!r} is declared {again}; each state part, input and "
                              "parameter needs its own name")
            seen[p] = role
    for p in state:
        if f"{p}_p" in seen:
            refuse(cell, f"{seen[f'{p}_p']} {p}_p would be the same variable as the new "
                          f"state part {p}' in the lowered code; rename {p}_p")


def _a(role):
    return ("an " if role[0] in "aeiou" else "a ") + role


def check_gate_bias(cell, gate_bias, shapes):
    if gate_bias is None:
        return
    biases = [p for p, s in shapes.items() if s[1] == sp.S.One and s[0] != sp.S.One]
    name = gate_bias[1:] if isinstance(gate_bias, str) and gate_bias.startswith("-") \
        else gate_bias
    if name not in biases:
        valid = ", ".join(biases) or "none (declare an n-vector parameter)"
        refuse(cell, f"gate_bias={gate_bias!r} names no n-vector parameter; valid: {valid} "
                      "(or '-NAME' where the gate forgets)")
