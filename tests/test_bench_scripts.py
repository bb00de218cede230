"""scripts/make_real_archive.py (copies of real exports with new UIDs) and the
profile's step attribution in scripts/bench.py."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ImplicitVRLittleEndian

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
PLAN_UID = "1.2.246.352.71.5.417454940236.2035289.20160914113221"
STUDY_UID = "1.2.246.352.71.1.417454940236.2035280.20160914113221"
SET_UID = "1.2.246.352.71.4.417454940236.2035288.20160914113221"
CODING_UID = "1.2.246.352.7.3.10"  # names a scheme, not an instance: kept


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


real = load("make_real_archive")
bench = load("bench")


def write_plan(folder: Path) -> Path:
    """An implicit-VR plan that references its structure set, with the structure
    set's UID also in a private element and a coding scheme UID."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.481.5")
    ds.file_meta.MediaStorageSOPInstanceUID = UID(PLAN_UID)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    ds.SOPInstanceUID = PLAN_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.Modality = "RTPLAN"
    ds.PatientID = "PID7"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ref.ReferencedSOPInstanceUID = SET_UID
    ds.ReferencedStructureSetSequence = Sequence([ref])
    code = Dataset()
    code.CodingSchemeUID = CODING_UID
    ds.PurposeOfReferenceCodeSequence = Sequence([code])
    ds.add_new(0x30090010, "LO", "PRIVATE")
    ds.add_new(0x30091001, "LO", SET_UID)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return path


def test_new_uids_keep_length_and_root_and_differ_per_copy_and_seed() -> None:
    sources = [real.Source(Path("a"), b"", frozenset({PLAN_UID, "1.2.3.4"}), None, None)]
    renamer = real.Renamer(sources, seed=1)
    first, second = renamer.uid(PLAN_UID, 0), renamer.uid(PLAN_UID, 1)
    assert first != second != PLAN_UID
    for new in (first, second):
        assert len(new) == len(PLAN_UID)
        assert re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", new)
        assert new.startswith("1.2.246.352.71.5.")  # the organisation's root stays
    assert real.Renamer(sources, seed=1).uid(PLAN_UID, 0) == first  # deterministic
    assert real.Renamer(sources, seed=2).uid(PLAN_UID, 0) != first
    short = renamer.uid("1.2.3.4", 0)
    assert len(short) == 7 and short.startswith("1.") and short != "1.2.3.4"


def test_copy_replaces_every_reference_and_the_patient_id(tmp_path: Path) -> None:
    write_plan(tmp_path / "src" / "study")
    (tmp_path / "src" / "notes.txt").write_text("not DICOM\n")
    sources = real.read_sources(tmp_path / "src")
    assert [s.rel.as_posix() for s in sources] == ["study/plan.dcm"]
    assert sources[0].uids == {PLAN_UID, STUDY_UID, SET_UID}
    n = real.make_real_archive(tmp_path / "out", files=2, seed=3, source=tmp_path / "src")
    assert n == 2
    copies = [tmp_path / "out" / f"copy_{k:04d}" / "study" / "plan.dcm" for k in (0, 1)]
    original = (tmp_path / "src" / "study" / "plan.dcm").read_bytes()
    seen = []
    for path in copies:
        data = path.read_bytes()
        for old in (PLAN_UID, STUDY_UID, SET_UID):
            assert old.encode() not in data
        ds = pydicom.dcmread(path)
        new_set = ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
        private = ds[0x30091001].value  # implicit VR: read back as unknown bytes
        assert private.decode().rstrip("\0 ") == new_set  # the private copy too
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.PurposeOfReferenceCodeSequence[0].CodingSchemeUID == CODING_UID
        assert ds.PatientID != "PID7"
        # only the Patient ID's length changed the file's size
        assert len(data) - len(original) == len(ds.PatientID) + len(ds.PatientID) % 2 - 4
        seen.append((ds.SOPInstanceUID, ds.PatientID, new_set))
    assert len({s[0] for s in seen}) == len({s[1] for s in seen}) == len({s[2] for s in seen}) == 2


def test_a_copy_of_a_real_study_codes_as_the_original(realdata: Path, tmp_path: Path) -> None:
    study = realdata / "eclipse-3d-two-fields-with-dose-dvh"  # plan, structure set, dose
    out = tmp_path / "archive"
    assert real.make_real_archive(out, files=6, seed=1, source=study) == 6
    assert real.check_copy(out, 1, study, copy=1) == 1
    (out / "copy_0001" / "rtdose.dcm").unlink()  # the check sees a link go
    with pytest.raises(SystemExit, match="differs"):
        real.check_copy(out, 1, study, copy=1)


def test_profile_steps_follow_callers_into_shared_code() -> None:
    pkg = str(bench.ROOT / "rtcode")
    read = (f"{pkg}/dicom/read.py", 1, "read")
    classify = (f"{pkg}/coding/classify.py", 1, "classify")
    engine = (f"{pkg}/engine/scan.py", 1, "classify_plans")
    cli = (f"{pkg}/cli/__init__.py", 1, "_stream")
    render = (f"{pkg}/output/render.py", 1, "plan_json")
    numpy = ("/venv/site-packages/numpy/core.py", 1, "sum")
    stats = {
        read: (1, 1, 2.0, 5.0, {}),
        classify: (1, 1, 1.0, 2.0, {}),
        engine: (1, 1, 0.5, 4.0, {}),
        cli: (1, 1, 0.0, 1.0, {}),
        # numpy: 3 s when read calls it, 1 s when classify does
        numpy: (2, 2, 4.0, 4.0, {read: (1, 1, 3.0, 3.0), classify: (1, 1, 1.0, 1.0)}),
        render: (2, 2, 3.0, 3.0, {engine: (1, 1, 2.0, 2.0), cli: (1, 1, 1.0, 1.0)}),
    }
    seconds = bench.step_shares(stats)
    assert seconds["reading and extraction"] == pytest.approx(5.0)
    assert seconds["classification"] == pytest.approx(2.0)
    assert seconds["rendering for the cache"] == pytest.approx(2.0)
    assert seconds["rendering for output"] == pytest.approx(1.0)
    assert seconds[bench.OTHER] == pytest.approx(0.5)
    assert sum(seconds.values()) == pytest.approx(10.5)
