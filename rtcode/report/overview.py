"""The department overview: one self-contained HTML page for a whole scan.

What was scanned and when, counts (codes, categories, planning systems, machines,
techniques, months), the distribution of MCS per technique, what to look at (flags,
errors, skipped files), a sortable table of plans and each plan's evidence.

Everything is inside the page: styles inline, figures as PNG ``data:`` URIs, one small
inline script (sorting) that the Content-Security-Policy admits by its hash and nothing
else; without it the table is a plain table. Every string from a file or the file
system is HTML-escaped where it is written, through ``_e``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rtcode import __version__
from rtcode.measure.metrics import plan_metrics
from rtcode.model.codes import LABELS, BeamAssessment, Category, Classification
from rtcode.model.results import PlanResult, ScanResult
from rtcode.output.render import ADVISORY
from rtcode.report import overview_plots
from rtcode.report.html import figure_html as _figure
from rtcode.report.patients import fired_word, value_text

NO_CODE = "no code"
NO_DATE = "no plan date"
NOT_STATED = "(not stated)"
CONFIDENCE_RANK = {"high": 1, "medium": 2, "low": 3}  # sorts high first

# The sorting script: a click (or Enter) on a header sorts the table's rows by that
# column, again the other way round; numbers as numbers (empty cells last), text in
# natural order; ties keep their order. A cell's data-sort, when it has one, is its key.
SCRIPT = """
document.querySelectorAll('table.sortable').forEach((table) => {
  const body = table.tBodies[0];
  const heads = [...table.tHead.rows[0].cells];
  const key = (row, col) => {
    const cell = row.cells[col];
    const own = cell.getAttribute('data-sort');
    return own === null ? cell.textContent.trim() : own;
  };
  const sortBy = (col) => {
    const th = heads[col];
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    heads.forEach((h) => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    const numeric = th.dataset.type === 'num';
    const rows = [...body.rows].map((row, i) => [key(row, col), i, row]);
    rows.sort((a, b) => {
      if (numeric) {
        const x = a[0] === '' ? NaN : Number(a[0]);
        const y = b[0] === '' ? NaN : Number(b[0]);
        if (Number.isNaN(x) !== Number.isNaN(y)) return Number.isNaN(x) ? 1 : -1;
        return (Number.isNaN(x) ? 0 : (x - y) * dir) || a[1] - b[1];
      }
      return a[0].localeCompare(b[0], undefined, {numeric: true}) * dir || a[1] - b[1];
    });
    rows.forEach((r) => body.appendChild(r[2]));
  };
  table.classList.add('js-sort');
  heads.forEach((th, col) => {
    th.tabIndex = 0;
    th.title = 'sort by this column';
    th.addEventListener('click', () => sortBy(col));
    th.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(col); }
    });
  });
});
"""


def script_hash(script: str) -> str:
    """The CSP source that admits exactly this inline script."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline';"
    f" script-src {script_hash(SCRIPT)}"
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2330; margin: 0 auto; max-width: 1320px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding: 6px 10px; background: #24344d; color: #fff;
     border-radius: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; border-bottom: 2px solid #24344d; }
