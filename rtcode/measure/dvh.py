"""Dose-volume histograms: stored ones read from RT Dose, missing ones computed.

Two sources, reported side by side so a physicist sees where each number came from:

- *stored*: the DVHSequence the planning system wrote into the RT Dose (PS3.3
  C.8.8.4). Read with numpy from the dataset the read step hands over; no contour
  is parsed and dicompyler-core is not imported.
- *computed*: dicompyler-core 0.5.6 (``dvhcalc.get_dvh``) from the structure set's
  contours and the dose grid, for targets and organs at risk without a stored DVH,
  or for all of them when asked. Only then are contours parsed and dicompyler-core
  imported.

When both exist their mean dose and D95 are compared. The V-values reported and the
tolerances of that comparison are the policy's ``[dvh]`` settings (``DvhSettings``).
Statistics are computed here from the differential histogram, the same way for both
sources: volume, minimum, maximum and mean follow dicompyler-core's definitions
(minimum and maximum are the upper edge of the lowest and highest occupied bin), so
they equal what dicompyler-core reports; D95, D2 and the V-values interpolate
linearly inside a bin, where dicompyler-core takes the nearest bin edge.

dicompyler-core and pydicom 3: 0.5.6 does ``from pydicom.dicomio import
read_file``, a name pydicom 3 removed. ``dicompyler()`` supplies that one name,
only if it is missing, immediately before the import.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from rtcode.link import LinkedPlan
from rtcode.model.errors import RtcodeError
from rtcode.model.facts import Dose, Roi, StructureSet

if TYPE_CHECKING:  # annotation only: the policy is a later step's
    from rtcode.coding.policy import Policy


@dataclass(frozen=True)
class DvhSettings:
    """The policy's ``[dvh]`` section as the DVH step uses it: which V-values are
    reported (the share of an ROI receiving at least each dose) and how close a computed
    DVH must come to the stored one to agree (mean dose and D95, per cent of the stored
    value). The defaults are the shipped default policy's (a test holds them to it)."""

    v_values_gy: tuple[float, ...] = (5.0, 20.0, 30.0, 40.0, 50.0)
    agreement_mean_dose_pct: float = 1.0
    agreement_d95_pct: float = 2.0
    truncated_last_bin_pct: float = 5.0
    # A computed DVH is warned about when its ROI holds fewer dose-grid voxels than
    # this, or when its volume differs from the contours' own volume by more than
    # ``max_volume_difference_pct`` per cent of the latter.
    min_dose_voxels: int = 30
    max_volume_difference_pct: float = 5.0

    @classmethod
    def from_policy(cls, policy: Policy) -> DvhSettings:
        """The settings of a policy's typed ``[dvh]`` section."""
        dvh = policy.dvh
        return cls(
            v_values_gy=tuple(float(v) for v in dvh.v_values_gy),
            agreement_mean_dose_pct=float(dvh.agreement_mean_dose_pct),
            agreement_d95_pct=float(dvh.agreement_d95_pct),
            truncated_last_bin_pct=float(dvh.truncated_last_bin_pct),
            min_dose_voxels=int(dvh.min_dose_voxels),
            max_volume_difference_pct=float(dvh.max_volume_difference_pct),
        )


DEFAULT_SETTINGS = DvhSettings()


def default_settings() -> DvhSettings:
    """The shipped default policy's DVH settings, for callers that give none."""
    return DEFAULT_SETTINGS


COMPUTE_MODES = ("auto", "always", "never")

Loader = Callable[..., Dataset]  # (path, pixels=bool) -> Dataset, from rtcode.dicom.read


class DvhError(RtcodeError, ValueError):
    """A DVH cannot be read or computed; the message says why."""


def dicompyler() -> tuple[ModuleType, ModuleType]:
    """Import and return ``(dicompylercore.dicomparser, dicompylercore.dvhcalc)``."""
    import pydicom
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        # the name 0.5.6 imports (setattr: pydicom 3's stubs declare no such name)
        setattr(pydicom.dicomio, "read_file", pydicom.dcmread)  # noqa: B010
    from dicompylercore import dicomparser, dvhcalc

    return dicomparser, dvhcalc


# ---------------------------------------------------------------------- values


