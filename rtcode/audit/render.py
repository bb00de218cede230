"""Rendering an audit: a text table for people, JSON (stable keys), CSV and HTML.

Every format starts with the summary (courses, charges checked, findings by
severity, fees at stake when the charges carry a fee) and then gives the details.
CSV cells go through the project's ``safe_cell`` (no spreadsheet formulas); the HTML
page is self-contained (no scripts, no external files) and every string from a DICOM
or CSV file is escaped with ``html.escape``.
"""

from __future__ import annotations

import csv
import html
import io
import textwrap
from decimal import Decimal
from typing import Any

from rtcode import __version__
from rtcode.audit.findings import (
    KINDS,
    SEVERITIES,
    AuditResult,
    Course,
    CoursePlan,
    Finding,
)
from rtcode.audit.outcome import NOT_AUDITED, Outcome
from rtcode.output.jsontext import dumps
from rtcode.output.render import ADVISORY, safe_cell
from rtcode.output.terminal import lines_text, one_line
from rtcode.sources.billing import Charge

# ------------------------------------------------------------------------- JSON


def _not_audited(outcome: Outcome | None) -> bool:
    """Whether the outcome says nothing could be audited: its reason then comes first."""
    return outcome is not None and outcome.status == NOT_AUDITED


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(Decimal("0.01")))


def _charge_json(c: Charge) -> dict[str, Any]:
    return {
        "line": c.line,
        "patient_id": c.patient_id,
        "date_of_service": c.date_of_service.isoformat(),
        "cpt": c.cpt,
        "units": c.units,
        "modifiers": list(c.modifiers),
        "plan": c.plan,
        "fee": _money(c.fee),
    }


def _plan_json(cp: CoursePlan) -> dict[str, Any]:
    plan, c = cp.plan, cp.result.classification
    return {
        "path": plan.path,
        "sop_instance_uid": plan.sop_instance_uid,
        "patient_id": plan.patient_id,
        "plan_label": plan.label,
        "role": cp.role,
        "code": c.code,
        "category": c.category.value,
        "plan_date": plan.date,
        "approval_status": plan.approval_status,
        "review_date": plan.review_date,
        "frame_of_reference_uid": plan.frame_of_reference_uid,
        "structure_set_uid": plan.referenced_structure_set_uid,
        "supports": [{"code": code, "units": units} for code, units in cp.expected],
        "note": cp.note,
    }


def course_json(course: Course) -> dict[str, Any]:
    return {
        "id": course.id,
        "patient_id": course.patient_id,
        "first_plan_date": course.first_date.isoformat() if course.first_date else None,
        "last_plan_date": course.last_date.isoformat() if course.last_date else None,
        "planning_cts": course.planning_cts,
        "plans": [_plan_json(cp) for cp in course.plans],
        "reasons": list(course.reasons),
        "notes": list(course.notes),
        "expected_codes": [
            {"code": code, "units": units} for code, units in sorted(course.expected().items())
        ],
        "charges": list(course.charge_lines),
    }


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "severity": f.severity,
        "patient_id": f.patient_id,
        "course": f.course,
        "codes": list(f.codes),
        "message": f.message,
        "evidence": list(f.evidence),
        "rule": f.rule,
        "source": f.source,
        "setting": f.setting,
        "charges": [_charge_json(c) for c in f.charges],
        "plans": list(f.plans),
        # the fee of the units at stake (units x the row's fee / its units), and how
        "fee": _money(f.fee),
        "fee_at_stake_basis": f.fee_basis,
        "units_at_stake": [{"line": c.line, "units": n} for c, _, n in f.units_at_stake()],
    }


