"""The fast extraction path (rtcode/dicom/extract_bulk.py) against the reference path.

The fast path parses a beam's control points from the raw bytes of its sequence and
converts decimal strings in bulk; the element-by-element path in extract.py is the
reference. For every sample plan, in every encoding pydicom writes (explicit and
implicit VR, defined and undefined lengths), both must give the same facts; on
anything unusual the fast path must step aside (return None), never guess.
"""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SAMPLE_DATA, undefined_lengths
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtcode.dicom import decimals, extract_bulk
from rtcode.dicom import extract as ex
from rtcode.model.errors import DicomReadError
from rtcode.model.facts import Modality
from rtcode.model.limits import default_limits

_LEAF_JAW = 0x300A011C  # LeafJawPositions

# ------------------------------------------------------------------ parse_ds


def _reference(data: bytes) -> np.ndarray | None:
    """float() value by value: what parse_ds must agree with (None: not numbers)."""
    try:
        values = np.array([float(v) for v in data.rstrip(b" ").split(b"\\")])
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def _parse(text: bytes) -> np.ndarray:
    """parse_ds with the numpy path forced on (it is used for long values only), after
    checking that the short-value path gives the same answer."""
    try:
        short = decimals.parse_ds(text)
    except ValueError:
        short = None
    saved = decimals._BULK_BYTES
    decimals._BULK_BYTES = 0
    try:
        bulk = decimals.parse_ds(text)
    except ValueError:
        assert short is None
        raise
    finally:
        decimals._BULK_BYTES = saved
    assert short is not None and _same(short, bulk)
    return bulk


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize(
    "text",
    [
        b"1", b"-0", b"+.5", b"5.", b"-12.5\\3.25\\0", b"0.1\\0.2\\0.3", b"123456789012345",
        b"1234567890123456", b"1e3", b"-2.5E-2\\7", b" 1.5\\2 ", b"1.5 ", b"99999.999999999",
        b"0.000000000000001", b"-1234.56789\\1234.56789",
    ],
)  # fmt: skip
def test_parse_ds_equals_float(text):
    got = _parse(text)
    assert _same(got, _reference(text))


@pytest.mark.parametrize(
    "text", [b"", b"abc", b"1\\\\2", b"1-2", b"--1", b"1.2.3", b"nan", b"inf", b"1 2", b"-", b"."]
)
def test_parse_ds_refuses_what_is_not_a_finite_number(text):
    assert _reference(text) is None
    with pytest.raises(ValueError):
        _parse(text)


@pytest.mark.parametrize(
    "text",
    [
        b"-6.2e-1\\1.0989011e-2\\5E+2\\.5e0\\1.e1\\-0e5\\7e-022",  # as Eclipse writes leaves
        b"123456789012345e7\\1e22\\1e-22\\9.99e-21\\-4.9406564584124654e-3",
        b"1e23\\1e-23\\1e300\\1e-999\\2.5e+0003",  # powers beyond 10**22: float() alone
    ],
)
def test_parse_ds_reads_exponents_as_float_does(text):
    assert _same(_parse(text), _reference(text))


@pytest.mark.parametrize(
    "text", [b"1e", b"e1", b"1e+", b"1e-\\2", b"1e1e1", b"1e1.5", b"1e+-1", b"1e1-", b"1ee1"]
)
def test_parse_ds_refuses_exponents_that_are_not_numbers(text):
    assert _reference(text) is None
    with pytest.raises(ValueError):
        _parse(text)


