"""rtcode listen, tested with a real DICOM peer: a pynetdicom storage SCU sends the
sample export to the listener over loopback, and the codes and evidence must be
those of ``rtcode scan`` on the same files. Hostile senders (unknown AE titles,
oversized instances and PDUs, path-like UIDs, connections dropped mid-transfer)
are refused without harm. Every listener and association is stopped at the end
of its test; every wait has a time limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest

pytest.importorskip(
    "pynetdicom", reason="rtcode listen needs pynetdicom: pip install '.[test]' (or rtcode[net])"
)

import pydicom  # noqa: E402
import pynetdicom  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import ROOT, SAMPLE_DATA, SAMPLE_PLANS  # noqa: E402
from netcheck import POLICY, canonical, deflated_part10, scan_canonical  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE  # noqa: E402
from pynetdicom.dimse_messages import C_STORE_RQ  # noqa: E402
from pynetdicom.dimse_primitives import C_STORE  # noqa: E402
from pynetdicom.dsutils import encode  # noqa: E402
from pynetdicom.pdu import P_DATA_TF  # noqa: E402

from rtcode.cli import main  # noqa: E402
from rtcode.dicom.read import sniff  # noqa: E402
from rtcode.sources import store  # noqa: E402
from rtcode.sources.listen import (  # noqa: E402
    STATUS_BAD_UID,
    STATUS_OUT_OF_RESOURCES,
    STATUS_UNDECODABLE,
    Listener,
    ListenSettings,
)
from rtcode.sources.results_db import query  # noqa: E402

CASE_01 = SAMPLE_DATA / "01_single_open_field"
CASE_06 = SAMPLE_DATA / "06_four_field_box_3d"
CASE_09_PLAN = SAMPLE_DATA / "09_imrt_step_and_shoot_7f" / "RP.dcm"  # 42 kB
CASE_10_PLAN = SAMPLE_DATA / "10_imrt_sliding_window" / "RP.dcm"  # 141 kB


# ----------------------------------------------------------------------- helpers

PLAN_01 = CASE_01 / "RP.dcm"


def dicom_files(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and sniff(p.read_bytes()[:140]) is not None
    ]


def dataset(path: Path) -> pydicom.Dataset:
    """A sample file as the planning system would send it."""
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:  # case 02: a raw implicit-VR data set
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def is_rt(path: Path) -> bool:
    return str(dataset(path).SOPClassUID) in store.RT_CLASSES


def eventually(check: Callable[[], bool], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Listener]]:
    """Start listeners on a free loopback port; all are stopped at the end."""
    started: list[Listener] = []

    def _start(policy=POLICY, **overrides: object) -> Listener:
        values: dict[str, object] = {
            "store_dir": tmp_path / "store",
            "db_path": tmp_path / "results.sqlite",
            "port": 0,
            "acse_timeout_s": 5.0,
            "dimse_timeout_s": 10.0,
            "network_timeout_s": 10.0,
        }
        values.update(overrides)
        listener = Listener(ListenSettings(**values), policy)  # type: ignore[arg-type]
        started.append(listener)
        listener.start()
        return listener

    yield _start
    for listener in started:
        listener.stop(grace_s=5)


def scu(calling: str = "TPS", deflated: bool = False, also: tuple[str, ...] = ()) -> AE:
    """A storage SCU offering the RT classes (and the classes ``also`` names, e.g.
    CT): a class the listener does not take is a refused presentation context, and
    recorded as a refusal."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    ae.connection_timeout = 5
    for uid in [*store.RT_CLASSES, *also]:
        if deflated:  # one transfer syntax per context: files are sent as they are
            ae.add_requested_context(uid, ExplicitVRLittleEndian)
            ae.add_requested_context(uid, DeflatedExplicitVRLittleEndian)
        else:
            ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification
    return ae


