"""Step 1, reading: the only module that touches the file system.

Files are recognised as DICOM by content, not by name: a Part-10 file has
'DICM' after a 128-byte preamble; an older raw dataset (no preamble, no file
meta) starts with a plausible group 0008 element. Images are identified from
the file meta (or a header-only read) and skipped without reading their pixel
data; only RT Plan, RT Ion Plan, RT Dose and RT Structure Set are read, always
with ``stop_before_pixels``. Inputs are opened read-only and never modified.

What an object is comes from its SOP Class UID when that is one of the four
standard RT classes; under any other class (a vendor's private class such as
Varian's Halcyon/Ethos plans, an unknown one, or none) from its content: Modality
and the sequences that make an RT Plan, Dose or Structure Set (``kind_by_content``).
Images and the standard objects that are not used for coding (``quirks``) are
skipped from the file meta; every other skipped file says why (``reason``).
``read_full`` is the one exception: it reads a structure set's contours and a
dose grid's pixels, and only DVH reporting calls it.

A plain Part-10 RT file (explicit or implicit VR little endian, nothing odd in its
structure) is not parsed by pydicom at all: its bytes up to the Pixel Data are read and
``extract_bulk.file_view`` finds its elements (``RawDataset``); pydicom parses those
same bytes only if extraction meets something unusual. Anything else is read by
pydicom as before.

Bad input never raises out of ``read``: a file that is not DICOM, cut short,
damaged, unreadable or larger than the policy's ``limits.max_file_size_mb``
becomes one ``ReadResult`` of kind "error" with a sentence that says what is
wrong. Reads never ask for more bytes than the file holds, whatever lengths the
file declares, so a damaged header cannot make rtcode allocate gigabytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rtcode.dicom.vendors import OTHER_STANDARD_CLASSES, PRIVATE_SOP_CLASSES
from rtcode.model.errors import DicomReadError, NotDicomError, RtcodeError
from rtcode.model.facts import SOP_CLASS_MODALITY, Modality
from rtcode.model.limits import MB, Limits, default_limits

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# pydicom is imported where a file is parsed, not here: a rescan whose files all come
# from the scan cache never needs it (it takes a third of a second to import).

# Explicit VRs (PS3.5 6.2): they recognise a raw explicit-VR dataset here, and
# extract_bulk reads element headers with them.
EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip
# Explicit VRs with a 4-byte length after 2 reserved bytes (PS3.5 7.1.2).
LONG_LENGTH_VRS = {
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
}  # fmt: skip

# Pixel Data (7FE0,0010) as its tag is written in a little and a big endian data set
_PIXEL_DATA_TAG = {True: b"\xe0\x7f\x10\x00", False: b"\x7f\xe0\x00\x10"}
_META_MAX_BYTES = 65536  # a file meta group is a few hundred bytes
_BUFFER = 65536
_NESTED = (
    "damaged DICOM file: its sequences are nested too deeply to read"
    " (more levels than any real export has)"
)


class FileEntry(NamedTuple):
    """A path to examine; ``explicit`` when the user named the file itself. (A named
    tuple: a walk makes one per file, and a frozen dataclass costs twice as much.)"""

    path: str | os.PathLike[str]  # a str when found by walking a folder
    display: str
    explicit: bool
    # (size, mtime_ns, ctime_ns, inode) when the walk saw the file: lets the scan
    # cache trust a file that has not been touched since, without opening it
    stat_key: tuple[int, int, int, int] | None = None


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True)
class WalkError:
    display: str
    error: str


@dataclass
class ReadResult:
    """One file's outcome: a dataset to extract, a skip, or an error.

    ``dataset`` of an RT file is a ``RawDataset`` when the file is plain enough to be
    read from its bytes without pydicom (the ordinary case), else a pydicom Dataset;
    ``extract.extract`` takes either. A caller that needs pydicom's object in every
    case calls ``pydicom_dataset()``.
    """

    display: str
    kind: str  # "rt", "image", "other_dicom", "not_dicom", "error"
    modality: Modality | None = None
    dataset: Dataset | RawDataset | None = None
    has_pixel_data: bool = False
    error: str | None = None
    reason: str | None = None  # why a file that is not "rt" was skipped
    sop_class_uid: str | None = None  # the class it was read under (None: none given)
    modality_text: str | None = None  # Modality as written, where it was looked at

    def pydicom_dataset(self) -> Dataset | None:
        """``dataset`` as a pydicom Dataset (parsed now from a ``RawDataset``'s bytes);
        raises ``DicomReadError`` as ``read`` would have reported the file."""
        if isinstance(self.dataset, RawDataset):
            return self.dataset.dataset()
        return self.dataset


class RawDataset:
    """An RT file's top-level data set read straight from its bytes (the fast path).

    ``view`` (``extract_bulk.FileView``) gives the elements behind the methods
    extract.py's functions use (``in``, ``get``, ``items``), decoding plain values
    itself (a top-level value that is not plain through pydicom, that element alone)
    and raising ``extract_bulk.Unusual`` for anything else. ``dataset()`` is the way
    back to the reference path: pydicom parses the same bytes (every byte it reads:
    the file up to its end, or up to and including the Pixel Data header), exactly as
    ``read`` would have parsed the file, and raises ``DicomReadError`` with the same
    sentence ``read`` would have returned. Nothing here touches the file again.
    """

    __slots__ = ("view", "_data", "_size", "_display", "_meta_class")

    def __init__(self, view, data: bytes, size: int, display: str, meta_class: str | None):
        self.view = view
        self._data = data
        self._size = size
        self._display = display
        self._meta_class = meta_class

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.view

    def dataset(self) -> Dataset:
        data = io.BytesIO(self._data)
        data.name = self._display  # type: ignore[attr-defined]  # pydicom asks for one
        with _BoundedReader(data, self._size) as fp:  # type: ignore[arg-type]
            result = _read_dataset(fp, self._display, self._meta_class)
        if result.dataset is None:  # the file was read as RT from the same bytes
            raise DicomReadError("the file reads differently on a second look: not read")
        return result.dataset


def walk(
    inputs: Iterable[str | os.PathLike[str] | FileEntry | WalkError],
) -> Iterator[FileEntry | WalkError]:
    """Yield every regular file under the inputs, depth first, in sorted order.

    Symbolic links to folders are not followed (no loops); unreadable folders,
    broken links and missing inputs are reported as ``WalkError`` and the walk
    goes on. Devices, pipes and sockets inside folders are passed over (reading
    a pipe could wait for ever).
    """
    for raw in inputs:
        if isinstance(raw, (FileEntry, WalkError)):  # made elsewhere, e.g. read_dicomweb
            yield raw
            continue
        top = Path(raw)
        display_top = printable(os.fspath(raw))
        try:
            st = top.stat()
        except OSError as exc:
            yield WalkError(display_top, f"cannot open: {_os_reason(exc, top)}")
            continue
        if stat.S_ISREG(st.st_mode):
            yield FileEntry(top, display_top, explicit=True, stat_key=stat_key(st))
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield WalkError(
                display_top, "not a regular file or folder (a device, pipe or socket): not read"
            )
            continue
        yield from _walk_dir(top, display_top)


def _walk_dir(top: Path, display_top: str) -> Iterator[FileEntry | WalkError]:
    """Files under ``top``, depth first, each folder's names in sorted order. Paths are
    plain strings (a ``Path`` object per file costs more than the stat it carries:
    tens of thousands of files, nightly, and a rescan of an unchanged archive is
    little more than this walk)."""
    stack = [(os.fspath(top), display_top)]
    is_regular = stat.S_ISREG
    while stack:
        folder, display_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                listing = sorted(
                    ((e.name, e, e.is_dir(follow_symlinks=False)) for e in it), key=_first
                )
        except OSError as exc:
            yield WalkError(
                printable(exc.filename or display_folder), f"cannot list folder: {_os_reason(exc)}"
            )
            continue
        folders = []
        prefix = os.path.join(display_folder, "")  # printable already
        for name, found, is_dir in listing:
            # an ASCII name keeps the path printable; only others need the check
            display = prefix + name if name.isascii() else printable(prefix + name)
            if is_dir:
                folders.append((found.path, display))
                continue
            try:
                st = found.stat()  # follows a link, as opening the file would
            except OSError as exc:
                yield WalkError(display, f"cannot open: {_os_reason(exc, found.path)}")
                continue
            if is_regular(st.st_mode):
                yield FileEntry(
                    found.path,
                    display,
                    False,
                    (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino),  # stat_key
                )
        stack.extend(reversed(folders))


def _first(item: tuple) -> str:
    return item[0]


def printable(path: str) -> str:
    """A path as text that can be printed and written as UTF-8.

    File names are bytes on POSIX; a name that is not valid UTF-8 reaches Python with
    lone surrogates, which no report could print. Those bytes are shown as U+FFFD; the
    file itself is still opened by its real name.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return path


def _os_reason(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    reason = exc.strerror or str(exc) or "the operating system refused"
    if path is not None and os.path.islink(path):
        return f"a symbolic link that cannot be followed ({reason})"
    return reason


def sniff(head: bytes) -> str | None:
    """Classify the first bytes: 'part10', 'raw' (no preamble) or None (not DICOM)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "part10"
    if len(head) < 8:
        return None
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return None
    if head[4:6] in EXPLICIT_VRS:  # explicit VR little endian
        return "raw"
    (length,) = struct.unpack("<I", head[4:8])  # implicit VR: a sane 32-bit length
    return "raw" if length < 0x10000 else None


class _BoundedReader(io.BufferedReader):
    """A read-only file whose reads never ask for more bytes than remain.

    pydicom reads a value with ``read(length)`` using the length the file declares; a
    damaged file can declare 4 GB in a file of 1 kB, and a plain file object reserves
    the declared size before it finds the end. Here a large read asks only for what is
    left. The reader also counts reads that came back short, to tell a complete file
    from one cut short (``cut_short``).
    """

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__(raw, buffer_size=_BUFFER)
        self.size = size
        self.restart()

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return super().read()  # the rest of the file: bounded by the file itself
        ask = min(n, max(self.size - self.tell(), 0)) if n > _BUFFER else n
        data = super().read(ask)
        if n and not data:
            self.reads_at_end += 1
        if 0 < len(data) < n:
            self.partial_reads += 1
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset == 0:
            self.restart()  # pydicom looks for a preamble, then starts again from 0
        return super().seek(offset, whence)

    def restart(self) -> None:
        super().seek(0)
        self.reads_at_end = 0  # reads that found no byte left
        self.partial_reads = 0  # reads that found some, not all, of the bytes asked for

    @property
    def cut_short(self) -> bool:
        """Whether the file ended inside something: a complete data set ends with one
        read that finds nothing (pydicom asking for the next element's header)."""
        return self.partial_reads > 0 or self.reads_at_end > 1


def read(entry: FileEntry, limits: Limits | None = None) -> ReadResult:
    """Read one file's header; never raises for bad input, returns an error result.

    ``limits`` (default: the shipped policy's) bounds the size of a file that is read.
    """
    limits = limits if limits is not None else default_limits()
    display = entry.display
    try:
        # O_NONBLOCK: if a pipe replaced the file since the walk, opening it must not
        # wait for a writer; fstat below then refuses it.
        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with _BoundedReader(io.FileIO(fd, "r"), 0) as fp:
            st = os.fstat(fp.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NotDicomError("not a regular file (a device, pipe or socket): not read")
            fp.size = st.st_size
            head = fp.read(140)
            form = sniff(head)
            if form is None:
                # Met while walking a folder, a non-DICOM file (a README, a PDF) is
                # counted and skipped; named explicitly or called *.dcm, it is an error.
                if entry.explicit or os.path.splitext(entry.path)[1].lower() == ".dcm":
                    raise NotDicomError(
                        "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM header"
                        " at the start" + _short_file(len(head))
                    )
                # e.g. a README beside the export
                return ReadResult(display, "not_dicom", reason=NOT_DICOM)
            meta_class = meta = None
            if form == "part10":
                fp.seek(0)
                meta = fp.read(min(st.st_size, _META_SPAN))
                meta_class = _meta_sop_class(meta)
            if meta_class is not None and meta_class not in SOP_CLASS_MODALITY:
                # Images and standard objects not used for coding are skipped from the
                # file meta: not read. Other classes are read and judged by content.
                skip = skipped_by_class(meta_class)
                if skip is not None:
                    kind, reason = skip
                    return ReadResult(display, kind, reason=reason, sop_class_uid=meta_class)
            if st.st_size > limits.max_file_size_bytes:
                raise DicomReadError(
                    f"the file is {st.st_size / MB:.0f} MB, more than the limit of"
                    f" {limits.max_file_size_mb:g} MB (policy setting limits.max_file_size_mb):"
                    " not read"
                )
            too_many = _too_many_elements(entry.path, st.st_size, form, limits)
            if too_many is None and meta is not None:
                too_many = _deflated_too_large(entry.path, meta, limits)
            if too_many is not None:
                raise DicomReadError(too_many)
            if form == "part10":
                fast = _read_view(fp, st.st_size, display, meta_class)
                if fast is not None:
                    return fast
            fp.seek(0)
            return _read_dataset(fp, display, meta_class)
    except (NotDicomError, DicomReadError) as exc:
        return ReadResult(display, "error", error=str(exc))
    except OSError as exc:
        return ReadResult(
            display, "error", error=f"cannot read the file: {_os_reason(exc, entry.path)}"
        )


# ------------------------------------------------------------ element count

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"  # the data set deflated (PS3.5 A.5)
_HEADER = struct.Struct("<HHI")  # group, element, 32-bit length (implicit VR)
_EXPLICIT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_BIG_ENDIAN = (struct.Struct(">HHI"), struct.Struct(">HH2sH"), struct.Struct(">I"))
_ITEM_TAGS = 0xFFFE  # items and delimiters: not data elements


def _too_many_elements(
    path: str | os.PathLike[str], size: int, form: str, limits: Limits
) -> str | None:
    """Why the file holds too many data elements to be parsed (policy setting
    ``limits.max_data_elements``; sequence items count as elements), or None.

    Parsing makes an object per element and a data set per item: a file of millions
    of tiny elements or empty items costs time and memory out of proportion to its
    size. An element takes at least 8 bytes, so only a file larger than 8 bytes times
    the limit (16 MB by default: no plan, structure set or dose without pixel data
    comes near) can hold too many; its element headers are counted, values skipped
    (pixel data is never read). A deflated data set is counted as it inflates
    (``_deflated_too_large``).
    """
    limit = limits.max_data_elements
    if size <= 8 * limit:
        return None
    with open(path, "rb", buffering=0) as raw:  # its own: the reader's position stays
        counted = _count_elements(_Window(raw), form, limit)
    if counted is None or counted <= limit:
        return None
    return _TOO_MANY.format(limit=limit)


_TOO_MANY = (
    "the file holds more than {limit} data elements and items (policy setting"
    " limits.max_data_elements): not read"
)


def _deflated_too_large(path: str | os.PathLike[str], meta: bytes, limits: Limits) -> str | None:
    """Why a deflated data set (PS3.5 A.5) is not read, or None (for any other file,
    or one within the limits). pydicom inflates a deflated data set whole, in memory,
    before parsing it: a few kB of deflated zeros can hold gigabytes, and a few MB
    millions of elements. So the data set is inflated here first, a megabyte at a time
    and let go, and held to ``limits.max_file_size_mb`` as inflated and to
    ``limits.max_data_elements`` (counted as in any other file). A stream that does
    not inflate is left to the parser to report."""
    found = _data_set(meta)
    if found is None or found[2] != _DEFLATED:
        return None
    limit = limits.max_data_elements
    with open(path, "rb", buffering=0) as raw:
        window = _Inflating(raw, found[0], limits.max_file_size_bytes)
        counted = _count_elements(window, "part10", limit)
        too_many = counted is not None and counted > limit and not window.damaged
        if not too_many:
            window.drain()  # to its end, for its size
    if window.too_large:
        return (
            f"its deflated data set inflates to more than {limits.max_file_size_mb:g} MB"
            " (policy setting limits.max_file_size_mb): not read"
        )
    return _TOO_MANY.format(limit=limit) if too_many else None


class _Window:
    """A file's bytes by position, read a megabyte at a time from where they are
    asked for (a skipped value is never read)."""

    _SIZE = 1 << 20
    inflated = False  # whether a deflated data set comes inflated (see _Inflating)

    def __init__(self, raw: io.RawIOBase) -> None:
        self.raw = raw
        self.start = 0
        self.data = b""

    def at(self, pos: int, n: int) -> bytes:
        """``n`` bytes from ``pos`` (fewer at the end of the file)."""
        if pos < self.start or pos + n > self.start + len(self.data):
            self.raw.seek(pos)
            self.start, self.data = pos, self.raw.read(max(n, self._SIZE)) or b""
        offset = pos - self.start
        return self.data[offset : offset + n]


class _Inflating:
    """A deflated file (PS3.5 A.5) as pydicom sees it: the file meta as written, then
    the data set inflated. Read forward only, as ``_count_elements`` does: bytes
    behind the position asked for are let go, a megabyte is inflated at a time, and
    no more than ``most`` bytes in all (then ``too_large``; ``damaged``: the stream
    does not inflate)."""

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
            chunk = inflate.unconsumed_tail or self.raw.read(_Window._SIZE)
            if not chunk:
                break
            try:
                out = inflate.decompress(chunk, _Window._SIZE)
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


def _count_elements(buf: _Window | _Inflating, form: str, limit: int) -> int | None:
    """Data elements and sequence items in a DICOM file (file meta included, items'
    elements included; delimiters and pixel data fragments not), counted up to
    ``limit + 1``; None when the encoding is one this count does not follow (no
    transfer syntax, or a deflated data set not yet inflated). Something that cannot
    be an element header ends the count: the parser then reports the damage."""
    pos, count = 0, 0
    header_struct, explicit_struct, u32 = _HEADER, _EXPLICIT_HEADER, _U32
    if form == "part10":
        found = _data_set(buf.at(0, _META_SPAN))
        if found is None or found[2] is None:
            return None  # no transfer syntax: the parser guesses the encoding; no count
        if found[2] == _DEFLATED and not buf.inflated:
            return None  # deflated: counted as it inflates (_deflated_too_large)
        pos, count, syntax = found
        implicit = syntax == _IMPLICIT_LE
        if syntax == _EXPLICIT_BE:  # retired, still read: every header after the meta
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
        if group == _ITEM_TAGS:
            pos += 8
            if fragments and element == 0xE000 and length != 0xFFFFFFFF:
                pos += length  # a fragment of pixel data
            elif element == 0xE000:
                count += 1  # a sequence item: pydicom makes a data set of each
            elif fragments and element == 0xE0DD:
                fragments = False
            elif element == 0xE0DD and restore:
                implicit = restore.pop()
            continue
        count += 1
        if implicit:
            vr = b"SQ" if length == 0xFFFFFFFF or (group << 16 | element) in _sequences() else None
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
        if length == 0xFFFFFFFF:
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
        from pydicom.datadict import DicomDictionary

        _SEQUENCES = frozenset(t for t, entry in DicomDictionary.items() if entry[0] == "SQ")
    return _SEQUENCES


_SEQUENCES: frozenset[int] | None = None


HEADER_BYTES = 8192  # how much of a file its cache signature covers


@dataclass(frozen=True)
class Peek:
    """What the first bytes of a file tell, before any parsing.

    ``kind`` is "image" or "other_dicom" when the Part-10 file meta says so (the file
    is then done with; ``reason`` says why, ``sop_class_uid`` is the class), else None:
    the file needs ``read``. ``signature`` (size,
    modification time in ns, hash of the first ``HEADER_BYTES``) identifies this
    version of the file for the scan cache; None when the file could not be opened
    (``read`` then reports why).
    """

    kind: str | None
    signature: tuple[int, int, str] | None
    reason: str | None = None
    sop_class_uid: str | None = None


def peek(entry: FileEntry) -> Peek:
    try:
        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return Peek(None, None)
            head = os.read(fd, HEADER_BYTES)
        finally:
            os.close(fd)
    except OSError:
        return Peek(None, None)
    signature = (st.st_size, st.st_mtime_ns, hashlib.blake2b(head, digest_size=16).hexdigest())
    if sniff(head) == "part10":
        meta_class = _meta_sop_class(head)
        skip = skipped_by_class(meta_class) if meta_class is not None else None
        if skip is not None:
            return Peek(skip[0], signature, skip[1], meta_class)
    return Peek(None, signature)


def _short_file(size: int) -> str:
    if size == 0:
        return " (the file is empty)"
    if size < 132:
        return f" (the file has only {size} bytes: not DICOM, or cut short)"
    return ""


def _meta_sop_class(buf: bytes) -> str | None:
    """MediaStorageSOPClassUID (0002,0002) from a Part-10 file meta at the start of
    ``buf`` (a file's first ``_META_SPAN`` bytes, or fewer), or None."""
    return _meta_uid(buf, 0x0002)


def _meta_uid(buf: bytes, wanted: int) -> str | None:
    """The UID in file meta element (0002,``wanted``) at the start of ``buf``, or None.

    The file meta is always explicit VR little endian (PS3.10 7.1). Only the elements
    up to the one wanted are looked at; anything odd leaves the answer to the full read.
    """
    for element, pos, length in _meta_elements(buf):
        if element == wanted:
            if length > 64:  # a UID has at most 64 characters
                return None
            raw = buf[pos : pos + length]
            if len(raw) < length:  # cut short: the full read will say so
                return None
            return raw.rstrip(b"\0 ").decode("ascii", "replace") or None
    return None


def _data_set(meta: bytes) -> tuple[int, int, str | None] | None:
    """(where the data set starts, how many file meta elements precede it, the
    transfer syntax) from a Part-10 file's first bytes; None when the file meta is
    odd (the parser then decides)."""
    for count, (element, pos, _) in enumerate(_meta_elements(meta)):
        if element is None:
            return pos, count, _meta_uid(meta, 0x0010)
    return None


def _meta_elements(buf: bytes) -> Iterator[tuple[int | None, int, int]]:
    """(element, value position, value length) of each file meta element at the start
    of ``buf``, then (None, position, 0) where the data set starts; nothing more after
    anything odd (a length undefined or beyond ``buf``)."""
    pos = 132
    end = min(len(buf), 132 + _META_MAX_BYTES)
    while pos < end:
        if pos + 8 > len(buf):
            return
        group, element = _GROUP_ELEMENT.unpack_from(buf, pos)
        if group != 0x0002:
            yield None, pos, 0
            return
        if buf[pos + 4 : pos + 6] in LONG_LENGTH_VRS:
            if pos + 12 > len(buf):
                return
            (length,) = _U32.unpack_from(buf, pos + 8)
            pos += 12
        else:
            (length,) = _U16.unpack_from(buf, pos + 6)
            pos += 8
        if length == 0xFFFFFFFF:
            return
        yield element, pos, length
        pos += length


_GROUP_ELEMENT = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
# All _meta_sop_class can look at: an element header starting before the limit, and
# a UID of at most 64 characters after it.
_META_SPAN = 132 + _META_MAX_BYTES + 12 + 64


_FIRST_READ = 256 * 1024  # bytes read at first for the fast path; more when needed


def _read_view(
    fp: _BoundedReader, size: int, display: str, meta_class: str | None
) -> ReadResult | None:
    """An RT file read from its bytes without pydicom (``extract_bulk.file_view``), or
    None when anything is unusual: ``_read_dataset`` then reads it as always. The kind
    and modality are decided as ``_read_dataset`` decides them, and only when that
    decision is plain: the SOP Class UID in the data set a plain value (or absent when
    the file meta names one) and the class decided one of the RT classes read."""
    from rtcode.dicom import extract_bulk

    data = b""

    def fetch(n: int) -> bytes:
        """The file's first bytes, at least ``n`` when the file has that many; read
        once each, more than asked (the rest of a data set is usually wanted next)."""
        nonlocal data
        if n > len(data):
            want = min(size, max(n, 2 * len(data), _FIRST_READ))
            fp.seek(len(data))
            data += fp.read(want - len(data))
        return data

    try:
        view = extract_bulk.file_view(fetch, size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            actual = view.get("SOPClassUID")
    except OSError:
        raise
    except Exception:  # Unusual, or anything the plain case does not expect
        return None
    actual = actual.strip() or None if isinstance(actual, str) else None
    sop_class = meta_class or actual
    if actual is not None and actual in SOP_CLASS_MODALITY:
        sop_class = actual
    modality = SOP_CLASS_MODALITY.get(sop_class) if sop_class is not None else None
    if modality is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                modality = kind_by_content(view)[0]
        except Exception:  # Unusual: the reference path decides
            return None
        if modality is None:
            return None  # an error, or a skip: worded by the reference path
    raw = RawDataset(view, data, size, display, meta_class)
    return ReadResult(
        display,
        "rt",
        modality=modality,
        dataset=raw,
        has_pixel_data=view.has_pixel_data,
        sop_class_uid=sop_class,
    )


def _read_dataset(fp: _BoundedReader, display: str, meta_class: str | None) -> ReadResult:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(fp, force=True, stop_before_pixels=True)
        except RecursionError:
            raise DicomReadError(_NESTED) from None
        except Exception as exc:  # pydicom raises many types for damaged files
            if fp.partial_reads or fp.reads_at_end:
                raise DicomReadError(
                    f"truncated DICOM file: it ends at byte {fp.size}, in the middle of a"
                    " data element"
                ) from None
            raise DicomReadError(f"damaged DICOM file: {_short(exc)}") from None
        cut_short = fp.cut_short
        try:
            pixel_header = fp.read(12)
            little = _little_endian(ds, pixel_header)
            has_pixels = pixel_header[:4] == _PIXEL_DATA_TAG[little]
            truncated = _truncation(ds, cut_short, fp.size)
            if truncated is None and has_pixels:
                truncated = _pixel_truncation(pixel_header, fp, little)
        except DicomReadError:
            raise
        except Exception as exc:
            raise DicomReadError(f"damaged DICOM file: {_short(exc)}") from None
    if truncated is not None:
        raise DicomReadError(f"truncated DICOM file: {truncated}")
    actual = _sop_class(ds)
    sop_class = meta_class or actual
    if actual is not None and actual in SOP_CLASS_MODALITY:
        sop_class = actual
    modality = SOP_CLASS_MODALITY.get(sop_class) if sop_class is not None else None
    if modality is None:
        # Not a standard RT class (a vendor's private one, an unknown one, or none):
        # what the data set holds decides.
        skip = skipped_by_class(sop_class) if sop_class is not None else None
        if skip is not None and skip[0] == "image":
            return ReadResult(display, "image", sop_class_uid=sop_class)
        modality, written = kind_by_content(ds)
        if modality is None:
            if sop_class is None:
                raise DicomReadError(
                    "DICOM header without a SOP Class UID (0008,0016) and nothing in it"
                    " that makes an RT Plan, Dose or Structure Set: cannot tell what kind"
                    " of object this is"
                )
            reason = skip[1] if skip is not None else _not_rt_reason(sop_class, written)
            return ReadResult(
                display, "other_dicom", reason=reason, sop_class_uid=sop_class,
                modality_text=written,
            )  # fmt: skip
    return ReadResult(
        display,
        "rt",
        modality=modality,
        dataset=ds,
        has_pixel_data=has_pixels,
        sop_class_uid=sop_class,
    )


NOT_DICOM = "not DICOM (no 'DICM' marker at byte 128 and no DICOM header at the start)"
_IMAGE = "image (pixel data not needed for coding)"
_RT_RECORD = "RT treatment record (Modality RTRECORD): it records delivery, not planning"


def skipped_by_class(sop_class: str) -> tuple[str, str] | None:
    """(kind, reason) of a file that its SOP Class UID alone says to skip: an image,
    or a standard object not used for coding; None when the class is one of the RT
    objects read, or one that only the content can tell (private or unknown)."""
    if sop_class in SOP_CLASS_MODALITY or sop_class in PRIVATE_SOP_CLASSES:
        return None
    reason = OTHER_STANDARD_CLASSES.get(sop_class)
    if reason is not None:
        return "other_dicom", reason
    if _is_image_class(sop_class):
        return "image", _IMAGE
    return None


# Sequences that make a data set an RT object, whatever its SOP class (PS3.3 A.20,
# A.18, A.19, A.49): an RT Plan has beams or brachytherapy application setups, an RT
# Ion Plan ion beams, a structure set ROIs and their contours, an RT Dose a dose grid
# scaling or DVHs.
_CONTENT = (
    (("IonBeamSequence",), Modality.RTIONPLAN),
    (("BeamSequence", "ApplicationSetupSequence"), Modality.RTPLAN),
    (("StructureSetROISequence", "ROIContourSequence"), Modality.RTSTRUCT),
    (("DoseGridScaling", "DVHSequence"), Modality.RTDOSE),
)
_MODALITY = {
    "RTPLAN": Modality.RTPLAN,
    "RTSTRUCT": Modality.RTSTRUCT,
    "RTDOSE": Modality.RTDOSE,
}


def kind_by_content(ds) -> tuple[Modality | None, str | None]:
    """(what the data set is, its Modality as written) for a data set whose SOP class
    does not say: its sequences first (an RT Plan's beams make it a plan whatever its
    Modality says), then its Modality (RTPLAN, RTSTRUCT, RTDOSE; an RT Plan's Modality
    is RTPLAN for ion plans too). ``ds``: a pydicom Dataset or the fast path's view.
    (None, ...) when neither says it is one of the RT objects read (an RTRECORD among
    them)."""
    value = ds.get("Modality")
    written = value.strip().upper() or None if isinstance(value, str) else None
    for keywords, modality in _CONTENT:
        if any(k in ds for k in keywords):
            return modality, written
    if written is not None and written in _MODALITY:
        return _MODALITY[written], written
    return None, written


def _not_rt_reason(sop_class: str, modality: str | None) -> str:
    if modality == "RTRECORD":
        return _RT_RECORD
    return (
        f"SOP Class UID {sop_class}, Modality {modality or '(none)'}: not an RT Plan, RT Dose"
        " or RT Structure Set by its class or its content"
    )


def _sop_class(ds: Dataset) -> str | None:
    try:
        value = ds.get("SOPClassUID")
    except Exception:  # an undecodable value: as good as absent here
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def _truncation(ds: Dataset, cut_short: bool, size: int) -> str | None:
    """Why the dataset is cut short, or None. pydicom stops quietly at the end of a
    file: the last element read then holds fewer bytes than its length declares, or
    the file ends inside the header of the next element."""
    import pydicom.datadict

    if not len(ds):
        return "no data elements could be read"
    tag = next(reversed(ds.keys()))
    name = pydicom.datadict.keyword_for_tag(tag) or str(tag)
    raw = ds.get_item(tag)
    value = getattr(raw, "value", None)
    length = getattr(raw, "length", None)
    defined = isinstance(value, bytes) and length is not None and length != 0xFFFFFFFF
    if defined and len(value) < length:
        return f"the file ends inside {name} {tag}: {len(value)} of its {length} bytes are there"
    if cut_short:
        return f"it ends at byte {size}, inside {name} {tag} or the header after it"
    return None


def _little_endian(ds: Dataset, pixel_header: bytes) -> bool:
    """Whether the data set is little endian, as its transfer syntax says (pydicom read
    it so: it stopped before Pixel Data written in that byte order). Where pydicom does
    not say, the Pixel Data tag itself does (big endian only if it is written so)."""
    encoding = getattr(ds, "original_encoding", None)
    if encoding is not None and encoding[1] is not None:
        return bool(encoding[1])
    return pixel_header[:4] != _PIXEL_DATA_TAG[False]


def _pixel_truncation(header: bytes, fp: _BoundedReader, little: bool = True) -> str | None:
    """Check the declared Pixel Data length against the bytes left, without reading
    them; the header is read in the data set's byte order (``little``: Explicit VR Big
    Endian, retired but still met, writes the length most significant byte first)."""
    if len(header) < 8:
        return "the file ends inside the Pixel Data header"
    u32 = _U32 if little else _BIG_ENDIAN[2]
    if header[4:6] in (b"OB", b"OW"):
        if len(header) < 12:
            return "the file ends inside the Pixel Data header"
        (length,) = u32.unpack_from(header, 8)
        start = 12
    else:
        (length,) = u32.unpack_from(header, 4)
        start = 8
    if length == 0xFFFFFFFF:
        return None  # encapsulated: item lengths would have to be walked
    here = fp.tell() - len(header) + start
    left = fp.size - here
    if left < length:
        return f"Pixel Data declares {length} bytes but only {left} remain"
    return None


def _is_image_class(uid: str) -> bool:
    # Image storage classes live under 1.2.840.10008.5.1.4.1.1 (CT .2, MR .4, ...);
    # RT non-image classes (.481.x) are handled before this is asked.
    return uid.startswith("1.2.840.10008.5.1.4.1.1.") and ".481." not in uid


def _short(exc: BaseException) -> str:
    """What the parser met, in words: never its own text (a user cannot act on "unpack
    requires a buffer of 4 bytes"), only the kind of damage it points to."""
    if isinstance(exc, (struct.error, EOFError)):
        return "an element header or value is shorter than its length says"
    if isinstance(exc, UnicodeError) or type(exc) is LookupError:  # (an unknown codec)
        return "it holds text that is not in the character set it declares, or names an unknown one"
    if isinstance(exc, MemoryError):
        return "it declares more data than can be held in memory"
    return "its element headers, lengths and values do not fit together, so it cannot be parsed"


def read_full(path: str | os.PathLike[str], *, pixels: bool = False) -> Dataset:
    """Read one RT Structure Set or RT Dose in full, for a dose-volume histogram.

    Unlike ``read`` this keeps every element, contour points included, and with
    ``pixels`` the dose grid too. Only DVH reporting calls it (a scan never does),
    for files a scan has already recognised. Raises ``DicomReadError`` (or
    ``NotDicomError``) with a sentence that says what is wrong.
    """
    import pydicom

    try:
        with _BoundedReader(io.FileIO(path, "r"), 0) as fp:  # declared lengths stay bounded
            fp.size = os.fstat(fp.fileno()).st_size
            if sniff(fp.read(140)) is None:
                raise NotDicomError(f"{os.fspath(path)} is not a DICOM file")
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pydicom.dcmread(fp, force=True, stop_before_pixels=not pixels)
    except OSError as exc:
        raise DicomReadError(f"cannot read {os.fspath(path)}: {_os_reason(exc)}") from None
    except RtcodeError:
        raise
    except RecursionError:
        raise DicomReadError(f"{os.fspath(path)}: {_NESTED}") from None
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DicomReadError(
            f"damaged or truncated DICOM file {os.fspath(path)}: {_short(exc)}"
        ) from None
