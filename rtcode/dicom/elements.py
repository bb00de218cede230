"""The byte layer: DICOM data element headers as the files write them.

The VR tables and tags (PS3.5), the one element header iterator (``Elements``, with a
stop predicate: file meta, a data set up to its Pixel Data, an item up to its
delimiter), the file meta (``file_meta``), the Pixel Data header check, and the
bounded element count (``count_elements`` over a ``Window`` or an ``Inflating``
deflated data set). Standard library only: nothing here imports pydicom or numpy.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

# Explicit VRs (PS3.5 6.2).
EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip
# Explicit VRs with a 4-byte length after 2 reserved bytes (PS3.5 7.1.2).
LONG_LENGTH_VRS = {
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
}  # fmt: skip
VR_NAMES = {vr: vr.decode() for vr in EXPLICIT_VRS}  # the VR bytes, as pydicom names them

# Transfer syntaxes (PS3.5 A.1 to A.5)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"  # retired, still met
DEFLATED = "1.2.840.10008.1.2.1.99"  # the data set deflated (PS3.5 A.5)

PART10 = 132  # preamble and 'DICM'
META_MAX_BYTES = 65536  # a file meta group is a few hundred bytes
# All the file meta readers look at: an element header starting before the limit, and
# a UID of at most 64 characters after it.
META_SPAN = PART10 + META_MAX_BYTES + 12 + 64
UNDEFINED = 0xFFFFFFFF  # an undefined length
DELIMITER_GROUP = 0xFFFE  # items and delimiters: not data elements


def key(tag: int) -> int:
    """A tag as its four bytes read as one little-endian number: element, group.
    (Its own inverse: ``key(key(tag)) == tag``.) The walkers compare keys, not tags:
    a header's first four bytes are then one ``struct`` field."""
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


ITEM = key(0xFFFEE000)
ITEM_END = key(0xFFFEE00D)
SEQUENCE_END = key(0xFFFEE0DD)
PIXEL_DATA = key(0x7FE00010)
CHARSET = key(0x00080005)  # SpecificCharacterSet
# Pixel Data (7FE0,0010) as its tag is written in a little and a big endian data set
PIXEL_DATA_TAG = {True: b"\xe0\x7f\x10\x00", False: b"\x7f\xe0\x00\x10"}

KEY_LENGTH = struct.Struct("<II")  # implicit VR: key, 32-bit length
KEY_VR_LENGTH = struct.Struct("<I2sH")  # explicit VR: key, VR, 16-bit length
U32 = struct.Struct("<I")
_BIG_U32 = struct.Struct(">I")


class BadHeader(ValueError):
    """Bytes that are no element header where one belongs, or a value that runs past
    the bytes it must fit in."""


Element = tuple[int, "str | None", "int | None", object]


