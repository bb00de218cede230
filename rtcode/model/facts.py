"""Facts read from DICOM-RT files: typed, frozen, units in the names.

These are plain values: nothing here knows pydicom or the file system. ``None``
always means "absent from the file", never "zero" or "no".

DICOM paths (``dicom_path``) use pydicom's ``file::Sequence[i].Keyword`` form so
that every number can be traced back to the element it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # arrays are made by the extractor; a rescan from the cache needs no numpy
    import numpy as np


class Modality(str, Enum):
    """The RT objects rtcode reads (PS3.3 C.7.3.1 Modality, SOP classes in PS3.4 B.5)."""

    RTPLAN = "RTPLAN"
    RTIONPLAN = "RTIONPLAN"
    RTDOSE = "RTDOSE"
    RTSTRUCT = "RTSTRUCT"


# SOP Class UIDs (PS3.4 Annex B.5) of the objects rtcode keeps.
SOP_CLASS_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.481.5": Modality.RTPLAN,
    "1.2.840.10008.5.1.4.1.1.481.8": Modality.RTIONPLAN,
    "1.2.840.10008.5.1.4.1.1.481.2": Modality.RTDOSE,
    "1.2.840.10008.5.1.4.1.1.481.3": Modality.RTSTRUCT,
}


@dataclass(frozen=True)
class Oddity:
    """Something in a file that bends the standard and was read anyway: a vendor quirk
    (``rtcode/dicom/vendors.py`` lists the known ones), or a contradiction inside the file
    that does not change the code. It reaches the output as a flag with its DICOM
    path; it never stops a plan from being coded."""

    flag: str  # e.g. "private_sop_class", "mlc_layers_share_a_type"
    message: str  # a sentence a physicist can read
    dicom_path: str | None = None
    severity: str = "info"  # "info" (a known quirk, read as documented) or "warning"


# --------------------------------------------------------------------------- beams


@dataclass(frozen=True)
class Wedge:
    number: int | None
    wedge_type: str | None  # STANDARD, DYNAMIC, MOTORIZED (PS3.3 C.8.8.14.1)
    wedge_id: str | None
    angle_deg: float | None
    orientation_deg: float | None
    dicom_path: str


@dataclass(frozen=True)
class Block:
    block_type: str | None  # APERTURE or SHIELDING
    name: str | None
    material: str | None
    number_of_points: int | None
    tray_id: str | None
    dicom_path: str


@dataclass(frozen=True)
class Applicator:
    applicator_id: str | None
    applicator_type: str | None  # ELECTRON_SQUARE, ..., STEREOTACTIC (PS3.3 C.8.8.14.1)
    dicom_path: str


@dataclass(frozen=True)
class BeamLimitingDevice:
    """A jaw pair or an MLC bank pair from BeamLimitingDeviceSequence."""

    # X, Y, ASYMX, ASYMY, MLCX, MLCY, MLCX1, MLCX2 ... as written; a later layer of a
    # type the beam declares twice (ViewRay: two MLCX) is keyed "MLCX#2", so that its
    # positions (ControlPoints.positions_mm) keep their own key.
    device_type: str
    number_of_pairs: int
    leaf_boundaries_mm: tuple[float, ...] | None  # MLCs only: pairs + 1 values

    @property
    def is_mlc(self) -> bool:
        return self.device_type.startswith("MLC")

    @property
    def travel_axis(self) -> str:
        """'X' or 'Y': the axis along which jaws or leaves move."""
        written = self.device_type.partition("#")[0]  # "MLCY#2": the type as written
        return "Y" if written.rstrip("12").endswith("Y") else "X"


@dataclass(frozen=True, eq=False)
class ControlPoints:
    """A beam's control points with values carried forward, as arrays.

    Later control points omit values that did not change; they are filled in
    from the previous control point here. ``positions_mm`` maps each
    beam-limiting device type to an (n_control_points, 2 * pairs) array
    (bank A / X1 / Y1 values first), NaN where no control point ever gave it.
    """

    cumulative_meterset_weight: np.ndarray  # (n,), NaN when absent
    gantry_deg: np.ndarray  # (n,)
    gantry_direction: tuple[str | None, ...]  # CW, CC, NONE per control point
    collimator_deg: np.ndarray
    couch_deg: np.ndarray
    isocenter_mm: np.ndarray  # (n, 3)
    nominal_energy: np.ndarray  # MV for photons, MeV for electrons and ions
    positions_mm: dict[str, np.ndarray]
    dicom_path: str  # path of the control point sequence

    @property
    def count(self) -> int:
        return int(self.cumulative_meterset_weight.shape[0])

    # Pickled (to and from worker processes, into the scan cache), leaf positions are
    # most of a plan's bytes. Written in the file as decimals with one to three
    # places, a large positions array is kept as small integers and a power of ten
    # when that gives back every value to the bit (_Scaled); every other array is
    # kept as it is (small ones cost more to check than they would save).

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["positions_mm"] = {k: _scaled(v) for k, v in self.positions_mm.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = {k: _unscaled(v) for k, v in state.items()}
        state["positions_mm"] = {k: _unscaled(v) for k, v in state["positions_mm"].items()}
        for name, value in state.items():
            object.__setattr__(self, name, value)


class _Scaled:
    """An array of float64 kept as ``integers / power`` (power: 10, 100 or 1000)."""

    __slots__ = ("integers", "power")

    def __init__(self, integers: np.ndarray, power: float) -> None:
        self.integers = integers
        self.power = power

    def __reduce__(self) -> tuple[type[_Scaled], tuple[np.ndarray, float]]:
        return _Scaled, (self.integers, self.power)


_SCALED_FROM = 256  # values in an array worth keeping as integers


def _scaled(value: Any) -> Any:
    """A float64 array of ``_SCALED_FROM`` values or more as ``_Scaled`` when that
    gives back every value to the bit; anything else (NaN, more places, a small
    array, not an array) as it is."""
    import numpy as np  # loaded: there are arrays to pickle

    if not isinstance(value, np.ndarray) or value.size < _SCALED_FROM:
        return value
    if value.dtype != np.float64 or not np.isfinite(value).all():
        return value
    bits = value.view(np.int64)
    top = np.abs(value).max()
    for power in (10.0, 100.0, 1000.0):
        if top > (2**31 - 2) / power:
            return value
        whole = np.rint(value * power)
        biggest = np.abs(whole).max()
        integers = whole.astype(np.int16 if biggest <= 2**15 - 1 else np.int32)
        if np.array_equal((integers.astype(np.float64) / power).view(np.int64), bits):
            return _Scaled(integers, power)  # checked as it will be read back (-0.0 is not)
    return value


def _unscaled(value: Any) -> Any:
    """The array ``_scaled`` was given, read-only as the extractor leaves it."""
    if isinstance(value, _Scaled):
        value = value.integers.astype("float64") / value.power
    if hasattr(value, "setflags"):
        value.setflags(write=False)
    return value


@dataclass(frozen=True, eq=False)
class Beam:
    number: int | None
    name: str | None
    description: str | None
    beam_type: str | None  # STATIC or DYNAMIC
    radiation_type: str | None  # PHOTON, ELECTRON, PROTON, ION, NEUTRON
    delivery_type: str | None  # TreatmentDeliveryType as written; None when absent
    machine: str | None
    manufacturer: str | None
    primary_dosimeter_unit: str | None
    final_cumulative_meterset_weight: float | None
    number_of_control_points_declared: int | None
    devices: tuple[BeamLimitingDevice, ...]
    wedges: tuple[Wedge, ...]
    blocks: tuple[Block, ...]
    applicators: tuple[Applicator, ...]
    number_of_compensators: int | None
    number_of_boli: int | None
    control_points: ControlPoints
    is_ion: bool = False
    scan_mode: str | None = None  # ions: NONE, UNIFORM, MODULATED, MODULATED_SPEC
    number_of_range_shifters: int | None = None
    dicom_path: str = ""

    @property
    def effective_delivery_type(self) -> str:
        """TREATMENT when absent (PS3.3 C.8.8.14: the attribute is type 2)."""
        return (self.delivery_type or "TREATMENT").strip().upper()

    @property
    def gantry_start_deg(self) -> float | None:
        g = self.control_points.gantry_deg
        return None if g.size == 0 or math.isnan(g[0]) else float(g[0])

    @property
    def gantry_stop_deg(self) -> float | None:
        g = self.control_points.gantry_deg
        return None if g.size == 0 or math.isnan(g[-1]) else float(g[-1])

    @property
    def gantry_direction(self) -> str | None:
        dirs = self.control_points.gantry_direction
        return dirs[0] if dirs else None

    @property
    def isocenter_mm(self) -> tuple[float, float, float] | None:
        iso = self.control_points.isocenter_mm
        if iso.shape[0] == 0 or any(math.isnan(v) for v in iso[0]):
            return None
        return (float(iso[0, 0]), float(iso[0, 1]), float(iso[0, 2]))

    @property
    def nominal_energy(self) -> float | None:
        e = self.control_points.nominal_energy
        return None if e.size == 0 or math.isnan(e[0]) else float(e[0])


# ------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class ReferencedBeam:
    beam_number: int | None
    meterset_mu: float | None  # BeamMeterset; None when absent
    dicom_path: str


@dataclass(frozen=True)
class FractionGroup:
    number: int | None
    fractions_planned: int | None
    referenced_beams: tuple[ReferencedBeam, ...]
    number_of_brachy_setups: int | None
    dicom_path: str
    number_of_beams_declared: int | None = None  # NumberOfBeams as written; None when absent
    # ReferencedDoseReferenceSequence > ReferencedDoseReferenceNumber: the dose references
    # (prescriptions) this fraction group delivers (PS3.3 C.8.8.13)
    referenced_dose_reference_numbers: tuple[int, ...] = ()

    @property
    def meterset_mu_per_fraction(self) -> float | None:
        """BeamMeterset summed over the beams it references: MU per fraction; None when
        no referenced beam states its meterset."""
        values = [r.meterset_mu for r in self.referenced_beams if r.meterset_mu is not None]
        return float(sum(values)) if values else None

    @property
    def course_meterset_mu(self) -> float | None:
        """MU per fraction x NumberOfFractionsPlanned; None when either is unknown."""
        mu = self.meterset_mu_per_fraction
        if mu is None or self.fractions_planned is None:
            return None
        return mu * self.fractions_planned


@dataclass(frozen=True)
class Prescription:
    """One DoseReferenceSequence item (PS3.3 C.8.8.10). Doses in Gy; None when absent
    (0 is a value). ``dose_gy`` is TargetPrescriptionDose, for the whole course;
    ``dose_per_fraction_gy`` is derived: ``dose_gy`` / the fractions of the one fraction
    group that delivers it (the group whose ReferencedDoseReferenceSequence names it, or
    the plan's only fraction group), None when that cannot be told."""

    number: int | None  # DoseReferenceNumber
    structure_type: str | None  # POINT, VOLUME, COORDINATES, SITE
    description: str | None  # DoseReferenceDescription
    reference_type: str | None  # TARGET or ORGAN_AT_RISK
    roi_number: int | None  # ReferencedROINumber
    dose_gy: float | None  # TargetPrescriptionDose (course)
    minimum_dose_gy: float | None  # TargetMinimumDose
    maximum_dose_gy: float | None  # TargetMaximumDose
    delivery_maximum_dose_gy: float | None  # DeliveryMaximumDose
    fraction_group: int | None  # FractionGroupNumber of the group that delivers it
    fractions: int | None  # that group's NumberOfFractionsPlanned
    dicom_path: str

    @property
    def dose_per_fraction_gy(self) -> float | None:
        if self.dose_gy is None or not self.fractions:
            return None
        return self.dose_gy / self.fractions

    @property
    def is_target(self) -> bool:
        return (self.reference_type or "").upper() == "TARGET"


@dataclass(frozen=True)
class BrachyChannel:
    """One ChannelSequence item (PS3.3 C.8.8.15). None: the element is absent (a
    written 0 stays 0: a channel the plan does not load)."""

    number: int | None
    source_movement_type: str | None
    total_time_s: float | None  # ChannelTotalTime
    applicator_id: str | None = None  # SourceApplicatorID
    applicator_type: str | None = None  # SourceApplicatorType (FLEXIBLE, RIGID)
    length_mm: float | None = None  # ChannelLength
    # positions where the source dwells (SEED_RULE); None when the file cannot say
    dwell_positions: int | None = None
    final_weight: float | None = None  # FinalCumulativeTimeWeight
    source_number: int | None = None  # ReferencedSourceNumber


@dataclass(frozen=True)
class BrachySource:
    """One SourceSequence item: a source type (an afterloader's source, a seed model)."""

    number: int | None  # SourceNumber
    isotope: str | None  # SourceIsotopeName
    # ReferenceAirKermaRate: air kerma rate in air at 1 m, uGy/h (PS3.3 C.8.8.15)
    air_kerma_rate: float | None
    reference_date: str | None  # SourceStrengthReferenceDate (YYYYMMDD)
    reference_time: str | None  # SourceStrengthReferenceTime (HHMMSS)
    strength_units: str | None = None  # SourceStrengthUnits, when the strength is not air kerma
    strength: float | None = None  # SourceStrength (non-gamma sources)


@dataclass(frozen=True)
class BrachySetup:
    setup_type: str | None
    channels: tuple[BrachyChannel, ...]
    dicom_path: str
    name: str | None = None  # ApplicationSetupName


# How the sources placed in a channel are counted (the seeds of an LDR implant). PS3.3
# C.8.8.15 describes a channel's BrachyControlPointSequence: for N stepwise segments,
# 2N control points, the source arriving at a position and leaving it, the
# CumulativeTimeWeight growing by the time spent there. So a source sits at a position
# where two consecutive control points share it (ControlPointRelativePosition, else
# ControlPoint3DPosition) and the weight grows between them: each such position is one
# source placed. A channel whose weights never grow holds none.
SEED_RULE = (
    "sources placed = positions where two consecutive BrachyControlPointSequence items"
    " share ControlPointRelativePosition (else ControlPoint3DPosition) and"
    " CumulativeTimeWeight grows between them, summed over the channels"
    " (PS3.3 C.8.8.15: 2N control points for N stepwise positions)"
)


@dataclass(frozen=True)
class Brachy:
    """RT Brachy Application Setups (PS3.3 C.8.8.15).

    Two different counts: SourceSequence lists the source *types* (models: one item for
    an afterloader's source, one per seed model of an implant), not the sources placed.
    The sources placed (the seeds of an LDR implant) are read from the channels'
    control points (``number_of_seeds``)."""

    treatment_type: str | None  # HDR, LDR, MDR, PDR, MANUAL
    technique: str | None  # INTRACAVITARY, INTERSTITIAL, PERMANENT ...
    number_of_source_types: int  # items in SourceSequence
    isotopes: tuple[str, ...]
    setups: tuple[BrachySetup, ...]
    # Positions where a source dwells, summed over the channels (SEED_RULE): the
    # seeds of an LDR implant; for a remote afterloader, the dwell positions of its one
    # source. None when the file cannot say (``seeds_unknown_why`` says why).
    number_of_seeds: int | None = None
    seeds_unknown_why: str | None = None  # a sentence with the DICOM path
    sources: tuple[BrachySource, ...] = ()  # the SourceSequence items
    # BrachyApplicationSetupDose of each ReferencedBrachyApplicationSetupSequence item
    # of the fraction groups (Gy per fraction at the setup's dose reference point)
    setup_doses_gy: tuple[float, ...] = ()

    @property
    def number_of_channels(self) -> int:
        return sum(len(s.channels) for s in self.setups)

    @property
    def number_of_sources(self) -> int:
        """The SourceSequence items, as the JSON output has always named them ("sources");
        they are source types: see ``number_of_seeds`` for the sources placed."""
        return self.number_of_source_types


@dataclass(frozen=True)
class PlanningSystem:
    manufacturer: str | None
    model: str | None
    software_versions: str | None


@dataclass(frozen=True)
class PlanReference:
    sop_instance_uid: str
    relationship: str | None  # PRIOR, ALTERNATIVE, PREDECESSOR, VERIFIED_PLAN, ...


@dataclass(frozen=True, eq=False)
class Plan:
    path: str
    modality: Modality
    sop_instance_uid: str | None
    patient_id: str | None
    label: str | None
    name: str | None
    date: str | None
    intent_raw: str | None
    approval_status: str | None
    planning_system: PlanningSystem
    frame_of_reference_uid: str | None
    referenced_structure_set_uid: str | None
    referenced_plans: tuple[PlanReference, ...]
    fraction_groups: tuple[FractionGroup, ...]
    beams: tuple[Beam, ...]
    brachy: Brachy | None
    beam_sequence_keyword: str  # BeamSequence or IonBeamSequence
    review_date: str | None = None  # ReviewDate (YYYYMMDD) of an approved plan; None when absent
    patient_name: str | None = None  # PatientName as written; --deidentify replaces it
    oddities: tuple[Oddity, ...] = ()  # quirks and contradictions read anyway
    prescriptions: tuple[Prescription, ...] = ()  # DoseReferenceSequence, in file order

    @property
    def first_target_prescription(self) -> Prescription | None:
        """The first TARGET dose reference that states a TargetPrescriptionDose."""
        for p in self.prescriptions:
            if p.is_target and p.dose_gy is not None:
                return p
        return None

    def beam_course_mu(self, number: int | None) -> float | None:
        """BeamMeterset x NumberOfFractionsPlanned summed over the fraction groups that
        reference the beam; None when a reference lacks either, or none references it."""
        total, seen = 0.0, False
        for fg in self.fraction_groups:
            for r in fg.referenced_beams:
                if r.beam_number == number:
                    if r.meterset_mu is None or fg.fractions_planned is None:
                        return None
                    total += r.meterset_mu * fg.fractions_planned
                    seen = True
        return total if seen else None

    @property
    def intent(self) -> str | None:
        """PlanIntent normalised: upper case, spaces to underscores ("MACHINE QA")."""
        if self.intent_raw is None:
            return None
        text = "_".join(self.intent_raw.strip().upper().split())
        return text or None

    @property
    def fraction_groups_reference_no_beam(self) -> bool:
        """The plan has beams and fraction groups, no fraction group references a beam,
        yet one says it delivers some (NumberOfBeams > 0: Leksell GammaPlan). The file
        contradicts itself; the treatment beams are then taken from the beam sequence,
        as for a plan without fraction groups (an Oddity says so)."""
        groups = self.fraction_groups
        return (
            bool(self.beams and groups)
            and not any(fg.referenced_beams for fg in groups)
            and any((fg.number_of_beams_declared or 0) > 0 for fg in groups)
        )

    def beam(self, number: int | None) -> Beam | None:
        for b in self.beams:
            if b.number is not None and b.number == number:
                return b
        return None


# ---------------------------------------------------------------- structure sets


@dataclass(frozen=True)
class Roi:
    """One ROI. Whether it is a target or an organ at risk is a policy question
    (types can be missing or wrong; names follow local conventions), answered
    in classify.py, not here."""

    number: int | None
    name: str | None
    interpreted_type: str | None  # RTROIInterpretedType as written; None when absent/empty
    has_contours: bool | None  # None when ROIContourSequence says nothing of it
    dicom_path: str


@dataclass(frozen=True)
class StructureSet:
    path: str
    sop_instance_uid: str | None
    patient_id: str | None
    label: str | None
    frame_of_reference_uid: str | None
    rois: tuple[Roi, ...]
    patient_name: str | None = None
    oddities: tuple[Oddity, ...] = ()


# ------------------------------------------------------------------------- dose


@dataclass(frozen=True)
class DoseGrid:
    rows: int | None
    columns: int | None
    frames: int | None
    pixel_spacing_mm: tuple[float, float] | None
    has_pixel_data: bool

    @property
    def is_3d(self) -> bool:
        return (
            self.has_pixel_data
            and self.rows is not None
            and self.columns is not None
            and (self.frames or 1) > 1
        )


@dataclass(frozen=True)
class Dose:
    path: str
    sop_instance_uid: str | None
    patient_id: str | None
    summation_type: str | None  # PLAN, BEAM, FRACTION, ...
    dose_units: str | None
    referenced_plan_uids: tuple[str, ...]
    referenced_structure_set_uid: str | None
    grid: DoseGrid
    dvh_roi_numbers: tuple[int, ...]  # ROIs with a stored DVH
    dvh_count: int
    patient_name: str | None = None
    oddities: tuple[Oddity, ...] = ()


# ------------------------------------------------------------------ read results


@dataclass(frozen=True)
class ReadError:
    path: str
    error: str


@dataclass(frozen=True)
class Skipped:
    """A file that is not read as a plan, dose or structure set, and why: listed in
    every output, so that nothing a scan was given disappears without a word. (Images
    are counted, not listed: an archive holds thousands, and why they are skipped is
    always the same.)"""

    path: str
    kind: str  # "other_dicom" or "not_dicom"
    reason: str
    sop_class_uid: str | None = None
    modality: str | None = None  # Modality as written, when the file has one


@dataclass
class Inventory:
    """What a walk over the inputs found, before linking."""

    plans: list[Plan] = field(default_factory=list)
    structure_sets: list[StructureSet] = field(default_factory=list)
    doses: list[Dose] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # files neither RT object nor image
    files_seen: int = 0
    images_skipped: int = 0
    other_dicom_skipped: int = 0
    non_dicom_skipped: int = 0

    def tally(self) -> Tally:
        return Tally(
            files_seen=self.files_seen,
            structure_sets=len(self.structure_sets),
            doses=len(self.doses),
            images_skipped=self.images_skipped,
            other_dicom_skipped=self.other_dicom_skipped,
            non_dicom_skipped=self.non_dicom_skipped,
            errors=tuple(self.errors),
            skipped=tuple(self.skipped),
        )


@dataclass(frozen=True)
class Tally:
    """What a walk found, counted: what every report ends with. A rescan replayed
    from the scan cache keeps this, not the facts it was counted from."""

    files_seen: int = 0
    structure_sets: int = 0
    doses: int = 0
    images_skipped: int = 0
    other_dicom_skipped: int = 0
    non_dicom_skipped: int = 0
    errors: tuple[ReadError, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def skipped_by_reason(self) -> list[tuple[str, int]]:
        """(reason, files) of the skipped files other than images, most first."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
