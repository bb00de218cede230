"""The plan fast path (views.plan_view, extract_bulk.prepare, the control point scan and
walk) against the reference path: pydicom's elements read one by one.

Every test extracts the same bytes twice, each time from a freshly read data set:
once as rtcode does (the fast path, falling back on anything unusual), once with the
fast path turned off. Facts must be equal (arrays too, NaN and the sign of zero
included), or the error message the same; and on ordinary plans the fast path must
not have stepped aside.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import random
import struct
import warnings

import numpy as np
import pydicom
import pytest
from conftest import REALDATA, SAMPLE_DATA, undefined_lengths
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_properties import DATASETS, FAST, MODALITIES, _mutate, mutations

from rtcode.dicom import decimals, elements, extract_bulk, views
from rtcode.dicom import extract as ex
from rtcode.model.errors import DicomReadError
from rtcode.model.facts import Modality
from rtcode.model.limits import Limits, default_limits

SYNTAXES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian}


def _plan_files(folder) -> list:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        if str(ds.get("SOPClassUID", "")) in (
            "1.2.840.10008.5.1.4.1.1.481.5",
            "1.2.840.10008.5.1.4.1.1.481.8",
        ):
            found.append(path)
    return found


SAMPLE_PLANS = _plan_files(SAMPLE_DATA)
REAL_PLANS = _plan_files(REALDATA) if REALDATA.is_dir() else []
VMAT = SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm"  # 2 arcs of 91 control points
IMRT = SAMPLE_DATA / "09_imrt_step_and_shoot_7f" / "RP.dcm"


# ------------------------------------------------------------------ helpers


def _bytes(ds: Dataset, syntax=None, undefined: bool = False) -> bytes:
    """``ds`` written little endian (``syntax``; None: as it is), sequences and items
    of undefined length when ``undefined``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _write(copy.deepcopy(ds), syntax, undefined)


def _write(ds: Dataset, syntax, undefined: bool) -> bytes:
    if undefined:
        undefined_lengths(ds)
    if syntax is not None:
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    if syntax is None:
        ds.save_as(buf, implicit_vr=ds.original_encoding[0], little_endian=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)


def _modality(ds: Dataset) -> Modality:
    return Modality.RTIONPLAN if "IonBeamSequence" in ds else Modality.RTPLAN


def _outcome(data: bytes, limits: Limits):
    ds = _read(data)
    try:
        return ex.extract(ds, _modality(ds), "plan.dcm", False, limits)
    except DicomReadError as exc:
        return f"error: {exc}"


def _fast(data: bytes, monkeypatch, limits: Limits | None = None):
    """The outcome as rtcode extracts it, and the data sets ``_plan`` was run on: one
    fast view when the fast path did not step aside."""
    runs = []
    real = ex._plan

    def spy(node, *args, **kwargs):
        runs.append(type(node))
        return real(node, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ex, "_plan", spy)
        return _outcome(data, limits or default_limits()), runs


def _reference(data: bytes, monkeypatch, limits: Limits | None = None):
    with monkeypatch.context() as m:
        m.setattr(ex, "plan_view", lambda ds: None)  # the reference path alone
        return _outcome(data, limits or default_limits())


