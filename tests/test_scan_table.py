"""The scan table fits its width (issue 23): paths shortened in their middle below the
plans' common folder, patient IDs never cut, every reason shown, counts in agreement."""

from __future__ import annotations

import re

import pytest
from conftest import SAMPLE_DATA

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.model.facts import ReadError, Tally
from rtcode.output.render import (
    CSV_COLUMNS,
    TABLE_HEAD,
    column_widths,
    csv_row,
    related_text,
    table_details,
    table_row,
    table_text,
)
from rtcode.output.terminal import (
    ELLIPSIS,
    columns,
    common_folder,
    plural,
    relative,
    shorten_path,
    shown,
)

POLICY = load()


@pytest.fixture(scope="module")
def sample():
    return scan([str(SAMPLE_DATA)], POLICY)


def _table(result, **options):
    rows = [table_row(p) for p in result.plans]
    details = [table_details(p) for p in result.plans]
    return table_text(rows, details, result.inventory.tally(), False, result.policy, **options)


def _rows(text: str) -> list[str]:
    """The table's lines under its dashes."""
    lines = text.splitlines()
    return lines[2 : lines.index("") - 1]  # the last one names the common folder


# ------------------------------------------------------------------ paths


def _shortened(path: str, out: str) -> bool:
    """``out`` is ``path`` with parts left out, each marked: what is left is in the
    path's order, its start and its end kept."""
    pieces = out.split(ELLIPSIS)
    return (
        len(pieces) > 1
        and path.startswith(pieces[0])
        and path.endswith(pieces[-1])
        and re.search(".*".join(map(re.escape, pieces)), path) is not None
    )


@pytest.mark.parametrize("width", range(1, 60))
def test_a_shortened_path_fits_and_keeps_its_ends(width):
    for path in (
        "27_fif_borderline_outside_segment/RP.dcm",
        "/work/exports/varian/Anon001/eclipse-3d-two-fields/RP.dcm",
        "1.2.3.4/series/1.2.3.5/instances/1.2.826.0.1.3680043.8.498.1234567",
        "RTPLAN_with_a_rather_long_file_name_and_no_folder.dcm",
    ):
        out = shorten_path(path, width)
        assert len(out) <= max(width, 0), (path, out)
        if len(path) <= width:
            assert out == path
            continue
        assert _shortened(path, out), (path, out)
        name = path.rsplit("/", 1)[-1]
        if width >= len(name) + 2:  # room for the file name: it is kept whole
            assert out.endswith("/" + name) or out == name, (path, out)


def test_whole_folders_are_kept_from_the_end():
    path = "/work/exports/varian/Anon001/eclipse-3d/RP.dcm"
    assert shorten_path(path, 28) == f"/{ELLIPSIS}/Anon001/eclipse-3d/RP.dcm"
    assert shorten_path(path, 20) == f"/{ELLIPSIS}/eclipse-3d/RP.dcm"  # the root fits too
    assert shorten_path(path[1:], 20) == f"{ELLIPSIS}/eclipse-3d/RP.dcm"
    assert shorten_path("27_fif_borderline_outside_segment/RP.dcm", 22) == (
        f"27_fif_{ELLIPSIS}segment/RP.dcm"
    )


def test_a_shortened_path_never_cuts_an_escape():
    text = shown("RP\x1b]0;file\x07.dcm")
    for width in range(2, len(text)):
        out = shorten_path(text, width)
        head, _, tail = out.partition(ELLIPSIS)
        for part in (head, tail):  # each side holds whole escapes only
            assert re.fullmatch(r"(?:[^\\]|\\x[0-9a-f]{2})*", part), out


def test_common_folder_of_files_and_urls():
    assert common_folder(["sample_data/a/RP.dcm", "sample_data/b/RP.dcm"]) == "sample_data"
    assert common_folder(["sample_data/a/RP.dcm"]) == "sample_data/a"
    assert common_folder(["a/x/RP.dcm", "a/xy/RP.dcm"]) == "a"  # whole folders only
    assert common_folder(["/a/RP.dcm", "/b/RP.dcm"]) == ""  # "/" says nothing
    assert common_folder(["RP.dcm"]) == "" and common_folder([]) == ""
    assert common_folder(["http://h/x/RP", "http://g/x/RP"]) == ""  # a scheme only
    web = "http://pacs:8042/dicom-web/studies/1.2/series/{}/instances/{}"
    folder = common_folder([web.format("1.3", "1.4"), web.format("1.5", "1.6")])
    assert folder == "http://pacs:8042/dicom-web/studies/1.2/series"
    assert relative(web.format("1.3", "1.4"), folder) == "1.3/instances/1.4"
    assert relative("elsewhere/RP.dcm", folder) == "elsewhere/RP.dcm"


def test_a_dicomweb_plan_is_shown_by_the_end_of_its_instance_uid():
    web = "http://pacs:8042/dicom-web/studies/{}/series/{}/instances/{}"
    uids = ["1.2.826.0.1.3680043.8.498." + n for n in ("1008610755", "8157950388821561321")]
    paths = [web.format("1.2.3", "1.2.4", uids[0]), web.format("1.2.5", "1.2.6", uids[1])]
    folder = common_folder(paths)
    assert folder == "http://pacs:8042/dicom-web/studies"
    shown_paths = [shorten_path(relative(p, folder), 20) for p in paths]
    assert shown_paths == [ELLIPSIS + uids[0][-19:], ELLIPSIS + uids[1][-19:]]


