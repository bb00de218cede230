"""A corpus of broken DICOM-RT inputs, made from the sample data, each with its outcome.

``build(root)`` writes every case under ``root`` (one folder per case) and returns the
cases. The corpus is deterministic: random offsets and byte flips come from seeded
generators, so a failing case has the same name and bytes on every run.

What a case must produce (``Case.outcome``):

- ``error``: exactly one error entry, naming ``Case.file``, in plain words (one line,
  no traceback, no Python exception class name) and containing ``Case.detail``;
  nothing else from that file (no plan, structure set or dose).
- ``undetermined``: the plan is reported with category ``undetermined`` and the warning
  flag ``Case.detail`` saying why (rule 3: no treatment beam; a header-only fragment is
  not an error), and no error.
- ``flagged``: the plan is coded and carries the warning flag ``Case.detail``, no error
  (a plan without a FractionGroupSequence: the RT Fraction Scheme module is optional; a
  count that disagrees with the sequence it counts: the sequence is read).
- ``read``: the file reads as a complete, shorter object (a cut exactly between two
  top-level elements cannot be told from a file that lacks those elements) or is intact
  despite the damage: ``Case.plans`` plans, or one structure set or dose; no error.
- ``read_or_error``: byte flips may leave a readable file. No crash, and either the
  object is read (as for ``read``) or there is exactly one plain-words error naming
  the file; never both, never more.
- ``skipped``: nothing read, nothing reported as an error (a folder symlink that is
  not followed, a pipe inside a folder, an empty file without a .dcm name).

``Case.policy`` holds settings (TOML) laid over the default policy, for the limits
cases that would otherwise need huge files.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import stat
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
RP = SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm"  # Part 10, explicit VR, 4 MLC beams
RS = SAMPLE_DATA / "06_four_field_box_3d" / "RS.dcm"
RD = SAMPLE_DATA / "06_four_field_box_3d" / "RD.dcm"  # with pixel data and a DVH
VMAT = SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm"  # 2 arcs of 91 control points
ION = SAMPLE_DATA / "17_proton_pbs" / "RN.dcm"  # RT Ion Plan
RAW = SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA"  # raw implicit VR, no preamble

SEED = 20260611
OUTCOMES = ("error", "undetermined", "flagged", "read", "read_or_error", "skipped")
PATH_MAX = 4096


@dataclass(frozen=True)
class Case:
    name: str
    target: Path  # what to scan: the case folder, or a file named explicitly
    outcome: str  # one of OUTCOMES
    file: str  # the path the outcome is about, as rtcode displays it
    detail: str = ""  # error: text the message must contain; undetermined/flagged: the flag
    kind: str = "plan"  # what a readable file is: plan, structure_set or dose
    plans: int = 1  # for "read": how many plans
    policy: str | None = None  # TOML laid over the default policy (extends = "default")
    group: str = ""  # which part of the issue the case belongs to (see GROUPS)

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome


# ----------------------------------------------------------------- plain words

_EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")
# What Python's and libraries' own exception texts say, which no user should read: a
# message holding one of these passed an exception's text on instead of saying what is
# wrong with the file (issue 21, 15).
_PYTHON_TEXT = re.compile(
    r"unpack requires|\bbuffer\b|cannot convert float|could not convert|invalid literal"
    r"|object has no attribute|NoneType|not subscriptable|index out of range"
    r"|is not iterable|unsupported operand|not supported between instances"
    r"|object is not callable|unhashable type|positional argument|keyword argument"
    r"|codec can't|\bErrno\b|struct\.error|\bbytes-like\b|\bdtype\b|\bndarray\b"
    r"|\bkey(word)? ?error\b|\bint\(\)|\bfloat\(\)|pydicom\.|numpy\.|\.py\b",
    re.IGNORECASE,
)


def plain_words_problem(message: str) -> str | None:
    """Why an error message is not plain words, or None when it is."""
    if not message or not message.strip():
        return "the message is empty"
    if "\n" in message:
        return "the message runs over more than one line"
    if "Traceback" in message or 'File "' in message:
        return "the message holds a traceback"
    found = _EXCEPTION_NAME.search(message)
    if found:
        return f"the message names a Python exception class ({found.group(0)})"
    found = _PYTHON_TEXT.search(message)
    if found:
        return f"the message passes on Python's own words ({found.group(0)!r})"
    if len(message) > 800:
        return "the message is longer than 800 characters"
    return None


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Seen:
    """What a scan reported, reduced to what the outcomes are about."""

    errors: tuple[tuple[str, str], ...]  # (path, message)
    plans: tuple[tuple[str, str, tuple[str, ...]], ...]  # (path, category, warning flags)
    structure_sets: int
    doses: int


def seen_from_scan(result) -> Seen:  # rtcode.engine.scan.ScanResult
    inv = result.inventory
    return Seen(
        tuple((e.path, e.error) for e in inv.errors),
        tuple(
            (
                p.linked.plan.path,
                p.classification.category.value,
                tuple(f.flag for f in p.classification.flags if f.severity == "warning"),
            )
            for p in result.plans
        ),
        len(inv.structure_sets),
        len(inv.doses),
    )


def seen_from_json(data: dict, under: str | None = None) -> Seen:
    """The same from ``rtcode scan --format json``; ``under`` keeps one case's entries
    (structure sets and doses are counted only when ``under`` is None)."""

    def keep(path: str) -> bool:
        return under is None or path == under or path.startswith(under.rstrip(os.sep) + os.sep)

    return Seen(
        tuple((e["path"], e["error"]) for e in data["errors"] if keep(e["path"])),
        tuple(
            (
                p["path"],
                p["category"],
                tuple(f["flag"] for f in p["flags"] if f["severity"] == "warning"),
            )
            for p in data["plans"]
            if keep(p["path"])
        ),
        data["summary"]["structure_sets"] if under is None else -1,
        data["summary"]["doses"] if under is None else -1,
    )


def problems(case: Case, seen: Seen) -> list[str]:
    """Everything about ``seen`` that breaks the case's expected outcome (empty: fine).

    Counts of structure sets and doses of -1 mean "not known" and are not checked."""
    out: list[str] = []
    for path, message in seen.errors:
        why = plain_words_problem(message)
        if why:
            out.append(f"error for {path}: {why}: {message!r}")
    read = _read_count(case, seen)
    if case.outcome == "error":
        if len(seen.errors) != 1:
            out.append(f"expected exactly one error, got {len(seen.errors)}: {seen.errors!r}")
        elif seen.errors[0][0] != case.file:
            out.append(f"the error names {seen.errors[0][0]!r}, not {case.file!r}")
        elif case.detail not in seen.errors[0][1]:
            out.append(f"the error does not say {case.detail!r}: {seen.errors[0][1]!r}")
        if read > 0:
            out.append(f"expected nothing read besides the error, got {read} object(s)")
    elif case.outcome in ("undetermined", "flagged"):
        if seen.errors:
            out.append(f"expected no error, got {seen.errors!r}")
        if len(seen.plans) != 1:
            out.append(f"expected one plan, got {seen.plans!r}")
        else:
            path, category, flags = seen.plans[0]
            if path != case.file:
                out.append(f"the plan is {path!r}, not {case.file!r}")
            if case.outcome == "undetermined" and category != "undetermined":
                out.append(f"expected category undetermined, got {category}")
            if case.detail not in flags:
                out.append(f"expected the flag {case.detail!r}, got {flags!r}")
    elif case.outcome == "read":
        if seen.errors:
            out.append(f"expected no error, got {seen.errors!r}")
        if read not in (case.plans if case.kind == "plan" else 1, -1):
            out.append(f"expected the {case.kind} to be read, got {read} object(s)")
    elif case.outcome == "read_or_error":
        if len(seen.errors) > 1:
            out.append(f"expected at most one error, got {seen.errors!r}")
        if seen.errors and seen.errors[0][0] != case.file:
            out.append(f"the error names {seen.errors[0][0]!r}, not {case.file!r}")
        if seen.errors and read > 0:
            out.append("got both an error and the object read")
        if not seen.errors and read not in (1, -1):
            out.append(f"expected the {case.kind} read or one error, got neither: {seen!r}")
    elif case.outcome == "skipped" and (
        seen.errors or seen.plans or seen.structure_sets > 0 or seen.doses > 0
    ):
        out.append(f"expected nothing read and no error, got {seen!r}")
    return out


def _read_count(case: Case, seen: Seen) -> int:
    if case.kind == "structure_set":
        return seen.structure_sets
    if case.kind == "dose":
        return seen.doses
    return len(seen.plans)


# ------------------------------------------------------------------- building


class _Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []
        self.group = ""

    def folder(self, name: str) -> Path:
        folder = self.root / f"{len(self.cases) + 1:03d}_{name}"
        folder.mkdir(parents=True)
        return folder

    def add_bytes(self, name: str, data: bytes, outcome: str, detail: str = "", **kw) -> Case:
        folder = self.folder(name)
        filename = kw.pop("filename", "RP.dcm")
        path = folder / filename
        path.write_bytes(data)
        case = Case(name, folder, outcome, str(path), detail, group=self.group, **kw)
        self.cases.append(case)
        return case

    def add_dataset(self, name: str, ds: Dataset, outcome: str, detail: str = "", **kw) -> Case:
        return self.add_bytes(name, _dataset_bytes(ds), outcome, detail, **kw)

    def add(self, case: Case) -> None:
        self.cases.append(replace(case, group=self.group))


def _dataset_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ds.file_meta is not None and "TransferSyntaxUID" in ds.file_meta:
            ds.save_as(buf, enforce_file_format=True)
        else:
            ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def _load(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def build(root: Path) -> list[Case]:
    """Write the whole corpus under ``root`` (which must exist) and return its cases."""
    b = _Builder(root)
    for group, make in GROUPS.items():
        b.group = group
        make(b)
    return b.cases


# ------------------------------------------------------------------ truncation


def _layout(data: bytes) -> tuple[int, dict[int, int]]:
    """Where the data set starts (after preamble and file meta) and where each of its
    top-level elements ends (tag -> offset after its value)."""
    fp = io.BytesIO(data)
    if data[128:132] == b"DICM":
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=False)
        start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
        implicit = False
    else:
        start, implicit = 0, True
    fp.seek(start)
    ends = {}
    for elem in data_element_generator(fp, implicit, True):
        if isinstance(elem, RawDataElement):
            ends[int(elem.tag)] = elem.value_tell + elem.length
    return start, ends


def _truncations(b: _Builder) -> None:
    rng = random.Random(SEED)
    sources = [
        (RP, "plan", 16),
        (VMAT, "plan", 10),
        (ION, "plan", 8),
        (RAW, "plan", 8),
        (RS, "structure_set", 6),
        (RD, "dose", 6),
    ]
    for source, kind, n_random in sources:
        data = source.read_bytes()
        start, ends = _layout(data)
        boundaries = sorted(e for e in ends.values() if start < e < len(data))
        # Without a file meta, the data set itself must say what it is.
        sop_class_end = 0 if start else ends[0x00080016]
        offsets = {0, 1, 7, 64, 131, 132, 140, start - 1, start, start + 1, start + 9}
        offsets |= {boundaries[0], boundaries[1], boundaries[len(boundaries) // 2], boundaries[-1]}
        offsets |= {boundaries[-1] + 3}  # inside the header of the last element
        offsets |= {rng.randrange(start, len(data)) for _ in range(n_random)}
        offsets = {o for o in offsets if 0 <= o < len(data)}
        for cut in sorted(offsets):
            name = f"truncated_{source.parent.name[:2]}_{source.stem}_{cut:06d}"
            if cut == 0:
                outcome, detail = "error", "the file is empty"
            elif cut < (132 if start else 8):
                outcome, detail = "error", "not a DICOM file"
            elif cut in boundaries and cut < sop_class_end:
                outcome, detail = "error", "without a SOP Class UID"
            elif cut in boundaries:
                outcome, detail = "read", ""
            else:
                outcome, detail = "error", "truncated DICOM file"
            b.add_bytes(name, data[:cut], outcome, detail, kind=kind, filename=f"{source.stem}.dcm")


# ------------------------------------------------------------------ byte flips


def _byte_flips(b: _Builder) -> None:
    rng = random.Random(SEED + 1)
    for source, kind in (
        (RP, "plan"),
        (VMAT, "plan"),
        (ION, "plan"),
        (RAW, "plan"),
        (RS, "structure_set"),
    ):
        data = source.read_bytes()
        start, _ = _layout(data)
        for flips in (1, 1, 2, 4, 8, 16, 64, 256):
            out = bytearray(data)
            for _ in range(flips):
                out[rng.randrange(start, len(out))] = rng.randrange(256)
            name = f"flipped_{source.parent.name[:2]}_{flips:03d}_{len(b.cases)}"
            b.add_bytes(name, bytes(out), "read_or_error", kind=kind, filename=f"{source.stem}.dcm")


# ----------------------------------------------------- missing and empty elements


def _cp(ds: Dataset, beam: int = 0, cp: int = 0) -> Dataset:
    return ds.BeamSequence[beam].ControlPointSequence[cp]


def _missing_and_empty(b: _Builder) -> None:
    def edit(
        name: str, change: Callable[[Dataset], None], outcome: str, detail: str, source: Path = RP
    ) -> None:
        ds = _load(source)
        change(ds)
        b.add_dataset(name, ds, outcome, detail)

    # A header-only fragment: rule 3 codes it undetermined, with the reason as a flag.
    edit(
        "no_beam_sequence",
        lambda ds: delattr(ds, "BeamSequence"),
        "undetermined",
        "no_treatment_beam",
    )
    edit(
        "empty_beam_sequence",
        lambda ds: setattr(ds, "BeamSequence", Sequence()),
        "undetermined",
        "no_treatment_beam",
    )

    def fragment(ds: Dataset) -> None:
        for keyword in (
            "BeamSequence",
            "FractionGroupSequence",
            "PatientSetupSequence",
            "DoseReferenceSequence",
        ):
            delattr(ds, keyword)

    edit("header_only_fragment", fragment, "undetermined", "no_treatment_beam")

    def unreferenced(ds: Dataset) -> None:
        ds.FractionGroupSequence[0].ReferencedBeamSequence = Sequence()
        ds.FractionGroupSequence[0].NumberOfBeams = 0

    edit("fraction_group_references_no_beam", unreferenced, "undetermined", "no_treatment_beam")

    def counted_not_referenced(ds: Dataset) -> None:  # as Leksell GammaPlan writes it
        ds.FractionGroupSequence[0].ReferencedBeamSequence = Sequence()  # NumberOfBeams 4

    # The file contradicts itself: the beams are taken from the beam sequence, flagged.
    edit(
        "fraction_group_counts_beams_it_references_not",
        counted_not_referenced,
        "flagged",
        "count_mismatch",
    )
    # The RT Fraction Scheme module is optional: beams are taken from the beam sequence.
    edit(
        "no_fraction_group_sequence",
        lambda ds: delattr(ds, "FractionGroupSequence"),
        "flagged",
        "no_fraction_group",
    )
    edit(
        "empty_fraction_group_sequence",
        lambda ds: setattr(ds, "FractionGroupSequence", Sequence()),
        "flagged",
        "no_fraction_group",
    )
    edit(
        "no_control_point_sequence",
        lambda ds: delattr(ds.BeamSequence[1], "ControlPointSequence"),
        "error",
        "BeamSequence[1].ControlPointSequence is missing",
    )
    edit(
        "empty_control_point_sequence",
        lambda ds: setattr(ds.BeamSequence[2], "ControlPointSequence", Sequence()),
        "error",
        "BeamSequence[2].ControlPointSequence is empty",
    )
    edit(
        "no_ion_control_point_sequence",
        lambda ds: delattr(ds.IonBeamSequence[0], "IonControlPointSequence"),
        "error",
        "IonBeamSequence[0].IonControlPointSequence is missing",
        ION,
    )
    edit(
        "no_beam_number",
        lambda ds: delattr(ds.BeamSequence[3], "BeamNumber"),
        "error",
        "BeamSequence[3].BeamNumber is missing",
    )
    edit(
        "no_referenced_beam_number",
        lambda ds: delattr(
            ds.FractionGroupSequence[0].ReferencedBeamSequence[0], "ReferencedBeamNumber"
        ),
        "error",
        "ReferencedBeamSequence[0].ReferencedBeamNumber is missing",
    )
    edit(
        "no_leaf_jaw_positions",
        lambda ds: delattr(_cp(ds).BeamLimitingDevicePositionSequence[2], "LeafJawPositions"),
        "error",
        "LeafJawPositions is missing",
    )
    edit(
        "no_device_type",
        lambda ds: delattr(
            _cp(ds).BeamLimitingDevicePositionSequence[0], "RTBeamLimitingDeviceType"
        ),
        "error",
        "RTBeamLimitingDeviceType is missing",
    )
    edit(
        "no_device_type_in_beam",
        lambda ds: delattr(
            ds.BeamSequence[0].BeamLimitingDeviceSequence[1], "RTBeamLimitingDeviceType"
        ),
        "error",
        "BeamLimitingDeviceSequence[1].RTBeamLimitingDeviceType is missing",
    )

    # No SOP Class UID: what the data set holds decides (a plan's beams make it a plan,
    # flagged); with nothing that makes an RT object, it cannot be told what it is.
    ds = _load(RAW)
    del ds.SOPClassUID
    b.add_dataset("raw_without_sop_class", ds, "flagged", "sop_class_missing")
    for keyword in ("SOPClassUID", "Modality", "BeamSequence", "FractionGroupSequence"):
        delattr(ds, keyword) if keyword in ds else None
    b.add_dataset("raw_without_sop_class_or_rt_content", ds, "error", "without a SOP Class UID")


# ------------------------------------------------------------------- wrong VRs


def _raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _wrong_vrs(b: _Builder) -> None:
    def edit(name: str, change: Callable[[Dataset], None], outcome: str, detail: str = "") -> None:
        ds = _load(RP)
        change(ds)
        b.add_dataset(name, ds, outcome, detail)

    def put(
        container: Callable[[Dataset], Dataset], tag: int, vr: str, value
    ) -> Callable[[Dataset], None]:
        def change(ds: Dataset) -> None:
            container(ds)[tag] = DataElement(tag, vr, value)

        return change

    def put_raw(
        container: Callable[[Dataset], Dataset], tag: int, vr: str, value: bytes
    ) -> Callable[[Dataset], None]:
        def change(ds: Dataset) -> None:
            container(ds)[tag] = _raw(tag, vr, value)

        return change

    beam0 = lambda ds: ds.BeamSequence[0]  # noqa: E731
    top = lambda ds: ds  # noqa: E731
    edit(
        "vr_number_of_control_points_as_text",
        put(beam0, 0x300A0110, "LO", "ten"),
        "error",
        "NumberOfControlPoints is not a number",
    )
    edit(
        "vr_beam_sequence_as_text",
        put(top, 0x300A00B0, "LO", "four beams"),
        "error",
        "BeamSequence should be a sequence",
    )
    edit(
        "vr_control_points_as_bytes",
        put(beam0, 0x300A0111, "OB", b"\x01\x02\x03\x04"),
        "error",
        "ControlPointSequence should be a sequence",
    )
    edit(
        "vr_gantry_angle_as_sequence",
        put(lambda ds: _cp(ds), 0x300A011E, "SQ", Sequence([Dataset()])),
        "error",
        "GantryAngle should be a number",
    )
    edit(
        "vr_plan_label_as_bytes",
        put(top, 0x300A0002, "OB", b"\x00\x01LABEL\xff"),
        "error",
        "RTPlanLabel should be text",
    )
    edit(
        "vr_patient_id_as_sequence",
        put(top, 0x00100020, "SQ", Sequence([Dataset()])),
        "error",
        "PatientID should be text",
    )
    edit(
        "vr_leaf_positions_as_text",
        put(
            lambda ds: _cp(ds).BeamLimitingDevicePositionSequence[0],
            0x300A011C,
            "UT",
            "left and right",
        ),
        "error",
        "LeafJawPositions holds a value that is not a number",
    )
    # Said in words from the element's VR and length, never the parser's own text
    # (issue 21, 15: "cannot be decoded: unpack requires a buffer of 4 bytes").
    edit(
        "vr_us_with_three_bytes",
        put_raw(beam0, 0x300A0110, "US", b"\x01\x02\x03"),
        "error",
        "NumberOfControlPoints cannot be decoded: its 3 bytes are not a whole number of"
        " unsigned 16-bit integers (VR US, 2 bytes each)",
    )
    edit(
        "vr_fd_with_five_bytes",
        put_raw(lambda ds: _cp(ds), 0x300A011E, "FD", b"\x01\x02\x03\x04\x05"),
        "error",
        "GantryAngle cannot be decoded: its 5 bytes are not a whole number of 64-bit",
    )
    refs = lambda ds: ds.FractionGroupSequence[0]  # noqa: E731
    undecodable = "FractionGroupSequence[0].ReferencedBeamSequence cannot be decoded: its sequence"
    for name, data, detail in (
        ("sequence_of_three_bytes", b"\x01\x02\x03\x00", undecodable),  # no item header fits
        ("sequence_of_a_stray_half_header", b"\x0a\x30", undecodable),
        (  # pydicom reads the item short: no beam number in it
            "sequence_item_runs_past_its_end",
            b"\xfe\xff\x00\xe0\x40\x00\x00\x00\x0a\x30",
            "ReferencedBeamSequence[0].ReferencedBeamNumber is missing",
        ),
    ):
        edit(name, put_raw(refs, 0x300C0004, "SQ", data), "error", detail)
    # VR bytes that name no VR (found by the fuzzer: the message must not print them,
    # a newline among them)
    data = RP.read_bytes()
    at = data.index(b"\x0a\x30\xbe\x00DS") + 4  # the first LeafPositionBoundaries' VR
    for name, vr in (("vr_bytes_with_a_newline", b"D\n"), ("vr_bytes_that_name_no_vr", b"ZZ")):
        b.add_bytes(
            name,
            data[:at] + vr + data[at + 2 :],
            "error",
            "BeamSequence[0].BeamLimitingDeviceSequence[2].LeafPositionBoundaries cannot be"
            " decoded: its value representation is damaged",
        )
    edit(
        "gantry_angle_two_values",
        put(lambda ds: _cp(ds), 0x300A011E, "DS", ["90", "180"]),
        "error",
        "GantryAngle should be one number but holds 2 values",
    )
    # A wrong VR whose value still makes sense is read.
    edit(
        "vr_meterset_as_binary_double",
        put(
            lambda ds: ds.FractionGroupSequence[0].ReferencedBeamSequence[0],
            0x300A0086,
            "FD",
            120.5,
        ),
        "read",
    )
    edit(
        "vr_gantry_angle_as_integer_string", put(lambda ds: _cp(ds), 0x300A011E, "IS", "90"), "read"
    )


# ----------------------------------------------------------------- bad values


def _bad_values(b: _Builder) -> None:
    def edit(
        name: str,
        change: Callable[[Dataset], None],
        detail: str,
        source: Path = RP,
        outcome: str = "error",
    ) -> None:
        ds = _load(source)
        change(ds)
        b.add_dataset(name, ds, outcome, detail)

    def ref(ds: Dataset) -> Dataset:
        return ds.FractionGroupSequence[0].ReferencedBeamSequence[0]

    def set_raw(
        container: Callable[[Dataset], Dataset], keyword: str, vr: str, text: str
    ) -> Callable[[Dataset], None]:
        def change(ds: Dataset) -> None:
            tag = pydicom.datadict.tag_for_keyword(keyword)
            value = text.encode("ascii")
            container(ds)[tag] = _raw(tag, vr, value + (b" " if len(value) % 2 else b""))

        return change

    edit(
        "meterset_nan",
        set_raw(ref, "BeamMeterset", "DS", "NaN"),
        "BeamMeterset is not a finite number",
    )
    edit(
        "meterset_infinite",
        set_raw(ref, "BeamMeterset", "DS", "inf"),
        "BeamMeterset is not a finite number",
    )
    edit(
        "meterset_overflow",
        set_raw(ref, "BeamMeterset", "DS", "1e999"),
        "BeamMeterset is not a finite number",
    )
    edit("meterset_negative", set_raw(ref, "BeamMeterset", "DS", "-50"), "BeamMeterset is negative")
    edit("meterset_absurd", set_raw(ref, "BeamMeterset", "DS", "1e12"), "limits.max_meterset_mu")
    edit(
        "meterset_not_a_number",
        set_raw(ref, "BeamMeterset", "DS", "lots"),
        "BeamMeterset is not a number",
    )
    edit(
        "weight_nan",
        set_raw(lambda ds: _cp(ds, 0, 1), "CumulativeMetersetWeight", "DS", "NaN"),
        "ControlPointSequence[1].CumulativeMetersetWeight is not a finite number",
    )
    edit(
        "weight_negative",
        set_raw(lambda ds: _cp(ds, 0, 1), "CumulativeMetersetWeight", "DS", "-1"),
        "CumulativeMetersetWeight is negative",
    )
    edit(
        "final_weight_negative",
        set_raw(lambda ds: ds.BeamSequence[0], "FinalCumulativeMetersetWeight", "DS", "-1"),
        "FinalCumulativeMetersetWeight is negative",
    )
    edit(
        "gantry_infinite",
        set_raw(lambda ds: _cp(ds), "GantryAngle", "DS", "Infinity"),
        "GantryAngle is not a finite number",
    )
    edit(
        "isocentre_nan",
        set_raw(lambda ds: _cp(ds), "IsocenterPosition", "DS", "0\\NaN\\0"),
        "IsocenterPosition holds a value that is not a finite number",
    )
    edit(
        "leaf_position_infinite",
        set_raw(
            lambda ds: _cp(ds).BeamLimitingDevicePositionSequence[0],
            "LeafJawPositions",
            "DS",
            "-inf\\50",
        ),
        "LeafJawPositions holds a value that is not a finite number",
    )
    edit(
        "fractions_negative",
        set_raw(lambda ds: ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", "IS", "-5"),
        "NumberOfFractionsPlanned is negative",
    )
    edit(
        "fractions_fractional",
        set_raw(lambda ds: ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", "DS", "2.5"),
        "NumberOfFractionsPlanned should be a whole number",
    )
    edit(
        "control_points_claimed_million",
        set_raw(lambda ds: ds.BeamSequence[0], "NumberOfControlPoints", "IS", "1000000"),
        "limits.max_control_points_per_beam",
    )
    # A count that disagrees with the sequence it counts does not change the code: the
    # items are read and the plan is flagged (quirks.py, count_mismatch). A count beyond
    # the policy's limits is still refused (control_points_claimed_million).
    edit(
        "control_points_disagree",
        set_raw(lambda ds: ds.BeamSequence[1], "NumberOfControlPoints", "IS", "7"),
        "count_mismatch",
        outcome="flagged",
    )
    edit(
        "control_points_disagree_ion",
        set_raw(lambda ds: ds.IonBeamSequence[0], "NumberOfControlPoints", "IS", "3"),
        "count_mismatch",
        ION,
        outcome="flagged",
    )
    edit(
        "control_points_negative",
        set_raw(lambda ds: ds.BeamSequence[0], "NumberOfControlPoints", "IS", "-2"),
        "NumberOfControlPoints is negative",
    )
    edit(  # the four referenced beams are coded, the count flagged
        "beams_disagree",
        set_raw(lambda ds: ds.FractionGroupSequence[0], "NumberOfBeams", "IS", "9"),
        "count_mismatch",
        outcome="flagged",
    )
    edit(
        "leaf_pairs_claimed_million",
        set_raw(
            lambda ds: ds.BeamSequence[0].BeamLimitingDeviceSequence[2],
            "NumberOfLeafJawPairs",
            "IS",
            "1000000",
        ),
        "limits.max_leaf_pairs",
    )
    edit(
        "leaf_pairs_zero",
        set_raw(
            lambda ds: ds.BeamSequence[0].BeamLimitingDeviceSequence[2],
            "NumberOfLeafJawPairs",
            "IS",
            "0",
        ),
        "NumberOfLeafJawPairs is 0",
    )
    edit(
        "leaf_pairs_disagree",
        set_raw(
            lambda ds: ds.BeamSequence[0].BeamLimitingDeviceSequence[2],
            "NumberOfLeafJawPairs",
            "IS",
            "40",
        ),
        "LeafPositionBoundaries has 61 values; NumberOfLeafJawPairs 40 needs 41",
    )

    def fewer_leaves(ds: Dataset) -> None:
        item = _cp(ds).BeamLimitingDevicePositionSequence[2]
        item.LeafJawPositions = list(item.LeafJawPositions)[:-2]

    edit("leaf_positions_disagree", fewer_leaves, "LeafJawPositions has 118 values")
    edit(
        "isocentre_two_values",
        set_raw(lambda ds: _cp(ds), "IsocenterPosition", "DS", "0\\0"),
        "IsocenterPosition needs 3 values, has 2",
    )


# ------------------------------------------------------- finite, out of range


def _extreme_values(b: _Builder) -> None:
    """Finite values beyond their physical range (issue 21, 8): arithmetic on them
    overflows into infinities. What decides the code (gantry and couch angles, leaf
    and jaw positions, leaf boundaries, isocentres) is an error naming the DICOM path;
    what does not (the collimator angle) is flagged and shown as written; a final
    meterset weight the control points run past is an error (the weights decide the
    shares of MU). Angles of 360 are read (some systems end arcs there)."""

    def edit(
        name: str,
        container: Callable[[Dataset], Dataset],
        keyword: str,
        text: str,
        outcome: str,
        detail: str = "",
        source: Path = RP,
    ) -> None:
        ds = _load(source)
        tag = pydicom.datadict.tag_for_keyword(keyword)
        value = text.encode("ascii")
        container(ds)[tag] = _raw(tag, "DS", value + (b" " if len(value) % 2 else b""))
        b.add_dataset(name, ds, outcome, detail)

    cp0 = lambda ds: _cp(ds)  # noqa: E731
    beam0 = lambda ds: ds.BeamSequence[0]  # noqa: E731
    mlc0 = lambda ds: _cp(ds).BeamLimitingDevicePositionSequence[2]  # noqa: E731
    at = "::BeamSequence[0].ControlPointSequence[0]"
    outside = "degrees, outside 0 to 360"
    edit(
        "gantry_1e308",
        cp0,
        "GantryAngle",
        "1e308",
        "error",
        f"{at}.GantryAngle is 1e+308 {outside}",
    )
    edit(
        "gantry_minus_10", cp0, "GantryAngle", "-10", "error", f"{at}.GantryAngle is -10 {outside}"
    )
    edit("gantry_361", cp0, "GantryAngle", "361", "error", f"{at}.GantryAngle is 361 {outside}")
    edit("gantry_360", cp0, "GantryAngle", "360", "read")
    edit(
        "gantry_1e308_inside_an_arc",
        lambda ds: _cp(ds, 1, 50),
        "GantryAngle",
        "1e308",
        "error",
        "::BeamSequence[1].ControlPointSequence[50].GantryAngle is 1e+308 " + outside,
        VMAT,
    )
    edit(
        "ion_gantry_1e308",
        lambda ds: ds.IonBeamSequence[0].IonControlPointSequence[0],
        "GantryAngle",
        "1e308",
        "error",
        "::IonBeamSequence[0].IonControlPointSequence[0].GantryAngle is 1e+308 " + outside,
        ION,
    )
    edit(
        "couch_1e308",
        cp0,
        "PatientSupportAngle",
        "1e308",
        "error",
        f"{at}.PatientSupportAngle is 1e+308 {outside}",
    )
    edit(
        "collimator_1e308", cp0, "BeamLimitingDeviceAngle", "1e308", "flagged", "value_out_of_range"
    )
    edit(
        "collimator_minus_1", cp0, "BeamLimitingDeviceAngle", "-1", "flagged", "value_out_of_range"
    )
    edit("collimator_360", cp0, "BeamLimitingDeviceAngle", "360", "read")

    def positions(name: str, container, index: int, text: str, outcome: str, detail: str = ""):
        ds = _load(RP)
        item = container(ds)
        values = [str(v) for v in item.LeafJawPositions]
        values[index] = text
        value = "\\".join(values).encode("ascii")
        tag = 0x300A011C
        item[tag] = _raw(tag, "DS", value + (b" " if len(value) % 2 else b""))
        b.add_dataset(name, ds, outcome, detail)

    where = f"{at}.BeamLimitingDevicePositionSequence"
    positions(
        "leaf_position_1e308", mlc0, 7, "1e308", "error",
        f"{where}[2].LeafJawPositions holds 1e+308 mm (value 8 of 120)",
    )  # fmt: skip
    positions(
        "jaw_position_minus_1001",
        lambda ds: _cp(ds).BeamLimitingDevicePositionSequence[0],
        0,
        "-1001",
        "error",
        f"{where}[0].LeafJawPositions holds -1001 mm (value 1 of 2)",
    )
    positions("leaf_position_1000", mlc0, 0, "-1000", "read")  # at the bound: read
    edit(
        "leaf_boundaries_1e308",
        lambda ds: ds.BeamSequence[0].BeamLimitingDeviceSequence[2],
        "LeafPositionBoundaries",
        "\\".join(["1e308"] + ["0"] * 60),
        "error",
        "::BeamSequence[0].BeamLimitingDeviceSequence[2].LeafPositionBoundaries holds 1e+308 mm",
    )
    edit(
        "isocentre_1e308",
        cp0,
        "IsocenterPosition",
        "0\\1e308\\0",
        "error",
        f"{at}.IsocenterPosition holds 1e+308 mm (value 2 of 3)",
    )
    # Meterset weights: finite and not negative (else an error: bad_values), and none
    # past the beam's final weight (the shares of MU would exceed 1, or be infinite).
    past = "ControlPointSequence[1].CumulativeMetersetWeight is 1, more than"
    for name, text in (("final_weight_subnormal", "1e-320"), ("final_weight_zero", "0")):
        edit(name, beam0, "FinalCumulativeMetersetWeight", text, "error", past)
    edit(
        "weight_1e308_past_the_final_weight",
        cp0,
        "CumulativeMetersetWeight",
        "1e308",
        "error",
        f"{at}.CumulativeMetersetWeight is 1e+308, more than",
    )
    edit("final_weight_1e308", beam0, "FinalCumulativeMetersetWeight", "1e308", "read")
    edit("meterset_subnormal", lambda ds: ds.FractionGroupSequence[0].ReferencedBeamSequence[0],
         "BeamMeterset", "1e-320", "read")  # fmt: skip
    edit("energy_1e308", cp0, "NominalBeamEnergy", "1e308", "read")

    ds = _load(RP)  # every weight of a beam huge, its final weight too
    for k, cp in enumerate(ds.BeamSequence[0].ControlPointSequence):
        cp.CumulativeMetersetWeight = f"{k}e300"
    ds.BeamSequence[0].FinalCumulativeMetersetWeight = f"{k}e300"
    b.add_dataset("weights_1e300", ds, "read")


# ----------------------------------------------------------------------- limits


def _limits(b: _Builder) -> None:
    one_mb = "[limits]\nmax_file_size_mb = 1\n"
    data = RP.read_bytes()
    case = b.add_bytes(
        "larger_than_file_size_limit", data, "error", "limits.max_file_size_mb", policy=one_mb
    )
    with open(case.file, "r+b") as fh:  # sparse: 2 MB on paper, a few kB on disk
        fh.truncate(2 * 1024 * 1024)
    b.add_bytes(
        "more_beams_than_limit",
        data,
        "error",
        "BeamSequence has 4 beams, more than the limit of 3",
        policy="[limits]\nmax_beams = 3\n",
    )
    fewer = "[limits]\nmax_control_points_per_beam = 50\n"
    b.add_bytes(
        "declared_control_points_above_limit",
        VMAT.read_bytes(),
        "error",
        "NumberOfControlPoints claims 91, more than the limit of 50",
        policy=fewer,
    )
    ds = _load(VMAT)
    del ds.BeamSequence[0].NumberOfControlPoints  # the items themselves are counted
    b.add_dataset(
        "control_points_above_limit",
        ds,
        "error",
        "ControlPointSequence has 91 control points, more than the limit of 50",
        policy=fewer,
    )
    b.add_bytes(
        "control_points_of_all_beams_above_plan_limit",  # two arcs of 91, each allowed
        VMAT.read_bytes(),
        "error",
        "limits.max_control_points_per_plan",
        policy="[limits]\nmax_control_points_per_plan = 100\n",
    )
    b.add_bytes(
        "more_leaf_pairs_than_limit",
        data,
        "error",
        "limits.max_leaf_pairs",
        policy="[limits]\nmax_leaf_pairs = 20\n",
    )
    b.add_bytes(
        "meterset_above_limit",
        data,
        "error",
        "limits.max_meterset_mu",
        policy="[limits]\nmax_meterset_mu = 10.0\n",
    )
    # Deflated: a few kB on disk that pydicom would inflate whole to 3 MB in memory.
    ds = _load(RP)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x300F1010, "OB", b"\0" * (3 * 1024 * 1024))
    b.add_dataset(
        "deflated_beyond_file_size_limit",
        ds,
        "error",
        "inflates to more than 1 MB (policy setting limits.max_file_size_mb)",
        policy=one_mb,
    )
    # Thousands of tiny elements in a private sequence: more than the limit, counted
    # over the element headers before anything is parsed.
    b.add_bytes(
        "more_data_elements_than_limit",
        data + _flood(5000),
        "error",
        "more than 4000 data elements and items (policy setting limits.max_data_elements)",
        policy="[limits]\nmax_data_elements = 4000\n",
    )
    # The same, deflated: a few kB on disk, counted as it inflates.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flooded = pydicom.dcmread(io.BytesIO(data + _flood(5000)), force=True)
    flooded.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    b.add_dataset(
        "deflated_beyond_data_element_limit",
        flooded,
        "error",
        "more than 4000 data elements and items (policy setting limits.max_data_elements)",
        policy="[limits]\nmax_data_elements = 4000\n",
    )
    # An element that declares 4 GB in a file of 7 kB: read as cut short, nothing reserved.
    huge = struct.pack("<HH", 0x300F, 0x1010) + b"UT\0\0" + struct.pack("<I", 0xFFFFFFF0) + b"abc "
    b.add_bytes("element_claims_four_gigabytes", data + huge, "error", "truncated DICOM file")
    # Sequences nested 1000 deep: undefined lengths are parsed at once (too deep: an
    # error); defined lengths are parsed only when used, and rtcode never uses them.
    b.add_bytes(
        "nested_1000_undefined_length",
        data + _nested(1000, undefined=True),
        "error",
        "nested too deeply",
    )
    b.add_bytes("nested_1000_defined_length", data + _nested(1000, undefined=False), "read")


def _flood(items: int) -> bytes:
    """A private sequence (300F,1000) of ``items`` items, each holding one empty
    element (300F,1001): 16 bytes an element, explicit VR LE, undefined length."""
    element = struct.pack("<HH", 0x300F, 0x1001) + b"LO" + struct.pack("<H", 0)
    item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(element)) + element
    opening = struct.pack("<HH", 0x300F, 0x1000) + b"SQ\0\0" + b"\xff\xff\xff\xff"
    return opening + item * items + b"\xfe\xff\xdd\xe0\0\0\0\0"


def _nested(depth: int, undefined: bool) -> bytes:
    """A private sequence (300F,1000) nested ``depth`` levels deep, explicit VR LE."""
    tag = struct.pack("<HH", 0x300F, 0x1000) + b"SQ\0\0"
    item, item_end, seq_end = (
        b"\xfe\xff\x00\xe0",
        b"\xfe\xff\x0d\xe0\0\0\0\0",
        b"\xfe\xff\xdd\xe0\0\0\0\0",
    )
    if undefined:
        opening = tag + b"\xff\xff\xff\xff" + item + b"\xff\xff\xff\xff"
        return opening * depth + (item_end + seq_end) * depth
    body = b""
    for _ in range(depth):
        body_item = item + struct.pack("<I", len(body)) + body
        body = tag + struct.pack("<I", len(body_item)) + body_item
    return body


# -------------------------------------------------------------------- not DICOM


def _not_dicom(b: _Builder) -> None:
    rng = random.Random(SEED + 2)
    not_dicom = "not a DICOM file"
    b.add_bytes("text_named_dcm", b"Plan notes: four-field box, 45 Gy.\n" * 4, "error", not_dicom)
    b.add_bytes(
        "pdf_named_dcm",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 8,
        "error",
        not_dicom,
    )
    b.add_bytes("png_named_dcm", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(300), "error", not_dicom)
    b.add_bytes(
        "random_bytes_named_dcm", bytes(rng.randrange(256) for _ in range(4096)), "error", ""
    )
    b.add_bytes("dicm_marker_then_garbage", b"\0" * 128 + b"DICM" + b"\xff" * 50, "error", "")
    b.add_bytes("zero_bytes_named_dcm", b"", "error", "the file is empty")
    b.add_bytes("short_file_named_dcm", b"DICM", "error", "only 4 bytes")
    b.add_bytes("zero_bytes_without_dcm_name", b"", "skipped", filename="RP")
    b.add_bytes("readme_beside_export", b"# Export notes\n", "skipped", filename="README.txt")
    # A Part-10 header that says RT Plan over an implicit-VR body of noise.
    b.add_bytes(
        "raw_header_then_noise",
        b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100"
        + bytes(rng.randrange(256) for _ in range(500)),
        "read_or_error",
    )


# ------------------------------------------------------------------- file system


def _file_system(b: _Builder) -> None:
    data = RP.read_bytes()
    readable_as_root = os.geteuid() == 0 if hasattr(os, "geteuid") else False

    case = b.add_bytes("unreadable_file", data, "error", "Permission denied")
    os.chmod(case.file, 0)
    if readable_as_root or os.access(case.file, os.R_OK):  # root reads it anyway
        b.cases[-1] = replace(case, outcome="read", detail="")

    folder = b.folder("unreadable_folder")
    (folder / "inner").mkdir()
    (folder / "inner" / "RP.dcm").write_bytes(data)
    os.chmod(folder / "inner", 0)
    if readable_as_root or os.access(folder / "inner", os.R_OK):
        b.add(Case("unreadable_folder", folder, "read", str(folder / "inner" / "RP.dcm")))
    else:
        b.add(
            Case(
                "unreadable_folder",
                folder,
                "error",
                str(folder / "inner"),
                "cannot list folder: Permission denied",
            )
        )

    folder = b.folder("symlink_to_itself")
    os.symlink("loop.dcm", folder / "loop.dcm")
    b.add(
        Case(
            "symlink_to_itself",
            folder,
            "error",
            str(folder / "loop.dcm"),
            "symbolic link that cannot be followed",
        )
    )

    folder = b.folder("symlink_to_nowhere")
    os.symlink("gone.dcm", folder / "RP.dcm")
    b.add(
        Case(
            "symlink_to_nowhere",
            folder,
            "error",
            str(folder / "RP.dcm"),
            "symbolic link that cannot be followed",
        )
    )

    folder = b.folder("symlink_loop_between_folders")
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "a" / "RP.dcm").write_bytes(data)
    os.symlink("../b", folder / "a" / "to_b")
    os.symlink("../a", folder / "b" / "to_a")
    os.symlink("..", folder / "a" / "up")
    b.add(Case("symlink_loop_between_folders", folder, "read", str(folder / "a" / "RP.dcm")))

    folder = b.folder("non_ascii_path")
    inner = folder / "Ωμέγα_患者_é"
    inner.mkdir()
    (inner / "RP_ñ.dcm").write_bytes(data)
    b.add(Case("non_ascii_path", folder, "read", str(inner / "RP_ñ.dcm")))

    folder = b.folder("name_not_utf8")
    try:
        fd = os.open(
            os.path.join(os.fsencode(folder), b"RP_\xff\xfe.dcm"), os.O_WRONLY | os.O_CREAT, 0o644
        )
    except OSError:  # a file system that only takes UTF-8 names
        fd = None
    if fd is not None:
        os.write(fd, data)
        os.close(fd)
        b.add(Case("name_not_utf8", folder, "read", str(folder) + os.sep + "RP_\ufffd\ufffd.dcm"))

    folder = b.folder("long_path")
    deep = _deep_folder(folder, 3000)
    (deep / "RP.dcm").write_bytes(data)
    b.add(Case("long_path", folder, "read", str(deep / "RP.dcm")))

    folder = b.folder("path_beyond_path_max")
    first_too_long = _deep_folder_beyond_path_max(folder)
    b.add(Case("path_beyond_path_max", folder, "error", first_too_long, "File name too long"))

    if hasattr(os, "mkfifo"):
        folder = b.folder("pipe_in_folder")
        os.mkfifo(folder / "RP.dcm")
        b.add(Case("pipe_in_folder", folder, "skipped", ""))
        folder = b.folder("pipe_named")
        os.mkfifo(folder / "RP.dcm")
        b.add(
            Case(
                "pipe_named",
                folder / "RP.dcm",
                "error",
                str(folder / "RP.dcm"),
                "not a regular file or folder",
            )
        )

    folder = b.folder("missing_input")
    b.add(
        Case(
            "missing_input",
            folder / "gone",
            "error",
            str(folder / "gone"),
            "No such file or directory",
        )
    )


def _deep_folder(folder: Path, length: int) -> Path:
    deep = folder
    while len(str(deep)) < length:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    return deep


def _deep_folder_beyond_path_max(folder: Path) -> str:
    """Folders nested past PATH_MAX (made one level at a time, relative to the last),
    with a plan at the bottom; returns the first folder whose path is too long to open."""
    fd = os.open(folder, os.O_RDONLY)
    path = str(folder)
    first_too_long = None
    try:
        while len(path) < PATH_MAX + 600:
            os.mkdir("e" * 200, dir_fd=fd)
            nxt = os.open("e" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            path = path + os.sep + "e" * 200
            if first_too_long is None and len(os.fsencode(path)) >= PATH_MAX:
                first_too_long = path
        plan = os.open("RP.dcm", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(plan, RP.read_bytes())
        os.close(plan)
    finally:
        os.close(fd)
    assert first_too_long is not None
    return first_too_long


# ------------------------------------------------------------------- references


def _references(b: _Builder) -> None:
    def plan(uid: str, refs: Iterable[str], label: str) -> Dataset:
        ds = _load(SAMPLE_DATA / "01_single_open_field" / "RP.dcm")
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.RTPlanLabel = label
        items = []
        for ref in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = ds.SOPClassUID
            item.ReferencedSOPInstanceUID = ref
            item.RTPlanRelationship = "PREDECESSOR"
            items.append(item)
        ds.ReferencedRTPlanSequence = Sequence(items)
        return ds

    folder = b.folder("cyclic_plan_references")
    _write(
        folder / "RP_a.dcm", plan("1.2.826.0.1.3680043.10.1.1", ["1.2.826.0.1.3680043.10.1.2"], "A")
    )
    _write(
        folder / "RP_b.dcm", plan("1.2.826.0.1.3680043.10.1.2", ["1.2.826.0.1.3680043.10.1.1"], "B")
    )
    b.add(Case("cyclic_plan_references", folder, "read", str(folder / "RP_a.dcm"), plans=2))

    folder = b.folder("plan_references_itself")
    _write(
        folder / "RP.dcm",
        plan("1.2.826.0.1.3680043.10.2.1", ["1.2.826.0.1.3680043.10.2.1"] * 3, "SELF"),
    )
    b.add(Case("plan_references_itself", folder, "read", str(folder / "RP.dcm")))

    folder = b.folder("chain_of_20_plans")
    for i in range(20):
        uids = [f"1.2.826.0.1.3680043.10.3.{j}" for j in range(i)]
        _write(folder / f"RP_{i:02d}.dcm", plan(f"1.2.826.0.1.3680043.10.3.{i}", uids, f"P{i}"))
    b.add(Case("chain_of_20_plans", folder, "read", str(folder / "RP_00.dcm"), plans=20))

    # Companions that point at each other's UIDs and at a plan as if it were a structure set.
    folder = b.folder("crossed_companions")
    shutil.copy(RS, folder / "RS.dcm")
    ds = _load(RP)
    ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = ds.SOPInstanceUID
    _write(folder / "RP.dcm", ds)
    dose = _load(RD)
    dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = ds.SOPInstanceUID
    dose.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = dose.SOPInstanceUID
    _write(folder / "RD.dcm", dose)
    b.add(Case("crossed_companions", folder, "read", str(folder / "RP.dcm")))


def _write(path: Path, ds: Dataset) -> None:
    path.write_bytes(_dataset_bytes(ds))


# ------------------------------------------------------------------- byte order


def _big_endian(source: Path) -> bytes:
    """``source`` written again in Explicit VR Big Endian (retired, still met in old
    archives), its pixel data swapped too (pydicom writes pixel bytes as they are)."""
    from pydicom.uid import ExplicitVRBigEndian

    ds = _load(source)
    if "PixelData" in ds:
        pixels = ds.pixel_array
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)  # converts the encoding
    return buf.getvalue()


def _byte_orders(b: _Builder) -> None:
    """Big-endian files are read as the little-endian originals: the Pixel Data header
    of a dose in the file's byte order, never taken for a length of gigabytes."""
    for source, kind in ((RP, "plan"), (RS, "structure_set"), (RD, "dose"), (ION, "plan")):
        data = _big_endian(source)
        name = f"big_endian_{source.parent.name[:2]}_{source.stem}"
        b.add_bytes(name, data, "read", kind=kind, filename=f"{source.stem}.dcm")
    data = _big_endian(RD)
    b.add_bytes(
        "big_endian_dose_cut_inside_pixel_data",
        data[:-100],
        "error",
        "truncated DICOM file: Pixel Data declares",
        kind="dose",
        filename="RD.dcm",
    )


