"""The built-in cells, in catalogue order (derivations/README.md); a module registers its cells."""

from . import vanilla, written_memories, gru_torch, lstm, peephole, later  # noqa: F401
