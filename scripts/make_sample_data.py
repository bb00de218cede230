#!/usr/bin/env python3
"""Write small synthetic DICOM-RT sample patients for rtcode.

Usage::

    python scripts/make_sample_data.py [OUT_DIR]

OUT_DIR defaults to the repository's ``sample_data/`` folder. One folder is
written per case (``01_single_open_field`` ... ``27_fif_borderline_outside_segment``;
cases 20-27 reproduce what real department exports do) plus
``README.md`` with a table of the expected planning codes, and the charges files
for ``rtcode audit`` (``charges_clean.csv``, ``charges_planted.csv``,
``ptp_synthetic.txt``). Only those folders and files are deleted and rewritten;
anything else in OUT_DIR is left alone.

Every value is invented: no real patient, no bytes or UIDs from real exports.
The output is deterministic (fixed dates, UIDs derived from the case and role
with ``pydicom.uid.generate_uid(entropy_srcs=...)``, seeded numpy), so running
the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    RTDoseStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    generate_uid,
)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
DATE = "20260105"
REVIEW_DATE = "20260106"
STUDY_REFERENCE_CLASS = (
    "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, as real exports use)
)
IMPLEMENTATION_VERSION = "RTCODE_SAMPLE_1"

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "sample_data"

VARIAN = ("Varian Medical Systems", "ARIA RadOnc", "16.1")
VARIAN_OLD = ("Varian Medical Systems", "ARIA RadOnc", "13.6")
VARIAN_15 = ("Varian Medical Systems", "ARIA RadOnc", "15.6")
ELEKTA = ("Elekta", "Monaco", "6.1")
PHILIPS = ("Philips", "Pinnacle3", "16.2")
BRAINLAB_IPLAN = ("BrainLAB", "iPlan", "4.5")
BRAINLAB_ELEMENTS = ("BrainLAB", "Elements", "4.0")
RAYSEARCH = ("RaySearch Laboratories", "RayStation", "12.0")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def uid(*parts: object) -> str:
    """Deterministic UID from the case name and the role of the object."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


IMPLEMENTATION_UID = uid("rtcode", "sample-data", "implementation")


def num(value: float, digits: int = 3) -> str:
    """Format a number as a short DS string ("1000", "0.8", "-42.5")."""
    v = round(float(value), digits)
    if v == 0:
        v = 0.0
    text = repr(v)
    if text.endswith(".0"):
        text = text[:-2]
    if len(text) > 16:  # DS is at most 16 characters
        text = f"{v:.10g}"
    return text


def nums(values: Iterable[float], digits: int = 3) -> list[str]:
    return [num(v, digits) for v in values]


def seq(items: Iterable[Dataset]) -> Sequence:
    return Sequence(list(items))


def item(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def ref(sop_class: str, sop_uid: str) -> Dataset:
    return item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_uid)


def write_part10(ds: Dataset, path: Path) -> Path:
    """Write a Part-10 file: preamble, DICM, file meta, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_raw_implicit(ds: Dataset, path: Path) -> Path:
    """Write only the data set: no preamble, no DICM, no file meta, implicit VR LE."""
    if hasattr(ds, "file_meta"):
        del ds.file_meta
    ds.preamble = None
    dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


# --------------------------------------------------------------------------
# patient, geometry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    number: int
    name: str
    kind: str  # RTROIInterpretedType; "" = present but empty
    cx: float
    cy: float
    rx: float
    ry: float
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Patient:
    case: str
    patient_id: str
    name: str
    body: tuple[float, float, float, float] = (0.0, 0.0, 150.0, 100.0)  # cx, cy, rx, ry in mm

    @property
    def study_uid(self) -> str:
        return uid(self.case, "study")

    @property
    def for_uid(self) -> str:
        return uid(self.case, "frame-of-reference")

    @property
    def ct_series_uid(self) -> str:
        return uid(self.case, "ct-series")

    def ct_uid(self, index: int) -> str:
        return uid(self.case, "ct", index)

    @property
    def rs_uid(self) -> str:
        return uid(self.case, "rtstruct")

    @property
    def plan_uid(self) -> str:
        return uid(self.case, "rtplan")

    @property
    def dose_uid(self) -> str:
        return uid(self.case, "rtdose")


def patient_for(case: str) -> Patient:
    number = case[:2]
    return Patient(case=case, patient_id=f"RTC-{number}", name=f"Sample^Case{number}")


SLICE_Z = (-5.0, 0.0, 5.0)
SLICE_SCALE = (0.92, 1.0, 0.95)  # contours shrink a little off the central slice


def base_dataset(
    p: Patient,
    sop_class: str,
    sop_uid: str,
    modality: str,
    series_uid: str,
    series_number: int,
    series_description: str,
    vendor: tuple[str, str, str],
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = DATE
    ds.InstanceCreationTime = "120000"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = DATE
    ds.StudyTime = "090000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = vendor[0]
    ds.ReferringPhysicianName = ""
    ds.StationName = "SAMPLE"
    ds.StudyDescription = "Synthetic rtcode sample"
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = vendor[1]
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.SoftwareVersions = vendor[2]
    ds.StudyInstanceUID = p.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = p.patient_id
    ds.SeriesNumber = series_number
    ds.FrameOfReferenceUID = p.for_uid
    ds.PositionReferenceIndicator = ""
    return ds


def ellipse_points(roi: Roi, scale: float, z: float, n: int = 24) -> list[str]:
    out: list[float] = []
    for k in range(n):
        t = 2.0 * math.pi * k / n
        out += [roi.cx + scale * roi.rx * math.cos(t), roi.cy + scale * roi.ry * math.sin(t), z]
    return nums(out, 1)


# --------------------------------------------------------------------------
# CT, structure set, dose
# --------------------------------------------------------------------------


def make_ct(p: Patient, out: Path, vendor: tuple[str, str, str]) -> list[Path]:
    paths = []
    rows = cols = 32
    spacing = 10.0
    origin = -155.0
    xs = origin + spacing * np.arange(cols)
    ys = origin + spacing * np.arange(rows)
    gx, gy = np.meshgrid(xs, ys)
    bcx, bcy, brx, bry = p.body
    for index, z in enumerate(SLICE_Z, start=1):
        s = SLICE_SCALE[index - 1]
        inside = ((gx - bcx) / (brx * s)) ** 2 + ((gy - bcy) / (bry * s)) ** 2 <= 1.0
        hu = np.where(inside, 20, -1000).astype(np.int32)
        stored = (hu + 1024).astype(np.int16)
        ds = base_dataset(
            p, CTImageStorage, p.ct_uid(index), "CT", p.ct_series_uid, 1, "Planning CT", vendor
        )
        ds.Manufacturer = "Synthetic CT"
        ds.ManufacturerModelName = "Sim32"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.SliceThickness = "5"
        ds.PatientPosition = "HFS"
        ds.InstanceNumber = index
        ds.ImagePositionPatient = nums([origin, origin, z])
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = num(z)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.PixelSpacing = nums([spacing, spacing])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.add_new(0x7FE00010, "OW", stored.astype("<i2").tobytes())
        paths.append(write_part10(ds, out / f"CT.{index}.dcm"))
    return paths


def make_rs(p: Patient, rois: Seq[Roi], out: Path, vendor: tuple[str, str, str]) -> Path:
    ds = base_dataset(
        p,
        RTStructureSetStorage,
        p.rs_uid,
        "RTSTRUCT",
        uid(p.case, "rs-series"),
        2,
        "Structures",
        vendor,
    )
    ds.StructureSetLabel = "CT_1"
    ds.StructureSetName = "CT_1"
    ds.StructureSetDate = DATE
    ds.StructureSetTime = "100000"
    contour_images = [ref(CTImageStorage, p.ct_uid(i)) for i in range(1, len(SLICE_Z) + 1)]
    ds.ReferencedFrameOfReferenceSequence = seq(
        [
            item(
                FrameOfReferenceUID=p.for_uid,
                RTReferencedStudySequence=seq(
                    [
                        item(
                            ReferencedSOPClassUID=STUDY_REFERENCE_CLASS,
                            ReferencedSOPInstanceUID=p.study_uid,
                            RTReferencedSeriesSequence=seq(
                                [
                                    item(
                                        SeriesInstanceUID=p.ct_series_uid,
                                        ContourImageSequence=seq(contour_images),
                                    )
                                ]
                            ),
                        )
                    ]
                ),
            )
        ]
    )
    ds.StructureSetROISequence = seq(
        item(
            ROINumber=r.number,
            ReferencedFrameOfReferenceUID=p.for_uid,
            ROIName=r.name,
            ROIGenerationAlgorithm="MANUAL",
        )
        for r in rois
    )
    contours = []
    for r in rois:
        slices = []
        for index, z in enumerate(SLICE_Z, start=1):
            points = ellipse_points(r, SLICE_SCALE[index - 1], z)
            slices.append(
                item(
                    ContourImageSequence=seq([ref(CTImageStorage, p.ct_uid(index))]),
                    ContourGeometricType="CLOSED_PLANAR",
                    NumberOfContourPoints=len(points) // 3,
                    ContourNumber=index,
                    ContourData=points,
                )
            )
        contours.append(
            item(
                ROIDisplayColor=[str(c) for c in r.color],
                ContourSequence=seq(slices),
                ReferencedROINumber=r.number,
            )
        )
    ds.ROIContourSequence = seq(contours)
    ds.RTROIObservationsSequence = seq(
        item(
            ObservationNumber=r.number,
            ReferencedROINumber=r.number,
            ROIObservationLabel=r.name,
            RTROIInterpretedType=r.kind,
            ROIInterpreter="",
        )
        for r in rois
    )
    ds.ApprovalStatus = "UNAPPROVED"
    return write_part10(ds, out / "RS.dcm")


def dose_at(x: np.ndarray, y: np.ndarray, z: float, target: Roi | None, rx: float) -> np.ndarray:
    """Analytic dose (Gy): a plateau of about Rx over the target plus a broad low-dose bath.

    The dose grid samples this function; the stored DVHs are histograms of that
    grid over the contours (``dvh_item``), as a planning system's own DVHs are.
    """
    cx, cy, ax, ay = (
        (target.cx, target.cy, target.rx, target.ry) if target else (0.0, 0.0, 40.0, 40.0)
    )
    rn = np.sqrt(((x - cx) / (ax + 6.0)) ** 2 + ((y - cy) / (ay + 6.0)) ** 2 + (z / 60.0) ** 2)
    plateau = 0.72 / (1.0 + np.exp((rn - 1.0) / 0.05))
    bath = 0.3 / (1.0 + np.exp((rn - 1.8) / 0.35))
    return rx * (plateau + bath)


# The dose grid: 2.5 mm voxels over the patient's outline (so every contour lies
# inside it) plus a margin, one frame per CT slice. Fine enough for the smallest organ
# at risk of the samples (the chiasm, 16 x 8 mm), small enough to keep in git.
DOSE_SPACING = 2.5
DOSE_MARGIN = 2.5  # mm beyond the outline
DOSE_SCALING = 1e-4  # Gy per stored unit (DoseGridScaling)
DVH_BIN_GY = 0.01  # DVH dose bin width, as planning systems export them (1 cGy)


def inside_polygon(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points (px, py) lie inside the closed polygon poly (n, 2)."""
    inside = np.zeros(px.shape, dtype=bool)
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    for ax, ay, bx, by in zip(x1, y1, x2, y2, strict=True):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < xc)
    return inside


