"""Auditing billed charges against the plans of an export: ``audit``, a pure function
(nothing here reads files). Each patient's plans are grouped into courses (a shared
planning CT or structure set within ``audit.course_window_days``, RTPlanRelationship;
verification plans join the course of the plan they verify and are never billed),
each charge is tied to a course, and each course's charges are checked against the
codes its plans support: the finding kinds of ``KINDS``, each naming its rule and its
source, a section of the project's docs/coding-rules.md (``SOURCES``), with thresholds
and severities from the policy's ``[audit]`` section. rtcode is advisory: a finding
is a question for a coder, never a decision.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rtcode.coding.policy import AUDIT_SEVERITIES, Policy
from rtcode.coding.related import valid_on
from rtcode.model.codes import LABELS, Category
from rtcode.model.facts import Plan, ReadError
from rtcode.model.results import PlanResult
from rtcode.sources.billing import Charge, PtpFile, RejectedRow, parse_date

SEVERITIES = AUDIT_SEVERITIES  # most severe first
RANK = {"info": 0, "warning": 1, "error": 2}

# What each finding kind means, in a coding auditor's words.
KINDS = {
    "billed_not_supported": "code billed that no plan of the course supports",
    "expected_not_billed": "code a plan supports that was not billed",
    "code_higher_than_plan": "higher code billed than the plans support",
    "code_lower_than_plan": "lower code billed than the plans support",
    "bundled_pair": "codes billed together in one course that are bundled",
    "frequency": "code billed more often than its rule allows",
    "charge_before_approval": "charge dated before the plan was approved",
    "charge_timing_unverifiable": "charge date that cannot be checked against the plans",
    "needs_documentation": "code that plan files cannot prove: keep the documents",
    "ncci_ptp": "pair of codes on one date denied by an NCCI PTP edit",
    "code_not_in_force": "code not valid on its date of service",
    "plan_versions_differ": "plan files that share a SOP Instance UID but differ",
    "supported_only_by_unapproved_plan": "code billed that only unapproved plans support",
}

# Rule sources: who sets the rule (CPT, CMS, local policy, DICOM), as the project's
# coding reference says, and its section there (GitHub anchors; a test checks that
# each exists). No source names a file outside the project: a PTP file given with
# --ptp is named in the finding's evidence.
RULES_DOC = "docs/coding-rules.md"


def _source(who: str, anchor: str) -> str:
    return f"{who} ({RULES_DOC}#{anchor})"


SOURCE_CPM = _source(
    "CMS: Medicare Claims Processing Manual ch. 4 s. 200.3.1, [bundling] imrt_bundles",
    "imrt-bundles",
)
SOURCE_ISODOSE_77300 = _source(
    "CPT: isodose planning includes basic dosimetry", "isodose-planning-includes-basic-dosimetry"
)
SOURCE_ONE_ISODOSE = _source(
    "CPT: one isodose plan per course and treatment area", "one-plan-per-course-and-ct"
)
SOURCE_MUE = _source(
    "CMS: medically unlikely edit (MUE) of 77300, [related] max_basic_dosimetry_per_date",
    "basic-dosimetry-per-date-of-service",
)
SOURCE_PLANS = _source(
    "CPT planning codes as rtcode codes the plan files, with local policy settings",
    "billed-codes-against-the-plans",
)
SOURCE_FREQUENCY = _source(
    "CPT and CMS guidance: one 3-D or IMRT plan per course and CT, 77338 once per IMRT plan",
    "one-plan-per-course-and-ct",
)
SOURCE_VALIDITY = _source("CPT and CMS code changes, local policy [validity]", "codes-in-force")
SOURCE_COURSE = _source("local policy: [audit] course_window_days", "what-a-course-is")
SOURCE_APPROVAL = _source(
    "local policy: the plan's DICOM ApprovalStatus and ReviewDate date the plan", "plan-approval"
)
SOURCE_UNAPPROVED = _source("local policy: [approval] flag_statuses", "plan-approval")
SOURCE_VERSIONS = _source("DICOM: one SOP Instance UID names one object", "versions-of-one-plan")
SOURCE_DOCUMENTS = _source(
    "CPT and CMS documentation requirements, local policy [audit] needs_documentation_codes",
    "what-the-files-cannot-prove",
)
SOURCE_PTP = _source("CMS: NCCI procedure-to-procedure edit of the --ptp file", "ncci-ptp-edits")
SOURCES = (
    SOURCE_CPM,
    SOURCE_ISODOSE_77300,
    SOURCE_ONE_ISODOSE,
    SOURCE_MUE,
    SOURCE_PLANS,
    SOURCE_FREQUENCY,
    SOURCE_VALIDITY,
    SOURCE_COURSE,
    SOURCE_APPROVAL,
    SOURCE_UNAPPROVED,
    SOURCE_VERSIONS,
    SOURCE_DOCUMENTS,
    SOURCE_PTP,
)

# Codes whose ranks can be compared: a higher code is more planning work.
FAMILIES = (
    ("77306", "77307", "77295", "77301"),  # teletherapy planning
    ("77316", "77317", "77318"),  # brachytherapy isodose planning
    ("77332", "77333", "77334"),  # treatment devices
)
ISODOSE = ("77306", "77307")
ONE_PER_CT = ("77295", "77301")  # one per course per planning CT, boosts included
# Codes rtcode can read from plan files (planning codes, 77300, 77338, devices); other
# codes (simulation, delivery, management) are checked only by bundling, NCCI and date.
CHECKED = frozenset(LABELS) | {"77300", "77338", "77332", "77333", "77334"}
# Our own short labels of the codes reported beside the planning code.
RELATED_LABELS = {
    "77300": "basic dosimetry",
    "77338": "MLC device for IMRT",
    "77332": "treatment device, simple",
    "77333": "treatment device, intermediate",
    "77334": "treatment device, complex",
}


# ------------------------------------------------------------------------ results


@dataclass(frozen=True, eq=False)
class CoursePlan:
    result: PlanResult
    # "billable", "not_billable" (QA, research, no code), "verification" (verifies a
    # plan of the course) or "other_version" (shares its SOPInstanceUID with the
    # version that was audited)
    role: str
    expected: tuple[tuple[str, int], ...]  # the codes the plan supports, with units
    note: str | None = None

    @property
    def plan(self) -> Plan:
        return self.result.linked.plan


@dataclass(frozen=True, eq=False)
class Course:
    id: str
    patient_id: str | None
    plans: tuple[CoursePlan, ...]
    reasons: tuple[str, ...]  # why these plans are one course
    notes: tuple[str, ...]  # what a reviewer should know about the course
    first_date: dt.date | None
    last_date: dt.date | None
    planning_cts: int  # distinct frames of reference of the billable plans
    charge_lines: tuple[int, ...]

    def billable(self) -> list[CoursePlan]:
        return [p for p in self.plans if p.role == "billable"]

    def expected(self) -> Counter[str]:
        """The codes the course's plans support; 77295 and 77301 at most once per planning
        CT (a boost on the same CT is part of the course's plan)."""
        total: Counter[str] = Counter()
        for cp in self.billable():
            for code, units in cp.expected:
                total[code] += units
        for code in ONE_PER_CT:
            total[code] = min(total[code], self.planning_cts)
        return +total


@dataclass(frozen=True)
class Assignment:
    course: str | None  # course id; None when the patient has no plan in the export
    how: str  # how the charge was tied to the course, in words
    outside_window: bool = False


# Units of one charge at stake: (line, first unit, number of units); units are counted
# from 0 in the row, so two findings about one row can be told apart unit by unit.
Stake = tuple[int, int, int]


def _row_fee(c: Charge, units: int) -> Decimal | None:
    """The fee of ``units`` units of a charge: the row's fee / its units x ``units``
    (the whole row's fee, exactly, when every unit is at stake)."""
    if c.fee is None:
        return None
    return c.fee if units >= c.units else c.fee * units / c.units


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    rule: str  # rule id
    source: str  # where the rule comes from
    patient_id: str | None
    course: str | None
    codes: tuple[str, ...]  # billed or expected codes involved
    message: str
    evidence: tuple[str, ...]
    charges: tuple[Charge, ...] = ()
    plans: tuple[str, ...] = ()  # plan file paths
    setting: str | None = None  # the policy key that set a threshold, if any
    # The units at stake (the bundled code, the units past a frequency limit, the units
    # no plan supports, the column 2 code); None: every unit of the finding's charges.
    stake: tuple[Stake, ...] | None = None

    @property
    def at_stake(self) -> tuple[int, ...] | None:
        """Lines of the charges with units at stake; None: all the charges."""
        if self.stake is None:
            return None
        return tuple(dict.fromkeys(line for line, _, n in self.stake if n > 0))

    def units_at_stake(self) -> list[tuple[Charge, int, int]]:
        """(charge, first unit, units) of the units at stake, in file order."""
        if self.stake is None:
            return [(c, 0, c.units) for c in self.charges]
        by_line = {c.line: c for c in self.charges}  # a dict: a lookup in a tuple is linear
        return [(by_line[line], first, n) for line, first, n in self.stake if n > 0]

    def charges_at_stake(self) -> tuple[Charge, ...]:
        seen: dict[int, Charge] = {}
        for c, _, _ in self.units_at_stake():
            seen.setdefault(c.line, c)
        return tuple(seen.values())

    @property
    def fee(self) -> Decimal | None:
        """The fee of the units at stake (units x the row's fee / its units); None when
        their charges carry no fee."""
        fees = [f for c, _, n in self.units_at_stake() if (f := _row_fee(c, n)) is not None]
        return sum(fees, Decimal(0)) if fees else None

    @property
    def fee_basis(self) -> str | None:
        """How ``fee`` was computed, charge by charge; None when no charge has a fee."""
        parts = []
        for c, _, n in self.units_at_stake():
            if c.fee is None:
                parts.append(f"line {c.line}: no fee")
            elif c.units == 1:
                parts.append(f"line {c.line}: the row's fee {c.fee:,.2f}")
            else:
                unit = c.fee / c.units
                parts.append(
                    f"line {c.line}: {n} of {c.units} units x {unit:,.2f}"
                    f" (row fee {c.fee:,.2f} / {c.units}) = {_row_fee(c, n):,.2f}"
                )
        if self.fee is None:
            return None
        if len(parts) > 1:
            parts.append(f"total {self.fee:,.2f}")
        return "; ".join(parts)

    def whole_rows(self) -> bool:
        """Whether every charge at stake is at stake with all its units."""
        return all(n >= c.units for c, _, n in self.units_at_stake())


@dataclass(frozen=True, eq=False)
class AuditResult:
    policy: Policy
    courses: tuple[Course, ...]
    findings: tuple[Finding, ...]
    charges: tuple[Charge, ...]
    assignments: Mapping[int, Assignment]
    rejected: tuple[RejectedRow, ...] = ()
    ptp: PtpFile | None = None
    charges_source: str = ""
    plans_scanned: int = 0
    notes: tuple[str, ...] = ()
    errors: tuple[ReadError, ...] = ()  # files the scan could not read
    charges_format: str | None = None  # how the charges source was read (billing.Charges)
    # What the charges source held before --patient: every accepted charge and every
    # rejected row (``charges`` and ``rejected`` are those of the patients asked for).
    charges_read: int | None = None
    rows_rejected: int | None = None
    patients: tuple[str, ...] | None = None  # the --patient filter, when one was given
    # Lines of the rejected rows kept under a patient filter because no patient ID
    # could be read from them.
    rejected_without_patient: tuple[int, ...] = ()

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def at_or_above(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if RANK[f.severity] >= RANK[severity]]

    def fees_by_severity(self) -> dict[str, Decimal] | None:
        """Fees of the units at stake in findings. Each unit of a charge is counted once,
        under the most severe finding that puts it at stake: a charge in several findings
        (a second 77301 both past the frequency limit and unsupported) is not counted
        twice, within a severity or across them. None when no charge carries a fee."""
        if not any(c.fee is not None for c in self.charges):
            return None
        spans: dict[int, tuple[Charge, list[tuple[int, int, int]]]] = {}
        for f in self.findings:
            for c, first, n in f.units_at_stake():
                spans.setdefault(c.line, (c, []))[1].append((RANK[f.severity], first, first + n))
        out = {s: Decimal(0) for s in SEVERITIES}
        for c, items in spans.values():
            if c.fee is None:
                continue
            covered: list[tuple[int, int]] = []
            for rank, start, end in sorted(items, key=lambda t: -t[0]):
                new = _uncovered(start, end, covered)
                if new:
                    out[SEVERITIES[2 - rank]] += _row_fee(c, new) or Decimal(0)
                    covered.append((start, end))
        return out


def _uncovered(start: int, end: int, covered: Sequence[tuple[int, int]]) -> int:
    """How many of the units start..end-1 no interval of ``covered`` holds."""
    points = sorted((max(a, start), min(b, end)) for a, b in covered if a < end and b > start)
    total, at = 0, start
    for a, b in points:
        if a > at:
            total += a - at
        at = max(at, b)
    return total + max(end - at, 0)


# ------------------------------------------------------------------------ helpers


def _day(text: str | None) -> dt.date | None:
    return parse_date(text[:8]) if text and len(text) >= 8 else None


def approval_day(plan: Plan) -> dt.date | None:
    """The ReviewDate of an APPROVED plan; None when not approved or not recorded."""
    if (plan.approval_status or "").strip().upper() != "APPROVED":
        return None
    return _day(plan.review_date)


def in_ranges(code: str, ranges: Iterable[str]) -> bool:
    """'77290' in ['77280-77295'] -> True (inclusive ranges of numeric codes)."""
    if not code.isdigit():
        return False
    for item in ranges:
        low, _, high = item.partition("-")
        if low.isdigit() and int(low) <= int(code) <= int(high or low):
            return True
    return False


def expected_codes(result: PlanResult) -> tuple[tuple[str, int], ...]:
    """The codes a plan supports: its planning code and the related codes it reports
    (kind "code", more than 0 units)."""
    c = result.classification
    if c.code is None or c.category in (Category.NOT_BILLABLE, Category.UNDETERMINED):
        return ()
    out: dict[str, int] = {c.code: 1}
    for r in result.related:
        if r.kind == "code" and r.units and r.code.isdigit():
            if r.code == c.code:
                out[r.code] = max(out[r.code], r.units)
            else:
                out[r.code] = out.get(r.code, 0) + r.units
    return tuple(out.items())


def _label(code: str) -> str:
    text = LABELS.get(code) or RELATED_LABELS.get(code)
    return f"{code} ({text})" if text else code


def _name(plan: Plan) -> str:
    return f"{plan.label or '-'} ({plan.path})"


def _units(code: str, units: int) -> str:
    return f"{code} x{units}" if units != 1 else code


def _charge_text(c: Charge) -> str:
    mods = f" modifiers {' '.join(c.modifiers)}" if c.modifiers else ""
    plan = f" plan {c.plan!r}" if c.plan else ""
    return f"line {c.line}: {c.date_of_service.isoformat()} {_units(c.cpt, c.units)}{mods}{plan}"


def _take(rows: Sequence[Charge], skip: int, take: int | None = None) -> tuple[Stake, ...]:
    """The units of ``rows`` (in file order) after the first ``skip``, ``take`` of them
    (all when None)."""
    out: list[Stake] = []
    at = 0
    left = take
    for c in sorted(rows, key=lambda c: c.line):
        first = max(skip - at, 0)
        at += c.units
        n = c.units - first
        if left is not None:
            n = min(n, left)
        if n > 0:
            out.append((c.line, first, n))
            if left is not None:
                left -= n
    return tuple(out)


def _beyond(rows: Sequence[Charge], allowed: int) -> tuple[Stake, ...]:
    """The units that take ``rows`` past ``allowed`` (in file order)."""
    return _take(rows, allowed)


def _whole(rows: Iterable[Charge]) -> tuple[Stake, ...]:
    return tuple((c.line, 0, c.units) for c in rows)


def plan_summary(cp: CoursePlan) -> str:
    """One sentence on what a plan supports, with the reasons rtcode gave."""
    plan, c = cp.plan, cp.result.classification
    if cp.role == "verification":
        return f"{_name(plan)}: verification plan (intent {plan.intent}), never billed"
    if cp.role == "not_billable":
        why = f"intent {plan.intent}" if c.category is Category.NOT_BILLABLE else "no code"
        return f"{_name(plan)}: not billable ({why}: {c.category.value})"
    reasons = [e.finding for e in c.deciding_evidence()][:2]
    text = f"{_name(plan)}: {_label(c.code or '-')}"
    if reasons:
        text += " because " + "; ".join(reasons)
    others = [_units(code, u) for code, u in cp.expected if code != c.code]
    if others:
        text += "; with " + ", ".join(others)
    for a in c.alternatives:
        text += f"; alternative {a.code} {a.condition}"
    if cp.role == "other_version":
        text += " (another version of an audited plan: not counted)"
    return text


class _Findings:
    def __init__(self, policy: Policy) -> None:
        self.severity = policy["audit.severity"]
        self.items: list[Finding] = []

    def add(self, kind: str, rule: str, source: str, **kw: Any) -> None:
        """A finding of ``kind``, with the severity the policy gives it; ``kw`` are the
        other fields of ``Finding`` (its charges in any order)."""
        charges = tuple(sorted(kw.pop("charges", ()), key=lambda c: c.line))
        self.items.append(
            Finding(
                kind=kind,
                severity=self.severity[kind],
                rule=rule,
                source=source,
                charges=charges,
                **kw,
            )
        )


# ----------------------------------------------------------------------- courses


@dataclass(eq=False)
class _Draft:
    patient_id: str | None
    members: list[PlanResult]
    reasons: list[str]
    verification: list[tuple[PlanResult, str]] = field(default_factory=list)
    id: str = ""


def _role(pr: PlanResult) -> str:
    c = pr.classification
    return (
        "not_billable"
        if c.code is None or c.category in (Category.NOT_BILLABLE, Category.UNDETERMINED)
        else "billable"
    )


def group_courses(plans: Sequence[PlanResult], policy: Policy) -> list[_Draft]:
    window = policy["audit.course_window_days"]
    same = {r.upper() for r in policy["audit.same_course_relationships"]}
    verifies = {r.upper() for r in policy["audit.verification_relationships"]}
    by_uid: dict[str, list[PlanResult]] = defaultdict(list)
    for pr in plans:
        if pr.linked.plan.sop_instance_uid:
            by_uid[pr.linked.plan.sop_instance_uid].append(pr)

    # Verification plans go with the plan they verify (often on a phantom, under
    # another patient ID), when that plan is in the export.
    verification: list[tuple[PlanResult, PlanResult, str]] = []
    rest: list[PlanResult] = []
    for pr in plans:
        target = None
        if pr.classification.category is Category.NOT_BILLABLE:
            for ref in pr.linked.plan.referenced_plans:
                rel = (ref.relationship or "").upper()
                if rel in verifies:
                    found = [t for t in by_uid.get(ref.sop_instance_uid, []) if t is not pr]
                    if found:
                        target = (found[0], rel)
                        break
        if target is None:
            rest.append(pr)
        else:
            verification.append((pr, target[0], target[1]))

    drafts: list[_Draft] = []
    patients: dict[str | None, list[PlanResult]] = defaultdict(list)
    for pr in rest:
        patients[pr.linked.plan.patient_id].append(pr)
    for patient_id, members in patients.items():
        drafts += _group_patient(patient_id, members, window, same)

    home = {id(pr): d for d in drafts for pr in d.members}
    for pr, verified, rel in verification:
        draft = home.get(id(verified))
        if draft is None:  # the verified plan is itself a verification plan
            drafts.append(
                _Draft(pr.linked.plan.patient_id, [pr], ["verification plan of a QA plan"])
            )
            continue
        why = f"{_name(pr.linked.plan)} names {_name(verified.linked.plan)} as {rel}"
        if pr.linked.plan.patient_id != verified.linked.plan.patient_id:
            why += f" (the verification plan is on patient ID {pr.linked.plan.patient_id!r})"
        draft.verification.append((pr, why))

    # Number the courses per patient by date.
    def start(d: _Draft) -> tuple[dt.date, str]:
        days = [x for x in (_day(p.linked.plan.date) for p in d.members) if x is not None]
        return (min(days) if days else dt.date.max, min(p.linked.plan.path for p in d.members))

    counters: Counter[str | None] = Counter()
    drafts.sort(key=lambda d: (d.patient_id or "", start(d)))
    for d in drafts:
        counters[d.patient_id] += 1
        d.id = f"{d.patient_id or '?'}/{counters[d.patient_id]}"
    return drafts


def _group_patient(
    patient_id: str | None, members: list[PlanResult], window: int, same: set[str]
) -> list[_Draft]:
    parent = list(range(len(members)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links: list[tuple[int, int, str]] = []
    for i, a in enumerate(members):
        pa = a.linked.plan
        for j in range(i + 1, len(members)):
            pb = members[j].linked.plan
            why = _link(pa, pb, window, same)
            if why:
                links.append((i, j, why))
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(members)):
        groups[find(i)].append(i)
    drafts = []
    for idx in groups.values():
        reasons = [why for i, j, why in links if find(i) == find(idx[0])]
        if not reasons:
            if len(members) == 1:
                reasons = ["the patient's only plan in the export"]
            else:
                reasons = [
                    "no other plan of the patient shares its planning CT or structure set"
                    f" within {window} days or names it in RTPlanRelationship"
                ]
        drafts.append(_Draft(patient_id, [members[i] for i in idx], reasons))
    return drafts


def _link(a: Plan, b: Plan, window: int, same: set[str]) -> str | None:
    """Why plans a and b are one course, or None."""
    if a.sop_instance_uid and a.sop_instance_uid == b.sop_instance_uid:
        return f"{_name(a)} and {_name(b)} share SOPInstanceUID (versions of one plan)"
    for x, y in ((a, b), (b, a)):
        for ref in x.referenced_plans:
            rel = (ref.relationship or "").upper()
            if ref.sop_instance_uid == y.sop_instance_uid and rel in same:
                return f"{_name(x)} names {_name(y)} as {rel} (RTPlanRelationship)"
    same_ct = a.frame_of_reference_uid and a.frame_of_reference_uid == b.frame_of_reference_uid
    same_ss = (
        a.referenced_structure_set_uid
        and a.referenced_structure_set_uid == b.referenced_structure_set_uid
    )
    if not (same_ct or same_ss):
        return None
    what = " and ".join(
        w
        for w, ok in (("planning CT (frame of reference)", same_ct), ("structure set", same_ss))
        if ok
    )
    da, db = _day(a.date), _day(b.date)
    if da is None or db is None:
        return f"{_name(a)} and {_name(b)}: same {what}; a plan date is missing"
    apart = abs((da - db).days)
    if apart > window:
        return None
    return f"{_name(a)} and {_name(b)}: same {what}, dated {apart} day(s) apart (within {window})"


# -------------------------------------------------------------------- assignment


def _assign(charge: Charge, drafts: list[_Draft], window: int) -> tuple[_Draft | None, Assignment]:
    if not drafts:
        return None, Assignment(None, "no plan of this patient in the export")
    note = ""
    if charge.plan:
        wanted = charge.plan.strip()
        for d in drafts:
            for pr in d.members + [v for v, _ in d.verification]:
                p = pr.linked.plan
                if p.sop_instance_uid == wanted or (
                    p.label and p.label.strip().casefold() == wanted.casefold()
                ):
                    how = f"the row names plan {wanted!r}"
                    days = [x for x in (_day(m.linked.plan.date) for m in d.members) if x]
                    late = (charge.date_of_service - max(days)).days if days else 0
                    if late > window:
                        how += (
                            f", dated {late} days after the course's last plan, beyond the"
                            f" {window}-day window"
                        )
                    return d, Assignment(d.id, how, outside_window=late > window)
        note = f"plan {wanted!r} is not among the patient's plans; "
    billable = [d for d in drafts if any(_role(p) == "billable" for p in d.members)] or drafts
    dated = []
    for d in billable:
        days = [x for x in (_day(p.linked.plan.date) for p in d.members) if x is not None]
        if days:
            dated.append((min(days), max(days), d))
    if not dated:
        return billable[0], Assignment(billable[0].id, note + "the course's plans carry no date")
    day = charge.date_of_service
    inside = [t for t in dated if t[0] <= day <= t[1] + dt.timedelta(days=window)]
    if inside:
        first, _, d = max(inside, key=lambda t: t[0])
        return d, Assignment(d.id, note + f"dated within the course (window {window} days)")
    after = [t for t in dated if day > t[1]]
    if after:
        _, last, d = max(after, key=lambda t: t[1])
        return d, Assignment(
            d.id,
            note + f"dated {(day - last).days} days after the course's last plan,"
            f" beyond the {window}-day window",
            outside_window=True,
        )
    first, _, d = min(dated, key=lambda t: t[0])
    return d, Assignment(
        d.id, note + f"dated {(first - day).days} day(s) before the course's first plan"
    )


def _choose_versions(draft: _Draft, billed: Counter[str]) -> tuple[list[CoursePlan], list[str]]:
    """Course plans with roles; of plan files that share a SOPInstanceUID, the version
    whose codes match the billed codes best is audited, the others are listed."""
    notes: list[str] = []
    groups: dict[str, list[PlanResult]] = defaultdict(list)
    for pr in draft.members:
        groups[pr.linked.plan.sop_instance_uid or f"#{id(pr)}"].append(pr)
    out: list[CoursePlan] = []
    for versions in groups.values():
        billable = [v for v in versions if _role(v) == "billable"]
        chosen = None
        if billable:

            def score(v: PlanResult) -> int:
                return sum(min(billed[c], u) for c, u in expected_codes(v))

            chosen = max(billable, key=score)  # first of the best: files are in path order
        for v in versions:
            role = _role(v)
            if role == "billable" and v is not chosen:
                role = "other_version"
            out.append(CoursePlan(v, role, expected_codes(v)))
        if len(versions) > 1 and chosen is not None:
            others = ", ".join(
                f"{v.linked.plan.path} ({v.classification.code or 'no code'})"
                for v in versions
                if v is not chosen
            )
            notes.append(
                f"{len(versions)} plan files share SOPInstanceUID"
                f" {chosen.linked.plan.sop_instance_uid}: audited {chosen.linked.plan.path}"
                f" ({chosen.classification.code}), the version closest to the billed codes;"
                f" also in the export: {others}. Confirm which version was delivered."
            )
    for pr, why in draft.verification:
        out.append(CoursePlan(pr, "verification", (), why))
    out.sort(key=lambda cp: (cp.role == "verification", cp.plan.date or "", cp.plan.path))
    return out, notes


# ------------------------------------------------------------------------- audit


def audit(
    plans: Sequence[PlanResult],
    charges: Sequence[Charge],
    policy: Policy,
    *,
    ptp: PtpFile | None = None,
    rejected: Sequence[RejectedRow] = (),
    charges_source: str = "",
    errors: Sequence[ReadError] = (),
    patients: Iterable[str] | None = None,
    notes: Sequence[str] = (),
    charges_format: str | None = None,
) -> AuditResult:
    """Compare the charges with the plans; see the module docstring. ``patients``
    limits every section to those patient IDs: courses, charges, findings, and the
    rejected rows whose patient ID could be read (``rejected_patient``); a rejected
    row without one is kept, its line listed in ``rejected_without_patient``."""
    drafts = group_courses(plans, policy)
    f = _Findings(policy)
    assignments, course_charges, unassigned = _assign_all(charges, drafts, policy)

    # 77300 at most N per date of service (MUE), per patient over all courses.
    _basic_dosimetry_mue(charges, assignments, policy, f)

    courses = []
    for d in drafts:
        mine = course_charges.get(d.id, [])
        billed: Counter[str] = Counter()
        for c in mine:
            billed[c.cpt] += c.units
        cplans, course_notes = _choose_versions(d, billed)
        course = _course(d, cplans, course_notes, mine)
        courses.append(course)
        _course_findings(course, mine, assignments, policy, f)
        _version_findings(course, mine, f)

    for patient_id, mine in unassigned.items():
        _unassigned_findings(patient_id, mine, plans, policy, f)

    _validity_findings(charges, assignments, policy, f)
    if ptp is not None:
        _ptp_findings(charges, assignments, ptp, policy, f)

    findings = sorted(
        f.items,
        key=lambda x: (
            -RANK[x.severity],
            x.patient_id or "",
            x.course or "",
            x.kind,
            min((c.line for c in x.charges), default=0),
        ),
    )
    all_notes = list(notes)
    checked = sorted(charges, key=lambda c: c.line)
    kept_rejected = list(rejected)
    without_patient: list[int] = []
    wanted: tuple[str, ...] | None = None
    if patients is not None:
        keep = set(patients)
        wanted = tuple(sorted(keep))
        courses = [c for c in courses if c.patient_id in keep]
        findings = [x for x in findings if x.patient_id in keep]
        checked = [c for c in checked if c.patient_id in keep]
        kept_rejected = []
        for r in rejected:
            who = rejected_patient(r)
            if who is None:
                without_patient.append(r.line)
            if who is None or who in keep:
                kept_rejected.append(r)
        all_notes.append("limited to patient(s) " + ", ".join(wanted))
        if without_patient:
            all_notes.append(
                f"{len(without_patient)} rejected row(s) kept whatever the patient: no patient"
                " ID could be read from them"
            )
    return AuditResult(
        policy=policy,
        courses=tuple(courses),
        findings=tuple(findings),
        charges=tuple(checked),
        assignments=assignments,
        rejected=tuple(kept_rejected),
        ptp=ptp,
        charges_source=charges_source,
        plans_scanned=len(plans),
        notes=tuple(all_notes),
        errors=tuple(errors),
        charges_format=charges_format,
        charges_read=len(charges),
        rows_rejected=len(rejected),
        patients=wanted,
        rejected_without_patient=tuple(without_patient),
    )


def rejected_patient(row: RejectedRow) -> str | None:
    """The patient ID the billing reader read from a rejected row (its ``patient_id``,
    when the reader records one and it is not blank), else None: a row whose patient
    cannot be read belongs to no patient and is kept under any patient filter."""
    value = getattr(row, "patient_id", None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _assign_all(
    charges: Sequence[Charge], drafts: list[_Draft], policy: Policy
) -> tuple[dict[int, Assignment], dict[str, list[Charge]], dict[str, list[Charge]]]:
    """Each charge tied to a course of its patient (``_assign``), in file order: the
    assignment of each line, the charges of each course, and per patient the charges
    of patients with no plan in the export."""
    window = policy["audit.course_window_days"]
    by_patient: dict[str | None, list[_Draft]] = defaultdict(list)
    for d in drafts:
        by_patient[d.patient_id].append(d)
    assignments: dict[int, Assignment] = {}
    course_charges: dict[str, list[Charge]] = defaultdict(list)
    unassigned: dict[str, list[Charge]] = defaultdict(list)
    for c in sorted(charges, key=lambda c: c.line):
        draft, a = _assign(c, by_patient.get(c.patient_id, []), window)
        assignments[c.line] = a
        if draft is None:
            unassigned[c.patient_id].append(c)
        else:
            course_charges[draft.id].append(c)
    return assignments, course_charges, unassigned


def _validity_findings(
    charges: Sequence[Charge], assignments: Mapping[int, Assignment], policy: Policy, f: _Findings
) -> None:
    """Codes not valid on their date of service (the policy's ``[validity]``)."""
    for c in charges:
        ok, why = valid_on(c.cpt, c.date_of_service, policy)
        if not ok:
            f.add(
                "code_not_in_force",
                "code_validity",
                SOURCE_VALIDITY,
                patient_id=c.patient_id,
                course=assignments[c.line].course,
                codes=(c.cpt,),
                message=f"{c.cpt} billed on {c.date_of_service.isoformat()}: {why}",
                evidence=(_charge_text(c), f"policy validity of {c.cpt}: {why}"),
                charges=(c,),
                setting=f"validity.{c.cpt}",
            )


def _course(d: _Draft, cplans: list[CoursePlan], notes: list[str], mine: list[Charge]) -> Course:
    billable = [cp for cp in cplans if cp.role == "billable"]
    scope = billable or [cp for cp in cplans if cp.role != "verification"]
    days = [x for x in (_day(cp.plan.date) for cp in scope) if x is not None]
    cts = {cp.plan.frame_of_reference_uid for cp in billable if cp.plan.frame_of_reference_uid}
    for cp in billable:
        status = (cp.plan.approval_status or "absent").strip().upper()
        if status != "APPROVED":
            day = _day(cp.plan.date)
            short = f"{cp.plan.label or '-'} ({os.path.basename(cp.plan.path)})"
            notes.append(
                f"{short} is {status} in the export: its charges were checked against its"
                f" RTPlanDate ({day.isoformat() if day else 'absent'}), not an approval date"
            )
    if len(cts) > 1:
        notes.append(f"{len(cts)} planning CTs (frames of reference) in this course")
    for code in ONE_PER_CT:
        n = sum(1 for cp in billable if any(c == code for c, _ in cp.expected))
        if n > max(len(cts), 1):
            notes.append(
                f"{n} plans support {code} on {max(len(cts), 1)} planning CT(s): {code} is"
                f" expected once per course per CT ({RULES_DOC}#one-plan-per-course-and-ct)"
            )
    return Course(
        id=d.id,
        patient_id=d.patient_id,
        plans=tuple(cplans),
        reasons=tuple(d.reasons + [why for _, why in d.verification]),
        notes=tuple(notes),
        first_date=min(days) if days else None,
        last_date=max(days) if days else None,
        planning_cts=max(len(cts), 1) if billable else 0,
        charge_lines=tuple(c.line for c in mine),
    )


def _basic_dosimetry_mue(
    charges: Sequence[Charge], assignments: Mapping[int, Assignment], policy: Policy, f: _Findings
) -> None:
    cap = policy["related.max_basic_dosimetry_per_date"]
    per_day: dict[tuple[str, dt.date], list[Charge]] = defaultdict(list)
    for c in charges:
        if c.cpt == "77300":
            per_day[(c.patient_id, c.date_of_service)].append(c)
    for (patient_id, day), rows in sorted(per_day.items()):
        units = sum(c.units for c in rows)
        if units <= cap:
            continue
        course = assignments[rows[0].line].course
        f.add(
            "frequency",
            "basic_dosimetry_per_date",
            SOURCE_MUE,
            patient_id=patient_id,
            course=course,
            codes=("77300",),
            message=f"77300 billed {units} times on {day.isoformat()}: at most {cap} per date"
            " of service",
            evidence=tuple(_charge_text(c) for c in rows),
            charges=rows,
            stake=_beyond(rows, cap),
            setting="related.max_basic_dosimetry_per_date",
        )


@dataclass(frozen=True, eq=False)
class _CourseCharges:
    """One course with the charges assigned to it, as each course check reads them."""

    course: Course
    mine: list[Charge]
    billable: list[CoursePlan]
    plan_text: tuple[str, ...]  # plan_summary of every plan of the course
    paths: tuple[str, ...]  # every plan file of the course
    by_code: dict[str, list[Charge]]  # the charges of each code, in file order
    billed: Counter[str]  # units billed per code
    expected: Counter[str]  # units the plans support per code (Course.expected)
    supporting: dict[str, list[CoursePlan]]  # the billable plans supporting each code

    @property
    def common(self) -> dict[str, str | None]:
        return {"patient_id": self.course.patient_id, "course": self.course.id}

    @property
    def iso_rows(self) -> list[Charge]:
        """The isodose planning charges (77306, 77307), by code."""
        return [c for code in ISODOSE for c in self.by_code.get(code, [])]


def _course_charges(course: Course, mine: list[Charge]) -> _CourseCharges:
    billable = course.billable()
    by_code: dict[str, list[Charge]] = defaultdict(list)
    for c in mine:
        by_code[c.cpt].append(c)
    supporting: dict[str, list[CoursePlan]] = defaultdict(list)
    for cp in billable:
        for code, _ in cp.expected:
            supporting[code].append(cp)
    return _CourseCharges(
        course=course,
        mine=mine,
        billable=billable,
        plan_text=tuple(plan_summary(cp) for cp in course.plans),
        paths=tuple(cp.plan.path for cp in course.plans),
        by_code=by_code,
        billed=Counter({code: sum(c.units for c in rows) for code, rows in by_code.items()}),
        expected=course.expected(),
        supporting=supporting,
    )


def _course_findings(
    course: Course,
    mine: list[Charge],
    assignments: Mapping[int, Assignment],
    policy: Policy,
    f: _Findings,
) -> None:
    """The course's findings. Every check runs on every charge: a charge past a
    frequency limit is also checked against the plans (a second 77301 for a 3-D plan is
    both), so one charge may be in findings of several kinds, each with its units."""
    cc = _course_charges(course, mine)
    bundled = _bundling_findings(cc, policy, f)
    _frequency_findings(cc, f)
    _billed_against_supported(cc, bundled, policy, f)
    _unapproved_support(cc, bundled, policy, f)
    _timing(course, mine, assignments, cc.supporting, f)
    _needs_documentation(course, mine, bundled, policy, f)


def _bundling_findings(cc: _CourseCharges, policy: Policy, f: _Findings) -> set[int]:
    """Bundled pairs: codes billed with 77301 that IMRT planning bundles, and 77300 with
    isodose planning. Returns the lines of the bundled charges: a bundled code is
    reported as bundled, not also as unsupported or as needing documents."""
    by_code = cc.by_code
    bundles = policy["bundling.imrt_bundles"]
    bundled: set[int] = set()
    if by_code.get("77301"):
        for code in sorted(by_code):
            if code != "77301" and in_ranges(code, bundles):
                rows = by_code[code]
                bundled.update(c.line for c in rows)
                f.add(
                    "bundled_pair",
                    "imrt_bundle",
                    SOURCE_CPM,
                    codes=("77301", code),
                    message=f"{_label(code)} billed in a course with IMRT planning 77301: it is"
                    " bundled into 77301 when part of developing the IMRT plan",
                    evidence=tuple(_charge_text(c) for c in by_code["77301"] + rows) + cc.plan_text,
                    charges=by_code["77301"] + rows,
                    stake=_whole(rows),
                    plans=cc.paths,
                    setting="bundling.imrt_bundles",
                    **cc.common,
                )
    iso_rows = cc.iso_rows
    if iso_rows and by_code.get("77300"):
        rows = by_code["77300"]
        bundled.update(c.line for c in rows)
        iso_codes = tuple(sorted({c.cpt for c in iso_rows}))
        f.add(
            "bundled_pair",
            "isodose_includes_basic_dosimetry",
            SOURCE_ISODOSE_77300,
            codes=(*iso_codes, "77300"),
            message=f"77300 billed with isodose planning {'/'.join(iso_codes)}: basic"
            " dosimetry is included in 77306/77307 and never billed with them",
            evidence=tuple(_charge_text(c) for c in iso_rows + rows) + cc.plan_text,
            charges=iso_rows + rows,
            stake=_whole(rows),
            plans=cc.paths,
            **cc.common,
        )
    return bundled


def _frequency_findings(cc: _CourseCharges, f: _Findings) -> None:
    """Codes billed more often than their rule allows in one course: 77301 and 77295
    once per planning CT, one isodose plan per area, 77338 once per IMRT plan."""
    billed, by_code = cc.billed, cc.by_code
    cts = cc.course.planning_cts
    for code, rule, what in (
        ("77301", "one_imrt_plan_per_ct", "IMRT plan"),
        ("77295", "one_3d_plan_per_ct", "3-D plan"),
    ):
        if billed[code] > max(cts, 1):
            f.add(
                "frequency",
                rule,
                SOURCE_FREQUENCY,
                codes=(code,),
                message=f"{code} billed {billed[code]} times in one course with {max(cts, 1)}"
                f" planning CT(s): one {what} per course per CT dataset, boosts included;"
                " a second needs a new planning CT",
                evidence=tuple(_charge_text(c) for c in by_code[code]) + cc.plan_text,
                charges=by_code[code],
                stake=_beyond(by_code[code], max(cts, 1)),
                plans=cc.paths,
                **cc.common,
            )
    iso_rows = cc.iso_rows
    iso_billed = sum(billed[c] for c in ISODOSE)
    iso_plans = sum(1 for cp in cc.billable if cp.result.classification.code in ISODOSE)
    if iso_billed > max(iso_plans, 1):
        f.add(
            "frequency",
            "one_isodose_plan_per_area",
            SOURCE_ONE_ISODOSE,
            codes=tuple(c for c in ISODOSE if billed[c]),
            message=f"{iso_billed} isodose plans (77306/77307) billed in one course with"
            f" {iso_plans} isodose plan(s) in the export: one isodose plan per course per"
            " treatment area",
            evidence=tuple(_charge_text(c) for c in iso_rows) + cc.plan_text,
            charges=iso_rows,
            stake=_beyond(iso_rows, max(iso_plans, 1)),
            plans=cc.paths,
            **cc.common,
        )
    imrt_plans = sum(1 for cp in cc.billable if cp.result.classification.category is Category.IMRT)
    if imrt_plans and billed["77338"] > imrt_plans:
        f.add(
            "frequency",
            "one_77338_per_imrt_plan",
            SOURCE_FREQUENCY,
            codes=("77338",),
            message=f"77338 billed {billed['77338']} times for {imrt_plans} IMRT plan(s):"
            " the MLC device for IMRT is billed once per IMRT plan",
            evidence=tuple(_charge_text(c) for c in by_code["77338"]) + cc.plan_text,
            charges=by_code["77338"],
            stake=_beyond(by_code["77338"], imrt_plans),
            plans=cc.paths,
            **cc.common,
        )


class _Units:
    """The units billed beyond what the plans support (``billed``) and supported beyond
    what was billed (``expected``), per code, and the charges they come from. The units
    of each code are taken in file order: first those the plans support, then those
    billed for a plan's other code, then those no plan supports."""

    def __init__(self, cc: _CourseCharges, bundled: set[int], bundles: list[str]) -> None:
        billed, expected = cc.billed, cc.expected
        # A plan that supports IMRT planning makes the bundled codes of other plans of
        # the course not billable, so they are not expected.
        imrt_in_course = expected["77301"] > 0
        self.billed: Counter[str] = Counter()
        self.expected: Counter[str] = Counter()
        for code in set(billed) | set(expected):
            if code not in CHECKED:
                continue
            n = min(billed[code], expected[code])
            if billed[code] > n and not all(c.line in bundled for c in cc.by_code[code]):
                self.billed[code] = billed[code] - n
            if expected[code] > n and not (
                imrt_in_course and code != "77301" and in_ranges(code, bundles)
            ):
                self.expected[code] = expected[code] - n
        self._by_code = cc.by_code
        self._bundled = bundled
        self._used: Counter[str] = Counter(
            {code: min(billed[code], expected[code]) for code in self.billed}
        )

    def rows_of(self, code: str) -> list[Charge]:
        """The charges of ``code`` that are not bundled."""
        return [c for c in self._by_code.get(code, []) if c.line not in self._bundled]

    def take(self, code: str, n: int) -> tuple[tuple[Charge, ...], tuple[Stake, ...]]:
        """The next ``n`` units of ``code``: their charges and the units at stake."""
        rows = self.rows_of(code)
        stake = _take(rows, self._used[code], n)
        self._used[code] += n
        lines = {line for line, _, _ in stake}
        return tuple(c for c in rows if c.line in lines), stake


def _billed_against_supported(
    cc: _CourseCharges, bundled: set[int], policy: Policy, f: _Findings
) -> None:
    """Billed codes against the codes the plans support: a higher or lower code of one
    family, codes no plan supports, codes supported and not billed."""
    units = _Units(cc, bundled, policy["bundling.imrt_bundles"])
    _code_level_findings(cc, units, f)
    _unsupported_findings(cc, units, f)
    _unbilled_findings(cc, units, f)


def _code_level_findings(cc: _CourseCharges, units: _Units, f: _Findings) -> None:
    """Within a family of ranked codes, a billed code paired with a supported one, the
    highest of each first: a higher or a lower code than the plans support."""
    b_left, e_left = units.billed, units.expected
    for family in FAMILIES:
        rank = {code: i for i, code in enumerate(family)}
        while True:
            bs = [c for c in family if b_left[c] > 0]
            es = [c for c in family if e_left[c] > 0]
            if not (bs and es):
                break
            b, e = bs[-1], es[-1]
            n = min(b_left[b], e_left[e])
            b_left[b] -= n
            e_left[e] -= n
            higher = rank[b] > rank[e]
            plans_e = cc.supporting.get(e, [])
            rows, stake = units.take(b, n)
            f.add(
                "code_higher_than_plan" if higher else "code_lower_than_plan",
                "planning_code_matches_plan",
                SOURCE_PLANS,
                codes=(b, e),
                message=f"{_label(b)} billed, but the plans of the course support {_label(e)}:"
                + (
                    " a higher code than the plans show"
                    if higher
                    else " a lower code than the plans show (under-billing?)"
                ),
                evidence=tuple(_charge_text(c) for c in units.rows_of(b))
                + tuple(plan_summary(cp) for cp in plans_e or cc.billable),
                charges=rows,
                stake=stake,
                plans=tuple(cp.plan.path for cp in plans_e) or cc.paths,
                **cc.common,
            )


def _unsupported_findings(cc: _CourseCharges, units: _Units, f: _Findings) -> None:
    """Units billed that no plan of the course supports."""
    billed, expected = cc.billed, cc.expected
    for code in sorted(units.billed):
        if units.billed[code] <= 0:
            continue
        message = (
            f"{_label(code)} billed {billed[code]} unit(s), the plans of the course support"
            f" {expected[code]}"
            if expected[code]
            else f"{_label(code)} billed, but no plan of the course supports it"
        )
        if not cc.billable:
            message += " (the course has no billable plan)"
        rows, stake = units.take(code, units.billed[code])
        f.add(
            "billed_not_supported",
            "code_supported_by_plan",
            SOURCE_PLANS,
            codes=(code,),
            message=message,
            evidence=tuple(_charge_text(c) for c in units.rows_of(code)) + cc.plan_text,
            charges=rows,
            stake=stake,
            plans=cc.paths,
            **cc.common,
        )


def _unbilled_findings(cc: _CourseCharges, units: _Units, f: _Findings) -> None:
    """Units the plans of the course support that were not billed."""
    billed, expected = cc.billed, cc.expected
    for code in sorted(units.expected):
        if units.expected[code] <= 0:
            continue
        plans_e = cc.supporting.get(code, [])
        f.add(
            "expected_not_billed",
            "plan_code_billed",
            SOURCE_PLANS,
            codes=(code,),
            message=(
                f"the plans support {expected[code]} unit(s) of {_label(code)}, billed"
                f" {billed[code]}"
                if billed[code]
                else f"the plans support {_label(code)}"
                + (f" x{expected[code]}" if expected[code] != 1 else "")
                + ", not billed in this course"
            ),
            evidence=tuple(plan_summary(cp) for cp in plans_e)
            + tuple(_charge_text(c) for c in cc.by_code.get(code, [])),
            plans=tuple(cp.plan.path for cp in plans_e),
            **cc.common,
        )


def _status(plan: Plan) -> str:
    return (plan.approval_status or "").strip().upper()


def _unapproved_support(
    cc: _CourseCharges, bundled: set[int], policy: Policy, f: _Findings
) -> None:
    """Billed codes that only plans with a flagged ApprovalStatus (``[approval]
    flag_statuses``: UNAPPROVED, REJECTED) support: the units they support are at
    stake, one finding per set of supporting plans."""
    flagged = {s.strip().upper() for s in policy["approval.flag_statuses"]}
    groups: dict[tuple[int, ...], tuple[list[CoursePlan], list[str]]] = {}
    for code in sorted(cc.by_code):
        plans = cc.supporting.get(code, [])
        if code not in CHECKED or not plans or any(_status(cp.plan) not in flagged for cp in plans):
            continue
        if all(c.line in bundled for c in cc.by_code[code]):
            continue  # reported as bundled
        groups.setdefault(tuple(id(cp) for cp in plans), (plans, []))[1].append(code)
    for plans, codes in groups.values():
        rows: list[Charge] = []
        stake: list[Stake] = []
        for code in codes:
            mine = [c for c in cc.by_code[code] if c.line not in bundled]
            supported = min(sum(c.units for c in mine), cc.expected[code])
            rows += mine
            stake += _take(mine, 0, supported)
        names = ", ".join(
            f"{cp.plan.label or '-'} ({_status(cp.plan) or 'no status'})" for cp in plans
        )
        f.add(
            "supported_only_by_unapproved_plan",
            "plan_approved_before_billing",
            SOURCE_UNAPPROVED,
            codes=tuple(codes),
            message=f"{', '.join(_label(c) for c in codes)} billed, supported only by"
            f" plan(s) not approved in the export: {names}. Bill the approved version;"
            " confirm the plan was approved before treatment",
            evidence=tuple(_charge_text(c) for c in sorted(rows, key=lambda c: c.line))
            + tuple(
                f"{plan_summary(cp)}; ApprovalStatus {cp.plan.approval_status or 'absent'}"
                for cp in plans
            ),
            charges=rows,
            stake=tuple(sorted(stake)),
            plans=tuple(cp.plan.path for cp in plans),
            setting="approval.flag_statuses",
            **cc.common,
        )


def _version_key(pr: PlanResult) -> str:
    """What rtcode reads of a plan file, its path left out: two files with the same key
    are copies of one version."""
    p, c = pr.linked.plan, pr.classification
    beams = tuple(
        (
            b.number,
            b.name,
            b.beam_type,
            b.radiation_type,
            b.delivery_type,
            b.machine,
            b.wedges,
            b.blocks,
            b.applicators,
            b.number_of_compensators,
            b.number_of_boli,
            b.final_cumulative_meterset_weight,
            b.number_of_control_points_declared,
        )
        for b in p.beams
    )
    facts = (
        c.code,
        c.category.value,
        expected_codes(pr),
        p.label,
        p.name,
        p.date,
        p.intent_raw,
        p.approval_status,
        p.review_date,
        p.frame_of_reference_uid,
        p.referenced_structure_set_uid,
        p.referenced_plans,
        p.fraction_groups,
        p.prescriptions,
        p.brachy,
        beams,
    )
    return repr(facts)  # repr: a NaN read twice is the same fact


def _version_findings(course: Course, mine: Sequence[Charge], f: _Findings) -> None:
    """Plan files of the course that share a SOPInstanceUID but differ: the audit used
    one of them (``_choose_versions``); the charges of the codes that not every version
    supports are at stake."""
    groups: dict[str, list[CoursePlan]] = defaultdict(list)
    for cp in course.plans:
        if cp.role != "verification" and cp.plan.sop_instance_uid:
            groups[cp.plan.sop_instance_uid].append(cp)
    for uid, versions in sorted(groups.items()):
        if len({_version_key(cp.result) for cp in versions}) < 2:
            continue  # copies of one version
        supported = [{code for code, _ in cp.expected} for cp in versions]
        differ = set[str]().union(*supported) - supported[0].intersection(*supported[1:])
        rows = [c for c in mine if c.cpt in differ]
        audited = [cp for cp in versions if cp.role == "billable"]
        described = "; ".join(
            f"{cp.plan.path}: {cp.result.classification.code or 'no code'}"
            + (
                f" with {', '.join(_units(c, u) for c, u in cp.expected[1:])}"
                if cp.expected[1:]
                else ""
            )
            + (" (audited)" if cp.role == "billable" else "")
            for cp in versions
        )
        codes = tuple(sorted({cp.result.classification.code or "-" for cp in versions}))
        f.add(
            "plan_versions_differ",
            "one_version_per_plan_uid",
            SOURCE_VERSIONS,
            patient_id=course.patient_id,
            course=course.id,
            codes=codes,
            message=f"{len(versions)} plan files share SOPInstanceUID {uid} but differ: "
            + described
            + (
                f". The audit used {audited[0].plan.path}, the version closest to the billed codes"
                if audited
                else ". No version is billable"
            )
            + "; confirm which version was approved and delivered",
            evidence=tuple(plan_summary(cp) for cp in versions)
            + tuple(_charge_text(c) for c in rows),
            charges=rows,
            plans=tuple(cp.plan.path for cp in versions),
        )


_ByPlan = dict[int, tuple[CoursePlan, list[Charge]]]  # id(plan) -> (plan, its charges)


def _by_timing(
    mine: list[Charge],
    billable: list[CoursePlan],
    assignments: Mapping[int, Assignment],
    supporting: Mapping[str, list[CoursePlan]],
) -> tuple[list[Charge], _ByPlan, _ByPlan]:
    """The checked charges sorted for ``_timing``: those outside the course window, and
    per plan (the one the row names, else the first that supports the code) those dated
    before its reference date and those whose plan has no reference date."""
    outside: list[Charge] = []
    early: _ByPlan = {}
    unknown: _ByPlan = {}
    for c in mine:
        if c.cpt not in CHECKED:
            continue
        if assignments[c.line].outside_window:
            outside.append(c)
            continue
        named = [
            cp
            for cp in billable
            if c.plan
            and (
                cp.plan.sop_instance_uid == c.plan
                or (cp.plan.label or "").casefold() == c.plan.casefold()
            )
        ]
        candidates = named or supporting.get(c.cpt, [])
        if not candidates:
            continue
        cp = candidates[0]
        approved = approval_day(cp.plan)
        status = (cp.plan.approval_status or "").strip().upper()
        reference = approved if status == "APPROVED" else _day(cp.plan.date)
        if reference is None:
            unknown.setdefault(id(cp), (cp, []))[1].append(c)
        elif c.date_of_service < reference:
            early.setdefault(id(cp), (cp, []))[1].append(c)
    return outside, early, unknown


def _timing(
    course: Course,
    mine: list[Charge],
    assignments: Mapping[int, Assignment],
    supporting: Mapping[str, list[CoursePlan]],
    f: _Findings,
) -> None:
    """Charge dates against the plans: charges beyond the course window, dated before
    their plan's approval (or, unapproved, its RTPlanDate), or with no date to check."""
    common = {"patient_id": course.patient_id, "course": course.id}
    billable = course.billable()
    outside, early, unknown = _by_timing(mine, billable, assignments, supporting)
    if outside:
        f.add(
            "charge_timing_unverifiable",
            "outside_course_window",
            SOURCE_COURSE,
            codes=tuple(sorted({c.cpt for c in outside})),
            message=f"{len(outside)} planning charge(s) dated after the course's plans, beyond"
            " the course window: the plans that justify them may not be in the export",
            evidence=tuple(f"{_charge_text(c)}: {assignments[c.line].how}" for c in outside)
            + tuple(plan_summary(cp) for cp in billable),
            charges=outside,
            plans=tuple(cp.plan.path for cp in billable),
            setting="audit.course_window_days",
            **common,
        )
    for cp, rows in early.values():
        approved = approval_day(cp.plan)
        if approved is not None:
            what = f"approved on {approved.isoformat()} (ReviewDate {cp.plan.review_date})"
        else:
            what = (
                f"dated {cp.plan.date} (RTPlanDate) and is"
                f" {cp.plan.approval_status or 'without approval status'} in the export"
            )
        f.add(
            "charge_before_approval",
            "charge_after_approval",
            SOURCE_APPROVAL,
            codes=tuple(sorted({c.cpt for c in rows})),
            message=f"{len(rows)} charge(s) dated before the plan {cp.plan.label or ''} was"
            f" {'approved' if approved else 'created'}: the plan was {what}",
            evidence=tuple(_charge_text(c) for c in rows) + (plan_summary(cp),),
            charges=rows,
            plans=(cp.plan.path,),
            **common,
        )
    for cp, rows in unknown.values():
        is_approved = (cp.plan.approval_status or "").strip().upper() == "APPROVED"
        f.add(
            "charge_timing_unverifiable",
            "approval_date_missing",
            SOURCE_APPROVAL,
            codes=tuple(sorted({c.cpt for c in rows})),
            message=f"the plan {cp.plan.label or ''} carries no usable"
            f" {'ReviewDate' if is_approved else 'RTPlanDate'}:"
            " the charge dates cannot be checked against it",
            evidence=tuple(_charge_text(c) for c in rows) + (plan_summary(cp),),
            charges=rows,
            plans=(cp.plan.path,),
            **common,
        )


def _documents_reason(code: str, course: Course | None) -> str:
    if course is not None:
        for cp in course.billable():
            for r in cp.result.related:
                if r.code == code and r.kind == "cannot_determine":
                    return r.reason
    return "the plan files cannot show it"


def _needs_documentation(
    course: Course | None,
    mine: Sequence[Charge],
    bundled: set[int],
    policy: Policy,
    f: _Findings,
    patient_id: str | None = None,
) -> None:
    codes = policy["audit.needs_documentation_codes"]
    rows_by_code: dict[str, list[Charge]] = defaultdict(list)
    for c in mine:
        if c.cpt in codes and c.line not in bundled:
            rows_by_code[c.cpt].append(c)
    for code, rows in sorted(rows_by_code.items()):
        f.add(
            "needs_documentation",
            "not_provable_from_plans",
            SOURCE_DOCUMENTS,
            patient_id=course.patient_id if course else patient_id,
            course=course.id if course else None,
            codes=(code,),
            message=f"{code} billed: {_documents_reason(code, course)}. The plan files cannot"
            " prove it; this is not an error if the documents are in the chart",
            evidence=tuple(_charge_text(c) for c in rows),
            charges=rows,
            setting="audit.needs_documentation_codes",
        )


def _unassigned_findings(
    patient_id: str,
    rows: list[Charge],
    plans: Sequence[PlanResult],
    policy: Policy,
    f: _Findings,
) -> None:
    elsewhere = [
        pr.linked.plan for pr in plans if pr.linked.plan.patient_id == patient_id
    ]  # only verification plans of another patient's course end up here
    extra = tuple(
        f"{_name(p)} is a plan of this patient ID, listed with the course of the plan it"
        " verifies; verification plans are never billed"
        for p in elsewhere
    )
    by_code: dict[str, list[Charge]] = defaultdict(list)
    for c in rows:
        if c.cpt in CHECKED:
            by_code[c.cpt].append(c)
    for code, mine in sorted(by_code.items()):
        f.add(
            "billed_not_supported",
            "code_supported_by_plan",
            SOURCE_PLANS,
            patient_id=patient_id,
            course=None,
            codes=(code,),
            message=f"{_label(code)} billed for patient {patient_id}, who has no billable plan"
            " in the export",
            evidence=tuple(_charge_text(c) for c in mine)
            + (extra or (f"no plan with patient ID {patient_id!r} among the scanned plans",)),
            charges=mine,
        )
    _needs_documentation(None, rows, set(), policy, f, patient_id)


def _ptp_findings(
    charges: Sequence[Charge],
    assignments: Mapping[int, Assignment],
    ptp: PtpFile,
    policy: Policy,
    f: _Findings,
) -> None:
    bypass = {m.upper() for m in policy["audit.ptp_bypass_modifiers"]}
    # The pairs with an edit, by column 1 code: each day's codes are paired only with
    # those (not every code with every other: n² for a day of n distinct codes).
    column2: dict[str, set[str]] = defaultdict(set)
    for c1, c2 in ptp.pairs:
        if c1 != c2:
            column2[c1].add(c2)
    per_day: dict[tuple[str, dt.date], list[Charge]] = defaultdict(list)
    for c in charges:
        per_day[(c.patient_id, c.date_of_service)].append(c)
    for (patient_id, day), rows in sorted(per_day.items()):
        by_code: dict[str, list[tuple[int, Charge]]] = defaultdict(list)
        for i, c in enumerate(rows):
            by_code[c.cpt].append((i, c))
        day_codes = set(by_code)
        for c1 in sorted(by_code):
            for c2 in sorted(column2.get(c1, set()) & day_codes):  # walks the smaller set
                edits = [
                    e
                    for e in ptp.pairs.get((c1, c2), ())
                    if e.effective <= day and (e.deletion is None or day < e.deletion)
                ]
                if not edits:
                    continue
                edit = edits[-1]
                if edit.modifier_indicator == "9":
                    continue
                involved = [c for _, c in heapq.merge(by_code[c1], by_code[c2])]  # file order
                mods = sorted({m for c in involved for m in c.modifiers} & bypass)
                if edit.modifier_indicator == "1" and mods:
                    continue
                deletion = edit.deletion.isoformat() if edit.deletion else "none"
                allowed = (
                    "modifier indicator 0: no modifier allows the pair"
                    if edit.modifier_indicator == "0"
                    else "modifier indicator 1: an NCCI-associated modifier (e.g. 59, XS) would"
                    " allow the pair when the services were distinct; none is on the charges"
                )
                col2 = [c for c in involved if c.cpt == c2]
                f.add(
                    "ncci_ptp",
                    "ptp_edit",
                    SOURCE_PTP,
                    patient_id=patient_id,
                    course=assignments[col2[0].line].course,
                    codes=(c1, c2),
                    message=f"{c2} billed with {c1} on {day.isoformat()}: the NCCI PTP edit"
                    f" {c1}/{c2} does not pay column 2 code {c2} with {c1} ({allowed})",
                    evidence=tuple(_charge_text(c) for c in involved)
                    + (
                        f"{edit.source or ptp.name} line {edit.line}: {c1} / {c2}, effective"
                        f" {edit.effective.isoformat()}, deletion {deletion}, modifier"
                        f" indicator {edit.modifier_indicator}"
                        + (f", rationale {edit.rationale}" if edit.rationale else ""),
                    ),
                    charges=involved,
                    stake=_whole(col2),
                    setting="audit.ptp_bypass_modifiers",
                )
