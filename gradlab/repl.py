"""`gradlab shell`: a Python prompt with gradlab, torch and every catalogue cell loaded.

IPython when it is installed (`pip install 'gradlab[repl]'`), else Python's own `code`
console; `namespace()` is what either starts with.
"""

import code
import sys

from . import exits
from .errors import GradlabError

HOWTO = (
    "gradlab shell: gradlab, torch, sympy and every catalogue cell (lstm, gru, ...) are loaded.\n"
    "  print(lstm); J = lstm.jacobian(); J['c', 'c']; J.terms('h', 'h'); J.explicit(n=2)\n"
    "  p = lstm.init_params(hidden=4, inputs=3); s = (torch.rand(2, 4, dtype=torch.float64),) * 2\n"
    "  J.at(p, s, torch.rand(2, 3, dtype=torch.float64)); help(gradlab.Jacobian)\n"
    "  tanh, sigmoid, ... here are the declaration language's (symbolic): torch.tanh for numbers\n")


def namespace():
    """{name: value} the shell starts with: gradlab, torch, sympy, the language's
    functions and every registered cell under its own name."""
    import sympy
    import torch

    import gradlab
    from gradlab import registry
    from gradlab.symbolic import language
    ns = {"gradlab": gradlab, "torch": torch, "sympy": sympy, "sp": sympy}
    # gradlab's own exports (a call they do not take: one line), Python's sum for anything
    # not symbolic, Python's abs()
    ns.update({k: getattr(gradlab if k in gradlab.__all__ else language, k)
               for k in ("declare", "I", "mean", "var", "sqrt", "norm", "sum",
                         *language.FUNCTIONS) if k != "abs"})
    ns.update({name: registry.cell(name) for name in registry.cells()})
    return ns


def one_line_errors(shell):
    """Have an IPython shell print a GradlabError as gradlab prints one, in one line (its
    traceback is of gradlab's insides, not of what was typed); other errors as usual."""
    def show(shell, etype, value, tb, tb_offset=None):
        print(f"gradlab: error: {value}", file=sys.stderr)
    shell.set_custom_exc((GradlabError,), show)


class Console(code.InteractiveConsole):
    """Python's console, printing a GradlabError in one line (`one_line_errors`), and
    noting that an error was shown (`failed`): commands piped in all run, as at a prompt,
    and then end with status 1 if one failed (unless an exit() gave its own), so a
    script's failed assert is not a pass."""

    failed = False

    def showtraceback(self):
        self.failed = True
        value = sys.exc_info()[1]
        if isinstance(value, GradlabError):
            self.write(f"gradlab: error: {value}\n")
        else:
            super().showtraceback()

    def showsyntaxerror(self, filename=None, **options):
        self.failed = True
        super().showsyntaxerror(filename, **options)


def _interactive(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def start(*, plain=False, stdout=None):
    """Print the how-to and start IPython (or the plain console: `plain`, no IPython, or
    commands piped in rather than typed)."""
    out = stdout or sys.stdout
    if sys.stdin is None or out is None:          # started with stdin or stdout closed
        raise GradlabError("gradlab shell needs a standard input and output to talk to; "
                           "run it from a terminal, or pipe commands into it")
    exits.no_verdict()                 # (its exit hooks run: IPython's saves the history)
    ns = namespace()
    ipython = None
    if not plain:
        try:
            import IPython as ipython
        except ImportError:
            ipython = None
    out.write(HOWTO)
    out.flush()
    if ipython is not None and _interactive(sys.stdin):
        # (commands piped in go to the plain console: IPython's would colour the output,
        # print its prompts, and end 0 on sys.exit(3))
        argv = ["--no-banner"]
        argv.append("--InteractiveShellApp.exec_lines=['from gradlab.repl import "
                    "one_line_errors; one_line_errors(get_ipython())']")
        ipython.start_ipython(argv=argv, user_ns=ns)
    else:
        added = "" not in sys.path     # as Python's own prompt: the current folder's modules
        if added:
            sys.path.insert(0, "")
        try:
            console = Console(locals=ns)
            console.interact(banner="", exitmsg="")
        finally:
            if added and "" in sys.path:
                sys.path.remove("")
        if console.failed and not _interactive(sys.stdin):
            raise SystemExit(1)        # piped in: an error ends it as failed