@contextmanager
def association(
    listener: Listener,
    calling: str = "TPS",
    called: str = "RTCODE",
    deflated: bool = False,
    also: tuple[str, ...] = (),
):
    host, port = listener.address
    assoc = scu(calling, deflated, also).associate(host, port, ae_title=called)
    try:
        if assoc.is_established:
            # as fast as the network allows: no Nagle delay between P-DATA PDUs
            assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        if assoc.ident is not None:  # a rejected association never started its thread
            assoc.join(timeout=10)
        assert not assoc.is_alive()


def send(listener: Listener, paths: list[Path], calling: str = "TPS") -> list[int]:
    classes = {str(dataset(p).SOPClassUID) for p in paths}
    with association(listener, calling, also=tuple(classes - set(store.RT_CLASSES))) as assoc:
        assert assoc.is_established
        return [assoc.send_c_store(dataset(p)).Status for p in paths]


def stored_uids(listener: Listener) -> dict[str, str]:
    """Absolute stored path -> SOP Instance UID, from the results database."""
    data = query(listener.settings.db_path)
    return {
        str(listener.store_dir / i["stored_path"]): i["sop_instance_uid"] for i in data["instances"]
    }


def coded(listener: Listener) -> list[str]:
    """The listener's codings, canonical (see netcheck)."""
    plans = query(listener.settings.db_path)["plans"]
    return canonical([p["result"] for p in plans], stored_uids(listener))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def c_store_pdus(ds: pydicom.Dataset, context, max_pdu: int) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE request, encoded as pynetdicom would send them."""
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    syntax = context.transfer_syntax[0]
    request.DataSet = BytesIO(encode(ds, syntax.is_implicit_VR, syntax.is_little_endian))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return [P_DATA_TF(p).encode() for p in message.encode_msg(context.context_id, max_pdu)]


# ------------------------------------------------------- the sample export, coded


def test_sample_export_gives_the_codes_and_evidence_of_a_file_scan(start):
    listener = start(accept_ct=True)
    files = dicom_files(SAMPLE_DATA)
    assert send(listener, files) == [0] * len(files)
    assert listener.wait_idle(30)

    data = query(listener.settings.db_path)
    assert len(data["instances"]) == len(files)
    assert not [i for i in data["instances"] if i["pending"]]
    expected = scan_canonical([SAMPLE_DATA])
    assert len(expected) == SAMPLE_PLANS
    assert coded(listener) == expected
    stored = files_under(listener.store_dir)
    assert all(p.is_relative_to(listener.store_dir / "patients") for p in stored)


def test_a_plan_is_recoded_when_its_structure_set_and_dose_arrive(start):
    listener = start()
    assert send(listener, [CASE_06 / "RP.dcm"]) == [0]
    assert listener.wait_idle(10)
    [plan] = query(listener.settings.db_path)["plans"]
    assert (plan["code"], plan["structure_set_status"], plan["doses"]) == (
        "77307",
        "not_in_export",
        0,
    )

    assert send(listener, [CASE_06 / "RS.dcm", CASE_06 / "RD.dcm"]) == [0, 0]
    assert listener.wait_idle(10)
    [plan] = query(listener.settings.db_path)["plans"]
    assert (plan["code"], plan["structure_set_status"], plan["doses"]) == ("77295", "linked", 1)
    assert [h["code"] for h in plan["history"]][0] == "77307"
    assert plan["history"][-1]["code"] == "77295"
    assert plan["history"][-1]["trigger"].startswith("patients/")
    assert coded(listener) == scan_canonical([CASE_06])


def test_two_associations_at_once(start):
    listener = start()
    cases = sorted(d for d in SAMPLE_DATA.iterdir() if d.is_dir())
    groups = [cases[0::2], cases[1::2]]
    both_open = threading.Barrier(2, timeout=10)
    outcome: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with association(listener, calling=f"TPS{n}") as assoc:
                assert assoc.is_established
                both_open.wait()  # two associations are open before either sends
                files = [f for case in groups[n] for f in dicom_files(case) if is_rt(f)]
                outcome[n] = [assoc.send_c_store(dataset(f)).Status for f in files]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert all(set(statuses) == {0} for statuses in outcome.values())
    assert listener.wait_idle(30)
    assert coded(listener) == scan_canonical([SAMPLE_DATA])


def test_c_echo(start):
    listener = start()
    with association(listener) as assoc:
        assert assoc.send_c_echo().Status == 0


# ------------------------------------------------------------- hostile senders


def test_unknown_calling_ae_title_is_rejected_and_logged(start, caplog):
    listener = start(allowed_calling_aets=("TPS",))
    with caplog.at_level(logging.WARNING, logger="rtcode.sources.listen"):
        with association(listener, calling="INTRUDER") as assoc:
            assert assoc.is_rejected
        with association(listener, calling="TPS", called="NOT_RTCODE") as assoc:
            assert assoc.is_rejected
        with association(listener, calling="TPS") as assoc:
            assert assoc.is_established

        def refusals() -> list[dict]:
            return query(listener.settings.db_path)["refusals"]

        assert eventually(lambda: len(refusals()) == 2)
    reasons = {(r["calling_ae"], r["what"], r["reason"]) for r in refusals()}
    assert reasons == {
        ("INTRUDER", "association", "Rejected Permanent: Calling AE title not recognised"),
        ("TPS", "association", "Rejected Permanent: Called AE title not recognised"),
    }
    assert "refused association from 'INTRUDER'" in caplog.text
    assert "Calling AE title not recognised" in caplog.text
    assert not files_under(listener.store_dir)


def test_more_associations_than_allowed_are_rejected(start):
    listener = start(max_associations=1)
    with association(listener) as first:
        assert first.is_established
        with association(listener) as second:
            assert second.is_rejected
    assert eventually(
        lambda: (
            [r["reason"] for r in query(listener.settings.db_path)["refusals"]]
            == ["Rejected Transient: Local limit exceeded"]
        )
    )


@contextmanager
def idle_sockets(listener: Listener, n: int) -> Iterator[list[socket.socket]]:
    """``n`` connections that never send an A-ASSOCIATE-RQ; closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(listener.address, timeout=10))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_hold_no_association_slot(start):
    """Eight sockets that never associate blocked C-ECHO for 30 s (issue 21)."""
    listener = start(max_associations=2, acse_timeout_s=2.0)
    with idle_sockets(listener, 10) as idle:
        time.sleep(0.5)  # all accepted by the listener
        started = time.monotonic()
        for _ in range(3):  # more associations than idle sockets leave slots
            with association(listener) as assoc:
                assert assoc.is_established
                assert assoc.send_c_echo().Status == 0
        assert time.monotonic() - started < 2
        # then each is closed at the association timeout, and recorded
        assert all(closed_by_peer(sock, 5) for sock in idle)
        assert time.monotonic() - started < 5
    refusals = query(listener.settings.db_path)["refusals"]
    assert len(refusals) == 10
    assert {(r["what"], r["reason"]) for r in refusals} == {
        ("connection", "no A-ASSOCIATE-RQ within 2 s after connecting: connection closed")
    }


