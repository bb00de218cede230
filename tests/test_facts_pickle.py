"""Control points pickled (to workers, into the scan cache) come back bit for bit.

Large arrays of leaf and jaw positions are pickled as small integers and a power of
ten when that gives back every value exactly; whatever does not (NaN, -0.0, more
places, huge values) is pickled as it is. Either way the arrays that come back are the ones
that went in, to the bit, and read-only as the extractor leaves them.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcode.model.facts import _SCALED_FROM, ControlPoints, _Scaled, _scaled


def control_points(positions: np.ndarray, gantry: np.ndarray | None = None) -> ControlPoints:
    n = positions.shape[0]
    return ControlPoints(
        cumulative_meterset_weight=np.linspace(0.0, 1.0, n),
        gantry_deg=gantry if gantry is not None else np.linspace(181.0, 179.0, n),
        gantry_direction=("CC",) * n,
        collimator_deg=np.full(n, 30.0),
        couch_deg=np.zeros(n),
        isocenter_mm=np.tile([1.25, -3.5, 100.0], (n, 1)),
        nominal_energy=np.full(n, 6.0),
        positions_mm={"MLCX": positions, "ASYMY": np.tile([-50.0, 50.0], (n, 1))},
        dicom_path="RP.dcm::BeamSequence[0].ControlPointSequence",
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def roundtrip(cps: ControlPoints) -> ControlPoints:
    return pickle.loads(pickle.dumps(cps, pickle.HIGHEST_PROTOCOL))


def assert_same(cps: ControlPoints, back: ControlPoints) -> None:
    for name in ("cumulative_meterset_weight", "gantry_deg", "collimator_deg", "couch_deg"):
        assert same_bits(getattr(cps, name), getattr(back, name)), name
    assert same_bits(cps.isocenter_mm, back.isocenter_mm)
    assert same_bits(cps.nominal_energy, back.nominal_energy)
    assert back.gantry_direction == cps.gantry_direction
    assert back.dicom_path == cps.dicom_path
    assert back.positions_mm.keys() == cps.positions_mm.keys()
    for key, value in cps.positions_mm.items():
        assert same_bits(value, back.positions_mm[key]), key
        assert not back.positions_mm[key].flags.writeable
    assert not back.gantry_deg.flags.writeable


@pytest.mark.parametrize(
    "values",
    [
        [-12.3, 0.0, 7.25, 120.125],  # one to three places
        [-0.0, 5.0],  # -0.0 is not 0 / 10: kept as it is
        [np.nan, 5.0],  # a device no control point gave
        [0.12345, 1.0],  # more places
        [1e-7, 2.0],
        [3.3e6, -3.3e6],  # beyond int32 once scaled
        [3276.7, -3276.8],  # the int16 edge
        [0.1 + 0.2, 1.0],  # not the double nearest 0.3
    ],
)
def test_positions_come_back_to_the_bit(values):
    positions = np.tile(np.array(values, dtype=np.float64), (_SCALED_FROM, 1))
    cps = control_points(positions)
    assert_same(cps, roundtrip(cps))


def test_decimals_are_kept_small():
    """What the encoding is for: 120 leaves over 178 control points, in 0.1 mm."""
    rng = np.random.default_rng(1)
    positions = rng.integers(-1500, 1500, (178, 120)) / 10
    packed = _scaled(positions)
    assert isinstance(packed, _Scaled) and packed.integers.dtype == np.int16
    cps = control_points(positions)
    assert len(pickle.dumps(cps, pickle.HIGHEST_PROTOCOL)) < positions.nbytes / 3
    small = positions[:2].copy()  # 240 values: kept as they are
    assert _scaled(small) is small
    assert_same(cps, roundtrip(cps))


@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=False, width=64),
            st.integers(-3_000_000, 3_000_000).map(lambda k: k / 1000),
            st.integers(-30_000, 30_000).map(lambda k: k / 10),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_values_come_back_to_the_bit(values):
    rows = np.array([values, values[::-1]], dtype=np.float64)
    positions = np.tile(rows, (_SCALED_FROM // 2, 1))  # large enough to be scaled
    n = positions.shape[0]
    cps = control_points(positions, gantry=np.array(values[:1] * n, dtype=np.float64))
    assert_same(cps, roundtrip(cps))
