"""What a cell is made of, fixed once declared: `FrozenDict` (its shapes, its equations)
and the shape a parameter is given or takes from its name (`shape_of`)."""

from .language import SIZES
from ..errors import GradlabError, GradlabTypeError


class FrozenDict(dict):
    """A dict that refuses to change: a cell is one set of equations (the catalogue's are
    shared by every caller, so an edit would change them for the whole session)."""

    def _fixed(self, *args, **kwargs):
        raise GradlabTypeError("a cell's parameters and equations are fixed once it is "
                               "declared: this mapping takes no changes; declare a new cell "
                               "(gradlab.declare), or copy it first, dict(...)")

    __setitem__ = __delitem__ = __ior__ = _fixed
    pop = popitem = clear = update = setdefault = _fixed

    def __reduce__(self):                   # copies and pickles: made whole, not filled in
        return type(self), (dict(self),)


SHAPES = {("n",): "n", ("n", "1"): "n", ("n", "n"): "n n", ("n", "m"): "n m", ("1",): "1",
          ("1", "1"): "1"}
BY_NAME = (("W", "n n"), ("V", "n n"), ("R", "n n"), ("U", "n m"), ("b", "n"), ("p", "n"))


def shape_of(name, spec=None):
    """(rows, cols) of a parameter, from its shape spec or else from its name's first
    letter (W*, V*, R*: n x n; U*: n x m; b*, p*: n); any other name must be given one."""
    if spec is None:
        spec = next((shape for first, shape in BY_NAME if name.startswith(first)), None)
        if spec is None:
            raise GradlabError(
                f"parameter {name!r} has no shape gradlab can infer from its name (W*, V*, "
                f"R*: n x n; U*: n x m; b*, p*: n-vectors); give it one, e.g. "
                f"params={{..., {name!r}: \"1\"}} for a learnable scalar, \"n\", \"n n\" "
                "or \"n m\"")
    dims = spec.split() if isinstance(spec, str) else spec
    dims = tuple(str(d) for d in dims) if isinstance(dims, (tuple, list)) else None
    if dims not in SHAPES:
        raise GradlabError(f"parameter '{name}' has shape {spec!r}; use 'n', 'n n', 'n m' or "
                           "'1' (a scalar)")
    dims = dims + ("1",) if len(dims) == 1 else dims
    return tuple(SIZES[d] for d in dims)
