"""RT objects from a DICOMweb server (QIDO-RS search, WADO-RS retrieval) for ``rtcode
scan dicomweb+http://HOST:PORT/dicom-web [--study UID] [--patient ID]``, over
``requests`` (the ``rtcode[net]`` extra). The instances are written as the server
sent them into a temporary folder and handed to the normal reading step with their
WADO-RS URL as display name, so codes and evidence are those of a scan of the same
files on disk. The server is not trusted: every request and answer is bounded, and
whatever goes wrong becomes one scan error naming the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rtcode.dicom.read import FileEntry, WalkError
from rtcode.dicom.read import read as read_file
from rtcode.model.errors import RtcodeError
from rtcode.model.limits import MB, Limits, default_limits
from rtcode.sources import store

SCHEMES = ("dicomweb+http://", "dicomweb+https://")
DEFAULT_TIMEOUT_S = (10.0, 120.0)  # (connect, read): each wait for the server
DEFAULT_DEADLINE_S = 300.0  # one request from connecting to the end of its answer
MAX_STUDIES = 500  # a query matching more studies is cut here, with an error saying so
MAX_PAGES = 50  # QIDO-RS pages of one search
MAX_RESULTS = 10_000  # QIDO-RS results of one search
MAX_JSON_BYTES = 32 * MB  # one QIDO-RS answer
MAX_PARTS = 1000  # instances in one WADO-RS answer
_MAX_PART_HEADERS = 16 * 1024  # the MIME headers of one part
_CHUNK = 1 << 20  # bytes read from the network at a time
_RT_MODALITIES = ("RTPLAN", "RTDOSE", "RTSTRUCT")
_ACCEPT_DICOM = 'multipart/related; type="application/dicom"'
_ACCEPT_JSON = "application/dicom+json, application/json"

# DICOM JSON tags (PS3.18 F.2) read from QIDO-RS answers.
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_MODALITY = "00080060"


class DicomWebError(RtcodeError, ValueError):
    """A DICOMweb source cannot be used; the message says why."""


class _Failed(Exception):
    """One request or answer that cannot be used; the message says why (a clause)."""


def is_dicomweb(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(SCHEMES)


def base_url(source: str) -> str:
    """``dicomweb+http://host:port/dicom-web`` -> ``http://host:port/dicom-web``."""
    if not is_dicomweb(source):
        raise DicomWebError(f"{source!r} is not a dicomweb+http:// or dicomweb+https:// URL")
    url = source[len("dicomweb+") :].rstrip("/")
    parts = urlsplit(url)
    if not parts.hostname:
        raise DicomWebError(f"{source!r} names no host")
    if parts.query or parts.fragment:
        raise DicomWebError(f"{source!r}: give the service root, without ? or #")
    return url


