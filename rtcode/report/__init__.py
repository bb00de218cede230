"""rtcode report: the per-patient report. ``patients`` builds it (scan plus DVH evidence)
and renders text and JSON; ``html`` the self-contained page, with ``readable`` (values,
names and paths in words) and ``plots`` (the figures)."""
