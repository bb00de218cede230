"""Step 1, reading: files found, recognised and read, bounded.

``walk`` finds files, ``sniff`` and ``peek`` recognise DICOM by content and skip images
from the file meta, ``read`` reads an RT file's header: through the fast path
(``views.file_view``: no pydicom) when the file is plain, else pydicom with
``stop_before_pixels``. Bad input never raises out of ``read``: it becomes a
``ReadResult`` of kind "error" with a sentence; reads never ask for more bytes than
the file holds. ``read_full`` reads a structure set or dose whole, for DVH reports.
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

from rtcode.dicom.elements import (
    DEFLATED,
    EXPLICIT_VRS,
    META_SPAN,
    PIXEL_DATA_TAG,
    FileMeta,
    Inflating,
    Window,
    count_elements,
    file_meta,
    pixel_data_truncation,
)
from rtcode.dicom.vendors import OTHER_STANDARD_CLASSES, PRIVATE_SOP_CLASSES
from rtcode.model.errors import DicomReadError, NotDicomError, RtcodeError
from rtcode.model.facts import SOP_CLASS_MODALITY, Modality
from rtcode.model.limits import MB, Limits, default_limits

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from rtcode.dicom.views import DataSet, FileView


# pydicom (and views, which imports it and numpy) is imported where a file is parsed,
# not here: a rescan whose files all come from the scan cache never needs it.

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

    ``view`` (``views.FileView``) gives the elements behind the methods
    extract.py's functions use (``in``, ``get``, ``items``), decoding plain values
    itself (a top-level value that is not plain through pydicom, that element alone)
    and raising ``views.Unusual`` for anything else. ``dataset()`` is the way
    back to the reference path: pydicom parses the same bytes (every byte it reads:
    the file up to its end, or up to and including the Pixel Data header), exactly as
    ``read`` would have parsed the file, and raises ``DicomReadError`` with the same
    sentence ``read`` would have returned. Nothing here touches the file again.
    """

    __slots__ = ("view", "_data", "_size", "_display", "_meta_class")

    def __init__(
        self, view: FileView, data: bytes, size: int, display: str, meta_class: str | None
    ) -> None:
        self.view = view
        self._data = data
        self._size = size
        self._display = display
        self._meta_class = meta_class

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.view

    def dataset(self) -> Dataset:
        data = io.BytesIO(self._data)
        data.name = self._display  # pydicom asks for one
        with _BoundedReader(data, self._size) as fp:  # type: ignore[arg-type]  # a BytesIO reads as a raw file does
            result = _read_dataset(fp, self._display, self._meta_class)
        if result.dataset is None or isinstance(result.dataset, RawDataset):  # not RT now
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


def _first(item: tuple[str, os.DirEntry[str], bool]) -> str:
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
                meta = file_meta(fp.read(min(st.st_size, META_SPAN)))
                meta_class = meta.sop_class_uid
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
        counted = count_elements(Window(raw), form, limit)
    if counted is None or counted <= limit:
        return None
    return _TOO_MANY.format(limit=limit)


_TOO_MANY = (
    "the file holds more than {limit} data elements and items (policy setting"
    " limits.max_data_elements): not read"
)


def _deflated_too_large(path: str | os.PathLike[str], meta: FileMeta, limits: Limits) -> str | None:
    """Why a deflated data set (PS3.5 A.5) is not read, or None (for any other file,
    or one within the limits). pydicom inflates a deflated data set whole, in memory,
    before parsing it: a few kB of deflated zeros can hold gigabytes, and a few MB
    millions of elements. So the data set is inflated here first, a megabyte at a time
    and let go, and held to ``limits.max_file_size_mb`` as inflated and to
    ``limits.max_data_elements`` (counted as in any other file). A stream that does
    not inflate is left to the parser to report."""
    if meta.start is None or meta.transfer_syntax != DEFLATED:
        return None
    limit = limits.max_data_elements
    with open(path, "rb", buffering=0) as raw:
        window = Inflating(raw, meta.start, limits.max_file_size_bytes)
        counted = count_elements(window, "part10", limit)
        too_many = counted is not None and counted > limit and not window.damaged
        if not too_many:
            window.drain()  # to its end, for its size
    if window.too_large:
        return (
            f"its deflated data set inflates to more than {limits.max_file_size_mb:g} MB"
            " (policy setting limits.max_file_size_mb): not read"
        )
    return _TOO_MANY.format(limit=limit) if too_many else None


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
        meta_class = file_meta(head).sop_class_uid
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


_FIRST_READ = 256 * 1024  # bytes read at first for the fast path; more when needed


def _read_view(
    fp: _BoundedReader, size: int, display: str, meta_class: str | None
) -> ReadResult | None:
    """An RT file read from its bytes without pydicom (``views.file_view``), or
    None when anything is unusual: ``_read_dataset`` then reads it as always. The kind
    and modality are decided as ``_read_dataset`` decides them, and only when that
    decision is plain: the SOP Class UID in the data set a plain value (or absent when
    the file meta names one) and the class decided one of the RT classes read."""
    # Here, not at the top: views imports pydicom and numpy, which a rescan whose
    # files all come from the scan cache never needs.
    from rtcode.dicom import views

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
        view = views.file_view(fetch, size)
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
        skip = skipped_by_class(sop_class) if sop_class is not None else None
        if skip is not None and skip[0] == "image":
            return None  # an image by the data set's own class (no file meta said so)
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
            has_pixels = pixel_header[:4] == PIXEL_DATA_TAG[little]
            truncated = _truncation(ds, cut_short, fp.size)
            if truncated is None and has_pixels:
                at = fp.tell() - len(pixel_header)
                truncated = pixel_data_truncation(pixel_header, at, fp.size, little)
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


def kind_by_content(ds: DataSet) -> tuple[Modality | None, str | None]:
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
    tag = list(ds.keys())[-1]
    name = pydicom.datadict.keyword_for_tag(tag) or str(tag)
    raw = ds.get_item(tag)
    value = getattr(raw, "value", None)
    length = getattr(raw, "length", None)
    defined = isinstance(value, bytes) and isinstance(length, int) and length != 0xFFFFFFFF
    if defined and isinstance(value, bytes) and isinstance(length, int) and len(value) < length:
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
    return pixel_header[:4] != PIXEL_DATA_TAG[False]


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
