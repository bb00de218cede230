"""Charges from HL7 v2 DFT^P03 messages (detail financial transactions), as a
record-and-verify system posts them to the hospital billing system.

One file holds one or many messages, framed for MLLP (0x0B ... 0x1C 0x0D) or not,
segments ended by \\r, \\n or \\r\\n; it is read as bytes. Each message is parsed with
python-hl7 (escapes and encoding characters from its MSH). One FT1 segment is one
line: patient PID-3 (first component), date of service FT1-4 (first 8 digits), code
FT1-25 (first component; FT1-7 when FT1-25 is empty), units FT1-10 (blank: 1),
modifiers FT1-26 (repetitions, or the components of one when all are modifiers), fee
FT1-11 (first component). FT1-6 is the transaction type: CG a charge; CD (credit) and
AJ (adjustment), or a negative quantity, undo a charge and are netted against it. The
line number of an FT1 is its line in the file (each \\r, \\n or \\r\\n ends one).
"""

from __future__ import annotations

import re
from typing import Any

from rtcode.sources import billing
from rtcode.sources.billing import (
    BillingFileError,
    Charge,
    Charges,
    Credit,
    DateReader,
    RejectedRow,
    _decode,
    _q,
    _too_long,
    make_charge,
    net_credits,
    parse_date,
)

CHARGE_TYPES = ("CG",)
CREDIT_TYPES = ("CD", "AJ")
_SEGMENT_END = re.compile(r"\r\n|\r|\n")
_MAX_SHOWN = 120
_BATCH = ("FHS", "BHS", "BTS", "FTS")
_MODIFIER = re.compile(r"^[0-9A-Za-z]{2}$")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _field(segment: Any, number: int, repeat: int = 1, component: int = 1) -> str:
    """The text of one component of a field (unescaped); '' when absent."""
    try:
        value = segment.extract_field(
            field_num=number, repeat_num=repeat, component_num=component, subcomponent_num=1
        )
    except (IndexError, KeyError, ValueError):
        return ""
    return str(value).strip()


def _modifiers(segment: Any, separators: str) -> list[str]:
    """FT1-26: every repetition's first component; the other components too when each
    of them looks like a modifier (``26^59``, not ``26^Professional^CPT``)."""
    try:
        raw = str(segment[26])
    except IndexError:
        return []
    repeat_sep, component_sep = separators[1], separators[0]
    out: list[str] = []
    for n, repetition in enumerate(raw.split(repeat_sep), start=1) if raw else ():
        parts = [_field(segment, 26, n, c) for c in range(1, repetition.count(component_sep) + 2)]
        parts = [p for p in parts if p]
        if parts and all(_MODIFIER.match(p) for p in parts):
            out += parts
        elif parts:
            out.append(parts[0])
    return out


def parse_hl7(data: bytes, source: str = "<hl7>") -> Charges:
    """Charges (credits netted) from the bytes of an HL7 v2 file; see the module
    docstring. A segment or message that cannot be used is a rejected row."""
    try:
        import hl7
    except ImportError:  # pragma: no cover - the billing extra is not installed
        raise BillingFileError(
            "reading HL7 charges needs the python-hl7 package: pip install 'rtcode[billing]'"
        ) from None
    text, notes = _decode(data.replace(b"\x0b", b"").replace(b"\x1c", b""))
    text = text.removeprefix("\ufeff")
    lines = _SEGMENT_END.split(text)
    if len(lines) > billing.MAX_CHARGE_LINES + 1:
        raise _too_long(source, billing.MAX_CHARGE_LINES + 2)
    # Messages: (line of each segment, segment text), each starting at an MSH.
    messages: list[list[tuple[int, str]]] = []
    rejected: list[RejectedRow] = []
    for number, segment in enumerate(lines, start=1):
        if not segment.strip():
            continue
        if segment.startswith(_BATCH):
            continue
        if segment.startswith("MSH"):
            messages.append([(number, segment)])
        elif messages:
            messages[-1].append((number, segment))
        elif segment.startswith("FT1"):
            rejected.append(
                RejectedRow(number, "an FT1 segment before any MSH: not read", _clip(segment))
            )
    if not messages:
        rejected.append(RejectedRow(1, "no HL7 message (MSH segment) found in the file", ""))
    dates = DateReader()
    charges: list[Charge] = []
    credits: list[Credit] = []
    for message in messages:
        first_line, msh = message[0]
        try:
            parsed = hl7.parse("\r".join(s for _, s in message))
            segments = list(parsed)
            if len(segments) != len(message):
                raise ValueError(f"{len(segments)} segments parsed of {len(message)}")
            separators = msh[4:8] if len(msh) >= 8 else "^~\\&"
        except Exception as exc:  # noqa: BLE001 - any parse failure is one rejected message
            ft1 = sum(1 for _, s in message if s.startswith("FT1"))
            rejected.append(
                RejectedRow(
                    first_line,
                    f"the HL7 message cannot be parsed ({type(exc).__name__}: {exc});"
                    f" its {ft1} FT1 segment(s) are not read",
                    _clip(msh),
                )
            )
            continue
        patient = ""
        have_pid = False
        for (line, raw), segment in zip(message, segments, strict=True):
            name = raw[:3]
            if name == "PID":
                have_pid = True
                patient = _field(segment, 3)
                continue
            if name != "FT1":
                continue
            outcome = _ft1(line, segment, separators, patient, have_pid, dates)
            if isinstance(outcome, str):
                rejected.append(RejectedRow(line, outcome, _clip(raw), patient or None))
            elif isinstance(outcome, Credit):
                credits.append(Credit(outcome.charge, _clip(raw)))
            else:
                charges.append(outcome)
    netted, unmatched, netted_notes = net_credits(charges, credits)
    notes.append(
        f"read {len(messages)} HL7 message(s): {len(charges)} charge and {len(credits)}"
        " credit FT1 segment(s)"
    )
    return Charges(
        source,
        tuple(netted),
        tuple(sorted(rejected + unmatched, key=lambda r: r.line)),
        {},
        tuple(notes + netted_notes),
        "hl7",
    )


def _ft1(
    line: int,
    segment: Any,
    separators: str,
    patient: str,
    have_pid: bool,
    dates: DateReader,
) -> Charge | Credit | str:
    """The charge or credit of one FT1 segment, or the reason it is rejected."""
    if not have_pid:
        return "no PID segment before this FT1 in its message: no patient"
    kind = _field(segment, 6).upper()
    if kind not in CHARGE_TYPES + CREDIT_TYPES:
        return (
            f"transaction type (FT1-6) {_q(kind)} is not CG (charge), CD (credit) or AJ"
            " (adjustment)"
        )
    raw_date = _field(segment, 4)
    digits = re.match(r"^\d{8}", raw_date)
    day = parse_date(digits.group()) if digits else None
    if day is None:
        return f"date of service (FT1-4) {_q(raw_date)} is not an HL7 date (YYYYMMDD...)"
    code = _field(segment, 25) or _field(segment, 7)
    if not code:
        return "no procedure code (FT1-25, nor FT1-7)"
    units = _field(segment, 10)
    credit = kind in CREDIT_TYPES
    if units.startswith("-"):
        credit, units = True, units[1:]
    fee = _field(segment, 11).lstrip("-")
    outcome = make_charge(
        line,
        patient_id=patient,
        date_of_service=day.isoformat(),
        cpt=code,
        units=units,
        modifiers=_modifiers(segment, separators),
        fee=fee,
        dates=dates,
    )
    if isinstance(outcome, str):
        return outcome
    return Credit(outcome, "") if credit else outcome