def test_plain_exponents_and_long_values_are_converted_in_bulk():
    """Exponents are read in the numpy pass, not by float() one by one; a few long
    values among many short ones go to float() instead of widening the table."""
    short = "\\".join(f"{v / 10:.1f}" for v in range(-3000, 3000)).encode()
    text = short + b"\\-6.2e-1\\1.5E+2\\0.123456789012345"
    marked = (text + b"\\").translate(decimals._CHARACTERS)
    codes = np.frombuffer(marked, dtype=np.uint8)
    ends = np.flatnonzero(codes == ord("\\"))
    lengths = np.diff(ends, prepend=-1) - 1
    mantissa_ends, exponents, other = decimals._exponents(marked, codes, ends)
    assert exponents is not None and not other.any()
    _, not_plain = decimals._mantissas(
        marked, mantissa_ends, lengths - (ends - mantissa_ends), exponents
    )
    assert np.flatnonzero(not_plain).tolist() == [ends.size - 1]  # the 17 characters alone
    assert decimals._width(lengths) < 8
    assert _same(_parse(text), _reference(text))


_decimal = st.one_of(
    st.floats(-1e5, 1e5, allow_nan=False).map(lambda v: f"{v:.{abs(hash(v)) % 9}f}"),
    st.integers(-(10**15), 10**15).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
    st.floats(-1e30, 1e30, allow_nan=False).map(lambda v: f"{v:.{abs(hash(v)) % 16}e}"),
    st.text(alphabet=" 0123456789.-+eE", max_size=7),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_decimal, min_size=1, max_size=12))
def test_parse_ds_agrees_with_float_on_any_string(values):
    text = "\\".join(values).encode()
    expected = _reference(text)
    if expected is None:
        with pytest.raises(ValueError):
            _parse(text)
    else:
        assert _same(_parse(text), expected)


# ------------------------------------------------------------ control points


def _sample_plans() -> list[Path]:
    plans = []
    for path in sorted(SAMPLE_DATA.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.get("BeamSequence") or ds.get("IonBeamSequence"):  # not brachytherapy
            plans.append(path)
    return plans


SAMPLE_PLANS = _sample_plans()


def _encode(ds: pydicom.Dataset, syntax, undefined: bool) -> pydicom.Dataset:
    """``ds`` written in ``syntax`` (sequences and items of undefined length when
    ``undefined``) and read back, as rtcode's reader would read it."""
    ds = copy.deepcopy(ds)
    if undefined:
        undefined_lengths(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    if syntax == ExplicitVRBigEndian:  # retired, but still met in old archives
        pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf, stop_before_pixels=True)


def _plan(ds: pydicom.Dataset, fast: bool, monkeypatch):
    modality = Modality.RTIONPLAN if "IonBeamSequence" in ds else Modality.RTPLAN
    # not fast: the reference path, pydicom's elements one by one
    return ex.extract(ds, modality, "plan.dcm", False, default_limits(), reference=not fast)


def _assert_same_control_points(a, b) -> None:
    assert len(a.beams) == len(b.beams)
    for x, y in zip(a.beams, b.beams, strict=True):
        p, q = x.control_points, y.control_points
        assert p.gantry_direction == q.gantry_direction
        assert p.dicom_path == q.dicom_path
        for name in (
            "cumulative_meterset_weight", "gantry_deg", "collimator_deg", "couch_deg",
            "isocenter_mm", "nominal_energy",
        ):  # fmt: skip
            assert np.array_equal(getattr(p, name), getattr(q, name), equal_nan=True), name
        assert list(p.positions_mm) == list(q.positions_mm)
        for kind in p.positions_mm:
            assert np.array_equal(p.positions_mm[kind], q.positions_mm[kind], equal_nan=True)


# Sample plans whose vendor quirks the fast path may leave to the reference path (it
# steps aside on what it does not expect); their facts must still be the same.
QUIRKY = {
    "21_mridian_two_mlcx_layers",  # two MLCX layers: paired with their definitions by count
    "22_gamma_knife_placeholder_beam",  # a placeholder beam: empty control point values
}


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"]
)
@pytest.mark.parametrize("path", SAMPLE_PLANS, ids=lambda p: p.parent.name)
def test_fast_path_gives_the_reference_facts(path, syntax, undefined, monkeypatch):
    ds = _encode(pydicom.dcmread(path, stop_before_pixels=True), syntax, undefined)
    calls = []
    real = extract_bulk.control_points

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(extract_bulk, "control_points", spy)
    fast = ex.extract(ds, Modality.RTPLAN if "BeamSequence" in ds else Modality.RTIONPLAN,
                      "plan.dcm", False, default_limits())  # fmt: skip
    monkeypatch.undo()
    if path.parent.name not in QUIRKY:
        assert calls and all(calls), "the fast path stepped aside on an ordinary plan"
    reference = _plan(_encode(pydicom.dcmread(path), syntax, undefined), False, monkeypatch)
    _assert_same_control_points(fast, reference)


