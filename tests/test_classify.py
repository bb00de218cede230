"""Every policy rule with a case that fires it and one that does not."""

from __future__ import annotations

from dataclasses import replace

import builders as b
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcode.coding.classify import classify, roi_role, role_reason
from rtcode.coding.policy import load
from rtcode.model.codes import Category, Technique
from rtcode.model.facts import Applicator, Modality


@pytest.fixture(scope="module")
def policy():
    return load("default")


def with_setting(policy, key, value):
    values = dict(policy.values)
    values[key] = value
    return replace(policy, values=values)


def run(policy, plan, ss=None, doses=(), status=None):
    return classify(b.linked(plan, ss, doses, status), policy)


def evidence(result, rule):
    return [e for e in result.evidence if e.rule == rule]


def two_open(**kw):
    return [b.beam(1, mlc=False, gantry=0, **kw), b.beam(2, mlc=False, gantry=180, **kw)]


# ----------------------------------------------------------------------- intent


@pytest.mark.parametrize(
    ("intent", "category"),
    [
        ("VERIFICATION", Category.NOT_BILLABLE),
        ("MACHINE QA", Category.NOT_BILLABLE),  # a space, as Brainlab writes it
        ("machine_qa", Category.NOT_BILLABLE),
        ("RESEARCH", Category.NOT_BILLABLE),
        ("CURATIVE", Category.SIMPLE_ISODOSE),
        ("PALLIATIVE", Category.SIMPLE_ISODOSE),
        (None, Category.SIMPLE_ISODOSE),
    ],
)
def test_intent(policy, intent, category):
    result = run(policy, b.plan(two_open(), intent=intent))
    assert result.category is category
    assert (result.code is None) == (category is Category.NOT_BILLABLE)
    [ev] = evidence(result, "intent.not_billable")
    assert ev.fired is (category is Category.NOT_BILLABLE)
    assert ev.dicom_path == "test/RP.dcm::PlanIntent"


# ---------------------------------------------------------------- brachytherapy


@pytest.mark.parametrize(
    ("kind", "channels", "sources", "code"),
    [
        ("HDR", 1, 1, "77316"),
        ("HDR", 2, 1, "77317"),
        ("HDR", 12, 1, "77317"),
        ("HDR", 13, 1, "77318"),
        ("LDR", 0, 4, "77316"),
        ("LDR", 0, 5, "77317"),
        ("LDR", 0, 10, "77317"),
        ("LDR", 0, 11, "77318"),
    ],
)
def test_brachytherapy_tiers(policy, kind, channels, sources, code):
    brachy = b.brachy(channels, 1, kind)
    if kind == "LDR":  # LDR is tiered by the sources placed (seeds), not by source types
        brachy = b.replace(brachy, number_of_seeds=sources)
    p = b.plan([], brachy=brachy, referenced=[])
    result = run(policy, p)
    assert result.category is Category.BRACHYTHERAPY
    assert result.code == code


def test_brachytherapy_without_channels_is_undetermined(policy):
    p = b.plan([], brachy=b.brachy(0, 1, "HDR"), referenced=[])
    result = run(policy, p)
    assert result.category is Category.UNDETERMINED
    assert result.code is None
    assert evidence(result, "brachy.tier")[0].fired is None


def test_external_beam_rules_are_not_evaluated_for_a_brachytherapy_plan(policy):
    # issue 19: an HDR plan listed "no wedge on any port" and a score of such rows
    for brachy in (b.brachy(3), b.brachy(0, 1, "HDR")):
        result = run(policy, b.plan([], brachy=brachy, referenced=[]))
        rules = [e.rule for e in result.evidence]
        assert not [r for r in rules if r.split(".")[0] in ("beams", "imrt", "3d", "isodose")]
        assert "brachy.tier" in rules
        # the tier decides, also when it cannot be told
        assert [e.rule for e in result.deciding_evidence()] == ["brachy.tier"]


def test_verification_intent_wins_over_brachytherapy(policy):
    p = b.plan([], brachy=b.brachy(3), referenced=[], intent="VERIFICATION")
    assert run(policy, p).category is Category.NOT_BILLABLE


# -------------------------------------------------------------- treatment beams


def test_no_treatment_beam_is_undetermined(policy):
    result = run(policy, b.plan([], referenced=[]))
    assert result.category is Category.UNDETERMINED
    assert result.code is None
    assert result.confidence == "low"
    assert evidence(result, "beams.treatment_ports")[0].fired is False