@dataclass(frozen=True, eq=False)
class DvhCurve:
    """One DVH as a differential histogram: ``differential[i]`` is the volume whose
    dose lies in ``[edges_gy[i], edges_gy[i + 1])``."""

    roi_number: int | None
    edges_gy: np.ndarray  # (n + 1,) ascending, from 0
    differential: np.ndarray  # (n,) cm3, or % of the ROI when volume_is_absolute is False
    volume_is_absolute: bool
    source: str  # "stored" or "computed"
    dicom_path: str  # the DVHSequence item, or "RS + RD" for a computed one
    notes: tuple[str, ...] = ()
    # A stored cumulative DVH that ends while part of the ROI is still above its last
    # dose: that part (% of the ROI) lies somewhere above ``edges_gy[-2]``; None: complete.
    truncated_pct: float | None = None
    # The planning system's own DVHMinimumDose, DVHMeanDose, DVHMaximumDose (Gy; None:
    # not stored). Exact, where statistics from the bins are approximations.
    stated_min_gy: float | None = None
    stated_mean_gy: float | None = None
    stated_max_gy: float | None = None
    # A computed DVH: the dose-grid voxels its volume amounts to (volume / voxel volume
    # of the dose grid), and the ROI's volume from its contours alone (polygon areas x
    # plane thickness). None: unknown, or a stored DVH.
    dose_voxels: float | None = None
    contour_volume_cm3: float | None = None
    beyond_grid_cm3: float | None = None  # of the contour volume: on planes past the grid

    @property
    def total(self) -> float:
        return float(self.differential.sum())

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(dose at each bin edge in Gy, % of the ROI receiving at least that dose)."""
        tail = np.concatenate([np.cumsum(self.differential[::-1])[::-1], [0.0]])
        total = self.total
        pct = 100.0 * tail / total if total > 0 else np.zeros_like(tail)
        return self.edges_gy, pct


@dataclass(frozen=True)
class DvhStats:
    volume_cm3: float | None  # None when the DVH gives only relative volume
    min_dose_gy: float
    mean_dose_gy: float
    max_dose_gy: float
    d95_gy: float  # least dose to the hottest 95% of the ROI
    d2_gy: float  # near-maximum dose (ICRU 83)
    v_pct: tuple[tuple[float, float], ...]  # (dose Gy, % of the ROI receiving >= it)
    # A truncated DVH (``DvhCurve.truncated_pct``): the values that depend on the part
    # beyond its end are lower bounds, "at least" (``at_least``: their names).
    at_least: tuple[str, ...] = ()
    # Where min, mean and max come from: "planning system" (the stored DVH's own
    # DVHMinimumDose, DVHMeanDose, DVHMaximumDose) or "bins" (computed from the curve).
    min_mean_max_from: str = "bins"


@dataclass(frozen=True)
class DvhAgreement:
    """Computed against stored: (computed - stored) / stored, in per cent."""

    volume_diff_pct: float | None
    mean_dose_diff_pct: float | None
    d95_diff_pct: float | None
    mean_dose_tolerance_pct: float
    d95_tolerance_pct: float

    @property
    def agrees(self) -> bool | None:
        """True within both tolerances; None when the mean dose cannot be compared."""
        if self.mean_dose_diff_pct is None:
            return None
        ok = abs(self.mean_dose_diff_pct) <= self.mean_dose_tolerance_pct
        if self.d95_diff_pct is not None:
            ok = ok and abs(self.d95_diff_pct) <= self.d95_tolerance_pct
        return ok


@dataclass(frozen=True, eq=False)
class RoiDvh:
    roi_number: int | None
    roi_name: str | None
    role: str  # "target" or "organ_at_risk"
    stored: DvhCurve | None
    computed: DvhCurve | None
    stored_stats: DvhStats | None
    computed_stats: DvhStats | None
    agreement: DvhAgreement | None
    note: str | None  # why a DVH is missing, when one is
    # What the numbers cannot show: a truncated stored DVH, a computed one from few
    # dose voxels or whose volume misses the contours' own (``dvh_warnings``).
    warnings: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for s, c in (("stored", self.stored), ("computed", self.computed)) if c)


@dataclass(frozen=True, eq=False)
class PlanDvh:
    rois: tuple[RoiDvh, ...]
    stored_from: str | None  # the RT Dose whose DVHSequence was read
    computed_from: tuple[str, str] | None  # (structure set, dose grid) of computed DVHs
    notes: tuple[str, ...]
    v_values_gy: tuple[float, ...]

    @property
    def has_curves(self) -> bool:
        return any(r.stored or r.computed for r in self.rois)


# ------------------------------------------------------------------ statistics


def dvh_stats(curve: DvhCurve, v_values_gy: Sequence[float] | None = None) -> DvhStats:
    """Volume, min/mean/max, D95, D2 and V-values of one DVH (V-values: the default
    policy's unless given)."""
    if v_values_gy is None:
        v_values_gy = default_settings().v_values_gy
    diff = curve.differential
    edges = curve.edges_gy
    total = curve.total
    occupied = np.flatnonzero(diff > 0)
    if total <= 0 or occupied.size == 0:
        raise DvhError("the DVH holds no volume")
    if not (np.isfinite(edges).all() and np.isfinite(diff).all() and np.isfinite(total)):
        raise DvhError(_TOO_LARGE)
    centres = (edges[:-1] + edges[1:]) / 2.0
    with np.errstate(all="ignore"):  # an overflow is caught below, as a number
        dose, pct = curve.cumulative()
        minimum = float(edges[occupied[0] + 1])
        mean = float((centres * diff).sum() / total)
        maximum = float(edges[occupied[-1] + 1])
        at_least: list[str] = []
        if curve.truncated_pct is not None:
            # what lies beyond the last bin was counted in it: every value that reaches
            # into the last bin is only a lower bound
            last = float(edges[-2])
            at_least = ["mean_dose_gy", "max_dose_gy"]
            at_least += [
                k for k, p in (("d95_gy", 95.0), ("d2_gy", 2.0)) if curve.truncated_pct >= p
            ]
            at_least += [f"v{d:g}" for d in v_values_gy if d >= last]
        stated = (curve.stated_min_gy, curve.stated_mean_gy, curve.stated_max_gy)
        source = "bins"
        if all(v is not None for v in stated):
            minimum, mean, maximum = (float(v) for v in stated)  # type: ignore[arg-type]
            source = "planning system"
            at_least = [k for k in at_least if k not in ("mean_dose_gy", "max_dose_gy")]
        stats = DvhStats(
            volume_cm3=total if curve.volume_is_absolute else None,
            min_dose_gy=minimum,
            mean_dose_gy=mean,
            max_dose_gy=maximum,
            d95_gy=_dose_at_pct(dose, pct, 95.0),
            d2_gy=_dose_at_pct(dose, pct, 2.0),
            v_pct=tuple((float(d), _pct_at_dose(dose, pct, d)) for d in v_values_gy),
            at_least=tuple(at_least),
            min_mean_max_from=source,
        )
    numbers = [stats.min_dose_gy, stats.mean_dose_gy, stats.max_dose_gy, stats.d95_gy]
    numbers += [stats.d2_gy, *(v for pair in stats.v_pct for v in pair)]
    if not all(np.isfinite(numbers)):
        raise DvhError(_TOO_LARGE)
    return stats


_TOO_LARGE = (
    "its doses or volumes are too large to compute with (the statistics would come out infinite)"
)
# No plan's dose reaches this anywhere (Gy; brachytherapy grids next to a source stay
# far below): a dose grid or DVH beyond it is damaged, and would make dicompyler-core
# allocate a histogram bin per cGy of it.
MAX_DOSE_GY = 10000.0


def _dose_at_pct(dose: np.ndarray, pct: np.ndarray, target: float) -> float:
    """The dose at which the cumulative DVH falls to ``target`` per cent, linear in a bin."""
    reached = np.flatnonzero(pct >= target)
    if reached.size == 0:
        return 0.0
    i = int(reached[-1])
    if i >= pct.size - 1:
        return float(dose[-1])
    drop = pct[i] - pct[i + 1]  # > 0: pct[i + 1] < target <= pct[i]
    return float(dose[i] + (pct[i] - target) / drop * (dose[i + 1] - dose[i]))


def _pct_at_dose(dose: np.ndarray, pct: np.ndarray, at_gy: float) -> float:
    return float(np.interp(at_gy, dose, pct, left=100.0, right=0.0))


def compare(
    stored: DvhStats,
    computed: DvhStats,
    mean_tolerance_pct: float | None = None,
    d95_tolerance_pct: float | None = None,
) -> DvhAgreement:
    """Computed against stored; tolerances are the default policy's unless given."""
    if mean_tolerance_pct is None:
        mean_tolerance_pct = default_settings().agreement_mean_dose_pct
    if d95_tolerance_pct is None:
        d95_tolerance_pct = default_settings().agreement_d95_pct
    return DvhAgreement(
        volume_diff_pct=_rel(stored.volume_cm3, computed.volume_cm3),
        mean_dose_diff_pct=_rel(stored.mean_dose_gy, computed.mean_dose_gy),
        d95_diff_pct=_rel(stored.d95_gy, computed.d95_gy),
        mean_dose_tolerance_pct=mean_tolerance_pct,
        d95_tolerance_pct=d95_tolerance_pct,
    )


def _rel(stored: float | None, computed: float | None) -> float | None:
    if stored is None or computed is None:
        return None
    if stored == 0:
        return 0.0 if computed == 0 else None  # a relative difference to 0 means nothing
    with np.errstate(all="ignore"):
        diff = float(np.float64(100.0) * (computed - stored) / stored)
    return diff if np.isfinite(diff) else None  # (stored 1e-320: no relative difference)


# -------------------------------------------------------------- stored DVHs


def stored_dvhs(
    ds: Dataset, path: str, truncated_last_bin_pct: float | None = None
) -> tuple[dict[int, DvhCurve], tuple[str, ...]]:
    """The DVHSequence of an RT Dose as curves by ROI number, and notes on items skipped.
    ``truncated_last_bin_pct``: the policy's ``dvh.truncated_last_bin_pct`` (default:
    the shipped policy's)."""
    if truncated_last_bin_pct is None:
        truncated_last_bin_pct = default_settings().truncated_last_bin_pct
    curves: dict[int, DvhCurve] = {}
    notes: list[str] = []
    try:
        items = list(ds.get("DVHSequence") or [])
    except Exception:  # damaged bytes, decoded only now
        return {}, (f"{path}::DVHSequence cannot be decoded: its items are damaged",)
    for i, item in enumerate(items):
        where = f"{path}::DVHSequence[{i}]"
        try:
            refs = item.get("DVHReferencedROISequence") or []
            number = refs[0].get("ReferencedROINumber") if refs else None
            if number is None:
                notes.append(f"{where}: no DVHReferencedROISequence, skipped")
                continue
            roi = _whole_number(number, "DVHReferencedROISequence[0].ReferencedROINumber")
            curves.setdefault(roi, _stored_curve(item, roi, where, truncated_last_bin_pct))
        except DvhError as exc:
            notes.append(f"{where}: {exc}")
        except Exception:  # a value pydicom cannot decode, of a kind nobody foresaw
            notes.append(f"{where}: cannot be decoded: its bytes are damaged, skipped")
    return curves, tuple(notes)


def _number(value: Any, what: str) -> float:
    """A DICOM number as a finite float, else a DvhError saying so in words."""
    if isinstance(value, (list, tuple, MultiValue)):
        raise DvhError(f"{what} should be one number but holds {len(value)} values")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DvhError(f"{what} is not a number: {str(value)[:40]!r}") from None
    if not np.isfinite(number):
        raise DvhError(f"{what} is not a finite number: {str(value)[:40]!r}")
    return number


def _whole_number(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise DvhError(f"{what} should be a whole number, found {str(value)[:40]!r}")
    return int(number)


_DOSE_GY = {"GY": 1.0, "CGY": 0.01}  # CGY is not a DICOM term, but some systems write it


def _stored_curve(item: Dataset, roi_number: int, where: str, last_bin_pct: float) -> DvhCurve:
    kind = str(item.get("DVHType") or "").strip().upper()
    if kind not in ("CUMULATIVE", "DIFFERENTIAL"):
        raise DvhError(f"DVHType {kind or 'absent'}: only CUMULATIVE and DIFFERENTIAL are read")
    units = str(item.get("DoseUnits") or "").strip().upper()
    if units not in _DOSE_GY:
        raise DvhError(f"DoseUnits {units or 'absent'}: dose is not in Gy, not converted")
    vol_units = str(item.get("DVHVolumeUnits") or "").strip().upper()
    if vol_units not in ("CM3", "PERCENT"):
        raise DvhError(f"DVHVolumeUnits {vol_units or 'absent'}: only CM3 and PERCENT are read")
    scaling = item.get("DVHDoseScaling")
    scale = 1.0 if scaling in (None, "") else _number(scaling, "DVHDoseScaling")
    if scale <= 0:
        raise DvhError(f"DVHDoseScaling is {scale:g}: a dose scaling is more than 0")
    scale *= _DOSE_GY[units]
    raw = item.get("DVHData")
    try:
        values = [] if raw is None else list(raw) if not np.isscalar(raw) else [raw]
        data = np.asarray(values, float)
    except (TypeError, ValueError, OverflowError):
        raise DvhError("DVHData holds a value that is not a number") from None
    if data.size < 2 or data.size % 2 or not np.isfinite(data).all():
        raise DvhError("DVHData is not a list of (dose bin width, volume) pairs")
    with np.errstate(all="ignore"):  # an overflow is caught below
        widths, volumes = data[0::2] * scale, data[1::2]
        edges = np.concatenate([[0.0], np.cumsum(widths)])
    if (widths < 0).any():
        raise DvhError("DVHData has a negative dose bin width")
    if not np.isfinite(edges).all() or edges[-1] > MAX_DOSE_GY:
        raise DvhError(
            f"DVHData's dose bins reach {edges[-1]:g} Gy (DVHDoseScaling {scale:g}), more"
            f" than any plan delivers ({MAX_DOSE_GY:g} Gy): not read"
        )
    stated_max = _stated(item, "DVHMaximumDose", _DOSE_GY[units])
    truncated = None
    if kind == "CUMULATIVE":  # volume receiving at least each bin's lower edge
        diff = volumes - np.concatenate([volumes[1:], [0.0]])
        diff = np.clip(diff, 0.0, None)  # rounding in exported curves can go up by a hair
        truncated = _truncated_pct(volumes, edges, stated_max, last_bin_pct)
    else:
        diff = np.clip(volumes, 0.0, None)
    return DvhCurve(
        roi_number,
        edges,
        diff,
        vol_units == "CM3",
        "stored",
        where,
        truncated_pct=truncated,
        stated_min_gy=_stated(item, "DVHMinimumDose", _DOSE_GY[units]),
        stated_mean_gy=_stated(item, "DVHMeanDose", _DOSE_GY[units]),
        stated_max_gy=stated_max,
    )


def _truncated_pct(
    volumes: np.ndarray, edges: np.ndarray, stated_max: float | None, last_bin_pct: float
) -> float | None:
    """The share (%) of the ROI a cumulative DVH leaves beyond its end, or None when the
    curve is complete. A complete curve ends at the ROI's maximum dose, its last bin
    holding the volume at that dose: when the planning system states its maximum
    (DVHMaximumDose), a maximum beyond the curve's last bin means the curve was cut
    off; without one, a last bin holding more than ``last_bin_pct`` of the ROI does."""
    first, last = float(volumes[0]), float(volumes[-1])
    if first <= 0 or last <= 0:
        return None
    share = 100.0 * last / first
    if stated_max is not None:
        width = float(edges[-1] - edges[-2]) if edges.size > 1 else 0.0
        return share if stated_max > float(edges[-1]) + max(width, 1e-6) else None
    return share if share > last_bin_pct else None


def _stated(item: Dataset, keyword: str, to_gy: float) -> float | None:
    """A stored DVH's own statistic in Gy (DoseUnits as the curve's), or None when absent
    or not a finite number."""
    value = item.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value) * to_gy
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ------------------------------------------------------------ computed DVHs


def compute_dvh(structure_set: Dataset, dose: Dataset, roi_number: int, where: str) -> DvhCurve:
    """A DVH computed by dicompyler-core from the contours and the dose grid (Gy)."""
    _, dvhcalc = dicompyler()
    with _quiet_dicompyler():
        try:
            with np.errstate(all="ignore"):  # an overflow is caught below, as a number
                result = dvhcalc.get_dvh(structure_set, dose, roi_number)
                diff = np.asarray(result.differential.counts, dtype=float)
                edges = np.asarray(result.bins, dtype=float)
        except Exception as exc:  # dicompyler-core raises many types on odd input
            raise DvhError(f"dicompyler-core could not compute it: {_failure(exc)}") from exc
    if not (np.isfinite(diff).all() and np.isfinite(edges).all()):
        raise DvhError(
            "dicompyler-core could not compute it: the contours or the dose grid hold"
            " values too large to compute with"
        )
    if diff.size <= 1 or diff.sum() <= 0 or edges.size != diff.size + 1:
        raise DvhError("no dose-grid point lies inside the contours")
    notes = (str(result.notes),) if result.notes else ()
    voxel = _voxel_cm3(dose)
    volumes = contour_volume_cm3(structure_set, roi_number, dose)
    return DvhCurve(
        roi_number,
        edges,
        diff,
        True,
        "computed",
        where,
        notes,
        dose_voxels=float(diff.sum()) / voxel if voxel else None,
        contour_volume_cm3=volumes[0] if volumes else None,
        beyond_grid_cm3=volumes[1] if volumes else None,
    )


def _voxel_cm3(dose: Dataset) -> float | None:
    """The volume of one dose-grid voxel (cm3), or None when the grid does not say."""
    try:
        row, col = (abs(float(v)) for v in dose.PixelSpacing)
        offsets = np.asarray([float(v) for v in dose.GridFrameOffsetVector])
        steps = np.abs(np.diff(offsets))
        steps = steps[steps > 0]
        if not steps.size:
            return None
        voxel = row * col * float(np.median(steps)) / 1000.0
    except Exception:  # absent or not numbers: no estimate
        return None
    return voxel if math.isfinite(voxel) and voxel > 0 else None


def contour_volume_cm3(
    structure_set: Dataset, roi_number: int, dose: Dataset | None = None
) -> tuple[float, float] | None:
    """An ROI's volume from its contours alone (cm3): per plane, the area its polygons
    enclose (a polygon inside an odd number of others is a hole), times the plane
    thickness dicompyler-core uses; and the part of it on planes beyond the dose grid's
    first and last plane (dicompyler-core counts their volume but samples no dose
    there). None when the contours do not give a volume."""
    dicomparser, _ = dicompyler()
    try:
        with _quiet_dicompyler():
            parser = dicomparser.DicomParser(structure_set)
            planes = parser.GetStructureCoordinates(roi_number)
            if not planes:
                return None
            thickness = float(parser.CalculatePlaneThickness(planes))
            grid_z = _grid_planes_mm(dicomparser.DicomParser(dose)) if dose else None
        total = beyond = 0.0
        for z, contours in planes.items():
            polygons = [
                np.asarray(c["data"], float)[:, :2]
                for c in contours
                if len(c.get("data") or []) >= 3
            ]
            area = _plane_area_mm2(polygons) * thickness / 1000.0
            total += area
            if grid_z is not None and not (grid_z[0] - 0.5 <= float(z) <= grid_z[1] + 0.5):
                beyond += area  # dicompyler-core's tolerance: 0.5 mm (GetDoseGrid)
    except Exception:  # contours dicompyler-core cannot parse: no contour volume
        logging.getLogger("rtcode").debug("contour volume failed", exc_info=True)
        return None
    if not (math.isfinite(total) and total > 0 and math.isfinite(beyond)):
        return None
    return total, beyond


def _grid_planes_mm(parser: Any) -> tuple[float, float]:
    """The z (mm) of the dose grid's first and last plane, as dicompyler-core finds them."""
    ds = parser.ds
    sign = 1.0 if parser.is_head_first_orientation() else -1.0
    planes = sign * np.asarray([float(v) for v in ds.GridFrameOffsetVector]) + float(
        ds.ImagePositionPatient[2]
    )
    return float(planes.min()), float(planes.max())


def _plane_area_mm2(polygons: Sequence[np.ndarray]) -> float:
    from matplotlib.path import Path  # late: only for computed DVHs

    area = 0.0
    paths = [Path(p) for p in polygons]
    for i, poly in enumerate(polygons):
        x, y = poly[:, 0], poly[:, 1]
        a = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        depth = sum(1 for j, other in enumerate(paths) if j != i and other.contains_point(poly[0]))
        area += -a if depth % 2 else a
    return max(area, 0.0)


# dicompyler-core's note on contours beyond the dose grid: its first sentence is a fact,
# its second ("Volume calculated for all contours.") claims a volume the numbers may not
# bear out.
_FULL_VOLUME_CLAIM = "Volume calculated for all contours."


def dvh_warnings(
    stored: DvhCurve | None, computed: DvhCurve | None, settings: DvhSettings
) -> tuple[str, ...]:
    """What the numbers of an ROI's DVHs cannot show, in words for the report."""
    out = []
    if stored is not None and stored.truncated_pct is not None:
        out.append(
            f"stored DVH truncated at {float(stored.edges_gy[-2]):.2f} Gy:"
            f" {stored.truncated_pct:.1f}% of the ROI lies above it (values marked"
            " ≥ are lower bounds)"
        )
    if computed is not None:
        voxels = computed.dose_voxels
        if voxels is not None and voxels < settings.min_dose_voxels:
            out.append(
                f"computed DVH from about {voxels:.0f} dose-grid voxel(s), fewer than"
                f" {settings.min_dose_voxels} (dvh.min_dose_voxels): its D95, D2 and"
                " minimum are coarse samples, not the ROI's dose"
            )
        diff = volume_difference_pct(computed)
        if diff is not None and abs(diff) > settings.max_volume_difference_pct:
            out.append(
                f"computed volume {computed.total:.2f} cm3 differs from the contours'"
                f" {computed.contour_volume_cm3:.2f} cm3 by {diff:+.1f}% (more than"
                f" {settings.max_volume_difference_pct:g}%, dvh.max_volume_difference_pct): "
                + (
                    "the dose grid does not cover or sample the whole ROI; its statistics"
                    " describe only the part it does"
                    if diff < 0
                    else "the dose grid samples the ROI coarsely (its points inside the"
                    " contours stand for more volume than the contours hold); its statistics"
                    " rest on that coarse sampling"
                )
            )
        share = beyond_grid_pct(computed)
        if share is not None and share > settings.max_volume_difference_pct:
            out.append(
                f"{share:.1f}% of the ROI's contour volume ({computed.beyond_grid_cm3:.2f}"
                f" of {computed.contour_volume_cm3:.2f} cm3) lies on planes beyond the dose"
                f" grid (more than {settings.max_volume_difference_pct:g}%,"
                " dvh.max_volume_difference_pct): dicompyler-core counts that volume but"
                " samples no dose there, so the DVH gives it the dose of the rest; its"
                " statistics describe only the part inside the grid"
            )
    return tuple(out)


def beyond_grid_pct(curve: DvhCurve) -> float | None:
    """The share (%) of the contour volume on planes beyond the dose grid."""
    if curve.contour_volume_cm3 is None or curve.beyond_grid_cm3 is None:
        return None
    return 100.0 * curve.beyond_grid_cm3 / curve.contour_volume_cm3


def volume_difference_pct(curve: DvhCurve) -> float | None:
    """(computed volume - contour volume) / contour volume, in per cent."""
    if curve.contour_volume_cm3 is None or curve.contour_volume_cm3 <= 0:
        return None
    return 100.0 * (curve.total - curve.contour_volume_cm3) / curve.contour_volume_cm3


def _computed_notes(curve: DvhCurve, settings: DvhSettings) -> tuple[str, ...]:
    """dicompyler-core's notes, without a claim the numbers contradict."""
    limit = settings.max_volume_difference_pct
    if (
        abs(volume_difference_pct(curve) or 0.0) <= limit
        and (beyond_grid_pct(curve) or 0.0) <= limit
    ):
        return curve.notes
    out = []
    for note in curve.notes:
        note = note.replace(_FULL_VOLUME_CLAIM, "").strip()
        if note:
            out.append(note)
    return tuple(out)


def _failure(exc: BaseException) -> str:
    """What made dicompyler-core fail, in words (its own text, "cannot convert float
    NaN to integer", says nothing to a physicist; the log has it, logger "rtcode")."""
    logging.getLogger("rtcode").debug("dicompyler-core failed", exc_info=exc)
    if isinstance(exc, (OverflowError, FloatingPointError)):
        return "the contours or the dose grid hold values too large to compute with"
    if isinstance(exc, MemoryError):
        return "not enough memory for this dose grid"
    if isinstance(exc, (ValueError, TypeError, IndexError, KeyError, AttributeError)):
        return (
            "the contours and the dose grid do not fit together as it expects (a value"
            " missing or not a number, or a grid whose size, spacing or frame offsets"
            " disagree)"
        )
    return "it failed on these contours and this dose grid"


@contextlib.contextmanager
def _quiet_dicompyler() -> Iterator[None]:
    """dicompyler-core logs a warning per contour plane outside the dose grid; its DVH
    notes say the same once, so the log is silenced while it computes."""
    log = logging.getLogger("dicompylercore")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _compute_problem(structure_set: Dataset, dose: Dataset) -> str | None:
    """Why a DVH cannot be computed from these two datasets, or None."""
    try:
        return _grid_problem(dose) or _frame_problem(structure_set, dose)
    except DvhError as exc:
        return str(exc)
    except Exception:  # a value pydicom cannot decode, of a kind nobody foresaw
        return "the dose grid or the structure set holds a value that cannot be decoded"


def _grid_problem(dose: Dataset) -> str | None:
    if "PixelData" not in dose:
        return "the RT Dose has no dose grid (Pixel Data)"
    units = str(dose.get("DoseUnits") or "").strip().upper()
    if units != "GY":
        return f"the dose grid is in {units or 'unstated'} units, not GY"
    frames = dose.get("NumberOfFrames")
    frames = 1 if frames in (None, "") else _whole_number(frames, "NumberOfFrames")
    if "GridFrameOffsetVector" not in dose or frames < 2:
        return "the dose grid is not 3-D (one frame, or no GridFrameOffsetVector)"
    scaling = dose.get("DoseGridScaling")
    scale = 1.0 if scaling in (None, "") else _number(scaling, "DoseGridScaling")
    if scale <= 0:
        return f"DoseGridScaling is {scale:g}: a dose scaling is more than 0"
    for keyword in ("GridFrameOffsetVector", "PixelSpacing", "ImagePositionPatient"):
        values = dose.get(keyword)
        values = [] if values is None else values if not np.isscalar(values) else [values]
        if any(abs(_number(v, keyword)) > _GRID_MAX_MM for v in values):
            return f"{keyword} holds a value more than {_GRID_MAX_MM:g} mm from 0: not a dose grid"
    try:
        largest = float(np.max(dose.pixel_array)) if dose.pixel_array.size else 0.0
    except Exception:
        return (
            "its Pixel Data cannot be decoded as a dose grid (its length does not match"
            " Rows, Columns, NumberOfFrames and BitsAllocated)"
        )
    with np.errstate(all="ignore"):
        top = largest * scale
    if not np.isfinite(top) or top > MAX_DOSE_GY:
        return (
            f"the dose grid's largest dose is {top:g} Gy (DoseGridScaling {scale:g} times"
            f" {largest:g}), more than any plan delivers ({MAX_DOSE_GY:g} Gy)"
        )
    return None


_GRID_MAX_MM = 10000.0  # as rtcode.dicom.extract bounds isocentres: beyond any scanner


def _frame_problem(structure_set: Dataset, dose: Dataset) -> str | None:
    dose_for = str(dose.get("FrameOfReferenceUID") or "")
    refs = structure_set.get("ReferencedFrameOfReferenceSequence") or []
    ss_for = {str(r.get("FrameOfReferenceUID") or "") for r in refs}
    if dose_for and ss_for - {""} and dose_for not in ss_for:
        return "the structure set and the dose grid are in different frames of reference"
    return None


# -------------------------------------------------------------- per plan


def plan_dvh(
    lp: LinkedPlan,
    targets: Sequence[Roi],
    organs_at_risk: Sequence[Roi],
    load: Loader,
    compute: str = "auto",
    settings: DvhSettings | None = None,
) -> PlanDvh:
    """DVH evidence of one plan for its targets and organs at risk.

    ``load(path, pixels=...)`` reads a whole file (``rtcode.dicom.read.read_full``).
    ``compute``: "auto" computes DVHs of ROIs that have no stored one, "always"
    computes every one (to compare with the stored ones), "never" only reads.
    ``settings`` (default: the shipped policy's) choose the V-values and tolerances.
    """
    settings = settings if settings is not None else default_settings()
    v_values_gy = settings.v_values_gy
    if compute not in COMPUTE_MODES:
        raise ValueError(f"compute must be one of {COMPUTE_MODES}, not {compute!r}")
    notes: list[str] = []
    ss = lp.structure_set
    wanted = [(r, "target") for r in targets] + [(r, "organ_at_risk") for r in organs_at_risk]
    if ss is None:
        reason = {
            "not_in_export": "the plan's structure set is not in the export",
            "not_referenced": "the plan references no structure set",
        }.get(lp.structure_set_status, "no structure set")
        return PlanDvh((), None, None, (f"no DVH: {reason}",), tuple(v_values_gy))
    if not wanted:
        notes.append("no contoured target or organ at risk in the structure set")
    stored: dict[int, DvhCurve] = {}
    stored_from: str | None = None
    if wanted:
        stored, stored_from = _stored_for_plan(lp, ss, load, settings, notes)
    need = [
        roi
        for roi, _ in wanted
        if compute == "always" or (compute == "auto" and roi.number not in stored)
    ]
    computed: dict[int, DvhCurve] = {}
    failed: dict[int | None, str] = {}
    computed_from = None
    if need:
        computed_from = _computed_for_plan(lp, ss, need, load, computed, failed, notes)
    numbers = {r.number for r, _ in wanted}
    others = sorted(n for n in stored if n not in numbers)
    if others:
        notes.append(
            f"{len(others)} stored DVH(s) of ROIs that are neither target nor organ at risk"
            " not shown"
        )
    curves = (stored, computed, failed)
    rows = [_roi_row(roi, role, curves, compute, settings) for roi, role in wanted]
    return PlanDvh(tuple(rows), stored_from, computed_from, tuple(notes), tuple(v_values_gy))


def _stored_for_plan(
    lp: LinkedPlan, ss: StructureSet, load: Loader, settings: DvhSettings, notes: list[str]
) -> tuple[dict[int, DvhCurve], str | None]:
    """The stored DVHs of the plan's dose that holds some, by ROI number, and its path;
    what stood in the way goes to ``notes``."""
    stored: dict[int, DvhCurve] = {}
    stored_dose = _pick(d for d in lp.doses if d.dvh_count > 0)
    if stored_dose is None:
        return stored, None
    ref = stored_dose.referenced_structure_set_uid
    if ref is not None and ref != ss.sop_instance_uid:
        notes.append(
            f"stored DVHs in {stored_dose.path} belong to another structure set"
            " (ROI numbers would not match): not used"
        )
        return stored, None
    stored_from = None
    try:
        ds = load(stored_dose.path, pixels=False)
        stored, skipped = stored_dvhs(ds, stored_dose.path, settings.truncated_last_bin_pct)
        notes.extend(skipped)
        stored_from = stored_dose.path
    except RtcodeError as exc:
        notes.append(f"stored DVHs not read: {exc}")
    if ref is None:
        notes.append(
            f"{stored_dose.path} names no structure set: its ROI numbers are read against {ss.path}"
        )
    return stored, stored_from


def _computed_for_plan(
    lp: LinkedPlan,
    ss: StructureSet,
    need: list[Roi],
    load: Loader,
    computed: dict[int, DvhCurve],
    failed: dict[int | None, str],
    notes: list[str],
) -> tuple[str, str] | None:
    """Compute the DVHs of ``need`` into ``computed`` (what failed into ``failed``, what
    stood in the way into ``notes``); the files they were computed from."""
    grid = _pick(d for d in lp.doses if d.grid.is_3d)
    if grid is None:
        notes.append("no DVH computed: no 3-D dose grid of this plan in the export")
        return None
    try:
        rs_ds = load(ss.path, pixels=False)
        rd_ds = load(grid.path, pixels=True)
        problem = _compute_problem(rs_ds, rd_ds)
    except RtcodeError as exc:
        problem = str(exc)
    if problem is not None:
        notes.append(f"no DVH computed: {problem}")
        return None
    for roi in need:
        if roi.number is None:
            failed[None] = "ROI without a number"
            continue
        where = f"{ss.path} + {grid.path}"
        try:
            computed[roi.number] = compute_dvh(rs_ds, rd_ds, roi.number, where)
        except DvhError as exc:
            failed[roi.number] = f"not computed: {exc}"
    return (ss.path, grid.path)


def _roi_row(
    roi: Roi,
    role: str,
    curves: tuple[dict[int, DvhCurve], dict[int, DvhCurve], dict[int | None, str]],
    compute: str,
    settings: DvhSettings,
) -> RoiDvh:
    """One ROI's row: its stored and computed curves, their statistics and agreement."""
    stored, computed, failed = curves
    v_values_gy = settings.v_values_gy
    s = stored.get(roi.number) if roi.number is not None else None
    c = computed.get(roi.number) if roi.number is not None else None
    s_stats, s_note = _stats(s, v_values_gy)
    c_stats, c_note = _stats(c, v_values_gy)
    note = failed.get(roi.number) or s_note or c_note
    if s is None and c is None and note is None:
        note = "no stored DVH" + (" (computing was off)" if compute == "never" else "")
    elif note is None and c is not None and _computed_notes(c, settings):
        note = " ".join(_computed_notes(c, settings))
    agreement = None
    if s_stats and c_stats:
        agreement = compare(
            s_stats, c_stats, settings.agreement_mean_dose_pct, settings.agreement_d95_pct
        )
    warnings = dvh_warnings(s if s_stats else None, c if c_stats else None, settings)
    return RoiDvh(roi.number, roi.name, role, s, c, s_stats, c_stats, agreement, note, warnings)


def _stats(curve: DvhCurve | None, v_values: Sequence[float]) -> tuple[DvhStats | None, str | None]:
    if curve is None:
        return None, None
    try:
        return dvh_stats(curve, v_values), None
    except DvhError as exc:
        return None, f"{curve.source} DVH unusable: {exc}"


def _pick(doses: Iterator[Dose] | Sequence[Dose]) -> Dose | None:
    """The plan dose to use: a PLAN sum first, else the first one offered."""
    found = list(doses)
    for d in found:
        if d.summation_type == "PLAN":
            return d
    return found[0] if found else None
