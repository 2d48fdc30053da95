"""The symbolic side: the cell language, cells as SymPy equations, the matrix chain rule, and
the printing of derivations. Nothing here imports torch or numpy."""