def dvh_item(r: Roi, frames: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> Dataset:
    """The planning system's cumulative DVH of one ROI: the stored dose grid ``frames``
    (Gy, one frame per contour plane) histogrammed over the grid points inside the
    ROI's contours (as written to the structure set), each point standing for a voxel
    of one grid spacing squared by the contour plane spacing, in 1 cGy bins."""
    gx, gy = np.meshgrid(xs, ys)
    thickness = SLICE_Z[1] - SLICE_Z[0]
    voxel_cc = float(xs[1] - xs[0]) * float(ys[1] - ys[0]) * thickness / 1000.0
    doses = []
    for frame, z, scale in zip(frames, SLICE_Z, SLICE_SCALE, strict=True):
        poly = np.asarray([float(v) for v in ellipse_points(r, scale, z)]).reshape(-1, 3)[:, :2]
        doses.append(frame[inside_polygon(gx, gy, poly)])
    dose = np.concatenate(doses)
    counts = np.bincount(np.floor(dose / DVH_BIN_GY + 1e-9).astype(int))
    volume = dose.size * voxel_cc
    cumulative = volume - np.concatenate([[0.0], np.cumsum(counts)[:-1]]) * voxel_cc
    data: list[str] = []
    for v in cumulative:
        data += ["1", num(max(float(v), 0.0), 3)]
    return item(
        DVHReferencedROISequence=seq(
            [item(ReferencedROINumber=r.number, DVHROIContributionType="INCLUDED")]
        ),
        DVHType="CUMULATIVE",
        DoseUnits="GY",
        DoseType="PHYSICAL",
        DVHDoseScaling=num(DVH_BIN_GY, 4),
        DVHVolumeUnits="CM3",
        DVHNumberOfBins=len(cumulative),
        DVHData=data,
        DVHMinimumDose=num(float(dose.min()), 3),
        DVHMaximumDose=num(float(dose.max()), 3),
        DVHMeanDose=num(float(dose.mean()), 3),
    )


def make_rd(
    p: Patient,
    out: Path,
    vendor: tuple[str, str, str],
    rx: float,
    target: Roi | None,
    plan_class: str = RTPlanStorage,
    dvh_rois: Seq[Roi] | None = None,
) -> Path:
    ds = base_dataset(
        p, RTDoseStorage, p.dose_uid, "RTDOSE", uid(p.case, "rd-series"), 4, "Doses", vendor
    )
    spacing = DOSE_SPACING
    bcx, bcy, brx, bry = p.body
    half_x = math.ceil((brx + DOSE_MARGIN) / spacing)  # grid points either side of the centre
    half_y = math.ceil((bry + DOSE_MARGIN) / spacing)
    cols, rows = 2 * half_x + 1, 2 * half_y + 1
    x0, y0 = bcx - half_x * spacing, bcy - half_y * spacing
    xs = x0 + spacing * np.arange(cols)
    ys = y0 + spacing * np.arange(rows)
    gx, gy = np.meshgrid(xs, ys)
    frames = [dose_at(gx, gy, z, target, rx) for z in SLICE_Z]
    grid = np.stack(frames)
    pixels = np.round(grid / DOSE_SCALING).astype("<u4")
    ds.SliceThickness = ""
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = nums([x0, y0, SLICE_Z[0]])
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(SLICE_Z)
    ds.FrameIncrementPointer = 0x3004000C
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = nums([spacing, spacing])
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.GridFrameOffsetVector = nums([z - SLICE_Z[0] for z in SLICE_Z])
    ds.DoseGridScaling = num(DOSE_SCALING, 6)
    ds.TissueHeterogeneityCorrection = "IMAGE"
    if dvh_rois:
        stored = pixels.astype(np.float64) * DOSE_SCALING  # the dose as written
        ds.DVHSequence = seq(dvh_item(r, stored, xs, ys) for r in dvh_rois)
        ds.ReferencedStructureSetSequence = seq([ref(RTStructureSetStorage, p.rs_uid)])
    ds.ReferencedRTPlanSequence = seq([ref(plan_class, p.plan_uid)])
    ds.add_new(0x7FE00010, "OW", pixels.tobytes())
    return write_part10(ds, out / "RD.dcm")


# --------------------------------------------------------------------------
# beam-limiting devices and MLC shapes
# --------------------------------------------------------------------------

MILLENNIUM_BOUNDS = (
    [-200.0 + 10 * i for i in range(10)]
    + [-100.0 + 5 * i for i in range(41)]
    + [110.0 + 10 * i for i in range(10)]
)
AGILITY_BOUNDS = [-200.0 + 5 * i for i in range(81)]


def device_type(key: str) -> str:
    """The RTBeamLimitingDeviceType of a device key: "MLCX#34" is an MLCX layer that a
    plan shares with another MLCX layer (ViewRay), told apart here by its pair count."""
    return key.split("#")[0]


def device_sequence(
    devices: Seq[str],
    bounds: Seq[float] | None,
    layers: dict[str, Seq[float]] | None = None,
) -> Sequence:
    """BeamLimitingDeviceSequence; ``layers`` gives each MLC layer its own boundaries
    (two-layer MLCs), ``bounds`` those of a single MLC."""
    out = []
    for key in devices:
        name = device_type(key)
        d = item(RTBeamLimitingDeviceType=name)
        if name.startswith("MLC"):
            mlc_bounds = layers[key] if layers and key in layers else bounds
            assert mlc_bounds is not None
            d.NumberOfLeafJawPairs = len(mlc_bounds) - 1
            d.LeafPositionBoundaries = nums(mlc_bounds)
        else:
            d.NumberOfLeafJawPairs = 1
        out.append(d)
    return seq(out)


Outline = Callable[[float], "tuple[float, float] | None"]


def leaves_from_outline(bounds: Seq[float], outline: Outline, park: float) -> list[float]:
    """Leaf positions (bank A then bank B) covering an outline given as y -> (x1, x2) or None.

    Each pair opens to the union of the outline over its width (sampled at its
    edges and centre); pairs the outline misses close together at ``park``.
    """
    bank_a, bank_b = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        spans = [
            s for s in (outline(y) for y in (lo + 0.01, (lo + hi) / 2, hi - 0.01)) if s is not None
        ]
        if spans:
            bank_a.append(round(min(s[0] for s in spans), 1))
            bank_b.append(round(max(s[1] for s in spans), 1))
        else:
            bank_a.append(park)
            bank_b.append(park)
    return bank_a + bank_b


def conformal_limits(
    bounds: Seq[float], outline: Outline, half_y: float, margin: float = 2.0
) -> dict[str, list[float]]:
    """Jaws fitted around an outline plus MLCX following it; closed pairs parked 5 mm behind X1."""
    open_leaves = leaves_from_outline(bounds, outline, math.nan)
    n = len(bounds) - 1
    x1 = math.floor(min(v for v in open_leaves[:n] if not math.isnan(v))) - margin
    x2 = math.ceil(max(v for v in open_leaves[n:] if not math.isnan(v))) + margin
    leaves = leaves_from_outline(bounds, outline, x1 - 5.0)
    return {"ASYMX": [x1, x2], "ASYMY": [-half_y - margin, half_y + margin], "MLCX": leaves}


def ellipse_outline(half_x: float, half_y: float, cx: float = 0.0) -> Outline:
    def f(y: float) -> tuple[float, float] | None:
        if abs(y) >= half_y:
            return None
        w = half_x * math.sqrt(1.0 - (y / half_y) ** 2)
        return (cx - w, cx + w)

    return f


def bev_half_width(rx: float, ry: float, gantry: float) -> float:
    """Half-width, across the leaf direction, of an axial ellipse seen from the gantry angle."""
    t = math.radians(gantry)
    return math.sqrt((rx * math.cos(t)) ** 2 + (ry * math.sin(t)) ** 2)


# --------------------------------------------------------------------------
# control points
# --------------------------------------------------------------------------


@dataclass
class CP:
    """Full machine state at one control point (photon/electron beams)."""

    gantry: float
    weight: float
    limits: dict[str, list[float]]  # device type -> positions
    gantry_dir: str = "NONE"
    coll: float = 0.0
    couch: float = 0.0
    iso: tuple[float, float, float] = (0.0, 0.0, 0.0)
    energy: float = 6.0
    dose_rate: float = 600.0
    ssd: float | None = None
    wedges_in: tuple[int, ...] = ()


def control_points(states: Seq[CP], *, arc: bool = False, force_mlc: bool = False) -> Sequence:
    """Build a ControlPointSequence; later points omit values that did not change.

    ``arc``: GantryAngle and GantryRotationDirection on every point (as real arc
    exports do). ``force_mlc``: the MLCX positions on every point (VMAT).
    """
    out = []
    prev: CP | None = None
    for index, st in enumerate(states):
        cp = Dataset()
        cp.ControlPointIndex = index
        if prev is None or st.energy != prev.energy:
            cp.NominalBeamEnergy = num(st.energy)
        if prev is None or st.dose_rate != prev.dose_rate:
            cp.DoseRateSet = num(st.dose_rate)
        if prev is None and st.wedges_in:
            cp.WedgePositionSequence = seq(
                item(WedgePosition="IN", ReferencedWedgeNumber=w) for w in st.wedges_in
            )
        positions = []
        for name, values in st.limits.items():
            changed = prev is None or prev.limits.get(name) != values
            if changed or (force_mlc and name.startswith("MLC")):
                positions.append(
                    item(
                        RTBeamLimitingDeviceType=device_type(name),
                        LeafJawPositions=nums(values, 1),
                    )
                )
        if positions:
            cp.BeamLimitingDevicePositionSequence = seq(positions)
        if prev is None or arc or st.gantry != prev.gantry:
            cp.GantryAngle = num(st.gantry % 360.0, 2)
        if prev is None or arc or st.gantry_dir != prev.gantry_dir:
            cp.GantryRotationDirection = st.gantry_dir
        if prev is None or st.coll != prev.coll:
            cp.BeamLimitingDeviceAngle = num(st.coll)
        if prev is None:
            cp.BeamLimitingDeviceRotationDirection = "NONE"
        if prev is None or st.couch != prev.couch:
            cp.PatientSupportAngle = num(st.couch)
        if prev is None:
            cp.PatientSupportRotationDirection = "NONE"
            cp.TableTopEccentricAngle = "0"
            cp.TableTopEccentricRotationDirection = "NONE"
        if prev is None or st.iso != prev.iso:
            cp.IsocenterPosition = nums(st.iso, 1)
        if st.ssd is not None and (prev is None or st.ssd != prev.ssd):
            cp.SourceToSurfaceDistance = num(st.ssd, 1)
        cp.CumulativeMetersetWeight = num(st.weight, 5)
        out.append(cp)
        prev = st
    return seq(out)


@dataclass
class Beam:
    number: int
    name: str
    description: str
    states: list[CP]
    meterset: float | None  # MU in the fraction group; None = not referenced
    beam_dose: float | None = None
    beam_type: str = "STATIC"
    radiation: str = "PHOTON"
    delivery: str = "TREATMENT"
    machine: str = "TrueBeam1"
    bounds: Seq[float] | None = None
    wedges: list[Dataset] | None = None
    blocks: list[Dataset] | None = None
    applicator: Dataset | None = None
    arc: bool = False
    force_mlc: bool = False
    layers: dict[str, Seq[float]] | None = None  # boundaries per MLC layer (two-layer MLCs)
    sad: float = 1000.0

    def dataset(self) -> Dataset:
        b = Dataset()
        b.TreatmentMachineName = self.machine
        b.PrimaryDosimeterUnit = "MU"
        b.SourceAxisDistance = num(self.sad)
        b.BeamLimitingDeviceSequence = device_sequence(
            list(self.states[0].limits), self.bounds, self.layers
        )
        b.BeamNumber = self.number
        b.BeamName = self.name
        b.BeamDescription = self.description
        b.BeamType = self.beam_type
        b.RadiationType = self.radiation
        b.TreatmentDeliveryType = self.delivery
        b.NumberOfWedges = len(self.wedges or [])
        if self.wedges:
            b.WedgeSequence = seq(self.wedges)
        b.NumberOfCompensators = 0
        b.NumberOfBoli = 0
        b.NumberOfBlocks = len(self.blocks or [])
        if self.blocks:
            b.TotalBlockTrayFactor = "1"
            b.BlockSequence = seq(self.blocks)
        if self.applicator is not None:
            b.ApplicatorSequence = seq([self.applicator])
        b.FinalCumulativeMetersetWeight = "1"
        b.NumberOfControlPoints = len(self.states)
        b.ControlPointSequence = control_points(self.states, arc=self.arc, force_mlc=self.force_mlc)
        b.ReferencedPatientSetupNumber = 1
        return b


def static_states(gantry: float, limits: dict[str, list[float]], **kw: object) -> list[CP]:
    return [
        CP(gantry=gantry, weight=0.0, limits=limits, **kw),
        CP(gantry=gantry, weight=1.0, limits=limits, **kw),
    ]


def jaws(x1: float, x2: float, y1: float, y2: float) -> dict[str, list[float]]:
    return {"ASYMX": [x1, x2], "ASYMY": [y1, y2]}


# --------------------------------------------------------------------------
# plans
# --------------------------------------------------------------------------


def plan_dataset(
    p: Patient,
    label: str,
    name: str,
    vendor: tuple[str, str, str],
    *,
    intent: str = "CURATIVE",
    approved: bool = False,
    rs_reference: bool = True,
    sop_class: str = RTPlanStorage,
    sop_uid: str | None = None,
    rx_description: str | None = None,
    rx_dose: float | None = None,
) -> Dataset:
    ds = base_dataset(
        p, sop_class, sop_uid or p.plan_uid, "RTPLAN", uid(p.case, "rp-series"), 3, "Plans", vendor
    )
    ds.RTPlanLabel = label
    ds.RTPlanName = name
    ds.RTPlanDate = DATE
    ds.RTPlanTime = "110000"
    ds.PlanIntent = intent
    ds.RTPlanGeometry = "PATIENT"
    if rx_dose is not None:
        ds.DoseReferenceSequence = seq(
            [
                item(
                    DoseReferenceNumber=1,
                    DoseReferenceUID=uid(p.case, "dose-reference"),
                    DoseReferenceStructureType="SITE",
                    DoseReferenceDescription=rx_description or "Target",
                    DoseReferenceType="TARGET",
                    TargetPrescriptionDose=num(rx_dose, 2),
                )
            ]
        )
    ds.PatientSetupSequence = seq(
        [item(PatientPosition="HFS", PatientSetupNumber=1, SetupTechnique="ISOCENTRIC")]
    )
    if rs_reference:
        ds.ReferencedStructureSetSequence = seq([ref(RTStructureSetStorage, p.rs_uid)])
    if approved:
        ds.ApprovalStatus = "APPROVED"
        ds.ReviewDate = REVIEW_DATE
        ds.ReviewTime = "100000"
        ds.ReviewerName = "Physicist^Sample"
    else:
        ds.ApprovalStatus = "UNAPPROVED"
    return ds


def add_beams(ds: Dataset, beams: Seq[Beam], fractions: int) -> Dataset:
    referenced = [b for b in beams if b.meterset is not None]
    refs = []
    for b in referenced:
        r = Dataset()
        if b.beam_dose is not None:
            r.BeamDose = num(b.beam_dose, 4)
        r.BeamMeterset = num(b.meterset, 2)
        r.ReferencedBeamNumber = b.number
        refs.append(r)
    ds.FractionGroupSequence = seq(
        [
            item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=fractions,
                NumberOfBeams=len(referenced),
                NumberOfBrachyApplicationSetups=0,
                ReferencedBeamSequence=seq(refs),
            )
        ]
    )
    ds.BeamSequence = seq(b.dataset() for b in beams)
    return ds


def open_field(
    number: int,
    name: str,
    gantry: float,
    mu: float,
    dose: float | None,
    *,
    x: tuple[float, float] = (-50.0, 50.0),
    y: tuple[float, float] = (-60.0, 60.0),
    iso: tuple[float, float, float] = (0.0, 0.0, 0.0),
    energy: float = 6.0,
    ssd: float = 900.0,
    machine: str = "TrueBeam1",
    description: str | None = None,
    delivery: str = "TREATMENT",
    wedges: list[Dataset] | None = None,
) -> Beam:
    states = static_states(
        gantry,
        jaws(x[0], x[1], y[0], y[1]),
        iso=iso,
        energy=energy,
        ssd=ssd,
        wedges_in=tuple(w.WedgeNumber for w in wedges or []),
    )
    return Beam(
        number=number,
        name=name,
        description=description or f"{name} open field",
        states=states,
        meterset=mu,
        beam_dose=dose,
        delivery=delivery,
        machine=machine,
        wedges=wedges,
    )


def wedge(
    number: int, kind: str, wedge_id: str, angle: float, factor: float, orientation: float
) -> Dataset:
    return item(
        WedgeNumber=number,
        WedgeType=kind,
        WedgeID=wedge_id,
        WedgeAngle=num(angle),
        WedgeFactor=num(factor, 3),
        WedgeOrientation=num(orientation),
        SourceToWedgeTrayDistance="700" if kind == "STANDARD" else "250",
    )


# --------------------------------------------------------------------------
# ROI sets
# --------------------------------------------------------------------------

RED, GREEN, BLUE, YELLOW, CYAN, MAGENTA, ORANGE, WHITE = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 128, 0),
    (255, 255, 255),
)


def body(number: int, rx: float = 150.0, ry: float = 100.0) -> Roi:
    return Roi(number, "BODY", "EXTERNAL", 0.0, 0.0, rx, ry, GREEN)


