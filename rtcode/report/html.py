"""The report as one self-contained HTML file a physicist can put in the chart.

Each plan reads top-down: what is signed first (code, confidence, the deciding
reasons, flags, prescription, DVHs, beams), then every rule's evidence folded in a
``<details>``. Everything is inside the file (inline styles, PNG ``data:`` URIs, no
script); a Content-Security-Policy forbids loading anything, and every string from a
DICOM file or the file system is HTML-escaped through ``_e``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import struct
from collections.abc import Iterable
from typing import Any

from rtcode import __version__
from rtcode.measure.dvh import PlanDvh
from rtcode.model.codes import Classification, Evidence
from rtcode.model.facts import ReadError
from rtcode.output.render import (
    ADVISORY,
    beam_json,
    brachy_technique,
    fractionation_texts,
    prescription_texts,
)
from rtcode.report import plots
from rtcode.report.patients import (
    ROLE_LABELS,
    PatientReport,
    PlanReport,
    Report,
    agreement_line,
    brachy_channel_header,
    brachy_channel_rows,
    brachy_facts,
    date_text,
    dvh_cells,
    dvh_header,
    dvh_rows,
    fired_word,
    gantry_text,
    is_brachy,
    min_mean_max_text,
    number,
    value_text,
    with_repeats,
)
from rtcode.report.readable import (
    Paths,
    common_folder,
    named_values,
    person_name,
    quantity,
    unit_of,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2330; margin: 0 auto; max-width: 1320px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding: 6px 10px; background: #24344d; color: #fff;
     border-radius: 4px; }
h3 { font-size: 17px; margin: 24px 0 6px; border-bottom: 2px solid #24344d; }
h4 { font-size: 14px; margin: 16px 0 4px; color: #24344d; text-transform: uppercase;
     letter-spacing: .04em; }
p.advisory { background: #fff6d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
table { border-collapse: collapse; margin: 4px 0 8px; font-size: 13px; }
th, td { border: 1px solid #c9d1dc; padding: 3px 6px; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
table.evidence td:nth-child(4), table.evidence td:nth-child(5) { font-size: 12px; }
table.related td:nth-child(-n+3), table.beams td:nth-child(-n+11) { white-space: nowrap; }
table.evidence, table.beams, table.related { width: 100%; }
table.evidence { table-layout: fixed; }
table.evidence col.rule { width: 13%; } table.evidence col.fired { width: 6%; }
table.evidence col.finding { width: 29%; } table.evidence col.observed { width: 17%; }
table.evidence col.threshold { width: 15%; } table.evidence col.setting { width: 10%; }
table.evidence col.path { width: 10%; }
ul.values { margin: 0; padding: 0; list-style: none; }
th { background: #eef2f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path, span.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
     word-break: break-all; }
tr.fired-yes td.result { background: #dff3e3; color: #1b5e20; font-weight: 600; }
tr.fired-no td.result { color: #6b7280; }
tr.fired-unknown td.result { background: #fff3cd; color: #7a5b00; font-weight: 600; }
tr.decides td { border-left-width: 1px; }
tr.decides td.rule { border-left: 4px solid #24344d; font-weight: 600; }
section.summary { border-left: 4px solid #24344d; background: #f5f7fa; padding: 6px 12px;
     margin: 8px 0; }
section.summary p.verdict { margin: 2px 0 6px; }
section.summary p.alternative { margin: 2px 0; }
section.summary ul { margin: 2px 0 6px; padding-left: 20px; }
ul.reasons .rule-id { color: #6b7280; font-size: 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
dl.facts dt { color: #4b5563; } dl.facts dd { margin: 0; }
.code { font-size: 18px; font-weight: 700; }
.confidence-high { color: #1b5e20; } .confidence-medium { color: #8a5a00; }
.confidence-low { color: #b71c1c; }
ul.flags li.warning { color: #8a1c1c; } ul.flags li.info { color: #374151; }
details.evidence { margin: 16px 0 8px; }
details.evidence > summary { cursor: pointer; font-size: 14px; font-weight: 600; color: #24344d;
     text-transform: uppercase; letter-spacing: .04em; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; border: 1px solid #d7dde6; padding: 4px; background: #fff;
         width: min-content; }
figure img { display: block; }
figcaption { font-size: 12px; color: #4b5563; }
.agree { color: #1b5e20; } .differ { color: #b71c1c; font-weight: 600; }
.note { color: #4b5563; font-size: 13px; }
td.role-target { color: #b3261e; } td.role-organ_at_risk { color: #1f5fa8; }
nav table td, nav table th { font-size: 13px; }
@media print { h2 { break-before: page; } figure, table { break-inside: avoid; } }
"""

