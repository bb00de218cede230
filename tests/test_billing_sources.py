"""Charges as billing offices have them (issue 20, item 1): HL7 v2 DFT^P03, X12 837P and
837I, Excel, CSV with any delimiter and US dates, standard input; and the key check:
each sample source audited against sample_data/ gives the findings of the CSV."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from conftest import SAMPLE_DATA

from rtcode.audit.findings import audit
from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.sources import billing as read_billing
from rtcode.sources.billing import (
    BillingFileError,
    Charge,
    Credit,
    detect_format,
    net_credits,
    parse_charges,
    read_charges,
    read_ptp,
    sniff_delimiter,
)
from rtcode.sources.billing_hl7 import parse_hl7
from rtcode.sources.billing_x12 import parse_x12

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CHARGES = REPO / "sample_data" / "charges"
SCRIPT = REPO / "scripts" / "make_sample_charges.py"
POLICY = load("default")
COLUMNS = dict(POLICY["audit.columns"])
SOURCES = (
    "charges_planted.hl7",
    "charges_planted_837p.x12",
    "charges_planted_837i.x12",
    "charges_planted.xlsx",
    "charges_planted_us.csv",
)


def fields(charges) -> list[tuple]:
    return [(c.line, c.patient_id, c.date_of_service, c.cpt, c.units, c.modifiers) for c in charges]


def D(text: str) -> dt.date:  # noqa: N802 - a short name for dates in tables
    return dt.date.fromisoformat(text)


# ------------------------------------------------------------------ choosing


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PK\x03\x04rest", "xlsx"),
        (b"MSH|^~\\&|A", "hl7"),
        (b"\x0bMSH|^~\\&|A", "hl7"),
        (b"\r\nFHS|^~\\&|A", "hl7"),
        (b"\xef\xbb\xbfISA*00*", "x12"),
        (b"patient_id,date_of_service,cpt\n", "csv"),
        (b"MSHOP,date\n", "csv"),  # a word that starts with MSH is not a segment
        (b"\x00" * 128 + b"DICM", "csv"),  # a DICOM file: read as CSV, its header rejected
    ],
)
def test_the_format_is_chosen_by_content(head, kind):
    assert detect_format(head) == kind


def test_fmt_overrides_the_content_and_an_unknown_fmt_is_an_error(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"MSH|^~\\&|A\rPID|1||P1\rFT1|1|||20260105||CG|77300\r")
    assert read_charges(path, {}).format == "hl7"
    forced = read_charges(path, {}, fmt="csv")
    assert forced.format == "csv" and forced.charges == () and forced.rejected
    with pytest.raises(BillingFileError, match="unknown charges format 'pdf'"):
        read_charges(path, {}, fmt="pdf")


# ----------------------------------------------------------------------- CSV


HEADER = ["patient_id", "date_of_service", "cpt", "units", "modifiers", "plan", "fee"]


def csv_text(rows: list[list[str]], sep: str = ",") -> str:
    return "\n".join(sep.join(r) for r in [HEADER, *rows]) + "\n"


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_any_delimiter_the_sniffer_finds(sep):
    text = csv_text(
        [["P1", "2026-01-05", "77300", "2", "26", "A", "1,200.00" if sep != "," else ""]], sep
    )
    assert sniff_delimiter(text) == sep
    result = parse_charges(text, {})
    assert fields(result.charges) == [(2, "P1", D("2026-01-05"), "77300", 2, ("26",))]
    assert result.rejected == ()
    assert (sep != ",") == any("separated by" in n for n in result.notes)


def test_a_semicolon_file_with_commas_in_values_keeps_them():
    text = csv_text([["P1", "2026-01-05", "77300", "1", "", "Plan, left", "1,5"]], ";")
    [rejected] = parse_charges(text, {}).rejected  # "1,5" is not an amount
    assert rejected.line == 2 and "fee '1,5'" in rejected.reason
    text = csv_text([["P1", "2026-01-05", "77300", "1", "", "Plan, left", ""]], ";")
    assert parse_charges(text, {}).charges[0].plan == "Plan, left"


def test_us_dates_in_a_slash_dated_file_and_a_day_first_date_rejected_naming_the_row():
    text = csv_text(
        [
            ["P1", "01/05/2026", "77300", "1", "", "", ""],  # January 5
            ["P1", "1/6/2026", "77334", "1", "", "", ""],
            ["P1", "2026-01-07", "77301", "1", "", "", ""],  # ISO is always read
            ["P1", "20260108", "77338", "1", "", "", ""],
            ["P1", "25/01/2026", "77295", "1", "", "", ""],  # DD/MM: not a US date
            ["P1", "02/30/2026", "77306", "1", "", "", ""],  # no such day
        ]
    )
    result = parse_charges(text, {})
    assert [(c.line, c.date_of_service) for c in result.charges] == [
        (2, D("2026-01-05")),
        (3, D("2026-01-06")),
        (4, D("2026-01-07")),
        (5, D("2026-01-08")),
    ]
    first, second = result.rejected
    assert first.line == 6 and "'25/01/2026' is not a US date (MM/DD/YYYY)" in first.reason
    assert "%d/%m/%Y" in first.reason
    assert second.line == 7 and "'02/30/2026' is not a date (MM/DD/YYYY)" in second.reason


def test_a_slashed_date_in_an_iso_file_is_ambiguous_and_rejected():
    text = csv_text(
        [
            ["P1", "2026-01-05", "77300", "1", "", "", ""],
            ["P1", "01/05/2026", "77334", "1", "", "", ""],
        ]
    )
    result = parse_charges(text, {})
    assert [c.line for c in result.charges] == [2]
    [rejected] = result.rejected
    assert rejected.line == 3
    assert rejected.reason == "date of service '01/05/2026' is not an ISO date (YYYY-MM-DD)"


def test_a_date_format_reads_other_dates():
    text = csv_text(
        [
            ["P1", "05.01.2026", "77300", "1", "", "", ""],
            ["P1", "31/01/2026", "77334", "1", "", "", ""],
        ]
    )
    result = parse_charges(text, {}, date_format="%d.%m.%Y")
    assert [c.date_of_service for c in result.charges] == [D("2026-01-05")]
    assert "matches neither the date format '%d.%m.%Y'" in result.rejected[0].reason
    result = parse_charges(text.replace("05.01.2026", "05/01/2026"), {}, date_format="%d/%m/%Y")
    assert [c.date_of_service for c in result.charges] == [D("2026-01-05"), D("2026-01-31")]


# ---------------------------------------------------------------------- Excel


def workbook(rows: list[list[object]], *, title: str = "Sheet", extra: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    if extra:
        book.create_sheet(extra).append(["patient_id", "date_of_service", "cpt"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_excel_rows_real_dates_numbers_and_row_numbers(tmp_path):
    data = workbook(
        [
            [],
            ["Patient", "DOS", "Code", "Qty", "Mods", "Plan", "Amount"],
            ["P1", dt.datetime(2026, 1, 5), 77300, 2.0, "26 59", "BOX", 240.5],
            [12345, "2026-01-06", "77334", 1, None, None, None],
            ["P2", "next week", 77301, 1, None, None, None],
        ]
    )
    path = tmp_path / "charges.xlsx"
    path.write_bytes(data)
    columns = {
        "patient_id": "Patient",
        "date_of_service": "DOS",
        "cpt": "Code",
        "units": "Qty",
        "modifiers": "Mods",
        "plan": "Plan",
        "fee": "Amount",
    }
    result = read_charges(path, columns)
    assert result.format == "xlsx"
    assert fields(result.charges) == [
        (3, "P1", D("2026-01-05"), "77300", 2, ("26", "59")),
        (4, "12345", D("2026-01-06"), "77334", 1, ()),
    ]
    assert result.charges[0].fee == Decimal("240.5") and result.charges[0].plan == "BOX"
    [rejected] = result.rejected
    assert rejected.line == 5 and "'next week'" in rejected.reason
    assert result.columns["cpt"] == "Code"


def test_excel_sheet_by_name_and_errors(tmp_path):
    data = workbook(
        [["patient_id", "date_of_service", "cpt"], ["P1", dt.date(2026, 1, 5), 77300]],
        title="Summary",
        extra="Detail",
    )
    path = tmp_path / "book.xlsx"
    path.write_bytes(data)
    assert [c.cpt for c in read_charges(path, {}).charges] == ["77300"]
    detail = read_charges(path, {}, sheet="Detail")
    assert detail.charges == () and detail.rejected == ()  # a header and no rows
    with pytest.raises(BillingFileError, match="has no sheet 'Missing'; its sheets: 'Summary'"):
        read_charges(path, {}, sheet="Missing")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BillingFileError, match="not an Excel workbook"):
        read_charges(broken, {})


# ------------------------------------------------------------------------ HL7


MSH = "MSH|^~\\&|RV|RO|BILL|HOSP|20260105||DFT^P03|{n}|P|2.5"


def ft1(
    n: int,
    date: str = "20260105",
    kind: str = "CG",
    code7: str = "",
    units: str = "1",
    fee: str = "",
    code25: str = "77300",
    mods: str = "",
) -> str:
    cells = ["FT1", str(n), "", "", date, "", kind, code7, "", "", units, fee]
    cells += [""] * 13 + [code25, mods]
    return "|".join(cells)


def message(n: int, patient: str, *segments: str) -> str:
    return "\r".join([MSH.format(n=n), f"PID|1||{patient}^^^H^MR||DOE^J", *segments]) + "\r"


def test_hl7_fields():
    text = message(
        1,
        "RTC-01",
        ft1(1, "202601051030", code25="77301^^C4", units="1", fee="900.00^USD", mods="26~59"),
        ft1(2, code25="", code7="77300^charge master", units="3", mods="GC^XS"),
        ft1(3, units="", code25="77334", mods="26^professional^CPT"),
    )
    result = parse_hl7(text.encode())
    assert fields(result.charges) == [
        (3, "RTC-01", D("2026-01-05"), "77301", 1, ("26", "59")),
        (4, "RTC-01", D("2026-01-05"), "77300", 3, ("GC", "XS")),
        (5, "RTC-01", D("2026-01-05"), "77334", 1, ("26",)),
    ]
    assert result.charges[0].fee == Decimal("900.00") and result.rejected == ()
    assert result.format == "hl7" and "read 1 HL7 message(s)" in result.notes[0]


def test_hl7_escapes_are_read_with_the_message_encoding_characters():
    text = "MSH#^~\\&#A\rPID#1##RTC\\F\\7^^^H\r" + ft1(1).replace("|", "#") + "\r"
    [charge] = parse_hl7(text.encode()).charges
    assert charge.patient_id == "RTC#7" and charge.cpt == "77300"


def test_hl7_credits_and_reversals_net_against_charges():
    text = message(
        1,
        "P1",
        ft1(1, code25="77300", units="3", fee="180.00"),
        ft1(2, code25="77300", kind="CD", units="1", fee="-60.00"),  # credit: 2 left
        ft1(3, code25="77301", mods="26", fee="900"),
        ft1(4, code25="77301", kind="AJ", mods="26", fee="-900"),  # reversal: none left
        ft1(5, code25="77334", units="2"),
        ft1(6, code25="77334", units="-2"),  # a negative quantity undoes too
    ) + message(2, "P2", ft1(1, code25="77300", kind="CD"))  # nothing to net against
    result = parse_hl7(text.encode())
    assert fields(result.charges) == [(3, "P1", D("2026-01-05"), "77300", 2, ())]
    assert result.charges[0].fee == Decimal("120.00")  # in proportion
    [unmatched] = result.rejected
    assert unmatched.line == 11 and "no charge of that patient, date and code" in unmatched.reason
    assert any("2 charge(s) fully reversed, 1 reduced" in n for n in result.notes)


def test_hl7_invalid_lines_are_rejected_with_their_line_and_the_rest_is_read():
    text = (
        "FT1|0|||20260105||CG|||||||||||||||||||77300\r"  # line 1: before any MSH
        + message(
            1,
            "P1",
            ft1(1, date="2026-01-05"),  # line 4
            ft1(2, kind="PY"),  # line 5
            ft1(3, code25="", code7=""),  # line 6
            ft1(4, code25="7730X"),  # line 7
            ft1(5, units="two"),  # line 8
            ft1(6),  # line 9: good
        )
        + "MSH\r"  # line 10: a message that cannot be parsed
        + "FT1|1|||20260105||CG|||||||||||||||||||77300\r"  # line 11: in it
        + message(3, "", ft1(1))  # line 14: no patient ID
        + MSH.format(n=4)
        + "\r"
        + ft1(1)  # line 16: no PID in its message
        + "\r"
        + message(5, "P9", ft1(1, code25="77334"))  # line 19: good
    )
    result = parse_hl7(text.encode())
    assert [(c.line, c.patient_id, c.cpt) for c in result.charges] == [
        (9, "P1", "77300"),
        (19, "P9", "77334"),
    ]
    reasons = {r.line: r.reason for r in result.rejected}
    assert sorted(reasons) == [1, 4, 5, 6, 7, 8, 10, 14, 16]
    assert "before any MSH" in reasons[1]
    assert "(FT1-4) '2026-01-05' is not an HL7 date" in reasons[4]
    assert "transaction type (FT1-6) 'PY'" in reasons[5]
    assert "no procedure code" in reasons[6]
    assert "unknown code '7730X'" in reasons[7]
    assert "units 'two'" in reasons[8]
    assert "cannot be parsed" in reasons[10] and "1 FT1 segment(s) are not read" in reasons[10]
    assert reasons[14] == "missing patient ID"
    assert "no PID segment" in reasons[16]


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("mllp", [True, False])
def test_hl7_framing_and_segment_ends_give_the_same_charges(end, mllp):
    messages = [
        message(1, "P1", ft1(1), ft1(2, code25="77334", units="2")),
        message(2, "P2", ft1(1, code25="77301")),
    ]
    parts = []
    for m in messages:
        body = m.replace("\r", end)
        parts.append(f"\x0b{body}\x1c\r" if mllp else body)
    data = "".join(parts).encode()
    result = read_charges(io.BytesIO(data), {})
    assert result.format == "hl7" and result.rejected == ()
    got = [(c.patient_id, c.cpt, c.units) for c in result.charges]
    assert got == [("P1", "77300", 1), ("P1", "77334", 2), ("P2", "77301", 1)]
    if not mllp:  # line numbers are the file's lines
        assert [c.line for c in result.charges] == [3, 4, 7]


def test_hl7_from_standard_input_as_bytes(monkeypatch):
    data = message(1, "P1", ft1(1)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x0b" + data + b"\x1c\r")))
    result = read_charges("-", {})
    assert result.source == "-" and [c.cpt for c in result.charges] == ["77300"]
    assert [c.line for c in result.charges] == [3]  # \r line ends were not translated


def test_hl7_lines_beyond_the_limit_are_refused(monkeypatch):
    monkeypatch.setattr(read_billing, "MAX_CHARGE_LINES", 5)
    assert len(parse_hl7(message(1, "P1", ft1(1), ft1(2)).encode()).charges) == 2
    with pytest.raises(BillingFileError, match="line 7 is beyond the limit of 5 lines"):
        parse_hl7(message(1, "P1", *[ft1(n) for n in range(6)]).encode())


# ------------------------------------------------------------------------ X12


ISA = (
    "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *260107*0800*^*00501"
    "*000000001*0*T*:~"
)


def x12(*segments: str, kind: str = "005010X222A1") -> str:
    body = [f"GS*HC*S*R*20260107*0800*1*X*{kind}", f"ST*837*0001*{kind}", *segments]
    return ISA + "\n" + "~\n".join([*body, "SE*1*0001", "GE*1*1", "IEA*1*000000001"]) + "~\n"


def subscriber(member: str) -> list[str]:
    return ["HL*2*1*22*0", "SBR*P*18*******MC", f"NM1*IL*1*DOE*J****MI*{member}"]


def test_837p_fields_patient_precedence_and_dates():
    text = x12(
        "HL*1**20*1",
        "NM1*85*2*CLINIC*****XX*1234567893",
        *subscriber("SUB1"),
        "CLM*C1*1000***11:B:1*Y*A*Y*Y",  # segment 9
        "REF*EA*MRN-1",
        "DTP*472*D8*20260105",
        "LX*1",
        "SV1*HC:77301:26:59*900*UN*1***1",  # segment 13: the claim's date
        "LX*2",
        "SV1*HC:77300*120*UN*2***1",  # segment 15
        "DTP*472*D8*20260106",  # the line's own date
        "HL*3*1*22*1",
        "SBR*P*01*******MC",
        "NM1*IL*1*DOE*PARENT****MI*SUB2",
        "HL*4*3*23*0",
        "PAT*19",
        "NM1*QC*1*DOE*CHILD****MI*CHILD-2",
        "CLM*C2*95***11:B:1*Y*A*Y*Y",
        "LX*1",
        "SV1*HC:77334*95*UN*1***1",  # segment 25: the patient's member ID
        "DTP*472*RD8*20260107-20260108",
        *[s.replace("HL*2", "HL*5") for s in subscriber("SUB3")],
        "CLM*C3*95***11:B:1*Y*A*Y*Y",
        "LX*1",
        "SV1*HC:77334*95*UN*1***1",  # segment 32: the subscriber's member ID
        "DTP*472*D8*20260109",
    )
    result = parse_x12(text.encode())
    assert result.rejected == () and result.format == "x12"
    assert fields(result.charges) == [
        (13, "MRN-1", D("2026-01-05"), "77301", 1, ("26", "59")),
        (15, "MRN-1", D("2026-01-06"), "77300", 2, ()),
        (25, "CHILD-2", D("2026-01-07"), "77334", 1, ()),
        (32, "SUB3", D("2026-01-09"), "77334", 1, ()),
    ]
    assert result.charges[0].fee == Decimal("900") and "837P" in result.notes[0]


def test_837i_service_lines_and_the_statement_period():
    text = x12(
        "HL*1**20*1",
        *subscriber("SUB1"),
        "CLM*C1*1020***13:A:1*Y*A*Y*Y",
        "DTP*434*RD8*20260105-20260110",
        "REF*EA*MRN-1",
        "LX*1",
        "SV2*0333*HC:77301:GC*900*UN*1",
        "DTP*472*D8*20260106",
        "LX*2",
        "SV2*0333*HC:77300*120*UN*2",  # no line date: the statement period's start
        "LX*3",
        "SV2*0250**45*UN*1",  # a revenue-code-only line: no HC code
        kind="005010X223A2",
    )
    result = parse_x12(text.encode())
    assert [(c.cpt, c.units, c.modifiers, c.date_of_service) for c in result.charges] == [
        ("77301", 1, ("GC",), D("2026-01-06")),
        ("77300", 2, (), D("2026-01-05")),
    ]
    [rejected] = result.rejected
    assert "procedure qualifier '' is not HC" in rejected.reason and "837I" in result.notes[0]


def test_837_void_and_replacement_claims_net_out():
    lines = ["LX*1", "SV1*HC:77300*240*UN*4***1", "DTP*472*D8*20260105"]
    claim = ["REF*EA*MRN-1", *lines]
    text = x12(
        "HL*1**20*1",
        *subscriber("SUB1"),
        "CLM*A*240***11:B:1*Y*A*Y*Y",
        *claim,
        "CLM*A*240***11:B:8*Y*A*Y*Y",  # void of claim A
        *claim,
        "CLM*B*300***11:B:1*Y*A*Y*Y",
        "REF*EA*MRN-1",
        "LX*1",
        "SV1*HC:77334*300*UN*5***1",
        "DTP*472*D8*20260105",
        "CLM*B*240***11:B:7*Y*A*Y*Y",  # replacement of claim B: 4 units
        "REF*EA*MRN-1",
        "LX*1",
        "SV1*HC:77334*240*UN*4***1",
        "DTP*472*D8*20260105",
    )
    result = parse_x12(text.encode())
    assert [(c.cpt, c.units, c.line) for c in result.charges] == [("77334", 4, 26)]
    assert result.rejected == ()
    assert any("2 charge(s) fully reversed" in n for n in result.notes)


def test_x12_separators_come_from_the_isa():
    text = x12(
        "HL*1**20*1",
        *subscriber("SUB1"),
        "CLM*C1*120***11:B:1*Y*A*Y*Y",
        "LX*1",
        "SV1*HC:77300:26*120*UN*1***1",
        "DTP*472*D8*20260105",
    )
    other = text.replace("*", "|").replace(":", ">").replace("~\n", "\n")
    assert other[105] == "\n" and other[104] == ">"
    result = read_charges(io.BytesIO(other.encode()), {})
    assert [(c.patient_id, c.cpt, c.modifiers) for c in result.charges] == [
        ("SUB1", "77300", ("26",))
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ISA*00*short~", "no 106-character ISA segment"),
        ("ISA" + "*" * 101 + "**", "separators cannot be read"),
    ],
)
def test_x12_without_a_readable_isa_is_one_rejected_line(text, reason):
    result = parse_x12(text.encode())
    [rejected] = result.rejected
    assert rejected.line == 1 and reason in rejected.reason and result.charges == ()


def test_an_interchange_without_an_837_is_one_rejected_line():
    text = x12("BPR*I*100*C*ACH").replace("ST*837*", "ST*835*")
    result = parse_x12(text.encode())
    assert result.charges == ()
    assert [(r.line, r.reason) for r in result.rejected] == [
        (1, "no 837 transaction set (ST*837) in the interchange: no claims")
    ]


def test_x12_bad_lines_are_rejected_and_the_rest_read():
    text = x12(
        "HL*1**20*1",
        "HL*2*1*22*0",
        "SBR*P*18*******MC",
        "NM1*IL*1*DOE*J****MI*",  # no member ID
        "CLM*C1*120***11:B:1*Y*A*Y*Y",
        "LX*1",
        "SV1*HC:77300*120*UN*1***1",  # segment 10: no patient
        "DTP*472*D8*20260105",
        *[s.replace("HL*2", "HL*3") for s in subscriber("SUB2")],
        "CLM*C2*120***11:B:1*Y*A*Y*Y",
        "LX*1",
        "SV1*HC:77300*120*UN*1***1",  # segment 17: no date anywhere
        "LX*2",
        "SV1*HC:77300*120*UN*0***1",  # segment 19: zero units
        "DTP*472*D8*20260105",
        "LX*3",
        "SV1*HC:77334*95*UN*1***1",  # segment 22: good
        "DTP*472*D8*20260105",
    )
    result = parse_x12(text.encode())
    assert [(c.line, c.cpt) for c in result.charges] == [(22, "77334")]
    reasons = {r.line: r.reason for r in result.rejected}
    assert sorted(reasons) == [10, 17, 19]
    assert "no patient" in reasons[10]
    assert "date of service '' is not a CCYYMMDD date" in reasons[17]
    assert "zero-unit" in reasons[19]


# --------------------------------------------------------------------- netting


def charge(line: int, cpt: str, units: int, mods: tuple[str, ...] = (), fee: str | None = None):
    return Charge(
        line, "P1", D("2026-01-05"), cpt, units, mods, None, Decimal(fee) if fee else None
    )


def test_credits_take_units_from_the_same_modifiers_first_and_the_latest_line_first():
    charges = [
        charge(1, "77300", 2, ("26",), "120.00"),
        charge(2, "77300", 2, (), "120.00"),
        charge(3, "77300", 1, (), "60.00"),
    ]
    netted, rejected, notes = net_credits(charges, [Credit(charge(4, "77300", 2, ()), "")])
    assert [(c.line, c.units, c.fee) for c in netted] == [
        (1, 2, Decimal("120.00")),
        (2, 1, Decimal("60.00")),
    ]
    assert rejected == [] and "1 charge(s) fully reversed, 1 reduced" in notes[0]
    netted, rejected, _ = net_credits(charges, [Credit(charge(5, "77300", 6, ("26",)), "x")])
    assert netted == [] and rejected[0].line == 5 and "credit of 1 unit(s)" in rejected[0].reason
    assert net_credits(charges, []) == (charges, [], [])


# ------------------------------------------------------------- the sample files


@pytest.fixture(scope="module")
def sample_scan():
    return scan([str(SAMPLE_DATA)], POLICY, None)


@pytest.fixture(scope="module")
def ptp():
    return read_ptp(SAMPLE_DATA / "ptp_synthetic.txt")


def findings(plans, charges, ptp) -> Counter:
    result = audit(plans, charges, POLICY, ptp=ptp)
    return Counter((f.kind, f.codes, f.patient_id, f.severity) for f in result.findings)


def billed(charges) -> Counter:
    return Counter((c.patient_id, c.date_of_service, c.cpt, c.units, c.modifiers) for c in charges)


@pytest.mark.parametrize("name", SOURCES)
def test_each_sample_source_gives_the_findings_of_the_csv(name, sample_scan, ptp):
    """THE check of issue 20: the same charges in another format, audited against
    sample_data/, give the same findings (kind, codes, patient, severity)."""
    csv_charges = read_charges(SAMPLE_DATA / "charges_planted.csv", COLUMNS)
    other = read_charges(SAMPLE_CHARGES / name, COLUMNS)
    assert other.format == name.rsplit(".", 1)[1].replace("us.csv", "csv")
    assert billed(other.charges) == billed(csv_charges.charges)
    expected = findings(sample_scan.plans, csv_charges.charges, ptp)
    assert sum(expected.values()) >= 10  # the planted file plants many findings
    assert findings(sample_scan.plans, other.charges, ptp) == expected
    assert len(other.rejected) == len(csv_charges.rejected) == 3  # the planted bad rows


def test_the_reversal_in_the_samples_is_what_keeps_the_findings(sample_scan, ptp):
    """Without its CD message the HL7 sample bills a second isodose plan for RTC-01:
    the netting is what makes the findings equal, not an accident of the file."""
    data = (SAMPLE_CHARGES / "charges_planted.hl7").read_bytes()
    messages = data.split(b"\x1c\r")
    kept = b"\x1c\r".join(m for m in messages if b"|CD|" not in m)
    assert len(kept) < len(data)
    result = parse_hl7(kept, "no-reversal.hl7")
    assert any(c.patient_id == "RTC-01" and c.cpt == "77307" for c in result.charges)
    csv_charges = read_charges(SAMPLE_DATA / "charges_planted.csv", COLUMNS)
    assert findings(sample_scan.plans, result.charges, ptp) != findings(
        sample_scan.plans, csv_charges.charges, ptp
    )


def load_script():
    spec = importlib.util.spec_from_file_location("make_sample_charges", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_script_writes_the_committed_sample_charges_byte_for_byte(tmp_path):
    written = load_script().write_sample_charges(tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in SAMPLE_CHARGES.iterdir())
    different = [
        n for n in names if (tmp_path / n).read_bytes() != (SAMPLE_CHARGES / n).read_bytes()
    ]
    assert different == [], f"run scripts/make_sample_charges.py; differing: {different}"
