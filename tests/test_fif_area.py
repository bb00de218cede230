"""Field-in-field against step-and-shoot IMRT by area, and rectangles with rounded corners.

Field-in-field (forward-planned sub-segments nested in a main aperture) is not IMRT;
coding it as IMRT is the costliest error. Sub-segments are compared with the main
aperture by jaw-clipped open area, so that what real forward plans do does not read as
modulation: a jaw moved by 1 mm uncovering a sliver of a wide-open leaf pair the main
jaw hid, and closed leaf pairs parked at a small gap anywhere inside the jaws (Elekta,
Monaco). A machine rounding the corners of its largest field does not shape it.

Beams are built here from leaf and jaw positions, one static segment per pair of control
points, on a 5-mm-leaf MLC.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import builders as b
import numpy as np
import pytest

from rtcode.coding.classify import classify
from rtcode.coding.policy import load, parse
from rtcode.coding.related import related_codes
from rtcode.measure.metrics import beam_metrics
from rtcode.model.codes import Technique
from rtcode.model.errors import PolicyError
from rtcode.model.facts import BeamLimitingDevice


@pytest.fixture(scope="module")
def policy():
    return load("default")


# ------------------------------------------------------------------ building beams

LEAF_MM = 5.0


def mlc(pairs: int) -> BeamLimitingDevice:
    half = pairs * LEAF_MM / 2
    return BeamLimitingDevice("MLCX", pairs, tuple(np.linspace(-half, half, pairs + 1)))


def centres(pairs: int) -> np.ndarray:
    """The middle of each leaf pair across the leaves (mm)."""
    return (np.arange(pairs) + 0.5) * LEAF_MM - pairs * LEAF_MM / 2


def leaves(pairs: int, lo: float, hi: float, where=None) -> np.ndarray:
    """Every pair (or the pairs ``where`` is true) open from lo to hi, the others shut
    at 0 (bank A then bank B, as in DICOM)."""
    where = np.ones(pairs, dtype=bool) if where is None else where
    return np.r_[np.where(where, lo, 0.0), np.where(where, hi, 0.0)]


def park(aperture: np.ndarray, where: np.ndarray, at: float, gap: float = 0.6) -> np.ndarray:
    """Close the pairs ``where`` as Monaco does: the two leaves ``gap`` apart at ``at``."""
    pairs = aperture.size // 2
    out = aperture.copy()
    out[:pairs] = np.where(where, at - gap / 2, out[:pairs])
    out[pairs:] = np.where(where, at + gap / 2, out[pairs:])
    return out


def step_and_shoot(segments, pairs: int, number: int = 1, jaws_x: bool = True, gantry=0.0):
    """A beam of static segments, each (leaves, (X1, X2), (Y1, Y2), MU fraction). Without
    ``jaws_x`` the machine has none along the leaves (Elekta Agility)."""
    apertures, weights, total = [], [], 0.0
    for aperture, _, _, share in segments:
        apertures += [aperture, aperture]
        weights += [total, total + share]
        total += share
    cps = b.control_points(apertures, weights, gantry=gantry)
    positions = dict(cps.positions_mm)
    positions["ASYMY"] = np.repeat(np.array([s[2] for s in segments], dtype=float), 2, axis=0)
    devices = [b.DEVICES[1], mlc(pairs)]
    if jaws_x:
        positions["ASYMX"] = np.repeat(np.array([s[1] for s in segments], dtype=float), 2, axis=0)
        devices.insert(0, b.DEVICES[0])
    else:
        del positions["ASYMX"]
    cps = replace(cps, positions_mm=positions)
    beam = b.beam(number, cps, gantry=gantry)
    return replace(beam, devices=tuple(devices))


def classify_plan(policy, beams, three_d=True):
    """The classification and the related codes of a plan of these beams; with a
    structure set and a dose (3-D evidence) unless ``three_d`` is false."""
    lp = b.linked(b.plan(beams), *((b.structure_set(), [b.dose()]) if three_d else ()))
    c = classify(lp, policy)
    return c, {r.code: r for r in related_codes(lp, c, policy, dt.date(2026, 1, 5))}


# ------------------------------------------------- field-in-field the way plans write it

PAIRS = 40  # 200 mm of leaves, -100..100 across
Y = centres(PAIRS)


def jaw_sliver(main_fraction=0.8):
    """Varian-style: the sub-segment's Y2 jaw stands 1 mm further out than the main one's
    and uncovers 1 mm of a pair the main jaw hid, whose leaves stand 90 mm apart."""
    main = leaves(PAIRS, -70, 70, np.abs(Y) < 60)
    main[:PAIRS] = np.where((Y > 60) & (Y < 65), -45, main[:PAIRS])  # hidden, wide open
    main[PAIRS:] = np.where((Y > 60) & (Y < 65), 45, main[PAIRS:])
    sub = main.copy()
    inner = np.abs(Y) < 60
    sub[:PAIRS] = np.where(inner, -40, sub[:PAIRS])  # closing in on the hot spot
    sub[PAIRS:] = np.where(inner, 40, sub[PAIRS:])
    return [
        (main, (-80, 80), (-60, 60), main_fraction),
        (sub, (-80, 80), (-60, 61), 1 - main_fraction),
    ]


def parked_pairs(main_fraction=0.8):
    """Monaco-style: closed pairs inside the jaws parked at a 0.6-mm gap, in the main
    segment at one place, in the sub-segment at another (45 mm away)."""
    main = park(leaves(PAIRS, -60, 60), np.abs(Y) > 50, at=-10)
    sub = park(leaves(PAIRS, -50, 50), np.abs(Y) > 40, at=35)
    return [
        (main, (-80, 80), (-80, 80), main_fraction),
        (sub, (-80, 80), (-80, 80), 1 - main_fraction),
    ]


def both(main_fraction=0.7):
    """A breast tangent with two sub-segments: a jaw sliver and parked pairs together."""
    (main, *_), (sub, *_) = jaw_sliver()
    pairs = np.abs(Y) > 50
    main, sub = park(main, pairs & (np.abs(Y) < 60), at=-5), park(sub, pairs, at=20)
    second = park(sub, np.abs(Y) > 30, at=-25)
    rest = (1 - main_fraction) / 2
    return [
        (main, (-80, 80), (-60, 60), main_fraction),
        (sub, (-80, 80), (-60, 61), rest),
        (second, (-80, 80), (-60, 60.5), rest),
    ]


def pushed_out(mm: float):
    """Main segment -50..50 over 100 mm; a sub-segment over the middle 50 mm whose B
    leaves stand ``mm`` beyond the main ones."""
    main = leaves(PAIRS, -50, 50, np.abs(Y) < 50)
    sub = leaves(PAIRS, -20, 50 + mm, np.abs(Y) < 25)
    return [
        (main, (-100, 100), (-50, 50), 0.8),
        (sub, (-100, 100), (-50, 50), 0.2),
    ]


@pytest.mark.parametrize(
    "segments",
    [
        pytest.param(jaw_sliver(), id="jaw-sliver"),
        pytest.param(parked_pairs(), id="parked-pairs"),
        pytest.param(both(), id="sliver-and-parked-3-segments"),
        # two-segment chest wall: main segment 70-85% of MU, one nested sub-segment
        *(pytest.param(jaw_sliver(f), id=f"chest-wall-varian-{f:.0%}") for f in (0.7, 0.78, 0.85)),
        *(pytest.param(parked_pairs(f), id=f"chest-wall-elekta-{f:.0%}") for f in (0.7, 0.85)),
    ],
)
def test_forward_planned_sub_segments_are_field_in_field(policy, segments):
    beams = [
        step_and_shoot(segments, PAIRS, number=1, gantry=300),
        step_and_shoot(segments, PAIRS, number=2, gantry=120),
    ]
    c, related = classify_plan(policy, beams)
    for beam in c.beams:
        assert beam.technique is Technique.FIELD_IN_FIELD, beam.technique_reason
        m = beam.metrics
        assert m.subsegment_outside_area_mm2 == 0.0  # nested, slivers and parked pairs aside
        # by the distance they reach outside, they would have been modulation
        assert m.subsegment_max_outside_main_mm > policy["modulation.fif_inside_tolerance_mm"]
        assert "0 mm^2 outside" in beam.technique_reason
    assert c.code == "77295"
    assert not any(f.flag == "fif_borderline" for f in c.flags)
    assert "77301" not in {a.code for a in c.alternatives}
    assert "77338" not in related


@pytest.mark.parametrize(
    ("segments", "gap", "tolerance", "outside_mm2"),
    [
        # the sliver: 1 mm of a pair open 90 mm, beyond the main jaw; a jaw within the
        # tolerance stands where the main one does
        pytest.param(jaw_sliver(), 0.0, 0.0, 1 * 90, id="sliver"),
        pytest.param(jaw_sliver(), 0.0, 1.0, 0.0, id="sliver-within-tolerance"),
        pytest.param(jaw_sliver(), 0.0, 0.9, 1 * 90, id="sliver-beyond-tolerance"),
        # parked pairs: the sub-segment's pairs 0.6 mm open, 5 mm tall, where the main
        # pair is parked elsewhere (12 pairs between the jaws at 50 < |y| < 80) or open
        # from -60 to 60 (4 pairs at 40 < |y| < 50: inside)
        pytest.param(parked_pairs(), 0.0, 0.0, 12 * 0.6 * 5, id="parked"),
        pytest.param(parked_pairs(), 0.5, 0.0, 12 * 0.6 * 5, id="parked-wider-than-gap"),
        pytest.param(parked_pairs(), 0.7, 0.0, 0.0, id="parked-closed"),
        # the tolerance forgives what reaches just beyond the main edge, not an opening
        # 45 mm away from it, however narrow
        pytest.param(parked_pairs(), 0.0, 2.0, 12 * 0.6 * 5, id="parked-far-from-edge"),
        # a sub-segment's leaves 1.5 or 2.5 mm beyond the main ones, over 50 mm
        pytest.param(pushed_out(1.5), 3.0, 2.0, 0.0, id="leaf-1.5-mm-out"),
        pytest.param(pushed_out(2.5), 3.0, 2.0, 2.5 * 50, id="leaf-2.5-mm-out"),
        pytest.param(pushed_out(2.5), 3.0, 3.0, 0.0, id="leaf-2.5-mm-out-within-3"),
    ],
)
def test_outside_area_counts_slivers_and_parked_pairs_only_when_told(
    segments, gap, tolerance, outside_mm2
):
    beam = step_and_shoot(segments, PAIRS)
    m = beam_metrics(beam, 0.5, 10.0, gap, tolerance)
    assert m.subsegment_outside_area_mm2 == pytest.approx(outside_mm2)
    assert (m.outside_mu_fraction > 0) is (outside_mm2 > 0)


# ----------------------------------------------------------------- modulated stays so


def viewray_like(seed: int = 3, beams: int = 12):
    """MRIdian-style step-and-shoot IMRT: no jaws, many beams of 2-4 segments of
    comparable MU, each segment opening its own part of the target (not nested)."""
    rng = np.random.default_rng(seed)
    pairs = 60
    y = centres(pairs)
    mu_splits = {2: [0.55, 0.45], 3: [0.5, 0.25, 0.25], 4: [0.4, 0.2, 0.2, 0.2]}
    out = []
    for number in range(1, beams + 1):
        n = int(rng.integers(2, 5))
        segments = []
        for k, share in enumerate(mu_splits[n]):
            # each segment a band of pairs and a stretch along the leaves of its own
            centre_y, centre_x = rng.uniform(-30, 30), -40 + 80 * k / n + rng.uniform(-5, 5)
            band = np.abs(y - centre_y) < rng.uniform(20, 40)
            segments.append(
                (leaves(pairs, centre_x - 15, centre_x + 15, band), (0, 0), (0, 0), share)
            )
        beam = step_and_shoot(segments, pairs, number, jaws_x=False, gantry=30.0 * number)
        positions = {k: v for k, v in beam.control_points.positions_mm.items() if k != "ASYMY"}
        cps = replace(beam.control_points, positions_mm=positions)
        out.append(replace(beam, control_points=cps, devices=(mlc(pairs),)))
    return out


def test_few_segment_imrt_that_is_not_nested_stays_imrt(policy):
    beams = viewray_like()
    c, related = classify_plan(policy, beams)
    assert c.code == "77301"
    assert {len(b.metrics.segments) for b in c.beams} == {2, 3, 4}
    for beam in c.beams:
        assert beam.technique is Technique.STEP_AND_SHOOT_IMRT, beam.technique_reason
    # where the main segment has half the MU or more (2 and 3 segments), the area outside
    # decided
    main_min = policy["modulation.fif_min_main_segment_mu_fraction"]
    by_area = [b for b in c.beams if b.metrics.largest_segment_mu_fraction >= main_min]
    assert len(by_area) >= 6
    for beam in by_area:
        share = beam.metrics.subsegment_outside_share
        assert share >= policy["modulation.fif_modulated_min_outside_share"]
        assert "not nested" in beam.technique_reason
    # and no 3-D or isodose answer is offered in its place
    assert not {a.code for a in c.alternatives} & {"77295", "77306", "77307"}
    assert not any(f.flag == "fif_borderline" for f in c.flags)
    assert related["77338"].units == 1


# --------------------------------------------------------------------- the thresholds


def partly_outside(share: float, main_fraction: float = 0.8):
    """Main segment -50..50 over 100 mm; a sub-segment 100 mm wide over the middle 50 mm,
    ``share`` of it beyond the main segment's right edge."""
    out_mm = 100 * share
    main = leaves(PAIRS, -50, 50, np.abs(Y) < 50)
    sub = leaves(PAIRS, out_mm - 50, 50 + out_mm, np.abs(Y) < 25)
    return [
        (main, (-100, 100), (-50, 50), main_fraction),
        (sub, (-100, 100), (-50, 50), 1 - main_fraction),
    ]


