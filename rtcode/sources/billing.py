"""Reading billing files: charges (CSV, Excel, HL7 v2 DFT^P03, X12 837) and a CMS NCCI
procedure-to-procedure edit file.

Everything is parsed as data only: nothing in a file is evaluated. A row that cannot
be used is rejected with its line number and a reason in plain words, and every
other row is kept, so a malformed file never stops an audit. ``read_charges`` picks
the format by content (or ``fmt``): ``PK`` (a zip) is Excel, ``MSH``/``FHS``/``BHS``
(after MLLP framing bytes) is HL7, ``ISA`` is X12, anything else CSV; the HL7, X12
and Excel readers live in ``billing_hl7``, ``billing_x12`` and ``billing_xlsx``.
Credits and reversals (HL7, X12) are netted against the charges they undo
(``net_credits``): a pair that nets to zero leaves no charge behind.

Dates of service: ISO (YYYY-MM-DD) and YYYYMMDD are always read. A date with slashes
(01/05/2026) cannot be told from DD/MM by its text: the file's first date decides. In a
file whose first date has slashes they are read as US dates, MM/DD/YYYY (a first field
above 12 is rejected, naming the row); in a file whose first date is ISO a slashed
date is rejected as not ISO. ``date_format`` (strptime) is tried first, for any other
form (e.g. ``%d/%m/%Y``).

The files come from other systems, so reading them is bounded: a path is opened
without blocking and refused unless it is a regular file (a FIFO would hang the
audit, ``/dev/zero`` would fill the memory); a file or stream larger than
``MAX_BILLING_FILE_BYTES`` is refused, checked before reading and while reading (a
file that grows); a charges file with more than ``MAX_CHARGE_LINES`` lines (rows,
segments) after the header is refused, naming the first line beyond. Both limits are
module constants, not policy settings. Files are read as bytes: line ends (an HL7
export's ``\\r``) reach the readers as they are; ``-`` is standard input.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import os
import re
import stat
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Union

from rtcode.coding.policy import (
    AUDIT_CHARGE_FIELDS as FIELDS,  # the fields of a charge (policy [audit] columns)
)
from rtcode.model.errors import RtcodeError
from rtcode.output.terminal import shown

# Limits of what is read (module constants: the policy has no setting for them).
MAX_BILLING_FILE_BYTES = 256 * 1024 * 1024  # a charges or PTP file, or standard input
MAX_CHARGE_LINES = 250_000  # lines of a charges file after the header line
_CHUNK = 1024 * 1024

# A charges or PTP file: a path, or an open stream (standard input) of bytes or text.
Source = Union[str, "os.PathLike[str]", IO[bytes], IO[str]]

REQUIRED = ("patient_id", "date_of_service", "cpt")

# The charges formats read_charges knows (``fmt``; None: chosen by content).
CHARGE_FORMATS = ("csv", "xlsx", "hl7", "x12")
_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024

# CPT: five digits, or four digits and F/T/U (category II/III codes); HCPCS level II:
# a letter and four digits.
_CODE = re.compile(r"^(\d{4}[0-9FTU]|[A-Z]\d{4})$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ][0-9:.+\-Z]*)?$")
_BASIC = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T[0-9:.+\-Z]*)?$")
_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_MAX_SHOWN = 120  # characters of a rejected row shown back to the reader
_MAX_QUOTED = 60  # characters of a cell quoted in a reason
_MAX_COLUMNS_SHOWN = 40  # header cells listed when a column is missing
MAX_VALUE_CHARS = 256  # a patient ID or plan kept from a row (DICOM: 64 at most)
MAX_UNITS = 9999


class BillingFileError(RtcodeError, OSError):
    """A charges or PTP file cannot be read at all: it cannot be opened, is not a regular
    file, or is beyond a limit (the message says which file and why)."""


@dataclass(frozen=True)
class Charge:
    """One accepted row of the charges file."""

    line: int  # line of the file where the row starts (the header is line 1)
    patient_id: str
    date_of_service: dt.date
    cpt: str
    units: int
    modifiers: tuple[str, ...]
    plan: str | None  # plan label or SOP Instance UID, when the file names one
    fee: Decimal | None  # amount billed on the row, when the file has a fee column


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str
    text: str  # the row as read (clipped), so the reader can find it
    # the row's patient ID when it could be read (so a --patient filter can keep or
    # drop the row); None when it could not
    patient_id: str | None = None


@dataclass(frozen=True)
class Charges:
    source: str
    charges: tuple[Charge, ...]
    rejected: tuple[RejectedRow, ...]
    columns: Mapping[str, str | None]  # field -> column header found (None: absent)
    notes: tuple[str, ...] = ()
    format: str = "csv"  # one of CHARGE_FORMATS: how the source was read


@dataclass(frozen=True)
class PtpEdit:
    """One NCCI PTP edit: column 2 is not paid with column 1 on one date of service."""

    column1: str
    column2: str
    effective: dt.date
    deletion: dt.date | None  # None: not deleted ("*" in the CMS file)
    modifier_indicator: str  # "0" not allowed, "1" allowed, "9" not applicable
    rationale: str | None
    line: int
    source: str = ""  # the file's name, cited as the rule source


@dataclass(frozen=True)
class PtpFile:
    name: str  # the file name(s), cited as the rule source
    edits: tuple[PtpEdit, ...]  # the edits kept (those about the codes asked for)
    rejected: tuple[RejectedRow, ...] = ()
    pairs: Mapping[tuple[str, str], tuple[PtpEdit, ...]] = field(default_factory=dict)
    edits_read: int = 0  # every edit read, kept or not


# ----------------------------------------------------------------------- helpers


def _decode(data: bytes | bytearray) -> tuple[str, list[str]]:
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return data.decode("latin-1"), ["the file is not UTF-8; it was read as Latin-1"]


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _read_limited(stream: IO[bytes], what: str, shown_name: str) -> bytearray:
    """At most ``MAX_BILLING_FILE_BYTES`` bytes of a stream; more is an error, found
    after reading one byte past the limit (a stream that never ends stops there)."""
    limit = MAX_BILLING_FILE_BYTES
    data = bytearray()
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(data)))
        if not chunk:
            return data
        if isinstance(chunk, str):
            raise TypeError("a text stream reached the bytes reader")
        data += chunk
        if len(data) > limit:
            raise BillingFileError(
                f"the {what} {shown_name} is larger than the limit of {_mb(limit)};"
                " split it into smaller files"
            )


def _read_text_limited(stream: IO[str], what: str, shown_name: str) -> str:
    """A text stream without a byte buffer, limited like ``_read_limited`` (characters)."""
    limit = MAX_BILLING_FILE_BYTES
    parts: list[str] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return "".join(parts)
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BillingFileError(
                f"the {what} {shown_name} is larger than the limit of {_mb(limit)};"
                " split it into smaller files"
            )


def _not_regular(what: str, name: str, mode: int) -> BillingFileError:
    stdin = " (or - for standard input)" if what == "charges file" else ""
    return BillingFileError(
        f"the {what} {name} is {_file_kind(mode)}, not a regular file; give a file{stdin}"
    )


def _read_path(path: str | os.PathLike[str], what: str) -> bytearray:
    """A regular file's bytes. A FIFO, device, folder or socket is refused before it
    is read: it is opened without blocking (a FIFO with no writer would wait forever)
    and checked with fstat on the descriptor that is read, so a file swapped after the
    first check is caught too."""
    name = shown(os.fspath(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        mode = os.stat(path).st_mode
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0)) if stat.S_ISREG(mode) else -1
    except OSError as exc:
        raise BillingFileError(f"cannot read the {what} {name}: {exc.strerror or exc}") from None
    if fd < 0:  # refused before it is even opened
        raise _not_regular(what, name, mode)
    with os.fdopen(fd, "rb", buffering=0) as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(what, name, info.st_mode)
        if info.st_size > MAX_BILLING_FILE_BYTES:
            raise BillingFileError(
                f"the {what} {name} has {_mb(info.st_size)}, more than the limit of"
                f" {_mb(MAX_BILLING_FILE_BYTES)}; split it into smaller files"
            )
        try:
            return _read_limited(stream, what, name)
        except BillingFileError:
            raise
        except OSError as exc:
            raise BillingFileError(
                f"cannot read the {what} {name}: {exc.strerror or exc}"
            ) from None


def _read_raw(source: Source, what: str, name: str | None) -> tuple[bytes | str, str]:
    """(content, name) of a path, ``-`` (standard input) or an open stream: bytes, or
    text from a text stream that has no byte buffer."""
    if isinstance(source, str) and source == "-":
        source, name = sys.stdin, name or "-"
    if isinstance(source, (str, os.PathLike)):
        return bytes(_read_path(source, what)), name or os.fspath(source)
    stream_name = getattr(source, "name", None)
    name = name or (stream_name if isinstance(stream_name, str) else "<stdin>")
    raw = getattr(source, "buffer", None)  # sys.stdin: read its bytes, line ends untouched
    try:
        if raw is not None or isinstance(source, (io.RawIOBase, io.BufferedIOBase)):
            return bytes(_read_limited(raw or source, what, shown(name))), name  # type: ignore[arg-type]  # a byte stream
        first = source.read(0)
        if isinstance(first, bytes):
            return bytes(_read_limited(source, what, shown(name))), name  # type: ignore[arg-type]  # read(0) gave bytes
        return _read_text_limited(source, what, shown(name)), name  # type: ignore[arg-type]  # read(0) gave text
    except BillingFileError:
        raise
    except OSError as exc:
        raise BillingFileError(
            f"cannot read the {what} {shown(name)}: {exc.strerror or exc}"
        ) from None


def _read_source(source: Source, what: str, name: str | None) -> tuple[str, list[str], str]:
    """(text, notes, name) of a path or an open stream."""
    content, name = _read_raw(source, what, name)
    if isinstance(content, str):
        return content, [], name
    text, notes = _decode(content)
    return text, notes, name


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` as the csv module reads them (``\\n``, ``\\r\\n`` or
    ``\\r`` ends a line, and is kept), one at a time: no copy of the whole text (an
    ``io.StringIO`` of it would take four bytes a character)."""
    return (m.group() for m in _LINE.finditer(text))


