"""Decimal String (DS) values to float64: many at once, exactly as ``float()`` reads
them one by one (``parse_ds``)."""

from __future__ import annotations

import numpy as np

_POWERS = 10.0 ** np.arange(18)
_BULK_BYTES = 4096  # below, numpy's fixed cost per call outweighs float()
# Values per numpy pass: its arrays of 8-byte numbers stay below 100 KB; larger ones
# are mapped afresh by malloc on every call, and the page faults cost more than the work.
_PIECE_VALUES = 12000
_BACKSLASH, _POINT, _MINUS, _PLUS, _ZERO, _OTHER = b"\\.-+0\x01"
# For bytes.translate: a decimal's characters and the separator stay, others become 1.
_CHARACTERS = bytes(c if c in b"0123456789.+-\\" else _OTHER for c in range(256))


def parse_ds(data: bytes) -> np.ndarray:
    """Decimal String values separated by backslashes, as float64, exactly as
    ``float()`` converts them value by value.

    Long strings are converted in numpy passes: a plain decimal ([sign] digits
    [. digits], at most 15 digits and point) is computed with exact integer arithmetic
    in doubles and rounded once, as ``float()`` does (the mantissa and the power of ten
    are exact doubles, so their quotient is the correctly rounded value). Any other
    value (an exponent, spaces, more digits) goes to ``float()`` alone. Raises
    ValueError for a value that is not a finite number.
    """
    text = data.rstrip(b" ")
    if len(text) > _BULK_BYTES:
        values = _decimals_in_pieces(text)
    else:
        values = np.array([float(v) for v in text.split(b"\\")], dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("not a finite number")
    return values


def _decimals_in_pieces(text: bytes) -> np.ndarray:
    """``_decimals_piece`` on pieces of about ``_PIECE_VALUES`` values."""
    pieces = text.count(b"\\") // _PIECE_VALUES + 1
    out = []
    start = 0
    for k in range(1, pieces):  # cut at the first backslash past each k-th share
        stop = text.find(b"\\", max(start, len(text) * k // pieces))
        if stop < 0:
            break
        out.append(_decimals_piece(text[start:stop]))
        start = stop + 1
    out.append(_decimals_piece(text[start:]))
    return out[0] if len(out) == 1 else np.concatenate(out)


def _decimals_piece(text: bytes) -> np.ndarray:
    text += b"\\"  # every value ends at a backslash
    marked = text.translate(_CHARACTERS)
    ends = np.flatnonzero(np.frombuffer(marked, dtype=np.uint8) == _BACKSLASH)
    lengths = np.empty_like(ends)
    lengths[0] = ends[0]
    np.subtract(ends[1:], ends[:-1], out=lengths[1:])
    lengths[1:] -= 1
    width = max(1, min(int(lengths.max()), 16))
    # A table of (width, values) characters, each value right-aligned in its column:
    # row r holds the character width - r places before the value's end, 0 before its
    # start. Row-wise numpy operations then work on all values at once.
    table = np.empty((width, ends.size), dtype=np.uint8)
    padded = np.frombuffer(b"\\" * width + marked, dtype=np.uint8)
    index = np.empty_like(ends)
    for row in range(width):
        np.add(ends, row, out=index)
        padded.take(index, out=table[row])
    back = np.arange(width, 0, -1)[:, None]  # places before the value's end, per row
    table *= back <= lengths
    # Values that are not plain decimals: float() converts them below, one by one.
    other = (lengths < 1) | (lengths > 16) | (table == _OTHER).any(axis=0)
    minus = table == _MINUS
    other |= ((minus | (table == _PLUS)) & (back != lengths)).any(axis=0)  # a sign inside
    point = table == _POINT
    points = point.sum(axis=0, dtype=np.uint8)
    table -= _ZERO
    digit = table < 10
    digits = digit.sum(axis=0, dtype=np.uint8)
    other |= (points > 1) | (digits < 1) | (digits + points > 15)
    table *= digit  # signs, point and what lies before a value: 0
    # Read with the point as a 0 digit, the digits left of it weigh ten times too much:
    # whole = 10 * integer * 10**frac + fraction, every number exact (below 10**15).
    values = np.zeros(ends.size)
    for digits in table:
        values *= 10.0
        values += digits
    scale = np.ones(ends.size)  # 10**frac, frac: the digits after the point
    for places, at in zip(back[:, 0].tolist(), point, strict=True):
        np.copyto(scale, _POWERS[places - 1], where=at)
    integer = scale * 10.0
    np.divide(values, integer, out=integer)
    np.floor(integer, out=integer)  # exact: what the division drops is below 0.1
    integer *= scale
    integer *= 9.0
    integer *= points > 0  # no correction without a point
    values -= integer  # the mantissa: integer * 10**frac + fraction
    values /= scale
    np.negative(values, out=values, where=minus.any(axis=0))
    if other.any():
        which = np.flatnonzero(other)
        starts, stops = (ends - lengths)[which].tolist(), ends[which].tolist()
        for i, start, stop in zip(which.tolist(), starts, stops, strict=True):
            values[i] = float(text[start:stop])  # ValueError when not a number
    return values
