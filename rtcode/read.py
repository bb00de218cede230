"""Step 1, reading: the only module that touches the file system.

Files are recognised as DICOM by content, not by name: a Part-10 file has
'DICM' after a 128-byte preamble; an older raw dataset (no preamble, no file
meta) starts with a plausible group 0008 element. Images are identified from
the file meta (or a header-only read) and skipped without reading their pixel
data; only RT Plan, RT Ion Plan, RT Dose and RT Structure Set are read, always
with ``stop_before_pixels``. Inputs are opened read-only and never modified.
``read_full`` is the one exception: it reads a structure set's contours and a
dose grid's pixels, and only DVH reporting calls it.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info

from .errors import DicomReadError, NotDicomError, RtcodeError
from .facts import SOP_CLASS_MODALITY, Modality

# Explicit VRs (PS3.5 6.2) used to recognise a raw explicit-VR dataset.
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip

_PIXEL_DATA_TAGS = {b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"}  # little / big endian


@dataclass(frozen=True)
class FileEntry:
    """A path to examine; ``explicit`` when the user named the file itself."""

    path: Path
    display: str
    explicit: bool


@dataclass(frozen=True)
class WalkError:
    display: str
    error: str


@dataclass
class ReadResult:
    """One file's outcome: a dataset to extract, a skip, or an error."""

    display: str
    kind: str  # "rt", "image", "other_dicom", "not_dicom", "error"
    modality: Modality | None = None
    dataset: Dataset | None = None
    has_pixel_data: bool = False
    error: str | None = None


def walk(
    inputs: Iterable[str | os.PathLike[str] | FileEntry | WalkError],
) -> Iterator[FileEntry | WalkError]:
    """Yield every regular file under the inputs, depth first, in sorted order.

    Symbolic links to folders are not followed (no loops); unreadable folders
    and missing inputs are reported as ``WalkError`` and the walk goes on.
    """
    for raw in inputs:
        if isinstance(raw, (FileEntry, WalkError)):  # made elsewhere, e.g. read_dicomweb
            yield raw
            continue
        top = Path(raw)
        display_top = os.fspath(raw)
        try:
            st = top.stat()
        except OSError as exc:
            yield WalkError(display_top, f"cannot open: {_os_reason(exc)}")
            continue
        if stat.S_ISREG(st.st_mode):
            yield FileEntry(top, display_top, explicit=True)
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield WalkError(display_top, "not a regular file or folder")
            continue
        yield from _walk_dir(top, display_top)


def _walk_dir(top: Path, display_top: str) -> Iterator[FileEntry | WalkError]:
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=errors.append, followlinks=False):
        while errors:
            exc = errors.pop()
            yield WalkError(exc.filename or dirpath, f"cannot list folder: {_os_reason(exc)}")
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            display = (
                os.path.join(display_top, name)
                if rel == "."
                else os.path.join(display_top, rel, name)
            )
            try:
                st = path.stat()
            except OSError as exc:
                yield WalkError(display, f"cannot open: {_os_reason(exc)}")
                continue
            if stat.S_ISREG(st.st_mode):
                yield FileEntry(path, display, explicit=False)
    while errors:
        exc = errors.pop()
        yield WalkError(exc.filename or display_top, f"cannot list folder: {_os_reason(exc)}")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def sniff(head: bytes) -> str | None:
    """Classify the first bytes: 'part10', 'raw' (no preamble) or None (not DICOM)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "part10"
    if len(head) < 8:
        return None
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return None
    if head[4:6] in _VRS:  # explicit VR little endian
        return "raw"
    (length,) = struct.unpack("<I", head[4:8])  # implicit VR: a sane 32-bit length
    return "raw" if length < 0x10000 else None


def read(entry: FileEntry) -> ReadResult:
    """Read one file's header; never raises for bad input, returns an error result."""
    display = entry.display
    try:
        with open(entry.path, "rb") as fp:
            head = fp.read(140)
            form = sniff(head)
            if form is None:
                # Met while walking a folder, a non-DICOM file (a README, a PDF) is
                # counted and skipped; named explicitly or called *.dcm, it is an error.
                if entry.explicit or entry.path.suffix.lower() == ".dcm":
                    raise NotDicomError(
                        "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM header"
                        " at the start" + (" (the file is empty)" if not head else "")
                    )
                return ReadResult(display, "not_dicom")  # e.g. a README beside the export
            fp.seek(0)
            return _read_dataset(fp, form, display)
    except NotDicomError as exc:
        return ReadResult(display, "error", error=str(exc))
    except DicomReadError as exc:
        return ReadResult(display, "error", error=str(exc))
    except OSError as exc:
        return ReadResult(display, "error", error=f"cannot read the file: {_os_reason(exc)}")


