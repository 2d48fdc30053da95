"""Non-ASCII characters of a user's names, written so that pdflatex reads them.

A declaration may name a state or weight hα or Wβ (Python identifiers are Unicode).
MathJax and KaTeX show such a name as it is, but pdflatex stops at the first Greek
letter in math mode. Each Greek letter becomes its command (α as {\\alpha}, braced so
that αx stays two letters; Greek capitals that look like Latin ones as those letters),
an accented letter its accent command (ñ as \\tilde{n}, as n~ prints), sub- and
superscript digits a script, and any other non-ASCII character is set as text (\\text{ø},
which amsmath and a UTF-8 document accept for the Latin letters LaTeX's utf8 input
knows; other scripts need a font that has them).
"""

import unicodedata

# capitals LaTeX has a command for; the others (Alpha, Beta, ...) look like Latin letters
GREEK_CAPITALS = {"GAMMA", "DELTA", "THETA", "LAMDA", "XI", "PI", "SIGMA", "UPSILON",
                  "PHI", "PSI", "OMEGA"}
GREEK_LOOKALIKES = {"ALPHA": "A", "BETA": "B", "EPSILON": "E", "ZETA": "Z", "ETA": "H",
                    "IOTA": "I", "KAPPA": "K", "MU": "M", "NU": "N", "OMICRON": "O",
                    "RHO": "P", "TAU": "T", "CHI": "X"}
# combining marks (what NFD splits an accented letter into) as math accents
ACCENTS = {"\u0300": "grave", "\u0301": "acute", "\u0302": "hat", "\u0303": "tilde",
           "\u0304": "bar", "\u0306": "breve", "\u0307": "dot", "\u0308": "ddot",
           "\u030c": "check", "\u20d7": "vec"}
SMALL = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "varsigma", "tau",
         "upsilon", "phi", "chi", "psi", "omega", "varphi", "varepsilon"}
SYMBOLS = {"MICRO SIGN": "{\\mu}", "SCRIPT SMALL L": "{\\ell}",      # letter variants
           "GREEK THETA SYMBOL": "{\\vartheta}", "GREEK PHI SYMBOL": "{\\phi}",
           "GREEK LUNATE EPSILON SYMBOL": "{\\epsilon}", "GREEK RHO SYMBOL": "{\\varrho}",
           "GREEK PI SYMBOL": "{\\varpi}"}
SMALL_SPELLING = {"lamda": "lambda", "final sigma": "varsigma",    # (φ and ε as their
                  "phi": "varphi", "epsilon": "varepsilon"}        # Unicode forms look)


def _greek(name):
    """LaTeX for a Greek letter (or ℓ) from its Unicode name, or None."""
    if name.startswith("GREEK CAPITAL LETTER "):
        letter = name.removeprefix("GREEK CAPITAL LETTER ")
        if letter in GREEK_CAPITALS:
            return "{\\%s}" % ("Lambda" if letter == "LAMDA" else letter.capitalize())
        return GREEK_LOOKALIKES.get(letter)
    if name.startswith("GREEK SMALL LETTER "):
        letter = name.removeprefix("GREEK SMALL LETTER ").lower()
        if letter == "omicron":
            return "o"
        word = SMALL_SPELLING.get(letter, letter)
        return "{\\%s}" % word if word in SMALL else None
    return SYMBOLS.get(name)


def _script(name):
    """^{d} or _{d} for a super- or subscript digit or sign, else None."""
    for kind, mark in (("SUPERSCRIPT ", "^"), ("SUBSCRIPT ", "_")):
        if name.startswith(kind):
            word = name[len(kind):]
            digits = {"ZERO": 0, "ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5,
                      "SIX": 6, "SEVEN": 7, "EIGHT": 8, "NINE": 9}
            if word in digits:
                return "%s{%d}" % (mark, digits[word])
            if word in ("PLUS SIGN", "MINUS"):
                return "%s{%s}" % (mark, "+" if word == "PLUS SIGN" else "-")
    return None


def _split(char):
    """An accented character as its base and marks where every mark has a math accent
    (é as e and an acute), else the character whole (ç: pdflatex knows it, not its
    cedilla alone)."""
    parts = unicodedata.normalize("NFD", char)
    return parts if all(c in ACCENTS for c in parts[1:]) else char


def ascii_latex(text):
    """`text` (LaTeX from SymPy, perhaps holding non-ASCII characters) with each such
    character written as LaTeX that pdflatex reads; ASCII text is returned as it is. A
    run of script digits is one script (r₁₂ as r_{12}), and a name that ends in a
    superscript before a prime is braced ({r^{2}}', not the double superscript r^{2}')."""
    if text.isascii():
        return text
    out, scripts = [], []                   # scripts: (mark, digits) of the current run
    chars = [c for char in text for c in _split(char)]
    for i, char in enumerate(chars):
        name = unicodedata.name(char, "")
        script = _script(name)
        if script is not None:
            if scripts and scripts[-1][0] == script[0]:
                scripts[-1][1].append(script[2:-1])
            else:
                scripts.append((script[0], [script[2:-1]]))
            if i + 1 < len(chars) and _script(unicodedata.name(chars[i + 1], "")):
                continue
            out.append("".join("%s{%s}" % (m, "".join(d)) for m, d in scripts))
            if scripts[-1][0] == "^" and i + 1 < len(chars) and chars[i + 1] == "'":
                out = ["{" + "".join(out) + "}"]
            scripts = []
        elif char.isascii():
            out.append(char)
        elif char in ACCENTS and out:            # on the letter before it
            out[-1] = "\\%s{%s}" % (ACCENTS[char], out[-1])
        else:
            out.append(_greek(name) or "\\text{%s}" % char)
    return "".join(out)