def pelvis_rois(with_ctv: bool = True) -> list[Roi]:
    rois = [body(1), Roi(2, "PTV", "PTV", 0.0, 10.0, 50.0, 45.0, RED)]
    if with_ctv:
        rois.append(Roi(3, "CTV", "CTV", 0.0, 10.0, 40.0, 35.0, MAGENTA))
    n = len(rois)
    rois += [
        Roi(n + 1, "Bladder", "ORGAN", 0.0, -30.0, 30.0, 20.0, YELLOW),
        Roi(n + 2, "Rectum", "ORGAN", 0.0, 62.0, 15.0, 14.0, ORANGE),
        Roi(n + 3, "Femur_Head_L", "ORGAN", 95.0, 10.0, 22.0, 22.0, CYAN),
        Roi(n + 4, "Femur_Head_R", "ORGAN", -95.0, 10.0, 22.0, 22.0, BLUE),
    ]
    return rois


# --------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    plan_file: str
    shows: str
    code: str
    category: str


CATEGORY = {
    "77306": "simple_isodose",
    "77307": "complex_isodose",
    "77295": "3d",
    "77301": "imrt",
    "77316": "brachytherapy",
    "77317": "brachytherapy",
    "77318": "brachytherapy",
    "none": "not_billable",
}


def row(plan_file: str, shows: str, code: str) -> Row:
    return Row(plan_file, shows, code, CATEGORY[code])


def case_01(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "SINGLE",
        "Single open field",
        VARIAN,
        rs_reference=False,
        rx_description="Spine",
        rx_dose=8.0,
    )
    beams = [open_field(1, "PA", 180.0, 1050.0, 8.0, x=(-40.0, 40.0), y=(-75.0, 75.0), ssd=920.0)]
    write_part10(add_beams(ds, beams, 1), out / "RP.dcm")
    return [row("RP.dcm", "one static 6 MV jaw-only photon field, no MLC", "77306")]


def case_02(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "APPA",
        "AP PA open",
        PHILIPS,
        rs_reference=False,
        rx_description="Mediastinum",
        rx_dose=20.0,
    )
    beams = [
        open_field(
            1, "AP", 0.0, 220.0, 2.0, x=(-60.0, 60.0), y=(-80.0, 80.0), ssd=900.0, machine="Linac_A"
        ),
        open_field(
            2,
            "PA",
            180.0,
            225.0,
            2.0,
            x=(-60.0, 60.0),
            y=(-80.0, 80.0),
            ssd=890.0,
            machine="Linac_A",
        ),
    ]
    write_raw_implicit(add_beams(ds, beams, 5), out / "RTPLAN_AP_PA")
    return [
        row(
            "RTPLAN_AP_PA",
            "AP/PA jaw-only pair at one isocentre; raw implicit-VR data set without preamble or "
            "file meta",
            "77306",
        )
    ]


def case_03(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [body(1), Roi(2, "PTV", "PTV", 0.0, 0.0, 40.0, 35.0, RED)]
    make_ct(p, out, VARIAN)
    make_rs(p, rois, out, VARIAN)
    ds = plan_dataset(p, "LATS", "Opposed laterals MLC", VARIAN, rx_description="PTV", rx_dose=50.0)

    def kidney(sign: float) -> Outline:
        def f(y: float) -> tuple[float, float] | None:
            if abs(y) >= 52.0:
                return None
            s = math.sqrt(1.0 - (y / 52.0) ** 2)
            x1 = -48.0 * s
            x2 = 36.0 * s + 9.0 * math.sin(math.pi * y / 52.0) * s
            return (x1, x2) if sign > 0 else (-x2, -x1)

        return f

    beams = []
    for number, (name, gantry, sign, mu) in enumerate(
        (("LLAT", 90.0, 1.0, 128.0), ("RLAT", 270.0, -1.0, 131.0)), 1
    ):
        limits = conformal_limits(MILLENNIUM_BOUNDS, kidney(sign), 52.0)
        beams.append(
            Beam(
                number,
                name,
                f"Lateral field shaped to PTV, gantry {gantry:g}",
                static_states(gantry, limits, ssd=850.0),
                mu,
                1.0,
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 25), out / "RP.dcm")
    make_rd(p, out, VARIAN, 50.0, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "two static fields with irregular MLC apertures; structure set has BODY and PTV only "
            "(no organs); DVH present",
            "77307",
        )
    ]


TANGENT_ISO = (70.0, -60.0, 0.0)


def case_04(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "TANG_W",
        "Left breast tangents wedged",
        ELEKTA,
        rs_reference=False,
        rx_description="Breast",
        rx_dose=40.05,
    )
    beams = [
        open_field(
            1,
            "MED",
            300.0,
            142.0,
            1.335,
            x=(0.0, 95.0),
            y=(-100.0, 100.0),
            iso=TANGENT_ISO,
            ssd=910.0,
            machine="Versa1",
            description="Medial tangent, 15 deg wedge",
            wedges=[wedge(1, "STANDARD", "W15", 15.0, 0.781, 90.0)],
        ),
        open_field(
            2,
            "LAT",
            120.0,
            139.0,
            1.335,
            x=(-95.0, 0.0),
            y=(-100.0, 100.0),
            iso=TANGENT_ISO,
            ssd=915.0,
            machine="Versa1",
            description="Lateral tangent, 15 deg motorized wedge",
            wedges=[wedge(1, "MOTORIZED", "MW15", 15.0, 0.812, 270.0)],
        ),
    ]
    write_part10(add_beams(ds, beams, 15), out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "breast tangents (medial 300, lateral 120), jaw-only, one 15 deg wedge each",
            "77307",
        )
    ]


def case_05(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        body(1),
        Roi(2, "PTV_Breast", "PTV", 70.0, -60.0, 50.0, 22.0, RED),
        Roi(3, "Lung_L", "ORGAN", 85.0, 15.0, 40.0, 45.0, CYAN),
        Roi(4, "Heart", "", 15.0, 5.0, 38.0, 38.0, MAGENTA),
    ]
    make_ct(p, out, VARIAN_15)
    make_rs(p, rois, out, VARIAN_15)
    ds = plan_dataset(
        p,
        "TANG_FIF",
        "Left breast tangents FiF",
        VARIAN_15,
        rx_description="PTV_Breast",
        rx_dose=40.05,
    )

    def apertures(sign: float) -> list[list[float]]:
        # sign +1: open side towards +X (medial beam); -1 mirrored (lateral beam)
        def main(y: float) -> tuple[float, float] | None:
            if abs(y) >= 100.0:
                return None
            a = 4.0 + 12.0 * (y / 100.0) ** 2
            b = 92.0 - 30.0 * (y / 100.0) ** 2
            return (a, b) if sign > 0 else (-b, -a)

        def sub(limit: float, pull: float) -> Outline:
            def f(y: float) -> tuple[float, float] | None:
                span = main(y)
                if span is None:
                    return None
                a, b = span
                if abs(y) < limit:
                    if sign > 0:
                        b -= pull
                    else:
                        a += pull
                return (a, b)

            return f

        park = -5.0 if sign > 0 else 5.0
        return [
            leaves_from_outline(MILLENNIUM_BOUNDS, main, park),
            leaves_from_outline(MILLENNIUM_BOUNDS, sub(60.0, 25.0), park),
            leaves_from_outline(MILLENNIUM_BOUNDS, sub(35.0, 40.0), park),
        ]

    beams = []
    for number, (name, gantry, sign, mu) in enumerate(
        (("MED", 300.0, 1.0, 236.0), ("LAT", 120.0, -1.0, 231.0)), 1
    ):
        shapes = apertures(sign)
        x = [0.0, 95.0] if sign > 0 else [-95.0, 0.0]
        weights = (0.0, 0.8, 0.8, 0.9, 0.9, 1.0)
        states = []
        for k, w in enumerate(weights):
            limits = {"ASYMX": x, "ASYMY": [-100.0, 100.0], "MLCX": shapes[k // 2]}
            states.append(CP(gantry=gantry, weight=w, limits=limits, iso=TANGENT_ISO, ssd=910.0))
        beams.append(
            Beam(
                number,
                name,
                f"Tangent field-in-field, gantry {gantry:g}",
                states,
                mu,
                1.335,
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 15), out / "RP.dcm")
    make_rd(p, out, VARIAN_15, 40.05, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "breast tangents with field-in-field: main aperture 80% MU plus two nested sub-"
            "segments; Heart has an empty RTROIInterpretedType; DVH present",
            "77295",
        )
    ]


PELVIS_ISO = (0.0, 10.0, 0.0)


def four_field_box(p: Patient, vendor: tuple[str, str, str], approved: bool) -> Dataset:
    ds = plan_dataset(
        p,
        "FOURFIELD",
        "Pelvis four field box",
        vendor,
        approved=approved,
        rx_description="PTV",
        rx_dose=45.0,
    )
    beams = []
    for number, (gantry, name, mu) in enumerate(
        ((0.0, "AP", 62.0), (90.0, "LLAT", 71.0), (180.0, "PA", 63.0), (270.0, "RLAT", 70.0)), 1
    ):
        half_x = bev_half_width(50.0, 45.0, gantry) + 7.0
        limits = conformal_limits(MILLENNIUM_BOUNDS, ellipse_outline(half_x, 62.0), 62.0)
        beams.append(
            Beam(
                number,
                name,
                f"{name} conformal to PTV",
                static_states(gantry, limits, iso=PELVIS_ISO, energy=18.0, ssd=900.0),
                mu,
                0.45,
                machine="Linac_18X",
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    return add_beams(ds, beams, 25)


def case_06(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = pelvis_rois()
    make_ct(p, out, PHILIPS)
    make_rs(p, rois, out, PHILIPS)
    write_part10(four_field_box(p, PHILIPS, approved=True), out / "RP.dcm")
    make_rd(p, out, PHILIPS, 45.0, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "18 MV four-field box, MLC conformal to PTV; CTV, PTV and four organs contoured; DVH "
            "present; APPROVED",
            "77295",
        )
    ]


def case_07(out: Path) -> list[Row]:
    p = patient_for(out.name)
    make_ct(p, out, PHILIPS)
    write_part10(four_field_box(p, PHILIPS, approved=False), out / "RP.dcm")
    make_rd(p, out, PHILIPS, 45.0, Roi(2, "PTV", "PTV", 0.0, 10.0, 50.0, 45.0, RED))
    return [
        row(
            "RP.dcm",
            "same four-field box as case 06 but the referenced structure set is missing from the "
            "export; dose without DVH (77295 is the alternative)",
            "77307",
        )
    ]


def case_08(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "ELEC",
        "Chest wall electron",
        VARIAN,
        rs_reference=False,
        rx_description="Scar",
        rx_dose=10.0,
    )
    pts: list[float] = []
    n = 20
    for k in range(n):
        t = 2.0 * math.pi * k / n
        r = 38.0 + 8.0 * math.cos(2 * t) + 4.0 * math.sin(3 * t)
        pts += [r * math.cos(t) + 5.0, 0.8 * r * math.sin(t)]
    block = item(
        MaterialID="CERROBEND",
        BlockTrayID="A10_CUTOUT_01",
        SourceToBlockTrayDistance="950",
        BlockType="APERTURE",
        BlockDivergence="PRESENT",
        BlockMountingPosition="PATIENT_SIDE",
        BlockNumber=1,
        BlockName="CUTOUT",
        BlockThickness="15",
        BlockTransmission="0",
        BlockNumberOfPoints=n,
        BlockData=nums(pts, 1),
    )
    applicator = item(
        ApplicatorID="A10",
        ApplicatorType="ELECTRON_SQUARE",
        ApplicatorDescription="Applicator 10x10",
    )
    states = static_states(
        329.0, jaws(-100.0, 100.0, -100.0, 100.0), iso=(-30.0, -90.0, 0.0), energy=9.0, ssd=1000.0
    )
    beam = Beam(
        1,
        "E9 CW",
        "9 MeV electron with custom cutout",
        states,
        210.0,
        2.0,
        radiation="ELECTRON",
        blocks=[block],
        applicator=applicator,
    )
    write_part10(add_beams(ds, [beam], 5), out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "one 9 MeV electron field, A10 applicator with custom Cerrobend cutout",
            "77307",
        )
    ]


IMRT_SEG_WEIGHTS = (0.14, 0.12, 0.11, 0.13, 0.10, 0.15, 0.12, 0.13)


def case_09(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        body(1),
        Roi(2, "PTV", "PTV", 0.0, 5.0, 40.0, 35.0, RED),
        Roi(3, "CTV", "CTV", 0.0, 5.0, 30.0, 26.0, MAGENTA),
        Roi(4, "Bladder", "ORGAN", 0.0, -32.0, 30.0, 18.0, YELLOW),
        Roi(5, "Rectum", "ORGAN", 0.0, 50.0, 15.0, 12.0, ORANGE),
        Roi(6, "PenileBulb", "ORGAN", 0.0, 72.0, 10.0, 8.0, CYAN),
    ]
    iso = (0.0, 5.0, 0.0)
    make_ct(p, out, PHILIPS)
    make_rs(p, rois, out, PHILIPS)
    ds = plan_dataset(
        p,
        "IMRT7F",
        "Prostate IMRT 7 fields",
        PHILIPS,
        approved=True,
        rx_description="PTV",
        rx_dose=78.0,
    )
    beams = []
    gantries = (0.0, 51.0, 103.0, 154.0, 206.0, 257.0, 309.0)
    for number, gantry in enumerate(gantries, 1):
        half_x = bev_half_width(40.0, 35.0, gantry) + 5.0
        half_y = 50.0
        x1, x2 = -math.ceil(half_x) - 2.0, math.ceil(half_x) + 2.0
        park = x1 - 5.0
        target = ellipse_outline(half_x, half_y)
        shift = number % 8
        weights = IMRT_SEG_WEIGHTS[shift:] + IMRT_SEG_WEIGHTS[:shift]
        shapes = []
        for seg in range(8):
            centre = -half_x + 2.0 * half_x * (seg + 0.5) / 8.0
            half_w = 0.28 * half_x + 4.0 * ((seg * 3 + number) % 4)

            def window(
                y: float,
                centre: float = centre,
                half_w: float = half_w,
                seg: int = seg,
                target: Outline = target,
                number: int = number,
            ) -> tuple[float, float] | None:
                span = target(y)
                if span is None:
                    return None
                wobble = 6.0 * math.sin(0.08 * y + seg + number)
                lo = max(span[0], centre - half_w + wobble)
                hi = min(span[1], centre + half_w + wobble)
                if hi - lo < 1.0:
                    return None
                return (lo, hi)

            shapes.append(leaves_from_outline(MILLENNIUM_BOUNDS, window, park))
        states = []
        cumulative = 0.0
        for seg, shape in enumerate(shapes):
            limits = {"ASYMX": [x1, x2], "ASYMY": [-half_y - 2.0, half_y + 2.0], "MLCX": shape}
            start = round(cumulative, 5)
            cumulative += weights[seg]
            end = round(cumulative, 5) if seg < 7 else 1.0
            states.append(CP(gantry=gantry, weight=start, limits=limits, iso=iso, ssd=880.0))
            states.append(CP(gantry=gantry, weight=end, limits=limits, iso=iso, ssd=880.0))
        mu = 95.0 + 7.0 * ((number * 5) % 6)
        beams.append(
            Beam(
                number,
                f"G{int(gantry):03d}",
                f"IMRT step and shoot, gantry {gantry:g}",
                states,
                mu,
                2.0 / 7,
                machine="Linac_SS",
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 39), out / "RP.dcm")
    make_rd(p, out, PHILIPS, 78.0, rois[1])
    return [
        row(
            "RP.dcm",
            "7-field step-and-shoot IMRT, 8 differently shaped non-nested segments per field; dose"
            " grid without DVH",
            "77301",
        )
    ]


def case_10(out: Path) -> list[Row]:
    p = Patient(out.name, "RTC-10", "Sample^Case10", body=(0.0, 0.0, 70.0, 85.0))
    rois = [
        body(1, 70.0, 85.0),
        Roi(2, "PTV", "PTV", 0.0, -10.0, 35.0, 30.0, RED),
        Roi(3, "Parotid_L", "ORGAN", 45.0, 5.0, 15.0, 20.0, YELLOW),
        Roi(4, "Parotid_R", "ORGAN", -45.0, 5.0, 15.0, 20.0, ORANGE),
        Roi(5, "SpinalCord", "ORGAN", 0.0, 45.0, 6.0, 6.0, CYAN),
    ]
    iso = (0.0, -10.0, 0.0)
    make_ct(p, out, VARIAN_OLD)
    make_rs(p, rois, out, VARIAN_OLD)
    ds = plan_dataset(
        p, "HN_SW", "Head neck sliding window", VARIAN_OLD, rx_description="PTV", rx_dose=60.0
    )
    beams = []
    ncp = 40
    for number, gantry in enumerate((0.0, 72.0, 144.0, 216.0, 288.0), 1):
        half_x = bev_half_width(35.0, 30.0, gantry) + 5.0
        half_y = 45.0
        x1, x2 = -math.ceil(half_x) - 2.0, math.ceil(half_x) + 2.0
        centres = [
            (lo + hi) / 2
            for lo, hi in zip(MILLENNIUM_BOUNDS[:-1], MILLENNIUM_BOUNDS[1:], strict=True)
        ]
        states = []
        for k in range(ncp):
            t = k / (ncp - 1)
            base = x1 + (x2 - x1) * t
            bank_a, bank_b = [], []
            for pair, yc in enumerate(centres):
                if abs(yc) >= half_y:
                    bank_a.append(round(base, 1))
                    bank_b.append(round(base, 1))
                    continue
                gap = (
                    2.0
                    + 12.0
                    * (0.5 + 0.5 * math.sin(0.7 * pair + 0.35 * k + number))
                    * math.sin(math.pi * t) ** 0.5
                )
                bank_a.append(round(base - gap / 2, 1))
                bank_b.append(round(base + gap / 2, 1))
            limits = {"ASYMX": [x1, x2], "ASYMY": [-half_y, half_y], "MLCX": bank_a + bank_b}
            states.append(CP(gantry=gantry, weight=round(t, 5), limits=limits, iso=iso, ssd=920.0))
        mu = 310.0 + 17.0 * number
        beams.append(
            Beam(
                number,
                f"SW{number}",
                f"Sliding window IMRT, gantry {gantry:g}",
                states,
                mu,
                0.4,
                beam_type="DYNAMIC",
                machine="Clinac_iX",
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 30), out / "RP.dcm")
    make_rd(p, out, VARIAN_OLD, 60.0, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "5 dynamic sliding-window IMRT fields, 40 control points each, leaves sweep across the"
            " field; DVH present",
            "77301",
        )
    ]


def vmat_arc(
    number: int, name: str, start: float, direction: str, seed: int, iso: tuple[float, float, float]
) -> Beam:
    """Elekta Agility VMAT arc: ASYMY + MLCX (80 pairs), 91 control points over 358 degrees."""
    rng = np.random.RandomState(seed)
    ncp = 91
    step = 358.0 / (ncp - 1) * (1.0 if direction == "CW" else -1.0)
    increments = rng.uniform(0.15, 3.0, ncp - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(increments) / increments.sum()])
    centres = [
        (lo + hi) / 2 for lo, hi in zip(AGILITY_BOUNDS[:-1], AGILITY_BOUNDS[1:], strict=True)
    ]
    y_jaw = 45.0
    states = []
    for k in range(ncp):
        gantry = round((start + step * k) % 360.0, 2)
        half = bev_half_width(40.0, 35.0, gantry) + 3.0
        bank_a, bank_b = [], []
        for yc in centres:
            if abs(yc) >= y_jaw:
                bank_a.append(0.0)
                bank_b.append(0.0)
                continue
            w = half * math.sqrt(max(0.0, 1.0 - (yc / y_jaw) ** 2)) + 2.0
            a = -w + rng.uniform(0.0, 0.8) * w
            b = w - rng.uniform(0.0, 0.8) * w
            if b - a < 2.0:
                mid = (a + b) / 2
                a, b = mid - 1.0, mid + 1.0
            bank_a.append(round(a, 1))
            bank_b.append(round(b, 1))
        limits = {"ASYMY": [-y_jaw, y_jaw], "MLCX": bank_a + bank_b}
        weight = 1.0 if k == ncp - 1 else round(float(cumulative[k]), 5)
        states.append(
            CP(
                gantry=gantry,
                weight=weight,
                limits=limits,
                iso=iso,
                ssd=900.0,
                gantry_dir=direction if k < ncp - 1 else "NONE",
            )
        )
    return Beam(
        number,
        name,
        f"VMAT arc {direction} {start:g}",
        states,
        None,
        1.5,
        beam_type="DYNAMIC",
        machine="Agility1",
        bounds=AGILITY_BOUNDS,
        arc=True,
        force_mlc=True,
    )


