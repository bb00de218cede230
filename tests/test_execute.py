"""Where the work runs must not change what a scan finds.

The same inputs scanned in this process, in worker processes and on a Dask cluster,
with and without the scan cache (cold, then warm), give the same JSON (the contract of
``rtcode.output.render.scan_json``). Each run also checks that the work really ran where it
was sent: the reader is wrapped in this process, so a scan whose files were all parsed
(its result is complete) while this process parsed none had them parsed elsewhere.

``Workers`` itself: results in input order when batches finish out of order, the
function's exception reaches the caller, and a wrong executor is refused in words.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE_DATA

from rtcode.coding import policy as policy_mod
from rtcode.dicom import read as reader
from rtcode.engine import scan as scan_mod
from rtcode.engine.cache import Cache
from rtcode.engine.execute import ExecutorError, Ready, Workers
from rtcode.engine.scan import Runner, scan
from rtcode.output.render import scan_json

POLICY = policy_mod.load()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """A 3-patient synthetic archive (scripts/make_archive.py): 135 files, enough that
    a chunk is worth sending to the workers."""
    out = tmp_path_factory.mktemp("archive") / "archive"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_archive.py"),
            "--patients",
            "3",
            "--seed",
            "1",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


INPUTS = {
    "sample_data": lambda archive: [SAMPLE_DATA],
    "archive": lambda archive: [archive],
    # 206 files and 26 plans in one chunk: with a cold cache both the reading (56 RT
    # and other non-image files) and the coding go to the workers
    "both": lambda archive: [SAMPLE_DATA, archive],
}


@pytest.fixture(scope="module")
def baselines(archive):
    """The cache-less, single-process scan of each input set: what every other way
    of running must reproduce."""
    out = {}
    for name, make in INPUTS.items():
        result = scan([str(p) for p in make(archive)], POLICY)
        assert result.plans and not result.errors and not result.interrupted
        out[name] = scan_json(result)
    return out


@pytest.fixture
def parent_reads(monkeypatch) -> list[str]:
    """The files parsed by this process. Worker processes may inherit the wrapper
    (fork), but what they append goes to their own copy of the list."""
    seen: list[str] = []
    real_read = reader.read

    def counting_read(entry, limits=None):
        seen.append(entry.display)
        return real_read(entry, limits)

    monkeypatch.setattr(reader, "read", counting_read)
    return seen


def to_parse(baseline: dict, cached: bool) -> int:
    """How many files the scan has to parse: all of them without a cache; with one
    (cold), all but those its file meta already names an image or other object."""
    summary = baseline["summary"]
    if not cached:
        return summary["files_seen"]
    return summary["files_seen"] - summary["images_skipped"] - summary["other_dicom_skipped"]


def assert_ran_where_sent(reads: list[str], jobs: int, n_parse: int, total_files: int) -> None:
    """Every file is sent (cold: even with a cache, its first bytes are looked at by a
    worker); with one job, or too few files to be worth workers, this process parses."""
    # the expectations below assume one window: the decision is made once
    assert total_files <= scan_mod._WINDOW
    if jobs > 1 and total_files >= scan_mod._INLINE_BELOW:
        assert reads == [], "the workers should have parsed every file, not this process"
    else:
        assert len(reads) == n_parse


# ---------------------------------------------------- local: jobs x cache


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("jobs", [1, 2])
def test_same_json_without_cache(archive, baselines, parent_reads, inputs, jobs):
    paths = [str(p) for p in INPUTS[inputs](archive)]
    expected = baselines[inputs]

    result = scan(paths, POLICY, runner=Runner(jobs=jobs))

    assert scan_json(result) == expected
    n = to_parse(expected, cached=False)
    assert_ran_where_sent(parent_reads, jobs, n, expected["summary"]["files_seen"])


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("jobs", [1, 2])
def test_same_json_with_cache_cold_and_warm(
    tmp_path, archive, baselines, parent_reads, inputs, jobs
):
    paths = [str(p) for p in INPUTS[inputs](archive)]
    expected = baselines[inputs]
    cache_path = tmp_path / "scan-cache.sqlite"

    with Cache(cache_path) as cache:
        cold = scan(paths, POLICY, runner=Runner(jobs=jobs, cache=cache))
    assert cache.warning is None
    assert scan_json(cold) == expected
    n = to_parse(expected, cached=True)
    assert_ran_where_sent(parent_reads, jobs, n, expected["summary"]["files_seen"])

    parent_reads.clear()
    with Cache(cache_path) as cache:  # a new run, as the next night's scan
        warm = scan(paths, POLICY, runner=Runner(jobs=jobs, cache=cache))
    assert scan_json(warm) == expected
    assert parent_reads == []  # nothing parsed anywhere: nothing was sent to workers


def test_the_command_gives_the_same_lines_however_it_runs(tmp_path, archive):
    """rtcode scan --format jsonl, as a user runs it: one process without a cache, two
    workers with a cold cache, and the rescan that replays the kept result."""
    from click.testing import CliRunner

    from rtcode.cli import main

    paths = [str(p) for p in INPUTS["both"](archive)]

    def lines(*options: str) -> str:
        args = ["scan", *paths, "--format", "jsonl", "--quiet", *options]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        return result.stdout

    cache = str(tmp_path / "c.sqlite")
    expected = lines("--no-cache", "--jobs", "1")
    assert expected.count('"record": "plan"') >= scan_mod._INLINE_BELOW  # workers code
    assert lines("--cache", cache, "--jobs", "2") == expected
    assert lines("--cache", cache, "--jobs", "2") == expected


def test_the_combined_inputs_do_reach_the_workers(baselines):
    """Guard for the tests above: there must be enough files and plans to be sent to the
    workers, or jobs=2 tests nothing there."""
    assert baselines["both"]["summary"]["files_seen"] >= scan_mod._INLINE_BELOW
    assert baselines["both"]["summary"]["plans"] >= scan_mod._INLINE_BELOW


def test_temporary_cache_same_json(archive, baselines):
    """--no-cache scans with a private temporary cache file."""
    cache = Cache.temporary_file()
    try:
        result = scan([str(SAMPLE_DATA), str(archive)], POLICY, runner=Runner(jobs=2, cache=cache))
    finally:
        cache.close()
    assert scan_json(result) == baselines["both"]


# ------------------------------------------------------------------ Workers


def _wait_for_next(batch: list[int], marker_dir: str, wait_s: float) -> list[tuple[int, int, bool]]:
    """Each even item waits until the next (odd) item has finished, so batches finish
    out of order. (item, pid, whether the wait saw the next item finish)."""
    out = []
    for item in batch:
        waited = True
        if item % 2 == 0:
            waited = False
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if os.path.exists(os.path.join(marker_dir, str(item + 1))):
                    waited = True
                    break
                time.sleep(0.005)
        with open(os.path.join(marker_dir, str(item)), "w"):
            pass
        out.append((item, os.getpid(), waited))
    return out


def _fail_on_five(batch: list[int]) -> list[int]:
    for item in batch:
        if item == 5:
            raise ValueError(f"item {item} cannot be done")
    return [item * 10 for item in batch]


def test_workers_keep_input_order_when_batches_finish_out_of_order(tmp_path):
    workers = Workers(jobs=2, batch_size=1)
    try:
        # 60 s: only a safety net against a hang; with two processes every even item
        # sees its odd neighbour finish first
        results = list(workers.map(_wait_for_next, range(12), str(tmp_path), 60.0))
    finally:
        workers.close()
    assert [item for item, _, _ in results] == list(range(12))
    assert all(waited for _, _, waited in results)  # 1 finished before 0, 3 before 2, ...
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids
    assert results[0][1] != results[1][1]  # 0 waited while 1 ran: two processes


def _with_pid(batch: list[int]) -> list[tuple[int, int]]:
    return [(item, os.getpid()) for item in batch]


@pytest.mark.parametrize("max_waiting", [2, 4096])
def test_ready_items_are_not_sent_and_keep_their_place(max_waiting):
    """Results already known (from the cache) come out in their place between the
    workers' results, whether they wait for a batch or push it out early."""
    items = [Ready(("known", i)) if i % 3 == 0 else i for i in range(50)]
    workers = Workers(jobs=2, batch_size=4, max_waiting=max_waiting)
    try:
        results = list(workers.map(_with_pid, items))
    finally:
        workers.close()
    assert [r[0] if r[0] != "known" else r[1] for r in results] == list(range(50))
    assert all(r[0] == "known" for r in results[::3])  # passed through, not sent
    assert os.getpid() not in {pid for i, (_, pid) in enumerate(results) if i % 3}


