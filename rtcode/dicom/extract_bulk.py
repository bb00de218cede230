"""The fast path's control points: a beam's control points read from raw bytes.

A VMAT arc has ~180 control points of 120 leaf positions each: element by element,
that is most of a scan's time. Here only the handful of elements rtcode uses is picked
out of each control point and of each item of its device position sequence
(``_Columns``), and the decimal strings of all beams of a plan are converted in one
numpy pass (``prepare``). A sequence of 8 KB or more is read by a specialised fast
walker (``_scan``, below: a vectorised header scan, on the byte layer's VR tables);
shorter ones, and any the scan steps aside for, are walked item by item (``views``).
Anything unusual raises ``Unusual`` or returns None: the reference path in
``extract.py`` then reads the control points one by one and decides.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence

import numpy as np

from rtcode.dicom.controlpoints import carry_forward
from rtcode.dicom.decimals import parse_ds
from rtcode.dicom.elements import (
    DELIMITER_GROUP,
    EXPLICIT_VRS,
    ITEM,
    LONG_LENGTH_VRS,
    UNDEFINED,
)
from rtcode.dicom.elements import (
    key as _key,
)
from rtcode.dicom.views import DECIMAL, DataSet, DatasetItem, Item, Unusual, _items
from rtcode.model.facts import BeamLimitingDevice, ControlPoints
from rtcode.model.limits import Limits

_BLDPS = _key(0x300A011A)  # BeamLimitingDevicePositionSequence
_DEVICE_TYPE = _key(0x300A00B8)  # RTBeamLimitingDeviceType
_LEAF_JAW = _key(0x300A011C)  # LeafJawPositions
_WEIGHT = _key(0x300A0134)  # CumulativeMetersetWeight
_DIRECTION = _key(0x300A011F)  # GantryRotationDirection
_ISOCENTER = _key(0x300A012C)  # IsocenterPosition
_SCALARS = {  # carried-forward numbers, in ControlPoints order
    _key(0x300A011E): "gantry",  # GantryAngle
    _key(0x300A0120): "collimator",  # BeamLimitingDeviceAngle
    _key(0x300A0122): "couch",  # PatientSupportAngle
    _key(0x300A0114): "energy",  # NominalBeamEnergy
}
_CP_VALUES = {_WEIGHT: "DS", _DIRECTION: "CS", _ISOCENTER: "DS", **dict.fromkeys(_SCALARS, "DS")}
_DEVICE_VALUES = {_DEVICE_TYPE: "CS", _LEAF_JAW: "DS"}

_BRACHY_WEIGHT = _key(0x300A02D6)  # CumulativeTimeWeight
_BRACHY_RELATIVE = _key(0x300A02D2)  # ControlPointRelativePosition
_BRACHY_3D = _key(0x300A02D4)  # ControlPoint3DPosition
_BRACHY_VALUES = {_BRACHY_WEIGHT: "DS", _BRACHY_RELATIVE: "DS", _BRACHY_3D: "DS"}

# ------------------------------------------------------------- control points


_FAILURES = (Unusual, ValueError, OverflowError, struct.error, IndexError)


def control_points(
    beam: DataSet,
    tag: int,
    path: str,
    devices: list[BeamLimitingDevice],
    declared: int | None,
    limits: Limits,
    prepared: Gathered | None = None,
) -> ControlPoints | None:
    """The beam's control points from the raw bytes of its sequence ``tag``, or None
    when anything is unusual (the element-by-element path then decides). ``beam`` is
    a beam item of a fast-path view; ``prepared``: from ``prepare``."""
    try:
        if prepared is None:
            prepared = Gathered(_columns(_node(beam), tag), limits)
            _convert([prepared])
        return _control_points(prepared, path, devices, declared, limits)
    except _FAILURES:
        return None


def prepare(beams: Sequence[DataSet], tag: int, limits: Limits) -> dict[int, Gathered]:
    """The control points of every beam (by index) gathered, and their decimal strings
    converted in one pass: numpy's cost per call is then paid once a plan, not once a
    beam. A beam that is not ordinary is left out (``control_points`` then decides)."""
    gathered: dict[int, Gathered] = {}
    total = 0
    for i, beam in enumerate(beams):
        try:
            gathered[i] = Gathered(_columns(_node(beam), tag), limits)
        except _FAILURES:
            continue
        total += gathered[i].count
    if total > limits.max_control_points_per_plan:
        return {}  # beam by beam: the reference path says where the limit is passed
    try:
        _convert(list(gathered.values()))
    except _FAILURES:
        return {}  # beam by beam: only the beam with the bad value takes the slow path
    return gathered


def _node(beam: DataSet) -> Item | DatasetItem:
    """The beam as the view it is (only views reach the bulk reader)."""
    if not isinstance(beam, (Item, DatasetItem)):
        raise Unusual
    return beam


class _Columns:
    """What the control points hold, column by column: for each wanted element the
    indices of the control points that hold it and its undecoded values; for each item
    of BeamLimitingDevicePositionSequence (control point index, device type, positions)."""

    __slots__ = ("count", "values", "devices")

    def __init__(self, count: int) -> None:
        self.count = count
        self.values: dict[int, tuple[list[int], list[bytes]]] = {k: ([], []) for k in _CP_VALUES}
        self.devices: list[tuple[int, bytes | None, bytes | None]] = []


def _columns(beam: Item | DatasetItem, tag: int) -> _Columns:
    found = beam.region(_key(tag))
    if found is None:
        raise Unusual
    if isinstance(found, list):  # items parsed already (pydicom, or a walked sequence)
        return _columns_of_items(found)
    buf, start, stop, implicit = found
    if stop is not None and stop - start >= _SCAN_BYTES:  # else walking costs less
        columns = _vectorised_scan(buf, start, stop, implicit)
        if columns is not None:
            return columns
    return _columns_of_items(_items(buf, start, stop, implicit, 1)[0])


def _columns_of_items(cps: Sequence[Item | DatasetItem]) -> _Columns:
    """The columns of control point items (``Item`` or ``DatasetItem``), one by one."""
    columns = _Columns(len(cps))
    for i, cp in enumerate(cps):
        for key, value in cp.values(_CP_VALUES):
            index, values = columns.values[key]
            index.append(i)
            values.append(value)
        found = cp.region(_BLDPS)
        if found is None:
            continue
        if not isinstance(found, list):
            buf, start, stop, implicit = found
            found = _items(buf, start, stop, implicit, 2)[0]
        for item in found:
            device = dict(item.values(_DEVICE_VALUES))
            columns.devices.append((i, device.get(_DEVICE_TYPE), device.get(_LEAF_JAW)))
    return columns


# The scan's candidates: 2-byte groups at even offsets. A header of another group
# stops the scan (the walk takes over); a candidate inside a value is never reached.
_SCAN_GROUPS = (0x300A, 0x300C, 0x300B, 0x3008, DELIMITER_GROUP)
_SCAN_BYTES = 8192  # below, numpy's fixed cost per call outweighs walking the elements
_VR_CODE = {vr: int.from_bytes(vr, "little") for vr in EXPLICIT_VRS}
_VALID_VR = np.zeros(1 << 16, dtype=bool)
_VALID_VR[list(_VR_CODE.values())] = True
_LONG_VR = np.zeros(1 << 16, dtype=bool)
_LONG_VR[[_VR_CODE[vr] for vr in LONG_LENGTH_VRS]] = True
_SQ_CODE = _VR_CODE[b"SQ"]
_CP_ELEMENT = np.zeros(1 << 16, dtype=bool)  # by element number (all in group 300A)
_DEVICE_ELEMENT = np.zeros(1 << 16, dtype=bool)
_ELEMENT_VR = np.zeros(1 << 16, dtype=np.int64)
for _wanted, _table in ((_CP_VALUES, _CP_ELEMENT), (_DEVICE_VALUES, _DEVICE_ELEMENT)):
    for _k, _vr in _wanted.items():
        _table[_k >> 16] = True
        _ELEMENT_VR[_k >> 16] = _VR_CODE[_vr.encode()]


def _vectorised_scan(buf: bytes, start: int, stop: int, implicit: bool) -> _Columns | None:
    """The columns of a Control Point Sequence whose items are ``buf[start:stop]``,
    found by a vectorised scan; None when the sequence is not plain enough for it."""
    size = stop - start
    if size % 2 or size < 8:
        return None
    words = np.frombuffer(buf, dtype="<u2", count=size // 2, offset=start)
    words = np.concatenate((words, np.zeros(6, dtype=np.uint16)))  # a full header each
    group = words[:-6]
    found = group == _SCAN_GROUPS[0]
    for g in _SCAN_GROUPS[1:]:
        found |= group == g
    at = np.flatnonzero(found)  # candidate headers, in words
    if at.size == 0 or at[0] != 0:
        return None
    # Each candidate read as a header: key, header size, value length, VR.
    w = [words[at + i].astype(np.int64) for i in range(6)]
    key = w[0] | (w[1] << 16)
    delimiter = w[0] == DELIMITER_GROUP
    if implicit:
        vr = np.zeros(at.size, dtype=np.int64)
        header = np.full(at.size, 8, dtype=np.int64)
        length = w[2] | (w[3] << 16)
    else:
        vr = np.where(delimiter, 0, w[2])
        long = _LONG_VR[vr] & ~delimiter
        header = np.where(long, 12, 8)
        length = np.where(long, w[4] | (w[5] << 16), w[3])
        length = np.where(delimiter, w[2] | (w[3] << 16), length)
    # Items and device position sequences are entered; other elements are skipped.
    offset = at * 2
    after = offset + header + np.where((key == ITEM) | (key == _BLDPS), 0, length)
    # Follow the headers from the first: the one after each must be a candidate too.
    if after[-1] == size and (after[:-1] == offset[1:]).all():
        reached: slice | np.ndarray = slice(None)  # every candidate, one after the other
    else:
        chain = _chain(offset, after, size)
        if chain is None:
            return None  # a header of another group, or a length beyond the sequence
        reached = chain
    key, vr = key[reached], vr[reached]
    offset, header, length = offset[reached], header[reached], length[reached]
    if (((key & 0xFFFF) == DELIMITER_GROUP) & (key != ITEM)).any():
        return None  # a delimiter: undefined lengths, walked instead
    if (length == UNDEFINED).any():
        return None
    if not implicit and not _VALID_VR[vr[key != ITEM]].all():
        return None
    return _structure(buf, start, size, implicit, key, vr, offset, offset + header, length)


def _chain(offset: np.ndarray, after: np.ndarray, size: int) -> np.ndarray | None:
    """The candidates reached from the first by following each header to the next;
    None when one leads elsewhere than to a candidate or to the end."""
    count = offset.size
    successor = np.searchsorted(offset, after)
    hit = np.zeros(count, dtype=bool)
    inner = successor < count
    hit[inner] = offset[successor[inner]] == after[inner]
    successor = np.where(hit, successor, np.where(after == size, count, -1)).tolist()
    chain = []
    i = 0
    while 0 <= i < count:
        chain.append(i)
        i = successor[i]
    return np.array(chain) if i == count else None


def _structure(
    buf: bytes,
    start: int,
    size: int,
    implicit: bool,
    key: np.ndarray,
    vr: np.ndarray,
    offset: np.ndarray,
    content: np.ndarray,
    length: np.ndarray,
) -> _Columns | None:
    """Columns from the headers the scan reached: at ``offset``, with values (or an
    item's elements) from ``content`` on for ``length`` bytes. The control point items
    must tile the sequence and the device items each device position sequence, exactly;
    else None."""
    end = content + length
    is_item = key == ITEM
    is_bldps = key == _BLDPS
    if not implicit and (vr[is_bldps] != _SQ_CODE).any():
        return None
    # The device position sequence, if any, that holds each header.
    b_start, b_end = content[is_bldps], end[is_bldps]
    owner = np.searchsorted(b_start, offset, side="right") - 1
    inside = owner >= 0
    inside[inside] = offset[inside] < b_end[owner[inside]]
    if (is_bldps & inside).any():
        return None
    cp = is_item & ~inside
    cp_start, cp_end = offset[cp], end[cp]
    if cp_start.size == 0 or cp_start[0] != 0 or cp_end[-1] != size:
        return None
    if (cp_end[:-1] != cp_start[1:]).any():
        return None  # the control point items do not tile the sequence
    # (A device position sequence that overran its control point would hold the next
    # control point's item, and one of the tilings would fail.)
    cp_of = np.searchsorted(cp_start, offset, side="right") - 1
    device = is_item & inside
    d_start, d_end, d_owner = offset[device], end[device], owner[device]
    if not _tiles(d_start, d_end, d_owner, b_start, b_end):
        return None
    # The wanted elements (all of group 300A), grouped by element number, each group in
    # order: the control points' outside device items, the devices' inside them.
    element = key >> 16
    wanted = np.where(inside, _DEVICE_ELEMENT[element], _CP_ELEMENT[element])
    wanted &= (key & 0xFFFF) == 0x300A
    here = np.flatnonzero(wanted)
    here = here[np.argsort(element[here], kind="stable")]
    tags = element[here]
    if not implicit and (vr[here] != _ELEMENT_VR[tags]).any():
        return None  # not the VR of the data dictionary
    d_of = np.searchsorted(d_start, offset[here], side="right") + cp_start.size
    item = np.where(inside[here], d_of, cp_of[here])  # the item holding each element
    if ((tags[1:] == tags[:-1]) & (item[1:] == item[:-1])).any():
        return None  # the same element twice in one item
    bounds = [0, *(np.flatnonzero(tags[1:] != tags[:-1]) + 1).tolist(), here.size]
    values = _slices(buf, start, content[here], end[here])
    index = cp_of[here].tolist()
    columns = _Columns(cp_start.size)
    per_device: dict[int, list[bytes]] = {_DEVICE_TYPE: [], _LEAF_JAW: []}
    for a, b in zip(bounds, bounds[1:], strict=False):
        found = 0x300A | (int(tags[a]) << 16)
        if found in per_device:
            per_device[found] = values[a:b]
        else:
            columns.values[found] = (index[a:b], values[a:b])
    if any(len(v) != d_start.size for v in per_device.values()):
        return None  # a device item without its type or its positions
    columns.devices = list(zip(cp_of[device].tolist(), *per_device.values(), strict=True))
    return columns


def _tiles(
    start: np.ndarray,
    end: np.ndarray,
    owner: np.ndarray,
    outer_start: np.ndarray,
    outer_end: np.ndarray,
) -> bool:
    """Whether the items (``start``, ``end``, index of the sequence holding each, in
    order) fill each sequence (``outer_start``, ``outer_end``) exactly: the first at its
    start, each where the one before ends, the last at its end; an empty one has none."""
    count = np.bincount(owner, minlength=outer_start.size)
    if ((count == 0) & (outer_end > outer_start)).any():
        return False
    if start.size == 0:
        return True
    first = np.ones(start.size, dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    last = np.ones(start.size, dtype=bool)
    last[:-1] = first[1:]
    return bool(
        (start[first] == outer_start[owner[first]]).all()
        and (end[last] == outer_end[owner[last]]).all()
        and (end[:-1][~last[:-1]] == start[1:][~last[:-1]]).all()
    )


def _slices(buf: bytes, start: int, begin: np.ndarray, end: np.ndarray) -> list[bytes]:
    return [buf[start + a : start + b] for a, b in zip(begin.tolist(), end.tolist(), strict=True)]


class Gathered:
    """A beam's control point columns, their decimal strings gathered for conversion:
    each column is (control point indices, start in ``values``, numbers per point)."""

    def __init__(self, columns: _Columns, limits: Limits) -> None:
        self.count = n = columns.count
        if n == 0 or n > limits.max_control_points_per_beam:
            raise Unusual
        self.parts: list[bytes] = []
        self.size = 0
        self.values = np.empty(0)  # set by _convert
        self.direction = columns.values[_DIRECTION]
        self.weight = self._add(*_non_blank(columns.values[_WEIGHT]))
        self.scalars = {
            name: self._add(*_non_blank(columns.values[k])) for k, name in _SCALARS.items()
        }
        index, raw = columns.values[_ISOCENTER]
        if any(value.count(b"\\") != 2 for value in raw):
            raise Unusual  # the reference path names the wrong count
        self.iso = self._add(index, list(map(_STRIP, raw)), 3)
        self.positions = {
            dtype: self._add(index, raw, width)
            for dtype, (index, raw, width) in _device_columns(columns.devices, limits).items()
        }

    def _add(
        self, index: list[int], values: list[bytes], width: int = 1
    ) -> tuple[list[int], int, int]:
        """A column: stripped values at control points ``index``, ``width`` numbers each.
        (Each element is padded to an even length with a space; the padding goes, or it
        would sit between two numbers and send them all down the slow path.)"""
        start = self.size
        if index:
            text = b"\\".join(values)
            self.size += len(values) * width
            if text.count(b"\\") != self.size - start - 1:
                raise Unusual  # several values where one belongs
            self.parts.append(text)
        return index, start, width

    def spread(self, column: tuple[list[int], int, int], carry: bool = True) -> np.ndarray:
        """A column's values at every control point: carried forward to later points
        that omit them (``carry``), NaN before the first (and everywhere absent)."""
        n = self.count
        index, start, width = column
        shape = (n,) if width == 1 else (n, width)
        values = self.values[start : start + len(index) * width].reshape(-1, *shape[1:])
        if carry:
            return carry_forward(index, values, n)
        out = np.full(shape, np.nan)
        out[index] = values
        return out


def _convert(gathered: list[Gathered]) -> None:
    """Convert the decimal strings of several beams in one pass."""
    parts = [part for g in gathered for part in g.parts]
    if not parts:
        return
    values = parse_ds(b"\\".join(parts))
    start = 0
    for g in gathered:
        g.values = values[start : start + g.size]
        start += g.size


def _control_points(
    g: Gathered,
    path: str,
    devices: list[BeamLimitingDevice],
    declared: int | None,
    limits: Limits,
) -> ControlPoints:
    n = g.count
    if n > limits.max_control_points_per_beam or (declared is not None and declared != n):
        raise Unusual  # the reference path reads the items and records the count (an Oddity)
    if any("#" in d.device_type for d in devices):
        raise Unusual  # MLC layers sharing a type (ViewRay): the reference path pairs them
    widths = {d.device_type: 2 * d.number_of_pairs for d in devices}
    for dtype, (_, _, width) in g.positions.items():
        if widths.get(dtype, width) != width:
            raise Unusual  # the reference path names the wrong count
    weights = g.spread(g.weight, carry=False)
    if (weights < 0).any():
        raise Unusual
    scalars = {name: g.spread(column) for name, column in g.scalars.items()}
    iso = g.spread(g.iso)
    positions = {dtype: g.spread(column) for dtype, column in g.positions.items()}
    for arr in (weights, iso, *scalars.values(), *positions.values()):
        arr.setflags(write=False)
    return ControlPoints(
        cumulative_meterset_weight=weights,
        gantry_deg=scalars["gantry"],
        gantry_direction=_directions(g.direction, n),
        collimator_deg=scalars["collimator"],
        couch_deg=scalars["couch"],
        isocenter_mm=iso,
        nominal_energy=scalars["energy"],
        positions_mm=positions,
        dicom_path=path,
    )


_STRIP = operator.methodcaller("strip", b" ")


def _non_blank(column: tuple[list[int], list[bytes]]) -> tuple[list[int], list[bytes]]:
    """A column's values stripped, without the blank ones (absent, as the reference
    path reads them)."""
    index, raw = column
    values = list(map(_STRIP, raw))
    if b"" not in values:
        return index, values
    pairs = [(i, v) for i, v in zip(index, values, strict=True) if v]
    return [i for i, _ in pairs], [v for _, v in pairs]


def _directions(column: tuple[list[int], list[bytes]], n: int) -> tuple[str | None, ...]:
    """GantryRotationDirection at every control point (a blank value: not given)."""
    cache: dict[bytes, str | None] = {}
    index, given = [], []
    for i, value in zip(*column, strict=True):
        if value not in cache:
            cache[value] = _code_string(value)
        if cache[value] is not None:
            index.append(i)
            given.append(cache[value])
    values = np.empty(len(given), dtype=object)
    values[:] = given
    return tuple(carry_forward(index, values, n).tolist())


def _code_string(value: bytes) -> str | None:
    if b"\\" in value:
        raise Unusual
    text = value.strip(b" ")
    if not text:
        return None
    if not (text.isascii() and text.replace(b"_", b"").isalnum()):
        raise Unusual
    return text.decode("ascii").upper()


def _device_columns(
    items: list[tuple[int, bytes | None, bytes | None]], limits: Limits
) -> dict[str, tuple[list[int], list[bytes], int]]:
    """Per device type, in order of appearance: the control points that position it,
    the positions (stripped), and their number (the same at every point)."""
    found: dict[str, tuple[list[int], list[bytes]]] = {}
    names: dict[bytes, str | None] = {}
    for i, kind, values in items:
        if kind is None or values is None:
            raise Unusual
        if kind not in names:
            names[kind] = _code_string(kind)
        dtype = names[kind]
        if dtype is None:
            raise Unusual
        index, raw = found.setdefault(dtype, ([], []))
        if index and index[-1] == i:
            raise Unusual  # one device twice in one control point
        index.append(i)
        raw.append(values)
    columns = {}
    for dtype, (index, raw) in found.items():
        stripped: list[bytes] = list(map(_STRIP, raw))
        counts = {value.count(b"\\") for value in stripped}
        if b"" in stripped or len(counts) != 1:
            raise Unusual
        width = counts.pop() + 1
        if width > 2 * limits.max_leaf_pairs:
            raise Unusual
        columns[dtype] = (index, stripped, width)
    return columns


# ------------------------------------------------------ brachytherapy channels

BrachyPoints = tuple[list[float | None], list[float | None], list[tuple[float, ...] | None]]


class _NotPlain(Exception):
    """A value ``brachy_points`` leaves to the element-by-element reading."""


def brachy_points(cps: Sequence[DataSet]) -> BrachyPoints | None:
    """(CumulativeTimeWeight, ControlPointRelativePosition, ControlPoint3DPosition) of
    each brachytherapy control point, None where absent, read from the raw bytes: a
    channel has dozens of control points and a plan hundreds, and reading each value
    through ``get`` (and its DICOM path) cost more than the rest of the plan. Only when
    every value is plain (one finite decimal; three for the position) or absent: else
    None, and ``extract._seeds`` reads them one by one and words what it finds."""
    weights: list[float | None] = []
    relative: list[float | None] = []
    spatial: list[tuple[float, ...] | None] = []
    try:
        for cp in cps:
            if not isinstance(cp, Item):
                return None
            found = dict(cp.values(_BRACHY_VALUES))
            weights.append(_one_decimal(found.get(_BRACHY_WEIGHT)))
            relative.append(_one_decimal(found.get(_BRACHY_RELATIVE)))
            spatial.append(_three_decimals(found.get(_BRACHY_3D)))
    except (Unusual, _NotPlain):
        return None
    return weights, relative, spatial


def _one_decimal(data: bytes | None) -> float | None:
    """A DS value of one plain decimal (as ``views.plain`` reads it), None when absent."""
    if data is None:
        return None
    match = DECIMAL.fullmatch(data)
    if match is None:
        raise _NotPlain
    value = float(match[1])
    if not math.isfinite(value):
        raise _NotPlain
    return value


def _three_decimals(data: bytes | None) -> tuple[float, ...] | None:
    """A DS value of three finite numbers (as ``parse_ds`` reads them), None when absent."""
    if data is None:
        return None
    if data.count(b"\\") != 2:
        raise _NotPlain
    try:
        point = tuple(float(v) for v in data.rstrip(b" ").split(b"\\"))
    except ValueError:
        raise _NotPlain from None
    if not all(map(math.isfinite, point)):
        raise _NotPlain
    return point
