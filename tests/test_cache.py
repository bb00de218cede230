"""The scan cache: a rescan reads and codes only what changed, and says the same.

Expectations come from cache-less scans of the same files, never from hard-coded
codes. Reads are counted by wrapping ``rtcode.dicom.read.read`` and codings by wrapping
``rtcode.engine.scan.classify``; every scan here runs in this process (jobs=1), so the
counts are complete. Every cache lives under tmp_path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from rtcode.coding import classify as classify_mod
from rtcode.coding import policy as policy_mod
from rtcode.dicom import read as reader
from rtcode.engine import cache as cache_mod
from rtcode.engine.cache import Cache, PlanSummary, StructureSetSummary
from rtcode.engine.scan import Runner, ScanInterrupted, scan
from rtcode.output.render import scan_json

POLICY = policy_mod.load()
CASE = "06_four_field_box_3d"  # plan, structure set, dose and CT: coded lower without its RS


# ------------------------------------------------------------------- helpers


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files parsed (rtcode.dicom.read.read), in order."""
    seen: list[str] = []
    real_read = reader.read

    def counting_read(entry, limits=None):
        seen.append(entry.display)
        return real_read(entry, limits)

    monkeypatch.setattr(reader, "read", counting_read)
    return seen


@pytest.fixture
def codings(monkeypatch) -> list[str]:
    """The plans coded (rtcode.coding.classify.classify), in order."""
    seen: list[str] = []
    real_classify = classify_mod.classify

    def counting_classify(lp, policy):
        seen.append(lp.plan.path)
        return real_classify(lp, policy)

    monkeypatch.setattr(classify_mod, "classify", counting_classify)
    return seen


def cached_scan(cache_path: Path, inputs, policy=POLICY) -> dict:
    with Cache(cache_path) as cache:
        assert cache.warning is None, cache.warning
        return scan_json(scan([str(p) for p in inputs], policy, runner=Runner(jobs=1, cache=cache)))


def plain_scan(inputs, policy=POLICY) -> dict:
    return scan_json(scan([str(p) for p in inputs], policy))


def parsed_with_cache(json: dict) -> int:
    """Files a cold cached scan parses: all but those whose file meta names them an
    image or another non-RT object."""
    s = json["summary"]
    return s["files_seen"] - s["images_skipped"] - s["other_dicom_skipped"]


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under root: kind, mode, size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            digest = (
                hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            )
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def codes(json: dict) -> dict[str, str | None]:
    return {p["path"]: p["code"] for p in json["plans"]}