def summary_json(result: AuditResult) -> dict[str, Any]:
    fees = result.fees_by_severity()
    ptp = result.ptp
    return {
        "plans_scanned": result.plans_scanned,
        "courses": len(result.courses),
        "charges_file": result.charges_source,
        "charges_format": result.charges_format,
        "charges_checked": len(result.charges),
        "charges_rejected": len(result.rejected),
        "findings": {s: result.count(s) for s in SEVERITIES},
        "findings_by_kind": {
            k: n for k in KINDS if (n := sum(1 for f in result.findings if f.kind == k))
        },
        "fees_at_stake": {s: _money(v) for s, v in fees.items()} if fees is not None else None,
        "ptp": (
            {
                "file": ptp.name,
                "edits": ptp.edits_read,
                "edits_about_billed_codes": len(ptp.edits),
                "rows_rejected": len(ptp.rejected),
            }
            if ptp is not None
            else None
        ),
    }


def _kept_without_patient(result: AuditResult, line: int) -> bool:
    return line in result.rejected_without_patient


def audit_json(result: AuditResult, outcome: Outcome | None = None) -> dict[str, Any]:
    head = {"not_audited": outcome.reason} if outcome is not None and _not_audited(outcome) else {}
    return {
        **head,
        "rtcode_version": __version__,
        "advisory": ADVISORY,
        "policy": result.policy.summary(),
        "summary": summary_json(result),
        "courses": [course_json(c) for c in result.courses],
        "findings": [finding_json(f) for f in result.findings],
        "charges_rejected": [
            {
                "line": r.line,
                "reason": r.reason,
                "text": r.text,
                "kept_without_patient": _kept_without_patient(result, r.line),
            }
            for r in result.rejected
        ],
        "ptp_rejected": (
            [{"line": r.line, "reason": r.reason, "text": r.text} for r in result.ptp.rejected]
            if result.ptp is not None
            else []
        ),
        "notes": list(result.notes),
        "errors": [{"path": e.path, "error": e.error} for e in result.errors],
    }


def to_json(result: AuditResult, outcome: Outcome | None = None) -> str:
    return dumps(audit_json(result, outcome), indent=2) + "\n"


# -------------------------------------------------------------------------- CSV

CSV_COLUMNS = [
    "record",
    "severity",
    "kind",
    "patient_id",
    "course",
    "codes",
    "message",
    "rule",
    "source",
    "charge_lines",
    "plans",
    "evidence",
    "fee",
    "fee_at_stake_basis",
    # appended (the columns above keep their order): the date of service of each of
    # the finding's charges, in the order of charge_lines, and the charges source
    "date_of_service",
    "charge_source",
]
# A rejected row kept under --patient although its patient ID could not be read.
KEPT_WITHOUT_PATIENT = "no patient ID could be read from the row: kept under --patient"


def charge_source_text(result: AuditResult) -> str:
    """The charges source as the outputs name it: the file and how it was read."""
    name = result.charges_source or "the charges file"
    return f"{name} ({result.charges_format})" if result.charges_format else name


