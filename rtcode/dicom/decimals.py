"""Decimal String (DS) values to float64: many at once, exactly as ``float()`` reads
them one by one (``parse_ds``)."""

from __future__ import annotations

import numpy as np

# 10**0 .. 10**22: every one an exact double (Python's int to float is exact here)
_POWERS = np.array([float(10**k) for k in range(23)])
_MAX_POWER = 22
_BULK_BYTES = 4096  # below, numpy's fixed cost per call outweighs float()
# Values per numpy pass: its arrays of 8-byte numbers stay below 100 KB; larger ones
# are mapped afresh by malloc on every call, and the page faults cost more than the work.
_PIECE_VALUES = 12000
_BACKSLASH, _POINT, _MINUS, _PLUS, _ZERO, _OTHER, _EXPONENT = b"\\.-+0\x01e"
_EXPONENT_WIDTH = 4  # an exponent's characters read in bulk: a sign and 3 digits
# For bytes.translate: a decimal's characters and the separator stay, e and E become e,
# others become 1.
_CHARACTERS = bytes(
    c if c in b"0123456789.+-\\" else _EXPONENT if c in b"eE" else _OTHER for c in range(256)
)


def parse_ds(data: bytes) -> np.ndarray:
    """Decimal String values separated by backslashes, as float64, exactly as
    ``float()`` converts them value by value.

    Long strings are converted in numpy passes: a plain decimal ([sign] digits
    [. digits], at most 15 digits and point, then perhaps e or E, [sign] and at most 3
    digits) is computed with exact integer arithmetic in doubles and rounded once, as
    ``float()`` does (the mantissa and the power of ten, at most 10**22, are exact
    doubles, so their product or quotient is the correctly rounded value). Exponents are
    read in bulk because some planning systems write every leaf position with one
    (-6.2e-1). Any other value (spaces, more digits, a larger power) goes to ``float()``
    alone. Raises ValueError for a value that is not a finite number.
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
    """The values of ``text``: exponents (``_exponents``) and mantissas (``_mantissas``)
    in numpy passes, what is not plain by ``float()``."""
    text += b"\\"  # every value ends at a backslash
    marked = text.translate(_CHARACTERS)
    codes = np.frombuffer(marked, dtype=np.uint8)
    ends = np.flatnonzero(codes == _BACKSLASH)
    lengths = np.empty_like(ends)
    lengths[0] = ends[0]
    np.subtract(ends[1:], ends[:-1], out=lengths[1:])
    lengths[1:] -= 1
    mantissa_ends, exponents, other = _exponents(marked, codes, ends)
    values, not_plain = _mantissas(
        marked, mantissa_ends, lengths - (ends - mantissa_ends), exponents
    )
    other |= not_plain
    if other.any():
        which = np.flatnonzero(other)
        starts, stops = (ends - lengths)[which].tolist(), ends[which].tolist()
        for i, start, stop in zip(which.tolist(), starts, stops, strict=True):
            values[i] = float(text[start:stop])  # ValueError when not a number
    return values


def _table(marked: bytes, ends: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """A table of (width, values) characters, each value's ``lengths`` characters before
    its end right-aligned in its column, 0 before them: row r holds the character
    width - r places before the end. Row-wise numpy operations then work on all values
    at once."""
    table = np.empty((width, ends.size), dtype=np.uint8)
    padded = np.frombuffer(b"\\" * width + marked, dtype=np.uint8)
    index = np.empty_like(ends)
    for row in range(width):
        np.add(ends, row, out=index)
        padded.take(index, out=table[row])
    table *= _places(width) <= lengths
    return table


def _places(width: int) -> np.ndarray:
    """Places before a value's end, per row of a table of ``width`` rows (a column)."""
    return np.arange(width, 0, -1)[:, None]