@pytest.mark.parametrize(
    ("extra", "mu", "why"),
    [
        (b.beam(3, mlc=False, delivery="SETUP"), 0.0, "SETUP"),
        (b.beam(3, mlc=False, delivery="SETUP"), 5.0, "SETUP"),
        (b.beam(3, mlc=False, delivery="TREATMENT", name="CBCT"), 0.0, "0 MU"),
        (b.beam(3, mlc=False, delivery="TRMT_PORTFILM"), 2.0, "TRMT_PORTFILM"),
    ],
)
def test_non_ports_are_reported_and_not_counted(policy, extra, mu, why):
    beams = [*two_open(), extra]
    result = run(policy, b.plan(beams, mu=[100.0, 100.0, mu]))
    assert result.code == "77306"  # the extra beam would make it 3 ports
    excluded = [a for a in result.beams if not a.counted]
    assert [a.beam.number for a in excluded] == [3]
    assert why in excluded[0].excluded_reason


def test_unreferenced_beam_is_not_a_port(policy):
    beams = [*two_open(), b.beam(3, mlc=False, gantry=90)]
    result = run(policy, b.plan(beams, referenced=[1, 2]))
    assert result.code == "77306"
    assert "not referenced" in result.beams[2].excluded_reason


def test_absent_delivery_type_means_treatment(policy):
    beams = [b.beam(i, mlc=False, delivery=None, gantry=g) for i, g in ((1, 0), (2, 90), (3, 180))]
    result = run(policy, b.plan(beams))
    assert all(a.counted for a in result.beams)
    assert result.code == "77307"


def test_absent_meterset_is_not_counted_as_zero(policy):
    result = run(policy, b.plan(two_open(), mu=[100.0, None]))
    beam2 = result.beams[1]
    assert not beam2.counted and "absent" in beam2.excluded_reason


# ------------------------------------------------------------------- technique


def fif_beam(sub_fraction=0.1, n_sub=2, sub_shift=0.0):
    main = rect(-40, 40)
    segs = [(main, 1 - sub_fraction * n_sub)]
    for k in range(n_sub):
        segs.append((rect(-30 + sub_shift + k, 30 + sub_shift - k), sub_fraction))
    return b.beam(1, b.segments_cps(segs))


def rect(x1, x2):
    return b.rect(x1, x2)


@pytest.mark.parametrize(
    ("beam", "technique"),
    [
        (b.beam(1, mlc=False), Technique.OPEN),
        (b.beam(1), Technique.OPEN),  # rectangular MLC
        (b.beam(1, b.control_points([b.shaped(), b.shaped()], [0, 1])), Technique.CONFORMAL),
        (fif_beam(), Technique.FIELD_IN_FIELD),
        (fif_beam(sub_shift=55), Technique.STEP_AND_SHOOT_IMRT),  # 40% outside main
        (fif_beam(sub_fraction=0.3), Technique.STEP_AND_SHOOT_IMRT),  # main carries 40%
        (b.beam(1, radiation="ELECTRON", mlc=False), Technique.ELECTRON),
        (
            b.beam(1, ion=True, radiation="PROTON", scan_mode="MODULATED"),
            Technique.ION_PENCIL_BEAM_SCANNING,
        ),
        (
            b.beam(1, ion=True, radiation="PROTON", scan_mode="NONE"),
            Technique.ION_PASSIVE_SCATTERING,
        ),
        (b.beam(1, ion=True, radiation="PROTON", scan_mode=None), Technique.UNKNOWN),
        (b.beam(1, machine="TomoTherapy HD"), Technique.HELICAL_TOMOTHERAPY),
        (
            b.beam(1, mlc=False, applicators=[Applicator("10mm", "STEREOTACTIC", "x")]),
            Technique.STEREOTACTIC_CONE,
        ),
    ],
)
def test_beam_techniques(policy, beam, technique):
    result = run(policy, b.plan([beam]))
    assert result.beams[0].technique is technique, result.beams[0].technique_reason


def sliding_window(step_mm):
    n = 20
    leaves = [b.rect(-40 + k * step_mm, -30 + k * step_mm) for k in range(n)]
    return b.beam(1, b.control_points(leaves, np.linspace(0, 1, n)), beam_type="DYNAMIC")


