"""Build facts for tests from a few numbers, without DICOM files.

A 10-pair test MLC (10 mm leaves from -50 to 50 mm) with X and Y jaws. Apertures are
given as (bank A, bank B) leaf positions per pair; helpers make rectangles and shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from rtcode.link import LinkedPlan
from rtcode.model.facts import (
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
    ReferencedBeam,
    Roi,
    StructureSet,
    Wedge,
)

PAIRS = 10
BOUNDARIES = tuple(float(v) for v in np.linspace(-50, 50, PAIRS + 1))
DEVICES = (
    BeamLimitingDevice("ASYMX", 1, None),
    BeamLimitingDevice("ASYMY", 1, None),
    BeamLimitingDevice("MLCX", PAIRS, BOUNDARIES),
)
JAWS = ((-50.0, 50.0), (-50.0, 50.0))


def rect(x1: float = -40, x2: float = 40) -> np.ndarray:
    """A rectangular MLC aperture: every pair open from x1 to x2."""
    return np.concatenate([np.full(PAIRS, float(x1)), np.full(PAIRS, float(x2))])


def shaped(half_widths: Sequence[float] | None = None, centre: float = 0.0) -> np.ndarray:
    """A target-like (rounded) aperture: the opening varies from pair to pair."""
    if half_widths is None:
        half_widths = [10, 20, 30, 35, 40, 40, 35, 30, 20, 10]
    h = np.asarray(half_widths, dtype=float)
    return np.concatenate([centre - h, centre + h])


def control_points(
    leaves: Sequence[np.ndarray] | None,
    weights: Sequence[float],
    gantry: Sequence[float] | float = 0.0,
    couch: float = 0.0,
    iso: Sequence[float] | None = (0.0, 0.0, 0.0),
    jaws: tuple[tuple[float, float], tuple[float, float]] = JAWS,
    direction: str = "NONE",
) -> ControlPoints:
    n = len(weights)
    g = np.full(n, float(gantry)) if np.isscalar(gantry) else np.asarray(gantry, dtype=float)
    positions = {
        "ASYMX": np.tile(np.asarray(jaws[0], dtype=float), (n, 1)),
        "ASYMY": np.tile(np.asarray(jaws[1], dtype=float), (n, 1)),
    }
    if leaves is not None:
        positions["MLCX"] = np.vstack([np.asarray(v, dtype=float) for v in leaves])
    return ControlPoints(
        cumulative_meterset_weight=np.asarray(weights, dtype=float),
        gantry_deg=g,
        gantry_direction=tuple([direction] * n),
        collimator_deg=np.zeros(n),
        couch_deg=np.full(n, float(couch)),
        isocenter_mm=np.tile(np.asarray(iso if iso is not None else [np.nan] * 3, float), (n, 1)),
        nominal_energy=np.full(n, 6.0),
        positions_mm=positions,
        dicom_path="test::BeamSequence[0].ControlPointSequence",
    )


def segments_cps(segments: Sequence[tuple[np.ndarray, float]], **kw) -> ControlPoints:
    """Step-and-shoot: each (aperture, MU fraction) becomes a pair of control points."""
    leaves, weights, total = [], [], 0.0
    for aperture, fraction in segments:
        leaves += [aperture, aperture]
        weights += [total, total + fraction]
        total += fraction
    return control_points(leaves, weights, **kw)


def beam(
    number: int = 1,
    cps: ControlPoints | None = None,
    *,
    mlc: bool = True,
    name: str | None = None,
    radiation: str = "PHOTON",
    delivery: str | None = "TREATMENT",
    beam_type: str = "STATIC",
    wedges: Sequence[Wedge] = (),
    blocks: Sequence[Block] = (),
    applicators: Sequence[Applicator] = (),
    compensators: int | None = 0,
    boli: int | None = 0,
    ion: bool = False,
    scan_mode: str | None = None,
    gantry: float = 0.0,
    couch: float = 0.0,
    iso: Sequence[float] | None = (0.0, 0.0, 0.0),
    machine: str | None = "TrueBeam",
) -> Beam:
    if cps is None:
        leaves = [rect(), rect()] if mlc else None
        cps = control_points(leaves, [0.0, 1.0], gantry=gantry, couch=couch, iso=iso)
    devices = DEVICES if mlc else DEVICES[:2]
    return Beam(
        number=number,
        name=name or f"B{number}",
        description=None,
        beam_type=beam_type,
        radiation_type=radiation,
        delivery_type=delivery,
        machine=machine,
        manufacturer="Varian Medical Systems",
        primary_dosimeter_unit="MU",
        final_cumulative_meterset_weight=float(cps.cumulative_meterset_weight[-1]),
        number_of_control_points_declared=cps.count,
        devices=devices,
        wedges=tuple(wedges),
        blocks=tuple(blocks),
        applicators=tuple(applicators),
        number_of_compensators=compensators,
        number_of_boli=boli,
        control_points=cps,
        is_ion=ion,
        scan_mode=scan_mode,
        dicom_path=f"test::BeamSequence[{number - 1}]",
    )


def arc(
    number: int = 1,
    start: float = 181.0,
    stop: float = 179.0,
    n: int = 37,
    leaves: Sequence[np.ndarray] | None = None,
    weights: Sequence[float] | None = None,
    **kw,
) -> Beam:
    span = (stop - start) % 360
    gantry = (start + np.linspace(0, span, n)) % 360
    if weights is None:
        weights = np.linspace(0, 1, n)
    if leaves is None:
        leaves = [rect()] * n
    cps = control_points(leaves, weights, gantry=gantry, direction="CW", **kw)
    return beam(number, cps, beam_type="DYNAMIC")


def wedge(angle: float = 30, wedge_type: str = "STANDARD") -> Wedge:
    return Wedge(1, wedge_type, f"W{angle:g}", angle, 0.0, "test::BeamSequence[0].WedgeSequence[0]")


def block(block_type: str = "APERTURE") -> Block:
    return Block(
        block_type, "cutout", "CERROBEND", 20, "T1", "test::BeamSequence[0].BlockSequence[0]"
    )


def plan(
    beams: Sequence[Beam],
    *,
    mu: float | Sequence[float | None] = 100.0,
    intent: str | None = "CURATIVE",
    approval: str | None = "APPROVED",
    referenced: Sequence[int] | None = None,
    brachy: Brachy | None = None,
    fraction_groups: bool = True,
    modality: Modality = Modality.RTPLAN,
) -> Plan:
    numbers = [b.number for b in beams] if referenced is None else list(referenced)
    mus = [mu] * len(numbers) if np.isscalar(mu) or mu is None else list(mu)
    refs = tuple(
        ReferencedBeam(n, m, f"test::FractionGroupSequence[0].ReferencedBeamSequence[{i}]")
        for i, (n, m) in enumerate(zip(numbers, mus, strict=True))
    )
    fgs = (
        (FractionGroup(1, 25, refs, 0 if brachy is None else 1, "test::FractionGroupSequence[0]"),)
        if fraction_groups
        else ()
    )
    return Plan(
        path="test/RP.dcm",
        modality=modality,
        sop_instance_uid="1.2.3.4",
        patient_id="TEST-1",
        label="TEST",
        name="Test plan",
        date="20260105",
        intent_raw=intent,
        approval_status=approval,
        planning_system=PlanningSystem("Test", "Builder", "1"),
        frame_of_reference_uid="1.2.3.9",
        referenced_structure_set_uid="1.2.3.5",
        referenced_plans=(),
        fraction_groups=fgs,
        beams=tuple(beams),
        brachy=brachy,
        beam_sequence_keyword="IonBeamSequence"
        if modality is Modality.RTIONPLAN
        else "BeamSequence",
    )


def roi(number: int, name: str, rtype: str | None, contoured: bool | None = True) -> Roi:
    return Roi(number, name, rtype, contoured, f"test/RS.dcm::StructureSetROISequence[{number}]")


def structure_set(*rois: Roi) -> StructureSet:
    if not rois:
        rois = (
            roi(1, "BODY", "EXTERNAL"),
            roi(2, "PTV", "PTV"),
            roi(3, "Rectum", "ORGAN"),
            roi(4, "Bladder", "ORGAN"),
        )
    return StructureSet("test/RS.dcm", "1.2.3.5", "TEST-1", "RS", "1.2.3.9", tuple(rois))


def dose(dvh: bool = True, grid: bool = True) -> Dose:
    return Dose(
        path="test/RD.dcm",
        sop_instance_uid="1.2.3.6",
        patient_id="TEST-1",
        summation_type="PLAN",
        dose_units="GY",
        referenced_plan_uids=("1.2.3.4",),
        referenced_structure_set_uid="1.2.3.5",
        grid=DoseGrid(16, 16, 3 if grid else 1, (5.0, 5.0), grid),
        dvh_roi_numbers=(1, 2, 3, 4) if dvh else (),
        dvh_count=4 if dvh else 0,
    )


def linked(
    p: Plan,
    ss: StructureSet | None = None,
    doses: Sequence[Dose] = (),
    status: str | None = None,
) -> LinkedPlan:
    if status is None:
        status = "linked" if ss is not None else "not_in_export"
    return LinkedPlan(p, ss, status, tuple(doses), (), ())


def brachy(channels: int = 3, sources: int = 1, kind: str = "HDR") -> Brachy:
    chans = tuple(BrachyChannel(i + 1, "STEPWISE", 100.0) for i in range(channels))
    return Brachy(
        kind, "INTRACAVITARY", sources, ("IR192",), (BrachySetup("FLETCHER_SUIT", chans, "x"),)
    )


__all__ = ["replace"]
