"""rtcode scan dicomweb+http://..., against servers that misbehave: tiny stdlib HTTP
servers on loopback that ignore ``offset``, trickle a byte at a time, send parts that
are not DICOM, JSON of the wrong shape or a deflated bomb. Each misdeed must end in
one error entry naming the URL, within the deadline and in bounded memory, never in
a traceback, and the local folders scanned alongside must still be coded (issue 21).

Every server runs in a thread, answers a bounded number of requests and bytes, and
is shut down at the end of its test.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip(
    "requests",
    reason="reading from DICOMweb needs requests: pip install '.[test]' (or rtcode[net])",
)

import pydicom  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import SAMPLE_DATA  # noqa: E402
from netcheck import POLICY, deflated_part10  # noqa: E402

from rtcode.cli import main  # noqa: E402
from rtcode.dicom.read import FileEntry, WalkError  # noqa: E402
from rtcode.engine.scan import scan  # noqa: E402
from rtcode.model.limits import Limits, default_limits  # noqa: E402
from rtcode.sources import dicomweb as read_dicomweb  # noqa: E402
from rtcode.sources.dicomweb import retrieve  # noqa: E402

CASE_01 = SAMPLE_DATA / "01_single_open_field"
PLAN = pydicom.dcmread(CASE_01 / "RP.dcm")
STUDY, SERIES = str(PLAN.StudyInstanceUID), str(PLAN.SeriesInstanceUID)
PLAN_BYTES = (CASE_01 / "RP.dcm").read_bytes()
MAX_REQUESTS = 200  # a server answers no more (a client that pages for ever stops)


def series_json(study: str, series: str, modality: str = "RTPLAN") -> dict:
    return {
        "0020000D": {"vr": "UI", "Value": [study]},
        "0020000E": {"vr": "UI", "Value": [series]},
        "00080060": {"vr": "CS", "Value": [modality]},
    }


class Handler(BaseHTTPRequestHandler):
    app: Callable[[Handler, str, dict], None]

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if len(self.server.requests) > MAX_REQUESTS:  # type: ignore[attr-defined]
            return reply(self, 200, "application/dicom+json", b"[]")
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            type(self).app(self, url.path, query)  # (the client may go: its deadline)

    def log_message(self, *args: object) -> None:
        pass


def reply(h: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def reply_json(h: BaseHTTPRequestHandler, value: object) -> None:
    reply(h, 200, "application/dicom+json", json.dumps(value).encode())


def reply_parts(h: BaseHTTPRequestHandler, parts: list[bytes]) -> None:
    boundary = "rtcode-test-boundary"
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    reply(h, 200, f'multipart/related; type="application/dicom"; boundary={boundary}', body)


def archive(**routes: Callable[[BaseHTTPRequestHandler, dict], None]) -> Callable:
    """A one-plan archive (case 01) that pages by ``offset``; ``routes`` replace the
    answer to a path."""

    def app(h: BaseHTTPRequestHandler, path: str, query: dict) -> None:
        if path in routes:
            return routes[path](h, query)
        first = query.get("offset", "0") == "0"
        if path == "/series":
            return reply_json(h, [series_json(STUDY, SERIES)] if first else [])
        if path == f"/studies/{STUDY}/series":
            return reply_json(h, [series_json(STUDY, SERIES)] if first else [])
        if path.startswith("/studies/") and path.endswith("/series"):
            return reply_json(h, [])  # another study: nothing in it
        if path == f"/studies/{STUDY}/series/{SERIES}":
            return reply_parts(h, [PLAN_BYTES])
        if path == "/instances":
            return reply_json(h, [])
        return reply(h, 404, "text/plain", b"not here")

    return app


@contextmanager
def serve(app: Callable) -> Iterator[tuple[str, list[str]]]:
    """(a dicomweb+http:// URL, the paths asked for) of a server running ``app``."""
    handler = type("AppHandler", (Handler,), {"app": staticmethod(app)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"dicomweb+http://127.0.0.1:{server.server_address[1]}/", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def retrieved(url: str, **kwargs: object) -> tuple[list[str], list[str]]:
    """(the plan labels coded from what was retrieved, the error sentences)."""
    with retrieve(url, **kwargs) as entries:
        errors = [e.error for e in entries if isinstance(e, WalkError)]
        files = [e for e in entries if isinstance(e, FileEntry)]
        result = scan(files, POLICY)
        errors += [e.error for e in result.errors]
        return [p.linked.plan.label for p in result.plans], errors


def test_a_well_behaved_server(tmp_path):
    with serve(archive()) as (url, asked):
        assert retrieved(url) == (["SINGLE"], [])
    assert len(asked) == 5  # two pages of each search, one retrieval


# ------------------------------------------------------------------ QIDO-RS paging


def test_a_server_that_ignores_offset_is_asked_until_a_page_repeats():
    """A server ignoring offset made the paging loop run for ever (issue 21)."""
    same = lambda h, q: reply_json(h, [series_json(STUDY, SERIES)])  # noqa: E731
    with serve(archive(**{"/series": same})) as (url, asked):
        assert retrieved(url) == (["SINGLE"], [])
    assert len([p for p in asked if p.startswith("/series")]) == 2


def test_a_server_that_sends_new_pages_for_ever_is_cut(monkeypatch):
    monkeypatch.setattr(read_dicomweb, "MAX_PAGES", 5, raising=False)
    counter = iter(range(10**6))

    def endless(h, q):  # a new study each time, whatever the offset
        reply_json(h, [series_json(f"1.2.3.{next(counter)}", "1.2.4")])

    with serve(archive(**{"/series": endless})) as (url, asked):
        labels, errors = retrieved(url)
    assert labels == []
    assert errors == [
        "cannot search RT Plan series whole: the server sent results after 5 pages;"
        " only the first 5 are read"
    ]
    assert len([p for p in asked if p.startswith("/series")]) == 5


def test_more_results_than_allowed_are_cut(monkeypatch):
    monkeypatch.setattr(read_dicomweb, "MAX_RESULTS", 3, raising=False)
    page = [series_json(f"1.2.3.{n}", "1.2.4") for n in range(2)]
    pages = lambda h, q: reply_json(h, [dict(s, x=q["offset"]) for s in page])  # noqa: E731
    with serve(archive(**{"/series": pages})) as (url, _):
        _, errors = retrieved(url)
    assert errors == [
        "cannot search RT Plan series whole: the server sent 3 results or more;"
        " only the first 3 are read"
    ]


# ------------------------------------------------------------------ the deadline


def trickle(status_line: bool):
    """An answer that comes one byte every 0.3 s (at most 100 bytes): from the status
    line on, or after complete headers."""

    def route(h, q):
        if status_line:
            data = b"HTTP/1.0 200 OK\r\nContent-Type: application/dicom+json\r\n\r\n[]"
        else:
            h.send_response(200)
            h.send_header("Content-Type", "application/dicom+json")
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.flush()
            data = b"[" + b" " * 98 + b"]"
        for byte in data[:100]:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.3)

    return route


@pytest.mark.parametrize("status_line", [True, False], ids=["status_line", "body"])
def test_a_trickling_server_is_cut_off_at_the_deadline(monkeypatch, status_line):
    """One byte every 5 s kept a request alive past 170 s despite 10 s connect and
    120 s read limits (issue 21): the deadline bounds the whole request."""
    monkeypatch.setattr(read_dicomweb, "DEFAULT_DEADLINE_S", 2.0, raising=False)
    with serve(archive(**{"/series": trickle(status_line)})) as (url, _):
        started = time.monotonic()
        labels, errors = retrieved(url, timeout_s=(5, 5))
        took = time.monotonic() - started
    assert labels == []
    assert errors == [
        "cannot search RT Plan series: no complete answer within 2 s (the limit of a request)"
    ]
    assert took < 4


def test_a_trickling_retrieval_is_cut_off_and_the_rest_goes_on(monkeypatch):
    def slow_parts(h, q):
        h.send_response(200)
        h.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=b')
        h.end_headers()
        h.wfile.write(b"--b\r\nContent-Type: application/dicom\r\n\r\n")
        for byte in PLAN_BYTES[:100]:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.3)

    with serve(archive(**{f"/studies/{STUDY}/series/{SERIES}": slow_parts})) as (url, _):
        started = time.monotonic()
        labels, errors = retrieved(url, deadline_s=1.5)
        took = time.monotonic() - started
    assert labels == []
    assert errors == [
        f"cannot retrieve series {SERIES}: no complete answer within 1.5 s (the limit of a request)"
    ]
    assert took < 3.5


# ------------------------------------------------------- answers of the wrong shape


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[1, 2, 3]", "result 1 of the server's answer is a JSON number, not a DICOM JSON object"),
        (b'"studies"', "the server's answer is a JSON string, not a list of DICOM JSON objects"),
        (b"[1,", "the server's answer is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "the server's answer is not JSON"),
        (b"\xff\xfe<html>", "the server's answer is not JSON"),
    ],
)
def test_qido_json_of_the_wrong_shape_is_an_error_entry(body, error):
    bad = lambda h, q: reply(h, 200, "application/dicom+json", body)  # noqa: E731
    with serve(archive(**{"/series": bad})) as (url, _):
        assert retrieved(url) == ([], [f"cannot search RT Plan series: {error}"])


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ({"0020000D": "1.2.3"}, "the server gave nothing usable as a Study Instance UID: skipped"),
        (
            {"0020000D": {"Value": "1.2.3"}},
            "the server gave nothing usable as a Study Instance UID: skipped",
        ),
        (
            {"0020000D": {"Value": [{"x": 1}]}},
            "the server gave nothing usable as a Study Instance UID: skipped",
        ),
        (
            {"0020000D": {"Value": ["../etc"]}},
            "the server gave an invalid value '../etc' as a Study Instance UID: skipped",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_is_an_error_entry(item, error):
    bad = lambda h, q: reply_json(h, [item] if q.get("offset") == "0" else [])  # noqa: E731
    with serve(archive(**{"/series": bad})) as (url, _):
        assert retrieved(url) == ([], [error])


def test_a_series_list_of_the_wrong_shape_is_an_error_entry():
    bad = lambda h, q: reply_json(h, [series_json(STUDY, SERIES), "x"])  # noqa: E731
    with serve(archive(**{f"/studies/{STUDY}/series": bad})) as (url, _):
        assert retrieved(url) == (
            [],
            [
                f"cannot list the series of study {STUDY}: result 2 of the server's answer"
                " is a JSON string, not a DICOM JSON object"
            ],
        )


WADO = f"/studies/{STUDY}/series/{SERIES}"


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (
            lambda h, q: reply_parts(h, [b"<html>not DICOM</html>", PLAN_BYTES]),
            "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM header at the"
            " start (the file has only 22 bytes: not DICOM, or cut short)",
        ),
        (
            lambda h, q: reply(h, 200, "text/html", b"<html>oops</html>"),
            f"cannot retrieve series {SERIES}: the answer is not multipart/related DICOM"
            " (Content-Type text/html)",
        ),
        (
            lambda h, q: reply(
                h, 200, "multipart/related; boundary=b", b"--b\r\n\r\n" + PLAN_BYTES
            ),
            f"cannot retrieve series {SERIES}: the answer ends inside a part (no closing boundary)",
        ),
        (
            lambda h, q: reply(h, 500, "text/plain", b"broken"),
            f"cannot retrieve series {SERIES}: HTTP 500 Internal Server Error",
        ),
    ],
    ids=["not_dicom", "not_multipart", "no_closing_boundary", "http_500"],
)
def test_a_wado_answer_that_is_not_dicom_is_an_error_entry(route, error):
    with serve(archive(**{WADO: route})) as (url, _):
        labels, errors = retrieved(url)
    assert len(errors) == 1 and errors[0].endswith(error)
    if error.startswith("not a DICOM file"):
        assert labels == ["SINGLE"]  # the other part of the answer is read


