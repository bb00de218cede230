"""The results database of ``rtcode listen``: what was received, what was refused and
how each plan was coded. ``ResultsDB`` writes it (the listener), ``query`` reads it
(``rtcode results``), ``stored_files`` lists the RT files received (``rtcode audit
--db``). The schema is described above ``_DDL``.

An embedded SQLite file (standard library ``sqlite3``, WAL journal so that
``rtcode results`` can read while the listener writes), updated in place by SQLite's
own transactions: not a whole file written at once, so not a job for the project's
atomic writer (``output/files.py``). It is private (created 0600 whatever the umask;
SQLite gives its -wal and -shm files the same mode): it holds patient IDs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtcode.model.errors import RtcodeError
from rtcode.output.jsontext import dumps

SCHEMA_VERSION = 1

# Every time is UTC, ISO 8601 with a ``Z`` (``2026-11-22T08:15:02.123456Z``), so times
# sort as text. Paths are relative to the store folder given to ``rtcode listen --store``.
#
# Schema version 1 (the number is in ``schema_version``; a database written by a
# newer rtcode is refused, never changed):
#
# ``schema_version``
#     ``version`` INTEGER: one row.
# ``instances``: one row per instance stored
#     ``id``, ``received_at``, ``calling_ae``, ``peer`` (address:port),
#     ``sop_class_uid``, ``modality`` (RTPLAN, RTIONPLAN, RTDOSE, RTSTRUCT, CT),
#     ``sop_instance_uid``, ``patient_id``, ``study_instance_uid``, ``stored_path``,
#     ``size_bytes``, ``sha256`` (of the data set as received), ``pending`` (1 until
#     the patient's plans have been coded with this instance on disk; 0 for CT,
#     which never changes a code). A restart codes what is still pending.
# ``refusals``: one row per refused instance, association or connection
#     ``id``, ``at``, ``calling_ae``, ``peer``, ``what`` (``association``;
#     ``instance``; ``context``: the presentation contexts refused in an association
#     that was accepted, such as CT without ``--accept-ct`` or a class not stored, one
#     row per association; or ``connection``: one closed because it did not ask for
#     an association in time), ``sop_instance_uid`` (as sent, for the record only),
#     ``reason``.
# ``plans``: the current coding of every stored plan file
#     ``stored_path`` (key), ``sop_instance_uid``, ``patient_id``, ``plan_label``,
#     ``code``, ``label``, ``category``, ``confidence``, ``structure_set_status``
#     (``linked``, ``not_in_export``, ``not_referenced``), ``doses`` (linked dose
#     files), ``date_of_service``, ``first_coded_at``, ``coded_at``, ``times_coded``,
#     ``policy_name``, ``policy_version``, ``policy_sha256``, ``reasons_json`` (the
#     deciding findings, a JSON list of strings) and ``result_json`` (the plan exactly
#     as one item of ``plans`` in ``rtcode scan --format json``, evidence included).
# ``codings``: the history, one row each time a plan's coding changed
#     ``id``, ``stored_path``, ``coded_at``, ``code``, ``category``, ``confidence``,
#     ``structure_set_status``, ``doses``, ``trigger`` (the stored path of the
#     instance whose arrival caused the coding).
# ``errors``: every stored file the last coding of its patient could not read
#     ``stored_path`` (key; a patient's folder, ending in ``/``, when the coding
#     itself failed), ``sop_instance_uid``, ``patient_id``, ``modality`` (from
#     ``instances``), ``error`` (the sentence ``rtcode scan`` gives for the file),
#     ``first_seen_at``, ``at`` (the last coding that saw it), ``trigger``. A file
#     that a later coding reads leaves the table. So every stored instance is either
#     coded (``plans``), used by a coded plan, or here. The table is additive: the
#     listener adds it to a version-1 database written before it existed, and
#     ``rtcode results`` reads such a database as having no errors.
_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    calling_ae TEXT,
    peer TEXT,
    sop_class_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    patient_id TEXT,
    study_instance_uid TEXT,
    stored_path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    pending INTEGER NOT NULL
);
CREATE INDEX instances_patient ON instances (patient_id, received_at);
CREATE TABLE refusals (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    calling_ae TEXT,
    peer TEXT,
    what TEXT NOT NULL,
    sop_instance_uid TEXT,
    reason TEXT NOT NULL
);
CREATE TABLE plans (
    stored_path TEXT PRIMARY KEY,
    sop_instance_uid TEXT,
    patient_id TEXT,
    plan_label TEXT,
    code TEXT,
    label TEXT,
    category TEXT NOT NULL,
    confidence TEXT NOT NULL,
    structure_set_status TEXT,
    doses INTEGER NOT NULL,
    date_of_service TEXT,
    first_coded_at TEXT NOT NULL,
    coded_at TEXT NOT NULL,
    times_coded INTEGER NOT NULL,
    policy_name TEXT,
    policy_version TEXT,
    policy_sha256 TEXT,
    reasons_json TEXT NOT NULL,
    result_json TEXT NOT NULL
);
CREATE INDEX plans_patient ON plans (patient_id, coded_at);
CREATE TABLE codings (
    id INTEGER PRIMARY KEY,
    stored_path TEXT NOT NULL,
    coded_at TEXT NOT NULL,
    code TEXT,
    category TEXT NOT NULL,
    confidence TEXT NOT NULL,
    structure_set_status TEXT,
    doses INTEGER NOT NULL,
    trigger TEXT
);
"""

