"""Figures of the department overview, drawn with matplotlib and returned as PNG bytes.

- ``codes_by_month_png``: plans per month of plan date, stacked by code.
- ``mcs_by_technique_png``: the modulation complexity score of each treatment beam,
  one row per technique (points, and a box once a row has enough of them).

They take counted values, not scan results, so the page decides what is counted.
matplotlib is imported only when a figure is drawn; text is drawn literally
(mathtext off).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

DPI = 80
# One colour per code, in the order the page lists the codes; plans without a code grey.
CODE_COLOURS = (
    "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79",
)  # fmt: skip
NO_CODE_COLOUR = "#9e9e9e"
LANES = 5  # vertical lanes the points of a row are spread over
BOX_FROM = 5  # beams a technique needs before its row gets a box (fewer: points only)


@contextmanager
def _figure(width_in: float, height_in: float) -> Iterator[Any]:
    import matplotlib

    # a literal here: mypy checks the keys against matplotlib's own list
    with matplotlib.rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 9}):
        from matplotlib.figure import Figure

        yield Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def code_colours(codes: Sequence[str | None]) -> dict[str | None, str]:
    """Colour of each code (None: no code), in the order given."""
    out: dict[str | None, str] = {}
    k = 0
    for code in codes:
        if code is None:
            out[code] = NO_CODE_COLOUR
        elif code not in out:
            out[code] = CODE_COLOURS[k % len(CODE_COLOURS)]
            k += 1
    return out


def codes_by_month_png(
    months: Sequence[str],
    codes: Sequence[str | None],
    counts: Mapping[tuple[str, str | None], int],
    names: Mapping[str | None, str],
) -> bytes | None:
    """Stacked bars: plans per month (``months`` in order, e.g. "2026-01"), one layer
    per code; ``counts[(month, code)]`` plans; ``names`` the legend text of each code.
    None when there is nothing to draw."""
    if not months or not codes or not any(counts.values()):
        return None
    colours = code_colours(codes)
    with _figure(min(6.0 + 0.4 * len(months), 13.0), 3.4) as fig:
        ax = fig.add_subplot()
        x = list(range(len(months)))
        bottom = [0] * len(months)
        for code in codes:
            heights = [counts.get((m, code), 0) for m in months]
            if not any(heights):
                continue
            ax.bar(x, heights, bottom=bottom, color=colours[code], label=names[code], width=0.7)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_xlim(-0.6, max(len(months), 6) - 0.4)  # a lone month is not one wide slab
        ax.set_xticks(x, list(months), rotation=45 if len(months) > 6 else 0, ha="right")
        ax.set_ylabel("plans")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title("Plans per month of plan date, by code")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        return _png(fig)


def _box(ax: Any, values: Sequence[float], y: float) -> None:
    """Quartile box, median line and whiskers to the lowest and highest value (drawn by
    hand: ``Axes.boxplot``'s orientation argument differs between matplotlib versions)."""
    from matplotlib.patches import Rectangle

    q1, median, q3 = np.percentile(values, [25, 50, 75])
    grey = "#6b7280"
    ax.add_patch(Rectangle((q1, y - 0.3), q3 - q1, 0.6, fill=False, color=grey, zorder=2))
    ax.vlines(median, y - 0.3, y + 0.3, color="#d62728", linewidth=1.5, zorder=4)
    ax.hlines([y, y], [min(values), q3], [q1, max(values)], color=grey, linewidth=1, zorder=2)


def mcs_by_technique_png(groups: Mapping[str, Sequence[float]]) -> bytes | None:
    """One row per technique (in the order given): each beam's MCS as a point, spread
    over its row so equal values stay visible, and a box (quartiles, median) from
    ``BOX_FROM`` beams. None when no technique has a value."""
    rows = [(name, list(values)) for name, values in groups.items() if values]
    if not rows:
        return None
    with _figure(7.0, 1.0 + 0.42 * len(rows)) as fig:
        ax = fig.add_subplot()
        for y, (_, values) in enumerate(rows):
            n = len(values)
            # neighbours in value order go to different lanes within +-0.25 of the
            # row (no random jitter: the same scan draws the same figure)
            lanes = min(n, LANES)
            offsets = [0.0] * n
            for rank, i in enumerate(sorted(range(n), key=lambda i: values[i])):
                offsets[i] = 0.0 if lanes == 1 else -0.25 + 0.5 * (rank % lanes) / (lanes - 1)
            ax.scatter(
                values, [y + o for o in offsets], s=14, color="#24344d", alpha=0.75, zorder=3
            )
            if n >= BOX_FROM:
                _box(ax, values, y)
        ax.set_yticks(range(len(rows)), [f"{name} ({len(v)})" for name, v in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.02)
        ax.set_xlabel("modulation complexity score (1 open field, towards 0 more modulated)")
        ax.set_title("MCS per treatment beam, by technique (beams in brackets)")
        ax.grid(axis="x", color="#e5e7eb")
        ax.spines[["top", "right"]].set_visible(False)
        return _png(fig)
