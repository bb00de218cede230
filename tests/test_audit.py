"""rtcode audit: courses, every finding kind both ways, NCCI PTP edits, charges files, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import builders as b
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcode.audit.findings import (
    KINDS,
    SOURCE_CPM,
    SOURCE_ISODOSE_77300,
    SOURCE_MUE,
    SOURCE_PTP,
    audit,
)
from rtcode.audit.render import to_csv, to_html, to_json, to_table
from rtcode.cli import main
from rtcode.coding.classify import classify
from rtcode.coding.policy import AUDIT_FINDING_KINDS, load, parse
from rtcode.coding.related import date_of_service, related_codes
from rtcode.model.facts import PlanReference
from rtcode.model.results import PlanResult
from rtcode.sources.billing import Charge, parse_charges, parse_ptp

POLICY = load("default")
PLANTED = SAMPLE_DATA / "charges_planted.csv"
CLEAN = SAMPLE_DATA / "charges_clean.csv"
PTP = SAMPLE_DATA / "ptp_synthetic.txt"


# ------------------------------------------------------------------- builders


def shaped_beams(n: int) -> list:
    return [
        b.beam(i + 1, b.control_points([b.shaped(), b.shaped()], [0, 1], gantry=i * 30))
        for i in range(n)
    ]


def plan_result(
    kind: str = "3d",
    *,
    uid: str = "1.2.3.4",
    patient: str = "P1",
    label: str = "PLAN",
    date: str | None = "20260105",
    approval: str = "APPROVED",
    review: str | None = "20260105",
    for_uid: str | None = "1.2.3.9",
    ss_uid: str | None = "1.2.3.5",
    refs: tuple[PlanReference, ...] = (),
    ports: int = 4,
    path: str | None = None,
) -> PlanResult:
    """A scanned plan: 3d (77295, 77300 x ports, 77334 x ports), imrt (77301, 77300, 77338),
    simple (77306), complex (77307) or qa (a VERIFICATION plan)."""
    ss, doses = None, ()
    if kind == "3d":
        plan, ss, doses = b.plan(shaped_beams(ports)), b.structure_set(), [b.dose()]
    elif kind == "imrt":
        import test_classify as tc

        plan, ss, doses = b.plan([tc.vmat_like()]), b.structure_set(), [b.dose()]
    elif kind == "simple":
        plan = b.plan([b.beam(1, mlc=False)])
    elif kind == "complex":
        plan = b.plan([b.beam(i + 1, mlc=False, gantry=i * 90) for i in range(3)])
    elif kind == "qa":
        plan = b.plan([b.beam(1, mlc=False)], intent="VERIFICATION")
    else:
        raise ValueError(kind)
    plan = replace(
        plan,
        path=path or f"{patient}/{label}.dcm",
        sop_instance_uid=uid,
        patient_id=patient,
        label=label,
        date=date,
        approval_status=approval,
        review_date=review if approval == "APPROVED" else None,
        frame_of_reference_uid=for_uid,
        referenced_structure_set_uid=ss_uid,
        referenced_plans=refs,
    )
    lp = b.linked(plan, ss, doses, status="linked" if ss else "not_referenced")
    c = classify(lp, POLICY)
    day = date_of_service(lp, None)
    return PlanResult(lp, c, related_codes(lp, c, POLICY, day), day)


CODES = {
    "3d": [("77295", 1), ("77300", 4), ("77334", 4)],
    "imrt": [("77301", 1), ("77300", 1), ("77338", 1)],
    "simple": [("77306", 1)],
    "complex": [("77307", 1)],
}


def charge(line, cpt, units=1, day="2026-01-05", patient="P1", modifiers=(), plan=None, fee=None):
    return Charge(
        line,
        patient,
        dt.date.fromisoformat(day),
        cpt,
        units,
        tuple(modifiers),
        plan,
        None if fee is None else Decimal(fee),
    )


def charges_for(kind, day="2026-01-05", start=2, patient="P1", plan=None):
    return [
        charge(start + i, code, units, day, patient, plan=plan)
        for i, (code, units) in enumerate(CODES[kind])
    ]


def run(plans, charges, **kw):
    return audit(plans, charges, kw.pop("policy", POLICY), **kw)


def kinds(result) -> Counter:
    return Counter(f.kind for f in result.findings)


def test_plan_builders_give_the_codes_the_tests_assume():
    for kind, codes in CODES.items():
        pr = plan_result(kind)
        assert pr.classification.code == codes[0][0], kind
        result = run([pr], charges_for(kind))
        assert result.findings == (), [f.message for f in result.findings]


def test_finding_kinds_match_the_policy_schema():
    assert tuple(KINDS) == AUDIT_FINDING_KINDS
    assert set(POLICY["audit.severity"]) == set(KINDS)


# ------------------------------------------------------- every kind, both ways


def one(result, kind):
    [finding] = [f for f in result.findings if f.kind == kind]
    return finding


def test_billed_not_supported():
    pr = plan_result("3d")
    fired = run([pr], charges_for("3d") + [charge(9, "77338")])
    assert kinds(fired) == {"billed_not_supported": 1}
    f = one(fired, "billed_not_supported")
    assert f.severity == "error" and f.codes == ("77338",) and [c.line for c in f.charges] == [9]
    assert f.course == "P1/1" and f.plans == ("P1/PLAN.dcm",)
    assert any("77295 (3-D plan) because" in e for e in f.evidence)
    assert run([pr], charges_for("3d")).findings == ()


def test_billed_more_units_than_the_plan_supports():
    rows = charges_for("3d")
    rows[2] = replace(rows[2], units=6)  # 77334 x6, the plan has 4 devices
    f = one(run([plan_result("3d")], rows), "billed_not_supported")
    assert f.codes == ("77334",) and "billed 6 unit(s), the plans of the course support 4" in (
        f.message
    )


def test_charge_for_a_patient_without_plans_is_not_supported():
    result = run([plan_result("3d")], charges_for("3d") + [charge(9, "77295", patient="P2")])
    f = one(result, "billed_not_supported")
    assert (f.patient_id, f.course) == ("P2", None)
    assert result.assignments[9].course is None


def test_verification_plan_is_in_the_course_and_never_billed():
    treated = plan_result("imrt", uid="1.1", label="VMAT")
    qa = plan_result(
        "qa",
        uid="9.9",
        patient="PHANTOM",
        label="QA",
        refs=(PlanReference("1.1", "VERIFIED_PLAN"),),
        for_uid="7.7",
        ss_uid=None,
    )
    clean = run([treated, qa], charges_for("imrt"))
    assert clean.findings == ()
    [course] = clean.courses
    assert [cp.role for cp in course.plans] == ["billable", "verification"]
    assert any("as VERIFIED_PLAN" in r for r in course.reasons)
    # billed under the treated patient, naming the QA plan: not supported
    fired = run([treated, qa], charges_for("imrt") + [charge(9, "77301", plan="QA")])
    # a second 77301 in the course: past the frequency limit and supported by no plan
    assert kinds(fired) == {"frequency": 1, "billed_not_supported": 1}
    assert {f.at_stake for f in fired.findings} == {(9,)}
    # billed under the phantom's patient ID
    fired = run([treated, qa], charges_for("imrt") + [charge(9, "77301", patient="PHANTOM")])
    f = one(fired, "billed_not_supported")
    assert any("verification plans are never billed" in e for e in f.evidence)


def test_expected_not_billed():
    fired = run([plan_result("3d")], charges_for("3d")[:1])  # 77295 only
    assert kinds(fired) == {"expected_not_billed": 2}
    assert {f.codes for f in fired.findings} == {("77300",), ("77334",)}
    assert {f.severity for f in fired.findings} == {"warning"}
    assert all(f.charges == () for f in fired.findings)
    assert run([plan_result("3d")], charges_for("3d")).findings == ()


@pytest.mark.parametrize(
    ("plan_kind", "billed", "kind"),
    [
        ("3d", "77301", "code_higher_than_plan"),
        ("complex", "77295", "code_higher_than_plan"),
        ("simple", "77307", "code_higher_than_plan"),
        ("3d", "77307", "code_lower_than_plan"),
        ("imrt", "77295", "code_lower_than_plan"),
        ("complex", "77306", "code_lower_than_plan"),
        ("3d", "77295", None),
        ("complex", "77307", None),
    ],
)
def test_higher_and_lower_codes(plan_kind, billed, kind):
    rows = [replace(r, cpt=billed) if r.line == 2 else r for r in charges_for(plan_kind)]
    result = run([plan_result(plan_kind)], rows)
    if kind is None:
        assert result.findings == ()
        return
    # billing a 3-D plan's 77300 with an isodose code also makes a bundled pair (CPT 2015)
    extra = {"bundled_pair": 1} if (plan_kind, billed) == ("3d", "77307") else {}
    assert kinds(result) == {kind: 1, **extra}
    f = one(result, kind)
    assert f.codes == (billed, CODES[plan_kind][0][0])
    assert f.severity == ("error" if kind == "code_higher_than_plan" else "warning")


@pytest.mark.parametrize("code", ["77295", "77307", "77280", "77290", "77014", "77370"])
def test_codes_bundled_into_imrt_planning(code):
    result = run([plan_result("imrt")], charges_for("imrt") + [charge(9, code, day="2025-06-01")])
    [f] = [f for f in result.findings if f.rule == "imrt_bundle"]
    assert f.codes == ("77301", code) and f.source == SOURCE_CPM
    assert f.source.startswith("CMS: Medicare Claims Processing")
    assert f.at_stake == (9,)
    assert "needs_documentation" not in kinds(result)  # 77370: the bundling says it all


def test_imrt_with_basic_dosimetry_and_mlc_device_is_not_bundled():
    assert run([plan_result("imrt")], charges_for("imrt")).findings == ()


def test_isodose_plan_with_basic_dosimetry_is_bundled():
    fired = run([plan_result("complex")], charges_for("complex") + [charge(9, "77300", 2)])
    assert kinds(fired) == {"bundled_pair": 1}
    f = one(fired, "bundled_pair")
    assert f.codes == ("77307", "77300") and f.source == SOURCE_ISODOSE_77300
    assert f.source.startswith("CPT: ")
    # 77295 with 77300 is allowed (the 2016 NCCI edit was deleted)
    assert run([plan_result("3d")], charges_for("3d")).findings == ()


def test_one_imrt_plan_per_course_without_a_new_ct():
    fired = run([plan_result("imrt")], charges_for("imrt") + [charge(9, "77301")])
    assert kinds(fired) == {"frequency": 1, "billed_not_supported": 1}
    f = one(fired, "frequency")
    assert (f.rule, f.at_stake) == ("one_imrt_plan_per_ct", (9,))
    assert one(fired, "billed_not_supported").at_stake == (9,)


def test_a_replan_on_a_new_ct_stays_in_the_course_and_allows_a_second_77301():
    first = plan_result("imrt", uid="1.1", label="INITIAL", for_uid="CT1", ss_uid="SS1")
    replan = plan_result(
        "imrt",
        uid="1.2",
        label="REPLAN",
        for_uid="CT2",
        ss_uid="SS2",
        date="20260201",
        review="20260201",
        refs=(PlanReference("1.1", "PREDECESSOR"),),
    )
    rows = charges_for("imrt", plan="INITIAL") + charges_for(
        "imrt", day="2026-02-01", start=10, plan="REPLAN"
    )
    result = run([first, replan], rows)
    [course] = result.courses
    assert course.planning_cts == 2
    assert any("as PREDECESSOR" in r for r in course.reasons)
    assert result.findings == ()


def test_a_boost_on_the_same_ct_is_part_of_the_course_plan():
    first = plan_result("3d", uid="1.1", label="PELVIS")
    boost = plan_result("3d", uid="1.2", label="BOOST", date="20260210", review="20260210")
    rows = charges_for("3d", plan="PELVIS") + [
        charge(9, "77300", 4, day="2026-02-10", plan="BOOST"),
        charge(10, "77334", 4, day="2026-02-10", plan="BOOST"),
    ]
    result = run([first, boost], rows)
    assert result.findings == ()  # one 77295 for the course: the boost's is not expected
    assert any("2 plans support 77295 on 1 planning CT(s)" in n for n in result.courses[0].notes)
    twice = run([first, boost], rows + [charge(11, "77295", day="2026-02-10", plan="BOOST")])
    assert kinds(twice) == {"frequency": 1, "billed_not_supported": 1}


def test_one_3d_plan_per_course_per_ct():
    fired = run([plan_result("3d")], charges_for("3d") + [charge(9, "77295")])
    assert one(fired, "frequency").rule == "one_3d_plan_per_ct"


def test_one_isodose_plan_per_area():
    fired = run([plan_result("complex")], charges_for("complex") + [charge(9, "77307")])
    assert one(fired, "frequency").rule == "one_isodose_plan_per_area"
    # two isodose plans (two areas) on one CT in one course: two isodose codes are fine
    a = plan_result("complex", uid="1.1", label="A")
    c = plan_result("complex", uid="1.2", label="B", date="20260110", review="20260110")
    ok = run([a, c], [charge(2, "77307", plan="A"), charge(3, "77307", day="2026-01-10")])
    assert len(ok.courses) == 1 and ok.findings == ()


def test_mlc_device_once_per_imrt_plan():
    fired = run([plan_result("imrt")], charges_for("imrt") + [charge(9, "77338")])
    assert one(fired, "frequency").rule == "one_77338_per_imrt_plan"


def test_basic_dosimetry_at_most_ten_per_date():
    eleven = plan_result("3d", ports=11)  # the plan reports 77300 x10 (capped)
    rows = [charge(2, "77295"), charge(3, "77300", 11), charge(4, "77334", 11)]
    fired = run([eleven], rows)
    f = one(fired, "frequency")
    assert (f.rule, f.source, f.setting) == (
        "basic_dosimetry_per_date",
        SOURCE_MUE,
        "related.max_basic_dosimetry_per_date",
    )
    # the 11th unit is past the MUE and supported by no plan (the plan reports 10)
    assert one(fired, "billed_not_supported").stake == ((3, 10, 1),)
    assert f.stake == ((3, 10, 1),)
    ten = plan_result("3d", ports=10)
    rows = [charge(2, "77295"), charge(3, "77300", 10), charge(4, "77334", 10)]
    assert run([ten], rows).findings == ()


# ------------------------------------------- issue 19: every check, units at stake


@pytest.mark.parametrize("days", [("2026-01-05", "2026-01-05"), ("2026-01-05", "2026-01-20")])
def test_a_frequency_finding_does_not_hide_a_wrong_code(days):
    """77301 billed twice (on one or two dates) for a field-in-field 3-D plan (77295):
    the second is past the frequency limit, and neither is the plan's code."""
    rows = [
        charge(2, "77301", day=days[0], fee="900"),
        charge(3, "77300", 2, day=days[0]),
        charge(4, "77334", 2, day=days[0]),
        charge(5, "77301", day=days[1], fee="900"),
    ]
    result = run([plan_result("3d", ports=2)], rows)
    assert kinds(result) == {
        "frequency": 1,
        "code_higher_than_plan": 1,
        "billed_not_supported": 1,  # the second 77301: no plan supports it
    }
    freq, higher = one(result, "frequency"), one(result, "code_higher_than_plan")
    assert (freq.at_stake, freq.fee) == ((5,), Decimal(900))
    assert higher.codes == ("77301", "77295") and higher.at_stake == (2,)
    assert one(result, "billed_not_supported").at_stake == (5,)
    # the fee at stake covers both charges, line 5 once though it is in two findings
    assert result.fees_by_severity()["error"] == Decimal(1800)
    assert "expected_not_billed" not in kinds(result)  # the 77295 is the 77301 billed


