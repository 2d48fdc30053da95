"""The one exception type gradlab raises for anything a user can fix."""


class GradlabError(ValueError):
    """A bad cell, shape, option or declaration.

    The message names what was received, what was expected and, where it helps, how to
    fix it; the CLI prints it as one line and exits with status 2.
    """


def choice(value, valid, what):
    """`value` if it is one of `valid`, else a GradlabError naming it and the valid ones."""
    if value not in valid:
        raise GradlabError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")
    return value
