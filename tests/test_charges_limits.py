"""Charges (and PTP) input is bounded (issue 21, failure 10).

A FIFO or a device given as the charges file is refused at once (it used to hang or
fill the memory), a file or stream larger than the size limit is refused before and
while reading, a file with too many lines is refused naming the first line beyond,
and many charges of one patient and date cost n log n operations, not n².
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import sys
from decimal import Decimal

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA
from test_audit import plan_result

from rtcode.audit.findings import audit
from rtcode.audit.render import to_json, to_table
from rtcode.cli import main
from rtcode.coding.policy import load
from rtcode.sources import billing as read_billing
from rtcode.sources.billing import (
    BillingFileError,
    Charge,
    PtpEdit,
    PtpFile,
    parse_charges,
    read_charges,
    read_ptp,
)

POLICY = load("default")
HEADER = "patient_id,date_of_service,cpt,units,modifiers,plan,fee\n"
ROW = "RTC-06,2026-01-05,77295,1,,FOURFIELD,10.00\n"
CASE = SAMPLE_DATA / "06_four_field_box_3d"
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs and devices")


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks."""

    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def audit_cli(charges, *more: str):
    return CliRunner().invoke(main, ["audit", str(CASE), "--charges", str(charges), *more])


# ------------------------------------------------------------ what is opened


@posix_only
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "charges.csv"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it to read would wait forever
    with deadline(20):
        with pytest.raises(BillingFileError, match=r"is a FIFO \(named pipe\), not a regular"):
            read_charges(fifo, {})
        result = audit_cli(fifo)
    assert result.exit_code == 2 and "FIFO" in result.output, result.output
    with deadline(20), pytest.raises(BillingFileError, match="FIFO"):
        read_ptp(fifo)