def test_more_idle_connections_than_may_wait_close_the_oldest(start):
    """800 idle sockets blocked the node for ever (issue 21): only
    max_waiting_connections wait, the oldest are closed at once."""
    listener = start(max_associations=2, acse_timeout_s=30.0, max_waiting_connections=8)

    def closed() -> int:
        return sum(closed_by_peer(sock, 0.001) for sock in idle)

    with idle_sockets(listener, 200) as idle:
        assert eventually(lambda: closed() == 192)  # (in the order they were accepted)
        with association(listener) as assoc:
            assert assoc.is_established and assoc.send_c_echo().Status == 0
        # the association's own connection waited too, until it asked: one more closed
        assert eventually(lambda: closed() == 193)
    reasons = [r["reason"] for r in query(listener.settings.db_path)["refusals"]]
    assert len(reasons) == 193
    assert set(reasons) == {
        "more than 8 connections waited to ask for an association: the oldest closed"
    }


def test_oversized_instance_is_refused_while_it_arrives(start):
    listener = start(max_instance_bytes=60_000, max_pdu_bytes=16384)
    with association(listener) as assoc:
        status = assoc.send_c_store(dataset(CASE_10_PLAN))  # 141 kB in 16 kB PDUs
        assert "Status" not in status  # no answer: the association was aborted
        assert eventually(lambda: assoc.is_aborted)
    assert not files_under(listener.store_dir / "patients")
    assert not list((listener.store_dir / ".incoming").iterdir())
    [refusal] = query(listener.settings.db_path)["refusals"]
    assert refusal["what"] == "instance"
    assert "larger than the limit of 60000 bytes" in refusal["reason"]
    # the listener goes on serving
    assert send(listener, [CASE_01 / "RP.dcm"]) == [0]


