"""Reading: DICOM by content, images skipped, bad files become one clear error each."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from conftest import SAMPLE_DATA

from rtcode.coding.policy import load
from rtcode.dicom.read import FileEntry, read, sniff, walk
from rtcode.engine.scan import collect, scan
from rtcode.model.facts import Modality
from rtcode.model.limits import Limits

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


# ------------------------------------------------- limits.max_data_elements


def pydicom_count(path) -> int:
    """Data elements and sequence items as pydicom reads them: the file meta's
    elements, every element of the data set, those in sequence items included, and
    every item (pydicom makes a data set of each)."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
    elements = list(ds.iterall())
    items = sum(len(e.value) for e in elements if e.VR == "SQ")
    return len(ds.file_meta) + len(elements) + items


def rewrite(path, tmp_path, implicit: bool, undefined: bool, big_endian: bool = False):
    """The file written again by pydicom: implicit or explicit VR (or explicit VR big
    endian), every sequence and item of undefined or defined length."""
    import warnings

    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = undefined
                for item in elem.value:
                    item.is_undefined_length_sequence_item = undefined
        if big_endian:
            syntax, label = ExplicitVRBigEndian, "big-endian"
            if "PixelData" in ds:  # dcmwrite keeps the pixel bytes as they are: swap them
                pixels = ds.pixel_array
                ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        elif implicit:
            syntax, label = ImplicitVRLittleEndian, "implicit"
        else:
            syntax, label = ExplicitVRLittleEndian, "explicit"
        ds.file_meta.TransferSyntaxUID = syntax
        out = tmp_path / f"{label}-{undefined}-{path.name}"
        # dcmwrite converts the encoding to the file meta's transfer syntax
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out


COUNTED = [
    "06_four_field_box_3d/RP.dcm",
    "06_four_field_box_3d/RS.dcm",
    "06_four_field_box_3d/RD.dcm",
    "11_vmat_two_arcs/RP.dcm",
    "17_proton_pbs/RN.dcm",
    "16_hdr_brachy/RP.dcm",
    "16_hdr_brachy/CT.1.dcm",
]


