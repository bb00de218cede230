"""Step 2, extraction, fast path: a beam's control points parsed in bulk from bytes.

A VMAT arc has ~180 control points of 120 leaf positions each. Asking pydicom for
them element by element builds a Python object per value (tens of milliseconds per
plan, most of a scan's time). pydicom leaves a sequence's bytes unparsed until it is
used, so here the Control Point Sequence's bytes are walked once, only the handful
of elements rtcode uses are picked out, and their decimal strings are converted in
one numpy pass (``parse_ds``).

This path only ever speeds up the ordinary case. Whenever anything is unusual (big
endian, an unexpected VR, a value that is not a plain decimal, a count that does not
match, a limit exceeded, a damaged length) it returns None and the element-by-element
path in ``extract.py`` runs instead: that path is the reference, and it words the
error a damaged file deserves. Both must give the same facts; tests compare them.
"""

from __future__ import annotations

import struct

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from .facts import BeamLimitingDevice, ControlPoints
from .limits import Limits

# Tags as (group << 16 | element).
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_BLDPS = 0x300A011A  # BeamLimitingDevicePositionSequence
_DEVICE_TYPE = 0x300A00B8  # RTBeamLimitingDeviceType
_LEAF_JAW = 0x300A011C  # LeafJawPositions
_WEIGHT = 0x300A0134  # CumulativeMetersetWeight
_DIRECTION = 0x300A011F  # GantryRotationDirection
_ISOCENTER = 0x300A012C  # IsocenterPosition
_SCALARS = {  # carried-forward numbers, in ControlPoints order
    0x300A011E: "gantry",  # GantryAngle
    0x300A0120: "collimator",  # BeamLimitingDeviceAngle
    0x300A0122: "couch",  # PatientSupportAngle
    0x300A0114: "energy",  # NominalBeamEnergy
}
_NUMBERS = {_WEIGHT, _ISOCENTER, *_SCALARS}
_CP_WANTED = {_WEIGHT, _DIRECTION, _ISOCENTER, _BLDPS, *_SCALARS}
_DEVICE_WANTED = {_DEVICE_TYPE, _LEAF_JAW}
_EXPECTED_VR = {**dict.fromkeys(_NUMBERS | {_LEAF_JAW}, b"DS"), _BLDPS: b"SQ"}
_EXPECTED_VR.update({_DIRECTION: b"CS", _DEVICE_TYPE: b"CS"})
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
}  # fmt: skip
_TAG_LEN = struct.Struct("<II")
_EXPLICIT = struct.Struct("<I2sH")
_DEPTH = 8  # nesting depth this path follows; deeper: the reference path decides


class _Unusual(Exception):
    """Something the fast path does not handle: the reference path takes over."""


# ------------------------------------------------------------ walking the bytes


def _tag(raw: int) -> int:
    # Tags are stored as group, element (two little-endian uint16): swap the halves.
    return ((raw & 0xFFFF) << 16) | (raw >> 16)


def _items(buf: bytes, start: int, end: int | None, implicit: bool, wanted, depth: int):
    """The items of a sequence value in ``buf[start:end]`` (``end`` None: undefined
    length, up to the sequence delimiter), each a dict of the wanted elements.

    Returns (items, position after the sequence)."""
    items = []
    pos = start
    limit = len(buf) if end is None else end
    while pos < limit:
        if pos + 8 > len(buf):
            raise _Unusual
        raw, length = _TAG_LEN.unpack_from(buf, pos)
        tag = _tag(raw)
        pos += 8
        if tag == _SEQ_END:
            if end is not None:
                raise _Unusual
            return items, pos
        if tag != _ITEM:
            raise _Unusual
        if length == _UNDEFINED:
            item, pos = _elements(buf, pos, None, implicit, wanted, depth)
        else:
            if pos + length > limit:
                raise _Unusual
            item, after = _elements(buf, pos, pos + length, implicit, wanted, depth)
            pos = after
        items.append(item)
    if end is None or pos != end:
        raise _Unusual  # no sequence delimiter, or an item overran the sequence
    return items, pos