EVIDENCE_HEAD = ["rule", "fired", "finding", "observed", "threshold", "policy setting", "element"]
EVIDENCE_COLS = ("rule", "fired", "finding", "observed", "threshold", "setting", "path")
BEAM_HEAD = ["#", "name", "technique", "radiation", "MU", "CPs", "segs", "gantry", "coll",
             "couch", "MCS", "port", "why this technique"]  # fmt: skip


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def img_html(png: bytes | None, alt: str, cls: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    width, height = struct.unpack(">II", png[16:24])  # the PNG header: laid out before decoding
    return (
        f'<img class="plot {cls}" alt="{_e(alt)}" width="{width}" height="{height}"'
        f' src="data:image/png;base64,{data}">'
    )


def figure_html(png: bytes | None, alt: str, cls: str, caption: str) -> str:
    if not png:
        return ""
    return f"<figure>{img_html(png, alt, cls)}<figcaption>{_e(caption)}</figcaption></figure>"


def _table(head: Iterable[str], rows: Iterable[str], cls: str, cols: str = "") -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f'<table class="{cls}">{cols}<thead><tr>{cells}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _td(value: Any, cls: str | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{_e(value)}</td>"


def _path(path: str) -> str:
    return f'<span class="path">{_e(path)}</span>'


def _anchor(i: int) -> str:
    return f"plan-{i}"


# ----------------------------------------------------------------------- page


def report_html(
    report: Report, *, figures: bool = True, generated: dt.datetime | None = None
) -> str:
    """The whole report as an HTML document (figures drawn unless ``figures`` is False;
    ``generated``, the time the footer names, defaults to now)."""
    title = f"rtcode report: {len(report.patients)} patient(s), {len(report.scan.plans)} plan(s)"
    paths = Paths(common_folder(report_files(report)))
    numbered = {id(p): i for i, p in enumerate(report.plans, 1)}
    body = [_header(report, title, paths), _contents(report, numbered, paths)]
    for k, patient in enumerate(report.patients, 1):
        body.append(f'<section class="patient" id="patient-{k}">')
        body.append(f"<h2>{_e(patient_title(patient))}</h2>")
        body += [_plan(p, numbered[id(p)], figures, paths) for p in patient.plans]
        body.append("</section>")
    body.append(_errors(report.scan.inventory.errors, paths))
    body.append(_footer(report, generated or dt.datetime.now().astimezone()))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def report_files(report: Report) -> list[str]:
    """Every file the report names: plans, structure sets, doses and unreadable files
    (their common folder is shown once; the page names files relative to it)."""
    out = [e.path for e in report.scan.inventory.errors]
    for p in report.plans:
        lp = p.result.linked
        out.append(lp.plan.path)
        out += [lp.structure_set.path] if lp.structure_set else []
        out += [d.path for d in lp.doses]
    return out


def patient_title(patient: PatientReport) -> str:
    """The patient heading, the DICOM person name in its usual order."""
    pid = patient.patient_id or "(PatientID absent)"
    name = person_name(patient.patient_name)
    return f"patient {pid}" + (f" ({name})" if name else "")


def _header(report: Report, title: str, paths: Paths) -> str:
    policy = report.scan.policy
    folder = (
        f"<p>Files under {_path(paths.folder)}; the paths below are relative to it.</p>"
        if paths.folder
        else ""
    )
    return (
        f'<header><h1>{_e(title)}</h1><p class="advisory">{_e(ADVISORY)}'
        " The short code labels are rtcode's own.</p>"
        f"<p>rtcode {_e(__version__)}, policy {_e(policy.name)} {_e(policy.version)}"
        f" (sha256 {_e(policy.sha256[:12])})"
        + (
            ", de-identified: patient names, IDs, dates and UIDs are pseudonyms"
            if report.deidentified
            else ""
        )
        + ". DVHs computed by dicompyler-core 0.5.6 where the export has none"
        + (" and, as asked, beside the stored ones" if report.compute_dvh == "always" else "")
        + f".</p>{folder}</header>"
    )


def _contents(report: Report, numbered: dict[int, int], paths: Paths) -> str:
    rows = []
    for patient in report.patients:
        for p in patient.plans:
            plan, c = p.result.linked.plan, p.result.classification
            i = numbered[id(p)]
            rows.append(
                f'<tr class="plan-row" data-plan="{i}">'
                + _td(patient.patient_id or "-")
                + f'<td><a href="#{_anchor(i)}">{_e(plan.label or "(no label)")}</a></td>'
                + _td(c.code or "none", "code-cell")
                + _td(c.label or c.category.value)
                + _td(c.confidence, f"confidence-{c.confidence}")
                + _td(brachy_technique(plan) or _techniques(c))
                + _td(len(p.dvh.rois))
                + _td(paths.relative(plan.path), "path")
                + "</tr>"
            )
    head = ["patient", "plan", "code", "label", "confidence", "techniques", "DVH ROIs", "file"]
    return "<nav><h4>Plans</h4>" + _table(head, rows, "plans") + "</nav>"


def _techniques(c: Classification) -> str:
    seen: dict[str, int] = {}
    for b in c.beams:
        if b.counted:
            seen[b.technique.value] = seen.get(b.technique.value, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in seen.items()) or "-"


def _errors(errors: list[ReadError], paths: Paths) -> str:
    if not errors:
        return ""
    rows = [
        f"<tr>{_td(paths.relative(e.path), 'path')}{_td(paths.in_text(e.error))}</tr>"
        for e in errors
    ]
    return (
        '<section class="errors"><h2>Files that could not be read</h2>'
        + _table(["file", "problem"], rows, "errors")
        + "</section>"
    )


def _footer(report: Report, generated: dt.datetime) -> str:
    inv = report.scan.inventory
    offset = generated.strftime("%z")
    zone = f" UTC{offset[:3]}:{offset[3:]}" if offset else ""
    when = f"{generated:%Y-%m-%d %H:%M}{zone}"
    return (
        f'<footer><p class="note">Generated <time datetime="{_e(generated.isoformat())}">'
        f"{_e(when)}</time> by rtcode {_e(__version__)}: {len(report.scan.plans)} plan(s)"
        f" for {len(report.patients)} patient(s). {inv.files_seen} file(s) read:"
        f" {len(inv.structure_sets)} structure set(s), {len(inv.doses)} dose(s),"
        f" {inv.images_skipped} image(s) skipped, {len(inv.errors)} error(s).</p></footer>"
    )


# ----------------------------------------------------------------------- plan


def _plan(p: PlanReport, i: int, figures: bool, paths: Paths) -> str:
    """One plan, top-down: what is signed, then the DVHs, the beams, related codes and
    the folded evidence of every rule."""
    plan = p.result.linked.plan
    heading = f"Plan {plan.label or '(no label)'}" + (f" ({plan.name})" if plan.name else "")
    rx = plan.first_target_prescription
    parts = [
        f'<article class="plan" id="{_anchor(i)}" data-plan="{i}">',
        f"<h3>{_e(heading)}</h3>",
        _summary(p, paths),
        _facts(p, paths),
        _brachy(p),
        "<h4>Dose-volume histograms</h4>",
        _dvh(p.dvh, plan.label or "", figures, rx.dose_gy if rx is not None else None, paths),
        _beam_section(p, figures),
        _related(p),
        _evidence(p.result.classification, paths),
        "</article>",
    ]
    return "\n".join(part for part in parts if part)


def _summary(p: PlanReport, paths: Paths) -> str:
    """The code and its confidence, the deciding reasons (one sentence each), the
    alternatives and every flag: what a physicist reads before signing."""
    c = p.result.classification
    verdict = (
        f'<p class="verdict"><span class="code">{_e(c.code or "no code")}</span>'
        f" {_e(c.label or c.category.value)}, confidence"
        f' <span class="confidence-{_e(c.confidence)}">{_e(c.confidence)}</span></p>'
    )
    seen: set[str] = set()
    reasons = []
    for e in c.deciding_evidence():
        sentence = paths.in_text(e.finding)
        if sentence not in seen:
            seen.add(sentence)
            reasons.append(f'<li>{_e(sentence)} <span class="rule-id">{_e(e.rule)}</span></li>')
    out = [verdict, f'<ul class="reasons">{"".join(reasons)}</ul>' if reasons else ""]
    out += [
        f'<p class="alternative">Alternative: <strong>{_e(a.code)}</strong> ({_e(a.category)})'
        f" {_e(paths.in_text(a.condition))}</p>"
        for a in c.alternatives
    ]
    flags = (*c.flags, *p.flags)
    items = "".join(
        f'<li class="{_e(f.severity)}"><strong>{_e(f.severity)}</strong>:'
        f" {_e(paths.in_text(f.message))}</li>"
        for f in flags
    )
    out.append(f'<ul class="flags">{items}</ul>' if flags else '<p class="flags">No flags.</p>')
    return '<section class="summary">' + "".join(out) + "</section>"


def _facts(p: PlanReport, paths: Paths) -> str:
    """Prescription and fractions first, then the plan's identity and its files."""
    lp, plan = p.result.linked, p.result.linked.plan
    ps = plan.planning_system
    system = [ps.manufacturer, ps.model, ps.software_versions]
    ss = lp.structure_set
    facts = [
        (
            "prescription",
            "<br>".join(_e(t) for t in prescription_texts(plan))
            or "none in the plan (no DoseReferenceSequence)",
        ),
        (
            "fractions",
            "<br>".join(_e(t) for t in fractionation_texts(plan)) or "no fraction group",
        ),
        ("intent", _e(plan.intent or "-")),
        ("approval", _e(plan.approval_status or "absent")),
        ("plan date", _e(date_text(plan.date))),
        ("patient", _e(plan.patient_id or "-")),
        ("planning system", _e(" ".join(filter(None, system)) or "-")),
        ("plan file", _path(paths.relative(plan.path))),
        (
            "structure set",
            _e(lp.structure_set_status) + (f" {_path(paths.relative(ss.path))}" if ss else ""),
        ),
        ("dose", " ".join(_path(paths.relative(d.path)) for d in lp.doses) or "none in the export"),
    ]
    return (
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )


def _brachy(p: PlanReport) -> str:
    """A brachytherapy plan's treatment, sources, fractions, prescription and channels
    (empty for a plan with beams)."""
    plan = p.result.linked.plan
    if not is_brachy(plan):
        return ""
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in brachy_facts(plan))
    rows = [
        '<tr class="channel-row">'
        + "".join(_td(v, None if k in (1, 2, 3) else "num") for k, v in enumerate(cells))
        + "</tr>"
        for cells in brachy_channel_rows(plan)
    ]
    return (
        '<section class="brachy"><h4>Brachytherapy</h4>'
        f'<dl class="facts brachy">{facts}</dl>'
        + (_table(brachy_channel_header(plan), rows, "channels") if rows else "")
        + "</section>"
    )