def _difference(a, b, where: str = "plan") -> str | None:
    """Where two facts differ (None: equal); arrays by value, NaN and signed zero."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if not (
            np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))
        ):
            return f"{where}: values differ"
        return None
    if dataclasses.is_dataclass(a):
        fields = [f.name for f in dataclasses.fields(a)]
        return next(
            (d for f in fields if (d := _difference(getattr(a, f), getattr(b, f), f"{where}.{f}"))),
            None,
        )
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return f"{where}: {len(a)} != {len(b)} items"
        return next(
            (
                d
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                if (d := _difference(x, y, f"{where}[{i}]"))
            ),
            None,
        )
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        return next((d for k in a if (d := _difference(a[k], b[k], f"{where}[{k!r}]"))), None)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return None
    if a != b or (isinstance(a, float) and math.copysign(1, a) != math.copysign(1, b)):
        return f"{where}: {a!r} != {b!r}"
    return None


def _assert_reference(data: bytes, monkeypatch, limits: Limits | None = None, fast_path=True):
    """The fast outcome is the reference outcome; with ``fast_path`` the fast path did
    not step aside."""
    fast, runs = _fast(data, monkeypatch, limits)
    reference = _reference(data, monkeypatch, limits)
    if isinstance(reference, str):
        assert fast == reference
    else:
        assert (difference := _difference(fast, reference)) is None, difference
    if fast_path:
        assert runs == [views.DatasetItem], "the fast path stepped aside"
    return fast


def _scans(monkeypatch) -> list:
    """Records what every control point scan returned."""
    results = []
    real = extract_bulk._vectorised_scan

    def spy(*args):
        results.append(real(*args))
        return results[-1]

    monkeypatch.setattr(extract_bulk, "_vectorised_scan", spy)
    return results


# ------------------------------------------------------------ ordinary plans


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
@pytest.mark.parametrize("path", SAMPLE_PLANS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_plans_give_the_reference_facts(path, syntax, undefined, monkeypatch):
    data = _bytes(_read(path.read_bytes()), SYNTAXES[syntax], undefined)
    _assert_reference(data, monkeypatch)


@pytest.mark.parametrize("path", REAL_PLANS, ids=lambda p: p.parent.name)
def test_real_exports_give_the_reference_facts(path, monkeypatch):
    data = path.read_bytes()  # as exported: mostly implicit VR, defined lengths
    _assert_reference(data, monkeypatch)
    _assert_reference(_bytes(_read(data), ExplicitVRLittleEndian), monkeypatch)


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
@pytest.mark.parametrize("path", [VMAT, IMRT], ids=["vmat", "imrt"])
@pytest.mark.parametrize("scan", [True, False], ids=["scan", "walk"])
def test_scan_and_walk_give_the_reference_facts(path, syntax, scan, monkeypatch):
    """Every control point sequence scanned (at any size), or every one walked."""
    monkeypatch.setattr(extract_bulk, "_SCAN_BYTES", 0 if scan else 1 << 40)
    scans = _scans(monkeypatch)
    _assert_reference(_bytes(_read(path.read_bytes()), SYNTAXES[syntax]), monkeypatch)
    if scan:
        assert scans and all(result is not None for result in scans)
    else:
        assert not scans


def _vmat() -> Dataset:
    return _read(VMAT.read_bytes())


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
@pytest.mark.parametrize("scan", [True, False], ids=["scan", "walk"])
def test_carried_forward_values_give_the_reference_facts(syntax, scan, monkeypatch):
    """Control points that omit values (gantry, jaws, leaves, energy) carry the last."""
    ds = _vmat()
    cps = ds.BeamSequence[0].ControlPointSequence
    for i, cp in enumerate(cps):
        if i % 3 and i != len(cps) - 1:
            for keyword in ("GantryAngle", "NominalBeamEnergy", "IsocenterPosition"):
                if keyword in cp:
                    delattr(cp, keyword)
            cp.BeamLimitingDevicePositionSequence = [
                d for d in cp.BeamLimitingDevicePositionSequence if i % 2 or d.RTBeamLimitingDeviceType == "MLCX"
            ]  # fmt: skip
        if i == 4:
            cp.GantryAngle = ""  # blank: absent, the value before goes on
    monkeypatch.setattr(extract_bulk, "_SCAN_BYTES", 0 if scan else 1 << 40)
    scans = _scans(monkeypatch)
    plan = _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch)
    assert scans == [] if not scan else all(s is not None for s in scans)
    gantry = plan.beams[0].control_points.gantry_deg
    assert gantry[1] == gantry[0] and gantry[4] == gantry[3]


def _out_of_range(case: str) -> Dataset:
    """The VMAT plan with one value beyond its physical range (issue 21, 8), at a
    control point that carries it forward to the next ones."""
    ds = _vmat()
    beam = ds.BeamSequence[1]
    cp = beam.ControlPointSequence[40]
    if case == "gantry":
        cp.GantryAngle = "1e308"
    elif case == "gantry_360":
        cp.GantryAngle = "360"
    elif case == "couch":
        beam.ControlPointSequence[0].PatientSupportAngle = "-5"
    elif case == "collimator":
        beam.ControlPointSequence[0].BeamLimitingDeviceAngle = "1e308"
    elif case == "leaf":
        item = cp.BeamLimitingDevicePositionSequence[-1]
        values = list(item.LeafJawPositions)
        values[3] = "-1e308"
        item.LeafJawPositions = values
    elif case == "isocentre":
        beam.ControlPointSequence[0].IsocenterPosition = ["0", "0", "2e4"]
    elif case == "final_weight":
        beam.FinalCumulativeMetersetWeight = "1e-320"
    return ds


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
@pytest.mark.parametrize(
    "case, outcome",
    [
        ("gantry", "error"),
        ("gantry_360", "read"),
        ("couch", "error"),
        ("collimator", "flagged"),
        ("leaf", "error"),
        ("isocentre", "error"),
        ("final_weight", "error"),
    ],
)
def test_values_out_of_range_give_the_reference_outcome(syntax, case, outcome, monkeypatch):
    """The fast path's control points are checked against the same ranges: out of
    range, the reference path reads them and refuses the file or flags the value,
    naming where it is."""
    fast = _assert_reference(
        _bytes(_out_of_range(case), SYNTAXES[syntax]), monkeypatch, fast_path=False
    )
    if outcome == "error":
        assert isinstance(fast, str) and "plan.dcm::BeamSequence[1]" in fast, fast
    else:
        assert not isinstance(fast, str), fast
        flags = [o.flag for o in fast.oddities]
        assert flags == (["value_out_of_range"] if outcome == "flagged" else [])


def _insert(cp: Dataset, tag: int, vr: str, value: bytes) -> None:
    cp[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


# A value that holds what looks like the headers of an item with leaf positions.
FAKE = (
    b"\xfe\xff\x00\xe0\x10\x00\x00\x00"
    + b"\x0a\x30\x1c\x01DS\x04\x009\\9 "
    + b"\x0a\x30\xb8\x00CS\x04\x00MLCX"
)


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_a_binary_value_of_the_rt_group_does_not_fool_the_scan(syntax, monkeypatch):
    """Inside a control point, an OB element whose bytes look like headers: the scan
    follows the lengths and never reads them as elements."""
    ds = _vmat()
    for cp in ds.BeamSequence[0].ControlPointSequence[1:4]:
        _insert(cp, 0x300A0F00, "OB", FAKE)  # not in the data dictionary
    scans = _scans(monkeypatch)
    _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch)
    assert scans and all(result is not None for result in scans)


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_a_binary_element_of_another_group_sends_the_scan_to_the_walk(syntax, monkeypatch):
    """A private binary element in a control point: the scan steps aside (its headers
    are not among the scan's candidates) and the walk gives the reference facts."""
    ds = _vmat()
    cp = ds.BeamSequence[0].ControlPointSequence[1]
    cp.add_new(0x32490010, "LO", "RTCODE TEST")
    _insert(cp, 0x32491000, "OB", FAKE)
    scans = _scans(monkeypatch)
    _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch)
    assert scans[0] is None and all(result is not None for result in scans[1:])


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_values_that_are_not_plain_give_the_reference_facts(syntax, monkeypatch):
    """Non-ASCII text, several software versions, exponents, padding: decoded by
    pydicom where the fast path does not decode them itself."""
    ds = _vmat()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.RTPlanName = "Bögen prostata"
    ds.PatientName = "Müller^Jörg=Mueller^Joerg"
    ds.SoftwareVersions = ["16.1", "2.0"]
    beam = ds.BeamSequence[0]
    beam[0x300A010E] = RawDataElement(Tag(0x300A010E), "DS", 6, b"1.0e0 ", 0, False, True)
    beam.BeamDescription = "arc 1 \\ clockwise"
    beam.ControlPointSequence[2].GantryAngle = "1.75E2"
    _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch, fast_path=False)


