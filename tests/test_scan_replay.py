"""A rescan of files none of which was written since: the whole result is replayed.

``rtcode scan`` keeps each scan's result in the scan cache under a hash of every file
it walked (path, size, modification time, change time, inode) and of what else the
result depends on (rtcode build, policy, options, inputs, working folder). The
expectations here come from scans without a cache of the same files, never from
hard-coded codes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA

from rtcode.cli import main
from rtcode.dicom import read as reader
from rtcode.engine import cache as cache_mod

CASE = "06_four_field_box_3d"  # plan, structure set, dose and CT


def jsonl(folder, *options) -> str:
    args = ["scan", str(folder), "--format", "jsonl", "--quiet", "--jobs", "1", *options]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def export(tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, folder)
    return folder


@pytest.fixture
def looked_at(monkeypatch) -> list[str]:
    """Files read (rtcode.dicom.read.read) or looked up one by one in the cache."""
    seen: list[str] = []
    real_read = reader.read
    real_untouched = cache_mod.Cache.get_untouched

    def counting_read(entry, limits=None):
        seen.append(f"read {entry.display}")
        return real_read(entry, limits)

    def counting_untouched(self, path, *args):
        seen.append(f"lookup {os.fsdecode(path)}")
        return real_untouched(self, path, *args)

    monkeypatch.setattr(reader, "read", counting_read)
    monkeypatch.setattr(cache_mod.Cache, "get_untouched", counting_untouched)
    return seen


def kept_scans(cache_path) -> int:
    with sqlite3.connect(cache_path) as db:
        return db.execute("SELECT COUNT(*) FROM results WHERE key LIKE 'scan:%'").fetchone()[0]


def test_unchanged_rescan_is_replayed_without_looking_at_any_file(tmp_path, export, looked_at):
    cache = tmp_path / "c.sqlite"
    expected = jsonl(export, "--no-cache")
    assert jsonl(export, "--cache", cache) == expected
    assert kept_scans(cache) == 1
    looked_at.clear()
    assert jsonl(export, "--cache", cache) == expected
    assert looked_at == []


def _rewrite_plan_label(export):
    plan = export / "RP.dcm"
    data = plan.read_bytes()
    at = data.index(b"\x0a\x30\x02\x00SH")  # (300A,0002) RTPlanLabel
    length = int.from_bytes(data[at + 6 : at + 8], "little")
    start = at + 8
    label = data[start : start + length]
    new = label[::-1] if label[::-1] != label else label.upper().swapcase()
    assert new != label
    st = plan.stat()
    plan.write_bytes(data[:start] + new + data[start + length :])
    os.utime(plan, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime


def _add_a_copy(export):
    shutil.copy2(export / "RP.dcm", export / "RP-copy.dcm")


def _remove_the_structure_set(export):
    (export / "RS.dcm").unlink()


@pytest.mark.parametrize(
    "change",
    [_rewrite_plan_label, _add_a_copy, _remove_the_structure_set],
    ids=lambda f: f.__name__,
)
def test_a_rescan_after_any_change_is_not_replayed(tmp_path, export, change):
    cache = tmp_path / "c.sqlite"
    before = jsonl(export, "--cache", cache)
    change(export)
    expected = jsonl(export, "--no-cache")
    assert expected != before  # the change shows in the result
    assert jsonl(export, "--cache", cache) == expected
    assert jsonl(export, "--cache", cache) == expected  # and that result is replayed next
    assert kept_scans(cache) == 1  # the last scan of these inputs, not one a night


def test_a_first_scan_walks_once(tmp_path, export, monkeypatch):
    walks = []
    real_walk = reader.walk

    def counting_walk(inputs):
        walks.append(inputs)
        return real_walk(inputs)

    monkeypatch.setattr(reader, "walk", counting_walk)
    cache = tmp_path / "c.sqlite"
    jsonl(export, "--cache", cache)
    assert len(walks) == 1
    jsonl(export, "--cache", cache)  # one walk: unchanged, replayed
    assert len(walks) == 2


def test_another_policy_or_date_is_not_replayed(tmp_path, export):
    cache = tmp_path / "c.sqlite"
    jsonl(export, "--cache", cache)
    local = tmp_path / "local.toml"
    local.write_text(
        '[policy]\nextends = "default"\nname = "test-local"\nversion = "1"\n'
        'description = "one setting changed"\n\n[three_d]\nmin_organs_at_risk = 40\n',
        encoding="utf-8",
    )
    for options in (["--policy", local], ["--date", "2024-05-06"]):
        expected = jsonl(export, "--no-cache", *options)
        assert jsonl(export, "--cache", cache, *options) == expected
    assert kept_scans(cache) == 3  # one per policy and date: each its own last scan


def test_a_scan_interrupted_is_not_kept_whole(tmp_path, export, monkeypatch):
    cache = tmp_path / "c.sqlite"
    real_read = reader.read
    calls = []

    def interrupting_read(entry, limits=None):
        calls.append(entry)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_read(entry, limits)

    monkeypatch.setattr(reader, "read", interrupting_read)
    result = CliRunner().invoke(
        main, ["scan", str(export), "--format", "jsonl", "--jobs", "1", "--cache", str(cache)]
    )
    assert result.exit_code == 130
    assert kept_scans(cache) == 0


def test_a_kept_scan_whose_rows_are_gone_is_coded_again(tmp_path, export, looked_at):
    """Another scan's clean-up removed plan results (unused for 60 days): the scan is
    not replayed from what is left; the plans are coded again, and kept again."""
    cache = tmp_path / "c.sqlite"
    expected = jsonl(export, "--no-cache")
    assert jsonl(export, "--cache", cache) == expected
    with sqlite3.connect(cache) as db:
        assert db.execute("DELETE FROM results WHERE key NOT LIKE 'scan:%'").rowcount > 0
    looked_at.clear()
    assert jsonl(export, "--cache", cache) == expected
    assert any(seen.startswith("lookup ") for seen in looked_at)  # the per-file path ran
    looked_at.clear()
    assert jsonl(export, "--cache", cache) == expected
    assert looked_at == []


def test_a_scan_from_a_folder_that_is_gone_still_works(tmp_path, export, monkeypatch):
    """The working folder is part of what a kept scan depends on; when it has been
    removed (a shell left in a deleted folder), the scan runs without keeping one."""
    cache = tmp_path / "c.sqlite"
    expected = jsonl(export, "--no-cache")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert jsonl(export, "--cache", cache) == expected
    assert jsonl(export, "--cache", cache) == expected
    assert kept_scans(cache) == 0


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "jsonl"])
def test_a_replayed_scan_reports_what_a_scan_without_cache_reports(tmp_path, export, fmt):
    """Every format's summary (files, structure sets, doses, skipped, errors) comes from
    the stored count when the scan is replayed: the same text as a scan without cache."""
    (export / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff")
    cache = tmp_path / "c.sqlite"

    def scan(*options) -> str:
        args = ["scan", str(export), "--format", fmt, "--quiet", "--jobs", "1", *options]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code in (0, 1), result.output
        return result.stdout

    expected = scan("--no-cache")
    if fmt != "csv":  # a CSV holds plans only
        assert "broken.dcm" in expected  # the error is reported
    assert scan("--cache", cache) == expected
    assert kept_scans(cache) == 1
    assert scan("--cache", cache) == expected  # replayed


def test_a_replayed_scan_tells_the_progress_line_every_file(tmp_path, export):
    """The progress line counts files: a replayed scan tells it the stored count at
    once ("files"), the same total as a scan that looked at each file ("file")."""
    from rtcode.coding.policy import load
    from rtcode.engine.scan import Runner, Scanner
    from rtcode.output.formats import plan_row

    (export / "notes.txt").write_text("not DICOM", encoding="utf-8")

    def files_counted() -> tuple[int, list[str]]:
        counted, events = 0, []

        def progress(event: str, item: object) -> None:
            nonlocal counted
            events.append(event)
            counted += item if event == "files" else event == "file"  # type: ignore[operator]

        cache = cache_mod.Cache(tmp_path / "c.sqlite")
        scanner = Scanner(load(), None, Runner(jobs=1, cache=cache), progress, plan_row)
        try:
            list(scanner.run([export]))
        finally:
            cache.close()
        return counted, events

    first, events = files_counted()
    assert "files" not in events  # each file looked at
    assert first == sum(1 for p in export.rglob("*") if p.is_file())
    again, events = files_counted()
    assert events.count("files") == 1 and "file" not in events  # replayed
    assert again == first


def test_the_listing_digest_takes_any_stat_values():
    """Times before 1970 are negative; an inode beyond 64 bits cannot be hashed the
    fast way, and that scan is then not replayed rather than failing."""
    from rtcode.engine.scan import _Listing

    def digest(*keys):
        listing = _Listing("base")
        entries = [reader.FileEntry(f"f{i}", f"f{i}", False, k) for i, k in enumerate(keys)]
        assert list(listing.watch(entries)) == entries
        return listing.digest

    old = (10, -5_000_000_000, -4_000_000_000, 7)
    assert digest(old) is not None
    assert digest(old) == digest(old)
    assert digest(old) != digest((10, -5_000_000_000, -4_000_000_000, 8))
    assert digest(old, (1, 2, 3, 2**70)) is None
