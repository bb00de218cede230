"""Step 4, measuring: aperture and modulation numbers from control points.

numpy only: nothing here knows pydicom or files. Numbers are raw measurements
(mm, MU, degrees); deciding what they mean is the classifier's job, with the
thresholds of the policy.

Aperture model: the field is cut into strips perpendicular to leaf travel at
every leaf boundary of every MLC layer. In each strip the open interval is the
intersection of each layer's leaf-pair opening and the jaws; strips outside the
jaws are closed. Area is the sum of strip openings times strip widths; the
perimeter follows the outline of that union of strips. On the shared Pinnacle
plan this reproduces DVHA-MLCA's per-control-point areas and perimeters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .facts import Beam, BeamLimitingDevice

# Differences smaller than this are numeric noise in exported positions, not motion.
_NOISE_MM = 1e-3


@dataclass(frozen=True, eq=False)
class Apertures:
    """Per control point: the open interval and open height of each strip."""

    strip_edges_mm: np.ndarray  # (s + 1,) along the strip axis
    lo_mm: np.ndarray  # (n, s) open interval start per strip
    hi_mm: np.ndarray  # (n, s) open interval end (hi <= lo: closed)
    height_mm: np.ndarray  # (n, s) part of each strip inside the jaws across the strips
    jaw_travel_mm: np.ndarray  # (n, 2) jaws along leaf travel (NaN: no such jaw)
    jaw_strip_mm: np.ndarray  # (n, 2) jaws across the strips
    has_mlc: bool
    leaf_axis: str  # "X" or "Y": the axis the leaves (or, without MLC, X jaws) move along

    def width_mm(self) -> np.ndarray:
        return np.where(self.height_mm > 0, np.clip(self.hi_mm - self.lo_mm, 0.0, None), 0.0)

    def area_mm2(self) -> np.ndarray:
        return (self.width_mm() * self.height_mm).sum(axis=1)

    def perimeter_mm(self) -> np.ndarray:
        """Outline length of the union of open strips, per control point."""
        width = self.width_mm()
        open_ = width > 0
        sides = (open_ * self.height_mm).sum(axis=1) * 2.0
        lo = np.where(open_, self.lo_mm, 0.0)
        hi = np.where(open_, self.hi_mm, 0.0)
        # Edges between neighbouring strips: the length covered by exactly one of them.
        pad = np.zeros((width.shape[0], 1))
        lo_p, hi_p, w_p = (np.hstack([pad, a, pad]) for a in (lo, hi, width))
        both = (w_p[:, 1:] > 0) & (w_p[:, :-1] > 0)
        overlap = np.minimum(hi_p[:, 1:], hi_p[:, :-1]) - np.maximum(lo_p[:, 1:], lo_p[:, :-1])
        overlap = np.where(both, np.clip(overlap, 0, None), 0.0)
        across = (w_p[:, 1:] + w_p[:, :-1] - 2 * overlap).sum(axis=1)
        return sides + across


def apertures(beam: Beam) -> Apertures | None:
    """The beam's aperture at every control point; None when no device says anything."""
    cps = beam.control_points
    n = cps.count
    mlcs = [
        d
        for d in beam.devices
        if d.is_mlc and d.leaf_boundaries_mm and d.device_type in cps.positions_mm
    ]
    leaf_axis = mlcs[0].travel_axis if mlcs else "X"
    strip_axis = "Y" if leaf_axis == "X" else "X"
    jaw_travel = _jaws(beam, cps.positions_mm, leaf_axis, n)
    jaw_strip = _jaws(beam, cps.positions_mm, strip_axis, n)
    if not mlcs:
        # Jaws only: one strip between the jaws across, open between the jaws along.
        if np.isnan(jaw_travel).any() or np.isnan(jaw_strip).any():
            return None
        edges = np.array([jaw_strip[:, 0].min(), jaw_strip[:, 1].max()])
        lo, hi = jaw_travel[:, :1].copy(), jaw_travel[:, 1:].copy()
        height = _strip_heights(edges, jaw_strip)
        return Apertures(edges, lo, hi, height, jaw_travel, jaw_strip, False, leaf_axis)
    mlcs = [d for d in mlcs if d.travel_axis == leaf_axis]
    edges = np.unique(np.concatenate([np.asarray(d.leaf_boundaries_mm) for d in mlcs]))
    mids = (edges[:-1] + edges[1:]) / 2
    lo = np.full((n, mids.size), -np.inf)
    hi = np.full((n, mids.size), np.inf)
    for dev in mlcs:  # dual-layer MLCs: the opening is what every layer leaves open
        bounds = np.asarray(dev.leaf_boundaries_mm)
        pos = cps.positions_mm[dev.device_type]
        pairs = dev.number_of_pairs
        idx = np.searchsorted(bounds, mids, side="right") - 1
        inside = (idx >= 0) & (idx < pairs)
        idx_c = np.clip(idx, 0, pairs - 1)
        lo = np.where(inside, np.maximum(lo, pos[:, :pairs][:, idx_c]), lo)
        hi = np.where(inside, np.minimum(hi, pos[:, pairs:][:, idx_c]), hi)
    lo = np.maximum(lo, np.nan_to_num(jaw_travel[:, :1], nan=-np.inf))
    hi = np.minimum(hi, np.nan_to_num(jaw_travel[:, 1:], nan=np.inf))
    # Where neither leaves nor jaws limit a strip the opening is unknown: count it closed.
    unbounded = ~np.isfinite(lo) | ~np.isfinite(hi)
    lo = np.where(unbounded, 0.0, lo)
    hi = np.where(unbounded, 0.0, hi)
    height = _strip_heights(edges, jaw_strip)
    return Apertures(edges, lo, hi, height, jaw_travel, jaw_strip, True, leaf_axis)


