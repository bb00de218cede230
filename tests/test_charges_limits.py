"""Charges (and PTP) input is bounded (issue 21, failure 10).

A FIFO or a device given as the charges file is refused at once (it used to hang or
fill the memory), a file or stream larger than the size limit is refused before and
while reading, a file with too many lines is refused naming the first line beyond,
and many charges of one patient and date cost n log n operations, not n².
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
from decimal import Decimal

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA
from test_audit import plan_result

from rtcode.audit import audit
from rtcode.cli import main
from rtcode.policy import load
from rtcode.read_billing import (
    Charge,
    PtpEdit,
    PtpFile,
)
from rtcode.render_audit import to_json, to_table

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
