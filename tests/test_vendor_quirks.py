"""Vendor quirks and contradictions inside a file are read and flagged, not refused.

Postel's rule (rtcode/quirks.py): what can be read unambiguously is read, and what bent
the standard reaches the output as a flag with its DICOM path. The files here are
synthetic pydicom data sets in the standard RT Plan class, shaped like what the planning
systems write:

- counts that disagree with the sequence they count (NumberOfBeams, NumberOfControlPoints).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_extract_fast_paths import _assert_reference, _bytes

from rtcode import extract as ex
from rtcode import policy as policy_mod
from rtcode.classify import Category
from rtcode.facts import Modality
from rtcode.scan import scan

RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
ROOT_UID = "1.2.826.0.1.3680043.10.1437."  # a private root for test objects


@pytest.fixture(scope="module")
def policy():
    return policy_mod.load()


# ------------------------------------------------------------------ building


def _file(ds: Dataset, sop_class: str, uid: str, modality: str) -> Dataset:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.Modality = modality
    ds.PatientID = "QUIRKS"
    ds.PatientName = "QUIRKS^TEST"
    ds.StudyInstanceUID = ROOT_UID + "1"
    ds.SeriesInstanceUID = ROOT_UID + "2." + uid.rsplit(".", 1)[-1]
    ds.FrameOfReferenceUID = ROOT_UID + "3"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


def _item(**values) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _positions(*items: tuple[str, list[float]]) -> Sequence:
    return Sequence([_item(RTBeamLimitingDeviceType=t, LeafJawPositions=list(v)) for t, v in items])


def _device(kind: str, pairs: int, bounds: list[float] | None = None) -> Dataset:
    d = _item(RTBeamLimitingDeviceType=kind, NumberOfLeafJawPairs=pairs)
    if bounds is not None:
        d.LeafPositionBoundaries = bounds
    return d


def _beam(
    number: int,
    devices: list[Dataset],
    cps: list[Dataset],
    *,
    machine: str = "LINAC1",
    manufacturer: str | None = None,
    declared: int | None = None,
    name: str | None = None,
) -> Dataset:
    b = _item(
        BeamNumber=number,
        BeamName=name or f"B{number}",
        BeamType="STATIC",
        RadiationType="PHOTON",
        TreatmentDeliveryType="TREATMENT",
        TreatmentMachineName=machine,
        PrimaryDosimeterUnit="MU",
        NumberOfWedges=0,
        NumberOfCompensators=0,
        NumberOfBoli=0,
        NumberOfBlocks=0,
        FinalCumulativeMetersetWeight=1,
        NumberOfControlPoints=len(cps) if declared is None else declared,
        BeamLimitingDeviceSequence=Sequence(devices),
        ControlPointSequence=Sequence(cps),
    )
    if manufacturer is not None:
        b.Manufacturer = manufacturer
    return b


def _cp(index: int, weight: float, positions: Sequence | None = None, **more) -> Dataset:
    cp = _item(ControlPointIndex=index, CumulativeMetersetWeight=weight, **more)
    if positions is not None:
        cp.BeamLimitingDevicePositionSequence = positions
    return cp


def _first_cp(weight: float = 0, positions: Sequence | None = None, gantry: float = 0) -> Dataset:
    return _cp(
        0,
        weight,
        positions,
        NominalBeamEnergy=6,
        GantryAngle=gantry,
        GantryRotationDirection="NONE",
        BeamLimitingDeviceAngle=0,
        PatientSupportAngle=0,
        IsocenterPosition=[0, 0, 0],
    )


def _plan(
    uid: str,
    beams: list[Dataset],
    *,
    referenced: list[tuple[int, float]] | None = None,
    number_of_beams: int | None = None,
    manufacturer: str = "Test Systems",
    model: str = "TestPlan",
    structure_set_uid: str | None = None,
) -> Dataset:
    ds = _file(Dataset(), RT_PLAN, uid, "RTPLAN")
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.RTPlanLabel = "QUIRK"
    ds.RTPlanDate = "20260101"
    ds.PlanIntent = "CURATIVE"
    ds.ApprovalStatus = "APPROVED"
    ds.BeamSequence = Sequence(beams)
    refs = [(b.BeamNumber, 100.0) for b in beams] if referenced is None else referenced
    ds.FractionGroupSequence = Sequence(
        [
            _item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=1,
                NumberOfBeams=len(refs) if number_of_beams is None else number_of_beams,
                NumberOfBrachyApplicationSetups=0,
                ReferencedBeamSequence=Sequence(
                    [_item(ReferencedBeamNumber=n, BeamMeterset=mu) for n, mu in refs]
                ),
            )
        ]
    )
    if structure_set_uid is not None:
        ds.ReferencedStructureSetSequence = Sequence(
            [_item(ReferencedSOPClassUID=RT_STRUCT, ReferencedSOPInstanceUID=structure_set_uid)]
        )
    return ds


def _write(folder: Path, name: str, ds: Dataset) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


def _scan_one(folder: Path, policy):
    result = scan([str(folder)], policy)
    assert not result.errors, result.errors
    [plan] = result.plans
    return plan


def _extract(ds: Dataset):
    data = _bytes(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = pydicom.dcmread(io.BytesIO(data), force=True)
    return ex.extract(read, Modality.RTPLAN, "RP.dcm")


def _flags(plan_result, flag: str):
    return [f for f in plan_result.classification.flags if f.flag == flag]


def _evidence(plan_result, rule: str):
    return [e for e in plan_result.classification.evidence if e.rule == rule]


# ------------------------------------------------------ counts that disagree


def _two_field_plan(**kw) -> Dataset:
    devices = [_device("ASYMX", 1), _device("ASYMY", 1)]
    beams = [
        _beam(
            n,
            devices,
            [
                _first_cp(0, _positions(("ASYMX", [-50, 50]), ("ASYMY", [-50, 50])), gantry=g),
                _cp(1, 1),
            ],
        )
        for n, g in ((1, 0), (2, 180))
    ]
    return _plan(ROOT_UID + "20", beams, **kw)


def test_number_of_beams_disagreeing_with_the_references_is_flagged_and_coded(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _two_field_plan(number_of_beams=3))
    result = _scan_one(tmp_path, policy)
    assert result.classification.code == "77306"  # the two referenced beams
    [flag] = _flags(result, "count_mismatch")
    assert flag.severity == "warning"
    assert flag.dicom_path.endswith("FractionGroupSequence[0].NumberOfBeams")
    assert "NumberOfBeams is 3 but ReferencedBeamSequence has 2 item(s)" in flag.message
    assert result.classification.confidence == "medium"


def test_an_empty_reference_sequence_falls_back_to_the_beams(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _two_field_plan(referenced=[], number_of_beams=2))
    result = _scan_one(tmp_path, policy)
    assert result.classification.code == "77306"
    assert [b.counted for b in result.classification.beams] == [True, True]
    [flag] = _flags(result, "count_mismatch")
    assert "taken from BeamSequence" in flag.message
    assert not _flags(result, "no_fraction_group")  # there is one: it is not trusted


def test_a_fraction_group_that_consistently_delivers_no_beam_is_not_second_guessed(
    tmp_path, policy
):
    _write(tmp_path, "RP.dcm", _two_field_plan(referenced=[], number_of_beams=0))
    result = _scan_one(tmp_path, policy)
    assert result.classification.category is Category.UNDETERMINED
    assert _flags(result, "no_treatment_beam") and not _flags(result, "count_mismatch")


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_number_of_control_points_disagreeing_is_flagged_and_the_items_read(
    syntax, tmp_path, monkeypatch, policy
):
    ds = _two_field_plan()
    ds.BeamSequence[1].NumberOfControlPoints = 7
    plan = _assert_reference(_bytes(ds, syntax), monkeypatch)
    assert plan.beams[1].control_points.count == 2
    [odd] = plan.oddities
    assert (odd.flag, odd.severity) == ("count_mismatch", "warning")
    assert odd.dicom_path == "plan.dcm::BeamSequence[1].NumberOfControlPoints"
    _write(tmp_path, "RP.dcm", ds)
    result = _scan_one(tmp_path, policy)
    assert result.classification.code == "77306"
    assert _flags(result, "count_mismatch")


def test_control_points_that_stop_short_of_the_final_weight_are_still_an_error(monkeypatch):
    """A damaged sequence (an element pydicom reads another way ends it early) also
    disagrees with its count: items that do not reach the beam's final meterset weight
    cannot be trusted."""
    ds = _two_field_plan()
    ds.BeamSequence[0].NumberOfControlPoints = 3
    ds.BeamSequence[0].ControlPointSequence[1].CumulativeMetersetWeight = 0.5
    outcome = _assert_reference(_bytes(ds), monkeypatch, fast_path=False)
    assert outcome.startswith("error: ")
    assert (
        "NumberOfControlPoints is 3 but ControlPointSequence has 2 item(s), and the last of"
        " them gives weight 0.5, not FinalCumulativeMetersetWeight 1" in outcome
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: _two_field_plan(number_of_beams=3),
        lambda: _two_field_plan(referenced=[], number_of_beams=2),
    ],
    ids=["more_beams_counted", "none_referenced"],
)
def test_fraction_group_contradictions_give_the_reference_facts(make, monkeypatch):
    plan = _assert_reference(_bytes(make()), monkeypatch)
    assert [o.flag for o in plan.oddities] == ["count_mismatch"]