def _elements(buf: bytes, start: int, end: int | None, implicit: bool, wanted, depth: int):
    """The wanted elements of one item: {tag: bytes, or a list of items for _BLDPS}."""
    found: dict[int, object] = {}
    pos = start
    size = len(buf)
    limit = size if end is None else end
    while pos < limit:
        if pos + 8 > size:
            raise _Unusual
        if implicit:
            raw, length = _TAG_LEN.unpack_from(buf, pos)
            tag = _tag(raw)
            vr = None
            pos += 8
        else:
            raw, vr, length = _EXPLICIT.unpack_from(buf, pos)
            tag = _tag(raw)
            pos += 8
            if tag == _ITEM_END:
                vr = None
                length = _TAG_LEN.unpack_from(buf, pos - 8)[1]
            elif vr in _LONG_VRS:
                if pos + 4 > size:
                    raise _Unusual
                (length,) = struct.unpack_from("<I", buf, pos)
                pos += 4
        if tag == _ITEM_END:
            if end is not None or length != 0:
                raise _Unusual
            return found, pos
        if tag >> 16 == 0xFFFE:
            raise _Unusual
        if vr is not None and tag in wanted and vr != _EXPECTED_VR[tag]:
            raise _Unusual  # e.g. UN or a binary VR: the reference path decodes it
        if length == _UNDEFINED:
            if depth >= _DEPTH or vr == b"UN":
                raise _Unusual
            # Only sequences have an undefined length here (no pixel data in a beam).
            inner = _DEVICE_WANTED if tag == _BLDPS else frozenset()
            value, pos = _items(buf, pos, None, implicit, inner, depth + 1)
        else:
            if pos + length > limit:
                raise _Unusual
            if tag == _BLDPS:
                if depth >= _DEPTH:
                    raise _Unusual
                value, _ = _items(buf, pos, pos + length, implicit, _DEVICE_WANTED, depth + 1)
            elif tag in wanted:
                value = buf[pos : pos + length]
            else:
                value = None
            pos += length
        if tag in wanted:
            if tag in found:
                raise _Unusual  # the same element twice in one item
            found[tag] = value
    if end is None:
        raise _Unusual  # no item delimiter before the end of the bytes
    if pos != end:
        raise _Unusual
    return found, pos


# ----------------------------------------------------------- decimal strings


# Byte classes for decimal strings: digit, point, minus, plus, backslash, other.
_DIGIT, _POINT, _MINUS, _PLUS, _SEP, _OTHER = range(6)
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
_CLASS[ord("0") : ord("9") + 1] = _DIGIT
for _char, _kind in ((".", _POINT), ("-", _MINUS), ("+", _PLUS), ("\\", _SEP)):
    _CLASS[ord(_char)] = _kind
_DIGIT_VALUE = np.zeros(256)
_DIGIT_VALUE[ord("0") : ord("9") + 1] = np.arange(10)
_POWERS = 10.0 ** np.arange(16)
_BULK_BYTES = 4096


