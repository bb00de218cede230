"""Step 2, extraction: pydicom datasets in, frozen facts out.

Optional attributes are read with ``ds.get``; "0" and "absent" stay different
(absent becomes ``None`` or NaN, never 0). Control points after the first omit
values that did not change; they are carried forward here, once, so nothing
downstream has to know about it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from .errors import DicomReadError
from .facts import (
    Applicator,
    Beam,
    BeamLimitingDevice,
    Block,
    Brachy,
    BrachyChannel,
    BrachySetup,
    ControlPoints,
    Dose,
    DoseGrid,
    FractionGroup,
    Modality,
    Plan,
    PlanningSystem,
    PlanReference,
    ReferencedBeam,
    Roi,
    StructureSet,
    Wedge,
)


def extract(ds: Dataset, modality: Modality, path: str, has_pixel_data: bool = False):
    """Facts of one dataset: a Plan, StructureSet or Dose. Raises DicomReadError."""
    if modality in (Modality.RTPLAN, Modality.RTIONPLAN):
        return extract_plan(ds, path, modality)
    if modality is Modality.RTSTRUCT:
        return extract_structure_set(ds, path)
    return extract_dose(ds, path, has_pixel_data)


# ----------------------------------------------------------------- value helpers


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _float(value, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DicomReadError(f"{where} is not a number: {str(value)[:40]!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise DicomReadError(f"{where} is not a finite number: {value!r}")
    return number


def _int(value, where: str) -> int | None:
    number = _float(value, where)
    if number is None:
        return None
    if number != int(number):
        raise DicomReadError(f"{where} should be a whole number, found {value!r}")
    return int(number)


def _get_float(ds: Dataset, keyword: str, path: str) -> float | None:
    return _float(ds.get(keyword), f"{path}.{keyword}")


def _get_int(ds: Dataset, keyword: str, path: str) -> int | None:
    return _int(ds.get(keyword), f"{path}.{keyword}")


def _floats(value, where: str) -> np.ndarray:
    if value is None:
        return np.empty(0)
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        arr = np.asarray([float(v) for v in items], dtype=float)
    except (TypeError, ValueError):
        raise DicomReadError(f"{where} holds a value that is not a number") from None
    if not np.isfinite(arr).all():
        raise DicomReadError(f"{where} holds a value that is not a finite number")
    return arr


def _seq(ds: Dataset, keyword: str) -> list[Dataset]:
    value = ds.get(keyword)
    return list(value) if value is not None else []


# ------------------------------------------------------------------------- plans


def extract_plan(ds: Dataset, path: str, modality: Modality) -> Plan:
    ion = modality is Modality.RTIONPLAN or "IonBeamSequence" in ds
    beam_kw = "IonBeamSequence" if ion else "BeamSequence"
    beams = tuple(
        _beam(item, f"{path}::{beam_kw}[{i}]", ion) for i, item in enumerate(_seq(ds, beam_kw))
    )
    fraction_groups = tuple(
        _fraction_group(fg, f"{path}::FractionGroupSequence[{i}]")
        for i, fg in enumerate(_seq(ds, "FractionGroupSequence"))
    )
    ss_refs = _seq(ds, "ReferencedStructureSetSequence")
    ref_plans = tuple(
        PlanReference(str(r.ReferencedSOPInstanceUID), _text(r, "RTPlanRelationship"))
        for r in _seq(ds, "ReferencedRTPlanSequence")
        if r.get("ReferencedSOPInstanceUID")
    )
    brachy = _brachy(ds, path) if "ApplicationSetupSequence" in ds else None
    return Plan(
        path=path,
        modality=Modality.RTIONPLAN if ion else Modality.RTPLAN,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        label=_text(ds, "RTPlanLabel"),
        name=_text(ds, "RTPlanName"),
        date=_text(ds, "RTPlanDate"),
        intent_raw=_text(ds, "PlanIntent"),
        approval_status=_text(ds, "ApprovalStatus"),
        planning_system=PlanningSystem(
            manufacturer=_text(ds, "Manufacturer"),
            model=_text(ds, "ManufacturerModelName"),
            software_versions=_software(ds),
        ),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uid=(
            _text(ss_refs[0], "ReferencedSOPInstanceUID") if ss_refs else None
        ),
        referenced_plans=ref_plans,
        fraction_groups=fraction_groups,
        beams=beams,
        brachy=brachy,
        beam_sequence_keyword=beam_kw,
        review_date=_text(ds, "ReviewDate"),
        patient_name=_text(ds, "PatientName"),
    )


def _software(ds: Dataset) -> str | None:
    value = ds.get("SoftwareVersions")
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        text = " / ".join(str(v) for v in value)
    else:
        text = str(value)
    return text.strip() or None


def _fraction_group(fg: Dataset, path: str) -> FractionGroup:
    refs = tuple(
        ReferencedBeam(
            beam_number=_get_int(r, "ReferencedBeamNumber", f"{path}.ReferencedBeamSequence[{i}]"),
            meterset_mu=_get_float(r, "BeamMeterset", f"{path}.ReferencedBeamSequence[{i}]"),
            dicom_path=f"{path}.ReferencedBeamSequence[{i}]",
        )
        for i, r in enumerate(_seq(fg, "ReferencedBeamSequence"))
    )
    return FractionGroup(
        number=_get_int(fg, "FractionGroupNumber", path),
        fractions_planned=_get_int(fg, "NumberOfFractionsPlanned", path),
        referenced_beams=refs,
        number_of_brachy_setups=_get_int(fg, "NumberOfBrachyApplicationSetups", path),
        dicom_path=path,
    )


def _beam(b: Dataset, path: str, ion: bool) -> Beam:
    dev_kw = "IonBeamLimitingDeviceSequence" if ion else "BeamLimitingDeviceSequence"
    devices = []
    for i, d in enumerate(_seq(b, dev_kw)):
        dpath = f"{path}.{dev_kw}[{i}]"
        dtype = _text(d, "RTBeamLimitingDeviceType")
        if dtype is None:
            raise DicomReadError(f"{dpath}.RTBeamLimitingDeviceType is missing")
        pairs = _get_int(d, "NumberOfLeafJawPairs", dpath) or 1
        bounds = None
        if "LeafPositionBoundaries" in d:
            arr = _floats(d.LeafPositionBoundaries, f"{dpath}.LeafPositionBoundaries")
            if arr.size != pairs + 1:
                raise DicomReadError(
                    f"{dpath}.LeafPositionBoundaries has {arr.size} values;"
                    f" NumberOfLeafJawPairs {pairs} needs {pairs + 1}"
                )
            bounds = tuple(float(v) for v in arr)
        devices.append(BeamLimitingDevice(dtype.upper(), pairs, bounds))

    wedge_kw = "IonWedgeSequence" if ion else "WedgeSequence"
    wedges = tuple(
        Wedge(
            number=_get_int(w, "WedgeNumber", f"{path}.{wedge_kw}[{i}]"),
            wedge_type=_text(w, "WedgeType"),
            wedge_id=_text(w, "WedgeID"),
            angle_deg=_get_float(w, "WedgeAngle", f"{path}.{wedge_kw}[{i}]"),
            orientation_deg=_get_float(w, "WedgeOrientation", f"{path}.{wedge_kw}[{i}]"),
            dicom_path=f"{path}.{wedge_kw}[{i}]",
        )
        for i, w in enumerate(_seq(b, wedge_kw))
    )
    block_kw = "IonBlockSequence" if ion else "BlockSequence"
    blocks = tuple(
        Block(
            block_type=_text(k, "BlockType"),
            name=_text(k, "BlockName"),
            material=_text(k, "MaterialID"),
            number_of_points=_get_int(k, "BlockNumberOfPoints", f"{path}.{block_kw}[{i}]"),
            tray_id=_text(k, "BlockTrayID"),
            dicom_path=f"{path}.{block_kw}[{i}]",
        )
        for i, k in enumerate(_seq(b, block_kw))
    )
    applicators = tuple(
        Applicator(
            applicator_id=_text(a, "ApplicatorID"),
            applicator_type=_text(a, "ApplicatorType"),
            dicom_path=f"{path}.ApplicatorSequence[{i}]",
        )
        for i, a in enumerate(_seq(b, "ApplicatorSequence"))
    )
    cp_kw = "IonControlPointSequence" if ion else "ControlPointSequence"
    return Beam(
        number=_get_int(b, "BeamNumber", path),
        name=_text(b, "BeamName"),
        description=_text(b, "BeamDescription"),
        beam_type=_upper(_text(b, "BeamType")),
        radiation_type=_upper(_text(b, "RadiationType")),
        delivery_type=_text(b, "TreatmentDeliveryType"),
        machine=_text(b, "TreatmentMachineName"),
        manufacturer=_text(b, "Manufacturer"),
        primary_dosimeter_unit=_text(b, "PrimaryDosimeterUnit"),
        final_cumulative_meterset_weight=_get_float(b, "FinalCumulativeMetersetWeight", path),
        number_of_control_points_declared=_get_int(b, "NumberOfControlPoints", path),
        devices=tuple(devices),
        wedges=wedges,
        blocks=blocks,
        applicators=applicators,
        number_of_compensators=_get_int(b, "NumberOfCompensators", path),
        number_of_boli=_get_int(b, "NumberOfBoli", path),
        control_points=_control_points(_seq(b, cp_kw), f"{path}.{cp_kw}", devices),
        is_ion=ion,
        scan_mode=_upper(_text(b, "ScanMode")),
        number_of_range_shifters=_get_int(b, "NumberOfRangeShifters", path),
        dicom_path=path,
    )


def _upper(text: str | None) -> str | None:
    return text.upper() if text is not None else None


def _control_points(
    cps: list[Dataset], path: str, devices: list[BeamLimitingDevice]
) -> ControlPoints:
    n = len(cps)
    weight = np.full(n, np.nan)
    gantry = np.full(n, np.nan)
    collimator = np.full(n, np.nan)
    couch = np.full(n, np.nan)
    energy = np.full(n, np.nan)
    iso = np.full((n, 3), np.nan)
    direction: list[str | None] = []
    widths = {d.device_type: 2 * d.number_of_pairs for d in devices}
    positions: dict[str, np.ndarray] = {}
    state: dict[str, object] = {}
    for i, cp in enumerate(cps):
        cpath = f"{path}[{i}]"
        weight[i] = _nan(_get_float(cp, "CumulativeMetersetWeight", cpath))
        for key, arr in (
            ("GantryAngle", gantry),
            ("BeamLimitingDeviceAngle", collimator),
            ("PatientSupportAngle", couch),
            ("NominalBeamEnergy", energy),
        ):
            value = _get_float(cp, key, cpath)
            if value is not None:
                state[key] = value
            arr[i] = _nan(state.get(key))  # carried forward from the previous point
        rot = _text(cp, "GantryRotationDirection")
        if rot is not None:
            state["GantryRotationDirection"] = rot.upper()
        direction.append(state.get("GantryRotationDirection"))  # type: ignore[arg-type]
        if "IsocenterPosition" in cp:
            value = _floats(cp.IsocenterPosition, f"{cpath}.IsocenterPosition")
            if value.size != 3:
                raise DicomReadError(f"{cpath}.IsocenterPosition needs 3 values, has {value.size}")
            state["IsocenterPosition"] = value
        if "IsocenterPosition" in state:
            iso[i] = state["IsocenterPosition"]
        for j, item in enumerate(_seq(cp, "BeamLimitingDevicePositionSequence")):
            ipath = f"{cpath}.BeamLimitingDevicePositionSequence[{j}]"
            dtype = _text(item, "RTBeamLimitingDeviceType")
            if dtype is None:
                raise DicomReadError(f"{ipath}.RTBeamLimitingDeviceType is missing")
            values = _floats(item.get("LeafJawPositions"), f"{ipath}.LeafJawPositions")
            expected = widths.get(dtype.upper())
            if expected is not None and values.size != expected:
                raise DicomReadError(
                    f"{ipath}.LeafJawPositions has {values.size} values; the {dtype} device"
                    f" declares {expected // 2} pairs, so {expected} are needed"
                )
            state["pos:" + dtype.upper()] = values
        for key, value in state.items():
            if not key.startswith("pos:"):
                continue
            dtype = key[4:]
            arr = positions.get(dtype)
            if arr is None:
                arr = positions[dtype] = np.full((n, value.size), np.nan)  # type: ignore[union-attr]
            if arr.shape[1] != value.size:  # type: ignore[union-attr]
                raise DicomReadError(f"{cpath}: {dtype} changes its number of leaves")
            arr[i] = value
    for arr in (weight, gantry, collimator, couch, energy, iso, *positions.values()):
        arr.setflags(write=False)
    return ControlPoints(
        cumulative_meterset_weight=weight,
        gantry_deg=gantry,
        gantry_direction=tuple(direction),
        collimator_deg=collimator,
        couch_deg=couch,
        isocenter_mm=iso,
        nominal_energy=energy,
        positions_mm=positions,
        dicom_path=path,
    )


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _brachy(ds: Dataset, path: str) -> Brachy:
    setups = []
    for i, setup in enumerate(_seq(ds, "ApplicationSetupSequence")):
        spath = f"{path}::ApplicationSetupSequence[{i}]"
        channels = tuple(
            BrachyChannel(
                number=_get_int(c, "ChannelNumber", f"{spath}.ChannelSequence[{j}]"),
                source_movement_type=_text(c, "SourceMovementType"),
                total_time_s=_get_float(c, "ChannelTotalTime", f"{spath}.ChannelSequence[{j}]"),
            )
            for j, c in enumerate(_seq(setup, "ChannelSequence"))
        )
        setups.append(BrachySetup(_text(setup, "ApplicationSetupType"), channels, spath))
    sources = _seq(ds, "SourceSequence")
    isotopes = tuple(sorted({t for s in sources if (t := _text(s, "SourceIsotopeName"))}))
    return Brachy(
        treatment_type=_upper(_text(ds, "BrachyTreatmentType")),
        technique=_upper(_text(ds, "BrachyTreatmentTechnique")),
        number_of_sources=len(sources),
        isotopes=isotopes,
        setups=tuple(setups),
    )


# ---------------------------------------------------------------- structure sets


def extract_structure_set(ds: Dataset, path: str) -> StructureSet:
    types: dict[int | None, str | None] = {}
    for i, obs in enumerate(_seq(ds, "RTROIObservationsSequence")):
        number = _get_int(obs, "ReferencedROINumber", f"{path}::RTROIObservationsSequence[{i}]")
        types[number] = _upper(_text(obs, "RTROIInterpretedType"))
    contoured: dict[int | None, bool] = {}
    for i, rc in enumerate(_seq(ds, "ROIContourSequence")):
        number = _get_int(rc, "ReferencedROINumber", f"{path}::ROIContourSequence[{i}]")
        # Only whether contours exist: the points themselves are never converted.
        contoured[number] = len(_seq(rc, "ContourSequence")) > 0
    rois = []
    for i, roi in enumerate(_seq(ds, "StructureSetROISequence")):
        rpath = f"{path}::StructureSetROISequence[{i}]"
        number = _get_int(roi, "ROINumber", rpath)
        rois.append(
            Roi(
                number=number,
                name=_text(roi, "ROIName"),
                interpreted_type=types.get(number),
                has_contours=contoured.get(number),
                dicom_path=rpath,
            )
        )
    refs = _seq(ds, "ReferencedFrameOfReferenceSequence")
    return StructureSet(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        label=_text(ds, "StructureSetLabel"),
        frame_of_reference_uid=_text(refs[0], "FrameOfReferenceUID") if refs else None,
        rois=tuple(rois),
        patient_name=_text(ds, "PatientName"),
    )


# ------------------------------------------------------------------------- dose


def extract_dose(ds: Dataset, path: str, has_pixel_data: bool) -> Dose:
    plan_uids = tuple(
        str(r.ReferencedSOPInstanceUID)
        for r in _seq(ds, "ReferencedRTPlanSequence")
        if r.get("ReferencedSOPInstanceUID")
    )
    ss_refs = _seq(ds, "ReferencedStructureSetSequence")
    spacing = ds.get("PixelSpacing")
    spacing_mm = None
    if spacing is not None:
        arr = _floats(spacing, f"{path}::PixelSpacing")
        if arr.size == 2:
            spacing_mm = (float(arr[0]), float(arr[1]))
    dvh_rois: list[int] = []
    dvhs = _seq(ds, "DVHSequence")
    for i, dvh in enumerate(dvhs):
        for j, ref in enumerate(_seq(dvh, "DVHReferencedROISequence")):
            number = _get_int(
                ref,
                "ReferencedROINumber",
                f"{path}::DVHSequence[{i}].DVHReferencedROISequence[{j}]",
            )
            if number is not None:
                dvh_rois.append(number)
    return Dose(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        summation_type=_upper(_text(ds, "DoseSummationType")),
        dose_units=_upper(_text(ds, "DoseUnits")),
        referenced_plan_uids=plan_uids,
        referenced_structure_set_uid=_text(ss_refs[0], "ReferencedSOPInstanceUID")
        if ss_refs
        else None,
        grid=DoseGrid(
            rows=_get_int(ds, "Rows", path),
            columns=_get_int(ds, "Columns", path),
            frames=_get_int(ds, "NumberOfFrames", path),
            pixel_spacing_mm=spacing_mm,
            has_pixel_data=has_pixel_data,
        ),
        dvh_roi_numbers=tuple(dvh_rois),
        dvh_count=len(dvhs),
        patient_name=_text(ds, "PatientName"),
    )