def test_oversized_instance_in_one_pdu_gets_a_failure_status(start):
    listener = start(max_instance_bytes=30_000, max_pdu_bytes=65536)
    with association(listener) as assoc:
        status = assoc.send_c_store(dataset(CASE_09_PLAN))  # 42 kB, one PDU
        assert status.Status == STATUS_OUT_OF_RESOURCES
        assert "larger than the limit" in status.ErrorComment
        assert assoc.send_c_store(dataset(CASE_01 / "RP.dcm")).Status == 0
    assert listener.wait_idle(10)
    assert [p["plan_label"] for p in query(listener.settings.db_path)["plans"]] == ["SINGLE"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and pynetdicom warn about such UIDs
@pytest.mark.parametrize(
    "uid",
    [
        "../../etc/passwd",
        "1.2/../../outside",
        "/tmp/outside",
        "1.2.3.",
    ],
)
def test_a_path_like_uid_cannot_escape_the_store(start, tmp_path, uid):
    listener = start(store_dir=tmp_path / "deep" / "store")
    ds = dataset(CASE_01 / "RP.dcm")
    ds.SOPInstanceUID = uid
    with association(listener) as assoc:
        status = assoc.send_c_store(ds)
    assert status.Status == STATUS_BAD_UID
    assert status.ErrorComment == "SOP Instance UID is not a valid UID"
    assert {p.name for p in files_under(tmp_path)} <= {
        "results.sqlite",
        "results.sqlite-wal",
        "results.sqlite-shm",
    }
    assert not Path("/tmp/outside").exists()
    [refusal] = query(listener.settings.db_path)["refusals"]
    assert refusal["sop_instance_uid"] == uid


def test_a_path_like_patient_id_names_no_folder(start):
    listener = start()
    ds = dataset(CASE_01 / "RP.dcm")
    ds.PatientID = "../../../etc"
    with association(listener) as assoc:
        assert assoc.send_c_store(ds).Status == 0
    assert listener.wait_idle(10)
    [path] = files_under(listener.store_dir)
    assert path.parent.parent == listener.store_dir / "patients"
    assert path.parent.name == store.patient_key("../../../etc")
    assert path.name.startswith(f"RP.{ds.SOPInstanceUID}.")
    [plan] = query(listener.settings.db_path)["plans"]
    assert plan["patient_id"] == "../../../etc" and plan["code"] == "77306"


def test_a_pdu_longer_than_the_limit_closes_the_connection(start):
    # acse_timeout: the refused connection's thread waits that long for an
    # A-ASSOCIATE-RQ that never comes, then ends
    listener = start(max_pdu_bytes=16384, acse_timeout_s=1.0)
    with socket.create_connection(listener.address, timeout=5) as sock:
        # an A-ASSOCIATE-RQ header that claims 200 MB
        sock.sendall(struct.pack(">BBL", 0x01, 0, 200 * 2**20) + b"\x00" * 64)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""  # closed without reading the rest
    assert eventually(lambda: query(listener.settings.db_path)["refusals"] != [])
    [refusal] = query(listener.settings.db_path)["refusals"]
    assert "announced a PDU of 209715200 bytes" in refusal["reason"]


def test_a_connection_dropped_mid_transfer_leaves_no_partial_file(start):
    listener = start(max_pdu_bytes=16384)
    ds = dataset(CASE_10_PLAN)
    with association(listener) as assoc:
        context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == ds.SOPClassUID)
        pdus = c_store_pdus(ds, context, assoc.acceptor.maximum_length)
        assert len(pdus) > 4
        sock = assoc.dul.socket.socket
        for pdu in pdus[: len(pdus) // 2]:
            sock.sendall(pdu)
        assert eventually(lambda: listener.receiving)  # the listener holds half an instance
        sock.shutdown(socket.SHUT_RDWR)  # the sender goes away mid-transfer
        assert eventually(lambda: not assoc.is_established)
    assert listener.wait_idle(10)
    assert not listener.receiving
    assert not files_under(listener.store_dir / "patients")
    assert not list((listener.store_dir / ".incoming").iterdir())
    assert query(listener.settings.db_path)["instances"] == []
    # the same instance sent whole is stored
    assert send(listener, [CASE_10_PLAN]) == [0]
    assert len(files_under(listener.store_dir / "patients")) == 1


# ------------------------------------- every instance coded or recorded, every refusal


MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"


def test_refused_presentation_contexts_are_recorded(start):
    """CT without --accept-ct was refused at association but not recorded (issue 21)."""
    listener = start()
    with association(listener, also=(store.CT_CLASS, MR_CLASS)) as assoc:
        assert assoc.is_established
        assert assoc.send_c_store(dataset(PLAN_01)).Status == 0
    [refusal] = query(listener.settings.db_path)["refusals"]
    assert refusal["what"] == "context" and refusal["calling_ae"] == "TPS"
    assert refusal["reason"] == (
        "presentation context(s) refused, nothing of these can be sent:"
        " CT Image Storage (1.2.840.10008.5.1.4.1.1.2): kept only with --accept-ct;"
        " MR Image Storage (1.2.840.10008.5.1.4.1.1.4): not stored here"
    )
    # with --accept-ct, offering CT is no refusal
    other = start(
        store_dir=listener.store_dir.parent / "s2",
        db_path=listener.settings.db_path.parent / "r2.sqlite",
        accept_ct=True,
    )
    with association(other, also=(store.CT_CLASS,)) as assoc:
        assert assoc.is_established
    assert query(other.settings.db_path)["refusals"] == []


def truncated_plan(tmp_path: Path) -> Path:
    """Case 01's plan whose last element declares 100 bytes and has 8, as a Part-10
    file: pydicom decodes it, the reader finds it cut short."""
    ds = dataset(PLAN_01)
    body = encode(ds, False, True) + struct.pack("<HH2sH", 0x300E, 0x0002, b"CS", 100)
    header = store.part10_header(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), ExplicitVRLittleEndian
    )
    path = tmp_path / "truncated.dcm"
    path.write_bytes(header + body + b"APPROVED")
    return path


