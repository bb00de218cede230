"""Charges from X12 837 claim files (005010: 837P professional, 837I institutional).

A segment reader of its own: the element separator is the ISA's fourth character,
the component separator ISA16 (position 104) and the segment terminator the character
after it (position 105); line ends after terminators are ignored. The line number of
a charge is its segment's number in the file (the ISA is 1). One service line (SV1 in
837P, SV2 in 837I) is one charge: its HC: code and modifiers, its units (SV104 /
SV205), its charge amount as the fee. The patient is the claim's medical record number
(REF*EA in loop 2300) when given, else the patient's member ID (NM1*QC), else the
subscriber's (NM1*IL). The date of service is the line's DTP*472, else the claim's
DTP*472, else the first date of its statement period (DTP*434, 837I). A void claim
(CLM05-3 = 8) credits its lines; a replacement (7) credits the lines of the earlier
claim with the same CLM01 in the file. Credits are netted against the charges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from rtcode.sources import billing
from rtcode.sources.billing import (
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

_ISA_LENGTH = 106
_MAX_SHOWN = 120
_VOID, _REPLACEMENT = "8", "7"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass
class _Line:
    number: int  # segment number of the SV1/SV2
    text: str
    qualifier: str
    code: str
    modifiers: list[str]
    units: str
    fee: str
    day: str = ""  # DTP*472 of the line


@dataclass
class _Claim:
    number: int  # segment number of the CLM
    control: str  # CLM01, the patient control number
    frequency: str  # CLM05-3
    record: str = ""  # REF*EA
    day: str = ""  # DTP*472 of the claim
    period: str = ""  # DTP*434 (837I statement period), its first date
    lines: list[_Line] = field(default_factory=list)


def _date(element: str) -> str:
    """The first CCYYMMDD of a DTP03 (D8 or RD8)."""
    m = re.match(r"^\s*(\d{8})", element)
    return m.group(1) if m else element.strip()


def parse_x12(data: bytes, source: str = "<x12>") -> Charges:
    """Charges (credits netted) from the bytes of an 837 file; see the module docstring.
    A segment or claim that cannot be used is a rejected row."""
    text, notes = _decode(data)
    text = text.removeprefix("\ufeff").lstrip()
    if not text.startswith("ISA") or len(text) < _ISA_LENGTH:
        reject = RejectedRow(1, "not an X12 interchange: no 106-character ISA segment", "")
        return Charges(source, (), (reject,), {}, tuple(notes), "x12")
    element, component, terminator = text[3], text[104], text[105]
    if len({element, component, terminator}) < 3 or terminator.isalnum():
        reject = RejectedRow(
            1,
            "the ISA segment's separators cannot be read (element, component and segment"
            f" separators {element!r}, {component!r}, {terminator!r})",
            _clip(text[:_ISA_LENGTH]),
        )
        return Charges(source, (), (reject,), {}, tuple(notes), "x12")
    segments = [s.strip("\r\n\t ") for s in text.split(terminator)]
    if segments and not segments[-1]:
        segments.pop()
    if len(segments) > billing.MAX_CHARGE_LINES + 1:
        raise _too_long(source, billing.MAX_CHARGE_LINES + 2)

    reader = _Reader(element, component)
    for number, segment in enumerate(segments, start=1):
        if segment:
            reader.segment(number, segment)
    reader.close_claim()
    if not reader.transactions:
        reader.rejected.append(
            RejectedRow(1, "no 837 transaction set (ST*837) in the interchange: no claims", "")
        )
    charges, credits = reader.charges, reader.credits
    netted, unmatched, netted_notes = net_credits(charges, credits)
    kinds = "/".join(sorted(reader.kinds)) or "no 837"
    notes.append(
        f"read {reader.claims} claim(s) in {reader.transactions} {kinds} transaction(s):"
        f" {len(charges)} charge and {len(credits)} credit service line(s)"
    )
    return Charges(
        source,
        tuple(netted),
        tuple(sorted(reader.rejected + unmatched, key=lambda r: r.line)),
        {},
        tuple(notes + netted_notes),
        "x12",
    )


class _Reader:
    """The state of a walk through the segments: the current subscriber, patient,
    claim and service line."""

    def __init__(self, element: str, component: str) -> None:
        self.element, self.component = element, component
        self.dates = DateReader()
        self.charges: list[Charge] = []
        self.credits: list[Credit] = []
        self.rejected: list[RejectedRow] = []
        self.by_control: dict[str, list[Charge]] = {}
        self.kinds: set[str] = set()
        self.transactions = 0
        self.claims = 0
        self.version = ""
        self.in_837 = False
        self.level = ""  # HL03 of the current hierarchical level
        self.subscriber = ""  # NM1*IL NM109
        self.patient = ""  # NM1*QC NM109
        self.claim: _Claim | None = None

    def segment(self, number: int, text: str) -> None:
        e = text.split(self.element)
        tag = e[0].strip().upper()

        def at(i: int) -> str:
            return e[i].strip() if i < len(e) else ""

        if tag == "GS":
            self.version = at(8)
        elif tag == "ST":
            self.close_claim()
            self.in_837 = at(1) == "837"
            if self.in_837:
                self.transactions += 1
                version = at(3) or self.version
                self.kinds.add(
                    "837I" if "X223" in version else "837P" if "X222" in version else "837"
                )
            self.subscriber = self.patient = self.level = ""
        elif not self.in_837:
            return
        elif tag == "SE":
            self.close_claim()
            self.in_837 = False
        elif tag == "HL":
            self.close_claim()
            self.level = at(3)
            if self.level == "22":
                self.subscriber = self.patient = ""
            elif self.level == "23":
                self.patient = ""
        elif tag == "NM1" and self.claim is None:
            if at(1) == "IL" and self.level == "22":
                self.subscriber = at(9)
            elif at(1) == "QC":
                self.patient = at(9)
        elif tag == "CLM":
            self.close_claim()
            self.claims += 1
            composite = at(5).split(self.component)
            frequency = composite[2].strip() if len(composite) > 2 else ""
            self.claim = _Claim(number, at(1), frequency)
        elif self.claim is None:
            return
        elif tag == "REF" and at(1) == "EA" and not self.claim.lines:
            self.claim.record = at(2)
        elif tag == "DTP" and at(1) == "472":
            if self.claim.lines:
                self.claim.lines[-1].day = _date(at(3))
            else:
                self.claim.day = _date(at(3))
        elif tag == "DTP" and at(1) == "434" and not self.claim.lines:
            self.claim.period = _date(at(3))
        elif tag in ("SV1", "SV2"):
            composite = at(1 if tag == "SV1" else 2).split(self.component)
            parts = [p.strip() for p in composite]
            amount, units = (at(2), at(4)) if tag == "SV1" else (at(3), at(5))
            self.claim.lines.append(
                _Line(
                    number,
                    _clip(text),
                    parts[0].upper() if parts else "",
                    parts[1] if len(parts) > 1 else "",
                    [p for p in parts[2:6] if p],
                    units,
                    amount,
                )
            )

    def close_claim(self) -> None:
        claim, self.claim = self.claim, None
        if claim is None:
            return
        patient = claim.record or self.patient or self.subscriber
        mine: list[Charge] = []
        for line in claim.lines:
            outcome = self._line(claim, line, patient)
            if isinstance(outcome, str):
                self.rejected.append(RejectedRow(line.number, outcome, line.text, patient or None))
            elif claim.frequency == _VOID:
                self.credits.append(Credit(outcome, line.text))
            else:
                mine.append(outcome)
        if claim.frequency == _REPLACEMENT and claim.control:
            for earlier in self.by_control.get(claim.control, []):
                undone = replace(earlier, line=claim.number)
                self.credits.append(Credit(undone, f"replaced by claim {claim.control}"))
        self.charges += mine
        if claim.control and claim.frequency != _VOID:
            self.by_control[claim.control] = mine

    def _line(self, claim: _Claim, line: _Line, patient: str) -> Charge | str:
        if not patient:
            return "no patient: the claim has no REF*EA, NM1*QC or NM1*IL member ID"
        if line.qualifier != "HC":
            return (
                f"procedure qualifier {_q(line.qualifier)} is not HC (CPT or HCPCS);"
                " not a charge rtcode audits"
            )
        raw = line.day or claim.day or claim.period
        day = parse_date(raw) if re.match(r"^\d{8}$", raw) else None
        if day is None:
            where = "DTP*472 (line or claim)" + (", DTP*434" if claim.period else "")
            return f"date of service {_q(raw)} is not a CCYYMMDD date (from {where})"
        return make_charge(
            line.number,
            patient_id=patient,
            date_of_service=day.isoformat(),
            cpt=line.code,
            units=line.units,
            modifiers=line.modifiers,
            fee=line.fee,
            dates=self.dates,
        )
