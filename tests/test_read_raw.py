"""The raw read (``read._read_view``, ``views.file_view``) against the reference.

A plain Part-10 RT file is read from its bytes without pydicom, and its facts are
extracted through the fast path's view. Every test scans the same file three ways
(``scan._one_file``, the whole per-file outcome): as rtcode does; with the view's
extraction stepping aside (pydicom then parses the kept bytes: ``RawDataset.dataset``);
and by the reference path alone (pydicom reads the file, extract.py reads its elements
one by one). The facts must be equal field by field (arrays by value, NaN and the sign
of zero included), or the error text, or the kind of file skipped, the same.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import random
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import REALDATA, SAMPLE_DATA, undefined_lengths
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtcode.dicom import extract as ex
from rtcode.dicom import read, views
from rtcode.engine import scan
from rtcode.model.facts import SOP_CLASS_MODALITY
from rtcode.model.limits import default_limits

LIMITS = default_limits()
RP = SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm"
RS = SAMPLE_DATA / "06_four_field_box_3d" / "RS.dcm"
RD = SAMPLE_DATA / "06_four_field_box_3d" / "RD.dcm"  # with pixel data and a DVH
VMAT = SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm"
ION = SAMPLE_DATA / "17_proton_pbs" / "RN.dcm"
SYNTAXES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian}
DOSE_CLASS, PLAN_CLASS = "1.2.840.10008.5.1.4.1.1.481.2", "1.2.840.10008.5.1.4.1.1.481.5"


def _rt_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        if str(ds.get("SOPClassUID", "")) in SOP_CLASS_MODALITY:
            found.append(path)
    return found


SAMPLE_RT = _rt_files(SAMPLE_DATA)
REAL_RT = _rt_files(REALDATA) if REALDATA.is_dir() else []


# ------------------------------------------------------------------ helpers


def _scan_one(path: Path, monkeypatch, mode: str):
    """The outcome of ``scan._one_file``: "fast" as rtcode does it, "fallback" with the
    view's extraction stepping aside, "reference" without any fast path."""
    entry = read.FileEntry(str(path), "file.dcm", explicit=False)
    with monkeypatch.context() as m:
        if mode == "fallback":
            m.setattr(ex, "_from_view", lambda *a: None)
        elif mode == "reference":
            m.setattr(read, "_read_view", lambda *a: None)
            m.setattr(ex, "plan_view", lambda ds: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return scan._one_file(entry, LIMITS)


def _difference(a, b, where: str = "outcome") -> str | None:
    """Where two outcomes differ (None: equal); arrays by value, NaN and signed zero."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        same = (
            a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b))
        )
        return None if same else f"{where}: arrays differ"
    if dataclasses.is_dataclass(a):
        pairs = [(getattr(a, f.name), getattr(b, f.name), f.name) for f in dataclasses.fields(a)]
    elif isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return f"{where}: {len(a)} != {len(b)} items"
        pairs = [(x, y, str(i)) for i, (x, y) in enumerate(zip(a, b, strict=True))]
    elif isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        pairs = [(a[k], b[k], repr(k)) for k in a]
    else:
        if isinstance(a, float) and math.isnan(a) and math.isnan(b):
            return None
        if a != b or (isinstance(a, float) and math.copysign(1, a) != math.copysign(1, b)):
            return f"{where}: {a!r} != {b!r}"
        return None
    return next((d for x, y, name in pairs if (d := _difference(x, y, f"{where}.{name}"))), None)


def _assert_reference(path: Path, monkeypatch, fast: bool | None = None):
    """All three ways give the same outcome; with ``fast`` True (False) the file was
    (was not) read from its bytes and its facts extracted through the view."""
    runs = []
    real = ex._from_view

    def spy(*args):
        runs.append(result := real(*args))
        return result

    with monkeypatch.context() as m:
        m.setattr(ex, "_from_view", spy)
        outcome = _scan_one(path, monkeypatch, "fast")
    reference = _scan_one(path, monkeypatch, "reference")
    assert (difference := _difference(outcome, reference)) is None, difference
    fallback = _scan_one(path, monkeypatch, "fallback")
    assert (difference := _difference(fallback, reference, "fallback")) is None, difference
    if fast is not None:
        assert (len(runs) == 1 and runs[0] is not None) == fast, runs
    return outcome


def _write(ds: Dataset, syntax=ExplicitVRLittleEndian, undefined: bool = False) -> bytes:
    ds = copy.deepcopy(ds)
    if undefined:
        undefined_lengths(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "file.dcm"
    path.write_bytes(data)
    return path


def _meta_end(data: bytes) -> int:
    """Where the data set starts in a Part-10 file (after the file meta group)."""
    pos = 132
    while data[pos : pos + 2] == b"\x02\x00":
        long = data[pos + 4 : pos + 6] in (b"OB", b"OW", b"UN", b"UT", b"SQ")
        length = struct.unpack_from("<I" if long else "<H", data, pos + (8 if long else 6))[0]
        pos += (12 if long else 8) + length
    return pos


# ------------------------------------------------------------------ real files


@pytest.mark.parametrize("path", SAMPLE_RT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_rt_files_give_the_reference_outcome(path, monkeypatch):
    _assert_reference(path, monkeypatch, fast=True)  # every sample, bare data sets too


@pytest.mark.parametrize("path", REAL_RT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_exports_give_the_reference_outcome(path, monkeypatch):
    _assert_reference(path, monkeypatch)


@pytest.mark.parametrize("source", [RP, RS, RD, VMAT, ION], ids=lambda p: p.parent.name)
@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_rewritten_files_are_read_fast_with_the_reference_outcome(
    source, syntax, undefined, tmp_path, monkeypatch
):
    path = _file(tmp_path, _write(_read(source), SYNTAXES[syntax], undefined))
    _assert_reference(path, monkeypatch, fast=True)


@pytest.mark.parametrize("source", [RP, RD, VMAT], ids=lambda p: p.parent.name)
@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_bare_data_sets_are_read_fast_with_the_reference_outcome(
    source, syntax, undefined, tmp_path, monkeypatch
):
    """A data set without preamble or file meta (as Monaco exports plans): pydicom
    guesses its VR encoding from the first header, and so does the fast path."""
    data = _write(_read(source), SYNTAXES[syntax], undefined)
    path = _file(tmp_path, data[_meta_end(data) :])
    result = read.read(read.FileEntry(str(path), "file.dcm", explicit=False))
    assert isinstance(result.dataset, read.RawDataset)
    assert result.dataset.view.implicit == (syntax == "implicit")
    _assert_reference(path, monkeypatch, fast=True)


def test_a_file_meta_without_preamble_is_left_to_pydicom(tmp_path, monkeypatch):
    """No preamble but a file meta group (0002) first: pydicom reads the group and its
    transfer syntax; the fast path steps aside and the outcome is the reference's."""
    data = _write(_read(RP), ImplicitVRLittleEndian)
    path = _file(tmp_path, data[132:])
    result = read.read(read.FileEntry(str(path), "file.dcm", explicit=False))
    assert result.kind == "rt" and not isinstance(result.dataset, read.RawDataset)
    _assert_reference(path, monkeypatch, fast=False)


def test_a_bare_data_set_of_an_image_class_is_the_reference_image(tmp_path, monkeypatch):
    """Without file meta only the data set's SOP Class UID says "image": a plan's beams
    in it do not make the fast path call it a plan (the reference skips it as an image)."""
    ds = _read(RP)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    data = _write(ds, ExplicitVRLittleEndian)
    path = _file(tmp_path, data[_meta_end(data) :])
    assert scan._one_file(read.FileEntry(str(path), "file.dcm", explicit=False), LIMITS) == "image"
    _assert_reference(path, monkeypatch)


@pytest.mark.parametrize("source", [RS, RD, VMAT], ids=lambda p: p.parent.name)
def test_a_small_first_read_grows_to_what_is_needed(source, tmp_path, monkeypatch):
    """Bytes are read as the walk needs them (an undefined length is found by
    reading on): a first read of 64 bytes changes nothing."""
    monkeypatch.setattr(read, "_FIRST_READ", 64)
    path = _file(tmp_path, _write(_read(source), ImplicitVRLittleEndian, undefined=True))
    _assert_reference(path, monkeypatch, fast=True)


def test_a_dose_is_read_without_its_pixel_data(tmp_path, monkeypatch):
    reads = []
    real = read._BoundedReader.read

    def spy(self, n=-1):
        reads.append(n)
        return real(self, n)

    ds = _read(RD)
    ds.PixelData = bytes(8 << 20)  # 8 MB of dose grid
    ds.NumberOfFrames, ds.Rows, ds.Columns = 64, 256, 256
    path = _file(tmp_path, _write(ds))
    monkeypatch.setattr(read._BoundedReader, "read", spy)
    result = read.read(read.FileEntry(str(path), "file.dcm", explicit=False))
    assert isinstance(result.dataset, read.RawDataset) and result.has_pixel_data
    assert sum(n for n in reads if n > 0) < 1 << 20
    monkeypatch.undo()
    _assert_reference(path, monkeypatch, fast=True)


def test_pydicom_dataset_gives_what_pydicom_reads():
    result = read.read(read.FileEntry(str(RS), "RS.dcm", explicit=False))
    assert isinstance(result.dataset, read.RawDataset)
    ds = result.pydicom_dataset()
    assert isinstance(ds, Dataset) and ds == pydicom.dcmread(RS, stop_before_pixels=True)
    assert "ROIContourSequence" in result.dataset and "PixelData" not in result.dataset


def test_a_one_value_us_is_what_pydicom_gives():
    assert views.plain("US", b"\x00\x01") == 256
    with pytest.raises(views.Unusual):
        views.plain("US", b"\x00\x01\x00\x02")  # two values: pydicom's list


# ------------------------------------------------------------------ crafted files


def _edited(source: Path, edit, syntax=ExplicitVRLittleEndian) -> bytes:
    ds = _read(source)
    edit(ds)
    return _write(ds, syntax)


def _set(**values):
    def edit(ds):
        for keyword, value in values.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)

    return edit