@pytest.mark.parametrize(("step", "dynamic"), [(0.25, False), (0.3, True)])
def test_sliding_window_threshold(policy, step, dynamic):
    # dynamic_leaf_travel_mm = 5: 19 steps of 0.25 mm (4.75 mm) are not a sweep, of 0.3 are.
    beam = run(policy, b.plan([sliding_window(step)])).beams[0]
    assert beam.metrics.beam_on_leaf_travel_mm == pytest.approx(19 * step)
    assert (beam.technique is Technique.SLIDING_WINDOW_IMRT) is dynamic


def test_creep_within_segment_tolerance_is_one_aperture(policy):
    # 19 steps of 0.02 mm stay within segment_tolerance_mm = 0.5 of the first aperture
    beam = run(policy, b.plan([sliding_window(0.02)])).beams[0]
    assert len(beam.metrics.segments) == 1
    assert beam.technique is Technique.OPEN


@pytest.mark.parametrize(
    ("n_sub", "technique"),
    [(5, Technique.FIELD_IN_FIELD), (6, Technique.STEP_AND_SHOOT_IMRT)],  # fif_max_segments = 6
)
def test_fif_segment_count_threshold(policy, n_sub, technique):
    beam = fif_beam(sub_fraction=0.05, n_sub=n_sub)
    result = run(policy, b.plan([beam]))
    assert len(result.beams[0].metrics.segments) == n_sub + 1
    assert result.beams[0].technique is technique


@pytest.mark.parametrize(
    ("sub", "technique"),
    [(0.24, Technique.FIELD_IN_FIELD), (0.26, Technique.STEP_AND_SHOOT_IMRT)],  # main >= 50%
)
def test_fif_main_fraction_threshold(policy, sub, technique):
    result = run(policy, b.plan([fif_beam(sub_fraction=sub, n_sub=2)]))
    assert result.beams[0].technique is technique


@pytest.mark.parametrize(
    ("shift", "outside_mm2"),
    [(11.5, 0.0), (12.5, 2.5 * 100)],  # fif_inside_tolerance_mm = 2
)
def test_fif_inside_tolerance(policy, shift, outside_mm2):
    # sub-segment -30+shift..30+shift against main -40..40: its leaves reach shift-10 mm
    # beyond the main aperture, over the 100 mm between the jaws; within the tolerance
    # that is inside. Beyond it the area counts, and 2.5 mm of a 61-mm opening (4%) is
    # still nested (fif_nested_max_outside_share = 5%).
    beam = run(policy, b.plan([fif_beam(n_sub=1, sub_shift=shift)])).beams[0]
    assert beam.metrics.subsegment_outside_area_mm2 == pytest.approx(outside_mm2)
    assert beam.technique is Technique.FIELD_IN_FIELD


def ellipse(scale: float) -> np.ndarray:
    """A convex, target-like outline whose width scales with ``scale``."""
    y = (np.arange(b.PAIRS) - (b.PAIRS - 1) / 2) / (b.PAIRS / 2)
    return b.shaped(scale * 40 * np.sqrt(np.clip(1 - y**2, 0.05, None)))


def vmat_like(rng_seed=1, constant_rate=False, moving=True, n=37, outline="carved"):
    rng = np.random.default_rng(rng_seed)
    if not moving:
        leaves = [b.shaped()] * n
    elif outline == "carved":  # leaves carve irregularly inside the field
        leaves = [b.shaped(rng.uniform(5, 40, b.PAIRS)) for _ in range(n)]
    else:  # a convex outline that changes size with the gantry, as a conformal arc
        leaves = [ellipse(0.7 + 0.3 * np.sin(k / 6)) for k in range(n)]
    if constant_rate:
        weights = np.linspace(0, 1, n)
    else:
        steps = rng.uniform(0.2, 2.0, n - 1)
        weights = np.concatenate([[0], np.cumsum(steps) / steps.sum()])
    return b.arc(1, leaves=leaves, weights=weights, n=n)


@pytest.mark.parametrize(
    ("beam", "technique", "code"),
    [
        (vmat_like(), Technique.VMAT, "77301"),
        (vmat_like(outline="ellipse"), Technique.VMAT, "77301"),  # MU/degree varies
        (
            vmat_like(constant_rate=True, outline="ellipse"),
            Technique.DYNAMIC_CONFORMAL_ARC,
            "77307",
        ),
        (vmat_like(constant_rate=True), Technique.VMAT, "77301"),  # carves: convexity < 0.8
        (vmat_like(moving=False), Technique.STATIC_ARC, "77307"),
        (vmat_like(moving=False, constant_rate=True), Technique.STATIC_ARC, "77307"),
    ],
)
def test_arc_techniques(policy, beam, technique, code):
    result = run(policy, b.plan([beam]))
    assert result.beams[0].technique is technique
    assert result.code == code


