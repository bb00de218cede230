"""Reading step, archive side: RT objects from a DICOMweb server (QIDO-RS and WADO-RS).

``rtcode scan dicomweb+http://HOST:PORT/dicom-web [--study UID] [--patient ID]``
asks the archive (dicomweb-client, the ``rtcode[net]`` extra) for:

1. the series of modality RTPLAN (RT Plan and RT Ion Plan), filtered by Study
   Instance UID and/or Patient ID (QIDO-RS);
2. in each study found, every RTPLAN, RTDOSE and RTSTRUCT series (QIDO-RS),
   retrieved whole (WADO-RS);
3. a structure set a plan references but its study lacks, looked up by its SOP
   Instance UID across the archive (QIDO-RS) and retrieved (WADO-RS).

The instances are written as Part-10 files into a temporary folder (named as
``store.py`` names received files; removed afterwards) and handed to the normal
reading step as file entries whose display name is the instance's WADO-RS URL. So
codes and evidence are exactly those of a scan of the same files on disk, and the
evidence points at the archive. UIDs from the server are checked before they go
into a URL or a file name. Every request has a bounded timeout and is not retried;
a failure becomes an entry in the scan's ``errors``, like an unreadable folder.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import store
from .errors import RtcodeError
from .read import FileEntry, WalkError

SCHEMES = ("dicomweb+http://", "dicomweb+https://")
DEFAULT_TIMEOUT_S = (10.0, 120.0)  # (connect, read) per request
MAX_STUDIES = 500  # a query matching more studies is cut here, with an error saying so
_RT_MODALITIES = ("RTPLAN", "RTDOSE", "RTSTRUCT")

# DICOM JSON tags (PS3.18 F.2) read from QIDO-RS answers.
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_SOP_UID = "00080018"
_MODALITY = "00080060"


class DicomWebError(RtcodeError, ValueError):
    """A DICOMweb source cannot be used; the message says why."""


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
    values = item.get(tag, {}).get("Value") or [None]
    value = values[0]
    return str(value) if value is not None else None


@contextmanager
def retrieve(
    source: str,
    *,
    study: str | None = None,
    patient: str | None = None,
    timeout_s: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
) -> Iterator[list[FileEntry | WalkError]]:
    """Retrieve the RT plans (with their doses and structure sets) that match, into a
    temporary folder that exists while the ``with`` block runs; yields entries for
    ``scan`` (files, or errors naming the URL). Raises DicomWebError for a bad URL
    or filter, or when dicomweb-client is not installed."""
    url = base_url(source)
    if study is not None and store.clean_uid(study) is None:
        raise DicomWebError(f"--study {study!r} is not a valid UID")
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise DicomWebError(
            "reading from a DICOMweb server needs dicomweb-client: pip install 'rtcode[net]'"
        ) from None
    client = DICOMwebClient(url, timeout=timeout_s)
    client.set_http_retry_params(retry=False)
    with tempfile.TemporaryDirectory(prefix="rtcode-dicomweb-") as tmp:
        yield _Retrieval(client, url, Path(tmp)).run(study, patient)


class _Retrieval:
    def __init__(self, client: Any, url: str, folder: Path) -> None:
        self.client = client
        self.url = url
        self.shown = _display_root(url)
        self.folder = folder
        self.entries: list[FileEntry | WalkError] = []
        self.seen: set[str] = set()  # SOP Instance UIDs written
        self.referenced: list[str] = []  # structure sets the plans reference
        self.studies: dict[str, int] = {}  # Study Instance UID -> its folder's number

    def run(self, study: str | None, patient: str | None) -> list[FileEntry | WalkError]:
        filters: dict[str, str] = {"Modality": "RTPLAN"}
        if patient is not None:
            filters["PatientID"] = patient
        found = self._ask(
            "search RT Plan series",
            lambda: self.client.search_for_series(
                study_instance_uid=study, search_filters=filters, get_remaining=True
            ),
        )
        studies = list(dict.fromkeys(_value(s, _STUDY_UID) for s in found or []))
        if len(studies) > MAX_STUDIES:
            self._error(
                f"{len(studies)} studies with RT plans match; only the first {MAX_STUDIES}"
                " are read: narrow the query with --study or --patient"
            )
            studies = studies[:MAX_STUDIES]
        for study_uid in studies:
            self._study(study_uid)
        self._missing_structure_sets()
        return self.entries

    def _ask(self, what: str, call: Any) -> Any:
        import requests

        try:
            return call()
        except requests.RequestException as exc:
            self._error(f"cannot {what}: {_reason(exc)}")
        except (ValueError, KeyError, TypeError) as exc:  # a malformed answer
            self._error(f"cannot {what}: the server's answer is not understood ({exc})")
        return None

    def _error(self, message: str) -> None:
        self.entries.append(WalkError(self.shown, message))

    def _study(self, raw_uid: str | None) -> None:
        study_uid = store.clean_uid(raw_uid)
        if study_uid is None:
            self._error(f"the server gave an invalid Study Instance UID {raw_uid!r}: skipped")
            return
        series = self._ask(
            f"list the series of study {study_uid}",
            lambda: self.client.search_for_series(study_instance_uid=study_uid, get_remaining=True),
        )
        for item in series or []:
            if (_value(item, _MODALITY) or "").upper() in _RT_MODALITIES:
                self._series(study_uid, _value(item, _SERIES_UID))

    def _series(self, study_uid: str, raw_uid: str | None) -> None:
        series_uid = store.clean_uid(raw_uid)
        if series_uid is None:
            self._error(f"the server gave an invalid Series Instance UID {raw_uid!r}: skipped")
            return
        datasets = self._ask(
            f"retrieve series {series_uid}",
            lambda: self.client.retrieve_series(study_uid, series_uid),
        )
        for ds in datasets or []:
            self._write(study_uid, series_uid, ds)

    def _write(self, study_uid: str, series_uid: str, ds: Any) -> None:
        import pydicom

        sop_class = str(ds.get("SOPClassUID", "") or "")
        sop_uid = store.clean_uid(str(ds.get("SOPInstanceUID", "") or ""))
        if sop_class not in store.RT_CLASSES:
            return  # something else filed in an RT series: not ours to read
        display = f"{self.shown}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        if sop_uid is None:
            self._error(f"an instance in series {series_uid} has an invalid SOP Instance UID")
            return
        if sop_uid in self.seen:
            return
        buf = io.BytesIO()
        try:
            pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        except Exception as exc:  # pydicom raises many types for odd data sets
            self.entries.append(WalkError(display, f"cannot write the retrieved instance: {exc}"))
            return
        folder = self.folder / f"study{self.studies.setdefault(study_uid, len(self.studies))}"
        stored = store.write_instance(self.folder, folder, sop_class, sop_uid, b"", buf.getbuffer())
        self.seen.add(sop_uid)
        self.entries.append(FileEntry(stored.path, display, explicit=True))
        for ref in ds.get("ReferencedStructureSetSequence", None) or []:
            uid = store.clean_uid(str(ref.get("ReferencedSOPInstanceUID", "") or ""))
            if uid and uid not in self.referenced:
                self.referenced.append(uid)

    def _missing_structure_sets(self) -> None:
        """Structure sets that retrieved plans reference but their studies lack."""
        wanted = [uid for uid in self.referenced if uid not in self.seen]
        for uid in wanted:
            found = self._ask(
                f"look up structure set {uid}",
                lambda uid=uid: self.client.search_for_instances(
                    search_filters={"SOPInstanceUID": uid}, get_remaining=True
                ),
            )
            for item in (found or [])[:1]:
                study_uid = store.clean_uid(_value(item, _STUDY_UID))
                series_uid = store.clean_uid(_value(item, _SERIES_UID))
                if study_uid is None or series_uid is None:
                    continue
                ds = self._ask(
                    f"retrieve structure set {uid}",
                    lambda s=study_uid, r=series_uid, u=uid: self.client.retrieve_instance(s, r, u),
                )
                if ds is not None:
                    self._write(study_uid, series_uid, ds)


def _reason(exc: BaseException) -> str:
    import requests

    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason or ''}".strip()
    if isinstance(exc, requests.Timeout):
        return "no answer within the time limit"
    if isinstance(exc, requests.ConnectionError):
        refused = "refused" in str(exc).lower()
        return "connection refused" if refused else "cannot connect to the server"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"
