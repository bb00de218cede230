"""Issue 19: the prescription (DoseReferenceSequence) and MU per fraction group.

A plan's MU per fraction is not its course MU: inspect shows per group the MU of one
fraction and the course total (MU x fractions), and weighs the plan metrics by course MU."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner
from conftest import REALDATA, SAMPLE_DATA
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_extract_fast_paths import SYNTAXES, _assert_reference, _bytes, _read

from rtcode.cli import main

IMRT = SAMPLE_DATA / "09_imrt_step_and_shoot_7f" / "RP.dcm"
BREAST = SAMPLE_DATA / "05_breast_tangents_fif" / "RP.dcm"
PINNACLE = REALDATA / "pinnacle-step-and-shoot-three-fraction-groups" / "rtplan.dcm"


def _inspect(path) -> dict:
    result = CliRunner().invoke(main, ["inspect", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _two_groups() -> Dataset:
    """The IMRT sample with a second fraction group (a boost of 5 fractions) delivering
    the first two beams again at half their MU, and two dose references: the course
    prescription (group 1) and the boost's (group 2)."""
    ds = _read(IMRT.read_bytes())
    first = ds.FractionGroupSequence[0]
    first.NumberOfFractionsPlanned = 20
    boost = copy.deepcopy(first)
    boost.FractionGroupNumber = 2
    boost.NumberOfFractionsPlanned = 5
    boost.ReferencedBeamSequence = Sequence(
        [copy.deepcopy(r) for r in first.ReferencedBeamSequence[:2]]
    )
    for r in boost.ReferencedBeamSequence:
        r.BeamMeterset = f"{float(r.BeamMeterset) / 2:.4f}"
    boost.NumberOfBeams = 2
    for fg, number in ((first, 1), (boost, 2)):
        ref = Dataset()
        ref.ReferencedDoseReferenceNumber = number
        fg.ReferencedDoseReferenceSequence = Sequence([ref])
    ds.FractionGroupSequence.append(boost)
    items = []
    for number, dose, rtype in (
        (1, "60", "TARGET"),
        (2, "0", "TARGET"),
        (3, None, "ORGAN_AT_RISK"),
    ):
        item = Dataset()
        item.DoseReferenceNumber = number
        item.DoseReferenceStructureType = "VOLUME"
        item.DoseReferenceDescription = f"ref {number}"
        item.DoseReferenceType = rtype
        item.ReferencedROINumber = number
        if dose is not None:
            item.TargetPrescriptionDose = dose
        items.append(item)
    ds.DoseReferenceSequence = Sequence(items)
    return ds


@pytest.mark.parametrize("syntax", list(SYNTAXES), ids=list(SYNTAXES))
def test_prescriptions_read_alike_on_both_paths(syntax, monkeypatch):
    plan = _assert_reference(_bytes(_two_groups(), SYNTAXES[syntax]), monkeypatch)
    first, boost, oar = plan.prescriptions
    assert (first.dose_gy, first.fraction_group, first.fractions) == (60.0, 1, 20)
    assert first.dose_per_fraction_gy == pytest.approx(3.0)
    assert (first.reference_type, first.structure_type, first.roi_number) == ("TARGET", "VOLUME", 1)
    # "0" is a value, absent is None
    assert boost.dose_gy == 0.0 and boost.fraction_group == 2 and boost.fractions == 5
    assert oar.dose_gy is None and oar.dose_per_fraction_gy is None and oar.fraction_group is None
    assert [fg.referenced_dose_reference_numbers for fg in plan.fraction_groups] == [(1,), (2,)]


def test_two_groups_show_course_mu_and_weigh_metrics_by_it(tmp_path):
    path = tmp_path / "RP.dcm"
    path.write_bytes(_bytes(_two_groups()))
    data = _inspect(path)
    g1, g2 = data["fraction_groups"]
    assert g1["meterset_mu"] == g1["meterset_mu_per_fraction"]
    assert g1["course_meterset_mu"] == pytest.approx(g1["meterset_mu_per_fraction"] * 20, abs=0.1)
    assert g2["course_meterset_mu"] == pytest.approx(g2["meterset_mu_per_fraction"] * 5, abs=0.1)
    pm = data["plan_metrics"]
    assert pm["course_meterset_mu"] == pytest.approx(
        g1["course_meterset_mu"] + g2["course_meterset_mu"], abs=0.2
    )
    assert pm["metrics_weighted_by"] == "course_meterset_mu"
    # beam MU as before: per fraction, summed over the groups that reference the beam
    assert pm["meterset_mu"] == pytest.approx(
        g1["meterset_mu_per_fraction"] + g2["meterset_mu_per_fraction"], abs=0.02
    )
    mcs = {b["number"]: b["mcs"] for b in data["beams"] if b["treatment_port"]}
    weights = {}
    for b in data["beams"]:
        if b["treatment_port"]:
            # beams 1, 2: MU_1 x 20 + MU_1 / 2 x 5; the others MU x 20
            per = b["meterset_mu"] / 1.5 if b["number"] in (1, 2) else b["meterset_mu"]
            weights[b["number"]] = per * 20 + (per / 2 * 5 if b["number"] in (1, 2) else 0)
    expected = sum(mcs[n] * w for n, w in weights.items()) / sum(weights.values())
    assert pm["mcs"] == pytest.approx(expected, abs=2e-3)
    text = CliRunner().invoke(main, ["inspect", str(path)]).output
    assert (
        "MU in the course" in text
        and "prescription 1: TARGET ref 1 (ROI 1): 60 Gy in 20 fraction(s) (3 Gy per fraction)"
        in text
    )


