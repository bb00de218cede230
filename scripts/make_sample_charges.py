#!/usr/bin/env python3
"""Write the sample charges of ``sample_data/charges_planted.csv`` the way a billing
office has them: HL7 v2 DFT^P03 messages, X12 837P and 837I claims, an Excel workbook
and a semicolon CSV with US dates.

Usage::

    python scripts/make_sample_charges.py [OUT_DIR]

OUT_DIR defaults to ``sample_data/charges/`` (a scan of sample_data lists these files
as skipped, not DICOM, like the other charge files). Each file holds the
charges of ``charges_planted.csv`` (taken from ``scripts/make_sample_data.py``), so an
audit of it against ``sample_data/`` gives the same findings, plus what the format
adds: a charge and its reversal that net to zero, a charge whose extra unit is credited
(HL7) or a claim replaced by a corrected one (837), modifiers, several patients, and
invalid lines (the planted CSV's three, which every reader rejects). Every value is
invented; the output is byte-identical from run to run (the workbook's times fixed).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import io
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = ROOT / "sample_data" / "charges"
FIXED_TIME = dt.datetime(2026, 1, 7, 8, 0, 0)
HEADER = ("patient_id", "date_of_service", "cpt", "units", "modifiers", "plan", "fee")
FILES = (
    "charges_planted.hl7",
    "charges_planted_837p.x12",
    "charges_planted_837i.x12",
    "charges_planted.xlsx",
    "charges_planted_us.csv",
    "README.md",
)


def _sample_module() -> ModuleType:
    """scripts/make_sample_data.py, loaded by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", ROOT / "scripts" / "make_sample_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Row:
    """One row of charges_planted.csv, as its cells."""

    patient: str
    day: str  # as written in the CSV (ISO, or the planted 01/05/2026)
    cpt: str
    units: int
    modifiers: tuple[str, ...]
    plan: str
    fee: str

    @property
    def compact_day(self) -> str:
        """YYYYMMDD of an ISO day; the text itself otherwise (a planted bad date)."""
        return self.day.replace("-", "") if re.match(r"^\d{4}-\d\d-\d\d$", self.day) else self.day


def planted_rows() -> list[Row]:
    rows, _ = _sample_module().planted_charges()
    out = []
    for r in rows:
        patient, day, cpt, units, modifiers, plan, fee = r.cells()
        mods = tuple(m for m in re.split(r"[\s,;:|/-]+", modifiers) if m)
        out.append(Row(patient, day, cpt, int(units or 1), mods, plan, fee))
    return out


def _runs(rows: Sequence[Row]) -> Iterator[list[Row]]:
    """Consecutive rows of one patient."""
    run: list[Row] = []
    for r in rows:
        if run and r.patient != run[-1].patient:
            yield run
            run = []
        run.append(r)
    if run:
        yield run


# ---------------------------------------------------------------------------- HL7


def _ft1(n: int, r: Row, kind: str = "CG", units: int | None = None, fee: str = "") -> str:
    units = r.units if units is None else units
    fields = [""] * 27
    fields[0] = "FT1"
    fields[1] = str(n)
    fields[4] = r.compact_day
    fields[6] = kind
    fields[7] = r.cpt  # transaction code (the charge master's code)
    fields[10] = str(units)
    fields[11] = fee or r.fee
    fields[25] = f"{r.cpt}^^C4"
    fields[26] = "~".join(r.modifiers)
    return "|".join(fields).rstrip("|")


def hl7_text(rows: Sequence[Row]) -> bytes:
    """One DFT^P03 per run of one patient's rows, MLLP framed, segments ended by \\r.
    Added: RTC-01 77307 with modifiers 26 and GC, reversed (CD) in the next message;
    RTC-06's 77300 x4 sent as x5 and a credit (AJ) of one unit."""
    messages: list[list[str]] = []
    for run in _runs(rows):
        segments = [f"PID|1||{run[0].patient}^^^RTC^MR||SAMPLE^{run[0].patient or 'NONE'}"]
        n = 0
        for r in run:
            n += 1
            if r.patient == "RTC-06" and r.cpt == "77300":
                segments.append(_ft1(n, r, units=r.units + 1, fee="300.00"))
                n += 1
                segments.append(_ft1(n, r, "AJ", 1, "-60.00"))
                continue
            segments.append(_ft1(n, r))
            if r.patient == "RTC-01" and r.cpt == "77306":
                n += 1
                extra = Row("RTC-01", r.day, "77307", 1, ("26", "GC"), "", "180.00")
                segments.append(_ft1(n, extra))
                messages.append(segments)
                reversal = [segments[0], _ft1(1, extra, "CD", 1, "-180.00")]
                messages.append(reversal)
                segments = [segments[0]]
                n = 0
        if len(segments) > 1:
            messages.append(segments)
    out = bytearray()
    for number, segments in enumerate(messages, start=1):
        msh = (
            "MSH|^~\\&|RV_SYSTEM|RADONC|BILLING|HOSPITAL|20260107080000||DFT^P03|"
            f"MSG{number:05d}|P|2.5"
        )
        evn = "EVN|P03|20260107080000"
        text = "\r".join([msh, evn, *segments]) + "\r"
        out += b"\x0b" + text.encode("ascii") + b"\x1c\r"
    return bytes(out)