def test_a_stored_plan_that_cannot_be_read_is_in_the_results_with_its_error(
    start, tmp_path, monkeypatch
):
    """A plan with a truncated element was answered Success, then neither coded nor
    reported (issue 21): it is stored, and recorded with the reader's sentence."""
    listener = start()
    ds = dataset(PLAN_01)
    assert send_file(listener, truncated_plan(tmp_path), monkeypatch).Status == 0
    assert send(listener, [CASE_06 / "RP.dcm"]) == [0]
    assert listener.wait_idle(10)
    data = query(listener.settings.db_path)
    assert [p["plan_label"] for p in data["plans"]] == ["FOURFIELD"]
    [error] = data["errors"]
    [instance] = [i for i in data["instances"] if i["patient_id"] == "RTC-01"]
    assert error["stored_path"] == instance["stored_path"]
    assert (error["patient_id"], error["modality"]) == ("RTC-01", "RTPLAN")
    assert error["sop_instance_uid"] == ds.SOPInstanceUID
    assert error["error"].startswith("truncated DICOM file")
    assert not instance["pending"]

    db = str(listener.settings.db_path)
    table = results("--db", db).output
    assert f"{error['stored_path']}: not coded (RTPLAN, patient RTC-01, " in table
    assert "    truncated DICOM file: the file ends inside ApprovalStatus" in table
    assert "1 plan(s) coded, 1 file(s) not coded" in table
    as_json = json.loads(results("--db", db, "--format", "json").output)
    assert as_json["errors"] == data["errors"]
    rows = results("--db", db, "--format", "csv").output.splitlines()
    assert len(rows) == 3 and ",error," in rows[2] and "truncated DICOM file" in rows[2]
    assert (
        results("--db", db, "--format", "json", "--patient", "RTC-06").output.count("truncated")
        == 0
    )


