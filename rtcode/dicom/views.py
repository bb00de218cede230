"""Views: the data sets extraction reads, behind one ``DataSet`` protocol.

pydicom's ``Dataset`` satisfies ``DataSet``; so do the fast path's views, which also
give a sequence's items (``View.items``): an ``Item`` (a sequence item found in raw
bytes), a ``FileView`` (a whole file's top level, read without pydicom:
``file_view``) and a ``DatasetItem`` (a pydicom Dataset whose values are decoded from
the bytes pydicom keeps, ``plan_view``). A view decodes a value only when it is plain
(``plain``); anything else raises ``Unusual`` and the reference path (pydicom) reads
the file. The element headers are walked by ``elements.Elements`` (a sequence item's
by ``_elements``, the same walk written out as one loop for speed).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from rtcode.dicom.decimals import parse_ds
from rtcode.dicom.elements import (
    CHARSET,
    DELIMITER_GROUP,
    EXPLICIT_LE,
    EXPLICIT_VRS,
    IMPLICIT_LE,
    ITEM,
    ITEM_END,
    KEY_LENGTH,
    KEY_VR_LENGTH,
    LONG_LENGTH_VRS,
    META_SPAN,
    PART10,
    PIXEL_DATA,
    SEQUENCE_END,
    U32,
    UNDEFINED,
    VR_NAMES,
    BadHeader,
    Elements,
    file_meta,
    key,
    pixel_data_truncation,
)


class DataSet(Protocol):
    """What extraction reads from a data set: pydicom's ``Dataset`` has it, and so has
    every view here."""

    def __contains__(self, keyword: str, /) -> bool: ...

    def get(self, keyword: str, /) -> Any: ...


class View(DataSet, Protocol):
    """A fast-path view: a data set whose sequences give their items as views."""

    def items(self, keyword: str, /) -> Sequence[View]: ...


class Unusual(Exception):
    """Something the fast path does not handle: the reference path takes over."""


@functools.cache
def _dictionary(keyword: str) -> tuple[int, int, str]:
    """(tag, key, VR of the data dictionary) of a keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, key(tag), dictionary_VR(tag)


_DEPTH = 8  # nesting depth this path follows; deeper: the reference path decides
# Where an element's value lies: (VR named in the file, None in implicit VR; start;
# stop), or (VR, None, its items) for a sequence of undefined length walked already.
Found = tuple[Any, ...]


# ------------------------------------------------------------ walking the bytes


class Item:
    """One sequence item read from the bytes: where each of its elements' values lies.

    ``elements`` maps a key to (VR named in the file, None in implicit VR; start; stop)
    of the value in ``buf``. A sequence of undefined length, walked to find its end,
    is kept as (VR, None, its items)."""

    __slots__ = ("buf", "implicit", "depth", "elements")

    def __init__(self, buf: bytes, implicit: bool, depth: int, elements: dict[int, Found]) -> None:
        self.buf = buf
        self.implicit = implicit
        self.depth = depth
        self.elements = elements

    def __contains__(self, keyword: str) -> bool:
        return _dictionary(keyword)[1] in self.elements

    def get(self, keyword: str) -> Any:
        """The value as pydicom would give it, when it is plain; None when absent."""
        _, k, vr = _dictionary(keyword)
        data = self.raw(k, vr)
        return None if data is None else plain(vr, data)

    def items(self, keyword: str) -> list[Item]:
        """The items of a sequence; [] when it is absent."""
        return sequence_items(self, keyword, self.depth + 1)  # type: ignore[return-value]  # raw items are Items

    def raw(self, k: int, vr: str) -> bytes | None:
        """The undecoded value of an element that is no sequence; None when absent."""
        found = self.elements.get(k)
        if found is None:
            return None
        file_vr, start, stop = found
        if vr == "SQ" or start is None or (file_vr is not None and file_vr != vr):
            raise Unusual  # e.g. UN or a binary VR: the reference path decodes it
        return self.buf[start:stop]

    def values(self, wanted: dict[int, str]) -> list[tuple[int, bytes]]:
        """(key, undecoded value) of the elements in ``wanted`` (key: VR) it holds."""
        out = []
        for k, (file_vr, start, stop) in self.elements.items():
            vr = wanted.get(k)
            if vr is not None:
                if start is None or (file_vr is not None and file_vr != vr):
                    raise Unusual
                out.append((k, self.buf[start:stop]))
        return out

    def region(self, k: int) -> tuple[bytes, int, int, bool] | list[Item] | None:
        """A sequence as (bytes, start, stop, implicit) of its items, or its items when
        they were walked already; None when absent."""
        found = self.elements.get(k)
        if found is None:
            return None
        file_vr, start, stop = found
        if file_vr not in (None, "SQ"):
            raise Unusual
        if start is None:
            items: list[Item] = stop
            return items
        return self.buf, start, stop, self.implicit