def test_a_part_larger_than_the_limit_is_not_kept():
    limits = Limits(**{**default_limits().__dict__, "max_file_size_mb": 1})
    big = lambda h, q: reply_parts(h, [PLAN_BYTES + bytes(3 << 20), PLAN_BYTES])  # noqa: E731
    with serve(archive(**{WADO: big})) as (url, _):
        labels, errors = retrieved(url, limits=limits)
    assert labels == ["SINGLE"]
    assert errors == [
        "the instance is more than 1 MB (policy setting limits.max_file_size_mb): not read"
    ]


def test_a_deflated_bomb_is_refused_as_it_inflates_in_bounded_memory(monkeypatch):
    """A 1 MB part inflating to 1 GB took scan to 3.2 GB (issue 21): here 200 MB of
    zeros in about 200 kB, against a limit of 8 MB."""
    small = Limits(**{**default_limits().__dict__, "max_file_size_mb": 8})
    monkeypatch.setattr(read_dicomweb, "default_limits", lambda: small, raising=False)
    bomb = deflated_part10(PLAN, zero_mb=200)
    assert len(bomb) < 1 << 20
    with serve(archive(**{WADO: lambda h, q: reply_parts(h, [bomb])})) as (url, _):
        tracemalloc.start()
        try:
            labels, errors = retrieved(url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert labels == []
    assert errors == [
        "its deflated data set inflates to more than 8 MB (policy setting"
        " limits.max_file_size_mb): not read"
    ]
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.0f} MB"


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    ("path", "route", "error"),
    [
        (WADO, lambda h, q: reply_parts(h, [b"garbage"]), "not a DICOM file"),
        ("/series", lambda h, q: reply_json(h, [1, 2, 3]), "not a DICOM JSON object"),
        ("/series", lambda h, q: reply(h, 200, "application/json", b"{"), "is not JSON"),
    ],
    ids=["wado_not_dicom", "qido_wrong_shape", "qido_not_json"],
)
def test_the_local_folder_beside_a_hostile_server_is_still_coded(path, route, error):
    """A traceback here gave the local folders no output at all (issue 21)."""
    with serve(archive(**{path: route})) as (url, _):
        result = CliRunner().invoke(main, ["scan", url, str(CASE_01), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["code"] for p in data["plans"]] == ["77306"]
    [entry] = data["errors"]
    assert entry["path"].startswith(url.removeprefix("dicomweb+").rstrip("/"))
    assert error in entry["error"]