HDR = SAMPLE_DATA / "16_hdr_brachy" / "RP.dcm"
# Brachytherapy control point values the bulk reader leaves to the element-by-element
# reading: (keyword, raw DS bytes); seed counts must come out as the reference's.
BRACHY_VALUES = [
    ("CumulativeTimeWeight", b""),
    ("CumulativeTimeWeight", b"1.5e0 "),
    ("CumulativeTimeWeight", b"nan "),
    ("CumulativeTimeWeight", b"1\\2 "),
    ("ControlPointRelativePosition", b"1e999 "),
    ("ControlPointRelativePosition", b"abc "),
    ("ControlPoint3DPosition", b"1\\2 "),
    ("ControlPoint3DPosition", b"1\\2\\x "),
    ("ControlPoint3DPosition", b"1\\2\\inf "),
    ("ControlPoint3DPosition", b" 1.0\\ -2\\+3."),
]


def _brachy_points_spy(monkeypatch) -> list:
    """Records what every call of the bulk brachytherapy reader returned."""
    results = []
    real = extract_bulk.brachy_points

    def spy(cps):
        results.append(real(cps))
        return results[-1]

    monkeypatch.setattr(extract_bulk, "brachy_points", spy)
    return results


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_brachy_control_points_are_read_in_bulk_with_the_reference_facts(syntax, monkeypatch):
    data = _bytes(_read(HDR.read_bytes()), SYNTAXES[syntax])
    results = _brachy_points_spy(monkeypatch)
    fast, runs = _fast(data, monkeypatch)
    assert runs == [views.DatasetItem]
    assert len(results) == 3 and all(r is not None for r in results)  # every channel in bulk
    assert _difference(fast, _reference(data, monkeypatch)) is None
    assert fast.brachy.number_of_seeds is not None


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
@pytest.mark.parametrize("keyword,value", BRACHY_VALUES, ids=lambda v: repr(v))
def test_brachy_values_that_are_not_plain_give_the_reference_facts(
    syntax, keyword, value, monkeypatch
):
    ds = _read(HDR.read_bytes())
    channel = ds.ApplicationSetupSequence[0].ChannelSequence[0]
    cp = channel.BrachyControlPointSequence[1]
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    cp[tag] = RawDataElement(tag, "DS", len(value), value, 0, False, True)
    results = _brachy_points_spy(monkeypatch)
    _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch, fast_path=False)
    plain = value in (b"1.5e0 ", b" 1.0\\ -2\\+3.")
    assert (results[0] is not None) == plain  # the one channel changed: left to _seeds


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_undefined_lengths_inside_a_defined_sequence_are_walked(syntax, monkeypatch):
    """Device position sequences and their items of undefined length inside control
    point sequences of defined length: pydicom keeps those bytes unparsed; the scan
    steps aside (delimiters) and the walk gives the reference facts."""
    ds = _vmat()
    for beam in ds.BeamSequence:
        for cp in beam.ControlPointSequence:
            cp["BeamLimitingDevicePositionSequence"].is_undefined_length = True
            for item in cp.BeamLimitingDevicePositionSequence:
                item.is_undefined_length_sequence_item = True
    monkeypatch.setattr(extract_bulk, "_SCAN_BYTES", 0)
    scans = _scans(monkeypatch)
    _assert_reference(_bytes(ds, SYNTAXES[syntax]), monkeypatch)
    assert scans and all(result is None for result in scans)


