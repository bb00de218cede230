"""JSON text that is always JSON: the one encoder for every JSON rtcode writes.

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` for non-finite floats,
which JSON does not have: a billing system's parser then rejects the whole file. The
extractor and the metrics keep numbers finite; should one still slip through, it is
written as ``null`` (cannot say), never as a non-finite literal.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps`` with UTF-8 text kept as it is and no non-finite number."""
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, indent=indent, sort_keys=sort_keys
        )
    except ValueError:  # a NaN or an infinity somewhere: written as null
        return json.dumps(
            finite(value), ensure_ascii=False, allow_nan=False, indent=indent, sort_keys=sort_keys
        )


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