@pytest.mark.parametrize(
    ("at", "offset", "verdict"),
    [
        ("modulation.fif_nested_max_outside_share", -0.01, "nested"),
        ("modulation.fif_nested_max_outside_share", +0.01, "borderline"),
        ("modulation.fif_modulated_min_outside_share", -0.01, "borderline"),
        ("modulation.fif_modulated_min_outside_share", +0.01, "modulated"),
    ],
)
def test_share_outside_decides_between_the_policy_thresholds(policy, at, offset, verdict):
    share = policy[at] + offset
    c, _ = classify_plan(policy, [step_and_shoot(partly_outside(share), PAIRS)])
    [beam] = c.beams
    assert beam.metrics.subsegment_outside_share == pytest.approx(share)
    assert beam.metrics.subsegment_outside_area_mm2 == pytest.approx(100 * share * 50)
    assert f"{share:.1%}" in beam.technique_reason
    flagged = any(f.flag == "fif_borderline" for f in c.flags)
    alternatives = {a.code for a in c.alternatives}
    if verdict == "modulated":
        assert (beam.technique, c.code) == (Technique.STEP_AND_SHOOT_IMRT, "77301")
        assert not flagged
    else:
        assert (beam.technique, c.code) == (Technique.FIELD_IN_FIELD, "77295")
        assert flagged is (verdict == "borderline")
        assert ("77301" in alternatives) is (verdict == "borderline")


