"""Figures for the HTML report as PNG bytes: cumulative DVHs (``dvh_png``), a beam's
aperture seen from the source (``bev_png``) and the beam arrangement
(``arrangement_png``). matplotlib is imported only when a figure is drawn; DICOM text
is drawn literally (mathtext off), so a ``$`` in an ROI name stays a ``$``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from rtcode.measure.dvh import DvhCurve, PlanDvh, RoiDvh
from rtcode.measure.metrics import apertures
from rtcode.model.codes import ARCS, BeamAssessment

DPI = 80
TARGET_COLOURS = ("#d62728", "#ff7f0e", "#b5179e", "#8c564b", "#e6a100", "#f4511e")
ORGAN_COLOURS = ("#1f77b4", "#2ca02c", "#17becf", "#6a3d9a", "#00897b", "#3949ab", "#7cb342")
OTHER_COLOUR = "#7f7f7f"
BEAM_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
)  # fmt: skip
ARC_PANELS = 4  # control points shown for an arc


@contextmanager
def _style() -> Iterator[Any]:
    """matplotlib's Figure class, drawn with the report's settings."""
    import matplotlib  # here, not at the top: rtcode starts fast without it

    with matplotlib.rc_context(  # parse_math off: DICOM text is drawn as written
        {"text.parse_math": False, "font.size": 9, "axes.titlesize": 9, "svg.fonttype": "none"}
    ):
        from matplotlib.figure import Figure  # lazily, as above

        yield Figure


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _clip(text: str | None, width: int = 24) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------- DVH


# Markers that set apart ROIs sharing a colour once a role has more ROIs than its
# palette has colours (the first round of a palette has none).
MARKERS = (None, "o", "s", "^", "D", "v", "x", "P", "*", "<", ">", "h")


def roi_styles(d: PlanDvh) -> dict[int, tuple[str, str | None]]:
    """(colour, marker) of each ROI row (by index in ``d.rois``): warm targets, cool
    organs, grey others; a role with more ROIs than colours goes round its palette
    again with a marker on the line, so no two ROIs of a figure look the same (stored
    and computed curves of one ROI share its colour and marker: solid and dashed)."""
    out: dict[int, tuple[str, str | None]] = {}
    counts: dict[str, int] = {}
    for i, r in enumerate(d.rois):
        palette = {"target": TARGET_COLOURS, "organ_at_risk": ORGAN_COLOURS}.get(
            r.role, (OTHER_COLOUR,)
        )
        group = r.role if r.role in ("target", "organ_at_risk") else "other"
        n = counts.get(group, 0)
        counts[group] = n + 1
        turn, colour = divmod(n, len(palette))
        # beyond every colour and marker: the same again, and each curve labelled at its end
        out[i] = (palette[colour], MARKERS[turn % len(MARKERS)])
    return out


def needs_end_labels(d: PlanDvh) -> bool:
    """Whether two ROIs share colour and marker: then each curve is named at its end."""
    styles = list(roi_styles(d).values())
    return len(set(styles)) < len(styles)


# The dose axis. A plan's hottest voxel can be far above anything of interest (next to
# a brachytherapy source: 2000 Gy against a 7 Gy prescription; every curve would fall
# in the first 2% of the axis), so the axis ends at
#   1.5 x the prescription, when one is known, else
#   1.2 x the 98th percentile of the curves' near-maximum doses (D2, ICRU 83),
# and never before a target curve has fallen to 2% of its volume (its shoulder, with
# 10% to spare), nor beyond the highest dose of any curve (+5%). The figure says where
# curves run on beyond the axis.
AXIS_PRESCRIPTION_FACTOR = 1.5
AXIS_D2_HEADROOM = 1.2
AXIS_TARGET_HEADROOM = 1.1


def _dose_at(dose: np.ndarray, pct: np.ndarray, level: float) -> float:
    """The highest dose at which at least ``level`` % of the ROI still receives it."""
    above = np.flatnonzero(pct >= level) if level > 0 else np.flatnonzero(pct > 0)
    return float(dose[above[-1]]) if above.size else 0.0


def dose_axis_limit(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], prescription_gy: float | None = None
) -> float:
    """Where the dose axis of a DVH figure ends (Gy): ``curves`` are (role, dose at bin
    edges, cumulative volume %), as ``DvhCurve.cumulative`` gives them."""
    ends = [_dose_at(dose, pct, 0.0) for _, dose, pct in curves]
    full = max([*ends, 0.0]) * 1.05
    if prescription_gy is not None and math.isfinite(prescription_gy) and prescription_gy > 0:
        limit = AXIS_PRESCRIPTION_FACTOR * prescription_gy
    else:
        d2 = [_dose_at(dose, pct, 2.0) for _, dose, pct in curves]
        limit = AXIS_D2_HEADROOM * float(np.percentile(d2, 98)) if d2 else full
    for role, dose, pct in curves:
        if role == "target":
            limit = max(limit, AXIS_TARGET_HEADROOM * _dose_at(dose, pct, 2.0))
    return max(min(limit, full), 1.0)


DvhLine = tuple[int, RoiDvh, DvhCurve, str, np.ndarray, np.ndarray]


def dvh_png(
    d: PlanDvh, title: str | None = None, prescription_gy: float | None = None
) -> bytes | None:
    """Cumulative DVHs (volume % against dose Gy); None when the plan has none. The
    dose axis ends where ``dose_axis_limit`` says; ``prescription_gy`` (the first
    target's TargetPrescriptionDose, for the course) is marked with a dotted line."""
    if not d.has_curves:
        return None
    styles = roi_styles(d)
    label_ends = needs_end_labels(d)
    drawn = _dvh_lines(d)
    limit = dose_axis_limit(
        [(r.role, dose, pct) for _, r, _, _, dose, pct in drawn], prescription_gy
    )
    with _style() as Figure:
        fig = Figure(figsize=(8.6, 4.2), layout="constrained")
        ax = fig.add_subplot()
        beyond = []
        for k, line in enumerate(drawn):
            end = _draw_dvh_line(ax, k, line, styles[line[0]], limit, label_ends)
            if end > limit:
                beyond.append(end)
        if prescription_gy is not None:
            ax.axvline(
                prescription_gy,
                color="#333333",
                linestyle=":",
                linewidth=1.2,
                label=f"prescription {prescription_gy:g} Gy (course)",
            )
        _dvh_axes(ax, limit, beyond, title)
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8 if len(drawn) <= 20 else 6,
            frameon=False,
            ncols=1 if len(drawn) <= 24 else 2,
        )
        return _png(fig)