GROUPS: dict[str, Callable[[_Builder], None]] = {
    "truncation": _truncations,
    "byte_flips": _byte_flips,
    "missing_and_empty": _missing_and_empty,
    "wrong_vrs": _wrong_vrs,
    "bad_values": _bad_values,
    "limits": _limits,
    "not_dicom": _not_dicom,
    "file_system": _file_system,
    "references": _references,
    "byte_order": _byte_orders,
    "extreme_values": _extreme_values,
}


# ----------------------------------------------------------------- bookkeeping


def restore_permissions(root: Path) -> None:
    """Make every file and folder under ``root`` readable again, so it can be removed
    (by folder descriptor: some paths in the corpus are longer than PATH_MAX)."""
    os.chmod(root, 0o755)
    for _, dirnames, filenames, dirfd in os.fwalk(root):
        for name in dirnames:  # before fwalk descends into them
            if not _is_link(name, dirfd):
                os.chmod(name, 0o755, dir_fd=dirfd)
        for name in filenames:
            if not _is_link(name, dirfd):
                os.chmod(name, 0o644, dir_fd=dirfd)


def _is_link(name: str, dirfd: int) -> bool:
    return stat.S_ISLNK(os.lstat(name, dir_fd=dirfd).st_mode)


def policy_text(overrides: str) -> bytes:
    return ('[policy]\nextends = "default"\n' + overrides).encode()


if __name__ == "__main__":  # python tests/broken_corpus.py OUT_DIR: write it, list it
    import sys

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for c in build(out):
        print(f"{c.outcome:14} {c.name}  {c.detail}")