def test_a_frequency_finding_does_not_hide_a_higher_code_on_an_isodose_plan():
    """77295 x2 (one row) on a plan coded 77307."""
    result = run([plan_result("complex")], [charge(2, "77295", 2, fee="900")])
    assert kinds(result) == {
        "frequency": 1,
        "code_higher_than_plan": 1,
        "billed_not_supported": 1,
    }
    freq, higher = one(result, "frequency"), one(result, "code_higher_than_plan")
    assert higher.codes == ("77295", "77307") and higher.stake == ((2, 0, 1),)
    assert freq.stake == ((2, 1, 1),) and freq.fee == Decimal(450)
    assert higher.fee_basis == "line 2: 1 of 2 units x 450.00 (row fee 900.00 / 2) = 450.00"
    assert result.fees_by_severity()["error"] == Decimal(900)  # both units, each once


def test_fee_at_stake_counts_the_unsupported_units_not_the_row():
    rows = charges_for("imrt")
    rows[1] = replace(rows[1], units=3, fee=Decimal("180"))  # 77300 x3, the plan supports 1
    result = run([plan_result("imrt")], rows)
    f = one(result, "billed_not_supported")
    assert f.codes == ("77300",) and f.stake == ((3, 1, 2),)
    assert f.fee == Decimal(120)
    assert f.fee_basis == "line 3: 2 of 3 units x 60.00 (row fee 180.00 / 3) = 120.00"
    assert result.fees_by_severity() == {"error": 120, "warning": 0, "info": 0}
    data = json.loads(to_json(result))
    [g] = data["findings"]
    assert g["fee"] == 120.0 and g["fee_at_stake_basis"] == f.fee_basis
    assert g["units_at_stake"] == [{"line": 3, "units": 2}]
    [row] = [r for r in csv.DictReader(io.StringIO(to_csv(result)))]
    assert (row["fee"], row["fee_at_stake_basis"]) == ("120.00", f.fee_basis)
    assert f"fee at stake: {f.fee_basis}" in to_table(result)
    assert "2 of 3 units x 60.00" in to_html(result)


