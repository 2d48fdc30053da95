"""Documents: a cell's derivation as Markdown and text, and the reference pages (conventions,
theory) that `gradlab derive --all` writes beside them. Symbolic only: no torch."""
