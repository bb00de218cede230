"""``--deidentify``: no patient name, ID, date or UID from the inputs in any output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pydicom
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.model.codes import Category
from rtcode.output.deidentify import ENV_KEY, Pseudonyms, deidentify
from rtcode.report.html import report_html
from rtcode.report.patients import build_report, report_json, to_text

KEY = {ENV_KEY: "test-key-not-secret"}


def identifiers(*folders: Path) -> dict[str, set[str]]:
    """Every patient name and ID, date and SOP/series/study/frame UID in the inputs."""
    found: dict[str, set[str]] = {"ids": set(), "names": set(), "dates": set(), "uids": set()}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:
                continue
            if "SOPClassUID" not in ds:
                continue
            for el in ds.iterall():
                value = str(el.value).strip() if el.value is not None else ""
                if not value:
                    continue
                if el.keyword == "PatientID":
                    found["ids"].add(value)
                elif el.keyword == "PatientName":
                    found["names"].add(value)
                elif el.VR in ("DA", "DT") and len(value) >= 8 and value[:8].isdigit():
                    found["dates"].add(value[:8])
                elif el.keyword in (
                    "SOPInstanceUID",
                    "StudyInstanceUID",
                    "SeriesInstanceUID",
                    "FrameOfReferenceUID",
                ):
                    found["uids"].add(value)
    return found


def leaks(text: str, found: dict[str, set[str]]) -> list[str]:
    out = []
    for pid in found["ids"]:
        pattern = (
            re.escape(pid) if len(pid) >= 3 else rf"(?<![^/\\\s\"']){re.escape(pid)}(?![^/\\\s\"'])"
        )
        if re.search(pattern, text):
            out.append(f"patient ID {pid!r}")
    for name in found["names"]:
        for form in {name, name.replace("^", " ").strip(), name.replace("^", ", ").strip()}:
            if form and form.lower() in text.lower():
                out.append(f"patient name {form!r}")
    for d in found["dates"]:
        for form in (d, f"{d[:4]}-{d[4:6]}-{d[6:8]}", f"{d[6:8]}.{d[4:6]}.{d[:4]}"):
            if form in text:
                out.append(f"date {form}")
    out += [f"UID {u}" for u in found["uids"] if u in text]
    return out


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "jsonl"])
def test_scan_outputs_carry_no_identifier(fmt):
    found = identifiers(SAMPLE_DATA)
    plain = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--format", fmt])
    assert leaks(plain.stdout, found), "the check must see identifiers in a normal scan"
    r = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA), "--format", fmt, "--deidentify"], env=KEY
    )
    assert r.exit_code == 0, r.output
    assert leaks(r.stdout, found) == []
    assert "PAT-" in r.stdout


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "jsonl"])
def test_deidentify_renders_the_pseudonymised_results(fmt, tmp_path):
    """--deidentify pseudonymises the results, then renders them as every scan is
    rendered: the output is the format's rendering of ``deidentify(result)``, on
    standard output and in a file alike."""
    from rtcode.output.formats import FORMATS, plan_row

    result = deidentify(scan([str(SAMPLE_DATA)], load()), Pseudonyms(KEY[ENV_KEY].encode(), True))
    written: list[str] = []

    class Collect:
        write = written.append

    fmt_writer = FORMATS[fmt](Collect())
    for p in result.plans:
        fmt_writer.add(plan_row(p, result.policy).parts[fmt])
    fmt_writer.end(result.inventory.tally(), len(result.plans), False, result.policy)
    expected = "".join(written)
    args = ["scan", str(SAMPLE_DATA), "--format", fmt, "--deidentify", "--no-cache"]
    r = CliRunner().invoke(main, args, env=KEY)
    assert r.exit_code == 0, r.output
    assert r.stdout == expected and "PAT-" in expected
    out = tmp_path / f"out.{fmt}"
    r = CliRunner().invoke(main, [*args, "-o", str(out)], env=KEY)
    assert r.exit_code == 0, r.output
    assert out.read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_inspect_outputs_carry_no_identifier(fmt):
    case = SAMPLE_DATA / "05_breast_tangents_fif"
    found = identifiers(case)
    args = ["inspect", str(case / "RP.dcm"), "--format", fmt, "--control-points"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 0, plain.output
    if fmt != "csv":  # the CSV has beams and control points only
        assert "RTC-05" in plain.stdout, "the check must see identifiers in a normal inspect"
        assert leaks(plain.stdout, found)
    r = CliRunner().invoke(main, [*args, "--deidentify"], env=KEY)
    assert r.exit_code == 0, r.output
    assert leaks(r.stdout, found) == []
    assert "RTC-05" not in r.stdout and "Sample^Case05" not in r.stdout
    if fmt != "csv":
        assert Pseudonyms(KEY[ENV_KEY].encode(), True).patient_id("RTC-05") in r.stdout
    assert r.stdout.count("\n") == plain.stdout.count("\n")  # nothing else changes shape


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "html"])
def test_audit_outputs_carry_no_identifier(fmt):
    found = identifiers(SAMPLE_DATA)
    charges = SAMPLE_DATA / "charges_planted.csv"
    args = ["audit", str(SAMPLE_DATA), "--charges", str(charges), "--format", fmt]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 4, plain.output  # the planted errors
    assert "RTC-05" in plain.stdout and leaks(plain.stdout, found)
    assert "01/05/2026" in plain.stdout  # a rejected row quotes its non-ISO date
    r = CliRunner().invoke(main, [*args, "--deidentify"], env=KEY)
    assert r.exit_code == 4, r.output  # the same findings
    assert leaks(r.stdout, found) == []
    assert "RTC-" not in r.stdout and "01/05/2026" not in r.stdout
    assert Pseudonyms(KEY[ENV_KEY].encode(), True).patient_id("RTC-05") in r.stdout


def test_audit_rejected_rows_keep_their_line_but_not_their_text():
    from rtcode.sources.billing import RejectedRow

    rows = [
        RejectedRow(48, "date of service '01/05/2026' is not an ISO date", "MRN9,01/05/2026"),
        RejectedRow(49, "missing patient ID", ",2026-01-05,77300"),
    ]
    clean = deidentify(rows, Pseudonyms(b"k", True))
    assert clean == [
        RejectedRow(48, "date of service (withheld) is not an ISO date", ""),
        RejectedRow(49, "missing patient ID", ""),
    ]


def command(name: str) -> click.Command:
    found = main.get_command(click.Context(main), name)
    assert found is not None
    return found


def test_deidentify_option_reads_the_same_on_every_command():
    helps = {
        name: next(p.help for p in command(name).params if p.name == "deidentify")
        for name in ("scan", "inspect", "audit")
    }
    assert len(set(helps.values())) == 1, helps


def test_report_outputs_carry_no_identifier(tmp_path):
    found = identifiers(SAMPLE_DATA)
    runner = CliRunner()
    for fmt in ("table", "json"):
        r = runner.invoke(
            main, ["report", str(SAMPLE_DATA), "--format", fmt, "--deidentify"], env=KEY
        )
        assert r.exit_code == 0, r.output
        assert leaks(r.stdout, found) == [], fmt
    out = tmp_path / "r.html"
    case = str(SAMPLE_DATA / "06_four_field_box_3d")
    r = runner.invoke(main, ["report", case, "--html", str(out), "--deidentify"], env=KEY)
    assert r.exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert leaks(text, identifiers(SAMPLE_DATA / "06_four_field_box_3d")) == []
    assert "de-identified" in text and "PAT-" in text


def test_real_exports_carry_no_identifier(realdata):
    found = identifiers(realdata)
    report = build_report(scan([str(realdata)], load("default")), "auto")
    clean = deidentify(report, Pseudonyms(b"k", True))
    texts = {
        "text": to_text(clean),
        "json": json.dumps(report_json(clean), ensure_ascii=False),
        "html": report_html(clean, figures=False),
    }
    assert leaks(json.dumps(report_json(report), ensure_ascii=False), found)
    for kind, text in texts.items():
        assert leaks(text, found) == [], kind


# ------------------------------------------------------------ pseudonyms


def test_pseudonyms_are_stable_with_a_key_and_differ_between_keys():
    runner = CliRunner()
    case = str(SAMPLE_DATA / "06_four_field_box_3d")

    def ids(env):
        r = runner.invoke(main, ["scan", case, "--format", "json", "--deidentify"], env=env)
        (plan,) = json.loads(r.stdout)["plans"]
        return plan["patient_id"], plan["plan_date"], plan["sop_instance_uid"], r.stderr

    first, second = ids(KEY), ids(KEY)
    assert first == second and first[3] == ""
    other = ids({ENV_KEY: "another key"})
    assert other[:3] != first[:3]
    assert re.fullmatch(r"PAT-[0-9A-F]{10}", first[0])
    assert re.fullmatch(r"DATE-[0-9A-F]{8}", first[1])
    assert re.fullmatch(r"2\.25\.\d+", first[2])


def test_without_a_key_pseudonyms_hold_for_one_output_and_it_says_so():
    r = CliRunner().invoke(
        main,
        ["scan", str(SAMPLE_DATA / "18_duplicate_sop_uid"), "--format", "json", "--deidentify"],
        env={ENV_KEY: ""},
    )
    assert f"{ENV_KEY} is not set" in r.stderr
    a, b = json.loads(r.stdout)["plans"]
    assert a["patient_id"] == b["patient_id"] != "RTC-18"  # one patient, one pseudonym


def test_one_patient_keeps_one_pseudonym_across_plan_structures_and_dose():
    result = deidentify(
        scan([str(SAMPLE_DATA / "06_four_field_box_3d")], load("default")), Pseudonyms(b"k", True)
    )
    (p,) = result.plans
    lp = p.linked
    assert lp.plan.patient_id == lp.structure_set.patient_id == lp.doses[0].patient_id
    assert lp.plan.patient_name == lp.structure_set.patient_name
    assert lp.plan.patient_name.startswith("NAME-")
    assert lp.plan.referenced_structure_set_uid == lp.structure_set.sop_instance_uid
    assert p.date_of_service == p.linked.plan.date  # the same day, the same pseudonym
    assert p.date_of_service.isoformat().startswith("DATE-")


def test_the_input_is_left_unchanged_and_types_are_kept():
    result = scan([str(SAMPLE_DATA / "06_four_field_box_3d")], load("default"))
    clean = deidentify(result, Pseudonyms(b"k", True))
    assert result.plans[0].linked.plan.patient_id == "RTC-06"
    c = clean.plans[0].classification
    assert c.category is Category.THREE_D and c.code == "77295"
    assert clean.policy is result.policy
    # shared objects stay shared: the ROIs the classifier names are the structure set's
    rois = clean.plans[0].linked.structure_set.rois
    assert all(any(t is r for r in rois) for t in c.targets)


def test_identifiers_inside_paths_and_text(tmp_path):
    from rtcode.model.facts import ReadError

    found_in = scan([str(SAMPLE_DATA / "06_four_field_box_3d")], load("default"))
    found_in.inventory.errors.append(
        ReadError("exports/RTC-06/Sample_Case06/CT.1.2.840.99.20260105.1.dcm", "planned 2026-01-05")
    )
    clean = deidentify(found_in, Pseudonyms(b"k", True))
    err = clean.inventory.errors[-1]
    assert "RTC-06" not in err.path and "Sample_Case06" not in err.path
    assert "20260105" not in err.path and "2026-01-05" not in err.error
    assert err.path.startswith("exports/PAT-") and err.path.endswith(".dcm")


def test_short_ids_are_replaced_only_where_they_stand_alone():
    from rtcode.model.facts import ReadError, StructureSet

    ss = StructureSet("data/7/RS.dcm", "1.2.3.4.5", "7", "beam 7", None, ())
    clean = deidentify([ss, ReadError("data/7/RS.dcm", "beam 7 of 17")], Pseudonyms(b"k", True))
    assert clean[0].patient_id.startswith("PAT-")
    assert clean[0].path == f"data/{clean[0].patient_id}/RS.dcm"
    assert clean[1].error == "beam 7 of 17"  # not a patient ID there


def test_a_date_value_goes_and_so_does_its_text():
    import datetime as dt
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Charge:  # the shape an audit result might have
        patient_id: str
        service_day: dt.date
        note: str

    (clean,) = deidentify(
        [Charge("MRN-0042", dt.date(2026, 1, 5), "billed 2026-01-05 for MRN-0042")],
        Pseudonyms(b"k", True),
    )
    assert (
        clean.service_day
        == clean.service_day.isoformat()
        == Pseudonyms(b"k", True).date("20260105")
    )
    with pytest.raises(TypeError):
        _ = clean.service_day < dt.date(2026, 1, 1)
    assert "2026-01-05" not in clean.note and "MRN-0042" not in clean.note
    assert clean.note == f"billed {Pseudonyms(b'k', True).date('20260105')} for {clean.patient_id}"