def test_fee_at_stake_past_the_basic_dosimetry_cap_is_the_units_over_it():
    rows = [charge(2, "77295"), charge(3, "77300", 14, fee="840"), charge(4, "77334", 14)]
    result = run([plan_result("3d", ports=14)], rows)  # the plan reports 77300 x10
    f = one(result, "frequency")
    assert (f.rule, f.stake, f.fee) == ("basic_dosimetry_per_date", ((3, 10, 4),), Decimal(240))
    assert f.fee_basis == "line 3: 4 of 14 units x 60.00 (row fee 840.00 / 14) = 240.00"
    # the same 4 units are also unsupported by the plan: counted once
    assert one(result, "billed_not_supported").stake == ((3, 10, 4),)
    assert result.fees_by_severity()["error"] == Decimal(240)


def test_a_unit_is_counted_once_under_its_most_severe_finding():
    # 77307 x2 for one isodose plan approved without ReviewDate: both units' timing is
    # unverifiable (warning), the second unit is past the frequency limit (error)
    result = run([plan_result("complex", review=None)], [charge(2, "77307", 2, fee="360")])
    assert one(result, "charge_timing_unverifiable").fee == Decimal(360)
    assert one(result, "frequency").stake == ((2, 1, 1),)
    assert result.fees_by_severity() == {"error": 180, "warning": 180, "info": 0}


@pytest.mark.parametrize(
    ("approval", "review", "day", "fired"),
    [
        ("APPROVED", "20260110", "2026-01-08", True),  # before ReviewDate
        ("APPROVED", "20260110", "2026-01-10", False),
        ("UNAPPROVED", None, "2026-01-04", True),  # before the plan's RTPlanDate
        ("UNAPPROVED", None, "2026-01-05", False),
    ],
)
def test_charge_before_approval(approval, review, day, fired):
    pr = plan_result("3d", approval=approval, review=review)
    result = run([pr], charges_for("3d", day=day))
    # an unapproved plan's codes are also supported only by an unapproved plan
    unapproved = {"supported_only_by_unapproved_plan": 1} if approval != "APPROVED" else {}
    if fired:
        assert kinds(result) == {"charge_before_approval": 1, **unapproved}
        f = one(result, "charge_before_approval")
        assert f.severity == "error" and len(f.charges) == 3
    else:
        assert kinds(result) == unapproved


@pytest.mark.parametrize(
    ("status", "fired"),
    [("UNAPPROVED", True), ("REJECTED", True), ("rejected ", True), ("APPROVED", False)],
)
def test_codes_supported_only_by_an_unapproved_plan_are_a_warning(status, fired):
    pr = plan_result("3d", approval=status)
    rows = charges_for("3d") + [charge(9, "77300", 2, fee="120.00")]  # 77300 x6, plan: x4
    result = run([pr], rows)
    noted = f"{status.strip().upper()} in the export"
    assert any(noted in n for n in result.courses[0].notes) is fired
    found = [f for f in result.findings if f.kind == "supported_only_by_unapproved_plan"]
    if not fired:
        assert found == []
        return
    [f] = found
    assert f.severity == "warning" and f.setting == "approval.flag_statuses"
    assert f.codes == ("77295", "77300", "77334") and f.plans == (pr.linked.plan.path,)
    assert f.source.startswith("local policy: [approval] flag_statuses")
    # the units the plan supports are at stake; the two 77300 past them are unsupported
    assert f.stake == ((2, 0, 1), (3, 0, 4), (4, 0, 4))
    assert one(result, "billed_not_supported").stake == ((9, 0, 2),)
    assert f"ApprovalStatus {status}" in f.evidence[-1]


def test_an_approved_plan_supporting_the_code_is_enough():
    unapproved = plan_result("3d", uid="1.1", label="A", approval="UNAPPROVED")
    approved = plan_result("3d", uid="1.2", label="B", ports=2)  # same CT and day: one course
    result = run([unapproved, approved], charges_for("3d"))
    assert len(result.courses) == 1
    assert "supported_only_by_unapproved_plan" not in kinds(result)
    # a code only the unapproved plan supports is still one
    imrt = plan_result("imrt", uid="1.3", label="C", approval="UNAPPROVED")
    result = run([imrt, approved], [charge(2, "77301"), charge(3, "77295")])
    assert len(result.courses) == 1
    f = one(result, "supported_only_by_unapproved_plan")
    assert f.codes == ("77301",) and f.plans == ("P1/C.dcm",)


def test_course_notes_stay_in_their_course_and_the_callers_notes_are_kept():
    result = run(
        [plan_result("3d", approval="UNAPPROVED")], charges_for("3d"), notes=("read from X",)
    )
    assert result.notes == ("read from X",)  # not the last course's notes
    assert any("UNAPPROVED in the export" in n for n in result.courses[0].notes)


