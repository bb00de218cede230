"""No value from a file or the user reaches the terminal raw (issue 21, failure 7).

A hostile export carries ESC sequences (CSI with a 7-bit and an 8-bit introducer, an
OSC that sets the window title), a bidi override and a newline in its PatientID,
RTPlanLabel, an ROI name, a beam name and a file name; every text renderer must show
them escaped (``\\x1b``), keep its columns aligned, and let no raw control through.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import unicodedata
import warnings

import pydicom
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.coding.policy import load
from rtcode.model.facts import ReadError, Tally
from rtcode.output.render import table_text
from rtcode.output.terminal import clip, lines_text, one_line, shown
from rtcode.sources.results_db import PlanCoding, ResultsDB

# CSI (7-bit), OSC window title ended by BEL, CSI (8-bit), a bidi override, a newline.
HOSTILE = "\x1b[31mRED\x1b]0;pwned\x07\x9b2J\u202eEVIL\nNL"
ESCAPED = "\\x1b[31mRED\\x1b]0;pwned\\x07\\x9b2J\\u202eEVIL\\nNL"
FILE_PART = "\x1b]0;file\x07"  # in a file name
# Anything a terminal acts on: C0 but newline, DEL, C1, bidi embeddings/overrides/isolates.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_safe(text: str) -> None:
    assert "EVIL NL" not in text  # a newline in a value is shown, not folded into a space
    for line in text.splitlines():  # wrapped paragraphs are measured as shown
        if line.startswith("    ") and "  " not in line.strip():
            assert len(line) <= 100, line
    found = RAW.search(text)
    assert found is None, (
        f"raw {found.group()!r} at {found.start()}: {text[found.start() - 40 :][:80]!r}"
    )


def assert_aligned(lines: list[str], header: int) -> None:
    """Rows under a header and its dashes line start each column where the dashes do."""
    dashes = lines[header + 1]
    assert set(dashes) <= {"-", " "} and "-" in dashes, dashes
    gaps = [i for i, ch in enumerate(dashes) if ch == " "]
    for row in lines[header + 2 :]:
        if "  " not in row.strip():  # a blank line or prose after the table
            break
        assert len(row) <= len(dashes), (row, dashes)
        assert all(row[i] == " " for i in gaps if i < len(row)), (row, dashes)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Case 06 with hostile PatientID, RTPlanLabel, ROI and beam names and file names,
    plus an unreadable file whose name carries an escape (an error line)."""
    root = tmp_path_factory.mktemp("hostile")
    case = root / "case"
    shutil.copytree(SAMPLE_DATA / "06_four_field_box_3d", case)
    for f in sorted(case.iterdir()):
        ds = pydicom.dcmread(f)
        with warnings.catch_warnings():  # longer than SH allows: written all the same
            warnings.simplefilter("ignore", UserWarning)
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.PatientID = "P" + HOSTILE
            if ds.Modality == "RTPLAN":
                ds.RTPlanLabel = "L" + HOSTILE
                ds.BeamSequence[0].BeamName = "B" + HOSTILE
            if ds.Modality == "RTSTRUCT":
                ds.StructureSetROISequence[1].ROIName = "R" + HOSTILE  # the PTV
            ds.save_as(f)
    plan = case / f"RP{FILE_PART}.dcm"
    (case / "RP.dcm").rename(plan)
    (case / f"bad{FILE_PART}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    return root, plan


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 4), result.output
    return result.output