def _exponents(
    marked: bytes, codes: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(where each value's mantissa ends: at its e, or its end; its exponent, 0 without
    one, None when no value has one; whether the exponent is not plain: two e, or not
    [sign] 1 to 3 digits)."""
    other = np.zeros(ends.size, dtype=bool)
    at = np.flatnonzero(codes == _EXPONENT)
    if at.size == 0:
        return ends, None, other
    exponents = np.zeros(ends.size, dtype=np.int64)
    owner = np.searchsorted(ends, at)  # the value each e is in
    other |= np.bincount(owner, minlength=ends.size) > 1
    mantissa_ends = ends.copy()
    mantissa_ends[owner] = at
    lengths = ends[owner] - at - 1
    width = _EXPONENT_WIDTH
    table = _table(marked, ends[owner], lengths, width)
    sign = (table == _MINUS) | (table == _PLUS)
    table -= _ZERO
    digit = table < 10
    signed = (sign & (_places(width) == lengths)).any(axis=0)  # a sign first: allowed
    other[owner] |= (
        (lengths < 1)
        | (lengths > width)
        | (digit.sum(axis=0) + signed != lengths)  # anything else, a sign inside
        | (digit.sum(axis=0) < 1)
    )
    table *= digit
    value = np.zeros(owner.size, dtype=np.int64)
    for row in table:
        value *= 10
        value += row
    negative = codes[at + 1] == _MINUS  # a sign is first, right after the e
    exponents[owner] = np.where(negative, -value, value)
    return mantissa_ends, exponents, other


def _mantissas(
    marked: bytes, ends: np.ndarray, lengths: np.ndarray, exponents: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(the values whose mantissas end at ``ends``, ``lengths`` characters each, times
    10**``exponents`` (None: no value has one); whether a value is not plain: float()
    converts those)."""
    width = _width(lengths)
    table = _table(marked, ends, lengths, width)
    back = _places(width)
    other = (lengths < 1) | (lengths > width) | (table == _OTHER).any(axis=0)
    if exponents is not None:
        other |= (table == _EXPONENT).any(axis=0)  # a second e
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
    for row in table:
        values *= 10.0
        values += row
    frac = np.zeros(ends.size, dtype=np.int64)  # the digits after the point
    for places, at in zip(back[:, 0].tolist(), point, strict=True):
        np.copyto(frac, places - 1, where=at)
    scale = _POWERS.take(frac)
    integer = scale * 10.0
    np.divide(values, integer, out=integer)
    np.floor(integer, out=integer)  # exact: what the division drops is below 0.1
    integer *= scale
    integer *= 9.0
    integer *= points > 0  # no correction without a point
    values -= integer  # the mantissa: integer * 10**frac + fraction, exactly
    if exponents is None:
        values /= scale  # one rounding
    else:  # one rounding: times or divided by an exact power of ten (the other factor 1)
        power = exponents - frac
        other |= (power > _MAX_POWER) | (power < -_MAX_POWER)
        values *= _POWERS.take(np.clip(power, 0, _MAX_POWER))
        values /= _POWERS.take(np.clip(-power, 0, _MAX_POWER))
    np.negative(values, out=values, where=minus.any(axis=0))
    return values, other


# What a row of the table costs, against converting one value by float() instead: a
# value longer than the table is wide goes to float(), and a few long values (15
# digits) then do not widen the table for thousands of short ones (4 characters).
_FLOATS_PER_ROW = 1 / 90  # measured: ~5.5 ns a value per row, ~0.5 us per float()


def _width(lengths: np.ndarray) -> int:
    """The table's width (at most 16): what costs least, its rows for every value or
    float() for the values longer than it."""
    counts = np.bincount(np.minimum(lengths, 17), minlength=18)
    longer = lengths.size - np.cumsum(counts)  # values longer than 0, 1, ... 17
    widths = np.arange(17)
    cost = widths * (lengths.size * _FLOATS_PER_ROW) + longer[:17]
    return max(1, int(np.argmin(cost[1:])) + 1)