def test_a_coding_that_fails_is_recorded_and_done_again_at_the_next_start(start, monkeypatch):
    first = start()

    def broken_scan(*args, **kwargs):
        raise MemoryError("out of memory while coding")

    monkeypatch.setattr("rtcode.sources.listen.run_scan", broken_scan)
    assert send(first, [CASE_01 / "RP.dcm"]) == [0]
    assert first.wait_idle(10)
    first.stop()
    data = query(first.settings.db_path)
    [error] = data["errors"]
    assert error["stored_path"] == data["instances"][0]["stored_path"].rsplit("/", 1)[0] + "/"
    assert error["error"] == (
        "coding failed (MemoryError: out of memory while coding): retried at the next start"
    )
    assert data["instances"][0]["pending"] == 1

    monkeypatch.undo()
    second = start()
    assert second.wait_idle(10)
    data = query(second.settings.db_path)
    assert data["errors"] == [] and [p["code"] for p in data["plans"]] == ["77306"]


# --------------------------------------------------- bombs: deflated, many elements


def deflated_file(tmp_path: Path, extra: list[bytes], zero_mb: int = 0) -> Path:
    """Case 01's plan deflated (``netcheck.deflated_part10``), as a file."""
    path = tmp_path / "deflated.dcm"
    path.write_bytes(deflated_part10(dataset(PLAN_01), extra, zero_mb))
    return path


def tiny_elements(n: int) -> list[bytes]:
    """``n`` empty private LO elements (8 bytes each), in ascending tag order."""
    return [struct.pack("<HH2sH", 0x7FE1, 0x1000 + i % 0xF000, b"LO", 0) for i in range(n)]


def send_file(listener: Listener, path: Path, monkeypatch) -> pydicom.Dataset:
    """C-STORE of a Part-10 file as its bytes are (pynetdicom reads it a chunk at a
    time and sends it undecoded, in its own transfer syntax)."""
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    with association(listener, deflated=True) as assoc:
        assert assoc.is_established
        return assoc.send_c_store(path)


def test_a_deflated_instance_within_the_limits_is_stored_and_coded(start, tmp_path, monkeypatch):
    listener = start()
    status = send_file(listener, deflated_file(tmp_path, []), monkeypatch)
    assert status.Status == 0
    assert listener.wait_idle(10)
    [plan] = query(listener.settings.db_path)["plans"]
    assert plan["code"] == "77306"


def test_a_deflated_bomb_is_refused_as_it_inflates_in_bounded_memory(start, tmp_path, monkeypatch):
    """1.5 MB that inflates to 1.5 GB took the node to 3.2 GB and was answered
    Success (issue 21): here 200 MB of zeros in a few hundred kB, with a 4 MB limit."""
    listener = start(max_instance_bytes=4 * 2**20)
    path = deflated_file(tmp_path, [], zero_mb=200)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        status = send_file(listener, path, monkeypatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status.Status == STATUS_OUT_OF_RESOURCES
    assert status.ErrorComment == "its deflated data set inflates to more than 4194304 bytes"
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.0f} MB while refusing"
    assert not files_under(listener.store_dir / "patients")
    [refusal] = query(listener.settings.db_path)["refusals"]
    assert refusal["what"] == "instance" and "inflates to more than" in refusal["reason"]