def test_charge_timing_unverifiable_without_review_date():
    pr = plan_result("3d", review=None)  # APPROVED, no ReviewDate
    f = one(run([pr], charges_for("3d")), "charge_timing_unverifiable")
    assert (f.rule, f.severity) == ("approval_date_missing", "warning")


@pytest.mark.parametrize(("days_after", "fired"), [(45, False), (46, True)])
def test_charge_timing_unverifiable_beyond_the_course_window(days_after, fired):
    day = (dt.date(2026, 1, 5) + dt.timedelta(days=days_after)).isoformat()
    rows = charges_for("3d")[:1] + charges_for("3d", day=day, start=3)[1:]
    result = run([plan_result("3d")], rows)
    if fired:
        f = one(result, "charge_timing_unverifiable")
        assert f.rule == "outside_course_window" and f.setting == "audit.course_window_days"
        assert [c.line for c in f.charges] == [4, 5]
    else:
        assert result.findings == ()


def test_delivery_codes_weeks_later_are_not_timing_findings():
    rows = charges_for("3d") + [charge(9, "77412", day="2026-04-01")]
    assert run([plan_result("3d")], rows).findings == ()


def test_needs_documentation():
    fired = run([plan_result("3d")], charges_for("3d") + [charge(9, "77331")])
    assert kinds(fired) == {"needs_documentation": 1}
    f = one(fired, "needs_documentation")
    assert f.severity == "info" and "physician's order" in f.message
    assert run([plan_result("3d")], charges_for("3d")).findings == ()


def test_code_not_in_force():
    fired = run([plan_result("imrt")], charges_for("imrt") + [charge(9, "77386")])
    assert kinds(fired) == {"code_not_in_force": 1}
    assert "ended 2025-12-31" in one(fired, "code_not_in_force").message
    rows = charges_for("imrt", day="2025-06-02") + [charge(9, "77386", day="2025-06-02")]
    old = plan_result("imrt", date="20250602", review="20250602")
    assert run([old], rows).findings == ()


# ----------------------------------------------------------------------- NCCI

PTP_TEXT = """Synthetic edits for tests (not CMS edits)
Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date *=no data\tModifier 0=not allowed 1=allowed 9=not applicable\tPTP Edit Rationale
77290\t77280\t*\t20200101\t*\t1\tone
77295\t77300\t\t20160101\t20160101\t9\tdeleted on its first day
77307\t77306\t\t20100101\t20260201\t0\tmutually exclusive until 2026-02-01
"""


@pytest.mark.parametrize(
    ("rows", "fired"),
    [
        ([("77290", (), "2026-01-05"), ("77280", (), "2026-01-05")], True),
        ([("77290", (), "2026-01-05"), ("77280", ("59",), "2026-01-05")], False),
        ([("77290", ("XS",), "2026-01-05"), ("77280", (), "2026-01-05")], False),
        ([("77290", (), "2026-01-05"), ("77280", ("26",), "2026-01-05")], True),
        ([("77290", (), "2026-01-05"), ("77280", (), "2026-01-06")], False),  # two dates
        ([("77290", (), "2019-12-31"), ("77280", (), "2019-12-31")], False),  # not yet
        ([("77307", ("59",), "2026-01-05"), ("77306", ("59",), "2026-01-05")], True),  # 0
        ([("77307", (), "2026-02-01"), ("77306", (), "2026-02-01")], False),  # deleted
        ([("77307", (), "2026-01-31"), ("77306", (), "2026-01-31")], True),
    ],
)
def test_ptp_edits_by_date_and_modifier_indicator(rows, fired):
    ptp = parse_ptp(PTP_TEXT, "ptp_test.txt")
    charges = [
        charge(i + 2, code, modifiers=mods, day=day) for i, (code, mods, day) in enumerate(rows)
    ]
    result = run([], charges, ptp=ptp)
    found = [f for f in result.findings if f.kind == "ncci_ptp"]
    assert bool(found) is fired
    if fired:
        [f] = found
        assert f.source == SOURCE_PTP and f.severity == "error"
        assert any(e.startswith("ptp_test.txt line ") for e in f.evidence)
        assert f.codes == (rows[0][0], rows[1][0])
        assert f.at_stake == (3,)  # the column 2 code is the one not paid


def test_ptp_indicator_9_never_applies():
    ptp = parse_ptp(PTP_TEXT, "ptp_test.txt")
    result = run([plan_result("3d")], charges_for("3d"), ptp=ptp)
    assert result.findings == ()


def test_without_a_ptp_file_no_ncci_finding():
    rows = [charge(2, "77290"), charge(3, "77280")]
    assert "ncci_ptp" not in kinds(run([], rows))


def test_ptp_file_layouts_and_rejected_rows():
    ptp = parse_ptp(PTP_TEXT, "x")
    assert [(e.column1, e.column2, e.modifier_indicator) for e in ptp.edits] == [
        ("77290", "77280", "1"),
        ("77295", "77300", "9"),
        ("77307", "77306", "0"),
    ]
    assert ptp.edits[2].deletion == dt.date(2026, 2, 1) and ptp.edits[0].deletion is None
    as_csv = (
        "column1,column2,effective_date,deletion_date,modifier_indicator\n"
        "77290,77280,1/1/2020,*,1\n"
        "77307,77306,2010-01-01,,0\n"
        "77307,77306,20100101,*,2\n"
        "77301,77338,2010-13-01,*,0\n"
    )
    ptp = parse_ptp(as_csv, "y.csv")
    assert [(e.column1, e.effective) for e in ptp.edits] == [
        ("77290", dt.date(2020, 1, 1)),
        ("77307", dt.date(2010, 1, 1)),
    ]
    assert [(r.line, r.reason.split(" ")[0]) for r in ptp.rejected] == [
        (4, "modifier"),
        (5, "effective"),
    ]


# -------------------------------------------------------------------- courses


def test_plans_on_one_ct_within_the_window_are_one_course():
    a = plan_result("3d", uid="1.1", label="A")
    c = plan_result("3d", uid="1.2", label="BOOST", date="20260210", review="20260210")
    result = run([a, c], [])
    [course] = result.courses
    assert course.id == "P1/1" and course.first_date == dt.date(2026, 1, 5)
    assert any("36 day(s) apart" in r for r in course.reasons)


def test_plans_far_apart_or_on_other_cts_are_separate_courses():
    a = plan_result("3d", uid="1.1", label="A")
    late = plan_result("3d", uid="1.2", label="B", date="20260601", review="20260601")
    other = plan_result("3d", uid="1.3", label="C", for_uid="CT2", ss_uid="SS2")
    result = run([a, late, other], [])
    assert [c.id for c in result.courses] == ["P1/1", "P1/2", "P1/3"]
    assert all("no other plan" in c.reasons[0] for c in result.courses)


def test_concurrent_plan_on_another_ct_joins_the_course():
    a = plan_result("3d", uid="1.1", label="A")
    refs = (PlanReference("1.1", "CONCURRENT"),)
    boost = plan_result("3d", uid="1.2", label="B", for_uid="CT2", ss_uid="SS2", refs=refs)
    [course] = run([a, boost], []).courses
    assert course.planning_cts == 2 and any("as CONCURRENT" in r for r in course.reasons)
    alone = plan_result("3d", uid="1.2", label="B", for_uid="CT2", ss_uid="SS2")
    assert len(run([a, alone], []).courses) == 2