def _vmat() -> pydicom.Dataset:
    for path in SAMPLE_PLANS:
        ds = pydicom.dcmread(path)
        beams = ds.get("BeamSequence") or []
        if any(len(b.ControlPointSequence) > 20 for b in beams):
            return ds
    raise AssertionError("no arc plan in the sample data")


def test_carried_forward_values_match_the_reference(monkeypatch):
    """Control points that omit values (gantry, jaws, leaves) carry the last one."""
    ds = _vmat()
    cps = ds.BeamSequence[0].ControlPointSequence
    for i, cp in enumerate(cps):
        if i % 3 and i != len(cps) - 1:
            if "GantryAngle" in cp:
                del cp.GantryAngle
            cp.BeamLimitingDevicePositionSequence = [
                d for d in cp.BeamLimitingDevicePositionSequence if d.RTBeamLimitingDeviceType
                == "MLCX"
            ]  # fmt: skip
    encoded = _encode(ds, ExplicitVRLittleEndian, False)
    fast = _plan(encoded, True, monkeypatch)
    reference = _plan(_encode(ds, ExplicitVRLittleEndian, False), False, monkeypatch)
    _assert_same_control_points(fast, reference)
    gantry = fast.beams[0].control_points.gantry_deg
    assert not any(math.isnan(g) for g in gantry)
    assert gantry[1] == gantry[0]  # omitted at point 1: the value of point 0


@pytest.mark.parametrize(
    "damage",
    [
        "big_endian",
        "multi_valued_gantry",
        "text_in_leaves",
        "leaf_count",
        "negative_weight",
        "missing_device_type",
        "exponent_leaves",
    ],
)
def test_unusual_input_gives_the_reference_answer(damage, monkeypatch):
    """Where the fast path steps aside, the answer (facts or error) is the reference's."""
    ds = _vmat()
    cp = ds.BeamSequence[0].ControlPointSequence[1]
    syntax = ExplicitVRLittleEndian
    if damage == "big_endian":
        syntax = ExplicitVRBigEndian
    elif damage == "multi_valued_gantry":
        cp.GantryAngle = [10, 20]
    elif damage == "text_in_leaves":
        mlc = cp.BeamLimitingDevicePositionSequence[-1]
        text = b"x1\\" + b"\\".join(str(v).encode() for v in mlc.LeafJawPositions[1:])
        text += b" " * (len(text) % 2)
        mlc[_LEAF_JAW] = RawDataElement(Tag(_LEAF_JAW), "DS", len(text), text, 0, False, True)
    elif damage == "leaf_count":
        mlc = cp.BeamLimitingDevicePositionSequence[-1]
        mlc.LeafJawPositions = list(mlc.LeafJawPositions)[:-2]
    elif damage == "negative_weight":
        cp.CumulativeMetersetWeight = -0.5
    elif damage == "missing_device_type":
        del cp.BeamLimitingDevicePositionSequence[-1].RTBeamLimitingDeviceType
    elif damage == "exponent_leaves":
        mlc = cp.BeamLimitingDevicePositionSequence[-1]
        mlc.LeafJawPositions = [f"{float(v):.3e}" for v in mlc.LeafJawPositions]

    def outcome(fast: bool):
        try:
            return _plan(_encode(ds, syntax, False), fast, monkeypatch)
        except DicomReadError as exc:
            return str(exc)

    fast, reference = outcome(True), outcome(False)
    if isinstance(reference, str):
        assert fast == reference
    else:
        _assert_same_control_points(fast, reference)