def _dvh_lines(d: PlanDvh) -> list[DvhLine]:
    """(ROI index, ROI, curve, line style, dose, volume %) of every curve: stored solid,
    computed dashed."""
    drawn = []
    for i, r in enumerate(d.rois):
        for curve, line in ((r.stored, "-"), (r.computed, "--")):
            if curve is not None:
                dose, pct = curve.cumulative()
                drawn.append((i, r, curve, line, dose, pct))
    return drawn


def _draw_dvh_line(
    ax: Any,
    k: int,
    drawn: DvhLine,
    style: tuple[str, str | None],
    limit: float,
    label_end: bool,
) -> float:
    """Draw the ``k``-th curve (named at its end when ``label_end``); its highest dose."""
    _, r, curve, line, dose, pct = drawn
    colour, marker = style
    role = "target" if r.role == "target" else "OAR"
    ax.plot(
        dose,
        pct,
        line,
        color=colour,
        linewidth=1.6,
        marker=marker,
        markersize=5,
        markevery=(0.02 * (k % 5), 0.1) if marker else None,
        markerfacecolor="none" if line == "--" else colour,
        label=f"{_clip(r.roi_name)} ({role}, {curve.source})",
    )
    inside = dose <= limit
    if label_end and inside.any():
        shown = inside & (pct > 0.5)  # where the curve still stands off the axis
        j = int(np.flatnonzero(shown if shown.any() else inside)[-1])
        ax.annotate(
            _clip(r.roi_name, 12),
            (float(dose[j]), float(pct[j])),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=6,
            color=colour,
        )
    return _dose_at(dose, pct, 0.0)


def _dvh_axes(ax: Any, limit: float, beyond: list[float], title: str | None) -> None:
    """Axes, grid and title; a note when curves run on beyond the dose axis."""
    ax.set_xlim(0, limit)
    ax.set_ylim(0, 102)
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume (%)")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    if beyond:
        ax.text(
            0.99,
            0.98,
            f"{len(beyond)} curve(s) run on beyond {limit:.3g} Gy, up to {max(beyond):.4g} Gy",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="#4b5563",
        )
    if title:
        ax.set_title(_clip(title, 80))


