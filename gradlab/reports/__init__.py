"""Reports: the measurements behind `gradlab report` and `gradlab sweep`, their figures, and
the rendering of a report folder."""