def vmat_beams(iso: tuple[float, float, float]) -> list[Beam]:
    arc1 = vmat_arc(1, "ARC1", 181.0, "CW", 1101, iso)
    arc2 = vmat_arc(2, "ARC2", 179.0, "CC", 1102, iso)
    arc1.meterset, arc2.meterset = 305.4, 298.7
    return [arc1, arc2]


def case_11(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        body(1),
        Roi(2, "PTV", "PTV", 0.0, 10.0, 40.0, 35.0, RED),
        Roi(3, "Rectum", "ORGAN", 0.0, 60.0, 15.0, 13.0, ORANGE),
        Roi(4, "Bladder", "ORGAN", 0.0, -30.0, 30.0, 18.0, YELLOW),
    ]
    iso = (0.0, 10.0, 0.0)
    make_ct(p, out, ELEKTA)
    make_rs(p, rois, out, ELEKTA)
    ds = plan_dataset(
        p, "VMAT2A", "Prostate VMAT two arcs", ELEKTA, rx_description="PTV", rx_dose=60.0
    )
    write_part10(add_beams(ds, vmat_beams(iso), 20), out / "RP.dcm")
    make_rd(p, out, ELEKTA, 60.0, rois[1])
    return [
        row(
            "RP.dcm",
            "Elekta Agility VMAT, two full arcs (CW and CC), 91 control points each, modulated MLC"
            " and MU per degree; no DVH",
            "77301",
        )
    ]


def case_12(out: Path) -> list[Row]:
    p = Patient(out.name, "RTC-12", "Sample^Case12", body=(0.0, 0.0, 75.0, 95.0))
    ptv = Roi(2, "PTV", "PTV", 20.0, -10.0, 15.0, 12.0, RED)
    rois = [
        Roi(1, "BODY", "EXTERNAL", 0.0, 0.0, 75.0, 95.0, GREEN),
        ptv,
        Roi(3, "Brainstem", "ORGAN", 0.0, 25.0, 12.0, 12.0, YELLOW),
        Roi(4, "Chiasm", "ORGAN", -12.0, -22.0, 8.0, 4.0, CYAN),
        Roi(5, "Eye_L", "ORGAN", 30.0, -75.0, 12.0, 12.0, ORANGE),
    ]
    iso = (20.0, -10.0, 0.0)
    make_ct(p, out, BRAINLAB_IPLAN)
    make_rs(p, rois, out, BRAINLAB_IPLAN)
    ds = plan_dataset(
        p,
        "DCA3",
        "Brain dynamic conformal arcs",
        BRAINLAB_IPLAN,
        rx_description="PTV",
        rx_dose=25.0,
    )
    arcs = (
        (1, "Arc 1", 180.0, 120.0, "CW", 0.0, 402.0),
        (2, "Arc 2", 60.0, 120.0, "CW", 45.0, 398.0),
        (3, "Arc 3", 180.0, 120.0, "CC", 315.0, 405.0),
    )
    beams = []
    ncp = 31
    half_y = 17.0 + 2.0
    for number, name, start, span, direction, couch, mu in arcs:
        sign = 1.0 if direction == "CW" else -1.0
        states = []
        max_half = max(bev_half_width(15.0, 12.0, g) for g in range(360)) + 2.0
        x_jaw = math.ceil(max_half) + 3.0
        for k in range(ncp):
            delta = span * k / (ncp - 1)
            gantry = round((start + sign * delta) % 360.0, 2)
            half_x = bev_half_width(15.0, 12.0, gantry + couch / 3.0) + 2.0
            leaves = leaves_from_outline(
                MILLENNIUM_BOUNDS, ellipse_outline(half_x, half_y), -x_jaw - 5.0
            )
            limits = {
                "ASYMX": [-x_jaw, x_jaw],
                "ASYMY": [-half_y - 3.0, half_y + 3.0],
                "MLCX": leaves,
            }
            weight = round(delta / span, 5)
            states.append(
                CP(
                    gantry=gantry,
                    weight=weight,
                    limits=limits,
                    iso=iso,
                    couch=couch,
                    ssd=930.0,
                    gantry_dir=direction if k < ncp - 1 else "NONE",
                )
            )
        beams.append(
            Beam(
                number,
                name,
                f"Dynamic conformal arc couch {couch:g}",
                states,
                mu,
                5.0 / 3,
                beam_type="DYNAMIC",
                machine="NovalisTx",
                bounds=MILLENNIUM_BOUNDS,
                arc=True,
            )
        )
    write_part10(add_beams(ds, beams, 5), out / "RP.dcm")
    make_rd(p, out, BRAINLAB_IPLAN, 25.0, ptv, dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "three dynamic conformal arcs (couch 0/45/315), MLC follows the PTV outline, constant "
            "MU per degree; DVH present",
            "77295",
        )
    ]


def case_13(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "SPINE2ISO",
        "Spine two isocentres",
        VARIAN,
        rs_reference=False,
        rx_description="Spine",
        rx_dose=20.0,
    )
    sup, inf = (0.0, 0.0, 0.0), (0.0, 0.0, -250.0)
    beams = [
        open_field(
            1, "AP SUP", 0.0, 118.0, 1.0, x=(-40.0, 40.0), y=(-120.0, 120.0), iso=sup, ssd=920.0
        ),
        open_field(
            2, "PA SUP", 180.0, 121.0, 1.0, x=(-40.0, 40.0), y=(-120.0, 120.0), iso=sup, ssd=900.0
        ),
        open_field(
            3, "AP INF", 0.0, 117.0, 1.0, x=(-40.0, 40.0), y=(-125.0, 125.0), iso=inf, ssd=915.0
        ),
        open_field(
            4, "PA INF", 180.0, 122.0, 1.0, x=(-40.0, 40.0), y=(-125.0, 125.0), iso=inf, ssd=905.0
        ),
    ]
    write_part10(add_beams(ds, beams, 10), out / "RP.dcm")
    return [row("RP.dcm", "two AP/PA jaw-only pairs at two isocentres 250 mm apart", "77307")]


def case_14(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "APPA_SETUP",
        "AP PA with setup beams",
        VARIAN,
        rs_reference=False,
        rx_description="Pelvis",
        rx_dose=30.0,
    )
    beams = [
        open_field(1, "AP", 0.0, 165.0, 1.5, x=(-70.0, 70.0), y=(-90.0, 90.0), ssd=900.0),
        open_field(2, "PA", 180.0, 168.0, 1.5, x=(-70.0, 70.0), y=(-90.0, 90.0), ssd=890.0),
        open_field(
            3,
            "SETUP AP",
            0.0,
            0.0,
            None,
            x=(-100.0, 100.0),
            y=(-100.0, 100.0),
            delivery="SETUP",
            description="kV setup image AP",
        ),
        open_field(
            4,
            "SETUP LAT",
            270.0,
            0.0,
            None,
            x=(-100.0, 100.0),
            y=(-100.0, 100.0),
            delivery="SETUP",
            description="kV setup image lateral",
        ),
        open_field(
            5,
            "CBCT",
            0.0,
            0.0,
            None,
            x=(-100.0, 100.0),
            y=(-100.0, 100.0),
            description="Cone beam CT placeholder",
        ),
    ]
    beams[3].meterset = None  # SETUP LAT is not referenced by the fraction group
    write_part10(add_beams(ds, beams, 10), out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "AP/PA jaw-only treatment pair plus two SETUP beams (one referenced with 0 MU, one "
            "unreferenced) and a 0 MU CBCT beam",
            "77306",
        )
    ]


def case_15(out: Path) -> list[Row]:
    p = Patient(out.name, "QA-PHANTOM", "QA^Phantom", body=(0.0, 0.0, 160.0, 160.0))
    ds = plan_dataset(
        p,
        "QA_VMAT",
        "Verification of VMAT2A",
        ELEKTA,
        intent="VERIFICATION",
        rs_reference=False,
        rx_description="Phantom",
        rx_dose=3.0,
    )
    ds.ReferencedRTPlanSequence = seq(
        [
            item(
                ReferencedSOPClassUID=RTPlanStorage,
                ReferencedSOPInstanceUID=uid("11_vmat_two_arcs", "rtplan"),
                RTPlanRelationship="VERIFIED_PLAN",
            )
        ]
    )
    arc = vmat_arc(1, "ARC1", 181.0, "CW", 1101, (0.0, 0.0, 0.0))
    arc.meterset, arc.beam_dose = 305.4, 3.0
    write_part10(add_beams(ds, [arc], 1), out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "VMAT arc recalculated on a QA phantom, PlanIntent VERIFICATION, references case 11 as"
            " VERIFIED_PLAN",
            "none",
        )
    ]