@pytest.mark.parametrize("deflated", [True, False])
def test_too_many_data_elements_are_refused_before_decoding(start, tmp_path, monkeypatch, deflated):
    policy = dataclasses.replace(POLICY, values={**POLICY.values, "limits.max_data_elements": 5000})
    listener = start(policy=policy)
    if deflated:
        status = send_file(listener, deflated_file(tmp_path, tiny_elements(6000)), monkeypatch)
    else:
        ds = dataset(PLAN_01)
        body = encode(ds, False, True) + b"".join(tiny_elements(6000))
        path = tmp_path / "plain.dcm"
        header = store.part10_header(
            str(ds.SOPClassUID), str(ds.SOPInstanceUID), ExplicitVRLittleEndian
        )
        path.write_bytes(header + body)
        status = send_file(listener, path, monkeypatch)
    assert status.Status == STATUS_OUT_OF_RESOURCES
    assert status.ErrorComment == "it holds more than 5000 data elements and items"
    assert not files_under(listener.store_dir / "patients")


def test_a_damaged_deflate_stream_is_refused(start, tmp_path, monkeypatch):
    listener = start()
    path = deflated_file(tmp_path, [])
    data = bytearray(path.read_bytes())
    data[-40:] = b"\xff" * 40  # not a deflate stream any more
    path.write_bytes(bytes(data))
    status = send_file(listener, path, monkeypatch)
    assert status.Status == STATUS_UNDECODABLE
    assert not files_under(listener.store_dir / "patients")


# ----------------------------------------------------- stopping loses nothing


def test_stop_finishes_the_instance_in_flight(start, monkeypatch):
    listener = start()
    in_handler = threading.Event()
    store_instance = listener._store

    def slow_store(event):
        in_handler.set()
        time.sleep(0.5)
        return store_instance(event)

    monkeypatch.setattr(listener, "_store", slow_store)
    outcome: list[object] = []

    def sender_thread() -> None:
        try:
            outcome.extend(send(listener, [CASE_01 / "RP.dcm"]))
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)

    sender = threading.Thread(target=sender_thread, daemon=True)
    sender.start()
    assert in_handler.wait(10)
    listener.stop(grace_s=10)  # while the instance is being stored
    sender.join(timeout=10)
    assert outcome == [0]
    data = query(listener.settings.db_path)
    assert len(data["instances"]) == 1 and data["instances"][0]["pending"] == 0
    assert [p["code"] for p in data["plans"]] == ["77306"]


def test_a_restart_codes_what_was_stored_but_not_coded(start, monkeypatch):
    first = start()
    monkeypatch.setattr(first, "_queue_coding", lambda folder, trigger: None)  # "crash"
    assert send(first, [CASE_01 / "RP.dcm"]) == [0]
    first.stop()
    data = query(first.settings.db_path)
    assert data["plans"] == [] and data["instances"][0]["pending"] == 1

    second = start()
    assert second.wait_idle(10)
    data = query(second.settings.db_path)
    assert data["instances"][0]["pending"] == 0
    [plan] = data["plans"]
    assert plan["code"] == "77306" and plan["history"][0]["trigger"] == "restart"


# ----------------------------------------------------------- the command line