def _element(tag: int, vr: bytes, value: bytes, implicit: bool = False, extra: int = 0) -> bytes:
    """An element, little endian; its length ``extra`` bytes longer than its value."""
    length = len(value) + extra
    if implicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value
    if vr in (b"SQ", b"OB"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, length) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, length) + value


def _item(*elements: bytes, extra: int = 0) -> bytes:
    content = b"".join(elements)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(content) + extra) + content


def _control_point(*more: bytes, implicit: bool = False, lengths: tuple = (0, 0, 0)) -> bytes:
    """A control point item; ``lengths``: what to add to the declared lengths of the
    item, of its device position sequence and of the device items."""
    cp, sequence, device = lengths

    def element(tag, vr, value, extra=0):
        return _element(tag, vr, value, implicit, extra)

    devices = b"".join(
        _item(element(0x300A00B8, b"CS", kind), element(0x300A011C, b"DS", b"-5\\5"), extra=device)
        for kind in (b"X ", b"Y ")
    )
    return _item(
        element(0x300A011A, b"SQ", devices, sequence),
        element(0x300A011E, b"DS", b"90"),
        *more,
        element(0x300A0134, b"DS", b"0 "),
        extra=cp,
    )


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_the_fast_path_reads_crafted_control_points_as_expected(implicit):
    """The crafted bytes the next tests damage are read by both fast readers."""
    data = _control_point(implicit=implicit) * 2
    scanned = extract_bulk._vectorised_scan(data, 0, len(data), implicit)
    walked = extract_bulk._columns_of_items(views._items(data, 0, len(data), implicit, 1)[0])
    for columns in (scanned, walked):
        assert columns.count == 2
        assert columns.values[elements.key(0x300A011E)] == ([0, 1], [b"90", b"90"])
        assert [d[:2] for d in columns.devices] == [(0, b"X "), (0, b"Y "), (1, b"X "), (1, b"Y ")]


