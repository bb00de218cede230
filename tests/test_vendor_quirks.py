"""Vendor quirks and contradictions inside a file are read and flagged, not refused.

Postel's rule (rtcode/dicom/vendors.py): what can be read unambiguously is read, and what bent
the standard reaches the output as a flag with its DICOM path. The files here are
synthetic pydicom data sets in the standard RT Plan class, shaped like what the planning
systems write:

- counts that disagree with the sequence they count (NumberOfBeams, NumberOfControlPoints);
- ViewRay MRIdian: two MLC layers both typed MLCX (35 and 34 pairs);
- Leksell GammaPlan: NumberOfBeams 1 and an empty ReferencedBeamSequence, one placeholder
  beam (one jaw pair, no positions): the shots are not in the RT Plan;
- brachytherapy tiers: sources placed (seeds) for LDR implants, channels for afterloaders;
  SourceSequence lists source types.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SAMPLE_DATA
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_extract_fast_paths import _assert_reference, _bytes

from rtcode.coding import policy as policy_mod
from rtcode.dicom import extract as ex
from rtcode.engine.scan import scan
from rtcode.measure.metrics import apertures
from rtcode.model.codes import Category, Technique
from rtcode.model.facts import BeamLimitingDevice, Modality

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
        lambda: _gamma_plan(),  # (defined below)
        lambda: _two_field_plan(number_of_beams=3),
        lambda: _two_field_plan(referenced=[], number_of_beams=2),
    ],
    ids=["gamma_plan", "more_beams_counted", "none_referenced"],
)
def test_fraction_group_contradictions_give_the_reference_facts(make, monkeypatch):
    plan = _assert_reference(_bytes(make()), monkeypatch)
    assert [o.flag for o in plan.oddities] == ["count_mismatch"]


# ---------------------------------------------------------- ViewRay MRIdian

# Double-stacked, double-focused MLC: 8.3 mm leaves, the lower layer offset by half a
# leaf: 35 pairs over +-145.25 mm above, 34 pairs over +-141.1 mm below.
UPPER = [round(-145.25 + 8.3 * i, 2) for i in range(36)]
LOWER = [round(-141.1 + 8.3 * i, 2) for i in range(35)]


def _viewray_beam(order=("upper", "lower"), upper=(-30.0, 30.0), lower=(-20.0, 40.0)) -> Dataset:
    """Jaws (X 300 mm, Y 200 mm) and the two MLCX layers; the upper layer open from
    upper[0] to upper[1] at every pair, the lower from lower[0] to lower[1]."""
    layers = {
        "upper": ("MLCX", [upper[0]] * 35 + [upper[1]] * 35),
        "lower": ("MLCX", [lower[0]] * 34 + [lower[1]] * 34),
    }
    devices = [
        _device("X", 1),
        _device("Y", 1),
        _device("MLCX", 35, UPPER),
        _device("MLCX", 34, LOWER),
    ]
    jaws = [("X", [-150.0, 150.0]), ("Y", [-100.0, 100.0])]
    first = _first_cp(0, _positions(*jaws, *(layers[k] for k in order)))
    # The second segment moves only the lower layer (later control points omit what
    # did not change); the last control point closes nothing new.
    moved = ("MLCX", [lower[0] + 10] * 34 + [lower[1]] * 34)
    cps = [first, _cp(1, 0.5), _cp(2, 0.5, _positions(moved)), _cp(3, 1)]
    return _beam(1, devices, cps, machine="MRIdian", manufacturer="ViewRay")


def _viewray_plan(**kw) -> Dataset:
    return _plan(
        ROOT_UID + "10",
        [_viewray_beam(**kw)],
        manufacturer="ViewRay Inc.",
        model="MRIdian",
    )


def test_viewray_layers_both_typed_mlcx_are_read_and_flagged():
    plan = _extract(_viewray_plan())
    [beam] = plan.beams
    assert [(d.device_type, d.number_of_pairs) for d in beam.devices] == [
        ("X", 1),
        ("Y", 1),
        ("MLCX", 35),
        ("MLCX#2", 34),
    ]
    assert [d.travel_axis for d in beam.devices] == ["X", "Y", "X", "X"]
    positions = beam.control_points.positions_mm
    assert positions["MLCX"].shape == (4, 70) and positions["MLCX#2"].shape == (4, 68)
    # carried forward: only the lower layer moved at control point 2
    assert positions["MLCX"][3, 0] == -30 and positions["MLCX#2"][3, 0] == -10
    [odd] = plan.oddities
    assert odd.flag == "mlc_layers_share_a_type" and odd.severity == "info"
    assert odd.dicom_path == "RP.dcm::BeamSequence[0].BeamLimitingDeviceSequence"
    assert "35 and 34 pairs" in odd.message


def test_viewray_aperture_is_what_both_layers_leave_open():
    [beam] = _extract(_viewray_plan()).beams
    area = apertures(beam).area_mm2()
    # upper open -30..30, lower -20..40 (then -10..40): 200 mm between the Y jaws
    assert area[0] == pytest.approx(200 * 50)  # -20..30, not 60 mm of either layer
    assert area[3] == pytest.approx(200 * 40)  # -10..30


def test_viewray_layers_are_paired_by_pair_count_not_by_order():
    swapped = _extract(_viewray_plan(order=("lower", "upper")))
    straight = _extract(_viewray_plan())
    a, b = swapped.beams[0].control_points, straight.beams[0].control_points
    assert list(a.positions_mm) == ["X", "Y", "MLCX#2", "MLCX"]
    for key in ("MLCX", "MLCX#2"):
        np.testing.assert_array_equal(a.positions_mm[key], b.positions_mm[key])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_viewray_fast_path_gives_the_reference_facts(syntax, monkeypatch):
    plan = _assert_reference(_bytes(_viewray_plan(), syntax), monkeypatch)
    assert plan.oddities[0].flag == "mlc_layers_share_a_type"


def test_viewray_positions_that_fit_no_layer_are_still_an_error(monkeypatch):
    ds = _viewray_plan()
    item = ds.BeamSequence[0].ControlPointSequence[0].BeamLimitingDevicePositionSequence[3]
    item.LeafJawPositions = list(item.LeafJawPositions)[:-2]  # 66 values
    outcome = _assert_reference(_bytes(ds), monkeypatch, fast_path=False)
    assert outcome.startswith("error: ")
    assert "LeafJawPositions has 66 values; the 2 MLCX layers declare 35 and 34 pairs" in outcome


def test_viewray_plan_is_coded_with_the_flag(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _viewray_plan())
    result = _scan_one(tmp_path, policy)
    assert result.classification.code is not None
    [flag] = _flags(result, "mlc_layers_share_a_type")
    assert flag.severity == "info"
    assert flag.dicom_path.endswith("BeamSequence[0].BeamLimitingDeviceSequence")
    assert result.classification.code == "77307"  # its segments are shaped by the layers


@pytest.mark.parametrize(
    ("key", "axis"), [("MLCX#2", "X"), ("MLCY#2", "Y"), ("MLCX2", "X"), ("MLCY1#2", "Y")]
)
def test_a_later_layer_keeps_the_axis_of_its_type(key, axis):
    assert BeamLimitingDevice(key, 34, None).travel_axis == axis


# ------------------------------------------------------------ Leksell GammaPlan


def _structure_set(uid: str) -> Dataset:
    """A PTV and a brainstem, both contoured."""
    ds = _file(Dataset(), RT_STRUCT, uid, "RTSTRUCT")
    ds.StructureSetLabel = "SRS"
    ds.ReferencedFrameOfReferenceSequence = Sequence(
        [_item(FrameOfReferenceUID=ds.FrameOfReferenceUID)]
    )
    rois = [(1, "PTV_met", "PTV"), (2, "Brainstem", "ORGAN")]
    ds.StructureSetROISequence = Sequence(
        [_item(ROINumber=n, ROIName=name, ReferencedFrameOfReferenceUID=ds.FrameOfReferenceUID)
         for n, name, _ in rois]
    )  # fmt: skip
    ds.ROIContourSequence = Sequence(
        [
            _item(
                ReferencedROINumber=n,
                ContourSequence=Sequence(
                    [
                        _item(
                            ContourGeometricType="CLOSED_PLANAR",
                            NumberOfContourPoints=3,
                            ContourData=[0, 0, 0, 10, 0, 0, 0, 10, 0],
                        )
                    ]
                ),
            )
            for n, _, _ in rois
        ]
    )
    ds.RTROIObservationsSequence = Sequence(
        [_item(ObservationNumber=n, ReferencedROINumber=n, RTROIInterpretedType=t)
         for n, _, t in rois]
    )  # fmt: skip
    return ds


def _dose(uid: str, plan_uid: str) -> Dataset:
    """A 4 x 4 x 3 dose grid of the plan."""
    ds = _file(Dataset(), RT_DOSE, uid, "RTDOSE")
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.ReferencedRTPlanSequence = Sequence(
        [_item(ReferencedSOPClassUID=RT_PLAN, ReferencedSOPInstanceUID=plan_uid)]
    )
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 4, 3
    ds.PixelSpacing = [2, 2]
    ds.GridFrameOffsetVector = [0, 2, 4]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.DoseGridScaling = 0.001
    ds.PixelData = np.arange(48, dtype="<u2").tobytes()
    return ds


def _gamma_plan(
    uid: str = ROOT_UID + "30",
    structure_set_uid: str | None = None,
    manufacturer: str = "Elekta Instrument AB",
    model: str = "Leksell GammaPlan",
    machine: str = "ICON",
) -> Dataset:
    """As GammaPlan writes it: NumberOfBeams 1 but no referenced beam; one beam with
    one jaw pair and no positions."""
    beam = _beam(1, [_device("X", 1)], [_first_cp(0), _cp(1, 1)], machine=machine)
    return _plan(
        uid,
        [beam],
        referenced=[],
        number_of_beams=1,
        manufacturer=manufacturer,
        model=model,
        structure_set_uid=structure_set_uid,
    )


def test_gamma_plan_alone_is_undetermined_never_simple(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _gamma_plan(structure_set_uid=ROOT_UID + "31"))
    result = _scan_one(tmp_path, policy)
    c = result.classification
    assert c.category is Category.UNDETERMINED and c.code is None
    [flag] = _flags(result, "gamma_knife_plan")
    assert flag.severity == "warning"
    assert "is not in the export" in flag.message and "no RT Dose" in flag.message
    assert _flags(result, "count_mismatch")  # NumberOfBeams 1, no reference
    assert [b.technique for b in c.beams] == [Technique.GAMMA_KNIFE]
    [ev] = _evidence(result, "beams.gamma_knife_plan")
    assert ev.fired is True and "Leksell GammaPlan" in ev.observed
    assert _evidence(result, "3d.gamma_knife_companions")[0].fired is None


def test_gamma_plan_with_its_structure_set_and_dose_is_3d(tmp_path, policy):
    plan_uid, ss_uid = ROOT_UID + "40", ROOT_UID + "41"
    _write(tmp_path, "RP.dcm", _gamma_plan(plan_uid, ss_uid))
    _write(tmp_path, "RS.dcm", _structure_set(ss_uid))
    _write(tmp_path, "RD.dcm", _dose(ROOT_UID + "42", plan_uid))
    result = _scan_one(tmp_path, policy)
    c = result.classification
    assert (c.code, c.category) == ("77295", Category.THREE_D)
    [flag] = _flags(result, "gamma_knife_plan")
    assert flag.severity == "info"
    [ev] = _evidence(result, "3d.gamma_knife_companions")
    assert ev.fired is True and ev.observed["targets"] == ["PTV_met"]
    assert any(r.code == "77371" for r in result.related)  # cobalt-based radiosurgery hint


def test_gamma_plan_without_a_contoured_target_says_why(tmp_path, policy):
    plan_uid, ss_uid = ROOT_UID + "50", ROOT_UID + "51"
    _write(tmp_path, "RP.dcm", _gamma_plan(plan_uid, ss_uid))
    ss = _structure_set(ss_uid)
    for obs in ss.RTROIObservationsSequence:
        obs.RTROIInterpretedType = "ORGAN"
    ss.StructureSetROISequence[0].ROIName = "Lesion"
    _write(tmp_path, "RS.dcm", ss)
    _write(tmp_path, "RD.dcm", _dose(ROOT_UID + "52", plan_uid))
    result = _scan_one(tmp_path, policy)
    assert result.classification.category is Category.UNDETERMINED
    [flag] = _flags(result, "gamma_knife_plan")
    assert "0 contoured target(s), fewer than 1" in flag.message
    assert _evidence(result, "3d.gamma_knife_companions")[0].fired is False


@pytest.mark.parametrize(
    ("manufacturer", "model", "machine"),
    [
        ("Elekta Instrument AB", "Leksell GammaPlan", "ICON"),
        ("Test Systems", "TestPlan", "LGK Perfexion"),
        ("Elekta", "TPS", "Icon"),
    ],
)
def test_gamma_knife_is_recognised_by_its_names(tmp_path, policy, manufacturer, model, machine):
    _write(tmp_path, "RP.dcm", _gamma_plan(manufacturer=manufacturer, model=model, machine=machine))
    result = _scan_one(tmp_path, policy)
    assert _flags(result, "gamma_knife_plan")
    assert result.classification.code != "77306"


def test_the_same_placeholder_beam_elsewhere_is_an_ordinary_field(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _gamma_plan(manufacturer="Test Systems", model="TestPlan"))
    result = _scan_one(tmp_path, policy)
    assert not _flags(result, "gamma_knife_plan")
    assert result.classification.code == "77306"  # one beam, taken from BeamSequence


# -------------------------------------------------------------- brachytherapy


def _channel(number: int, positions: list[float], *, movement: str = "FIXED", source: int = 1):
    """A channel (an LDR needle, an HDR catheter) with a source at each position: two
    control points per position, the time weight growing between them (PS3.3
    C.8.8.15: 2N control points for N stepwise positions)."""
    cps, weight = [], 0.0
    for p in positions:
        cps.append(_item(ControlPointRelativePosition=p, CumulativeTimeWeight=weight))
        weight += 1.0
        cps.append(_item(ControlPointRelativePosition=p, CumulativeTimeWeight=weight))
    for k, cp in enumerate(cps):
        cp.ControlPointIndex = k
    return _item(
        ChannelNumber=number,
        ChannelTotalTime=100,
        SourceMovementType=movement,
        ReferencedSourceNumber=source,
        NumberOfControlPoints=len(cps),
        FinalCumulativeTimeWeight=weight,
        BrachyControlPointSequence=Sequence(cps),
    )


def _brachy_plan(kind: str, technique: str, channels: list[Dataset], source_types: int):
    ds = _file(Dataset(), RT_PLAN, ROOT_UID + "60", "RTPLAN")
    ds.Manufacturer = "Test Systems"
    ds.RTPlanLabel = "SEEDS"
    ds.PlanIntent = "CURATIVE"
    ds.ApprovalStatus = "APPROVED"
    ds.BrachyTreatmentType = kind
    ds.BrachyTreatmentTechnique = technique
    ds.SourceSequence = Sequence(
        [
            _item(SourceNumber=n + 1, SourceType="POINT", SourceIsotopeName=iso)
            for n, iso in zip(range(source_types), ["I-125", "Pd-103", "Cs-131"], strict=False)
        ]
    )
    ds.ApplicationSetupSequence = Sequence(
        [
            _item(
                ApplicationSetupType="OTHER",
                ApplicationSetupNumber=1,
                ChannelSequence=Sequence(channels),
            )
        ]
    )
    ds.FractionGroupSequence = Sequence(
        [_item(FractionGroupNumber=1, NumberOfFractionsPlanned=1, NumberOfBeams=0,
               NumberOfBrachyApplicationSetups=1)]
    )  # fmt: skip
    return ds


def _implant(needles: int, seeds_per_needle: int, source_types: int = 2) -> Dataset:
    channels = [
        _channel(n + 1, [5.0 * k for k in range(seeds_per_needle)], source=n % source_types + 1)
        for n in range(needles)
    ]
    return _brachy_plan("LDR", "PERMANENT", channels, source_types)


def test_a_36_needle_seed_implant_is_tiered_by_its_seeds_not_its_source_types(tmp_path, policy):
    _write(tmp_path, "RP.dcm", _implant(36, 2, source_types=2))
    result = _scan_one(tmp_path, policy)
    assert result.classification.code == "77318"
    [ev] = _evidence(result, "brachy.tier")
    assert ev.observed == {
        "channels": 36,
        "sources_placed": 72,
        "source_types": 2,
        "decided_by": "sources_placed",
    }
    assert "72 source(s)" in ev.finding and "2 source type(s)" in ev.finding


@pytest.mark.parametrize(("needles", "code"), [(2, "77316"), (3, "77317"), (6, "77318")])
def test_seed_tiers_follow_the_policy(tmp_path, policy, needles, code):
    # two seeds a needle: 4 (simple, up to 4), 6 (intermediate, up to 10), 12 (complex)
    _write(tmp_path, "RP.dcm", _implant(needles, 2, source_types=1))
    assert _scan_one(tmp_path, policy).classification.code == code


def test_seeds_that_cannot_be_counted_are_not_a_low_tier(tmp_path, policy):
    ds = _implant(36, 2)
    for c in ds.ApplicationSetupSequence[0].ChannelSequence:
        del c.BrachyControlPointSequence
    _write(tmp_path, "RP.dcm", ds)
    result = _scan_one(tmp_path, policy)
    assert result.classification.category is Category.UNDETERMINED
    [ev] = _evidence(result, "brachy.tier")
    assert ev.fired is None
    assert "cannot determine how many sources were placed" in ev.finding
    assert "BrachyControlPointSequence is absent or empty" in ev.finding


def test_seed_weights_that_grow_while_the_position_changes_cannot_be_counted():
    ds = _implant(4, 1)
    cps = ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence
    cps[1].ControlPointRelativePosition = 2.5  # one control point a position
    brachy = _extract(ds).brachy
    assert brachy.number_of_seeds is None
    assert "no two consecutive control points share a position" in brachy.seeds_unknown_why


def test_an_afterloader_is_tiered_by_channels(tmp_path, policy):
    channels = [_channel(n + 1, [0, 5, 10, 15], movement="STEPWISE") for n in range(3)]
    _write(tmp_path, "RP.dcm", _brachy_plan("HDR", "INTRACAVITARY", channels, 1))
    result = _scan_one(tmp_path, policy)
    assert result.classification.code == "77317"
    [ev] = _evidence(result, "brachy.tier")
    assert ev.observed["decided_by"] == "channels"
    assert ev.observed["channels"] == 3 and ev.observed["dwell_positions"] == 12


def test_sample_hdr_plan_keeps_its_code(policy):
    result = scan([str(SAMPLE_DATA / "16_hdr_brachy")], policy)
    [plan] = result.plans
    assert plan.classification.code == "77317"
    assert _evidence(plan, "brachy.tier")[0].observed["decided_by"] == "channels"


def test_a_channel_count_that_disagrees_is_flagged():
    ds = _implant(2, 3)
    ds.ApplicationSetupSequence[0].ChannelSequence[1].NumberOfControlPoints = 2
    plan = _extract(ds)
    assert plan.brachy.number_of_seeds == 6
    [odd] = plan.oddities
    assert odd.flag == "count_mismatch"
    assert odd.dicom_path.endswith("ChannelSequence[1].NumberOfControlPoints")


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_brachy_fast_path_gives_the_reference_facts(syntax, monkeypatch):
    plan = _assert_reference(_bytes(_implant(5, 3), syntax), monkeypatch)
    assert plan.brachy.number_of_seeds == 15


def test_an_undecodable_seed_value_makes_the_count_unknown_not_an_error():
    ds = _implant(2, 1)
    cp = ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence[0]
    tag = 0x300A02D6  # CumulativeTimeWeight, as damaged bytes
    cp[tag] = RawDataElement(Tag(tag), "DS", 4, b"lots", 0, False, True)
    brachy = _extract(ds).brachy
    assert brachy.number_of_seeds is None
    assert "CumulativeTimeWeight is not a number" in brachy.seeds_unknown_why


def test_the_gammaplan_sample_is_radiosurgery_with_no_field_count_and_full_confidence(policy):
    from rtcode.output.render import plan_json

    (result,) = scan([str(SAMPLE_DATA / "22_gamma_knife_placeholder_beam")], policy).plans
    data = plan_json(result, policy)
    assert (data["code"], data["confidence"]) == ("77295", "high")
    related = {r["code"]: r for r in data["related_codes"]}
    # one placeholder beam is not one field: 77300 cannot be counted from the RT Plan
    assert related["77300"]["kind"] == "cannot_determine" and related["77300"]["units"] is None
    assert related["77371"]["kind"] == "suggestion"  # cobalt-based radiosurgery
    (mismatch,) = [f for f in data["flags"] if f["flag"] == "count_mismatch"]
    assert mismatch["severity"] == "info"  # GammaPlan's normal output, still shown
    assert mismatch["dicom_path"].endswith("FractionGroupSequence[0].NumberOfBeams")


# ------------------------------------------------- names the coding step matches


@pytest.mark.parametrize(
    ("manufacturer", "machine", "tomo", "gamma"),
    [
        ("TomoTherapy Incorporated", "Hi-Art", True, False),
        ("Accuray", "Radixact TOMO", True, False),
        ("Elekta", "Leksell Gamma Knife Icon", False, True),
        ("Elekta Instrument AB", "Perfexion", False, True),
        ("Elekta", "Icon", False, True),  # Elekta with Icon
        (None, "LGK", False, True),
        ("Varian Medical Systems", "TrueBeam", False, False),
        ("Elekta", "Versa HD", False, False),
        ("Elekta", "Agility", False, False),
    ],
)
def test_machine_names_the_coding_step_recognises(manufacturer, machine, tomo, gamma):
    from dataclasses import replace

    import builders

    from rtcode.dicom import vendors

    beam = replace(builders.beam(1, mlc=False), manufacturer=manufacturer, machine=machine)
    system = vendors.treatment_system(beam)
    assert vendors.is_tomotherapy(system) is tomo
    assert vendors.is_gamma_knife(system) is gamma