def _strip_heights(edges: np.ndarray, jaw_strip: np.ndarray) -> np.ndarray:
    """The part of each strip between the jaws across the strips, per control point."""
    j1 = np.nan_to_num(jaw_strip[:, :1], nan=-np.inf)
    j2 = np.nan_to_num(jaw_strip[:, 1:], nan=np.inf)
    top = np.minimum(edges[1:][None, :], j2)
    bottom = np.maximum(edges[:-1][None, :], j1)
    return np.clip(top - bottom, 0, None)


def _jaws(beam: Beam, positions: dict[str, np.ndarray], axis: str, n: int) -> np.ndarray:
    out = np.full((n, 2), np.nan)
    for dev in beam.devices:
        if dev.is_mlc or dev.travel_axis != axis:
            continue
        pos = positions.get(dev.device_type)
        if pos is not None and pos.shape[1] == 2:
            out = np.where(np.isnan(out), pos, out)
    return out


# ------------------------------------------------------------------ beam metrics


@dataclass(frozen=True, eq=False)
class Segment:
    """A stretch of beam-on control-point intervals with an unchanging aperture."""

    first_cp: int
    last_cp: int
    mu_fraction: float


@dataclass(frozen=True, eq=False)
class BeamMetrics:
    """Raw numbers about one beam; ``None`` when the data cannot say."""

    control_points: int
    cp_mu_fraction: np.ndarray  # (n,) fraction of the beam's MU from cp i to i+1
    area_mm2: np.ndarray | None  # (n,)
    perimeter_mm: np.ndarray | None
    has_mlc: bool
    leaf_data_stripped: bool  # every MLC position is exactly 0
    weights_valid: bool  # cumulative meterset weights present and non-decreasing
    beam_on_intervals: int
    segments: tuple[Segment, ...]
    largest_segment_mu_fraction: float | None
    subsegment_max_outside_main_mm: float | None  # how far sub-segments leave the main one
    beam_on_leaf_motion_mm: float  # largest leaf move between two points while MU is delivered
    beam_on_leaf_travel_mm: float  # the furthest any one leaf travels while MU is delivered
    leaf_travel_mm: float  # summed leaf motion over the whole beam
    aperture_irregularity_mm: float | None  # 0 for a rectangle; grows as edges vary
    gantry_beam_on_travel_deg: float  # gantry rotation while MU is delivered
    arc_span_deg: float
    mu_per_degree_cv: float | None  # coefficient of variation of MU/degree over the arc
    mean_area_mm2: float | None  # MU-weighted
    mean_aperture_change_mm: float  # mean leaf move per beam-on interval
    # Modulation complexity score (McNiven et al., Med Phys 37:505, 2010): leaf sequence
    # variability x aperture area variability, MU-weighted; 1 for an open rectangle,
    # towards 0 as apertures become irregular and small.
    mcs: float | None
    # Small-aperture score (after Crowe et al. 2014): MU-weighted share of open leaf
    # pairs narrower than the width asked for.
    small_aperture_score: float | None
    # Aperture area / area of its convex hull, MU-weighted: 1 when the aperture follows
    # a convex, target-like outline; lower when leaves carve inside it.
    convexity: float | None
    lsv: np.ndarray | None = None  # (n,) leaf sequence variability per control point
    aav: np.ndarray | None = None  # (n,) aperture area variability per control point


