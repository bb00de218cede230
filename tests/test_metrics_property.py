"""Property tests: beam_metrics on whole arrays against per-control-point loops.

Hypothesis draws small beams with random devices (leaves along X or Y, jaws of either
kind present or absent, listed in any order, a second jaw device filling in a first
one's unknown positions) and random apertures; every measure is then compared with a
plain loop over control points and strips. The aperture itself is rebuilt here from
the raw positions one strip at a time, so that the device handling of metrics.py
(which device gives the leaves, which the jaws along and across them) is checked too,
not only the arithmetic on the arrays it builds.
"""

from __future__ import annotations

import math
from dataclasses import replace

import builders as b
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metrics_speed_equivalence import (
    convexity_at,
    interval_average,
    lsv_at,
    outline_at,
    outside_area_at,
)

from rtcode.measure.metrics import apertures, beam_metrics
from rtcode.model.facts import BeamLimitingDevice


@st.composite
def beams(draw):
    """A beam of 2-12 control points with 2-10 leaf pairs and random devices."""
    seed = draw(st.integers(0, 2**32 - 1))
    n, pairs = draw(st.integers(2, 12)), draw(st.integers(2, 10))
    axis = draw(st.sampled_from("XY"))
    travel_jaw, strip_jaw = draw(st.booleans()), draw(st.booleans())
    filler = draw(st.booleans())  # a second jaw device filling in NaN positions
    coarse = draw(st.booleans())  # 5-mm steps: ties and collinear corners
    rng = np.random.default_rng(seed)
    edges = np.cumsum(np.r_[0.0, rng.choice([2.5, 5.0, 10.0], size=pairs)])
    edges -= edges[-1] / 2
    centre = rng.uniform(-15, 15, size=(n, 1))
    half = rng.uniform(-5, 40, size=(n, pairs)) * (rng.random((n, pairs)) < 0.85)
    if coarse:
        centre, half = np.round(centre / 5) * 5, np.round(half / 5) * 5
    leaves = np.hstack([centre - half, centre + half])
    across, along = ("Y", "X") if axis == "X" else ("X", "Y")
    positions = {f"MLC{axis}": leaves}
    devices = [BeamLimitingDevice(f"MLC{axis}", pairs, tuple(float(e) for e in edges))]
    for jaw_axis, present, spread in ((along, travel_jaw, 60), (across, strip_jaw, 0)):
        if not present:
            continue
        limit = spread if spread else float(edges[-1])
        jaws = np.hstack(
            [rng.uniform(-limit - 5, -limit / 3, (n, 1)), rng.uniform(limit / 3, limit + 5, (n, 1))]
        )
        if filler:  # the first device leaves some positions unknown; the second fills them
            gaps = jaws.copy()
            gaps[rng.random(n) < 0.5] = np.nan
            positions[f"ASYM{jaw_axis}"] = gaps
            positions[jaw_axis] = jaws
            devices += [
                BeamLimitingDevice(f"ASYM{jaw_axis}", 1, None),
                BeamLimitingDevice(jaw_axis, 1, None),
            ]
        else:
            positions[f"ASYM{jaw_axis}"] = jaws
            devices.append(BeamLimitingDevice(f"ASYM{jaw_axis}", 1, None))
    order = rng.permutation(len(devices))
    weights = np.cumsum(rng.random(n) * (rng.random(n) < 0.8))
    weights = (weights - weights[0]) / max(weights[-1] - weights[0], 1e-3)
    cps = replace(b.control_points(None, list(weights)), positions_mm=positions)
    beam = b.beam(1, cps, beam_type="DYNAMIC")
    return replace(beam, devices=tuple(devices[i] for i in order))


def strip_at(beam, i: int, k: int) -> tuple[float, float, float]:
    """(lo, hi, height) of strip k at control point i, from the raw positions: the leaf
    pair's opening cut by the jaws along the leaves; the strip cut by those across."""
    mlc = next(d for d in beam.devices if d.device_type.startswith("MLC"))
    along = "X" if mlc.device_type == "MLCX" else "Y"
    across = "Y" if along == "X" else "X"
    positions = beam.control_points.positions_mm

    def jaw(axis: str) -> tuple[float, float]:
        # the first device listed gives the jaws; a later one fills in unknown values
        known = [math.nan, math.nan]
        for d in beam.devices:
            if not d.device_type.startswith("MLC") and d.device_type.removeprefix("ASYM") == axis:
                for side in (0, 1):
                    if math.isnan(known[side]):
                        known[side] = float(positions[d.device_type][i, side])
        return (
            -math.inf if math.isnan(known[0]) else known[0],
            math.inf if math.isnan(known[1]) else known[1],
        )

    pairs = mlc.number_of_pairs
    t1, t2 = jaw(along)
    s1, s2 = jaw(across)
    lo = max(float(positions[mlc.device_type][i, k]), t1)
    hi = min(float(positions[mlc.device_type][i, pairs + k]), t2)
    bounds = mlc.leaf_boundaries_mm
    height = max(min(bounds[k + 1], s2) - max(bounds[k], s1), 0.0)
    return lo, hi, height


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beams())
def test_apertures_strip_by_strip(beam):
    ap = apertures(beam)
    mlc = next(d for d in beam.devices if d.device_type.startswith("MLC"))
    assert ap.leaf_axis == mlc.device_type[-1]
    for i in range(beam.control_points.count):
        for k in range(mlc.number_of_pairs):
            lo, hi, height = strip_at(beam, i, k)
            assert (ap.lo_mm[i, k], ap.hi_mm[i, k], ap.height_mm[i, k]) == (lo, hi, height)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beams())
def test_measures_against_loops_over_control_points(beam):
    m = beam_metrics(beam)
    ap = apertures(beam)
    n = beam.control_points.count
    outlines = np.array([outline_at(ap, i) for i in range(n)])
    assert m.area_mm2 == pytest.approx(outlines[:, 0], rel=1e-12, abs=1e-9)
    assert m.perimeter_mm == pytest.approx(outlines[:, 1], rel=1e-12, abs=1e-9)
    if m.lsv is None:  # no beam-on interval: the complexity scores are not taken
        assert m.convexity is None and m.mcs is None
        return
    assert m.lsv == pytest.approx([lsv_at(ap, i) for i in range(n)], rel=1e-12, abs=0)
    convexity = interval_average(
        np.array([convexity_at(ap, i) for i in range(n)]), m.cp_mu_fraction[:-1]
    )
    if convexity is None:
        assert m.convexity is None
    else:
        assert m.convexity == pytest.approx(convexity, rel=1e-9, abs=0)
    if len(m.segments) > 1:
        main = max(m.segments, key=lambda s: s.mu_fraction)
        subs = [s for s in m.segments if s is not main]
        areas = [outside_area_at(ap, s.first_cp, main.first_cp, 0.0, 0.0)[0] for s in subs]
        assert m.subsegment_outside_area_mm2 == pytest.approx(max(areas), rel=1e-9, abs=1e-9)
