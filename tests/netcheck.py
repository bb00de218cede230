"""Helpers for the network tests: compare codings made from received or retrieved
instances with those of ``rtcode scan`` on the same files.

Paths differ (``sample_data/06_four_field_box_3d/RP.dcm``, a stored file, a WADO-RS
URL), so every path of a DICOM object in a plan's JSON is replaced by that object's
SOP Instance UID; everything else (codes, evidence, observed values, thresholds,
settings, flags, related codes, beams) must be equal, character for character.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from rtcode.coding import policy as policy_mod
from rtcode.engine.scan import scan
from rtcode.model.results import ScanResult
from rtcode.output.render import plan_json
from rtcode.sources import store

POLICY = policy_mod.load("default")


def canonical(plans: list[dict[str, Any]], uid_of_path: dict[str, str]) -> list[str]:
    """Each plan as sorted-key JSON with object paths replaced by ``<UID>``; sorted."""
    paths = sorted(uid_of_path, key=len, reverse=True)  # longest first: no partial hits
    out = []
    for plan in plans:
        text = json.dumps(plan, sort_keys=True, ensure_ascii=False)
        for path in paths:
            text = text.replace(json.dumps(path)[1:-1], f"<{uid_of_path[path]}>")
        out.append(text)
    return sorted(out)


def uids_of(result: ScanResult) -> dict[str, str]:
    inv = result.inventory
    return {x.path: x.sop_instance_uid or "" for x in [*inv.plans, *inv.structure_sets, *inv.doses]}


def scan_canonical(paths: list[Any]) -> list[str]:
    """``rtcode scan`` of the paths (files, folders or entries), canonical."""
    result = scan(paths, POLICY)
    return canonical([plan_json(p, POLICY) for p in result.plans], uids_of(result))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def explicit_le(ds: pydicom.Dataset) -> bytes:
    """A data set encoded in Explicit VR Little Endian, without file meta."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def deflated_part10(ds: pydicom.Dataset, extra: Sequence[bytes] = (), zero_mb: int = 0) -> bytes:
    """``ds`` as a Part-10 file in Deflated Explicit VR Little Endian, with ``extra``
    (encoded elements) appended to its data set and, when ``zero_mb``, a private OB
    element of that many MB of zeros: deflated a megabyte at a time, so the caller
    never holds the inflated data set (200 MB of zeros deflate to about 200 kB)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflate.compress(explicit_le(ds))]
    body += [deflate.compress(e) for e in extra]
    if zero_mb:
        header = struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"OB", 0, zero_mb << 20)
        body.append(deflate.compress(header))
        zeros = bytes(1 << 20)
        body += [deflate.compress(zeros) for _ in range(zero_mb)]
    body.append(deflate.flush())
    meta = store.part10_header(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), DeflatedExplicitVRLittleEndian
    )
    return meta + b"".join(body)
