#!/usr/bin/env python3
"""Fuzz the reader, and the extractor and classifier behind it, with atheris.

By hand, as long as you like (atheris: ``pip install atheris``; Linux wheels):

    python tests/fuzz_reader.py -runs=100000
    python tests/fuzz_reader.py -max_total_time=600 -rss_limit_mb=1024

Each input is either a whole file, or picks a sample file and damages it (cut short,
bytes changed, inserted or removed), so the search starts from real DICOM-RT. What
must hold for every input: ``read`` never raises and its errors are one plain-words
sentence; ``extract`` raises nothing but ``RtcodeError``, in plain words; the
classifier never fails on the facts it gets; libFuzzer's memory limit is never hit.
The seeds include big-endian files and finite values at the edges of what a float
holds (1e308, 1e-320).
A failing input is saved by libFuzzer (``crash-...``); replay it with
``python tests/fuzz_reader.py crash-...``. No corpus folder is written unless you
give one (never give ``sample_data``: libFuzzer would add files to it).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rtcode", "pydicom"]):
    import broken_corpus
    from broken_corpus import plain_words_problem

    from rtcode.coding.classify import classify
    from rtcode.coding.policy import load
    from rtcode.dicom.extract import extract
    from rtcode.dicom.read import FileEntry, read
    from rtcode.link import LinkedPlan
    from rtcode.model.errors import RtcodeError
    from rtcode.model.facts import Plan
    from rtcode.model.limits import Limits

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def _extreme(keyword: str, text: str, beam: int = 0, cp: int | None = 0) -> bytes:
    """The four-field plan with one finite value at the edge of what a float holds
    (issue 21, 8): in control point ``cp`` of beam ``beam``, or in the beam (``cp``
    None). (A small plan: seeds of 100 kB make an instrumented run grow by as much.)"""
    ds = broken_corpus._load(broken_corpus.RP)
    item = ds.BeamSequence[beam]
    item = item if cp is None else item.ControlPointSequence[cp]
    tag = broken_corpus.pydicom.datadict.tag_for_keyword(keyword)
    value = text.encode("ascii")
    item[tag] = broken_corpus._raw(tag, "DS", value + (b" " if len(value) % 2 else b""))
    return broken_corpus._dataset_bytes(ds)


SEEDS = [
    (SAMPLE_DATA / name).read_bytes()
    for name in (
        "06_four_field_box_3d/RP.dcm",
        "06_four_field_box_3d/RS.dcm",
        "06_four_field_box_3d/RD.dcm",
        "02_ap_pa_open/RTPLAN_AP_PA",
        "08_electron_cutout/RP.dcm",
        "16_hdr_brachy/RP.dcm",
        "17_proton_pbs/RN.dcm",
    )
] + [
    # Explicit VR Big Endian: the Pixel Data header read in the file's byte order
    broken_corpus._big_endian(broken_corpus.RD),
    broken_corpus._big_endian(broken_corpus.RP),
    # finite values beyond their range, and one that divides into infinities
    _extreme("GantryAngle", "1e308", 1, 1),
    _extreme("BeamLimitingDeviceAngle", "-1e308"),
    _extreme("IsocenterPosition", "0\\1e308\\0"),
    _extreme("FinalCumulativeMetersetWeight", "1e-320", 0, None),
]
POLICY = load()
LIMITS = Limits.from_policy(POLICY)
KINDS = {"rt", "image", "other_dicom", "not_dicom", "error"}
# Each input is written to one file here before it is read: RTCODE_FUZZ_DIR, else one
# folder per user in the temporary folder, reused by every run (libFuzzer exits
# without running Python's exit handlers, so a new folder per run would pile up).
FOLDER = Path(
    os.environ.get("RTCODE_FUZZ_DIR") or Path(tempfile.gettempdir()) / f"rtcode-fuzz-{os.getuid()}"
)
FOLDER.mkdir(exist_ok=True)
PATH = FOLDER / "input.dcm"


def content(data: bytes) -> bytes:
    """The file to read: the input itself, or a sample file damaged as it says."""
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    buf = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        op = fdp.ConsumeIntInRange(0, 2)
        at = fdp.ConsumeIntInRange(0, max(len(buf) - 1, 0))
        if op == 0 and buf:
            buf[at] = fdp.ConsumeIntInRange(0, 255)
        elif op == 1:
            buf[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
        else:
            del buf[at : at + fdp.ConsumeIntInRange(1, 64)]
    if fdp.ConsumeBool():
        del buf[fdp.ConsumeIntInRange(0, len(buf)) :]
    return bytes(buf)


def check(path: Path) -> None:
    """The properties every file must keep; raises AssertionError when one breaks."""
    result = read(FileEntry(path, str(path), explicit=True), LIMITS)
    assert result.kind in KINDS, result.kind
    if result.kind == "error":
        problem = plain_words_problem(result.error or "")
        assert problem is None, f"{problem}: {result.error!r}"
    if result.kind != "rt":
        return
    assert result.dataset is not None and result.modality is not None
    try:
        facts = extract(result.dataset, result.modality, str(path), result.has_pixel_data, LIMITS)
    except RtcodeError as exc:
        problem = plain_words_problem(str(exc))
        assert problem is None, f"{problem}: {exc!r}"
        return
    if isinstance(facts, Plan):
        classify(LinkedPlan(facts, None, "not_referenced", (), (), ()), POLICY)


def one_input(data: bytes) -> None:
    PATH.write_bytes(content(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(PATH)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