@posix_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_device_is_refused_before_it_is_read(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    with deadline(20), pytest.raises(BillingFileError, match="a character device"):
        read_charges(device, {})
    with deadline(20):
        result = audit_cli(device)
    assert result.exit_code == 2 and "not a regular file" in result.output


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(BillingFileError, match="is a folder, not a regular file"):
        read_charges(tmp_path, {})


@posix_only
def test_a_fifo_swapped_in_after_the_check_is_refused_too(tmp_path, monkeypatch):
    """The descriptor read is checked (fstat), not only the name (stat), and it is
    opened without blocking: a FIFO put in place between the two never blocks."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(CASE / "RP.dcm")
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if p == fifo else real_stat(p))
    with deadline(20), pytest.raises(BillingFileError, match="FIFO"):
        read_charges(fifo, {})


def test_the_error_names_the_path_escaped(tmp_path):
    missing = tmp_path / "no\x1b]0;x\x07such.csv"
    with pytest.raises(BillingFileError) as info:
        read_charges(missing, {})
    assert "\x1b" not in str(info.value) and "no\\x1b]0;x\\x07such.csv" in str(info.value)


# ------------------------------------------------------------------- sizes


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(read_billing, "MAX_BILLING_FILE_BYTES", 100)
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_text(HEADER + ROW)
    big.write_text(HEADER + ROW * 3)
    assert len(read_charges(small, {}).charges) == 1
    with pytest.raises(BillingFileError, match=r"more than the limit of 9\.5\d*e-05 MB"):
        read_charges(big, {})
    result = audit_cli(big)
    assert result.exit_code == 2 and "more than the limit" in result.output
    with pytest.raises(BillingFileError, match="more than the limit"):
        read_ptp(big)


def test_a_file_that_grows_while_it_is_read_is_stopped_at_the_limit(tmp_path, monkeypatch):
    """The size is checked while reading too: the file grew after fstat."""
    monkeypatch.setattr(read_billing, "MAX_BILLING_FILE_BYTES", 100)
    path = tmp_path / "growing.csv"
    path.write_text(HEADER + ROW)
    real_fstat = os.fstat

    def fstat_then_grow(fd):
        info = real_fstat(fd)
        with open(path, "a") as f:
            f.write(ROW * 100)
        return info

    monkeypatch.setattr(os, "fstat", fstat_then_grow)
    with pytest.raises(BillingFileError, match="larger than the limit"):
        read_charges(path, {})


class Endless(io.RawIOBase):
    """A stream that never ends (standard input fed from /dev/zero)."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"0" * len(buffer)
        self.served += len(buffer)
        return len(buffer)


def test_an_endless_stream_is_stopped_at_the_limit(monkeypatch):
    monkeypatch.setattr(read_billing, "MAX_BILLING_FILE_BYTES", 3 * 1024 * 1024)
    stream = Endless()
    with pytest.raises(BillingFileError, match="larger than the limit of 3 MB"):
        read_charges(stream, {})
    assert stream.served <= 3 * 1024 * 1024 + 1
    text = io.TextIOWrapper(io.BufferedReader(Endless()))
    with pytest.raises(BillingFileError, match="larger than the limit"):
        read_charges(text, {})  # standard input: its byte buffer is what is read

    class TextOnly(io.TextIOBase):
        def read(self, size=-1):
            return "0" * (size if size and size > 0 else 1000)

    with pytest.raises(BillingFileError, match="larger than the limit"):
        read_charges(TextOnly(), {})


def test_streams_are_read_like_files_line_ends_untouched(tmp_path):
    """Standard input (cli ``--charges -``): bytes, text with a byte buffer, or text.
    An HL7-style export ends its lines with \\r: line numbers stay those of the file."""
    rows = HEADER + ROW + ROW.replace("77295", "77300").replace("FOURFIELD", '"A\rB"')
    data = rows.replace("\n", "\r").encode()
    for source in (
        io.BytesIO(data),
        io.TextIOWrapper(io.BytesIO(data)),  # like sys.stdin: translates \r, has .buffer
        io.StringIO(data.decode(), newline=""),
    ):
        result = read_charges(source, {}, name="-")
        assert [(c.line, c.cpt) for c in result.charges] == [(2, "77295"), (3, "77300")]
        assert result.charges[1].plan == "A\rB"  # a value keeps its \r
        assert result.source == "-" and result.rejected == ()
    path = tmp_path / "hl7.csv"
    path.write_bytes(data)
    assert [c.line for c in read_charges(path, {}).charges] == [2, 3]
    latin = (HEADER + "RTC-06,2026-01-05,77295,1,,BOÎTE,\n").encode("latin-1")
    for source in (io.BytesIO(latin), io.TextIOWrapper(io.BytesIO(latin), encoding="utf-8")):
        result = read_charges(source, {})
        assert result.charges[0].plan == "BOÎTE" and "Latin-1" in result.notes[0]


def test_line_numbers_follow_the_csv_reader_not_other_line_breaks():
    """Form feed, U+2028 and the like are not line ends for the CSV reader: the line of
    a row with an unclosed quote, and the rows read again after it, stay right."""
    text = (
        HEADER
        + "P1,2026-01-05,77295,1,,A\x0cB\u2028C,\n"  # line 2
        + 'P1,2026-01-05,77301,1,,"open,\n'  # line 3: the quote is never closed
        + "P1,2026-01-05,77300,2,,,\n"  # line 4
        + "P2,2026-01-05,77306,1,,,\n"  # line 5
    )
    result = parse_charges(text, {})
    assert [(c.line, c.cpt) for c in result.charges] == [(2, "77295"), (4, "77300"), (5, "77306")]
    [rejected] = result.rejected
    assert rejected.line == 3 and rejected.text.startswith("P1,2026-01-05,77301,1,,")


# -------------------------------------------------------------------- rows


def test_lines_beyond_the_limit_are_an_error_naming_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(read_billing, "MAX_CHARGE_LINES", 5)
    assert len(parse_charges(HEADER + ROW * 5, {}).charges) == 5
    with pytest.raises(BillingFileError, match=r"line 7 is beyond the limit of 5 lines"):
        parse_charges(HEADER + ROW * 9, {})
    with pytest.raises(BillingFileError, match="line 7"):  # blank lines count: they cost too
        parse_charges(HEADER + "\n" * 9, {})
    path = tmp_path / "long.csv"
    path.write_text(HEADER + ROW * 9)
    result = audit_cli(path)
    assert result.exit_code == 2 and "line 7 is beyond the limit" in result.output


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ("77295,99999999999999999999999,,,", "units '99999999999999999999999' is more than"),
        ("77295," + "9" * 400 + ",,,", "is more than 9,999"),  # was OverflowError (float)
        ("77295,-" + "9" * 400 + ",,,", "reversals"),
        ("77295,10000,,,", "is more than 9,999"),
        ("77295,1,,,123456789012345678901234567890.00", "at most 12 digits and 4 decimals"),
        ("77295,1,,,1.000001", "at most 12 digits and 4 decimals"),
        ("77295,1,,X" + "x" * 300 + ",", "the plan 'Xxxxx"),
    ],
)
def test_values_beyond_bounds_are_rejected_rows_not_crashes(cells, reason):
    text = HEADER + ROW + "RTC-06,2026-01-05," + cells + "\n"
    result = parse_charges(text, {})
    [rejected] = result.rejected
    assert rejected.line == 3 and reason in rejected.reason
    assert len(rejected.reason) < 300  # a huge cell is quoted clipped
    audited = audit([plan_result("3d", patient="RTC-06")], result.charges, POLICY)
    assert to_json(audited) and to_table(audited)  # fees and units render


