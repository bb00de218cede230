"""Charges from an Excel workbook (.xlsx, read with openpyxl): the first sheet, or the
one named. The first row that is not blank is the header, as in a CSV file, and the
line number of a row is its row number in the sheet. Cells are read as values, never
as formulas (a formula cell gives the value Excel saved with it, or blank). A date
cell gives its date; a whole number (77300, 2.0) its digits; other cells their text.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator, Mapping, Sequence

from rtcode.sources import billing
from rtcode.sources.billing import (
    BillingFileError,
    Charges,
    _too_long,
    parse_rows,
)

# A workbook is a zip: its parts are bounded, as a zip bomb would fill the memory.
MAX_XLSX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_COLUMNS = 256  # cells of a row read (a charges sheet has a handful)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_xlsx(
    data: bytes,
    columns: Mapping[str, str],
    source: str = "<xlsx>",
    *,
    sheet: str | None = None,
    date_format: str | None = None,
) -> Charges:
    """Charges from the bytes of an .xlsx workbook; see the module docstring. A workbook
    that cannot be opened, or has no sheet ``sheet``, is a ``BillingFileError``."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - the billing extra is not installed
        raise BillingFileError(
            "reading Excel charges needs the openpyxl package: pip install 'rtcode[billing]'"
        ) from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BillingFileError(
            f"the charges file {source} is not an Excel workbook: {exc}"
        ) from None
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise BillingFileError(
            f"the workbook {source} unpacks to {unpacked:,} bytes, more than the limit of"
            f" {MAX_XLSX_UNPACKED_BYTES:,}"
        )
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad workbook
        raise BillingFileError(
            f"the workbook {source} cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    try:
        names = list(book.sheetnames)
        if sheet is not None and sheet not in names:
            raise BillingFileError(
                f"the workbook {source} has no sheet {sheet!r}; its sheets: "
                + ", ".join(repr(n) for n in names[:40])
            )
        if not names:
            raise BillingFileError(f"the workbook {source} has no sheet")
        chosen = sheet if sheet is not None else names[0]
        if not hasattr(book[chosen], "iter_rows"):
            raise BillingFileError(f"the sheet {chosen!r} of {source} is a chart, not a table")
        result = parse_rows(
            _rows(book[chosen], source), columns, source, date_format=date_format, kind="xlsx"
        )
    finally:
        book.close()
    note = f"read sheet {chosen!r} of {len(names)}"
    return Charges(
        result.source,
        result.charges,
        result.rejected,
        result.columns,
        (note,) + result.notes,
        "xlsx",
    )


def _rows(worksheet: object, source: str) -> Iterator[tuple[int, Sequence[str]]]:
    for number, values in enumerate(
        worksheet.iter_rows(values_only=True, max_col=MAX_COLUMNS),  # type: ignore[attr-defined]  # an openpyxl worksheet
        start=1,
    ):
        if number > billing.MAX_CHARGE_LINES + 1:
            raise _too_long(source, number)
        cells = [_text(v) for v in values]
        while cells and not cells[-1].strip():  # read-only rows are padded to max_col
            cells.pop()
        yield number, cells