@pytest.mark.parametrize(
    ("n_work", "in_workers"), [(scan_mod._INLINE_BELOW - 1, False), (60, True)]
)
def test_runner_starts_workers_only_when_there_is_enough_work(n_work, in_workers):
    items = [Ready(("known", -1))] * 5 + list(range(n_work))
    runner = Runner(jobs=2)
    try:
        results = list(runner.map(_with_pid, items))
    finally:
        runner.close()
    assert results[:5] == [("known", -1)] * 5
    assert [item for item, _ in results[5:]] == list(range(n_work))
    pids = {pid for _, pid in results[5:]}
    assert (os.getpid() not in pids) is in_workers


def test_workers_exception_reaches_the_caller():
    workers = Workers(jobs=2, batch_size=2)
    try:
        with pytest.raises(ValueError, match="item 5 cannot be done"):
            list(workers.map(_fail_on_five, range(20)))
    finally:
        workers.close()


def test_workers_exception_reaches_the_caller_inline():
    runner = Runner(jobs=1)
    with pytest.raises(ValueError, match="item 5 cannot be done"):
        list(runner.map(_fail_on_five, list(range(8))))


def test_unknown_executor_is_refused():
    with pytest.raises(ExecutorError, match=r"unknown executor 'spark'.*local.*dask"):
        Workers(jobs=2, executor="spark")
    with pytest.raises(ExecutorError, match="unknown executor 'spark'"):
        scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=1, executor="spark"))