def test_sample_prescription_in_plan_and_inspect_json():
    data = _inspect(BREAST)
    [rx] = data["prescriptions"]
    assert rx["type"] == "TARGET" and rx["description"] == "PTV_Breast"
    assert rx["dose_gy"] == 40.05 and rx["fractions"] == 15
    assert rx["dose_per_fraction_gy"] == pytest.approx(2.67)
    assert rx["dicom_path"].endswith("RP.dcm::DoseReferenceSequence[0]")
    [fg] = data["fraction_groups"]
    assert fg["course_meterset_mu"] == pytest.approx(fg["meterset_mu_per_fraction"] * 15)


def test_pinnacle_three_groups_course_mu(realdata):
    if not PINNACLE.is_file():
        pytest.skip(f"{PINNACLE} not present")
    data = _inspect(PINNACLE)
    per = [fg["meterset_mu_per_fraction"] for fg in data["fraction_groups"]]
    fractions = [fg["fractions"] for fg in data["fraction_groups"]]
    assert fractions == [26, 10, 13]  # the DVHA-MLCA reference summary
    assert per == pytest.approx([776.1, 659.2, 512.3], abs=0.05)
    pm = data["plan_metrics"]
    assert pm["course_meterset_mu"] == pytest.approx(776.1 * 26 + 659.2 * 10 + 512.3 * 13, abs=1)
    assert pm["meterset_mu"] == pytest.approx(1947.6, abs=0.05)  # kept: the old sum
    assert data["prescriptions"] == []
    text = CliRunner().invoke(main, ["inspect", str(PINNACLE)]).output
    assert "1947.6 MU" not in text
    assert "MU per fraction 776.1 / 659.2 / 512.3 (groups), 33430.5 MU in the course" in text


def test_report_shows_fractions_and_prescription_and_marks_the_dvh(tmp_path, monkeypatch):
    from rtcode.report import plots

    case = str(SAMPLE_DATA / "05_breast_tangents_fif")
    runner = CliRunner()
    text = runner.invoke(main, ["report", case]).output
    assert "  fractions   group 1: 15 fraction(s) x 467 MU = 7005.0 MU in the course" in text
    assert "  prescribed  TARGET PTV_Breast: 40.05 Gy in 15 fraction(s)" in text
    data = json.loads(runner.invoke(main, ["report", case, "--format", "json"]).output)
    [plan] = data["patients"][0]["plans"]
    assert plan["prescriptions"][0]["dose_gy"] == 40.05
    assert plan["fraction_groups"][0]["course_meterset_mu"] == 7005.0
    marked = []
    real = plots.dvh_png

    def spy(d, *args, **kwargs):
        marked.append(kwargs.get("prescription_gy"))
        return real(d, *args, **kwargs)

    monkeypatch.setattr(plots, "dvh_png", spy)
    out = tmp_path / "r.html"
    assert runner.invoke(main, ["report", case, "--html", str(out)]).exit_code == 0
    html = out.read_text(encoding="utf-8")
    assert "<dt>prescription</dt><dd>TARGET PTV_Breast: 40.05 Gy in 15 fraction(s)" in html
    assert marked == [40.05]


def test_dvh_figure_draws_the_prescription_line():
    from rtcode.coding.policy import load
    from rtcode.engine.scan import scan
    from rtcode.report import plots
    from rtcode.report.patients import build_report

    report = build_report(
        scan([str(SAMPLE_DATA / "05_breast_tangents_fif")], load("default")), "never"
    )
    d = report.patients[0].plans[0].dvh
    assert plots.dvh_png(d) != plots.dvh_png(d, prescription_gy=40.05)


def test_d95_far_from_prescription_flag():
    import dataclasses

    from rtcode.coding.policy import load
    from rtcode.engine.scan import scan
    from rtcode.report.patients import build_report, prescription_flags

    report = build_report(
        scan([str(SAMPLE_DATA / "05_breast_tangents_fif")], load("default")), "never"
    )
    [p] = report.plans
    plan, dvh = p.result.linked.plan, p.dvh
    assert p.flags == ()  # D95 39.69 Gy against 40.05 Gy: within 10%
    [rx] = plan.prescriptions
    # a 20 Gy prescription (a DVH at twice it: per fraction against course, or wrong)
    low = dataclasses.replace(plan, prescriptions=(dataclasses.replace(rx, dose_gy=20.0),))
    [flag] = prescription_flags(low, dvh, 10.0)
    assert flag.flag == "d95_far_from_prescription" and flag.severity == "warning"
    assert "+98.5% from the prescription 20 Gy" in flag.message
    assert flag.dicom_path == rx.dicom_path
    assert prescription_flags(low, dvh, 100.0) == ()
    # a prescription for another ROI is not compared with this target
    other = dataclasses.replace(rx, dose_gy=20.0, roi_number=999)
    assert prescription_flags(dataclasses.replace(plan, prescriptions=(other,)), dvh, 10.0) == ()
    # "0" Gy is a value but no base for a share: not compared
    zero = dataclasses.replace(rx, dose_gy=0.0)
    assert prescription_flags(dataclasses.replace(plan, prescriptions=(zero,)), dvh, 10.0) == ()