def _related(p: PlanReport) -> str:
    if not p.result.related:
        return ""
    rows = [
        "<tr>"
        + _td(rc.code)
        + _td("" if rc.units is None else rc.units, "num")
        + _td(rc.kind)
        + _td(rc.reason)
        + _td(rc.setting or "")
        + "</tr>"
        for rc in p.result.related
    ]
    head = ["code", "units", "kind", "reason", "policy setting"]
    return "<h4>Related codes</h4>" + _table(head, rows, "related")


# ------------------------------------------------------------------- evidence


def _evidence(c: Classification, paths: Paths) -> str:
    """Every rule, fired or not, folded: observed values and thresholds as "name value
    unit" lists, DICOM elements relative to the report's folder."""
    deciding = {id(e) for e in c.deciding_evidence()}
    rows = [_evidence_row(e, repeated, id(e) in deciding, paths) for e, repeated in with_repeats(c)]
    fired = sum(1 for e in c.evidence if e.fired)
    note = (
        '<p class="note">Rows with a bar on the left are the rule group that decided the code;'
        " every other rule is shown with why it did or did not apply.</p>"
    )
    cols = "".join(f'<col class="{k}">' for k in EVIDENCE_COLS)
    return (
        '<details class="evidence"><summary>Evidence: every rule'
        f" ({len(c.evidence)} checked, {fired} fired)</summary>"
        + _table(EVIDENCE_HEAD, rows, "evidence", f"<colgroup>{cols}</colgroup>")
        + note
        + "</details>"
    )