# ------------------------------------------------------------------------- BEV


def bev_control_points(b: BeamAssessment) -> list[tuple[int, str]]:
    """(control point, caption) to draw: the largest segment, or a few points of an arc."""
    m = b.metrics
    n = b.beam.control_points.count
    if n == 0:
        return []
    if b.technique in ARCS and m.control_points >= 2:
        on = np.flatnonzero(m.cp_mu_fraction > 0)
        if on.size == 0:
            on = np.arange(n)
        picks = sorted({int(on[round(k)]) for k in np.linspace(0, on.size - 1, ARC_PANELS)})
        g = b.beam.control_points.gantry_deg
        return [(i, f"gantry {g[i]:.0f}°" if not math.isnan(g[i]) else f"cp {i}") for i in picks]
    if m.segments:
        seg = max(m.segments, key=lambda s: s.mu_fraction)
        return [(seg.first_cp, f"largest segment, {seg.mu_fraction:.0%} of MU")]
    return [(0, "control point 0")]


# Each beam's-eye view is scaled to its aperture (the open field at the control points
# drawn), not to the jaws: a 10 mm radiosurgery aperture in a +-200 mm view would be a
# few pixels. The view reaches the aperture's farthest edge from the isocentre, plus a
# margin (a share of that reach, at least BEV_MARGIN_MM), and at least BEV_MIN_HALF_MM.
BEV_MARGIN_MM = 5.0
BEV_MARGIN_SHARE = 0.25
BEV_MIN_HALF_MM = 10.0


def aperture_view_limit(
    travel_lo: np.ndarray, travel_hi: np.ndarray, strip_lo: np.ndarray, strip_hi: np.ndarray
) -> float | None:
    """Half-width (mm) of a view that shows the open field given as rectangles (one
    per leaf pair: along leaf travel ``travel_lo``..``travel_hi``, across
    ``strip_lo``..``strip_hi``); None when nothing is open."""
    arrays = [np.asarray(v, dtype=float) for v in (travel_lo, travel_hi, strip_lo, strip_hi)]
    open_ = (arrays[1] > arrays[0]) & (arrays[3] > arrays[2])
    open_ &= np.all([np.isfinite(v) for v in arrays], axis=0)
    if not open_.any():
        return None
    reach = max(float(np.abs(v[open_]).max()) for v in arrays)
    return max(reach + max(BEV_MARGIN_MM, BEV_MARGIN_SHARE * reach), BEV_MIN_HALF_MM)


