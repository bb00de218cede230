"""Real exports from ../shared/realdata get the code a physicist gives them.

Skipped when the folder is absent. The expectations below are the physicist's
reading of each export (see ../shared/realdata/README.md for provenance); the
DVHA-MLCA numbers are read from that tool's own output files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.model.codes import Technique

# folder -> (code, category, techniques of the treatment ports (None: not asserted))
EXPECTED = {
    # 13 HDR channels: more than 12, the complex brachytherapy tier
    "brachyvision-hdr-intracavitary": ("77318", "brachytherapy", set()),
    # AP/PA, DVH stored, but both structures are PTVs: no organ at risk. Field 1 is
    # shaped by MLC; Field 2 is its jaw rectangle but for one leaf 4.9 mm in at a corner,
    # over the 2 mm of its pair the Y jaw leaves open (edges otherwise within 1.4 mm)
    "eclipse-3d-two-fields-with-dose-dvh": ("77307", "complex_isodose", {"conformal", "open"}),
    "eclipse-electron-cutout": ("77307", "complex_isodose", {"electron"}),
    # forward-planned sub-segments: not IMRT; no structure set or dose in the export
    "eclipse-field-in-field": ("77307", "complex_isodose", {"field_in_field"}),
    "eclipse-proton-pbs-phantom": ("77301", "imrt", {"ion_pencil_beam_scanning"}),
    "eclipse-sliding-window-imrt": ("77301", "imrt", {"sliding_window_imrt"}),
    "eclipse-vmat-one-arc": ("77301", "imrt", {"vmat"}),
    "elements-vmat-machine-qa": (None, "not_billable", {"vmat"}),
    # arcs, not IMRT; three arcs with couch rotations: complex unless 3-D evidence exported
    "iplan-dynamic-conformal-arcs": ("77307", "complex_isodose", {"dynamic_conformal_arc"}),
    # ten square fields: more than two ports (the 40x40 has machine-rounded corners,
    # still a rectangle)
    "monaco-ten-square-fields": ("77307", "complex_isodose", {"open"}),
    "pinnacle-step-and-shoot-three-fraction-groups": ("77301", "imrt", {"step_and_shoot_imrt"}),
    "pinnacle-two-open-fields": ("77306", "simple_isodose", {"open"}),
}


@pytest.fixture(scope="module")
def results(realdata):
    result = scan([str(realdata)], load("default"))
    assert result.errors == []
    return {Path(p.linked.plan.path).parent.name: p for p in result.plans}


def test_every_case_has_an_expectation(results):
    assert set(results) == set(EXPECTED)


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_real_export_code(results, folder):
    code, category, techniques = EXPECTED[folder]
    c = results[folder].classification
    assert (c.code, c.category.value) == (code, category), [
        e.finding for e in c.evidence if e.fired
    ]
    if techniques is not None:
        assert {b.technique.value for b in c.beams if b.counted} == techniques


def test_square_fields_are_open_fields(results):
    beams = results["monaco-ten-square-fields"].classification.beams
    small = [b for b in beams if b.beam.name != "40x40"]
    assert len(small) == 9 and all(b.technique is Technique.OPEN for b in small)


def test_rounded_corners_of_the_largest_field_leave_it_rectangular(results):
    # Monaco rounds the corners of the 40x40 cm Agility field: the outer pairs stand in
    # (161-197 mm under jaws at 200 mm). A rectangle for coding: no MLC device (77334).
    plan = results["monaco-ten-square-fields"]
    c = plan.classification
    [big] = [b for b in c.beams if b.beam.name == "40x40"]
    assert big.technique is Technique.OPEN, big.technique_reason
    assert big.metrics.aperture_irregularity_mm > 30  # the edges do vary
    assert "corners" in big.technique_reason
    assert [e.fired for e in c.evidence if e.rule == "isodose.shaped_mlc"] == [False]
    assert "77334" not in {r.code for r in plan.related}


def test_eclipse_field_in_field_is_nested(results):
    c = results["eclipse-field-in-field"].classification
    [beam] = [b for b in c.beams if b.counted]
    assert beam.technique is Technique.FIELD_IN_FIELD
    assert beam.metrics.subsegment_outside_area_mm2 == 0.0
    assert not any(f.flag == "fif_borderline" for f in c.flags)


def test_pinnacle_step_and_shoot_segments_are_not_nested(results):
    # besides too many segments or too little MU in the main one, every beam's
    # sub-segments lie mostly outside their main aperture
    c = results["pinnacle-step-and-shoot-three-fraction-groups"].classification
    ports = [b for b in c.beams if b.counted]
    assert ports and all(b.technique is Technique.STEP_AND_SHOOT_IMRT for b in ports)
    assert min(b.metrics.subsegment_outside_share for b in ports) > 0.9


def test_monaco_file_without_preamble_is_read(realdata):
    path = realdata / "monaco-ten-square-fields" / "06MV_plan.dcm"
    assert path.read_bytes()[128:132] != b"DICM"


# ------------------------------------------------------------------ DVHA-MLCA


@pytest.fixture(scope="module")
def pinnacle(results, realdata):
    ref = realdata / "pinnacle-step-and-shoot-three-fraction-groups" / "reference-dvha-mlca"
    plan_ref = json.loads((ref / "plan_summary.json").read_text())
    beam_ref = json.loads((ref / "beam_summary.json").read_text())["0"]
    return results["pinnacle-step-and-shoot-three-fraction-groups"], plan_ref, beam_ref


def test_fraction_groups_match_dvha_mlca(pinnacle):
    result, plan_ref, _ = pinnacle
    plan = result.linked.plan
    assert len(plan.fraction_groups) == int(plan_ref[0]["# of Fx Group(s)"])
    for fg, ref in zip(plan.fraction_groups, plan_ref, strict=True):
        assert fg.number == int(ref["Fx Group #"])
        assert fg.fractions_planned == int(ref["Fractions"])
        assert len(fg.referenced_beams) == int(ref["Beam Count(s)"])
        mu = sum(r.meterset_mu for r in fg.referenced_beams)
        assert mu == pytest.approx(float(ref["Plan MUs"]), abs=0.05)
        cps = sum(plan.beam(r.beam_number).control_points.count for r in fg.referenced_beams)
        assert cps == int(ref["Control Point(s)"])


def test_first_beam_control_points_match_dvha_mlca(pinnacle):
    result, _, ref = pinnacle
    first = result.classification.beams[0]
    m = first.metrics
    assert m.control_points == len(ref["cp"])
    np.testing.assert_allclose(m.cp_mu_fraction * first.meterset_mu, ref["cp_mu"], atol=1e-6)
    np.testing.assert_allclose(m.area_mm2, ref["area"], rtol=0.005)
    np.testing.assert_allclose(m.perimeter_mm, ref["perim"], rtol=0.005)
    pos = first.beam.control_points.positions_mm
    np.testing.assert_allclose(pos["ASYMX"][:, 0], ref["jaw_x1"], atol=1e-6)
    np.testing.assert_allclose(pos["ASYMX"][:, 1], ref["jaw_x2"], atol=1e-6)
    np.testing.assert_allclose(pos["ASYMY"][:, 0], ref["jaw_y1"], atol=1e-6)
    np.testing.assert_allclose(pos["ASYMY"][:, 1], ref["jaw_y2"], atol=1e-6)
    np.testing.assert_allclose(first.beam.control_points.gantry_deg, ref["gantry"])


def test_element_count_agrees_with_pydicom_on_every_real_file(realdata):
    """limits.max_data_elements counts element headers before parsing: on every real
    DICOM file the count is the elements and items pydicom reads."""
    from test_read import pydicom_count

    from rtcode.dicom.elements import Window, count_elements
    from rtcode.dicom.read import sniff

    checked = 0
    for path in sorted(p for p in Path(realdata).rglob("*") if p.is_file()):
        with open(path, "rb") as fh:
            form = sniff(fh.read(140))
        if form is None:
            continue
        with open(path, "rb", buffering=0) as raw:
            assert count_elements(Window(raw), form, 10**9) == pydicom_count(path), path
        checked += 1
    assert checked >= 10
