"""The `gradlab` command group: one-line errors, exit codes, and the subcommands of
`gradlab.commands` (each a thin shell over the library: parse, call one function, print).

Only click loads at start; SymPy and torch load inside the commands that need them, so
`gradlab --help` is instant.
"""

import functools
import os
import signal
import sys

import click

from . import __version__, exits, progress
from .commands import inspect, learning, reports
from .errors import GradlabError, Interrupted, PipeClosed
from .options import allocator_failed, echo, lenient_streams
from .paths import ensure_working_folder


def _one_line(message):
    return " ".join(str(message).split())


OUT_OF_MEMORY = "out of memory; use a smaller --hidden, --steps or --batch"
# click >= 8.2: a bare group invocation; click prints the help on stderr, exit 2
NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class Gradlab(click.Group):
    """A group whose errors are one line on stderr, never a traceback: exit 2 for anything
    a user can fix (and for an unforeseen failure, which is named as one), 130 on Ctrl-C.
    GRADLAB_DEBUG=1 lets an unforeseen exception through with its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None
        except BrokenPipeError:          # `gradlab cells | head`: click would exit 1 on it
            raise PipeClosed() from None

    def add_command(self, cmd, name=None):
        super().add_command(self.in_a_working_folder(cmd), name)

    @classmethod
    def in_a_working_folder(cls, command):
        """`command` (and its subcommands), whose work begins by refusing a current folder
        that no longer exists (`paths.ensure_working_folder`): after its options are read,
        so that --help still answers; a group's callback leaves it to its subcommand."""
        callback = command.callback

        @functools.wraps(callback)
        def checked(*args, **kwargs):
            if click.get_current_context().invoked_subcommand is None:
                ensure_working_folder()
            return callback(*args, **kwargs)

        if callback is not None:
            command.callback = checked
        for sub in getattr(command, "commands", {}).values():
            cls.in_a_working_folder(sub)
        return command

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        progress.new_command()
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            code = e.exit_code
        except NO_ARGS as e:
            e.show()
            code = e.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt, Interrupted):
            echo("gradlab: interrupted", err=True)
            code = 130
        except click.ClickException as e:
            message = e.format_message()
            group = getattr(getattr(e, "ctx", None), "command", None)
            if message.startswith("No such command") and isinstance(group, click.Group):
                message += " Valid: " + ", ".join(group.list_commands(e.ctx)) + "."
            echo(f"gradlab: error: {_one_line(message)}", err=True)
            code = e.exit_code
        except GradlabError as e:
            echo(f"gradlab: error: {_one_line(e)}", err=True)
            code = 2
        except MemoryError:
            echo(f"gradlab: error: {OUT_OF_MEMORY}", err=True)
            code = 2
        except (BrokenPipeError, PipeClosed):
            try:                 # nothing more reaches the reader: flush into /dev/null
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):    # (no real stdout: a test's runner)
                pass
            code = 0                                # `gradlab cells | head`: not an error
        except SystemExit:
            raise
        except BaseException as e:           # GeneratorExit, a user's own BaseException
            if os.environ.get("GRADLAB_DEBUG"):
                raise
            kind = type(e).__name__
            if allocator_failed(e):
                message = OUT_OF_MEMORY
            elif "OutOfMemory" in kind:
                message = "out of memory on the device; use a smaller --hidden, --steps or --batch"
            elif isinstance(e, OSError):
                message = f"{e.strerror or e}" + (f": {e.filename!r}" if e.filename else "")
            else:
                message = (f"internal error ({kind}: {_one_line(e)[:300]}); rerun with "
                           "GRADLAB_DEBUG=1 for the traceback and please report it")
            echo(f"gradlab: error: {message}", err=True)
            code = 2
        else:     # done: standalone, it too ends by sys.exit, so that `main` ends a process
            if not standalone_mode:   # that ran code under test past that code's exit hooks
                return result         # (`exits.end`), as a failure does
            code = result if type(result) is int else 0    # (click's Exit: --version, -h)
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=Gradlab, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, package_name="gradlab", prog_name="gradlab")  # (no lookup)
def cli():
    """Derive recurrent cells' Jacobians with SymPy and measure how gradients decay."""


for command in (inspect.cells, inspect.derive, inspect.verify, inspect.check, inspect.shell,
                reports.report, reports.bench, reports.sweep, learning.train, learning.init_):
    cli.add_command(command)


def main():
    lenient_streams()
    try:
        cli.main(prog_name="gradlab")
    except SystemExit as e:              # (standalone: the status, as click ends with it)
        exits.end(e.code)
        raise
    finally:    # the work is over: a Ctrl-C during the interpreter's shutdown (a probe
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # saw one) is no traceback, no 130