@pytest.fixture
def usual_umask():
    """The common umask (022): files a library creates on its own come out 0o644, so
    a mode of 0o600 is rtcode's doing, not the environment's."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def baseline() -> dict:
    return plain_scan([SAMPLE_DATA])


# --------------------------------------------------------------- unchanged


def test_warm_rescan_parses_and_codes_nothing(tmp_path, baseline, reads, codings):
    cache_path = tmp_path / "scan-cache.sqlite"

    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline
    assert len(reads) == parsed_with_cache(baseline)
    assert len(codings) == baseline["summary"]["plans"]

    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline
    assert reads == []
    assert codings == []


# ----------------------------------------------------------------- changes


@pytest.mark.parametrize("mtime", ["bumped", "kept"])
def test_file_changed_in_its_first_bytes_is_read_again(tmp_path, reads, codings, mtime):
    """Same size, other bytes in the first 8 KB: read again, whether the modification
    time moved or was put back (the hash of the first bytes tells)."""
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    plan = export / "RP.dcm"
    cache_path = tmp_path / "scan-cache.sqlite"
    before = cached_scan(cache_path, [export])
    [label] = {p["plan_label"] for p in before["plans"]}

    data = plan.read_bytes()
    at = data.index(label.encode())
    assert at + len(label) <= reader.HEADER_BYTES
    new_label = label[::-1]
    assert new_label != label
    st = plan.stat()
    plan.write_bytes(data[:at] + new_label.encode() + data[at + len(label) :])
    assert plan.stat().st_size == st.st_size
    new_mtime = st.st_mtime_ns + 2_000_000_000 if mtime == "bumped" else st.st_mtime_ns
    os.utime(plan, ns=(st.st_atime_ns, new_mtime))

    expected = plain_scan([export])
    reads.clear()
    codings.clear()
    after = cached_scan(cache_path, [export])
    assert after == expected
    assert {p["plan_label"] for p in after["plans"]} == {new_label}
    assert reads == [str(plan)]
    assert codings == [str(plan)]


def write_policy(path: Path, extra: str) -> Path:
    path.write_text(
        '[policy]\nextends = "default"\nname = "test-local"\nversion = "1"\n'
        'description = "one setting changed"\n\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "setting, facts_reused",
    [
        # a classification threshold: the facts stand, the codes do not
        ("[modulation]\nfif_max_segments = 1\n", True),
        # a reader limit: the facts themselves were extracted under other limits
        ("[limits]\nmax_beams = 400\n", False),
    ],
    ids=["threshold", "limit"],
)
def test_policy_change_recodes_every_plan(
    tmp_path, baseline, reads, codings, setting, facts_reused
):
    policy = policy_mod.load(write_policy(tmp_path / "local.toml", setting))
    assert policy.sha256 != POLICY.sha256
    expected = plain_scan([SAMPLE_DATA], policy)
    if setting.startswith("[modulation]"):  # the threshold chosen must matter
        assert codes(expected) != codes(baseline)
    cache_path = tmp_path / "scan-cache.sqlite"
    cached_scan(cache_path, [SAMPLE_DATA])

    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [SAMPLE_DATA], policy) == expected
    assert len(codings) == expected["summary"]["plans"]
    assert len(reads) == (0 if facts_reused else parsed_with_cache(baseline))

    # back to the first policy: its results are still in the cache
    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline
    assert codings == []
    assert len(reads) == (0 if facts_reused else parsed_with_cache(baseline))


def test_result_depends_on_its_companions(tmp_path, reads, codings):
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    plan = str(export / "RP.dcm")
    cache_path = tmp_path / "scan-cache.sqlite"
    with_rs = plain_scan([export])
    assert cached_scan(cache_path, [export]) == with_rs

    structure_set = export / "RS.dcm"
    saved = structure_set.read_bytes()
    st = structure_set.stat()
    structure_set.unlink()
    without_rs = plain_scan([export])
    assert codes(without_rs) != codes(with_rs)  # the case chosen must show it

    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [export]) == without_rs
    assert reads == []  # the plan, dose and images are unchanged
    assert codings == [plan]  # but the plan is coded again

    # the structure set back as it was: the first result is reused, nothing re-coded
    structure_set.write_bytes(saved)
    os.utime(structure_set, ns=(st.st_atime_ns, st.st_mtime_ns))
    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [export]) == with_rs
    assert reads == []
    assert codings == []


def test_plan_rewritten_with_the_same_bytes_is_coded_from_its_stored_facts(
    tmp_path, reads, codings
):
    """Written again with the same bytes (its change time moves): its first bytes are
    looked at, not parsed; coded again under a new threshold, from the facts stored."""
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    plan = export / "RP.dcm"
    cache_path = tmp_path / "scan-cache.sqlite"
    cached_scan(cache_path, [export])

    st = plan.stat()
    plan.write_bytes(plan.read_bytes())
    os.utime(plan, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert plan.stat().st_ctime_ns != st.st_ctime_ns or plan.stat().st_ino != st.st_ino
    policy = policy_mod.load(
        write_policy(tmp_path / "local.toml", "[modulation]\nfif_max_segments = 1\n")
    )
    expected = plain_scan([export], policy)
    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [export], policy) == expected
    assert reads == []
    assert codings == [str(plan)]


@pytest.mark.parametrize("gone", ["RP.dcm", "RS.dcm", "both"])
def test_facts_gone_from_the_cache_are_read_again(tmp_path, reads, codings, monkeypatch, gone):
    """Another scan sharing the cache replaced a plan's or its structure set's stored
    facts before the plan was coded: that file is read again (the scanning process
    holds summaries only), and the result is the same."""
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    cache_path = tmp_path / "scan-cache.sqlite"
    cached_scan(cache_path, [export])
    policy = policy_mod.load(
        write_policy(tmp_path / "local.toml", "[modulation]\nfif_max_segments = 1\n")
    )
    missing = ["RP.dcm", "RS.dcm"] if gone == "both" else [gone]
    real_get = Cache.get_file_pickled

    def get_file_pickled(self, path, *args):
        if os.fsdecode(path).endswith(tuple(missing)):
            return None
        return real_get(self, path, *args)

    monkeypatch.setattr(Cache, "get_file_pickled", get_file_pickled)
    expected = plain_scan([export], policy)
    reads.clear()
    codings.clear()
    assert cached_scan(cache_path, [export], policy) == expected
    assert reads == [str(export / name) for name in missing]
    assert codings == [str(export / "RP.dcm")]


def test_the_scanning_process_links_summaries_and_codes_whole_facts(tmp_path):
    """With a cache, the scanning process keeps each plan as a PlanSummary (no beams or
    fraction groups) and each structure set as a StructureSetSummary (no ROIs): memory,
    an archive's worth of them; the plan is coded with all of them, as without a cache."""
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    plain = scan([str(export)], POLICY)
    whole = plain.plans[0].linked
    assert whole.plan.beams and whole.plan.fraction_groups and whole.structure_set.rois
    with Cache(tmp_path / "scan-cache.sqlite") as cache:
        for _ in range(2):  # read from the files, then from the cache
            cached = scan([str(export)], POLICY, runner=Runner(jobs=1, cache=cache))
            [plan], [ss] = cached.inventory.plans, cached.inventory.structure_sets
            assert isinstance(plan, PlanSummary) and isinstance(ss, StructureSetSummary)
            assert plan.sop_instance_uid == whole.plan.sop_instance_uid
            assert ss.sop_instance_uid == whole.structure_set.sop_instance_uid
            coded = cached.plans[0].linked
            assert coded.structure_set == whole.structure_set
            assert coded.plan.fraction_groups == whole.plan.fraction_groups
            assert len(coded.plan.beams) == len(whole.plan.beams)
            assert scan_json(cached) == scan_json(plain)