def _rows(
    lines: Iterable[str], delimiter: str, offset: int = 0
) -> Iterator[tuple[int, int, list[str] | None, str | None, list[str]]]:
    """(first line, last line, cells, error, the record's lines) per record, lines
    counted from ``offset`` + 1; a line the csv module cannot read comes back with its
    error instead of stopping. The record's own lines are kept with it (a record over
    several lines may have to be read again), not the whole file's."""
    taken: list[str] = []

    def feed() -> Iterator[str]:
        for line in lines:
            taken.append(line)
            yield line

    reader = csv.reader(feed(), delimiter=delimiter, strict=False)
    previous = offset
    while True:
        taken.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = previous + 1
            previous = max(previous + len(taken), start)
            error = f"the CSV reader could not read it ({exc})"
            yield start, previous, None, error, list(taken)
            continue
        start = previous + 1
        previous += len(taken)
        yield start, previous, cells, None, list(taken)


def _q(text: str) -> str:
    """A value quoted in a reason, clipped: a reason never carries a whole huge cell."""
    if len(text) <= _MAX_QUOTED:
        return repr(text)
    return repr(text[:_MAX_QUOTED]) + f"... ({len(text):,} characters)"


def _shown(cells: list[str], delimiter: str = ",") -> str:
    text = delimiter.join(cells)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def parse_date(text: str) -> dt.date | None:
    """An ISO date (YYYY-MM-DD, a time after it is ignored) or YYYYMMDD; None otherwise."""
    m = _ISO.match(text) or _BASIC.match(text)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


