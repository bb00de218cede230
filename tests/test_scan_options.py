"""rtcode scan's options for large archives: --jobs, --cache / --no-cache, --format jsonl,
--quiet and the progress line. Every format says the same thing whatever the options."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DATA, SAMPLE_PLANS

from rtcode.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _scan(*args: str) -> CliRunner:
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), *args])
    assert result.exit_code == 0, result.output
    return result


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def reference() -> dict:
    """The JSON of one process, no cache: what every other way must reproduce."""
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA), "--format", "json", "--jobs", "1", "--no-cache"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    "options",
    [
        ["--jobs", "2", "--no-cache"],
        ["--jobs", "1"],  # the default cache, cold
        ["--jobs", "2"],
    ],
    ids=["2-jobs-no-cache", "1-job-cache", "2-jobs-cache"],
)
def test_same_json_with_any_jobs_and_cache(reference, options, tmp_path):
    cache = ["--cache", str(tmp_path / "c.sqlite")] if "--no-cache" not in options else []
    for _ in range(2):  # the second run is warm when there is a cache
        data = json.loads(_scan("--format", "json", *options, *cache).output)
        assert data == reference


def test_warm_rescan_reads_no_file_again(tmp_path, monkeypatch):
    import rtcode.dicom.read

    cache = str(tmp_path / "c.sqlite")
    _scan("--format", "json", "--jobs", "1", "--cache", cache)
    calls = []
    real = rtcode.dicom.read.read
    monkeypatch.setattr(rtcode.dicom.read, "read", lambda *a, **k: calls.append(a) or real(*a, **k))
    _scan("--format", "json", "--jobs", "1", "--cache", cache)
    dicom = [c for c in calls if str(c[0].path).endswith(".dcm")]
    assert dicom == []  # only the non-DICOM files (README, CSV) are looked at again


def test_cache_file_is_private_and_scanned_folder_untouched(tmp_path):
    before = _tree_digest(SAMPLE_DATA)
    cache = tmp_path / "sub" / "c.sqlite"
    _scan("--format", "csv", "--cache", str(cache))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert _tree_digest(SAMPLE_DATA) == before


def test_default_cache_lives_in_the_user_cache_folder():
    _scan("--format", "csv")
    home = Path(os.environ["XDG_CACHE_HOME"])  # set per test by conftest
    assert (home / "rtcode" / "scan-cache.sqlite").is_file()


def test_no_cache_leaves_no_file(tmp_path):
    _scan("--format", "csv", "--no-cache")
    home = Path(os.environ["XDG_CACHE_HOME"])
    assert not (home / "rtcode").exists()


def test_cache_and_no_cache_together_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA), "--cache", str(tmp_path / "c"), "--no-cache"]
    )
    assert result.exit_code == 2 and "contradict" in result.output


def test_cache_inside_the_scanned_folder_is_refused(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    result = CliRunner().invoke(main, ["scan", str(folder), "--cache", str(folder / "c.sqlite")])
    assert result.exit_code == 2 and "never writes under" in result.output
    assert list(folder.iterdir()) == []


def test_a_damaged_cache_is_set_aside(tmp_path, reference):
    cache = tmp_path / "c.sqlite"
    cache.write_bytes(b"this is not an SQLite database" * 100)
    result = CliRunner().invoke(
        main, ["scan", str(SAMPLE_DATA), "--format", "json", "--cache", str(cache)]
    )
    assert result.exit_code == 0
    assert "could not be used" in result.stderr
    assert json.loads(result.stdout) == reference
    assert any(p.name.startswith("c.sqlite.broken-") for p in tmp_path.iterdir())


def test_jsonl_says_what_json_says(reference, tmp_path):
    out = tmp_path / "scan.jsonl"
    _scan("--format", "jsonl", "-o", str(out))
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    plans = [r for r in records if r["record"] == "plan"]
    errors = [r for r in records if r["record"] == "error"]
    summary = records[-1]
    assert summary["record"] == "summary" and [r["record"] for r in records].count("summary") == 1
    assert [{k: v for k, v in p.items() if k != "record"} for p in plans] == reference["plans"]
    assert [{"path": e["path"], "error": e["error"]} for e in errors] == reference["errors"]
    assert {k: summary[k] for k in reference["summary"]} == reference["summary"]
    assert summary["policy"] == reference["policy"]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left


def test_jsonl_streams_each_plan_before_the_scan_ends():
    """The first plan line is on standard output before the last file is read."""
    code = (
        "import sys, rtcode.engine.scan as s\n"
        "real = s.Scanner._code\n"
        "def code(self, linked, sigs):\n"
        "    for i, r in enumerate(real(self, linked, sigs)):\n"
        "        yield r\n"
        "        if i == 0:\n"
        "            sys.stdout.flush(); sys.stderr.write('AFTER-FIRST\\n'); sys.stderr.flush()\n"
        "s.Scanner._code = code\n"
        "from rtcode.cli import main\n"
        "main(['scan', sys.argv[1], '--format', 'jsonl', '--no-cache', '--jobs', '1'])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(SAMPLE_DATA)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()
    marker = proc.stderr.readline()
    proc.communicate()
    assert json.loads(first)["record"] == "plan"
    assert marker.strip() == "AFTER-FIRST"  # the plan was out before the scan went on


def test_csv_and_table_do_not_depend_on_jobs(tmp_path):
    one = _scan("--format", "csv", "--jobs", "1", "--no-cache").output
    two = _scan("--format", "csv", "--jobs", "2", "--no-cache").output
    assert one == two and len(list(csv.reader(io.StringIO(one)))) > 10
    t1 = _scan("--format", "table", "--jobs", "1", "--no-cache").output
    t2 = _scan("--format", "table", "--jobs", "2", "--cache", str(tmp_path / "c")).output
    assert t1 == t2


def test_progress_line_only_on_a_terminal():
    """stderr is not a terminal here: nothing but the result is printed."""
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--format", "csv"])
    assert result.exit_code == 0 and result.stderr == ""


def test_progress_line_on_a_terminal_and_quiet(tmp_path):
    import pty

    def run(*extra: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtcode", "scan", str(SAMPLE_DATA), "--format", "csv",
             "-o", str(tmp_path / "out.csv"), "--no-cache", *extra],
            stdout=subprocess.DEVNULL, stderr=follower, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait()
        os.close(leader)
        return b"".join(chunks).decode("utf-8", "replace")

    shown = run()
    # counts agree with their numbers ("1 file", "28 plans"): any count may show last
    assert re.search(r"\d+ files?, \d+ plans? coded", shown) and re.search(r"\d+ errors?", shown)
    quiet = run("--quiet")
    assert "plans coded" not in quiet and "wrote" in quiet


def test_dask_without_scheduler_is_a_usage_error():
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--executor", "dask"])
    assert result.exit_code == 2 and "--scheduler" in result.output


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_rows_rendered_by_workers_are_byte_identical(fmt, jobs, tmp_path):
    """Plans are rendered in the workers (and kept in the cache) and the output written
    from those rows: the same text in this process, in workers, cold and warm."""
    whole = _scan("--format", fmt, "--jobs", "1", "--no-cache").stdout
    cache = str(tmp_path / "c.sqlite")
    for _ in range(2):  # cold, then warm from the cached rows
        assert _scan("--format", fmt, "--jobs", jobs, "--cache", cache).stdout == whole


def test_the_json_document_is_the_whole_result_encoded_at_once():
    """The json document, written member by member from the plans' indented texts, is
    byte for byte the scan's whole document encoded in one call."""
    from rtcode.coding import policy as policy_mod
    from rtcode.engine.scan import scan
    from rtcode.output.jsontext import dumps
    from rtcode.output.render import scan_json

    expected = dumps(scan_json(scan([str(SAMPLE_DATA)], policy_mod.load())), indent=2) + "\n"
    assert _scan("--format", "json", "--no-cache").stdout == expected


