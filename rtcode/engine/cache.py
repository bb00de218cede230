"""The scan cache: an SQLite file of each file's facts and each plan's coded result,
so that a nightly rescan reads and codes only what changed (see ``Cache``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from rtcode import __version__
from rtcode.model.facts import Plan, Skipped, StructureSet
from rtcode.output.files import keep_on_signal, remove_on_signal

SCHEMA = 6  # 6: results indexed by their used date
_COMMIT_EVERY_S = 2.0
# or sooner, once this much waits: what waits, and the commit's copy of it, are the
# scanning process's largest allocations (4 MB: peak 6 MB higher at 200 patients)
_COMMIT_BYTES = 1 << 20
_KEEP_UNUSED_DAYS = 60
_MARK_USED_AFTER_S = 86400.0  # a result's "used" date is refreshed at most daily
# results read back in one query: a chunk's rows (some 20 kB each, rendered for every
# format) are what a replayed scan holds at its peak
_RESULTS_AT_ONCE = 128
MISS = object()


def default_path() -> Path:
    """The user's cache folder: $XDG_CACHE_HOME/rtcode (~/.cache/rtcode), the Caches
    folder on macOS, %LOCALAPPDATA%\\rtcode on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rtcode" / "scan-cache.sqlite"


@cache
def build_id() -> str:
    """rtcode's version and a hash of its source and shipped policies."""
    digest = hashlib.sha256(__version__.encode())
    root = Path(__file__).resolve().parent.parent
    for path in sorted([*root.rglob("*.py"), *root.glob("policies/*.toml")]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def key(*parts: Any) -> str:
    """A stable hash of plain values (text, numbers, tuples, None)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class Cache:
    """An open cache file. ``Cache.temporary_file()`` is a private one for this run
    only (a scan with ``--no-cache`` still keeps plan facts on disk, not in memory).

    Reads see what is committed; writes wait in memory and go in together, in one
    short transaction every few seconds and at ``close``, so that two scans can
    share a cache: one waits for the other's commit instead of failing.

    Two tables:

    - ``files``: each file's extracted facts (or what kind of file it is, or its error),
      keyed by path and checked against its size, modification time and a hash of its
      first bytes (``read.signature``). The facts also depend on the rtcode build, the
      policy's ``[limits]`` and the path as the scan displays it (facts, errors and
      evidence carry it: the same file reached by another path is read again, so output
      never depends on the cache); an entry made under others is not used.
    - ``results``: each plan's coded result, keyed by a hash of everything it depends on:
      the signatures and displayed paths of the plan file and of the companions it was
      linked with, the policy's effective settings (sha256), the date of service, and the
      rtcode build.

    The rtcode build is its version plus a hash of its own source files, so a changed
    rtcode never trusts facts an older one extracted. Entries are committed in small
    batches: a scan interrupted by Ctrl-C or killed leaves a consistent cache, and the
    next run goes on from what was committed. Values are pickled Python objects: the
    file is created readable by its owner only, and a cache file from somewhere else must
    never be used (pickle can run code). A corrupt or foreign cache file is set aside
    and a new one started; a cache that cannot be written at all only costs speed.
    """

    def __init__(self, path: Path, temporary: bool = False) -> None:
        self.path = path
        self.temporary = temporary
        self.warning: str | None = None
        self._last_commit = time.monotonic()
        self._waiting = 0  # bytes written, not yet committed
        self._files: dict[bytes, tuple[Any, ...]] = {}  # written, not yet committed
        self._results: dict[str, bytes] = {}
        self._used: set[str] = set()
        self._folder: bytes | None = None  # the folder whose entries are at hand
        self._folder_rows: dict[bytes, tuple[Any, ...]] = {}
        self._last_path: bytes | None = None
        self._last_folder = b""
        self._db: sqlite3.Connection | None = self._connect(path)

    @classmethod
    def temporary_file(cls) -> Cache:
        import tempfile  # here: a lasting cache needs none

        fd, name = tempfile.mkstemp(prefix="rtcode-scan-", suffix=".sqlite")
        os.close(fd)
        remove_on_signal(name)  # SIGTERM, SIGHUP: not left in the temporary folder
        try:
            return cls(Path(name), temporary=True)
        except BaseException:
            _remove_temporary(name)
            raise

    # ------------------------------------------------------------------ setup

    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create_private(path)
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a pipe would hang SQLite, a device be written over
            raise OSError("not a regular file (a pipe, device or folder)")
        try:
            return self._open(path)
        except sqlite3.OperationalError:
            raise  # locked or unreadable: not ours to set aside
        except sqlite3.DatabaseError as exc:  # not a cache of ours, or damaged
            aside = path.with_name(f"{path.name}.broken-{time.time_ns()}")
            os.replace(path, aside)
            self.warning = f"the cache {path} could not be used ({exc}); moved to {aside}"
            _create_private(path)
            return self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            journal = "OFF" if self.temporary else "WAL"
            db.execute(f"PRAGMA journal_mode={journal}")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA):
                raise sqlite3.DatabaseError(f"cache schema {version}, this rtcode uses {SCHEMA}")
            if version == 0:
                db.executescript(
                    f"""
                    BEGIN IMMEDIATE;
                    CREATE TABLE IF NOT EXISTS files (
                        path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, header TEXT,
                        context TEXT, outcome BLOB, ctime_ns INTEGER, inode INTEGER,
                        summary BLOB, folder BLOB);
                    CREATE INDEX IF NOT EXISTS files_folder ON files (folder);
                    CREATE TABLE IF NOT EXISTS results (
                        key TEXT PRIMARY KEY, result BLOB, used REAL);
                    CREATE INDEX IF NOT EXISTS results_used ON results (used);
                    PRAGMA user_version={SCHEMA};
                    COMMIT;
                    """
                )
            # by the index: a scan of the table itself would read every stored result
            stale = time.time() - _KEEP_UNUSED_DAYS * 86400
            db.execute("DELETE FROM results WHERE used < ?", (stale,))
        except BaseException:
            db.close()
            raise
        return db

    # ------------------------------------------------------------------ files

    def get_file(self, path: bytes, signature: tuple[int, int, str], context: str) -> Any:
        """The outcome stored for this version of the file (same size, modification
        time and header hash), or MISS."""
        stored = self.get_file_pickled(path, signature, context)
        return MISS if stored is None else _loads(stored[0])

    def get_file_pickled(
        self, path: bytes, signature: tuple[int, int, str], context: str
    ) -> tuple[bytes, bytes | None] | None:
        """The stored outcome still pickled, and its summary's pickle (None: the
        outcome is its own summary), for this version of the file; None when absent.
        A plan's facts go from the cache to the worker that codes it without being
        unpickled (and pickled again) in the scanning process."""
        row = self._files.get(path)
        if row is not None:
            row = (*row[:5], row[7])
        else:
            row = self._query(
                "SELECT size, mtime_ns, header, context, outcome, summary FROM files"
                " WHERE path = ?",
                path,
            )
        if row is None or tuple(row[:3]) != signature or row[3] != context:
            return None
        return row[4], (None if row[5] == row[4] else row[5])

    def get_untouched(
        self, path: bytes, stat: tuple[int, int, int, int], context: str
    ) -> tuple[tuple[int, int, str], Any] | None:
        """(signature, summary) of a file whose size, modification time, change time
        and inode are all as when it was stored: it has not been written since (the
        change time moves on every write and cannot be set back), so it is not opened
        again. The summary is what a scan needs to link the file (for a plan: its
        ``PlanSummary``; ``get_file`` gives all). None otherwise."""
        folder = self._folder_of(path)
        if folder != self._folder:  # one query per folder, not per file
            self._folder = folder
            self._folder_rows = self._folder_index(folder)
        row = self._folder_rows.get(path)
        if row is None or row[3] != context or (row[0], row[1], row[4], row[5]) != stat:
            return None
        blob = row[6]  # the summary, or the outcome when it is its own summary
        # "image" and the like (thousands of identical rows) are decoded once
        summary = _KINDS[blob] if blob in _KINDS else _loads(blob)
        return (row[0], row[1], row[2]), summary

    def stored_signature(self, path: bytes, context: str) -> tuple[int, int, str] | None:
        """The signature stored for the path under this context (after a
        ``get_untouched`` of the same path, which read its folder's entries), or None."""
        row = self._files.get(path)
        if row is None:
            if self._folder_of(path) != self._folder:
                self._folder = self._folder_of(path)
                self._folder_rows = self._folder_index(self._folder)
            row = self._folder_rows.get(path)
            if row is None:
                return None
        if row[3] != context:
            return None
        return (row[0], row[1], row[2])

    def _folder_of(self, path: bytes) -> bytes:
        """``os.path.dirname``, once per path (a file is looked up, then stored)."""
        if path != self._last_path:
            self._last_path, self._last_folder = path, os.path.dirname(path)
        return self._last_folder

    def _folder_index(self, folder: bytes) -> dict[bytes, tuple[Any, ...]]:
        if self._db is None:
            return {}
        try:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, header, context, ctime_ns, inode,"
                " COALESCE(summary, outcome) FROM files WHERE folder = ?",
                (folder,),
            ).fetchall()
        except sqlite3.OperationalError:  # busy beyond the timeout: misses
            return {}
        return {r[0]: r[1:] for r in rows}

    def put_file(
        self,
        path: bytes,
        signature: tuple[int, int, str],
        context: str,
        outcome: Any,
        stat: tuple[int, int, int, int] | None = None,
        pickled: bytes | None = None,
    ) -> None:
        """Store a file's outcome. ``pickled``: the whole outcome, pickled already (by
        the worker that read it); ``outcome`` is then its summary, or the outcome."""
        blob = pickled if pickled is not None else pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        ctime_ns, inode = (stat[2], stat[3]) if stat is not None else (None, None)
        small = summary(outcome)
        if small is None:
            small_blob = None
        elif small is outcome and pickled is None:  # a skipped file's kind: its own summary
            small_blob = blob
        else:
            small_blob = pickle.dumps(small, pickle.HIGHEST_PROTOCOL)
        self._files[path] = (
            *signature,
            context,
            blob,
            ctime_ns,
            inode,
            small_blob,
            self._folder_of(path),
        )
        self._waiting += len(blob)
        self._maybe_commit()

    # ---------------------------------------------------------------- results

    def get_result(self, result_key: str) -> Any:
        blob = self._results.get(result_key)
        if blob is None:
            row = self._query("SELECT result, used FROM results WHERE key = ?", result_key)
            if row is None:
                return MISS
            blob = row[0]
            if row[1] is None or row[1] < time.time() - _MARK_USED_AFTER_S:
                self._used.add(result_key)  # once a day: marking rewrites the row
        return _loads(blob)

    def keep_results(self, result_keys: list[str]) -> bool:
        """Whether every one of these results is in the cache. Those not marked used
        for a day are marked now, in the same transaction, so that no scan's clean-up
        (of results unused for ``_KEEP_UNUSED_DAYS``) removes them meanwhile."""
        wanted = sorted(set(result_keys) - set(self._results))
        if self._db is None:
            return not wanted
        now = time.time()
        found = 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    found += self._db.execute(
                        f"SELECT COUNT(*) FROM results WHERE key IN ({marks})", chunk
                    ).fetchone()[0]
                    self._db.execute(
                        f"UPDATE results SET used = ? WHERE key IN ({marks}) AND used < ?",
                        (now, *chunk, now - _MARK_USED_AFTER_S),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError:  # busy beyond the timeout: not now
            return False
        return found == len(wanted)

    def kept_results(self, result_keys: list[str]) -> Iterator[Any]:
        """These results, in order, read ``_RESULTS_AT_ONCE`` at a time (one query
        each, not one per result: a rescan replays thousands); MISS for any not there.
        Call ``keep_results`` first: it says they are all there and keeps them."""
        for start in range(0, len(result_keys), _RESULTS_AT_ONCE):
            chunk = result_keys[start : start + _RESULTS_AT_ONCE]
            wanted = sorted(set(chunk) - set(self._results))
            found: dict[str, bytes] = {}
            if wanted and self._db is not None:
                marks = ",".join("?" * len(wanted))
                sql = f"SELECT key, result FROM results WHERE key IN ({marks})"
                with contextlib.suppress(sqlite3.OperationalError):  # busy: misses
                    found = dict(self._db.execute(sql, wanted))
            for result_key in chunk:
                blob = self._results.get(result_key, found.get(result_key))
                yield MISS if blob is None else _loads(blob)

    def put_result(self, result_key: str, result: Any) -> None:
        blob = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
        self._results[result_key] = blob
        self._waiting += len(blob)
        self._maybe_commit()

    def _query(self, sql: str, value: Any) -> Any:
        if self._db is None:
            return None
        try:
            return self._db.execute(sql, (value,)).fetchone()
        except sqlite3.OperationalError:  # busy beyond the timeout: a miss, not a failure
            return None

    # -------------------------------------------------------------- lifecycle

    def _maybe_commit(self) -> None:
        if (
            self._waiting >= _COMMIT_BYTES
            or time.monotonic() - self._last_commit >= _COMMIT_EVERY_S
        ):
            self.commit()

    def commit(self) -> None:
        """Write what waits, in one transaction. A cache that stays locked longer than
        the timeout loses these entries (the next scan reads those files again)."""
        self._last_commit = time.monotonic()
        self._waiting = 0
        if self._db is None or not (self._files or self._results or self._used):
            return
        files, results, used = self._files, self._results, self._used
        self._files, self._results, self._used = {}, {}, set()
        now = time.time()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(path, *row) for path, row in files.items()],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
                    [(k, blob, now) for k, blob in results.items()],
                )
                self._db.executemany(
                    "UPDATE results SET used = ? WHERE key = ?", [(now, k) for k in used]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            self.warning = f"the cache {self.path} could not be updated ({exc})"

    def close(self) -> None:
        if self._db is None:
            return
        try:
            self.commit()
        finally:
            self._db.close()
            self._db = None
            if self.temporary:
                _remove_temporary(os.fspath(self.path))

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_temporary(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
    keep_on_signal(name)


def _create_private(path: Path) -> None:
    """Create the file readable and writable by its owner only (pickles can run code:
    nobody else may write them), unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


@dataclass(frozen=True)
class PlanSummary:
    """What linking needs of an RT Plan (``link`` matches plans to structure sets and
    doses by these), kept for every plan of an archive while a scan runs. Not a
    ``Plan``: it has no beams, so nothing can code it (as "no treatment beam") by
    mistake; the worker that codes the plan gets the whole Plan from the cache."""

    path: str
    sop_instance_uid: str | None
    patient_id: str | None
    referenced_structure_set_uid: str | None


@dataclass(frozen=True)
class StructureSetSummary:
    """What linking needs of an RT Structure Set; not a ``StructureSet`` (no ROIs)."""

    path: str
    sop_instance_uid: str | None
    patient_id: str | None


def summary(outcome: Any) -> Any:
    """What linking needs of a file's outcome, when that is much smaller than the
    outcome: a ``PlanSummary``, a ``StructureSetSummary``, the kind of a skipped file.
    None: use it all (a dose, an error). The scanning process keeps summaries only, for
    every plan and structure set of the archive; the worker that codes a plan gets both
    whole from the cache (``scan._PlanToCode``)."""
    if isinstance(outcome, (str, Skipped, PlanSummary, StructureSetSummary)):
        return outcome
    if isinstance(outcome, Plan):
        return PlanSummary(
            outcome.path,
            outcome.sop_instance_uid,
            outcome.patient_id,
            outcome.referenced_structure_set_uid,
        )
    if isinstance(outcome, StructureSet):
        return StructureSetSummary(outcome.path, outcome.sop_instance_uid, outcome.patient_id)
    return None


# The pickles of the skipped kinds' names, decoded once.
_KINDS = {
    pickle.dumps(kind, pickle.HIGHEST_PROTOCOL): kind
    for kind in ("image", "other_dicom", "not_dicom")
}


def _loads(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception:  # written by a build whose classes changed: a miss
        return MISS
