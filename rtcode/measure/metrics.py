"""Aperture and modulation numbers from control points.

numpy only: nothing here knows pydicom or files. Numbers are raw measurements
(mm, MU, degrees); deciding what they mean is the classifier's job, with the
thresholds of the policy.

Aperture model: the field is cut into strips perpendicular to leaf travel at
every leaf boundary of every MLC layer. In each strip the open interval is the
intersection of each layer's leaf-pair opening and the jaws; strips outside the
jaws are closed. Area is the sum of strip openings times strip widths; the
perimeter follows the outline of that union of strips. On the shared Pinnacle
plan this reproduces DVHA-MLCA's per-control-point areas and perimeters.

Speed: a scan measures every beam of every plan, and most beams have few control
points, so the cost is mostly numpy's overhead per call rather than arithmetic:
fewer, larger numpy calls win. Hence the shapes below: all control points at once;
both leaf banks stacked in one (2, n, strips) array of "ends" (the open interval's
start ``lo`` and its end mirrored, ``-hi``, so that one minimum or maximum serves
both banks); intermediates computed once in ``beam_metrics`` and handed on; only the
strips open at some control point measured; a machine's devices and MLC geometry
cached. Results agree with measuring one control point and one strip at a time to
rounding (sums may add in another order), which tests/test_metrics_speed_equivalence.py
and tests/test_metrics_property.py check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from rtcode.model.facts import Beam, BeamLimitingDevice

# Differences smaller than this are numeric noise in exported positions, not motion.
_NOISE_MM = 1e-3
# A final meterset weight this much (relative) below the control points' span still
# counts as reaching it (as extract.py compares them).
_WEIGHT_TOLERANCE = 1e-6

# Multiplies (lo, hi) pairs into (lo, -hi): the mirrored form of the ends.
_MIRROR = np.array([1.0, -1.0])
# Ends of a strip whose opening is unknown: lo = hi = +0.0 (so -hi is -0.0).
_CLOSED_ENDS = np.array([0.0, -0.0])[:, None, None]


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
        area: np.ndarray = (width * self.height_mm).sum(axis=1)
        return area

    def perimeter_mm(self, width: np.ndarray | None = None) -> np.ndarray:
        """Outline length of the union of open strips, per control point (``width``:
        ``width_mm()`` when already at hand)."""
        if width is None:
            width = self.width_mm()
        open_ = width > 0
        n, s = width.shape
        open_ends = np.full((2, n, s + 2), np.inf)
        np.copyto(open_ends[:, :, 1:-1], np.stack([self.lo_mm, -self.hi_mm]), where=open_)
        return _perimeter(width.sum(axis=1), open_, self.height_mm, open_ends)


def _perimeter(
    width_sum: np.ndarray, open_: np.ndarray, height: np.ndarray, open_ends: np.ndarray
) -> np.ndarray:
    """Outline length of the union of open strips, per control point. ``width_sum``: the
    summed widths of the strips per control point; ``open_ends`` (2, n, s + 2): the ends
    (lo, -hi) of open strips, +inf for closed ones, with a closed strip added on either
    side."""
    # Both sides of every open strip; and the edges between neighbouring strips (and the
    # closed strips beyond the last ones): the length covered by exactly one of them,
    # w_a + w_b - 2 * overlap, over all edges twice (sum of widths - sum of overlaps).
    # The overlap, min(hi) - max(lo) = -(max(lo) + max(-hi)), comes out -inf, i.e.
    # none, when either strip is closed, since closed strips' ends are +inf.
    sides = np.add.reduce(height, axis=1, where=open_)
    inner = np.maximum(open_ends[:, :, 1:], open_ends[:, :, :-1])
    minus_overlap = np.minimum(inner[0] + inner[1], 0.0).sum(axis=1)
    perimeter: np.ndarray = 2.0 * (sides + width_sum + minus_overlap)
    return perimeter


def apertures(beam: Beam) -> Apertures | None:
    """The beam's aperture at every control point; None when no device says anything."""
    geometry = _geometry(beam)
    if geometry is None:
        return None
    edges, ends, _, height, jaw_travel, jaw_strip, has_mlc, leaf_axis = geometry
    n = ends.shape[1]
    jaw_travel, jaw_strip = (
        np.full((n, 2), np.nan) if jaw is None else np.array(jaw, dtype=float)
        for jaw in (jaw_travel, jaw_strip)
    )
    return Apertures(
        edges.copy(), ends[0], -ends[1], height, jaw_travel, jaw_strip, has_mlc, leaf_axis
    )


def _geometry(beam: Beam, finite: bool = False) -> tuple[Any, ...] | None:
    """What ``apertures(beam)`` is made of: strip edges (shared: do not write to them),
    the open intervals' ends stacked as (lo, -hi): (2, n, s), the levels (the strip
    edges cut by the jaws across the strips): (n, s + 1), the strips' heights, the
    jaws along leaf travel and across the strips (None: no such jaws; else possibly
    the position arrays themselves: do not write to them), whether there is an MLC,
    the leaf axis. ``finite``: every position is known to be finite (no NaN, no
    infinity), which spares some checks."""
    cps = beam.control_points
    n = cps.count
    positions = cps.positions_mm
    table = _devices(beam.devices)
    mlcs = [d for d in table.leaves if d.key in positions]
    leaf_axis = mlcs[0].axis if mlcs else "X"
    jaws = _jaws(table.jaws, positions)
    jaw_travel, jaw_strip = jaws.get(leaf_axis), jaws.get("Y" if leaf_axis == "X" else "X")
    ends: np.ndarray | None
    if not mlcs:
        # Jaws only: one strip between the jaws across, open between the jaws along.
        if jaw_travel is None or jaw_strip is None:
            return None
        if np.isnan(jaw_travel).any() or np.isnan(jaw_strip).any():
            return None
        edges = np.array([jaw_strip[:, 0].min(), jaw_strip[:, 1].max()])
        ends = np.stack([jaw_travel[:, :1], -jaw_travel[:, 1:]])
    else:
        mlcs = [d for d in mlcs if d.axis == leaf_axis]
        edges, layers = _strip_layout(tuple((d.bounds, d.pairs) for d in mlcs))
        s = edges.size - 1
        ends = None
        for dev, (columns, inside) in zip(mlcs, layers, strict=True):
            # dual-layer MLCs: the opening is what every layer leaves open, so each
            # layer raises lo and lowers hi, i.e. raises both ends (lo, -hi)
            pairs = positions[dev.key][:, columns].reshape(n, 2, s).transpose(1, 0, 2)
            layer = np.multiply(pairs, _MIRROR[:, None, None], out=np.empty((2, n, s)))
            if ends is None:  # -inf: where a layer has no leaf pair, it limits nothing
                ends = layer if inside is None else np.where(inside, layer, -np.inf)
            elif inside is None:
                ends = np.maximum(ends, layer)
            else:
                ends = np.where(inside, np.maximum(ends, layer), ends)
        assert ends is not None  # (mlcs is not empty)
        # the jaws along leaf travel, as (X1, -X2), raise both ends too (NaN: no jaw)
        if jaw_travel is not None:
            limits = jaw_travel * _MIRROR
            if not finite:
                limits = _nan_to_num(limits, nan=-np.inf)
            np.maximum(ends, limits.T[:, :, None], out=ends)
        # Where neither leaves nor jaws limit a strip the opening is unknown: closed.
        # (Finite positions and a first layer over every strip: all ends finite. A
        # finite sum: all ends finite; a sum too large just takes the long way.)
        if not (finite and layers[0][1] is None) and not math.isfinite(ends.sum()):
            ends = np.where(np.isfinite(ends).all(axis=0), ends, _CLOSED_ENDS)
    # The part of each strip between the jaws across the strips: the levels (edges cut
    # by the jaws) one above the other. (This is min(top edge, top jaw) - max(bottom
    # edge, bottom jaw) wherever that is positive, and 0 wherever it is not.)
    if jaw_strip is None:
        levels = np.broadcast_to(np.asarray(edges, dtype=float), (n, edges.size))
    else:
        j1, j2 = (jaw_strip[:, :1], jaw_strip[:, 1:]) if finite else _jaw_limits(jaw_strip)
        levels = np.minimum(np.maximum(edges, j1), j2)
    height = np.maximum(levels[:, 1:] - levels[:, :-1], 0.0)
    return edges, ends, levels, height, jaw_travel, jaw_strip, bool(mlcs), leaf_axis


