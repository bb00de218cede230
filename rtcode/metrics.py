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

    def area_mm2(self, width: np.ndarray | None = None) -> np.ndarray:
        """Open area per control point (``width``: ``width_mm()`` when already at hand)."""
        if width is None:
            width = self.width_mm()
        return (width * self.height_mm).sum(axis=1)

    def perimeter_mm(self, width: np.ndarray | None = None) -> np.ndarray:
        """Outline length of the union of open strips, per control point (``width``:
        ``width_mm()`` when already at hand)."""
        if width is None:
            width = self.width_mm()
        open_ = width > 0
        sides = (open_ * self.height_mm).sum(axis=1) * 2.0
        lo = np.where(open_, self.lo_mm, 0.0)
        hi = np.where(open_, self.hi_mm, 0.0)
        # Edges between neighbouring strips: the length covered by exactly one of them.
        pad = np.zeros((width.shape[0], 1))
        lo_p, hi_p, w_p = (np.concatenate([pad, a, pad], axis=1) for a in (lo, hi, width))
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
    lo = np.maximum(lo, _nan_to_num(jaw_travel[:, :1], nan=-np.inf))
    hi = np.minimum(hi, _nan_to_num(jaw_travel[:, 1:], nan=np.inf))
    # Where neither leaves nor jaws limit a strip the opening is unknown: count it closed.
    unbounded = ~np.isfinite(lo) | ~np.isfinite(hi)
    lo = np.where(unbounded, 0.0, lo)
    hi = np.where(unbounded, 0.0, hi)
    height = _strip_heights(edges, jaw_strip)
    return Apertures(edges, lo, hi, height, jaw_travel, jaw_strip, True, leaf_axis)


def _strip_heights(edges: np.ndarray, jaw_strip: np.ndarray) -> np.ndarray:
    """The part of each strip between the jaws across the strips, per control point."""
    j1 = _nan_to_num(jaw_strip[:, :1], nan=-np.inf)
    j2 = _nan_to_num(jaw_strip[:, 1:], nan=np.inf)
    top = np.minimum(edges[1:][None, :], j2)
    bottom = np.maximum(edges[:-1][None, :], j1)
    return np.clip(top - bottom, 0, None)


def _nan_to_num(a: np.ndarray, nan: float = 0.0) -> np.ndarray:
    """``np.nan_to_num(a, nan=nan)`` for float arrays, at a fraction of its overhead:
    NaN becomes ``nan``, infinities the largest finite number of their sign."""
    out = np.where(np.isnan(a), nan, a)
    if np.isinf(a).any():
        big = np.finfo(out.dtype).max
        out = np.where(np.isposinf(a), big, np.where(np.isneginf(a), -big, out))
    return out


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
    width = np.zeros((n, 0))
    if ap is not None:
        width = ap.width_mm()  # computed once, shared by every measure below
        area = ap.area_mm2(width)
        perim = ap.perimeter_mm(width)

    pos = cps.positions_mm
    mlc = [pos[d.device_type] for d in beam.devices if d.is_mlc and d.device_type in pos]
    leaves = _nan_to_num(np.concatenate(mlc, axis=1)) if mlc else np.zeros((n, 0))
    everything = (
        _nan_to_num(np.concatenate(list(pos.values()), axis=1)) if pos else np.zeros((n, 0))
    )
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
        others = [s.first_cp for s in segments if s is not main]
        if others:
            outside = _outside(ap, width, others, main.first_cp)
        irregular = _irregularity(ap, width, [s.first_cp for s in segments])
    if area is not None and weights_valid and d_mu.sum() > 0:
        mean_area = float((area[:-1] * d_mu).sum() / d_mu.sum())
    mean_change = float(moves[beam_on].mean()) if beam_on.any() else 0.0

    mcs = sas = convex = lsv = aav = None
    if ap is not None and weights_valid and beam_on.any():
        lsv, aav = _lsv_aav(ap, width)
        mcs = _interval_average(lsv * aav, d_mu)
        sas = _interval_average(_small_share(width, small_aperture_mm), d_mu)
        # only the control points that bound a beam-on interval weigh in
        needed = np.concatenate([beam_on, [False]]) | np.concatenate([[False], beam_on])
        convex = _interval_average(_convexity(ap, needed, width, area), d_mu)

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
    weights = d_mu[ok]
    return float((values[ok] * weights).sum() / weights.sum())  # np.average, step by step


