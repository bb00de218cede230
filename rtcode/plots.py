"""Figures for the HTML report, drawn with matplotlib and returned as PNG bytes.

- ``dvh_png``: cumulative DVHs of a plan; targets in warm colours, organs at risk in
  cool ones; stored curves solid, computed ones dashed.
- ``bev_png``: a beam's-eye view of one beam's aperture in the collimator frame:
  leaves, jaws and the open field at the largest segment, or at a few control points
  of an arc.
- ``arrangement_png``: where the beams come from: gantry angles and arcs seen from
  the foot of the couch (IEC 61217: clockwise), couch angles seen from above.

matplotlib is imported only here and only when a figure is drawn; text from DICOM
files is drawn literally (mathtext off), so a ``$`` in an ROI name stays a ``$``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .classify import ARCS, BeamAssessment
from .dvh import PlanDvh
from .metrics import apertures

DPI = 80
TARGET_COLOURS = ("#d62728", "#ff7f0e", "#b5179e", "#8c564b", "#e6a100", "#f4511e")
ORGAN_COLOURS = ("#1f77b4", "#2ca02c", "#17becf", "#6a3d9a", "#00897b", "#3949ab", "#7cb342")
OTHER_COLOUR = "#7f7f7f"
BEAM_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
)  # fmt: skip
ARC_PANELS = 4  # control points shown for an arc

_RC = {
    "text.parse_math": False,  # DICOM text is drawn as written
    "font.size": 9,
    "axes.titlesize": 9,
    "svg.fonttype": "none",
}


@contextmanager
def _style() -> Iterator[Any]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        from matplotlib.figure import Figure

        yield Figure


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _clip(text: str | None, width: int = 24) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------- DVH


def role_colours(d: PlanDvh) -> dict[int, str]:
    """Colour of each ROI row (by index in ``d.rois``): warm targets, cool organs."""
    out: dict[int, str] = {}
    counts = {"target": 0, "organ_at_risk": 0}
    for i, r in enumerate(d.rois):
        palette = {"target": TARGET_COLOURS, "organ_at_risk": ORGAN_COLOURS}.get(r.role)
        if palette is None:
            out[i] = OTHER_COLOUR
            continue
        out[i] = palette[counts[r.role] % len(palette)]
        counts[r.role] += 1
    return out


def dvh_png(
    d: PlanDvh, title: str | None = None, prescription_gy: float | None = None
) -> bytes | None:
    """Cumulative DVHs (volume % against dose Gy); None when the plan has none. With
    ``prescription_gy`` (the first target's TargetPrescriptionDose, for the course), a
    dotted vertical line marks it."""
    if not d.has_curves:
        return None
    colours = role_colours(d)
    with _style() as Figure:
        fig = Figure(figsize=(8.6, 4.2), layout="constrained")
        ax = fig.add_subplot()
        top = 0.0
        for i, r in enumerate(d.rois):
            for curve, style in ((r.stored, "-"), (r.computed, "--")):
                if curve is None:
                    continue
                dose, pct = curve.cumulative()
                top = max(top, float(dose[np.flatnonzero(pct > 0)[-1]]) if (pct > 0).any() else 0)
                role = "target" if r.role == "target" else "OAR"
                ax.plot(
                    dose,
                    pct,
                    style,
                    color=colours[i],
                    linewidth=1.6,
                    label=f"{_clip(r.roi_name)} ({role}, {curve.source})",
                )
        if prescription_gy is not None:
            ax.axvline(
                prescription_gy,
                color="#333333",
                linestyle=":",
                linewidth=1.2,
                label=f"prescription {prescription_gy:g} Gy (course)",
            )
        ax.set_xlim(0, max(top * 1.05, 1.0))
        ax.set_ylim(0, 102)
        ax.set_xlabel("dose (Gy)")
        ax.set_ylabel("volume (%)")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        if title:
            ax.set_title(_clip(title, 80))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        return _png(fig)


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


def _view_limit(ap: Any, cps: Sequence[int]) -> float:
    """Half-width of the view: the jaws and the open field, with a margin."""
    reach = [20.0]
    for i in cps:
        for jaws in (ap.jaw_travel_mm[i], ap.jaw_strip_mm[i]):
            reach.extend(abs(float(v)) for v in jaws if np.isfinite(v))
        open_ = (ap.hi_mm[i] > ap.lo_mm[i]) & (ap.height_mm[i] > 0)
        if open_.any():
            reach.append(float(np.abs(ap.lo_mm[i][open_]).max()))
            reach.append(float(np.abs(ap.hi_mm[i][open_]).max()))
            k = np.flatnonzero(open_)
            reach.append(float(abs(ap.strip_edges_mm[k[0]])))
            reach.append(float(abs(ap.strip_edges_mm[k[-1] + 1])))
    return max(reach) * 1.15


def bev_png(b: BeamAssessment, title: str | None = None) -> bytes | None:
    """The beam's aperture seen from the source (collimator frame, mm at isocentre):
    open field yellow, leaves grey, jaws red."""
    ap = apertures(b.beam)
    cps = bev_control_points(b)
    if ap is None or not cps:
        return None
    lim = _view_limit(ap, [i for i, _ in cps])
    edges = ap.strip_edges_mm

    def box(t0: float, t1: float, s0: float, s1: float) -> list[tuple[float, float]]:
        # leaves travel along plot x for MLCX, along plot y for MLCY
        if ap.leaf_axis != "X":
            t0, t1, s0, s1 = s0, s1, t0, t1
        return [(t0, s0), (t1, s0), (t1, s1), (t0, s1)]

    with _style() as Figure:
        from matplotlib.collections import PolyCollection

        width = 2.75 * len(cps) + 0.35
        fig = Figure(figsize=(width, 3.3))
        fig.subplots_adjust(
            left=0.55 / width, right=1 - 0.1 / width, bottom=0.15, top=0.84, wspace=0.3
        )
        axes = fig.subplots(1, len(cps), squeeze=False)[0]
        for ax, (i, caption) in zip(axes, cps, strict=True):
            ax.set_facecolor("#3b4452")  # outside the leaves and jaws: blocked
            lo, hi, height = ap.lo_mm[i], ap.hi_mm[i], ap.height_mm[i]
            strip_lo = np.maximum(edges[:-1], np.nan_to_num(ap.jaw_strip_mm[i, 0], nan=-np.inf))
            field = [
                box(lo[k], hi[k], strip_lo[k], strip_lo[k] + height[k])
                for k in range(lo.size)
                if height[k] > 0 and hi[k] > lo[k]
            ]
            ax.add_collection(PolyCollection(field, facecolors="#ffe27a", edgecolors="none"))
            if ap.has_mlc:
                leaves = []
                for k in range(lo.size):
                    a, c = min(lo[k], hi[k]), max(lo[k], hi[k])
                    leaves.append(box(-2 * lim, a, edges[k], edges[k + 1]))
                    leaves.append(box(c, 2 * lim, edges[k], edges[k + 1]))
                ax.add_collection(
                    PolyCollection(
                        leaves,
                        facecolors="#9aa7b8",
                        edgecolors="#5c6878",
                        linewidths=0.3,
                        alpha=0.6,
                    )
                )
            t0, t1 = ap.jaw_travel_mm[i]
            s0, s1 = ap.jaw_strip_mm[i]
            jaw = {"color": "#c62828", "linewidth": 1.6}
            for v in (t0, t1):
                if np.isfinite(v):
                    (ax.axvline if ap.leaf_axis == "X" else ax.axhline)(v, **jaw)
            for v in (s0, s1):
                if np.isfinite(v):
                    (ax.axhline if ap.leaf_axis == "X" else ax.axvline)(v, **jaw)
            ax.axhline(0, color="white", linewidth=0.5, alpha=0.7)
            ax.axvline(0, color="white", linewidth=0.5, alpha=0.7)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(caption)
            ax.set_xlabel("X (mm)")
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("Y (mm)")
        if title:
            fig.suptitle(_clip(title, 70), fontsize=9)
        return _png(fig)


# ---------------------------------------------------------------- arrangement


def _beam_label(b: BeamAssessment) -> str:
    number = "" if b.beam.number is None else f"{b.beam.number} "
    return _clip(f"{number}{b.beam.name or ''}".strip() or "beam", 14)


def arrangement_png(beams: Sequence[BeamAssessment], title: str | None = None) -> bytes | None:
    """Gantry (seen from the foot of the couch) and couch (seen from above) angles."""
    drawn = [b for b in beams if b.beam.gantry_start_deg is not None]
    if not drawn:
        return None
    with _style() as Figure:
        fig = Figure(figsize=(8.6, 4.6))
        fig.subplots_adjust(left=0.1, right=0.9, bottom=0.16, top=0.8, wspace=0.6)
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
        arcs = 0
        gantry_labels: dict[float, list[tuple[str, str]]] = {}
        couch_labels: dict[float, list[tuple[str, str]]] = {}
        for k, b in enumerate(drawn):
            colour = BEAM_COLOURS[k % len(BEAM_COLOURS)] if b.counted else "#9e9e9e"
            style = "-" if b.counted else ":"
            start = float(b.beam.gantry_start_deg or 0.0)
            label = _beam_label(b)
            span = b.metrics.arc_span_deg
            if span >= 1.0:
                sign = -1.0 if (b.beam.gantry_direction or "").upper() == "CC" else 1.0
                r = 0.86 - 0.1 * (arcs % 6)
                arcs += 1
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
                    label=f"{label}: arc {start:g}° {'CC' if sign < 0 else 'CW'} {span:.0f}°",
                )
            else:
                t = math.radians(start)
                gantry.annotate(
                    "",
                    xy=(t, 0.12),
                    xytext=(t, 1.0),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.8, "ls": style},
                )
                gantry_labels.setdefault(round(start % 360, 1), []).append((label, colour))
            c = b.beam.control_points.couch_deg
            if c.size and not math.isnan(c[0]):
                angle = float(c[0])
                t = math.radians(angle)
                couch.plot([t, t], [0, 1.0], style, color=colour, linewidth=2.0)
                couch_labels.setdefault(round(angle % 360, 1), []).append((label, colour))
        for ax, labels, turn in ((gantry, gantry_labels, -1.0), (couch, couch_labels, 1.0)):
            for angle, items in labels.items():
                text = "\n".join(name for name, _ in items[:3])
                if len(items) > 3:
                    text += f"\n+{len(items) - 3} more"
                if len(items) == len(drawn) > 1:
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
        if arcs:
            gantry.legend(
                loc="upper left", bbox_to_anchor=(-0.12, -0.02), fontsize=7, frameon=False, ncols=2
            )
        if title:
            fig.suptitle(_clip(title, 80), fontsize=9)
        return _png(fig)
