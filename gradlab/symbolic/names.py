"""The names a declaration may give: state parts, parameters, the input and lets.

Each is written as `s.NAME` in a declaration and printed as it is in text, LaTeX and
Markdown, so a name may not be Python's (a keyword), gradlab's (a leading _, the
builder's own attributes) or read as a function or an operator in the printed equations.
"""

import keyword
import re
import unicodedata

# A let name: printed as it is in text, LaTeX and Markdown, so nothing there may have a
# meaning of its own (%, &, {, $, <); a letter first, so that it never reads as a number
LET_NAME = re.compile(r"(?!.*__)[^\W\d_][\w']*(?:\^[\w']+)?(?<!_)~?'*")  # printable as one

RESERVED = ("let", "hidden_size", "input_size", "I", "declared", "lets")   # a Builder's own
# letters that print as the identity I, and marks that print as a transpose or a prime
LIKE_I = ("Ι", "І", "Ӏ", "ǀ", "|")               # Greek, Cyrillic, palochka, click
LIKE_MARKS = ("ᵀ", "ʹ", "′", "″", "ˈ", "‵")
FUNCTION_NAMES = ("tanh", "σ", "relu", "softplus", "exp", "log", "max", "min", "sign", "diag",
                  "θ", "theta", "H", "Η", "sigma")  # relu' prints θ(v) (LaTeX \theta), a
                                # tie H(v) (Greek Eta Η prints as H); σ(v) is LaTeX \sigma(v)


def check_name(name, what):
    """Refuse a state part, parameter or input name a declaration cannot use as `s.NAME`.

    Returns None if `name` is usable, else the reason (one line, naming the rule)."""
    if not isinstance(name, str):
        return f"{what} name {name!r} is a {type(name).__name__}, not a string"
    if not name.isidentifier():
        return f"{what} name {name!r} is not a Python identifier (letters, digits, _)"
    if keyword.iskeyword(name):
        return f"{what} name {name!r} is a Python keyword; s.{name} cannot be written"
    if name.startswith("_"):
        return f"{what} name {name!r} starts with '_', which gradlab keeps for itself"
    if "__" in name or name.endswith("_"):     # LaTeX: W__T is W^{T}, h_ is h
        return (f"{what} name {name!r} has '__' or a final '_', which print as a superscript "
                "or as nothing in LaTeX (W__T as W^T, h_ as h); choose another")
    if unicodedata.normalize("NFKC", name) != name:      # Python reads s.ﬁ as s.fi
        return (f"{what} name {name!r} is read by Python as "
                f"{unicodedata.normalize('NFKC', name)!r} when written s.{name}; choose "
                "another")
    if name in RESERVED:
        return (f"{what} name {name!r} is reserved: s.{name} is the builder's own "
                f"({', '.join(RESERVED)} are)")
    return (function_name(name, what) or reduction_name(name, what)
            or lookalike(name, what))


def check_let_name(name):
    """Refuse a let name that is not one, or prints as something else (a function, the
    identity, a reduction's name, a power with a prime on it); None if usable."""
    if not isinstance(name, str) or not LET_NAME.fullmatch(name):
        return (f"let name {name!r} is not a name: a letter, then letters, digits, _ (not __, "
                "not last) or primes ('), at most one ^ with a letter or digit after it, then "
                "maybe ~ (ñ) and primes, e.g. "
                "\"c'\", \"n~\", \"sigma_r^2\"")
    if name == "I":      # printed, it would be the identity: 0.5 I read as 0.5 times I
        return "let name 'I' is how the identity prints (s.I); choose another"
    return (function_name(name, "let") or reduction_name(name, "let")
            or scripted_name(name, "let") or lookalike(name, "let"))


def lookalike(name, what):     # Wᵀ would print as W's transpose, Ι (iota) as the identity
    if name in LIKE_I:
        return (f"{what} name {name!r} prints as the identity I; choose another")
    mark = next((c for c in name if c in LIKE_MARKS), None)
    if mark is not None:
        return (f"{what} name {name!r} holds {mark!r} (U+{ord(mark):04X}), which prints as "
                + ("a transpose (W.T is W's own); choose another" if mark == "ᵀ" else
                   "a prime; write a prime as '"))
    return None


def function_name(name, what):      # "exp tanh(...)" would read as exp applied to tanh
    return (f"{what} name {name!r} is how a function prints ({name}(...)), so the equations "
            "would read wrong; choose another") if name in FUNCTION_NAMES else None


def reduction_name(name, what):     # a let norm_r would print as ‖r‖, the norm of r
    for prefix, reads in (("norm_", "norm({0}), printed ‖{0}‖"), ("sum_", "sum({0}), printed Σ_{0}")):
        if name.startswith(prefix) and len(name) > len(prefix):
            return (f"{what} name {name!r} is the name gradlab gives "
                    f"{reads.format(name[len(prefix):])}; choose another")
    return None


def scripted_name(name, what):     # r^2' or x^2~: the prime or tilde would sit on the 2
    if "^" not in name:
        return None
    power = name[name.index("^") + 1:]
    if "'" in power or "~" in power:
        return (f"{what} name {name!r} has a prime or ~ after its ^, which LaTeX would set "
                f"on the exponent (or refuse); put it before the ^, as r'^2")
    if power == "T":
        return f"{what} name {name!r} reads as a transpose in LaTeX; choose another"
    return None


def rendered(tex):
    """LaTeX as it looks: Greek letters and ℓ written as their commands, a combining tilde
    as tilde{...}, so that α and alpha (or ñ and n~) compare as the one glyph they render
    (a command braced apart from the letters after it, {\\alpha}x, as the command)."""
    tex = re.sub(r"\{(\\[A-Za-z]+)\}", r"\1", tex)
    out = []
    for ch in unicodedata.normalize("NFD", tex):
        name = unicodedata.name(ch, "")
        if name.startswith(("GREEK SMALL LETTER ", "GREEK CAPITAL LETTER ")):
            word = name.rsplit(" ", 1)[-1].lower()
            out.append("\\" + (word if "SMALL" in name else word.capitalize()))
        elif ch == "ℓ":
            out.append("\\ell")
        elif ch == "\u0303" and out:
            out[-1] = "\\tilde{" + out[-1] + "}"
        else:
            out.append(ch)
    return "".join(out).replace(" ", "")