@lru_cache(maxsize=256)
def _strip_layout(
    layers: tuple[tuple[tuple[float, ...], int], ...],
) -> tuple[np.ndarray, tuple[tuple[np.ndarray, np.ndarray | None], ...]]:
    """Strips of the MLC layers given as (leaf boundaries, pairs): their edges, and per
    layer the position columns of the lo leaves over the strips, then of the hi
    leaves, with a mask of the strips the layer covers (None: all). Cached: a
    machine's MLC is the same in every beam."""
    edges = np.unique(np.concatenate([np.asarray(bounds) for bounds, _ in layers]))
    mids = (edges[:-1] + edges[1:]) / 2
    out = []
    for bounds, pairs in layers:
        idx = np.searchsorted(np.asarray(bounds), mids, side="right") - 1
        inside = (idx >= 0) & (idx < pairs)
        idx = np.clip(idx, 0, pairs - 1)
        out.append((np.concatenate([idx, idx + pairs]), None if inside.all() else inside))
    for array in (edges, *(a for layer in out for a in layer if a is not None)):
        array.flags.writeable = False  # shared by every beam: must not change
    return edges, tuple(out)


def _jaw_limits(jaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pair of jaws (n, 2) as lower and upper limits (n, 1): a missing jaw (NaN)
    limits nothing."""
    if math.isfinite(jaw.sum()):  # every value finite (or a sum too large: the long way)
        return jaw[:, :1], jaw[:, 1:]
    return _nan_to_num(jaw[:, :1], nan=-np.inf), _nan_to_num(jaw[:, 1:], nan=np.inf)


def _nan_to_num(a: np.ndarray, nan: float = 0.0) -> np.ndarray:
    """``np.nan_to_num(a, nan=nan)`` for float arrays, at a fraction of its overhead:
    NaN becomes ``nan``, infinities the largest finite number of their sign. ``a``
    itself when all its values are finite: do not write to the result."""
    if math.isfinite(a.sum()):  # every value finite (or a sum too large: the long way)
        return a
    out = np.where(np.isnan(a), nan, a)
    if np.isinf(a).any():
        big = np.finfo(out.dtype).max
        out = np.where(np.isposinf(a), big, np.where(np.isneginf(a), -big, out))
    return out


class _Device(NamedTuple):
    key: str  # the device type, as in the positions
    axis: str  # the travel axis
    bounds: tuple[float, ...]  # leaf boundaries (MLCs only)
    pairs: int


class _Devices(NamedTuple):
    """A beam's devices as the measures use them: the MLCs with leaf boundaries, the
    jaws, and the device types of every MLC (in the order of the beam's devices)."""

    leaves: tuple[_Device, ...]
    jaws: tuple[_Device, ...]
    mlc_keys: tuple[str, ...]


@lru_cache(maxsize=256)
def _devices(devices: tuple[BeamLimitingDevice, ...]) -> _Devices:
    """Cached: every beam of a machine has the same devices."""
    leaves, jaws = [], []
    for d in devices:
        entry = _Device(
            d.device_type, d.travel_axis, tuple(d.leaf_boundaries_mm or ()), d.number_of_pairs
        )
        if not d.is_mlc:
            jaws.append(entry)
        elif d.leaf_boundaries_mm:
            leaves.append(entry)
    mlc_keys = tuple(d.device_type for d in devices if d.is_mlc)
    return _Devices(tuple(leaves), tuple(jaws), mlc_keys)


def _jaws(jaws: tuple[_Device, ...], positions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The jaws (n, 2) along "X" and along "Y", for the axes that have them (NaN where
    no control point gives them). Possibly the arrays of ``positions`` themselves: do
    not write to them."""
    out: dict[str, np.ndarray] = {}
    for dev in jaws:
        pos = positions.get(dev.key)
        if pos is not None and pos.shape[1] == 2:
            # the first device gives the jaws; later ones fill in what it leaves NaN
            jaw = out.get(dev.axis)
            out[dev.axis] = pos if jaw is None else np.where(np.isnan(jaw), pos, jaw)
    return out


# ------------------------------------------------------------------ beam metrics


class Segment(NamedTuple):
    """A stretch of beam-on control-point intervals with an unchanging aperture. (A
    named tuple: an arc has one per interval, and these are made fastest.)"""

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
    # How far (mm) any open leaf pair of a sub-segment reaches beyond the main segment's
    # edges (the whole opening where the main pair is closed). Reported, not decisive:
    # a 1-mm jaw sliver or a pair parked at its minimum gap reaches far by this measure.
    subsegment_max_outside_main_mm: float | None
    # Sub-segments (every segment but the main one, the one with the most MU) against the
    # main aperture, by jaw-clipped open area: leaf-pair openings narrower than the
    # closed gap count as closed, and parts reaching no further than the inside tolerance
    # beyond the main aperture's edges (along the leaves, or a jaw across) as inside.
    # The largest such area outside the main aperture over the sub-segments (mm^2) ...
    subsegment_outside_area_mm2: float | None
    # ... the largest share of a sub-segment's own open area that lies outside it ...
    subsegment_outside_share: float | None
    # ... and the fraction of the beam's MU given by sub-segments with any area outside.
    outside_mu_fraction: float | None
    beam_on_leaf_motion_mm: float  # largest leaf move between two points while MU is delivered
    beam_on_leaf_travel_mm: float  # the furthest any one leaf travels while MU is delivered
    leaf_travel_mm: float  # summed leaf motion over the whole beam
    aperture_irregularity_mm: float | None  # 0 for a rectangle; grows as edges vary
    # Rectangles with leaves standing in at the corners only: a middle run of open pairs
    # reaching the aperture's bounding rectangle at both edges (within the rectangle
    # tolerance), the pairs from there to either end standing in further and further.
    # Per segment the share of the bounding rectangle's area those pairs' leaves cover,
    # and the share of its height, from either end, over which they stand in; the
    # largest over the segments. None where leaves shape an aperture otherwise (or there
    # is none); 0 for a rectangle (within the tolerance).
    corner_leaf_area_share: float | None
    corner_leaf_extent_share: float | None
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
    beam: Beam,
    same_aperture_mm: float = _NOISE_MM,
    small_aperture_mm: float = 10.0,
    closed_gap_mm: float = 0.0,
    inside_tolerance_mm: float = 0.0,
    rectangle_mm: float = 0.0,
) -> BeamMetrics:
    """Measure one beam. Positions within ``same_aperture_mm`` count as one aperture;
    leaf-pair openings narrower than ``small_aperture_mm`` count as small apertures.
    In the area of sub-segments outside the main aperture and in the corner-leaf
    measures, openings narrower than ``closed_gap_mm`` count as closed; parts of a
    sub-segment reaching no further than ``inside_tolerance_mm`` beyond the main
    aperture's edges count as inside it; leaves within ``rectangle_mm`` of the edge of
    an aperture's bounding rectangle stand at that edge. (The defaults, 0, measure every
    opening and every part exactly.)"""
    n = beam.control_points.count
    mu = _meterset(beam, n)
    span, gantry_on, cv = _gantry(beam, mu)
    motion, finite = _leaf_motion(beam, mu, same_aperture_mm)
    sizes = _Sizes(small_aperture_mm, closed_gap_mm, inside_tolerance_mm, rectangle_mm)
    shape = _shape(beam, finite, mu, motion, sizes)
    return BeamMetrics(
        control_points=n,
        cp_mu_fraction=mu.cp_mu,
        area_mm2=shape.area,
        perimeter_mm=shape.perimeter,
        has_mlc=motion.has_mlc,
        leaf_data_stripped=motion.stripped,
        weights_valid=mu.weights_valid,
        beam_on_intervals=int(mu.on.size),
        segments=motion.segments,
        largest_segment_mu_fraction=max(motion.shares, default=None),
        subsegment_max_outside_main_mm=shape.outside,
        subsegment_outside_area_mm2=shape.outside_area,
        subsegment_outside_share=shape.outside_share,
        outside_mu_fraction=shape.outside_mu,
        beam_on_leaf_motion_mm=motion.on_motion,
        beam_on_leaf_travel_mm=motion.on_travel,
        leaf_travel_mm=motion.travel,
        aperture_irregularity_mm=shape.irregular,
        corner_leaf_area_share=None if shape.corner is None else shape.corner[0],
        corner_leaf_extent_share=None if shape.corner is None else shape.corner[1],
        gantry_beam_on_travel_deg=gantry_on,
        arc_span_deg=span,
        mu_per_degree_cv=cv,
        mean_area_mm2=shape.mean_area,
        mean_aperture_change_mm=motion.mean_change,
        mcs=shape.mcs,
        small_aperture_score=shape.sas,
        convexity=shape.convex,
        lsv=shape.lsv,
        aav=shape.aav,
    )


class _Meterset(NamedTuple):
    """How a beam's MU falls between its control points (beam_metrics' first step)."""

    cp_mu: np.ndarray  # (n,) fraction of MU from point i to i + 1 (0 for the last)
    d_mu: np.ndarray  # (n - 1,) the same, per interval (a view of cp_mu)
    weights_valid: bool
    beam_on: np.ndarray  # (n - 1,) bool: MU is delivered in the interval
    on: np.ndarray  # indices of the beam-on intervals
    always_on: bool  # every interval is beam-on (then picking them picks them all)


def _meterset(beam: Beam, n: int) -> _Meterset:
    w = np.asarray(beam.control_points.cumulative_meterset_weight, dtype=float)
    cp_mu = np.zeros(n)
    d_mu = cp_mu[:-1]  # the fraction of MU from each point to the next
    weights_valid = False
    if n >= 2:
        steps_w = w[1:] - w[:-1]
        # a NaN weight makes a step NaN, which fails >=: this also rules out NaN
        weights_valid = bool((steps_w >= -_NOISE_MM * 1e-3).all() and w[-1] > w[0])
        if weights_valid:
            # Shares of the beam's MU: of its final weight, unless the control points
            # run past it (a final weight of 0, or 1e-320 where they reach 1: shares
            # above 1, or infinite); then of their own span (extract flags the file).
            final = beam.final_cumulative_meterset_weight
            span = float(w[-1] - w[0])
            reach = span * (1.0 - _WEIGHT_TOLERANCE)
            total = final if final is not None and final > 0 and final >= reach else span
            np.divide(np.maximum(steps_w, 0.0), total, out=d_mu)
    beam_on = d_mu > 0
    on = beam_on.nonzero()[0]
    return _Meterset(cp_mu, d_mu, weights_valid, beam_on, on, on.size == n - 1)


def _gantry(beam: Beam, mu: _Meterset) -> tuple[float, float, float | None]:
    """(arc span, gantry travel while the beam is on, CV of MU per degree over the arc)."""
    g = np.asarray(beam.control_points.gantry_deg, dtype=float)
    span = gantry_on = 0.0
    cv = None
    if g.size > 1 and not (g == g[0]).all():  # (else the gantry holds still)
        g = _nan_to_num(g)
        dg = np.abs(g[1:] - g[:-1])
        dg = np.minimum(dg, 360.0 - dg)  # gantry rotation per interval, across 0/360
        span = float(dg.sum())
        on = mu.on
        gantry_on = span if mu.always_on else float(dg[on].sum()) if on.size else 0.0
        arc_steps = (mu.beam_on & (dg > _NOISE_MM)).nonzero()[0]
        if arc_steps.size >= 2:
            rate = mu.d_mu[arc_steps] / dg[arc_steps]
            weight = dg[arc_steps]
            # np.average(rate, weights=weight), step by step
            mean = float((rate * weight).sum() / weight.sum())
            if mean > 0:
                var = float(((rate - mean) ** 2 * weight).sum() / weight.sum())
                cv = float(np.sqrt(var) / mean)
    return span, gantry_on, cv


class _Motion(NamedTuple):
    """How the leaves move, and the static segments (beam_metrics' second step)."""

    has_mlc: bool
    stripped: bool  # every MLC position is exactly 0
    travel: float
    on_motion: float
    on_travel: float
    mean_change: float
    segments: tuple[Segment, ...]
    firsts: list[int]  # each segment's first control point
    shares: list[float]  # each segment's share of MU


def _leaf_motion(beam: Beam, mu: _Meterset, same_aperture_mm: float) -> tuple[_Motion, bool]:
    """The leaves' motion and the segments, and whether every position was finite.
    The positions of every device side by side are only needed here: they go when it
    returns (memory, see _BLOCK_ELEMENTS)."""
    n = beam.control_points.count
    on = mu.on
    everything, leaf_columns, finite = _all_positions(beam, beam.control_points.positions_mm, n)
    leaves = everything[:, leaf_columns]
    has_mlc = leaves.shape[1] > 0
    if n > 1 and everything.shape[1]:
        all_steps = np.abs(everything[1:] - everything[:-1])
        steps = all_steps[:, leaf_columns]
    else:
        all_steps = steps = np.zeros((max(n - 1, 0), 0))
    travel = float(steps.sum())
    # (leaves that move are not all 0)
    stripped = bool(has_mlc and not travel and not leaves.any())
    on_motion = on_travel = mean_change = 0.0
    if on.size and travel:  # (else no leaf ever moves)
        steps_on = steps if mu.always_on else steps[on]
        on_motion = float(steps_on.max())
        if on_motion:  # (else no leaf moves while the beam is on)
            # np.mean of the largest move per interval, step by step
            mean_change = float(steps_on.max(axis=1).sum() / on.size)
            on_travel = float(steps_on.sum(axis=0).max())
    segments: tuple[Segment, ...] = ()
    firsts: list[int] = []
    shares: list[float] = []
    if n >= 2:
        segments, firsts, shares = _segments(
            on.tolist(), everything, mu.d_mu.tolist(), same_aperture_mm, all_steps
        )
    motion = _Motion(
        has_mlc, stripped, travel, on_motion, on_travel, mean_change, segments, firsts, shares
    )
    return motion, finite


class _Sizes(NamedTuple):
    small_aperture_mm: float
    closed_gap_mm: float
    inside_tolerance_mm: float
    rectangle_mm: float


class _Shape(NamedTuple):
    """What the apertures measure (beam_metrics' third step); None: cannot say."""

    area: np.ndarray | None = None
    perimeter: np.ndarray | None = None
    mean_area: float | None = None
    outside: float | None = None
    outside_area: float | None = None
    outside_share: float | None = None
    outside_mu: float | None = None
    irregular: float | None = None
    corner: tuple[float, float] | None = None
    mcs: float | None = None
    sas: float | None = None
    convex: float | None = None
    lsv: np.ndarray | None = None
    aav: np.ndarray | None = None


def _shape(beam: Beam, finite: bool, mu: _Meterset, motion: _Motion, sizes: _Sizes) -> _Shape:
    """The apertures' areas and perimeters (nothing when no device says anything); with
    valid weights and the beam on, the complexity scores, the sub-segments against the
    main one, the irregularity and the corner leaves. Divisions may meet 0 / 0 or
    x / -inf (no open strip, a spread of 0, one open pair, slopes between unused
    levels): such results are masked out, or stand for "cannot say" (NaN)."""
    geometry = _geometry(beam, finite)
    if geometry is None:
        return _Shape()
    with np.errstate(all="ignore"):
        edges, jaw_strip = geometry[0], geometry[5]
        area, perim, open_, widths, ends, open_ends, levels = _strips(geometry)
        del geometry  # the full-width arrays: memory, see _BLOCK_ELEMENTS
        mean_area = None
        d_mu = mu.d_mu
        if mu.weights_valid and (total := d_mu.sum()) > 0:
            mean_area = float((area[:-1] * d_mu).sum() / total)
        # Segments need a beam-on interval, and beam-on intervals valid weights: so
        # whenever there are segments, the measures below are all taken.
        if not (mu.weights_valid and mu.on.size):
            return _Shape(area, perim, mean_area)
        n = area.shape[0]
        count = open_.sum(axis=1)
        # islands: closed pairs between open ones, i.e. more than one run of open
        # pairs (the open pairs less those right after an open pair)
        adjacent = open_[:, 1:] & open_[:, :-1]
        islands = count - adjacent.sum(axis=1) > 1
        if not islands.any():
            islands = None
        per_cp = np.empty((3, n))  # MCS, small-aperture share, convexity
        lsv, aav, spread = _lsv_aav(ends, open_ends, open_, count, adjacent, islands, widths[1])
        np.multiply(lsv, aav, out=per_cp[0])
        per_cp[1] = _small_share(widths[0], open_, count, sizes.small_aperture_mm)
        # only the control points that bound a beam-on interval weigh in (all of
        # them when the beam is on throughout)
        needed = None
        if not mu.always_on:
            needed = np.zeros(n, dtype=bool)
            needed[:-1] = mu.beam_on
            needed[1:] |= mu.beam_on
        per_cp[2] = _convexity(needed, levels, open_, area, open_ends)
        mcs, sas, convex = _interval_averages(per_cp, d_mu)
        at = np.array(motion.firsts)
        outside: tuple[float | None, float | None, float | None, float | None]
        outside = (None, None, None, None)
        if len(motion.firsts) > 1:
            strips = (ends, open_, widths, levels, jaw_strip, area)
            outside = _against_main(strips, at, motion, sizes)
        irregular = _irregularity(edges, spread, islands, at)
        # every edge within the tolerance: no leaf stands in
        corner: tuple[float, float] | None = (0.0, 0.0)
        if irregular > sizes.rectangle_mm:
            corner = _corner_leaves(
                ends[:, at], widths[0][at], levels[at], sizes.closed_gap_mm, sizes.rectangle_mm
            )
    far, outside_area, outside_share, outside_mu = outside
    return _Shape(
        area,
        perim,
        mean_area,
        far,
        outside_area,
        outside_share,
        outside_mu,
        irregular,
        corner,
        mcs,
        sas,
        convex,
        lsv,
        aav,
    )


def _against_main(
    strips: tuple[
        np.ndarray, np.ndarray, tuple[Any, ...], np.ndarray, np.ndarray | None, np.ndarray
    ],
    at: np.ndarray,
    motion: _Motion,
    sizes: _Sizes,
) -> tuple[float, float, float, float]:
    """The sub-segments against the main one (the most MU): how far any reaches beyond
    it, the largest area and share of a sub-segment outside it, and the MU of the
    sub-segments with any area outside. ``strips``: ends, open pairs, widths, levels,
    jaws across the strips, areas; ``at``: each segment's first control point."""
    ends, open_, widths, levels, jaw_strip, area = strips
    shares = motion.shares
    # (the main segment reaches 0 outside itself: it may stay in the list)
    k = _main_segment(shares, area[at])
    main = motion.firsts[k]
    outside = _outside(ends, open_, widths[0], at, main)
    others = [i for i in range(at.size) if i != k]  # (np.delete costs more)
    subs = at[others]
    gap, tol = sizes.closed_gap_mm, sizes.inside_tolerance_mm
    out_area, own_area = _outside_area(ends, widths[0], levels, jaw_strip, subs, main, gap, tol)
    share = np.where(own_area > 0, out_area / own_area, 0.0)
    sub_mu = np.array([shares[i] for i in others])
    return outside, float(out_area.max()), float(share.max()), float(sub_mu[out_area > 0].sum())


def _strips(geometry: tuple[Any, ...]) -> tuple[Any, ...]:
    """From ``_geometry``: per control point the open area and the perimeter; and for
    the strips open at some control point (the only ones any measure depends on: the
    others would add zeros to sums and nothing to maxima) which are open (n, s), their
    widths (n, s) with the summed widths per control point, their ends (2, n, s), the
    ends where open (+inf where closed, with a closed strip added on either side:
    (2, n, s + 2)), and the levels (n, s + 1). (The ends and levels are copies: the
    full arrays can go, see _BLOCK_ELEMENTS.)"""
    _, ends, levels, height = geometry[:4]
    n = ends.shape[1]
    # hi - lo = -(lo + -hi)
    width = np.where(height > 0, np.maximum(-(ends[0] + ends[1]), 0.0), 0.0)
    open_ = width > 0
    cols = open_.any(axis=0).nonzero()[0]
    c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
    width, open_, height = width[:, c0:c1], open_[:, c0:c1], height[:, c0:c1]
    ends, levels = (
        np.ascontiguousarray(ends[:, :, c0:c1]),
        np.ascontiguousarray(levels[:, c0 : c1 + 1]),
    )
    area = (width * height).sum(axis=1)
    width_sum = width.sum(axis=1)
    open_ends = np.full((2, n, c1 - c0 + 2), np.inf)
    np.copyto(open_ends[:, :, 1:-1], ends, where=open_)
    perimeter = _perimeter(width_sum, open_, height, open_ends)
    return area, perimeter, open_, (width, width_sum), ends, open_ends, levels


@dataclass(frozen=True)
class PlanMetrics:
    """Beam metrics aggregated over a plan's treatment beams, weighted by MU: by course
    MU (BeamMeterset x fractions, summed over the fraction groups) when every beam's is
    known, else by the MU the beams state."""

    beams: int
    meterset_mu: float  # the beams' MU as given (per fraction, summed over the groups)
    control_points: int
    segments: int
    mcs: float | None
    small_aperture_score: float | None
    mean_area_mm2: float | None
    course_meterset_mu: float | None = None  # None when a beam's course MU is unknown
    weighted_by: str = "meterset_mu"  # "course_meterset_mu" or "meterset_mu"


def plan_metrics(
    beams: list[tuple[BeamMetrics, float | None]],
    course_mu: list[float | None] | None = None,
) -> PlanMetrics:
    """Aggregate (metrics, beam MU) pairs; beams without MU do not weigh in. With
    ``course_mu`` (one per beam: BeamMeterset x fractions over the fraction groups that
    reference it), the metrics are weighted by it, unless one is unknown."""

    def weighted(values: list[tuple[float | None, float | None]]) -> float | None:
        pairs = [(v, w) for v, w in values if v is not None and w is not None and w > 0]
        if not pairs:
            return None
        total = sum(w for _, w in pairs)
        return float(sum(v * w for v, w in pairs) / total)

    course = None
    known = course_mu is not None and len(course_mu) == len(beams) and bool(beams)
    if known and course_mu is not None and all(c is not None for c in course_mu):
        course = [float(c) for c in course_mu if c is not None]
    weights = course if course is not None else [mu for _, mu in beams]
    metrics = [m for m, _ in beams]
    return PlanMetrics(
        beams=len(beams),
        meterset_mu=float(sum(mu for _, mu in beams if mu is not None)),
        control_points=sum(m.control_points for m in metrics),
        segments=sum(len(m.segments) for m in metrics),
        mcs=weighted([(m.mcs, w) for m, w in zip(metrics, weights, strict=True)]),
        small_aperture_score=weighted(
            [(m.small_aperture_score, w) for m, w in zip(metrics, weights, strict=True)]
        ),
        mean_area_mm2=weighted(
            [(m.mean_area_mm2, w) for m, w in zip(metrics, weights, strict=True)]
        ),
        course_meterset_mu=float(sum(course)) if course is not None else None,
        weighted_by="course_meterset_mu" if course is not None else "meterset_mu",
    )


def _all_positions(
    beam: Beam, positions: dict[str, np.ndarray], n: int
) -> tuple[np.ndarray, slice | np.ndarray, bool]:
    """Every device's positions side by side (NaN read as 0), the columns among them
    of the MLC leaves (in the order of the beam's devices), and whether every position
    was finite to begin with."""
    if not positions:
        return np.zeros((n, 0)), slice(0, 0), True
    spans = {}
    start = 0
    for key, value in positions.items():
        spans[key] = (start, start + value.shape[1])
        start += value.shape[1]
    mlc = [spans[key] for key in _devices(beam.devices).mlc_keys if key in positions]
    given = np.concatenate(list(positions.values()), axis=1)
    everything = _nan_to_num(given)
    finite = everything is given  # (_nan_to_num hands back finite arrays as they are)
    if not mlc:
        return everything, slice(0, 0), finite
    if all(a[1] == b[0] for a, b in zip(mlc[:-1], mlc[1:], strict=True)):
        return everything, slice(mlc[0][0], mlc[-1][1]), finite  # side by side: a view
    return everything, np.concatenate([np.arange(a, b) for a, b in mlc]), finite


def _interval_averages(per_cp: np.ndarray, d_mu: np.ndarray) -> list[float | None]:
    """Per row of ``per_cp`` (k, n): the MU-weighted mean over beam-on intervals, each
    taking the mean of its two ends; None for a row with no finite beam-on interval."""
    values = (per_cp[:, :-1] + per_cp[:, 1:]) / 2
    # np.average over the beam-on intervals with a finite value, step by step:
    # sum(value * MU) / sum(MU), the other intervals adding zeros (not as dot products:
    # BLAS costs more here). Beam-off intervals have MU 0 and add 0 either way.
    weighted = values * d_mu
    ok = np.isfinite(weighted)
    sums = np.where(ok, weighted, 0.0).sum(axis=1)
    weights = np.where(ok, d_mu, 0.0).sum(axis=1)
    return [
        float(total / weight) if weight > 0 else None
        for total, weight in zip(sums.tolist(), weights.tolist(), strict=True)
    ]


def _lsv_aav(
    ends: np.ndarray,
    open_ends: np.ndarray,
    open_: np.ndarray,
    count: np.ndarray,
    adjacent: np.ndarray,
    islands: np.ndarray | None,
    width_sum: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per control point LSV and AAV (McNiven 2010), over the open leaf pairs; and per
    bank and control point the spread of the open pairs' ends (2, n). ``count``: the
    open pairs per control point; ``adjacent``: open pairs (from the second on) with an
    open pair right before them; ``islands``: per control point, whether closed pairs
    lie between open ones (None: nowhere); ``width_sum``: the summed widths per control
    point. (Called with floating-point warnings silenced.)

    ``ends`` as (lo, -hi): the spread of -hi is that of hi, and so are the steps
    between neighbours, so both banks go through the same arithmetic at once."""
    n, s = open_.shape
    # Each open leaf pair (from the second on) is compared with the open pair before it
    # at the same point: the pair right before it, unless closed pairs lie between.
    if islands is not None:
        # the flat index (into n * s) of the last open pair left of each pair, or -1: a
        # running maximum (np.take is much faster than two-array fancy indexing; -1
        # reads some other end, a value masked out below)
        flat = np.arange(n * s).reshape(n, s)
        before = np.maximum.accumulate(np.where(open_[:, :-1], flat[:, :-1], -1), axis=1)
        paired = open_[:, 1:] & (before >= 0)
        previous = ends.reshape(2, n * s).take(before, axis=1)
    else:
        paired = adjacent
        previous = ends[:, :, :-1]
    step = np.abs(ends[:, :, 1:] - previous)
    spread = np.maximum.reduce(ends, axis=2, where=open_, initial=-np.inf) - open_ends.min(axis=2)
    terms = np.where(paired, (spread[:, :, None] - step) / spread[:, :, None], 0.0)
    # A bank with fewer than two open pairs has a spread of 0 (one) or -inf (none), as
    # has one whose open pairs all end alike: its LSV is 1 (its mean here is NaN).
    factor = np.where(spread > 0, terms.sum(axis=2) / (count - 1), 1.0)
    lsv = factor[0] * factor[1]
    # AAV: the aperture against the largest opening each leaf pair has in the beam,
    # max(hi) - min(lo) = -(min(lo) + min(-hi)): -inf for a pair never open, taken as 0.
    nearest = open_ends[:, :, 1:-1].min(axis=1)
    denominator = float(np.maximum(-(nearest[0] + nearest[1]), 0.0).sum())
    aav = width_sum / denominator if denominator > 0 else np.zeros(n)
    return lsv, aav, spread


def _small_share(
    width: np.ndarray, open_: np.ndarray, count: np.ndarray, limit_mm: float
) -> np.ndarray:
    small = (open_ & (width < limit_mm)).sum(axis=1)
    share: np.ndarray = small / count
    return share  # (NaN where no pair is open; warnings silenced by the caller)


def _convexity(
    needed: np.ndarray | None,
    levels: np.ndarray,
    open_: np.ndarray,
    area: np.ndarray,
    open_ends: np.ndarray,
) -> np.ndarray:
    """Per control point (where ``needed``; None: everywhere): open area / area of the
    convex hull of the open strips. NaN elsewhere. ``levels`` (n, s + 1): the strip
    edges cut by the jaws across the strips; ``open_ends`` as for ``_perimeter``.

    All control points at once. The hull of a stack of strips is bounded on the left by
    the convex minorant of the strips' left ends and on the right by the concave
    majorant of their right ends (each strip's left end lies left of its right end, at
    the same heights), so its area is the integral between those two chains.
    """
    n = open_.shape[0]
    # some strip open: area > 0 (an open strip has width and height > 0)
    rows = ((area > 0) if needed is None else needed & (area > 0)).nonzero()[0]
    if rows.size == 0:
        return np.full(n, np.nan)
    if rows.size < n:
        cols = open_[rows].any(axis=0).nonzero()[0]
        c0, c1 = int(cols[0]), int(cols[-1]) + 1  # only the strips ever open here
        levels, open_ends = levels[rows, c0 : c1 + 1], open_ends[:, rows, c0 : c1 + 2]
        area = area[rows]
    # Levels: an open strip runs from its level to the next. Each level takes the
    # outermost end of the open strips on either side of it: left ends, and right ends
    # mirrored (x -> -x) so that both chains are minorants. A level with no open strip
    # beside it takes no part: there both neighbours' ends are +inf.
    x = np.minimum(open_ends[:, :, :-1], open_ends[:, :, 1:]).reshape(2 * rows.size, -1)
    integral = _minorant_integral(x, np.concatenate([levels, levels]))
    hull = -integral[rows.size :] - integral[: rows.size]  # -mirrored right - left
    ratio = np.where(hull > 0, np.minimum(area / hull, 1.0), np.nan)
    if rows.size == n:
        return ratio
    out = np.full(n, np.nan)
    out[rows] = ratio
    return out


# Elements per block of the slopes in _minorant_integral: small enough that its buffer
# (256 kB) fits in memory the allocator keeps mapped, large enough that the per-call
# overhead of numpy stays small. Memory matters: when a large beam's arrays outgrow what
# the allocator keeps between calls, every large beam faults its pages in afresh, which
# costs more than the arithmetic (hence also full-width arrays dropped early).
_BLOCK_ELEMENTS = 1 << 15


def _rows_last(r: int, p: int) -> bool:
    """Whether _on_minorant lays out the slopes of r rows of p levels as (p, p, r)
    rather than (r, p, p): numpy's loops run along the last axis, and go faster along
    the rows from a few of them on (measured)."""
    return 4 * r > p + 8


@lru_cache(maxsize=64)
def _below_above(p: int) -> tuple[np.ndarray, np.ndarray]:
    """[i, k]: level i is below level k (i < k); and above it (i > k)."""
    below = np.triu(np.ones((p, p), dtype=bool), 1)
    above = np.ascontiguousarray(below.T)
    below.flags.writeable = above.flags.writeable = False
    return below, above


def _on_minorant(
    x: np.ndarray, y: np.ndarray, dy: np.ndarray | None, out: np.ndarray
) -> np.ndarray:
    """Per row and level of ``x`` and ``y`` (r, p), as in ``_minorant_integral`` but with
    NaN where there is no point: the steepest slope in from a level below is no
    steeper than the shallowest slope out to a level above.

    ``dy``: y[k] - y[i] for every pair of levels (p, p) when all rows share their y,
    else None. ``out``: a buffer of at least r * p * p floats for the slopes.

    The slopes of all pairs of levels come in one (p, p, r) or (r, p, p) array (see
    _rows_last; the same numbers either way). The slope from i to k equals that from k
    to i (both differences change sign), so the shallowest slope out of i, the least
    slope[i, k] over k above i, is also the least slope[k, i]: both measures reduce
    over the same axis of levels (the first one, which numpy reduces fastest, when
    the rows come last). Levels without a point (NaN) give NaN slopes, which fmax and
    fmin pass over, as the -inf in and +inf out of a point at x = +inf never decided a
    maximum or minimum either. (With +inf the slopes would not be symmetric: both
    differences of levels with the same y are +0.0.)
    """
    r, p = x.shape
    below, above = _below_above(p)
    if _rows_last(r, p):  # [i, k, row]
        x = np.ascontiguousarray(x.T)
        slope = np.subtract(x[None, :, :], x[:, None, :], out=out[: p * p * r].reshape(p, p, r))
        if dy is None:
            y = np.ascontiguousarray(y.T)
            slope /= y[None, :, :] - y[:, None, :]
        else:
            slope /= dy[:, :, None]
        below, above = below[:, :, None], above[:, :, None]
        steepest_in = np.fmax.reduce(slope, axis=0, where=below, initial=-np.inf)
        shallowest_out = np.fmin.reduce(slope, axis=0, where=above, initial=np.inf)
        on: np.ndarray = (steepest_in <= shallowest_out).T
        return on
    # [row, i, k]
    slope = np.subtract(x[:, None, :], x[:, :, None], out=out[: r * p * p].reshape(r, p, p))
    slope /= (y[:, None, :] - y[:, :, None]) if dy is None else dy
    steepest_in = np.fmax.reduce(slope, axis=1, where=below, initial=-np.inf)
    shallowest_out = np.fmin.reduce(slope, axis=1, where=above, initial=np.inf)
    inside: np.ndarray = steepest_in <= shallowest_out
    return inside


def _minorant_integral(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, the integral over y of the convex minorant of the points (y, x) with x
    finite (+inf: no point at that level). Along each row y never decreases, and
    increases from one point to the next.

    A point lies on the minorant when the steepest slope reaching it from a point
    below is no steeper than the shallowest slope leaving it to a point above; the
    minorant is straight between consecutive such points. (Called with floating-point
    warnings silenced: slopes between levels without points are NaN.)
    """
    r, p = x.shape
    used = x < np.inf
    x = np.where(used, x, np.nan)  # see _on_minorant
    block = max(1, _BLOCK_ELEMENTS // (p * p))
    buffer = np.empty(min(r, block) * p * p)  # one for every block: see _BLOCK_ELEMENTS
    # Slopes laid out rows last (see _on_minorant) and all rows alike (the jaws across
    # hold still): the differences of levels once for all rows.
    dy = None
    if _rows_last(min(r, block), p) and (y == y[0]).all():
        dy = y[0][None, :] - y[0][:, None]
    if r <= block:
        vertex = used & _on_minorant(x, y, dy, buffer)
    else:
        vertex = np.zeros((r, p), dtype=bool)
        for a in range(0, r, block):
            rows = slice(a, a + block)
            levels = used[rows].any(axis=0).nonzero()[0]
            if levels.size == 0:
                continue
            lo, hi = int(levels[0]), int(levels[-1]) + 1  # only the levels used here
            on_hull = _on_minorant(
                x[rows, lo:hi], y[rows, lo:hi], None if dy is None else dy[lo:hi, lo:hi], buffer
            )
            vertex[rows, lo:hi] = used[rows, lo:hi] & on_hull
    # Trapezoids between each vertex and the next one up: the vertices one after the
    # other, row by row, and each row's sum of the trapezoids that start and end in it.
    at = vertex.ravel().nonzero()[0]
    xv, yv, row = x.take(at), y.take(at), at // p
    terms = (yv[1:] - yv[:-1]) * (xv[:-1] + xv[1:]) / 2
    return np.bincount(row[1:], np.where(row[1:] == row[:-1], terms, 0.0), minlength=r)


# Look-aheads (in control points) that _segments measures for all points in bulk.
_LOOK_AHEAD = 4


def _segments(
    on: list[int],
    positions: np.ndarray,
    mu: list[float],
    tolerance_mm: float,
    steps: np.ndarray | None = None,
) -> tuple[tuple[Segment, ...], list[int], list[float]]:
    """Group the beam-on intervals ``on`` into segments of unchanging aperture (jaws and
    leaves). ``mu``: the MU fraction of every interval.

    A segment grows while every position stays within ``tolerance_mm`` of where it
    was when the segment started; an interval during which something moves further
    is a segment of its own. ``steps``: the positions' changes from each point to the
    next, |positions[1:] - positions[:-1]|, when already at hand.

    Returns the segments, and their first control points and MU fractions as lists.
    """
    end = len(mu)  # the last segment runs to the last interval
    if not on:
        return (), [], []
    if not positions.shape[1]:  # nothing ever moves: one segment
        share = 0.0
        for i in on:
            share += mu[i]
        return (Segment(on[0], end, share),), [on[0]], [share]
    if len(on) == 1:
        return (Segment(on[0], end, mu[on[0]]),), on, [mu[on[0]]]
    # Beam-on intervals one after the other (as in an arc), something moving further than
    # the tolerance during each of them but the last: each is a segment of its own.
    consecutive = steps is not None and on[-1] - on[0] == len(on) - 1
    if (
        consecutive
        and steps is not None
        and (steps[on[0] : on[-1]].max(axis=1) > tolerance_mm).all()
    ):
        shares = [mu[i] for i in on]
        return tuple(map(Segment, on, on[1:] + [end], shares)), on, shares
    # ahead[k][j]: a position at point j + k is more than the tolerance away from j;
    # measured for all points at once on first use, for k up to _LOOK_AHEAD
    ahead: dict[int, list[bool]] = {}
    from_start: dict[int, list[bool]] = {}  # further look-aheads, one start at a time

    def far(i: int, j: int) -> bool:
        k = i - j
        if k <= _LOOK_AHEAD:
            far_k = ahead.get(k)
            if far_k is None:
                if k == 1 and steps is not None:
                    far_k = steps.max(axis=1) > tolerance_mm
                else:
                    far_k = np.abs(positions[k:] - positions[:-k]).max(axis=1) > tolerance_mm
                far_k = ahead[k] = far_k.tolist()
            return far_k[j]
        far_j = from_start.get(j)
        if far_j is None:
            far_j = np.abs(positions[j:] - positions[j]).max(axis=1) > tolerance_mm
            far_j = from_start[j] = far_j.tolist()
        return far_j[k]

    firsts: list[int] = []
    lasts: list[int] = []
    shares = []
    start = on[0]
    share = 0.0
    for i in on:
        if i > start and (far(i, start) or far(i + 1, start)):
            firsts.append(start)
            lasts.append(i)
            shares.append(share)
            start, share = i, 0.0
        share += mu[i]
    firsts.append(start)
    lasts.append(end)
    shares.append(share)
    segments = tuple(map(Segment, firsts, lasts, shares))
    return segments, firsts, shares


def _outside(
    ends: np.ndarray, open_: np.ndarray, width: np.ndarray, cps: np.ndarray, main_cp: int
) -> float:
    """How far (mm) the apertures at ``cps`` reach, at most, outside the one at
    ``main_cp``. ``ends`` as (lo, -hi). (Measured at every control point, then taken
    at ``cps``: cheaper than picking the rows out first.)"""
    # beyond the main aperture's lo (main lo - lo) or its hi (hi - main hi = -main hi
    # - -hi): the same difference of ends for both banks
    beyond = ends[:, main_cp, None, :] - ends
    reach = np.where(
        open_[main_cp],
        np.maximum(beyond[0], beyond[1]),
        width,  # open where the main aperture is closed: the whole opening is outside
    )
    # the largest over the open pairs, and 0 if none reach outside (or none is open)
    return float(np.where(open_, reach, 0.0).max(axis=1, initial=0.0)[cps].max())


def _main_segment(shares: list[float], area: np.ndarray) -> int:
    """Which segment is the main one: the one with the most MU; of segments tied for
    it (to rounding), the one with the largest open area, then the first."""
    most = max(shares)
    tied = [i for i, share in enumerate(shares) if share >= most - 1e-9]
    if len(tied) == 1:
        return tied[0]
    return max(tied, key=lambda i: (float(area[i]), -i))


def _outside_area(
    ends: np.ndarray,
    width: np.ndarray,
    levels: np.ndarray,
    jaw_strip: np.ndarray | None,
    cps: np.ndarray,
    main_cp: int,
    closed_gap_mm: float,
    tolerance_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per control point of ``cps`` (sub-segments): its open area outside the aperture
    at ``main_cp``, and its own open area (mm^2). ``ends`` as (lo, -hi), ``width`` and
    ``levels`` (the strip edges cut by the jaws across the strips) as from ``_strips``;
    ``jaw_strip`` (n, 2): the jaws across the strips (None: none).

    Strip by strip, both apertures are rectangles: along the leaves the opening (leaves
    and jaws), across them the strip cut by the jaws. An opening narrower than
    ``closed_gap_mm`` is closed (a pair parked at the machine's minimum gap). What
    lies outside the main rectangle is: the part of the opening beyond the main
    opening on either side, unless it reaches no further than ``tolerance_mm`` beyond
    the main opening's edge;
    and the whole opening where the main strip is closed or hidden by its jaws, or
    where a jaw across stands further out than the main aperture's by more than
    ``tolerance_mm`` (a jaw standing out by less is taken at the main jaw, so that the
    sliver of a strip it uncovers counts for nothing). Sums of non-negative parts: a
    nested sub-segment measures exactly 0.
    """
    lo, minus_hi = ends[:, cps]  # (k, s)
    main_lo, main_minus_hi = ends[:, main_cp]  # (s,)
    sub_levels, main_levels = levels[cps], levels[main_cp]
    lower, upper = sub_levels[:, :-1], sub_levels[:, 1:]
    if jaw_strip is not None and (jaw_strip[cps] != jaw_strip[main_cp]).any():
        # a jaw across standing out beyond the main one by no more than the tolerance is
        # taken where the main one stands (NaN: no such jaw, nothing to move)
        j1, j2 = _jaw_limits(jaw_strip[cps])
        m1, m2 = _jaw_limits(jaw_strip[main_cp : main_cp + 1])
        j1 = np.where((j1 < m1) & (j1 >= m1 - tolerance_mm), m1, j1)
        j2 = np.where((j2 > m2) & (j2 <= m2 + tolerance_mm), m2, j2)
        lower, upper = np.maximum(lower, j1), np.minimum(upper, j2)
    height = np.maximum(upper - lower, 0.0)
    w, main_w = width[cps], width[main_cp]
    if closed_gap_mm > 0:  # (an opening at least that wide is open)
        counted, main_counted = (w >= closed_gap_mm) & (height > 0), main_w >= closed_gap_mm
    else:
        counted, main_counted = (w > 0) & (height > 0), main_w > 0
    # the part of each strip's height shared with the main aperture's (0 where the main
    # strip is closed or hidden)
    shared = np.minimum(upper, main_levels[1:]) - np.maximum(lower, main_levels[:-1])
    shared = np.where(main_counted & (shared > 0), shared, 0.0)
    # along the leaves: the opening's parts beyond the main opening on either side, each
    # counted when it reaches further than the tolerance beyond the main opening's edge
    # (then it is not empty: it runs from the opening's end to the main opening's, or to
    # the opening's other end, whichever comes first)
    beyond = np.where(
        main_lo - lo > tolerance_mm, np.minimum(-minus_hi, main_lo) - lo, 0.0
    ) + np.where(
        main_minus_hi - minus_hi > tolerance_mm, np.minimum(main_minus_hi, -lo) - minus_hi, 0.0
    )
    outside = np.where(counted, w * (height - shared) + np.minimum(beyond, w) * shared, 0.0)
    own = np.where(counted, w * height, 0.0)
    return outside.sum(axis=1), own.sum(axis=1)


def _corner_leaves(
    ends: np.ndarray, width: np.ndarray, levels: np.ndarray, closed_gap_mm: float, tol: float
) -> tuple[float, float] | None:
    """Whether the apertures given (per row: ``ends`` (2, k, s) as (lo, -hi), ``width``
    (k, s), ``levels`` (k, s + 1)) are each a rectangle whose leaves stand in only at
    its corners; if so, the largest share of an aperture's bounding rectangle that the
    pairs standing in cover, and the largest share of its height, from either end,
    over which they stand in. None when an aperture is shaped otherwise, or none is
    open.

    The rectangle bounds the open pairs (openings of at least ``closed_gap_mm``). A
    pair stands in when either of its ends is further than ``tol`` inside the
    rectangle's edge (so that when all edges lie within ``tol`` of one another, none
    does: both measures are 0). Corners only: the open pairs run without a gap; those
    that do not stand in form one run (the middle), so that those that do lie at the
    ends; and from either end towards the middle they open wider and wider (within
    ``tol``).
    """
    s = width.shape[1]
    if not s:
        return None
    height = levels[:, 1:] - levels[:, :-1]
    counted = (width >= closed_gap_mm) & (width > 0) & (height > 0)
    count = counted.sum(axis=1)
    if not count.all():  # apertures with nothing open have nothing to say
        rows = count > 0
        if not rows.any():
            return None
        ends, width, levels, height = ends[:, rows], width[rows], levels[rows], height[rows]
        counted, count = counted[rows], count[rows]
    # one run of open pairs: as many as from the first to the last (checks that rule an
    # aperture out come first, and cheapest, since most apertures are ruled out)
    first = counted.argmax(axis=1)
    last = s - 1 - counted[:, ::-1].argmax(axis=1)
    if (count != last - first + 1).any():
        return None
    lo, hi = ends[0], -ends[1]
    left = np.where(counted, lo, np.inf).min(axis=1, keepdims=True)
    right = np.where(counted, hi, -np.inf).max(axis=1, keepdims=True)
    edge = counted & (lo <= left + tol) & (hi >= right - tol)
    run_first = edge.argmax(axis=1)
    run_last = s - 1 - edge[:, ::-1].argmax(axis=1)
    if (edge.sum(axis=1) != run_last - run_first + 1).any() or not edge.any(axis=1).all():
        return None
    # steps between neighbours i, i + 1: towards the middle below it, away from it above
    step_lo, step_hi = lo[:, 1:] - lo[:, :-1], hi[:, 1:] - hi[:, :-1]
    i = np.arange(s - 1)
    below = (i >= first[:, None]) & (i < run_first[:, None])
    above = (i >= run_last[:, None]) & (i < last[:, None])
    inwards = np.where(below, step_lo > tol, step_lo < -tol) | np.where(
        below, step_hi < -tol, step_hi > tol
    )
    if ((below | above) & inwards).any():
        return None
    r = np.arange(counted.shape[0])
    bottom, top = levels[r, first], levels[r, last + 1]
    tall = top - bottom
    ends_in = np.maximum(levels[r, run_first] - bottom, top - levels[r, run_last + 1])
    box_width = (right - left)[:, 0]
    covered = (np.where(edge | ~counted, 0.0, box_width[:, None] - width) * height).sum(axis=1)
    box = box_width * tall
    share = np.where(box > 0, covered / box, 0.0)
    extent = np.where(tall > 0, ends_in / tall, 0.0)
    return max(float(share.max()), 0.0), max(float(extent.max()), 0.0)


def _irregularity(
    edges: np.ndarray, spread: np.ndarray, islands: np.ndarray | None, cps: np.ndarray
) -> float:
    """The largest over ``cps`` of: 0 for a rectangle, else the spread of the open
    strips' edges, or a gap between them. ``spread`` per bank and control point, from
    ``_lsv_aav``; ``islands``: per control point, whether closed pairs lie between open
    ones (None: nowhere); ``edges``: all the strip edges. (Measured at every control
    point, then taken at ``cps``.)"""
    per_cp = np.maximum(spread[0], spread[1])  # -inf where nothing is open
    if islands is not None:
        gap = float(np.diff(edges).min())
        per_cp = np.where(islands, np.maximum(per_cp, gap), per_cp)
    # (a spread is never negative: 0 for points where nothing is open)
    return max(float(per_cp[cps].max()), 0.0)