class DateReader:
    """Dates of service of one file (see the module docstring): ISO and YYYYMMDD always,
    slashes as US MM/DD/YYYY when the file's first date has slashes, ``date_format``
    (strptime) first when given. Returns the date or the reason it is rejected."""

    def __init__(self, date_format: str | None = None) -> None:
        self.date_format = date_format or None
        self.convention: str | None = None  # "iso" or "us", set by the first date read

    def __call__(self, text: str) -> dt.date | str:
        raw = text.strip()
        if self.date_format:
            try:
                return dt.datetime.strptime(raw, self.date_format).date()
            except ValueError:
                pass
        day = parse_date(raw)
        if day is not None:
            self.convention = self.convention or "iso"
            return day
        m = _US.match(raw)
        if m and not self.date_format and self.convention in (None, "us"):
            self.convention = "us"
            month, mday, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if month > 12:
                return (
                    f"date of service {_q(raw)} is not a US date (MM/DD/YYYY): {month} is not"
                    " a month; for DD/MM/YYYY give the date format %d/%m/%Y"
                )
            try:
                return dt.date(year, month, mday)
            except ValueError:
                return f"date of service {_q(raw)} is not a date (MM/DD/YYYY)"
        if self.date_format:
            return (
                f"date of service {_q(raw)} matches neither the date format"
                f" {self.date_format!r} nor YYYY-MM-DD or YYYYMMDD"
            )
        if self.convention == "us":
            return f"date of service {_q(raw)} is not a date (MM/DD/YYYY, YYYY-MM-DD or YYYYMMDD)"
        return f"date of service {_q(raw)} is not an ISO date (YYYY-MM-DD)"


