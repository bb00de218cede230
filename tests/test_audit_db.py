"""rtcode audit --db: the plans the node received. The sample export is sent to a real
listener over loopback; a scan and audit of the files its results database lists
must give the findings of the same audit of sample_data (paths aside)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="rtcode listen needs pynetdicom (rtcode[net])")

import pydicom  # noqa: E402
from conftest import SAMPLE_DATA  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian  # noqa: E402
from pynetdicom import AE  # noqa: E402

from rtcode.audit.findings import audit  # noqa: E402
from rtcode.coding.policy import load  # noqa: E402
from rtcode.dicom.read import sniff  # noqa: E402
from rtcode.engine.scan import scan  # noqa: E402
from rtcode.sources import store  # noqa: E402
from rtcode.sources.billing import read_charges, read_ptp  # noqa: E402
from rtcode.sources.listen import Listener, ListenSettings  # noqa: E402
from rtcode.sources.results_db import (  # noqa: E402
    ResultsDatabaseError,
    ResultsDB,
    query,
    stored_files,
)

POLICY = load("default")
PLANTED = SAMPLE_DATA / "charges_planted.csv"
PTP = SAMPLE_DATA / "ptp_synthetic.txt"


def rt_datasets(folder: Path) -> list[pydicom.Dataset]:
    """The sample's RT files (plans, structure sets, doses) as a planning system sends them."""
    out = []
    for p in sorted(folder.rglob("*")):
        if not (p.is_file() and sniff(p.read_bytes()[:140]) is not None):
            continue
        ds = pydicom.dcmread(p, force=True)
        if str(ds.SOPClassUID) not in store.RT_CLASSES:
            continue  # CT never changes a code
        if "TransferSyntaxUID" not in ds.file_meta:  # case 02: a raw implicit-VR data set
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> tuple[Path, Path]:
    """(store folder, results database) after the listener received the sample export."""
    root = tmp_path_factory.mktemp("node")
    settings = ListenSettings(
        store_dir=root / "store", db_path=root / "results.sqlite", port=0, acse_timeout_s=5.0
    )
    listener = Listener(settings, POLICY)
    listener.start()
    try:
        ae = AE(ae_title="TPS")
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, attr, 10)
        for uid in store.RT_CLASSES:
            ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        host, port = listener.address
        datasets = rt_datasets(SAMPLE_DATA)
        assoc = ae.associate(host, port, ae_title="RTCODE")
        assert assoc.is_established
        try:
            assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            statuses = [assoc.send_c_store(ds).Status for ds in datasets]
        finally:
            assoc.release()
            assoc.join(timeout=10)
        assert statuses == [0] * len(datasets)
        assert listener.wait_idle(60)
    finally:
        listener.stop(grace_s=5)
    return settings.store_dir, settings.db_path


def findings_of(paths: list[str]) -> list[tuple]:
    charges = read_charges(PLANTED, dict(POLICY["audit.columns"]))
    ptp = read_ptp(PTP, {c.cpt for c in charges.charges})
    result = audit(
        scan(paths, POLICY).plans, charges.charges, POLICY, ptp=ptp, rejected=charges.rejected
    )
    return sorted(
        (
            f.kind,
            f.severity,
            f.patient_id,
            f.course,
            f.codes,
            tuple(c.line for c in f.charges),
            f.source,
        )
        for f in result.findings
    )


def test_the_db_files_give_the_findings_of_the_export(node):
    store_dir, db = node
    files = stored_files(db)
    assert files and all(not Path(p).is_absolute() for p in files)
    assert all((store_dir / p).is_file() for p in files)
    # exactly the RT files the sample holds: each received once
    assert len(files) == len(set(files)) == len(rt_datasets(SAMPLE_DATA))
    plans = {p["stored_path"] for p in query(db)["plans"]}
    assert plans <= set(files)
    from_db = findings_of([str(store_dir / p) for p in files])
    from_export = findings_of([str(SAMPLE_DATA)])
    assert from_db == from_export
    kinds = {f[0] for f in from_db}
    assert {"plan_versions_differ", "supported_only_by_unapproved_plan", "ncci_ptp"} <= kinds


def record(db: ResultsDB, path: str, modality: str, pending: bool, uid: str = "1.2.3") -> None:
    db.record_instance(
        calling_ae="TPS",
        peer="127.0.0.1:1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.481.5",
        modality=modality,
        sop_instance_uid=uid,
        patient_id="P1",
        study_instance_uid=None,
        stored_path=path,
        size_bytes=1,
        sha256="0" * 64,
        pending=pending,
    )


def test_stored_files_leave_out_pending_and_images(tmp_path):
    db = ResultsDB(tmp_path / "r.sqlite")
    try:
        record(db, "patients/p1/RP.1.a.dcm", "RTPLAN", False)
        record(db, "patients/p1/RS.2.b.dcm", "RTSTRUCT", False)
        record(db, "patients/p1/CT.3.c.dcm", "CT", False)
        record(db, "patients/p1/RD.4.d.dcm", "RTDOSE", True)  # not coded yet
        record(db, "patients/p2/RN.5.e.dcm", "RTIONPLAN", False)
        record(db, "patients/p1/RP.1.a.dcm", "RTPLAN", False)  # sent again: listed once
        assert stored_files(tmp_path / "r.sqlite") == [
            "patients/p1/RP.1.a.dcm",
            "patients/p1/RS.2.b.dcm",
            "patients/p2/RN.5.e.dcm",
        ]
        db.mark_coded("patients/p1/", 99)
        assert "patients/p1/RD.4.d.dcm" in stored_files(tmp_path / "r.sqlite")
    finally:
        db.close()


def test_stored_files_of_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ResultsDatabaseError, match="no results database"):
        stored_files(tmp_path / "none.sqlite")
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ResultsDatabaseError):
        stored_files(other)


def test_audit_db_on_the_command_line_gives_the_findings_of_the_export(node):
    """`rtcode audit --db FILE --store DIR` audits what the node received, with the same
    findings (and exit status) as the exported folder."""
    import json

    from click.testing import CliRunner

    from rtcode.cli import main

    store_dir, db = node
    common = ["--charges", str(PLANTED), "--ptp", str(PTP), "--format", "json"]
    by_db = CliRunner().invoke(main, ["audit", "--db", str(db), "--store", str(store_dir), *common])
    by_folder = CliRunner().invoke(main, ["audit", str(SAMPLE_DATA), *common])
    assert by_db.exit_code == by_folder.exit_code == 4, by_db.output

    def kinds(result):
        return sorted(
            (f["kind"], f["severity"], f["patient_id"], tuple(f["codes"]))
            for f in json.loads(result.stdout)["findings"]
        )

    assert kinds(by_db) == kinds(by_folder)