def _damaged(case: str, implicit: bool) -> bytes:
    def element(tag, vr, value):
        return _element(tag, vr, value, implicit)

    more, lengths = (), (0, 0, 0)
    if case == "duplicate":  # GantryAngle twice in one item
        more = (element(0x300A011E, b"DS", b"91"),)
    elif case == "delimiter":  # an item delimiter in an item of defined length
        more = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0),)
    elif case == "no_vr":
        more = (_element(0x300A0121, b"C\x00", b"NO"),)
    elif case == "other_group":
        more = (element(0x32491000, b"OB", b"\x00" * 4),)
    else:  # a length that does not fit what the item or sequence holds
        lengths = {
            "item_length": (4, 0, 0),
            "sequence_length": (0, -8, 0),
            "device_length": (0, 0, 4),
        }[case]
    return _control_point(*more, implicit=implicit, lengths=lengths) + _control_point(
        implicit=implicit
    )


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize(
    "case",
    [
        "duplicate",
        "delimiter",
        "no_vr",
        "other_group",
        "item_length",
        "sequence_length",
        "device_length",
    ],
)
def test_crafted_control_points_that_are_not_plain_are_refused(case, implicit):
    """What the fast readers must not read their own way: the scan steps aside, and the
    walk refuses too where pydicom would read the bytes otherwise."""
    if case == "no_vr" and implicit:
        pytest.skip("implicit VR names no VR")
    data = _damaged(case, implicit)
    assert extract_bulk._vectorised_scan(data, 0, len(data), implicit) is None
    if case != "other_group":  # walked: a private element is skipped like any other
        with pytest.raises(views.Unusual):
            extract_bulk._columns_of_items(views._items(data, 0, len(data), implicit, 1)[0])


def test_a_skipped_element_twice_changes_nothing_the_scan_reads():
    """pydicom keeps the last of two equal tags; neither path reads this one."""
    index = _element(0x300A0112, b"IS", b"1 ")  # ControlPointIndex
    data, plain = (_control_point() + _control_point(*more) for more in ((index, index), (index,)))
    got, expected = (extract_bulk._vectorised_scan(d, 0, len(d), False) for d in (data, plain))
    assert (got.count, got.values, got.devices) == (
        expected.count,
        expected.values,
        expected.devices,
    )


# ------------------------------------------------------------ damaged plans


def _explicit_vmat() -> bytearray:
    return bytearray(_bytes(_vmat(), ExplicitVRLittleEndian))


@pytest.mark.parametrize("where", [0, 5, 40])
@pytest.mark.parametrize(
    "header",
    [b"\x0a\x30\x1f\x01CS", b"\x0a\x30\x12\x01IS"],
    ids=["GantryRotationDirection", "ControlPointIndex"],
)
@pytest.mark.parametrize("scan", [True, False], ids=["scan", "walk"])
def test_an_invalid_vr_in_a_control_point_gives_the_reference_error(
    where, header, scan, monkeypatch
):
    """pydicom reads an element whose VR is no VR as implicit VR, and the sequence ends
    elsewhere: the fast path must not read it its own way (an element it wants, or
    one it skips)."""
    monkeypatch.setattr(extract_bulk, "_SCAN_BYTES", 0 if scan else 1 << 40)
    data = _explicit_vmat()
    at = [i for i in range(len(data)) if data.startswith(header, i)][where]
    data[at + 4 : at + 6] = b"\xd6H"
    outcome = _assert_reference(bytes(data), monkeypatch, fast_path=False)
    assert isinstance(outcome, str) and outcome.startswith("error: ")


@pytest.mark.parametrize(
    "setting",
    ["max_control_points_per_plan = 100", "max_control_points_per_beam = 50", "max_leaf_pairs = 20",
     "max_beams = 1", "max_meterset_mu = 10.0"],
)  # fmt: skip
def test_limits_give_the_reference_error(setting, monkeypatch):
    name, value = (part.strip() for part in setting.split("="))
    limits = dataclasses.replace(
        default_limits(), **{name: type(getattr(default_limits(), name))(value)}
    )
    outcome = _assert_reference(bytes(_explicit_vmat()), monkeypatch, limits, fast_path=False)
    assert isinstance(outcome, str) and name in outcome