def _items(
    buf: bytes, start: int, end: int | None, implicit: bool, depth: int
) -> tuple[list[Item], int]:
    """The items of a sequence value in ``buf[start:end]`` (``end`` None: undefined
    length, up to the sequence delimiter). Returns (items, position after the value)."""
    if depth > _DEPTH:
        raise Unusual
    items: list[Item] = []
    pos = start
    limit = len(buf) if end is None else end
    item_length = KEY_LENGTH.unpack_from
    while pos < limit:
        if pos + 8 > limit:
            raise Unusual
        k, length = item_length(buf, pos)
        pos += 8
        if k == SEQUENCE_END:
            if end is not None:
                raise Unusual
            return items, pos
        if k != ITEM:
            raise Unusual
        if length == UNDEFINED:
            elements, pos = _elements(buf, pos, None, implicit, depth)
        else:
            if pos + length > limit:
                raise Unusual
            elements, pos = _elements(buf, pos, pos + length, implicit, depth)
        items.append(Item(buf, implicit, depth, elements))
    if end is None or pos != end:
        raise Unusual  # no sequence delimiter, or an item overran the sequence
    return items, pos


def _elements(
    buf: bytes, start: int, end: int | None, implicit: bool, depth: int
) -> tuple[dict[int, Found], int]:
    """Where the elements of one item lie (see ``Item``), and the position after it.

    The same walk as ``elements.Elements`` with no stop predicate and no growing
    buffer, written out as one loop: items are walked by the ten thousand (an
    implicit-VR plan with undefined lengths has every item of every beam walked to find
    where its sequences end), and a generator's resumption and yielded tuple per
    element cost more than the rest of the walk. Anything odd raises ``Unusual``."""
    found: dict[int, Found] = {}
    pos = start
    limit = len(buf) if end is None else end
    names, long_vrs = VR_NAMES, LONG_LENGTH_VRS
    key_length, key_vr_length, u32 = (
        KEY_LENGTH.unpack_from, KEY_VR_LENGTH.unpack_from, U32.unpack_from
    )  # fmt: skip
    while pos < limit:
        if pos + 8 > limit:
            raise Unusual  # the item ends inside an element header
        vr: str | None
        if implicit:
            k, length = key_length(buf, pos)
            if k & 0xFFFF == DELIMITER_GROUP:
                return found, _item_end(buf, pos, k, end)
            vr = None
            pos += 8
        else:
            k, vr_bytes, length = key_vr_length(buf, pos)
            if k & 0xFFFF == DELIMITER_GROUP:
                return found, _item_end(buf, pos, k, end)
            vr = names.get(vr_bytes)
            if vr is None:
                raise Unusual  # no VR (pydicom would read the item as implicit VR)
            if vr_bytes in long_vrs:
                if pos + 12 > limit:
                    raise Unusual
                length = u32(buf, pos + 8)[0]
                pos += 12
            else:
                pos += 8
        if k in found:
            raise Unusual  # the same element twice in one item
        if length == UNDEFINED:
            if (vr != "SQ" and not (implicit and _is_sequence(k))) or k == CHARSET:
                raise Unusual  # only a sequence has an undefined length in an item
            items, pos = _items(buf, pos, None, implicit, depth + 1)
            found[k] = (vr, None, items)
            continue
        stop = pos + length
        if stop > limit:
            raise Unusual  # a value past the item
        if k == CHARSET:
            _check_charset(vr, buf[pos:stop], implicit)
        found[k] = (vr, pos, stop)
        pos = stop
    if end is None:
        raise Unusual  # no item delimiter before the end
    return found, pos