def beam_metrics(
    beam: Beam, same_aperture_mm: float = _NOISE_MM, small_aperture_mm: float = 10.0
) -> BeamMetrics:
    """Measure one beam. Positions within ``same_aperture_mm`` count as one aperture;
    leaf-pair openings narrower than ``small_aperture_mm`` count as small apertures."""
    cps = beam.control_points
    n = cps.count
    w = np.asarray(cps.cumulative_meterset_weight, dtype=float)
    final = beam.final_cumulative_meterset_weight
    weights_valid = bool(
        n >= 2
        and not np.isnan(w).any()
        and (np.diff(w) >= -_NOISE_MM * 1e-3).all()
        and w[-1] > w[0]
    )
    if weights_valid:
        total = final if final is not None and final > 0 else float(w[-1] - w[0])
        d_mu = np.clip(np.diff(w), 0, None) / total
    else:
        d_mu = np.zeros(max(n - 1, 0))
    cp_mu = np.append(d_mu, 0.0) if n else np.zeros(0)
    beam_on = d_mu > 0

    ap = apertures(beam)
    area = perim = None
    if ap is not None:
        area = ap.area_mm2()
        perim = ap.perimeter_mm()

    pos = cps.positions_mm
    mlc = [pos[d.device_type] for d in beam.devices if d.is_mlc and d.device_type in pos]
    leaves = np.nan_to_num(np.hstack(mlc)) if mlc else np.zeros((n, 0))
    everything = np.nan_to_num(np.hstack(list(pos.values()))) if pos else np.zeros((n, 0))
    has_mlc = leaves.shape[1] > 0
    stripped = bool(has_mlc and not leaves.any())
    steps = np.abs(np.diff(leaves, axis=0)) if has_mlc and n > 1 else np.zeros((max(n - 1, 0), 0))
    moves = steps.max(axis=1) if steps.shape[1] else np.zeros(max(n - 1, 0))
    travel = float(steps.sum())
    on_motion = float(moves[beam_on].max()) if beam_on.any() else 0.0
    on_travel = float(steps[beam_on].sum(axis=0).max()) if beam_on.any() and steps.shape[1] else 0.0

    g = np.asarray(cps.gantry_deg, dtype=float)
    dg = _angle_steps(g)
    gantry_on = float(dg[beam_on].sum()) if beam_on.any() else 0.0
    span = float(dg.sum())

    cv = None
    arc_steps = beam_on & (dg > _NOISE_MM)
    if arc_steps.sum() >= 2:
        rate = d_mu[arc_steps] / dg[arc_steps]
        mean = float(np.average(rate, weights=dg[arc_steps]))
        if mean > 0:
            var = float(np.average((rate - mean) ** 2, weights=dg[arc_steps]))
            cv = float(np.sqrt(var) / mean)

    segments = _segments(beam_on, everything, d_mu, same_aperture_mm) if n >= 2 else ()
    largest = max((s.mu_fraction for s in segments), default=None)
    outside = None
    irregular = None
    mean_area = None
    if ap is not None and segments:
        main = max(segments, key=lambda s: s.mu_fraction)
        others = [s for s in segments if s is not main]
        if others:
            outside = max(_outside(ap, s.first_cp, main.first_cp) for s in others)
        irregular = max(_irregularity(ap, s.first_cp) for s in segments)
    if area is not None and weights_valid and d_mu.sum() > 0:
        mean_area = float((area[:-1] * d_mu).sum() / d_mu.sum())
    mean_change = float(moves[beam_on].mean()) if beam_on.any() else 0.0

    mcs = sas = convex = lsv = aav = None
    if ap is not None and weights_valid and beam_on.any():
        lsv, aav = _lsv_aav(ap)
        mcs = _interval_average(lsv * aav, d_mu)
        sas = _interval_average(_small_share(ap, small_aperture_mm), d_mu)
        # only the control points that bound a beam-on interval weigh in
        needed = np.append(beam_on, False) | np.insert(beam_on, 0, False)
        convex = _interval_average(_convexity(ap, needed), d_mu)

    return BeamMetrics(
        control_points=n,
        cp_mu_fraction=cp_mu,
        area_mm2=area,
        perimeter_mm=perim,
        has_mlc=has_mlc,
        leaf_data_stripped=stripped,
        weights_valid=weights_valid,
        beam_on_intervals=int(beam_on.sum()),
        segments=segments,
        largest_segment_mu_fraction=largest,
        subsegment_max_outside_main_mm=outside,
        beam_on_leaf_motion_mm=on_motion,
        beam_on_leaf_travel_mm=on_travel,
        leaf_travel_mm=travel,
        aperture_irregularity_mm=irregular,
        gantry_beam_on_travel_deg=gantry_on,
        arc_span_deg=span,
        mu_per_degree_cv=cv,
        mean_area_mm2=mean_area,
        mean_aperture_change_mm=mean_change,
        mcs=mcs,
        small_aperture_score=sas,
        convexity=convex,
        lsv=lsv,
        aav=aav,
    )


