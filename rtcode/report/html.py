"""The report as one self-contained HTML file a physicist can put in the chart.

Everything is inside the file: styles inline, figures as PNG ``data:`` URIs, no
script, no font, no link to anything outside. A Content-Security-Policy forbids
the page from loading anything else, so even a hostile string could not fetch or
run anything; and every string that comes from a DICOM file (or from the file
system) is HTML-escaped where it is written, through ``_e``.
"""

from __future__ import annotations

import base64
import html
import struct
from collections.abc import Iterable
from typing import Any

from rtcode import __version__
from rtcode.measure.dvh import PlanDvh
from rtcode.model.codes import Classification
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
    patient_heading,
    value_text,
    with_repeats,
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
table.evidence col.rule { width: 14%; } table.evidence col.fired { width: 7%; }
table.evidence col.finding { width: 30%; } table.evidence col.observed { width: 13%; }
table.evidence col.threshold { width: 13%; } table.evidence col.setting { width: 10%; }
table.evidence col.path { width: 13%; }
th { background: #eef2f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path, span.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
     word-break: break-all; }
tr.fired-yes td.result { background: #dff3e3; color: #1b5e20; font-weight: 600; }
tr.fired-no td.result { color: #6b7280; }
tr.fired-unknown td.result { background: #fff3cd; color: #7a5b00; font-weight: 600; }
tr.decides td { border-left-width: 1px; }
tr.decides td.rule { border-left: 4px solid #24344d; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
dl.facts dt { color: #4b5563; } dl.facts dd { margin: 0; }
.code { font-size: 18px; font-weight: 700; }
.confidence-high { color: #1b5e20; } .confidence-medium { color: #8a5a00; }
.confidence-low { color: #b71c1c; }
ul.flags li.warning { color: #8a1c1c; } ul.flags li.info { color: #374151; }
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


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _img(png: bytes | None, alt: str, cls: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    width, height = struct.unpack(">II", png[16:24])  # the PNG header: laid out before decoding
    return (
        f'<img class="plot {cls}" alt="{_e(alt)}" width="{width}" height="{height}"'
        f' src="data:image/png;base64,{data}">'
    )


def _figure(png: bytes | None, alt: str, cls: str, caption: str) -> str:
    if not png:
        return ""
    return f"<figure>{_img(png, alt, cls)}<figcaption>{_e(caption)}</figcaption></figure>"


def _table(head: Iterable[str], rows: Iterable[str], cls: str, cols: str = "") -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f'<table class="{cls}">{cols}<thead><tr>{cells}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _td(value: Any, cls: str | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{_e(value)}</td>"


def _anchor(i: int) -> str:
    return f"plan-{i}"


# ----------------------------------------------------------------------- page


def report_html(report: Report, *, figures: bool = True) -> str:
    """The whole report as an HTML document (figures drawn unless ``figures`` is False)."""
    scan = report.scan
    n_plans = len(scan.plans)
    title = f"rtcode report: {len(report.patients)} patient(s), {n_plans} plan(s)"
    numbered = {id(p): i for i, p in enumerate(report.plans, 1)}
    body = [
        "<header>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="advisory">{_e(ADVISORY)} The short code labels are rtcode\'s own.</p>',
        f"<p>rtcode {_e(__version__)}, policy {_e(scan.policy.name)} {_e(scan.policy.version)}"
        f" (sha256 {_e(scan.policy.sha256[:12])})"
        + (
            ", de-identified: patient names, IDs, dates and UIDs are pseudonyms"
            if report.deidentified
            else ""
        )
        + ". DVHs computed by dicompyler-core 0.5.6 where the export has none"
        + (" and, as asked, beside the stored ones" if report.compute_dvh == "always" else "")
        + ".</p>",
        "</header>",
        _contents(report, numbered),
    ]
    for k, patient in enumerate(report.patients, 1):
        body.append(f'<section class="patient" id="patient-{k}">')
        body.append(f"<h2>{_e(patient_heading(patient))}</h2>")
        for p in patient.plans:
            body.append(_plan(p, numbered[id(p)], figures))
        body.append("</section>")
    inv = scan.inventory
    if inv.errors:
        rows = [f"<tr>{_td(e.path, 'path')}{_td(e.error)}</tr>" for e in inv.errors]
        body.append('<section class="errors"><h2>Files that could not be read</h2>')
        body.append(_table(["file", "problem"], rows, "errors") + "</section>")
    body.append(
        f'<footer><p class="note">{inv.files_seen} file(s) read: {len(inv.structure_sets)}'
        f" structure set(s), {len(inv.doses)} dose(s), {inv.images_skipped} image(s) skipped,"
        f" {len(inv.errors)} error(s).</p></footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _contents(report: Report, numbered: dict[int, int]) -> str:
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
                + _td(plan.path, "path")
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


def _plan(p: PlanReport, i: int, figures: bool) -> str:
    r, c = p.result, p.result.classification
    lp, plan = r.linked, r.linked.plan
    heading = f"Plan {plan.label or '(no label)'}" + (f" ({plan.name})" if plan.name else "")
    ss = lp.structure_set
    ps = plan.planning_system
    system = [ps.manufacturer, ps.model, ps.software_versions]
    facts = [
        (
            "code",
            f'<span class="code">{_e(c.code or "no code")}</span>'
            f" {_e(c.label or c.category.value)}",
        ),
        ("confidence", f'<span class="confidence-{_e(c.confidence)}">{_e(c.confidence)}</span>'),
        ("file", f'<span class="path">{_e(plan.path)}</span>'),
        ("patient", _e(plan.patient_id or "-")),
        ("intent", _e(plan.intent or "-")),
        ("approval", _e(plan.approval_status or "absent")),
        ("plan date", _e(date_text(plan.date))),
        ("fractions", "<br>".join(_e(t) for t in fractionation_texts(plan)) or "no fraction group"),
        (
            "prescription",
            "<br>".join(_e(t) for t in prescription_texts(plan))
            or "none in the plan (no DoseReferenceSequence)",
        ),
        ("planning system", _e(" ".join(filter(None, system)) or "-")),
        (
            "structure set",
            _e(lp.structure_set_status)
            + (f' <span class="path">{_e(ss.path)}</span>' if ss else ""),
        ),
        (
            "dose",
            " ".join(f'<span class="path">{_e(d.path)}</span>' for d in lp.doses)
            or "none in the export",
        ),
    ]
    out = [
        f'<article class="plan" id="{_anchor(i)}" data-plan="{i}">',
        f"<h3>{_e(heading)}</h3>",
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
        _brachy(p),
        "<h4>Evidence</h4>",
        _evidence(c),
    ]
    if c.flags or p.flags:
        items = "".join(
            f'<li class="{_e(f.severity)}"><strong>{_e(f.severity)}</strong>: {_e(f.message)}</li>'
            for f in (*c.flags, *p.flags)
        )
        out.append(f'<h4>Flags</h4><ul class="flags">{items}</ul>')
    if c.alternatives:
        items = "".join(
            f"<li><strong>{_e(a.code)}</strong> ({_e(a.category)}) {_e(a.condition)}</li>"
            for a in c.alternatives
        )
        out.append(f'<h4>Alternatives</h4><ul class="alternatives">{items}</ul>')
    if r.related:
        rows = [
            "<tr>"
            + _td(rc.code)
            + _td("" if rc.units is None else rc.units, "num")
            + _td(rc.kind)
            + _td(rc.reason)
            + _td(rc.setting or "")
            + "</tr>"
            for rc in r.related
        ]
        out.append("<h4>Related codes</h4>")
        out.append(_table(["code", "units", "kind", "reason", "policy setting"], rows, "related"))
    if c.beams:
        out.append("<h4>Beams</h4>")
        out.append(_beams(c))
        if figures:
            out.append(_beam_figures(p))
    out.append("<h4>Dose-volume histograms</h4>")
    rx = plan.first_target_prescription
    out.append(_dvh(p.dvh, plan.label or "", figures, rx.dose_gy if rx is not None else None))
    out.append("</article>")
    return "\n".join(out)


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


def _evidence(c: Classification) -> str:
    deciding = {id(e) for e in c.deciding_evidence()}
    rows = []
    for e, repeated in with_repeats(c):
        state = {True: "yes", False: "no", None: "unknown"}[e.fired]
        threshold = "" if e.threshold is None else value_text(e.threshold)
        cls = f"evidence-row fired-{state}" + (" decides" if id(e) in deciding else "")
        rows.append(
            f'<tr class="{cls}">'
            + _td(e.rule, "rule")
            + _td(fired_word(e.fired), "result")
            + _td(e.finding)
            + _td(value_text(e.observed))
            + _td("as above" if repeated else threshold)
            + _td(e.setting or "")
            + _td(e.dicom_path or "", "path")
            + "</tr>"
        )
    head = ["rule", "fired", "finding", "observed", "threshold", "policy setting", "DICOM element"]
    note = (
        '<p class="note">Rows with a bar on the left are the rule group that decided the code;'
        " every other rule is shown with why it did or did not apply.</p>"
    )
    cols = "".join(
        f'<col class="{c}">'
        for c in ("rule", "fired", "finding", "observed", "threshold", "setting", "path")
    )
    return _table(head, rows, "evidence", f"<colgroup>{cols}</colgroup>") + note


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
    head = [
        "#",
        "name",
        "technique",
        "radiation",
        "MU",
        "CPs",
        "segs",
        "gantry",
        "coll",
        "couch",
        "MCS",
        "port",
        "why this technique",
    ]
    return _table(head, rows, "beams")


def _beam_figures(p: PlanReport) -> str:
    c = p.result.classification
    label = p.result.linked.plan.label or ""
    parts = [
        _figure(
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
            _figure(png, f"beam's-eye view of {name}", "bev", f"{name}: {b.technique.value}")
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


def _dvh(d: PlanDvh, label: str, figures: bool, prescription_gy: float | None = None) -> str:
    out = []
    sources = []
    if d.stored_from:
        sources.append(f'stored in <span class="path">{_e(d.stored_from)}</span>')
    if d.computed_from:
        sources.append(
            "computed by dicompyler-core from"
            f' <span class="path">{_e(d.computed_from[0])}</span> and'
            f' <span class="path">{_e(d.computed_from[1])}</span>'
        )
    if sources:
        out.append(f'<p class="note">DVHs {"; ".join(sources)}.</p>')
    table = dvh_rows(d)
    if table:
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
        out.append(_table(dvh_header(d), rows, "dvh"))
        out.append(f'<p class="note">{_e(min_mean_max_text(d) or "")}.</p>')
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
            f'<li class="differ">{_e(roi.roi_name)}: warning: {_e(w)}</li>' for w in roi.warnings
        ]
        if roi.note:
            items.append(f'<li class="note">{_e(roi.roi_name)}: {_e(roi.note)}</li>')
    items += [f'<li class="note">{_e(n)}</li>' for n in d.notes]
    if items:
        out.append(f'<ul class="dvh-notes">{"".join(items)}</ul>')
    if figures and d.has_curves:
        out.append(
            '<div class="figures">'
            + _figure(
                plots.dvh_png(d, prescription_gy=prescription_gy),
                f"DVH of plan {label}",
                "dvh",
                "Cumulative DVHs: targets in warm colours, organs at risk in cool ones;"
                " stored curves solid, computed curves dashed.",
            )
            + "</div>"
        )
    return "\n".join(out)