def test_dask_without_scheduler_is_refused():
    try:
        import distributed  # noqa: F401
    except ImportError:
        expected = r"needs Dask distributed: pip install 'rtcode\[dask\]'"
    else:
        expected = r"--executor dask needs --scheduler ADDRESS"
    workers = Workers(jobs=2, executor="dask")
    with pytest.raises(ExecutorError, match=expected):
        list(workers.map(_fail_on_five, range(4)))
    workers.close()
    with pytest.raises(ExecutorError, match=expected):
        scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=2, executor="dask"))


# --------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip(
        "distributed", reason="Dask distributed is not installed (pip install 'rtcode[dask]')"
    )
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


def dask_tasks(client, since: float, prefix: str) -> list[dict]:
    """The tasks named ``prefix-...`` the cluster ran since ``since`` (its task stream)."""
    return [
        t
        for t in client.get_task_stream(start=since)
        if str(t["key"]).startswith(prefix + "-") and t.get("status", "OK") == "OK"
    ]


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_dask_same_json(tmp_path, archive, baselines, parent_reads, dask_cluster, cached):
    cluster, client = dask_cluster
    client.get_task_stream(start=time.time())  # starts recording on the scheduler
    since = time.time()
    paths = [str(SAMPLE_DATA), str(archive)]
    expected = baselines["both"]
    cache = Cache(tmp_path / "scan-cache.sqlite") if cached else None
    runner = Runner(jobs=2, executor="dask", scheduler=cluster.scheduler_address, cache=cache)
    try:
        result = scan(paths, POLICY, runner=runner)
    finally:
        if cache is not None:
            cache.close()

    assert scan_json(result) == expected
    assert parent_reads == []  # every file was parsed on the cluster
    n_files = expected["summary"]["files_seen"]
    batches = dask_tasks(client, since, "look_at_files" if cached else "file_outcomes")
    assert len(batches) == -(-n_files // scan_mod._FILE_BATCH)  # every file, in batches
    assert {t["worker"] for t in batches} <= set(client.scheduler_info()["workers"])
    assert dask_tasks(client, since, "classify_plans")

    if cached:
        with Cache(tmp_path / "scan-cache.sqlite") as cache:
            warm = scan(
                paths,
                POLICY,
                runner=Runner(
                    jobs=2, executor="dask", scheduler=cluster.scheduler_address, cache=cache
                ),
            )
        assert scan_json(warm) == expected
        assert parent_reads == []


def test_dask_keeps_input_order_and_passes_exceptions(tmp_path, dask_cluster):
    cluster, _ = dask_cluster
    workers = Workers(jobs=2, executor="dask", scheduler=cluster.scheduler_address, batch_size=1)
    try:
        # on Dask which worker gets which task is the scheduler's choice: an even item
        # waits a little for its neighbour, and goes on if they share one worker
        results = list(workers.map(_wait_for_next, range(8), str(tmp_path), 2.0))
        assert [item for item, _, _ in results] == list(range(8))
        assert os.getpid() not in {pid for _, pid, _ in results}
        with pytest.raises(ValueError, match="item 5 cannot be done"):
            list(workers.map(_fail_on_five, range(20)))
    finally:
        workers.close()


def _die_on_second(batch: list[int]) -> list[int]:
    if 2 in batch:
        os._exit(3)  # a worker killed mid-batch (the OOM killer, a crash in a library)
    return batch


def test_a_worker_that_dies_is_a_clear_error_not_a_hang():
    from rtcode.engine.execute import WorkerDied, Workers

    workers = Workers(jobs=2, batch_size=1)
    try:
        with pytest.raises(WorkerDied, match="--jobs 1"):
            list(workers.map(_die_on_second, range(6)))
    finally:
        workers.close(interrupted=True)