def _meta(**values):
    def edit(ds):
        for keyword, value in values.items():
            if value is None:
                delattr(ds.file_meta, keyword)
            else:
                setattr(ds.file_meta, keyword, value)

    return edit


def _damaged_charset(nested: bool) -> bytes:
    """A Specific Character Set pydicom fails to look up (it cannot write one)."""
    ds = _read(RS)
    (ds.ROIContourSequence[0] if nested else ds).SpecificCharacterSet = "ISO_IR 166"
    data = _write(ds)
    assert data.count(b"ISO_IR 166") == 1
    return data.replace(b"ISO_IR 166", b"ISO_IR \x0092")


def _charset_sequence() -> bytes:
    """A Specific Character Set that is a sequence of undefined length (pydicom fails
    to read the file: it converts the character set as it reads)."""
    data = _write(_read(RP))
    start = _meta_end(data)
    rest = data[start:]
    if rest[:4] == b"\x08\x00\x05\x00":
        rest = rest[8 + struct.unpack_from("<H", rest, 6)[0] :]
    sequence = struct.pack("<HH2sHI", 8, 5, b"SQ", 0, 0xFFFFFFFF)
    sequence += struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return data[:start] + sequence + rest


def _swap_first_two(data: bytes) -> bytes:
    """The data set's first two elements (short explicit VR ones) in reverse order."""
    start = _meta_end(data)
    first = 8 + struct.unpack_from("<H", data, start + 6)[0]
    second = 8 + struct.unpack_from("<H", data, start + first + 6)[0]
    a, b = data[start : start + first], data[start + first : start + first + second]
    return data[:start] + b + a + data[start + first + second :]