# Added to schema version 1 later (see ``errors`` above): created when missing.
_ERRORS_DDL = """
CREATE TABLE IF NOT EXISTS errors (
    stored_path TEXT PRIMARY KEY,
    sop_instance_uid TEXT,
    patient_id TEXT,
    modality TEXT,
    error TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    at TEXT NOT NULL,
    trigger TEXT
);
"""


class ResultsDatabaseError(RtcodeError, ValueError):
    """The results database cannot be used; the message says why and what to do."""


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def since_to_utc(day: dt.date) -> str:
    """Local midnight at the start of ``day``, as a UTC time string for comparisons."""
    local = dt.datetime.combine(day, dt.time()).astimezone()
    return local.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PlanCoding:
    """One plan's coding, as the listener hands it to the database."""

    stored_path: str
    sop_instance_uid: str | None
    patient_id: str | None
    plan_label: str | None
    code: str | None
    label: str | None
    category: str
    confidence: str
    structure_set_status: str | None
    doses: int
    date_of_service: str | None
    policy_name: str
    policy_version: str
    policy_sha256: str
    reasons: tuple[str, ...]
    result: dict[str, Any]


class ResultsDB:
    """A results database opened for writing. Thread-safe: one connection, one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            _create_private(path)
            self._conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            _prepare(self._conn, path, create=True)
            with self._conn:
                self._conn.executescript(_ERRORS_DDL)
        except (sqlite3.Error, OSError) as exc:
            raise ResultsDatabaseError(f"cannot use {path} as a results database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn

    def last_instance_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM instances").fetchone()
        return int(row[0])

    def mark_coded(self, folder_prefix: str, up_to_id: int) -> None:
        """Clear ``pending`` for the instances under a folder recorded up to an id."""
        with self._tx() as c:
            c.execute(
                "UPDATE instances SET pending = 0 WHERE pending = 1 AND id <= ?"
                " AND substr(stored_path, 1, ?) = ?",
                (up_to_id, len(folder_prefix), folder_prefix),
            )

    def pending_folders(self) -> list[str]:
        """Folders (relative to the store) with instances whose coding is pending."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT stored_path FROM instances WHERE pending = 1"
            ).fetchall()
        return sorted({r[0].rsplit("/", 1)[0] for r in rows if "/" in r[0]})

    def coded_paths(self) -> set[str]:
        """The stored paths of every plan that has a coding."""
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT stored_path FROM plans")}

    def record_instance(
        self,
        *,
        calling_ae: str,
        peer: str,
        sop_class_uid: str,
        modality: str,
        sop_instance_uid: str,
        patient_id: str | None,
        study_instance_uid: str | None,
        stored_path: str,
        size_bytes: int,
        sha256: str,
        pending: bool,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO instances (received_at, calling_ae, peer, sop_class_uid, modality,"
                " sop_instance_uid, patient_id, study_instance_uid, stored_path, size_bytes,"
                " sha256, pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    utc_now(),
                    calling_ae,
                    peer,
                    sop_class_uid,
                    modality,
                    sop_instance_uid,
                    patient_id,
                    study_instance_uid,
                    stored_path,
                    size_bytes,
                    sha256,
                    int(pending),
                ),
            )

    def record_refusal(
        self, *, calling_ae: str, peer: str, what: str, reason: str, sop_instance_uid: str = ""
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO refusals (at, calling_ae, peer, what, sop_instance_uid, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), calling_ae, peer, what, sop_instance_uid[:200], reason),
            )

    def record_errors(
        self, folder_prefix: str, errors: dict[str, str], trigger: str, *, complete: bool = True
    ) -> None:
        """Errors (stored path -> sentence) of the files under a folder, added or
        updated. ``complete``: they are all of that folder's, and the files no longer
        in error leave the table."""
        now = utc_now()
        with self._tx() as c:
            rows = c.execute(
                "SELECT stored_path FROM errors WHERE substr(stored_path, 1, ?) = ?",
                (len(folder_prefix), folder_prefix),
            ).fetchall()
            for (gone,) in rows if complete else ():
                if gone not in errors:
                    c.execute("DELETE FROM errors WHERE stored_path = ?", (gone,))
            for stored_path, error in errors.items():
                known = c.execute(
                    "SELECT sop_instance_uid, patient_id, modality FROM instances"
                    " WHERE stored_path = ? ORDER BY id DESC LIMIT 1",
                    (stored_path,),
                ).fetchone() or (None, None, None)
                c.execute(
                    "INSERT INTO errors (stored_path, sop_instance_uid, patient_id, modality,"
                    " error, first_seen_at, at, trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (stored_path) DO UPDATE SET error = excluded.error,"
                    " at = excluded.at, trigger = excluded.trigger",
                    (stored_path, *known, error, now, now, trigger),
                )

    def record_codings(self, codings: list[PlanCoding], trigger: str) -> int:
        """Store the current coding of each plan; return how many changed (or are new)."""
        now = utc_now()
        changed = 0
        with self._tx() as c:
            for p in codings:
                row = c.execute(
                    "SELECT code, category, confidence, structure_set_status, doses, times_coded"
                    " FROM plans WHERE stored_path = ?",
                    (p.stored_path,),
                ).fetchone()
                values = (p.code, p.category, p.confidence, p.structure_set_status, p.doses)
                result_json = dumps(p.result, sort_keys=True)
                reasons_json = dumps(list(p.reasons))
                if row is None:
                    c.execute(
                        "INSERT INTO plans (stored_path, sop_instance_uid, patient_id,"
                        " plan_label, code, label, category, confidence, structure_set_status,"
                        " doses, date_of_service, first_coded_at, coded_at, times_coded,"
                        " policy_name, policy_version, policy_sha256, reasons_json, result_json)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                        (
                            p.stored_path,
                            p.sop_instance_uid,
                            p.patient_id,
                            p.plan_label,
                            p.code,
                            p.label,
                            p.category,
                            p.confidence,
                            p.structure_set_status,
                            p.doses,
                            p.date_of_service,
                            now,
                            now,
                            p.policy_name,
                            p.policy_version,
                            p.policy_sha256,
                            reasons_json,
                            result_json,
                        ),
                    )
                else:
                    c.execute(
                        "UPDATE plans SET code = ?, label = ?, category = ?, confidence = ?,"
                        " structure_set_status = ?, doses = ?, date_of_service = ?,"
                        " coded_at = ?, times_coded = times_coded + 1, policy_name = ?,"
                        " policy_version = ?, policy_sha256 = ?, reasons_json = ?,"
                        " result_json = ? WHERE stored_path = ?",
                        (
                            p.code,
                            p.label,
                            p.category,
                            p.confidence,
                            p.structure_set_status,
                            p.doses,
                            p.date_of_service,
                            now,
                            p.policy_name,
                            p.policy_version,
                            p.policy_sha256,
                            reasons_json,
                            result_json,
                            p.stored_path,
                        ),
                    )
                if row is None or tuple(row[:5]) != values:
                    changed += 1
                    c.execute(
                        "INSERT INTO codings (stored_path, coded_at, code, category, confidence,"
                        " structure_set_status, doses, trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (p.stored_path, now, *values, trigger),
                    )
        return changed


