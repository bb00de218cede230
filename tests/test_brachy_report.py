"""Issue 19: a brachytherapy plan's report shows what matters for it (treatment,
sources, fractions and prescription, channels) and no external-beam section."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from conftest import SAMPLE_DATA

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.output.render import table_row
from rtcode.report.html import report_html
from rtcode.report.patients import build_report, to_text


def _report(path):
    return build_report(scan([str(path)], load("default")), "never")


def test_the_hdr_sample_report_shows_sources_channels_and_prescription():
    report = _report(SAMPLE_DATA / "16_hdr_brachy")
    text = to_text(report)
    assert "treatment     HDR, INTRACAVITARY; setup Tandem and ovoids (FLETCHER_SUIT)" in text
    assert "Ir-192, reference air kerma rate 40000 uGy/h at 1 m, reference date 2025-12-15" in text
    assert "7 Gy per fraction x 4 = 28 Gy" in text
    assert "3, 3 loaded; 12 dwell positions; total time 286.0 s" in text
    assert "Ovoid L" in text and "isodose." not in text and "beams.treatment_ports" not in text
    page = report_html(report, figures=False)
    assert page.count('<tr class="channel-row">') == 3
    assert '<section class="brachy">' in page
    assert "<td>HDR 3 channels</td>" in page  # the plans table's techniques
    assert "no wedge on any port" not in page and 'class="beams"' not in page
    [plan] = report.plans
    assert table_row(plan.result)[-1] == "HDR 3 channels"


def test_the_ldr_sample_counts_seeds_and_both_source_types():
    report = _report(SAMPLE_DATA / "25_ldr_seed_implant")
    text = to_text(report)
    assert "36, 36 loaded; 108 sources placed" in text
    assert "I-125, reference air kerma rate 0.508 uGy/h" in text
    assert "I-125, reference air kerma rate 0.381 uGy/h" in text
    assert "sources placed" in report_html(report, figures=False)
    [plan] = report.plans
    assert table_row(plan.result)[-1] == "LDR 108 seeds"


def test_a_written_zero_is_not_an_absent_value(tmp_path):
    folder = tmp_path / "hdr"
    shutil.copytree(SAMPLE_DATA / "16_hdr_brachy", folder)
    ds = pydicom.dcmread(folder / "RP.dcm")
    channels = ds.ApplicationSetupSequence[0].ChannelSequence
    del channels[1].ChannelTotalTime
    channels[2].ChannelTotalTime = "0"
    del ds.SourceSequence[0].ReferenceAirKermaRate
    ds.save_as(folder / "RP.dcm")
    [plan] = _report(folder).plans
    brachy = plan.result.linked.plan.brachy
    assert [c.total_time_s for c in brachy.setups[0].channels] == [130.0, None, 0.0]
    assert brachy.sources[0].air_kerma_rate is None
    text = to_text(build_report(scan([str(folder)], load("default")), "never"))
    assert "reference air kerma rate absent" in text
    rows = [line.split() for line in text.splitlines() if "Ovoid" in line]
    assert rows[0][7] == "-" and rows[1][7] == "0.0"  # total time: absent, then 0


def test_the_brachyvision_plan_lists_its_13_channels(realdata):
    report = _report(realdata / "brachyvision-hdr-intracavitary")
    [plan] = report.plans
    assert table_row(plan.result)[-1] == "HDR 13 channels"
    page = report_html(report, figures=False)
    assert page.count('<tr class="channel-row">') == 13
    text = to_text(report)
    assert "13, 1 loaded; 6 dwell positions; total time 222.8 s" in text
    assert "5.5 Gy per fraction x 1 = 5.5 Gy" in text
    assert "Ir-192HDRFlexi, reference air kerma rate 40370 uGy/h at 1 m" in text


@pytest.mark.parametrize("case", ["16_hdr_brachy", "25_ldr_seed_implant"])
def test_brachytherapy_evidence_has_no_external_beam_rows(case):
    [plan] = _report(SAMPLE_DATA / case).plans
    rules = {e.rule.split(".")[0] for e in plan.result.classification.evidence}
    assert rules == {"intent", "brachy", "special_dosimetry"}
