"""Lowering: SymPy derivations printed to batched numeric code (numpy or torch), compiled
once per (cell, function, backend), with the state-free part of a step hoisted."""
