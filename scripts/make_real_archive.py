"""Write a benchmark archive of real exports: every study copied many times.

    python scripts/make_real_archive.py OUT_DIR [--files 2000] [--seed 1]
        [--source ../shared/realdata] [--check]

Each copy (OUT_DIR/copy_NNNN/<study>/<file>) holds every DICOM file of the source
folder, byte for byte, except that every instance UID (SOP, study, series, frame of
reference, and every reference to them, wherever the UID string occurs in the file)
is replaced by a new UID of the same length, and the top-level Patient ID by a new
one per copy and source patient. Same-length UIDs keep every element length and
offset, so the copies keep the exporters' encodings (implicit VR, undefined
lengths, private elements, a missing preamble); plans still link to their
structure sets and doses within their copy and never across copies. Files that are
not DICOM are not copied. Deterministic for a seed. ``--check`` scans the source
and the first copy with rtcode and fails unless every plan gets the same record
(UIDs, patient IDs and paths mapped back). The source is third-party data: write
OUT_DIR outside the project.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REALDATA = ROOT.parent / "shared" / "realdata"
PATIENT_ID = Tag(0x00100020)
DICOM_ROOT = "1.2.840.10008."  # SOP classes, transfer syntaxes: never instance UIDs
# UIDs that name a scheme or an organisation, not an instance: the same in every copy
NOT_INSTANCE = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID", "ContextUID",
                "MappingResourceUID", "InstanceCreatorUID")  # fmt: skip
FREE_DIGITS = 16  # new digits per UID at least (where the UID has them)
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class Source:
    """One source DICOM file: its bytes, instance UIDs and Patient ID's place."""

    rel: Path
    data: bytes
    uids: frozenset[str]
    patient_id: str | None
    # (start of the length field, length field size, value end, little endian)
    patient_id_at: tuple[int, int, int, bool] | None


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return True
    try:  # a dataset without preamble (some exports): pydicom must read it
        with warnings.catch_warnings():  # what it makes of a text file is no news
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:
        return False
    return "SOPClassUID" in ds


def _instance_uids(ds: Dataset) -> set[str]:
    found: set[str] = set()

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI" and not elem.keyword.endswith(NOT_INSTANCE):
                values = elem.value if elem.VM > 1 else [elem.value]
                for value in values:
                    text = str(value).strip("\0 ")
                    if text and _UID.fullmatch(text) and not text.startswith(DICOM_ROOT):
                        found.add(text)

    visit(ds.file_meta)
    visit(ds)
    return found


def _patient_id_at(ds: Dataset) -> tuple[int, int, int, bool] | None:
    raw = ds._dict.get(PATIENT_ID)  # before any access converts it
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        return None
    if Tag(0x00100000) in ds._dict:
        raise SystemExit("a (0010,0000) group length would need updating: not supported")
    size = 4 if raw.is_implicit_VR else 2  # LO in explicit VR: 2-byte length
    return raw.value_tell - size, size, raw.value_tell + raw.length, raw.is_little_endian


def read_sources(source: Path) -> list[Source]:
    """Every DICOM file under ``source`` (sorted), parsed once."""
    out = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if not _is_dicom(path):
            continue
        data = path.read_bytes()
        ds = pydicom.dcmread(path, force=True)
        at = _patient_id_at(ds)
        syntax = ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")
        if syntax == "1.2.840.10008.1.2.1.99":
            raise SystemExit(f"{path}: deflated files cannot be copied byte for byte")
        pid = str(ds.PatientID).strip() if at is not None else None
        out.append(Source(path.relative_to(source), data, frozenset(_instance_uids(ds)), pid, at))
    return out


class Renamer:
    """New same-length UIDs and new Patient IDs, per copy, unique across copies."""

    def __init__(self, sources: list[Source], seed: int) -> None:
        self.seed = seed
        self.originals = frozenset().union(*(s.uids for s in sources))
        self.patients = sorted({s.patient_id for s in sources if s.patient_id is not None})
        self.issued: set[str] = set()

    def uid(self, old: str, copy: int) -> str:
        """``old`` with the digits of its last components drawn from a hash of
        (seed, copy, old): the leading components (the organisation's root) stay
        while at least FREE_DIGITS digits are left to draw; no component gains a
        leading zero."""
        parts = old.split(".")
        keep = 1
        while keep < len(parts) - 1 and sum(map(len, parts[keep + 1 :])) >= FREE_DIGITS:
            keep += 1
        for attempt in range(1000):
            digest = hashlib.sha256(f"{self.seed}:{copy}:{old}:{attempt}".encode()).digest()
            digits = iter(str(int.from_bytes(digest * 3, "big")))
            drawn = []
            for part in parts[keep:]:
                new = "".join(next(digits) for _ in part)
                if len(new) > 1 and new[0] == "0":
                    new = str(1 + int(next(digits)) % 9) + new[1:]
                drawn.append(new)
            candidate = ".".join(parts[:keep] + drawn)
            if candidate not in self.originals and candidate not in self.issued:
                self.issued.add(candidate)
                return candidate
        raise SystemExit(f"no free UID of length {len(old)} for {old}")

    def patient_id(self, old: str, copy: int) -> str:
        return f"RA{self.seed}-{copy:04d}-{self.patients.index(old):02d}"