@pytest.mark.parametrize("three_d", [True, False])
def test_borderline_is_coded_forward_with_imrt_as_the_alternative(policy, three_d):
    segments = partly_outside(0.12)  # between 5% and 25%
    beams = [
        step_and_shoot(segments, PAIRS, number=1, gantry=300),
        step_and_shoot(segments, PAIRS, number=2, gantry=120),
    ]
    c, related = classify_plan(policy, beams, three_d=three_d)
    assert {b.technique for b in c.beams} == {Technique.FIELD_IN_FIELD}
    assert c.code == ("77295" if three_d else "77307")
    [flag] = [f for f in c.flags if f.flag == "fif_borderline"]
    assert flag.severity == "warning"
    assert flag.dicom_path.endswith("ControlPointSequence")
    assert "12.0%" in flag.message
    [alternative] = [a for a in c.alternatives if a.code == "77301"]
    assert "inverse planned" in alternative.condition
    assert c.confidence == "medium"
    assert "77338" not in related
    # the evidence carries the numbers and the thresholds they were weighed against
    [ev, _] = [e for e in c.evidence if e.rule == "imrt.modulated_beam"]
    assert ev.fired is False
    assert ev.observed["subsegment_outside_share"] == pytest.approx(0.12)
    assert ev.observed["outside_mu_fraction"] == pytest.approx(0.2)
    assert ev.threshold["fif_nested_max_outside_share"] == 0.05
    assert ev.threshold["fif_modulated_min_outside_share"] == 0.25


