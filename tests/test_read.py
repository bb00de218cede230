"""Reading: DICOM by content, images skipped, bad files become one clear error each."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from conftest import SAMPLE_DATA

from rtcode.facts import Modality
from rtcode.policy import load
from rtcode.read import FileEntry, read, sniff, walk
from rtcode.scan import collect, scan

PLAN = SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm"


def entry(path, explicit=True):
    return FileEntry(path, str(path), explicit)


@pytest.mark.parametrize(
    ("head", "form"),
    [
        (b"\0" * 128 + b"DICM" + b"\2\0\0\0", "part10"),
        (b"\x08\x00\x05\x00CS\x0a\x00", "raw"),  # explicit VR little endian, no preamble
        (b"\x08\x00\x16\x00\x1a\x00\x00\x00", "raw"),  # implicit VR
        (b"# README\n\nhello", None),
        (b"", None),
        (b"\x08\x00\x16\x00\xff\xff\xff\x7f", None),  # absurd implicit length
    ],
)
def test_sniff(head, form):
    assert sniff(head) == form


def test_plan_without_preamble_is_read():
    path = SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA"
    result = read(entry(path))
    assert result.kind == "rt" and result.modality is Modality.RTPLAN


def test_ct_is_skipped_as_image():
    assert read(entry(SAMPLE_DATA / "06_four_field_box_3d" / "CT.1.dcm")).kind == "image"


def test_dose_pixel_data_is_seen_not_read():
    result = read(entry(SAMPLE_DATA / "06_four_field_box_3d" / "RD.dcm"))
    assert result.kind == "rt" and result.has_pixel_data
    assert "PixelData" not in result.dataset


@pytest.mark.parametrize(
    ("name", "content", "explicit", "kind"),
    [
        ("notes.txt", b"plain text", False, "not_dicom"),
        ("notes.txt", b"plain text", True, "error"),  # named explicitly: say so
        ("fake.dcm", b"plain text that is long enough", False, "error"),
        ("empty.dcm", b"", False, "error"),
    ],
)
def test_non_dicom(tmp_path, name, content, explicit, kind):
    path = tmp_path / name
    path.write_bytes(content)
    result = read(entry(path, explicit))
    assert result.kind == kind
    if kind == "error":
        assert "not a DICOM file" in result.error


@pytest.mark.parametrize("cut", [200, 1000, 3000])
def test_truncated_plan_is_one_error_naming_the_file(tmp_path, cut):
    path = tmp_path / "RP_cut.dcm"
    path.write_bytes(PLAN.read_bytes()[:cut])
    inv = collect([str(tmp_path)])
    assert len(inv.errors) == 1 and not inv.plans
    assert inv.errors[0].path.endswith("RP_cut.dcm")
    assert inv.errors[0].error  # a sentence, not a traceback
    assert "Traceback" not in inv.errors[0].error


def test_bad_file_does_not_stop_the_batch(tmp_path):
    shutil.copytree(SAMPLE_DATA / "06_four_field_box_3d", tmp_path / "good")
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    result = scan([str(tmp_path)], load())
    assert len(result.plans) == 1 and result.plans[0].classification.code == "77295"
    assert [e.path for e in result.errors] == [str(tmp_path / "bad.dcm")]


def test_missing_input_is_an_error(tmp_path):
    [err] = list(walk([str(tmp_path / "nope")]))
    assert "cannot open" in err.error


def test_symlink_loop_is_not_followed(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(PLAN, tmp_path / "a" / "RP.dcm")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    inv = collect([str(tmp_path)])
    assert len(inv.plans) == 1


def digest_tree(root):
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path)] = (data, st.st_mtime_ns, st.st_mode)
    return out


def test_scanning_never_changes_inputs(tmp_path):
    shutil.copytree(SAMPLE_DATA, tmp_path / "export")
    before = digest_tree(tmp_path)
    scan([str(tmp_path / "export")], load())
    assert digest_tree(tmp_path) == before


def test_missing_beam_limiting_device_type_is_an_error(tmp_path):
    import pydicom

    ds = pydicom.dcmread(PLAN)
    del (
        ds.BeamSequence[0]
        .ControlPointSequence[0]
        .BeamLimitingDevicePositionSequence[0]
        .RTBeamLimitingDeviceType
    )
    ds.save_as(tmp_path / "RP.dcm")
    inv = collect([str(tmp_path)])
    assert not inv.plans
    assert "RTBeamLimitingDeviceType is missing" in inv.errors[0].error
    assert "BeamSequence[0].ControlPointSequence[0]" in inv.errors[0].error


def test_leaf_count_mismatch_is_an_error(tmp_path):
    import pydicom

    ds = pydicom.dcmread(PLAN)
    item = ds.BeamSequence[0].ControlPointSequence[0].BeamLimitingDevicePositionSequence[2]
    item.LeafJawPositions = list(item.LeafJawPositions)[:-2]
    ds.save_as(tmp_path / "RP.dcm")
    inv = collect([str(tmp_path)])
    assert "LeafJawPositions has 118 values" in inv.errors[0].error
