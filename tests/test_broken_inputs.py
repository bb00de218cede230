"""Bad input never stops a batch, nothing is lost, nothing leaks (issue 8).

The broken-input corpus (tests/broken_corpus.py) runs through ``rtcode.engine.scan.scan`` and
through the command line; every case must produce its expected outcome: exactly one
plain-words error naming the file, or, where the design says so, a plan coded
``undetermined`` or flagged. Then: scanning never changes an input, outputs are
written atomically, Ctrl-C reports what was done, CSV cannot carry formulas, no
network is used, and absurd sizes cost neither memory nor time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import struct
import time
import tracemalloc
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from broken_corpus import (
    GROUPS,
    Case,
    build,
    plain_words_problem,
    policy_text,
    problems,
    restore_permissions,
    seen_from_json,
    seen_from_scan,
)
from click.testing import CliRunner
from conftest import SAMPLE_DATA, SAMPLE_PLANS

import rtcode.dicom.read
from rtcode.cli import main
from rtcode.coding import policy as policy_mod
from rtcode.dicom.read import FileEntry, read
from rtcode.engine.scan import ScanInterrupted, scan


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    cases = build(root)
    before = digest_tree(root)
    yield root, cases
    # Every scan and command in this module read the corpus: none may have changed it.
    assert digest_tree(root) == before
    restore_permissions(root)


def policy_for(case: Case) -> policy_mod.Policy:
    if case.policy is None:
        return policy_mod.load()
    return policy_mod.parse(policy_text(case.policy), f"test:{case.name}")


def test_corpus_covers_the_issue(corpus):
    _, cases = corpus
    by_group = defaultdict(list)
    for c in cases:
        by_group[c.group].append(c)
    assert set(by_group) == set(GROUPS)
    assert len(by_group["truncation"]) >= 80 and len(by_group["byte_flips"]) >= 40
    names = {c.name for c in cases}
    for needed in (
        "no_beam_sequence",
        "no_control_point_sequence",
        "no_fraction_group_sequence",
        "empty_control_point_sequence",
        "meterset_nan",
        "meterset_infinite",
        "meterset_negative",
        "meterset_absurd",
        "control_points_claimed_million",
        "control_points_disagree",
        "nested_1000_undefined_length",
        "cyclic_plan_references",
        "text_named_dcm",
        "zero_bytes_named_dcm",
        "unreadable_file",
        "unreadable_folder",
        "symlink_loop_between_folders",
        "non_ascii_path",
        "long_path",
        "big_endian_06_RD",
        "gantry_1e308",
        "final_weight_subnormal",
        "leaf_position_1e308",
    ):
        assert needed in names
    assert len(names) == len(cases)  # one name, one case


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_case_through_scan(corpus, group):
    _, cases = corpus
    failures = {}
    for case in (c for c in cases if c.group == group):
        started = time.perf_counter()
        result = scan([str(case.target)], policy_for(case))
        elapsed = time.perf_counter() - started
        found = problems(case, seen_from_scan(result))
        # A guard against a file that makes the reader spin, not a speed target (speed
        # is measured by scripts/bench.py): generous, so a loaded machine never trips it.
        if elapsed > 60:
            found.append(f"took {elapsed:.1f} s")
        if found:
            failures[case.name] = found
    assert not failures, json.dumps(failures, indent=2, ensure_ascii=False)


def test_the_whole_corpus_in_one_batch(corpus):
    """One scan over every default-policy case: no crash, one error per error case,
    and the good files in the batch are all coded."""
    _, cases = corpus
    batch = [c for c in cases if c.policy is None]
    result = scan([str(c.target) for c in batch], policy_mod.load())
    expected_errors = sum(1 for c in batch if c.outcome == "error")
    flipped_errors = {e.path for e in result.errors} & {
        c.file for c in batch if c.outcome == "read_or_error"
    }
    assert len(result.errors) == expected_errors + len(flipped_errors)
    assert len({e.path for e in result.errors}) == len(result.errors)  # one entry per file
    good = [c for c in batch if c.outcome in ("undetermined", "flagged")]
    reported = {p.linked.plan.path for p in result.plans}
    assert {c.file for c in good} <= reported


def _not_json(constant: str):
    raise AssertionError(f"{constant} in the JSON output: not valid JSON")


def _cli_groups(cases):
    groups = defaultdict(list)
    for c in cases:
        if c.name != "missing_input":  # the command refuses it: exit 2 (test_cli_commands)
            groups[c.policy].append(c)
    return groups


def test_every_case_through_the_cli(corpus, tmp_path):
    root, cases = corpus
    failures = {}
    for n, (overrides, group) in enumerate(_cli_groups(cases).items()):
        args = ["scan", *[str(c.target) for c in group], "--format", "json"]
        if overrides is not None:
            policy_file = tmp_path / f"policy{n}.toml"
            policy_file.write_bytes(policy_text(overrides))
            args += ["--policy", str(policy_file)]
        out = tmp_path / f"out{n}.json"
        result = CliRunner().invoke(main, [*args, "--output", str(out)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        # valid JSON: no NaN or Infinity, whatever values the files hold
        data = json.loads(out.read_text(encoding="utf-8"), parse_constant=_not_json)
        assert result.exit_code == (0 if data["plans"] else 1), result.output
        for case in group:
            found = problems(case, seen_from_json(data, under=str(case.target)))
            if found:
                failures[case.name] = found
    assert not failures, json.dumps(failures, indent=2, ensure_ascii=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


@pytest.mark.parametrize("fmt", ["table", "csv"])  # json: test_every_case_through_the_cli
def test_every_format_prints_the_whole_corpus(corpus, fmt):
    _, cases = corpus
    batch = [c for c in cases if c.policy is None and c.name != "missing_input"]
    result = CliRunner().invoke(main, ["scan", *[str(c.target) for c in batch], "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if fmt == "table":
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) >= sum(1 for c in batch if c.outcome == "error")
        assert "\ufffd" in result.output  # the file whose name is not UTF-8 is shown


# ---------------------------------------------------------------- nothing changed


def digest_tree(root: Path) -> dict[str, tuple]:
    """Every entry under root (symbolic links not followed): content hash, inode, size,
    mode, modification and change times. By folder descriptor: some corpus paths are
    longer than PATH_MAX."""
    out = {}
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root):
        for name in dirnames + filenames:
            st = os.lstat(name, dir_fd=dirfd)
            digest = None
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o444:
                fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
                with os.fdopen(fd, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            key = os.path.join(dirpath, name)
            out[key] = (digest, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
    return out


def test_scanning_never_writes_renames_or_touches_an_input(corpus, tmp_path):
    root, cases = corpus
    before = digest_tree(root)
    listing = sorted(os.listdir(root))
    for group in _cli_groups(cases).values():
        scan([str(c.target) for c in group], policy_for(group[0]))
    assert sorted(os.listdir(root)) == listing
    assert digest_tree(root) == before


def test_the_sample_export_is_never_changed(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA, export)
    before = digest_tree(tmp_path)
    CliRunner().invoke(main, ["scan", str(export), "--format", "json"])
    assert digest_tree(tmp_path) == before


# ------------------------------------------------------------------ atomic output


def test_an_interrupted_write_leaves_the_old_report_and_no_temporary_file(tmp_path, monkeypatch):
    out = tmp_path / "report.json"
    out.write_text("the previous report\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA / "06_four_field_box_3d"), "--format", "json", "-o", out]
    )
    assert result.exit_code != 0
    assert out.read_text() == "the previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_no_half_written_report(tmp_path, monkeypatch):
    out = tmp_path / "report.csv"
    real_fsync = os.fsync

    def disk_full(fd):
        real_fsync(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA / "06_four_field_box_3d"), "--format", "csv", "-o", out]
    )
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ Ctrl-C


def interrupt_after(monkeypatch, n_files: int) -> None:
    """Make the reader raise KeyboardInterrupt (Ctrl-C) when it opens file n+1."""
    real_read = rtcode.dicom.read.read
    calls = {"n": 0}

    def reading(entry, limits=None):
        calls["n"] += 1
        if calls["n"] > n_files:
            raise KeyboardInterrupt
        return real_read(entry, limits)

    monkeypatch.setattr(rtcode.dicom.read, "read", reading)


def test_ctrl_c_keeps_what_was_read(monkeypatch):
    interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt) as stopped:  # still Ctrl-C for other callers
        scan([str(SAMPLE_DATA / "06_four_field_box_3d")], policy_mod.load())
    assert isinstance(stopped.value, ScanInterrupted)
    result = stopped.value.result
    assert result.interrupted
    assert result.inventory.files_seen == 5
    assert [p.classification.code for p in result.plans] == ["77307"]  # RS.dcm not yet read


def test_ctrl_c_while_coding_keeps_the_plans_coded(monkeypatch):
    import rtcode.coding.classify

    real = rtcode.coding.classify.classify
    calls = {"n": 0}

    def classifying(lp, policy):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(lp, policy)

    monkeypatch.setattr(rtcode.coding.classify, "classify", classifying)
    with pytest.raises(ScanInterrupted) as stopped:
        scan([str(SAMPLE_DATA)], policy_mod.load())
    assert stopped.value.result.interrupted and len(stopped.value.result.plans) == 2


@pytest.mark.parametrize("fmt", ["json", "table", "csv"])
def test_ctrl_c_on_the_command_line_reports_and_exits_130(monkeypatch, tmp_path, fmt):
    interrupt_after(monkeypatch, 12)
    out = tmp_path / f"partial.{fmt}"
    # --jobs 1: the reader that stops is this process's (workers have their own count)
    args = ["scan", str(SAMPLE_DATA), "--format", fmt, "-o", out, "--jobs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    # 12 files parsed; images named by their file meta are counted without parsing
    said = re.search(r"interrupted after (\d+) file\(s\)", result.output)
    assert said, result.output
    seen = int(said.group(1))
    assert 12 <= seen < sum(1 for p in SAMPLE_DATA.rglob("*") if p.is_file())
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        data = json.loads(text)
        assert data["summary"]["interrupted"] is True and data["summary"]["files_seen"] == seen
        assert data["plans"]
    elif fmt == "table":
        assert "interrupted (Ctrl-C)" in text
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_ctrl_c_still_stops_other_commands(monkeypatch, tmp_path):
    """Only rtcode scan reports a partial result; an audit of half the plans would
    report charges as unsupported, so Ctrl-C aborts it as before."""
    interrupt_after(monkeypatch, 3)
    charges = tmp_path / "charges.csv"
    shutil.copy(SAMPLE_DATA / "charges_clean.csv", charges)
    out = tmp_path / "audit.json"
    result = CliRunner().invoke(
        main, ["audit", str(SAMPLE_DATA), "--charges", str(charges), "--format", "json", "-o", out]
    )
    assert result.exit_code not in (0, 4) and not out.exists()


def test_a_complete_scan_says_it_was_not_interrupted():
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA / "01_single_open_field"), "--format", "json"]
    )
    assert json.loads(result.output)["summary"]["interrupted"] is False


# ------------------------------------------------------------------ safe outputs


def test_dicom_strings_cannot_become_spreadsheet_formulas(tmp_path):
    ds = pydicom.dcmread(SAMPLE_DATA / "01_single_open_field" / "RP.dcm")
    ds.RTPlanLabel = "=HYPERLINK(1)"
    ds.PatientID = "@SUM(A1)"
    ds.save_as(tmp_path / "RP.dcm")
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--format", "csv"])
    row = result.output.splitlines()[1]
    assert "'=HYPERLINK(1)" in row and "'@SUM(A1)" in row
    assert ",=" not in row and ",@" not in row


def test_html_outputs_escape_every_dicom_string(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / "06_four_field_box_3d", export)
    ds = pydicom.dcmread(export / "RP.dcm")
    with warnings.catch_warnings():  # the label is longer than SH allows: kept anyway
        warnings.simplefilter("ignore")
        ds.RTPlanLabel = "<script>x</script>"
        ds.RTPlanName = '"><img src=x onerror=alert(1)>'
        ds.BeamSequence[0].BeamName = "<b>AP</b>"
    ds.save_as(export / "RP.dcm")
    charges = tmp_path / "charges.csv"
    charges.write_text(
        (SAMPLE_DATA / "charges_clean.csv").read_text(encoding="utf-8").splitlines()[0] + "\n"
    )
    runner = CliRunner()
    runner.invoke(main, ["report", str(export), "--html", str(tmp_path / "report.html")])
    runner.invoke(
        main,
        ["audit", str(export), "--charges", str(charges), "--format", "html"]
        + ["-o", str(tmp_path / "audit.html")],
    )
    for name in ("report.html", "audit.html"):
        page = (tmp_path / name).read_text(encoding="utf-8")
        assert "&lt;script&gt;x" in page
        assert "<script>x" not in page and "<img src=x" not in page and "<b>AP" not in page


def test_a_policy_is_data_never_code(tmp_path):
    marker = tmp_path / "ran"
    text = f"[policy]\nextends = \"default\"\nname = \"__import__('pathlib').Path('{marker}').touch()\"\n"
    p = policy_mod.parse(text.encode(), "test")
    assert p.name.startswith("__import__") and not marker.exists()


def test_no_network_is_used_to_scan(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("rtcode opened a network socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert len(scan([str(SAMPLE_DATA)], policy_mod.load()).plans) == SAMPLE_PLANS
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--format", "json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["inspect", str(SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm")])
    assert result.exit_code == 0


# --------------------------------------------------------------- resource limits


def test_a_declared_four_gigabytes_reserves_no_memory(corpus):
    _, cases = corpus
    [case] = [c for c in cases if c.name == "element_claims_four_gigabytes"]
    tracemalloc.start()
    try:
        result = read(FileEntry(Path(case.file), case.file, explicit=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.kind == "error" and "truncated" in result.error
    assert peak < 20 * 1024 * 1024


def test_a_file_over_the_size_limit_is_not_opened_for_reading(corpus, monkeypatch):
    _, cases = corpus
    [case] = [c for c in cases if c.name == "larger_than_file_size_limit"]
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: pytest.fail("the file was parsed"))
    limits = rtcode.dicom.read.Limits.from_policy(policy_for(case))
    result = read(FileEntry(Path(case.file), case.file, explicit=True), limits)
    assert result.kind == "error" and "2 MB, more than the limit of 1 MB" in result.error


def test_limits_come_from_the_policy():
    p = policy_mod.load()
    limits = rtcode.dicom.read.Limits.from_policy(p)
    assert limits.max_beams == p["limits.max_beams"]
    assert limits.max_file_size_bytes == p["limits.max_file_size_mb"] * 1024 * 1024


def test_plain_words_check_catches_what_it_should():
    assert plain_words_problem("IndexError: list index out of range")
    assert plain_words_problem("KeyError")
    assert plain_words_problem('Traceback (most recent call last):\n  File "x"')
    assert plain_words_problem("")
    assert plain_words_problem("truncated DICOM file: it ends at byte 9") is None
    # exception texts passed on without their class name (issue 21, 15)
    for message in (
        "RP.dcm::FractionGroupSequence[0].ReferencedBeamSequence cannot be decoded:"
        " unpack requires a buffer of 4 bytes",
        "PTV: not computed: cannot convert float NaN to integer",
        "could not convert string to float: 'abc'",
        "invalid literal for int() with base 10: 'x'",
        "'NoneType' object has no attribute 'value'",
        "list index out of range",
        "'utf-8' codec can't decode byte 0xff in position 3",
        "[Errno 5] Input/output error",
        "UserWarning: invalid value",
    ):
        assert plain_words_problem(message), message
    for message in (
        "RP.dcm::BeamSequence[0].ControlPointSequence[0].GantryAngle is 1e+308 degrees,"
        " outside 0 to 360: the gantry angle decides whether the beam arcs",
        "cannot read the file: Permission denied",
        "RP.dcm::BeamSequence[0].NumberOfControlPoints cannot be decoded: its 3 bytes are"
        " not a whole number of unsigned 16-bit integers (VR US, 2 bytes each)",
    ):
        assert plain_words_problem(message) is None, message


# ------------------------------------------- what the parser says, said in words


PYTHON_TEXTS = [
    struct.error("unpack requires a buffer of 4 bytes"),
    ValueError("cannot convert float NaN to integer"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    LookupError("unknown encoding: ISO_IR 999"),
    IndexError("list index out of range"),
    RuntimeError("something nobody foresaw"),
]


@pytest.mark.parametrize("exc", PYTHON_TEXTS, ids=lambda e: type(e).__name__)
def test_a_parser_failure_is_said_in_plain_words(monkeypatch, exc):
    """Whatever pydicom raises on a damaged file, the error says what kind of damage
    in words, never the parser's own text (issue 21, 15)."""

    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pydicom, "dcmread", failing)
    monkeypatch.setattr(rtcode.dicom.read, "_read_view", lambda *a: None)  # pydicom parses it
    raw = SAMPLE_DATA / "02_ap_pa_open" / "RTPLAN_AP_PA"
    result = read(FileEntry(raw, str(raw), explicit=True))
    assert result.kind == "error"
    assert result.error.startswith("damaged DICOM file: ")
    assert plain_words_problem(result.error) is None, result.error
    assert str(exc) not in result.error
    with pytest.raises(rtcode.dicom.read.DicomReadError) as raised:
        rtcode.dicom.read.read_full(raw)
    assert plain_words_problem(str(raised.value)) is None, str(raised.value)
    assert str(exc) not in str(raised.value)


@pytest.mark.parametrize("exc", PYTHON_TEXTS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["extract", "classify"])
def test_a_failure_nobody_foresaw_is_said_in_plain_words(monkeypatch, exc, where):
    """A file shaped in a way rtcode does not handle is one error entry asking for the
    file, without Python's words (they go to the log)."""
    import rtcode.coding.classify
    import rtcode.dicom.extract

    def failing(*args, **kwargs):
        raise exc

    if where == "extract":
        monkeypatch.setattr(rtcode.dicom.extract, "extract", failing)
    else:
        monkeypatch.setattr(rtcode.coding.classify, "classify", failing)
    result = scan([str(SAMPLE_DATA / "01_single_open_field")], policy_mod.load())
    assert result.errors
    for error in result.errors:
        assert "please report this file" in error.error
        assert plain_words_problem(error.error) is None, error.error
        assert str(exc) not in error.error