def _strips(ap: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf pair's strip at control point ``i``, cut by the jaws across."""
    edges = ap.strip_edges_mm
    lo = np.maximum(edges[:-1], np.nan_to_num(ap.jaw_strip_mm[i, 0], nan=-np.inf))
    return lo, lo + ap.height_mm[i]


def _view_limit(ap: Any, cps: Sequence[int]) -> float:
    """Half-width of the view: the aperture with a margin (``aperture_view_limit``);
    with nothing open, the jaws."""
    found = []
    for i in cps:
        strip_lo, strip_hi = _strips(ap, i)
        found.append(aperture_view_limit(ap.lo_mm[i], ap.hi_mm[i], strip_lo, strip_hi))
    if any(v is not None for v in found):
        return max(v for v in found if v is not None)
    reach = [20.0]
    for i in cps:
        for jaws in (ap.jaw_travel_mm[i], ap.jaw_strip_mm[i]):
            reach.extend(abs(float(v)) for v in jaws if np.isfinite(v))
    return max(reach) * 1.15


def bev_png(b: BeamAssessment, title: str | None = None) -> bytes | None:
    """The beam's aperture seen from the source (collimator frame, mm at isocentre):
    open field yellow, leaves grey, jaws red."""
    ap = apertures(b.beam)
    cps = bev_control_points(b)
    if ap is None or not cps:
        return None
    lim = _view_limit(ap, [i for i, _ in cps])
    with _style() as Figure:
        width = 2.75 * len(cps) + 0.35
        fig = Figure(figsize=(width, 3.3))
        fig.subplots_adjust(
            left=0.55 / width, right=1 - 0.1 / width, bottom=0.15, top=0.84, wspace=0.3
        )
        axes = fig.subplots(1, len(cps), squeeze=False)[0]
        for ax, (i, caption) in zip(axes, cps, strict=True):
            _bev_panel(ax, ap, i, lim)
            ax.set_title(caption)
        axes[0].set_ylabel("Y (mm)")
        if title:
            fig.suptitle(_clip(title, 70), fontsize=9)
        return _png(fig)


def _box(ap: Any, t0: float, t1: float, s0: float, s1: float) -> list[tuple[float, float]]:
    """A rectangle from leaf travel (``t``) and across (``s``) to plot x, y: leaves travel
    along plot x for MLCX, along plot y for MLCY."""
    if ap.leaf_axis != "X":
        t0, t1, s0, s1 = s0, s1, t0, t1
    return [(t0, s0), (t1, s0), (t1, s1), (t0, s1)]


def _bev_panel(ax: Any, ap: Any, i: int, lim: float) -> None:
    """One control point: the open field, the leaves and the jaws, ``lim`` mm about the
    isocentre."""
    from matplotlib.collections import PolyCollection  # lazily: see _style

    ax.set_facecolor("#3b4452")  # outside the leaves and jaws: blocked
    lo, hi, height = ap.lo_mm[i], ap.hi_mm[i], ap.height_mm[i]
    strip_lo = _strips(ap, i)[0]
    field = [
        _box(ap, lo[k], hi[k], strip_lo[k], strip_lo[k] + height[k])
        for k in range(lo.size)
        if height[k] > 0 and hi[k] > lo[k]
    ]
    ax.add_collection(PolyCollection(field, facecolors="#ffe27a", edgecolors="none"))
    if ap.has_mlc:
        edges = ap.strip_edges_mm
        leaves = []
        for k in range(lo.size):
            a, c = min(lo[k], hi[k]), max(lo[k], hi[k])
            leaves.append(_box(ap, -2 * lim, a, edges[k], edges[k + 1]))
            leaves.append(_box(ap, c, 2 * lim, edges[k], edges[k + 1]))
        ax.add_collection(
            PolyCollection(
                leaves, facecolors="#9aa7b8", edgecolors="#5c6878", linewidths=0.3, alpha=0.6
            )
        )
    _bev_jaws(ax, ap, i)
    ax.axhline(0, color="white", linewidth=0.5, alpha=0.7)
    ax.axvline(0, color="white", linewidth=0.5, alpha=0.7)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("X (mm)")
    ax.tick_params(labelsize=7)


def _bev_jaws(ax: Any, ap: Any, i: int) -> None:
    """The jaws at control point ``i`` as red lines (absent jaws: none)."""
    t0, t1 = ap.jaw_travel_mm[i]
    s0, s1 = ap.jaw_strip_mm[i]
    jaw = {"color": "#c62828", "linewidth": 1.6}
    for v in (t0, t1):
        if np.isfinite(v):
            (ax.axvline if ap.leaf_axis == "X" else ax.axhline)(v, **jaw)
    for v in (s0, s1):
        if np.isfinite(v):
            (ax.axhline if ap.leaf_axis == "X" else ax.axvline)(v, **jaw)


# ---------------------------------------------------------------- arrangement


def _beam_label(b: BeamAssessment) -> str:
    number = "" if b.beam.number is None else f"{b.beam.number} "
    return _clip(f"{number}{b.beam.name or ''}".strip() or "beam", 14)


AngleLabels = dict[float, list[tuple[str, str]]]  # angle: (beam label, colour) at it


def arrangement_png(beams: Sequence[BeamAssessment], title: str | None = None) -> bytes | None:
    """Gantry (seen from the foot of the couch) and couch (seen from above) angles."""
    drawn = [b for b in beams if b.beam.gantry_start_deg is not None]
    if not drawn:
        return None
    with _style() as Figure:
        fig = Figure(figsize=(8.6, 4.6))
        fig.subplots_adjust(left=0.1, right=0.9, bottom=0.16, top=0.8, wspace=0.6)
        gantry, couch = _polar_pair(fig)
        arcs = 0
        gantry_labels: AngleLabels = {}
        couch_labels: AngleLabels = {}
        for k, b in enumerate(drawn):
            colour = BEAM_COLOURS[k % len(BEAM_COLOURS)] if b.counted else "#9e9e9e"
            style = "-" if b.counted else ":"
            if b.metrics.arc_span_deg >= 1.0:
                _draw_arc(gantry, b, colour, style, arcs)
                arcs += 1
            else:
                _draw_static(gantry, b, colour, style, gantry_labels)
            c = b.beam.control_points.couch_deg
            if c.size and not math.isnan(c[0]):
                angle = float(c[0])
                t = math.radians(angle)
                couch.plot([t, t], [0, 1.0], style, color=colour, linewidth=2.0)
                couch_labels.setdefault(round(angle % 360, 1), []).append((_beam_label(b), colour))
        _angle_labels(gantry, gantry_labels, -1.0, len(drawn))
        _angle_labels(couch, couch_labels, 1.0, len(drawn))
        if arcs:
            gantry.legend(
                loc="upper left", bbox_to_anchor=(-0.12, -0.02), fontsize=7, frameon=False, ncols=2
            )
        if title:
            fig.suptitle(_clip(title, 80), fontsize=9)
        return _png(fig)


def _polar_pair(fig: Any) -> tuple[Any, Any]:
    """The gantry and couch dials: zero at the top, gantry clockwise (IEC 61217), couch
    counter-clockwise from above."""
    gantry = fig.add_subplot(1, 2, 1, projection="polar")
    couch = fig.add_subplot(1, 2, 2, projection="polar")
    for ax in (gantry, couch):
        ax.set_theta_zero_location("N")
        ax.set_ylim(0, 1.0)
        ax.set_yticks([])
        ax.set_xticks(np.radians(np.arange(0, 360, 45)), labels=[""] * 8)
        ax.grid(True, color="#dddddd", linewidth=0.6)
    gantry.set_theta_direction(-1)  # IEC 61217: gantry angle grows clockwise
    couch.set_theta_direction(1)  # couch angle grows counter-clockwise from above
    gantry.set_title("gantry, seen from the foot of the couch", pad=30)
    couch.set_title("couch, seen from above", pad=30)
    return gantry, couch


def _draw_arc(gantry: Any, b: BeamAssessment, colour: str, style: str, n: int) -> None:
    """The ``n``-th arc as a band with an arrow at its end, named in the legend."""
    start = float(b.beam.gantry_start_deg or 0.0)
    span = b.metrics.arc_span_deg
    sign = -1.0 if (b.beam.gantry_direction or "").upper() == "CC" else 1.0
    r = 0.86 - 0.1 * (n % 6)
    theta = np.radians(start + sign * np.linspace(0.0, span, 90))
    gantry.plot(theta, np.full(theta.size, r), style, color=colour, linewidth=2.2)
    gantry.annotate(
        "",
        xy=(theta[-1], r),
        xytext=(theta[-4], r),
        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.6},
    )
    gantry.plot(
        [],
        [],
        color=colour,
        linewidth=2.2,
        label=f"{_beam_label(b)}: arc {start:g}° {'CC' if sign < 0 else 'CW'} {span:.0f}°",
    )


