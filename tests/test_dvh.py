"""dicompyler-core works under pydicom 3 through rtcode's one-name shim."""

from __future__ import annotations

import pytest
from conftest import SAMPLE_DATA

from rtcode.dvh import dicompyler


def test_dicompyler_core_imports_under_pydicom_3():
    dicomparser, dvhcalc = dicompyler()
    assert hasattr(dvhcalc, "get_dvh")


def test_computed_dvh_agrees_with_the_stored_one():
    dicomparser, dvhcalc = dicompyler()
    case = SAMPLE_DATA / "06_four_field_box_3d"
    rs, rd = str(case / "RS.dcm"), str(case / "RD.dcm")
    names = {k: v["name"] for k, v in dicomparser.DicomParser(rs).GetStructures().items()}
    ptv = [k for k, v in names.items() if v == "PTV"][0]
    stored = dicomparser.DicomParser(rd).GetDVHs()[ptv]
    computed = dvhcalc.get_dvh(rs, rd, ptv)
    assert computed.volume > 0
    assert computed.mean == pytest.approx(stored.mean, rel=0.01)