def test_short_gantry_travel_is_not_an_arc(policy):
    # 4 degrees of travel is below arc_min_gantry_travel_deg = 5
    beam = b.arc(1, start=0, stop=4, n=5)
    assert run(policy, b.plan([beam])).beams[0].technique is Technique.OPEN


def test_stripped_leaf_data_cannot_be_determined(policy):
    zero = np.zeros(2 * b.PAIRS)
    beam = b.beam(1, b.control_points([zero, zero, zero, zero], [0, 0.5, 0.5, 1.0]))
    result = run(policy, b.plan([beam]))
    assert result.beams[0].technique is Technique.UNKNOWN
    assert "stripped" in result.beams[0].technique_reason
    assert result.confidence == "low"
    assert any(a.code == "77301" for a in result.alternatives)
    assert evidence(result, "imrt.modulated_beam")[0].fired is None


# ------------------------------------------------------------------------- IMRT


def test_imrt_plan_and_inverse_planning_note(policy):
    result = run(policy, b.plan([vmat_like()]), b.structure_set(), [b.dose()])
    assert result.code == "77301"
    assert result.category is Category.IMRT
    assert any(f.flag == "inverse_planning_not_recorded" for f in result.flags)


@pytest.mark.parametrize(("setting", "code"), [("77301", "77301"), ("77295", "77295")])
def test_pencil_beam_scanning_policy(policy, setting, code):
    p = with_setting(policy, "modulation.pencil_beam_scanning_code", setting)
    beams = [b.beam(1, ion=True, radiation="PROTON", scan_mode="MODULATED", mlc=False)]
    plan = b.plan(beams, modality=Modality.RTIONPLAN)
    result = run(p, plan, b.structure_set(), [b.dose()])
    assert result.code == code


# ------------------------------------------------------------------------- 3-D


def conformal_box():
    return [
        b.beam(i + 1, b.control_points([b.shaped(), b.shaped()], [0, 1], gantry=g))
        for i, g in enumerate((0, 90, 180, 270))
    ]


def test_three_d_when_everything_is_there(policy):
    result = run(policy, b.plan(conformal_box()), b.structure_set(), [b.dose()])
    assert result.code == "77295"
    assert result.category is Category.THREE_D
    assert result.confidence == "high"
    fired = {e.rule for e in result.evidence if e.fired}
    assert {
        "3d.target_contoured",
        "3d.organs_at_risk_contoured",
        "3d.dose_volume_evidence",
    } <= fired


