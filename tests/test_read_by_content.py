"""Objects recognised by their content, whatever their SOP class; nothing skipped silently.

Real exports carry ordinary RT Plans under vendors' private SOP classes (Varian
Halcyon/Ethos, ViewRay MRIdian): they must be read and coded like any other plan, with a
flag naming the class. Every file that is neither an RT object nor an image is listed
with its reason, in every output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.coding.policy import load
from rtcode.dicom import read as reader
from rtcode.dicom.vendors import OTHER_STANDARD_CLASSES, PRIVATE_SOP_CLASSES
from rtcode.engine.scan import Runner, scan
from rtcode.output.render import scan_json

POLICY = load("default")
CASE_06 = SAMPLE_DATA / "06_four_field_box_3d"
RT_PLAN_CLASS = "1.2.840.10008.5.1.4.1.1.481.5"
HALCYON, VIEWRAY = sorted(PRIVATE_SOP_CLASSES)  # 1.2.246..., 2.16.840...
UNKNOWN = "1.2.826.0.1.3680043.9.9999.1"  # a class nobody registered


def rewritten(src: Path, dest: Path, sop_class: str | None, **changes: object) -> Path:
    """A copy of ``src`` under another SOP class (in the file meta and the data set; None:
    no class at all), with other elements changed or (value None) removed."""
    ds = pydicom.dcmread(src)
    if sop_class is None:
        del ds.SOPClassUID
        del ds.file_meta.MediaStorageSOPClassUID
    else:
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=sop_class is not None)
    return dest


def export(tmp_path: Path, plan_class: str | None, **changes: object) -> Path:
    """Case 06 (four-field box, structure set and dose) with its plan under another
    class: the whole export, so the plan links and codes as 3-D."""
    folder = tmp_path / "export"
    for f in CASE_06.iterdir():
        if f.name != "RP.dcm":
            (folder / f.name).parent.mkdir(parents=True, exist_ok=True)
            (folder / f.name).write_bytes(f.read_bytes())
    rewritten(CASE_06 / "RP.dcm", folder / "RP.dcm", plan_class, **changes)
    return folder


def coded(folder: Path) -> dict:
    return scan_json(scan([str(folder)], POLICY))


@pytest.fixture(scope="module")
def standard() -> dict:
    data = coded(CASE_06)
    (plan,) = data["plans"]
    return plan


@pytest.mark.parametrize("sop_class", [HALCYON, VIEWRAY])
def test_a_plan_in_a_vendors_private_class_is_coded_as_the_standard_one(
    tmp_path, standard, sop_class
):
    data = coded(export(tmp_path, sop_class))
    (plan,) = data["plans"]
    assert (plan["code"], plan["category"]) == (standard["code"], standard["category"])
    assert [b["technique"] for b in plan["beams"]] == [b["technique"] for b in standard["beams"]]
    assert plan["structure_set"]["status"] == "linked"
    (flag,) = [f for f in plan["flags"] if f["flag"] == "private_sop_class"]
    assert flag["severity"] == "info"
    assert sop_class in flag["message"]
    assert PRIVATE_SOP_CLASSES[sop_class].vendor in flag["message"]
    assert flag["dicom_path"].endswith("RP.dcm::SOPClassUID")
    assert plan["confidence"] == standard["confidence"]  # a known quirk costs no confidence
    assert data["skipped"] == [] and data["errors"] == []


def test_an_unknown_class_with_a_plans_content_is_read_flagged_and_less_sure(tmp_path, standard):
    (plan,) = coded(export(tmp_path, UNKNOWN))["plans"]
    assert plan["code"] == standard["code"]
    (flag,) = [f for f in plan["flags"] if f["flag"] == "unknown_sop_class"]
    assert flag["severity"] == "warning" and UNKNOWN in flag["message"]
    assert plan["confidence"] == "medium"


def test_a_plan_without_any_sop_class_is_read_by_its_content(tmp_path, standard):
    (plan,) = coded(export(tmp_path, None))["plans"]
    assert plan["code"] == standard["code"]
    assert "sop_class_missing" in [f["flag"] for f in plan["flags"]]


@pytest.mark.parametrize(
    ("file", "modality", "what"),
    [("RS.dcm", "RTSTRUCT", "structure_sets"), ("RD.dcm", "RTDOSE", "doses")],
)
def test_structure_sets_and_doses_in_unknown_classes_are_read_and_linked(
    tmp_path, standard, file, modality, what
):
    folder = export(tmp_path, RT_PLAN_CLASS)
    rewritten(CASE_06 / file, folder / file, UNKNOWN)
    data = coded(folder)
    assert data["summary"][what] == 1
    (plan,) = data["plans"]
    assert plan["code"] == standard["code"]  # still linked: 3-D
    assert "unknown_sop_class" in [f["flag"] for f in plan["flags"]]


def test_a_modality_alone_makes_a_plan_that_is_then_undetermined_not_lost(tmp_path):
    # Modality RTPLAN, no beams, unknown class: found, so listed, with why it has no code
    path = rewritten(
        CASE_06 / "RP.dcm",
        tmp_path / "RP.dcm",
        UNKNOWN,
        BeamSequence=None,
        FractionGroupSequence=None,
    )
    (plan,) = coded(path)["plans"]
    assert plan["category"] == "undetermined"
    assert "no_treatment_beam" in [f["flag"] for f in plan["flags"]]


def skipped_files(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    rewritten(  # a treatment record in a private class: Modality says what it is
        CASE_06 / "RP.dcm",
        folder / "record.dcm",
        UNKNOWN,
        Modality="RTRECORD",
        BeamSequence=None,
        FractionGroupSequence=None,
    )
    rewritten(  # a standard treatment record: its class says so, from the file meta
        CASE_06 / "RP.dcm", folder / "beams_record.dcm", "1.2.840.10008.5.1.4.1.1.481.4"
    )
    rewritten(  # something else entirely
        CASE_06 / "RP.dcm",
        folder / "other.dcm",
        UNKNOWN,
        Modality="OT",
        BeamSequence=None,
        FractionGroupSequence=None,
    )
    (folder / "notes.txt").write_text("export notes\n")
    return folder


def test_every_skipped_file_is_listed_with_its_class_modality_and_reason(tmp_path):
    folder = skipped_files(tmp_path)
    data = coded(folder)
    assert data["plans"] == [] and data["errors"] == []
    listed = {Path(s["path"]).name: s for s in data["skipped"]}
    assert set(listed) == {"record.dcm", "beams_record.dcm", "other.dcm", "notes.txt"}
    assert listed["record.dcm"]["modality"] == "RTRECORD"
    assert "RTRECORD" in listed["record.dcm"]["reason"]
    assert listed["beams_record.dcm"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.481.4"
    assert (
        listed["beams_record.dcm"]["reason"]
        == OTHER_STANDARD_CLASSES["1.2.840.10008.5.1.4.1.1.481.4"]
    )
    assert UNKNOWN in listed["other.dcm"]["reason"] and "OT" in listed["other.dcm"]["reason"]
    assert listed["other.dcm"]["sop_class_uid"] == UNKNOWN
    assert "not DICOM" in listed["notes.txt"]["reason"]
    summary = data["summary"]
    assert summary["other_dicom_skipped"] + summary["non_dicom_skipped"] == len(listed)


def test_the_table_counts_skipped_files_by_reason_and_jsonl_lists_them(tmp_path):
    folder = skipped_files(tmp_path)
    table = CliRunner().invoke(main, ["scan", str(folder), "--no-cache"])
    assert table.exit_code == 1  # no plan found
    lines = table.output.splitlines()
    assert (
        "1 skipped: RT treatment record (Modality RTRECORD): it records delivery, not planning"
        in lines
    )
    assert sum(1 for line in lines if " skipped: " in line and line[0].isdigit()) == 4
    jsonl = CliRunner().invoke(main, ["scan", str(folder), "--no-cache", "--format", "jsonl"])
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert sorted(Path(r["path"]).name for r in records if r["record"] == "skipped") == [
        "beams_record.dcm",
        "notes.txt",
        "other.dcm",
        "record.dcm",
    ]


def test_inspect_says_why_a_file_is_not_a_plan(tmp_path):
    folder = skipped_files(tmp_path)
    result = CliRunner().invoke(main, ["inspect", str(folder / "record.dcm")])
    assert result.exit_code == 1
    assert "RTRECORD" in result.output


def test_the_skipped_list_and_the_flag_survive_the_scan_cache(tmp_path):
    folder = skipped_files(tmp_path)
    rewritten(CASE_06 / "RP.dcm", folder / "RP.dcm", HALCYON)
    cache = tmp_path / "cache.sqlite"
    args = ["scan", str(folder), "--format", "json", "--cache", str(cache), "-j", "1"]
    cold, warm = (CliRunner().invoke(main, args) for _ in range(2))
    assert cold.exit_code == warm.exit_code == 0
    assert cold.output == warm.output
    data = json.loads(warm.output)
    assert len(data["skipped"]) == 4
    assert "private_sop_class" in [f["flag"] for f in data["plans"][0]["flags"]]
    uncached = CliRunner().invoke(main, [*args[:4], "--no-cache"])
    assert json.loads(uncached.output)["skipped"] == data["skipped"]


def test_a_private_class_plan_takes_the_fast_path_and_it_agrees_with_pydicom(tmp_path):
    from rtcode.dicom.extract import extract

    path = rewritten(CASE_06 / "RP.dcm", tmp_path / "RP.dcm", HALCYON)
    result = reader.read(reader.FileEntry(path, str(path), explicit=True))
    assert result.kind == "rt" and result.sop_class_uid == HALCYON
    assert isinstance(result.dataset, reader.RawDataset)  # read from its bytes
    fast = extract(result.dataset, result.modality, str(path))
    slow = extract(result.dataset.dataset(), result.modality, str(path))
    assert [b.name for b in fast.beams] == [b.name for b in slow.beams]
    assert fast.sop_instance_uid == slow.sop_instance_uid


def test_images_and_standard_non_rt_classes_are_skipped_from_the_file_meta():
    assert reader.skipped_by_class("1.2.840.10008.5.1.4.1.1.2")[0] == "image"  # CT
    assert reader.skipped_by_class("1.2.840.10008.5.1.4.1.1.481.1")[0] == "other_dicom"  # RT Image
    for uid in (RT_PLAN_CLASS, HALCYON, VIEWRAY, UNKNOWN):
        assert reader.skipped_by_class(uid) is None  # read: the class or the content decides


def test_the_listener_stores_and_codes_a_plan_in_a_private_class(tmp_path):
    pytest.importorskip("pynetdicom", reason="rtcode listen needs the [net] extra")
    from test_listen import send  # noqa: PLC0415  (its fixtures need pynetdicom)

    from rtcode.sources import store
    from rtcode.sources.listen import Listener, ListenSettings
    from rtcode.sources.results_db import query

    assert HALCYON in store.RT_CLASSES and VIEWRAY in store.RT_CLASSES
    listener = Listener(
        ListenSettings(store_dir=tmp_path / "store", db_path=tmp_path / "r.sqlite", port=0),
        POLICY,
    )
    listener.start()
    try:
        plan = rewritten(CASE_06 / "RP.dcm", tmp_path / "in" / "RP.dcm", HALCYON)
        assert send(listener, [plan]) == [0]
        assert listener.wait_idle(20)
        (coded_plan,) = query(listener.settings.db_path)["plans"]
    finally:
        listener.stop(grace_s=5)
    assert "private_sop_class" in [f["flag"] for f in coded_plan["result"]["flags"]]
    assert coded_plan["result"]["code"] is not None


def test_runner_jobs_do_not_change_the_skipped_list(tmp_path):
    folder = skipped_files(tmp_path)
    one = scan_json(scan([str(folder)], POLICY, runner=Runner(jobs=1)))
    two = scan_json(scan([str(folder)], POLICY, runner=Runner(jobs=2)))
    assert one["skipped"] == two["skipped"]


def accounted(folder: Path) -> None:
    """Every file under ``folder`` comes out as exactly one of: a plan, a structure set,
    a dose, an image counted, a skipped file listed, or an error; and every file whose
    Modality is RTPLAN is a plan or an error (never lost)."""
    data = coded(folder)
    s = data["summary"]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert s["files_seen"] == len(files)
    assert (
        s["plans"] + s["structure_sets"] + s["doses"] + s["images_skipped"]
        + len(data["skipped"]) + len(data["errors"])
    ) == len(files)  # fmt: skip
    assert len(data["skipped"]) == s["other_dicom_skipped"] + s["non_dicom_skipped"]
    found = {Path(p["path"]).resolve() for p in [*data["plans"], *data["errors"]]}
    for f in files:
        try:
            ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)
        except Exception:
            continue
        if str(ds.get("Modality", "")) == "RTPLAN":
            assert f.resolve() in found, f


def test_every_file_of_the_sample_export_is_accounted_for():
    accounted(SAMPLE_DATA)


def test_every_file_of_the_real_exports_is_accounted_for(realdata):
    accounted(realdata)