def test_main_segment_below_half_the_mu_is_modulated_even_when_nested(policy):
    # a pyramid of nested segments of comparable MU is an inverse-planned pattern
    pyramid = [
        (leaves(PAIRS, -w, w, np.abs(Y) < w), (-100, 100), (-50, 50), share)
        for w, share in ((50, 0.4), (35, 0.3), (20, 0.3))
    ]
    c, _ = classify_plan(policy, [step_and_shoot(pyramid, PAIRS)])
    m = c.beams[0].metrics
    assert m.subsegment_outside_area_mm2 == 0.0
    assert m.largest_segment_mu_fraction < policy["modulation.fif_min_main_segment_mu_fraction"]
    assert c.beams[0].technique is Technique.STEP_AND_SHOOT_IMRT


def test_nested_above_modulated_is_refused():
    toml = b'[policy]\nextends = "default"\nname = "x"\nversion = "1"\n'
    toml += b"[modulation]\nfif_nested_max_outside_share = 0.3\n"
    with pytest.raises(PolicyError, match="fif_nested_max_outside_share.*at most"):
        parse(toml, "test.toml")


# ------------------------------------------------------ rectangles and shaped fields

BIG = 80  # Agility: 80 pairs of 5 mm, 400 mm across
YB = centres(BIG)