def test_shown_escapes_every_control_and_bidi_character_and_nothing_else():
    dangerous = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
    dangerous += [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
    dangerous += ["\u200b", "\u200e", "\u200f", "\u2028", "\u2029", "\ufeff", "\udc9b"]
    for ch in dangerous:
        out = shown(f"a{ch}b")
        assert out.startswith("a\\") and out.endswith("b") and out.isprintable(), repr(ch)
    assert shown("\x1b") == "\\x1b" and shown("\x9b") == "\\x9b" and shown("\x7f") == "\\x7f"
    assert shown("\n\t\r") == "\\n\\t\\r" and shown("\u202e") == "\\u202e"
    assert shown("\U000e0041") == "\\U000e0041"  # a tag character
    for safe in ["Femur_Head_L", "C:\\plans\\RP.dcm", "é 日本 Ø", "a\xa0b", "", "~!@#$%^&*()"]:
        assert shown(safe) == safe
    assert shown(None) == "" and shown(12) == "12"


def test_shown_is_idempotent_and_one_line():
    text = shown(HOSTILE)
    assert text == ESCAPED and shown(text) == text
    assert one_line("a \n\t b") == "a \\n\\t b" and one_line("a   b ") == "a b"


@pytest.mark.parametrize("width", range(1, 40))
def test_clip_never_cuts_an_escape_or_exceeds_the_width(width):
    for value in (HOSTILE, "x" + HOSTILE, "\u202e" * 9, "ab\x1b" * 9):
        out = clip(value, width)
        assert len(out) <= width and out.isprintable()
        body = out[:-1] if out.endswith("~") else out
        # every backslash starts a whole escape: \xNN, \uNNNN or a named one
        assert re.fullmatch(r"(?:[^\\]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\[ntr])*", body), out


def test_a_long_evidence_detail_is_cut_between_escapes():
    from rtcode.output.terminal import cut

    text = "observed " + "\\x1b" * 30
    for width in range(9, 40):
        out = cut(text, width)
        assert len(out) <= width and re.fullmatch(r"observed (\\x1b)*", out), out
    assert cut("short", 96) == "short"


def test_lines_text_is_the_last_guard():
    assert lines_text(["ok", "a\x1b[2Jb"]) == "ok\na\\x1b[2Jb\n"


def test_scan_table_and_details(hostile):
    root, _ = hostile
    out = run("scan", str(root), "--no-cache")
    assert_safe(out)
    lines = out.splitlines()
    assert_aligned(lines, 0)
    name, cell = shown(hostile[1].name), lines[2].split()[0]  # the plan file column
    head, _, tail = cell.partition("\u2026")  # shortened in its middle, escapes whole
    assert cell == name or (name.startswith(head) and name.endswith(tail))
    assert f" P{ESCAPED} " in lines[2]  # a patient ID is never cut
    label = lines[2].split()[2]  # a label is clipped, never inside an escape
    assert label.endswith("~") and f"L{ESCAPED}".startswith(label[:-1])
    assert f"R{ESCAPED}" in out  # the ROI name, in the details
    assert "R\\x1b[31mRED" in out and "B\\x1b[31mRED" in out
    assert f"RP{shown(FILE_PART)}.dcm: 77295" in out
    assert f"error: {root / 'case'}/bad\\x1b]0;file\\x07.dcm:" in out


def test_scan_table_from_the_cache_is_shown_the_same(hostile):
    root, _ = hostile
    first = run("scan", str(root))
    assert run("scan", str(root)) == first  # the second one replays the cache


def test_table_text_escapes_rows_it_did_not_make():
    """Rows and details come from the scan cache too (written by any rtcode version):
    table_text escapes them itself, and measures the columns on what it shows."""
    row = ("a\x1b]0;t\x07.dcm", "P\u202e1", "L\n2", "77295", "3d", "high", "conformal")
    tally = Tally(files_seen=1, errors=(ReadError("e\x1b[2J.dcm", "bad \x9b1m"),))
    out = table_text([row], [["d\x1b[1m: x", "    because \u2066y"]], tally, False, load())
    assert_safe(out)
    assert_aligned(out.splitlines(), 0)
    assert "a\\x1b]0;t\\x07.dcm" in out and "P\\u202e1" in out and "L\\n2" in out
    assert "d\\x1b[1m: x" in out and "because \\u2066y" in out
    assert "error: e\\x1b[2J.dcm: bad \\x9b1m" in out


def test_inspect_table(hostile):
    _, plan = hostile
    out = run("inspect", str(plan))
    assert_safe(out)
    assert out.startswith(f"{plan.parent}/RP\\x1b]0;file\\x07.dcm (for")
    assert f"plan L{ESCAPED} (" in out and f"patient P{ESCAPED}," in out
    lines = out.splitlines()
    assert_aligned(lines, next(i for i, line in enumerate(lines) if line.startswith("#  ")))
    assert "B\\x1b[31mRED" in out
    out = run("inspect", str(plan), "--control-points")
    assert_safe(out)
    assert f"beam 1 B{ESCAPED}: control points" in out


def test_report_text(hostile):
    root, plan = hostile
    out = run("report", str(root))
    assert_safe(out)
    assert f"patient P{ESCAPED}" in out and f"plan L{ESCAPED}" in out
    assert f"file        {plan.parent}/RP\\x1b]0;file\\x07.dcm" in out
    lines = out.splitlines()
    beams = next(i for i, line in enumerate(lines) if line.strip().startswith("#  name"))
    assert_aligned([line[4:] for line in lines], beams)
    dvh = next(i for i, line in enumerate(lines) if line.strip().startswith("ROI "))
    assert_aligned([line[4:] for line in lines], dvh)
    assert f"B{ESCAPED}" in out and f"observed R{ESCAPED}, CTV" in out  # wrapped
    assert "bad\\x1b]0;file\\x07.dcm:" in out  # the error lines


def test_audit_table(hostile, tmp_path):
    root, _ = hostile
    charges = tmp_path / "charges\x1b]0;c\x07.csv"
    with charges.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "date_of_service", "cpt", "units", "modifiers", "plan", "fee"])
        w.writerow(["P" + HOSTILE, "2026-01-05", "77295", "1", "", "L" + HOSTILE, "10"])
        w.writerow(["P" + HOSTILE, "2026-01-05", "77295", "1", "", "L" + HOSTILE, "10"])
        w.writerow(["X\x1b[2J\u202e", "2026-01-05", "77295", "1", "", "Q\x9b1m", "10"])
        w.writerow(["Y\x1b]0;t\x07", "2026-01-05", "99999x", "1", "", "", ""])  # rejected
    out = run("audit", str(root), "--charges", str(charges))
    assert_safe(out)
    lines = out.splitlines()
    assert_aligned(lines, next(i for i, line in enumerate(lines) if line.startswith("severity")))
    assert f"P{ESCAPED}" in out and "X\\x1b[2J\\u202e" in out and "Q\\x9b1m" in out
    assert "Y\\x1b]0;t\\x07" in out  # the rejected row, shown back
    assert "RP\\x1b]0;file\\x07.dcm" in out and "bad\\x1b]0;file\\x07.dcm:" in out
    assert "checked from " + shown(str(charges)) + "," in out  # the summary line


