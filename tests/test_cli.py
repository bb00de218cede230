"""The command line, tested as a user meets it (click's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA, SAMPLE_PLANS

from rtcode import __version__
from rtcode.cli import main
from rtcode.output.render import safe_cell

CASE = SAMPLE_DATA / "06_four_field_box_3d"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", [[], ["scan"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "advisory" in result.output or "PATHS" in result.output


def test_scan_table():
    result = invoke("scan", CASE)
    assert result.exit_code == 0
    assert "77295" in result.output and "3-D plan" in result.output
    assert "advisory" in result.output


def test_scan_json_carries_policy_and_version():
    data = json.loads(invoke("scan", CASE, "--format", "json").output)
    assert data["rtcode_version"] == __version__
    assert data["policy"]["name"] == "default" and len(data["policy"]["sha256"]) == 64
    [plan] = data["plans"]
    assert plan["code"] == "77295"
    assert plan["structure_set"]["status"] == "linked"
    assert [b["technique"] for b in plan["beams"]] == ["conformal"] * 4


def test_scan_csv_one_row_per_plan():
    result = invoke("scan", SAMPLE_DATA, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == SAMPLE_PLANS
    assert {r["code"] for r in rows} >= {"77306", "77307", "77295", "77301", "77317", ""}


def test_csv_cells_cannot_be_formulas():
    assert safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert (
        safe_cell("+A1") == "'+A1" and safe_cell("-1+A1") == "'-1+A1" and safe_cell("@x") == "'@x"
    )
    assert safe_cell("\tcmd") == "'\tcmd"
    # numbers stay numbers: a negative jaw position is not a formula
    assert (
        safe_cell("-45") == "-45"
        and safe_cell("-45 45") == "-45 45"
        and safe_cell("+1.5e3") == "+1.5e3"
    )
    assert safe_cell("PTV") == "PTV"
    # expressions made of numbers are formulas too (a spreadsheet computes them)
    for text in ("+1-555-0100", "-2+3", "-1e5+1", "+1..2", "-45-", "1+1"):
        assert safe_cell(text) == ("'" + text if text[0] in "+-" else text), text
    assert safe_cell("-1e-5") == "-1e-5" and safe_cell("-.5") == "-.5"


def test_output_file_is_written(tmp_path):
    out = tmp_path / "out.json"
    result = invoke("scan", CASE, "--format", "json", "--output", out)
    assert result.exit_code == 0
    assert json.loads(out.read_text())["plans"][0]["code"] == "77295"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left


def test_output_inside_scanned_folder_is_refused(tmp_path):
    shutil.copytree(CASE, tmp_path / "export")
    result = invoke("scan", tmp_path / "export", "--output", tmp_path / "export" / "out.csv")
    assert result.exit_code == 2
    assert "never writes under" in result.output
    assert not (tmp_path / "export" / "out.csv").exists()


def test_no_plan_found_exits_1(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    result = invoke("scan", tmp_path)
    assert result.exit_code == 1
    assert "no readable RT Plan" in result.output


def test_errors_are_listed_and_exit_0(tmp_path):
    shutil.copytree(CASE, tmp_path / "export")
    (tmp_path / "export" / "broken.dcm").write_bytes(b"not dicom at all, but named .dcm")
    result = invoke("scan", tmp_path / "export", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert [e["path"] for e in data["errors"]] == [str(tmp_path / "export" / "broken.dcm")]
    assert "not a DICOM file" in data["errors"][0]["error"]


def test_bad_policy_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[isodose]\nmax_simple_ports = 'two'\n")
    result = invoke("scan", CASE, "--policy", bad)
    assert result.exit_code == 2
    assert "--policy" in result.output


def test_unknown_format_is_a_usage_error():
    assert invoke("scan", CASE, "--format", "xml").exit_code == 2


# ---------------------------------------------------------------------- inspect

VMAT = SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm"


def test_inspect_help():
    result = invoke("inspect", "--help")
    assert result.exit_code == 0 and "--control-points" in result.output


def test_inspect_json_shape():
    data = json.loads(invoke("inspect", VMAT, "--format", "json").output)
    [fg] = data["fraction_groups"]
    assert set(fg) >= {"number", "fractions", "beams", "meterset_mu"}
    assert fg["beams"] == [1, 2]
    assert fg["meterset_mu"] == pytest.approx(
        sum(b["meterset_mu"] for b in data["beams"]), abs=0.01
    )
    for beam in data["beams"]:
        assert beam["technique"] == "vmat"
        assert 0 < beam["mcs"] < 1
        assert "control_points" not in beam
    assert 0 < data["plan_metrics"]["mcs"] < 1


def test_inspect_control_points_add_up_to_the_beam_mu():
    data = json.loads(invoke("inspect", VMAT, "--format", "json", "--control-points").output)
    for beam in data["beams"]:
        cps = beam["control_points"]
        assert len(cps) == beam["number_of_control_points"] == 91
        assert [c["index"] for c in cps] == list(range(91))
        assert sum(c["meterset_mu"] for c in cps) == pytest.approx(beam["meterset_mu"], abs=0.05)
        assert cps[-1]["cumulative_meterset_mu"] == pytest.approx(beam["meterset_mu"], abs=0.01)
        assert all(c["aperture_area_mm2"] > 0 for c in cps)
        assert set(cps[0]) >= {
            "index", "gantry_deg", "cumulative_meterset_weight", "meterset_mu",
            "aperture_area_mm2", "aperture_perimeter_mm",
        }  # fmt: skip


def test_inspect_csv_rows():
    beams = list(csv.DictReader(io.StringIO(invoke("inspect", VMAT, "--format", "csv").output)))
    assert [r["technique"] for r in beams] == ["vmat", "vmat"]
    cps = list(
        csv.DictReader(
            io.StringIO(invoke("inspect", VMAT, "--format", "csv", "--control-points").output)
        )
    )
    assert len(cps) == 182 and cps[0]["beam_number"] == "1"


def test_inspect_of_a_file_that_is_not_a_plan():
    result = invoke("inspect", CASE / "RS.dcm")
    assert result.exit_code == 1
    assert "not an RT Plan" in result.output


# ---------------------------------------------------------- the table (issue 23)

NO_COLUMNS = {"COLUMNS": None}  # as a cron job or a pipe without COLUMNS


def _table_lines(output: str) -> list[str]:
    lines = output.splitlines()
    return lines[: lines.index("")]


def test_the_sample_table_fits_100_columns_or_what_columns_says():
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA)], env=NO_COLUMNS)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines if not line.startswith("10 skipped:")) <= 100
    assert len(_table_lines(result.output)) == 2 + SAMPLE_PLANS + 1  # head, rows, folder
    narrow = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA)], env={"COLUMNS": "80"})
    assert max(len(line) for line in _table_lines(narrow.output)) <= 80
    wide = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA)], env={"COLUMNS": "250"})
    [row] = [r for r in _table_lines(wide.output) if " RTC-21 " in r]
    assert row.startswith("21_mridian_two_mlcx_layers/RP.dcm ")  # nothing cut when it fits
    assert row.endswith(" step_and_shoot_imrt x12")


def test_details_for_one_plan_none_for_more_unless_asked():
    one = CliRunner().invoke(main, ["scan", str(CASE)], env=NO_COLUMNS).output
    assert "because 2 contoured target(s)" in one and "--details shows" not in one
    many = [str(CASE), str(SAMPLE_DATA / "11_vmat_two_arcs")]
    brief = CliRunner().invoke(main, ["scan", *many], env=NO_COLUMNS).output
    assert "because " not in brief
    assert "--details shows why each plan has its code, and the 1 check to make on 1 plan" in (
        " ".join(brief.split())
    )
    full = CliRunner().invoke(main, ["scan", *many, "--details"], env=NO_COLUMNS).output
    assert "because 2 contoured target(s)" in full and "because beam 2 'ARC2'" in full
    assert "check: plan ApprovalStatus is UNAPPROVED" in full
    quiet = CliRunner().invoke(main, ["scan", str(CASE), "--no-details"], env=NO_COLUMNS)
    assert "because " not in quiet.output and quiet.exit_code == 0
    assert "one plan" in invoke("scan", "--help").output  # the default is documented


def test_one_error_is_one_error(tmp_path):
    shutil.copytree(CASE, tmp_path / "export")
    (tmp_path / "export" / "broken.dcm").write_bytes(b"not dicom at all, but named .dcm")
    out = CliRunner().invoke(main, ["scan", str(tmp_path / "export")], env=NO_COLUMNS).output
    assert "1 plan, 1 structure set, 1 dose, 3 images skipped," in out
    assert out.count(" 1 error\n") == 1 and "1 errors" not in out


def test_scan_csv_related_codes_date_of_service_and_policy():
    rows = list(csv.DictReader(io.StringIO(invoke("scan", CASE, "--format", "csv").output)))
    [row] = rows
    assert list(row)[-4:] == ["related_codes", "date_of_service", "policy_name", "policy_version"]
    assert row["related_codes"] == "77300x4 77334x4"
    data = json.loads(invoke("scan", CASE, "--format", "json").output)
    assert row["date_of_service"] == data["plans"][0]["date_of_service"]
    assert (row["policy_name"], row["policy_version"]) == (
        data["policy"]["name"],
        data["policy"]["version"],
    )
