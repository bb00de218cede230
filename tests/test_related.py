"""Codes that go with a plan: units, bundling, date validity, what cannot be known."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import builders as b
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.coding.classify import classify
from rtcode.coding.policy import load
from rtcode.coding.related import related_codes, valid_on


@pytest.fixture(scope="module")
def policy():
    return load("default")


def codes(policy, plan, ss=None, doses=(), day=dt.date(2026, 1, 5), pol=None):
    pol = pol or policy
    lp = b.linked(plan, ss, doses)
    c = classify(lp, pol)
    return c, {r.code: r for r in related_codes(lp, c, pol, day)}


def shaped_beams(n):
    return [
        b.beam(i + 1, b.control_points([b.shaped(), b.shaped()], [0, 1], gantry=i * 30))
        for i in range(n)
    ]


def test_basic_dosimetry_one_per_port_with_3d(policy):
    c, r = codes(policy, b.plan(shaped_beams(4)), b.structure_set(), [b.dose()])
    assert c.code == "77295"
    assert (r["77300"].units, r["77300"].kind) == (4, "code")


@pytest.mark.parametrize(("ports", "units"), [(10, 10), (11, 10)])
def test_basic_dosimetry_capped_at_ten_per_date(policy, ports, units):
    c, r = codes(policy, b.plan(shaped_beams(ports)), b.structure_set(), [b.dose()])
    assert r["77300"].units == units
    assert ("capped" in r["77300"].reason) is (ports > 10)


def test_no_basic_dosimetry_with_isodose_plans(policy):
    c, r = codes(policy, b.plan([b.beam(1, mlc=False)]))
    assert c.code == "77306"
    assert (r["77300"].units, r["77300"].kind) == (0, "included")


def vmat_plan():
    import test_classify as tc

    return b.plan([tc.vmat_like()])


def test_mlc_device_once_per_imrt_plan_and_bundling(policy):
    c, r = codes(policy, vmat_plan(), b.structure_set(), [b.dose()])
    assert c.code == "77301"
    assert (r["77338"].units, r["77338"].kind) == (1, "code")
    assert "77334" not in r  # MLC apertures of IMRT beams are in 77338


def test_compensator_imrt_gets_no_77338(policy):
    beam = b.beam(1, mlc=False, compensators=1)
    c, r = codes(policy, b.plan([beam]))
    assert c.code == "77301"
    assert r["77338"].units == 0 and "compensator" in r["77338"].reason
    assert r["77334"].units == 1  # the compensator itself is a device


def test_devices_one_per_device_per_port(policy):
    beams = [
        b.beam(1, mlc=False, wedges=[b.wedge()]),
        b.beam(2, mlc=False, gantry=180, wedges=[b.wedge()], boli=1),
    ]
    c, r = codes(policy, b.plan(beams))
    assert r["77334"].units == 2 and "wedge" in r["77334"].reason
    assert r["77332"].units == 1 and "bolus" in r["77332"].reason


def test_device_tier_setting(policy):
    tiers = dict(policy["devices.tier"], wedge="77333")
    pol = replace(policy, values={**policy.values, "devices.tier": tiers})
    c, r = codes(policy, b.plan([b.beam(1, mlc=False, wedges=[b.wedge()])]), pol=pol)
    assert r["77333"].units == 1 and r["77333"].setting == "devices.tier"


@pytest.mark.parametrize(
    ("day", "valid"),
    [(dt.date(2025, 12, 31), True), (dt.date(2026, 1, 1), False), (None, True)],
)
def test_delivery_codes_follow_the_date_of_service(policy, day, valid):
    c, r = codes(policy, vmat_plan(), b.structure_set(), [b.dose()], day=day)
    assert ("77385" in r and "77386" in r) is valid
    assert ("77385/77386" in r) is not valid
    # the planning codes did not change
    assert c.code == "77301" and r["77338"].units == 1


def test_valid_on_reads_the_policy(policy):
    assert valid_on("77014", dt.date(2025, 12, 31), policy)[0]
    assert not valid_on("77014", dt.date(2026, 1, 1), policy)[0]
    assert valid_on("77301", dt.date(2030, 1, 1), policy)[0]


def test_cannot_determine_codes_are_never_codes(policy):
    c, r = codes(policy, b.plan([b.beam(1, mlc=False)]))
    for code in ("77331", "77370", "77470"):
        assert r[code].kind == "cannot_determine" and r[code].units is None


def test_not_billable_plans_get_no_related_codes(policy):
    c, r = codes(policy, b.plan([b.beam(1, mlc=False)], intent="VERIFICATION"))
    assert r == {}


def test_stereotactic_hint_only_for_conformal_few_fraction_plans(policy):
    few = b.plan(shaped_beams(3))
    few = replace(few, fraction_groups=(replace(few.fraction_groups[0], fractions_planned=5),))
    assert codes(policy, few)[1]["77371-77373"].kind == "suggestion"
    many = replace(few, fraction_groups=(replace(few.fraction_groups[0], fractions_planned=6),))
    assert "77371-77373" not in codes(policy, many)[1]
    open_few = b.plan([b.beam(1, mlc=False)])
    open_few = replace(
        open_few, fraction_groups=(replace(open_few.fraction_groups[0], fractions_planned=1),)
    )
    assert "77371-77373" not in codes(policy, open_few)[1]


def test_proton_hints_and_bundled_special_port_plan(policy):
    beams = [
        b.beam(1, ion=True, radiation="PROTON", scan_mode="MODULATED", mlc=False),
        b.beam(2, ion=True, radiation="PROTON", scan_mode="MODULATED", mlc=False, gantry=90),
    ]
    c, r = codes(policy, b.plan(beams), b.structure_set(), [b.dose()])
    assert c.code == "77301"
    assert r["77321"].kind == "bundled" and r["77321"].setting == "bundling.imrt_bundles"
    assert r["77523"].kind == "suggestion"


# ------------------------------------------------ sample data, profiles, CLI


def scan_json(*args):
    result = CliRunner().invoke(main, ["scan", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return {p["path"]: p for p in json.loads(result.output)["plans"]}


def test_every_billable_sample_has_related_codes():
    for path, plan in scan_json(SAMPLE_DATA).items():
        if plan["category"] in ("not_billable", "undetermined"):
            assert plan["related_codes"] == [], path
            continue
        kinds = {r["code"]: r for r in plan["related_codes"]}
        assert {"77331", "77370", "77470"} <= set(kinds), path
        if plan["category"] in ("3d", "imrt"):
            ports = sum(1 for beam in plan["beams"] if beam["treatment_port"])
            if all(b["technique"] == "gamma_knife" for b in plan["beams"]):  # a placeholder
                assert kinds["77300"]["kind"] == "cannot_determine", path
            else:
                assert kinds["77300"]["units"] == min(ports, 10), path
        if plan["category"] == "imrt" and "17_proton" not in path:
            assert kinds["77338"]["units"] == 1, path


def test_switching_a_setting_changes_the_sample_code():
    electron = SAMPLE_DATA / "08_electron_cutout"
    [default] = scan_json(electron).values()
    assert default["code"] == "77307"
    result = CliRunner().invoke(
        main, ["scan", str(electron), "--format", "json", "--policy", "example-local"]
    )
    [local] = json.loads(result.output)["plans"]
    assert local["code"] == "77321" and local["category"] == "special_port_plan"
    [ev] = [e for e in local["evidence"] if e["rule"] == "electron.plan_code"]
    assert ev["setting"] == "electron.plan_code" and ev["fired"]
    assert json.loads(result.output)["policy"]["name"] == "example-local"


def test_electron_special_port_plan_lists_77321_once():
    """example-local codes electron plans 77321: the planning code, not also a related
    code beside it ("77321 ... with 77334 x1, 77321 x1" before)."""
    electron = str(SAMPLE_DATA / "08_electron_cutout")
    runner = CliRunner()
    result = runner.invoke(
        main, ["scan", electron, "--format", "json", "--policy", "example-local"]
    )
    [plan] = json.loads(result.output)["plans"]
    assert plan["code"] == "77321"
    related = [r["code"] for r in plan["related_codes"]]
    assert "77321" not in related and len(related) == len(set(related))
    table = runner.invoke(main, ["scan", electron, "--policy", "example-local"]).output
    assert "    with 77334 x1\n" in table


def test_dedupe_keeps_the_first_entry_and_merges_other_evidence():
    from rtcode.coding.related import RelatedCode, dedupe

    codes = [
        RelatedCode("77300", 4, "code", "one per port", "related.max_basic_dosimetry_per_date"),
        RelatedCode("77321", None, "suggestion", "particle beams"),
        RelatedCode("77300", 2, "code", "one per port"),  # same evidence: dropped
        RelatedCode("77321", 1, "code", "electron plan"),  # other evidence: merged
        RelatedCode("77307", 1, "code", "the plan's own code"),  # the planning code
        RelatedCode("77307", None, "not_valid", "not valid: 77307 ended"),
    ]
    assert dedupe(codes, "77307") == (
        RelatedCode("77300", 4, "code", "one per port", "related.max_basic_dosimetry_per_date"),
        RelatedCode("77321", None, "suggestion", "particle beams; also: electron plan"),
        RelatedCode("77307", None, "not_valid", "not valid: 77307 ended"),
    )
    assert dedupe(codes[:2], None) == tuple(codes[:2])


def test_medicare_flags_imrt_for_inverse_planning_evidence():
    result = CliRunner().invoke(
        main,
        ["scan", str(SAMPLE_DATA / "11_vmat_two_arcs"), "--format", "json", "--policy", "medicare"],
    )
    [plan] = json.loads(result.output)["plans"]
    assert any(f["flag"] == "inverse_planning_evidence_required" for f in plan["flags"])


def test_date_option_selects_delivery_codes():
    vmat = SAMPLE_DATA / "11_vmat_two_arcs"
    [after] = scan_json(vmat).values()
    [before] = scan_json(vmat, "--date", "2025-06-30").values()
    assert before["date_of_service"] == "2025-06-30" and after["date_of_service"] == "2026-01-05"
    assert {"77385", "77386"} <= {r["code"] for r in before["related_codes"]}
    assert "77385" not in {r["code"] for r in after["related_codes"]}