def test_charges_go_to_the_course_of_the_plan_they_name():
    a = plan_result("3d", uid="1.1", label="PELVIS")
    c = plan_result("complex", uid="1.2", label="RIB", for_uid="CT2", ss_uid="SS2", date="20260106")
    rows = charges_for("3d", plan="PELVIS") + [charge(9, "77307", day="2026-01-06", plan="RIB")]
    result = run([a, c], rows)
    assert result.findings == ()
    assert result.assignments[9].course == "P1/2" and "names plan 'RIB'" in (
        result.assignments[9].how
    )
    assert result.courses[0].charge_lines == (2, 3, 4)


def test_same_uid_versions_are_audited_against_the_version_billed():
    a = plan_result("simple", uid="1.1", label="APPA", path="P1/RP_a.dcm")
    w = plan_result("complex", uid="1.1", label="APPA", path="P1/RP_b.dcm")
    result = run([a, w], [charge(2, "77307", fee="180.00")])
    [course] = result.courses
    assert {cp.plan.path: cp.role for cp in course.plans} == {
        "P1/RP_a.dcm": "other_version",
        "P1/RP_b.dcm": "billable",
    }
    assert any("Confirm which version" in n for n in course.notes)
    # the audit still uses the version closest to the billed codes, and says so
    assert kinds(result) == {"plan_versions_differ": 1}
    f = one(result, "plan_versions_differ")
    assert f.severity == "warning" and f.codes == ("77306", "77307")
    assert f.plans == ("P1/RP_a.dcm", "P1/RP_b.dcm")
    assert "P1/RP_a.dcm: 77306" in f.message and "P1/RP_b.dcm: 77307 (audited)" in f.message
    # 77307 is supported by one version only: its charge is at stake
    assert [c.line for c in f.charges] == [2] and f.fee == Decimal("180.00")


def test_copies_of_one_plan_are_not_versions():
    a = plan_result("complex", uid="1.1", label="APPA", path="P1/RP_a.dcm")
    copy = plan_result("complex", uid="1.1", label="APPA", path="P1/copy/RP_a.dcm")
    result = run([a, copy], [charge(2, "77307")])
    assert result.findings == ()
    # the same code from a different content (another label) is a version
    other = plan_result("complex", uid="1.1", label="APPA2", path="P1/RP_c.dcm")
    f = one(run([a, other], [charge(2, "77307")]), "plan_versions_differ")
    assert f.codes == ("77307",) and f.charges == ()  # every version supports 77307


def test_window_is_a_policy_setting():
    text = (
        '[policy]\nextends = "default"\nname = "w"\nversion = "1"\ndescription = "d"\n'
        "[audit]\ncourse_window_days = 60\n"
    )
    wide = parse(text.encode(), "w.toml")
    a = plan_result("3d", uid="1.1", label="A")
    c = plan_result("3d", uid="1.2", label="B", date="20260301", review="20260301")
    assert len(run([a, c], []).courses) == 2
    assert len(run([a, c], [], policy=wide).courses) == 1


def test_severity_is_a_policy_setting():
    sev = dict(POLICY["audit.severity"], needs_documentation="warning")
    values = dict(POLICY.values, **{"audit.severity": sev})
    strict = replace(POLICY, values=values)
    f = one(run([plan_result("3d")], [charge(9, "77331")], policy=strict), "needs_documentation")
    assert f.severity == "warning"


# ---------------------------------------------------------------- charges file

HEADER = "patient_id,date_of_service,cpt,units,modifiers,plan,fee\n"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("P1,2026-01-05,7730X,1,,,", "unknown code '7730X'"),
        ("P1,2026-01-05,,1,,,", "missing code"),
        ("P1,05/01/2026,77301,1,,,", "date of service '05/01/2026' is not an ISO date"),
        ("P1,2026-02-30,77301,1,,,", "is not an ISO date"),
        ("P1,,77301,1,,,", "missing date of service"),
        (",2026-01-05,77301,1,,,", "missing patient ID"),
        ("  ,2026-01-05,77301,1,,,", "missing patient ID"),
        ("P1,2026-01-05,77301,two,,,", "units 'two' is not a whole number"),
        ("P1,2026-01-05,77301,-1,,,", "reversals"),
        ("P1,2026-01-05,77301,1,ABC,,", "modifier 'ABC'"),
        ("P1,2026-01-05,77301,1,,,abc", "fee 'abc' is not an amount"),
        ("P1,2026-01-05,77301,1,,,$1,200.00", "the row has 8 cells but the header has 7"),
        ("P1,2026-01-05,=HYPERLINK(1),1,,,", "unknown code"),
    ],
)
def test_bad_rows_are_rejected_with_line_and_reason(row, reason):
    text = HEADER + "P1,2026-01-05,77301,1,,,\n" + row + "\nP1,2026-01-05,77300,2,,,\n"
    result = parse_charges(text, POLICY["audit.columns"])
    assert [c.line for c in result.charges] == [2, 4]
    [rejected] = result.rejected
    assert rejected.line == 3 and reason in rejected.reason


def test_good_rows_in_every_accepted_form():
    text = (
        "\ufeffPatient_ID , Date_Of_Service,CPT,Units,Modifiers,Plan,Fee\n"
        'P1,2026-01-05,77301-26,,59 xs,VMAT,"$1,200.50"\n'
        "\n"
        'P1,20260105T10:00,g6015,2.0,,"two\nlines",12\n'
        "P1,2026-01-05 08:00:00,77300,3,26;TC,,\n"
    )
    result = parse_charges(text, POLICY["audit.columns"])
    assert result.rejected == ()
    first, second, third = result.charges
    assert (first.line, first.cpt, first.units, first.modifiers, first.plan, first.fee) == (
        2,
        "77301",
        1,
        ("26", "59", "XS"),
        "VMAT",
        Decimal("1200.50"),
    )
    assert (second.line, second.cpt, second.units, second.plan) == (4, "G6015", 2, "two\nlines")
    assert (third.line, third.modifiers) == (6, ("26", "TC"))


def test_columns_are_mapped_by_name():
    text = "MRN,DOS,ProcCode\nP1,2026-01-05,77301\n"
    mapping = dict(POLICY["audit.columns"], patient_id="mrn", date_of_service="DOS", cpt="proccode")
    result = parse_charges(text, mapping)
    assert result.rejected == () and result.charges[0].units == 1
    unmapped = parse_charges(text, POLICY["audit.columns"])
    assert unmapped.charges == ()
    assert [r.line for r in unmapped.rejected] == [1, 2]
    assert "the header has no column 'patient_id', 'date_of_service', 'cpt'" in (
        unmapped.rejected[0].reason
    )


def test_an_unclosed_quote_does_not_swallow_the_rows_after_it():
    text = (
        HEADER
        + 'P1,2026-01-05,77301,1,,"VMAT,\nP1,2026-01-05,77300,2,,,\nP2,2026-01-05,77295,1,,,\n'
    )
    result = parse_charges(text, POLICY["audit.columns"])
    assert [(c.line, c.cpt) for c in result.charges] == [(3, "77300"), (4, "77295")]
    [rejected] = result.rejected
    assert rejected.line == 2 and "unclosed quote? lines 3-4 are read again" in rejected.reason
    valid = HEADER + 'P1,2026-01-05,77301,1,,"two\nlines",\nP1,2026-01-05,77300,2,,,\n'
    assert [c.line for c in parse_charges(valid, {}).charges] == [2, 4]


def test_a_huge_field_is_rejected_not_fatal():
    text = HEADER + 'P1,"' + "x" * 200_000 + '",77301,1,,,\nP1,2026-01-05,77300,1,,,\n'
    result = parse_charges(text, {})
    assert [c.cpt for c in result.charges] == ["77300"]
    assert "field larger than field limit" in result.rejected[0].reason


def test_empty_and_binary_files_do_not_stop_the_audit():
    assert parse_charges("", {}).rejected[0].reason.startswith("the file is empty")
    garbage = HEADER + "P1,2026-01-05,77301,1,,,\n\x00\x01\x02,\xff\xfe\n"
    result = parse_charges(garbage, {})
    assert len(result.charges) == 1 and [r.line for r in result.rejected] == [3]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_text_is_read_and_audited_without_stopping(tail):
    text = HEADER + "P1,2026-01-05,77295,1,,,\n" + tail
    result = parse_charges(text, POLICY["audit.columns"])
    assert result.charges[0].cpt == "77295"
    lines = [c.line for c in result.charges] + [r.line for r in result.rejected]
    assert len(lines) == len(set(lines))  # every row is kept or rejected, once
    audited = audit([], result.charges, POLICY, rejected=result.rejected)
    assert to_table(audited) and to_html(audited) and to_csv(audited)


# ------------------------------------------------------------- sample data


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def planted():
    result = invoke("audit", SAMPLE_DATA, "--charges", PLANTED, "--ptp", PTP, "--format", "json")
    assert result.exit_code == 4, result.output
    return json.loads(result.stdout)


def planted_notes():
    text = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^- line (\d+): .*?: ([a-z_]+)[: ]", text, re.M)


def test_every_planted_error_is_found(planted):
    found = Counter(f["kind"] for f in planted["findings"])
    # RTC-11's second 77301 (line 29) is past the frequency limit and supported by no
    # plan: both findings (it was only the frequency finding before issue 19)
    assert found == {
        "billed_not_supported": 3,
        "expected_not_billed": 1,
        "code_higher_than_plan": 1,
        "code_lower_than_plan": 1,
        "bundled_pair": 2,
        "frequency": 1,
        "charge_before_approval": 1,
        "charge_timing_unverifiable": 1,
        "needs_documentation": 1,
        "ncci_ptp": 1,
        "code_not_in_force": 1,
        # RTC-18's two versions of one plan UID (case 18)
        "plan_versions_differ": 1,
        # one per course whose billed codes only UNAPPROVED plans support: 25 of the 28
        # sample plans are UNAPPROVED, as most exported plans are
        "supported_only_by_unapproved_plan": 22,
    }
    assert set(found) == set(KINDS)  # one planted error of every kind
    notes = [(int(line), kind) for line, kind in planted_notes() if kind in KINDS]
    assert len(notes) == 12
    for line, kind in notes:  # each README note names a line its finding involves
        assert any(
            f["kind"] == kind and line in [c["line"] for c in f["charges"]]
            for f in planted["findings"]
        ), (line, kind)
    rejected = [(r["line"], r["reason"]) for r in planted["charges_rejected"]]
    assert [line for line, _ in rejected] == [47, 48, 49]
    assert [line for line, kind in planted_notes() if kind == "rejected"] == ["47", "48", "49"]


def test_json_keys_are_stable(planted):
    assert set(planted) >= {"courses", "findings", "charges_rejected", "summary", "policy"}
    for f in planted["findings"]:
        assert set(f) >= {"kind", "severity", "patient_id", "codes", "message", "evidence"}
        assert f["severity"] in ("error", "warning", "info") and f["rule"] and f["source"]
    for c in planted["courses"]:
        assert set(c) >= {"id", "patient_id", "plans", "reasons", "charges"}
    assert planted["summary"]["findings"] == {"error": 10, "warning": 26, "info": 1}
    assert planted["summary"]["fees_at_stake"]["error"] > 0


