"""JSON text that is always JSON: the one encoder for every JSON rtcode writes, and
``indented``, the same text as ``dumps(indent=2)`` made faster.

Python's ``json`` writes ``NaN``, ``Infinity`` and ``-Infinity`` for non-finite floats,
which JSON does not have: a billing system's parser then rejects the whole file. The
extractor and the metrics keep numbers finite; should one still slip through, it is
written as ``null`` (cannot say), never as a non-finite literal.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring
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


def indented(value: Any, pad: str = "") -> str:
    """``dumps(value, indent=2)`` with every line after the first prefixed by ``pad``
    (the value's place in an enclosing document), byte for byte, about twice as fast:
    the standard library's indenting encoder is a chain of Python generators. Scan
    plans are indented once each, for the cache (``output.formats``)."""
    out: list[str] = []
    try:
        _put(value, pad, out)
    except TypeError:  # a key or value the JSON module would convert: let it
        return dumps(value, indent=2).replace("\n", "\n" + pad)
    return "".join(out)


_KEYS: dict[str, str] = {}  # a key's text and ": ", for the few hundred names rtcode writes


def _put(value: Any, pad: str, out: list[str]) -> None:
    kind = type(value)
    if kind is dict:
        if not value:
            out.append("{}")
            return
        inner = pad + "  "
        sep, after = "{\n" + inner, ",\n" + inner
        for k, v in value.items():
            key = _KEYS.get(k)
            if key is None:
                key = encode_basestring(k) + ": "  # TypeError for a key that is not text
                if len(_KEYS) < 4096:
                    _KEYS[k] = key
            _item(sep + key, v, inner, out)
            sep = after
        out.append("\n" + pad + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = pad + "  "
        sep, after = "[\n" + inner, ",\n" + inner
        for v in value:
            _item(sep, v, inner, out)
            sep = after
        out.append("\n" + pad + "]")
    else:
        out.append(_scalar(value))


def _item(head: str, value: Any, pad: str, out: list[str]) -> None:
    """One member or element: ``head`` (separator, indent, key) then its value."""
    kind = type(value)
    if kind is str:
        out.append(head + encode_basestring(value))
    elif kind is dict or kind is list or kind is tuple:
        out.append(head)
        _put(value, pad, out)
    else:
        out.append(head + _scalar(value))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else "null"
    raise TypeError(f"value of type {type(value).__name__}")
