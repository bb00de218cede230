"""Received instances kept as ordinary Part-10 files (``rtcode listen``, DICOMweb), so
the normal reading step reads them as it reads an export on disk.

Nothing a sender writes chooses a path: a file is named from its checked SOP
Instance UID, a prefix for its class and a hash of its data set; a patient's folder
from a hash of the Patient ID. A file is written atomically (``files.write_bytes_atomically``,
the temporary file in ``STORE/.incoming``); ``too_large_to_decode`` holds a received
data set to the reader's size and element limits before anything decodes it.

    STORE/.incoming/                       temporary files while writing
    STORE/patients/<p + 16 hex>/RP.<SOP Instance UID>.<12 hex>.dcm
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from rtcode import __version__
from rtcode.dicom.elements import DEFLATED, Inflating, Window, count_elements
from rtcode.dicom.vendors import PRIVATE_SOP_CLASSES
from rtcode.model.errors import RtcodeError
from rtcode.output import files

_PREFIX = {"RTPLAN": "RP", "RTIONPLAN": "RN", "RTDOSE": "RD", "RTSTRUCT": "RS"}
# SOP Class UIDs (PS3.4 Annex B.5) that may be stored, with the file-name prefix.
RT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.5": ("RTPLAN", "RP"),  # RT Plan Storage
    "1.2.840.10008.5.1.4.1.1.481.8": ("RTIONPLAN", "RN"),  # RT Ion Plan Storage
    "1.2.840.10008.5.1.4.1.1.481.2": ("RTDOSE", "RD"),  # RT Dose Storage
    "1.2.840.10008.5.1.4.1.1.481.3": ("RTSTRUCT", "RS"),  # RT Structure Set Storage
    # Vendors' private classes for ordinary RT objects (Halcyon and Ethos send their
    # plans so): stored, then read by their content like any other (PRIVATE_SOP_CLASSES).
    **{
        uid: (known.modality.value, _PREFIX[known.modality.value])
        for uid, known in PRIVATE_SOP_CLASSES.items()
        if known.modality is not None
    },
}
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
IMAGE_CLASSES = {CT_CLASS: ("CT", "CT")}
STORABLE_CLASSES = {**RT_CLASSES, **IMAGE_CLASSES}

PATIENTS = "patients"
INCOMING = ".incoming"

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX_LENGTH = 64  # PS3.5 9.1


class StoreError(RtcodeError, ValueError):
    """An instance cannot be stored; the message says why (it is sent back to the sender)."""


def clean_uid(value: object) -> str | None:
    """The UID if it is digits and dots only (no empty component) and at most 64
    characters, after removing the padding the UI value representation allows;
    otherwise None. A value that passes cannot name a folder or climb out of one."""
    if not isinstance(value, str):
        return None
    text = value.strip("\x00 ")
    if len(text) > _UID_MAX_LENGTH or not _UID.fullmatch(text):
        return None
    return text


def patient_key(patient_id: str | None) -> str:
    """The folder name of a patient: a hash of the Patient ID, never the ID itself."""
    digest = hashlib.sha256((patient_id or "").encode("utf-8", "surrogatepass")).hexdigest()
    return "p" + digest[:16]


def patient_folder(store: Path, patient_id: str | None) -> Path:
    return store / PATIENTS / patient_key(patient_id)


@dataclass(frozen=True)
class StoredInstance:
    path: Path  # absolute
    relative_path: str  # relative to the store, with forward slashes
    sop_class_uid: str
    sop_instance_uid: str
    modality: str  # RTPLAN, RTIONPLAN, RTDOSE, RTSTRUCT or CT
    size_bytes: int
    sha256: str


def file_name(sop_class_uid: str, sop_instance_uid: str, digest: str) -> str:
    """``RP.<uid>.<12 hex>.dcm`` (the prefix from the SOP class, the hex digits from the
    SHA-256 of the data set as received): the same instance sent twice lands on the
    same name, and two different objects that share one SOP Instance UID (sample case
    18) are both kept, so the scan can flag them. Raises StoreError for a class or UID
    that is not allowed."""
    kind = STORABLE_CLASSES.get(sop_class_uid)
    uid = clean_uid(sop_instance_uid)
    if kind is None:
        raise StoreError(f"SOP Class UID {sop_class_uid!r} is not stored here")
    if uid is None:
        raise StoreError("SOP Instance UID is not a valid UID (digits and dots, at most 64)")
    if not re.fullmatch(r"[0-9a-f]{12,64}", digest):
        raise StoreError("internal: bad digest")
    return f"{kind[1]}.{uid}.{digest[:12]}.dcm"


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The start of a Part-10 file (PS3.10 7.1): preamble, 'DICM' and the file meta
    information; the data set follows exactly as the sender encoded it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"RTCODE_{__version__}"[:16]
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    return buf.getvalue()


class _Joined(io.RawIOBase):
    """Several buffers read as one file (a Part-10 header and a received data set),
    without copying them."""

    def __init__(self, *parts: bytes | memoryview) -> None:
        super().__init__()
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._size = sum(len(p) for p in self._parts)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done, pos = 0, self._pos
        for part in self._parts:
            if pos >= len(part):
                pos -= len(part)
                continue
            n = min(len(part) - pos, len(out) - done)
            out[done : done + n] = part[pos : pos + n]
            done += n
            pos = 0
            if done == len(out):
                break
        self._pos += done
        return done


def too_large_to_decode(
    header: bytes,
    body: bytes | memoryview,
    transfer_syntax: str,
    max_bytes: int,
    max_elements: int,
) -> tuple[str, bool] | None:
    """(why, damaged) when a received data set must not be decoded, else None.

    ``header`` is the Part-10 header (``part10_header``) naming ``transfer_syntax``,
    ``body`` the data set as received. A deflated data set is inflated a megabyte at
    a time, keeping none of it, and held to ``max_bytes`` inflated and to
    ``max_elements`` data elements and items (``damaged``: it does not inflate); a
    plain one is held to ``max_elements`` when it is larger than 8 bytes times that
    (an element takes at least 8). The same count as the reader makes of a file."""

    raw = _Joined(header, body)
    if transfer_syntax == DEFLATED:
        window = Inflating(raw, len(header), max_bytes)
        counted = count_elements(window, "part10", max_elements)
        too_many = counted is not None and counted > max_elements and not window.damaged
        if not too_many:
            window.drain()  # to its end, for its size
        if window.too_large:
            return f"its deflated data set inflates to more than {max_bytes} bytes", False
        if window.damaged:
            return "its deflated data set does not inflate (damaged deflate stream)", True
    elif len(body) > 8 * max_elements:
        counted = count_elements(Window(raw), "part10", max_elements)
        too_many = counted is not None and counted > max_elements
    else:
        too_many = False
    if too_many:
        return f"it holds more than {max_elements} data elements and items", False
    return None


def write_instance(
    store: Path,
    folder: Path,
    sop_class_uid: str,
    sop_instance_uid: str,
    header: bytes,
    body: bytes | memoryview,
) -> StoredInstance:
    """Write ``header`` then ``body`` as one file in ``folder`` under ``store``,
    atomically. The digest in the name is that of ``body`` (the data set as received;
    for a retrieved Part-10 file, ``header`` is empty and ``body`` the whole file).

    Raises StoreError when the class or UID is not allowed or the folder is not
    inside the store, OSError when the disk refuses.
    """
    store = store.resolve()
    folder = folder.resolve()
    if store != folder and store not in folder.parents:
        raise StoreError("internal: target folder is outside the store")
    digest = hashlib.sha256(body).hexdigest()
    name = file_name(sop_class_uid, sop_instance_uid, digest)
    target = folder / name
    if target.parent != folder:  # cannot happen with a checked UID; kept as a guard
        raise StoreError("internal: file name escapes its folder")
    incoming = store / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    # spool: same file system, outside the folders the coding thread scans, so no scan
    # sees a part-written instance; clear_incoming removes what a crash leaves there
    files.write_bytes_atomically(target, incoming, header, body)
    modality = STORABLE_CLASSES[sop_class_uid][0]
    return StoredInstance(
        path=target,
        relative_path=target.relative_to(store).as_posix(),
        sop_class_uid=sop_class_uid,
        sop_instance_uid=clean_uid(sop_instance_uid) or "",
        modality=modality,
        size_bytes=len(header) + len(body),
        sha256=digest,
    )


def clear_incoming(store: Path) -> int:
    """Remove temporary files left by a crash (never a stored instance); return how many."""
    removed = 0
    incoming = store / INCOMING
    if incoming.is_dir():
        # files.py's temporary names (".<name>.<hex>.tmp"), and "instance.*.tmp" as an
        # earlier rtcode named them
        for p in (*incoming.glob(".*.tmp"), *incoming.glob("instance.*.tmp")):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed
