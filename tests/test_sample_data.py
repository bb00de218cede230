"""Every plan in sample_data/ gets the code its README says, with a usable JSON shape."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main


def readme_table():
    text = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["case", "plan file", "what it shows", "code", "category"]
    out = []
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.append(dict(zip(header, cells, strict=True)))
    return out


CASES = readme_table()


@pytest.fixture(scope="module")
def scanned():
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_sample_plan_is_listed_and_scanned(scanned):
    found = sorted(p["path"] for p in scanned["plans"])
    expected = sorted(str(SAMPLE_DATA / c["plan file"]) for c in CASES)
    assert found == expected
    assert scanned["errors"] == []


@pytest.mark.parametrize("case", CASES, ids=[c["plan file"] for c in CASES])
def test_sample_plan_code(scanned, case):
    [plan] = [p for p in scanned["plans"] if p["path"] == str(SAMPLE_DATA / case["plan file"])]
    expected_code = None if case["code"] == "none" else case["code"]
    assert (plan["code"], plan["category"]) == (expected_code, case["category"]), [
        e["finding"] for e in plan["evidence"] if e["fired"]
    ]
    # Every answer carries its evidence.
    assert plan["evidence"]
    for item in plan["evidence"]:
        assert set(item) >= {"rule", "fired", "finding", "dicom_path", "observed", "threshold"}
        if item["dicom_path"]:
            assert re.match(r"^.+::[A-Za-z]+", item["dicom_path"]), item["dicom_path"]


def test_json_contract(scanned):
    assert set(scanned) >= {"rtcode_version", "policy", "plans", "errors"}
    assert set(scanned["policy"]) >= {"name", "version"}
    keys = {
        "path", "sop_instance_uid", "patient_id", "plan_label", "code", "category", "confidence",
        "evidence", "flags", "alternatives", "beams", "structure_set", "dose",
    }  # fmt: skip
    for plan in scanned["plans"]:
        assert keys <= set(plan)
        assert plan["category"] in {
            "simple_isodose", "complex_isodose", "3d", "imrt", "brachytherapy",
            "not_billable", "undetermined",
        }  # fmt: skip
        assert plan["confidence"] in {"high", "medium", "low"}


def by_case(scanned, folder):
    return [p for p in scanned["plans"] if f"/{folder}/" in p["path"]]


def test_setup_and_imaging_beams_are_reported_but_not_counted(scanned):
    [plan] = by_case(scanned, "14_setup_and_imaging_beams")
    ports = [b for b in plan["beams"] if b["treatment_port"]]
    others = [b for b in plan["beams"] if not b["treatment_port"]]
    assert len(ports) == 2 and len(others) == 3
    assert all(b["excluded_reason"] for b in others)


def test_missing_structure_set_gives_alternative_and_flag(scanned):
    [plan] = by_case(scanned, "07_four_field_box_no_rtstruct")
    assert plan["structure_set"]["status"] == "not_in_export"
    assert [a["code"] for a in plan["alternatives"]] == ["77295"]
    assert any(f["flag"] == "companion_missing" for f in plan["flags"])


def test_links_and_roles(scanned):
    [plan] = by_case(scanned, "05_breast_tangents_fif")
    ss = plan["structure_set"]
    assert ss["status"] == "linked"
    assert "PTV_Breast" in ss["targets"]
    heart = [r for r in ss["rois"] if r["name"] == "Heart"][0]
    assert (heart["interpreted_type"], heart["role"], heart["role_from"]) == (
        None,
        "organ_at_risk",
        "name",
    )
    [dose] = plan["dose"]
    assert dose["has_dvh"] and "PTV_Breast" in dose["dvh_rois"]


def test_duplicate_uid_plans_are_reported_separately(scanned):
    plans = by_case(scanned, "18_duplicate_sop_uid")
    assert len({p["sop_instance_uid"] for p in plans}) == 1
    assert sorted(p["code"] for p in plans) == ["77306", "77307"]
    assert all(any(f["flag"] == "linking" for f in p["flags"]) for p in plans)


def test_images_are_counted_not_read(scanned):
    n_ct = len(list(SAMPLE_DATA.rglob("CT.*.dcm")))
    assert n_ct > 0
    assert scanned["summary"]["images_skipped"] == n_ct