def case_16(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        Roi(1, "CTV_HR", "CTV", 0.0, 0.0, 25.0, 20.0, RED),
        Roi(2, "Bladder", "ORGAN", 0.0, -40.0, 30.0, 16.0, YELLOW),
        Roi(3, "Rectum", "ORGAN", 0.0, 38.0, 15.0, 12.0, ORANGE),
        Roi(4, "Sigmoid", "ORGAN", 25.0, 25.0, 12.0, 10.0, CYAN),
    ]
    make_ct(p, out, VARIAN)
    make_rs(p, rois, out, VARIAN)
    ds = plan_dataset(p, "HDR_FS", "Cervix HDR tandem and ovoids", VARIAN, approved=True)
    ds.BrachyTreatmentTechnique = "INTRACAVITARY"
    ds.BrachyTreatmentType = "HDR"
    ds.TreatmentMachineSequence = seq(
        [
            item(
                Manufacturer="Varian Medical Systems",
                ManufacturerModelName="GammaMedplus iX",
                TreatmentMachineName="HDR_GM1",
            )
        ]
    )
    air_kerma_rate = 40000.0
    ds.SourceSequence = seq(
        [
            item(
                SourceNumber=1,
                SourceType="POINT",
                SourceManufacturer="Varian Medical Systems",
                ActiveSourceDiameter="0.6",
                ActiveSourceLength="3.5",
                SourceIsotopeName="Ir-192",
                SourceIsotopeHalfLife="73.83",
                ReferenceAirKermaRate=num(air_kerma_rate),
                SourceStrengthReferenceDate="20251215",
                SourceStrengthReferenceTime="000000",
            )
        ]
    )
    channels = []
    total_time = 0.0
    layout = (
        (
            "Tandem",
            [(0.0, 5.0, -10.0 + 5.0 * k) for k in range(6)],
            [20.0, 22.0, 24.0, 24.0, 22.0, 18.0],
        ),
        ("Ovoid L", [(20.0 + 2.5 * k, 5.0, -15.0) for k in range(3)], [25.0, 28.0, 25.0]),
        ("Ovoid R", [(-20.0 - 2.5 * k, 5.0, -15.0) for k in range(3)], [25.0, 28.0, 25.0]),
    )
    for number, (name, positions, times) in enumerate(layout, 1):
        cps = []
        cumulative = 0.0
        for k, (pos, t) in enumerate(zip(positions, times, strict=True)):
            for w in (cumulative, cumulative + t):
                cps.append(
                    item(
                        ControlPointIndex=len(cps),
                        ControlPointRelativePosition=num(5.0 * k + 2.5),
                        ControlPoint3DPosition=nums(pos, 1),
                        CumulativeTimeWeight=num(w, 2),
                    )
                )
            cumulative += t
        total_time += cumulative
        channels.append(
            item(
                NumberOfControlPoints=len(cps),
                ChannelNumber=number,
                ChannelLength="1200",
                ChannelTotalTime=num(cumulative, 2),
                SourceMovementType="STEPWISE",
                SourceApplicatorNumber=number,
                SourceApplicatorID=name,
                SourceApplicatorType="RIGID",
                SourceApplicatorLength="1200",
                SourceApplicatorStepSize="5",
                FinalCumulativeTimeWeight=num(cumulative, 2),
                ReferencedSourceNumber=1,
                BrachyControlPointSequence=seq(cps),
            )
        )
    ds.ApplicationSetupSequence = seq(
        [
            item(
                ApplicationSetupType="FLETCHER_SUIT",
                ApplicationSetupNumber=1,
                ApplicationSetupName="Tandem and ovoids",
                TotalReferenceAirKerma=num(air_kerma_rate * total_time / 3600.0, 2),
                ChannelSequence=seq(channels),
            )
        ]
    )
    ds.FractionGroupSequence = seq(
        [
            item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=4,
                NumberOfBeams=0,
                NumberOfBrachyApplicationSetups=1,
                ReferencedBrachyApplicationSetupSequence=seq(
                    [item(BrachyApplicationSetupDose="7", ReferencedBrachyApplicationSetupNumber=1)]
                ),
            )
        ]
    )
    write_part10(ds, out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "HDR intracavitary Fletcher-Suit plan, one Ir-192 source, 3 channels (tandem and two "
            "ovoids)",
            "77317",
        )
    ]


def case_17(out: Path) -> list[Row]:
    p = Patient(out.name, "RTC-17", "Sample^Case17", body=(0.0, 0.0, 75.0, 95.0))
    rois = [
        Roi(1, "BODY", "EXTERNAL", 0.0, 0.0, 75.0, 95.0, GREEN),
        Roi(2, "PTV", "PTV", 0.0, 0.0, 25.0, 20.0, RED),
        Roi(3, "Brainstem", "ORGAN", 0.0, 35.0, 12.0, 12.0, YELLOW),
    ]
    iso = (0.0, 0.0, 0.0)
    make_ct(p, out, RAYSEARCH)
    make_rs(p, rois, out, RAYSEARCH)
    ds = plan_dataset(
        p,
        "PBS2F",
        "Skull base PBS",
        RAYSEARCH,
        sop_class=RTIonPlanStorage,
        rx_description="PTV",
        rx_dose=54.0,
    )
    rng = np.random.RandomState(17)
    beams = []
    refs = []
    for number, (gantry, name, meterset) in enumerate(
        ((90.0, "LPO", 412.0), (270.0, "RPO", 405.0)), 1
    ):
        layers = []
        for layer, energy in enumerate((150.0, 145.0, 140.0, 135.0, 130.0)):
            radius = 30.0 - 3.5 * layer
            spots = [
                (x, y)
                for x in np.arange(-32.0, 33.0, 8.0)
                for y in np.arange(-32.0, 33.0, 8.0)
                if x * x + y * y <= radius * radius
            ]
            raw = rng.uniform(0.5, 1.5, len(spots)) * (1.0 - 0.12 * layer)
            layers.append((energy, spots, raw))
        total_raw = sum(float(r.sum()) for _, _, r in layers)
        cps = []
        cumulative = 0.0
        for layer, (energy, spots, raw) in enumerate(layers):
            weights = np.round(raw / total_raw * meterset, 3).astype(np.float32)
            spot_map = np.array(spots, dtype=np.float32).ravel()
            layer_sum = round(float(weights.astype(np.float64).sum()), 3)
            for half in (0, 1):
                cp = Dataset()
                cp.ControlPointIndex = len(cps)
                if layer == 0 and half == 0:
                    cp.NominalBeamEnergy = num(energy)
                    cp.GantryAngle = num(gantry)
                    cp.GantryRotationDirection = "NONE"
                    cp.BeamLimitingDeviceAngle = "0"
                    cp.BeamLimitingDeviceRotationDirection = "NONE"
                    cp.PatientSupportAngle = "0"
                    cp.PatientSupportRotationDirection = "NONE"
                    cp.TableTopPitchAngle = 0.0
                    cp.TableTopPitchRotationDirection = "NONE"
                    cp.TableTopRollAngle = 0.0
                    cp.TableTopRollRotationDirection = "NONE"
                    cp.IsocenterPosition = nums(iso, 1)
                    cp.SnoutPosition = 300.0
                elif half == 0:
                    cp.NominalBeamEnergy = num(energy)
                cp.CumulativeMetersetWeight = num(
                    cumulative if half == 0 else cumulative + layer_sum, 3
                )
                cp.ScanSpotTuneID = "3.0"
                cp.NumberOfScanSpotPositions = len(spots)
                cp.ScanSpotPositionMap = [float(v) for v in spot_map]
                cp.ScanSpotMetersetWeights = [
                    float(v) for v in (weights if half == 0 else np.zeros_like(weights))
                ]
                cp.ScanningSpotSize = [6.5, 6.5]
                cp.NumberOfPaintings = 1
                cps.append(cp)
            cumulative = round(cumulative + layer_sum, 3)
        b = Dataset()
        b.Manufacturer = "Sample Proton Systems"
        b.TreatmentMachineName = "GTR1"
        b.PrimaryDosimeterUnit = "MU"
        b.BeamNumber = number
        b.BeamName = name
        b.BeamDescription = f"PBS field gantry {gantry:g}"
        b.BeamType = "STATIC"
        b.RadiationType = "PROTON"
        b.TreatmentDeliveryType = "TREATMENT"
        b.NumberOfWedges = 0
        b.NumberOfCompensators = 0
        b.NumberOfBoli = 0
        b.NumberOfBlocks = 0
        b.FinalCumulativeMetersetWeight = num(cumulative, 3)
        b.NumberOfControlPoints = len(cps)
        b.ScanMode = "MODULATED"
        b.VirtualSourceAxisDistances = [2000.0, 2000.0]
        b.SnoutSequence = seq([item(SnoutID="SNOUT_M")])
        b.NumberOfRangeShifters = 0
        b.NumberOfLateralSpreadingDevices = 0
        b.NumberOfRangeModulators = 0
        b.PatientSupportType = "TABLE"
        b.PatientSupportID = "Couch"
        b.IonControlPointSequence = seq(cps)
        b.ReferencedPatientSetupNumber = 1
        beams.append(b)
        refs.append(
            item(BeamDose="0.9", BeamMeterset=num(cumulative, 3), ReferencedBeamNumber=number)
        )
    ds.FractionGroupSequence = seq(
        [
            item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=30,
                NumberOfBeams=2,
                NumberOfBrachyApplicationSetups=0,
                ReferencedBeamSequence=seq(refs),
            )
        ]
    )
    ds.IonBeamSequence = seq(beams)
    write_part10(ds, out / "RN.dcm")
    return [
        row(
            "RN.dcm",
            "RT Ion Plan, two proton pencil-beam-scanning fields, 5 energy layers each",
            "77301",
        )
    ]


def case_18(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rows = []
    for file_name, wedged in (("RP_a.dcm", False), ("RP_b.dcm", True)):
        ds = plan_dataset(
            p, "APPA", "AP PA", VARIAN, rs_reference=False, rx_description="Pelvis", rx_dose=20.0
        )
        beams = []
        for number, (name, gantry, mu) in enumerate((("AP", 0.0, 140.0), ("PA", 180.0, 142.0)), 1):
            w = [wedge(1, "STANDARD", "W30", 30.0, 0.65, 0.0)] if wedged else None
            beams.append(
                open_field(
                    number,
                    name,
                    gantry,
                    mu / 0.65 if wedged else mu,
                    2.0,
                    x=(-60.0, 60.0),
                    y=(-70.0, 70.0),
                    ssd=900.0,
                    wedges=w,
                    description=f"{name} with 30 deg wedge" if wedged else None,
                )
            )
        write_part10(add_beams(ds, beams, 10), out / file_name)
        if wedged:
            rows.append(
                row(
                    f"{file_name}",
                    "same SOPInstanceUID as RP_a.dcm but both beams carry a 30 deg wedge",
                    "77307",
                )
            )
        else:
            rows.append(
                row(
                    f"{file_name}",
                    "AP/PA jaw-only pair; shares its SOPInstanceUID with RP_b.dcm",
                    "77306",
                )
            )
    return rows


def case_19(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "MQA",
        "Machine QA open fields",
        BRAINLAB_ELEMENTS,
        intent="MACHINE QA",
        rs_reference=False,
    )
    beams = [
        open_field(
            1,
            "QA 0",
            0.0,
            100.0,
            None,
            x=(-50.0, 50.0),
            y=(-50.0, 50.0),
            ssd=1000.0,
            machine="VersaHD",
        ),
        open_field(
            2,
            "QA 90",
            90.0,
            100.0,
            None,
            x=(-50.0, 50.0),
            y=(-50.0, 50.0),
            ssd=1000.0,
            machine="VersaHD",
        ),
    ]
    write_part10(add_beams(ds, beams, 1), out / "RP.dcm")
    return [
        row("RP.dcm", "two open jaw-only fields with PlanIntent MACHINE QA (with a space)", "none")
    ]


# --------------------------------------------------------------------------
# cases 20-27: what real department exports do
# --------------------------------------------------------------------------

# Varian's and ViewRay's private RT Plan classes: ordinary RT Plans under a vendor UID.
VARIAN_PRIVATE_PLAN = "1.2.246.352.70.1.70"
VIEWRAY_PRIVATE_PLAN = "2.16.840.1.114493.1.2.1.4.1.1.481.5"
VIEWRAY = ("ViewRay Inc.", "MRIdian", "5.3")
GAMMAPLAN = ("Elekta", "Leksell GammaPlan", "11.3")
VARISEED = ("Varian Medical Systems", "VariSeed", "9.0")

# Halcyon: X and Y are fixed at 280 x 280 mm; a distal layer MLCX1 of 28 pairs and a
# proximal layer MLCX2 of 29 pairs, both 10 mm at the isocentre, offset by 5 mm.
HALCYON_DISTAL_BOUNDS = [-140.0 + 10 * i for i in range(29)]
HALCYON_PROXIMAL_BOUNDS = [-145.0 + 10 * i for i in range(30)]
# MRIdian linac: no jaws; two double-stacked MLC layers, both typed MLCX, of 34 and 35
# pairs, 8.3 mm at the isocentre, offset by half a leaf (4.15 mm).
MRIDIAN_LEAF_MM = 8.3
MRIDIAN_BOUNDS_34 = [round(-17 * MRIDIAN_LEAF_MM + MRIDIAN_LEAF_MM * i, 2) for i in range(35)]
MRIDIAN_BOUNDS_35 = [round(-17.5 * MRIDIAN_LEAF_MM + MRIDIAN_LEAF_MM * i, 2) for i in range(36)]


def fluence_fff(ds: Dataset) -> Dataset:
    """Flattening-filter-free beams, as Varian exports them (PrimaryFluenceModeSequence)."""
    for b in ds.BeamSequence:
        b.PrimaryFluenceModeSequence = seq([item(FluenceMode="NON_STANDARD", FluenceModeID="FFF")])
    return ds


def case_20(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = pelvis_rois()
    make_ct(p, out, VARIAN)
    make_rs(p, rois, out, VARIAN)
    ds = plan_dataset(
        p,
        "HAL_4F",
        "Pelvis Halcyon four field",
        VARIAN,
        sop_class=VARIAN_PRIVATE_PLAN,
        rx_description="PTV",
        rx_dose=45.0,
    )
    proximal_open = [-140.0] * 29 + [140.0] * 29  # proximal layer retracted
    beams = []
    for number, (gantry, name, mu) in enumerate(
        ((0.0, "AP", 118.0), (90.0, "LLAT", 131.0), (180.0, "PA", 120.0), (270.0, "RLAT", 129.0)),
        1,
    ):
        half_x = bev_half_width(50.0, 45.0, gantry) + 7.0
        distal = leaves_from_outline(HALCYON_DISTAL_BOUNDS, ellipse_outline(half_x, 62.0), 0.0)
        limits = {
            "X": [-140.0, 140.0],
            "Y": [-140.0, 140.0],
            "MLCX1": distal,
            "MLCX2": proximal_open,
        }
        beams.append(
            Beam(
                number,
                name,
                f"{name} distal MLC conformal to PTV",
                static_states(gantry, limits, iso=PELVIS_ISO, dose_rate=800.0, ssd=900.0),
                mu,
                0.45,
                machine="Halcyon01",
                layers={"MLCX1": HALCYON_DISTAL_BOUNDS, "MLCX2": HALCYON_PROXIMAL_BOUNDS},
            )
        )
    write_part10(fluence_fff(add_beams(ds, beams, 25)), out / "RP.dcm")
    make_rd(p, out, VARIAN, 45.0, rois[1], plan_class=VARIAN_PRIVATE_PLAN, dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "Halcyon 6X-FFF four-field box in Varian's private RT Plan class"
            " 1.2.246.352.70.1.70 (file meta and data set); devices X and Y fixed at"
            " +/-140 mm, distal MLCX1 (28 pairs of 10 mm) conformal to the PTV, proximal"
            " MLCX2 (29 pairs, offset 5 mm) retracted; CTV, PTV and four organs; DVH"
            " present; 77300 x4, 77334 x4",
            "77295",
        )
    ]


def case_21(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ptv = Roi(2, "PTV", "PTV", 10.0, 0.0, 30.0, 25.0, RED)
    rois = [
        body(1),
        ptv,
        Roi(3, "Duodenum", "ORGAN", 45.0, 5.0, 10.0, 14.0, YELLOW),
        Roi(4, "Stomach", "ORGAN", 20.0, -45.0, 35.0, 15.0, ORANGE),
        Roi(5, "Kidney_L", "ORGAN", 75.0, 40.0, 20.0, 30.0, CYAN),
        Roi(6, "SpinalCord", "ORGAN", 0.0, 55.0, 6.0, 6.0, BLUE),
    ]
    iso = (10.0, 0.0, 0.0)
    make_ct(p, out, VIEWRAY)
    make_rs(p, rois, out, VIEWRAY)
    ds = plan_dataset(
        p,
        "PANC_IMRT",
        "Pancreas step and shoot",
        VIEWRAY,
        sop_class=VIEWRAY_PRIVATE_PLAN,
        rx_description="PTV",
        rx_dose=50.0,
    )
    layers = {"MLCX#34": MRIDIAN_BOUNDS_34, "MLCX#35": MRIDIAN_BOUNDS_35}
    half_y = 32.0  # PTV's superior-inferior half-length plus margin
    beams = []
    for number in range(1, 13):
        gantry = 15.0 + 30.0 * (number - 1)
        half_x = bev_half_width(30.0, 25.0, gantry) + 3.0
        park = -math.ceil(half_x) - 10.0
        n_seg = 2 + number % 3
        raw = [1.0 + 0.12 * ((number * 5 + k * 3) % 4) for k in range(n_seg)]
        weights = [w / sum(raw) for w in raw]
        states = []
        cumulative = 0.0
        for seg in range(n_seg):
            lo_y = -half_y + 2.0 * half_y * seg / n_seg
            hi_y = -half_y + 2.0 * half_y * (seg + 1) / n_seg

            def band(
                y: float,
                lo_y: float = lo_y,
                hi_y: float = hi_y,
                seg: int = seg,
                number: int = number,
                half_x: float = half_x,
            ) -> tuple[float, float] | None:
                if not lo_y <= y < hi_y:
                    return None
                span = ellipse_outline(half_x, half_y)(y)
                if span is None:
                    return None
                shift = 5.0 * math.sin(0.09 * y + seg + number)
                lo, hi = span[0] + max(shift, 0.0), span[1] + min(shift, 0.0)
                return (lo, hi) if hi - lo >= 4.0 else None

            limits = {
                "MLCX#34": leaves_from_outline(MRIDIAN_BOUNDS_34, band, park),
                "MLCX#35": leaves_from_outline(MRIDIAN_BOUNDS_35, band, park),
            }
            start = round(cumulative, 5)
            cumulative += weights[seg]
            end = round(cumulative, 5) if seg < n_seg - 1 else 1.0
            for w in (start, end):
                states.append(CP(gantry=gantry, weight=w, limits=limits, iso=iso, ssd=860.0))
        beams.append(
            Beam(
                number,
                f"B{number:02d}",
                f"Step and shoot IMRT, gantry {gantry:g}, {n_seg} segments",
                states,
                24.0 + 3.0 * ((number * 7) % 5),
                10.0 / 12,
                machine="MRIdian_Linac",
                layers=layers,
                sad=900.0,
            )
        )
    write_part10(add_beams(ds, beams, 5), out / "RP.dcm")
    make_rd(p, out, VIEWRAY, 50.0, ptv, plan_class=VIEWRAY_PRIVATE_PLAN, dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "ViewRay MRIdian step-and-shoot IMRT in ViewRay's private RT Plan class"
            " 2.16.840.1.114493.1.2.1.4.1.1.481.5; 12 beams of 2-4 non-nested segments of"
            " comparable MU, no jaws: two MLC layers both typed MLCX (34 and 35 pairs of"
            " 8.3 mm, offset 4.15 mm), each control point has two MLCX items (68 and 70"
            " values, in the definitions' order); SAD 900 mm; DVH present; 77300 capped at"
            " 10 for 12 ports, 77338 x1",
            "77301",
        )
    ]


def case_22(out: Path) -> list[Row]:
    p = Patient(out.name, "RTC-22", "Sample^Case22", body=(0.0, 0.0, 75.0, 95.0))
    target = Roi(2, "Target1", "GTV", 20.0, -10.0, 10.0, 8.0, RED)
    rois = [
        Roi(1, "BODY", "EXTERNAL", 0.0, 0.0, 75.0, 95.0, GREEN),
        target,
        Roi(3, "Brainstem", "ORGAN", 0.0, 25.0, 12.0, 12.0, YELLOW),
        Roi(4, "Chiasm", "ORGAN", -12.0, -22.0, 8.0, 4.0, CYAN),
    ]
    make_ct(p, out, GAMMAPLAN)
    make_rs(p, rois, out, GAMMAPLAN)
    ds = plan_dataset(
        p, "GK_SRS", "Metastasis radiosurgery", GAMMAPLAN, rx_description="Target1", rx_dose=20.0
    )
    # The shots (sectors, collimators, times) stay in GammaPlan; the RT Plan carries one
    # placeholder beam: one jaw pair, control points without device positions and with
    # empty (Type 2) meterset weights, so no FinalCumulativeMetersetWeight (Type 1C).
    b = Dataset()
    b.TreatmentMachineName = "GammaKnife Icon"  # SH: at most 16 characters
    b.PrimaryDosimeterUnit = "MINUTE"
    b.SourceAxisDistance = "401"
    b.BeamLimitingDeviceSequence = seq([item(RTBeamLimitingDeviceType="X", NumberOfLeafJawPairs=1)])
    b.BeamNumber = 1
    b.BeamName = "GK"
    b.BeamDescription = "Gamma Knife treatment"
    b.BeamType = "STATIC"
    b.RadiationType = "PHOTON"
    b.TreatmentDeliveryType = "TREATMENT"
    b.NumberOfWedges = 0
    b.NumberOfCompensators = 0
    b.NumberOfBoli = 0
    b.NumberOfBlocks = 0
    b.NumberOfControlPoints = 2
    first = item(
        ControlPointIndex=0,
        NominalBeamEnergy="1.25",
        GantryAngle="0",
        GantryRotationDirection="NONE",
        BeamLimitingDeviceAngle="0",
        BeamLimitingDeviceRotationDirection="NONE",
        PatientSupportAngle="0",
        PatientSupportRotationDirection="NONE",
        TableTopEccentricAngle="0",
        TableTopEccentricRotationDirection="NONE",
        IsocenterPosition=nums((target.cx, target.cy, 0.0), 1),
    )
    first.CumulativeMetersetWeight = None
    last = item(ControlPointIndex=1)
    last.CumulativeMetersetWeight = None
    b.ControlPointSequence = seq([first, last])
    b.ReferencedPatientSetupNumber = 1
    ds.FractionGroupSequence = seq(
        [
            item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=1,
                NumberOfBeams=1,
                NumberOfBrachyApplicationSetups=0,
                ReferencedBeamSequence=seq([]),
            )
        ]
    )
    ds.BeamSequence = seq([b])
    write_part10(ds, out / "RP.dcm")
    make_rd(p, out, GAMMAPLAN, 20.0, target, dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "Leksell GammaPlan radiosurgery (machine GammaKnife Icon): NumberOfBeams 1 but an empty"
            " ReferencedBeamSequence; the one beam is a placeholder (one jaw pair X, control"
            " points without device positions, empty meterset weights): the shots are not in"
            " the RT Plan; Target1 (GTV), Brainstem and Chiasm contoured; 3-D dose with DVH"
            " references the plan; no 77300",
            "77295",
        )
    ]


def case_23(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        body(1),
        Roi(2, "PTV_Breast", "PTV", 70.0, -60.0, 50.0, 22.0, RED),
        Roi(3, "Heart", "ORGAN", 15.0, 5.0, 38.0, 38.0, MAGENTA),
        Roi(4, "Lung_L", "ORGAN", 85.0, 15.0, 40.0, 45.0, CYAN),
    ]
    make_ct(p, out, ELEKTA)
    make_rs(p, rois, out, ELEKTA)
    ds = plan_dataset(
        p,
        "TANG_AGI",
        "Left breast tangents FiF",
        ELEKTA,
        rx_description="PTV_Breast",
        rx_dose=40.05,
    )
    n = len(AGILITY_BOUNDS) - 1
    in_jaws = [k for k in range(n) if -100.0 <= AGILITY_BOUNDS[k] < 100.0]
    closed = in_jaws[:3]  # y -100..-85: inside the Y jaws, below the breast outline

    def shape(sign: float, pull: Seq[tuple[float, float]], parked: Seq[tuple[float, float]]):
        """Leaves of one segment: the breast outline (open side towards +X for sign +1),
        bank B pulled in by ``pull`` [(|y| limit, mm)], closed pairs parked at
        (centre, gap); pairs behind the Y jaws stand wide apart, as Monaco leaves them."""

        def outline(y: float) -> tuple[float, float] | None:
            if not -85.0 <= y < 100.0:
                return None
            a = 4.0 + 12.0 * (y / 100.0) ** 2
            b = 92.0 - 30.0 * (y / 100.0) ** 2
            for limit, mm in pull:
                if abs(y) < limit:
                    b -= mm
            return (a, b) if sign > 0 else (-b, -a)

        leaves = leaves_from_outline(AGILITY_BOUNDS, outline, math.nan)
        for k, (centre, gap) in zip(closed, parked, strict=True):
            c = centre * sign
            leaves[k], leaves[n + k] = round(c - gap / 2, 1), round(c + gap / 2, 1)
        wide = (4.0, 92.0) if sign > 0 else (-92.0, -4.0)
        for k in range(n):
            if math.isnan(leaves[k]):
                leaves[k], leaves[n + k] = wide
        return leaves

    main_park = ((38.0, 0.6), (45.5, 0.8), (52.0, 1.0))
    sub_park = ((30.0, 0.6), (41.0, 0.8), (60.0, 1.0))
    plans = (
        # name, gantry, sign, MU, [(weight, pull, parked, Y jaws)]
        ("MED", 300.0, 1.0, 228.0, [
            (0.78, (), main_park, (-100.0, 100.0)),
            (0.13, ((60.0, 25.0),), sub_park, (-100.0, 100.0)),
            (0.09, ((60.0, 25.0), (35.0, 15.0)), sub_park, (-100.0, 101.0)),
        ]),
        ("LAT", 120.0, -1.0, 224.0, [
            (0.76, (), main_park, (-100.0, 100.0)),
            (0.10, ((70.0, 20.0),), sub_park, (-100.0, 100.0)),
            (0.08, ((50.0, 30.0),), main_park, (-100.0, 100.0)),
            (0.06, ((50.0, 30.0), (25.0, 12.0)), sub_park, (-100.0, 100.0)),
        ]),
    )  # fmt: skip
    beams = []
    for number, (name, gantry, sign, mu, segments) in enumerate(plans, 1):
        states = []
        cumulative = 0.0
        for k, (w, pull, parked, y_jaws) in enumerate(segments):
            limits = {"ASYMY": list(y_jaws), "MLCX": shape(sign, pull, parked)}
            start = round(cumulative, 5)
            cumulative += w
            end = round(cumulative, 5) if k < len(segments) - 1 else 1.0
            for weight in (start, end):
                states.append(
                    CP(gantry=gantry, weight=weight, limits=limits, iso=TANGENT_ISO, ssd=910.0)
                )
        beams.append(
            Beam(
                number,
                name,
                f"Tangent field-in-field, gantry {gantry:g}, {len(segments)} segments",
                states,
                mu,
                1.335,
                machine="Agility2",
                bounds=AGILITY_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 15), out / "RP.dcm")
    make_rd(p, out, ELEKTA, 40.05, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "Monaco-style breast tangents on Agility (80 pairs of 5 mm, ASYMY and MLCX, no X"
            " jaws): main aperture 78%/76% of MU plus 2 and 3 nested sub-segments; three"
            " closed pairs inside the Y jaws parked at 0.6-1.0 mm gaps at different X in"
            " different segments; in MED's last sub-segment Y2 moves from 100 to 101 mm and"
            " exposes a 1 mm sliver of a pair whose leaves stand wide apart behind the jaw;"
            " DVH present; 77300 x2, 77334 x2",
            "77295",
        )
    ]


