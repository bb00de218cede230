"""The vectorised measures in rtcode/measure/metrics.py against plain per-control-point ones.

beam_metrics measures every control point at once (convex hulls included); the
references here take one control point at a time, the way the measures are defined:
the convex hull of the open strips' corners (Andrew's monotone chain, shoelace area),
the outline of the open strips walked strip by strip, LSV over each point's open leaf
pairs, leaf and gantry motion interval by interval, segments grown interval by
interval. Random apertures cover what the hand-worked cases in test_metrics.py do not:
many control points with different outlines (enough for several blocks of the hull
computation), islands, closed pairs, coarse positions (ties, collinear corners), jaws
that cut through strips or move, absent jaws, unknown (NaN) positions, static
stretches longer than the bulk look-ahead of _segments, and arcs in which every
interval is a segment of its own.
"""

from __future__ import annotations

import math
from dataclasses import replace

import builders as b
import numpy as np
import pytest

from rtcode.measure.metrics import Apertures, apertures, beam_metrics
from rtcode.model.facts import BeamLimitingDevice


def random_beam(seed: int, n: int, pairs: int, shape: str):
    """A beam of ``n`` control points, each with its own random aperture."""
    rng = np.random.default_rng(seed)
    widths = (
        rng.choice([2.5, 5.0, 10.0], size=pairs) if shape != "uneven" else rng.uniform(1, 9, pairs)
    )
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    edges = tuple(float(v) for v in edges - edges[-1] / 2)
    centre = rng.uniform(-20, 20, size=(n, 1))
    t = np.linspace(-1, 1, pairs)[None, :]
    if shape == "outline":  # target-like: a rounded outline that changes from point to point
        half = 50 * np.sqrt(1 - 0.9 * t**2) * rng.uniform(0.3, 1.0, size=(n, 1))
        half = half + rng.normal(0, 2, size=(n, pairs))
    elif shape == "islands":  # closed pairs between open ones
        half = rng.uniform(2, 40, size=(n, pairs)) * (rng.random((n, pairs)) < 0.5)
    elif shape == "coarse":  # 5 mm steps: equal ends and collinear corners
        half = np.round(rng.uniform(0, 40, size=(n, pairs)) / 5) * 5
        centre = np.round(centre / 5) * 5
    else:  # carved: ends wander independently, some pairs crossed shut
        half = rng.uniform(-5, 45, size=(n, pairs))
    bank_a = centre - half + rng.normal(0, 4, size=(n, pairs)) * (shape == "carved")
    bank_b = centre + half
    leaves = np.hstack([bank_a, bank_b])
    # jaws: Y jaws cut through strips, X jaws trim the leaves, both moving a little
    y1 = edges[0] + rng.uniform(0, 0.4, size=(n, 1)) * (edges[-1] - edges[0])
    y2 = edges[-1] - rng.uniform(0, 0.4, size=(n, 1)) * (edges[-1] - edges[0])
    x1 = rng.uniform(-70, -20, size=(n, 1))
    x2 = rng.uniform(20, 70, size=(n, 1))
    weights = np.linspace(0.0, 1.0, n)
    cps = b.control_points(list(leaves), list(weights), gantry=list(np.linspace(180, 181, n)))
    positions = dict(cps.positions_mm)
    positions["ASYMX"] = np.hstack([x1, x2])
    positions["ASYMY"] = np.hstack([y1, y2])
    cps = replace(cps, positions_mm=positions)
    mlc = BeamLimitingDevice("MLCX", pairs, edges)
    return replace(b.beam(1, cps, beam_type="DYNAMIC"), devices=(*b.DEVICES[:2], mlc))


# ----------------------------------------------------------------- references


