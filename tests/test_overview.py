"""The department overview (``rtcode.report.overview``): one self-contained page per scan.

The counts on the page are checked against counts the tests make from the scan result
on their own; every plan has a row and an anchor; hostile text stays text; an empty
scan says so. The browser tests run Debian's headless Chromium (skipping, saying why,
when it is absent): the page loads without a console message or a request, and a click
on a column heading sorts the rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import math
import os
import shutil
import statistics
import subprocess
import warnings
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pydicom
import pytest
from conftest import SAMPLE_DATA, SAMPLE_PLANS

from rtcode.coding.policy import load
from rtcode.engine.scan import scan
from rtcode.model.codes import LABELS
from rtcode.model.facts import Inventory, ReadError, Skipped
from rtcode.model.results import ScanResult
from rtcode.output.render import ADVISORY
from rtcode.report.overview import (
    CSP,
    SCRIPT,
    common_folder,
    overview_html,
    person_name,
    relative,
)

HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_NAME = "Evil<b>^Name&amp;"
WHEN = dt.datetime(2026, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------- page parsing


class _Page(HTMLParser):
    """Tags with attributes, ids, the page's text and its tables: table id -> rows,
    each row (its attributes, its cells' text)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.title = ""
        self.tables: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self.heads: dict[str, list[str]] = {}  # table id -> its column headings
        self._stack: list[str] = []  # ids of the open tables ("" when none)
        self._row: tuple[dict[str, str], list[str]] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self._in_title = tag == "title"
        if tag == "table":
            self._stack.append(a.get("id", ""))
            self.tables.setdefault(a.get("id", ""), [])
            self.heads.setdefault(a.get("id", ""), [])
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._stack and not self._in_head:
            self._row = (a, [])
        elif tag == "td" and self._row is not None or tag == "th" and self._in_head and self._stack:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        self._in_title = False
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "th" and self._in_head and self._cell is not None:
            self.heads[self._stack[-1]].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._stack[-1]].append(self._row)
            self._row = None
        elif tag == "table" and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and (cls is None or cls in a.get("class", "").split())
        ]

    def ids(self) -> Counter[str]:
        return Counter(a["id"] for _, a in self.tags if "id" in a)

    def counts(self, table: str, column: int = -1) -> dict[str, int]:
        """A count table as {data-key: the number in ``column``}."""
        return {a["data-key"]: int(cells[column]) for a, cells in self.tables[table]}


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sample_scan() -> ScanResult:
    return scan([str(SAMPLE_DATA)], load("default"))


@pytest.fixture(scope="module")
def sample_text(sample_scan) -> str:
    return overview_html(sample_scan, generated=WHEN, inputs=[str(SAMPLE_DATA)])


@pytest.fixture(scope="module")
def page(sample_text) -> _Page:
    return _Page(sample_text)