def _read_line(stream, timeout_s: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            raise TimeoutError("no line within the time limit")
        return stream.readline()
    finally:
        sel.close()


def test_listen_command_codes_then_stops_on_ctrl_c(tmp_path):
    db = tmp_path / "results.sqlite"
    command = [sys.executable, "-m", "rtcode", "listen", "--port", "0", "--timeout", "10"]
    command += ["--store", str(tmp_path / "store"), "--db", str(db)]
    command += ["--association-timeout", "1", "--max-associations", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = _read_line(proc.stderr, 30)
        assert line.startswith("rtcode listen: RTCODE on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split(",")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            assert closed_by_peer(idle, 5)  # asked for no association within 1 s
        ae = scu()
        assoc = ae.associate("127.0.0.1", port, ae_title="RTCODE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        statuses = [assoc.send_c_store(dataset(f)).Status for f in dicom_files(CASE_06) if is_rt(f)]
        assert statuses == [0, 0, 0]
        assoc.release()

        def coded_plans() -> list[dict]:
            out = CliRunner().invoke(main, ["results", "--db", str(db), "--format", "json"])
            return [p for p in json.loads(out.output)["plans"] if p["doses"] == 1]

        assert eventually(lambda: len(coded_plans()) == 1, 20)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "stopping (finishing the instance in flight)" in rest and "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()
    [plan] = coded_plans()
    assert plan["code"] == "77295" and plan["result"]["code"] == "77295"


def test_listen_command_refuses_a_bad_ae_title(tmp_path):
    result = CliRunner().invoke(
        main,
        ["listen", "--ae-title", "A\\B", "--port", "0", "--store", str(tmp_path / "s")]
        + ["--db", str(tmp_path / "r.sqlite")],
    )
    assert result.exit_code == 2 and "AE title" in result.output


@pytest.fixture
def results_db(start) -> Path:
    listener = start()
    assert send(listener, [CASE_06 / "RP.dcm"]) == [0]
    assert listener.wait_idle(10)
    assert send(listener, [CASE_06 / "RS.dcm", CASE_06 / "RD.dcm", CASE_01 / "RP.dcm"]) == [0] * 3
    assert listener.wait_idle(10)
    return listener.settings.db_path


def results(*args: str):
    return CliRunner().invoke(main, ["results", *args])


def test_results_table(results_db):
    result = results("--db", str(results_db))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "coded", "(UTC)", "patient", "label", "code", "category", "conf.", "struct.", "set", "doses"
    ]  # fmt: skip
    assert "because 2 contoured target(s)" in result.output
    assert "coded as parts arrived: 77307 (complex_isodose) -> 77295 (3d)" in result.output
    assert (
        "4 instance(s) received (1 RTDOSE, 2 RTPLAN, 1 RTSTRUCT), 2 plan(s) coded" in result.output
    )
    assert "advisory" in result.output


def test_results_json_and_csv_and_filters(results_db):
    data = json.loads(results("--db", str(results_db), "--format", "json").output)
    assert data["schema_version"] == 1
    assert sorted(p["code"] for p in data["plans"]) == ["77295", "77306"]
    plan = next(p for p in data["plans"] if p["code"] == "77295")
    assert plan["result"]["evidence"] and plan["result"]["structure_set"]["status"] == "linked"

    csv_out = results("--db", str(results_db), "--format", "csv", "--patient", "RTC-06").output
    rows = csv_out.splitlines()
    assert rows[0].startswith("coded_at,patient_id,plan_label") and len(rows) == 2
    assert ",RTC-06,FOURFIELD," in rows[1] and ",77295," in rows[1]

    later = json.loads(
        results("--db", str(results_db), "--format", "json", "--since", "2999-01-01").output
    )
    assert later["plans"] == [] and later["instances"] == []


def test_a_database_written_before_the_errors_table_is_read_and_given_it(tmp_path):
    import sqlite3

    from rtcode.sources.results_db import ResultsDB

    path = tmp_path / "old.sqlite"
    ResultsDB(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE errors")  # as rtcode wrote it before the table existed
    assert query(path)["errors"] == []
    assert "0 plan(s) coded, 0 refusal(s)" in results("--db", str(path)).output
    db = ResultsDB(path)
    db.record_errors("patients/p1/", {"patients/p1/RP.1.dcm": "damaged"}, "restart")
    db.close()
    [error] = query(path)["errors"]
    assert (error["stored_path"], error["error"], error["modality"]) == (
        "patients/p1/RP.1.dcm",
        "damaged",
        None,
    )


def test_results_of_a_missing_database(tmp_path):
    result = results("--db", str(tmp_path / "none.sqlite"))
    assert result.exit_code == 2 and "no results database" in result.output
