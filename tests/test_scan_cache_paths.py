"""Output never depends on the scan cache: paths are the ones this run was given.

The cache knows a file by its absolute path, but a file's facts, its error or why it
was skipped carry the path as the run that read it displayed it (``Plan.path``,
``StructureSet.path``, every DICOM path in the evidence). A run that reaches the same
files by another path (from another folder, ``.``, an absolute path after a relative
one) must print its own paths: the JSON of a run with a warm cache equals, byte for
byte, that of a ``--no-cache`` run from the same place (issue 21, 16).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.dicom import read as reader

CASE = "06_four_field_box_3d"  # plan, structure set, dose and CT images


def scan_json(target: str, *options: str) -> str:
    args = ["scan", target, "--format", "json", "--jobs", "1", *options]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def project(tmp_path):
    """tmp_path/project/sample_data/CASE, and a file that is not DICOM beside it (a
    skipped file carries its path too)."""
    root = tmp_path / "project"
    shutil.copytree(SAMPLE_DATA / CASE, root / "sample_data" / CASE)
    (root / "sample_data" / CASE / "notes.txt").write_text("four-field box\n")
    return root


def paths_in(text: str) -> set[str]:
    data = json.loads(text)
    found = {p["path"] for p in data["plans"]}
    found |= {p["structure_set"]["path"] for p in data["plans"] if p.get("structure_set")}
    return found


def test_the_same_folder_from_its_parent_prints_paths_from_there(project, monkeypatch):
    cache = str(project.parent / "c.sqlite")
    monkeypatch.chdir(project)
    first = scan_json(f"sample_data/{CASE}", "--cache", cache)
    assert first == scan_json(f"sample_data/{CASE}", "--no-cache")
    monkeypatch.chdir(project.parent)
    target = f"project/sample_data/{CASE}"
    cached = scan_json(target, "--cache", cache)
    assert cached == scan_json(target, "--no-cache")
    assert paths_in(cached) == {f"{target}/RP.dcm", f"{target}/RS.dcm"}


def test_dot_prints_its_own_paths(project, monkeypatch):
    cache = str(project.parent / "c.sqlite")
    monkeypatch.chdir(project)
    scan_json(f"sample_data/{CASE}", "--cache", cache)
    cached = scan_json(".", "--cache", cache)
    assert cached == scan_json(".", "--no-cache")
    assert f"./sample_data/{CASE}/RP.dcm" in paths_in(cached)


def test_absolute_then_relative_prints_relative_paths(project, monkeypatch):
    cache = str(project.parent / "c.sqlite")
    monkeypatch.chdir(project)
    absolute = str(project / "sample_data" / CASE)
    assert scan_json(absolute, "--cache", cache) == scan_json(absolute, "--no-cache")
    relative = f"sample_data/{CASE}"
    cached = scan_json(relative, "--cache", cache)
    assert cached == scan_json(relative, "--no-cache")
    assert not any(os.path.isabs(p) for p in paths_in(cached))
    # and back: the absolute paths again, not the relative ones of the run before
    assert scan_json(absolute, "--cache", cache) == scan_json(absolute, "--no-cache")


def test_files_named_one_by_one_from_two_places(project, monkeypatch):
    """A plan and its companions named on the command line: the plan's coded row (kept
    by the cache under the plan's path) must follow its companions' paths too."""
    cache = str(project.parent / "c.sqlite")
    folder = project / "sample_data" / CASE
    monkeypatch.chdir(folder)
    named = ["RP.dcm", "RS.dcm", "RD.dcm"]
    CliRunner().invoke(main, ["scan", *named, "--format", "json", "--cache", cache])
    # the plan by the same name, its companions by their absolute paths
    args = ["RP.dcm", str(folder / "RS.dcm"), str(folder / "RD.dcm"), "--format", "json"]
    cached = CliRunner().invoke(main, ["scan", *args, "--cache", cache])
    plain = CliRunner().invoke(main, ["scan", *args, "--no-cache"])
    assert cached.exit_code == plain.exit_code == 0, cached.output
    assert cached.stdout == plain.stdout
    assert str(folder / "RS.dcm") in cached.stdout


def test_a_warm_rescan_by_the_same_path_reads_no_file(project, monkeypatch):
    """The fix costs a rescan from the same place nothing: after scans of the same
    files by other paths, every file is taken from the cache again. (The target with a
    trailing slash displays the same paths but is another scan: not replayed whole, so
    the files' own entries are what is measured.)"""
    cache = str(project.parent / "c.sqlite")
    monkeypatch.chdir(project)
    target = f"sample_data/{CASE}"
    expected = scan_json(target, "--no-cache")
    assert scan_json(target + "/", "--no-cache") == expected
    scan_json(target, "--cache", cache)
    scan_json(".", "--cache", cache)  # the same files by other paths in between
    scan_json(str(project / "sample_data" / CASE), "--cache", cache)
    scan_json(target, "--cache", cache)
    reads: list[str] = []
    real = reader.read

    def counting(entry, *args, **kwargs):
        reads.append(entry.display)
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(reader, "read", counting)
    assert scan_json(target + "/", "--cache", cache) == expected
    assert reads == []