def _code_and_modifiers(text: str) -> tuple[str, list[str]]:
    """'77301' -> ('77301', []); '77301-26' (a code with its modifiers) -> ('77301', ['26'])."""
    code, *mods = text.strip().upper().split("-")
    return code.strip(), [m.strip() for m in mods if m.strip()]


def _fee(text: str) -> Decimal | None | str:
    """A non-negative amount (currency sign and thousands separators allowed), None when
    blank, or the reason it cannot be read."""
    raw = text.strip()
    if not raw:
        return None
    cleaned = raw.lstrip("$€£ ").replace(" ", "")
    if re.match(r"^\d{1,3}(,\d{3})+(\.\d+)?$", cleaned):
        cleaned = cleaned.replace(",", "")
    if not re.match(r"^-?\d+(\.\d+)?$", cleaned):
        return f"fee {_q(raw)} is not an amount"
    whole, _, cents = cleaned.lstrip("-").partition(".")
    if len(whole.lstrip("0")) > 12 or len(cents) > 4:  # sums and cents stay exact
        return f"fee {_q(raw)} is not an amount of at most 12 digits and 4 decimals"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return f"fee {_q(raw)} is not an amount"
    if value < 0:
        return f"fee {_q(raw)} is negative: credits are not audited; net them out first"
    return value


# ----------------------------------------------------------------------- charges


def read_charges(
    source: Source,
    columns: Mapping[str, str] | None = None,
    name: str | None = None,
    *,
    fmt: str | None = None,
    date_format: str | None = None,
    sheet: str | None = None,
) -> Charges:
    """Read charges from a path, ``-`` (standard input) or an open stream (bytes or
    text). ``fmt`` is one of ``CHARGE_FORMATS`` (None: chosen by content);
    ``columns`` maps each field to the column name a CSV or Excel file uses;
    ``date_format`` (strptime) reads other dates of CSV and Excel files; ``sheet`` is
    the Excel sheet (default: the first). ``name`` is how the source is cited
    (default: the path, or the stream's name)."""
    if fmt is not None and fmt not in CHARGE_FORMATS:
        raise BillingFileError(
            f"unknown charges format {fmt!r}: give one of " + ", ".join(CHARGE_FORMATS)
        )
    content, name = _read_raw(source, "charges file", name)
    data = content.encode("utf-8") if isinstance(content, str) else content
    kind = fmt or detect_format(data)
    columns = columns or {}
    if kind == "hl7":
        from rtcode.sources.billing_hl7 import parse_hl7

        return parse_hl7(data, name)
    if kind == "x12":
        from rtcode.sources.billing_x12 import parse_x12

        return parse_x12(data, name)
    if kind == "xlsx":
        from rtcode.sources.billing_xlsx import parse_xlsx

        return parse_xlsx(data, columns, name, sheet=sheet, date_format=date_format)
    notes: list[str] = []
    if isinstance(content, str):
        text = content
    else:
        text, notes = _decode(content)
    result = parse_charges(text, columns, name, date_format=date_format)
    return replace(result, notes=tuple(notes) + result.notes)


def detect_format(data: bytes) -> str:
    """The charges format of a file's first bytes: ``xlsx`` (a zip), ``hl7`` (MSH, FHS or
    BHS, after MLLP framing and blank space), ``x12`` (ISA), else ``csv``."""
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    head = data[:64].removeprefix(b"\xef\xbb\xbf").lstrip(b"\x0b\x1c\r\n\t ")
    if re.match(rb"^(MSH|FHS|BHS)[^A-Za-z0-9\s]", head):
        return "hl7"
    if re.match(rb"^ISA[^A-Za-z0-9\s]", head):
        return "x12"
    return "csv"


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV text (comma, semicolon, tab or bar), as the csv sniffer
    finds it in the first lines; a comma when it cannot tell or when the header line
    does not hold the delimiter it found."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:  # whole lines only
        sample = sample[: max(sample.rfind("\n"), sample.rfind("\r"), 0)]
    header = next((line for line in _lines(sample) if line.strip()), "")
    try:
        found = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        found = ","
    if found not in header:
        found = next((d for d in _DELIMITERS if d in header), ",")
    return found


