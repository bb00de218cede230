"""``rtcode scan PATH --html FILE`` (issue 23 item 8): the department overview written
beside the scan's own output, atomically and through the output guard; none for a scan
that finds no plan. The page itself is tested in test_overview.py: here, that the
command writes the page ``overview_html`` makes of the same scan."""

from __future__ import annotations

import csv
import io
import re
import shutil

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA, SAMPLE_PLANS

from rtcode.cli import main
from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.report.overview import overview_html

CASES = [SAMPLE_DATA / "06_four_field_box_3d", SAMPLE_DATA / "11_vmat_two_arcs"]
_WHEN = re.compile(r'<time datetime="[^"]*">[^<]*</time>')


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _undated(page: str) -> str:
    [when] = _WHEN.findall(page)  # the generation time: the one part that differs
    return page.replace(when, "<time/>")


@pytest.mark.parametrize("cache", [["--no-cache"], []], ids=["no-cache", "cache"])
def test_the_page_is_the_overview_of_the_scan_and_the_table_still_printed(tmp_path, cache):
    out = tmp_path / "overview.html"
    expected = overview_html(scan([str(c) for c in CASES], load()), inputs=[str(c) for c in CASES])
    for _ in range(2 if cache else 1):  # with a cache: the second scan is replayed from it
        result = invoke("scan", *CASES, "--html", out, *cache)
        assert result.exit_code == 0, result.output
        assert "plan file" in result.output and "77301" in result.output  # the table
        assert f"wrote the overview of 2 plan(s) to {out}" in result.output
        assert _undated(out.read_text(encoding="utf-8")) == _undated(expected)
    assert [p.name for p in tmp_path.iterdir()] == ["overview.html"]  # no temporary left


def test_the_page_beside_another_format_and_an_output_file(tmp_path):
    out, page = tmp_path / "plans.csv", tmp_path / "overview.html"
    result = invoke("scan", SAMPLE_DATA, "--format", "csv", "-o", out, "--html", page)
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == SAMPLE_PLANS
    assert f"rtcode overview: {SAMPLE_PLANS} plan(s)" in page.read_text(encoding="utf-8")


def test_the_page_to_standard_output_when_the_scan_goes_to_a_file(tmp_path):
    out = tmp_path / "plans.json"
    result = invoke("scan", CASES[0], "--format", "json", "-o", out, "--html", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>") and result.stdout.endswith("</html>\n")
    assert "RTC-06" in result.stdout and '"plans"' in out.read_text()


def test_two_outputs_in_one_place_are_refused(tmp_path):
    result = invoke("scan", CASES[0], "--html", "-")  # the table goes there too
    assert result.exit_code == 2 and "standard output" in result.output
    same = tmp_path / "out"
    result = invoke("scan", CASES[0], "-o", same, "--html", same)
    assert result.exit_code == 2 and "same file" in result.output
    assert not same.exists()


def test_the_page_is_never_written_under_a_scanned_folder(tmp_path):
    shutil.copytree(CASES[0], tmp_path / "export")
    page = tmp_path / "export" / "overview.html"
    result = invoke("scan", tmp_path / "export", "--html", page)
    assert result.exit_code == 2 and "--html" in result.output
    assert not page.exists()


def test_an_empty_scan_writes_no_page_and_exits_1(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "notes.txt").write_text("no plan here")
    page = tmp_path / "overview.html"
    result = invoke("scan", tmp_path / "export", "--html", page)
    assert result.exit_code == 1
    assert f"no plan found: {page} not written" in result.output
    assert "no readable RT Plan" in result.output
    assert not page.exists()


def test_a_deidentified_page_names_no_patient(tmp_path):
    page = tmp_path / "overview.html"
    env = {"RTCODE_DEIDENTIFY_KEY": "k" * 32}
    result = invoke("scan", *CASES, "--deidentify", "--html", page, env=env)
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert "RTC-06" not in text and "RTC-11" not in text
    assert "rtcode overview: 2 plan(s)" in text
