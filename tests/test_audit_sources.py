"""Every audit finding cites the project's own coding reference: a section of
docs/coding-rules.md that exists, saying who sets the rule (CPT, CMS, local policy,
DICOM); no finding cites a file outside the project."""

from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner
from conftest import ROOT

from rtcode.audit.findings import KINDS, RULES_DOC, SOURCES
from rtcode.cli import main

DOC = (ROOT / RULES_DOC).read_text(encoding="utf-8")
WHO = ("CPT", "CMS", "local policy", "DICOM")
CITED = re.compile(r"\(docs/coding-rules\.md#([a-z0-9-]+)\)$")


def github_anchor(heading: str) -> str:
    """A Markdown heading's anchor as GitHub makes it: lower case, punctuation other
    than hyphens and spaces dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    out: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6} (.+)$", line)
        if m:
            base = github_anchor(m.group(1))
            name, n = base, 0
            while name in out:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                name = f"{base}-{n}"
            out.add(name)
    return out


def test_anchor_rules():
    assert github_anchor("Bundling and frequency") == "bundling-and-frequency"
    assert github_anchor("IMRT bundles (CMS), 77301!") == "imrt-bundles-cms-77301"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_names_who_and_a_section_that_exists(source):
    m = CITED.search(source)
    assert m, source
    assert m.group(1) in anchors(DOC), source
    assert source.startswith(WHO), source


@pytest.fixture(scope="module")
def planted():
    args = ["audit", "sample_data", "--charges", "sample_data/charges_planted.csv"]
    args += ["--ptp", "sample_data/ptp_synthetic.txt", "--format", "json"]
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    return json.loads(result.stdout)


def test_every_finding_of_the_planted_sample_cites_the_doc(planted):
    assert {f["kind"] for f in planted["findings"]} == set(KINDS)
    for f in planted["findings"]:
        assert f["source"] in SOURCES, f["source"]
        # no other file: not the PTP file given (its evidence names it), not a
        # coding-rules.md outside the project
        rest = CITED.sub("", f["source"])
        assert not re.search(r"\.(md|txt|csv|pdf|dcm)\b", rest), f["source"]


def test_course_notes_cite_the_doc_too():
    from test_audit import plan_result, run

    # two 3-D plans on one planning CT: 77295 is expected once (a course note says why)
    plans = [plan_result("3d", uid="1.1", label="A"), plan_result("3d", uid="1.2", label="B")]
    [course] = run(plans, []).courses
    [note] = [n for n in course.notes if "coding-rules.md" in n]
    m = re.search(r"\((docs/coding-rules\.md)#([a-z0-9-]+)\)$", note)
    assert m and m.group(1) == RULES_DOC and m.group(2) in anchors(DOC), note


def test_every_finding_kind_is_explained_in_the_doc():
    for kind in KINDS:
        assert f"`{kind}`" in DOC, kind
