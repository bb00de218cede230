"""Carrying control point values forward, for both extraction paths.

A control point after the first holds only the values that changed (PS3.3 C.8.8.14):
gantry, collimator and couch angles, energy, isocentre, rotation direction and device
positions hold from the last control point that gave them (``carry_forward``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def carry_forward(index: Sequence[int], values: np.ndarray, n: int) -> np.ndarray:
    """``values`` (one row per control point in ``index``: ascending, each once) at all
    ``n`` control points: each row carried forward to the later points that omit it.
    Before the first given, NaN (None in an array of objects, e.g. directions)."""
    shape = (n, *values.shape[1:])
    fill = None if values.dtype == object else np.nan
    dtype = object if values.dtype == object else np.float64
    if not len(index):
        return np.full(shape, fill, dtype=dtype)
    if len(index) == n:
        return np.array(values, copy=True)
    if len(index) == 1 and index[0] == 0:  # given once, at the first point
        return np.repeat(values, n, axis=0)
    out = np.full(shape, fill, dtype=dtype)
    repeats = [b - a for a, b in zip(index, [*index[1:], n], strict=True)]
    out[index[0] :] = values.repeat(repeats, axis=0)
    return out
