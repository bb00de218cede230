"""The command line that fits a terminal, a cron job and a spreadsheet (issue 23):
a missing input is exit status 2 before anything is read; ``report`` shows progress,
takes ``--jobs``, ``--quiet`` and ``--output`` and writes nothing without a plan;
outputs follow the umask while what rtcode keeps stays private; ``-`` is standard
output everywhere; ``--patient``, ``--since`` and ``--until`` filter local plans;
options are spelled and ordered the same in every command."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import pty
import select
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA, SAMPLE_PLANS

from rtcode.cli import COMMANDS, main
from rtcode.cli.options import FORMAT_ORDER, InputMissing, require_inputs
from rtcode.output.files import write_bytes_atomically
from rtcode.sources.results_db import PlanCoding, ResultsDB

CASE = SAMPLE_DATA / "06_four_field_box_3d"
SINGLE = SAMPLE_DATA / "01_single_open_field"
CHARGES = SAMPLE_DATA / "charges_clean.csv"


def invoke(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder: a file named "-" would show up in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def umask():
    """Set the umask for one test (``umask(0o027)``), restored afterwards."""
    old = os.umask(0o022)

    def set_to(value: int) -> None:
        os.umask(value)

    try:
        yield set_to
    finally:
        os.umask(old)


# ------------------------------------------------------- 1. a missing input is exit 2


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", SINGLE, "{missing}"],
        ["scan", "{missing}"],
        ["scan", "{missing}", "--format", "json", "-o", "out.json"],
        ["report", SINGLE, "{missing}"],
        ["report", "{missing}", "--html", "out.html"],
        ["audit", SINGLE, "{missing}", "--charges", CHARGES],
        ["audit", SINGLE, "--charges", "{missing}"],
        ["audit", SINGLE, "--charges", CHARGES, "--ptp", "{missing}"],
        ["inspect", "{missing}"],
    ],
    ids=lambda a: " ".join(str(x).rsplit("/", 1)[-1] for x in a),
)
def test_a_missing_input_is_exit_2_and_one_line_naming_it(here, argv):
    missing = here / "unmounted" / "export"
    result = invoke(*[str(a).format(missing=missing) for a in argv])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # not an empty table, not a partial scan
    [line] = result.stderr.splitlines()
    assert line.startswith("rtcode: ") and f"{missing} does not exist" in line
    assert listing(here) == []  # nothing written: the check comes first


def test_every_missing_input_is_named_and_links_are_told_apart(here):
    os.symlink(here / "gone", here / "dangling")
    result = invoke("scan", here / "a", here / "dangling")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert f"{here / 'a'} does not exist" in line
    assert f"{here / 'dangling'} is a broken symbolic link" in line


def test_dicomweb_urls_and_standard_input_are_not_paths():
    require_inputs(["dicomweb+http://pacs.example/dicom-web", Path("-"), SINGLE])
    with pytest.raises(InputMissing, match="does not exist"):
        require_inputs([SINGLE, Path("/nonexistent/rtcode")])


def test_audit_with_charges_from_standard_input_is_not_a_missing_input():
    result = invoke("audit", CASE, "--charges", "-", input=CHARGES.read_text())
    assert result.exit_code in (0, 4), result.output
    assert "does not exist" not in result.stderr


# --------------------------------------------------------------------- 2. report


def test_report_progress_is_on_standard_error_of_a_terminal_and_quiet_silences_it(tmp_path):
    def run(*extra: str) -> tuple[str, bytes]:
        main_fd, side = pty.openpty()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", "from rtcode.cli import main; main()", "report"]
                + [str(CASE), "--format", "json", *extra],
                stdout=subprocess.PIPE,
                stderr=side,
                timeout=300,
                check=False,
            )
            os.close(side)
            side = -1
            err = b""
            while select.select([main_fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            os.close(main_fd)
            if side >= 0:
                os.close(side)
        assert proc.returncode == 0, err
        return err.decode(), proc.stdout

    err, out = run()
    assert "files, 1 plans coded, 0 errors" in err
    assert "DVH evidence: 1 of 1 plans" in err
    assert json.loads(out)["patients"][0]["plans"][0]["code"] == "77295"  # stdout is data
    quiet_err, quiet_out = run("--quiet")
    assert "plans coded" not in quiet_err and "DVH evidence" not in quiet_err
    assert quiet_out == out


def test_report_with_jobs_gives_the_same_report():
    one = invoke("report", SAMPLE_DATA, "--format", "json", "--jobs", "1")
    two = invoke("report", SAMPLE_DATA, "--format", "json", "--jobs", "2")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert one.stdout == two.stdout
    plans = [p for patient in json.loads(one.stdout)["patients"] for p in patient["plans"]]
    assert len(plans) == SAMPLE_PLANS


def test_build_report_in_worker_processes_matches_one_process():
    from rtcode.coding.policy import load
    from rtcode.engine.scan import scan
    from rtcode.report.patients import build_report, to_json

    result = scan([str(SAMPLE_DATA)], load("default"))
    seen: list[tuple[int, int]] = []
    here = build_report(result, jobs=1)
    there = build_report(result, jobs=2, progress=lambda done, total: seen.append((done, total)))
    assert to_json(there) == to_json(here)
    assert seen == [(n, SAMPLE_PLANS) for n in range(1, SAMPLE_PLANS + 1)]


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_report_jobs_below_one_is_a_usage_error(jobs):
    result = invoke("report", CASE, "--jobs", jobs)
    assert result.exit_code == 2 and "--jobs" in result.output


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["--format", "json", "-o", "{out}"], "{"),
        (["--format", "html", "-o", "{out}"], "<!DOCTYPE html>"),
        (["--output", "{out}"], "rtcode report: 1 patient(s), 1 plan(s)"),
        (["--html", "{out}"], "<!DOCTYPE html>"),
    ],
)
def test_report_writes_each_format_to_a_file(here, argv, starts):
    out = here / "r.out"
    result = invoke("report", CASE, *[a.format(out=out) for a in argv])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8").startswith(starts)
    assert f"wrote the report of 1 plan(s) for 1 patient(s) to {out}" in result.stderr


def test_report_html_and_json_to_two_files_and_not_both_to_one(here):
    result = invoke("report", CASE, "--html", "r.html", "--format", "json", "-o", "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("r.json").read_text())["patients"][0]["plans"][0]["code"] == "77295"
    assert Path("r.html").read_text().startswith("<!DOCTYPE html>")
    same = invoke("report", CASE, "--html", "r.out", "-o", "./r.out")
    assert same.exit_code == 2 and "name the same file" in same.output
    both = invoke("report", CASE, "--html", "-", "--format", "html")
    assert both.exit_code == 2 and "both write to standard output" in both.output


@pytest.mark.parametrize(
    "argv",
    [
        ["--html", "r.html"],
        ["--format", "json", "-o", "r.json"],
        ["--format", "html", "-o", "r.html"],
        ["--html", "r.html", "-o", "r.txt"],
    ],
)
def test_report_without_a_plan_is_exit_1_and_writes_no_file(here, argv):
    (here / "empty").mkdir()
    before = listing(here)
    result = invoke("report", "empty", *argv)
    assert result.exit_code == 1
    assert "no readable RT Plan found" in result.stderr
    assert listing(here) == before  # no empty HTML, no empty JSON


def test_report_without_a_plan_still_says_what_it_read_on_standard_output(here):
    (here / "notes.txt").write_text("not DICOM\n")
    result = invoke("report", "notes.txt", "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["patients"] == []


# ------------------------------------------------------------- 3. files and streams


def _outputs(tmp_path: Path, results_db: Path) -> dict[str, list[str]]:
    out = str(tmp_path / "out")
    return {
        "scan -o": ["scan", str(CASE), "--no-cache", "--format", "json", "-o", out],
        "report --html": ["report", str(CASE), "--html", out],
        "report -o": ["report", str(CASE), "--format", "json", "-o", out],
        "audit -o": ["audit", str(CASE), "--charges", str(CHARGES), "-o", out],
        "results -o": ["results", "--db", str(results_db), "-o", out],
    }


@pytest.fixture
def results_db(tmp_path) -> Path:
    """A results database with three plans: RTC-06 dated 2026-01-05, RTC-10 dated
    2026-03-02 and RTC-11 without a plan date."""
    path = tmp_path / "db" / "results.sqlite"
    path.parent.mkdir()
    db = ResultsDB(path)
    db.record_codings(
        [
            _coding("p/06/RP.dcm", "RTC-06", "77295", "2026-01-05"),
            _coding("p/10/RP.dcm", "RTC-10", "77301", "2026-03-02"),
            _coding("p/11/RP.dcm", "RTC-11", "77301", None),
        ],
        trigger="p/06/RP.dcm",
    )
    db.record_refusal(calling_ae="X", peer="192.0.2.1:104", what="association", reason="test")
    db.close()
    return path


def _coding(path: str, patient: str, code: str, day: str | None) -> PlanCoding:
    return PlanCoding(
        stored_path=path,
        sop_instance_uid="1.2.3." + patient[-2:],
        patient_id=patient,
        plan_label="PLAN",
        code=code,
        label="label",
        category="planning",
        confidence="high",
        structure_set_status="linked",
        doses=1,
        date_of_service=day,
        policy_name="default",
        policy_version="1",
        policy_sha256="0" * 64,
        reasons=("a reason",),
        result={"code": code},
    )


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
@pytest.mark.parametrize(
    "command", ["scan -o", "report --html", "report -o", "audit -o", "results -o"]
)
def test_output_files_follow_the_umask(tmp_path, results_db, umask, command, mask):
    umask(mask)
    result = CliRunner().invoke(main, _outputs(tmp_path, results_db)[command])
    assert result.exit_code in (0, 4), result.output  # audit: 4 with findings
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o666 & ~mask


def test_a_scan_output_follows_the_umask_of_a_new_process(tmp_path):
    """The umask as a shell or cron sets it, in a process of its own."""
    out = tmp_path / "night.csv"
    code = (
        "import os, sys; os.umask(0o007); from rtcode.cli import main;"
        " sys.argv[0] = 'rtcode'; main()"
    )
    argv = ["scan", str(CASE), "--no-cache", "--format", "csv", "-o", str(out)]
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o660


def test_what_rtcode_keeps_stays_private_whatever_the_umask(tmp_path, umask):
    umask(0o000)
    db = ResultsDB(tmp_path / "results.sqlite")
    db.record_refusal(calling_ae="X", peer="127.0.0.1:1", what="association", reason="test")
    for name in ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    db.close()
    (tmp_path / "spool").mkdir()
    write_bytes_atomically(tmp_path / "RP.dcm", tmp_path / "spool", b"DICM")
    assert stat.S_IMODE((tmp_path / "RP.dcm").stat().st_mode) == 0o600
    cache = tmp_path / "c" / "cache.sqlite"
    result = invoke("scan", CASE, "--format", "json", "--cache", cache)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


@pytest.mark.parametrize("dash", ["-", "/dev/stdout"])
@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["scan", CASE, "--no-cache", "--format", "json", "-o", "{dash}"], "{"),
        (["scan", CASE, "--no-cache", "--output", "{dash}"], "plan file"),
        (["report", CASE, "--html", "{dash}"], "<!DOCTYPE html>"),
        (["report", CASE, "--format", "json", "-o", "{dash}"], "{"),
        (["report", CASE, "--output", "{dash}"], "rtcode report:"),
        (["audit", CASE, "--charges", CHARGES, "--format", "json", "-o", "{dash}"], "{"),
        (["results", "--db", "{db}", "--format", "csv", "-o", "{dash}"], "coded_at,"),
    ],
    ids=lambda a: " ".join(str(x) for x in a if not str(x).startswith("/")),
)
def test_dash_is_standard_output_for_every_output_option(here, results_db, argv, starts, dash):
    before = [f for f in listing(here) if not f.startswith("db")]  # SQLite's files
    result = invoke(*[str(a).format(dash=dash, db=results_db) for a in argv])
    assert result.exit_code in (0, 4), result.output
    assert result.stdout.startswith(starts)
    assert "wrote" not in result.stderr
    assert [f for f in listing(here) if not f.startswith("db")] == before  # no "-"


def test_results_output_is_never_the_database(results_db):
    result = invoke("results", "--db", results_db, "-o", results_db)
    assert result.exit_code == 2 and "the results database" in result.output
    wal = str(results_db) + "-wal"
    result = invoke("results", "--db", results_db, "-o", wal)
    assert result.exit_code == 2


# ------------------------------------------------------------------- 4. filters


def _csv_patients(text: str) -> list[str]:
    return [r["patient_id"] for r in csv.DictReader(io.StringIO(text))]


def test_scan_patient_is_repeatable_for_local_scans():
    result = invoke(
        "scan", SAMPLE_DATA, "--no-cache", "--format", "csv", "--patient", "RTC-10",
        "--patient", "RTC-06",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _csv_patients(result.stdout) == ["RTC-06", "RTC-10"]  # in scan order
    assert f"rtcode: {SAMPLE_PLANS - 2} plan(s) of other patients or dates left out" in (
        result.stderr
    )


def test_the_filter_also_holds_for_jsonl_and_deidentified_scans():
    jsonl = invoke("scan", SAMPLE_DATA, "--no-cache", "--format", "jsonl", "--patient", "RTC-06")
    plans = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [p["patient_id"] for p in plans if p["record"] == "plan"] == ["RTC-06"]
    pseudo = invoke(
        "scan", SAMPLE_DATA, "--no-cache", "--format", "csv", "--patient", "RTC-06",
        "--deidentify",
    )  # fmt: skip
    [patient] = _csv_patients(pseudo.stdout)
    assert patient != "RTC-06"  # filtered on the real ID, then pseudonymised


@pytest.fixture(scope="module")
def undated(tmp_path_factory) -> Path:
    """Two cases: 01 as shipped (dated 2026-01-05), 02 with its RTPlanDate removed."""
    root = tmp_path_factory.mktemp("undated")
    shutil.copytree(SINGLE, root / "dated")
    shutil.copytree(SAMPLE_DATA / "02_ap_pa_open", root / "undated")
    [plan] = (root / "undated").iterdir()
    ds = pydicom.dcmread(plan, force=True)  # written without the preamble, as exported
    del ds.RTPlanDate
    ds.save_as(plan)
    return root


@pytest.mark.parametrize(
    ("dates", "kept", "undated_note"),
    [
        ([], ["RTC-01", "RTC-02"], False),
        (["--since", "2026-01-05"], ["RTC-01"], True),
        (["--until", "2026-01-05"], ["RTC-01"], True),
        (["--since", "2026-01-05", "--until", "2026-01-05"], ["RTC-01"], True),
    ],
)
def test_since_and_until_are_on_the_plan_date_and_undated_plans_are_counted(
    undated, dates, kept, undated_note
):
    result = invoke("scan", undated, "--no-cache", "--format", "csv", *dates)
    assert result.exit_code == 0, result.output
    assert sorted(_csv_patients(result.stdout)) == kept
    note = "1 plan(s) without a plan date (RTPlanDate) left out by --since/--until"
    assert (note in result.stderr) is undated_note


@pytest.mark.parametrize("dates", [["--since", "2026-01-06"], ["--until", "2026-01-04"]])
def test_a_filter_that_keeps_nothing_is_exit_1_and_says_so(undated, dates):
    result = invoke("scan", undated, "--no-cache", *dates)
    assert result.exit_code == 1
    assert "none of the 2 plan(s) read matches" in result.stderr


def test_the_plan_date_is_not_the_date_of_service_option(undated):
    result = invoke(
        "scan", undated, "--no-cache", "--format", "csv", "--date", "2027-01-01",
        "--since", "2026-12-31",
    )  # fmt: skip
    assert result.exit_code == 1  # RTPlanDate 2026-01-05, whatever --date says


def test_since_after_until_is_a_usage_error():
    result = invoke("scan", CASE, "--since", "2026-02-01", "--until", "2026-01-01")
    assert result.exit_code == 2 and "is after --until" in result.output


def test_report_filters_by_patient_and_plan_date(undated):
    result = invoke("report", undated, "--format", "json", "--since", "2026-01-01")
    assert result.exit_code == 0, result.output
    assert [p["patient_id"] for p in json.loads(result.stdout)["patients"]] == ["RTC-01"]
    assert "1 plan(s) without a plan date" in result.stderr
    by_id = invoke("report", SAMPLE_DATA, "--format", "json", "--patient", "RTC-10")
    assert [p["patient_id"] for p in json.loads(by_id.stdout)["patients"]] == ["RTC-10"]


@pytest.mark.parametrize(
    ("args", "patients", "undated_left_out"),
    [
        ([], ["RTC-06", "RTC-10", "RTC-11"], 0),
        (["--patient", "RTC-10", "--patient", "RTC-11"], ["RTC-10", "RTC-11"], 0),
        (["--since", "2026-02-01"], ["RTC-10"], 1),
        (["--until", "2026-02-01"], ["RTC-06"], 1),
        (["--patient", "RTC-06", "--since", "2026-02-01"], [], 0),
    ],
)
def test_results_filters_plans_by_patient_and_plan_date(
    results_db, args, patients, undated_left_out
):
    result = invoke("results", "--db", results_db, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["patient_id"] for p in data["plans"]] == patients
    assert data["filters"]["plans_without_date_left_out"] == undated_left_out
    assert ("without a plan date" in result.stderr) is bool(undated_left_out)


@pytest.mark.parametrize(
    ("days", "kept"),
    [
        ({"since": 0}, 1),
        ({"until": 0}, 1),
        ({"since": 1}, 0),
        ({"until": -1}, 0),
    ],
)
def test_results_keeps_what_arrived_by_the_day_it_arrived(results_db, days, kept):
    today = dt.date.today()  # the refusal arrived today, local time
    args = [f"--{k}={today + dt.timedelta(days=n)}" for k, n in days.items()]
    result = invoke("results", "--db", results_db, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["refusals"]) == kept


# ----------------------------------------------------- 4. the same options everywhere


def _params(command: str) -> dict[str, Any]:
    import click

    cmd = main.get_command(click.Context(main), command)
    assert cmd is not None
    return {p.name: p for p in cmd.params if p.name is not None}


def test_format_choices_come_in_one_order_in_every_command():
    seen = {}
    for command in ("scan", "report", "results", "audit", "inspect"):
        choices = list(_params(command)["fmt"].type.choices)
        assert choices == sorted(choices, key=FORMAT_ORDER.index), command
        seen[command] = choices
    assert seen["report"] == ["table", "json", "html"]
    assert seen["audit"] == ["table", "json", "csv", "html"]
    assert seen["scan"] == ["table", "json", "jsonl", "csv"]


@pytest.mark.parametrize("option", ["patients", "since", "until", "output"])
def test_shared_options_read_the_same_in_every_command(option):
    offered = {}
    for command in ("scan", "report", "results", "audit"):
        param = _params(command).get(option)
        if param is not None:
            offered[command] = (tuple(param.opts), param.help, param.multiple)
    expected = {
        "patients": {"scan", "report", "results", "audit"},
        "since": {"scan", "report", "results"},
        "until": {"scan", "report", "results"},
        "output": {"scan", "report", "results", "audit"},
    }[option]
    assert set(offered) == expected
    assert len(set(offered.values())) == 1, offered


def test_every_command_still_has_help():
    for command in COMMANDS:
        result = invoke(command, "--help")
        assert result.exit_code == 0, command


# ------------------------------------------------------- 5. arguments named as such


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["policy", "show", "nosuch"], "'NAME'"),
        (["policy", "diff", "default", "nosuch"], "'B'"),
        (["policy", "diff", "nosuch", "default"], "'A'"),
    ],
)
def test_a_bad_policy_argument_is_named_as_the_argument(argv, name):
    result = invoke(*argv)
    assert result.exit_code == 2
    assert f"Invalid value for {name}: cannot read policy 'nosuch'" in result.output
    assert "--policy" not in result.output


def test_the_policy_option_is_still_named_as_the_option():
    result = invoke("scan", CASE, "--policy", "nosuch")
    assert result.exit_code == 2 and "Invalid value for --policy" in result.output


def test_inspect_control_points_table_has_the_columns_the_readme_names():
    """Each control point: gantry, cumulative weight, MU to the next point, area,
    perimeter, LSV and AAV, jaws; LSV and AAV as the JSON gives them."""
    plan = SAMPLE_DATA / "09_imrt_step_and_shoot_7f" / "RP.dcm"
    table = CliRunner().invoke(main, ["inspect", str(plan), "--control-points"])
    data = json.loads(
        CliRunner()
        .invoke(main, ["inspect", str(plan), "--control-points", "--format", "json"])
        .stdout
    )
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("cp "))
    assert header.split()[:9] == [
        "cp",
        "gantry",
        "cum.",
        "weight",
        "MU",
        "to",
        "next",
        "area",
        "mm2",
    ]
    assert "LSV" in header.split() and "AAV" in header.split()
    first = lines[lines.index(header) + 2].split()
    cp = data["beams"][0]["control_points"][0]
    assert first[6:8] == [f"{cp['lsv']:g}", f"{cp['aav']:g}"]