def _display_root(url: str) -> str:
    """The URL without user name or password, for evidence and messages."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def display_url(source: str) -> str:
    """A dicomweb+ source as it may be shown: the service URL without credentials."""
    try:
        return _display_root(base_url(source))
    except DicomWebError:
        return "the DICOMweb source"


def _value(item: dict[str, Any], tag: str) -> str | None:
    """The first value of a DICOM JSON attribute as text; None when it is missing or
    not shaped as PS3.18 F.2 says (an object with a list ``Value`` of plain values)."""
    entry = item.get(tag)
    values = entry.get("Value") if isinstance(entry, dict) else None
    if not isinstance(values, list) or not values:
        return None
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)


@contextmanager
def retrieve(
    source: str,
    *,
    study: str | None = None,
    patient: str | None = None,
    timeout_s: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
    deadline_s: float | None = None,
    limits: Limits | None = None,
) -> Iterator[list[FileEntry | WalkError]]:
    """Retrieve the RT plans (with their doses and structure sets) that match, into a
    temporary folder that exists while the ``with`` block runs; yields entries for
    ``scan`` (files, or errors naming the URL). ``deadline_s`` (default
    ``DEFAULT_DEADLINE_S``) bounds each request as a whole; ``limits`` (default: the
    shipped policy's) each retrieved instance. Raises DicomWebError for a bad URL or
    filter, or when requests is not installed; anything the server does is an entry."""
    url = base_url(source)
    if study is not None and store.clean_uid(study) is None:
        raise DicomWebError(f"--study {study!r} is not a valid UID")
    try:
        import requests  # noqa: F401
    except ImportError:
        raise DicomWebError(
            "reading from a DICOMweb server needs the network extra: pip install 'rtcode[net]'"
        ) from None
    deadline = DEFAULT_DEADLINE_S if deadline_s is None else deadline_s
    limits = limits if limits is not None else default_limits()
    with tempfile.TemporaryDirectory(prefix="rtcode-dicomweb-") as tmp:
        http = _Http(url, timeout_s, deadline)
        try:
            retrieval = _Retrieval(http, url, Path(tmp), limits)
            yield retrieval.run(study, patient)
        finally:
            http.close()


# ------------------------------------------------------------------ HTTP, bounded

_current = threading.local()  # the _Watch of the request this thread is making


class _Watch:
    """The deadline of one request: when it passes, the sockets the request uses are
    shut down, which ends any read or connect waiting on them (a timeout per read
    does not bound a server that sends a byte now and then)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._deadline = time.monotonic() + seconds
        self._connections: list[Any] = []
        # Sockets seen on them: http.client lets go of a connection's socket once the
        # answer's headers say the connection closes after it (HTTP/1.0), while the
        # answer is still read from it.
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtcode-deadline", daemon=True)
        self._thread.start()

    def add(self, connection: Any) -> None:
        with self._lock:
            if not any(c is connection for c in self._connections):
                self._connections.append(connection)
            self._add_socket(getattr(connection, "sock", None))

    def _add_socket(self, sock: socket.socket | None) -> None:
        if sock is not None and not any(s is sock for s in self._sockets):
            self._sockets.append(sock)

    def _run(self) -> None:
        if self._done.wait(max(self._deadline - time.monotonic(), 0)):
            return
        self.expired = True
        while not self._done.is_set():  # one still connecting has no socket yet
            with self._lock:
                for connection in self._connections:
                    self._add_socket(getattr(connection, "sock", None))
                sockets = list(self._sockets)
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._done.wait(0.05)

    def check(self) -> None:
        if self.expired or time.monotonic() >= self._deadline:
            self.expired = True
            raise _Failed(f"no complete answer within {self.seconds:g} s (the limit of a request)")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class _WatchedConnection:
    """Mixed into urllib3's connection classes: each connection a request opens or
    reuses is handed to that request's _Watch."""

    def connect(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(self)
        super().connect()  # type: ignore[misc]  # a mixin: super() is urllib3's connection
        if watch is not None:
            watch.add(self)  # its socket

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(self)  # a connection used again: its socket
        return super().request(*args, **kwargs)  # type: ignore[misc]  # a mixin, as above


_WATCHED: dict[type, type] = {}


def _watched(pool: Any) -> Any:
    base = pool.ConnectionCls
    if not issubclass(base, _WatchedConnection):
        if base not in _WATCHED:
            _WATCHED[base] = type("Watched" + base.__name__, (_WatchedConnection, base), {})
        pool.ConnectionCls = _WATCHED[base]
    return pool


def _adapter() -> Any:
    from requests.adapters import HTTPAdapter

    class _DeadlineAdapter(HTTPAdapter):
        """Connections made through it are watched (see _Watch)."""

        def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
            return _watched(super().get_connection_with_tls_context(*args, **kwargs))

        def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32.2
            return _watched(super().get_connection(*args, **kwargs))

    return _DeadlineAdapter(max_retries=0)


class _Http:
    """GET requests to one DICOMweb service, each within its deadline.

    Every request is bounded: a connect and a read timeout, and a deadline for the
    whole request, answer included (a server trickling a byte every few seconds is
    cut off there: a watchdog shuts the socket down); no request is retried."""

    def __init__(self, url: str, timeout_s: float | tuple[float, float], deadline_s: float):
        import requests

        self.url = url
        self.timeout = timeout_s
        self.deadline_s = deadline_s
        self.session = requests.Session()
        # Compression is not asked for: an answer is counted as it is stored.
        self.session.headers["Accept-Encoding"] = "identity"
        adapter = _adapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    @contextmanager
    def get(self, path: str, params: dict[str, Any], accept: str) -> Iterator[_Answer]:
        """The answer to GET ``path`` (below the service root), streamed; raises
        _Failed with the reason for no answer, an HTTP error or the deadline."""
        import requests

        watch = _Watch(self.deadline_s)
        _current.watch = watch
        response = None
        try:
            try:
                response = self.session.get(
                    self.url + path,
                    params=params,
                    headers={"Accept": accept},
                    timeout=self.timeout,
                    stream=True,
                    allow_redirects=False,  # requests would read a redirect's body whole
                )
                watch.check()
                if response.status_code >= 300:
                    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
                    if response.is_redirect:
                        status += ", a redirect (not followed): give the URL it names"
                    raise _Failed(status)
                answer = _Answer(response, watch)
                yield answer
                answer.finish()
            except requests.RequestException as exc:
                watch.check()  # the deadline closed the connection: say that
                raise _Failed(_reason(exc)) from None
        finally:
            _current.watch = None
            watch.stop()
            if response is not None:
                response.close()


class _Answer:
    """An answer's body, a chunk at a time, within the request's deadline."""

    def __init__(self, response: Any, watch: _Watch) -> None:
        self.response = response
        self.watch = watch
        self.content_type = response.headers.get("Content-Type", "")

    def chunks(self) -> Iterator[bytes]:
        for chunk in self.response.iter_content(_CHUNK):
            self.watch.check()
            if chunk:
                yield chunk
        self.watch.check()  # a closed connection can look like the end of the answer

    def read(self, most: int) -> bytes:
        data = bytearray()
        for chunk in self.chunks():
            data += chunk
            if len(data) > most:
                raise _Failed(f"the answer is longer than {most // MB} MB")
        return bytes(data)

    def finish(self) -> None:
        self.watch.check()


def _reason(exc: BaseException) -> str:
    import requests

    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason or ''}".strip()
    if isinstance(exc, requests.Timeout):
        return "no answer within the time limit"
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        refused = "refused" in str(exc).lower()
        return "connection refused" if refused else "cannot connect to the server"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


# ------------------------------------------------------------------ multipart


def _boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/related`` answer; None for a single
    ``application/dicom`` body (some servers send one part so); raises _Failed for
    anything else."""
    media, *params = [p.strip() for p in content_type.split(";")]
    if media.lower() == "application/dicom":
        return None
    if media.lower() != "multipart/related":
        shown = "".join(c for c in media if c.isprintable())[:60] or "none"
        raise _Failed(f"the answer is not multipart/related DICOM (Content-Type {shown})")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"').encode("latin-1", "replace")
            if 0 < len(boundary) <= 200:
                return boundary
            break
    raise _Failed("the multipart answer names no usable boundary")


class _Part:
    """One part of an answer, written to a file as it arrives (its SHA-256 counted),
    and held to ``most`` bytes: past that it is no longer written (``too_large``)."""

    def __init__(self, path: Path, most: int) -> None:
        self.path = path
        self.most = most
        self.size = 0
        self.too_large = False
        self._sha = hashlib.sha256()
        self._file = open(path, "wb")  # noqa: SIM115  # closed in close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.too_large:
            return
        if self.size > self.most:
            self.too_large = True
            self._file.truncate(0)
            return
        self._sha.update(data)
        self._file.write(data)

    def close(self) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _single_part(chunks: Iterator[bytes], part: _Part) -> None:
    """A body that is not multipart: all of it to one part."""
    try:
        for chunk in chunks:
            part.write(chunk)
    finally:
        part.close()


def _split_parts(
    chunks: Iterator[bytes], boundary: bytes | None, new_part: Any, most_parts: int
) -> None:
    """Write the parts of a multipart body (RFC 2046) to ``new_part()``s as they
    arrive; memory holds a chunk and a delimiter's length. ``boundary`` None: the
    body is one part."""
    if boundary is None:
        _single_part(chunks, new_part())
        return
    first = b"--" + boundary
    delimiter = b"\r\n" + first
    buf = bytearray()
    state = "preamble"
    part: _Part | None = None
    parts = 0
    try:
        for chunk in chunks:
            buf += chunk
            while True:
                if state == "preamble":
                    at = 0 if buf.startswith(first) else buf.find(delimiter)
                    if at < 0:
                        del buf[: max(len(buf) - len(delimiter), 0)]
                        break
                    del buf[: at + (len(first) if at == 0 else len(delimiter))]
                    state = "after"
                elif state == "after":  # just past a delimiter: "--" ends, CRLF goes on
                    if len(buf) < 2:
                        break
                    if buf.startswith(b"--"):
                        return
                    end = buf.find(b"\r\n")
                    if end < 0:
                        if len(buf) > 200:
                            raise _Failed("the multipart answer is malformed")
                        break
                    del buf[: end + 2]
                    state = "headers"
                elif state == "headers":  # up to an empty line (none: no headers)
                    if buf.startswith(b"\r\n"):
                        end = 2
                    else:
                        end = buf.find(b"\r\n\r\n")
                        if end < 0:
                            if len(buf) > _MAX_PART_HEADERS:
                                raise _Failed("the headers of a part are too long")
                            break
                        end += 4
                    del buf[:end]
                    parts += 1
                    if parts > most_parts:
                        raise _Failed(f"the answer holds more than {most_parts} parts")
                    part = new_part()
                    state = "body"
                else:  # body
                    assert part is not None
                    at = buf.find(delimiter)
                    if at < 0:
                        keep = len(delimiter) - 1
                        if len(buf) > keep:
                            part.write(memoryview(buf)[: len(buf) - keep])
                            del buf[: len(buf) - keep]
                        break
                    part.write(memoryview(buf)[:at])
                    part.close()
                    part = None
                    del buf[: at + len(delimiter)]
                    state = "after"
        if state == "body":
            raise _Failed("the answer ends inside a part (no closing boundary)")
    finally:
        if part is not None:
            part.close()


# ------------------------------------------------------------------ the retrieval


class _Retrieval:
    """One retrieval, into ``folder``. It asks for

    1. the series of modality RTPLAN (RT Plan and RT Ion Plan), filtered by Study
       Instance UID and/or Patient ID (QIDO-RS);
    2. in each study found, every RTPLAN, RTDOSE and RTSTRUCT series, retrieved whole
       (WADO-RS);
    3. a structure set a plan references but its study lacks, looked up by its SOP
       Instance UID across the archive and retrieved.

    UIDs from the server are checked before they go into a URL or a file name; files
    are named as ``store.py`` names received files. A search answer is held to
    ``MAX_JSON_BYTES`` and must be a list of DICOM JSON objects; paging stops at a page
    seen before (a server that ignores ``offset``), and after ``MAX_PAGES`` pages or
    ``MAX_RESULTS`` results (with an error that says so). A retrieved answer is
    written to disk a megabyte at a time, each part held to
    ``limits.max_file_size_mb`` as it arrives, and read with the reader's own limits
    before anything else looks at it. Whatever goes wrong (no answer, a part that is
    not DICOM, JSON of the wrong shape) becomes one entry in the scan's ``errors``
    naming the URL, and never stops the scan of the other sources."""

    def __init__(self, http: _Http, url: str, folder: Path, limits: Limits) -> None:
        self.http = http
        self.url = url
        self.shown = _display_root(url)
        self.folder = folder
        self.limits = limits
        self.entries: list[FileEntry | WalkError] = []
        self.seen: set[str] = set()  # SOP Instance UIDs written
        self.referenced: list[str] = []  # structure sets the plans reference
        self.studies: dict[str, int] = {}  # Study Instance UID -> its folder's number
        self._parts = 0  # part files made so far (their names)

    def run(self, study: str | None, patient: str | None) -> list[FileEntry | WalkError]:
        """Every step's failure is an entry; nothing the server sends raises."""
        filters: dict[str, str] = {"Modality": "RTPLAN"}
        if patient is not None:
            filters["PatientID"] = patient
        where = f"/studies/{study}/series" if study is not None else "/series"
        try:
            found = self._search("search RT Plan series", where, filters)
            studies = list(dict.fromkeys(_value(s, _STUDY_UID) for s in found))
            if len(studies) > MAX_STUDIES:
                self._error(
                    f"{len(studies)} studies with RT plans match; only the first {MAX_STUDIES}"
                    " are read: narrow the query with --study or --patient"
                )
                studies = studies[:MAX_STUDIES]
            for study_uid in studies:
                self._guarded(f"read study {study_uid}", lambda s=study_uid: self._study(s))
            self._guarded("look up referenced structure sets", self._missing_structure_sets)
        except Exception as exc:  # never a traceback: the other sources are still read
            self._error(f"cannot read from the server: {_unexpected(exc)}")
        return self.entries

    def _guarded(self, what: str, step: Any) -> None:
        try:
            step()
        except OSError as exc:  # the temporary folder: disk full, ...
            self._error(f"cannot {what}: {exc.strerror or exc}")
        except Exception as exc:
            self._error(f"cannot {what}: {_unexpected(exc)}")

    def _error(self, message: str, display: str | None = None) -> None:
        self.entries.append(WalkError(display or self.shown, message))

    # ---------------------------------------------------------------- QIDO-RS

    def _search(self, what: str, path: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        """All results of a search, page by page (``offset`` moves by each page's
        length). It ends at an empty page, at a page seen before (the server ignores
        ``offset`` and sends the same again), or after MAX_PAGES pages or MAX_RESULTS
        results (an error says the results were cut). A failure is an entry."""
        results: list[dict[str, Any]] = []
        pages: set[str] = set()
        for _ in range(MAX_PAGES):
            try:
                page = self._json_page(path, {**filters, "offset": len(results)})
            except _Failed as exc:
                self._error(f"cannot {what}: {exc}")
                return results
            if not page:
                return results
            key = hashlib.sha256(json.dumps(page, sort_keys=True).encode()).hexdigest()
            if key in pages:
                return results  # the same page again: the server ignores offset
            pages.add(key)
            results.extend(page)
            if len(results) >= MAX_RESULTS:
                self._error(
                    f"cannot {what} whole: the server sent {MAX_RESULTS} results or more;"
                    f" only the first {MAX_RESULTS} are read"
                )
                return results[:MAX_RESULTS]
        self._error(
            f"cannot {what} whole: the server sent results after {MAX_PAGES} pages;"
            f" only the first {len(results)} are read"
        )
        return results

    def _json_page(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.http.get(path, params, _ACCEPT_JSON) as answer:
            body = answer.read(MAX_JSON_BYTES)
        if not body.strip():
            return []  # 204 No Content, or nothing
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise _Failed("the server's answer is not JSON") from None
        if isinstance(data, dict):  # some servers send one object, not a list of one
            data = [data]
        if not isinstance(data, list):
            raise _Failed(
                f"the server's answer is a JSON {_json_kind(data)}, not a list of DICOM"
                " JSON objects"
            )
        for n, item in enumerate(data, 1):
            if not isinstance(item, dict):
                raise _Failed(
                    f"result {n} of the server's answer is a JSON {_json_kind(item)},"
                    " not a DICOM JSON object"
                )
        return data

    def _study(self, raw_uid: str | None) -> None:
        study_uid = store.clean_uid(raw_uid)
        if study_uid is None:
            self._error(f"the server gave {_uid_text(raw_uid)} as a Study Instance UID: skipped")
            return
        series = self._search(
            f"list the series of study {study_uid}", f"/studies/{study_uid}/series", {}
        )
        for item in series:
            if (_value(item, _MODALITY) or "").upper() in _RT_MODALITIES:
                self._series(study_uid, _value(item, _SERIES_UID))

    # ---------------------------------------------------------------- WADO-RS

    def _series(self, study_uid: str, raw_uid: str | None) -> None:
        series_uid = store.clean_uid(raw_uid)
        if series_uid is None:
            self._error(f"the server gave {_uid_text(raw_uid)} as a Series Instance UID: skipped")
            return
        self._retrieve(
            f"retrieve series {series_uid}",
            f"/studies/{study_uid}/series/{series_uid}",
            study_uid,
            series_uid,
        )

    def _retrieve(self, what: str, path: str, study_uid: str, series_uid: str) -> None:
        """GET ``path``; each part of the answer is stored as it arrives (to disk, held
        to the size limit), then read with the reader's limits and kept when it is an
        RT object of a class we store."""
        parts: list[_Part] = []
        spool = self.folder / ".parts"
        spool.mkdir(exist_ok=True)

        def new_part() -> _Part:
            self._parts += 1
            part = _Part(spool / f"part{self._parts}.dcm", self.limits.max_file_size_bytes)
            parts.append(part)
            return part

        try:
            try:
                with self.http.get(path, {}, _ACCEPT_DICOM) as answer:
                    boundary = _boundary(answer.content_type)
                    _split_parts(answer.chunks(), boundary, new_part, MAX_PARTS)
            except _Failed as exc:  # an answer not whole is not read at all
                self._error(f"cannot {what}: {exc}")
                return
            shown = f"{self.shown}{path}"
            for n, part in enumerate(parts, 1):
                self._part(part, n, shown, study_uid, series_uid)
        finally:
            for part in parts:  # those kept were moved away
                part.path.unlink(missing_ok=True)

    def _part(self, part: _Part, n: int, shown: str, study_uid: str, series_uid: str) -> None:
        where = f"{shown} (part {n} of the answer)"
        if part.too_large:
            self._error(
                f"the instance is more than {self.limits.max_file_size_mb:g} MB (policy setting"
                " limits.max_file_size_mb): not read",
                where,
            )
            return
        result = read_file(FileEntry(part.path, where, explicit=True), self.limits)
        if result.kind == "error":
            self._error(str(result.error), where)
            return
        if result.kind != "rt":
            return  # an image or another object filed in an RT series: not ours to read
        sop_class = result.sop_class_uid or ""
        if sop_class not in store.RT_CLASSES:
            return  # read by its content only: its class is not one we keep
        try:
            ds = result.pydicom_dataset()
        except Exception as exc:  # the reader's own sentence (DicomReadError)
            self._error(str(exc), where)
            return
        if ds is None:  # never for an RT object read whole: a guard for its type
            self._error("the instance has no data set: not read", where)
            return
        sop_uid = store.clean_uid(str(ds.get("SOPInstanceUID", "") or ""))
        if sop_uid is None:
            self._error("the instance has an invalid SOP Instance UID: not read", where)
            return
        if sop_uid in self.seen:
            return
        display = f"{self.shown}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        folder = self.folder / f"study{self.studies.setdefault(study_uid, len(self.studies))}"
        folder.mkdir(exist_ok=True)
        target = folder / store.file_name(sop_class, sop_uid, part.sha256)
        os.replace(part.path, target)
        self.seen.add(sop_uid)
        self.entries.append(FileEntry(target, display, explicit=True))
        for ref in ds.get("ReferencedStructureSetSequence", None) or []:
            uid = store.clean_uid(str(ref.get("ReferencedSOPInstanceUID", "") or ""))
            if uid and uid not in self.referenced:
                self.referenced.append(uid)

    def _missing_structure_sets(self) -> None:
        """Structure sets that retrieved plans reference but their studies lack."""
        wanted = [uid for uid in self.referenced if uid not in self.seen]
        for uid in wanted:
            found = self._search(
                f"look up structure set {uid}", "/instances", {"SOPInstanceUID": uid}
            )
            for item in found[:1]:
                study_uid = store.clean_uid(_value(item, _STUDY_UID))
                series_uid = store.clean_uid(_value(item, _SERIES_UID))
                if study_uid is None or series_uid is None:
                    continue
                self._retrieve(
                    f"retrieve structure set {uid}",
                    f"/studies/{study_uid}/series/{series_uid}/instances/{uid}",
                    study_uid,
                    series_uid,
                )


def _json_kind(value: object) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "true/false",
        int: "number",
        float: "number",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _uid_text(raw: str | None) -> str:
    if raw is None:
        return "nothing usable"
    return f"an invalid value {raw[:80]!r}"


def _unexpected(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")