def hull_area(points: list[tuple[float, float]]) -> float:
    """Convex hull area of points: Andrew's monotone chain, then the shoelace formula."""
    points = sorted(set(points))
    if len(points) < 3:
        return 0.0

    def cross(o, a, c):
        return (a[0] - o[0]) * (c[1] - o[1]) - (a[1] - o[1]) * (c[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in points:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(points):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    twice = sum(
        hull[i][0] * hull[(i + 1) % len(hull)][1] - hull[(i + 1) % len(hull)][0] * hull[i][1]
        for i in range(len(hull))
    )
    return abs(twice) / 2


def convexity_at(ap: Apertures, i: int) -> float:
    """Open area / convex hull of the corners of the open strips, at control point i."""
    width = ap.width_mm()[i]
    area = float((width * ap.height_mm[i]).sum())
    j1, j2 = ap.jaw_strip_mm[i]
    j1 = -math.inf if math.isnan(j1) else j1
    j2 = math.inf if math.isnan(j2) else j2
    corners = []
    for k in np.flatnonzero(width > 0):
        y0 = max(ap.strip_edges_mm[k], j1)
        y1 = min(ap.strip_edges_mm[k + 1], j2)
        for x in (ap.lo_mm[i, k], ap.hi_mm[i, k]):
            corners += [(float(x), float(y0)), (float(x), float(y1))]
    hull = hull_area(corners)
    if not corners or area <= 0 or hull <= 0:
        return math.nan
    return min(1.0, area / hull)


def lsv_at(ap: Apertures, i: int) -> float:
    """Leaf sequence variability (McNiven 2010) over the open pairs at control point i."""
    open_pairs = np.flatnonzero(ap.width_mm()[i] > 0)
    if open_pairs.size < 2:
        return 1.0
    value = 1.0
    for bank in (ap.lo_mm[i, open_pairs], ap.hi_mm[i, open_pairs]):
        spread = bank.max() - bank.min()
        if spread > 0:
            value *= np.mean(
                [(spread - abs(q - p)) / spread for p, q in zip(bank[:-1], bank[1:], strict=True)]
            )
    return value


def outline_at(ap: Apertures, i: int) -> tuple[float, float]:
    """Open area and outline length at control point i, strip by strip: each open strip
    adds its two sides, and each edge between strips (and beyond the outer ones) the
    part of it that borders exactly one open strip."""
    width = ap.width_mm()[i]
    area = float((width * ap.height_mm[i]).sum())
    perimeter = 0.0
    below = None  # (lo, hi) of the open strip below the edge, if any
    for k in range(width.size + 1):
        above = (ap.lo_mm[i, k], ap.hi_mm[i, k]) if k < width.size and width[k] > 0 else None
        if above is not None:
            perimeter += 2 * ap.height_mm[i, k]
        if below is not None and above is not None:
            overlap = max(0.0, min(below[1], above[1]) - max(below[0], above[0]))
            perimeter += (below[1] - below[0]) + (above[1] - above[0]) - 2 * overlap
        elif below is not None or above is not None:
            lo, hi = below if below is not None else above
            perimeter += hi - lo
        below = above
    return area, perimeter


def leaf_and_gantry_motion(beam, mu: np.ndarray) -> dict[str, float]:
    """The motion measures, interval by interval."""
    cps = beam.control_points
    leaves = np.nan_to_num(cps.positions_mm["MLCX"])
    gantry = np.nan_to_num(cps.gantry_deg)
    moves, travel, per_leaf, turns, on_turns = [], 0.0, np.zeros(leaves.shape[1]), 0.0, 0.0
    for i in range(len(mu)):
        step = np.abs(leaves[i + 1] - leaves[i])
        travel += step.sum()
        turn = abs(gantry[i + 1] - gantry[i])
        turn = min(turn, 360 - turn)
        turns += turn
        if mu[i] > 0:
            moves.append(step.max())
            per_leaf += step
            on_turns += turn
    return {
        "leaf_travel_mm": travel,
        "beam_on_leaf_motion_mm": max(moves, default=0.0),
        "beam_on_leaf_travel_mm": per_leaf.max() if moves else 0.0,
        "mean_aperture_change_mm": float(np.mean(moves)) if moves else 0.0,
        "arc_span_deg": turns,
        "gantry_beam_on_travel_deg": on_turns,
    }


def interval_average(per_cp: np.ndarray, mu: np.ndarray) -> float | None:
    values = (per_cp[:-1] + per_cp[1:]) / 2
    ok = (mu > 0) & np.isfinite(values)
    return float(np.sum(values[ok] * mu[ok]) / np.sum(mu[ok])) if ok.any() else None


def segments_of(positions: np.ndarray, mu: np.ndarray, tolerance: float) -> list[tuple]:
    """Segments grown one beam-on interval at a time against their first control point."""

    def moved(i: int, j: int) -> bool:
        return bool(np.abs(positions[i] - positions[j]).max() > tolerance)

    out, start, share = [], None, 0.0
    for i in range(len(mu)):
        if mu[i] <= 0:
            continue
        if start is not None and (moved(i, start) or moved(i + 1, start)):
            out.append((start, i, share))
            start = None
        if start is None:
            start, share = i, 0.0
        share += mu[i]
    if start is not None:
        out.append((start, len(mu), share))
    return out


# ----------------------------------------------------------------------- tests

SHAPES = ["outline", "islands", "coarse", "carved", "uneven"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("n", "pairs"), [(2, 10), (17, 60), (240, 40)])
def test_convexity_is_the_mean_of_area_over_hull_per_control_point(shape, n, pairs):
    beam = random_beam(n * 1000 + pairs + SHAPES.index(shape), n, pairs, shape)
    m = beam_metrics(beam)
    ap = apertures(beam)
    per_cp = np.array([convexity_at(ap, i) for i in range(n)])
    expected = interval_average(per_cp, m.cp_mu_fraction[:-1])
    assert expected is not None
    assert m.convexity == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_single_aperture_against_its_hull(shape):
    # each control point of a random beam on its own: a static two-point beam
    beam = random_beam(7 + SHAPES.index(shape), 30, 20, shape)
    cps = beam.control_points
    for i in range(cps.count):
        positions = {k: v[[i, i]] for k, v in cps.positions_mm.items()}
        one = replace(
            beam,
            control_points=replace(
                cps,
                positions_mm=positions,
                cumulative_meterset_weight=np.array([0.0, 1.0]),
                gantry_deg=np.array([0.0, 0.0]),
            ),
        )
        expected = convexity_at(apertures(one), 0)
        measured = beam_metrics(one).convexity
        if math.isnan(expected):
            assert measured is None
        else:
            assert measured == pytest.approx(expected, rel=1e-9, abs=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_lsv_and_aav_per_control_point(shape):
    beam = random_beam(100 + SHAPES.index(shape), 50, 30, shape)
    m = beam_metrics(beam)
    ap = apertures(beam)
    expected = [lsv_at(ap, i) for i in range(beam.control_points.count)]
    assert m.lsv == pytest.approx(expected, rel=1e-12, abs=0)
    width = ap.width_mm()
    open_ = width > 0
    largest = np.where(open_, ap.hi_mm, -np.inf).max(0) - np.where(open_, ap.lo_mm, np.inf).min(0)
    denominator = largest[open_.any(0)].sum()
    assert m.aav == pytest.approx(width.sum(axis=1) / denominator, rel=1e-12, abs=0)


@pytest.mark.parametrize("seed", range(4))
def test_segments_with_long_static_stretches(seed):
    # apertures that hold still (within the tolerance, or not quite) for up to 12 points
    rng = np.random.default_rng(seed)
    n = 80
    beam = random_beam(200 + seed, n, 20, "outline")
    leaves = beam.control_points.positions_mm["MLCX"].copy()
    i = 0
    while i < n:
        run = int(rng.integers(1, 13))
        noise = rng.uniform(-0.3, 0.3, size=(min(run, n - i), 1)) * (rng.random() < 0.5)
        leaves[i : i + run] = leaves[i] + noise
        i += run
    weights = np.cumsum(rng.random(n) * (rng.random(n) < 0.8))
    weights = weights / weights[-1]
    positions = {**beam.control_points.positions_mm, "MLCX": leaves}
    jaws = np.tile(positions["ASYMX"][0], (n, 1)), np.tile(positions["ASYMY"][0], (n, 1))
    positions["ASYMX"], positions["ASYMY"] = jaws
    cps = replace(beam.control_points, positions_mm=positions, cumulative_meterset_weight=weights)
    beam = replace(beam, control_points=cps, final_cumulative_meterset_weight=1.0)
    everything = np.hstack(list(positions.values()))
    for tolerance in (0.001, 0.5, 2.0):
        m = beam_metrics(beam, same_aperture_mm=tolerance)
        expected = segments_of(everything, m.cp_mu_fraction[:-1], tolerance)
        assert [(s.first_cp, s.last_cp) for s in m.segments] == [s[:2] for s in expected]
        assert [s.mu_fraction for s in m.segments] == pytest.approx([s[2] for s in expected])
        # the sub-segment measures, from each segment's first control point
        ap = apertures(beam)
        main = max(m.segments, key=lambda s: s.mu_fraction)
        width = ap.width_mm()
        spreads = []
        for s in m.segments:
            open_pairs = np.flatnonzero(width[s.first_cp] > 0)
            lo, hi = ap.lo_mm[s.first_cp, open_pairs], ap.hi_mm[s.first_cp, open_pairs]
            spread = max(lo.max() - lo.min(), hi.max() - hi.min()) if open_pairs.size else 0.0
            if open_pairs.size > 1 and (np.diff(open_pairs) > 1).any():
                spread = max(spread, np.diff(ap.strip_edges_mm).min())
            spreads.append(spread)
        assert m.aperture_irregularity_mm == pytest.approx(max(spreads), rel=1e-12)
        reach = []
        for s in m.segments:
            if s is main:
                continue
            here, there = s.first_cp, main.first_cp
            for k in np.flatnonzero(width[here] > 0):
                if width[there, k] > 0:
                    out = max(
                        ap.lo_mm[there, k] - ap.lo_mm[here, k],
                        ap.hi_mm[here, k] - ap.hi_mm[there, k],
                    )
                else:
                    out = ap.hi_mm[here, k] - ap.lo_mm[here, k]
                reach.append(max(out, 0.0))
        if len(m.segments) > 1:
            assert m.subsegment_max_outside_main_mm == pytest.approx(
                max(reach, default=0.0), rel=1e-12
            )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("n", "pairs"), [(2, 10), (17, 60), (90, 40)])
def test_area_and_perimeter_per_control_point(shape, n, pairs):
    beam = random_beam(300 + n + pairs + SHAPES.index(shape), n, pairs, shape)
    ap = apertures(beam)
    expected = np.array([outline_at(ap, i) for i in range(n)])
    m = beam_metrics(beam)
    for area, perimeter in ((m.area_mm2, m.perimeter_mm), (ap.area_mm2(), ap.perimeter_mm())):
        assert area == pytest.approx(expected[:, 0], rel=1e-12, abs=1e-9)
        assert perimeter == pytest.approx(expected[:, 1], rel=1e-12, abs=1e-9)


def test_absent_or_unknown_positions():
    # no jaws across the strips measure as jaws far outside the field; an unknown (NaN)
    # leaf position closes its strip, as an explicitly closed pair does
    beam = random_beam(400, 12, 20, "outline")
    positions = beam.control_points.positions_mm
    wide = {**positions, "ASYMY": np.tile([-1e4, 1e4], (12, 1))}
    no_y = {k: v for k, v in positions.items() if k != "ASYMY"}
    leaves = positions["MLCX"].copy()
    leaves[3, 5] = np.nan
    closed = positions["MLCX"].copy()
    closed[3, [5, 25]] = closed[3, 5]
    measured = []
    for pos in (wide, no_y, {**positions, "MLCX": leaves}, {**positions, "MLCX": closed}):
        cps = replace(beam.control_points, positions_mm=pos)
        devices = beam.devices if "ASYMY" in pos else (b.DEVICES[0], beam.devices[2])
        one = replace(beam, control_points=cps, devices=devices)
        m, ap = beam_metrics(one), apertures(one)
        assert m.area_mm2 == pytest.approx(ap.area_mm2(), rel=1e-12)
        assert m.perimeter_mm == pytest.approx(ap.perimeter_mm(), rel=1e-12)
        measured.append(m)
    for first, second in (measured[:2], measured[2:]):
        for field in ("area_mm2", "perimeter_mm", "lsv", "aav", "mcs", "convexity"):
            assert getattr(first, field) == pytest.approx(getattr(second, field), rel=1e-12)
        assert first.small_aperture_score == pytest.approx(second.small_aperture_score)


@pytest.mark.parametrize("seed", range(6))
def test_leaf_and_gantry_motion_interval_by_interval(seed):
    rng = np.random.default_rng(seed)
    n = [2, 5, 16, 40, 120, 178][seed]
    beam = random_beam(500 + seed, n, 20, SHAPES[seed % len(SHAPES)])
    weights = np.cumsum(rng.random(n) * (rng.random(n) < 0.7))
    weights = weights / max(weights[-1], 1e-9)
    gantry = (180 + np.cumsum(rng.uniform(-3, 3, n))) % 360
    if seed % 2:
        gantry[rng.random(n) < 0.1] = np.nan  # unknown angles count as 0
    if seed == 2:
        gantry[:] = 90.0  # a static field
    cps = replace(beam.control_points, cumulative_meterset_weight=weights, gantry_deg=gantry)
    beam = replace(beam, control_points=cps, final_cumulative_meterset_weight=1.0)
    m = beam_metrics(beam)
    for field, value in leaf_and_gantry_motion(beam, m.cp_mu_fraction[:-1]).items():
        assert getattr(m, field) == pytest.approx(value, rel=1e-12, abs=1e-12), field


@pytest.mark.parametrize("tolerance", [0.001, 0.5, 3.0])
def test_segments_of_arcs_and_single_intervals(tolerance):
    # an arc: leaves move at every control point, mostly further than the tolerance,
    # sometimes not; beam on throughout, or in one interval only
    rng = np.random.default_rng(7)
    n = 60
    beam = random_beam(600, n, 20, "outline")
    leaves = beam.control_points.positions_mm["MLCX"][0] + np.cumsum(
        rng.uniform(0, 2, size=(n, 1)) * rng.choice([-1, 1], size=(n, 40)), axis=0
    )
    positions = {**beam.control_points.positions_mm, "MLCX": leaves}
    positions["ASYMX"], positions["ASYMY"] = (
        np.tile(positions[k][0], (n, 1)) for k in ("ASYMX", "ASYMY")
    )
    everything = np.hstack(list(positions.values()))
    arc = np.r_[0, np.cumsum(rng.uniform(0.5, 1.5, n - 1))]
    for weights in (arc / arc[-1], np.r_[np.zeros(30), np.ones(n - 30)]):
        cps = replace(
            beam.control_points, positions_mm=positions, cumulative_meterset_weight=weights
        )
        m = beam_metrics(replace(beam, control_points=cps), same_aperture_mm=tolerance)
        expected = segments_of(everything, m.cp_mu_fraction[:-1], tolerance)
        assert [(s.first_cp, s.last_cp) for s in m.segments] == [s[:2] for s in expected]
        assert [s.mu_fraction for s in m.segments] == pytest.approx([s[2] for s in expected])


# ------------------------------------------- sub-segments against the main one, corners


def outside_area_at(ap: Apertures, sub: int, main: int, gap: float, tol: float):
    """Open area of the aperture at control point ``sub`` outside the one at ``main``,
    and its own open area, one strip at a time: the sub-segment's rectangle less its
    intersection with the main one's, less the parts beyond the main one's edges that
    reach no further than ``tol`` beyond them. Openings narrower than ``gap`` are
    closed; a jaw across standing out by no more than ``tol`` stands where the main one
    does."""
    width = ap.width_mm()
    edges = ap.strip_edges_mm

    def jaws(i):
        j1, j2 = ap.jaw_strip_mm[i]
        return (-math.inf if math.isnan(j1) else j1, math.inf if math.isnan(j2) else j2)

    s1, s2 = jaws(sub)
    m1, m2 = jaws(main)
    if m1 - tol <= s1 < m1:
        s1 = m1
    if m2 < s2 <= m2 + tol:
        s2 = m2
    outside = own = 0.0
    for k in range(width.shape[1]):
        w = width[sub, k]
        y0, y1 = max(edges[k], s1), min(edges[k + 1], s2)
        h = max(y1 - y0, 0.0)
        if w <= 0 or w < gap or h <= 0:
            continue
        lo, hi = ap.lo_mm[sub, k], ap.hi_mm[sub, k]
        own += w * h
        inter = forgiven = 0.0
        if width[main, k] > 0 and width[main, k] >= gap:
            mlo, mhi = ap.lo_mm[main, k], ap.hi_mm[main, k]
            my0, my1 = max(edges[k], m1), min(edges[k + 1], m2)
            oh = max(min(y1, my1) - max(y0, my0), 0.0)
            inter = max(min(hi, mhi) - max(lo, mlo), 0.0) * oh
            # parts beyond the main opening's edges, forgiven if they reach no further
            # than the tolerance beyond them
            left, right = max(min(hi, mlo) - lo, 0.0), max(hi - max(lo, mhi), 0.0)
            forgiven = (left * (mlo - lo <= tol) + right * (hi - mhi <= tol)) * oh
        outside += w * h - inter - forgiven
    return outside, own


def corner_at(ap: Apertures, i: int, gap: float, tol: float):
    """(covered share, extent share) of the aperture at control point i when its leaves
    stand in only at the corners of its bounding rectangle; None when they shape it
    otherwise; "none" when nothing is open. One strip at a time."""
    width, h = ap.width_mm()[i], ap.height_mm[i]
    lo, hi = ap.lo_mm[i], ap.hi_mm[i]
    open_ = [k for k in range(width.size) if width[k] > 0 and width[k] >= gap and h[k] > 0]
    if not open_:
        return "none"
    if open_ != list(range(open_[0], open_[-1] + 1)):
        return None
    left, right = min(lo[k] for k in open_), max(hi[k] for k in open_)
    edge = [k for k in open_ if lo[k] <= left + tol and hi[k] >= right - tol]
    if not edge or edge != list(range(edge[0], edge[-1] + 1)):
        return None
    for k in range(open_[0], edge[0]):  # below the middle: wider towards it
        if lo[k + 1] > lo[k] + tol or hi[k + 1] < hi[k] - tol:
            return None
    for k in range(edge[-1], open_[-1]):  # above it: narrower away from it
        if lo[k + 1] < lo[k] - tol or hi[k + 1] > hi[k] + tol:
            return None
    tall = sum(h[k] for k in open_)
    covered = sum((right - left - width[k]) * h[k] for k in open_ if k not in edge)
    extent = max(
        sum(h[k] for k in range(open_[0], edge[0])),
        sum(h[k] for k in range(edge[-1] + 1, open_[-1] + 1)),
    )
    return covered / ((right - left) * tall), extent / tall


def segmented_beam(rng, apertures_, jaws_x, jaws_y, edges, mu):
    """Step-and-shoot: each aperture (leaves, jaws) held over a pair of control points."""
    leaves, weights, total = [], [], 0.0
    for aperture, share in zip(apertures_, mu, strict=True):
        leaves += [aperture, aperture]
        weights += [total, total + share]
        total += share
    cps = b.control_points(leaves, weights)
    positions = dict(cps.positions_mm)
    positions["ASYMX"] = np.repeat(np.asarray(jaws_x, dtype=float), 2, axis=0)
    positions["ASYMY"] = np.repeat(np.asarray(jaws_y, dtype=float), 2, axis=0)
    cps = replace(cps, positions_mm=positions)
    mlc = BeamLimitingDevice("MLCX", len(edges) - 1, tuple(float(e) for e in edges))
    return replace(b.beam(1, cps), devices=(*b.DEVICES[:2], mlc))


def field_in_field_like(seed: int):
    """A main aperture and sub-segments made from it: closed in (nested), leaves pushed
    out by 0-6 mm, jaws moved by up to 3 mm either way (uncovering slivers of pairs the
    main jaws hide), pairs parked shut at a 0.5-mm gap at random places, or a random
    aperture of their own."""
    rng = np.random.default_rng(seed)
    pairs = 30
    edges = np.cumsum(np.r_[0.0, rng.choice([2.5, 5.0, 10.0], size=pairs)])
    edges -= edges[-1] / 2
    half = 40 * np.sqrt(1 - 0.8 * np.linspace(-1, 1, pairs) ** 2) + rng.uniform(0, 5, pairs)
    main = np.r_[-half, half]
    main_y = [edges[3] + rng.uniform(0, 3), edges[-4] - rng.uniform(0, 3)]
    main_x = [-60.0, 60.0]
    apertures_, jx, jy = [main], [main_x], [main_y]
    for _ in range(int(rng.integers(1, 5))):
        leaves = main.copy()
        kind = rng.integers(4)
        if kind == 0:  # closed in: nested
            leaves[:pairs] += rng.uniform(0, 15, pairs)
            leaves[pairs:] -= rng.uniform(0, 15, pairs)
        elif kind == 1:  # some leaves pushed out
            pick = rng.random(2 * pairs) < 0.3
            leaves += np.where(pick, rng.uniform(0, 6, 2 * pairs), 0) * np.r_[-1, 1].repeat(pairs)
        elif kind == 2:  # random own aperture
            centre = rng.uniform(-20, 20)
            width = rng.uniform(0, 40, pairs)
            leaves = np.r_[centre - width, centre + width]
        parked = rng.random(pairs) < 0.2
        spot = rng.uniform(-50, 50, pairs)
        leaves[:pairs] = np.where(parked, spot - 0.25, leaves[:pairs])
        leaves[pairs:] = np.where(parked, spot + 0.25, leaves[pairs:])
        apertures_.append(leaves)
        jy.append([main_y[0] + rng.uniform(-3, 3), main_y[1] + rng.uniform(-3, 3)])
        jx.append([main_x[0] + rng.uniform(-3, 3), main_x[1] + rng.uniform(-3, 3)])
    # the main segment carries the most MU
    mu = np.r_[rng.uniform(0.5, 0.8), rng.uniform(0.01, 0.2, len(apertures_) - 1)]
    return segmented_beam(rng, apertures_, jx, jy, edges, mu / mu.sum())


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("gap", "tol"), [(0.0, 0.0), (3.0, 2.0), (1.0, 5.0)])
def test_area_outside_the_main_segment_strip_by_strip(seed, gap, tol):
    beam = field_in_field_like(seed)
    m = beam_metrics(beam, closed_gap_mm=gap, inside_tolerance_mm=tol)
    ap = apertures(beam)
    main = max(m.segments, key=lambda s: s.mu_fraction)
    subs = [s for s in m.segments if s is not main]
    measured = [outside_area_at(ap, s.first_cp, main.first_cp, gap, tol) for s in subs]
    areas = [out for out, _ in measured]
    shares = [out / own if own > 0 else 0.0 for out, own in measured]
    assert m.subsegment_outside_area_mm2 == pytest.approx(max(areas), rel=1e-9, abs=1e-9)
    assert m.subsegment_outside_share == pytest.approx(max(shares), rel=1e-9, abs=1e-12)
    outside_mu = sum(s.mu_fraction for s, a in zip(subs, areas, strict=True) if a > 1e-9)
    assert m.outside_mu_fraction == pytest.approx(outside_mu, rel=1e-9, abs=1e-12)


def rounded_or_not(seed: int):
    """Segments that are rectangles with corners cut (stepping in towards the ends, or
    not quite), with a notch, with pairs parked shut outside them, or target-like."""
    rng = np.random.default_rng(seed)
    pairs = 40
    edges = np.cumsum(np.r_[0.0, rng.choice([2.5, 5.0], size=pairs)])
    edges -= edges[-1] / 2
    apertures_, jx, jy = [], [], []
    for _ in range(int(rng.integers(1, 4))):
        left, right = -rng.uniform(20, 60), rng.uniform(20, 60)
        lo, hi = np.full(pairs, left), np.full(pairs, right)
        kind = rng.integers(5)
        if kind in (0, 1, 2):  # corners stepping in over a few pairs at either end
            for bank, sign in ((lo, 1), (hi, -1)):
                for end in (slice(None), slice(None, None, -1)):
                    n = int(rng.integers(0, 8))
                    if n:
                        depth = np.sort(rng.uniform(0, 15, n))[::-1] * rng.choice([1, 0.1])
                        bank[end][:n] += sign * depth
            if kind == 1:  # a notch somewhere
                k = int(rng.integers(pairs))
                lo[k] += rng.uniform(0, 6)
            if kind == 2:  # leaves a little off the edge (within some tolerances)
                lo += rng.uniform(0, 1.5, pairs) * (rng.random(pairs) < 0.3)
        elif kind == 3:  # target-like
            half = (right - left) / 2 * np.sqrt(1 - 0.9 * np.linspace(-1, 1, pairs) ** 2)
            lo, hi = -half, half
        closed = rng.random(pairs) < 0.15 * (kind == 4)  # pairs parked shut (kind 4)
        spot = rng.uniform(-50, 50, pairs)
        lo, hi = np.where(closed, spot - 0.3, lo), np.where(closed, spot + 0.3, hi)
        apertures_.append(np.r_[lo, hi])
        jx.append([-100.0, 100.0] if rng.random() < 0.5 else [left + 1, right - 1])
        jy.append([edges[2] + rng.uniform(0, 4), edges[-3] - rng.uniform(0, 4)])
    mu = rng.uniform(0.1, 1, len(apertures_))
    return segmented_beam(rng, apertures_, jx, jy, edges, mu / mu.sum())


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize(("gap", "tol"), [(0.0, 0.0), (3.0, 2.0), (0.0, 0.5)])
def test_corner_leaves_strip_by_strip(seed, gap, tol):
    beam = rounded_or_not(seed)
    m = beam_metrics(beam, closed_gap_mm=gap, rectangle_mm=tol)
    ap = apertures(beam)
    found = [corner_at(ap, s.first_cp, gap, tol) for s in m.segments]
    found = [f for f in found if f != "none"]
    if m.aperture_irregularity_mm <= tol:  # every edge within the tolerance: a rectangle
        assert (m.corner_leaf_area_share, m.corner_leaf_extent_share) == (0.0, 0.0)
        assert all(f is None or f == (0.0, 0.0) for f in found)
    elif not found or any(f is None for f in found):
        assert (m.corner_leaf_area_share, m.corner_leaf_extent_share) == (None, None)
    else:
        assert m.corner_leaf_area_share == pytest.approx(max(f[0] for f in found), rel=1e-9)
        assert m.corner_leaf_extent_share == pytest.approx(max(f[1] for f in found), rel=1e-9)
