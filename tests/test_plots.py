"""Issue 19: DVH and beam's-eye-view figures readable for brachytherapy and radiosurgery."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rtcode.measure.dvh import DvhCurve, PlanDvh, RoiDvh
from rtcode.report import plots


def _curve(end_gy: float, d2_gy: float, source: str = "stored", step: float = 0.5) -> DvhCurve:
    """A cumulative DVH at 100% up to half of ``d2_gy``, 2% of the ROI up to ``d2_gy``
    and a hot tail to ``end_gy`` (next to a brachytherapy source)."""
    edges = np.arange(0.0, end_gy + 2 * step, step)
    cum = np.where(edges < d2_gy / 2, 100.0, np.where(edges <= d2_gy, 2.5, 0.5))
    cum[edges > end_gy] = 0.0
    diff = cum[:-1] - cum[1:]
    return DvhCurve(1, edges, diff, False, source, "test")


def _roi(name: str, role: str, stored: DvhCurve | None, computed: DvhCurve | None = None):
    return RoiDvh(1, name, role, stored, computed, None, None, None, None)


def _plan(*rois: RoiDvh) -> PlanDvh:
    return PlanDvh(tuple(rois), "RD.dcm", None, (), (20.0,))


def _cum(role: str, c: DvhCurve) -> tuple[str, np.ndarray, np.ndarray]:
    return (role, *c.cumulative())


def test_an_hdr_plan_axis_ends_near_the_prescription_not_at_the_source():
    target = _cum("target", _curve(2100.0, 9.0))
    organ = _cum("organ_at_risk", _curve(900.0, 5.0))
    limit = plots.dose_axis_limit([target, organ], prescription_gy=7.0)
    assert limit == pytest.approx(10.5)  # 1.5 x 7 Gy; the target is down to 2% by 9 Gy
    # no prescription: the near-maximum doses (D2) decide, with headroom
    limit = plots.dose_axis_limit([target, organ])
    assert 9.0 * 1.1 < limit < 20.0


def test_the_axis_never_cuts_a_target_curves_shoulder():
    target = _cum("target", _curve(2100.0, 30.0))
    limit = plots.dose_axis_limit([target], prescription_gy=7.0)
    assert limit >= 30.0 * 1.1


def test_the_axis_never_runs_beyond_the_highest_dose():
    organ = _cum("organ_at_risk", _curve(4.0, 3.0))
    assert plots.dose_axis_limit([organ], prescription_gy=60.0) == pytest.approx(4.2)
    assert plots.dose_axis_limit([]) == 1.0


def test_no_two_curves_of_a_figure_share_colour_and_style():
    rois = [
        _roi(f"PTV{i}", "target", _curve(70, 60), _curve(70, 60, "computed")) for i in range(19)
    ]
    rois += [_roi(f"OAR{i}", "organ_at_risk", _curve(50, 40)) for i in range(12)]
    rois += [_roi(f"other{i}", "other", _curve(50, 40)) for i in range(3)]
    d = _plan(*rois)
    styles = plots.roi_styles(d)
    looks = [
        (*styles[i], line)
        for i, r in enumerate(d.rois)
        for curve, line in ((r.stored, "-"), (r.computed, "--"))
        if curve is not None
    ]
    assert len(looks) == 19 * 2 + 12 + 3
    assert len(set(looks)) == len(looks)
    assert not plots.needs_end_labels(d)
    png = plots.dvh_png(d, "19 targets")
    assert png is not None and png.startswith(b"\x89PNG")


def test_beyond_every_colour_and_marker_each_curve_is_labelled_at_its_end():
    n = len(plots.TARGET_COLOURS) * len(plots.MARKERS) + 1
    d = _plan(*[_roi(f"PTV{i}", "target", _curve(70, 60)) for i in range(n)])
    assert plots.needs_end_labels(d)
    assert plots.dvh_png(d) is not None


def test_a_10_mm_radiosurgery_aperture_fills_the_view():
    # one leaf pair open 10 mm along travel, 10 mm across: -5..5 mm
    half = plots.aperture_view_limit(
        np.array([-5.0, 0.0]), np.array([5.0, 0.0]), np.array([-5.0, 5.0]), np.array([5.0, 10.0])
    )
    assert half is not None
    assert 10.0 / (2 * half) >= 0.4  # the aperture spans at least 40% of the panel
    # a 200 mm field keeps all of itself in view, with a margin
    half = plots.aperture_view_limit(
        np.array([-100.0]), np.array([100.0]), np.array([-100.0]), np.array([100.0])
    )
    assert 100.0 < half <= 130.0
    # nothing open: no view from the aperture
    assert plots.aperture_view_limit(np.array([1.0]), np.array([1.0]), [0.0], [5.0]) is None


def test_the_sample_radiosurgery_views_are_scaled_to_their_apertures():
    from conftest import SAMPLE_DATA

    from rtcode.coding.policy import load
    from rtcode.engine.scan import scan
    from rtcode.measure.metrics import apertures

    result = scan([str(SAMPLE_DATA)], load("default"))
    reaches = []
    for p in result.plans:
        for b in p.classification.beams:
            ap = apertures(b.beam)
            cps = [i for i, _ in plots.bev_control_points(b)]
            if ap is None or not cps:
                continue
            reach = 0.0
            for i in cps:
                strip_lo, strip_hi = plots._strips(ap, i)
                lo, hi = ap.lo_mm[i], ap.hi_mm[i]
                open_ = (hi > lo) & (strip_hi > strip_lo)
                if open_.any():
                    edges = np.concatenate([lo[open_], hi[open_], strip_lo[open_], strip_hi[open_]])
                    reach = max(reach, float(np.abs(edges).max()))
            if reach:
                reaches.append(reach / plots._view_limit(ap, cps))
    # the aperture's farthest edge from the isocentre lies in the outer part of its view
    assert len(reaches) >= 50 and min(reaches) >= 0.6
    png = plots.bev_png(result.plans[0].classification.beams[0])
    assert png is None or struct.unpack(">II", png[16:24])[0] >= 200