@pytest.fixture(scope="module")
def sample_html(sample_text, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("overview") / "overview.html"
    path.write_text(sample_text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hostile_export(tmp_path_factory) -> Path:
    """Case 06 with a plan label that is a script and a patient name with markup."""
    out = tmp_path_factory.mktemp("hostile") / "06 <i>"
    shutil.copytree(SAMPLE_DATA / "06_four_field_box_3d", out)
    with warnings.catch_warnings():  # longer than SH allows: files in the wild do that too
        warnings.simplefilter("ignore")
        rp = pydicom.dcmread(out / "RP.dcm")
        rp.RTPlanLabel = HOSTILE_LABEL
        rp.PatientName = HOSTILE_NAME
        rp.save_as(out / "RP.dcm")
    return out


def _ports(p):
    return [b for b in p.classification.beams if b.counted]


# ------------------------------------------------------------------ header, counts


def test_header_names_inputs_date_policy_and_the_advisory(sample_scan, page):
    text = " ".join(" ".join(page.text).split())
    assert page.title == f"rtcode overview: {SAMPLE_PLANS} plan(s) of" + page.title.split(" of")[1]
    assert str(SAMPLE_DATA) in text
    assert "2026-02-03 04:05 UTC" in text
    assert [a["datetime"] for a in page.having("time")] == ["2026-02-03T04:05:00+00:00"]
    policy = sample_scan.policy
    assert f"{policy.name} {policy.version}" in text and policy.sha256[:12] in text
    assert ADVISORY in text


def test_generated_defaults_to_now_and_title_can_be_given(sample_scan):
    before = dt.datetime.now().astimezone()
    page = _Page(overview_html(sample_scan, title="Oncology <dept>"))
    (when,) = [a["datetime"] for a in page.having("time")]
    stamp = dt.datetime.fromisoformat(when)
    assert before.replace(microsecond=0) <= stamp <= dt.datetime.now().astimezone()
    assert page.title == "Oncology <dept>"  # escaped in the file, read back as text


def test_counts_by_code_and_category_match_the_scan(sample_scan, page):
    codes = Counter(p.classification.code or "" for p in sample_scan.plans)
    categories = Counter(p.classification.category.value for p in sample_scan.plans)
    assert page.counts("by-code") == dict(codes)
    assert page.counts("by-category") == dict(categories)
    assert sum(page.counts("by-code").values()) == SAMPLE_PLANS
    for attrs, cells in page.tables["by-code"]:  # our own short labels
        code = attrs["data-key"]
        assert cells[1] == (LABELS[code] if code else "no code")


def test_counts_by_planning_system_machine_and_technique_match_the_scan(sample_scan, page):
    systems = Counter(
        " ".join(
            v
            for v in (
                p.linked.plan.planning_system.manufacturer,
                p.linked.plan.planning_system.model,
            )
            if v
        )
        for p in sample_scan.plans
    )
    assert page.counts("by-system") == dict(systems)
    machine_plans: Counter[str] = Counter()
    machine_beams: Counter[str] = Counter()
    technique_beams: Counter[str] = Counter()
    for p in sample_scan.plans:
        beams = _ports(p) or list(p.classification.beams)
        machine_plans.update({b.beam.machine for b in beams})
        machine_beams.update(b.beam.machine for b in _ports(p))
        technique_beams.update(b.technique.value for b in _ports(p))
    assert page.counts("by-machine", 1) == dict(machine_plans)
    assert {k: v for k, v in page.counts("by-machine", 2).items() if v} == dict(machine_beams)
    assert {k: v for k, v in page.counts("by-technique", 2).items() if v} == dict(technique_beams)
    technique_plans: Counter[str] = Counter()
    for p in sample_scan.plans:
        if p.linked.plan.brachy is not None and not p.linked.plan.beams:
            technique_plans[f"brachytherapy {p.linked.plan.brachy.treatment_type}"] += 1
        else:
            technique_plans.update({b.technique.value for b in _ports(p)})
    assert page.counts("by-technique", 1) == dict(technique_plans)


def test_codes_per_month_as_a_table_and_a_figure(sample_scan, page):
    months = Counter(
        (f"{p.linked.plan.date[:4]}-{p.linked.plan.date[4:6]}", p.classification.code or "no code")
        for p in sample_scan.plans
    )
    columns = page.heads["by-month"][1:-1]  # the codes, then "plans"
    assert sorted(columns) == sorted({code for _, code in months})
    seen = {}
    for attrs, cells in page.tables["by-month"]:
        for code, n in zip(columns, cells[1:-1], strict=True):
            if int(n):
                seen[(attrs["data-key"], code)] = int(n)
        assert int(cells[-1]) == sum(int(n) for n in cells[1:-1])
    assert seen == dict(months)
    (img,) = page.having("img", "months")
    assert img["src"].startswith("data:image/png;base64,")


def test_mcs_per_technique_matches_the_beams(sample_scan, page):
    values: dict[str, list[float]] = {}
    for p in sample_scan.plans:
        for b in _ports(p):
            if b.metrics.mcs is not None and not math.isnan(b.metrics.mcs):
                values.setdefault(b.technique.value, []).append(b.metrics.mcs)
    rows = {a["data-key"]: cells for a, cells in page.tables["mcs-by-technique"]}
    assert {k: int(c[2]) for k, c in rows.items() if int(c[2])} == {
        k: len(v) for k, v in values.items()
    }
    for technique, v in values.items():
        lowest, median, highest = (float(x) for x in rows[technique][3:6])
        assert lowest == round(min(v), 3) and highest == round(max(v), 3)
        assert median == round(statistics.median(v), 3)
    assert page.having("img", "mcs")


def test_flags_errors_and_skipped_files_to_look_at(sample_scan, page):
    flags: dict[str, set[int]] = {}
    for i, p in enumerate(sample_scan.plans, 1):
        for f in p.classification.flags:
            flags.setdefault(f"{f.flag}|{f.severity}", set()).add(i)
    assert page.counts("flags", 2) == {k: len(v) for k, v in flags.items()}
    tally = sample_scan.inventory.tally()
    skipped = dict(tally.skipped_by_reason())
    if tally.images_skipped:
        skipped["images"] = tally.images_skipped
    assert page.counts("skipped") == skipped
    # an error's file and message are listed, escaped
    inv = Inventory(errors=[ReadError("/x/<b>bad.dcm", "truncated <i>here</i>")], files_seen=1)
    inv.skipped.append(Skipped("/x/notes.txt", "not_dicom", "not DICOM <at all>"))
    broken = _Page(overview_html(ScanResult(policy=sample_scan.policy, inventory=inv)))
    assert [cells for _, cells in broken.tables["errors"]] == [
        ["<b>bad.dcm", "truncated <i>here</i>"]
    ]
    assert broken.counts("skipped") == {"not DICOM <at all>": 1}
    assert not broken.having("b") and not broken.having("i")


# ------------------------------------------------------------ plans and evidence


def test_every_plan_has_a_row_and_an_anchor_that_resolves(sample_scan, page):
    rows = page.tables["plan-table"]
    assert len(rows) == len(page.having("tr", "plan-row")) == SAMPLE_PLANS
    ids = page.ids()
    assert all(n == 1 for n in ids.values())  # no id twice
    articles = page.having("article", "plan")
    assert len(articles) == SAMPLE_PLANS
    for (attrs, cells), p, article in zip(rows, sample_scan.plans, articles, strict=True):
        assert cells[4] == (p.classification.code or "-")
        assert article["id"] == f"plan-{attrs['data-plan']}"
    links = [a["href"][1:] for a in page.having("a") if a.get("href", "").startswith("#")]
    assert links and all(link in ids for link in links)
    row_links = {a["href"][1:] for a in page.having("a") if a.get("href", "").startswith("#plan-")}
    assert row_links == {a["id"] for a in articles}


def test_each_plan_shows_its_code_reasons_flags_and_evidence(sample_scan, sample_text):
    articles = sample_text.split('<article class="plan"')[1:]
    assert len(articles) == SAMPLE_PLANS
    for p, part in zip(sample_scan.plans, articles, strict=True):
        c = p.classification
        assert f">{html.escape(c.code or 'no code')}</span>" in part
        assert f">{c.confidence}</span>" in part
        for e in c.deciding_evidence():
            assert f"<li>{html.escape(e.finding)}</li>" in part
        for f in c.flags:
            assert html.escape(f.message) in part
        assert part.count('class="evidence-row') == len(c.evidence)


def test_person_names_read_as_people_write_them(sample_scan, page):
    shown = " ".join(page.text)
    for p in sample_scan.plans:
        raw = p.linked.plan.patient_name
        if raw and "^" in raw:
            assert raw not in shown
            family, given = raw.split("^")[:2]
            assert f"{family}, {given}" in shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Sample^Case06", "Sample, Case06"),
        ("Doe^John^Q^Dr^Jr", "Doe, Dr John Q, Jr"),
        ("Smith", "Smith"),
        ("^Anna", "Anna"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou"),
        ("=山田^太郎", "山田, 太郎"),
        ("^^^", None),
        ("", None),
        (None, None),
    ],
)
def test_person_name(raw, shown):
    assert person_name(raw) == shown


@pytest.mark.parametrize(
    ("paths", "folder"),
    [
        (["data/01/RP.dcm", "data/02/RP.dcm"], "data"),
        (["data/01/RP.dcm"], "data/01"),
        (["data/01/a.dcm", "data/010/b.dcm"], "data"),
        (["/a/x.dcm", "/b/y.dcm"], ""),
        (["https://pacs/studies/1/x", "https://pacs/studies/2/y"], "https://pacs/studies"),
        ([r"C:\exp\01\RP.dcm", r"C:\exp\02\RP.dcm"], r"C:\exp"),
        ([], ""),
    ],
)
def test_common_folder_and_relative_paths(paths, folder):
    assert common_folder(paths) == folder
    for p in paths:
        rel = relative(p, folder)
        assert p.endswith(rel) and (rel == p or p[: -len(rel) - 1] == folder)


@pytest.mark.filterwarnings("ignore:The value length")
def test_hostile_text_stays_text(hostile_export):
    text = overview_html(scan([str(hostile_export)], load("default")), inputs=[str(hostile_export)])
    page = _Page(text)
    assert HOSTILE_LABEL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert len(page.having("script")) == 1  # the page's own sorting script
    assert not page.having("b") and not page.having("i")
    shown = "".join(page.text)
    assert HOSTILE_LABEL in shown and "Evil<b>, Name&amp;" in shown
    assert str(hostile_export) in shown  # the input, "<i>" and all, as text


def test_the_only_script_is_the_one_the_csp_admits(sample_text, page):
    (csp,) = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert csp == CSP and "default-src 'none'" in csp
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert sample_text.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in sample_text
    assert not page.having("link") and not page.having("iframe")
    assert "http://" not in sample_text and "https://" not in sample_text
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.having("img"))