def _item_end(buf: bytes, pos: int, k: int, end: int | None) -> int:
    """The position after the item delimiter at ``pos`` that ends an item of undefined
    length (``end`` None); ``Unusual`` for any other item or delimiter header there."""
    if k != ITEM_END or end is not None or pos + 8 > len(buf):
        raise Unusual
    if U32.unpack_from(buf, pos + 4)[0] != 0:
        raise Unusual
    return pos + 8


def _check_charset(vr: str | None, data: bytes, implicit: bool) -> None:
    """pydicom turns a Specific Character Set into Python encodings as it reads a data
    set (as the file is read, or a sequence when first used), and a damaged one can
    make that fail: the same conversions, and ``Unusual`` if they fail."""
    if not _charset_converts(vr, data, implicit):
        raise Unusual


@functools.lru_cache(maxsize=256)
def _charset_converts(vr: str | None, data: bytes, implicit: bool) -> bool:
    """Whether pydicom's conversions of this Specific Character Set succeed (remembered:
    every file names one, nearly always one of a few, and converting costs ~20 us)."""
    import warnings

    from pydicom.charset import convert_encodings
    from pydicom.dataelem import convert_raw_data_element
    from pydicom.values import convert_string

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_encodings(convert_string(data, True))
            elem = RawDataElement(BaseTag(key(CHARSET)), vr, len(data), data, 0, implicit, True)
            convert_encodings(convert_raw_data_element(elem).value)
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _is_sequence(k: int) -> bool:
    """Whether the data dictionary makes key ``k`` a sequence (remembered: an implicit-VR
    plan asks it for thousands of undefined lengths, all of a handful of keys)."""
    try:
        return bool(dictionary_VR(key(k)) == "SQ")  # key swaps back
    except KeyError:
        return False


# ------------------------------------------------------------ plain values

_PRINTABLE = bytes(range(0x20, 0x7F)).replace(b"\\", b"")
# Text VRs pydicom returns as str with padding (spaces, NULs) stripped on the right.
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}
DECIMAL = re.compile(rb" *([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?) *")
_INTEGER = re.compile(rb" *([+-]?[0-9]+) *")


