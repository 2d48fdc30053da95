"""The built-in cells of CELLS.md, in catalogue order. Importing a module registers its cells."""

from . import vanilla, written_memories, gru_torch, lstm, peephole, later  # noqa: F401
