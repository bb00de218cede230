"""The README stays true: its example output and its test command are the real ones."""

from __future__ import annotations

import os
import re
import shlex

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT

from rtcode.cli import main

README = (ROOT / "README.md").read_text(encoding="utf-8")


EXAMPLES = re.findall(r"```\n\$ rtcode (.+?)\n(.*?)```", README, re.S)


def test_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_output_is_current(command, expected):
    args = shlex.split(command)
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example uses paths relative to the project
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    assert result.output == expected


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```sh\n(.+?)\n```", README)
    test_command = [c for c in commands if "pytest" in c][0]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_documents_every_command():
    for name in main.list_commands(click.Context(main)):
        assert f"rtcode {name}" in README


def test_readme_lists_every_known_quirk_and_private_class():
    from rtcode.dicom.vendors import PRIVATE_SOP_CLASSES, QUIRKS

    section = README.split("### Vendor quirks", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    for q in QUIRKS:
        cells = f"| {q.vendor} | {q.what_the_file_does} | {q.how_rtcode_reads_it} |"
        assert any(row.startswith(cells) for row in rows), q
        if q.flag:
            assert f"`{q.flag}`" in section
    for uid in PRIVATE_SOP_CLASSES:
        assert f"| `{uid}` |" in section