def _evidence_row(e: Evidence, repeated: bool, decides: bool, paths: Paths) -> str:
    state = {True: "yes", False: "no", None: "unknown"}[e.fired]
    cls = f"evidence-row fired-{state}" + (" decides" if decides else "")
    unit = _setting_unit(e)
    threshold = "as above" if repeated else _values(e.threshold, unit, paths)
    compared = isinstance(e.threshold, (int, float)) and not isinstance(e.threshold, bool)
    return (
        f'<tr class="{cls}">'
        + _td(e.rule, "rule")
        + _td(fired_word(e.fired), "result")
        + _td(paths.in_text(e.finding))
        + f'<td class="observed">{_values(e.observed, unit if compared else "", paths)}</td>'
        + f'<td class="threshold">{"" if e.threshold is None else threshold}</td>'
        + _td(e.setting or "")
        + _td(paths.relative(e.dicom_path), "path")
        + "</tr>"
    )


def _setting_unit(e: Evidence) -> str:
    """The unit of a single threshold: its policy setting's (``..._deg``: deg); the
    observed values compared with a number threshold share it."""
    return unit_of(e.setting.rsplit(".", 1)[-1])[1] if e.setting else ""


def _values(value: Any, unit: str, paths: Paths) -> str:
    """An evidence value as HTML: a table of values as a "name value unit" list."""
    if isinstance(value, dict) and value:
        items = "".join(f"<li>{_e(paths.in_text(v))}</li>" for v in named_values(value))
        return f'<ul class="values">{items}</ul>'
    return _e(paths.in_text(quantity(value, unit)))


