"""Aperture and modulation numbers on hand-worked cases."""

from __future__ import annotations

from dataclasses import replace

import builders as b
import numpy as np
import pytest

from rtcode.measure.metrics import apertures, beam_metrics, plan_metrics
from rtcode.model.facts import BeamLimitingDevice


def test_jaw_only_rectangle():
    beam = b.beam(1, mlc=False)
    ap = apertures(beam)
    assert ap.area_mm2()[0] == pytest.approx(100 * 100)
    assert ap.perimeter_mm()[0] == pytest.approx(400)


def test_rectangular_mlc_clipped_by_jaws():
    # leaves open -40..40 on all 10 pairs (-50..50), Y jaws -25..35 cut the strips
    cps = b.control_points([b.rect(-40, 40)] * 2, [0, 1], jaws=((-30.0, 50.0), (-25.0, 35.0)))
    ap = apertures(b.beam(1, cps))
    # open in x: -30..40 = 70 mm; in y: -25..35 = 60 mm
    assert ap.area_mm2()[0] == pytest.approx(70 * 60)
    assert ap.perimeter_mm()[0] == pytest.approx(2 * (70 + 60))


def test_staircase_area_and_perimeter():
    half = [0, 0, 0, 10, 20, 20, 10, 0, 0, 0]  # three open widths: 20, 40, 40, 20 mm
    cps = b.control_points([b.shaped(half)] * 2, [0, 1])
    ap = apertures(b.beam(1, cps))
    assert ap.area_mm2()[0] == pytest.approx(10 * (20 + 40 + 40 + 20))
    # sides 4 strips x 2 x 10 mm; across: 20 (bottom) + 20 (step) + 0 + 20 (step) + 20 (top)
    assert ap.perimeter_mm()[0] == pytest.approx(80 + 80)


def test_dual_layer_mlc_leaves_what_both_layers_open():
    # Halcyon-like: two layers offset by half a leaf; the opening is their intersection
    upper = BeamLimitingDevice("MLCX1", 10, b.BOUNDARIES)
    shifted = tuple(v + 5.0 for v in b.BOUNDARIES)
    lower = BeamLimitingDevice("MLCX2", 10, shifted)
    beam = b.beam(1, mlc=False)
    n = beam.control_points.count
    positions = dict(beam.control_points.positions_mm)
    positions["MLCX1"] = np.tile(b.rect(-20, 20), (n, 1))
    positions["MLCX2"] = np.tile(b.rect(-10, 30), (n, 1))
    beam = replace(
        beam,
        devices=(*beam.devices, upper, lower),
        control_points=replace(beam.control_points, positions_mm=positions),
    )
    ap = apertures(beam)
    # x: -10..20 (30 mm) where both layers have leaves (y -45..50); in y -50..-45 only
    # the upper layer is there and leaves -20..20 (40 mm) open
    assert ap.area_mm2()[0] == pytest.approx(30 * 95 + 40 * 5)


def test_step_and_shoot_segments_and_mu_shares():
    cps = b.segments_cps([(b.rect(-40, 40), 0.6), (b.rect(-20, 20), 0.3), (b.rect(-10, 10), 0.1)])
    m = beam_metrics(b.beam(1, cps))
    assert [round(s.mu_fraction, 6) for s in m.segments] == [0.6, 0.3, 0.1]
    assert m.largest_segment_mu_fraction == pytest.approx(0.6)
    assert m.subsegment_max_outside_main_mm == 0.0
    assert m.beam_on_leaf_travel_mm == 0.0
    np.testing.assert_allclose(m.cp_mu_fraction, [0.6, 0, 0.3, 0, 0.1, 0])


def test_sub_segment_outside_main_is_measured():
    cps = b.segments_cps([(b.rect(-40, 0), 0.6), (b.rect(-10, 15), 0.4)])
    m = beam_metrics(b.beam(1, cps))
    assert m.subsegment_max_outside_main_mm == pytest.approx(15)


def test_arc_span_across_zero_and_mu_per_degree():
    beam = b.arc(1, start=350, stop=10, n=5, weights=[0, 0.25, 0.5, 0.75, 1.0])
    m = beam_metrics(beam)
    assert m.arc_span_deg == pytest.approx(20)
    assert m.mu_per_degree_cv == pytest.approx(0.0, abs=1e-12)
    beam = b.arc(1, start=350, stop=10, n=5, weights=[0, 0.1, 0.5, 0.6, 1.0])
    # rates 0.1, 0.4, 0.1, 0.4 per 5 deg: mean 0.25, sd 0.15
    assert beam_metrics(beam).mu_per_degree_cv == pytest.approx(0.6)


