"""The cell registry: built-in cells register themselves; lookups list the valid names."""

from .errors import GradlabError

CELLS = {}


def register(cell):
    """Add a declared cell to the registry (used as a decorator above `@declare`)."""
    if cell.name in CELLS:
        raise GradlabError(f"a cell named '{cell.name}' is already registered")
    CELLS[cell.name] = cell
    return cell


def _load():
    from . import cells  # noqa: F401  (declaring the built-in cells registers them)


def cells():
    """Every registered cell name, in catalogue order."""
    _load()
    return list(CELLS)


def cell(name):
    """The registered cell called `name`; a `Cell` object is returned as it is."""
    from .cell import Cell
    if isinstance(name, Cell):
        return name
    _load()
    try:
        return CELLS[name]
    except KeyError:
        raise GradlabError(f"unknown cell {name!r}; valid cells: {', '.join(CELLS)}") from None