@dataclass(frozen=True)
class PlanMetrics:
    """Beam metrics aggregated over a plan's treatment beams, weighted by MU."""

    beams: int
    meterset_mu: float
    control_points: int
    segments: int
    mcs: float | None
    small_aperture_score: float | None
    mean_area_mm2: float | None


def plan_metrics(beams: list[tuple[BeamMetrics, float | None]]) -> PlanMetrics:
    """Aggregate (metrics, beam MU) pairs; beams without MU do not weigh in."""

    def weighted(values: list[tuple[float | None, float | None]]) -> float | None:
        pairs = [(v, w) for v, w in values if v is not None and w is not None and w > 0]
        if not pairs:
            return None
        total = sum(w for _, w in pairs)
        return float(sum(v * w for v, w in pairs) / total)

    return PlanMetrics(
        beams=len(beams),
        meterset_mu=float(sum(mu for _, mu in beams if mu is not None)),
        control_points=sum(m.control_points for m, _ in beams),
        segments=sum(len(m.segments) for m, _ in beams),
        mcs=weighted([(m.mcs, mu) for m, mu in beams]),
        small_aperture_score=weighted([(m.small_aperture_score, mu) for m, mu in beams]),
        mean_area_mm2=weighted([(m.mean_area_mm2, mu) for m, mu in beams]),
    )


def _interval_average(per_cp: np.ndarray, d_mu: np.ndarray) -> float | None:
    """MU-weighted mean over beam-on intervals, each taking the mean of its two ends."""
    values = (per_cp[:-1] + per_cp[1:]) / 2
    ok = (d_mu > 0) & np.isfinite(values)
    if not ok.any():
        return None
    return float(np.average(values[ok], weights=d_mu[ok]))


def _lsv_aav(ap: Apertures) -> tuple[np.ndarray, np.ndarray]:
    """Per control point LSV and AAV (McNiven 2010), over the open leaf pairs."""
    width = ap.width_mm()
    open_ = width > 0
    n = width.shape[0]
    lsv = np.ones(n)
    for i in range(n):
        idx = np.flatnonzero(open_[i])
        if idx.size < 2:
            continue
        value = 1.0
        for bank in (ap.lo_mm[i, idx], ap.hi_mm[i, idx]):
            spread = float(bank.max() - bank.min())
            if spread > 0:
                value *= float(np.mean((spread - np.abs(np.diff(bank))) / spread))
        lsv[i] = value
    # AAV: the aperture against the largest opening each leaf pair has in the beam.
    lo = np.where(open_, ap.lo_mm, np.inf).min(axis=0)
    hi = np.where(open_, ap.hi_mm, -np.inf).max(axis=0)
    ever = open_.any(axis=0)
    denominator = float(np.where(ever, hi - lo, 0.0).sum())
    aav = width.sum(axis=1) / denominator if denominator > 0 else np.zeros(n)
    return lsv, aav


def _small_share(ap: Apertures, limit_mm: float) -> np.ndarray:
    width = ap.width_mm()
    open_ = width > 0
    count = open_.sum(axis=1)
    small = (open_ & (width < limit_mm)).sum(axis=1)
    return np.where(count > 0, small / np.maximum(count, 1), np.nan)