def test_an_empty_scan_says_no_plans_were_found(tmp_path):
    page = _Page(overview_html(scan([str(tmp_path)], load("default")), inputs=[str(tmp_path)]))
    (empty,) = page.having("p", "empty")
    assert "No plans were found" in " ".join(page.text)
    assert not page.having("tr", "plan-row") and not page.having("script")
    assert not page.having("img")
    assert page.title.startswith("rtcode overview: 0 plan(s)")
    assert empty is not None


# ------------------------------------------------------------------- browser


def _chromium() -> str | None:
    for name in (os.environ.get("RTCODE_CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()
browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install chromium; .ci/run does it)",
)


def _run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [
        CHROMIUM or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",  # the page's console messages, as INFO:CONSOLE lines
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# Clicks headings of the plan table and reports each order (the rows' plan numbers and
# the cells of that column), the resources the page fetched and every CSP violation.
_PROBE = """
const violations = [];
document.addEventListener('securitypolicyviolation', (e) => violations.push(e.blockedURI));
addEventListener('load', () => {
  const table = document.getElementById('plan-table');
  const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent.trim());
  const order = (col) => [...table.tBodies[0].rows].map(
    (r) => [r.dataset.plan, r.cells[col].textContent.trim()]);
  const click = (name) => { const col = heads.indexOf(name); table.tHead.rows[0].cells[col].click();
    return order(col); };
  const out = {
    sortable: table.classList.contains('js-sort'),
    before: order(0),
    code: click('code'),
    code_again: click('code'),
    mcs: click('MCS'),
    ports_down: (click('ports'), click('ports')),
    resources: performance.getEntriesByType('resource').map((e) => e.name),
    violations,
  };
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
"""


def _probe(page: Path, tmp: Path) -> dict:
    """Open a copy of the page with the probe script, admitted by its hash beside the
    page's own (the page's policy otherwise unchanged), and read what it reported."""
    text = page.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(_PROBE.encode()).digest()).decode()
    assert CSP in text
    text = text.replace(CSP, f"{CSP} 'sha256-{digest}'", 1)
    text = text.replace("<style>", f"<script>{_PROBE}</script><style>", 1)
    copy = tmp / "probe.html"
    copy.write_text(text, encoding="utf-8")
    run = _run_chromium(tmp, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
    assert _console(run.stderr) == []
    dom = run.stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    return json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))


