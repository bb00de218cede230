"""The policy's sections as typed, frozen values (``policy.modulation.fif_max_segments``).

Built once from the validated settings when a policy loads (``policy.parse``): one
dataclass per ``[section]`` of the file, one field per key, lists as tuples. The file
format and its validation stay in ``policy.SCHEMA``; ``fields_of`` lets a test hold the
two to the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from rtcode.model.limits import Limits


@dataclass(frozen=True)
class Intent:
    SECTION: ClassVar[str] = "intent"
    not_billable: tuple[str, ...]


@dataclass(frozen=True)
class Beams:
    SECTION: ClassVar[str] = "beams"
    treatment_delivery_types: tuple[str, ...]
    min_meterset_mu: float


@dataclass(frozen=True)
class Modulation:
    """What makes a beam modulated (rtcode/coding/techniques.py decides it)."""

    SECTION: ClassVar[str] = "modulation"
    dynamic_leaf_travel_mm: float
    segment_tolerance_mm: float
    fif_max_segments: int
    fif_min_main_segment_mu_fraction: float
    fif_inside_tolerance_mm: float
    closed_leaf_gap_mm: float
    fif_nested_max_outside_share: float
    fif_modulated_min_outside_share: float
    arc_min_gantry_travel_deg: float
    vmat_min_mu_per_degree_cv: float
    arc_aperture_change_mm: float
    dca_min_convexity: float
    small_aperture_width_mm: float
    pencil_beam_scanning_code: str
    compensator_is_imrt: bool


@dataclass(frozen=True)
class Electron:
    SECTION: ClassVar[str] = "electron"
    plan_code: str


@dataclass(frozen=True)
class Isodose:
    SECTION: ClassVar[str] = "isodose"
    rectangular_mlc_is_unmodified: bool
    rectangle_tolerance_mm: float
    corner_leaves_max_area_share: float
    corner_leaves_max_extent_share: float
    bolus_is_modifier: bool
    electron_cutout_is_modifier: bool
    dynamic_wedge_is_modifier: bool
    max_simple_ports: int
    same_area_isocentre_distance_mm: float
    couch_rotation_min_deg: float
    tangent_opposed_tolerance_deg: float
    tangent_min_oblique_deg: float


@dataclass(frozen=True)
class ThreeD:
    SECTION: ClassVar[str] = "three_d"
    min_targets: int
    min_organs_at_risk: int
    accept_dose_grid_as_dvh_evidence: bool
    missing_companion_demotes: bool


@dataclass(frozen=True)
class Roles:
    """Hashable (tuples only): the cache of ROI roles is keyed by it."""

    SECTION: ClassVar[str] = "roles"
    target_types: tuple[str, ...]
    organ_types: tuple[str, ...]
    external_types: tuple[str, ...]
    target_name_patterns: tuple[str, ...]
    organ_name_patterns: tuple[str, ...]
    helper_name_patterns: tuple[str, ...]
    name_may_promote_types: tuple[str, ...]


@dataclass(frozen=True)
class Brachytherapy:
    SECTION: ClassVar[str] = "brachytherapy"
    simple_max_channels: int
    intermediate_max_channels: int
    simple_max_sources: int
    intermediate_max_sources: int


@dataclass(frozen=True)
class Approval:
    SECTION: ClassVar[str] = "approval"
    flag_statuses: tuple[str, ...]


@dataclass(frozen=True)
class Related:
    SECTION: ClassVar[str] = "related"
    max_basic_dosimetry_per_date: int
    sbrt_max_fractions: int


@dataclass(frozen=True)
class Devices:
    SECTION: ClassVar[str] = "devices"
    tier: Mapping[str, str]  # device kind -> 77332/77333/77334, "" for not reported


@dataclass(frozen=True)
class Imrt:
    SECTION: ClassVar[str] = "imrt"
    require_inverse_planning_evidence: bool


@dataclass(frozen=True)
class Bundling:
    SECTION: ClassVar[str] = "bundling"
    imrt_bundles: tuple[str, ...]


@dataclass(frozen=True)
class Audit:
    SECTION: ClassVar[str] = "audit"
    course_window_days: int
    same_course_relationships: tuple[str, ...]
    verification_relationships: tuple[str, ...]
    needs_documentation_codes: tuple[str, ...]
    ptp_bypass_modifiers: tuple[str, ...]
    severity: Mapping[str, str]
    columns: Mapping[str, str]


@dataclass(frozen=True)
class Dvh:
    SECTION: ClassVar[str] = "dvh"
    v_values_gy: tuple[float, ...]
    agreement_mean_dose_pct: float
    agreement_d95_pct: float
    truncated_last_bin_pct: float
    max_d95_prescription_difference_pct: float
    min_dose_voxels: int
    max_volume_difference_pct: float


SECTIONS: tuple[type, ...] = (
    Intent,
    Beams,
    Modulation,
    Electron,
    Isodose,
    ThreeD,
    Roles,
    Brachytherapy,
    Approval,
    Limits,
    Related,
    Devices,
    Imrt,
    Bundling,
    Audit,
    Dvh,
)
_T = TypeVar("_T")


def section_name(cls: type) -> str:
    return "limits" if cls is Limits else str(getattr(cls, "SECTION"))  # noqa: B009


def fields_of(cls: type) -> list[str]:
    """The dotted keys a section is built from ("modulation.fif_max_segments", ...)."""
    return [f"{section_name(cls)}.{f.name}" for f in fields(cls)]


def build(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """The section ``cls`` from validated settings: lists as tuples, tables read-only."""
    head = section_name(cls)
    return cls(**{f.name: _frozen(values[f"{head}.{f.name}"]) for f in fields(cls)})  # type: ignore[arg-type]  # every section is a dataclass (SECTIONS)


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return MappingProxyType(dict(value))
    return value
