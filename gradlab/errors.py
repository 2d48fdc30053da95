"""The one exception type gradlab raises for anything a user can fix."""


class GradlabError(ValueError):
    """A bad cell, shape, option or declaration.

    The message names what was received, what was expected and, where it helps, how to
    fix it; the CLI prints it as one line and exits with status 2.
    """
