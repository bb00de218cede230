"""Property tests (hypothesis) on the extractor and the classifier.

- The extractor on sample plans whose elements are replaced by raw bytes of any VR,
  deleted, emptied or reordered: it returns facts or raises one ``RtcodeError`` in
  plain words naming the DICOM path; never another exception. The classifier never
  fails on the facts it returns.
- Whole files cut and flipped: a scan gives at most one entry for the file, and an
  error entry names the file and says what is wrong in plain words.
- The code of a plan does not depend on the order of its beams, nor on the order in
  which files are given.

Examples are derandomised, so the suite is the same on every run; raise
``RTCODE_HYPOTHESIS_EXAMPLES`` to search longer by hand.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from broken_corpus import plain_words_problem
from conftest import SAMPLE_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from rtcode.coding.classify import classify
from rtcode.coding.policy import load
from rtcode.coding.related import date_of_service, related_codes
from rtcode.dicom.extract import extract
from rtcode.engine.scan import scan
from rtcode.link import LinkedPlan
from rtcode.model.errors import RtcodeError
from rtcode.model.facts import SOP_CLASS_MODALITY, Plan
from rtcode.model.limits import Limits

EXAMPLES = int(os.environ.get("RTCODE_HYPOTHESIS_EXAMPLES", "0"))
FAST = settings(
    max_examples=EXAMPLES or 120,
    deadline=None,
    derandomize=not EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POLICY = load()
LIMITS = Limits.from_policy(POLICY)

PLAN_SOURCES = [
    SAMPLE_DATA / "01_single_open_field" / "RP.dcm",
    SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA",
    SAMPLE_DATA / "04_breast_tangents_wedged" / "RP.dcm",
    SAMPLE_DATA / "05_breast_tangents_fif" / "RP.dcm",
    SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm",
    SAMPLE_DATA / "08_electron_cutout" / "RP.dcm",
    SAMPLE_DATA / "14_setup_and_imaging_beams" / "RP.dcm",
    SAMPLE_DATA / "16_hdr_brachy" / "RP.dcm",
    SAMPLE_DATA / "17_proton_pbs" / "RN.dcm",
]
FILE_SOURCES = [
    SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm",
    SAMPLE_DATA / "06_four_field_box_3d" / "RS.dcm",
    SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA",
    SAMPLE_DATA / "17_proton_pbs" / "RN.dcm",
]


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


DATASETS = [_read(p) for p in PLAN_SOURCES]


# ----------------------------------------------------------- mutated datasets

VRS = ["CS", "DS", "IS", "LO", "SH", "UI", "US", "UL", "SS", "FD", "FL", "OB", "SQ", "UT", "AT"]
VALUES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"NaN",
            b"inf",
            b"-inf",
            b"-1",
            b"0",
            b"1e12",
            b"1e999",
            b"2.5",
            b"abc ",
            b"10\\20\\30",
            b"\\\\\\",
            b"\x00\x00",
            b"\xff" * 7,
            b"1.2.3\x00",
        ]
    ),  # fmt: skip
    st.binary(max_size=24),
)


def _sites(ds: Dataset, out: list[tuple[Dataset, int]] | None = None) -> list[tuple[Dataset, int]]:
    """Every (data set, tag) in ``ds``, sequences included, in a stable order."""
    out = [] if out is None else out
    for tag in list(ds.keys()):
        out.append((ds, int(tag)))
        raw = ds.get_item(tag)
        if getattr(raw, "VR", None) == "SQ":
            try:
                items = ds[tag].value
            except Exception:  # a raw value we put there that is no sequence
                continue
            for item in items:
                if isinstance(item, Dataset):
                    _sites(item, out)
    return out


@st.composite
def mutations(draw):
    """A list of (site number, operation, VR, raw value) to apply in turn."""
    ops = st.sampled_from(
        ["raw", "raw", "raw", "delete", "empty", "drop_item", "double_item", "reverse"]
    )
    return draw(
        st.lists(
            st.tuples(st.integers(0, 10**6), ops, st.sampled_from(VRS), VALUES),
            min_size=1,
            max_size=4,
        )
    )


def _mutate(ds: Dataset, steps) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for site, op, vr, value in steps:
            sites = _sites(ds)
            if not sites:
                return
            container, tag = sites[site % len(sites)]
            elem = container.get_item(tag)
            is_seq = getattr(elem, "VR", None) == "SQ"
            if op == "raw" or (op != "delete" and not is_seq):
                if len(value) % 2:
                    value += b" "
                container[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
            elif op == "delete":
                del container[tag]
            else:
                try:
                    items = list(container[tag].value)
                except Exception:
                    continue
                if op == "empty":
                    items = []
                elif op == "drop_item" and items:
                    items = items[1:]
                elif op == "double_item" and items:
                    items = [*items, copy.deepcopy(items[0])]
                elif op == "reverse":
                    items = items[::-1]
                container[tag].value = Sequence(items)


MODALITIES = [SOP_CLASS_MODALITY[str(ds.SOPClassUID)] for ds in DATASETS]


@FAST
@given(source=st.integers(0, len(DATASETS) - 1), steps=mutations())
def test_extractor_returns_facts_or_one_plain_error(source, steps):
    ds = copy.deepcopy(DATASETS[source])
    _mutate(ds, steps)
    try:
        facts = extract(ds, MODALITIES[source], "mutant.dcm", False, LIMITS)
    except RtcodeError as exc:
        message = str(exc)
        assert plain_words_problem(message) is None, message
        assert "mutant.dcm" in message  # the DICOM path names the file
        return
    if isinstance(facts, Plan):  # the classifier takes whatever the extractor passes
        lp = LinkedPlan(facts, None, "not_referenced", (), (), ())
        c = classify(lp, POLICY)
        related_codes(lp, c, POLICY, date_of_service(lp, None))


# ------------------------------------------------------------- mutated files


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="rtcode-props-") as folder:
        yield Path(folder)


@FAST
@given(
    source=st.integers(0, len(FILE_SOURCES) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=6
    ),
)
def test_a_damaged_file_gives_at_most_one_entry_naming_it(scratch, source, cut, flips):
    data = bytearray(FILE_SOURCES[source].read_bytes())
    for where, byte in flips:
        data[int(where * len(data))] = byte
    path = scratch / "damaged.dcm"
    path.write_bytes(bytes(data[: int(cut * len(data))]))
    result = scan([str(path)], POLICY)
    inv = result.inventory
    entries = len(inv.errors) + len(inv.plans) + len(inv.structure_sets) + len(inv.doses)
    assert entries <= 1 and inv.files_seen == 1
    for e in inv.errors:
        assert e.path == str(path)
        assert plain_words_problem(e.error) is None, e.error


# ------------------------------------------------------------------ ordering


def _summary(lp: LinkedPlan) -> tuple:
    c = classify(lp, POLICY)
    related = related_codes(lp, c, POLICY, date_of_service(lp, None))
    return (
        c.code,
        c.category,
        c.confidence,
        sorted(f.flag for f in c.flags),
        sorted((e.rule, e.fired) for e in c.evidence),
        sorted(b.beam.number for b in c.beams if b.counted),
        sorted((r.code, r.units, r.kind) for r in related),
    )


SCANNED = scan([str(SAMPLE_DATA)], POLICY)
LINKED = [p.linked for p in SCANNED.plans if p.linked.plan.beams]


@FAST
@given(data=st.data())
def test_the_code_does_not_depend_on_beam_order(data):
    lp = LINKED[data.draw(st.integers(0, len(LINKED) - 1), label="plan")]
    plan = lp.plan
    beams = data.draw(st.permutations(plan.beams), label="beams")
    groups = tuple(
        replace(fg, referenced_beams=tuple(data.draw(st.permutations(fg.referenced_beams))))
        for fg in plan.fraction_groups
    )
    shuffled = replace(lp, plan=replace(plan, beams=tuple(beams), fraction_groups=groups))
    assert _summary(shuffled) == _summary(lp)


ORDER_CASES = [
    "05_breast_tangents_fif",
    "06_four_field_box_3d",
    "07_four_field_box_no_rtstruct",
    "14_setup_and_imaging_beams",
    "18_duplicate_sop_uid",
]
ORDER_FILES = sorted(str(p) for case in ORDER_CASES for p in (SAMPLE_DATA / case).iterdir())


def _by_path(files: list[str]) -> tuple[dict, set]:
    result = scan(files, POLICY)
    return (
        {p.linked.plan.path: _summary(p.linked) for p in result.plans},
        {(e.path, e.error) for e in result.errors},
    )


BASELINE = _by_path(ORDER_FILES)


@settings(FAST, max_examples=EXAMPLES or 12)
@given(files=st.permutations(ORDER_FILES))
def test_the_code_does_not_depend_on_file_order(files):
    assert _by_path(list(files)) == BASELINE
