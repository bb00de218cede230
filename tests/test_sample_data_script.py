"""Tests for scripts/make_sample_data.py and the committed sample_data/ folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pydicom
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_sample_data.py"
SAMPLE_DATA = REPO / "sample_data"
RAW_PLAN = SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA"


def load_script():
    spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def relative_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def committed_dicom_files() -> list[Path]:
    return sorted(p for p in SAMPLE_DATA.rglob("*.dcm") if p.is_file())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("sample_data")
    (out / "unrelated.txt").write_text("keep me\n")
    written = load_script().write_sample_data(out)
    return out, written


def test_generated_files_match_committed_sample_data(generated: tuple[Path, list[Path]]) -> None:
    out, _ = generated
    produced = relative_files(out) - {"unrelated.txt"}
    # sample_data/charges/ is written by scripts/make_sample_charges.py (its own test)
    committed = {n for n in relative_files(SAMPLE_DATA) if not n.startswith("charges/")}
    assert produced == committed
    different = [
        name
        for name in sorted(committed)
        if (out / name).read_bytes() != (SAMPLE_DATA / name).read_bytes()
    ]
    assert different == [], (
        f"regenerate sample_data with scripts/make_sample_data.py; differing: {different}"
    )


def test_write_sample_data_reports_its_files_and_leaves_others_alone(
    generated: tuple[Path, list[Path]],
) -> None:
    out, written = generated
    assert (out / "unrelated.txt").read_text() == "keep me\n"
    assert {p.relative_to(out).as_posix() for p in written} == relative_files(out) - {
        "unrelated.txt"
    }


@pytest.mark.parametrize(
    "path", committed_dicom_files(), ids=lambda p: p.relative_to(SAMPLE_DATA).as_posix()
)
def test_every_dcm_reads_back(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    ds = pydicom.dcmread(path, stop_before_pixels=path.name.startswith("CT."))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    expected = {"CT": "CT", "RS": "RTSTRUCT", "RP": "RTPLAN", "RN": "RTPLAN", "RD": "RTDOSE"}[
        path.name[:2]
    ]
    assert ds.Modality == expected
    assert ds.PatientID


def test_raw_plan_has_no_preamble_but_reads_with_force() -> None:
    raw = RAW_PLAN.read_bytes()
    assert raw[128:132] != b"DICM"
    assert b"DICM" not in raw[:132]
    ds = pydicom.dcmread(RAW_PLAN, force=True)
    assert ds.Modality == "RTPLAN"
    assert ds.SOPClassUID == pydicom.uid.RTPlanStorage
    assert len(ds.BeamSequence) == 2


def test_readme_has_one_table_with_the_expected_header() -> None:
    lines = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8").splitlines()
    headers = [line for line in lines if line.startswith("| case ")]
    assert headers == ["| case | plan file | what it shows | code | category |"]
    rows = [line for line in lines if line.startswith("| ") and line not in headers]
    plan_files = {line.split(" | ")[1] for line in rows}
    for plan_file in plan_files:
        assert (SAMPLE_DATA / plan_file).is_file(), plan_file
    # one row per plan file the script writes, and every case folder named
    assert {line.split(" | ")[0].lstrip("| ") for line in rows} == set(load_script().CASES)
    written = {
        p.relative_to(SAMPLE_DATA).as_posix()
        for p in SAMPLE_DATA.rglob("*")
        if p.is_file()
        and p.suffix != ".csv"
        and pydicom.dcmread(p, force=True, stop_before_pixels=True).get("Modality") == "RTPLAN"
    }
    assert plan_files == written and len(rows) == len(written)