p.advisory { background: #fff6d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
p.empty { font-size: 16px; font-weight: 600; background: #fdecea; padding: 8px 12px; }
table { border-collapse: collapse; margin: 4px 0 8px; font-size: 13px; }
th, td { border: 1px solid #c9d1dc; padding: 3px 6px; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
th { background: #eef2f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path, span.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
     word-break: break-all; }
table.js-sort th { cursor: pointer; user-select: none; }
table.js-sort th::after { content: " \\2195"; color: #9aa5b5; }
table.js-sort th[aria-sort=ascending]::after { content: " \\25B2"; color: #24344d; }
table.js-sort th[aria-sort=descending]::after { content: " \\25BC"; color: #24344d; }
table.plans, table#flags { width: 100%; }
table.plans td.path { min-width: 12em; }
table.plans { font-size: 12px; }
table.plans td:nth-child(1), table.plans td:nth-child(4), table.plans td:nth-child(5),
table.plans td:nth-child(7), table#flags td:nth-child(-n+4) { white-space: nowrap; }
div.scroll { overflow-x: auto; }
table.plans tbody tr:target, article.plan:target { outline: 3px solid #e0a800; }
.grid { display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; }
.grid > div { min-width: 260px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
dl.facts dt { color: #4b5563; } dl.facts dd { margin: 0; }
.code { font-size: 17px; font-weight: 700; }
.confidence-high { color: #1b5e20; } .confidence-medium { color: #8a5a00; }
.confidence-low { color: #b71c1c; }
li.warning, td.warning { color: #8a1c1c; } li.info { color: #374151; }
tr.fired-yes td.fired { background: #dff3e3; color: #1b5e20; font-weight: 600; }
tr.fired-unknown td.fired { background: #fff3cd; color: #7a5b00; }
table.evidence { width: 100%; table-layout: fixed; }
table.evidence td { font-size: 12px; }
table.evidence col.rule { width: 14%; } table.evidence col.fired { width: 7%; }
table.evidence col.finding { width: 33%; } table.evidence col.observed { width: 15%; }
table.evidence col.threshold { width: 14%; } table.evidence col.path { width: 17%; }
figure { margin: 0; border: 1px solid #d7dde6; padding: 4px; background: #fff;
         width: min-content; }
figure img { display: block; }
figcaption { font-size: 12px; color: #4b5563; }
.note { color: #4b5563; font-size: 13px; }
nav a { margin-right: 12px; }
article.plan { border-top: 1px solid #c9d1dc; margin-top: 12px; }
@media print { table, figure { break-inside: avoid; } }
"""


# ------------------------------------------------------------------ text helpers


def person_name(value: str | None) -> str | None:
    """A DICOM person name (PS3.5 6.2: family^given^middle^prefix^suffix, groups
    separated by "=") as a person reads it: "Family, Prefix Given Middle, Suffix", from
    the first group that has one. None when there is no name."""
    if value is None:
        return None
    for group in str(value).split("="):
        parts = [p.strip() for p in group.split("^")] + [""] * 5
        family, given, middle, prefix, suffix = parts[:5]
        first = " ".join(p for p in (prefix, given, middle) if p)
        name = ", ".join(p for p in (family, first) if p)
        if name and suffix:
            name += f", {suffix}"
        elif suffix:
            name = suffix
        if name:
            return name
    return None


def plan_month(date: str | None) -> str:
    """ "YYYY-MM" of a DICOM DA plan date; ``NO_DATE`` when absent or not a date."""
    if date and len(date) == 8 and date.isdigit() and 1 <= int(date[4:6]) <= 12:
        return f"{date[:4]}-{date[4:6]}"
    return NO_DATE


def _date(date: str | None) -> str:
    if date and len(date) == 8 and date.isdigit():
        return f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return date or "-"


def _folder_of(path: str) -> str:
    return path[: max(path.rfind("/"), path.rfind("\\"), 0)]


def common_folder(paths: Iterable[str]) -> str:
    """The longest folder (or URL prefix) that every path lies in, without a trailing
    separator; "" when they share none."""
    folders = [_folder_of(p) for p in paths]
    if not folders:
        return ""
    first, last = min(folders), max(folders)  # their common prefix is everyone's
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    if all(len(f) == n or f[n] in "/\\" for f in folders):
        return first[:n]
    return _folder_of(first[:n])


def relative(path: str, folder: str) -> str:
    """``path`` below ``folder`` (as ``common_folder`` gives it), else as it is."""
    if folder and path.startswith(folder) and path[len(folder) : len(folder) + 1] in ("/", "\\"):
        return path[len(folder) + 1 :]
    return path


def system_name(result: PlanResult) -> str:
    ps = result.linked.plan.planning_system
    return " ".join(v for v in (ps.manufacturer, ps.model) if v) or NOT_STATED


def _ports(c: Classification) -> list[BeamAssessment]:
    return [b for b in c.beams if b.counted]


def machines(result: PlanResult) -> list[str]:
    """The treatment machines of a plan's treatment beams (of every beam when none is
    a treatment port), in beam order; none for a plan without beams."""
    c = result.classification
    beams = _ports(c) or list(c.beams)
    return list(dict.fromkeys((b.beam.machine or NOT_STATED) for b in beams))


def techniques(result: PlanResult) -> list[str]:
    """The techniques of a plan's treatment beams, in beam order; a brachytherapy plan's
    is "brachytherapy" and its treatment type; "(no treatment beam)" when none."""
    plan = result.linked.plan
    if plan.brachy is not None and not plan.beams:
        kind = plan.brachy.treatment_type
        return [f"brachytherapy {kind}" if kind else "brachytherapy"]
    ports = _ports(result.classification)
    return list(dict.fromkeys(b.technique.value for b in ports)) or ["(no treatment beam)"]


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def plan_mcs(result: PlanResult) -> float | None:
    """The plan's MCS: its treatment beams' MCS weighted by MU (as ``rtcode inspect``)."""
    ports = _ports(result.classification)
    if not ports:
        return None
    plan = result.linked.plan
    agg = plan_metrics(
        [(b.metrics, b.meterset_mu) for b in ports],
        [plan.beam_course_mu(b.beam.number) for b in ports],
    )
    return _finite(agg.mcs)


def mcs_by_technique(scan: ScanResult) -> dict[str, list[float]]:
    """Each treatment beam's MCS, by the beam's technique (beams with one only)."""
    out: dict[str, list[float]] = defaultdict(list)
    for p in scan.plans:
        for b in _ports(p.classification):
            value = _finite(b.metrics.mcs)
            if value is not None:
                out[b.technique.value].append(value)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------ counts


@dataclass(frozen=True)
class Counts:
    """What the page counts, from a scan (the tests count again on their own)."""

    by_code: list[tuple[str | None, int]]
    by_category: list[tuple[str, int]]
    by_system: list[tuple[str, int, list[str]]]  # system, plans, software versions
    by_machine: list[tuple[str, int, int]]  # machine, plans, treatment beams
    by_technique: list[tuple[str, int, int]]  # technique, plans, treatment beams
    months: list[str]
    codes_by_month: dict[tuple[str, str | None], int]
    flags: list[tuple[str, str, list[int], int]]  # flag, severity, plan numbers, times


def count(scan: ScanResult) -> Counts:
    plans = scan.plans
    codes = Counter(p.classification.code for p in plans)
    categories = Counter(p.classification.category.value for p in plans)
    order = [c.value for c in Category]
    versions: dict[str, set[str]] = defaultdict(set)
    systems: Counter[str] = Counter()
    machine_plans: Counter[str] = Counter()
    machine_beams: Counter[str] = Counter()
    tech_plans: Counter[str] = Counter()
    tech_beams: Counter[str] = Counter()
    by_month: Counter[tuple[str, str | None]] = Counter()
    flag_plans: dict[tuple[str, str], list[int]] = defaultdict(list)
    flag_times: Counter[tuple[str, str]] = Counter()
    for i, p in enumerate(plans, 1):
        plan, c = p.linked.plan, p.classification
        systems[system_name(p)] += 1
        if plan.planning_system.software_versions:
            versions[system_name(p)].add(plan.planning_system.software_versions)
        for m in machines(p):
            machine_plans[m] += 1
        for b in _ports(c):
            machine_beams[b.beam.machine or NOT_STATED] += 1
            tech_beams[b.technique.value] += 1
        for t in techniques(p):
            tech_plans[t] += 1
        by_month[(plan_month(plan.date), c.code)] += 1
        for f in c.flags:
            key = (f.flag, f.severity)
            flag_times[key] += 1
            if i not in flag_plans[key]:
                flag_plans[key].append(i)
    months = sorted({m for m, _ in by_month}, key=lambda m: (m == NO_DATE, m))
    return Counts(
        by_code=sorted(codes.items(), key=lambda kv: (kv[0] is None, kv[0] or "")),
        by_category=sorted(categories.items(), key=lambda kv: order.index(kv[0])),
        by_system=[(s, n, sorted(versions[s])) for s, n in _most(systems)],
        by_machine=[(m, n, machine_beams[m]) for m, n in _most(machine_plans)],
        by_technique=[(t, n, tech_beams[t]) for t, n in _most(tech_plans)],
        months=months,
        codes_by_month=dict(by_month),
        flags=sorted(
            ((f, s, flag_plans[(f, s)], flag_times[(f, s)]) for f, s in flag_plans),
            key=lambda r: (r[1] != "warning", -len(r[2]), r[0]),
        ),
    )


def _most(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


# ------------------------------------------------------------------ HTML pieces


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _th(text: str, num: bool = False) -> str:
    return f'<th class="num" data-type="num">{_e(text)}</th>' if num else f"<th>{_e(text)}</th>"


def _table(
    ident: str, head: Sequence[str], rows: Iterable[str], cls: str = "counts", nums: int = 0
) -> str:
    """A table whose last ``nums`` columns are numbers."""
    cells = "".join(_th(h, i >= len(head) - nums) for i, h in enumerate(head))
    return (
        f'<table id="{_e(ident)}" class="{cls}"><thead><tr>{cells}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _td(value: Any, cls: str | None = None, sort: Any = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    if sort is not None:
        attr += f' data-sort="{_e(sort)}"'
    return f"<td{attr}>{_e(value)}</td>"


def _num(value: int | float | None) -> str:
    if value is None:
        return '<td class="num" data-sort="">-</td>'
    return f'<td class="num">{_e(value)}</td>'


def _row(key: Any, *cells: str) -> str:
    return f'<tr data-key="{_e(key)}">{"".join(cells)}</tr>'


def anchor(i: int) -> str:
    """The id of plan number ``i``'s evidence (1-based, in scan order)."""
    return f"plan-{i}"


def _plan_link(i: int, result: PlanResult) -> str:
    label = result.linked.plan.label or result.linked.plan.name or "plan"
    return f'<a href="#{anchor(i)}">{_e(f"#{i} {label}")}</a>'


def _generated(when: dt.datetime) -> str:
    text = when.strftime("%Y-%m-%d %H:%M")
    if when.tzinfo is not None:
        text += " " + (when.strftime("%Z") or when.strftime("%z"))
    return f'<time datetime="{_e(when.isoformat(timespec="seconds"))}">{_e(text)}</time>'


# ------------------------------------------------------------------------ page


def overview_html(
    result: ScanResult,
    *,
    generated: dt.datetime | None = None,
    title: str | None = None,
    inputs: Sequence[str] = (),
) -> str:
    """The overview of a scan as one HTML document. ``inputs`` are the paths or URLs
    that were scanned, as given; ``generated`` defaults to now (local time)."""
    when = generated if generated is not None else dt.datetime.now().astimezone()
    plans = result.plans
    tally = result.inventory.tally()
    folder = common_folder([p.linked.plan.path for p in plans] + [e.path for e in tally.errors])
    patients = len({p.linked.plan.patient_id for p in plans})
    if title is None:
        title = f"rtcode overview: {len(plans)} plan(s) of {patients} patient(s)"
    counts = count(result)
    body = [_header(result, title, when, inputs, folder, len(plans), patients)]
    if not plans:
        body.append(
            '<p class="empty">No plans were found in what was scanned'
            + (
                " (see the files that could not be read or were skipped below)"
                if tally.errors or tally.skipped
                else ""
            )
            + ".</p>"
        )
    else:
        body.append(
            "<nav>"
            + "".join(
                f'<a href="#{ident}">{_e(text)}</a>'
                for ident, text in (
                    ("codes", "codes"),
                    ("systems", "systems and machines"),
                    ("techniques", "techniques"),
                    ("months", "months"),
                    ("mcs", "MCS"),
                    ("look", "to look at"),
                    ("plans", "plans"),
                    ("evidence", "evidence"),
                )
            )
            + "</nav>"
        )
        body += [
            _codes(counts),
            _systems(counts),
            _techniques(counts),
            _months(counts),
            _mcs(result),
        ]
    body.append(_look_at(result, counts, folder))
    if plans:
        body.append(_plans_table(result, folder))
        body.append('<section id="evidence"><h2>Evidence per plan</h2>')
        body += [_evidence(i, p, folder) for i, p in enumerate(plans, 1)]
        body.append("</section>")
    body.append(
        f'<footer><p class="note">{len(plans)} plan(s) from {tally.files_seen} file(s);'
        f" rtcode {_e(__version__)}, policy {_e(result.policy.name)}"
        f" {_e(result.policy.version)}. {_e(ADVISORY)}</p></footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + (f"\n<script>{SCRIPT}</script>" if plans else "")
        + "\n</body></html>\n"
    )


def _header(
    result: ScanResult,
    title: str,
    when: dt.datetime,
    inputs: Sequence[str],
    folder: str,
    n_plans: int,
    patients: int,
) -> str:
    tally = result.inventory.tally()
    scanned = (
        "".join(f'<li><span class="path">{_e(i)}</span></li>' for i in inputs)
        if inputs
        else f'<li>(not named) files under <span class="path">{_e(folder or "-")}</span></li>'
    )
    policy = result.policy
    facts = [
        ("scanned", f'<ul class="inputs">{scanned}</ul>'),
        ("generated", _generated(when)),
        (
            "policy",
            f"{_e(policy.name)} {_e(policy.version)}"
            f' <span class="note">(sha256 {_e(policy.sha256[:12])})</span>',
        ),
        (
            "found",
            _e(
                f"{n_plans} plan(s) of {patients} patient(s) in {tally.files_seen} file(s):"
                f" {tally.structure_sets} structure set(s), {tally.doses} dose(s),"
                f" {tally.images_skipped} image(s) and"
                f" {tally.other_dicom_skipped + tally.non_dicom_skipped} other file(s)"
                f" skipped, {len(tally.errors)} file(s) unreadable"
            ),
        ),
        ("rtcode", _e(__version__)),
    ]
    interrupted = (
        '<p class="empty">The scan was interrupted (Ctrl-C): only the files read before it'
        " are counted.</p>"
        if result.interrupted
        else ""
    )
    return (
        "<header>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="advisory">{_e(ADVISORY)} The short code labels are rtcode\'s own.</p>'
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl>"
        + interrupted
        + "</header>"
    )


def _section(ident: str, heading: str, *parts: str) -> str:
    """A section of side-by-side parts (figures, tables)."""
    inner = "".join(f"<div>{p}</div>" for p in parts)
    return f'<section id="{ident}"><h2>{_e(heading)}</h2><div class="grid">{inner}</div></section>'


def _code_name(code: str | None) -> str:
    return f"{code} {LABELS.get(code, '')}".strip() if code else NO_CODE


def _codes(counts: Counts) -> str:
    by_code = _table(
        "by-code",
        ["code", "label", "plans"],
        (
            _row(
                code or "",
                _td(code or "-"),
                _td(LABELS.get(code or "", NO_CODE if code is None else "")),
                _num(n),
            )
            for code, n in counts.by_code
        ),
        nums=1,
    )
    by_category = _table(
        "by-category",
        ["category", "plans"],
        (_row(cat, _td(cat), _num(n)) for cat, n in counts.by_category),
        nums=1,
    )
    return (
        '<section id="codes"><h2>Codes and categories</h2><div class="grid">'
        f"<div>{by_code}</div><div>{by_category}</div></div></section>"
    )


def _systems(counts: Counts) -> str:
    systems = _table(
        "by-system",
        ["planning system", "software versions", "plans"],
        (_row(s, _td(s), _td(", ".join(v) or "-"), _num(n)) for s, n, v in counts.by_system),
        nums=1,
    )
    machines_ = _table(
        "by-machine",
        ["machine", "plans", "treatment beams"],
        (_row(m, _td(m), _num(n), _num(b)) for m, n, b in counts.by_machine),
        nums=2,
    )
    return (
        '<section id="systems"><h2>Planning systems and machines</h2><div class="grid">'
        f"<div>{systems}</div><div>{machines_}"
        '<p class="note">A plan is counted once for each machine its treatment beams use.</p>'
        "</div></div></section>"
    )


def _techniques(counts: Counts) -> str:
    table = _table(
        "by-technique",
        ["technique", "plans", "treatment beams"],
        (_row(t, _td(t), _num(n), _num(b)) for t, n, b in counts.by_technique),
        nums=2,
    )
    return (
        '<section id="techniques"><h2>Techniques</h2>'
        f"{table}"
        '<p class="note">A plan is counted once for each technique its treatment beams use;'
        " the techniques are the beams', as the evidence names them.</p></section>"
    )


def _months(counts: Counts) -> str:
    codes = [c for c, _ in counts.by_code]
    names = {c: _code_name(c) for c in codes}
    png = overview_plots.codes_by_month_png(counts.months, codes, counts.codes_by_month, names)
    rows = []
    for m in counts.months:
        cells = [_num(counts.codes_by_month.get((m, c), 0)) for c in codes]
        total = sum(counts.codes_by_month.get((m, c), 0) for c in codes)
        rows.append(_row(m, _td(m), *cells, _num(total)))
    table = _table(
        "by-month", ["month", *(c or NO_CODE for c in codes), "plans"], rows, nums=len(codes) + 1
    )
    figure = _figure(
        png,
        "plans per month of plan date, by code",
        "months",
        "Plans per month (plan date, RTPlanDate), by code.",
    )
    return _section("months", "Codes per month of plan date", figure, table)


def _mcs(result: ScanResult) -> str:
    groups = mcs_by_technique(result)
    beams: Counter[str] = Counter(
        b.technique.value for p in result.plans for b in _ports(p.classification)
    )
    rows = []
    for t in sorted(beams):
        values = groups.get(t, [])
        stats = (
            [
                _num(round(min(values), 3)),
                _num(round(statistics.median(values), 3)),
                _num(round(max(values), 3)),
            ]
            if values
            else [_num(None)] * 3
        )
        rows.append(_row(t, _td(t), _num(beams[t]), _num(len(values)), *stats))
    table = _table(
        "mcs-by-technique",
        ["technique", "treatment beams", "with MCS", "lowest", "median", "highest"],
        rows,
        nums=5,
    )
    figure = _figure(
        overview_plots.mcs_by_technique_png(groups),
        "modulation complexity score per treatment beam, by technique",
        "mcs",
        "MCS of each treatment beam (McNiven et al. 2010, MU-weighted over its control"
        " points), by technique; boxes show quartiles and median.",
    )
    if not groups:
        figure = '<p class="note">No treatment beam has an MCS (it needs MLC or jaw apertures).</p>'
    return _section("mcs", "Modulation complexity (MCS) per technique", figure, table)


def _look_at(result: ScanResult, counts: Counts, folder: str) -> str:
    tally = result.inventory.tally()
    out = ['<section id="look"><h2>To look at</h2>']
    if counts.flags:
        rows = []
        for flag, severity, numbers, times in counts.flags:
            links = ", ".join(_plan_link(i, result.plans[i - 1]) for i in numbers)
            rows.append(
                f'<tr data-key="{_e(flag)}|{_e(severity)}">{_td(flag)}{_td(severity, severity)}'
                f"{_num(len(numbers))}{_num(times)}<td>{links}</td></tr>"
            )
        out.append("<h3>Flags</h3>")
        out.append(
            '<table id="flags" class="counts"><thead><tr><th>flag</th><th>severity</th>'
            '<th class="num">plans</th><th class="num">times</th><th>plans</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        out.append('<p class="note">No plan carries a flag.</p>')
    out.append("<h3>Files that could not be read</h3>")
    if tally.errors:
        out.append(
            _table(
                "errors",
                ["file", "problem"],
                (
                    _row(e.path, _td(relative(e.path, folder), "path"), _td(e.error))
                    for e in tally.errors
                ),
                cls="errors",
            )
        )
    else:
        out.append('<p class="note">None.</p>')
    out.append("<h3>Files skipped</h3>")
    skipped = [_row(reason, _td(reason), _num(n)) for reason, n in tally.skipped_by_reason()]
    if tally.images_skipped:
        skipped.append(
            _row(
                "images",
                _td("images (counted, not read as RT objects)"),
                _num(tally.images_skipped),
            )
        )
    out.append(
        _table("skipped", ["reason", "files"], skipped, nums=1)
        if skipped
        else '<p class="note">None.</p>'
    )
    out.append("</section>")
    return "".join(out)


PLAN_COLUMNS = (
    ("#", True),
    ("patient", False),
    ("plan", False),
    ("plan date", False),
    ("code", False),
    ("category", False),
    ("confidence", True),
    ("techniques", False),
    ("ports", True),
    ("machines", False),
    ("planning system", False),
    ("MCS", True),
    ("warnings", True),
    ("file", False),
)


def _plans_table(result: ScanResult, folder: str) -> str:
    rows = []
    for i, p in enumerate(result.plans, 1):
        plan, c = p.linked.plan, p.classification
        warnings = sum(1 for f in c.flags if f.severity == "warning")
        mcs = plan_mcs(p)
        patient = f"{person_name(plan.patient_name) or ''} {plan.patient_id or ''}"
        cells = [
            f'<td class="num"><a href="#{anchor(i)}">{i}</a></td>',
            f'<td data-sort="{_e(patient)}">{_e(person_name(plan.patient_name) or "-")}'
            f'<br><span class="note">{_e(plan.patient_id or "no ID")}</span></td>',
            f'<td><a href="#{anchor(i)}">{_e(plan.label or plan.name or "-")}</a></td>',
            _td(_date(plan.date), sort=plan.date or ""),
            _td(c.code or "-", f"code-{c.code}" if c.code else None),
            _td(c.category.value),
            _td(c.confidence, f"confidence-{c.confidence}", CONFIDENCE_RANK.get(c.confidence, 9)),
            _td(", ".join(t.replace("_", " ") for t in techniques(p))),  # wraps
            _num(len(_ports(c))),
            _td(", ".join(machines(p)) or "-"),
            _td(system_name(p)),
            _num(round(mcs, 3) if mcs is not None else None),
            _num(warnings),
            _td(relative(plan.path, folder), "path"),
        ]
        rows.append(f'<tr class="plan-row" data-plan="{i}">{"".join(cells)}</tr>')
    head = "".join(_th(name, num) for name, num in PLAN_COLUMNS)
    return (
        '<section id="plans"><h2>Plans</h2>'
        '<p class="note">Click a column heading to sort; a plan\'s number or label leads to its'
        " evidence. Files are named below "
        f'<span class="path">{_e(folder or "-")}</span>.</p>'
        f'<div class="scroll"><table id="plan-table" class="plans sortable"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _evidence(i: int, p: PlanResult, folder: str) -> str:
    plan, c = p.linked.plan, p.classification
    heading = f"#{i} {plan.label or '-'}" + (f" ({plan.name})" if plan.name else "")
    facts = [
        ("file", f'<span class="path">{_e(plan.path)}</span>'),
        ("patient", _e(f"{person_name(plan.patient_name) or '-'} ({plan.patient_id or 'no ID'})")),
        ("plan date", _e(_date(plan.date))),
        (
            "code",
            f'<span class="code">{_e(c.code or "no code")}</span> {_e(c.label or "")}'
            f" ({_e(c.category.value)})",
        ),
        ("confidence", f'<span class="confidence-{_e(c.confidence)}">{_e(c.confidence)}</span>'),
        ("techniques", _e(", ".join(techniques(p)))),
        ("machines", _e(", ".join(machines(p)) or "-")),
        ("planning system", _e(system_name(p))),
    ]
    reasons = "".join(f"<li>{_e(e.finding)}</li>" for e in c.deciding_evidence())
    out = [
        f'<article class="plan" id="{anchor(i)}"><h3>{_e(heading)}</h3>',
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
        f'<p><strong>Because</strong></p><ul class="reasons">{reasons or "<li>-</li>"}</ul>',
    ]
    if c.alternatives:
        out.append(
            '<p><strong>Alternatives</strong></p><ul class="alternatives">'
            + "".join(f"<li>{_e(a.code)} {_e(a.condition)}</li>" for a in c.alternatives)
            + "</ul>"
        )
    if c.flags:
        out.append(
            '<p><strong>Flags</strong></p><ul class="flags">'
            + "".join(
                f'<li class="{_e(f.severity)}">{_e(f.severity)}: {_e(f.message)}'
                f' <span class="note">({_e(f.flag)})</span></li>'
                for f in c.flags
            )
            + "</ul>"
        )
    rows = []
    for e in c.evidence:
        fired = {True: "yes", False: "no", None: "unknown"}[e.fired]
        rows.append(
            f'<tr class="evidence-row fired-{fired}">{_td(e.rule)}'
            f"{_td(fired_word(e.fired), 'fired')}{_td(e.finding)}"
            f"{_td(value_text(e.observed))}{_td(value_text(e.threshold))}"
            f"{_td(relative(e.dicom_path or '-', folder), 'path')}</tr>"
        )
    out.append(
        f"<details><summary>All evidence ({len(c.evidence)} rule(s))</summary>"
        '<table class="evidence"><colgroup><col class="rule"><col class="fired">'
        '<col class="finding"><col class="observed"><col class="threshold"><col class="path">'
        "</colgroup><thead><tr><th>rule</th><th>fired</th><th>finding</th>"
        "<th>observed</th><th>threshold</th><th>DICOM element</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )
    out.append('<p class="note"><a href="#plans">back to the plans</a></p></article>')
    return "".join(out)