def test_a_linked_summary_cannot_be_coded(tmp_path):
    """The summary the scanning process links is not a plan: the classifier fails on
    it instead of coding a plan without beams as "no treatment beam"."""
    from rtcode.coding.classify import classify

    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    with Cache(tmp_path / "scan-cache.sqlite") as cache:
        cached = scan([str(export)], POLICY, runner=Runner(jobs=1, cache=cache))
    linked = scan([str(export)], POLICY).plans[0].linked
    [small] = cached.inventory.plans
    assert not hasattr(small, "beams")
    with pytest.raises(AttributeError):
        classify(replace(linked, plan=small), POLICY)


def test_a_structure_set_no_longer_one_when_its_plan_is_coded_is_an_error(tmp_path):
    """Gone from the cache and replaced on disk by another kind of file before its
    plan is coded: the plan is not coded without its ROIs; it is an error that says
    why."""
    from rtcode.engine.scan import _PlanToCode
    from rtcode.model.facts import ReadError

    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / CASE, export)
    with Cache(tmp_path / "scan-cache.sqlite") as cache:
        cached = scan([str(export)], POLICY, runner=Runner(jobs=1, cache=cache))
    linked = scan([str(export)], POLICY).plans[0].linked
    shutil.copy(export / "RD.dcm", export / "RS.dcm")
    summary_ss = cached.inventory.structure_sets[0]
    to_code = _PlanToCode(replace(linked, structure_set=summary_ss), None, None, None, None)
    out = to_code.unpickle(POLICY)
    assert isinstance(out, ReadError)
    assert out.path == linked.plan.path
    assert str(export / "RS.dcm") in out.error
    assert "no longer an RT Structure Set" in out.error


# ------------------------------------------------------------ interruption