def _create_private(path: Path) -> None:
    """Create the database file readable and writable by its owner only, unless it
    exists (an existing database keeps the mode its owner gave it)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _prepare(conn: sqlite3.Connection, path: Path, create: bool) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables and create:
        with conn:
            conn.executescript("BEGIN;" + _DDL + "COMMIT;")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        return
    if "schema_version" not in tables:
        raise ResultsDatabaseError(
            f"{path} is not an rtcode results database (no schema_version table);"
            " give another --db file"
        )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    version = row[0] if row else None
    if version != SCHEMA_VERSION:
        raise ResultsDatabaseError(
            f"{path} has results schema version {version}; this rtcode reads version"
            f" {SCHEMA_VERSION}"
            + (": upgrade rtcode" if isinstance(version, int) and version > SCHEMA_VERSION else "")
        )


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing results database for reading only; raises ResultsDatabaseError."""
    if not path.is_file():
        raise ResultsDatabaseError(f"no results database at {path} (rtcode listen --db creates it)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        _prepare(conn, path, create=False)
    except sqlite3.Error as exc:
        raise ResultsDatabaseError(f"cannot read {path} as a results database: {exc}") from None
    return conn


def query(
    path: Path,
    *,
    patients: tuple[str, ...] | list[str] = (),
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> dict[str, Any]:
    """Everything ``rtcode results`` shows: instances, refusals, plans with evidence and
    their coding history, and the stored files that could not be coded (``errors``).

    Filters, as ``rtcode scan``'s: ``patients`` (Patient IDs; refusals have no
    trustworthy patient, so none is shown with it); ``since`` and ``until`` (first and
    last day, inclusive) keep the plans whose plan date (``date_of_service``: the
    listener codes each plan on its RTPlanDate) lies between them, a plan without a
    date left out and counted under ``filters``; instances, refusals and errors are
    kept by the day they arrived (local time)."""
    conn = open_readonly(path)
    try:
        arrived = _Window(
            since_to_utc(since) if since is not None else None,
            since_to_utc(until + dt.timedelta(days=1)) if until is not None else None,
        )
        dated = _Window(
            since.isoformat() if since is not None else None,
            until.isoformat() if until is not None else None,
            inclusive=True,
        )
        who = tuple(patients)
        plans_where = _where("date_of_service", dated, who)
        undated = 0
        if dated.active:
            ids = _where(None, _Window(None, None), who)
            undated = conn.execute(
                f"SELECT COUNT(*) FROM plans WHERE date_of_service IS NULL AND {ids[0]}", ids[1]
            ).fetchone()[0]
        return {
            "schema_version": SCHEMA_VERSION,
            "filters": {
                "patients": list(who),
                "since": since.isoformat() if since is not None else None,
                "until": until.isoformat() if until is not None else None,
                "plans_without_date_left_out": undated,
            },
            "instances": _rows(
                conn,
                "SELECT received_at, calling_ae, peer, modality, sop_class_uid,"
                " sop_instance_uid, patient_id, study_instance_uid, stored_path, size_bytes,"
                " sha256, pending FROM instances WHERE {where} ORDER BY id",
                _where("received_at", arrived, who),
            ),
            "refusals": (
                _rows(
                    conn,
                    "SELECT at, calling_ae, peer, what, sop_instance_uid, reason FROM refusals"
                    " WHERE {where} ORDER BY id",
                    _where("at", arrived, ()),
                )
                if not who  # a refusal has no trustworthy patient
                else []
            ),
            "plans": _plans(conn, plans_where),
            "errors": (
                _rows(
                    conn,
                    "SELECT at, first_seen_at, patient_id, modality, sop_instance_uid,"
                    " stored_path, error, trigger FROM errors WHERE {where}"
                    " ORDER BY first_seen_at, stored_path",
                    _where("at", arrived, who),
                )
                if _has_table(conn, "errors")  # added to version 1 later
                else []
            ),
        }
    finally:
        conn.close()


@dataclass(frozen=True)
class _Window:
    """From ``start`` (inclusive) to ``end`` (exclusive; inclusive with ``inclusive``),
    as text that sorts as the column does; None: open."""

    start: str | None
    end: str | None
    inclusive: bool = False

    @property
    def active(self) -> bool:
        return self.start is not None or self.end is not None


# The modalities whose stored files a scan of the store reads (not CT: it never
# changes a code).
RT_MODALITIES = ("RTPLAN", "RTIONPLAN", "RTSTRUCT", "RTDOSE")


def stored_files(path: Path) -> list[str]:
    """The stored paths (relative to the store folder, as stored) of the RT instances
    the listener received and coded: plans, structure sets and doses, not those still
    pending (a restart codes them first), each once, in the order received. A scan of
    exactly these files gives the codings of ``plans``. Raises ResultsDatabaseError."""
    conn = open_readonly(path)
    try:
        marks = ", ".join("?" for _ in RT_MODALITIES)
        rows = conn.execute(
            f"SELECT stored_path FROM instances WHERE modality IN ({marks})"
            " GROUP BY stored_path HAVING MAX(pending) = 0 ORDER BY MIN(id)",
            RT_MODALITIES,
        ).fetchall()
    except sqlite3.Error as exc:
        raise ResultsDatabaseError(f"cannot read {path} as a results database: {exc}") from None
    finally:
        conn.close()
    return [r[0] for r in rows]


def _where(column: str | None, window: _Window, patients: tuple[str, ...]) -> tuple[str, list[str]]:
    """A WHERE clause and its arguments: ``column`` within ``window`` (a row without a
    value is left out when the window is not open), of one of ``patients`` (any when
    none is given)."""
    where, args = ["1 = 1"], []
    if column is not None and window.start is not None:
        where.append(f"{column} >= ?")
        args.append(window.start)
    if column is not None and window.end is not None:
        where.append(f"{column} {'<=' if window.inclusive else '<'} ?")
        args.append(window.end)
    if patients:
        where.append(f"patient_id IN ({', '.join('?' for _ in patients)})")
        args.extend(patients)
    return " AND ".join(where), args


def _rows(conn: sqlite3.Connection, sql: str, where: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql.format(where=where[0]), where[1])]


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _plans(conn: sqlite3.Connection, where: tuple[str, list[str]]) -> list[dict[str, Any]]:
    """The plans with their reasons, coding history and result, oldest coding first."""
    plans = []
    for r in conn.execute(
        f"SELECT * FROM plans WHERE {where[0]} ORDER BY first_coded_at, rowid", where[1]
    ):
        keys = r.keys()  # a sqlite3.Row iterates over its values, not its keys
        item = {k: r[k] for k in keys if k not in ("reasons_json", "result_json")}
        item["reasons"] = json.loads(r["reasons_json"])
        item["history"] = [
            dict(h)
            for h in conn.execute(
                "SELECT coded_at, code, category, confidence, structure_set_status, doses,"
                " trigger FROM codings WHERE stored_path = ? ORDER BY id",
                (r["stored_path"],),
            )
        ]
        item["result"] = json.loads(r["result_json"])
        plans.append(item)
    return plans