def test_clean_charges_give_no_findings():
    result = invoke("audit", SAMPLE_DATA, "--charges", CLEAN, "--ptp", PTP, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # no error or info: only the warnings about the sample plans themselves (most are
    # UNAPPROVED; case 18 has two versions of one plan UID)
    assert {f["kind"] for f in data["findings"]} == {
        "supported_only_by_unapproved_plan",
        "plan_versions_differ",
    }
    assert data["charges_rejected"] == []
    assert data["summary"]["charges_checked"] == 53
    assert len(data["courses"]) == 26


# ------------------------------------------------------------------------ CLI


def test_exit_status_follows_fail_on(tmp_path):
    case_03, case_04 = (
        SAMPLE_DATA / "03_two_mlc_fields_no_oar",
        SAMPLE_DATA / "04_breast_tangents_wedged",
    )
    warning_only = ("audit", case_03, "--charges", PLANTED, "--patient", "RTC-03")
    assert invoke(*warning_only).exit_code == 0
    assert invoke(*warning_only, "--fail-on", "warning").exit_code == 4
    # case 04's plan is UNAPPROVED: a warning, unless a policy makes it info
    sev = dict(POLICY["audit.severity"], supported_only_by_unapproved_plan="info")
    table = ", ".join(f'{k} = "{v}"' for k, v in sev.items())
    policy = tmp_path / "info.toml"
    policy.write_text(
        '[policy]\nextends = "default"\nname = "i"\nversion = "1"\ndescription = "d"\n'
        f"[audit]\nseverity = {{ {table} }}\n"
    )
    info_only = ("audit", case_04, "--charges", PLANTED, "--patient", "RTC-04")
    assert invoke(*info_only, "--fail-on", "warning").exit_code == 4
    assert invoke(*info_only, "--policy", policy, "--fail-on", "warning").exit_code == 0
    assert invoke(*info_only, "--policy", policy, "--fail-on", "info").exit_code == 4
    assert invoke("audit", SAMPLE_DATA, "--charges", CLEAN).exit_code == 0
    assert invoke("audit", SAMPLE_DATA, "--charges", CLEAN, "--fail-on", "warning").exit_code == 4


def test_table_starts_with_the_summary():
    result = invoke("audit", SAMPLE_DATA, "--charges", PLANTED, "--ptp", PTP)
    lines = result.output.splitlines()
    assert lines[0].startswith("26 course(s) from 28 plan(s); 63 charge(s) checked")
    assert lines[1] == "findings: 10 error, 26 warning, 1 info"
    # fees at stake: the bundled, second, column 2 or unsupported charge, not the whole pair;
    # line 29 (frequency and billed_not_supported) is counted once
    assert lines[2] == "fees at stake: error 4,620.00, warning 13,565.00, info 80.00"
    assert "line 47: unknown code '7730X'" in result.output
    assert "advisory" in lines[-1]


def test_csv_has_a_row_per_finding_and_rejected_row():
    result = invoke("audit", SAMPLE_DATA, "--charges", PLANTED, "--format", "csv")
    assert "3 charges row(s) rejected, 63 read" in result.stderr  # not in the CSV itself
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert Counter(r["record"] for r in rows) == {"finding": 36, "rejected_charge": 3}
    assert {r["charge_lines"] for r in rows if r["record"] == "rejected_charge"} == {
        "47",
        "48",
        "49",
    }


def test_html_is_self_contained(tmp_path):
    out = tmp_path / "audit.html"
    result = invoke("audit", SAMPLE_DATA, "--charges", PLANTED, "--format", "html", "-o", out)
    assert result.exit_code == 4
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert "http" not in text.lower().replace("http-equiv", "")
    assert "code_higher_than_plan" in text
    assert f"Rejected lines of {PLANTED} (csv) (3)" in text
    assert "Content-Security-Policy" in text and "What the finding kinds mean" in text
    assert "3 rejected row(s)" in result.stderr


def test_hostile_strings_are_escaped_and_defused():
    pr = plan_result("3d", label="<script>alert(1)</script>")
    rows = charges_for("3d", patient="P1", plan="<script>alert(2)</script>")
    rows.append(charge(9, "77338", patient="P1", plan='"><img src=x onerror=alert(3)>'))
    rows.append(charge(10, "77295", patient='=HYPERLINK("http://x")'))
    result = run([pr], rows)
    page = to_html(result)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(3)&gt;" in page
    cells = [c for row in csv.reader(io.StringIO(to_csv(result))) for c in row]
    assert '\'=HYPERLINK("http://x")' in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@")]
    json.loads(to_json(result))


def test_output_is_never_written_inside_the_scanned_folder(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "charges.csv").write_text(HEADER)
    result = invoke(
        "audit", export, "--charges", export / "charges.csv", "-o", export / "audit.json"
    )
    assert result.exit_code == 2 and "never writes under" in result.output
    result = invoke(
        "audit", SAMPLE_DATA / "06_four_field_box_3d", "--charges", PLANTED, "-o", PLANTED
    )
    assert result.exit_code == 2 and "is one of the inputs" in result.output


def test_output_file_and_column_option(tmp_path):
    charges = tmp_path / "billing.csv"
    charges.write_text("MRN,DOS,ProcCode,Qty\nRTC-06,2026-01-06,77295,1\n")
    args = ("audit", SAMPLE_DATA / "06_four_field_box_3d", "--charges", charges)
    out = tmp_path / "out.json"
    result = invoke(*args, "--format", "json", "-o", out, "--column", "patient_id=MRN",
                    "--column", "date_of_service=DOS", "--column", "cpt=ProcCode",
                    "--column", "units=Qty")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 2 finding(s)" in result.output
    data = json.loads(out.read_text())
    assert {f["kind"] for f in data["findings"]} == {"expected_not_billed"}  # 77300, 77334
    bad = invoke(*args, "--column", "procedure=ProcCode")
    assert bad.exit_code == 2 and "FIELD=NAME" in bad.output


def test_unreadable_charges_are_reported_not_fatal(tmp_path):
    """A charges file of garbage is read to its end and reported, not a crash; since no
    charge could be read nothing was audited: exit 3 with the reason first."""
    charges = tmp_path / "charges.csv"
    charges.write_bytes(b"\xff\xfe\x00garbage\x00\n\x89PNG\r\n\x1a\n")
    result = invoke("audit", SAMPLE_DATA / "06_four_field_box_3d", "--charges", charges)
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("rtcode: nothing audited: no charge could be read")
    assert result.stdout.startswith("NOT AUDITED: nothing audited")
    assert "rejected charges rows" in result.stdout


def test_ptp_tables_split_over_files_and_kept_to_the_billed_codes(tmp_path):
    lines = PTP_TEXT.splitlines(keepends=True)
    first, second = tmp_path / "ptp-f1.txt", tmp_path / "ptp-f2.txt"
    first.write_text("".join(lines[:3]))  # notice, header, 77290/77280
    second.write_text("".join(lines[:2] + lines[3:]))  # the two other edits
    args = ("audit", SAMPLE_DATA, "--charges", PLANTED, "--format", "json")
    data = json.loads(invoke(*args, "--ptp", first, "--ptp", second).stdout)
    assert data["summary"]["ptp"] == {
        "file": "ptp-f1.txt, ptp-f2.txt",
        "edits": 3,
        "edits_about_billed_codes": 3,
        "rows_rejected": 0,
    }
    [f] = [f for f in data["findings"] if f["kind"] == "ncci_ptp"]
    assert f["source"] == SOURCE_PTP  # the file given is named in the evidence
    assert any(e.startswith("ptp-f1.txt line ") for e in f["evidence"])
    kept = parse_ptp(PTP_TEXT, "x", codes={"77290", "77280", "77301"})
    assert [(e.column1, e.column2) for e in kept.edits] == [("77290", "77280")]
    assert kept.edits_read == 3


def test_a_ptp_file_without_edits_is_reported(tmp_path):
    ptp = tmp_path / "ptp.txt"
    ptp.write_text("not a PTP file\n")
    result = invoke("audit", SAMPLE_DATA, "--charges", CLEAN, "--ptp", ptp)
    assert result.exit_code == 0 and "no PTP edit could be read" in result.stderr


def test_no_plan_found_exits_3_with_the_reason_first(tmp_path):
    charges = tmp_path / "charges.csv"
    charges.write_text(HEADER + "P1,2026-01-05,77301,1,,,\n")
    result = invoke("audit", tmp_path, "--charges", charges)
    assert result.exit_code == 3
    assert result.stderr.startswith("rtcode: nothing audited: no readable RT Plan")
    assert result.stdout.startswith("NOT AUDITED: nothing audited: no readable RT Plan")
    assert "billed_not_supported" in result.stdout


def test_more_than_half_the_rows_rejected_exits_3(tmp_path):
    charges = tmp_path / "charges.csv"
    rows = "RTC-06,2026-01-05,77295,1,,,\n" + "RTC-06,not a date,77300,1,,,\n" * 2
    charges.write_text(HEADER + rows)
    result = invoke("audit", SAMPLE_DATA / "06_four_field_box_3d", "--charges", charges)
    assert result.exit_code == 3, result.output
    assert "rejected" in result.stderr.splitlines()[0]


def test_exit_status_0_when_nothing_reaches_fail_on_and_4_when_something_does():
    clean = SAMPLE_DATA / "charges_clean.csv"
    assert invoke("audit", SAMPLE_DATA, "--charges", clean).exit_code == 0
    assert invoke("audit", SAMPLE_DATA, "--charges", clean, "--fail-on", "warning").exit_code == 4


def test_usage_errors_exit_2(tmp_path):
    assert invoke("audit", SAMPLE_DATA, "--charges", tmp_path / "none.csv").exit_code == 2
    assert invoke("audit", "--charges", PLANTED).exit_code == 2  # no EXPORT, no --db
    assert invoke("audit", SAMPLE_DATA, "--charges", PLANTED, "--store", tmp_path).exit_code == 2


def test_charges_from_standard_input_audit_as_the_file(planted):
    text = PLANTED.read_bytes()
    result = CliRunner().invoke(
        main,
        ["audit", str(SAMPLE_DATA), "--charges", "-", "--ptp", str(PTP), "--format", "json"],
        input=text,
    )
    assert result.exit_code == 4, result.output
    data = json.loads(result.stdout)
    assert data["findings"] == planted["findings"]


@pytest.mark.parametrize(
    "name",
    [
        "charges_planted.hl7",
        "charges_planted_837p.x12",
        "charges_planted_837i.x12",
        "charges_planted.xlsx",
        "charges_planted_us.csv",
    ],
)
def test_every_sample_charge_source_gives_the_findings_of_the_csv_on_the_command_line(name):
    def kinds(path):
        result = invoke("audit", SAMPLE_DATA, "--charges", path, "--format", "json")
        assert result.exit_code == 4, result.output
        return sorted(
            (f["kind"], f["severity"], f["patient_id"], tuple(f["codes"]))
            for f in json.loads(result.stdout)["findings"]
        )

    assert kinds(SAMPLE_DATA / "charges" / name) == kinds(PLANTED)


def test_audit_has_help():
    result = invoke("audit", "--help")
    assert result.exit_code == 0 and "--charges" in result.output and "advisory" in result.output


# ------------------------------------------------------- outcome (exit status)

from dataclasses import dataclass as _dataclass  # noqa: E402

from rtcode.audit.outcome import (  # noqa: E402
    CLEAN as STATUS_CLEAN,
)
from rtcode.audit.outcome import (  # noqa: E402
    FINDINGS,
    MAX_REJECTED_SHARE,
    NOT_AUDITED,
    audit_outcome,
)
from rtcode.sources.billing import RejectedRow  # noqa: E402


def rejected_rows(*lines):
    return [RejectedRow(n, "missing code", f"P1,2026-01-05,,{n}") for n in lines]


def test_outcome_clean_and_findings_follow_fail_on():
    clean = run([plan_result("3d")], charges_for("3d"))
    assert audit_outcome(clean, "info") == (STATUS_CLEAN, "no finding at or above info")
    warned = run([plan_result("3d", approval="UNAPPROVED")], charges_for("3d"))
    assert audit_outcome(warned, "error").status == STATUS_CLEAN
    assert audit_outcome(warned, "warning") == (FINDINGS, "1 finding(s) at or above warning")


def test_outcome_nothing_audited():
    no_plans = run([], charges_for("3d"))
    status, reason = audit_outcome(no_plans, "error")
    assert status == NOT_AUDITED and reason.startswith("nothing audited: no readable RT Plan")
    no_charges = run([plan_result("3d")], [], rejected=rejected_rows(2, 3), charges_source="c.csv")
    status, reason = audit_outcome(no_charges, "error")
    assert status == NOT_AUDITED
    assert reason == (
        "nothing audited: no charge could be read from c.csv (2 row(s) rejected, listed in"
        " the output)"
    )
    assert "\n" not in reason
    # a patient filter that matches nothing
    other = run([plan_result("3d")], charges_for("3d"), patients=["P9"])
    assert audit_outcome(other, "error").status == NOT_AUDITED


@pytest.mark.parametrize(
    ("accepted", "rejected", "status"), [(3, 3, STATUS_CLEAN), (3, 4, NOT_AUDITED)]
)
def test_outcome_more_than_half_the_rows_rejected(accepted, rejected, status):
    assert MAX_REJECTED_SHARE == 0.5
    rows = charges_for("3d")[:accepted]
    result = run([plan_result("3d")], rows, rejected=rejected_rows(*range(20, 20 + rejected)))
    outcome = audit_outcome(result, "error")
    assert outcome.status == status
    if status == NOT_AUDITED:
        assert outcome.reason.startswith("not audited: 4 of the 7 rows of the charges file")
    # the share counts the whole source, not only the patients shown
    filtered = run(
        [plan_result("3d")],
        rows + [charge(50, "77295", patient="P2")],
        rejected=rejected_rows(*range(20, 20 + rejected)),
        patients=["P1"],
    )
    assert audit_outcome(filtered, "error").status == STATUS_CLEAN


def test_outcome_not_audited_comes_first_in_every_format():
    result = run([], charges_for("3d"), charges_source="c.csv", charges_format="csv")
    outcome = audit_outcome(result, "error")
    assert to_table(result, outcome).startswith(f"NOT AUDITED: {outcome.reason}")
    assert next(iter(json.loads(to_json(result, outcome)))) == "not_audited"
    first = next(csv.DictReader(io.StringIO(to_csv(result, outcome))))
    assert (first["record"], first["message"]) == ("not_audited", outcome.reason)
    page = to_html(result, outcome)
    assert page.index("Not audited:") < page.index("course(s) from")
    # a clean or failing outcome changes nothing: the exit status says it
    ok = run([plan_result("3d")], charges_for("3d"))
    assert to_json(ok, audit_outcome(ok, "error")) == to_json(ok)
    assert to_table(ok, audit_outcome(ok, "error")) == to_table(ok)


# -------------------------------------------------------- --patient, everywhere


@_dataclass(frozen=True)
class ReadRow(RejectedRow):
    """A rejected row whose reader read its patient ID (billing readers that record
    one set ``patient_id``)."""

    patient_id: str | None = None


def test_patient_filter_covers_rejected_rows():
    rows = [
        ReadRow(20, "missing code", "P1,2026-01-05,,1", "P1"),
        ReadRow(21, "missing code", "P2,2026-01-05,,1", "P2"),
        ReadRow(22, "missing patient ID", ",2026-01-05,77300,1", None),
        RejectedRow(23, "the row has 9 cells but the header has 7", "x"),
    ]
    plans = [plan_result("3d"), plan_result("3d", uid="2.1", patient="P2", for_uid="2.9")]
    every = run(plans, charges_for("3d") + charges_for("3d", patient="P2", start=10), rejected=rows)
    assert [r.line for r in every.rejected] == [20, 21, 22, 23]
    assert every.rejected_without_patient == ()
    one_patient = run(
        plans,
        charges_for("3d") + charges_for("3d", patient="P2", start=10),
        rejected=rows,
        patients=["P1"],
    )
    assert {c.patient_id for c in one_patient.courses} == {"P1"}
    assert {c.patient_id for c in one_patient.charges} == {"P1"}
    assert {f.patient_id for f in one_patient.findings} <= {"P1"}
    # P2's rejected row goes; rows without a readable patient stay, marked
    assert [r.line for r in one_patient.rejected] == [20, 22, 23]
    assert one_patient.rejected_without_patient == (22, 23)
    assert any("2 rejected row(s) kept" in n for n in one_patient.notes)
    assert (one_patient.charges_read, one_patient.rows_rejected) == (6, 4)
    data = json.loads(to_json(one_patient))
    assert [r["kept_without_patient"] for r in data["charges_rejected"]] == [False, True, True]
    table = to_table(one_patient)
    assert "line 22: missing patient ID (no patient ID could be read" in table
    assert "line 20: missing code [" in table
    cells = {
        r["charge_lines"]: r["message"] for r in csv.DictReader(io.StringIO(to_csv(one_patient)))
    }
    assert cells["23"].endswith("(no patient ID could be read from the row: kept under --patient)")
    assert "kept under --patient" not in cells["20"]


# ---------------------------------------------------------------- CSV and HTML


def test_csv_appends_date_of_service_and_charge_source():
    rows = charges_for("3d") + [charge(9, "77301", day="2026-01-07", fee="900.00")]
    result = run([plan_result("3d")], rows, charges_source="b.hl7", charges_format="hl7")
    text = to_csv(result)
    header = next(csv.reader(io.StringIO(text)))
    assert header[:14] == [
        "record",
        "severity",
        "kind",
        "patient_id",
        "course",
        "codes",
        "message",
        "rule",
        "source",
        "charge_lines",
        "plans",
        "evidence",
        "fee",
        "fee_at_stake_basis",
    ]  # the existing columns keep their order
    assert header[14:] == ["date_of_service", "charge_source"]
    [row] = [r for r in csv.DictReader(io.StringIO(text)) if r["kind"] == "billed_not_supported"]
    assert (row["charge_lines"], row["date_of_service"]) == ("9", "2026-01-07")
    assert row["fee"] == "900.00" and row["charge_source"] == "b.hl7 (hl7)"
    assert row["source"].endswith("(docs/coding-rules.md#billed-codes-against-the-plans)")


def test_html_shows_the_charge_source_and_its_rejected_lines():
    result = run(
        [plan_result("3d")],
        charges_for("3d"),
        rejected=rejected_rows(7),
        charges_source="claims.x12",
        charges_format="x12",
    )
    page = to_html(result)
    source = page[page.index("<h2>Charges source</h2>") :]
    assert "<th>file</th><td>claims.x12</td>" in source
    assert "<th>format</th><td>x12</td>" in source
    assert "<th>rows rejected</th><td>1</td>" in source
    assert "Rejected lines of claims.x12 (x12) (1)" in page
    assert "<td>7</td><td>missing code</td>" in page
    assert json.loads(to_json(result))["summary"]["charges_format"] == "x12"