def test_scan_interrupted_while_reading_leaves_a_usable_cache(tmp_path, baseline, monkeypatch):
    to_parse = parsed_with_cache(baseline)
    ctrl_c_after = to_parse // 2
    real_read = reader.read
    parsed: list[str] = []

    def read_then_ctrl_c(entry, limits=None):
        if ctrl_c_after is not None and len(parsed) == ctrl_c_after:
            raise KeyboardInterrupt
        parsed.append(entry.display)
        return real_read(entry, limits)

    monkeypatch.setattr(reader, "read", read_then_ctrl_c)
    cache_path = tmp_path / "scan-cache.sqlite"
    with Cache(cache_path) as cache, pytest.raises(ScanInterrupted) as stopped:
        scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=1, cache=cache))
    assert stopped.value.result.interrupted
    assert len(parsed) == ctrl_c_after

    first = list(parsed)
    parsed.clear()
    ctrl_c_after = None
    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline  # as a clean scan
    assert len(parsed) == to_parse - len(first)  # the files read before Ctrl-C are not
    assert not set(parsed) & set(first)


def test_scan_interrupted_while_coding_keeps_the_results_made(tmp_path, baseline, monkeypatch):
    plans = baseline["summary"]["plans"]
    ctrl_c_after = plans // 2
    real_classify = classify_mod.classify
    coded: list[str] = []

    def classify_then_ctrl_c(lp, policy):
        if ctrl_c_after is not None and len(coded) == ctrl_c_after:
            raise KeyboardInterrupt
        coded.append(lp.plan.path)
        return real_classify(lp, policy)

    monkeypatch.setattr(classify_mod, "classify", classify_then_ctrl_c)
    cache_path = tmp_path / "scan-cache.sqlite"
    with Cache(cache_path) as cache, pytest.raises(ScanInterrupted) as stopped:
        scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=1, cache=cache))
    assert len(stopped.value.result.plans) == ctrl_c_after

    first = list(coded)
    coded.clear()
    ctrl_c_after = None
    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline
    assert len(coded) == plans - len(first)  # the plans coded before Ctrl-C are not
    assert not set(coded) & set(first)


# ------------------------------------------------------- the file itself


def test_corrupt_cache_is_set_aside_and_the_scan_works(tmp_path, baseline, reads):
    cache_path = tmp_path / "scan-cache.sqlite"
    garbage = bytes(range(256)) * 16
    cache_path.write_bytes(garbage)

    with Cache(cache_path) as cache:
        assert cache.warning is not None
        assert str(cache_path) in cache.warning and "moved to" in cache.warning
        result = scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=1, cache=cache))
    assert scan_json(result) == baseline
    [aside] = tmp_path.glob("scan-cache.sqlite.broken-*")
    assert aside.read_bytes() == garbage
    assert aside.name in cache.warning

    reads.clear()
    assert cached_scan(cache_path, [SAMPLE_DATA]) == baseline  # the new cache works
    assert reads == []


def test_cache_started_after_a_corrupt_one_is_private(tmp_path, usual_umask):
    cache_path = tmp_path / "scan-cache.sqlite"
    cache_path.write_bytes(bytes(range(256)) * 16)
    with Cache(cache_path) as cache:
        assert cache.warning is not None
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600


def test_cache_file_is_private(tmp_path, usual_umask):
    cache_path = tmp_path / "new-folder" / "scan-cache.sqlite"
    with Cache(cache_path) as cache:
        assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
        scan([str(SAMPLE_DATA / CASE)], POLICY, runner=Runner(jobs=1, cache=cache))
        for side in tmp_path.glob("new-folder/scan-cache.sqlite-*"):  # WAL and shared memory
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_path.parent.stat().st_mode) & 0o077 == 0


def test_temporary_cache_file_is_deleted_on_close(baseline, usual_umask):
    cache = Cache.temporary_file()
    path = cache.path
    assert cache.temporary
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    try:
        result = scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=1, cache=cache))
    finally:
        cache.close()
    assert scan_json(result) == baseline
    assert not path.exists()
    assert not list(path.parent.glob(path.name + "-*"))  # no journal left either


def test_temporary_cache_file_is_deleted_after_an_error():
    with pytest.raises(RuntimeError), Cache.temporary_file() as cache:
        path = cache.path
        raise RuntimeError("the scan failed")
    assert not path.exists()