# ---------------------------------------------------------------------------- X12


def _envelope(kind: str, body: list[str]) -> bytes:
    """ISA/GS/ST ... SE/GE/IEA around the claim segments; '*' elements, ':' components,
    '~' ends a segment (and a line end follows, as most exports do)."""
    version = "005010X222A1" if kind == "P" else "005010X223A2"
    isa = (
        "ISA*00*          *00*          *ZZ*RTCSAMPLE      *ZZ*PAYERSAMPLE    *260107*0800*^*00501"
        "*000000001*0*T*:"
    )
    assert len(isa) == 105, len(isa)
    header = [
        f"GS*HC*RTCSAMPLE*PAYERSAMPLE*20260107*0800*1*X*{version}",
        f"ST*837*0001*{version}",
        "BHT*0019*00*RTC0001*20260107*0800*CH",
        "NM1*41*2*RTCODE SAMPLE CLINIC*****46*RTC1",
        "PER*IC*BILLING OFFICE*TE*5550100",
        "NM1*40*2*SAMPLE PAYER*****46*PAYER1",
        "HL*1**20*1",
        "NM1*85*2*RTCODE SAMPLE CLINIC*****XX*1234567893",
    ]
    count = len(header) - 1 + len(body) + 1  # ST .. SE
    trailer = [f"SE*{count}*0001", "GE*1*1", "IEA*1*000000001"]
    segments = [isa, *header, *body, *trailer]
    return ("~\n".join(segments) + "~\n").encode("ascii")


def _claim(
    kind: str,
    control: str,
    rows: Sequence[Row],
    frequency: str = "1",
    record: str | None = None,
) -> list[str]:
    total = sum(float(r.fee) for r in rows)
    place = "11:B" if kind == "P" else "13:A"
    out = [f"CLM*{control}*{total:.2f}***{place}:{frequency}*Y*A*Y*Y"]
    if kind == "I":
        days = sorted(r.compact_day for r in rows if r.compact_day.isdigit())
        if days:
            out.append(f"DTP*434*RD8*{days[0]}-{days[-1]}")
    if frequency in ("7", "8"):
        out.append(f"REF*F8*ORIG{control}")
    if record:
        out.append(f"REF*EA*{record}")
    for n, r in enumerate(rows, start=1):
        code = ":".join(("HC", r.cpt, *r.modifiers))
        out.append(f"LX*{n}")
        if kind == "P":
            out.append(f"SV1*{code}*{r.fee}*UN*{r.units}***1")
        else:
            out.append(f"SV2*0333*{code}*{r.fee}*UN*{r.units}")
        out.append(f"DTP*472*D8*{r.compact_day}")
    return out


def _subscriber(hl: int, member: str, name: str) -> list[str]:
    return [
        f"HL*{hl}*1*22*0",
        "SBR*P*18*******MC",
        f"NM1*IL*1*SAMPLE*{name}****MI*{member}",
    ]


def x12_text(rows: Sequence[Row], kind: str) -> bytes:
    """One claim per run of one patient's rows. The patient is the claim's REF*EA,
    except RTC-03 (a dependant: NM1*QC) and RTC-04 (the subscriber's NM1*IL); the row
    without a patient has neither. Added: a claim for RTC-01 77307 (modifiers 26, GC)
    and its void (frequency 8); RTC-06's first claim bills 77300 x5 and is replaced
    (frequency 7) by the claim as in the CSV."""
    body: list[str] = []
    hl = 1
    for number, run in enumerate(_runs(rows), start=1):
        patient = run[0].patient
        hl += 1
        control = f"RTC{number:04d}"
        if patient == "RTC-03":
            body += [f"HL*{hl}*1*22*1", "SBR*P*01*******MC", "NM1*IL*1*SAMPLE*PARENT****MI*SUB03"]
            hl += 1
            body += [f"HL*{hl}*{hl - 1}*23*0", "PAT*19", f"NM1*QC*1*SAMPLE*RTC03****MI*{patient}"]
            body += _claim(kind, control, run)
            continue
        if patient == "RTC-04":
            body += _subscriber(hl, patient, "RTC04")
            body += _claim(kind, control, run)
            continue
        body += _subscriber(hl, f"MEMBER{number:03d}" if patient else "", patient or "NONE")
        if patient == "RTC-01" and len(run) == 1 and run[0].cpt == "77306":
            extra = Row("RTC-01", run[0].day, "77307", 1, ("26", "GC"), "", "180.00")
            body += _claim(kind, control, run, record=patient)
            body += _claim(kind, control + "X", [extra], record=patient)
            body += _claim(kind, control + "X", [extra], "8", record=patient)
            continue
        if patient == "RTC-06":
            wrong = [
                Row(r.patient, r.day, r.cpt, r.units + 1, r.modifiers, r.plan, "300.00")
                if r.cpt == "77300"
                else r
                for r in run
            ]
            body += _claim(kind, control, wrong, record=patient)
            body += _claim(kind, control, run, "7", record=patient)
            continue
        body += _claim(kind, control, run, record=patient or None)
    return _envelope(kind, body)