def _header(
    line: int, cells: Sequence[str], columns: Mapping[str, str], delimiter: str
) -> tuple[dict[str, int], list[str], RejectedRow | None]:
    """(field -> column index, required fields missing, the rejected header or None)."""
    wanted = {f: (columns.get(f) or f).strip().casefold() for f in FIELDS}
    names = [c.strip().casefold() for c in cells]
    index = {f: names.index(wanted[f]) for f in FIELDS if wanted[f] in names}
    missing = [f for f in REQUIRED if f not in index]
    if not missing:
        return index, missing, None
    found = ", ".join(_q(c.strip()) for c in cells[:_MAX_COLUMNS_SHOWN])
    return (
        index,
        missing,
        RejectedRow(
            line,
            "the header has no column "
            + ", ".join(_column_name(columns, f) for f in missing)
            + f"; columns found: {found}. Map them with --column FIELD=NAME or the"
            " policy's [audit] columns",
            _shown(list(cells), delimiter),
        ),
    )


def _lacking(
    line: int,
    missing: list[str],
    cells: Sequence[str],
    delimiter: str,
    index: Mapping[str, int] | None = None,
) -> RejectedRow:
    return RejectedRow(
        line,
        "not read: the header lacks the " + ", ".join(missing) + " column(s) (see the header line)",
        _shown(list(cells), delimiter),
        _patient_cell(cells, index or {}),
    )


def _patient_cell(cells: Sequence[str], index: Mapping[str, int]) -> str | None:
    """The patient ID cell of a rejected row, when the header has that column and the
    row reaches it (else None)."""
    i = index.get("patient_id")
    if i is None or i >= len(cells):
        return None
    return cells[i].strip() or None


def _too_long(source: str, line: int) -> BillingFileError:
    return BillingFileError(
        f"the charges file {shown(source)} is too long: line {line:,} is beyond the"
        f" limit of {MAX_CHARGE_LINES:,} lines after the header line; split the file"
    )


def parse_rows(
    rows: Iterable[tuple[int, Sequence[str]]],
    columns: Mapping[str, str],
    source: str = "<charges>",
    *,
    date_format: str | None = None,
    kind: str = "csv",
) -> Charges:
    """Charges from rows of cells already split (an Excel sheet): (line, cells), the
    first row that is not blank being the header, as in a CSV file."""
    dates = DateReader(date_format)
    header: Sequence[str] | None = None
    index: dict[str, int] = {}
    missing: list[str] = []
    charges: list[Charge] = []
    rejected: list[RejectedRow] = []
    for line, cells in rows:
        if line > MAX_CHARGE_LINES + 1:
            raise _too_long(source, line)
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = cells
            index, missing, bad = _header(line, cells, columns, ",")
            if bad is not None:
                rejected.append(bad)
            continue
        if missing:
            rejected.append(_lacking(line, missing, cells, ",", index))
            continue
        outcome = _charge(line, cells, len(header), index, dates)
        if isinstance(outcome, Charge):
            charges.append(outcome)
        else:
            rejected.append(
                RejectedRow(line, outcome, _shown(list(cells)), _patient_cell(cells, index))
            )
    if header is None:
        rejected.append(RejectedRow(1, "the file is empty: no header and no charges", ""))
    found = {f: (header[i].strip() if header else None) for f, i in index.items()}
    return Charges(
        source, tuple(charges), tuple(rejected), {f: found.get(f) for f in FIELDS}, (), kind
    )