# ---------------------------------------------------------------------- beams


def _beam_section(p: PlanReport, figures: bool) -> str:
    c = p.result.classification
    if not c.beams:
        return ""
    return "<h4>Beams</h4>" + _beams(c) + (_beam_figures(p) if figures else "")


def _beams(c: Classification) -> str:
    rows = []
    for b in c.beams:
        j = beam_json(b)
        rows.append(
            '<tr class="beam-row">'
            + _td(value_text(j["number"]), "num")
            + _td(j["name"] or "-")
            + _td(j["technique"])
            + _td(" ".join(filter(None, [j["radiation_type"], value_text(j["nominal_energy"])])))
            + _td(number(j["meterset_mu"], ".1f"), "num")
            + _td(j["number_of_control_points"], "num")
            + _td(j["segments"], "num")
            + _td(gantry_text(j), "num")
            + _td(value_text(j["collimator_deg"]), "num")
            + _td(value_text(j["couch_deg"]), "num")
            + _td(number(j["mcs"], ".3f"), "num")
            + _td("yes" if j["treatment_port"] else f"no: {j['excluded_reason']}")
            + _td(j["technique_reason"])
            + "</tr>"
        )
    return _table(BEAM_HEAD, rows, "beams")


def _beam_figures(p: PlanReport) -> str:
    c = p.result.classification
    label = p.result.linked.plan.label or ""
    parts = [
        figure_html(
            plots.arrangement_png(c.beams),
            f"beam arrangement of plan {label}",
            "arrangement",
            "Beam arrangement: gantry angles and arcs seen from the foot of the couch (IEC 61217,"
            " clockwise), couch angles seen from above; setup and imaging beams dotted grey.",
        )
    ]
    views = 0
    for b in c.beams:
        name = f"beam {value_text(b.beam.number)} {b.beam.name or ''}".strip()
        png = plots.bev_png(b, name)
        views += png is not None
        parts.append(
            figure_html(png, f"beam's-eye view of {name}", "bev", f"{name}: {b.technique.value}")
        )
    legend = (
        ""
        if not views
        else (
            '<p class="note">Beam\'s-eye views in the collimator frame, mm at the isocentre: open'
            " field yellow, MLC leaves grey, jaws red; a static beam at its largest segment, an arc"
            f" at {plots.ARC_PANELS} of its control points.</p>"
        )
    )
    return legend + '<div class="figures">' + "".join(parts) + "</div>"


