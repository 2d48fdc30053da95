"""How a declaration that fails is reported: the equation line it failed on (in its
function, a functools.partial's or a callable object's), and what a numpy, torch or math
function applied to a symbolic value means there."""

import linecache


FOREIGN = ("; numpy's, torch's and math's functions cannot take a symbolic value: use "
           "gradlab's (gradlab.tanh, sigmoid, relu, exp, log, sqrt, maximum, ...)")
NEW_NAME_TAKEN = ("a let is named {0}', the name of the new {0}, but the declaration returns "
                  "another value for {0}: return that let, or give it another name")
COMPARED = ("; a symbolic value has no order (Python's max, min, <, > compare): use "
            "gradlab.maximum(a, b), gradlab.minimum(a, b) or relu")


POWER = ("; a number to a symbolic power is not in the language: write "
         "gradlab.exp(math.log(2) * h) for 2 ** h")
SYMPY = ("; SymPy's own functions cannot take a symbolic value of a cell: use gradlab's "
         "(gradlab.tanh, sigmoid, exp, ...), or register one in the activation table "
         "(gradlab.symbolic.activations.activation) and call gradlab.elementwise(sympy.sin)(h)")


def hint(err):
    """What a Python slip on a symbolic value means: FOREIGN, COMPARED, POWER, SYMPY or
    nothing."""
    said = str(err)
    if type(err).__name__ == "SympifyError" and "Value" in said:
        return SYMPY                                   # sympy.sin(s.h)
    if not isinstance(err, TypeError):
        return ""
    if any(k in said for k in ("ufunc", "must be Tensor", "must be real number")):
        return FOREIGN                                 # np.tanh, torch.tanh, math.tanh
    if "** or pow()" in said and "'Value'" in said:
        return POWER                                   # 2 ** s.h
    return COMPARED if "not supported between instances" in said else ""


def line_of(err):
    """An exception's text on one line."""
    return " ".join(str(err).split())


def where(fn, err):
    """' at equation `...` (file:line)' for the line of `fn` an error was raised from."""
    fn = getattr(fn, "func", fn)                    # a functools.partial: its function
    code = getattr(fn, "__code__", getattr(type(fn).__call__, "__code__", None))
    tb, lines = err.__traceback__, []
    while tb is not None:
        lines, tb = lines + [tb.tb_lineno] * (tb.tb_frame.f_code is code), tb.tb_next
    if not lines:
        return ""
    text = linecache.getline(code.co_filename, lines[-1]).strip()   # ('' in a console)
    return f"{f', equation `{text}`' if text else ''} ({code.co_filename}:{lines[-1]})"