# ---------------------------------------------------------------------------- Excel


def xlsx_bytes(rows: Sequence[Row]) -> bytes:
    """The CSV's columns; dates as Excel dates (the planted 01/05/2026 stays text),
    units as numbers, fees as numbers with two decimals shown."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Charges"
    sheet.append(list(HEADER))
    for r in rows:
        day: object = r.day
        if re.match(r"^\d{4}-\d\d-\d\d$", r.day):
            day = dt.datetime.strptime(r.day, "%Y-%m-%d")
        sheet.append([r.patient, day, r.cpt, r.units, " ".join(r.modifiers), r.plan, float(r.fee)])
        sheet.cell(sheet.max_row, 2).number_format = "mm/dd/yyyy"
        sheet.cell(sheet.max_row, 7).number_format = "0.00"
    book.properties.creator = "rtcode sample data"
    book.properties.created = FIXED_TIME
    buffer = io.BytesIO()
    book.save(buffer)
    return _fixed_zip(buffer.getvalue())


def _fixed_zip(data: bytes) -> bytes:
    """The workbook with fixed times: its entries' dates and docProps/core.xml's
    created and modified (openpyxl stamps the time of saving)."""
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                    rb"\g<1>" + stamp.encode() + rb"\g<2>",
                    content,
                )
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, content)
    return out.getvalue()


# ---------------------------------------------------------------------------- US CSV


def us_csv_text(rows: Sequence[Row]) -> bytes:
    """Semicolon-separated, dates MM/DD/YYYY, a comma as the decimal point nowhere (the
    fees keep their point). The planted 01/05/2026 row is written 25/01/2026: a
    day-first date that a US file rejects (in a US file 01/05/2026 is a good date)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(HEADER)
    for r in rows:
        day = r.day
        m = re.match(r"^(\d{4})-(\d\d)-(\d\d)$", day)
        day = f"{m.group(2)}/{m.group(3)}/{m.group(1)}" if m else "25/01/2026"
        writer.writerow([r.patient, day, r.cpt, r.units, " ".join(r.modifiers), r.plan, r.fee])
    return out.getvalue().encode("utf-8")


README = """\
# Sample charges as a billing office has them

The charges of `sample_data/charges_planted.csv` in the formats billing systems use,
written by `scripts/make_sample_charges.py` (do not edit them by hand). An audit of any
of them against `sample_data/` gives the same findings as the CSV:

    rtcode audit sample_data --charges sample_data/charges/charges_planted.hl7
    rtcode audit sample_data --charges sample_data/charges/charges_planted_837p.x12

- `charges_planted.hl7`: HL7 v2 DFT^P03 messages, MLLP framed. RTC-01's 77307
  (modifiers 26, GC) is reversed by a CD in the next message (nets to zero); RTC-06's
  77300 is sent as 5 units and one is taken back by an AJ (4 left, as in the CSV).
- `charges_planted_837p.x12`, `charges_planted_837i.x12`: X12 837P and 837I (005010).
  The patient is the claim's REF*EA, except RTC-03 (a dependant, NM1*QC) and RTC-04
  (the subscriber's NM1*IL). RTC-01's 77307 claim is voided (frequency 8); RTC-06's
  claim is replaced (frequency 7) by a corrected one.
- `charges_planted.xlsx`: the CSV's columns, dates as Excel dates.
- `charges_planted_us.csv`: semicolons, US dates (MM/DD/YYYY).

The planted CSV's three bad rows are bad in each file too (an unknown code, a date that
is not one, a charge with no patient) and are rejected with their line numbers.
"""


def write_sample_charges(out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    rows = planted_rows()
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "charges_planted.hl7": hl7_text(rows),
        "charges_planted_837p.x12": x12_text(rows, "P"),
        "charges_planted_837i.x12": x12_text(rows, "I"),
        "charges_planted.xlsx": xlsx_bytes(rows),
        "charges_planted_us.csv": us_csv_text(rows),
        "README.md": README.encode("utf-8"),
    }
    paths = []
    for name in FILES:
        path = out_dir / name
        path.write_bytes(contents[name])
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    for path in write_sample_charges(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