def _read_dataset(fp, form: str, display: str) -> ReadResult:
    sop_class = None
    if form == "part10":
        try:
            meta = read_file_meta_info(fp)
            sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "") or None
        except Exception:  # a damaged meta header: let the full read explain
            sop_class = None
        fp.seek(0)
    if sop_class is not None and sop_class not in SOP_CLASS_MODALITY:
        kind = "image" if _is_image_class(sop_class) else "other_dicom"
        return ReadResult(display, kind)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sop_class is None:
                probe = pydicom.dcmread(
                    fp, force=True, stop_before_pixels=True, specific_tags=["SOPClassUID"]
                )
                sop_class = str(probe.get("SOPClassUID", "") or "") or None
                fp.seek(0)
                if sop_class not in SOP_CLASS_MODALITY:
                    kind = "image" if sop_class and _is_image_class(sop_class) else "other_dicom"
                    if sop_class is None:
                        raise DicomReadError(
                            "DICOM header without a SOP Class UID (0008,0016): cannot tell"
                            " what kind of object this is"
                        )
                    return ReadResult(display, kind)
            ds = pydicom.dcmread(fp, force=True, stop_before_pixels=True)
            pixel_header = fp.read(12)
            has_pixels = pixel_header[:4] in _PIXEL_DATA_TAGS
            truncated = _truncation(ds)
            if truncated is None and has_pixels:
                truncated = _pixel_truncation(pixel_header, fp)
    except DicomReadError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DicomReadError(f"damaged or truncated DICOM file: {_short(exc)}") from None
    if truncated is not None:
        raise DicomReadError(f"truncated DICOM file: {truncated}")
    modality = SOP_CLASS_MODALITY[sop_class]
    actual = str(ds.get("SOPClassUID", "") or "")
    if actual and actual in SOP_CLASS_MODALITY:
        modality = SOP_CLASS_MODALITY[actual]
    return ReadResult(display, "rt", modality=modality, dataset=ds, has_pixel_data=has_pixels)


def _truncation(ds: Dataset) -> str | None:
    """Why the dataset is cut short, or None. pydicom stops quietly at the end of a
    file: the last element read then holds fewer bytes than its length declares."""
    if not len(ds):
        return "no data elements could be read"
    tag = next(reversed(ds.keys()))
    raw = ds.get_item(tag)
    value = getattr(raw, "value", None)
    length = getattr(raw, "length", None)
    defined = isinstance(value, bytes) and length is not None and length != 0xFFFFFFFF
    if defined and len(value) < length:
        name = pydicom.datadict.keyword_for_tag(tag) or str(tag)
        return f"the file ends inside {name} {tag}: {len(value)} of its {length} bytes are there"
    return None


def _pixel_truncation(header: bytes, fp) -> str | None:
    """Check the declared Pixel Data length against the bytes left, without reading them."""
    if len(header) < 8:
        return "the file ends inside the Pixel Data header"
    if header[4:6] in (b"OB", b"OW"):
        (length,) = struct.unpack("<I", header[8:12])
        start = 12
    else:
        (length,) = struct.unpack("<I", header[4:8])
        start = 8
    if length == 0xFFFFFFFF:
        return None  # encapsulated: item lengths would have to be walked
    here = fp.tell() - len(header) + start
    fp.seek(0, os.SEEK_END)
    left = fp.tell() - here
    if left < length:
        return f"Pixel Data declares {length} bytes but only {left} remain"
    return None


def _is_image_class(uid: str) -> bool:
    # Image storage classes live under 1.2.840.10008.5.1.4.1.1 (CT .2, MR .4, ...);
    # RT non-image classes (.481.x) are handled before this is asked.
    return uid.startswith("1.2.840.10008.5.1.4.1.1.") and ".481." not in uid


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:200]


def read_full(path: str | os.PathLike[str], *, pixels: bool = False) -> Dataset:
    """Read one RT Structure Set or RT Dose in full, for a dose-volume histogram.

    Unlike ``read`` this keeps every element, contour points included, and with
    ``pixels`` the dose grid too. Only DVH reporting calls it (a scan never does),
    for files a scan has already recognised. Raises ``DicomReadError`` (or
    ``NotDicomError``) with a sentence that says what is wrong.
    """
    try:
        with open(path, "rb") as fp:
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
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DicomReadError(
            f"damaged or truncated DICOM file {os.fspath(path)}: {_short(exc)}"
        ) from None
