"""What a cell's names print as, kept apart so that the equations read as declared.

Two names may not print alike (h1 and h_1 are both h_{1} in LaTeX; α and alpha, μ_a and
mu_a), and a scripted name (a let a^2 or σ², var(r)'s sigma_r^2) may not have another
name of the cell as its base: a^2 beside a would print as a's square (h' = a^2 a^2, two
quantities written alike), σ_h^2 beside a parameter sigma_h as that parameter's.
"""

import re

import sympy as sp

from .names import rendered
from .printing import latex, text
from ..errors import GradlabError

POWER = re.compile("\\^|[\u00b2\u00b3\u00b9\u2070-\u207f]")    # where a scripted name's base ends


def forms(sym):
    """(shown, how) for each way `sym` prints: its LaTeX as it renders, and its text."""
    return ((rendered(latex(sym)), "${}$ in the derivation's LaTeX"),
            (text(sym), "{} in its text"))


class Typeset:
    """The forms each name of a cell prints as (to the name), and the forms of the bases
    of its scripted names (to the scripted name)."""

    def __init__(self):
        self.shown, self.bases = {}, {}

    def add(self, name, sym, where=""):
        """Record how `name` (SymPy symbol `sym`) prints; refuse it where it would read as
        another name, or as a power of one (or make a scripted name read as its power)."""
        for shown, how in forms(sym):
            if self.shown.setdefault(shown, name) != name:
                raise GradlabError(f"{where}{name!r} and {self.shown[shown]!r} would print "
                                   f"alike ({how.format(shown)}); rename one")
            if shown in self.bases:
                raise GradlabError(f"{where}{name!r} would make {self.bases[shown]!r} print "
                                   f"as its power ({self.bases[shown]} reads as {shown} "
                                   "raised to it); rename one")
        power = POWER.search(name)
        if power is None or power.start() == 0:
            return
        for shown, how in forms(sp.Symbol(name[:power.start()])):
            if shown in self.shown:
                raise GradlabError(f"{where}{name!r} would print as a power of "
                                   f"{self.shown[shown]!r} ({how.format(shown)} raised to "
                                   f"{name[power.start():].lstrip('^')}); rename one")
            self.bases[shown] = name
