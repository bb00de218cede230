"""Measuring, after linking and before coding: per-beam metrics (apertures, modulation)
and DVHs."""