def parse_charges(
    text: str,
    columns: Mapping[str, str],
    source: str = "<charges>",
    *,
    date_format: str | None = None,
    delimiter: str | None = None,
) -> Charges:
    """Charges from a CSV text; the delimiter is sniffed unless given (see
    ``sniff_delimiter``), dates are read as the module docstring says."""
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the header
    sep = delimiter or sniff_delimiter(text)
    dates = DateReader(date_format)
    header: list[str] | None = None
    index: dict[str, int] = {}
    charges: list[Charge] = []
    rejected: list[RejectedRow] = []
    missing_required: list[str] = []
    notes: list[str] = []
    if sep != ",":
        notes.append(f"the charges file is separated by {_SEPARATORS.get(sep, repr(sep))}")
    pending = [_rows(_lines(text), sep)]
    while pending:
        try:
            line, last, cells, error, physical = next(pending[-1])
        except StopIteration:
            pending.pop()
            continue
        if line > MAX_CHARGE_LINES + 1:  # checked before the line is used
            raise _too_long(source, line)
        if error is not None or cells is None:
            rejected.append(RejectedRow(line, error or "unreadable line", ""))
            continue
        if not any(c.strip() for c in cells):
            continue  # blank line
        if header is None:
            header = cells
            index, missing_required, bad = _header(line, cells, columns, sep)
            if bad is not None:
                rejected.append(bad)
            continue
        if missing_required:
            rejected.append(_lacking(line, missing_required, cells, sep, index))
            continue
        outcome = _charge(line, cells, len(header), index, dates)
        # A quoted value over several lines is fine, unless those lines read as
        # charges of their own: then a quote was left open and swallowed them.
        if (
            last > line
            and isinstance(outcome, Charge)
            and any(
                c is not None
                and isinstance(_charge(n, c, len(header), index, copy.copy(dates)), Charge)
                for n, _, c, _, _ in _rows(physical[1:], sep, line)
            )
        ):
            outcome = "a quoted value runs over several lines that read as charges"
        if isinstance(outcome, Charge):
            charges.append(outcome)
        elif last > line:
            # A bad record over several lines is most likely an unclosed quote that
            # swallowed the rows after it: reject its first line, read the others again.
            rejected.append(
                RejectedRow(
                    line,
                    f"{outcome} (the row runs on to line {last}: an unclosed quote?"
                    + (
                        f" line {last} is read again as a row of its own)"
                        if last == line + 1
                        else f" lines {line + 1}-{last} are read again as rows of their own)"
                    ),
                    _shown(physical[0].rstrip("\r\n").split(sep), sep),
                )
            )
            pending.append(_rows(physical[1:], sep, line))
        else:
            rejected.append(
                RejectedRow(line, outcome, _shown(cells, sep), _patient_cell(cells, index))
            )
    if header is None:
        rejected.append(RejectedRow(1, "the file is empty: no header and no charges", ""))
    found_columns = {f: (header[i].strip() if header else None) for f, i in index.items()}
    return Charges(
        source,
        tuple(charges),
        tuple(rejected),
        {f: found_columns.get(f) for f in FIELDS},
        tuple(notes),
    )


_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "bars"}


def _column_name(columns: Mapping[str, str], f: str) -> str:
    name = (columns.get(f) or f).strip()
    return repr(name) if name == f else f"{name!r} (for {f})"


def _charge(
    line: int,
    cells: Sequence[str],
    width: int,
    index: Mapping[str, int],
    dates: DateReader | None = None,
) -> Charge | str:
    """The charge on a data row, or the reason it is rejected (the first problem found)."""
    extra = [c for c in cells[width:] if c.strip()]
    if extra:
        return (
            f"the row has {len(cells)} cells but the header has {width}"
            " (a comma inside an unquoted value?)"
        )

    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    patient = cell("patient_id")
    if not patient:
        return "missing patient ID"
    for name, what in (("patient_id", "patient ID"), ("plan", "plan")):
        if len(cell(name)) > MAX_VALUE_CHARS:
            return (
                f"the {what} {_q(cell(name))} is longer than {MAX_VALUE_CHARS} characters"
                " (DICOM allows 64)"
            )
    raw_code = cell("cpt")
    if not raw_code:
        return "missing code"
    code, code_mods = _code_and_modifiers(raw_code)
    if not _CODE.match(code):
        return (
            f"unknown code {_q(raw_code)}: a CPT or HCPCS code has five characters (five"
            " digits, four digits and F, T or U, or a letter and four digits)"
        )
    raw_date = cell("date_of_service")
    if not raw_date:
        return "missing date of service"
    day = (dates or DateReader())(raw_date)
    if isinstance(day, str):
        return day
    raw_units = cell("units")
    if not raw_units:
        units = 1
    elif re.match(r"^-?\d+(\.0+)?$", raw_units):
        # Read as digits: not through float (inexact past 2**53, inf past 1e308) nor
        # int() of thousands of digits.
        whole = raw_units.partition(".")[0]
        digits = whole.lstrip("-").lstrip("0")
        if not digits or whole.startswith("-"):
            return (
                f"units {_q(raw_units)}: reversals and zero-unit rows are not audited;"
                " net them out before the audit"
            )
        if len(digits) > len(str(MAX_UNITS)) or int(digits) > MAX_UNITS:
            return f"units {_q(raw_units)} is more than {MAX_UNITS:,}: not a planning charge"
        units = int(digits)
    else:
        return f"units {_q(raw_units)} is not a whole number"
    modifiers = [m for m in re.split(r"[\s,;:|/]+", cell("modifiers").upper()) if m]
    modifiers = code_mods + modifiers
    bad = [m for m in modifiers if not _MODIFIER.match(m)]
    if bad:
        return f"modifier {_q(bad[0])} is not a two-character modifier"
    fee = _fee(cell("fee"))
    if isinstance(fee, str):
        return fee
    return Charge(
        line=line,
        patient_id=patient,
        date_of_service=day,
        cpt=code,
        units=units,
        modifiers=tuple(dict.fromkeys(modifiers)),
        plan=cell("plan") or None,
        fee=fee,
    )