# ------------------------------------------------------------------------ DVH


def _dvh(d: PlanDvh, label: str, figures: bool, prescription_gy: float | None, paths: Paths) -> str:
    """The DVH figure first, then where the DVHs come from, their table and notes."""
    out = []
    if figures and d.has_curves:
        out.append(
            '<div class="figures">'
            + figure_html(
                plots.dvh_png(d, prescription_gy=prescription_gy),
                f"DVH of plan {label}",
                "dvh",
                "Cumulative DVHs: targets in warm colours, organs at risk in cool ones;"
                " stored curves solid, computed curves dashed.",
            )
            + "</div>"
        )
    sources = []
    if d.stored_from:
        sources.append(f"stored in {_path(paths.relative(d.stored_from))}")
    if d.computed_from:
        structures, dose = (paths.relative(f) for f in d.computed_from)
        sources.append(f"computed by dicompyler-core from {_path(structures)} and {_path(dose)}")
    if sources:
        out.append(f'<p class="note">DVHs {"; ".join(sources)}.</p>')
    out.append(_dvh_table(d))
    out.append(_dvh_notes(d, paths))
    return "\n".join(part for part in out if part)


def _dvh_table(d: PlanDvh) -> str:
    table = dvh_rows(d)
    if not table:
        return ""
    rows = []
    for roi, source, stats in table:
        cells = dvh_cells(roi, source, stats)
        rows.append(
            f'<tr class="dvh-row {source}">'
            + _td(cells[0])
            + _td(ROLE_LABELS.get(roi.role, roi.role), f"role-{roi.role}")
            + _td(source)
            + "".join(_td(v, "num") for v in cells[3:])
            + "</tr>"
        )
    return (
        _table(dvh_header(d), rows, "dvh")
        + f'<p class="note">{_e(min_mean_max_text(d) or "")}.</p>'
    )


def _dvh_notes(d: PlanDvh, paths: Paths) -> str:
    items = []
    for roi in d.rois:
        if roi.agreement is not None:
            ok = roi.agreement.agrees
            cls = "agree" if ok else "differ" if ok is False else "note"
            items.append(
                f'<li class="{cls}">{_e(roi.roi_name)}: stored and computed'
                f" {_e(agreement_line(roi))}</li>"
            )
        items += [
            f'<li class="differ">{_e(roi.roi_name)}: warning: {_e(paths.in_text(w))}</li>'
            for w in roi.warnings
        ]
        if roi.note:
            items.append(f'<li class="note">{_e(roi.roi_name)}: {_e(paths.in_text(roi.note))}</li>')
    items += [f'<li class="note">{_e(paths.in_text(n))}</li>' for n in d.notes]
    return f'<ul class="dvh-notes">{"".join(items)}</ul>' if items else ""
