"""Finite values at the edges of what a float holds never become Infinity or NaN.

A DICOM decimal string can hold 1e308 or 1e-320: finite, but arithmetic on them
overflows (1e308 - -1e308) or divides into infinities (1 / 1e-320). Whatever finite
values a plan holds, every number rtcode outputs is finite: the JSON of a scan and of
``rtcode inspect`` (control points included) is valid JSON, which has no Infinity or
NaN (issue 21, 8). Values beyond their physical range are refused or flagged with
their DICOM path where they are read (tests/broken_corpus.py, group extreme_values,
lists each with its outcome); here any finite value goes anywhere a number is read.

Examples are derandomised; raise ``RTCODE_HYPOTHESIS_EXAMPLES`` to search longer.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import builders
import numpy as np
import pydicom
import pytest
from broken_corpus import plain_words_problem
from conftest import SAMPLE_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.measure.metrics import beam_metrics
from rtcode.output.render import inspect_json, scan_json

EXAMPLES = int(os.environ.get("RTCODE_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=EXAMPLES or 80,
    deadline=None,
    derandomize=not EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POLICY = load()

SOURCES = [
    SAMPLE_DATA / "05_breast_tangents_fif" / "RP.dcm",  # field-in-field: MU shares decide
    SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm",
    SAMPLE_DATA / "09_imrt_step_and_shoot_7f" / "RP.dcm",
    SAMPLE_DATA / "10_imrt_sliding_window" / "RP.dcm",
    SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm",
    SAMPLE_DATA / "13_multiple_isocentres" / "RP.dcm",
    SAMPLE_DATA / "17_proton_pbs" / "RN.dcm",
]


def _load(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


DATASETS = [_load(p) for p in SOURCES]

# Where numbers are read: (container of the element, keyword). Containers take the data
# set, a beam index and a control point index (both wrapped to what the plan has).
_BEAMS = lambda ds: ds.get("BeamSequence") or ds.get("IonBeamSequence")  # noqa: E731


def _beam(ds, b, _):
    beams = _BEAMS(ds)
    return beams[b % len(beams)]


def _cp(ds, b, c):
    beam = _beam(ds, b, c)
    cps = beam.get("ControlPointSequence") or beam.get("IonControlPointSequence")
    return cps[c % len(cps)]


def _device_position(ds, b, c):
    items = _cp(ds, b, c).get("BeamLimitingDevicePositionSequence") or []
    return items[-1] if items else None


def _device(ds, b, c):
    items = _beam(ds, b, c).get("BeamLimitingDeviceSequence") or []
    return items[-1] if items else None


def _referenced_beam(ds, b, _):
    refs = ds.FractionGroupSequence[0].ReferencedBeamSequence
    return refs[b % len(refs)]


PLACES = [
    (_cp, "GantryAngle"),
    (_cp, "BeamLimitingDeviceAngle"),
    (_cp, "PatientSupportAngle"),
    (_cp, "CumulativeMetersetWeight"),
    (_cp, "NominalBeamEnergy"),
    (_cp, "IsocenterPosition"),
    (_device_position, "LeafJawPositions"),
    (_device, "LeafPositionBoundaries"),
    (_beam, "FinalCumulativeMetersetWeight"),
    (_referenced_beam, "BeamMeterset"),
]

EXTREMES = [
    1e308,
    -1e308,
    1.7976931348623157e308,
    1e-320,
    -1e-320,
    5e-324,
    1e-300,
    0.0,
    -0.0,
    360.0,
    359.999999,
    1000.0,
    -1000.0,
    1e6,
    1e-9,
]
numbers = st.one_of(
    st.sampled_from(EXTREMES), st.floats(allow_nan=False, allow_infinity=False, width=64)
)


def _put(item, keyword: str, values: list[float], at: int) -> None:
    """Put ``values`` (one is enough; several for a multi-valued element, at ``at``) as
    a decimal string into ``item``'s element ``keyword``."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    old = item.get(keyword) if keyword in item else None
    if isinstance(old, pydicom.multival.MultiValue) and len(old):
        texts = [str(v) for v in old]
        for k, v in enumerate(values):
            texts[(at + k) % len(texts)] = repr(v)
    else:
        texts = [repr(values[0])]
    data = "\\".join(texts).encode("ascii")
    data += b" " if len(data) % 2 else b""
    item[tag] = RawDataElement(Tag(tag), "DS", len(data), data, 0, False, True)