def test_results_table(tmp_path):
    db = ResultsDB(tmp_path / "results.sqlite")
    try:
        db.record_instance(
            calling_ae="AE\x1b[5m",
            peer="127.0.0.1:1",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5",
            modality="RTPLAN\x1b]0;m\x07",
            sop_instance_uid="1.2.3",
            patient_id="P" + HOSTILE,
            study_instance_uid="1.2",
            stored_path=f"P/RP{FILE_PART}.dcm",
            size_bytes=1,
            sha256="0" * 64,
            pending=False,
        )
        db.record_refusal(
            calling_ae="EVIL\x1b[2J", peer="10.0.0.1:2", what="instance", reason="no \x9b1m"
        )
        coding = dict(
            stored_path=f"P/RP{FILE_PART}.dcm",
            sop_instance_uid="1.2.3",
            patient_id="P" + HOSTILE,
            plan_label="L" + HOSTILE,
            code="77295",
            label="3-D plan",
            category="3d",
            confidence="high",
            structure_set_status="linked",
            doses=1,
            date_of_service=dt.date(2026, 1, 5).isoformat(),
            policy_name="default",
            policy_version="1",
            policy_sha256="0" * 64,
            reasons=(f"2 contoured target(s): R{HOSTILE} (PTV)",),
            result={},
        )
        db.record_codings([PlanCoding(**coding)], "t")
        db.record_codings([PlanCoding(**{**coding, "code": "77307\x1b[1m"})], "u")
        # short values: raw they fit the column, escaped they widen it
        short = {"stored_path": "Q/RP.dcm", "structure_set_status": "l\x1b\x1b\x1b"}
        db.record_codings([PlanCoding(**{**coding, **short})], "v")
    finally:
        db.close()
    out = run("results", "--db", str(tmp_path / "results.sqlite"))
    assert_safe(out)
    lines = out.splitlines()
    assert_aligned(lines, 0)
    assert "P\\x1b[31mRED\\x1~" not in out  # never half an escape
    assert "P/RP\\x1b]0;file\\x07.dcm:" in out and f"R{ESCAPED}" in out
    assert "77307\\x1b[1m" in out and "RTPLAN\\x1b]0;m\\x07" in out
    assert "EVIL\\x1b[2J" in out and "no \\x9b1m" in out
    assert "l\\x1b\\x1b\\x1b" in out


def test_every_category_escaped_is_invisible_or_a_control():
    """The rule by category, checked over the whole BMP: what is escaped is a control,
    a format character, a separator of lines or a surrogate; what is not, prints."""
    for code in range(0x10000):
        ch = chr(code)
        cat = unicodedata.category(ch)
        escaped = shown(ch) != ch
        assert escaped == (cat in {"Cc", "Cf", "Cs", "Zl", "Zp"}), (hex(code), cat)


def _raw_controls(text: str) -> list[str]:
    return [ch for ch in text if ch != "\n" and shown(ch) != ch]


def test_messages_on_standard_error_are_escaped_too(tmp_path):
    # a file name, a policy file's text and an explicit non-plan all reach stderr
    notes = tmp_path / "notes\x1b]0;pwned\x07.dcm"
    notes.write_text("not a plan\n")
    inspect = CliRunner().invoke(main, ["inspect", str(notes)])
    assert inspect.exit_code == 1
    assert _raw_controls(inspect.stderr) == [] and "\\x1b]0;pwned\\x07" in inspect.stderr
    policy = tmp_path / "p\x1b[31m.toml"
    policy.write_text('[policy]\nextends = "default"\nname = "x\x1b[2J"\nversion = 1\n')
    bad = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA / "01_single_open_field"),
                                    "--policy", str(policy)])  # fmt: skip
    assert bad.exit_code == 2 and _raw_controls(bad.stderr) == []
    assert "\\x1b[31m" in bad.stderr
