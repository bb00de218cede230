"""Step 2, extraction, fast path: an RT object's facts read from the raw bytes.

pydicom decodes an element when it is first used (a Python object per value, through
its hooks and checks) and parses a sequence's items when the sequence is first used.
An RT Plan has a few hundred elements rtcode reads and, for a VMAT arc, ~180 control
points of 120 leaf positions each: element by element, that is most of a scan's time.
Here the same facts are read from the bytes pydicom keeps, and ``extract.py`` runs its
usual code on what this module hands it: ``plan_view`` gives the data set behind the
few methods extract.py uses (``in``, ``get``, ``items``).

What is read from the bytes, and why it gives the facts pydicom would:

- Sequences pydicom has not parsed yet (those of defined length: pydicom keeps their
  bytes until they are used) are split into items and elements here (``_items``),
  by the rules pydicom reads them with: little endian; in explicit VR every element
  names a known VR (pydicom reads an element whose VR bytes are no VR as implicit VR,
  and then the sequence ends elsewhere); items and elements fit their lengths
  exactly; an undefined length only on a sequence; no tag twice in an item; a
  Specific Character Set that pydicom can turn into encodings (it does so as it
  reads, and fails on a damaged one). Only where each value lies is kept (``Item``);
  nothing is decoded until asked for.
- A value is decoded here only when it is plain (``_plain``) and has the VR of the
  data dictionary: text of printable ASCII without a backslash (the same characters
  in every DICOM character set; one value; padding stripped as pydicom strips it), a
  decimal or an integer string that ``float``/``int`` read as pydicom's DSfloat and IS
  do (with pydicom's default settings, which rtcode never changes), an unsigned short
  of one value. Anything else
  raises ``Unusual`` in an ``Item``; in a pydicom Dataset (``DatasetItem``: the top
  level, and sequences pydicom parsed when reading) it is left to pydicom, which is
  exactly what the reference path reads.
- Control points (``prepare``, ``control_points``): of each control point and each
  item of its device position sequence, only the handful of elements rtcode uses is
  picked out (``_Columns``). A sequence of 8 KB or more is scanned at C speed
  (``_scan``): every 2-byte group of the RT groups or of item tags at an even offset
  is a candidate header, read as one in numpy; from the first byte, each header's
  length leads to the next, and only candidates reached that way are used, so bytes
  inside a value that look like a header are never read as one. The scan steps aside
  (returns None) for anything but the plain case: a header it does not reach (another
  group, an odd length), an undefined length or delimiter, a VR that is no VR or not
  the dictionary's, an element twice in an item, items that do not tile the sequence
  or a device sequence exactly. The items are then walked element by element
  (``_items``), as are shorter sequences (where numpy's cost per call outweighs the
  walk). The decimal strings of all beams of a plan are converted in one numpy pass
  (``parse_ds``), exactly as ``float`` converts them.

- A whole file (``file_view``): ``read`` hands over a Part-10 file's bytes and the top
  level is walked here, pydicom never called, when the file is plain (see there); the
  view is then an ``Item`` of depth 0, and structure sets and doses are extracted
  through it as plans are (contour points are never decoded: only whether a
  ContourSequence has items, its items walked as pydicom would parse them).

The rule: this path only ever speeds up the ordinary case. Whenever anything is
unusual (big endian, an unexpected VR, a value that is not plain, a count that does
not match, a limit exceeded, a damaged length, MLC layers that share a type) it raises
``Unusual`` or returns None, and the element-by-element path in ``extract.py`` runs
on pydicom's own objects: that
path is the reference, and it words the error a damaged file deserves (extract.py
also drops the fast attempt on any error it would report, so every message comes
from the reference path). Both must give the same facts; tests compare them.
"""

from __future__ import annotations

import functools
import operator
import re
import struct
from itertools import repeat

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from rtcode.dicom.read import EXPLICIT_VRS, LONG_LENGTH_VRS
from rtcode.model.facts import BeamLimitingDevice, ControlPoints
from rtcode.model.limits import Limits