@pytest.mark.parametrize("name", COUNTED)
@pytest.mark.parametrize(
    "implicit, big_endian",
    [(False, False), (True, False), (False, True)],
    ids=["explicit", "implicit", "big-endian"],
)
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_element_count_agrees_with_pydicom(tmp_path, name, implicit, big_endian, undefined):
    from rtcode.dicom.elements import Window, count_elements

    path = rewrite(SAMPLE_DATA / name, tmp_path, implicit, undefined, big_endian)
    expected = pydicom_count(path)
    with open(path, "rb", buffering=0) as raw:
        assert count_elements(Window(raw), "part10", 10**9) == expected
    with open(path, "rb", buffering=0) as raw:  # stops once past the limit
        assert count_elements(Window(raw), "part10", expected // 2) == expected // 2 + 1


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
def test_a_file_with_more_data_elements_than_the_limit_is_an_error(tmp_path, big_endian):
    """Counted before anything is parsed; at the limit the file is read as ever.
    Explicit VR big endian (retired, still read by pydicom) is counted too."""
    from dataclasses import replace

    path = SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm"
    if big_endian:
        path = rewrite(path, tmp_path, implicit=False, undefined=True, big_endian=True)
    n = pydicom_count(path)
    assert path.stat().st_size > 8 * n  # large enough to be counted at this limit
    limits = replace(Limits.from_policy(load()), max_data_elements=n)
    assert read(entry(path), limits).kind == "rt"
    result = read(entry(path), replace(limits, max_data_elements=n - 1))
    assert result.kind == "error"
    assert f"more than {n - 1} data elements and items" in result.error
    assert "limits.max_data_elements" in result.error


def test_element_count_skips_encapsulated_pixel_data(tmp_path):
    """Fragments of compressed pixel data are bytes, not elements, even when they look
    like element headers."""
    import struct
    import warnings

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from rtcode.dicom.elements import Window, count_elements

    fake = (struct.pack("<HH", 0x0010, 0x0010) + b"PN" + struct.pack("<H", 0)) * 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(SAMPLE_DATA / "16_hdr_brachy" / "CT.1.dcm", force=True)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([fake, fake])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        path = tmp_path / "compressed.dcm"
        ds.save_as(path, enforce_file_format=True)
    expected = pydicom_count(path)
    with open(path, "rb", buffering=0) as raw:
        assert count_elements(Window(raw), "part10", 10**9) == expected


def test_element_count_reads_an_undefined_length_un_element_as_implicit_vr(tmp_path):
    """An explicit VR element of VR UN and undefined length is a sequence in implicit VR
    (PS3.5 6.2.2), as pydicom reads it: its items' elements are counted."""
    import struct

    from rtcode.dicom.elements import Window, count_elements

    elements = b"".join(struct.pack("<HHI", 0x300F, 0x1001 + i, 0) for i in range(3))
    un = (
        struct.pack("<HH", 0x300F, 0x1000) + b"UN\0\0" + b"\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + elements + b"\xfe\xff\x0d\xe0\0\0\0\0"
        + b"\xfe\xff\xdd\xe0\0\0\0\0"
    )  # fmt: skip
    path = tmp_path / "RP.dcm"
    path.write_bytes(PLAN.read_bytes() + un)
    expected = pydicom_count(path)
    assert expected == pydicom_count(PLAN) + 5  # the element, its item and 3 in it
    with open(path, "rb", buffering=0) as raw:
        assert count_elements(Window(raw), "part10", 10**9) == expected


def deflated_plan(tmp_path, padding: int):
    """The sample plan in the deflated transfer syntax, with ``padding`` zero bytes in
    a private OB element: a few kB on disk whatever the padding."""
    import warnings

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(PLAN, force=True)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.add_new(0x300F1010, "OB", b"\0" * padding)
        path = tmp_path / f"deflated-{padding}.dcm"
        ds.save_as(path, enforce_file_format=True)
    return path


def test_a_deflated_plan_is_read_within_the_size_limit_and_refused_beyond(tmp_path):
    """pydicom inflates a deflated data set whole before parsing it: the inflated size
    is held to limits.max_file_size_mb, measured before pydicom sees the file."""
    from dataclasses import replace

    limits = replace(Limits.from_policy(load()), max_file_size_mb=1)
    small, large = deflated_plan(tmp_path, 1000), deflated_plan(tmp_path, 3 * 1024 * 1024)
    assert large.stat().st_size < 64 * 1024  # far below the limit on disk
    expected = read(entry(PLAN)).pydicom_dataset()
    found = read(entry(small), limits)
    assert found.kind == "rt" and found.modality == Modality.RTPLAN
    assert found.pydicom_dataset().SOPInstanceUID == expected.SOPInstanceUID
    result = read(entry(large), limits)
    assert result.kind == "error"
    assert "inflates to more than 1 MB" in result.error
    assert "limits.max_file_size_mb" in result.error
    assert read(entry(large)).kind == "rt"  # the default limit (512 MB) lets it through


def deflate(path, tmp_path, undefined: bool):
    """The file written again by pydicom in the deflated transfer syntax."""
    import warnings

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(rewrite(path, tmp_path, False, undefined), force=True)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        out = tmp_path / f"deflated-{undefined}-{path.name}"
        ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize("name", COUNTED)
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_element_count_of_a_deflated_file_agrees_with_pydicom(tmp_path, name, undefined):
    """Counted as the data set inflates, a megabyte at a time."""
    from rtcode.dicom.elements import Inflating, Window, count_elements, file_meta

    path = deflate(SAMPLE_DATA / name, tmp_path, undefined)
    expected = pydicom_count(path)
    start = file_meta(path.read_bytes()[:4096]).start
    with open(path, "rb", buffering=0) as raw:
        assert count_elements(Inflating(raw, start, 1 << 30), "part10", 10**9) == expected
    with open(path, "rb", buffering=0) as raw:  # as written, it is not followed
        assert count_elements(Window(raw), "part10", 10**9) is None


def test_a_deflated_file_with_more_data_elements_than_the_limit_is_an_error(tmp_path):
    """A few kB on disk can inflate to millions of elements: the count does not wait
    for the file to be large on disk, as it does for one not deflated."""
    import struct
    import warnings
    from dataclasses import replace

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = tmp_path / "RP-items.dcm"
    plain.write_bytes(
        PLAN.read_bytes()
        + struct.pack("<HH", 0x300F, 0x1000) + b"SQ\0\0" + b"\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\0\0\0\0" * 20000 + b"\xfe\xff\xdd\xe0\0\0\0\0"
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(plain, force=True)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        path = tmp_path / "RP-deflated.dcm"
        ds.save_as(path, enforce_file_format=True)
    n = pydicom_count(path)
    assert n > 20000 and path.stat().st_size < 8 * 10000  # small on disk
    limits = replace(Limits.from_policy(load()), max_data_elements=n)
    assert read(entry(path), limits).kind == "rt"
    result = read(entry(path), replace(limits, max_data_elements=10000))
    assert result.kind == "error"
    assert "more than 10000 data elements and items" in result.error
    assert "limits.max_data_elements" in result.error


def test_a_deflated_stream_that_does_not_inflate_is_left_to_the_parser(tmp_path):
    """Neither limit's message: the parser says what is wrong."""
    from rtcode.dicom.elements import file_meta

    good = deflated_plan(tmp_path, 0)
    data = good.read_bytes()
    start = file_meta(data[:4096]).start
    path = tmp_path / "damaged.dcm"
    path.write_bytes(data[:start] + bytes([0xFF]) * 64 + data[start + 64 :])
    result = read(entry(path))
    assert result.kind == "error"
    assert "limits." not in result.error


def test_a_file_of_many_empty_items_is_over_the_element_limit(tmp_path):
    """pydicom makes a data set of every sequence item, empty or not: items count."""
    import struct
    from dataclasses import replace

    empty_items = 5000
    sequence = (
        struct.pack("<HH", 0x300F, 0x1000) + b"SQ\0\0" + b"\xff\xff\xff\xff"
        + b"\xfe\xff\x00\xe0\0\0\0\0" * empty_items + b"\xfe\xff\xdd\xe0\0\0\0\0"
    )  # fmt: skip
    path = tmp_path / "RP.dcm"
    path.write_bytes(PLAN.read_bytes() + sequence)
    n = pydicom_count(path)
    assert n == pydicom_count(PLAN) + 1 + empty_items
    limits = replace(Limits.from_policy(load()), max_data_elements=n - 1)
    assert path.stat().st_size > 8 * limits.max_data_elements  # counted at this limit
    result = read(entry(path), limits)
    assert result.kind == "error" and "limits.max_data_elements" in result.error
    assert read(entry(path), replace(limits, max_data_elements=n)).kind == "rt"


# ------------------------------------------------------- Explicit VR Big Endian


@pytest.mark.parametrize("name", ["RP.dcm", "RS.dcm", "RD.dcm"])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_a_big_endian_file_is_read(tmp_path, name, undefined):
    """Explicit VR Big Endian (retired, still met in old archives) is read: the Pixel
    Data header of a dose is read in the file's byte order, not taken for a length of
    gigabytes (issue 21, 9)."""
    from rtcode.dicom.read import RawDataset

    path = rewrite(SAMPLE_DATA / "06_four_field_box_3d" / name, tmp_path, False, undefined, True)
    result = read(entry(path))
    assert result.kind == "rt", result.error
    assert result.has_pixel_data == (name == "RD.dcm")
    # the fast path (extract_bulk.file_view) reads little endian only: it steps aside
    assert not isinstance(result.dataset, RawDataset)


def test_a_big_endian_dose_codes_the_plan_as_its_little_endian_original(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / "06_four_field_box_3d", export)
    expected = scan([str(export)], load())
    big = rewrite(export / "RD.dcm", tmp_path, implicit=False, undefined=False, big_endian=True)
    os.replace(big, export / "RD.dcm")
    result = scan([str(export)], load())
    assert result.errors == []
    assert len(result.inventory.doses) == 1 and result.inventory.doses[0].grid.has_pixel_data
    assert [p.classification.code for p in result.plans] == ["77295"]
    assert [p.classification.code for p in result.plans] == [
        p.classification.code for p in expected.plans
    ]


def test_a_big_endian_dose_cut_inside_its_pixel_data_is_truncated(tmp_path):
    """The byte order is respected both ways: a Pixel Data length that does not fit is
    still reported, with the length the file declares."""
    import struct

    path = rewrite(SAMPLE_DATA / "06_four_field_box_3d" / "RD.dcm", tmp_path, False, False, True)
    data = path.read_bytes()
    at = data.rindex(b"\x7f\xe0\x00\x10OW\0\0")
    (declared,) = struct.unpack(">I", data[at + 8 : at + 12])
    assert at + 12 + declared == len(data)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-100])
    result = read(entry(cut))
    assert result.kind == "error"
    assert f"Pixel Data declares {declared} bytes but only {declared - 100} remain" in result.error


def test_a_big_endian_dose_grid_reads_the_same_doses(tmp_path):
    """read_full (DVH reporting) gives the dose grid of a big-endian file as pydicom
    decodes it: the same doses as the little-endian original."""
    import numpy as np

    from rtcode.dicom.read import read_full

    original = SAMPLE_DATA / "06_four_field_box_3d" / "RD.dcm"
    big = rewrite(original, tmp_path, implicit=False, undefined=False, big_endian=True)
    expected = read_full(original, pixels=True).pixel_array
    assert np.array_equal(read_full(big, pixels=True).pixel_array, expected)
