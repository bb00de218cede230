"""``rtcode listen``: a DICOM storage SCP (pynetdicom, the ``rtcode[net]`` extra) that
checks each instance a planning system sends, stores it (``store.py``), records it
in the results database (``results_db.py``), answers the sender, and has one coding
thread re-run the normal scan pipeline on that patient's stored files, so plans get
exactly the codes and evidence ``rtcode scan`` gives. The connection-level pieces
are in ``listen_transport.py``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtcode.coding.policy import Policy
from rtcode.dicom.vendors import PRIVATE_SOP_CLASSES
from rtcode.engine.scan import scan as run_scan
from rtcode.model.limits import Limits
from rtcode.model.results import PlanResult
from rtcode.output.render import plan_json
from rtcode.sources import store
from rtcode.sources.results_db import PlanCoding, ResultsDB

LOG = logging.getLogger("rtcode.sources.listen")

DEFAULT_AE_TITLE = "RTCODE"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11112
DEFAULT_MAX_PDU_BYTES = 65536
MIN_PDU_BYTES, MAX_PDU_BYTES = 4096, 16 * 2**20
DEFAULT_MAX_ASSOCIATIONS = 8
# A new connection must send its A-ASSOCIATE-RQ within this; otherwise it is closed
# (and recorded). Connections that have not asked for an association yet hold no
# association slot; at most DEFAULT_MAX_WAITING of them are kept open, the oldest
# closed first.
DEFAULT_ACSE_TIMEOUT_S = 5.0
DEFAULT_MAX_WAITING = 64
DEFAULT_DIMSE_TIMEOUT_S = 60.0  # waiting for a DIMSE message
DEFAULT_NETWORK_TIMEOUT_S = 60.0  # an idle association is aborted after this
DEFAULT_STOP_GRACE_S = 10.0  # how long stop() waits for the instance in flight

# Storage service statuses we answer with (PS3.4 Annex B.2.3, Table B.2-1).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (too large, disk refused)
STATUS_MISMATCH = 0xA900  # Error: Data Set does not match SOP Class
STATUS_BAD_UID = 0xC001  # Error: Cannot understand (invalid SOP Instance UID)
STATUS_UNDECODABLE = 0xC002  # Error: Cannot understand (the data set does not decode)
STATUS_NOT_STORED = 0xC003  # Error: Cannot understand (a class we do not store)


@dataclass(frozen=True)
class ListenSettings:
    """Everything ``rtcode listen`` is told; module defaults above."""

    store_dir: Path
    db_path: Path
    ae_title: str = DEFAULT_AE_TITLE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allowed_calling_aets: tuple[str, ...] = ()
    accept_ct: bool = False
    max_pdu_bytes: int = DEFAULT_MAX_PDU_BYTES
    max_instance_bytes: int = 512 * 2**20
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS
    acse_timeout_s: float = DEFAULT_ACSE_TIMEOUT_S
    dimse_timeout_s: float = DEFAULT_DIMSE_TIMEOUT_S
    network_timeout_s: float = DEFAULT_NETWORK_TIMEOUT_S
    max_waiting_connections: int = DEFAULT_MAX_WAITING


def check_ae_title(value: str) -> tuple[bool, str]:
    """(ok, reason) for an AE title (PS3.5 6.2, AE: 1-16 characters, no backslash or
    control characters, not only spaces)."""
    if not value.strip():
        return False, "an AE title cannot be empty"
    if len(value) > 16:
        return False, f"an AE title has at most 16 characters ({value!r} has {len(value)})"
    if any(c == "\\" or ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        return False, f"{value!r}: an AE title is printable ASCII without backslash"
    return True, ""


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip("\x00 ")
    return text or None


def _peer(assoc: Any) -> str:
    info = assoc.requestor
    return f"{info.address}:{info.port}"


def _calling(assoc: Any) -> str:
    return str(assoc.requestor.ae_title or "").strip()


@dataclass
class _Transfer:
    """Where an association stands: the data set bytes of the instance arriving now
    (counted by the DUL thread) and the C-STOREs not yet answered on the wire."""

    dataset_bytes: int = 0
    aborting: bool = False
    unanswered: int = 0


class Listener:
    """A running storage SCP. ``start()``, then ``stop()`` (or use it as a context
    manager). Not restartable: make a new one.

    For each instance (RT Plan, RT Ion Plan, RT Dose, RT Structure Set; CT too with
    ``accept_ct``): the SOP Instance UID must be a valid UID and agree with the data
    set, and the data set must decode, or the C-STORE is refused with a status and a
    comment that says why. A stored instance is recorded ``pending`` and its patient's
    folder queued for coding; instances that arrive while a patient waits share one
    coding, the sender never waits for it, and a coding cut off by a stop is done at
    the next start.

    Safety: binds to 127.0.0.1 unless told otherwise; the called AE title must be
    ours; an optional list of calling AE titles; a maximum PDU size that is enforced
    (a peer announcing a longer PDU is disconnected before it is read); a maximum
    instance size (an association sending more is aborted while it sends, nothing is
    stored; a deflated data set is held to it as it inflates, and to the policy's
    ``limits.max_data_elements``, before anything decodes it); a maximum number of
    associations, counting only connections that asked for one: a connection must
    send its A-ASSOCIATE-RQ within ``acse_timeout_s`` or it is closed, and at most
    ``max_waiting_connections`` wait at once (the oldest is closed); bounded DIMSE
    and network timeouts; C-ECHO answered. Every refusal is logged with its reason
    and recorded in the database. ``stop()`` stops accepting, lets the instance in
    flight finish (stored, recorded, answered and, within the grace period, coded),
    then aborts what is left: a stored instance is never lost, and one that did not
    arrive whole is never stored."""

    def __init__(self, settings: ListenSettings, policy: Policy) -> None:
        ok, why = check_ae_title(settings.ae_title)
        if not ok:
            raise ValueError(why)
        for aet in settings.allowed_calling_aets:
            ok, why = check_ae_title(aet)
            if not ok:
                raise ValueError(why)
        if not MIN_PDU_BYTES <= settings.max_pdu_bytes <= MAX_PDU_BYTES:
            raise ValueError(
                f"maximum PDU size {settings.max_pdu_bytes} is outside"
                f" {MIN_PDU_BYTES}..{MAX_PDU_BYTES} bytes"
            )
        if (
            min(
                settings.max_instance_bytes,
                settings.max_associations,
                settings.max_waiting_connections,
            )
            < 1
        ):
            raise ValueError("instance size and connection limits must be at least 1")
        if not settings.acse_timeout_s > 0:
            raise ValueError("the association timeout must be more than 0 seconds")
        self.settings = settings
        self.policy = policy
        self._max_elements = Limits.from_policy(policy).max_data_elements
        self.store_dir = settings.store_dir.resolve()
        self._db: ResultsDB | None = None
        self._classes: dict[str, tuple[str, str]] = {}  # SOP classes accepted
        self._ae: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Condition()
        self._busy = 0  # C-STORE handlers running
        self._transfers: dict[int, _Transfer] = {}
        # connections that have not sent an A-ASSOCIATE-RQ yet, oldest first:
        # id(association) -> (association, when the connection opened)
        self._waiting: dict[int, tuple[Any, float]] = {}
        self._dirty: dict[Path, str] = {}  # patient folders to code -> triggering instance
        self._coding = False
        self._worker: threading.Thread | None = None
        self._worker_exit = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (a port of 0 asks for a free one)."""
        if self._server is None:
            raise RuntimeError("the listener is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Open the store and the database, bind and serve in a background thread;
        return the address."""
        self._open_store()
        server = self._bind()
        # As AE.start_server does, so that server.shutdown() and AE.shutdown() find it.
        self._ae._servers.append(server)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon stop() is noticed
            name="rtcode-listen",
            daemon=True,
        )
        self._thread.start()
        host, port = self.address
        LOG.info(
            "listening on %s:%d as %s; storing in %s; results in %s",
            host,
            port,
            self.settings.ae_title,
            self.store_dir,
            self.settings.db_path,
        )
        return host, port

    def _open_store(self) -> None:
        """The store's folders (emptied of what an interrupted write left), the
        database, the coding thread, and the codings an earlier run did not finish."""
        for folder in (store.INCOMING, store.PATIENTS):
            (self.store_dir / folder).mkdir(parents=True, exist_ok=True)
        removed = store.clear_incoming(self.store_dir)
        if removed:
            LOG.info("removed %d temporary file(s) left by an interrupted write", removed)
        self._db = ResultsDB(self.settings.db_path)
        self._worker = threading.Thread(target=self._work, name="rtcode-coding", daemon=True)
        self._worker.start()
        self._recover()

    def _make_ae(self) -> Any:
        """The application entity, with the settings' limits and timeouts."""
        from pynetdicom import AE

        s = self.settings
        ae = AE(ae_title=s.ae_title)
        ae.maximum_pdu_size = s.max_pdu_bytes
        # pynetdicom counts every connection, also one that never asks for an
        # association: idle sockets would hold every slot. _on_requested counts only
        # the associations asked for; _reap_waiting closes connections that do not ask.
        ae.maximum_associations = _UNLIMITED
        # A backstop: _reap_waiting closes a silent connection at acse_timeout_s.
        ae.acse_timeout = s.acse_timeout_s + _BACKSTOP_S
        ae.dimse_timeout = s.dimse_timeout_s
        ae.network_timeout = s.network_timeout_s
        ae.require_called_aet = True
        ae.require_calling_aet = list(s.allowed_calling_aets)
        return ae

    def _contexts(self) -> list[Any]:
        """The presentation contexts accepted: the classes stored, in the four
        uncompressed transfer syntaxes, and Verification (C-ECHO)."""
        from pydicom.uid import (
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        )
        from pynetdicom.presentation import build_context

        syntaxes: list[str] = [
            ImplicitVRLittleEndian,
            ExplicitVRLittleEndian,
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
        ]
        register_private_classes()
        classes = dict(store.RT_CLASSES)
        if self.settings.accept_ct:
            classes.update(store.IMAGE_CLASSES)
        self._classes = classes
        contexts = [build_context(uid, list(syntaxes)) for uid in classes]
        contexts.append(build_context("1.2.840.10008.1.1"))  # Verification (C-ECHO)
        return contexts

    def _event_handlers(self) -> list[Any]:
        from pynetdicom import evt

        return [
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_C_ECHO, self._on_c_echo),
            (evt.EVT_PDU_RECV, self._on_pdu_recv),
            (evt.EVT_PDU_SENT, self._on_pdu_sent),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]

    def _bind(self) -> Any:
        """The server, bound and not yet serving (``listen_transport``); when binding
        fails, the coding thread and the database are closed again."""
        from rtcode.sources.listen_transport import BoundedRequestHandler, Gate, ListenServer

        s = self.settings
        self._ae = self._make_ae()
        try:
            server = self._ae.make_server(
                (s.host, s.port),
                contexts=self._contexts(),
                evt_handlers=self._event_handlers(),
                server_class=ListenServer,
                request_handler=BoundedRequestHandler,
            )
        except BaseException:  # the port is taken, the address is not ours, ...
            self._close_worker_and_db()
            raise
        server.gate = Gate(
            read_limit=self._read_limit(),
            opened=self._add_waiting,
            too_long=self._pdu_too_long,
            reap=self._reap_waiting,
        )
        return server

    def stop(self, grace_s: float = DEFAULT_STOP_GRACE_S) -> None:
        """Stop accepting; wait up to ``grace_s`` for the instance in flight (until its
        answer is on the wire) and the codings it asked for; abort the associations
        still open; close the database.

        An instance whose C-STORE handler has started is always stored and recorded.
        A coding still queued when the grace period ends is done at the next start
        (its instances stay ``pending`` in the database)."""
        if self._server is None or self._stopping:
            return
        self._stopping = True
        server = self._server
        server.shutdown()  # no new connections; serve_forever returns
        with self._state_lock:
            waiting = [assoc for assoc, _ in self._waiting.values()]
            self._waiting.clear()
        for assoc in waiting:  # they asked for nothing: closed at once
            self._close_waiting(assoc, None)
        deadline = time.monotonic() + grace_s
        if not self._wait(lambda: self._busy or self._in_flight(), deadline):
            LOG.warning("stopping while an instance is still arriving: it is not stored")
        assocs = list(server.active_associations)
        for assoc in assocs:
            assoc.abort()
        for assoc in assocs:
            assoc.join(timeout=5)
            assoc.dul.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
        # A handler that started always finishes (writing a file and a row is quick).
        self._wait(lambda: self._busy, time.monotonic() + 60)
        if not self._wait(lambda: self._dirty or self._coding, deadline):
            LOG.warning("stopping with codings queued: they are done at the next start")
        self._close_worker_and_db()
        LOG.info("stopped")

    def _close_worker_and_db(self) -> None:
        with self._state_lock:
            self._worker_exit = True
            self._state_lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=120)  # the coding in progress finishes
        if self._db is not None:
            self._db.close()
            self._db = None

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is arriving, being stored or waiting to be coded; True
        when that happened within ``timeout_s``."""
        return self._wait(
            lambda: self._busy or self._in_flight() or self._dirty or self._coding,
            time.monotonic() + timeout_s,
        )

    @property
    def receiving(self) -> bool:
        """True while an association is part-way through sending an instance."""
        with self._state_lock:
            return self._receiving()

    def _receiving(self) -> bool:
        return any(t.dataset_bytes for t in self._transfers.values())

    def _in_flight(self) -> bool:
        """An instance is arriving, or stored but its answer not yet sent."""
        return any(t.dataset_bytes or t.unanswered for t in self._transfers.values())

    def _wait(self, busy: Any, deadline: float) -> bool:
        with self._state_lock:
            while busy():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state_lock.wait(min(left, 0.1))
        return True

    # ------------------------------------------------------------------ events

    def _on_accepted(self, event: Any) -> None:
        LOG.info("association from %r at %s accepted", _calling(event.assoc), _peer(event.assoc))
        refused = list(event.assoc.rejected_contexts)
        if refused:  # what the sender offered and cannot send here: on the record
            self._refused(event.assoc, "context", self._contexts_refused(refused))

    def _contexts_refused(self, contexts: list[Any]) -> str:
        """One sentence for the presentation contexts refused in an association."""
        from pydicom.uid import UID

        def name(uid: object) -> str:
            text = "".join(c for c in str(uid) if c.isprintable())[:64]
            known = UID(text).name if store.clean_uid(text) else text
            return known if known == text else f"{known} ({text})"

        parts = []
        for cx in contexts[:_CONTEXTS_SHOWN]:
            uid = str(cx.abstract_syntax)
            if cx.result == 0x04:
                offered = ", ".join(name(ts) for ts in cx.transfer_syntax[:4]) or "none"
                why = f"none of its transfer syntaxes is accepted (offered: {offered})"
            elif uid in store.IMAGE_CLASSES and not self.settings.accept_ct:
                why = "kept only with --accept-ct"
            elif cx.result == 0x03:
                why = "not stored here"
            else:
                why = str(cx.status)
            parts.append(f"{name(uid)}: {why}")
        more = len(contexts) - _CONTEXTS_SHOWN
        return (
            "presentation context(s) refused, nothing of these can be sent: "
            + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else "")
        )

    def _on_rejected(self, event: Any) -> None:
        primitive = event.assoc.acceptor.primitive
        try:
            reason = f"{primitive.result_str}: {primitive.reason_str}"
        except Exception:  # an unknown code: say so rather than fail the handler
            reason = "rejected"
        self._refused(event.assoc, "association", reason)

    def _on_conn_close(self, event: Any) -> None:
        with self._state_lock:
            self._transfers.pop(id(event.assoc), None)
            waiting = self._waiting.pop(id(event.assoc), None)
            self._state_lock.notify_all()
        if waiting is not None:  # closed by the peer before it asked: not a refusal
            self._close_waiting(event.assoc, None)

    # ------------------------------------------------- connections not associated

    def _add_waiting(self, assoc: Any) -> None:
        """A new connection: it waits for its A-ASSOCIATE-RQ without holding an
        association slot. Beyond ``max_waiting_connections`` the oldest is closed (a
        planning system asks at once; a socket that waits is not one)."""
        most = self.settings.max_waiting_connections
        evicted = []
        with self._state_lock:
            self._waiting[id(assoc)] = (assoc, time.monotonic())
            while len(self._waiting) > most:
                evicted.append(self._waiting.pop(next(iter(self._waiting)))[0])
        for old in evicted:
            self._close_waiting(
                old,
                f"more than {most} connections waited to ask for an association: the oldest closed",
            )

    def _forget_waiting(self, assoc: Any) -> bool:
        """No longer a connection waiting to ask; True if it was one."""
        with self._state_lock:
            return self._waiting.pop(id(assoc), None) is not None

    def _read_limit(self) -> int:
        """The longest PDU read: the maximum PDU size, but at least _MIN_READ_BYTES."""
        return max(self.settings.max_pdu_bytes, _MIN_READ_BYTES)

    def _pdu_too_long(self, assoc: Any, nr_bytes: int) -> None:
        """The peer announced a PDU longer than we read: its connection is closed
        (``listen_transport.bound_reads``), and the refusal recorded."""
        if self._forget_waiting(assoc):  # its A-ASSOCIATE-RQ, too long
            self._close_waiting(assoc, None)
        limit = self._read_limit()
        self._refused(
            assoc,
            "association",
            f"peer announced a PDU of {nr_bytes} bytes, above the limit of {limit}:"
            " connection closed",
        )

    def _reap_waiting(self) -> None:
        """Close the connections that sent no A-ASSOCIATE-RQ within ``acse_timeout_s``."""
        limit = self.settings.acse_timeout_s
        now = time.monotonic()
        with self._state_lock:
            late = [key for key, (_, opened) in self._waiting.items() if now - opened >= limit]
            expired = [self._waiting.pop(key)[0] for key in late]
        for assoc in expired:
            self._close_waiting(
                assoc, f"no A-ASSOCIATE-RQ within {limit:g} s after connecting: connection closed"
            )

    def _close_waiting(self, assoc: Any, reason: str | None) -> None:
        """Close a connection that has not asked for an association; record why."""
        if reason is not None:
            self._refused(assoc, "connection", reason)
        raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if raw is not None:
            with contextlib.suppress(OSError):  # already closed
                raw.shutdown(socket.SHUT_RDWR)  # the DUL sees the end and stops
        # The association thread waits for an A-ASSOCIATE-RQ (pynetdicom's ACSE
        # timeout); "nothing arrived" ends its wait now, as the timeout would.
        with contextlib.suppress(AttributeError):
            assoc.dul.to_user_queue.put(None)

    def _on_requested(self, event: Any) -> None:
        """An A-ASSOCIATE-RQ arrived: the connection now counts against
        ``max_associations`` (those asked for and not ended, this one included); over
        it, rejected (transient, local limit exceeded) as pynetdicom would."""
        from pynetdicom import evt

        assoc = event.assoc
        self._forget_waiting(assoc)
        ae = self._ae
        if ae is None:
            return
        asked = [
            a
            for a in ae.active_associations
            if a.is_acceptor
            and a.requestor.primitive is not None
            and not (a.is_rejected or a.is_aborted or a.is_released)
        ]
        if len(asked) <= self.settings.max_associations:
            return
        assoc.acse.send_reject(0x02, 0x03, 0x02)  # rejected transient: local limit exceeded
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def _on_c_echo(self, event: Any) -> int:
        LOG.info("C-ECHO from %r at %s", _calling(event.assoc), _peer(event.assoc))
        return STATUS_SUCCESS

    def _on_pdu_recv(self, event: Any) -> None:
        """Count the data set bytes of the instance being sent (DUL thread) and abort
        the association as soon as they pass the limit, before the rest arrives."""
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        limit = self.settings.max_instance_bytes
        too_large: int | None = None
        with self._state_lock:
            t = self._transfers.setdefault(id(event.assoc), _Transfer())
            for item in items:
                data = item.presentation_data_value or b""
                if not data or data[0] & 1 or t.aborting:  # a command fragment
                    continue
                t.dataset_bytes += len(data) - 1
                if data[0] & 2:  # the last fragment: the C-STORE handler runs next
                    t.dataset_bytes = 0
                    t.unanswered += 1  # until its C-STORE-RSP is on the wire
                elif t.dataset_bytes > limit:
                    too_large, t.dataset_bytes, t.aborting = t.dataset_bytes, 0, True
            self._state_lock.notify_all()
        if too_large is None:
            return
        self._refused(
            event.assoc,
            "instance",
            f"instance larger than the limit of {limit} bytes ({too_large} received so far):"
            " association aborted, nothing stored",
        )
        event.assoc.abort()

    @contextmanager
    def _busy_section(self) -> Iterator[None]:
        with self._state_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._state_lock:
                self._busy -= 1
                self._state_lock.notify_all()

    def _on_c_store(self, event: Any) -> Any:
        with self._busy_section():
            return self._store(event)

    def _on_pdu_sent(self, event: Any) -> None:
        """A P-DATA-TF carrying the last fragment of a command is a response we sent
        (an acceptor sends no requests): one C-STORE fewer waits for its answer."""
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        with self._state_lock:
            t = self._transfers.get(id(event.assoc))
            if t is None:
                return
            for item in items:
                data = item.presentation_data_value or b""
                if data and data[0] & 3 == 3 and t.unanswered:
                    t.unanswered -= 1
            self._state_lock.notify_all()

    def _store(self, event: Any) -> Any:
        assoc = event.assoc
        rq = event.request
        sent_uid = str(rq.AffectedSOPInstanceUID or "")
        sop_class = str(rq.AffectedSOPClassUID or "").strip("\x00 ")
        with rq.DataSet.getbuffer() as body:
            size = body.nbytes
            if size > self.settings.max_instance_bytes:
                return self._refuse_store(
                    event,
                    STATUS_OUT_OF_RESOURCES,
                    f"instance of {size} bytes is larger than the limit of"
                    f" {self.settings.max_instance_bytes}",
                )
            uid = store.clean_uid(sent_uid)
            if uid is None:
                return self._refuse_store(
                    event, STATUS_BAD_UID, "SOP Instance UID is not a valid UID"
                )
            if sop_class not in self._classes:
                return self._refuse_store(event, STATUS_NOT_STORED, "SOP class not stored here")
            syntax = str(event.context.transfer_syntax)
            header = store.part10_header(sop_class, uid, syntax)
            # Before anything decodes it (pynetdicom inflates a deflated data set whole):
            # held to the size limit as inflated and to the policy's element limit.
            bomb = store.too_large_to_decode(
                header, body, syntax, self.settings.max_instance_bytes, self._max_elements
            )
            if bomb is not None:
                why, damaged = bomb
                return self._refuse_store(
                    event, STATUS_UNDECODABLE if damaged else STATUS_OUT_OF_RESOURCES, why
                )
            try:
                ds = event.dataset
                ds_class = _text(ds, "SOPClassUID")
                ds_uid = _text(ds, "SOPInstanceUID")
                patient_id = _text(ds, "PatientID")
                study_uid = store.clean_uid(_text(ds, "StudyInstanceUID") or "")
            except Exception as exc:  # pydicom raises many types for damaged data
                return self._refuse_store(
                    event, STATUS_UNDECODABLE, f"data set does not decode ({type(exc).__name__})"
                )
            if ds_uid != uid or ds_class != sop_class:
                return self._refuse_store(
                    event,
                    STATUS_MISMATCH,
                    "SOP Class or Instance UID in the data set differs from the request",
                )
            folder = store.patient_folder(self.store_dir, patient_id)
            try:
                stored = store.write_instance(self.store_dir, folder, sop_class, uid, header, body)
            except (OSError, store.StoreError) as exc:
                LOG.error("cannot store %s: %s", uid, exc)
                return self._refuse_store(event, STATUS_OUT_OF_RESOURCES, "cannot store it here")
        db = self._db
        assert db is not None  # stop() closes it only when no handler is running
        pending = stored.modality != "CT"  # images never change a code
        db.record_instance(
            calling_ae=_calling(assoc),
            peer=_peer(assoc),
            sop_class_uid=sop_class,
            modality=stored.modality,
            sop_instance_uid=uid,
            patient_id=patient_id,
            study_instance_uid=study_uid,
            stored_path=stored.relative_path,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            pending=pending,
        )
        LOG.info("stored %s from %r (%d bytes)", stored.relative_path, _calling(assoc), size)
        if pending:
            self._queue_coding(folder, stored.relative_path)
        return STATUS_SUCCESS

    def _refuse_store(self, event: Any, status: int, reason: str) -> Any:
        from pydicom.dataset import Dataset

        sent = str(event.request.AffectedSOPInstanceUID or "")
        self._refused(event.assoc, "instance", reason, sent)
        rsp = Dataset()
        rsp.Status = status
        rsp.ErrorComment = reason[:64]
        return rsp

    def _refused(self, assoc: Any, what: str, reason: str, sop_instance_uid: str = "") -> None:
        calling, peer = _calling(assoc), _peer(assoc)
        LOG.warning(
            "refused %s from %r at %s%s: %s",
            what,
            calling,
            peer,
            f" (SOP Instance UID {sop_instance_uid!r})" if sop_instance_uid else "",
            reason,
        )
        db = self._db
        if db is None:
            return
        try:
            db.record_refusal(
                calling_ae=calling,
                peer=peer,
                what=what,
                reason=reason,
                sop_instance_uid=sop_instance_uid,
            )
        except sqlite3.Error as exc:  # closed by stop(), or the disk is full: the log has it
            LOG.error("cannot record the refusal in the database: %s", exc)

    # ------------------------------------------------------------------ coding

    def _queue_coding(self, folder: Path, trigger: str) -> None:
        """Ask the coding thread to (re-)code a patient's folder. Instances that arrive
        while it waits share one coding; the C-STORE answer does not wait for it."""
        with self._state_lock:
            self._dirty.pop(folder, None)
            self._dirty[folder] = trigger
            self._state_lock.notify_all()

    def _work(self) -> None:
        while True:
            with self._state_lock:
                while not self._dirty and not self._worker_exit:
                    self._state_lock.wait()
                if self._worker_exit:
                    return
                folder = next(iter(self._dirty))
                trigger = self._dirty.pop(folder)
                self._coding = True
            try:
                self._code_folder(folder, trigger)
            except Exception as exc:  # never lose the listener to one patient's files
                LOG.exception("coding %s failed; it is retried at the next start", folder)
                self._record_failed_coding(folder, trigger, exc)
            finally:
                with self._state_lock:
                    self._coding = False
                    self._state_lock.notify_all()

    def _code_folder(self, folder: Path, trigger: str) -> None:
        """Code every plan of one patient's folder with the normal scan pipeline."""
        db = self._db
        assert db is not None
        up_to = db.last_instance_id()  # every instance recorded so far is on disk
        result = run_scan([str(folder)], self.policy)
        errors: dict[str, str] = {}
        for err in result.errors:
            LOG.warning("cannot code %s: %s", err.path, err.error)
            errors[self._stored_path(err.path)] = err.error
        codings = [self._coding_of(p) for p in result.plans]
        prefix = folder.relative_to(self.store_dir).as_posix() + "/"
        db.record_codings(codings, trigger)
        db.record_errors(prefix, errors, trigger)  # every file: coded, used, or here
        db.mark_coded(prefix, up_to)
        for c in codings:
            LOG.info("coded %s: %s (%s)", c.stored_path, c.code or "no code", c.label or c.category)

    def _stored_path(self, shown: str) -> str:
        """A path the scan shows, relative to the store (as ``instances`` has it)."""
        try:
            return Path(shown).relative_to(self.store_dir).as_posix()
        except ValueError:
            return shown

    def _record_failed_coding(self, folder: Path, trigger: str, exc: Exception) -> None:
        """A coding that failed as a whole: recorded against the patient's folder (its
        instances stay pending, so the next start codes them again)."""
        db = self._db
        if db is None:
            return
        prefix = folder.relative_to(self.store_dir).as_posix() + "/"
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        error = f"coding failed ({type(exc).__name__}{': ' + text if text else ''}):"
        error += " retried at the next start"
        try:
            db.record_errors(prefix, {prefix: error}, trigger, complete=False)
        except sqlite3.Error as db_exc:
            LOG.error("cannot record the failed coding in the database: %s", db_exc)

    def _coding_of(self, p: PlanResult) -> PlanCoding:
        plan, c = p.linked.plan, p.classification
        return PlanCoding(
            stored_path=Path(plan.path).relative_to(self.store_dir).as_posix(),
            sop_instance_uid=plan.sop_instance_uid,
            patient_id=plan.patient_id,
            plan_label=plan.label,
            code=c.code,
            label=c.label,
            category=c.category.value,
            confidence=c.confidence,
            structure_set_status=p.linked.structure_set_status,
            doses=len(p.linked.doses),
            date_of_service=p.date_of_service.isoformat() if p.date_of_service else None,
            policy_name=self.policy.name,
            policy_version=self.policy.version,
            policy_sha256=self.policy.sha256,
            reasons=tuple(e.finding for e in c.deciding_evidence()),
            result=plan_json(p, self.policy),
        )

    def _recover(self) -> None:
        """Queue the codings an earlier run did not finish: patients with instances
        still ``pending``, and stored plan files with no coding at all."""
        assert self._db is not None
        folders = {self.store_dir / p for p in self._db.pending_folders()}
        coded = self._db.coded_paths()
        patients = self.store_dir / store.PATIENTS
        if patients.is_dir():
            for folder in (p for p in patients.iterdir() if p.is_dir()):
                for f in folder.iterdir():
                    relative = f.relative_to(self.store_dir).as_posix()
                    if f.name.startswith(("RP.", "RN.")) and relative not in coded:
                        folders.add(folder)
        for folder in sorted(folders):
            if folder.is_dir():
                LOG.info("coding %s: an earlier run stopped before coding it", folder)
                self._queue_coding(folder, "restart")


_CONTEXTS_SHOWN = 12  # refused presentation contexts named in one refusal
_UNLIMITED = 1_000_000  # pynetdicom's own association count, made moot (see _make_ae)
_BACKSTOP_S = 2.0
_MIN_READ_BYTES = 65536  # an A-ASSOCIATE-RQ may exceed a small PDU


def register_private_classes() -> None:
    """Teach pynetdicom the vendors' private storage classes that rtcode stores
    (``PRIVATE_SOP_CLASSES``: Halcyon and Ethos send their plans so); without this it
    answers a C-STORE of one "no supported service class". Registering again changes
    nothing."""
    from pynetdicom.service_class import StorageServiceClass
    from pynetdicom.sop_class import register_uid

    for uid in store.RT_CLASSES:
        if uid in PRIVATE_SOP_CLASSES:
            register_uid(uid, "RtcodePrivate_" + uid.replace(".", "_"), StorageServiceClass)