class Elements:
    """The data elements of one level of a little-endian data set, header by header.

    Iterating yields (key, VR, start, stop) for each element from ``pos``: its value is
    ``buf[start:stop]``; VR is None in implicit VR. An element of undefined length is
    handed to ``sequence(buf, value_start, key, vr)``, which returns (buf, what it
    read, position after it), and is yielded as (key, VR, None, what it read); without
    ``sequence`` it is a ``BadHeader``. Values are never decoded.

    The walk stops before a delimiter or item tag (group FFFE: never an element of a
    data set) and before an element whose key ``stop_when(key)`` accepts (checked
    before the rest of its header is read: the file meta stops at the first header of
    another group, which may be in another encoding); ``stopped`` is then that key and
    ``pos`` its header's position; at ``end`` (None: the end of ``buf``), ``stopped`` is
    None. A header or value that runs past ``end`` raises ``BadHeader``, as does an
    explicit VR that is no VR. ``fetch(n)``, when given, returns the data's first
    ``n`` bytes or more (``buf`` then grows as the walk needs it; ``end`` is the size).
    """

    __slots__ = ("buf", "pos", "end", "implicit", "stop_when", "sequence", "fetch", "stopped")

    def __init__(
        self,
        buf: bytes,
        pos: int,
        end: int | None,
        implicit: bool,
        *,
        stop_when: Callable[[int], bool] | None = None,
        sequence: Callable[[bytes, int, int, str | None], tuple[bytes, object, int]] | None = None,
        fetch: Callable[[int], bytes] | None = None,
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.implicit = implicit
        self.stop_when = stop_when
        self.sequence = sequence
        self.fetch = fetch
        self.stopped: int | None = None

    def __iter__(self) -> Iterator[Element]:
        buf, pos, implicit, stop_when, fetch = (
            self.buf, self.pos, self.implicit, self.stop_when, self.fetch
        )  # fmt: skip
        limit = len(buf) if self.end is None else self.end
        long_vrs, names = LONG_LENGTH_VRS, VR_NAMES
        try:
            while pos < limit:
                if pos + 8 > limit:
                    raise BadHeader("the data ends inside an element header")
                if fetch is not None and pos + 12 > len(buf):
                    buf = self.buf = fetch(pos + 12)
                if implicit:
                    k, length = KEY_LENGTH.unpack_from(buf, pos)
                    if k & 0xFFFF == DELIMITER_GROUP or (stop_when is not None and stop_when(k)):
                        self.stopped = k
                        return
                    vr = None
                    pos += 8
                else:
                    k, vr_bytes, length = KEY_VR_LENGTH.unpack_from(buf, pos)
                    if k & 0xFFFF == DELIMITER_GROUP or (stop_when is not None and stop_when(k)):
                        self.stopped = k
                        return
                    vr = names.get(vr_bytes)
                    if vr is None:
                        raise BadHeader("an explicit VR header names no VR")
                    if vr_bytes in long_vrs:
                        if pos + 12 > limit:
                            raise BadHeader("the data ends inside an element header")
                        length = U32.unpack_from(buf, pos + 8)[0]
                        pos += 12
                    else:
                        pos += 8
                if length == UNDEFINED:
                    if self.sequence is None:
                        raise BadHeader("an undefined length")
                    buf, value, after = self.sequence(buf, pos, k, vr)
                    self.buf = buf
                    yield k, vr, None, value
                    pos = after
                    continue
                stop = pos + length
                if stop > limit:
                    raise BadHeader("a value runs past the end of its data")
                if stop > len(buf):
                    if fetch is None or stop > len(buf := fetch(stop)):
                        raise BadHeader("a value runs past the bytes read")
                    self.buf = buf
                yield k, vr, pos, stop
                pos = stop
        finally:
            self.pos = pos


# ------------------------------------------------------------------ file meta


class FileMeta(NamedTuple):
    """What a Part-10 file meta group (PS3.10 7.1: always explicit VR little endian)
    says, from a file's first bytes."""

    start: int | None  # where the data set starts; None: the group is odd or cut short
    element_count: int  # its elements, up to where it was read
    values: dict[int, tuple[str, bytes]]  # element number -> (VR, value bytes)
    ordered: bool  # elements in ascending order, none a sequence

    def uid(self, element: int) -> str | None:
        """The UID in element (0002,``element``), padding stripped; None when absent or
        longer than a UID can be (64 characters)."""
        found = self.values.get(element)
        if found is None or len(found[1]) > 64:
            return None
        return found[1].rstrip(b"\0 ").decode("ascii", "replace") or None

    @property
    def sop_class_uid(self) -> str | None:
        return self.uid(0x0002)  # MediaStorageSOPClassUID

    @property
    def transfer_syntax(self) -> str | None:
        return self.uid(0x0010)  # TransferSyntaxUID


def _not_meta(k: int) -> bool:
    return k & 0xFFFF != 0x0002


def file_meta(buf: bytes) -> FileMeta:
    """The file meta group at byte 132 of ``buf`` (a Part-10 file's first bytes, at
    most ``META_SPAN``). Elements read before anything odd (an undefined length, a VR
    that is no VR, a value past ``buf``, a header past ``META_MAX_BYTES``) are kept;
    ``start`` is then None and the parser decides."""
    values: dict[int, tuple[str, bytes]] = {}
    walk = Elements(buf, PART10, min(len(buf), META_SPAN), False, stop_when=_not_meta)
    previous, ordered = -1, True
    try:
        for k, vr, start, stop in walk:
            element = k >> 16
            if element <= previous or vr == "SQ":
                ordered = False
            previous = element
            assert start is not None and isinstance(stop, int)  # no sequence hook
            values[element] = (vr or "", buf[start:stop])
    except BadHeader:
        return FileMeta(None, len(values), values, False)
    if walk.stopped is None or walk.pos > PART10 + META_MAX_BYTES:
        return FileMeta(None, len(values), values, False)
    return FileMeta(walk.pos, len(values), values, ordered)


# ----------------------------------------------------------------- pixel data


def pixel_data_header(header: bytes, little: bool = True) -> tuple[int, int] | None:
    """(declared length, header size) of the Pixel Data header at the start of
    ``header`` (12 bytes or fewer): explicit VR when OB or OW stands where the VR
    would; None when it is cut short. ``little``: the data set's byte order (Explicit
    VR Big Endian writes the length most significant byte first)."""
    u32 = U32 if little else _BIG_U32
    if len(header) < 8:
        return None
    if header[4:6] in (b"OB", b"OW"):
        if len(header) < 12:
            return None
        return u32.unpack_from(header, 8)[0], 12
    return u32.unpack_from(header, 4)[0], 8


def pixel_data_truncation(header: bytes, at: int, size: int, little: bool = True) -> str | None:
    """Why the Pixel Data whose header is at byte ``at`` of a file of ``size`` bytes
    is cut short, without reading it; None when its declared length fits (or is
    undefined: encapsulated, item lengths would have to be walked)."""
    found = pixel_data_header(header, little)
    if found is None:
        return "the file ends inside the Pixel Data header"
    length, header_size = found
    if length == UNDEFINED:
        return None
    left = size - (at + header_size)
    if left < length:
        return f"Pixel Data declares {length} bytes but only {left} remain"
    return None


# ------------------------------------------------------------ element count


class Window:
    """A file's bytes by position, read a megabyte at a time from where they are asked
    for (a skipped value is never read)."""

    SIZE = 1 << 20
    inflated = False  # whether a deflated data set comes inflated (see Inflating)

    def __init__(self, raw: io.RawIOBase) -> None:
        self.raw = raw
        self.start = 0
        self.data = b""

    def at(self, pos: int, n: int) -> bytes:
        """``n`` bytes from ``pos`` (fewer at the end of the file)."""
        if pos < self.start or pos + n > self.start + len(self.data):
            self.raw.seek(pos)
            self.start, self.data = pos, self.raw.read(max(n, self.SIZE)) or b""
        offset = pos - self.start
        return self.data[offset : offset + n]


class Inflating:
    """A deflated file (PS3.5 A.5) as pydicom sees it: the file meta as written, then
    the data set inflated. Read forward only, as ``count_elements`` does: bytes behind
    the position asked for are let go, a megabyte is inflated at a time, and no more
    than ``most`` bytes in all (then ``too_large``; ``damaged``: the stream does not
    inflate)."""

    inflated = True

    def __init__(self, raw: io.RawIOBase, start: int, most: int) -> None:
        import zlib

        self._zlib_error = zlib.error
        raw.seek(0)
        self.raw = raw
        self.start = 0
        self.data = raw.read(start) or b""  # the file meta, as written
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._left = most  # inflated bytes still allowed
        self.too_large = self.damaged = False

    def _more(self) -> bytes:
        """Up to a megabyte more of the data set, inflated; b"" at its end."""
        inflate = self._inflate
        while not (self.too_large or self.damaged or inflate.eof):
            chunk = inflate.unconsumed_tail or self.raw.read(Window.SIZE)
            if not chunk:
                break
            try:
                out = inflate.decompress(chunk, Window.SIZE)
            except self._zlib_error:
                self.damaged = True
                break
            self._left -= len(out)
            if self._left < 0:
                self.too_large = True
                break
            if out:
                return out
        return b""

    def at(self, pos: int, n: int) -> bytes:
        """``n`` bytes from ``pos`` (fewer at the end), ``pos`` never behind the last."""
        while True:
            end = self.start + len(self.data)
            if pos >= end:  # all of it behind: let it go
                self.start, self.data = end, b""
            elif pos > self.start:
                self.start, self.data = pos, self.data[pos - self.start :]
            if self.start + len(self.data) >= pos + n or not (more := self._more()):
                break
            self.data += more
        offset = pos - self.start
        return self.data[offset : offset + n]

    def drain(self) -> None:
        """Inflate the rest (to know its size), keeping none of it."""
        self.data = b""
        while self._more():
            pass


class Positioned(Protocol):
    """Bytes by position: a ``Window`` or an ``Inflating``."""

    inflated: bool

    def at(self, pos: int, n: int) -> bytes: ...


_HEADER = struct.Struct("<HHI")  # group, element, 32-bit length (implicit VR)
_EXPLICIT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_BIG_ENDIAN = (struct.Struct(">HHI"), struct.Struct(">HH2sH"), _BIG_U32)


def count_elements(buf: Positioned, form: str, limit: int) -> int | None:
    """Data elements and sequence items in a DICOM file (file meta included, items'
    elements included; delimiters and pixel data fragments not), counted up to
    ``limit + 1``; None when the encoding is one this count does not follow (no
    transfer syntax, or a deflated data set not yet inflated). Something that cannot
    be an element header ends the count: the parser then reports the damage.

    A walker of its own, not ``Elements``: it counts across every nesting level in one
    pass over a sliding window (files of any size, deflated ones as they inflate, big
    endian too), entering sequences and items rather than keeping their places.
    """
    pos, count = 0, 0
    header_struct, explicit_struct, u32 = _HEADER, _EXPLICIT_HEADER, U32
    if form == "part10":
        meta = file_meta(buf.at(0, META_SPAN))
        syntax = meta.transfer_syntax
        if meta.start is None or syntax is None:
            return None  # no transfer syntax: the parser guesses the encoding; no count
        if syntax == DEFLATED and not buf.inflated:
            return None  # deflated: counted as it inflates
        pos, count = meta.start, meta.element_count
        implicit = syntax == IMPLICIT_LE
        if syntax == EXPLICIT_BE:  # every header after the meta
            header_struct, explicit_struct, u32 = _BIG_ENDIAN
    else:
        implicit = buf.at(4, 2) not in EXPLICIT_VRS
    fragments = False  # inside encapsulated pixel data: items hold bytes, not elements
    restore: list[bool] = []  # the encoding to go back to at each sequence delimiter
    while count <= limit:
        header = buf.at(pos, 12)
        if len(header) < 8:
            break  # the end of the file
        group, element, length = header_struct.unpack_from(header)
        if group == DELIMITER_GROUP:
            pos += 8
            if fragments and element == 0xE000 and length != UNDEFINED:
                pos += length  # a fragment of pixel data
            elif element == 0xE000:
                count += 1  # a sequence item: pydicom makes a data set of each
            elif fragments and element == 0xE0DD:
                fragments = False
            elif element == 0xE0DD and restore:
                implicit = restore.pop()
            continue
        count += 1
        vr: bytes | None
        if implicit:
            sequence = length == UNDEFINED or (group << 16 | element) in _sequences()
            vr = b"SQ" if sequence else None
            pos += 8
        else:
            vr, length = header[4:6], explicit_struct.unpack_from(header)[3]
            if vr not in EXPLICIT_VRS:
                break  # not an element header (or an implicit VR item): stop counting
            if vr in LONG_LENGTH_VRS:
                if len(header) < 12:
                    break
                length = u32.unpack_from(header, 8)[0]
                pos += 12
            else:
                pos += 8
        if length == UNDEFINED:
            if vr not in (b"SQ", b"UN"):
                fragments = True  # encapsulated pixel data: its items hold bytes
                continue
            restore.append(implicit)  # a sequence: its items' elements follow
            implicit = implicit or vr == b"UN"  # pydicom reads one of VR UN as implicit
            continue
        if vr == b"SQ":
            continue  # a sequence of defined length: its items follow
        pos += length
    return count


def _sequences() -> frozenset[int]:
    """Tags the data dictionary says are sequences: in implicit VR, a sequence of
    defined length is parsed as one only when the dictionary says so."""
    global _SEQUENCES
    if _SEQUENCES is None:
        # only for files of millions of elements
        from pydicom.datadict import DicomDictionary  # type: ignore[attr-defined]  # not in its __all__

        _SEQUENCES = frozenset(t for t, entry in DicomDictionary.items() if entry[0] == "SQ")
    return _SEQUENCES


_SEQUENCES: frozenset[int] | None = None