def _number(text: str) -> float:
    return math.inf if text in ("", "-") else float(text)


@browser
def test_browser_loads_the_page_without_console_messages(sample_html, tmp_path):
    run = _run_chromium(tmp_path, "--window-size=1400,3000", "--dump-dom", sample_html.as_uri())
    assert _console(run.stderr) == []  # no CSP refusal of the script, no script error
    dom = _Page(run.stdout)
    assert "js-sort" in dom.having("table", "plans")[0]["class"]  # the script ran
    assert len(dom.having("tr", "plan-row")) == SAMPLE_PLANS


@browser
def test_browser_sorts_the_plans_by_a_clicked_column(sample_html, tmp_path):
    probe = _probe(sample_html, tmp_path)
    assert probe["sortable"]
    assert probe["resources"] == [] and probe["violations"] == []  # nothing fetched
    before = probe["before"]
    assert [int(n) for n, _ in before] == list(range(1, SAMPLE_PLANS + 1))
    codes = {n: c for n, c in probe["code"]}
    expected = sorted((n for n, _ in before), key=lambda n: codes[n])  # stable: scan order
    assert [n for n, _ in probe["code"]] == expected != [n for n, _ in before]
    again = [n for n, _ in probe["code_again"]]
    assert [codes[n] for n in again] == sorted(codes.values(), reverse=True)
    mcs = [_number(v) for _, v in probe["mcs"]]
    assert mcs == sorted(mcs) and math.inf in mcs  # numbers as numbers, no MCS last
    ports = [_number(v) for _, v in probe["ports_down"]]
    assert ports == sorted(ports, reverse=True) and len(set(ports)) > 1
