"""Step 2, extraction: data sets in, frozen facts out.

Reads any ``views.DataSet``: the fast path's views first (``views``, ``extract_bulk``),
pydicom's Dataset element by element as the reference (alone with ``reference``; on
anything unusual or any error, so every message comes from it). "0" and "absent" stay
different; control points are carried forward once (``controlpoints``). A damaged or
out-of-range value is a ``DicomReadError`` naming its DICOM path
(``file::Sequence[i].Keyword``); what bends the standard but reads unambiguously is an
``Oddity`` on the plan (``vendors.py`` lists them).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from rtcode.dicom import extract_bulk
from rtcode.dicom.controlpoints import carry_forward
from rtcode.dicom.elements import EXPLICIT_VRS
from rtcode.dicom.read import RawDataset
from rtcode.dicom.views import DataSet, DatasetItem, Item, Unusual, View, plan_view
from rtcode.model.errors import DicomReadError
from rtcode.model.facts import (
    Applicator,
    Beam,
    BeamLimitingDevice,
    Block,
    Brachy,
    BrachyChannel,
    BrachySetup,
    BrachySource,
    ControlPoints,
    Dose,
    DoseGrid,
    FractionGroup,
    Modality,
    Oddity,
    Plan,
    PlanningSystem,
    PlanReference,
    Prescription,
    ReferencedBeam,
    Roi,
    StructureSet,
    Wedge,
)
from rtcode.model.limits import Limits, default_limits

_CP_TAG = 0x300A0111  # ControlPointSequence
_ION_CP_TAG = 0x300A03A8  # IonControlPointSequence
_NESTED = "its sequences are nested too deeply to read (more levels than any real export has)"


def extract(
    ds: Dataset | RawDataset,
    modality: Modality,
    path: str,
    has_pixel_data: bool = False,
    limits: Limits | None = None,
    *,
    reference: bool = False,
) -> Plan | StructureSet | Dose:
    """Facts of one dataset: a Plan, StructureSet or Dose. Raises DicomReadError.

    ``ds`` is a pydicom Dataset, or a ``RawDataset`` (``read`` gives one for a plain
    file): its facts are then read straight from the file's bytes, and on anything
    unusual or any error pydicom parses the bytes and the usual path below decides
    (``RawDataset.dataset`` raises the error ``read`` would have reported for them).
    ``limits`` (default: the shipped policy's) bounds beams, control points, leaf
    pairs and meterset values. ``reference``: the reference path alone (pydicom,
    element by element), the fast path not tried.
    """
    limits = limits if limits is not None else default_limits()
    try:
        # pydicom decodes values when they are first used and warns about invalid ones;
        # the values rtcode uses are checked here and reported as errors instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(ds, RawDataset):
                if not reference:
                    facts = _from_view(ds.view, modality, path, has_pixel_data, limits)
                    if facts is not None:
                        return facts
                ds = ds.dataset()  # the reference path, on pydicom's reading of the bytes
            if modality in (Modality.RTPLAN, Modality.RTIONPLAN):
                return extract_plan(ds, path, modality, limits, reference=reference)
            if modality is Modality.RTSTRUCT:
                return extract_structure_set(ds, path, reference=reference)
            return extract_dose(ds, path, has_pixel_data, reference=reference)
    except RecursionError:
        raise DicomReadError(f"{path}: {_NESTED}") from None


def _from_view(
    view: View, modality: Modality, path: str, has_pixel_data: bool, limits: Limits
) -> Plan | StructureSet | Dose | None:
    """Facts read through a fast-path view, or None when anything is unusual or wrong
    (the reference path then decides and words the error: whatever went wrong here,
    an unforeseen exception included, pydicom's reading is the one that counts)."""
    try:
        if modality in (Modality.RTPLAN, Modality.RTIONPLAN):
            return _plan(view, path, modality, limits)
        if modality is Modality.RTSTRUCT:
            return _structure_set(view, path)
        return _dose(view, path, has_pixel_data)
    except Exception:
        return None


# ----------------------------------------------------------------- value helpers


def _get(ds: DataSet, keyword: str, where: str) -> Any:
    """``ds.get(keyword)``, with a value pydicom cannot decode turned into a plain error."""
    if not isinstance(ds, Dataset):  # the fast path's view: a plain value, or Unusual
        return ds.get(keyword)
    try:
        return ds.get(keyword)
    except Exception:  # pydicom decodes lazily; damaged bytes fail here
        raise DicomReadError(
            f"{_at(where, keyword)} cannot be decoded: {_undecodable(ds, keyword)}"
        ) from None


def _at(where: str, keyword: str) -> str:
    """The DICOM path of ``keyword`` in the data set at ``where``: ``file::Keyword`` at
    the top (``where`` is ``file:``), ``file::Sequence[i].Keyword`` inside an item."""
    return f"{where}:{keyword}" if where.endswith(":") else f"{where}.{keyword}"


# Binary VRs of fixed-size values (PS3.5 6.2): what one value is, its size in bytes.
_BINARY_VRS = {
    "US": ("unsigned 16-bit integers", 2),
    "SS": ("signed 16-bit integers", 2),
    "UL": ("unsigned 32-bit integers", 4),
    "SL": ("signed 32-bit integers", 4),
    "FL": ("32-bit floating point numbers", 4),
    "AT": ("attribute tags", 4),
    "FD": ("64-bit floating point numbers", 8),
    "SV": ("signed 64-bit integers", 8),
    "UV": ("unsigned 64-bit integers", 8),
    "OW": ("16-bit words", 2),
    "OL": ("32-bit words", 4),
    "OF": ("32-bit floating point numbers", 4),
    "OD": ("64-bit floating point numbers", 8),
    "OV": ("64-bit words", 8),
}


def _undecodable(ds: Dataset, keyword: str) -> str:
    """Why an element pydicom could not decode cannot be, in words: from its value
    representation and length as the file gives them (never the parser's own text)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    try:
        raw = ds.get_item(tag) if tag is not None else None
    except Exception:
        raw = None
    vr = getattr(raw, "VR", None)
    if vr is not None and str(vr).encode("ascii", "replace") not in EXPLICIT_VRS:
        return (
            "its value representation is damaged (not one of the standard two-letter"
            " VRs), so its bytes cannot be read"
        )
    if vr is None and tag is not None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
    value = getattr(raw, "value", None)
    size = len(value) if isinstance(value, (bytes, bytearray)) else getattr(raw, "length", None)
    if vr in _BINARY_VRS and size is not None:
        what, each = _BINARY_VRS[vr]
        if size % each:
            return f"its {size} bytes are not a whole number of {what} (VR {vr}, {each} bytes each)"
        return f"its {size} bytes cannot be read as {what} (VR {vr})"
    if vr == "SQ":
        length = "" if size is None or size == 0xFFFFFFFF else f" of {size} bytes"
        return (
            f"its sequence{length} cannot be split into items: an item or element header"
            " inside it is damaged, or a length runs past its end"
        )
    if vr is not None:
        return (
            f"its bytes are not a valid value of VR {vr} (characters outside the file's"
            " character set, or a length that does not fit)"
        )
    return "its bytes do not match its value representation"


def _describe(value: object) -> str:
    """What a value of the wrong kind is, in words."""
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, (DicomSequence, Dataset)):
        return "a sequence"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"the text {str(value)[:40]!r}"


def _text(ds: DataSet, keyword: str, where: str) -> str | None:
    value = _get(ds, keyword, where)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, DicomSequence, Dataset)):
        raise DicomReadError(f"{_at(where, keyword)} should be text but holds {_describe(value)}")
    text = str(value).strip()
    return text or None


def _float(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bytes, bytearray, DicomSequence, Dataset)):
        raise DicomReadError(f"{where} should be a number but holds {_describe(value)}")
    if isinstance(value, np.ndarray) or (
        isinstance(value, Sequence) and not isinstance(value, str)
    ):
        # (an array: several decimals, as the fast path's view parses them)
        raise DicomReadError(f"{where} should be one number but holds {len(value)} values")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DicomReadError(f"{where} is not a number: {str(value)[:40]!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise DicomReadError(f"{where} is not a finite number: {str(value)[:40]!r}")
    return number


def _int(value: Any, where: str) -> int | None:
    number = _float(value, where)
    if number is None:
        return None
    if number != int(number):
        raise DicomReadError(f"{where} should be a whole number, found {str(value)[:40]!r}")
    return int(number)


def _get_float(ds: DataSet, keyword: str, path: str) -> float | None:
    return _float(_get(ds, keyword, path), _at(path, keyword))


def _get_int(ds: DataSet, keyword: str, path: str) -> int | None:
    return _int(_get(ds, keyword, path), _at(path, keyword))


def _not_negative(value: float | None, where: str, what: str) -> float | None:
    if value is not None and value < 0:
        raise DicomReadError(f"{where} is negative ({value:g}): {what} cannot be less than 0")
    return value


# Physical ranges (finite values beyond them are refused or flagged, with their DICOM
# path): arithmetic on a value like 1e308 overflows into infinities, and no machine
# or patient is that large.
#
# IEC 61217 angles run from 0 to 360 degrees; 360 is accepted too (some systems end an
# arc there), the direction of 0. The gantry angle decides whether a beam arcs and the
# couch angle whether the couch is rotated: out of range, an error. The collimator
# angle changes no code: out of range, a flag, the value shown as written.
_ANGLES = {
    "GantryAngle": "the gantry angle decides whether the beam arcs",
    "PatientSupportAngle": "the couch angle decides whether the couch is rotated",
    "BeamLimitingDeviceAngle": None,  # a flag
}
_ANGLE_MAX_DEG = 360.0
# Leaf and jaw positions and leaf boundaries are at the isocentre plane, where the
# largest fields are 40 cm: 1 m either side is beyond any collimator. They decide the
# aperture: an error.
_POSITION_MAX_MM = 1000.0
# Isocentres are in the patient's coordinates: 10 m from the origin is beyond any
# scanner. They decide the treatment areas: an error.
_ISOCENTRE_MAX_MM = 10000.0


def _angle(value: float, where: str, keyword: str, oddities: list[Oddity]) -> float:
    """An IEC angle, checked against 0 to 360 degrees (``_ANGLES``)."""
    if 0.0 <= value <= _ANGLE_MAX_DEG:
        return value
    decides = _ANGLES[keyword]
    said = f"{where} is {value:g} degrees, outside 0 to 360"
    if decides is not None:
        raise DicomReadError(f"{said}: {decides}, so the plan is not coded from it")
    oddities.append(
        Oddity(
            "value_out_of_range",
            f"{said}: shown as written (it does not change the code)",
            where,
            "warning",
        )
    )
    return value


def _within(values: np.ndarray, bound: float, where: str, what: str, decides: str) -> None:
    """Every value within ``bound`` mm either side of 0, else an error naming the first
    that is not (values are finite already: ``_floats``)."""
    beyond = np.flatnonzero(np.abs(values) > bound)
    if beyond.size:
        k = int(beyond[0])
        raise DicomReadError(
            f"{where} holds {values[k]:g} mm (value {k + 1} of {values.size}), more than"
            f" {bound:g} mm from 0: beyond any {what}; {decides}, so the plan is not"
            " coded from it"
        )


def _in_ranges(cps: ControlPoints) -> bool:
    """Whether every value of the control points lies in its range (``_ANGLES``,
    ``_POSITION_MAX_MM``, ``_ISOCENTRE_MAX_MM``; NaN: not given). The fast path's
    control points are used only then; otherwise the reference path reads them and
    says which value is out of range, where (an error, or a flag)."""
    with np.errstate(invalid="ignore"):
        for angles in (cps.gantry_deg, cps.collimator_deg, cps.couch_deg):
            if ((angles < 0.0) | (angles > _ANGLE_MAX_DEG)).any():
                return False
        if (np.abs(cps.isocenter_mm) > _ISOCENTRE_MAX_MM).any():
            return False
        return not any((np.abs(p) > _POSITION_MAX_MM).any() for p in cps.positions_mm.values())


def _count(
    ds: DataSet,
    keyword: str,
    path: str,
    limit: int | None = None,
    setting: str | None = None,
) -> int | None:
    """A count (Number of ...): a whole number, not negative, within the policy limit."""
    n = _get_int(ds, keyword, path)
    if n is None:
        return None
    _not_negative(n, _at(path, keyword), "a count")
    if limit is not None and n > limit:
        raise DicomReadError(
            f"{_at(path, keyword)} claims {n}, more than the limit of {limit}"
            f" (policy setting limits.{setting}): not read"
        )
    return n


def _floats(value: Any, where: str) -> np.ndarray:
    if value is None:
        return np.empty(0)
    if isinstance(value, (bytes, bytearray, DicomSequence, Dataset)):
        raise DicomReadError(f"{where} should hold numbers but holds {_describe(value)}")
    if isinstance(value, np.ndarray):  # the fast path's view: decimal strings parsed
        arr = value
    else:
        items = (
            list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        )
        try:
            arr = np.asarray([float(v) for v in items], dtype=float)
        except (TypeError, ValueError, OverflowError):
            raise DicomReadError(f"{where} holds a value that is not a number") from None
    if not np.isfinite(arr).all():
        raise DicomReadError(f"{where} holds a value that is not a finite number")
    return arr


def _seq(ds: DataSet, keyword: str, where: str) -> Sequence[DataSet]:
    """The items of a sequence; [] when it is absent. Anything else is an error."""
    if isinstance(ds, (Item, DatasetItem)):  # the fast path's view: its items, or Unusual
        return ds.items(keyword)
    value = _get(ds, keyword, where)
    if value is None:
        return []
    if not isinstance(value, DicomSequence) or not all(isinstance(i, Dataset) for i in value):
        raise DicomReadError(
            f"{_at(where, keyword)} should be a sequence of items but holds {_describe(value)}"
        )
    return list(value)


# ------------------------------------------------------------------------- plans


def extract_plan(
    ds: Dataset,
    path: str,
    modality: Modality,
    limits: Limits | None = None,
    *,
    reference: bool = False,
) -> Plan:
    """A Plan's facts. The fast path (views, extract_bulk) reads them from the raw bytes
    and runs the same code on its view of the data set; on anything unusual, and on any
    error (or with ``reference``), the reference path reads pydicom's elements one by
    one and decides."""
    limits = limits if limits is not None else default_limits()
    if reference:
        return _plan(ds, path, modality, limits)
    return _view_first(_plan, ds, path, modality, limits)


def _view_first(read: Callable[..., _Facts], ds: Dataset, *args: Any) -> _Facts:
    """``read(view, *args)`` on the fast path's view of a pydicom Dataset; on anything
    unusual, and on any error, ``read(ds, *args)``: the reference path reads pydicom's
    elements one by one and words the error a damaged file deserves."""
    view = plan_view(ds)
    if view is not None:
        try:
            return read(view, *args)
        except (Unusual, DicomReadError, RecursionError):
            pass
    return read(ds, *args)


_Facts = TypeVar("_Facts", Plan, StructureSet, Dose)
_T = TypeVar("_T")


def _plan(ds: DataSet, path: str, modality: Modality, limits: Limits) -> Plan:
    top = f"{path}:"
    ion = modality is Modality.RTIONPLAN or "IonBeamSequence" in ds
    beam_kw = "IonBeamSequence" if ion else "BeamSequence"
    beam_items = _seq(ds, beam_kw, top)
    if len(beam_items) > limits.max_beams:
        raise DicomReadError(
            f"{path}::{beam_kw} has {len(beam_items)} beams, more than the limit of"
            f" {limits.max_beams} (policy setting limits.max_beams): not read"
        )
    prepared: dict[int, extract_bulk.Gathered] = {}
    if not isinstance(ds, Dataset):  # the fast path: control points of all beams at once
        prepared = extract_bulk.prepare(beam_items, _ION_CP_TAG if ion else _CP_TAG, limits)
    oddities: list[Oddity] = []  # what was read despite bending the standard
    beams_read: list[Beam] = []
    total_points = 0
    for i, item in enumerate(beam_items):
        beam = _beam(item, f"{path}::{beam_kw}[{i}]", ion, limits, prepared.get(i), oddities)
        total_points += beam.control_points.count
        if total_points > limits.max_control_points_per_plan:
            raise DicomReadError(
                f"{path}::{beam_kw} has more than {limits.max_control_points_per_plan}"
                f" control points in all (at beam {i}), more than the limit"
                " (policy setting limits.max_control_points_per_plan): not read"
            )
        beams_read.append(beam)
    beams = tuple(beams_read)
    fraction_groups = tuple(
        _fraction_group(fg, f"{path}::FractionGroupSequence[{i}]", limits)
        for i, fg in enumerate(_seq(ds, "FractionGroupSequence", top))
    )
    oddities.extend(_beam_count_oddities(fraction_groups, beams, beam_kw))
    ss_refs = _seq(ds, "ReferencedStructureSetSequence", top)
    ref_plans = []
    for i, r in enumerate(_seq(ds, "ReferencedRTPlanSequence", top)):
        uid = _text(r, "ReferencedSOPInstanceUID", f"{path}::ReferencedRTPlanSequence[{i}]")
        if uid is not None:
            rel = _text(r, "RTPlanRelationship", f"{path}::ReferencedRTPlanSequence[{i}]")
            ref_plans.append(PlanReference(uid, rel))
    brachy = _brachy(ds, path, oddities) if "ApplicationSetupSequence" in ds else None
    prescriptions = _prescriptions(ds, path, fraction_groups, oddities)
    return Plan(
        path=path,
        modality=Modality.RTIONPLAN if ion else Modality.RTPLAN,
        sop_instance_uid=_text(ds, "SOPInstanceUID", top),
        patient_id=_text(ds, "PatientID", top),
        label=_text(ds, "RTPlanLabel", top),
        name=_text(ds, "RTPlanName", top),
        date=_text(ds, "RTPlanDate", top),
        intent_raw=_text(ds, "PlanIntent", top),
        approval_status=_text(ds, "ApprovalStatus", top),
        planning_system=PlanningSystem(
            manufacturer=_text(ds, "Manufacturer", top),
            model=_text(ds, "ManufacturerModelName", top),
            software_versions=_software(ds, top),
        ),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID", top),
        referenced_structure_set_uid=_first_uid(ss_refs, path, "ReferencedStructureSetSequence"),
        referenced_plans=tuple(ref_plans),
        fraction_groups=fraction_groups,
        beams=beams,
        brachy=brachy,
        beam_sequence_keyword=beam_kw,
        review_date=_text(ds, "ReviewDate", top),
        patient_name=_text(ds, "PatientName", top),
        oddities=tuple(oddities),
        prescriptions=prescriptions,
    )


def _prescriptions(
    ds: DataSet, path: str, groups: tuple[FractionGroup, ...], oddities: list[Oddity]
) -> tuple[Prescription, ...]:
    """DoseReferenceSequence items (PS3.3 C.8.8.10). An item whose values cannot be read
    is left out with a warning Oddity: a damaged prescription does not hide the plan."""
    out = []
    for i, item in enumerate(_seq(ds, "DoseReferenceSequence", f"{path}:")):
        where = f"{path}::DoseReferenceSequence[{i}]"
        try:
            number = _get_int(item, "DoseReferenceNumber", where)
            doses = {
                k: _get_float(item, k, where)
                for k in (
                    "TargetPrescriptionDose",
                    "TargetMinimumDose",
                    "TargetMaximumDose",
                    "DeliveryMaximumDose",
                )
            }
            structure_type = _upper(_text(item, "DoseReferenceStructureType", where))
            description = _text(item, "DoseReferenceDescription", where)
            reference_type = _upper(_text(item, "DoseReferenceType", where))
            roi_number = _get_int(item, "ReferencedROINumber", where)
        except DicomReadError as e:
            oddities.append(
                Oddity("prescription_unreadable", f"prescription not read: {e}", where, "warning")
            )
            continue
        delivering = [
            fg
            for fg in groups
            if number is not None and number in fg.referenced_dose_reference_numbers
        ]
        if not delivering and len(groups) == 1 and not groups[0].referenced_dose_reference_numbers:
            delivering = list(groups)
        group = delivering[0] if len(delivering) == 1 else None
        out.append(
            Prescription(
                number=number,
                structure_type=structure_type,
                description=description,
                reference_type=reference_type,
                roi_number=roi_number,
                dose_gy=doses["TargetPrescriptionDose"],
                minimum_dose_gy=doses["TargetMinimumDose"],
                maximum_dose_gy=doses["TargetMaximumDose"],
                delivery_maximum_dose_gy=doses["DeliveryMaximumDose"],
                fraction_group=group.number if group is not None else None,
                fractions=group.fractions_planned if group is not None else None,
                dicom_path=where,
            )
        )
    return tuple(out)


def _software(ds: DataSet, where: str) -> str | None:
    value = _get(ds, "SoftwareVersions", where)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, DicomSequence, Dataset)):
        raise DicomReadError(
            f"{_at(where, 'SoftwareVersions')} should be text but holds {_describe(value)}"
        )
    if isinstance(value, Sequence) and not isinstance(value, str):
        text = " / ".join(str(v) for v in value)
    else:
        text = str(value)
    return text.strip() or None


def _first_uid(items: Sequence[DataSet], path: str, keyword: str) -> str | None:
    """ReferencedSOPInstanceUID of the first item of a reference sequence, or None."""
    if not items:
        return None
    return _text(items[0], "ReferencedSOPInstanceUID", f"{path}::{keyword}[0]")


def _fraction_group(fg: DataSet, path: str, limits: Limits) -> FractionGroup:
    refs = []
    for i, r in enumerate(_seq(fg, "ReferencedBeamSequence", path)):
        rpath = f"{path}.ReferencedBeamSequence[{i}]"
        number = _get_int(r, "ReferencedBeamNumber", rpath)
        if number is None:
            raise DicomReadError(
                f"{rpath}.ReferencedBeamNumber is missing: the fraction group cannot say"
                " which beam it delivers"
            )
        refs.append(
            ReferencedBeam(
                beam_number=number,
                meterset_mu=_meterset(r, rpath, limits),
                dicom_path=rpath,
            )
        )
    return FractionGroup(
        number=_get_int(fg, "FractionGroupNumber", path),
        fractions_planned=_count(fg, "NumberOfFractionsPlanned", path),
        referenced_beams=tuple(refs),
        number_of_brachy_setups=_count(fg, "NumberOfBrachyApplicationSetups", path),
        dicom_path=path,
        number_of_beams_declared=_count(fg, "NumberOfBeams", path),
        referenced_dose_reference_numbers=_dose_reference_numbers(fg, path),
    )


def _dose_reference_numbers(fg: DataSet, path: str) -> tuple[int, ...]:
    """ReferencedDoseReferenceNumber of each ReferencedDoseReferenceSequence item."""
    numbers = []
    for i, r in enumerate(_seq(fg, "ReferencedDoseReferenceSequence", path)):
        n = _get_int(
            r, "ReferencedDoseReferenceNumber", f"{path}.ReferencedDoseReferenceSequence[{i}]"
        )
        if n is not None:
            numbers.append(n)
    return tuple(numbers)


def _beam_count_oddities(
    groups: tuple[FractionGroup, ...], beams: tuple[Beam, ...], beam_kw: str
) -> list[Oddity]:
    """A fraction group whose NumberOfBeams disagrees with its ReferencedBeamSequence:
    the references are trusted; when no fraction group references any beam although one
    says it delivers some (Leksell GammaPlan), the beams are taken from the beam
    sequence, as for a plan without fraction groups (classify reads
    ``Plan.fraction_groups_reference_no_beam``)."""
    none_referenced = not any(fg.referenced_beams for fg in groups)
    out = []
    for fg in groups:
        declared, found = fg.number_of_beams_declared, len(fg.referenced_beams)
        if declared is None or declared == found:
            continue
        said = f"{fg.dicom_path}.NumberOfBeams is {declared} but ReferencedBeamSequence has"
        if found:
            how = f" {found} item(s): the {found} beam(s) it references are counted"
        elif none_referenced and beams:
            how = (
                " none, and no fraction group references a beam: the treatment beams are"
                f" taken from {beam_kw}, their MU unknown"
            )
        elif none_referenced:
            how = f" none, and {beam_kw} holds no beam either"
        else:
            how = " none: read as delivering no beam (other fraction groups reference theirs)"
        out.append(
            Oddity("count_mismatch", said + how, f"{fg.dicom_path}.NumberOfBeams", "warning")
        )
    return out


def _meterset(r: DataSet, path: str, limits: Limits) -> float | None:
    where = f"{path}.BeamMeterset"
    mu = _not_negative(_get_float(r, "BeamMeterset", path), where, "a meterset (MU)")
    if mu is not None and mu > limits.max_meterset_mu:
        raise DicomReadError(
            f"{where} is {mu:g} MU, more than the limit of {limits.max_meterset_mu:g} MU"
            " (policy setting limits.max_meterset_mu): no machine delivers that"
        )
    return mu


def _devices(
    b: DataSet, path: str, ion: bool, limits: Limits, oddities: list[Oddity]
) -> list[BeamLimitingDevice]:
    """The beam's limiting devices (jaws, MLCs); a second MLC layer of one type gets
    its own key (``MLCX#2``) and an Oddity."""
    dev_kw = "IonBeamLimitingDeviceSequence" if ion else "BeamLimitingDeviceSequence"
    devices = []
    layers: dict[str, list[int]] = {}  # MLC type -> pairs of each layer declared with it
    for i, d in enumerate(_seq(b, dev_kw, path)):
        dpath = f"{path}.{dev_kw}[{i}]"
        dtype = _text(d, "RTBeamLimitingDeviceType", dpath)
        if dtype is None:
            raise DicomReadError(f"{dpath}.RTBeamLimitingDeviceType is missing")
        pairs = _count(d, "NumberOfLeafJawPairs", dpath, limits.max_leaf_pairs, "max_leaf_pairs")
        if pairs is None:
            pairs = 1  # jaws (PS3.3 C.8.8.14: the attribute is type 1 for MLCs only)
        elif pairs == 0:
            raise DicomReadError(f"{dpath}.NumberOfLeafJawPairs is 0: a device has at least 1")
        bounds = None
        if "LeafPositionBoundaries" in d:
            arr = _floats(
                _get(d, "LeafPositionBoundaries", dpath), f"{dpath}.LeafPositionBoundaries"
            )
            if arr.size != pairs + 1:
                raise DicomReadError(
                    f"{dpath}.LeafPositionBoundaries has {arr.size} values;"
                    f" NumberOfLeafJawPairs {pairs} needs {pairs + 1}"
                )
            _within(
                arr,
                _POSITION_MAX_MM,
                f"{dpath}.LeafPositionBoundaries",
                "collimator",
                "leaf boundaries decide the aperture",
            )
            bounds = tuple(arr.tolist())  # Python floats
        dtype = dtype.upper()
        key = dtype
        if dtype.startswith("MLC"):
            layers.setdefault(dtype, []).append(pairs)
            if len(layers[dtype]) > 1:  # a second layer of one type: its own key
                key = f"{dtype}#{len(layers[dtype])}"
        devices.append(BeamLimitingDevice(key, pairs, bounds))
    for dtype, pairs_of in layers.items():
        if len(pairs_of) > 1:
            counts = " and ".join(str(p) for p in pairs_of)
            oddities.append(
                Oddity(
                    "mlc_layers_share_a_type",
                    f"{path}.{dev_kw} declares {len(pairs_of)} MLC layers all typed {dtype}"
                    f" ({counts} pairs; the later ones are named {dtype}#2 ...): each"
                    " position item is read as the first layer, in order, whose pair count"
                    " fits its number of values; the aperture is what every layer leaves open",
                    f"{path}.{dev_kw}",
                )
            )
    return devices


def _beam_control_points(
    b: DataSet,
    path: str,
    cp_kw: str,
    devices: list[BeamLimitingDevice],
    limits: Limits,
    prepared: extract_bulk.Gathered | None,
    oddities: list[Oddity],
) -> tuple[ControlPoints, int | None, float | None]:
    """(control points, NumberOfControlPoints, FinalCumulativeMetersetWeight) of the
    beam: from the fast path's bulk reader when ``b`` is a view, else (or when it steps
    aside) element by element; checked against the final weight and the count."""
    declared = _count(
        b,
        "NumberOfControlPoints",
        path,
        limits.max_control_points_per_beam,
        "max_control_points_per_beam",
    )
    cp_path = f"{path}.{cp_kw}"
    control_points = None
    if cp_kw in b and not isinstance(b, Dataset):  # the fast path: None when unusual
        cp_tag = _ION_CP_TAG if cp_kw.startswith("Ion") else _CP_TAG
        control_points = extract_bulk.control_points(
            b, cp_tag, cp_path, devices, declared, limits, prepared
        )
        if control_points is not None and not _in_ranges(control_points):
            control_points = None  # the reference path says which value, and where
    if control_points is None:  # the reference path, element by element
        cps = _control_point_items(b, path, cp_kw, limits)
        control_points = _control_points(cps, cp_path, devices, limits, oddities)
    final_weight = _not_negative(
        _get_float(b, "FinalCumulativeMetersetWeight", path),
        f"{path}.FinalCumulativeMetersetWeight",
        "a meterset weight",
    )
    if final_weight is not None:
        _weights_within_final(path, cp_path, control_points, final_weight)
    if declared is not None and declared != control_points.count:
        oddities.append(_count_mismatch(path, cp_kw, declared, control_points, final_weight))
    return control_points, declared, final_weight


def _beam(
    b: DataSet,
    path: str,
    ion: bool,
    limits: Limits,
    prepared: extract_bulk.Gathered | None = None,
    oddities: list[Oddity] | None = None,
) -> Beam:
    oddities = oddities if oddities is not None else []
    number = _get_int(b, "BeamNumber", path)
    if number is None:
        raise DicomReadError(
            f"{path}.BeamNumber is missing: fraction groups refer to beams by number"
        )
    devices = _devices(b, path, ion, limits, oddities)
    wedge_kw = "IonWedgeSequence" if ion else "WedgeSequence"
    wedges = tuple(
        Wedge(
            number=_get_int(w, "WedgeNumber", f"{path}.{wedge_kw}[{i}]"),
            wedge_type=_text(w, "WedgeType", f"{path}.{wedge_kw}[{i}]"),
            wedge_id=_text(w, "WedgeID", f"{path}.{wedge_kw}[{i}]"),
            angle_deg=_get_float(w, "WedgeAngle", f"{path}.{wedge_kw}[{i}]"),
            orientation_deg=_get_float(w, "WedgeOrientation", f"{path}.{wedge_kw}[{i}]"),
            dicom_path=f"{path}.{wedge_kw}[{i}]",
        )
        for i, w in enumerate(_seq(b, wedge_kw, path))
    )
    block_kw = "IonBlockSequence" if ion else "BlockSequence"
    blocks = tuple(
        Block(
            block_type=_text(k, "BlockType", f"{path}.{block_kw}[{i}]"),
            name=_text(k, "BlockName", f"{path}.{block_kw}[{i}]"),
            material=_text(k, "MaterialID", f"{path}.{block_kw}[{i}]"),
            number_of_points=_count(k, "BlockNumberOfPoints", f"{path}.{block_kw}[{i}]"),
            tray_id=_text(k, "BlockTrayID", f"{path}.{block_kw}[{i}]"),
            dicom_path=f"{path}.{block_kw}[{i}]",
        )
        for i, k in enumerate(_seq(b, block_kw, path))
    )
    applicators = tuple(
        Applicator(
            applicator_id=_text(a, "ApplicatorID", f"{path}.ApplicatorSequence[{i}]"),
            applicator_type=_text(a, "ApplicatorType", f"{path}.ApplicatorSequence[{i}]"),
            dicom_path=f"{path}.ApplicatorSequence[{i}]",
        )
        for i, a in enumerate(_seq(b, "ApplicatorSequence", path))
    )
    cp_kw = "IonControlPointSequence" if ion else "ControlPointSequence"
    control_points, declared, final_weight = _beam_control_points(
        b, path, cp_kw, devices, limits, prepared, oddities
    )
    return Beam(
        number=number,
        name=_text(b, "BeamName", path),
        description=_text(b, "BeamDescription", path),
        beam_type=_upper(_text(b, "BeamType", path)),
        radiation_type=_upper(_text(b, "RadiationType", path)),
        delivery_type=_text(b, "TreatmentDeliveryType", path),
        machine=_text(b, "TreatmentMachineName", path),
        manufacturer=_text(b, "Manufacturer", path),
        primary_dosimeter_unit=_text(b, "PrimaryDosimeterUnit", path),
        final_cumulative_meterset_weight=final_weight,
        number_of_control_points_declared=declared,
        devices=tuple(devices),
        wedges=wedges,
        blocks=blocks,
        applicators=applicators,
        number_of_compensators=_count(b, "NumberOfCompensators", path),
        number_of_boli=_count(b, "NumberOfBoli", path),
        control_points=control_points,
        is_ion=ion,
        scan_mode=_upper(_text(b, "ScanMode", path)),
        number_of_range_shifters=_count(b, "NumberOfRangeShifters", path),
        dicom_path=path,
    )


def _control_point_items(b: DataSet, path: str, cp_kw: str, limits: Limits) -> Sequence[DataSet]:
    """The beam's control point items, checked against the limit (NumberOfControlPoints
    is compared with them once they are read: ``_count_mismatch``)."""
    if cp_kw not in b:
        raise DicomReadError(
            f"{path}.{cp_kw} is missing: without control points rtcode cannot tell how the"
            " beam delivers its dose"
        )
    cps = _seq(b, cp_kw, path)
    if not cps:
        raise DicomReadError(
            f"{path}.{cp_kw} is empty: without control points rtcode cannot tell how the"
            " beam delivers its dose"
        )
    if len(cps) > limits.max_control_points_per_beam:
        raise DicomReadError(
            f"{path}.{cp_kw} has {len(cps)} control points, more than the limit of"
            f" {limits.max_control_points_per_beam}"
            " (policy setting limits.max_control_points_per_beam): not read"
        )
    return cps


def _count_mismatch(
    path: str, cp_kw: str, declared: int, cps: ControlPoints, final_weight: float | None
) -> Oddity:
    """A NumberOfControlPoints that disagrees with the control point items: the items are
    read when they are whole, i.e. the last one gives the beam's cumulative meterset
    weight (its FinalCumulativeMetersetWeight, when given). Items that stop short are a
    damaged sequence (an element pydicom read another way ends it early): an error."""
    n = cps.count
    last = float(cps.cumulative_meterset_weight[-1])
    whole = not math.isnan(last) and (
        final_weight is None or math.isclose(last, final_weight, rel_tol=1e-6, abs_tol=1e-9)
    )
    said = f"{path}.NumberOfControlPoints is {declared} but {cp_kw} has {n} item(s)"
    if not whole:
        reached = "no cumulative meterset weight" if math.isnan(last) else f"weight {last:g}"
        final = (
            "" if final_weight is None else f", not FinalCumulativeMetersetWeight {final_weight:g}"
        )
        raise DicomReadError(
            f"{said}, and the last of them gives {reached}{final}: the control points are cut"
            " short or damaged"
        )
    return Oddity(
        "count_mismatch",
        f"{said}, the last at the beam's final meterset weight: the {n} control points are read",
        f"{path}.NumberOfControlPoints",
        "warning",
    )


def _weights_within_final(path: str, cp_path: str, cps: ControlPoints, final_weight: float) -> None:
    """Every control point's CumulativeMetersetWeight at most the beam's
    FinalCumulativeMetersetWeight (PS3.3 C.8.8.14: the final weight is the last control
    point's). Weights that run past it (1 where the final weight is 1e-320, or 0) give
    shares of MU above 1, or infinite ones: the weights decide the share of MU of each
    segment, so the file cannot be coded from them."""
    weights = cps.cumulative_meterset_weight
    with np.errstate(invalid="ignore"):
        past = np.flatnonzero(weights > final_weight)
    for k in past.tolist():
        reached = float(weights[k])
        if not math.isclose(reached, final_weight, rel_tol=_WEIGHT_TOLERANCE, abs_tol=1e-9):
            raise DicomReadError(
                f"{cp_path}[{k}].CumulativeMetersetWeight is {reached:g}, more than"
                f" {path}.FinalCumulativeMetersetWeight {final_weight:g}: the control points"
                " cannot run past the beam's final weight (the weights decide each"
                " segment's share of MU), so the plan is not coded from them"
            )


# As metrics.py compares a final weight with the control points' (relative).
_WEIGHT_TOLERANCE = 1e-6


def _upper(text: str | None) -> str | None:
    return text.upper() if text is not None else None


def _control_points(
    cps: Sequence[DataSet],
    path: str,
    devices: list[BeamLimitingDevice],
    limits: Limits,
    oddities: list[Oddity] | None = None,
) -> ControlPoints:
    """The control points, element by element: each value checked where it is given,
    then carried forward to the points that omit it (``carry_forward``)."""
    oddities = oddities if oddities is not None else []
    n = len(cps)
    weight = np.full(n, np.nan)
    given: dict[str, tuple[list[int], list[Any]]] = {
        k: ([], []) for k in (*_CARRIED, "GantryRotationDirection", "IsocenterPosition")
    }
    positions: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    widths = {d.device_type: 2 * d.number_of_pairs for d in devices}
    layers = _shared_layers(devices)
    for i, cp in enumerate(cps):
        cpath = f"{path}[{i}]"
        weight[i] = _nan(
            _not_negative(
                _get_float(cp, "CumulativeMetersetWeight", cpath),
                f"{cpath}.CumulativeMetersetWeight",
                "a cumulative meterset weight",
            )
        )
        for keyword in _CARRIED:
            value = _get_float(cp, keyword, cpath)
            if value is not None:
                if keyword in _ANGLES:
                    value = _angle(value, f"{cpath}.{keyword}", keyword, oddities)
                _give(given[keyword], i, value)
        rot = _text(cp, "GantryRotationDirection", cpath)
        if rot is not None:
            _give(given["GantryRotationDirection"], i, rot.upper())
        if "IsocenterPosition" in cp:
            _give(given["IsocenterPosition"], i, _isocentre(cp, cpath))
        for dtype, values in _device_positions(cp, cpath, widths, layers, limits):
            index, found = positions.setdefault(dtype, ([], []))
            if found and found[-1].size != values.size:
                raise DicomReadError(f"{cpath}: {dtype} changes its number of leaves")
            _give((index, found), i, values)
    carried = {
        k: carry_forward(index, np.array(values, dtype=float), n)
        for k, (index, values) in given.items()
        if k not in ("GantryRotationDirection", "IsocenterPosition")
    }
    iso_index, iso_values = given["IsocenterPosition"]
    iso = carry_forward(iso_index, np.array(iso_values, dtype=float).reshape(-1, 3), n)
    rot_index, rot_values = given["GantryRotationDirection"]
    directions = np.empty(len(rot_values), dtype=object)
    directions[:] = rot_values
    leaves = {
        k: carry_forward(index, np.array(found), n) for k, (index, found) in positions.items()
    }
    for arr in (weight, iso, *carried.values(), *leaves.values()):
        arr.setflags(write=False)
    return ControlPoints(
        cumulative_meterset_weight=weight,
        gantry_deg=carried["GantryAngle"],
        gantry_direction=tuple(carry_forward(rot_index, directions, n).tolist()),
        collimator_deg=carried["BeamLimitingDeviceAngle"],
        couch_deg=carried["PatientSupportAngle"],
        isocenter_mm=iso,
        nominal_energy=carried["NominalBeamEnergy"],
        positions_mm=leaves,
        dicom_path=path,
    )


# Numbers a control point gives only when they change, in ControlPoints order.
_CARRIED = ("GantryAngle", "BeamLimitingDeviceAngle", "PatientSupportAngle", "NominalBeamEnergy")


def _give(column: tuple[list[int], list[Any]], i: int, value: Any) -> None:
    """Record ``value`` as given at control point ``i`` (given twice there: the last)."""
    index, values = column
    if index and index[-1] == i:
        values[-1] = value
        return
    index.append(i)
    values.append(value)


def _isocentre(cp: DataSet, cpath: str) -> np.ndarray:
    value = _floats(_get(cp, "IsocenterPosition", cpath), f"{cpath}.IsocenterPosition")
    if value.size != 3:
        raise DicomReadError(f"{cpath}.IsocenterPosition needs 3 values, has {value.size}")
    _within(
        value,
        _ISOCENTRE_MAX_MM,
        f"{cpath}.IsocenterPosition",
        "patient coordinate",
        "isocentres decide the treatment areas",
    )
    return value


def _shared_layers(devices: list[BeamLimitingDevice]) -> dict[str, list[tuple[str, int]]]:
    """MLC types declared more than once (ViewRay): (key, values) of each layer, in order."""
    layers: dict[str, list[tuple[str, int]]] = {}
    for d in devices:
        layers.setdefault(d.device_type.partition("#")[0], []).append(
            (d.device_type, 2 * d.number_of_pairs)
        )
    return {t: v for t, v in layers.items() if len(v) > 1 and t.startswith("MLC")}


def _device_positions(
    cp: DataSet,
    cpath: str,
    widths: dict[str, int],
    layers: dict[str, list[tuple[str, int]]],
    limits: Limits,
) -> list[tuple[str, np.ndarray]]:
    """(device key, positions) of each BeamLimitingDevicePositionSequence item of the
    control point, checked against the device's pair count and the limits."""
    max_values = 2 * limits.max_leaf_pairs
    out = []
    used: set[str] = set()  # layers positioned at this control point
    for j, item in enumerate(_seq(cp, "BeamLimitingDevicePositionSequence", cpath)):
        ipath = f"{cpath}.BeamLimitingDevicePositionSequence[{j}]"
        dtype = _text(item, "RTBeamLimitingDeviceType", ipath)
        if dtype is None:
            raise DicomReadError(f"{ipath}.RTBeamLimitingDeviceType is missing")
        raw = _get(item, "LeafJawPositions", ipath)
        if raw is None:
            raise DicomReadError(f"{ipath}.LeafJawPositions is missing")
        values = _floats(raw, f"{ipath}.LeafJawPositions")
        _within(
            values,
            _POSITION_MAX_MM,
            f"{ipath}.LeafJawPositions",
            "collimator",
            "leaf and jaw positions decide the aperture",
        )
        k = dtype.upper()
        if k in layers:  # the first layer of this type, in order, that fits
            k = _layer(layers[k], used, values.size, f"{ipath}.LeafJawPositions", dtype)
            used.add(k)
        expected = widths.get(k)
        if expected is not None and values.size != expected:
            raise DicomReadError(
                f"{ipath}.LeafJawPositions has {values.size} values; the {dtype} device"
                f" declares {expected // 2} pairs, so {expected} are needed"
            )
        if values.size > max_values:
            raise DicomReadError(
                f"{ipath}.LeafJawPositions has {values.size} values, more than the"
                f" {max_values} of {limits.max_leaf_pairs} leaf pairs"
                " (policy setting limits.max_leaf_pairs): not read"
            )
        out.append((k, values))
    return out


def _layer(layers: list[tuple[str, int]], used: set[str], size: int, where: str, dtype: str) -> str:
    """The key of the first layer not yet positioned at this control point whose pair
    count fits ``size`` values; an error when none does."""
    for key, width in layers:
        if key not in used and width == size:
            return key
    pairs = " and ".join(str(width // 2) for _, width in layers)
    raise DicomReadError(
        f"{where} has {size} values; the {len(layers)} {dtype} layers declare {pairs} pairs,"
        " and no layer left at this control point takes that many"
    )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _brachy(ds: DataSet, path: str, oddities: list[Oddity]) -> Brachy:
    setups = []
    seeds: int | None = 0
    why: str | None = None
    for i, setup in enumerate(_seq(ds, "ApplicationSetupSequence", f"{path}:")):
        spath = f"{path}::ApplicationSetupSequence[{i}]"
        channels = []
        for j, c in enumerate(_seq(setup, "ChannelSequence", spath)):
            cpath = f"{spath}.ChannelSequence[{j}]"
            found, unknown = _seeds(c, cpath, oddities)
            channels.append(
                BrachyChannel(
                    number=_get_int(c, "ChannelNumber", cpath),
                    source_movement_type=_text(c, "SourceMovementType", cpath),
                    total_time_s=_not_negative(
                        _get_float(c, "ChannelTotalTime", cpath),
                        f"{cpath}.ChannelTotalTime",
                        "a time",
                    ),
                    applicator_id=_text(c, "SourceApplicatorID", cpath),
                    applicator_type=_text(c, "SourceApplicatorType", cpath),
                    length_mm=_optional(_get_float, c, "ChannelLength", cpath),
                    dwell_positions=found,
                    final_weight=_optional(_get_float, c, "FinalCumulativeTimeWeight", cpath),
                    source_number=_optional(_get_int, c, "ReferencedSourceNumber", cpath),
                )
            )
            if seeds is not None and found is not None:
                seeds += found
            elif why is None:
                seeds, why = None, unknown
        setups.append(
            BrachySetup(
                _text(setup, "ApplicationSetupType", spath),
                tuple(channels),
                spath,
                _optional(_text, setup, "ApplicationSetupName", spath),
            )
        )
    if seeds is not None and not any(s.channels for s in setups):
        seeds, why = None, f"{path}::ApplicationSetupSequence holds no channel"
    sources = _seq(ds, "SourceSequence", f"{path}:")
    isotopes = tuple(
        sorted(
            {
                t
                for i, s in enumerate(sources)
                if (t := _text(s, "SourceIsotopeName", f"{path}::SourceSequence[{i}]"))
            }
        )
    )
    source_facts = _brachy_sources(sources, path)
    doses = _setup_doses(ds, path)
    return Brachy(
        treatment_type=_upper(_text(ds, "BrachyTreatmentType", f"{path}:")),
        technique=_upper(_text(ds, "BrachyTreatmentTechnique", f"{path}:")),
        number_of_source_types=len(sources),
        isotopes=isotopes,
        setups=tuple(setups),
        number_of_seeds=seeds,
        seeds_unknown_why=why,
        sources=tuple(source_facts),
        setup_doses_gy=tuple(doses),
    )


def _brachy_sources(sources: Sequence[DataSet], path: str) -> list[BrachySource]:
    """The SourceSequence items, each value optional (shown in the report only)."""
    source_facts = []
    for i, s in enumerate(sources):
        spath = f"{path}::SourceSequence[{i}]"
        source_facts.append(
            BrachySource(
                number=_optional(_get_int, s, "SourceNumber", spath),
                isotope=_text(s, "SourceIsotopeName", spath),
                air_kerma_rate=_optional(_get_float, s, "ReferenceAirKermaRate", spath),
                reference_date=_optional(_text, s, "SourceStrengthReferenceDate", spath),
                reference_time=_optional(_text, s, "SourceStrengthReferenceTime", spath),
                strength_units=_optional(_text, s, "SourceStrengthUnits", spath),
                strength=_optional(_get_float, s, "SourceStrength", spath),
            )
        )
    return source_facts


def _setup_doses(ds: DataSet, path: str) -> list[float]:
    """BrachyApplicationSetupDose of every fraction group's setup references that
    gives a finite one."""
    doses = []
    for i, fg in enumerate(_seq(ds, "FractionGroupSequence", f"{path}:")):
        fpath = f"{path}::FractionGroupSequence[{i}]"
        try:
            refs = _seq(fg, "ReferencedBrachyApplicationSetupSequence", fpath)
        except DicomReadError:
            continue
        for k, ref in enumerate(refs):
            dose = _optional(
                _get_float, ref, "BrachyApplicationSetupDose", f"{fpath}.ReferencedBrachy[{k}]"
            )
            if dose is not None and math.isfinite(dose):
                doses.append(dose)
    return doses


def _optional(
    read: Callable[[DataSet, str, str], _T], ds: DataSet, keyword: str, path: str
) -> _T | None:
    """A value shown in the report only: one that cannot be read is absent (None), never
    an error that would lose the plan's code (the fast path's ``Unusual`` still hands the
    plan to the reference path)."""
    try:
        return read(ds, keyword, path)
    except DicomReadError:
        return None


def _seeds(c: DataSet, path: str, oddities: list[Oddity]) -> tuple[int | None, str | None]:
    """(sources placed in the channel at ``path``, None) by ``facts.SEED_RULE``, or (None, why
    the file cannot say). The seed count only decides LDR plans, which were coded before
    it was read: a value here that cannot be read makes it unknown, never an error."""
    try:
        cps = _seq(c, "BrachyControlPointSequence", path)
        declared = _count(c, "NumberOfControlPoints", path)
        points = extract_bulk.brachy_points(cps)  # the fast path: None when not plain
        if points is None:
            points = _brachy_points(cps, path)
    except DicomReadError as exc:
        return None, str(exc)
    weights, relative, spatial = points
    if declared is not None and declared != len(cps):
        oddities.append(
            Oddity(
                "count_mismatch",
                f"{path}.NumberOfControlPoints is {declared} but BrachyControlPointSequence"
                f" has {len(cps)} item(s): the {len(cps)} control points are read",
                f"{path}.NumberOfControlPoints",
                "warning",
            )
        )
    if not cps:
        return None, f"{path}.BrachyControlPointSequence is absent or empty"
    if None in weights:
        k = weights.index(None)
        return None, f"{path}.BrachyControlPointSequence[{k}].CumulativeTimeWeight is absent"
    positions = relative if None not in relative else spatial
    if None in positions:
        k = positions.index(None)
        return None, (
            f"{path}.BrachyControlPointSequence[{k}] gives neither ControlPointRelativePosition"
            " nor a ControlPoint3DPosition of 3 values"
        )
    times = [w for w in weights if w is not None]  # all of them (checked above)
    placed = {
        positions[k]
        for k in range(len(cps) - 1)
        if positions[k] == positions[k + 1] and times[k + 1] > times[k]
    }
    if not placed and len(set(weights)) > 1:
        return None, (
            f"{path}.BrachyControlPointSequence: the time weights grow but no two consecutive"
            " control points share a position, so where the sources sit cannot be told"
        )
    return len(placed), None


def _brachy_points(cps: Sequence[DataSet], path: str) -> extract_bulk.BrachyPoints:
    """(CumulativeTimeWeight, ControlPointRelativePosition, ControlPoint3DPosition of 3
    values) of each brachytherapy control point, element by element (None: absent)."""
    weights, relative, spatial = [], [], []
    for k, cp in enumerate(cps):
        kpath = f"{path}.BrachyControlPointSequence[{k}]"
        weights.append(_get_float(cp, "CumulativeTimeWeight", kpath))
        relative.append(_get_float(cp, "ControlPointRelativePosition", kpath))
        value = _get(cp, "ControlPoint3DPosition", kpath)
        point = None if value is None else _floats(value, f"{kpath}.ControlPoint3DPosition")
        spatial.append(tuple(point.tolist()) if point is not None and point.size == 3 else None)
    return weights, relative, spatial


# ---------------------------------------------------------------- structure sets


def extract_structure_set(ds: Dataset, path: str, *, reference: bool = False) -> StructureSet:
    """A StructureSet's facts: through the fast path's view of the data set first, as
    for plans; on anything unusual, and on any error (or with ``reference``), element by
    element."""
    if reference:
        return _structure_set(ds, path)
    return _view_first(_structure_set, ds, path)


def _structure_set(ds: DataSet, path: str) -> StructureSet:
    top = f"{path}:"
    types: dict[int | None, str | None] = {}
    for i, obs in enumerate(_seq(ds, "RTROIObservationsSequence", top)):
        opath = f"{path}::RTROIObservationsSequence[{i}]"
        number = _get_int(obs, "ReferencedROINumber", opath)
        types[number] = _upper(_text(obs, "RTROIInterpretedType", opath))
    contoured: dict[int | None, bool] = {}
    for i, rc in enumerate(_seq(ds, "ROIContourSequence", top)):
        cpath = f"{path}::ROIContourSequence[{i}]"
        number = _get_int(rc, "ReferencedROINumber", cpath)
        # Only whether contours exist: the points themselves are never converted.
        contoured[number] = len(_seq(rc, "ContourSequence", cpath)) > 0
    rois = []
    for i, roi in enumerate(_seq(ds, "StructureSetROISequence", top)):
        rpath = f"{path}::StructureSetROISequence[{i}]"
        number = _get_int(roi, "ROINumber", rpath)
        rois.append(
            Roi(
                number=number,
                name=_text(roi, "ROIName", rpath),
                interpreted_type=types.get(number),
                has_contours=contoured.get(number),
                dicom_path=rpath,
            )
        )
    refs = _seq(ds, "ReferencedFrameOfReferenceSequence", top)
    return StructureSet(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID", top),
        patient_id=_text(ds, "PatientID", top),
        label=_text(ds, "StructureSetLabel", top),
        frame_of_reference_uid=(
            _text(refs[0], "FrameOfReferenceUID", f"{path}::ReferencedFrameOfReferenceSequence[0]")
            if refs
            else None
        ),
        rois=tuple(rois),
        patient_name=_text(ds, "PatientName", top),
    )


# ------------------------------------------------------------------------- dose


def extract_dose(ds: Dataset, path: str, has_pixel_data: bool, *, reference: bool = False) -> Dose:
    """A Dose's facts: through the fast path's view of the data set first, as for
    plans; on anything unusual, and on any error (or with ``reference``), element by
    element."""
    if reference:
        return _dose(ds, path, has_pixel_data)
    return _view_first(_dose, ds, path, has_pixel_data)


def _dose(ds: DataSet, path: str, has_pixel_data: bool) -> Dose:
    top = f"{path}:"
    plan_uids = []
    for i, r in enumerate(_seq(ds, "ReferencedRTPlanSequence", top)):
        uid = _text(r, "ReferencedSOPInstanceUID", f"{path}::ReferencedRTPlanSequence[{i}]")
        if uid is not None:
            plan_uids.append(uid)
    ss_refs = _seq(ds, "ReferencedStructureSetSequence", top)
    spacing = _get(ds, "PixelSpacing", top)
    spacing_mm = None
    if spacing is not None:
        arr = _floats(spacing, f"{path}::PixelSpacing")
        if arr.size == 2:
            spacing_mm = (float(arr[0]), float(arr[1]))
    dvh_rois: list[int] = []
    dvhs = _seq(ds, "DVHSequence", top)
    for i, dvh in enumerate(dvhs):
        dpath = f"{path}::DVHSequence[{i}]"
        for j, ref in enumerate(_seq(dvh, "DVHReferencedROISequence", dpath)):
            number = _get_int(ref, "ReferencedROINumber", f"{dpath}.DVHReferencedROISequence[{j}]")
            if number is not None:
                dvh_rois.append(number)
    return Dose(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID", top),
        patient_id=_text(ds, "PatientID", top),
        summation_type=_upper(_text(ds, "DoseSummationType", top)),
        dose_units=_upper(_text(ds, "DoseUnits", top)),
        referenced_plan_uids=tuple(plan_uids),
        referenced_structure_set_uid=_first_uid(ss_refs, path, "ReferencedStructureSetSequence"),
        grid=DoseGrid(
            rows=_count(ds, "Rows", top),
            columns=_count(ds, "Columns", top),
            frames=_count(ds, "NumberOfFrames", top),
            pixel_spacing_mm=spacing_mm,
            has_pixel_data=has_pixel_data,
        ),
        dvh_roi_numbers=tuple(dvh_rois),
        dvh_count=len(dvhs),
        patient_name=_text(ds, "PatientName", top),
    )
