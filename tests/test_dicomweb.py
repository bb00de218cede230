"""rtcode scan dicomweb+http://..., tested against a real archive: Orthanc with its
DICOMweb plugin, started on loopback by scripts/orthanc_test_server.sh with the
sample export uploaded, and stopped at the end. The codes and evidence must be
those of ``rtcode scan`` on the same files.

The tests that need Orthanc skip, saying why, when it is not installed
(apt-get install -y orthanc orthanc-dicomweb; .ci/run installs both).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "requests",
    reason="reading from DICOMweb needs requests: pip install '.[test]' (or rtcode[net])",
)

import pydicom  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import ROOT, SAMPLE_DATA, SAMPLE_PLANS  # noqa: E402
from netcheck import POLICY, canonical, free_port, scan_canonical, uids_of  # noqa: E402

from rtcode.cli import main  # noqa: E402
from rtcode.dicom.read import WalkError  # noqa: E402
from rtcode.engine.scan import scan  # noqa: E402
from rtcode.output.render import plan_json  # noqa: E402
from rtcode.sources.dicomweb import DicomWebError, base_url, display_url, retrieve  # noqa: E402

SCRIPT = ROOT / "scripts" / "orthanc_test_server.sh"
PLUGINS = [Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"), Path("/usr/lib/orthanc")]


def _orthanc_missing() -> str | None:
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        return "Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb)"
    if not PLUGINS[0].exists() and not list(PLUGINS[1].glob("libOrthancDicomWeb.so*")):
        return "the Orthanc DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)"
    return None


@pytest.fixture(scope="module")
def orthanc() -> Iterator[str]:
    """A dicomweb+http:// URL of an Orthanc holding the sample export."""
    missing = _orthanc_missing()
    if missing:
        pytest.skip(missing)
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--upload", str(SAMPLE_DATA)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Orthanc is stopped with it
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(60)
        sel.close()
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ready: "):
            proc.kill()
            raise RuntimeError(f"Orthanc did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield line.removeprefix("ready: ").strip()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def _duplicate_uids() -> set[str]:
    """SOP Instance UIDs that several sample files share (case 18): an archive keeps one."""
    seen: dict[str, int] = {}
    for path in SAMPLE_DATA.rglob("RP*"):
        uid = str(pydicom.dcmread(path, force=True, stop_before_pixels=True).SOPInstanceUID)
        seen[uid] = seen.get(uid, 0) + 1
    return {uid for uid, n in seen.items() if n > 1}


def _retrieved(url: str, **filters: str) -> tuple[list[str], list]:
    with retrieve(url, **filters) as entries:
        result = scan(entries, POLICY)
        plans = [plan_json(p, POLICY) for p in result.plans]
        return canonical(plans, uids_of(result)), result.errors


def test_archive_gives_the_codes_and_evidence_of_a_file_scan(orthanc):
    got, errors = _retrieved(orthanc)
    assert errors == []
    twins = _duplicate_uids()
    assert len(twins) == 1
    expected = [p for p in scan_canonical([SAMPLE_DATA]) if not any(u in p for u in twins)]
    assert len(expected) == SAMPLE_PLANS - 2  # case 18's two plans share one UID
    assert [p for p in got if not any(u in p for u in twins)] == expected
    # of two plans sharing one SOP Instance UID the archive keeps one, and codes it
    assert len([p for p in got if any(u in p for u in twins)]) == 1


def test_study_and_patient_filters(orthanc):
    case = SAMPLE_DATA / "06_four_field_box_3d"
    study = str(pydicom.dcmread(case / "RP.dcm").StudyInstanceUID)
    by_study, _ = _retrieved(orthanc, study=study)
    by_patient, _ = _retrieved(orthanc, patient="RTC-06")
    assert by_study == by_patient == scan_canonical([case])
    nobody, errors = _retrieved(orthanc, patient="NOBODY")
    assert nobody == [] and errors == []


def test_scan_command_reads_the_archive(orthanc):
    result = CliRunner().invoke(main, ["scan", orthanc, "--patient", "RTC-06", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [plan] = data["plans"]
    assert plan["code"] == "77295"
    assert plan["path"].startswith(orthanc.removeprefix("dicomweb+") + "/studies/")
    assert plan["structure_set"]["path"].endswith(plan["structure_set"]["sop_instance_uid"])
    assert data["summary"]["files_seen"] == 3  # plan, structure set, dose


def test_local_files_and_an_archive_in_one_scan(orthanc):
    result = CliRunner().invoke(
        main,
        ["scan", str(SAMPLE_DATA / "01_single_open_field"), orthanc, "--patient", "RTC-06"]
        + ["--format", "csv"],
    )
    assert result.exit_code == 0
    # --patient filters every source: the local plan of another patient is left out
    codes = sorted(line.split(",")[4] for line in result.stdout.splitlines()[1:])
    assert codes == ["77295"]


# ------------------------------------------------------ no archive needed


def test_an_unreachable_archive_is_an_error_entry():
    url = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web"
    with retrieve(url, timeout_s=5) as entries:
        [entry] = entries
    assert isinstance(entry, WalkError)
    assert entry.error == "cannot search RT Plan series: connection refused"
    result = CliRunner().invoke(main, ["scan", url])
    assert result.exit_code == 1
    assert "connection refused" in result.output


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("dicomweb+http:///dicom-web", "names no host"),
        ("dicomweb+http://host/dicom-web?x=1", "without ? or #"),
        ("http://host/dicom-web", "not a dicomweb+http://"),
    ],
)
def test_bad_urls(source, message):
    with pytest.raises(DicomWebError, match=re.escape(message)):
        base_url(source)


def test_bad_study_uid_and_filters_without_an_archive():
    result = CliRunner().invoke(
        main, ["scan", "dicomweb+http://127.0.0.1:1/dicom-web", "--study", "1.2/../x"]
    )
    assert result.exit_code == 2 and "not a valid UID" in result.output
    result = CliRunner().invoke(main, ["scan", str(SAMPLE_DATA), "--study", "1.2.3"])
    assert result.exit_code == 2 and "filter a dicomweb+http:// source" in result.output


def test_credentials_stay_out_of_the_evidence():
    url = f"dicomweb+http://user:secret@127.0.0.1:{free_port()}/dicom-web"
    with retrieve(url, timeout_s=5) as entries:
        [entry] = entries
    assert "secret" not in entry.display and entry.display.startswith("http://127.0.0.1:")
    assert display_url(url) == url.replace("user:secret@", "").removeprefix("dicomweb+")