def plain(vr: str, data: bytes) -> Any:
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
        match = DECIMAL.fullmatch(data)
        if match is None:
            raise Unusual
        value = float(match[1])
        if not math.isfinite(value):
            raise Unusual  # (1e999): the reference path names it as written
        return value
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

    def get(self, keyword: str) -> Any:
        tag, _, vr = _dictionary(keyword)
        elem = self._element(tag)
        if elem is None:
            return None
        if isinstance(elem, RawDataElement) and vr != "SQ":
            data = elem.value
            if isinstance(data, bytes) and elem.VR in (None, vr) and elem.is_little_endian:
                try:
                    return plain(vr, data)
                except Unusual:
                    pass
        try:
            return self.ds.get(keyword)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None

    def items(self, keyword: str) -> list[Item] | list[DatasetItem]:
        return sequence_items(self, keyword, 1)

    def _element(self, tag: int) -> Any:
        """``get_item``: pydicom converts a sequence's bytes there, and may fail."""
        try:
            return self.ds.get_item(tag)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None

    def raw(self, k: int, vr: str) -> bytes | None:
        elem = self._element(key(k))  # key swaps back
        if elem is None:
            return None
        if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
            raise Unusual  # decoded already by someone: the reference path reads it
        if elem.VR not in (None, vr) or not elem.is_little_endian:
            raise Unusual
        return elem.value

    def values(self, wanted: dict[int, str]) -> list[tuple[int, bytes]]:
        out = []
        for k, vr in wanted.items():
            value = self.raw(k, vr)
            if value is not None:
                out.append((k, value))
        return out

    def region(self, k: int) -> tuple[bytes, int, int | None, bool] | list[DatasetItem] | None:
        """A sequence still in bytes as (bytes, start, stop, implicit), stop None for an
        undefined length; its items when pydicom parsed it; None when absent."""
        elem = self._element(key(k))
        if elem is None:
            return None
        if isinstance(elem, RawDataElement):
            buf = elem.value
            if not isinstance(buf, bytes) or not elem.is_little_endian:
                raise Unusual
            if elem.VR not in (None, "SQ") or (elem.VR is None) != elem.is_implicit_VR:
                raise Unusual
            if elem.length != UNDEFINED:
                return buf, 0, len(buf), elem.is_implicit_VR
            if buf[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
                return buf, 0, len(buf) - 8, elem.is_implicit_VR  # pydicom kept the delimiter
            return buf, 0, None, elem.is_implicit_VR
        value = elem.value
        if isinstance(value, DicomSequence) and all(isinstance(i, Dataset) for i in value):
            return [DatasetItem(i) for i in value]
        raise Unusual


def sequence_items(
    node: Item | DatasetItem, keyword: str, depth: int
) -> list[Item] | list[DatasetItem]:
    """The items of the sequence ``keyword`` of ``node``; [] when it is absent."""
    _, k, vr = _dictionary(keyword)
    if vr != "SQ":
        raise Unusual
    found = node.region(k)
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


class FileView(Item):
    """The top level of a DICOM file, read from its bytes (``file_view``): an
    ``Item`` of depth 0, plus whether the file holds Pixel Data."""

    __slots__ = ("has_pixel_data",)

    def __init__(
        self, buf: bytes, implicit: bool, elements: dict[int, Found], has_pixel_data: bool
    ) -> None:
        super().__init__(buf, implicit, 0, elements)
        self.has_pixel_data = has_pixel_data

    def get(self, keyword: str) -> Any:
        """As ``Item.get``; a value that is not plain (several values, other characters)
        is decoded by pydicom itself, as the reference path reads it: the element and
        the Specific Character Set (all that decides how pydicom decodes a value of an
        unambiguous VR) in a Dataset of their own."""
        try:
            return super().get(keyword)
        except Unusual:
            pass
        tag, wanted, vr = _dictionary(keyword)
        if vr not in _TEXT_VRS and vr not in ("DS", "IS"):
            raise Unusual  # binary, a sequence, or a VR that depends on other elements
        ds = Dataset()
        for k in (CHARSET, wanted):
            found = self.elements.get(k)
            if found is None:
                continue
            file_vr, start, stop = found
            if start is None or (k == wanted and file_vr not in (None, vr)):
                raise Unusual
            data = self.buf[start:stop]
            t = key(k)  # key swaps back
            ds[t] = RawDataElement(BaseTag(t), file_vr, len(data), data, start, self.implicit, True)
        try:
            return ds.get(keyword)
        except Exception:  # damaged: the reference path words the error
            raise Unusual from None


def file_view(fetch: Callable[[int], bytes], size: int) -> FileView:
    """The top-level data set of a DICOM file, from its bytes, as pydicom reads it
    with ``stop_before_pixels``; raises ``Unusual`` for anything but the plain case.

    ``fetch(n)`` returns the file's first bytes, at least ``n`` of them when the file
    has that many (the caller reads the file; nothing here touches it); ``size`` is
    the file's size. The plain case, where pydicom (``dcmread(force=True)``) reads
    exactly the elements found here and raises nothing:

    - a 128-byte preamble, 'DICM', then a file meta group 0002 in explicit VR little
      endian, every element with a known VR and a defined length, in ascending order,
      naming Explicit or Implicit VR Little Endian (exactly, after the padding pydicom
      strips) as the transfer syntax; or no preamble and no file meta at all (a bare
      data set, as some planning systems export: ``_bare_start``);
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
    buf = fetch(META_SPAN)
    if len(buf) >= PART10 and buf[128:PART10] == b"DICM":
        pos, implicit = _part10_start(buf)
    else:
        pos, implicit = _bare_start(buf)
    if pos + 8 > len(buf):
        raise Unusual  # no data set after the file meta, or a few stray bytes
    if buf[pos + 1] == 0 and buf[pos] < 0x08:  # group 0000 (a command set) to 0007
        raise Unusual
    if implicit and buf[pos + 4] in _UPPER and buf[pos + 5] in _UPPER:
        raise Unusual
    elements: dict[int, Found] = {}
    walk = Elements(
        buf,
        pos,
        size,
        implicit,
        stop_when=_pixel_data,
        sequence=_top_sequence(fetch, size, implicit),
        fetch=fetch,
    )
    previous = -1
    try:
        for k, vr, start, stop in walk:
            tag = key(k)  # key swaps back: ascending tags are ascending numbers
            if tag <= previous or tag >> 16 == _PIXEL_GROUP:
                raise Unusual  # out of order or twice (pydicom keeps the last); float pixels
            previous = tag
            if k == CHARSET:
                assert isinstance(stop, int)  # a defined length: (start, stop)
                _check_charset(vr, walk.buf[start:stop], implicit)
            elements[k] = (vr, start, stop)
    except BadHeader:
        raise Unusual from None
    buf, pos = walk.buf, walk.pos
    if walk.stopped is None:
        return FileView(buf, implicit, elements, False)  # the end of the file exactly
    if walk.stopped != PIXEL_DATA or key(PIXEL_DATA) <= previous or not elements:
        raise Unusual  # an item at the top level; a data set with nothing before its pixels
    if pos + 12 > len(buf):
        raise Unusual  # fewer than 12 bytes left: the reference path decides
    header = buf[pos : pos + 12]
    if implicit == (header[4:6] in (b"OB", b"OW")):
        raise Unusual  # read.py takes those bytes for a VR exactly when they are OB or OW
    if pixel_data_truncation(header, pos, size) is not None:
        raise Unusual
    return FileView(buf, implicit, elements, True)


def _part10_start(buf: bytes) -> tuple[int, bool]:
    """(where the data set starts, whether it is implicit VR) after a Part-10 file's
    preamble and file meta; ``Unusual`` unless the meta is plain and names one of the
    two little-endian transfer syntaxes read here."""
    if len(buf) < PART10 + 8:
        raise Unusual
    meta = file_meta(buf)
    syntax = meta.values.get(0x0010)
    if meta.start is None or not meta.ordered or syntax is None or syntax[0] != "UI":
        raise Unusual
    implicit = _SYNTAXES.get(syntax[1].rstrip(b"\x00 ").decode("latin-1"))
    if implicit is None:
        raise Unusual  # none, or another transfer syntax: the reference path reads it
    return meta.start, implicit


def _bare_start(buf: bytes) -> tuple[int, bool]:
    """(0, whether it is implicit VR) of a data set written without preamble or file
    meta (Monaco's plans). pydicom (``dcmread(force=True)``) finds no 'DICM', no group
    0002 and no transfer syntax, and guesses from the first header alone: explicit VR
    little endian when the two bytes after its tag are a VR, else implicit (big endian
    only for a group of 0x0400 or more, which the caller refuses). A data set starting
    with group 0002 (a file meta without preamble) is left to pydicom: ``Unusual``."""
    if len(buf) < 8:
        raise Unusual
    group = int.from_bytes(buf[:2], "little")
    explicit = buf[4:6] in EXPLICIT_VRS
    if group == 0x0002 or (explicit and group >= 0x0400):
        raise Unusual
    return 0, not explicit


_SYNTAXES = {IMPLICIT_LE: True, EXPLICIT_LE: False}  # transfer syntaxes read here: implicit?
_PIXEL_GROUP = 0x7FE0
_UPPER = range(0x41, 0x5B)


def _pixel_data(k: int) -> bool:
    return k == PIXEL_DATA


def _top_sequence(
    fetch: Callable[[int], bytes], size: int, implicit: bool
) -> Callable[[bytes, int, int, str | None], tuple[bytes, list[Item], int]]:
    """The ``Elements`` hook for a top-level element of undefined length: a sequence
    (not the Specific Character Set), its items walked with the bytes read so far grown,
    twice as many each time, until it ends inside them."""

    def sequence(buf: bytes, pos: int, k: int, vr: str | None) -> tuple[bytes, list[Item], int]:
        if (vr != "SQ" and not (implicit and _is_sequence(k))) or k == CHARSET:
            raise Unusual
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

    return sequence