def circle_cut(radius: float, half: float = 200.0) -> np.ndarray:
    """A square field of side 2 * half whose corners a circle of ``radius`` cuts off: each
    pair open as far as the circle allows at its outer edge."""
    outer = np.abs(YB) + LEAF_MM / 2
    reach = np.sqrt(np.clip(radius**2 - outer**2, 0, None))
    x = np.minimum(reach, half)
    return np.r_[-x, x]


def slanted() -> np.ndarray:
    """Bank A leaning 10 mm over the field's length: a target edge, not a corner."""
    lo = -200 + 10 * (YB + 200) / 400
    return np.r_[lo, np.full(BIG, 200.0)]


def notched() -> np.ndarray:
    """Rounded corners, and one pair in the middle 10 mm in."""
    aperture = circle_cut(256)
    aperture[BIG // 2] += 10
    return aperture


def ellipse() -> np.ndarray:
    half = 150 * np.sqrt(np.clip(1 - (YB / 200) ** 2, 0.01, None))
    return np.r_[-half, half]


@pytest.mark.parametrize(
    ("aperture", "jaws_x", "technique"),
    [
        # Monaco's 40x40 cm on Agility: corners cut by a 51-cm circle, no X jaws
        pytest.param(circle_cut(256), False, Technique.OPEN, id="40x40-rounded-corners"),
        pytest.param(circle_cut(256), True, Technique.OPEN, id="40x40-rounded-with-x-jaws"),
        pytest.param(circle_cut(400), False, Technique.OPEN, id="40x40-square"),
        # cut deeper: the leaves cover more of the rectangle than a machine's rounding
        pytest.param(circle_cut(236), False, Technique.CONFORMAL, id="corners-cut-deep"),
        pytest.param(ellipse(), False, Technique.CONFORMAL, id="ellipse"),
        pytest.param(slanted(), False, Technique.CONFORMAL, id="slanted-edge"),
        pytest.param(notched(), False, Technique.CONFORMAL, id="rounded-and-notched"),
    ],
)
def test_leaves_only_at_the_corners_leave_a_rectangle(policy, aperture, jaws_x, technique):
    segment = (aperture, (-200, 200), (-200, 200), 1.0)
    beam = step_and_shoot([segment], BIG, jaws_x=jaws_x)
    c, related = classify_plan(policy, [beam], three_d=False)
    [port] = c.beams
    m = port.metrics
    assert port.technique is technique, port.technique_reason
    [shaped] = [e for e in c.evidence if e.rule == "isodose.shaped_mlc"]
    assert shaped.fired is (technique is Technique.CONFORMAL)
    assert ("77334" in related) is (technique is Technique.CONFORMAL)
    if technique is Technique.OPEN and m.aperture_irregularity_mm > 2:
        # the edges vary, and the evidence says why it is a rectangle all the same
        assert "corners" in port.technique_reason
        assert f"{m.corner_leaf_area_share:.1%}" in port.technique_reason
        [ev] = [e for e in c.evidence if e.rule == "imrt.modulated_beam"]
        assert ev.observed["corner_leaf_area_share"] == pytest.approx(
            m.corner_leaf_area_share, abs=1e-4
        )
        assert ev.threshold["corner_leaves_max_area_share"] == 0.03


def test_rounded_corners_measure_like_monaco(policy):
    # a 51-cm circle leaves 8 pairs standing in at either end (10% of the length) and
    # covers about 2% of the 40x40 rectangle, as in the Monaco export
    beam = step_and_shoot([(circle_cut(256), (0, 0), (-200, 200), 1.0)], BIG, jaws_x=False)
    m = beam_metrics(beam, 0.5, 10.0, 3.0, 2.0, 2.0)
    assert m.corner_leaf_extent_share == pytest.approx(8 * LEAF_MM / 400)
    # (pairs within the 2-mm rectangle tolerance of the edge stand at it)
    covered = sum(2 * (200 - x) * LEAF_MM for x in circle_cut(256)[BIG:] if 200 - x > 2)
    assert m.corner_leaf_area_share == pytest.approx(covered / 400**2)
    assert 0.015 < m.corner_leaf_area_share < policy["isodose.corner_leaves_max_area_share"]


@pytest.mark.parametrize(
    "setting", ["corner_leaves_max_area_share", "corner_leaves_max_extent_share"]
)
def test_corner_tolerances_are_the_policys(policy, setting):
    values = dict(policy.values)
    values[f"isodose.{setting}"] = 0.0
    strict = replace(policy, values=values)
    beam = step_and_shoot([(circle_cut(256), (0, 0), (-200, 200), 1.0)], BIG, jaws_x=False)
    c, related = classify_plan(strict, [beam], three_d=False)
    assert c.beams[0].technique is Technique.CONFORMAL
    assert "77334" in related
    assert math.isfinite(c.beams[0].metrics.corner_leaf_area_share)


def test_segments_without_apertures_to_compare_are_not_called_imrt(policy):
    # two segments of X jaws only (no Y jaws, no MLC): no aperture can be drawn, so
    # nothing shows the sub-segment outside the main one, nor inside it
    cps = b.control_points(None, [0.0, 0.8, 0.8, 1.0])
    positions = {"ASYMX": np.array([[-50.0, 50.0]] * 2 + [[-30.0, 30.0]] * 2)}
    beam = replace(
        b.beam(1, replace(cps, positions_mm=positions), mlc=False), devices=(b.DEVICES[0],)
    )
    c, _ = classify_plan(policy, [beam])
    [port] = c.beams
    assert len(port.metrics.segments) == 2
    assert port.metrics.subsegment_outside_share is None
    assert port.technique is Technique.UNKNOWN, port.technique_reason
    assert c.code != "77301" and "77301" in {a.code for a in c.alternatives}