def case_24(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        body(1),
        Roi(2, "PTV_ChestWall", "PTV", 60.0, -68.0, 50.0, 14.0, RED),
        Roi(3, "Heart", "ORGAN", 15.0, 5.0, 38.0, 38.0, MAGENTA),
        Roi(4, "Lung_L", "ORGAN", 85.0, 15.0, 40.0, 45.0, CYAN),
    ]
    iso = (60.0, -65.0, 0.0)
    make_ct(p, out, VARIAN)
    make_rs(p, rois, out, VARIAN)
    ds = plan_dataset(
        p, "CW_2SEG", "Left chest wall tangents", VARIAN, rx_description="PTV_ChestWall",
        rx_dose=42.56,
    )  # fmt: skip

    def outline(sign: float, pull: float) -> Outline:
        def f(y: float) -> tuple[float, float] | None:
            if abs(y) >= 95.0:
                return None
            a = 3.0 + 10.0 * (y / 95.0) ** 2
            b = 85.0 - 25.0 * (y / 95.0) ** 2
            if abs(y + 10.0) < 30.0:  # the hot spot, a little inferior of the isocentre
                b -= pull
            return (a, b) if sign > 0 else (-b, -a)

        return f

    beams = []
    for number, (name, gantry, sign, mu) in enumerate(
        (("MED", 305.0, 1.0, 221.0), ("LAT", 125.0, -1.0, 218.0)), 1
    ):
        park = -5.0 if sign > 0 else 5.0
        x = [0.0, 90.0] if sign > 0 else [-90.0, 0.0]
        shapes = [
            leaves_from_outline(MILLENNIUM_BOUNDS, outline(sign, 0.0), park),
            leaves_from_outline(MILLENNIUM_BOUNDS, outline(sign, 30.0), park),
        ]
        states = []
        for k, w in enumerate((0.0, 0.81, 0.81, 1.0)):
            limits = {"ASYMX": x, "ASYMY": [-95.0, 95.0], "MLCX": shapes[k // 2]}
            states.append(CP(gantry=gantry, weight=w, limits=limits, iso=iso, ssd=905.0))
        beams.append(
            Beam(
                number,
                name,
                f"Tangent two segments, gantry {gantry:g}",
                states,
                mu,
                1.33,
                machine="TrueBeam2",
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 16), out / "RP.dcm")
    make_rd(p, out, VARIAN, 42.56, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "forward-planned chest-wall tangents, Millennium 120: each beam exactly two"
            " static segments, the main aperture (81% of MU) and one nested sub-segment"
            " blocking a hot spot; PTV_ChestWall, Heart and Lung_L; DVH present; 77300 x2,"
            " 77334 x2",
            "77295",
        )
    ]


I125_HALF_LIFE_DAYS = 59.4
I125_MEAN_LIFE_S = I125_HALF_LIFE_DAYS * 86400.0 / math.log(2.0)


def seed_needles() -> list[tuple[float, float, int, int]]:
    """36 needles through a 5 mm perineal template: (x, y, seeds, source number).

    Template holes inside the prostate outline, away from the urethra; 2-4 seeds each
    at 10 mm spacing; peripheral needles carry the stronger source model (1)."""
    holes = []
    for y in np.arange(-5.0, 30.0, 5.0):
        for x in np.arange(-20.0, 25.0, 5.0):
            r = math.hypot(x / 22.0, (y - 10.0) / 18.0)
            if r <= 0.97 and math.hypot(x, y - 8.0) > 6.0:
                holes.append((float(x), float(y), r))
    holes = sorted(holes, key=lambda h: (round(h[2], 6), h[1], h[0]))[:36]
    holes.sort(key=lambda h: (h[1], h[0]))
    needles = []
    for i, (x, y, r) in enumerate(holes):
        needles.append((x, y, 2 + (i * 7) % 3, 1 if r > 0.7 else 2))
    return needles


def case_25(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = [
        Roi(1, "Prostate", "CTV", 0.0, 10.0, 22.0, 18.0, RED),
        Roi(2, "PTV", "PTV", 0.0, 10.0, 25.0, 21.0, MAGENTA),
        Roi(3, "Urethra", "ORGAN", 0.0, 8.0, 3.0, 3.0, YELLOW),
        Roi(4, "Rectum", "ORGAN", 0.0, 42.0, 16.0, 10.0, ORANGE),
    ]
    make_ct(p, out, VARISEED)
    make_rs(p, rois, out, VARISEED)
    ds = plan_dataset(p, "PSI_I125", "Prostate seed implant", VARISEED, rx_description="PTV")
    ds.BrachyTreatmentTechnique = "INTERSTITIAL"
    ds.BrachyTreatmentType = "LDR"
    ds.TreatmentMachineSequence = seq(
        [
            item(
                Manufacturer="Varian Medical Systems",
                ManufacturerModelName="VariSeed",
                TreatmentMachineName="MANUAL_SEEDS",
            )
        ]
    )
    strengths = {1: 0.508, 2: 0.381}  # reference air kerma rate, U (uGy m2 / h)
    ds.SourceSequence = seq(
        item(
            SourceNumber=number,
            SourceType="LINE",
            SourceManufacturer="Sample Isotopes",
            SourceModelID=model,
            ActiveSourceDiameter="0.8",
            ActiveSourceLength="3",
            SourceIsotopeName="I-125",
            SourceIsotopeHalfLife=num(I125_HALF_LIFE_DAYS, 2),
            ReferenceAirKermaRate=num(strengths[number], 3),
            SourceStrengthReferenceDate="20260102",
            SourceStrengthReferenceTime="120000",
        )
        for number, model in ((1, "SI-125A"), (2, "SI-125B"))
    )
    channels = []
    total_kerma = 0.0
    for number, (x, y, n_seeds, source) in enumerate(seed_needles(), 1):
        cps = []
        for k in range(n_seeds):
            z = -10.0 * (n_seeds - 1) / 2 + 10.0 * k
            for w in (k, k + 1):
                cps.append(
                    item(
                        ControlPointIndex=len(cps),
                        ControlPointRelativePosition=num(30.0 - z, 1),
                        ControlPoint3DPosition=nums((x, y, z), 1),
                        CumulativeTimeWeight=num(w),
                    )
                )
        # FIXED sources stay for good: each seed's time is the I-125 mean life.
        total_time = n_seeds * I125_MEAN_LIFE_S
        total_kerma += strengths[source] * total_time / 3600.0
        row_letter = "ABCDEFGHIJK"[int((x + 25.0) / 5.0)]
        channels.append(
            item(
                NumberOfControlPoints=len(cps),
                ChannelNumber=number,
                ChannelLength="200",
                ChannelTotalTime=num(total_time, 1),
                SourceMovementType="FIXED",
                SourceApplicatorNumber=number,
                SourceApplicatorID=f"Needle {row_letter}{(y + 10.0) / 5.0:g}",
                SourceApplicatorType="RIGID",
                SourceApplicatorLength="200",
                FinalCumulativeTimeWeight=num(n_seeds),
                ReferencedSourceNumber=source,
                BrachyControlPointSequence=seq(cps),
            )
        )
    ds.ApplicationSetupSequence = seq(
        [
            item(
                ApplicationSetupType="PERINEAL",
                ApplicationSetupNumber=1,
                ApplicationSetupName="Prostate template",
                TotalReferenceAirKerma=num(total_kerma, 1),
                ChannelSequence=seq(channels),
            )
        ]
    )
    ds.FractionGroupSequence = seq(
        [
            item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=1,
                NumberOfBeams=0,
                NumberOfBrachyApplicationSetups=1,
                ReferencedBrachyApplicationSetupSequence=seq(
                    [
                        item(
                            BrachyApplicationSetupDose="145",
                            ReferencedBrachyApplicationSetupNumber=1,
                        )
                    ]
                ),
            )
        ]
    )
    write_part10(ds, out / "RP.dcm")
    needles = seed_needles()
    seeds = sum(n for _, _, n, _ in needles)
    by_source = {s: sum(n for _, _, n, src in needles if src == s) for s in (1, 2)}
    return [
        row(
            "RP.dcm",
            f"LDR permanent prostate implant (INTERSTITIAL, LDR), no beams: {len(needles)}"
            f" needles as channels, {seeds} seeds ({by_source[1]} of source 1, 0.508 U;"
            f" {by_source[2]} of source 2, 0.381 U), 2 source types (I-125 models SI-125A and"
            " SI-125B) in SourceSequence; a needle holds 2-4 seeds; each seed is one pair of"
            " BrachyControlPoints at the same ControlPoint3DPosition, CumulativeTimeWeight"
            " rising by 1 (SourceMovementType FIXED, FinalCumulativeTimeWeight = seeds,"
            " ChannelTotalTime = seeds x I-125 mean life); count seeds, not source types or"
            " channels",
            "77318",
        )
    ]


def case_26(out: Path) -> list[Row]:
    p = patient_for(out.name)
    ds = plan_dataset(
        p,
        "OPEN40",
        "Abdomen open 40x40",
        ELEKTA,
        rs_reference=False,
        rx_description="Abdomen",
        rx_dose=8.0,
    )
    n = len(AGILITY_BOUNDS) - 1
    corner = (161.0, 174.0, 183.0, 189.0, 194.0, 197.0)  # outermost pair first
    reach = [200.0] * n
    for k, r in enumerate(corner):
        reach[k] = reach[n - 1 - k] = r
    leaves = [-r for r in reach] + reach
    limits = {"ASYMX": [-200.0, 200.0], "ASYMY": [-200.0, 200.0], "MLCX": leaves}
    beam = Beam(
        1,
        "AP",
        "AP open 40 x 40, corner leaves",
        static_states(0.0, limits, energy=10.0, ssd=1000.0),
        412.0,
        8.0,
        machine="VersaHD1",
        bounds=AGILITY_BOUNDS,
    )
    write_part10(add_beams(ds, [beam], 1), out / "RP.dcm")
    return [
        row(
            "RP.dcm",
            "one static 10 MV AP field, jaws at +/-200 mm (40 x 40 cm), Agility MLC open with"
            " only the six outermost pairs at each end retracted to 161-197 mm (rounded"
            " corners inside the jaw edge); all other pairs at the jaw edge; no 77334",
            "77306",
        )
    ]


def case_27(out: Path) -> list[Row]:
    p = patient_for(out.name)
    rois = pelvis_rois(with_ctv=False)
    make_ct(p, out, PHILIPS)
    make_rs(p, rois, out, PHILIPS)
    ds = plan_dataset(
        p, "PELV3F", "Pelvis three field FiF", PHILIPS, rx_description="PTV", rx_dose=50.4
    )

    def aperture(half_x: float, pull: float, edge: bool) -> Outline:
        """The PTV outline with bank B pulled in by ``pull`` over the hot spot (|y| < 20);
        ``edge``: only the inferior part (y < -10) of it, opened 8 mm beyond the outline
        on both banks for -55 < y < -35 (four 5 mm pairs), as a planner boosting a cold
        edge does: 6-7% of that segment's open area lies outside the main aperture."""
        base = ellipse_outline(half_x, 62.0)

        def f(y: float) -> tuple[float, float] | None:
            span = base(y)
            if span is None or (edge and y >= -10.0):
                return None
            a, b = span
            if abs(y) < 20.0:
                b -= pull
            if edge and -55.0 < y < -35.0:
                a, b = a - 8.0, b + 8.0
            return (a, b)

        return f

    fields = (
        # name, gantry, MU, [(weight, pull, edge)]
        ("PA", 180.0, 118.0, [(0.84, 0.0, False), (0.11, 18.0, False), (0.05, 0.0, True)]),
        ("LLAT", 90.0, 104.0, [(0.86, 0.0, False), (0.14, 15.0, False)]),
        ("RLAT", 270.0, 105.0, [(0.85, 0.0, False), (0.10, 15.0, False), (0.05, 0.0, True)]),
    )  # fmt: skip
    beams = []
    for number, (name, gantry, mu, segments) in enumerate(fields, 1):
        half_x = bev_half_width(50.0, 45.0, gantry) + 7.0
        jaw = conformal_limits(MILLENNIUM_BOUNDS, ellipse_outline(half_x, 62.0), 62.0)
        x1, x2 = jaw["ASYMX"]
        states = []
        cumulative = 0.0
        for k, (w, pull, edge) in enumerate(segments):
            leaves = leaves_from_outline(MILLENNIUM_BOUNDS, aperture(half_x, pull, edge), x1 - 5)
            limits = {"ASYMX": [x1, x2], "ASYMY": jaw["ASYMY"], "MLCX": leaves}
            start = round(cumulative, 5)
            cumulative += w
            end = round(cumulative, 5) if k < len(segments) - 1 else 1.0
            for weight in (start, end):
                states.append(
                    CP(gantry=gantry, weight=weight, limits=limits, iso=PELVIS_ISO, ssd=900.0)
                )
        beams.append(
            Beam(
                number,
                name,
                f"{name} field-in-field, {len(segments)} segments",
                states,
                mu,
                0.6,
                machine="Linac_SS",
                bounds=MILLENNIUM_BOUNDS,
            )
        )
    write_part10(add_beams(ds, beams, 28), out / "RP.dcm")
    make_rd(p, out, PHILIPS, 50.4, rois[1], dvh_rois=rois)
    return [
        row(
            "RP.dcm",
            "borderline forward plan: three fields, main aperture conformal to the PTV"
            " (84-86% of MU) plus a nested hot-spot sub-segment; PA and RLAT add a third"
            " segment (5% of MU) over the inferior PTV that opens 8 mm beyond the main"
            " aperture on four pairs, 6.4% and 7.0% of its open area outside; DVH present;"
            " 77301 is the alternative (a flag); 77300 x3, 77334 x3",
            "77295",
        )
    ]


CASES: dict[str, Callable[[Path], list[Row]]] = {
    "01_single_open_field": case_01,
    "02_ap_pa_open": case_02,
    "03_two_mlc_fields_no_oar": case_03,
    "04_breast_tangents_wedged": case_04,
    "05_breast_tangents_fif": case_05,
    "06_four_field_box_3d": case_06,
    "07_four_field_box_no_rtstruct": case_07,
    "08_electron_cutout": case_08,
    "09_imrt_step_and_shoot_7f": case_09,
    "10_imrt_sliding_window": case_10,
    "11_vmat_two_arcs": case_11,
    "12_dynamic_conformal_arcs": case_12,
    "13_multiple_isocentres": case_13,
    "14_setup_and_imaging_beams": case_14,
    "15_qa_verification_plan": case_15,
    "16_hdr_brachy": case_16,
    "17_proton_pbs": case_17,
    "18_duplicate_sop_uid": case_18,
    "19_machine_qa_intent": case_19,
    "20_halcyon_private_class": case_20,
    "21_mridian_two_mlcx_layers": case_21,
    "22_gamma_knife_placeholder_beam": case_22,
    "23_agility_fif_jaw_sliver": case_23,
    "24_chest_wall_two_segments": case_24,
    "25_ldr_seed_implant": case_25,
    "26_open_40x40_corner_leaves": case_26,
    "27_fif_borderline_outside_segment": case_27,
}


# --------------------------------------------------------------------------
# charges for `rtcode audit`
# --------------------------------------------------------------------------

PLAN_DAY, APPROVED_DAY = "2026-01-05", "2026-01-06"  # RTPlanDate; ReviewDate of approved plans
# Invented unit fees (not a fee schedule): they only show the money-weighted summary.
UNIT_FEE = {
    "77280": 150, "77290": 250, "77295": 450, "77300": 60, "77301": 900, "77306": 120,
    "77307": 180, "77316": 200, "77317": 300, "77318": 400, "77331": 80, "77334": 95,
    "77338": 350, "77386": 400,
}  # fmt: skip
# What `rtcode scan sample_data` codes for each billable plan: patient, plan label,
# approved (charges dated on the ReviewDate, else on the RTPlanDate), codes and units.
# Case 18 bills the wedged version (RP_b.dcm) of its two same-UID plans.
BILLED_PLANS = [
    ("RTC-01", "SINGLE", False, [("77306", 1)]),
    ("RTC-02", "APPA", False, [("77306", 1)]),
    ("RTC-03", "LATS", False, [("77307", 1), ("77334", 2)]),
    ("RTC-04", "TANG_W", False, [("77307", 1), ("77334", 2)]),
    ("RTC-05", "TANG_FIF", False, [("77295", 1), ("77300", 2), ("77334", 2)]),
    ("RTC-06", "FOURFIELD", True, [("77295", 1), ("77300", 4), ("77334", 4)]),
    ("RTC-07", "FOURFIELD", False, [("77307", 1), ("77334", 4)]),
    ("RTC-08", "ELEC", False, [("77307", 1), ("77334", 1)]),
    ("RTC-09", "IMRT7F", True, [("77301", 1), ("77300", 7), ("77338", 1)]),
    ("RTC-10", "HN_SW", False, [("77301", 1), ("77300", 5), ("77338", 1)]),
    ("RTC-11", "VMAT2A", False, [("77301", 1), ("77300", 2), ("77338", 1)]),
    ("RTC-12", "DCA3", False, [("77295", 1), ("77300", 3), ("77334", 3)]),
    ("RTC-13", "SPINE2ISO", False, [("77307", 1)]),
    ("RTC-14", "APPA_SETUP", False, [("77306", 1)]),
    ("RTC-16", "HDR_FS", True, [("77317", 1)]),
    ("RTC-17", "PBS2F", False, [("77301", 1), ("77300", 2)]),
    ("RTC-18", "APPA", False, [("77307", 1), ("77334", 2)]),
    # Cases 20-27: what the fixed rtcode codes. 12 MRIdian ports give 10 units of 77300,
    # the most per date of service (related.max_basic_dosimetry_per_date).
    ("RTC-20", "HAL_4F", False, [("77295", 1), ("77300", 4), ("77334", 4)]),
    ("RTC-21", "PANC_IMRT", False, [("77301", 1), ("77300", 10), ("77338", 1)]),
    ("RTC-22", "GK_SRS", False, [("77295", 1)]),
    ("RTC-23", "TANG_AGI", False, [("77295", 1), ("77300", 2), ("77334", 2)]),
    ("RTC-24", "CW_2SEG", False, [("77295", 1), ("77300", 2), ("77334", 2)]),
    ("RTC-25", "PSI_I125", False, [("77318", 1)]),
    ("RTC-26", "OPEN40", False, [("77306", 1)]),
    ("RTC-27", "PELV3F", False, [("77295", 1), ("77300", 3), ("77334", 3)]),
]
# Their clean rows follow the planted file's rejected rows, so that the line numbers of
# the planted rows (README, tests) stay those of the first nineteen cases.
LATER_PATIENTS = ("RTC-20", "RTC-21", "RTC-22", "RTC-23", "RTC-24", "RTC-25", "RTC-26", "RTC-27")
CHARGE_HEADER = ("patient_id", "date_of_service", "cpt", "units", "modifiers", "plan", "fee")


@dataclass(frozen=True)
class ChargeRow:
    patient: str
    day: str
    cpt: str
    units: int = 1
    modifiers: str = ""
    plan: str = ""
    note: str = ""  # why the row is in the planted file ("" for a clean row)
    fee: str | None = None  # None: units x UNIT_FEE

    def cells(self) -> list[str]:
        fee = self.fee
        if fee is None:
            fee = f"{UNIT_FEE[self.cpt] * self.units:.2f}" if self.cpt in UNIT_FEE else ""
        return [self.patient, self.day, self.cpt, str(self.units), self.modifiers, self.plan, fee]


def clean_charges() -> list[ChargeRow]:
    return [
        ChargeRow(patient, APPROVED_DAY if approved else PLAN_DAY, code, units, plan=label)
        for patient, label, approved, codes in BILLED_PLANS
        for code, units in codes
    ]


def planted_charges() -> tuple[list[ChargeRow], list[str]]:
    """The clean charges with one planted error of every audit finding kind; also the
    notes on planted changes that leave no row behind."""
    changed = {
        ("RTC-03", "77307"): [
            dict(cpt="77306", note="code_lower_than_plan: 77306 billed, the plan's MLC-shaped"
                 " fields make it complex (77307)"),
        ],
        ("RTC-05", "77295"): [
            dict(cpt="77301", note="code_higher_than_plan: 77301 billed, the plan is"
                 " field-in-field (3-D 77295), not IMRT"),
        ],
        ("RTC-06", "77295"): [
            dict(day=PLAN_DAY, note="charge_before_approval: dated 2026-01-05, the plan was"
                 " approved on 2026-01-06 (ReviewDate)"),
        ],
        ("RTC-08", "77307"): [
            dict(day="2026-06-30", note="charge_timing_unverifiable: dated 176 days after the"
                 " plan, beyond the 45-day course window"),
        ],
        ("RTC-10", "77338"): [],
        ("RTC-11", "77301"): [
            {},
            dict(note="frequency: a second 77301 in one course on one planning CT"),
        ],
    }  # fmt: skip
    added = {
        "RTC-02": [
            ChargeRow("RTC-02", PLAN_DAY, "77280", plan="APPA", note="ncci_ptp (with"
                      " ptp_synthetic.txt): 77280 with 77290 on one date, no modifier"),
            ChargeRow("RTC-02", PLAN_DAY, "77290", plan="APPA", note="the column 1 code of"
                      " that pair"),
        ],
        "RTC-04": [
            ChargeRow("RTC-04", PLAN_DAY, "77331", plan="TANG_W", note="needs_documentation:"
                      " special dosimetry cannot be proved from plan files (info, not an error)"),
        ],
        "RTC-09": [
            ChargeRow("RTC-09", APPROVED_DAY, "77295", plan="IMRT7F", note="bundled_pair: 77295"
                      " with 77301 in one course (Medicare Claims Processing Manual ch. 4"
                      " s. 200.3.1)"),
        ],
        "RTC-10": [
            ChargeRow("RTC-10", PLAN_DAY, "77386", plan="HN_SW", note="code_not_in_force:"
                      " IMRT delivery 77386 ended on 2025-12-31"),
        ],
        "RTC-12": [
            ChargeRow("RTC-12", PLAN_DAY, "77338", plan="DCA3", note="billed_not_supported:"
                      " 77338 (MLC device for IMRT) billed, dynamic conformal arcs are not IMRT"),
        ],
        "RTC-13": [
            ChargeRow("RTC-13", PLAN_DAY, "77300", 2, plan="SPINE2ISO", note="bundled_pair:"
                      " 77300 with isodose plan 77307 (CPT 2015)"),
        ],
        "RTC-14": [
            ChargeRow("RTC-14", PLAN_DAY, "77290", plan="APPA_SETUP", note="not an error: the"
                      " same PTP pair as RTC-02 ..."),
            ChargeRow("RTC-14", PLAN_DAY, "77280", modifiers="XS", plan="APPA_SETUP",
                      note="... with modifier XS, which the edit's modifier indicator 1 allows"),
        ],
    }  # fmt: skip
    rows: list[ChargeRow] = []
    for patient, _label, _approved, _codes in BILLED_PLANS:
        if patient in LATER_PATIENTS:
            continue
        for r in clean_charges():
            if r.patient != patient:
                continue
            for change in changed.get((r.patient, r.cpt), [{}]):
                rows.append(replace(r, **change))
        rows += added.get(patient, [])
    rows += [
        ChargeRow("QA-PHANTOM", PLAN_DAY, "77301", plan="QA_VMAT", note="billed_not_supported:"
                  " the verification plan of RTC-11 (phantom) billed; verification plans are"
                  " never billed"),
        ChargeRow("RTC-01", PLAN_DAY, "7730X", plan="SINGLE", fee="60.00", note="rejected:"
                  " unknown code"),
        ChargeRow("RTC-02", "01/05/2026", "77306", plan="APPA", note="rejected: the date is"
                  " not an ISO date"),
        ChargeRow("", PLAN_DAY, "77300", note="rejected: no patient ID"),
    ]  # fmt: skip
    rows += [r for r in clean_charges() if r.patient in LATER_PATIENTS]
    omitted = [
        "RTC-10: its 77338 row is left out: expected_not_billed (the sliding-window IMRT plan"
        " supports the MLC device 77338)"
    ]
    return rows, omitted


PTP_SYNTHETIC = (
    "Synthetic NCCI procedure-to-procedure edits for rtcode's sample data.\n"
    "INVENTED for testing: these are NOT CMS edits. The layout is that of the CMS\n"
    "Medicare PTP edit files (tab-delimited text).\n"
    "Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\t"
    "Deletion Date *=no data\tModifier 0=not allowed 1=allowed 9=not applicable\t"
    "PTP Edit Rationale\n"
    "77290\t77280\t\t20000101\t*\t1\tSynthetic: one simulation per date\n"
    "77295\t77300\t\t20160101\t20160101\t9\t"
    "Synthetic: deleted retroactively (coding-rules: 77295 with 77300 is allowed)\n"
    "77300\t77280\t\t20100101\t20200101\t0\tSynthetic: deleted on 2020-01-01\n"
    "77307\t77306\t\t20000101\t*\t0\tSynthetic: mutually exclusive isodose plans\n"
)


def _write_csv(path: Path, rows: list[ChargeRow]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CHARGE_HEADER)
        for r in rows:
            writer.writerow(r.cells())
    return path


def write_charges(out_dir: Path) -> tuple[list[Path], str]:
    """Write the clean and planted charges files and the synthetic PTP file; return them
    and the README section that explains every planted row."""
    planted, omitted = planted_charges()
    paths = [
        _write_csv(out_dir / "charges_clean.csv", clean_charges()),
        _write_csv(out_dir / "charges_planted.csv", planted),
    ]
    ptp = out_dir / "ptp_synthetic.txt"
    ptp.write_text(PTP_SYNTHETIC, encoding="utf-8", newline="\n")
    paths.append(ptp)
    lines = [
        "",
        "## Charges for `rtcode audit`",
        "",
        "`charges_clean.csv` bills exactly what `rtcode scan sample_data` codes: each",
        "billable plan's planning code with its 77300, 77338 and device units (case 18:",
        "the wedged version, `RP_b.dcm`), dated on the plan's ReviewDate when it is",
        "approved (cases 06, 09, 16) and on its RTPlanDate otherwise. Its audit has no",
        "finding (that most plans are UNAPPROVED is noted per course). The fees are",
        "invented.",
        "",
        "`charges_planted.csv` is the same file with one planted error of every finding",
        "kind, and three rows that must be rejected. `ptp_synthetic.txt` holds four",
        "invented PTP edits (not CMS edits) in the CMS layout: 77290/77280 (modifier",
        "indicator 1), 77295/77300 deleted on the day it took effect (indicator 9),",
        "77300/77280 deleted in 2020, and 77307/77306 (indicator 0).",
        "",
        "    rtcode audit sample_data --charges sample_data/charges_clean.csv",
        "    rtcode audit sample_data --charges sample_data/charges_planted.csv"
        " --ptp sample_data/ptp_synthetic.txt",
        "",
        "Planted rows (line numbers of `charges_planted.csv`, the header is line 1):",
        "",
    ]
    for number, r in enumerate(planted, start=2):
        if r.note:
            units = f" x{r.units}" if r.units != 1 else ""
            mods = f"-{r.modifiers}" if r.modifiers else ""
            who = r.patient or "(no patient)"
            lines.append(f"- line {number}: {who} {r.cpt}{mods}{units}, {r.day}: {r.note}")
    for note in omitted:
        lines.append(f"- no line: {note}")
    return paths, "\n".join(lines) + "\n"


README_INTRO = """\
# Sample data

Small, synthetic DICOM-RT exports for trying and testing rtcode. Every patient,
plan and number here is invented; nothing comes from a real patient or a real
export. The files are generated by `scripts/make_sample_data.py`; do not edit
them by hand. To regenerate (the output is byte-identical from run to run):

    python scripts/make_sample_data.py            # writes sample_data/
    python scripts/make_sample_data.py OTHER_DIR  # writes elsewhere

Each folder is one patient. CT slices (`CT.1.dcm`..`CT.3.dcm`, 32x32) come with a
structure set (`RS.dcm`) or a dose (`RD.dcm`). The plan is `RP.dcm` (`RN.dcm` for
the ion plan; case 02 is a raw data set without preamble or file meta; case 18 has
two plans sharing one SOP Instance UID). Cases 20 to 27 reproduce what real
department exports do: vendor-private SOP classes and two-layer MLCs (Halcyon,
MRIdian), a Gamma Knife plan whose beam is a placeholder, Monaco leaf and jaw
habits, an LDR seed implant, a corner-rounded open field and a borderline
field-in-field plan. The table gives the planning code rtcode should suggest for
each plan file.

"""


def write_readme(out_dir: Path, rows: list[tuple[str, Row]], extra: str = "") -> Path:
    lines = [
        "| case | plan file | what it shows | code | category |",
        "|---|---|---|---|---|",
    ]
    for case, r in rows:
        shows = r.shows.replace("|", "/")
        lines.append(f"| {case} | {case}/{r.plan_file} | {shows} | {r.code} | {r.category} |")
    path = out_dir / "README.md"
    text = README_INTRO + "\n".join(lines) + "\n" + extra
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def write_sample_data(out_dir: Path) -> list[Path]:
    """Write every case folder and README.md into ``out_dir``; return the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, Row]] = []
    for case, build in CASES.items():
        folder = out_dir / case
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        rows += [(case, r) for r in build(folder)]
    written = sorted(p for case in CASES for p in (out_dir / case).iterdir())
    charges, charges_readme = write_charges(out_dir)
    written += charges
    written.append(write_readme(out_dir, rows, charges_readme))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write synthetic DICOM-RT sample patients for rtcode."
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="output folder (default: sample_data/)",
    )
    args = parser.parse_args(argv)
    paths = write_sample_data(args.out_dir)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
