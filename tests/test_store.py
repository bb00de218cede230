"""Keeping received instances (rtcode/sources/store.py) and the results database
(rtcode/sources/results_db.py), without the network."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcode.sources import store
from rtcode.sources.results_db import ResultsDatabaseError, ResultsDB, open_readonly, query

PLAN = "1.2.840.10008.5.1.4.1.1.481.5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.481.5"),
        ("1.2.3\x00", "1.2.3"),  # UI padding
        (" 1.2.3 ", "1.2.3"),
        ("1.02.3", "1.02.3"),  # not conformant, but seen in the wild and harmless
        ("../../etc/passwd", None),
        ("1.2/../../x", None),
        ("1.2.3\\..\\x", None),
        ("/tmp/x", None),
        ("1..2", None),
        ("1.2.", None),
        (".1.2", None),
        ("", None),
        ("1." + "2" * 63, None),  # 65 characters
        ("1.2.3\n", None),
        (None, None),
    ],
)
def test_clean_uid(value, expected):
    assert store.clean_uid(value) == expected


@given(st.text(max_size=80))
def test_a_file_name_never_leaves_its_folder(text):
    try:
        name = store.file_name(PLAN, text, "0" * 64)
    except store.StoreError:
        return
    assert "/" not in name and "\\" not in name and ".." not in name
    assert name.startswith("RP.") and name.endswith(".dcm") and len(name) <= 84


def test_patient_folder_is_a_hash(tmp_path):
    folder = store.patient_folder(tmp_path, "../../etc")
    assert folder.parent == tmp_path / "patients"
    assert folder.name == store.patient_key("../../etc") and folder.name.startswith("p")
    assert store.patient_key("A") != store.patient_key("B")
    assert store.patient_key(None) == store.patient_key("")


def test_write_instance_is_atomic_and_stays_in_the_store(tmp_path):
    header = store.part10_header(PLAN, "1.2.3", "1.2.840.10008.1.2.1")
    stored = store.write_instance(
        tmp_path, store.patient_folder(tmp_path, "X"), PLAN, "1.2.3", header, b"body"
    )
    assert stored.path.read_bytes() == header + b"body"
    assert stored.path.read_bytes()[128:132] == b"DICM"
    assert stored.relative_path == f"patients/{store.patient_key('X')}/{stored.path.name}"
    assert not list((tmp_path / store.INCOMING).iterdir())
    with pytest.raises(store.StoreError, match="outside the store"):
        store.write_instance(tmp_path / "a", tmp_path / "b", PLAN, "1.2.3", b"", b"x")
    with pytest.raises(store.StoreError, match="not stored here"):
        store.write_instance(tmp_path, tmp_path, "1.2.840.10008.5.1.4.1.1.4", "1.2", b"", b"x")


def test_clear_incoming_removes_only_temporary_files(tmp_path):
    incoming = tmp_path / store.INCOMING
    incoming.mkdir()
    (incoming / "instance.abc.tmp").write_bytes(b"half")
    (incoming / "keep.txt").write_text("not ours")
    assert store.clear_incoming(tmp_path) == 1
    assert [p.name for p in incoming.iterdir()] == ["keep.txt"]


def test_results_database_schema_version(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsDB(path).close()
    assert query(path)["schema_version"] == 1
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ResultsDatabaseError, match="version 99; this rtcode reads version 1"):
        ResultsDB(path)
    with pytest.raises(ResultsDatabaseError, match="upgrade rtcode"):
        open_readonly(path)


def test_results_database_refuses_another_sqlite_file(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ResultsDatabaseError, match="not an rtcode results database"):
        ResultsDB(path)


def test_clear_incoming_removes_the_atomic_writers_temporary_files(tmp_path):
    incoming = tmp_path / store.INCOMING
    incoming.mkdir()
    (incoming / ".RP.1.2.3.0123456789ab.dcm.1a2b3c4d.tmp").write_bytes(b"half")
    (incoming / ".hidden").write_text("not ours")
    assert store.clear_incoming(tmp_path) == 1
    assert [p.name for p in incoming.iterdir()] == [".hidden"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary file"])
def test_write_bytes_atomically_leaves_nothing_behind(tmp_path, monkeypatch, unnamed):
    """Whole or nothing, with an unnamed O_TMPFILE and where the system has none; the
    temporary file is in the spool folder, never beside the target."""
    from rtcode.output import files

    if not unnamed:
        monkeypatch.setattr(files, "_open_unnamed", lambda folder: -1)
    spool, folder = tmp_path / "spool", tmp_path / "patient"
    spool.mkdir()
    folder.mkdir()
    target = folder / "RP.1.2.dcm"
    files.write_bytes_atomically(target, spool, b"head", memoryview(b"body"))
    assert target.read_bytes() == b"headbody"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in folder.iterdir()] == ["RP.1.2.dcm"]
    assert not list(spool.iterdir())

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        files.write_bytes_atomically(folder / "RP.3.4.dcm", spool, b"x")
    assert [p.name for p in folder.iterdir()] == ["RP.1.2.dcm"]
    assert not list(spool.iterdir())
