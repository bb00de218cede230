"""DVH evidence from damaged or extreme values: plain-words notes, finite numbers.

A report's DVH notes are read by people: they say what is wrong with the file in
plain words, never an exception's class or text ("ValueError: cannot convert float
NaN to integer", issue 21, 15). And a dose grid or stored DVH holding finite but
absurd values (DoseGridScaling 1e308) gives a note, never Infinity or NaN in the
report's JSON (issue 21, 8).
"""

from __future__ import annotations

import json
import shutil
import warnings

import pydicom
import pytest
from broken_corpus import plain_words_problem
from conftest import SAMPLE_DATA
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.measure import dvh as dvh_mod
from rtcode.report.patients import build_report, report_json, to_text

CASE = "06_four_field_box_3d"  # plan, structure set, dose grid with stored DVHs


def _raw(ds, keyword: str, text: str, vr: str = "DS") -> None:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    value = text.encode("ascii")
    value += b" " if len(value) % 2 else b""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _export(tmp_path, change_dose) -> str:
    folder = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(folder / "RD.dcm")
        change_dose(ds)
        ds.save_as(folder / "RD.dcm")
    return str(folder)


def _report(folder: str, compute: str = "always"):
    return build_report(scan([folder], load()), compute)


def _notes(report) -> list[str]:
    (plan,) = report.plans
    return list(plan.dvh.notes) + [r.note for r in plan.dvh.rois if r.note]


def _refuse(constant: str):
    raise AssertionError(f"{constant} in the report's JSON")


def assert_plain_and_finite(report) -> None:
    notes = _notes(report)
    assert notes
    for note in notes:
        assert plain_words_problem(note) is None, note
    text = json.dumps(report_json(report), allow_nan=False)
    json.loads(text, parse_constant=_refuse)
    to_text(report)  # the text report prints too


def test_a_dose_grid_scaled_to_1e308_is_not_computed_and_says_why(tmp_path):
    folder = _export(tmp_path, lambda ds: _raw(ds, "DoseGridScaling", "1e308"))
    report = _report(folder)
    assert_plain_and_finite(report)
    assert any("largest dose is inf Gy" in n or "more than any plan" in n for n in _notes(report))
    (plan,) = report.plans
    assert plan.dvh.computed_from is None
    # the stored DVHs, which do not depend on the grid, are still read
    assert any(r.stored_stats for r in plan.dvh.rois)


def test_a_stored_dvh_scaled_to_1e308_is_skipped_in_plain_words(tmp_path):
    def scale(ds):
        for item in ds.DVHSequence:
            _raw(item, "DVHDoseScaling", "1e308")

    report = _report(_export(tmp_path, scale), "never")
    assert_plain_and_finite(report)
    assert any("DVHDoseScaling" in n and "more than any plan" in n for n in _notes(report))


def test_stored_volumes_of_1e308_give_no_infinite_statistics(tmp_path):
    def volumes(ds):
        item = ds.DVHSequence[0]
        data = [float(v) for v in item.DVHData]
        data[1::2] = [1e308] * len(data[1::2])
        _raw(item, "DVHData", "\\".join(repr(v) for v in data))

    report = _report(_export(tmp_path, volumes), "never")
    assert_plain_and_finite(report)


@pytest.mark.parametrize(
    "keyword, text",
    [("DVHDoseScaling", "lots"), ("DVHData", "1\\x\\2\\3")],
)
def test_a_stored_dvh_value_that_is_not_a_number_is_said_in_plain_words(tmp_path, keyword, text):
    def damage(ds):
        for item in ds.DVHSequence:
            _raw(item, keyword, text)

    report = _report(_export(tmp_path, damage), "never")
    assert_plain_and_finite(report)


@pytest.mark.parametrize("text", ["x1", "1.5", "1\\2"])
def test_a_referenced_roi_number_that_is_not_one_number_is_said_in_plain_words(text):
    """(A scan refuses such a dose already; DVH reporting reads the file again.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(SAMPLE_DATA / CASE / "RD.dcm", stop_before_pixels=True)
        _raw(ds.DVHSequence[0].DVHReferencedROISequence[0], "ReferencedROINumber", text, "IS")
        curves, notes = dvh_mod.stored_dvhs(ds, "rd")
    assert len(notes) == 1 and notes[0].startswith("rd::DVHSequence[0]"), notes
    assert "ReferencedROINumber" in notes[0] or "cannot be decoded" in notes[0], notes
    assert plain_words_problem(notes[0]) is None, notes[0]
    assert len(curves) == len(ds.DVHSequence) - 1


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("cannot convert float NaN to integer"),
        OverflowError("cannot convert float infinity to integer"),
        IndexError("index 7 is out of bounds for axis 0 with size 3"),
        RuntimeError("something else"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_dicompyler_failures_are_said_in_plain_words(monkeypatch, exc):
    _, dvhcalc = dvh_mod.dicompyler()

    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(dvhcalc, "get_dvh", failing)
    report = _report(str(SAMPLE_DATA / CASE))
    notes = _notes(report)
    assert any(n.startswith("not computed: dicompyler-core could not compute it") for n in notes)
    for note in notes:
        assert str(exc) not in note and type(exc).__name__ not in note, note
    assert_plain_and_finite(report)


def test_a_failure_nobody_foresaw_keeps_the_report_in_plain_words(monkeypatch):
    def failing(*args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr("rtcode.report.patients.plan_dvh", failing)
    report = _report(str(SAMPLE_DATA / CASE))
    (note,) = _notes(report)
    assert plain_words_problem(note) is None, note
    assert "cannot convert" not in note and "ValueError" not in note


def test_relative_differences_to_a_subnormal_stored_value_are_not_infinite():
    assert dvh_mod._rel(1e-320, 1.0) is None
    assert dvh_mod._rel(2.0, 1.0) == -50.0