def test_the_largest_accepted_fee_and_units_render():
    text = HEADER + "P1,2026-01-05,77300,9999,,,999999999999.9999\n"
    result = parse_charges(text, {})
    assert result.charges[0].units == 9999 and result.charges[0].fee == Decimal("999999999999.9999")
    audited = audit([plan_result("3d")], result.charges, POLICY)
    assert "1,000,000,000,000.00" in to_table(audited) and to_json(audited)


def test_a_long_patient_id_is_rejected_with_its_start_quoted():
    result = parse_charges(HEADER + "P" * 5000 + ",2026-01-05,77295,1,,,\n", {})
    [rejected] = result.rejected
    assert "longer than 256 characters" in rejected.reason and "(5,000 characters)" in (
        rejected.reason
    )


# --------------------------------------------------------------- the cost


class Line(int):
    """A line number that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other):
        Line.compared += 1
        return int.__eq__(self, other)

    def __lt__(self, other):
        Line.compared += 1
        return int.__lt__(self, other)

    __hash__ = int.__hash__


def line_comparisons(n: int, fmt=to_table) -> int:
    codes = ("77295", "77300", "77306", "77301")
    rows = [
        Charge(Line(i + 2), "P1", dt.date(2026, 1, 5), codes[i % 4] if i % 3 else "77295", 1,
               (), "PLAN", Decimal("10"))
        for i in range(n)
    ]  # fmt: skip
    Line.compared = 0
    result = audit([plan_result("3d")], rows, POLICY)
    fmt(result)
    result.fees_by_severity()
    return Line.compared


@pytest.mark.parametrize("fmt", [to_table, to_json])
def test_charges_of_one_patient_and_date_cost_n_log_n_not_n_squared(fmt):
    """Counted, not timed: the comparisons of line numbers made by the audit and its
    rendering grow about linearly (x4 from 1,000 to 4,000 rows); looking the lines at
    stake up in a tuple made them grow like n² (x16; 32,000 rows took 11 s)."""
    small, large = line_comparisons(1000, fmt), line_comparisons(4000, fmt)
    assert large / small < 6, (small, large)


class Code(str):
    """A procedure code that counts the times it is hashed or compared."""

    used = 0

    def __eq__(self, other):
        Code.used += 1
        return str.__eq__(self, other)

    def __hash__(self):
        Code.used += 1
        return str.__hash__(self)


def code_operations(n: int) -> int:
    rows = [
        Charge(i + 2, "P1", dt.date(2026, 1, 5), Code(f"{10000 + i}"), 1, (), None, None)
        for i in range(n)
    ]
    edit = PtpEdit("10000", "10001", dt.date(2000, 1, 1), None, "0", None, 1, "ptp.txt")
    ptp = PtpFile("ptp.txt", (edit,), (), {("10000", "10001"): (edit,)}, 1)
    Code.used = 0
    result = audit([], rows, POLICY, ptp=ptp)
    assert [f.codes for f in result.findings if f.kind == "ncci_ptp"] == [("10000", "10001")]
    return Code.used


def test_many_codes_on_one_date_are_paired_only_where_an_edit_exists():
    """NCCI PTP: each code billed on a date was paired with every other (n² for n
    distinct codes); now only with the codes a PTP edit names."""
    small, large = code_operations(300), code_operations(1200)
    assert large / small < 6, (small, large)


def test_thirty_two_thousand_rows_of_one_patient_and_date_smoke(tmp_path):
    """A smoke check only (the counts above are the test): 32,000 rows audited and
    rendered in well under the 11 s they took."""
    import time

    path = tmp_path / "many.csv"
    path.write_text(HEADER + ROW * 32_000)
    start = time.perf_counter()
    result = audit_cli(path, "--format", "json")
    assert result.exit_code == 4, result.output[-500:]
    assert time.perf_counter() - start < 30 or sys.gettrace() is not None


# ------------------------------------------------- other charge formats (issue 20)


def test_dash_reads_standard_input_bytes(monkeypatch):
    data = (HEADER + ROW).replace("\n", "\r").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    result = read_charges("-", {})
    assert result.source == "-" and [c.line for c in result.charges] == [2]


@pytest.mark.parametrize("suffix", ["hl7", "x12", "xlsx"])
def test_the_size_limit_holds_for_every_format(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(read_billing, "MAX_BILLING_FILE_BYTES", 100)
    path = tmp_path / f"big.{suffix}"
    head = {"hl7": b"MSH|^~\\&|A\r", "x12": b"ISA*00*", "xlsx": b"PK\x03\x04"}[suffix]
    path.write_bytes(head + b"0" * 200)
    with pytest.raises(BillingFileError, match="more than the limit"):
        read_charges(path, {})


def test_x12_segments_beyond_the_line_limit_are_refused(monkeypatch):
    import rtcode.sources.billing_x12 as x12_reader

    monkeypatch.setattr(read_billing, "MAX_CHARGE_LINES", 5)
    isa = "ISA*00*" + " " * 10 + "*00*" + " " * 10 + "*ZZ*" + "S" * 15 + "*ZZ*" + "R" * 15
    isa += "*260107*0800*^*00501*000000001*0*T*:~"
    assert len(isa) == 106
    within = x12_reader.parse_x12((isa + "GS*HC~" * 5).encode())  # read, no claims in it
    assert within.charges == () and "no 837 transaction" in within.rejected[0].reason
    with pytest.raises(BillingFileError, match="line 7 is beyond the limit of 5 lines"):
        x12_reader.parse_x12((isa + "GS*HC~" * 9).encode())


def test_a_workbook_that_unpacks_beyond_the_limit_is_refused(monkeypatch, tmp_path):
    import zipfile

    import rtcode.sources.billing_xlsx as xlsx_reader

    monkeypatch.setattr(xlsx_reader, "MAX_XLSX_UNPACKED_BYTES", 10_000)
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * 100_000)
    assert path.stat().st_size < 2_000  # small on disk, large unpacked
    with pytest.raises(BillingFileError, match="unpacks to 100,000 bytes"):
        read_charges(path, {})