@FAST
@given(
    source=st.integers(0, len(DATASETS) - 1),
    steps=mutations(),
    syntax=st.sampled_from([None, *SYNTAXES]),
)
def test_mutated_plans_give_the_reference_answer(source, steps, syntax):
    """test_properties' mutations (raw bytes of any VR, deletions, emptied, dropped,
    doubled and reversed items), written out and read back: the same facts or the
    same error, fast path or not."""
    ds = copy.deepcopy(DATASETS[source])
    _mutate(ds, steps)
    try:
        data = _bytes(ds, SYNTAXES[syntax] if syntax else None)
    except Exception:  # a mutant pydicom cannot write
        return
    with pytest.MonkeyPatch.context() as monkeypatch:
        _assert_reference(data, monkeypatch, fast_path=False)
    assert MODALITIES[source]  # the source is a plan, an ion plan or a brachy plan


# ------------------------------------------------------------ plain values

KEYWORDS = {
    "CS": "BeamType", "LO": "BeamName", "SH": "TreatmentMachineName", "UI": "SOPInstanceUID",
    "PN": "PatientName", "DA": "RTPlanDate", "ST": "BeamDescription", "IS": "BeamNumber",
    "DS": "FinalCumulativeMetersetWeight",
}  # fmt: skip
_BYTES = st.one_of(
    st.binary(max_size=12),
    st.text(alphabet=" 0123456789.+-eE\\^=ABCxyz_\x00\t", max_size=12).map(str.encode),
    st.sampled_from(
        [b"", b"  ", b"1", b" -2.50 ", b"+3", b"1e3", b"007", b"1\\2", b"A^B", b"CW\x00"]
    ),
)


def _pydicom_value(vr: str, data: bytes, charset: str):
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    tag = Tag(pydicom.datadict.tag_for_keyword(KEYWORDS[vr]))
    ds[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.get(KEYWORDS[vr])


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(
    vr=st.sampled_from(sorted(KEYWORDS)),
    data=_BYTES,
    charset=st.sampled_from(["ISO_IR 100", "ISO_IR 192", "GB18030"]),
)
def test_plain_values_are_what_pydicom_gives(vr, data, charset):
    """Where the fast path decodes a value itself, extract.py reads from it what it
    reads from pydicom's value."""
    try:
        fast = views.plain(vr, data)
    except views.Unusual:
        return
    try:
        reference = _pydicom_value(vr, data, charset)
    except Exception:
        pytest.fail(f"the fast path decoded {data!r} ({vr}), pydicom fails")

    def read(value):
        try:
            if vr in ("DS", "IS"):
                if isinstance(value, np.ndarray) or (
                    not isinstance(value, (str, float, int)) and value is not None
                ):
                    return ("floats", ex._floats(value, "x").tolist())
                return ("number", ex._float(value, "x"))
            return ("text", None if value is None else (str(value).strip() or None))
        except DicomReadError as exc:
            return ("error", str(exc).split(":")[0])

    assert read(fast) == read(reference)


# ------------------------------------------------------------ decimal strings


def test_decimal_strings_in_pieces_equal_float(monkeypatch):
    """Long strings are converted in pieces; a piece boundary changes nothing."""
    monkeypatch.setattr(decimals, "_BULK_BYTES", 0)
    monkeypatch.setattr(decimals, "_PIECE_VALUES", 3)
    rng = random.Random(20260611)
    for _ in range(3000):
        values = []
        for _ in range(rng.randint(1, 14)):
            kind = rng.random()
            if kind < 0.5:
                values.append(f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 9)}f}")
            elif kind < 0.8:
                values.append(
                    "".join(rng.choice("0123456789.-+") for _ in range(rng.randint(0, 6)))
                )
            else:
                digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16)))
                cut = rng.randint(0, len(digits))
                values.append(rng.choice(["", "-", "+"]) + digits[:cut] + "." + digits[cut:])
        text = "\\".join(values).encode()
        try:
            expected = np.array([float(v) for v in text.split(b"\\")])
        except ValueError:
            expected = None
        if expected is None or not np.isfinite(expected).all():
            with pytest.raises(ValueError):
                decimals.parse_ds(text)
            continue
        got = decimals.parse_ds(text)
        assert np.array_equal(got, expected) and np.array_equal(
            np.signbit(got), np.signbit(expected)
        ), text