def _draw_static(
    gantry: Any, b: BeamAssessment, colour: str, style: str, labels: AngleLabels
) -> None:
    """A static beam as an arrow from its gantry angle to the isocentre."""
    start = float(b.beam.gantry_start_deg or 0.0)
    t = math.radians(start)
    gantry.annotate(
        "",
        xy=(t, 0.12),
        xytext=(t, 1.0),
        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.8, "ls": style},
    )
    labels.setdefault(round(start % 360, 1), []).append((_beam_label(b), colour))


def _angle_labels(ax: Any, labels: AngleLabels, turn: float, n_drawn: int) -> None:
    """The beams at each angle named outside the dial (three, then "+N more"; "all N
    beams" when every beam shares the angle)."""
    for angle, items in labels.items():
        text = "\n".join(name for name, _ in items[:3])
        if len(items) > 3:
            text += f"\n+{len(items) - 3} more"
        if len(items) == n_drawn > 1:
            text = f"all {len(items)} beams"
        colour = items[0][1] if len(items) == 1 else "#333333"
        x = -turn * math.sin(math.radians(angle))  # where the label sits on screen
        y = math.cos(math.radians(angle))
        ax.text(
            math.radians(angle),
            1.04,
            f"{angle:g}°: {text}",
            color=colour,
            ha="left" if x > 0.3 else "right" if x < -0.3 else "center",
            va="bottom" if y > 0.3 else "top" if y < -0.3 else "center",
            fontsize=7,
        )
