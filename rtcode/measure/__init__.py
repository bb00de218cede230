"""Step 3, measure: per-beam metrics (apertures, modulation) and DVHs."""