@pytest.mark.parametrize(
    ("rois", "code"),
    [
        ((b.roi(1, "BODY", "EXTERNAL"), b.roi(2, "PTV", "PTV")), "77307"),  # no organ at risk
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Rectum", "ORGAN", contoured=False)), "77307"),
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Rectum", "ORGAN")), "77295"),
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Heart", None)), "77295"),  # organ by name
        ((b.roi(2, "PTV_50", "ORGAN"), b.roi(3, "Heart", "")), "77295"),  # wrong type: name wins
        ((b.roi(2, "Boost", None), b.roi(3, "Rectum", "ORGAN")), "77295"),
        ((b.roi(2, "Marker", "MARKER"), b.roi(3, "Rectum", "ORGAN")), "77307"),  # no target
        # a name never overrides an explicit non-generic type (issue 19: "ptv4" typed
        # ISOCENTER read as an underdosed target)
        ((b.roi(2, "ptv4", "ISOCENTER"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        ((b.roi(2, "PTV", "CONTROL"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        ((b.roi(2, "PTV", "BRACHY_CHANNEL"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        # rings and walls named after targets are helpers: neither target nor organ
        ((b.roi(2, "PTV1_WALL", "ORGAN"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Ring_PTV", "ORGAN")), "77307"),  # no organ
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Rectum-PTV", "ORGAN")), "77307"),
        ((b.roi(2, "PTV+3mm", "PTV"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        ((b.roi(2, "z_PTV", "PTV"), b.roi(3, "Rectum", "ORGAN")), "77307"),
        ((b.roi(2, "PTV", "PTV"), b.roi(3, "Optic_Nerve_L", "ORGAN")), "77295"),  # not "opt"
    ],
)
def test_three_d_contours(policy, rois, code):
    result = run(policy, b.plan(conformal_box()), b.structure_set(*rois), [b.dose()])
    assert result.code == code


def test_monaco_rois_typed_organ_a_ring_and_an_isocentre_named_like_targets(policy):
    ss = b.structure_set(
        b.roi(1, "PTV1", "ORGAN"),  # Monaco types PTVs ORGAN
        *(b.roi(n + 1, f"PTV{n}_WALL", "ORGAN") for n in range(1, 6)),
        b.roi(7, "ptv4", "ISOCENTER"),
        b.roi(8, "Rectum", "ORGAN"),
    )
    result = run(policy, b.plan(conformal_box()), ss, [b.dose()])
    assert [r.name for r in result.targets] == ["PTV1"]
    assert [r.name for r in result.organs_at_risk] == ["Rectum"]
    [ev] = evidence(result, "3d.target_contoured")
    assert "PTV1 (typed ORGAN, named like a target)" in ev.finding
    assert role_reason(b.roi(7, "ptv4", "ISOCENTER"), policy) == (
        "typed ISOCENTER: a name does not override this type"
    )
    assert roi_role(b.roi(2, "PTV1_WALL", "ORGAN"), policy) == ("helper", "name")


def test_which_types_a_name_may_override_is_a_setting(policy):
    ss = b.structure_set(b.roi(2, "PTV", "CONTROL"), b.roi(3, "Rectum", "ORGAN"))
    assert run(policy, b.plan(conformal_box()), ss, [b.dose()]).code == "77307"
    wider = with_setting(policy, "roles.name_may_promote_types", ["ORGAN", "CONTROL"])
    assert run(wider, b.plan(conformal_box()), ss, [b.dose()]).code == "77295"


def test_min_organs_at_risk_setting(policy):
    ss = b.structure_set(b.roi(2, "PTV", "PTV"), b.roi(3, "Rectum", "ORGAN"))
    strict = with_setting(policy, "three_d.min_organs_at_risk", 2)
    assert run(policy, b.plan(conformal_box()), ss, [b.dose()]).code == "77295"
    result = run(strict, b.plan(conformal_box()), ss, [b.dose()])
    assert result.code == "77307"
    [ev] = evidence(result, "3d.organs_at_risk_contoured")
    assert ev.fired is False and ev.threshold == 2 and ev.setting == "three_d.min_organs_at_risk"


@pytest.mark.parametrize(("accept", "code"), [(True, "77295"), (False, "77307")])
def test_dose_grid_as_dvh_evidence(policy, accept, code):
    p = with_setting(policy, "three_d.accept_dose_grid_as_dvh_evidence", accept)
    result = run(p, b.plan(conformal_box()), b.structure_set(), [b.dose(dvh=False)])
    assert result.code == code


def test_missing_dose_demotes_with_flag_and_alternative(policy):
    result = run(policy, b.plan(conformal_box()), b.structure_set(), [])
    assert result.code == "77307"
    assert [a.code for a in result.alternatives] == ["77295"]
    assert any(f.flag == "companion_missing" for f in result.flags)
    assert evidence(result, "3d.dose_volume_evidence")[0].fired is None  # cannot determine
    assert result.confidence == "medium"


def test_missing_structure_set_demotes(policy):
    result = run(policy, b.plan(conformal_box()), None, [b.dose()], status="not_in_export")
    assert result.code == "77307"
    assert "structure set" in result.alternatives[0].condition
    assert evidence(result, "3d.structure_set")[0].fired is None


def test_missing_companion_demotes_setting(policy):
    p = with_setting(policy, "three_d.missing_companion_demotes", False)
    result = run(p, b.plan(conformal_box()), None, [b.dose()], status="not_in_export")
    assert result.code == "77295"
    assert any("missing_companion_demotes" in f.message for f in result.flags)


def test_three_d_needs_a_shaped_beam(policy):
    beams = [b.beam(i + 1, mlc=False, gantry=g) for i, g in enumerate((0, 90, 180, 270))]
    result = run(policy, b.plan(beams), b.structure_set(), [b.dose()])
    assert result.code == "77307"  # 4 ports, but nothing shaped: not 3-D
    assert evidence(result, "3d.beams_eye_view_design")[0].fired is False
    assert not result.alternatives or "shaped" in result.alternatives[0].condition


def test_missing_companion_without_shaped_beam_stays_isodose(policy):
    result = run(policy, b.plan(two_open()), None, [], status="not_in_export")
    assert result.code == "77306"
    assert not result.alternatives


# --------------------------------------------------------------------- isodose


def test_simple_isodose(policy):
    result = run(policy, b.plan(two_open()))
    assert result.code == "77306"
    assert result.category is Category.SIMPLE_ISODOSE
    assert all(e.fired is False for e in result.evidence if e.rule.startswith("isodose."))


@pytest.mark.parametrize(
    ("beams", "rule"),
    [
        (
            [b.beam(i + 1, mlc=False, gantry=g) for i, g in enumerate((0, 90, 180))],
            "isodose.port_count",
        ),
        (
            [b.beam(1, mlc=False, iso=(0, 0, 0)), b.beam(2, mlc=False, gantry=180, iso=(0, 0, 51))],
            "isodose.treatment_areas",
        ),
        ([b.beam(1, mlc=False, wedges=[b.wedge()])], "isodose.wedge"),
        ([b.beam(1, mlc=False, wedges=[b.wedge(wedge_type="DYNAMIC")])], "isodose.wedge"),
        ([b.beam(1, mlc=False, blocks=[b.block()])], "isodose.block_or_cutout"),
        (
            [b.beam(1, mlc=False, radiation="ELECTRON", blocks=[b.block()])],
            "isodose.block_or_cutout",
        ),
        ([b.beam(1, b.control_points([b.shaped(), b.shaped()], [0, 1]))], "isodose.shaped_mlc"),
        ([fif_beam()], "isodose.field_in_field"),
        ([vmat_like(constant_rate=True, outline="ellipse")], "isodose.arc"),
        ([b.beam(1, mlc=False, couch=2.0)], "isodose.couch_rotation"),
        (
            [b.beam(1, mlc=False, gantry=300), b.beam(2, mlc=False, gantry=120)],
            "isodose.tangential",
        ),
    ],
)
def test_complex_isodose_reasons(policy, beams, rule):
    result = run(policy, b.plan(beams))
    assert result.code == "77307", [e.finding for e in result.evidence if e.fired]
    assert evidence(result, rule)[0].fired is True


@pytest.mark.parametrize(
    ("beams", "rule"),
    [
        (
            [b.beam(1, mlc=False, iso=(0, 0, 0)), b.beam(2, mlc=False, gantry=180, iso=(0, 0, 49))],
            "isodose.treatment_areas",
        ),
        ([b.beam(1, mlc=False, couch=0.5)], "isodose.couch_rotation"),
        ([b.beam(1, mlc=False, gantry=0), b.beam(2, mlc=False, gantry=180)], "isodose.tangential"),
        ([b.beam(1, mlc=False, gantry=10), b.beam(2, mlc=False, gantry=190)], "isodose.tangential"),
        ([b.beam(1, mlc=False, gantry=300), b.beam(2, mlc=False, gantry=90)], "isodose.tangential"),
        (
            [b.beam(1, b.control_points([b.rect(-40, 40), b.rect(-40, 40)], [0, 1]))],
            "isodose.shaped_mlc",
        ),
        ([b.beam(1, mlc=False, boli=1)], "isodose.bolus"),
    ],
)
def test_simple_isodose_just_inside_limits(policy, beams, rule):
    result = run(policy, b.plan(beams))
    assert result.code == "77306"
    assert evidence(result, rule)[0].fired is False


@pytest.mark.parametrize(
    ("is_imrt", "code", "technique"),
    [(True, "77301", Technique.COMPENSATOR_IMRT), (False, "77307", Technique.OPEN)],
)
def test_compensator_setting(policy, is_imrt, code, technique):
    p = with_setting(policy, "modulation.compensator_is_imrt", is_imrt)
    result = run(p, b.plan([b.beam(1, mlc=False, compensators=1)]))
    assert result.code == code
    assert result.beams[0].technique is technique
    assert evidence(result, "isodose.compensator")[0].fired is True


def test_rectangle_tolerance(policy):
    nearly = b.rect(-40, 40)
    nearly[3] = -38.5  # one leaf 1.5 mm in: within the 2 mm tolerance
    assert (
        run(policy, b.plan([b.beam(1, b.control_points([nearly, nearly], [0, 1]))])).code == "77306"
    )
    nearly[3] = -37.5  # 2.5 mm in: shaped
    assert (
        run(policy, b.plan([b.beam(1, b.control_points([nearly, nearly], [0, 1]))])).code == "77307"
    )


@pytest.mark.parametrize(
    ("key", "value", "beams", "code"),
    [
        ("isodose.bolus_is_modifier", True, [b.beam(1, mlc=False, boli=1)], "77307"),
        ("isodose.bolus_is_modifier", False, [b.beam(1, mlc=False, boli=1)], "77306"),
        (
            "isodose.dynamic_wedge_is_modifier",
            False,
            [b.beam(1, mlc=False, wedges=[b.wedge(wedge_type="DYNAMIC")])],
            "77306",
        ),
        (
            "isodose.electron_cutout_is_modifier",
            False,
            [b.beam(1, mlc=False, radiation="ELECTRON", blocks=[b.block()])],
            "77306",
        ),
        ("isodose.rectangular_mlc_is_unmodified", False, [b.beam(1)], "77307"),
        ("isodose.rectangular_mlc_is_unmodified", True, [b.beam(1)], "77306"),
        (
            "isodose.max_simple_ports",
            3,
            [b.beam(i + 1, mlc=False, gantry=g) for i, g in enumerate((0, 90, 180))],
            "77306",
        ),
        (
            "isodose.same_area_isocentre_distance_mm",
            100.0,
            [b.beam(1, mlc=False), b.beam(2, mlc=False, gantry=180, iso=(0, 0, 80))],
            "77306",
        ),
    ],
)
def test_isodose_settings_change_the_code(policy, key, value, beams, code):
    result = run(with_setting(policy, key, value), b.plan(beams))
    assert result.code == code
    if code == "77307":
        assert any(e.setting == key and e.fired for e in result.evidence)


# ---------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("status", "flagged"),
    [("UNAPPROVED", True), ("REJECTED", True), ("APPROVED", False), (None, True)],
)
def test_approval_flag_keeps_the_code(policy, status, flagged):
    result = run(policy, b.plan(two_open(), approval=status))
    assert result.code == "77306"
    assert any(f.flag == "approval" for f in result.flags) is flagged


def test_special_dosimetry_is_never_a_code(policy):
    result = run(policy, b.plan(two_open()))
    [ev] = evidence(result, "special_dosimetry.77331")
    assert ev.fired is None and "cannot be determined" in ev.finding


def test_no_fraction_group_uses_beam_sequence_with_a_warning(policy):
    result = run(policy, b.plan(two_open(), fraction_groups=False))
    assert result.code == "77306"
    assert any(f.flag == "no_fraction_group" for f in result.flags)


# ----------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(5)))
def test_beam_order_does_not_change_the_code(order):
    policy = load("default")
    beams = [
        b.beam(1, mlc=False, gantry=0),
        b.beam(2, mlc=False, gantry=90, wedges=[b.wedge()]),
        fif_beam(),
        vmat_like(constant_rate=True, outline="ellipse"),
        b.beam(5, b.control_points([b.shaped(), b.shaped()], [0, 1])),
    ]
    beams = [replace(x, number=i + 1) for i, x in enumerate(beams)]
    reference = classify(b.linked(b.plan(beams), b.structure_set(), [b.dose()]), policy)
    shuffled = [beams[i] for i in order]
    result = classify(b.linked(b.plan(shuffled), b.structure_set(), [b.dose()]), policy)
    assert (result.code, result.category) == (reference.code, reference.category)
    assert sorted(e.rule for e in result.evidence if e.fired) == sorted(
        e.rule for e in reference.evidence if e.fired
    )


def test_conformal_arc_convexity_threshold(policy):
    beam = vmat_like(constant_rate=True, outline="ellipse")
    measured = run(policy, b.plan([beam])).beams[0].metrics.convexity
    assert 0.8 < measured <= 1.0
    above = with_setting(policy, "modulation.dca_min_convexity", measured + 0.01)
    below = with_setting(policy, "modulation.dca_min_convexity", measured - 0.01)
    assert run(above, b.plan([beam])).beams[0].technique is Technique.VMAT
    assert run(below, b.plan([beam])).beams[0].technique is Technique.DYNAMIC_CONFORMAL_ARC


def test_gamma_knife_placeholder_beam(policy):
    beam = b.beam(1, mlc=False, machine="Leksell Gamma Knife Icon")
    assert run(policy, b.plan([beam])).beams[0].technique is Technique.GAMMA_KNIFE


# ------------------------------------------------------ vendor shapes, edges


def test_viewray_like_many_beams_few_segments_is_imrt(policy):
    # MRIdian step-and-shoot: many beams, two or three segments each, not nested
    beams = []
    for k in range(15):
        segs = [(b.rect(-30 + k % 3, 10), 0.55), (b.rect(-5, 30 - k % 4), 0.45)]
        beams.append(b.beam(k + 1, b.segments_cps(segs, gantry=k * 24)))
    result = run(policy, b.plan(beams), b.structure_set(), [b.dose()])
    assert {a.technique for a in result.beams} == {Technique.STEP_AND_SHOOT_IMRT}
    assert result.code == "77301"


def test_vmat_with_few_control_points_per_arc(policy):
    # Monaco/Pinnacle export VMAT arcs with few control points
    beam = vmat_like(n=9)
    assert run(policy, b.plan([beam])).beams[0].technique is Technique.VMAT


@pytest.mark.parametrize(("stop", "technique"), [(4, Technique.OPEN), (6, Technique.STATIC_ARC)])
def test_arc_min_gantry_travel_threshold(policy, stop, technique):
    # arc_min_gantry_travel_deg = 5
    beam = b.arc(1, start=0, stop=stop, n=5)
    assert run(policy, b.plan([beam])).beams[0].technique is technique


def test_vmat_mu_per_degree_threshold(policy):
    beam = vmat_like(outline="ellipse")
    cv = run(policy, b.plan([beam])).beams[0].metrics.mu_per_degree_cv
    above = with_setting(policy, "modulation.vmat_min_mu_per_degree_cv", cv + 0.01)
    below = with_setting(policy, "modulation.vmat_min_mu_per_degree_cv", cv - 0.01)
    assert run(below, b.plan([beam])).beams[0].technique is Technique.VMAT
    assert run(above, b.plan([beam])).beams[0].technique is Technique.DYNAMIC_CONFORMAL_ARC


@pytest.mark.parametrize(
    ("step", "technique"), [(0.15, Technique.STATIC_ARC), (0.25, Technique.DYNAMIC_CONFORMAL_ARC)]
)
def test_arc_aperture_change_threshold(policy, step, technique):
    # arc_aperture_change_mm = 0.2: the largest leaf move between two control points
    n = 19
    leaves = [
        ellipse(0.8) + np.concatenate([-np.full(b.PAIRS, k * step), np.full(b.PAIRS, k * step)])
        for k in range(n)
    ]
    beam = b.arc(1, n=n, leaves=leaves)
    assert run(policy, b.plan([beam])).beams[0].technique is technique


# ------------------------------------------------------------ the decision table


def test_first_row_of_the_ladder_decides_but_every_rule_is_reported(policy):
    # an IMRT plan with everything 3-D needs, marked as a verification plan
    plan = b.plan([vmat_like()], intent="VERIFICATION")
    result = run(policy, plan, b.structure_set(), [b.dose()])
    assert result.category is Category.NOT_BILLABLE and result.code is None
    assert [e.fired for e in evidence(result, "imrt.modulated_beam")] == [True]
    assert evidence(result, "3d.dose_volume_evidence")[0].fired is True
    assert evidence(result, "isodose.arc")[0].fired is True
    # without the intent the IMRT row, above 3-D and isodose, decides
    clinical = run(policy, b.plan([vmat_like()]), b.structure_set(), [b.dose()])
    assert clinical.code == "77301"
    assert [e.rule for e in clinical.evidence] == [e.rule for e in result.evidence]


def test_docs_give_the_ladder_in_its_order():
    from pathlib import Path

    from rtcode.coding.decisions import AMENDMENTS, LADDER

    docs = (Path(__file__).resolve().parent.parent / "docs" / "policy.md").read_text()
    section = docs.split("## How the settings decide", 1)[1].split("\n## ", 1)[0]
    places = [section.index(f"`{name}`") for name, _ in LADDER]
    assert places == sorted(places)
    for amend in AMENDMENTS:
        assert f"`{amend.__name__.strip('_')}`" in section


@pytest.mark.parametrize("technique", list(Technique))
def test_what_counts_as_modulated_is_decided_in_one_place(policy, technique):
    from rtcode.coding.techniques import MODULATED, codes_as_imrt, modulates_intensity

    assert modulates_intensity(technique) == (technique in MODULATED)
    pbs = technique is Technique.ION_PENCIL_BEAM_SCANNING
    assert codes_as_imrt(technique, policy) == (technique in MODULATED or pbs)
    as_3d = with_setting(policy, "modulation.pencil_beam_scanning_code", "77295")
    assert codes_as_imrt(technique, as_3d) == (technique in MODULATED)
