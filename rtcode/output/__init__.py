"""Step 5, output: the scan formats' registry and writer (formats.py), the renderers
(render.py, render_results.py), de-identification, JSON text and terminal escaping,
and the one atomic writer with the guard that keeps outputs off inputs (files.py)."""