def _refuse(constant: str):
    raise AssertionError(f"{constant} in the JSON")


def assert_finite_json(data) -> None:
    """Valid JSON, every number finite: what a JSON encoder that refuses NaN and
    Infinity accepts."""
    text = json.dumps(data, allow_nan=False)
    json.loads(text, parse_constant=_refuse)


@SETTINGS
@given(
    source=st.integers(0, len(DATASETS) - 1),
    changes=st.lists(
        st.tuples(
            st.integers(0, len(PLACES) - 1),
            st.integers(0, 10),
            st.integers(0, 200),
            st.lists(numbers, min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_every_number_a_scan_outputs_is_finite(source, changes):
    ds = copy.deepcopy(DATASETS[source])
    for place, b, c, values in changes:
        container, keyword = PLACES[place]
        if keyword == "BeamMeterset" and "FractionGroupSequence" not in ds:
            continue
        item = container(ds, b, c)
        if item is None:
            continue
        _put(item, keyword, values, c)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "RP.dcm"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path, enforce_file_format=True)
        result = scan([str(path)], POLICY)
    assert len(result.errors) + len(result.plans) == 1
    for error in result.errors:
        assert plain_words_problem(error.error) is None, error.error
    assert_finite_json(scan_json(result))
    for plan in result.plans:
        assert_finite_json(inspect_json(plan, POLICY, control_points=True))


# ------------------------------------------------------------ metrics alone


def _beam_with(weights: list[float], final: float | None):
    """A step-and-shoot beam of three segments (MLC shaped differently in each) with
    these cumulative meterset weights and final weight."""
    apertures = [builders.shaped(), builders.rect(), builders.shaped(centre=5.0)]
    leaves = [apertures[min(k, 2)] for k in range(len(weights))]
    cps = builders.control_points(leaves, weights)
    return replace(builders.beam(cps=cps), final_cumulative_meterset_weight=final)


def _numbers(value) -> list[float]:
    if value is None or isinstance(value, (bool, str)):
        return []
    if isinstance(value, (int, float, np.floating, np.integer)):
        return [float(value)]
    if isinstance(value, np.ndarray):
        return [float(v) for v in value.ravel() if not math.isnan(v)]
    if isinstance(value, (tuple, list)):
        return [n for v in value for n in _numbers(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [n for f in value.__dataclass_fields__ for n in _numbers(getattr(value, f))]
    return []


@pytest.mark.parametrize("final", [1e-320, 5e-324, 0.0, 1e-300, 1e-9, 1.0, 1e300, None])
@pytest.mark.parametrize("top", [1.0, 1e300, 1e-300])
def test_metrics_never_divide_finite_weights_into_infinities(final, top):
    """A final weight the control points run past (1e-320 where they reach 1) gives
    shares of MU from the control points' own span: each at most 1, never infinite."""
    weights = [0.0, top / 3, top / 3, top]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no invalid value, anywhere
        m = beam_metrics(_beam_with(weights, final))
    assert all(math.isfinite(v) for v in _numbers(m))
    assert m.cp_mu_fraction.min() >= 0.0 and m.cp_mu_fraction.sum() <= 1.0 + 1e-9
    if final is not None and final >= top:
        assert m.cp_mu_fraction.sum() == pytest.approx(top / final)
    else:
        assert m.cp_mu_fraction.sum() == pytest.approx(1.0)