def _pixel_length(data: bytes, length: int) -> bytes:
    at = data.rindex(b"\xe0\x7f\x10\x00OW") + 8
    return data[:at] + struct.pack("<I", length) + data[at + 4 :]


def _looks_explicit(data: bytes) -> bytes:
    """An implicit VR data set whose first element's length reads 'AB' as a VR."""
    start = _meta_end(data)
    element = struct.pack("<HHI", 0x0008, 0x0001, 0x4241) + b" " * 0x4241
    return data[:start] + element + data[start:]


CRAFTED = {
    "big endian named": lambda: _write(_read(RP)).replace(
        ExplicitVRLittleEndian.encode(), ExplicitVRBigEndian.encode(), 1
    ),
    "deflated named": lambda: _write(_read(RP)).replace(
        ExplicitVRLittleEndian.encode() + b"\0", b"1.2.840.10008.1.2.1.99", 1
    ),
    "no transfer syntax": lambda: RP.read_bytes().replace(b"\2\0\x10\0UI", b"\2\0\x11\0UI", 1),
    "no class in the file meta": lambda: _edited(RD, _meta(MediaStorageSOPClassUID=None)),
    "no class in the data set": lambda: _edited(RD, _set(SOPClassUID=None)),
    "a plan's meta over a dose": lambda: _edited(RD, _meta(MediaStorageSOPClassUID=PLAN_CLASS)),
    "a dose's meta over a plan": lambda: _edited(RP, _meta(MediaStorageSOPClassUID=DOSE_CLASS)),
    "an image class in the data set": lambda: _edited(RS, _set(SOPClassUID="1.2.840.10008.5.1.4.1.1.2")),
    "class with a backslash": lambda: _edited(RD, _set(SOPClassUID=f"{DOSE_CLASS}\\1.2")),
    "damaged character set": lambda: _damaged_charset(nested=False),
    "damaged nested character set": lambda: _damaged_charset(nested=True),
    "character set as a sequence": _charset_sequence,
    "elements out of order": lambda: _swap_first_two(RD.read_bytes()),
    "pixel data longer than the file": lambda: _pixel_length(RD.read_bytes(), 1 << 30),
    "pixel data of undefined length": lambda: _pixel_length(RD.read_bytes(), 0xFFFFFFFF),
    "cut inside the pixel data header": lambda: RD.read_bytes()[: RD.read_bytes().rindex(b"\xe0\x7f\x10\x00") + 6],
    "cut after the pixel data header": lambda: RD.read_bytes()[: RD.read_bytes().rindex(b"\xe0\x7f\x10\x00") + 12],
    "cut inside a top-level header": lambda: RS.read_bytes()[: _meta_end(RS.read_bytes()) + 13],
    "a few stray bytes at the end": lambda: RP.read_bytes() + b"\0\0\0",
    "a command set first": lambda: (
        lambda d, s: d[:s] + struct.pack("<HHI", 0, 0x0100, 2) + b"\1\0" + d[s:]
    )(RP.read_bytes(), _meta_end(RP.read_bytes())),
    "looks explicit in implicit VR": lambda: _looks_explicit(_write(_read(RP), ImplicitVRLittleEndian)),
    "nothing after the file meta": lambda: RP.read_bytes()[: _meta_end(RP.read_bytes())],
    "float pixel data": lambda: RD.read_bytes().replace(b"\xe0\x7f\x10\x00OW", b"\xe0\x7f\x08\x00OW"),
    "trailing padding after the pixel data": lambda: RD.read_bytes()
    + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, 4) + bytes(4),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_files_give_the_reference_outcome(case, tmp_path, monkeypatch):
    _assert_reference(_file(tmp_path, CRAFTED[case]()), monkeypatch)