_FIELD_INDEX = {f: i for i, f in enumerate(FIELDS)}


def make_charge(
    line: int,
    *,
    patient_id: str,
    date_of_service: str,
    cpt: str,
    units: str = "",
    modifiers: Sequence[str] = (),
    plan: str = "",
    fee: str = "",
    dates: DateReader | None = None,
) -> Charge | str:
    """A charge from the text of its fields (an HL7 or X12 line), checked as a CSV row
    is; or the reason it is rejected."""
    values = {
        "patient_id": patient_id,
        "date_of_service": date_of_service,
        "cpt": cpt,
        "units": units,
        "modifiers": " ".join(modifiers),
        "plan": plan,
        "fee": fee,
    }
    cells = [values[f] for f in FIELDS]
    return _charge(line, cells, len(cells), _FIELD_INDEX, dates)


# ----------------------------------------------------------------------- credits


@dataclass(frozen=True)
class Credit:
    """A credit or reversal line (HL7 CD/AJ, a voided 837 claim): the charge it undoes,
    with positive units, at its own line."""

    charge: Charge
    text: str  # the line as read (clipped)


def net_credits(
    charges: Sequence[Charge], credits: Sequence[Credit]
) -> tuple[list[Charge], list[RejectedRow], list[str]]:
    """Charges less the credits: each credit takes its units from the charges of the same
    patient, date of service and code (those with the same modifiers first, the latest
    line before the credit first). A charge left with no unit is dropped; one left with
    fewer keeps its line and a fee in proportion. A credit with no charge left to net
    against is a rejected row. Returns (charges, rejected, notes)."""
    left = {c.line: c.units for c in charges}
    by_key: dict[tuple[str, dt.date, str], list[Charge]] = {}
    for c in charges:
        by_key.setdefault((c.patient_id, c.date_of_service, c.cpt), []).append(c)
    rejected: list[RejectedRow] = []
    for credit in sorted(credits, key=lambda k: k.charge.line):
        k = credit.charge
        same = by_key.get((k.patient_id, k.date_of_service, k.cpt), [])
        order = sorted(
            same,
            key=lambda c: (
                set(c.modifiers) != set(k.modifiers),
                c.line > k.line,
                -c.line if c.line < k.line else c.line,
            ),
        )
        need = k.units
        for c in order:
            take = min(need, left[c.line])
            left[c.line] -= take
            need -= take
            if not need:
                break
        if need:
            rejected.append(
                RejectedRow(
                    k.line,
                    f"credit of {need} unit(s) of {k.cpt} for patient {_q(k.patient_id)} on"
                    f" {k.date_of_service.isoformat()}: no charge of that patient, date and"
                    " code is left to net it against",
                    credit.text,
                )
            )
    out: list[Charge] = []
    for c in charges:
        units = left[c.line]
        if units == c.units:
            out.append(c)
        elif units:
            fee = None if c.fee is None else (c.fee * units / c.units).quantize(Decimal("0.01"))
            out.append(replace(c, units=units, fee=fee))
    notes: list[str] = []
    if credits:
        dropped = sum(1 for c in charges if not left[c.line])
        reduced = sum(1 for c in charges if 0 < left[c.line] < c.units)
        at = list(dict.fromkeys(k.charge.line for k in credits))  # a replaced claim: one line
        lines = ", ".join(str(n) for n in at[:20])
        more = f" and {len(at) - 20} more" if len(at) > 20 else ""
        notes.append(
            f"{len(credits)} credit or reversal(s) (line {lines}{more}) netted against the"
            f" charges: {dropped} charge(s) fully reversed, {reduced} reduced"
        )
    return out, rejected, notes


# --------------------------------------------------------------------------- PTP

# The CMS layout (Medicare NCCI PTP edit files, tab-delimited text or CSV): column 1,
# column 2, "in existence prior to 1996" flag, effective date, deletion date ("*" for
# none), modifier indicator, PTP edit rationale.
_CMS_ORDER = {
    "column1": 0,
    "column2": 1,
    "effective": 3,
    "deletion": 4,
    "modifier": 5,
    "rationale": 6,
}
_HEADER_WORDS = {
    "column1": re.compile(r"column\s*1(?!\d)"),
    "column2": re.compile(r"column\s*2(?!\d)"),
    "effective": re.compile(r"effective"),
    "deletion": re.compile(r"deletion"),
    "modifier": re.compile(r"modifier"),
    "rationale": re.compile(r"rationale"),
}