def to_csv(result: AuditResult, outcome: Outcome | None = None) -> str:
    """One row per finding, then one per rejected charges row (record rejected_charge);
    first, when nothing could be audited, a row (record not_audited) with the reason."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    source = charge_source_text(result)
    if outcome is not None and _not_audited(outcome):
        first = ["not_audited", "", "", "", "", "", outcome.reason] + [""] * 8 + [source]
        writer.writerow([safe_cell(v) for v in first])
    for f in result.findings:
        fee = _money(f.fee)
        row = [
            "finding",
            f.severity,
            f.kind,
            f.patient_id,
            f.course,
            " ".join(f.codes),
            f.message,
            f.rule,
            f.source,
            " ".join(str(c.line) for c in f.charges),
            " ".join(f.plans),
            " | ".join(f.evidence),
            "" if fee is None else f"{fee:.2f}",
            f.fee_basis or "",
            " ".join(c.date_of_service.isoformat() for c in f.charges),
            source,
        ]
        writer.writerow([safe_cell(v) for v in row])
    for r in result.rejected:
        reason = r.reason
        if _kept_without_patient(result, r.line):
            reason += f" ({KEPT_WITHOUT_PATIENT})"
        rejected = ["rejected_charge", "", "", "", "", "", reason, "", "", r.line, "", r.text]
        writer.writerow([safe_cell(v) for v in [*rejected, "", "", "", source]])
    return buf.getvalue()


# ------------------------------------------------------------------------ table


def _wrap(text: str, indent: str = "    ") -> list[str]:
    return textwrap.wrap(
        one_line(text),  # escaped for the terminal before it is measured
        100,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    )


def _fee_text(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def summary_lines(result: AuditResult) -> list[str]:
    s = summary_json(result)
    lines = [
        f"{s['courses']} course(s) from {s['plans_scanned']} plan(s);"
        f" {s['charges_checked']} charge(s) checked from {result.charges_source or 'the file'},"
        f" {s['charges_rejected']} rejected",
        "findings: " + ", ".join(f"{result.count(sev)} {sev}" for sev in SEVERITIES),
    ]
    fees = result.fees_by_severity()
    if fees is not None:
        lines.append(
            "fees at stake: " + ", ".join(f"{sev} {_fee_text(fees[sev])}" for sev in SEVERITIES)
        )
    if result.ptp is not None:
        lines.append(
            f"NCCI PTP file {result.ptp.name}: {result.ptp.edits_read} edit(s),"
            f" {len(result.ptp.edits)} about the billed codes,"
            f" {len(result.ptp.rejected)} row(s) rejected"
        )
    else:
        lines.append("NCCI PTP edits: none loaded (give --ptp FILE to apply a CMS PTP file)")
    lines += [f"note: {note}" for note in result.notes]
    return lines


def _grid(rows: list[tuple[str, ...]]) -> list[str]:
    rows = [tuple(one_line(v) for v in r) for r in rows]  # measured as shown on the terminal
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _lines_text(f: Finding) -> str:
    return ",".join(str(c.line) for c in f.charges) or "-"


def to_table(result: AuditResult, outcome: Outcome | None = None) -> str:
    lines = summary_lines(result)
    if outcome is not None and _not_audited(outcome):
        lines = [*_wrap(f"NOT AUDITED: {outcome.reason}", ""), "", *lines]
    with_fees = result.fees_by_severity() is not None
    if result.findings:
        head = ("severity", "patient", "course", "kind", "codes", "lines")
        rows = [head + (("fee",) if with_fees else ())]
        for f in result.findings:
            row = (
                f.severity,
                f.patient_id or "-",
                f.course or "-",
                f.kind,
                " ".join(f.codes),
                _lines_text(f),
            )
            rows.append(row + ((_fee_text(f.fee),) if with_fees else ()))
        lines += ["", *_grid(rows)]
        for f in result.findings:
            where = f"{f.patient_id or '-'} {f.course or '(no course)'}"
            lines += ["", *_wrap(f"{f.severity.upper()} {f.kind} {where}: {f.message}", "")]
            lines += _wrap(f"rule {f.rule}, source: {f.source}")
            if f.fee_basis and not f.whole_rows():  # part of a row: say which units
                lines += _wrap(f"fee at stake: {f.fee_basis}")
            for e in f.evidence:
                lines += _wrap(f"- {e}")
    else:
        lines += ["", "no findings"]
    lines += ["", "courses:"]
    for c in result.courses:
        first = c.first_date.isoformat() if c.first_date else "no date"
        charges = ", ".join(str(n) for n in c.charge_lines) or "none"
        lines += _wrap(
            f"{c.id} (patient {c.patient_id or '-'}, from {first}, {len(c.plans)} plan(s),"
            f" {c.planning_cts} planning CT(s)); charges on lines: {charges}",
            "",
        )
        for cp in c.plans:
            plan, cl = cp.plan, cp.result.classification
            lines += _wrap(
                f"{cp.role}: {plan.path} {plan.label or '-'} {cl.code or 'no code'}"
                f" {cl.category.value} {plan.approval_status or 'approval status absent'}"
            )
        for why in c.reasons:
            lines += _wrap(f"grouped: {why}")
        for note in c.notes:
            lines += _wrap(f"note: {note}")
    if result.rejected:
        lines += [
            "",
            f"rejected charges rows ({len(result.rejected)}; every other row was audited):",
        ]
        for r in result.rejected:
            kept = f" ({KEPT_WITHOUT_PATIENT})" if _kept_without_patient(result, r.line) else ""
            lines += _wrap(f"line {r.line}: {r.reason}{kept}" + (f" [{r.text}]" if r.text else ""))
    if result.ptp is not None and result.ptp.rejected:
        lines += ["", f"rejected PTP rows ({len(result.ptp.rejected)}):"]
        for r in result.ptp.rejected:
            lines += _wrap(f"line {r.line}: {r.reason}")
    for err in result.errors:
        lines += _wrap(f"error: {err.path}: {err.error}", "")
    lines += ["", f"policy {result.policy.name} {result.policy.version}. {ADVISORY}"]
    return lines_text(lines)


# ------------------------------------------------------------------------- HTML

# Nothing may load or run: styles are inline, there are no scripts or images.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; vertical-align: top;
  overflow-wrap: break-word; }
th, td.nw { white-space: nowrap; }
th { background: #eee; }
td ul { margin: 0; padding-left: 1.2em; }
table.courses { table-layout: fixed; width: 100%; }
table.courses td { overflow-wrap: anywhere; }
.path { font-family: ui-monospace, monospace; font-size: 0.85em; color: #444; }
.error { background: #fbe3e3; } .warning { background: #fdf3d6; } .info { background: #e6f0fb; }
.sev { font-weight: bold; text-transform: uppercase; }
details { margin: 0.5em 0; } summary { cursor: pointer; }
code, .mono { font-family: ui-monospace, monospace; }
footer { margin-top: 2em; color: #555; font-size: 0.9em; }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _list(items: list[str] | tuple[str, ...]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>" if items else ""


def to_html(result: AuditResult, outcome: Outcome | None = None) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        "<title>rtcode audit</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>rtcode audit: billed charges against the plans</h1>",
    ]
    if outcome is not None and _not_audited(outcome):
        parts.append(f'<p class="error"><b>Not audited:</b> {_e(outcome.reason)}</p>')
    parts.append(_list(summary_lines(result)))
    parts += _html_source(result)
    parts += _html_findings(result)
    parts += _html_courses(result)
    parts += _html_rejected(result)
    parts.append("<h2>What the finding kinds mean</h2><dl>")
    for kind, meaning in KINDS.items():
        severity = result.policy["audit.severity"][kind]
        parts.append(f"<dt><code>{_e(kind)}</code> ({_e(severity)})</dt><dd>{_e(meaning)}</dd>")
    parts.append("</dl>")
    if result.errors:
        errors = [f"{e.path}: {e.error}" for e in result.errors]
        parts.append("<h2>Files the scan could not read</h2>" + _list(errors))
    parts.append(
        f"<footer>rtcode {_e(__version__)}, policy {_e(result.policy.name)}"
        f" {_e(result.policy.version)} (sha256 {_e(result.policy.sha256[:12])})."
        f" {_e(ADVISORY)}</footer>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_findings(result: AuditResult) -> list[str]:
    """The findings: a table, then each finding's evidence to open."""
    parts = ["<h2>Findings</h2>"]
    if not result.findings:
        return [*parts, "<p>No findings.</p>"]
    with_fees = result.fees_by_severity() is not None
    head = ["severity", "patient", "course", "kind", "codes", "message", "charge lines"]
    if with_fees:
        head.append("fee")
    parts.append("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for f in result.findings:
        cells = [
            f'<td class="sev">{_e(f.severity)}</td>',
            f'<td class="nw">{_e(f.patient_id or "-")}</td>',
            f'<td class="nw">{_e(f.course or "-")}</td>',
            f'<td title="{_e(KINDS[f.kind])}">{_e(f.kind)}</td>',
            f"<td>{_e(' '.join(f.codes))}</td>",
            f"<td>{_e(f.message)}</td>",
            f"<td>{_e(_lines_text(f))}</td>",
        ]
        if with_fees:
            cells.append(f"<td>{_e(_fee_text(f.fee))}</td>")
        parts.append(f'<tr class="{_e(f.severity)}">' + "".join(cells) + "</tr>")
    parts.append("</table>")
    parts.append("<h3>Evidence (open a finding)</h3>")
    for f in result.findings:
        parts.append(
            f'<details class="{_e(f.severity)}"><summary>{_e(f.severity)} {_e(f.kind)}'
            f" {_e(f.patient_id or '-')} {_e(f.course or '')}: {_e(f.message)}</summary>"
            f"<p>Rule <code>{_e(f.rule)}</code>, source: {_e(f.source)}"
            + (f", setting <code>{_e(f.setting)}</code>" if f.setting else "")
            + "</p>"
            + (f"<p>Fee at stake: {_e(f.fee_basis)}</p>" if f.fee_basis else "")
            + _list(f.evidence)
            + "</details>"
        )
    return parts


def _html_courses(result: AuditResult) -> list[str]:
    parts = [
        "<h2>Courses</h2>",
        '<table class="courses"><colgroup><col style="width:7%"><col style="width:7%">'
        '<col style="width:30%"><col style="width:25%"><col style="width:24%">'
        '<col style="width:7%"></colgroup>'
        "<tr><th>course</th><th>patient</th><th>plans</th><th>why one course</th>"
        "<th>notes</th><th>charges</th></tr>",
    ]
    for c in result.courses:
        plans = "".join(
            f"<li>{_e(cp.role)}: <b>{_e(cp.plan.label or '-')}</b>"
            f" {_e(cp.result.classification.code or 'no code')}"
            f" {_e(cp.plan.approval_status or 'approval status absent')}"
            f'<br><span class="path">{_e(cp.plan.path)}</span></li>'
            for cp in c.plans
        )
        parts.append(
            f'<tr><td class="nw">{_e(c.id)}</td><td class="nw">{_e(c.patient_id or "-")}</td>'
            f"<td><ul>{plans}</ul></td><td>{_list(c.reasons)}</td><td>{_list(c.notes)}</td>"
            f"<td>{_e(', '.join(str(n) for n in c.charge_lines) or '-')}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _html_source(result: AuditResult) -> list[str]:
    """The charges source: the file, how it was read, what was read from it."""
    read = result.charges_read if result.charges_read is not None else len(result.charges)
    rejected = result.rows_rejected if result.rows_rejected is not None else len(result.rejected)
    rows = [
        ("file", result.charges_source or "-"),
        ("format", result.charges_format or "-"),
        ("charges read", str(read)),
        ("rows rejected", str(rejected)),
    ]
    if result.patients is not None:
        rows.append(("charges of the patients shown", str(len(result.charges))))
    return [
        "<h2>Charges source</h2>",
        '<table class="source">'
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        + "</table>",
    ]


def _html_rejected(result: AuditResult) -> list[str]:
    """The charges rows and PTP rows that were skipped."""
    parts = []
    if result.rejected:
        parts.append(
            f"<h2>Rejected lines of {_e(charge_source_text(result))} ({len(result.rejected)})</h2>"
        )
        parts.append("<p>These rows were skipped; every other row was audited.</p>")
        parts.append("<table><tr><th>line</th><th>reason</th><th>row</th></tr>")
        for r in result.rejected:
            kept = (
                f"<br><i>{_e(KEPT_WITHOUT_PATIENT)}</i>"
                if _kept_without_patient(result, r.line)
                else ""
            )
            parts.append(
                f"<tr><td>{r.line}</td><td>{_e(r.reason)}{kept}</td>"
                f'<td class="mono">{_e(r.text)}</td></tr>'
            )
        parts.append("</table>")
    if result.ptp is not None and result.ptp.rejected:
        parts.append(f"<h2>Rejected PTP rows ({len(result.ptp.rejected)})</h2>")
        parts.append(_list([f"line {r.line}: {r.reason}" for r in result.ptp.rejected]))
    return parts


FORMATS = {"table": to_table, "json": to_json, "csv": to_csv, "html": to_html}