def _convexity(ap: Apertures, needed: np.ndarray) -> np.ndarray:
    """Per control point (where ``needed``): open area / area of the convex hull of the
    open strips. NaN elsewhere."""
    width = ap.width_mm()
    area = ap.area_mm2()
    out = np.full(width.shape[0], np.nan)
    j1 = np.nan_to_num(ap.jaw_strip_mm[:, 0], nan=-np.inf)
    j2 = np.nan_to_num(ap.jaw_strip_mm[:, 1], nan=np.inf)
    edges = ap.strip_edges_mm
    for i in np.flatnonzero(needed):
        idx = np.flatnonzero(width[i] > 0)
        if idx.size == 0 or area[i] <= 0:
            continue
        y0 = np.maximum(edges[idx], j1[i]).tolist()
        y1 = np.minimum(edges[idx + 1], j2[i]).tolist()
        x0 = ap.lo_mm[i, idx].tolist()
        x1 = ap.hi_mm[i, idx].tolist()
        points = sorted(
            {
                (x, y)
                for xs, ys in ((x0, y0), (x0, y1), (x1, y0), (x1, y1))
                for x, y in zip(xs, ys, strict=True)
            }
        )
        hull = _hull_area(points)
        out[i] = min(1.0, area[i] / hull) if hull > 0 else np.nan
    return out


def _hull_area(points: list[tuple[float, float]]) -> float:
    """Area of the convex hull of sorted, distinct points (Andrew's monotone chain)."""
    if len(points) < 3:
        return 0.0

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    hull = half(points)[:-1] + half(points[::-1])[:-1]
    twice = 0.0
    for (ax, ay), (bx, by) in zip(hull, hull[1:] + hull[:1], strict=True):
        twice += ax * by - ay * bx
    return abs(twice) / 2


def _angle_steps(g: np.ndarray) -> np.ndarray:
    """Absolute gantry rotation between consecutive control points, across 0/360."""
    if g.size < 2:
        return np.zeros(0)
    d = np.abs(np.diff(np.nan_to_num(g)))
    return np.minimum(d, 360.0 - d)


def _segments(
    beam_on: np.ndarray, positions: np.ndarray, d_mu: np.ndarray, tolerance_mm: float
) -> tuple[Segment, ...]:
    """Group beam-on intervals into segments of unchanging aperture (jaws and leaves).

    A segment grows while every position stays within ``tolerance_mm`` of where it
    was when the segment started; an interval during which something moves further
    is a segment of its own.
    """
    out: list[Segment] = []
    start: int | None = None
    mu = 0.0

    def far(i: int, j: int) -> bool:
        return bool(positions.shape[1] and np.abs(positions[i] - positions[j]).max() > tolerance_mm)

    for i in np.flatnonzero(beam_on):
        if start is not None and (far(i, start) or far(i + 1, start)):
            out.append(Segment(start, int(i), mu))
            start = None
        if start is None:
            start, mu = int(i), 0.0
        mu += float(d_mu[i])
    if start is not None:
        out.append(Segment(start, len(beam_on), mu))
    return tuple(out)


def _outside(ap: Apertures, cp: int, main_cp: int) -> float:
    """How far (mm) the aperture at ``cp`` reaches outside the one at ``main_cp``."""
    w = ap.width_mm()
    open_ = w[cp] > 0
    if not open_.any():
        return 0.0
    main_open = w[main_cp] > 0
    lo, hi = ap.lo_mm[cp], ap.hi_mm[cp]
    mlo, mhi = ap.lo_mm[main_cp], ap.hi_mm[main_cp]
    reach = np.where(
        main_open,
        np.maximum(mlo - lo, hi - mhi),
        hi - lo,  # open where the main aperture is closed: the whole opening is outside
    )
    return float(np.clip(reach[open_], 0, None).max())


def _irregularity(ap: Apertures, cp: int) -> float:
    """0 for a rectangle: the spread of the open strips' edges, or a gap between them."""
    w = ap.width_mm()[cp]
    open_ = np.flatnonzero(w > 0)
    if open_.size == 0:
        return 0.0
    lo = ap.lo_mm[cp][open_]
    hi = ap.hi_mm[cp][open_]
    spread = max(float(lo.max() - lo.min()), float(hi.max() - hi.min()))
    if open_.size > 1 and (np.diff(open_) > 1).any():  # separate islands
        spread = max(spread, float(np.diff(ap.strip_edges_mm).min()))
    return spread


def device_summary(devices: tuple[BeamLimitingDevice, ...]) -> str:
    return "+".join(d.device_type for d in devices) or "none"