def copy_maps(
    sources: list[Source], renamer: Renamer, copy: int
) -> tuple[dict[str, str], dict[str, str]]:
    """(old UID -> new UID, old Patient ID -> new Patient ID) for one copy."""
    uids = {old: renamer.uid(old, copy) for old in sorted(renamer.originals)}
    patients = {old: renamer.patient_id(old, copy) for old in renamer.patients}
    return uids, patients


def _uid_pattern(uids: Iterable[str]) -> re.Pattern[bytes]:
    alternatives = b"|".join(re.escape(u.encode()) for u in sorted(uids, key=len, reverse=True))
    return re.compile(rb"(?<![0-9.])(?:" + alternatives + rb")(?![0-9.])")


def rewrite(src: Source, uids: dict[str, str], patients: dict[str, str]) -> bytes:
    """The file's bytes with new UIDs (same length) and a new Patient ID."""
    data = src.data
    if src.uids:
        pattern = _uid_pattern(src.uids)
        data = pattern.sub(lambda m: uids[m.group().decode()].encode(), data)
    if src.patient_id is not None and src.patient_id_at is not None:
        start, size, end, little = src.patient_id_at
        value = patients[src.patient_id].encode("ascii")
        value += b" " * (len(value) % 2)
        fmt = ("<" if little else ">") + ("I" if size == 4 else "H")
        data = data[:start] + struct.pack(fmt, len(value)) + value + data[end:]
    return data


def make_real_archive(out: Path, files: int, seed: int, source: Path = REALDATA) -> int:
    """Write about ``files`` files (whole copies of ``source``) to ``out``."""
    sources = read_sources(source)
    if not sources:
        raise SystemExit(f"no DICOM files under {source}")
    copies = max(1, round(files / len(sources)))
    renamer = Renamer(sources, seed)
    out.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        uids, patients = copy_maps(sources, renamer, copy)
        for src in sources:
            target = out / f"copy_{copy:04d}" / src.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rewrite(src, uids, patients))
    return copies * len(sources)


def _scan(folder: Path) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "rtcode", "scan", str(folder), "--format", "jsonl"]
    done = subprocess.run(
        [*args, "--no-cache", "--quiet", "--jobs", "1"], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"rtcode scan {folder} failed:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_copy(out: Path, seed: int, source: Path = REALDATA, copy: int = 0) -> int:
    """Scan ``source`` and one copy; raise unless each plan's record is the same once
    the copy's UIDs, Patient IDs and folder are mapped back. Returns the plans."""
    sources = read_sources(source)
    renamer = Renamer(sources, seed)
    for earlier in range(copy):  # the UIDs issued before this copy's (collisions)
        copy_maps(sources, renamer, earlier)
    uids, patients = copy_maps(sources, renamer, copy)
    back = {new: old for old, new in [*uids.items(), *patients.items()]}
    folder = (out / f"copy_{copy:04d}").resolve()
    pattern = re.compile("|".join(re.escape(k) for k in sorted(back, key=len, reverse=True)))

    def mapped(record: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(record).replace(str(folder), str(source.resolve()))
        back_again: dict[str, Any] = json.loads(pattern.sub(lambda m: back[m.group()], text))
        return back_again

    def plans(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["path"]: r for r in records if r["record"] == "plan"}

    want = plans(_scan(source.resolve()))
    got = plans([mapped(r) for r in _scan(folder)])
    if set(got) != set(want):
        raise SystemExit(f"plans differ: {sorted(set(got) ^ set(want))}")
    for path, record in want.items():
        if got[path] != record:
            diff = [k for k in record if got[path].get(k) != record[k]]
            raise SystemExit(f"{path}: the copy's record differs in {diff}")
    return len(want)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (created; emptied first)")
    parser.add_argument("--files", type=int, default=2000, help="about this many files")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", type=Path, default=REALDATA, help="folder of real exports")
    parser.add_argument("--check", action="store_true", help="compare the first copy's codes")
    args = parser.parse_args(argv)
    if args.out.resolve().is_relative_to(ROOT):
        raise SystemExit("write the archive outside the project: the exports are third-party")
    if args.out.exists():
        shutil.rmtree(args.out)
    n = make_real_archive(args.out, args.files, args.seed, args.source)
    print(f"wrote {n} files to {args.out}")
    if args.check:
        plans = check_copy(args.out, args.seed, args.source)
        print(f"check: the {plans} plans of copy_0000 code as the source's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