@pytest.mark.parametrize("jobs", [1, 2])
def test_inputs_are_never_modified(tmp_path, baseline, jobs):
    before = tree_state(SAMPLE_DATA)
    cache_path = tmp_path / "scan-cache.sqlite"
    for _ in ("cold", "warm"):
        with Cache(cache_path) as cache:
            result = scan([str(SAMPLE_DATA)], POLICY, runner=Runner(jobs=jobs, cache=cache))
        assert scan_json(result) == baseline
    assert tree_state(SAMPLE_DATA) == before


# ------------------------------------------------------------- found bugs


def test_named_non_dicom_file_is_an_error_after_it_was_walked(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(SAMPLE_DATA / "01_single_open_field", export)
    notes = export / "notes.txt"
    notes.write_text("not DICOM\n" * 20, encoding="utf-8")
    expected = plain_scan([notes])
    assert expected["summary"]["errors"] == 1

    cache_path = tmp_path / "scan-cache.sqlite"
    cached_scan(cache_path, [export])  # the folder: notes.txt is counted and skipped
    assert cached_scan(cache_path, [notes]) == expected


def test_file_names_that_print_alike_keep_their_own_facts(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    try:
        shutil.copy(SAMPLE_DATA / CASE / "RP.dcm", os.fsdecode(bytes(export) + b"/RP\xfe.dcm"))
        shutil.copy(
            SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm", os.fsdecode(bytes(export) + b"/RP\xff.dcm")
        )
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system does not take non-UTF-8 file names: {exc}")
    expected = plain_scan([export])
    assert len({p["patient_id"] for p in expected["plans"]}) == 2
    assert cached_scan(tmp_path / "scan-cache.sqlite", [export]) == expected


def test_two_scans_sharing_one_cache(tmp_path):
    cache_path = tmp_path / "scan-cache.sqlite"
    second = Cache(cache_path)  # a second scan started meanwhile (e.g. by hand at night)
    try:
        second.get_file("elsewhere/RP.dcm", (1, 1, ""), "")  # it has looked one file up
        cached_scan(cache_path, [SAMPLE_DATA / CASE])  # the first scan ends and commits
        result = scan(
            [str(SAMPLE_DATA / "09_imrt_step_and_shoot_7f")],
            POLICY,
            runner=Runner(jobs=1, cache=second),
        )
    finally:
        second.close()
    assert scan_json(result) == plain_scan([SAMPLE_DATA / "09_imrt_step_and_shoot_7f"])


def test_cache_in_use_is_not_set_aside_as_broken(tmp_path, monkeypatch):
    cache_path = tmp_path / "scan-cache.sqlite"
    first = Cache(cache_path)
    try:
        first.put_file("a/RP.dcm", (1, 1, "x"), "ctx", "image")  # mid-scan: holds the write lock
        real_connect = sqlite3.connect
        # the 30 s busy timeout, made short: only how long the second scan waits
        monkeypatch.setattr(
            cache_mod.sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "timeout": 0.1})
        )
        # refusing to open is fine: rtcode scan then goes on without the cache
        with contextlib.suppress(sqlite3.OperationalError):
            Cache(cache_path).close()
        monkeypatch.undo()
        assert not list(tmp_path.glob("scan-cache.sqlite.broken-*"))
    finally:
        first.close()
    with Cache(cache_path) as cache:
        assert cache.get_file("a/RP.dcm", (1, 1, "x"), "ctx") == "image"


def test_entries_are_committed_once_enough_bytes_wait(tmp_path, monkeypatch):
    """Writes wait in memory for at most 2 s, or until _COMMIT_BYTES of them wait:
    a big export's plans do not pile up in memory between commits."""
    monkeypatch.setattr(cache_mod, "_COMMIT_EVERY_S", 3600.0)
    monkeypatch.setattr(cache_mod, "_COMMIT_BYTES", 10_000)
    cache_path = tmp_path / "scan-cache.sqlite"

    def stored() -> int:
        with sqlite3.connect(cache_path) as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    with Cache(cache_path) as cache:
        cache.put_file(b"/a/small", (1, 1, "x"), "ctx", "image")
        assert stored() == 0  # waits
        cache.put_file(b"/a/big", (1, 1, "y"), "ctx", "x" * 20_000)
        assert stored() == 2  # committed with it