def test_absent_weights_are_not_zero_mu():
    cps = b.control_points([b.rect(), b.rect()], [np.nan, np.nan])
    m = beam_metrics(b.beam(1, cps))
    assert not m.weights_valid
    assert m.segments == ()


def test_all_zero_leaves_are_reported_as_stripped():
    zero = np.zeros(2 * b.PAIRS)
    m = beam_metrics(b.beam(1, b.control_points([zero, zero], [0, 1])))
    assert m.leaf_data_stripped
    m = beam_metrics(b.beam(1))
    assert not m.leaf_data_stripped


# ------------------------------------------- modulation complexity (McNiven 2010)


def test_mcs_of_an_open_rectangle_is_one():
    assert beam_metrics(b.beam(1)).mcs == pytest.approx(1.0)  # rectangular MLC
    assert beam_metrics(b.beam(1, mlc=False)).mcs == pytest.approx(1.0)  # jaws only


def test_mcs_two_segments_hand_worked():
    # Segment 1 opens the full 80 mm, segment 2 half of it, 50% MU each: both have
    # straight banks (LSV = 1); AAV = 1 and 0.5; MCS = 0.5 * 1 + 0.5 * 0.5 = 0.75.
    cps = b.segments_cps([(b.rect(-40, 40), 0.5), (b.rect(-20, 20), 0.5)])
    assert beam_metrics(b.beam(1, cps)).mcs == pytest.approx(0.75)


def test_mcs_leaf_sequence_variability_hand_worked():
    # Bank A steps 5 mm per pair from -40 to -5 (spread 45 mm): LSV_A = (45 - 5) / 45;
    # bank B straight: LSV_B = 1; one segment: AAV = 1. MCS = 40 / 45.
    aperture = np.concatenate([-40 + 5 * np.arange(b.PAIRS), np.full(b.PAIRS, 40.0)])
    cps = b.control_points([aperture, aperture], [0, 1])
    assert beam_metrics(b.beam(1, cps)).mcs == pytest.approx(40 / 45)


def test_small_aperture_score():
    # 4 of 10 open pairs are 8 mm wide, 6 are 30 mm: 0.4 below 10 mm, 0 below 5 mm
    aperture = b.shaped([4, 4, 4, 4, 15, 15, 15, 15, 15, 15])
    cps = b.control_points([aperture, aperture], [0, 1])
    assert beam_metrics(b.beam(1, cps), small_aperture_mm=10).small_aperture_score == pytest.approx(
        0.4
    )
    assert beam_metrics(b.beam(1, cps), small_aperture_mm=5).small_aperture_score == pytest.approx(
        0.0
    )


def test_convexity_of_a_rectangle_and_of_a_carved_aperture():
    assert beam_metrics(b.beam(1)).convexity == pytest.approx(1.0)
    # a "U": the middle pairs are cut back to 10 mm on one side, the outer ones open 80 mm
    carved = b.rect(-40, 40)
    carved[b.PAIRS + 2 : b.PAIRS + 8] = -30.0
    m = beam_metrics(b.beam(1, b.control_points([carved, carved], [0, 1])))
    # open area 4 x 80 x 10 + 6 x 10 x 10 = 3800 of a 8000 mm2 hull
    assert m.convexity == pytest.approx(3800 / 8000)


def test_plan_metrics_weight_by_mu():
    full = beam_metrics(b.beam(1))
    half = beam_metrics(b.beam(2, b.segments_cps([(b.rect(-40, 40), 0.5), (b.rect(-20, 20), 0.5)])))
    agg = plan_metrics([(full, 100.0), (half, 300.0)])
    assert agg.mcs == pytest.approx((1.0 * 100 + 0.75 * 300) / 400)
    assert agg.meterset_mu == 400 and agg.beams == 2


def test_plan_metrics_weight_by_course_mu_when_every_beam_has_it():
    full = beam_metrics(b.beam(1))
    half = beam_metrics(b.beam(2, b.segments_cps([(b.rect(-40, 40), 0.5), (b.rect(-20, 20), 0.5)])))
    # 100 MU x 30 fractions and 300 MU x 5 fractions
    agg = plan_metrics([(full, 100.0), (half, 300.0)], [3000.0, 1500.0])
    assert agg.mcs == pytest.approx((1.0 * 3000 + 0.75 * 1500) / 4500)
    assert agg.meterset_mu == 400 and agg.course_meterset_mu == 4500
    assert agg.weighted_by == "course_meterset_mu"
    # a course MU unknown (fractions not stated): weighted by the MU as given
    agg = plan_metrics([(full, 100.0), (half, 300.0)], [3000.0, None])
    assert agg.mcs == pytest.approx((1.0 * 100 + 0.75 * 300) / 400)
    assert agg.course_meterset_mu is None and agg.weighted_by == "meterset_mu"