def parse_ds(data: bytes) -> np.ndarray:
    """Decimal String values separated by backslashes, as float64, in one numpy pass.

    When every value is a plain decimal ([sign] digits [. digits], at most 15 digits,
    no spaces but the padding at the end) the values are computed with integer
    arithmetic that rounds exactly as ``float()`` does: the mantissa and the power of
    ten are both exact doubles, so their quotient is the correctly rounded value.
    Anything else (an exponent, inner spaces, more digits) is converted value by
    value with ``float()``. Raises ValueError for a value that is not a finite number.
    """
    text = data.rstrip(b" ")
    # numpy's fixed cost per call outweighs float() below a few hundred values
    values = _plain_decimals(text) if len(text) > _BULK_BYTES else None
    if values is None:
        values = np.array([float(v) for v in text.split(b"\\")], dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("not a finite number")
    return values


def _plain_decimals(text: bytes) -> np.ndarray | None:
    buf = np.frombuffer(text, dtype=np.uint8)
    if buf.size == 0:
        return None
    kind = _CLASS[buf]
    if (kind == _OTHER).any():
        return None
    sep = kind == _SEP
    ends = np.append(np.flatnonzero(sep), buf.size)  # one past each value
    digit = kind == _DIGIT
    cum = np.cumsum(digit, dtype=np.int32)
    digits_to_end = cum[ends - 1]  # for an empty value, ends - 1 is a separator
    n_digits = np.diff(digits_to_end, prepend=0)
    if n_digits.min() < 1 or n_digits.max() > 15:
        return None
    signs = np.flatnonzero((kind == _MINUS) | (kind == _PLUS))
    # A sign must open its value: at byte 0 or right after a backslash.
    if signs.size and not ((signs == 0) | sep[np.maximum(signs - 1, 0)]).all():
        return None
    vid = np.cumsum(sep, dtype=np.int32)  # value index (a separator counts as the next)
    after = digits_to_end[vid] - cum  # digits after this byte in its value (<= 15)
    mantissa = np.bincount(vid, weights=_DIGIT_VALUE[buf] * _POWERS[after], minlength=ends.size)
    points = np.flatnonzero(kind == _POINT)
    frac = np.zeros(ends.size, dtype=np.int64)
    if points.size:
        owner = vid[points]
        if (np.diff(owner) == 0).any():
            return None  # two points in one value
        frac[owner] = after[points]
    values = mantissa / _POWERS[frac]
    values[vid[kind == _MINUS]] *= -1.0
    return values


# ------------------------------------------------------------- control points


def control_points(
    beam: Dataset,
    tag: int,
    path: str,
    devices: list[BeamLimitingDevice],
    declared: int | None,
    limits: Limits,
) -> ControlPoints | None:
    """The beam's control points from the raw bytes of its sequence ``tag``, or None
    when anything is unusual (the element-by-element path then decides)."""
    try:
        return _control_points(beam, tag, path, devices, declared, limits)
    except (_Unusual, ValueError, OverflowError, struct.error, IndexError):
        return None


def _encoding(ds: Dataset) -> bool:
    """Whether the dataset is implicit VR; _Unusual for big endian or unknown."""
    implicit, little = ds.original_encoding
    if implicit is None or little is not True:
        raise _Unusual
    return bool(implicit)


def _control_points(
    beam: Dataset,
    tag: int,
    path: str,
    devices: list[BeamLimitingDevice],
    declared: int | None,
    limits: Limits,
) -> ControlPoints:
    raw = beam.get_item(tag)
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
        implicit = _encoding(beam)
        if raw.VR not in ("SQ", None) or (not implicit and raw.VR != "SQ"):
            raise _Unusual
        buf = raw.value
        end = None if raw.length == _UNDEFINED else len(buf)
        if end is None and buf[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
            end = len(buf) - 8  # pydicom may keep the delimiter of an undefined length
        cps, _ = _items(buf, 0, end, implicit, _CP_WANTED, 1)
    elif isinstance(getattr(raw, "value", None), DicomSequence):
        # pydicom parses the items of an implicit-VR sequence when it reads the file;
        # their values are still undecoded bytes.
        cps = [_item_values(item, _CP_WANTED) for item in raw.value]
    else:
        raise _Unusual
    n = len(cps)
    if n == 0 or n > limits.max_control_points_per_beam:
        raise _Unusual
    if declared is not None and declared != n:
        raise _Unusual

    weight = _numbers(cps, _WEIGHT, n, carry=False, negative_ok=False)
    scalars = {name: _numbers(cps, t, n, carry=True) for t, name in _SCALARS.items()}
    direction = _directions(cps)
    iso = _isocenters(cps, n)
    positions = _positions(cps, n, devices, limits)
    for arr in (weight, iso, *scalars.values(), *positions.values()):
        arr.setflags(write=False)
    return ControlPoints(
        cumulative_meterset_weight=weight,
        gantry_deg=scalars["gantry"],
        gantry_direction=direction,
        collimator_deg=scalars["collimator"],
        couch_deg=scalars["couch"],
        isocenter_mm=iso,
        nominal_energy=scalars["energy"],
        positions_mm=positions,
        dicom_path=path,
    )


def _item_values(item: Dataset, wanted) -> dict[int, object]:
    """The wanted elements of an item pydicom has already parsed, as undecoded bytes."""
    if not isinstance(item, Dataset):
        raise _Unusual
    found: dict[int, object] = {}
    for tag in wanted:
        element = item.get_item(tag)
        if element is None:
            continue
        if tag == _BLDPS:
            value = getattr(element, "value", None)
            if not isinstance(value, DicomSequence):
                raise _Unusual  # undecoded nested bytes: the reference path decides
            found[tag] = [_item_values(device, _DEVICE_WANTED) for device in value]
            continue
        if not isinstance(element, RawDataElement) or not isinstance(element.value, bytes):
            raise _Unusual  # already decoded by someone: nothing to gain
        if element.VR is not None and element.VR.encode() != _EXPECTED_VR[tag]:
            raise _Unusual
        found[tag] = element.value
    return found


def _present(cps: list[dict], tag: int) -> tuple[list[int], list[bytes]]:
    """Indices and bytes of the control points that give ``tag`` a non-blank value."""
    index, values = [], []
    for i, cp in enumerate(cps):
        value = cp.get(tag)
        if value is not None and value.strip(b" "):
            index.append(i)
            values.append(value)
    return index, values


def _joined(values: list[bytes]) -> bytes:
    """Several elements' values as one backslash-separated string. Each element is
    padded to an even length with a space; the padding goes, or it would sit between
    two numbers and send them all down the slow path."""
    return b"\\".join([v.strip(b" ") for v in values])


def _forward(index: list[int], values: np.ndarray, n: int, carry: bool) -> np.ndarray:
    """Values at ``index`` spread to every control point: carried forward to later
    points that omit them (``carry``), NaN before the first (and everywhere absent)."""
    out = np.full((n, *values.shape[1:]), np.nan)
    if not index:
        return out
    if not carry:
        out[index] = values
        return out
    source = np.full(n, -1)
    source[index] = np.arange(len(index))
    source = np.maximum.accumulate(source)
    have = source >= 0
    out[have] = values[source[have]]
    return out


def _numbers(cps, tag: int, n: int, carry: bool, negative_ok: bool = True) -> np.ndarray:
    index, raw = _present(cps, tag)
    if not index:
        return np.full(n, np.nan)
    if any(b"\\" in v for v in raw):
        raise _Unusual  # several values where one belongs
    values = parse_ds(_joined(raw))
    if not negative_ok and (values < 0).any():
        raise _Unusual
    return _forward(index, values, n, carry)


def _directions(cps: list[dict]) -> tuple[str | None, ...]:
    state: str | None = None
    out: list[str | None] = []
    cache: dict[bytes, str | None] = {}
    for cp in cps:
        value = cp.get(_DIRECTION)
        if value is not None:
            text = cache.get(value)
            if value not in cache:
                text = _code_string(value)
                cache[value] = text
            if text is not None:
                state = text
        out.append(state)
    return tuple(out)


def _code_string(value: bytes) -> str | None:
    if b"\\" in value:
        raise _Unusual
    text = value.strip(b" ")
    if not text:
        return None
    if not (text.isascii() and text.replace(b"_", b"").isalnum()):
        raise _Unusual
    return text.decode("ascii").upper()


def _isocenters(cps: list[dict], n: int) -> np.ndarray:
    index, raw = [], []
    for i, cp in enumerate(cps):
        value = cp.get(_ISOCENTER)
        if value is not None:
            if value.count(b"\\") != 2:
                raise _Unusual  # the reference path names the wrong count
            index.append(i)
            raw.append(value)
    if not index:
        return np.full((n, 3), np.nan)
    values = parse_ds(_joined(raw)).reshape(-1, 3)
    return _forward(index, values, n, carry=True)


def _positions(
    cps: list[dict], n: int, devices: list[BeamLimitingDevice], limits: Limits
) -> dict[str, np.ndarray]:
    widths = {d.device_type: 2 * d.number_of_pairs for d in devices}
    max_values = 2 * limits.max_leaf_pairs
    found: dict[str, tuple[list[int], list[bytes]]] = {}
    for i, cp in enumerate(cps):
        items = cp.get(_BLDPS)
        if items is None:
            continue
        for item in items:
            kind = item.get(_DEVICE_TYPE)
            values = item.get(_LEAF_JAW)
            if kind is None or values is None:
                raise _Unusual
            dtype = _code_string(kind)
            if dtype is None or not values.strip(b" "):
                raise _Unusual
            index, raw = found.setdefault(dtype, ([], []))
            if index and index[-1] == i:
                raise _Unusual  # one device twice in one control point
            index.append(i)
            raw.append(values)
    positions: dict[str, np.ndarray] = {}
    for dtype, (index, raw) in found.items():
        counts = [v.count(b"\\") + 1 for v in raw]
        width = counts[0]
        expected = widths.get(dtype)
        if any(c != width for c in counts) or width > max_values:
            raise _Unusual
        if expected is not None and width != expected:
            raise _Unusual
        values = parse_ds(_joined(raw)).reshape(len(raw), width)
        positions[dtype] = _forward(index, values, n, carry=True)
    return positions