def test_columns_from_the_terminal_or_columns_or_100(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert columns(terminal=False) == 100
    for value, expected in (("72", 72), ("0", 100), ("wide", 100), ("-5", 100)):
        monkeypatch.setenv("COLUMNS", value)
        assert columns(terminal=False) == expected
    monkeypatch.setenv("COLUMNS", "133")  # shutil.get_terminal_size lets COLUMNS decide
    assert columns(terminal=True) == 133


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_sample_table_fits_and_never_cuts_a_patient_id(sample, width):
    out = _table(sample, width=width, show_details=False)
    lines = out.splitlines()
    table = lines[: lines.index("")]
    assert max(len(line) for line in table) <= width
    assert table[-1] == "plan files under " + str(SAMPLE_DATA) + "/"
    rows = _rows(out)
    assert len(rows) == len(sample.plans)
    for row, p in zip(rows, sample.plans, strict=True):
        plan = p.linked.plan
        cells = row.split()
        assert cells[1] == plan.patient_id  # whole
        path = relative(plan.path, str(SAMPLE_DATA))
        assert cells[0] == path or _shortened(path, cells[0])
        assert cells[3] == (p.classification.code or "-")
    for line in lines[lines.index("") :]:  # the prose after it
        assert len(line) <= width or line.startswith(("error: ", "10 skipped: "))


def test_a_technique_cut_keeps_its_count(sample):
    out = _table(sample, width=80, show_details=False)
    [row] = [r for r in _rows(out) if r.split()[1] == "RTC-21"]  # 12 IMRT beams
    assert row.endswith("~ x12")


def test_the_widths_give_way_in_order():
    rows = [TABLE_HEAD, ("p" * 40, "PATIENT-ID-LONG", "L" * 10, "77295", "3d", "high", "t" * 27)]
    natural = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    assert column_widths(rows, 200) == natural
    narrow = column_widths(rows, 100)
    assert sum(narrow) + 2 * 6 <= 100
    assert narrow[1] == len("PATIENT-ID-LONG")  # the patient ID is never cut
    assert narrow[0] < natural[0]  # the path gives first
    tiny = column_widths(rows, 10)  # cannot fit: the columns at their headings, none lost
    assert tiny[1] == natural[1] and tiny[3:6] == natural[3:6]
    assert (tiny[0], tiny[2], tiny[6]) == (len("plan file"), 8, len("techniques"))


def test_details_show_every_reason_and_wrap_to_the_width(sample):
    [imrt] = [p for p in sample.plans if p.linked.plan.patient_id == "RTC-21"]
    reasons = [e.finding for e in imrt.classification.deciding_evidence()]
    assert len(reasons) > 6  # more than the table used to show
    out = table_text(
        [table_row(imrt)], [table_details(imrt)], Tally(files_seen=1), False, POLICY, width=72
    )
    text = " ".join(out.split())
    for reason in reasons:
        assert " ".join(f"because {reason}".split()) in text
    assert all(len(line) <= 72 for line in out.splitlines() if line.startswith("    "))


def test_without_details_the_table_says_how_to_see_them_and_counts_the_checks(sample):
    out = _table(sample, show_details=False)
    assert "because " not in out and "check: " not in out
    flagged = [sum(f.severity == "warning" for f in p.classification.flags) for p in sample.plans]
    hint = " ".join(out.split())
    assert (
        f"--details shows why each plan has its code, and the {sum(flagged)} checks to make"
        f" on {sum(1 for n in flagged if n)} plans" in hint
    )
    shown_details = _table(sample, show_details=True)
    assert shown_details.count("because ") > len(sample.plans)


def test_plural():
    assert [plural(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert plural(1, "structure set") == "1 structure set" and plural(3, "x", "xs!") == "3 xs!"


def test_counts_agree_with_their_numbers():
    one = Tally(
        files_seen=1,
        structure_sets=1,
        doses=1,
        images_skipped=1,
        non_dicom_skipped=1,
        errors=(ReadError("x.dcm", "bad"),),
    )
    out = table_text([], [], one, False, POLICY, width=200)
    assert (
        "1 file: 0 plans, 1 structure set, 1 dose, 1 image skipped, 1 other file skipped,"
        " 1 error\n" in out
    )
    two = Tally(files_seen=2, structure_sets=2, doses=0, errors=(ReadError("a", "b"),) * 2)
    assert "2 files: 0 plans, 2 structure sets, 0 doses, 0 images skipped," in table_text(
        [], [], two, False, POLICY, width=200
    )


# ------------------------------------------------------------------ CSV


def test_csv_gains_related_codes_date_and_policy_at_the_end(sample):
    assert CSV_COLUMNS[:13] == [
        "path", "patient_id", "plan_label", "sop_instance_uid", "code", "label", "category",
        "confidence", "treatment_ports", "techniques", "reasons", "flags", "alternatives",
    ]  # fmt: skip
    assert CSV_COLUMNS[13:] == ["related_codes", "date_of_service", "policy_name", "policy_version"]
    for p in sample.plans:
        row = dict(zip(CSV_COLUMNS, csv_row(p, POLICY), strict=True))
        billed = [(r.code, r.units) for r in p.related if r.kind == "code" and r.units]
        assert row["related_codes"].split() == [c if u == 1 else f"{c}x{u}" for c, u in billed]
        assert row["date_of_service"] == p.date_of_service.isoformat()
        assert (row["policy_name"], row["policy_version"]) == (POLICY.name, POLICY.version)
    [imrt] = [p for p in sample.plans if p.linked.plan.patient_id == "RTC-09"]
    assert related_text(imrt) == "77300x7 77338"
