"""The scan cache: an SQLite file so that a nightly rescan reads only what changed.

Two tables:

- ``files``: each file's extracted facts (or what kind of file it is, or its error),
  keyed by path and checked against its size, modification time and a hash of its
  first bytes (``read.signature``). The facts also depend on the rtcode build and the
  policy's ``[limits]``; an entry made under others is not used.
- ``results``: each plan's coded result, keyed by a hash of everything it depends on:
  the signatures of the plan file and of the companions it was linked with, the
  policy's effective settings (sha256), the date of service, and the rtcode build.

The rtcode build is its version plus a hash of its own source files, so a changed
rtcode never trusts facts an older one extracted. Entries are committed in small
batches: a scan interrupted by Ctrl-C or killed leaves a consistent cache, and the
next run goes on from what was committed. Values are pickled Python objects: the
file is created readable by its owner only, and a cache file from somewhere else must
never be used (pickle can run code). A corrupt or foreign cache file is set aside
and a new one started; a cache that cannot be written at all only costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sqlite3
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

from . import __version__

SCHEMA = 1
_COMMIT_EVERY_S = 2.0
_KEEP_UNUSED_DAYS = 60
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
    root = Path(__file__).resolve().parent
    for path in sorted([*root.glob("*.py"), *root.glob("policies/*.toml")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def key(*parts: Any) -> str:
    """A stable hash of plain values (text, numbers, tuples, None)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class Cache:
    """An open cache file. ``Cache.temporary()`` is a private one for this run only
    (a scan with ``--no-cache`` still keeps plan facts on disk, not in memory)."""

    def __init__(self, path: Path, temporary: bool = False) -> None:
        self.path = path
        self.temporary = temporary
        self.warning: str | None = None
        self._last_commit = time.monotonic()
        self._db = self._connect(path)

    @classmethod
    def temporary_file(cls) -> Cache:
        fd, name = tempfile.mkstemp(prefix="rtcode-scan-", suffix=".sqlite")
        os.close(fd)
        return cls(Path(name), temporary=True)

    # ------------------------------------------------------------------ setup

    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            db = self._open(path)
        except sqlite3.DatabaseError as exc:  # not a cache of ours, or damaged
            aside = path.with_name(path.name + f".broken-{int(time.time())}")
            os.replace(path, aside)
            self.warning = f"the cache {path} could not be used ({exc}); moved to {aside}"
            db = self._open(path)
        return db

    def _open(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            journal = "OFF" if self.temporary else "WAL"
            db.execute(f"PRAGMA journal_mode={journal}")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA):
                raise sqlite3.DatabaseError(f"cache schema {version}, this rtcode uses {SCHEMA}")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS files (
                    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, header TEXT,
                    context TEXT, outcome BLOB);
                CREATE TABLE IF NOT EXISTS results (
                    key TEXT PRIMARY KEY, result BLOB, used REAL);
                """
            )
            db.execute(f"PRAGMA user_version={SCHEMA}")
            stale = time.time() - _KEEP_UNUSED_DAYS * 86400
            db.execute("DELETE FROM results WHERE used < ?", (stale,))
            db.execute("BEGIN")
        except BaseException:
            db.close()
            raise
        return db

    # ------------------------------------------------------------------ files

    def get_file(self, path: str, signature: tuple[int, int, str], context: str) -> Any:
        row = self._db.execute(
            "SELECT size, mtime_ns, header, context, outcome FROM files WHERE path = ?", (path,)
        ).fetchone()
        if row is None or tuple(row[:3]) != signature or row[3] != context:
            return MISS
        return _loads(row[4])

    def put_file(self, path: str, signature: tuple[int, int, str], context: str, outcome) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (path, *signature, context, pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)),
        )
        self._maybe_commit()

    # ---------------------------------------------------------------- results

    def get_result(self, result_key: str) -> Any:
        row = self._db.execute("SELECT result FROM results WHERE key = ?", (result_key,)).fetchone()
        if row is None:
            return MISS
        self._db.execute("UPDATE results SET used = ? WHERE key = ?", (time.time(), result_key))
        return _loads(row[0])

    def put_result(self, result_key: str, result) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
            (result_key, pickle.dumps(result, pickle.HIGHEST_PROTOCOL), time.time()),
        )
        self._maybe_commit()

    # -------------------------------------------------------------- lifecycle

    def _maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit >= _COMMIT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._last_commit = time.monotonic()

    def close(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        finally:
            self._db.close()
            if self.temporary:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loads(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception:  # written by a build whose classes changed: a miss
        return MISS