def _lsv_aav(ap: Apertures, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per control point LSV and AAV (McNiven 2010), over the open leaf pairs."""
    open_ = width > 0
    n, s = width.shape
    count = open_.sum(axis=1)
    # Each open leaf pair is compared with the open pair before it at the same point.
    last_open = np.maximum.accumulate(np.where(open_, np.arange(s), -1), axis=1)
    before = np.concatenate([np.full((n, 1), -1), last_open], axis=1)[:, :s]
    paired = open_ & (before >= 0)
    before = np.maximum(before, 0)
    lsv = np.ones(n)
    for bank in (ap.lo_mm, ap.hi_mm):
        spread = _open_max(bank, open_) - _open_min(bank, open_)
        step = np.abs(bank - bank[np.arange(n)[:, None], before])
        counts = paired & (spread > 0)[:, None]
        terms = np.divide(
            spread[:, None] - step, spread[:, None], out=np.zeros_like(step), where=counts
        )
        mean = terms.sum(axis=1) / np.maximum(count - 1, 1)
        lsv = lsv * np.where((count >= 2) & (spread > 0), mean, 1.0)
    # AAV: the aperture against the largest opening each leaf pair has in the beam.
    lo = np.where(open_, ap.lo_mm, np.inf).min(axis=0)
    hi = np.where(open_, ap.hi_mm, -np.inf).max(axis=0)
    ever = open_.any(axis=0)
    denominator = float(np.where(ever, hi - lo, 0.0).sum())
    aav = width.sum(axis=1) / denominator if denominator > 0 else np.zeros(n)
    return lsv, aav


def _open_max(values: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """Per row, the largest value where open (-inf where nothing is)."""
    return np.where(open_, values, -np.inf).max(axis=1, initial=-np.inf)


def _open_min(values: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """Per row, the smallest value where open (inf where nothing is)."""
    return np.where(open_, values, np.inf).min(axis=1, initial=np.inf)


def _small_share(width: np.ndarray, limit_mm: float) -> np.ndarray:
    open_ = width > 0
    count = open_.sum(axis=1)
    small = (open_ & (width < limit_mm)).sum(axis=1)
    return np.where(count > 0, small / np.maximum(count, 1), np.nan)


def _convexity(
    ap: Apertures, needed: np.ndarray, width: np.ndarray, area: np.ndarray
) -> np.ndarray:
    """Per control point (where ``needed``): open area / area of the convex hull of the
    open strips. NaN elsewhere.

    All control points at once. The hull of a stack of strips is bounded on the left by
    the convex minorant of the strips' left ends and on the right by the concave
    majorant of their right ends (each strip's left end lies left of its right end, at
    the same heights), so its area is the integral between those two chains.
    """
    out = np.full(width.shape[0], np.nan)
    open_all = width > 0
    rows = np.flatnonzero(needed & open_all.any(axis=1) & ~(area <= 0))
    if rows.size == 0:
        return out
    open_ = open_all[rows]
    cols = np.flatnonzero(open_.any(axis=0))
    c0, c1 = int(cols[0]), int(cols[-1]) + 1  # only the strips ever open here
    open_ = open_[:, c0:c1]
    # Levels: the strip edges, cut by the jaws across the strips; an open strip runs
    # from its level to the next. Each level takes the outermost end of the open
    # strips on either side of it; a level with no open strip beside it takes no part.
    j1 = _nan_to_num(ap.jaw_strip_mm[rows, :1], nan=-np.inf)
    j2 = _nan_to_num(ap.jaw_strip_mm[rows, 1:], nan=np.inf)
    y = np.minimum(np.maximum(ap.strip_edges_mm[None, c0 : c1 + 1], j1), j2)
    shut = np.zeros((rows.size, 1), dtype=bool)
    beside = np.concatenate([shut, open_, shut], axis=1)
    level = beside[:, :-1] | beside[:, 1:]
    far = np.full((rows.size, 1), np.inf)
    chains = []
    # left ends, and right ends mirrored (x -> -x) so that both chains are minorants
    for ends in (ap.lo_mm[rows, c0:c1], -ap.hi_mm[rows, c0:c1]):
        ends = np.where(open_, ends, np.inf)
        chains.append(
            np.minimum(np.concatenate([far, ends], axis=1), np.concatenate([ends, far], axis=1))
        )
    x = np.vstack(chains)
    integral = _minorant_integral(x, np.vstack([y, y]), np.vstack([level, level]))
    left, mirrored_right = integral[: rows.size], integral[rows.size :]
    hull = -mirrored_right - left
    ratio = np.divide(area[rows], hull, out=np.full(rows.size, np.nan), where=hull > 0)
    out[rows] = np.where(hull > 0, np.minimum(1.0, ratio), np.nan)
    return out


# Elements per block of the (levels, levels, rows) arrays in _minorant_integral: small
# enough that the temporaries reuse memory already mapped (large fresh allocations
# fault in every page, which costs more than the arithmetic), large enough that the
# per-call overhead of numpy stays small.
_BLOCK_ELEMENTS = 1 << 16


def _minorant_integral(x: np.ndarray, y: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per row, the integral over y of the convex minorant of the points (y, x) where
    ``use``. Along each row y never decreases, and increases from one used point to the
    next.

    A point lies on the minorant when the steepest slope reaching it from a point
    below is no steeper than the shallowest slope leaving it to a point above; the
    minorant is straight between consecutive such points.
    """
    r, p = x.shape
    # Levels first, rows last: the slopes and their reductions then run along memory.
    # Points not used sit at x = +inf: their slopes are -inf coming in and +inf going
    # out, so they never decide a maximum or minimum below.
    x_t = np.ascontiguousarray(np.where(use, x, np.inf).T)
    y_t = np.ascontiguousarray(y.T)
    use_t = use.T
    vertex_t = np.zeros((p, r), dtype=bool)
    below = np.triu(np.ones((p, p), dtype=bool), 1)[:, :, None]  # [i, k]: i below k
    block = max(1, _BLOCK_ELEMENTS // (p * p))
    for a in range(0, r, block):
        used = use_t[:, a : a + block]
        levels = np.flatnonzero(used.any(axis=1))
        if levels.size == 0:
            continue
        lo, hi = int(levels[0]), int(levels[-1]) + 1
        xs, ys = x_t[lo:hi, a : a + block], y_t[lo:hi, a : a + block]
        pair = below[: hi - lo, : hi - lo]
        with np.errstate(all="ignore"):
            slope = (xs[None, :, :] - xs[:, None, :]) / (ys[None, :, :] - ys[:, None, :])
            steepest_in = np.where(pair, slope, -np.inf).max(axis=0)
            shallowest_out = np.where(pair, slope, np.inf).min(axis=1)
            vertex_t[lo:hi, a : a + block] = used[lo:hi] & (steepest_in <= shallowest_out)
    vertex = vertex_t.T
    x = np.where(use, x, 0.0)
    # Trapezoids between each vertex and the next one up.
    index = np.where(vertex, np.arange(p), p)
    following = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]
    following = np.concatenate([following[:, 1:], np.full((r, 1), p)], axis=1)
    counted = vertex & (following < p)
    following = np.minimum(following, p - 1)
    each = np.arange(r)[:, None]
    x_next, y_next = x[each, following], y[each, following]
    return np.where(counted, (y_next - y) * (x + x_next) / 2, 0.0).sum(axis=1)


def _angle_steps(g: np.ndarray) -> np.ndarray:
    """Absolute gantry rotation between consecutive control points, across 0/360."""
    if g.size < 2:
        return np.zeros(0)
    d = np.abs(np.diff(_nan_to_num(g)))
    return np.minimum(d, 360.0 - d)


# Look-aheads (in control points) that _segments measures for all points in bulk.
_LOOK_AHEAD = 4


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
    n = positions.shape[0]
    # ahead[k][j]: a position at point j + k is more than the tolerance away from j
    ahead: list[list[bool]] = [[]]
    if positions.shape[1]:
        for k in range(1, min(_LOOK_AHEAD, n - 1) + 1):
            moved = np.abs(positions[k:] - positions[:-k]).max(axis=1) > tolerance_mm
            ahead.append(moved.tolist())
    from_start: dict[int, list[bool]] = {}  # further look-aheads, one start at a time

    def far(i: int, j: int) -> bool:
        if not positions.shape[1]:
            return False
        k = i - j
        if k < len(ahead):
            return ahead[k][j]
        moved = from_start.get(j)
        if moved is None:
            moved = np.abs(positions[j:] - positions[j]).max(axis=1) > tolerance_mm
            moved = from_start[j] = moved.tolist()
        return moved[k]

    share = d_mu.tolist()
    for i in np.flatnonzero(beam_on).tolist():
        if start is not None and (far(i, start) or far(i + 1, start)):
            out.append(Segment(start, i, mu))
            start = None
        if start is None:
            start, mu = i, 0.0
        mu += share[i]
    if start is not None:
        out.append(Segment(start, len(beam_on), mu))
    return tuple(out)


def _outside(ap: Apertures, width: np.ndarray, cps: list[int], main_cp: int) -> float:
    """How far (mm) the apertures at ``cps`` reach, at most, outside the one at
    ``main_cp``."""
    at = np.asarray(cps)
    open_ = width[at] > 0
    main_open = width[main_cp] > 0
    lo, hi = ap.lo_mm[at], ap.hi_mm[at]
    mlo, mhi = ap.lo_mm[main_cp], ap.hi_mm[main_cp]
    reach = np.where(
        main_open,
        np.maximum(mlo - lo, hi - mhi),
        hi - lo,  # open where the main aperture is closed: the whole opening is outside
    )
    furthest = _open_max(np.clip(reach, 0, None), open_)
    return float(np.where(open_.any(axis=1), furthest, 0.0).max())


def _irregularity(ap: Apertures, width: np.ndarray, cps: list[int]) -> float:
    """The largest over ``cps`` of: 0 for a rectangle, else the spread of the open
    strips' edges, or a gap between them."""
    at = np.asarray(cps)
    open_ = width[at] > 0
    count = open_.sum(axis=1)
    if not count.any():
        return 0.0
    lo, hi = ap.lo_mm[at], ap.hi_mm[at]
    spread = np.maximum(
        _open_max(lo, open_) - _open_min(lo, open_), _open_max(hi, open_) - _open_min(hi, open_)
    )
    s = open_.shape[1]
    first = np.argmax(open_, axis=1)
    last = s - 1 - np.argmax(open_[:, ::-1], axis=1)
    islands = (count > 1) & (last - first + 1 > count)  # separate islands
    if islands.any():
        gap = float(np.diff(ap.strip_edges_mm).min())
        spread = np.where(islands, np.maximum(spread, gap), spread)
    return float(np.where(count > 0, spread, 0.0).max())


def device_summary(devices: tuple[BeamLimitingDevice, ...]) -> str:
    return "+".join(d.device_type for d in devices) or "none"