def test_an_empty_scan_writes_an_empty_plans_list(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM", encoding="utf-8")
    result = CliRunner().invoke(main, ["scan", str(tmp_path), "--format", "json", "--no-cache"])
    assert result.exit_code == 1
    assert '\n  "plans": [],\n' in result.stdout
    assert json.loads(result.stdout)["summary"]["plans"] == 0


def test_cache_knows_a_file_by_its_absolute_path(tmp_path, monkeypatch):
    """The same path shown from two folders is two files, each with its own facts (and
    the same file by another path is read again to show that path:
    tests/test_scan_cache_paths.py)."""
    import shutil

    cache = str(tmp_path / "c.sqlite")
    for where, case in (("a", "01_single_open_field"), ("b", "06_four_field_box_3d")):
        shutil.copytree(SAMPLE_DATA / case, tmp_path / where / "export")
    outputs = {}
    for where in ("a", "b", "a"):
        monkeypatch.chdir(tmp_path / where)
        args = ["scan", "export", "--format", "csv", "--jobs", "1"]
        cached = CliRunner().invoke(main, [*args, "--cache", cache])
        plain = CliRunner().invoke(main, [*args, "--no-cache"])
        assert cached.exit_code == plain.exit_code == 0
        assert cached.stdout == plain.stdout
        outputs[where] = plain.stdout
    assert outputs["a"] != outputs["b"]


def test_scan_loads_no_other_command():
    """Each command's module is imported when it runs: ``rtcode scan`` does not load
    the audit, the report or the listener (start-up time of a rescan)."""
    code = (
        "import sys\n"
        "from rtcode.cli import main\n"
        "try:\n"
        "    main(['scan', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(m for m in ('rtcode.audit', 'rtcode.report', 'rtcode.sources.listen',"
        " 'rtcode.cli.scan') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "rtcode.cli.scan"


def test_a_rescan_from_the_cache_loads_neither_numpy_nor_pydicom(tmp_path):
    """A nightly rescan of unchanged files is start-up, a walk and cache lookups: it must
    not pay for importing the classifier's numpy or the reader's pydicom."""
    cache = str(tmp_path / "c.sqlite")
    args = ["scan", str(SAMPLE_DATA), "--format", "jsonl", "--cache", cache, "--quiet"]
    code = (
        "import sys\n"
        "from rtcode.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(m for m in ('numpy', 'pydicom') if m in sys.modules)),"
        " file=sys.stderr)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def run(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", code, *args, *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    cold = run("--jobs", "1")  # in this process: reads and codes plans here
    warm = run()
    assert cold.stdout == warm.stdout and cold.stdout.count('"record": "plan"') == SAMPLE_PLANS
    assert "numpy" in cold.stderr.strip().splitlines()[-1]  # the check sees the imports
    assert warm.stderr.strip().splitlines()[-1:] in ([], [""])