def read_ptp(source: Source, codes: Collection[str] | None = None) -> PtpFile:
    """Read a PTP file (a path or an open stream); with ``codes``, keep only the edits
    between two of those codes (a quarterly CMS file has about a million edits, an
    audit needs a few)."""
    text, _, name = _read_source(source, "PTP edit file", None)
    return parse_ptp(text, Path(name).name, codes)


def merge_ptp(files: Sequence[PtpFile]) -> PtpFile:
    """One set of edits from several files (CMS splits a quarter's table over several)."""
    edits = tuple(e for f in files for e in f.edits)
    rejected = tuple(
        RejectedRow(r.line, f"{f.name}: {r.reason}", r.text) for f in files for r in f.rejected
    )
    return PtpFile(
        ", ".join(f.name for f in files),
        edits,
        rejected,
        _pairs(edits),
        sum(f.edits_read for f in files),
    )


def _pairs(edits: Sequence[PtpEdit]) -> dict[tuple[str, str], tuple[PtpEdit, ...]]:
    pairs: dict[tuple[str, str], list[PtpEdit]] = {}
    for e in edits:
        pairs.setdefault((e.column1, e.column2), []).append(e)
    return {k: tuple(v) for k, v in pairs.items()}


def _ptp_date(text: str) -> dt.date | None:
    day = parse_date(text)
    if day is not None:
        return day
    m = _US.match(text)  # spreadsheet exports of the CMS file show M/D/YYYY
    if m:
        try:
            return dt.date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
        except ValueError:
            return None
    return None


def _ptp_header(cells: list[str]) -> dict[str, int] | None:
    names = [c.strip().casefold() for c in cells]
    if not any("effective" in n for n in names):
        return None
    found: dict[str, int] = {}
    for key, pattern in _HEADER_WORDS.items():
        for i, name in enumerate(names):
            if i not in found.values() and pattern.search(name):
                found[key] = i
                break
    needed = ("column1", "column2", "effective", "deletion", "modifier")
    return found if all(k in found for k in needed) else None


def parse_ptp(text: str, name: str = "<ptp>", codes: Collection[str] | None = None) -> PtpFile:
    """Edits from a PTP file. Lines that do not start with two codes (the CMS notices and
    the header) are skipped; a line that does but cannot be read is rejected."""
    first = text.split("\n", 40)[:40]
    delimiter = "\t" if any("\t" in line for line in first) else ","
    layout = dict(_CMS_ORDER)
    edits: list[PtpEdit] = []
    rejected: list[RejectedRow] = []
    read = 0
    for line, _last, cells, error, _ in _rows(_lines(text), delimiter):
        if error is not None or cells is None:
            rejected.append(RejectedRow(line, error or "unreadable line", ""))
            continue
        header = _ptp_header(cells)
        if header is not None:
            layout = header
            continue

        def cell(key: str, cells: list[str] = cells, layout: dict[str, int] = layout) -> str:
            i = layout.get(key)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        c1, c2 = cell("column1").upper(), cell("column2").upper()
        if not (_CODE.match(c1) and _CODE.match(c2)):
            continue  # notices, titles, header continuation lines
        effective = _ptp_date(cell("effective"))
        if effective is None:
            rejected.append(
                RejectedRow(
                    line, f"effective date {_q(cell('effective'))} is not a date", _shown(cells)
                )
            )
            continue
        raw_deletion = cell("deletion")
        deletion = None
        if raw_deletion not in ("", "*"):
            deletion = _ptp_date(raw_deletion)
            if deletion is None:
                rejected.append(
                    RejectedRow(
                        line,
                        f"deletion date {_q(raw_deletion)} is not a date or '*'",
                        _shown(cells),
                    )
                )
                continue
        indicator = cell("modifier")
        if indicator not in ("0", "1", "9"):
            rejected.append(
                RejectedRow(
                    line,
                    f"modifier indicator {_q(indicator)} is not 0, 1 or 9",
                    _shown(cells),
                )
            )
            continue
        read += 1
        if codes is None or (c1 in codes and c2 in codes):
            rationale = cell("rationale") or None
            edits.append(PtpEdit(c1, c2, effective, deletion, indicator, rationale, line, name))
    return PtpFile(name, tuple(edits), tuple(rejected), _pairs(edits), read)