NOT_PLAIN = {
    "latin-1 names": (RS, _set(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen")),
    "UTF-8 plan label": (RP, _set(SpecificCharacterSet="ISO_IR 192", RTPlanLabel="Bröst ✓")),
    "several software versions": (VMAT, _set(SoftwareVersions=["9.0", "9.0"])),
    "a name with ideographic parts": (
        RD,
        _set(SpecificCharacterSet="ISO_IR 192", PatientName="Yamada^Tarou=山田^太郎"),
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_top_level_values_that_are_not_plain_are_decoded_by_pydicom(
    case, syntax, tmp_path, monkeypatch
):
    """Several values, or characters beyond ASCII, at the top level: pydicom decodes
    that one element (with the character set); the rest stays on the fast path."""
    source, edit = NOT_PLAIN[case]
    outcome = _assert_reference(
        _file(tmp_path, _edited(source, edit, SYNTAXES[syntax])), monkeypatch, fast=True
    )
    assert not isinstance(outcome, scan.ReadError), outcome


# ------------------------------------------------------------------ mutants


def _mutants(count: int, seed: int):
    """Byte flips (anywhere, or among the headers of the first 4 KB) and cuts, of
    plans, structure sets and doses in both syntaxes and both kinds of lengths."""
    sources = [
        _write(_read(path), SYNTAXES[syntax], undefined)
        for path in (RP, RS, RD, ION)
        for syntax in sorted(SYNTAXES)
        for undefined in (False, True)
    ]
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(rng.choice(sources))
        kind = rng.random()
        if kind < 0.4:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.8:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(min(len(data), 4096))] = rng.choice([0, 0xFF, 0xFE, 0x20])
        else:
            data = data[: rng.randrange(len(data))]
        yield bytes(data)


def test_mutated_files_give_the_reference_outcome(tmp_path, monkeypatch):
    kinds = set()
    for data in _mutants(150, seed=20261128):
        outcome = _assert_reference(_file(tmp_path, data), monkeypatch)
        kinds.add(type(outcome).__name__)
    assert {"Plan", "StructureSet", "Dose", "ReadError"} <= kinds  # a spread of outcomes