class Unusual(Exception):
    """Something the fast path does not handle: the reference path takes over."""


# ------------------------------------------------------------------- tags


def _key(tag: int) -> int:
    """A tag as its four bytes read as one little-endian number: element, group."""
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


@functools.cache
def _dictionary(keyword: str) -> tuple[int, int, str]:
    """(tag, key, VR of the data dictionary) of a keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, _key(tag), dictionary_VR(tag)


_ITEM = _key(0xFFFEE000)
_ITEM_END = _key(0xFFFEE00D)
_SEQ_END = _key(0xFFFEE0DD)
_UNDEFINED = 0xFFFFFFFF
_DELIMITER_GROUP = 0xFFFE
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

# The VR bytes of an element header (read.py lists them, PS3.5 6.2), as pydicom names them.
_VR_NAMES = {vr: vr.decode() for vr in EXPLICIT_VRS}
_KEY_LENGTH = struct.Struct("<II")
_KEY_VR_LENGTH = struct.Struct("<I2sH")
_LENGTH = struct.Struct("<I")
_DEPTH = 8  # nesting depth this path follows; deeper: the reference path decides


# ------------------------------------------------------------ walking the bytes


class Item:
    """One sequence item read from the bytes: where each of its elements' values lies.

    ``elements`` maps a key to (VR named in the file, None in implicit VR; start; stop)
    of the value in ``buf``. A sequence of undefined length, walked to find its end,
    is kept as (VR, None, its items)."""

    __slots__ = ("buf", "implicit", "depth", "elements")

    def __init__(self, buf: bytes, implicit: bool, depth: int, elements: dict) -> None:
        self.buf = buf
        self.implicit = implicit
        self.depth = depth
        self.elements = elements

    def __contains__(self, keyword: str) -> bool:
        return _dictionary(keyword)[1] in self.elements

    def get(self, keyword: str):
        """The value as pydicom would give it, when it is plain; None when absent."""
        _, key, vr = _dictionary(keyword)
        data = self.raw(key, vr)
        return None if data is None else _plain(vr, data)

    def items(self, keyword: str) -> list[Item]:
        """The items of a sequence; [] when it is absent."""
        return _sequence_items(self, keyword, self.depth + 1)

    def raw(self, key: int, vr: str) -> bytes | None:
        """The undecoded value of an element that is no sequence; None when absent."""
        found = self.elements.get(key)
        if found is None:
            return None
        file_vr, start, stop = found
        if vr == "SQ" or start is None or (file_vr is not None and file_vr != vr):
            raise Unusual  # e.g. UN or a binary VR: the reference path decodes it
        return self.buf[start:stop]

    def values(self, wanted: dict[int, str]) -> list[tuple[int, bytes]]:
        """(key, undecoded value) of the elements in ``wanted`` (key: VR) it holds."""
        out = []
        for key, (file_vr, start, stop) in self.elements.items():
            vr = wanted.get(key)
            if vr is not None:
                if start is None or (file_vr is not None and file_vr != vr):
                    raise Unusual
                out.append((key, self.buf[start:stop]))
        return out

    def region(self, key: int) -> tuple[bytes, int, int, bool] | list[Item] | None:
        """A sequence as (bytes, start, stop, implicit) of its items, or its items when
        they were walked already; None when absent."""
        found = self.elements.get(key)
        if found is None:
            return None
        file_vr, start, stop = found
        if file_vr not in (None, "SQ"):
            raise Unusual
        if start is None:
            return stop
        return self.buf, start, stop, self.implicit


def _items(buf: bytes, start: int, end: int | None, implicit: bool, depth: int):
    """The items of a sequence value in ``buf[start:end]`` (``end`` None: undefined
    length, up to the sequence delimiter). Returns (items, position after the value)."""
    if depth > _DEPTH:
        raise Unusual
    items = []
    pos = start
    limit = len(buf) if end is None else end
    while pos < limit:
        if pos + 8 > limit:
            raise Unusual
        key, length = _KEY_LENGTH.unpack_from(buf, pos)
        pos += 8
        if key == _SEQ_END:
            if end is not None:
                raise Unusual
            return items, pos
        if key != _ITEM:
            raise Unusual
        if length == _UNDEFINED:
            elements, pos = _elements(buf, pos, None, implicit, depth)
        else:
            if pos + length > limit:
                raise Unusual
            elements, pos = _elements(buf, pos, pos + length, implicit, depth)
        items.append(Item(buf, implicit, depth, elements))
    if end is None or pos != end:
        raise Unusual  # no sequence delimiter, or an item overran the sequence
    return items, pos


def _elements(buf: bytes, start: int, end: int | None, implicit: bool, depth: int):
    """Where the elements of one item lie (see ``Item``), and the position after it."""
    found: dict[int, tuple] = {}
    pos = start
    limit = len(buf) if end is None else end
    while pos < limit:
        if pos + 8 > limit:
            raise Unusual
        if implicit:
            key, length = _KEY_LENGTH.unpack_from(buf, pos)
            vr = None
        else:
            key, vr_bytes, length = _KEY_VR_LENGTH.unpack_from(buf, pos)
            if key & 0xFFFF == _DELIMITER_GROUP:
                vr = None
                length = _LENGTH.unpack_from(buf, pos + 4)[0]
            else:
                vr = _VR_NAMES.get(vr_bytes)
                if vr is None:
                    raise Unusual  # not a VR: pydicom would read the item as implicit VR
                if vr_bytes in LONG_LENGTH_VRS:
                    if pos + 12 > limit:
                        raise Unusual
                    length = _LENGTH.unpack_from(buf, pos + 8)[0]
                    pos += 4
        pos += 8
        if key & 0xFFFF == _DELIMITER_GROUP:
            if key != _ITEM_END or end is not None or length != 0:
                raise Unusual
            return found, pos
        if key in found:
            raise Unusual  # the same element twice in one item
        if length == _UNDEFINED:
            # Only a sequence has an undefined length here (no pixel data in a plan).
            if (vr != "SQ" and not (implicit and _is_sequence(key))) or key == _CHARSET:
                raise Unusual
            items, pos = _items(buf, pos, None, implicit, depth + 1)
            found[key] = (vr, None, items)
        else:
            if pos + length > limit:
                raise Unusual
            if key == _CHARSET:
                _check_charset(vr, buf[pos : pos + length], implicit)
            found[key] = (vr, pos, pos + length)
            pos += length
    if end is None or pos != end:
        raise Unusual  # no item delimiter before the end, or an element overran the item
    return found, pos


_CHARSET = _key(0x00080005)  # SpecificCharacterSet


def _check_charset(vr: str | None, data: bytes, implicit: bool) -> None:
    """pydicom turns a Specific Character Set into Python encodings as it reads a data
    set (as the file is read, or a sequence when first used), and a damaged one can
    make that fail: the same conversions, and ``Unusual`` if they fail."""
    import warnings

    from pydicom.charset import convert_encodings
    from pydicom.dataelem import convert_raw_data_element
    from pydicom.values import convert_string

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_encodings(convert_string(data, True))
            elem = RawDataElement(_key(_CHARSET), vr, len(data), data, 0, implicit, True)
            convert_encodings(convert_raw_data_element(elem).value)
    except Exception:
        raise Unusual from None


def _is_sequence(key: int) -> bool:
    try:
        return dictionary_VR(_key(key)) == "SQ"  # _key swaps back
    except KeyError:
        return False


# ------------------------------------------------------------ plain values

_PRINTABLE = bytes(range(0x20, 0x7F)).replace(b"\\", b"")
# Text VRs pydicom returns as str with padding (spaces, NULs) stripped on the right.
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}
_DECIMAL = re.compile(rb" *([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?) *")
_INTEGER = re.compile(rb" *([+-]?[0-9]+) *")


def _plain(vr: str, data: bytes):
    """The value pydicom gives an element of VR ``vr`` holding ``data``, when plain."""
    if not data:
        return empty_value_for_VR(vr)
    if vr in _TEXT_VRS:
        text = data.rstrip(b"\x00 ")
        if text.translate(None, _PRINTABLE) or (vr == "PN" and b"=" in text):
            raise Unusual  # other characters: pydicom decodes them with the character set
        return text.decode("ascii")
    if vr == "DS":
        if b"\\" in data:
            try:
                return _decimals(data)  # several values: what extract._floats reads
            except ValueError:
                raise Unusual from None
        match = _DECIMAL.fullmatch(data)
        if match is None:
            raise Unusual
        return float(match[1])
    if vr == "IS":
        match = _INTEGER.fullmatch(data)
        if match is None:
            raise Unusual
        return int(match[1])
    if vr == "US" and len(data) == 2:  # one value (Rows, Columns of a dose grid)
        return int.from_bytes(data, "little")
    raise Unusual


@functools.lru_cache(maxsize=256)
def _decimals(data: bytes) -> np.ndarray:
    """``parse_ds``, remembered (read-only): leaf boundaries repeat beam after beam."""
    values = parse_ds(data)
    values.setflags(write=False)
    return values


class DatasetItem:
    """A pydicom Dataset behind the same methods as ``Item``. A value still in its
    bytes is decoded here when plain; anything else is left to pydicom: it is then
    exactly what the reference path reads."""

    __slots__ = ("ds",)

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.ds

    def get(self, keyword: str):
        tag, _, vr = _dictionary(keyword)
        elem = self._element(tag)
        if elem is None:
            return None
        if isinstance(elem, RawDataElement) and vr != "SQ":
            data = elem.value
            if isinstance(data, bytes) and elem.VR in (None, vr) and elem.is_little_endian:
                try:
                    return _plain(vr, data)
                except Unusual:
                    pass
        try:
            return self.ds.get(keyword)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None

    def items(self, keyword: str) -> list[Item] | list[DatasetItem]:
        return _sequence_items(self, keyword, 1)

    def _element(self, tag: int):
        """``get_item``: pydicom converts a sequence's bytes there, and may fail."""
        try:
            return self.ds.get_item(tag)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None

    def raw(self, key: int, vr: str) -> bytes | None:
        elem = self._element(_key(key))  # _key swaps back
        if elem is None:
            return None
        if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
            raise Unusual  # decoded already by someone: the reference path reads it
        if elem.VR not in (None, vr) or not elem.is_little_endian:
            raise Unusual
        return elem.value

    def values(self, wanted: dict[int, str]) -> list[tuple[int, bytes]]:
        out = []
        for key, vr in wanted.items():
            value = self.raw(key, vr)
            if value is not None:
                out.append((key, value))
        return out

    def region(self, key: int):
        """A sequence still in bytes as (bytes, start, stop, implicit), stop None for an
        undefined length; its items when pydicom parsed it; None when absent."""
        elem = self._element(_key(key))
        if elem is None:
            return None
        if isinstance(elem, RawDataElement):
            buf = elem.value
            if not isinstance(buf, bytes) or not elem.is_little_endian:
                raise Unusual
            if elem.VR not in (None, "SQ") or (elem.VR is None) != elem.is_implicit_VR:
                raise Unusual
            if elem.length != _UNDEFINED:
                return buf, 0, len(buf), elem.is_implicit_VR
            if buf[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
                return buf, 0, len(buf) - 8, elem.is_implicit_VR  # pydicom kept the delimiter
            return buf, 0, None, elem.is_implicit_VR
        value = elem.value
        if isinstance(value, DicomSequence) and all(isinstance(i, Dataset) for i in value):
            return [DatasetItem(i) for i in value]
        raise Unusual


def _sequence_items(node: Item | DatasetItem, keyword: str, depth: int) -> list:
    """The items of the sequence ``keyword`` of ``node``; [] when it is absent."""
    _, key, vr = _dictionary(keyword)
    if vr != "SQ":
        raise Unusual
    found = node.region(key)
    if found is None:
        return []
    if isinstance(found, list):
        return found
    buf, start, stop, implicit = found
    return _items(buf, start, stop, implicit, depth)[0]


def plan_view(ds: Dataset) -> DatasetItem | None:
    """The data set for the fast path, or None when it is not little endian."""
    if ds.original_encoding[1] is not True:
        return None
    return DatasetItem(ds)


# ------------------------------------------------------- a file's own bytes

_PART10 = 132  # preamble and 'DICM'
_META_GROUP = 0x0002
_PIXEL_DATA = _key(0x7FE00010)
_PIXEL_GROUP = 0x7FE0
_SYNTAXES = {  # transfer syntaxes read here: implicit VR?
    "1.2.840.10008.1.2": True,  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": False,  # Explicit VR Little Endian
}
_TRANSFER_SYNTAX = _key(0x00020010)
_UPPER = range(0x41, 0x5B)


class FileView(Item):
    """The top level of a Part-10 file, read from its bytes (``file_view``): an
    ``Item`` of depth 0, plus whether the file holds Pixel Data."""

    __slots__ = ("has_pixel_data",)

    def __init__(self, buf: bytes, implicit: bool, elements: dict, has_pixel_data: bool):
        super().__init__(buf, implicit, 0, elements)
        self.has_pixel_data = has_pixel_data

    def get(self, keyword: str):
        """As ``Item.get``; a value that is not plain (several values, other characters)
        is decoded by pydicom itself, as the reference path reads it: the element and
        the Specific Character Set (all that decides how pydicom decodes a value of an
        unambiguous VR) in a Dataset of their own."""
        try:
            return super().get(keyword)
        except Unusual:
            pass
        tag, key, vr = _dictionary(keyword)
        if vr not in _TEXT_VRS and vr not in ("DS", "IS"):
            raise Unusual  # binary, a sequence, or a VR that depends on other elements
        ds = Dataset()
        for k in (_CHARSET, key):
            found = self.elements.get(k)
            if found is None:
                continue
            file_vr, start, stop = found
            if start is None or (k == key and file_vr not in (None, vr)):
                raise Unusual
            data = self.buf[start:stop]
            t = _key(k)  # _key swaps back
            ds[t] = RawDataElement(BaseTag(t), file_vr, len(data), data, start, self.implicit, True)
        try:
            return ds.get(keyword)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None


def file_view(fetch, size: int) -> FileView:
    """The top-level data set of a Part-10 file, from its bytes, as pydicom reads it
    with ``stop_before_pixels``; raises ``Unusual`` for anything but the plain case.

    ``fetch(n)`` returns the file's first bytes, at least ``n`` of them when the file
    has that many (the caller reads the file; nothing here touches it); ``size`` is
    the file's size. The plain case, where pydicom (``dcmread(force=True)``) reads
    exactly the elements found here and raises nothing:

    - a 128-byte preamble, 'DICM', then a file meta group 0002 in explicit VR little
      endian, every element with a known VR and a defined length, in ascending order,
      naming Explicit or Implicit VR Little Endian (exactly, after the padding pydicom
      strips) as the transfer syntax;
    - then a data set in that syntax whose first element is of group 0008 or above and,
      in implicit VR, does not look like explicit VR (two capital letters where the VR
      would be: pydicom would switch to explicit VR reading it);
    - top-level elements in strictly ascending order, each header and value inside the
      file, sequences as ``_items`` reads them (any item it finds odd is unusual),
      undefined lengths only on sequences, up to the end of the file exactly or up to
      Pixel Data (7FE0,0010), which is not read: its header must be complete, with a
      length that fits the file (or undefined: encapsulated). Any other element of
      group 7FE0 (float pixel data, where pydicom also stops) is unusual.

    A file cut short, a length beyond the end of the file or any other inconsistency
    is unusual: the reference path (pydicom) then reads the file and words the error.
    """
    buf = fetch(_PART10 + 256)
    if len(buf) < _PART10 + 8 or buf[128:_PART10] != b"DICM":
        raise Unusual
    pos, implicit = _file_meta(buf, fetch, size)
    buf = fetch(pos + 8)
    if pos + 8 > len(buf):
        raise Unusual  # no data set after the file meta, or a few stray bytes
    if buf[pos + 1] == 0 and buf[pos] < 0x08:  # group 0000 (a command set) to 0007
        raise Unusual
    if implicit and buf[pos + 4] in _UPPER and buf[pos + 5] in _UPPER:
        raise Unusual
    elements: dict[int, tuple] = {}
    previous = -1
    while pos < size:
        if pos + 8 > size:
            raise Unusual  # the file ends inside a header
        if pos + 12 > len(buf):
            buf = fetch(pos + 12)
        if implicit:
            key, length = _KEY_LENGTH.unpack_from(buf, pos)
            vr = None
            header = 8
        else:
            key, vr_bytes, length = _KEY_VR_LENGTH.unpack_from(buf, pos)
            vr = _VR_NAMES.get(vr_bytes)
            if vr is None:
                raise Unusual
            header = 8
            if vr_bytes in LONG_LENGTH_VRS:
                if pos + 12 > size:
                    raise Unusual
                length = _LENGTH.unpack_from(buf, pos + 8)[0]
                header = 12
        tag = _key(key)  # _key swaps back: ascending tags are ascending numbers
        if tag <= previous:
            raise Unusual  # out of order or twice: pydicom keeps the last
        previous = tag
        group = tag >> 16
        if group == _PIXEL_GROUP and key != _PIXEL_DATA:
            raise Unusual
        if key == _PIXEL_DATA:
            if not elements:
                raise Unusual  # read.py reports a data set with no element
            _pixel_data(buf, pos, implicit, size)
            return FileView(buf, implicit, elements, True)
        if group == _DELIMITER_GROUP:
            raise Unusual  # an item or delimiter at the top level
        pos += header
        if length == _UNDEFINED:
            if (vr != "SQ" and not (implicit and _is_sequence(key))) or key == _CHARSET:
                raise Unusual
            buf, items, pos = _undefined_sequence(buf, fetch, pos, implicit, size)
            elements[key] = (vr, None, items)
        else:
            if pos + length > size:
                raise Unusual
            if pos + length > len(buf):
                buf = fetch(pos + length)
                if pos + length > len(buf):
                    raise Unusual  # the file changed under us
            if key == _CHARSET:
                _check_charset(vr, buf[pos : pos + length], implicit)
            elements[key] = (vr, pos, pos + length)
            pos += length
    if pos != size:
        raise Unusual
    return FileView(buf, implicit, elements, False)


def _file_meta(buf: bytes, fetch, size: int) -> tuple[int, bool]:
    """Where the data set starts after the file meta, and whether it is implicit VR."""
    pos = _PART10
    syntax = None
    previous = -1
    while True:
        if pos + 12 > len(buf):
            buf = fetch(pos + 12)
            if pos + 12 > len(buf):
                raise Unusual
        key, vr_bytes, length = _KEY_VR_LENGTH.unpack_from(buf, pos)
        if key & 0xFFFF != _META_GROUP:
            break
        if vr_bytes not in EXPLICIT_VRS or vr_bytes == b"SQ":
            raise Unusual
        header = 8
        if vr_bytes in LONG_LENGTH_VRS:
            length = _LENGTH.unpack_from(buf, pos + 8)[0]
            header = 12
        if length == _UNDEFINED or pos + header + length > size:
            raise Unusual
        tag = _key(key)
        if tag <= previous:
            raise Unusual
        previous = tag
        pos += header
        if pos + length > len(buf):
            buf = fetch(pos + length)
            if pos + length > len(buf):
                raise Unusual
        if key == _TRANSFER_SYNTAX:
            if vr_bytes != b"UI":
                raise Unusual
            syntax = buf[pos : pos + length].rstrip(b"\x00 ")
        pos += length
    implicit = _SYNTAXES.get(syntax.decode("latin-1")) if syntax is not None else None
    if implicit is None:
        raise Unusual  # none, or another transfer syntax: the reference path reads it
    return pos, implicit


def _pixel_data(buf: bytes, pos: int, implicit: bool, size: int) -> None:
    """Check the Pixel Data header at ``pos`` as ``read`` checks it (complete, its
    declared length within the file); raises ``Unusual`` otherwise."""
    if pos + 12 > len(buf):
        raise Unusual  # fewer than 12 bytes left: the reference path decides
    if implicit:
        if buf[pos + 4 : pos + 6] in (b"OB", b"OW"):
            raise Unusual  # read.py would take these bytes for a VR
        length, start = _LENGTH.unpack_from(buf, pos + 4)[0], pos + 8
    else:
        if buf[pos + 4 : pos + 6] not in (b"OB", b"OW"):
            raise Unusual
        length, start = _LENGTH.unpack_from(buf, pos + 8)[0], pos + 12
    if length != _UNDEFINED and start + length > size:
        raise Unusual


def _undefined_sequence(buf: bytes, fetch, pos: int, implicit: bool, size: int):
    """The items of a top-level sequence of undefined length at ``pos`` (the bytes read
    so far grown, twice as many each time, until it ends inside them): (bytes, items,
    position after the sequence delimiter)."""
    while True:
        try:
            items, end = _items(buf, pos, None, implicit, 1)
        except Unusual:
            if len(buf) >= size:
                raise
            more = fetch(min(size, 2 * len(buf)))
            if len(more) <= len(buf):
                raise
            buf = more
            continue
        return buf, items, end


# ----------------------------------------------------------- decimal strings

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
    for row in table:
        values *= 10.0
        values += row
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


# ------------------------------------------------------------- control points


_FAILURES = (Unusual, ValueError, OverflowError, struct.error, IndexError)


def control_points(
    beam,
    tag: int,
    path: str,
    devices: list[BeamLimitingDevice],
    declared: int | None,
    limits: Limits,
    prepared: _Gathered | None = None,
) -> ControlPoints | None:
    """The beam's control points from the raw bytes of its sequence ``tag``, or None
    when anything is unusual (the element-by-element path then decides). ``beam`` is
    a pydicom Dataset, or an item of ``plan_view``; ``prepared``: from ``prepare``."""
    try:
        if prepared is None:
            prepared = _Gathered(_columns(_node(beam), tag), limits)
            _convert([prepared])
        return _control_points(prepared, path, devices, declared, limits)
    except _FAILURES:
        return None


def prepare(beams: list, tag: int, limits: Limits) -> dict[int, _Gathered]:
    """The control points of every beam (by index) gathered, and their decimal strings
    converted in one pass: numpy's cost per call is then paid once a plan, not once a
    beam. A beam that is not ordinary is left out (``control_points`` then decides)."""
    gathered = {}
    total = 0
    for i, beam in enumerate(beams):
        try:
            gathered[i] = _Gathered(_columns(_node(beam), tag), limits)
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


def _node(beam) -> Item | DatasetItem:
    return beam if not isinstance(beam, Dataset) else DatasetItem(beam)


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
        columns = _scan(buf, start, stop, implicit)
        if columns is not None:
            return columns
    return _columns_of_items(_items(buf, start, stop, implicit, 1)[0])


def _columns_of_items(cps: list) -> _Columns:
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
_SCAN_GROUPS = (0x300A, 0x300C, 0x300B, 0x3008, _DELIMITER_GROUP)
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


def _scan(buf: bytes, start: int, stop: int, implicit: bool) -> _Columns | None:
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
    delimiter = w[0] == _DELIMITER_GROUP
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
    after = offset + header + np.where((key == _ITEM) | (key == _BLDPS), 0, length)
    # Follow the headers from the first: the one after each must be a candidate too.
    if after[-1] == size and (after[:-1] == offset[1:]).all():
        reached = slice(None)  # every candidate, one after the other
    else:
        reached = _chain(offset, after, size)
        if reached is None:
            return None  # a header of another group, or a length beyond the sequence
    key, vr = key[reached], vr[reached]
    offset, header, length = offset[reached], header[reached], length[reached]
    if (((key & 0xFFFF) == _DELIMITER_GROUP) & (key != _ITEM)).any():
        return None  # a delimiter: undefined lengths, walked instead
    if (length == _UNDEFINED).any():
        return None
    if not implicit and not _VALID_VR[vr[key != _ITEM]].all():
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


def _structure(buf, start, size, implicit, key, vr, offset, content, length) -> _Columns | None:
    """Columns from the headers the scan reached: at ``offset``, with values (or an
    item's elements) from ``content`` on for ``length`` bytes. The control point items
    must tile the sequence and the device items each device position sequence, exactly;
    else None."""
    end = content + length
    is_item = key == _ITEM
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


def _tiles(start, end, owner, outer_start, outer_end) -> bool:
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


class _Gathered:
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

    def _add(self, index: list[int], values: list[bytes], width: int = 1):
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

    def spread(self, column, carry: bool = True) -> np.ndarray:
        """A column's values at every control point: carried forward to later points
        that omit them (``carry``), NaN before the first (and everywhere absent)."""
        n = self.count
        index, start, width = column
        shape = (n,) if width == 1 else (n, width)
        if not index:
            return np.full(shape, np.nan)
        values = self.values[start : start + len(index) * width].reshape(-1, *shape[1:])
        if len(index) == n:
            return values.copy()
        if carry and index == [0]:  # given once, at the first point
            return np.repeat(values, n, axis=0)
        out = np.full(shape, np.nan)
        if not carry:
            out[index] = values
        else:  # each value repeated up to the next control point that gives one
            repeats = [b - a for a, b in zip(index, [*index[1:], n], strict=True)]
            out[index[0] :] = values.repeat(repeats, axis=0)
        return out


def _convert(gathered: list[_Gathered]) -> None:
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
    g: _Gathered,
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


def _non_blank(column) -> tuple[list[int], list[bytes]]:
    """A column's values stripped, without the blank ones (absent, as the reference
    path reads them)."""
    index, raw = column
    values = list(map(_STRIP, raw))
    if b"" not in values:
        return index, values
    pairs = [(i, v) for i, v in zip(index, values, strict=True) if v]
    return [i for i, _ in pairs], [v for _, v in pairs]


def _directions(column, n: int) -> tuple[str | None, ...]:
    index, raw = column
    given = dict(zip(index, raw, strict=True))
    state: str | None = None
    out: list[str | None] = []
    cache: dict[bytes, str | None] = {}
    for i in range(n):
        value = given.get(i)
        if value is not None:
            if value not in cache:
                cache[value] = _code_string(value)
            if cache[value] is not None:
                state = cache[value]
        out.append(state)
    return tuple(out)


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
        values = list(map(_STRIP, raw))
        counts = set(map(bytes.count, values, repeat(b"\\")))
        if b"" in values or len(counts) != 1:
            raise Unusual
        width = counts.pop() + 1
        if width > 2 * limits.max_leaf_pairs:
            raise Unusual
        columns[dtype] = (index, values, width)
    return columns
