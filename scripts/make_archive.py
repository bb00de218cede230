"""Write a synthetic department archive for benchmarks: many patients, mixed plans.

    python scripts/make_archive.py --patients 200 --seed 1 OUT_DIR

Per patient: a CT series of small slices, a structure set, one to three plans of
mixed techniques (3-D box, field-in-field tangents, step-and-shoot and sliding-
window IMRT, conformal arcs, electrons, and two-arc VMAT with 178 control points
per arc on a 120-leaf Millennium MLC), with doses with and without DVH. The
patients are made from the sample cases (scripts/make_sample_data.py) with new
identities and UIDs, so every file is realistic DICOM-RT. Deterministic for a seed.
All data is synthetic.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pydicom
from pydicom.dataset import Dataset

HERE = Path(__file__).resolve().parent


def _sample_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", HERE / "make_sample_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample_data"] = module
    spec.loader.exec_module(module)
    return module


msd = _sample_module()

# Sample cases used as templates, with how often each is picked.
TEMPLATES = {
    "05_breast_tangents_fif": 2,
    "06_four_field_box_3d": 3,
    "09_imrt_step_and_shoot_7f": 2,
    "10_imrt_sliding_window": 2,
    "12_dynamic_conformal_arcs": 1,
    "08_electron_cutout": 1,
    "vmat_178": 4,
}


def millennium_vmat(
    number: int, start: float, direction: str, seed: int, iso: tuple[float, float, float]
) -> object:
    """A VMAT arc on a Millennium 120 MLC with 178 control points."""
    rng = np.random.RandomState(seed)
    ncp = 178
    step = 358.0 / (ncp - 1) * (1.0 if direction == "CW" else -1.0)
    increments = rng.uniform(0.15, 3.0, ncp - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(increments) / increments.sum()])
    bounds = list(msd.MILLENNIUM_BOUNDS)
    centres = [(lo + hi) / 2 for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    y_jaw = 50.0
    states = []
    for k in range(ncp):
        gantry = round((start + step * k) % 360.0, 2)
        half = msd.bev_half_width(40.0, 35.0, gantry) + 3.0
        bank_a, bank_b = [], []
        for yc in centres:
            if abs(yc) >= y_jaw:
                bank_a.append(-5.0)
                bank_b.append(-5.0)
                continue
            w = half * math.sqrt(max(0.0, 1.0 - (yc / y_jaw) ** 2)) + 2.0
            a = -w + rng.uniform(0.0, 0.8) * w
            b = w - rng.uniform(0.0, 0.8) * w
            if b - a < 2.0:
                mid = (a + b) / 2
                a, b = mid - 1.0, mid + 1.0
            bank_a.append(round(a, 1))
            bank_b.append(round(b, 1))
        limits = {"ASYMX": [-60.0, 60.0], "ASYMY": [-y_jaw, y_jaw], "MLCX": bank_a + bank_b}
        weight = 1.0 if k == ncp - 1 else round(float(cumulative[k]), 5)
        states.append(
            msd.CP(
                gantry=gantry,
                weight=weight,
                limits=limits,
                iso=iso,
                ssd=900.0,
                gantry_dir=direction if k < ncp - 1 else "NONE",
            )
        )
    return msd.Beam(
        number,
        f"ARC{number}",
        f"VMAT arc {direction} {start:g}",
        states,
        310.0 + number,
        1.5,
        beam_type="DYNAMIC",
        machine="TrueBeam1",
        bounds=bounds,
        arc=True,
        force_mlc=True,
    )


def make_templates(work: Path) -> dict[str, dict[str, list[Dataset]]]:
    """Read each template case (and build the 178-point VMAT one) into memory."""
    msd.write_sample_data(work)
    out: dict[str, dict[str, list[Dataset]]] = {}
    for name in TEMPLATES:
        if name == "vmat_178":
            continue
        folder = work / name
        out[name] = {
            kind: [pydicom.dcmread(p) for p in sorted(folder.glob(f"{kind}*.dcm"))]
            for kind in ("CT", "RS", "RP", "RD")
        }
    # VMAT: the prostate case's CT, structures and dose with a Millennium 2-arc plan.
    base = out["06_four_field_box_3d"]
    plan = copy.deepcopy(base["RP"][0])
    iso = (0.0, 10.0, 0.0)
    del plan.BeamSequence
    del plan.FractionGroupSequence
    beams = [millennium_vmat(1, 181.0, "CW", 7001, iso), millennium_vmat(2, 179.0, "CC", 7002, iso)]
    plan = msd.add_beams(plan, beams, 28)
    plan.RTPlanLabel = "VMAT2A178"
    out["vmat_178"] = {"CT": base["CT"], "RS": base["RS"], "RP": [plan], "RD": base["RD"]}
    return out


class Renamer:
    """New UIDs for one patient, the same new UID wherever an old one is referenced."""

    def __init__(self, patient: int, seed: int):
        self.map: dict[str, str] = {}
        self.key = (seed, patient)

    def __call__(self, old: str) -> str:
        if old not in self.map:
            self.map[old] = msd.uid("archive", *self.key, old)
        return self.map[old]


def _rename(ds: Dataset, new_uid: Renamer) -> None:
    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for child in elem.value:
                    visit(child)
            elif (
                elem.VR == "UI"
                and elem.keyword
                not in (
                    "SOPClassUID",
                    "ReferencedSOPClassUID",
                    "MediaStorageSOPClassUID",
                    "TransferSyntaxUID",
                    "ImplementationClassUID",
                )
                and isinstance(elem.value, str)
                and elem.value
            ):
                elem.value = new_uid(elem.value)

    visit(ds)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def write_patient(
    out: Path,
    index: int,
    seed: int,
    templates: dict[str, dict[str, list[Dataset]]],
    ct_slices: int,
    ct_size: int,
) -> int:
    rng = np.random.default_rng([seed, index])
    names = list(TEMPLATES)
    weights = np.array([TEMPLATES[n] for n in names], dtype=float)
    count = int(rng.integers(1, 4))
    picks = rng.choice(len(names), size=count, replace=True, p=weights / weights.sum())
    folder = out / f"patient_{index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    patient_id = f"ARC-{seed}-{index:05d}"
    written = 0
    # The patient's CT and structure set come from the first pick that has them (an
    # electron plan on its own has neither), else from the four-field box case.
    with_ct = [templates[names[p]] for p in picks if templates[names[p]]["CT"]]
    first = with_ct[0] if with_ct else templates["06_four_field_box_3d"]
    new_uid = Renamer(index, seed)

    def save(ds: Dataset, name: str) -> None:
        nonlocal written
        ds = copy.deepcopy(ds)
        ds.PatientID = patient_id
        ds.PatientName = f"Archive^{index:05d}"
        _rename(ds, new_uid)
        msd.write_part10(ds, folder / name)
        written += 1

    # One planning CT and structure set per patient, from the first plan's template.
    ct0 = first["CT"][0]
    for k in range(ct_slices):
        ct = copy.deepcopy(ct0)
        ct.SOPInstanceUID = msd.uid("archive-ct", seed, index, k)
        ct.InstanceNumber = k + 1
        z = -2.5 * (ct_slices - 1) + 5.0 * k
        ct.ImagePositionPatient = msd.nums([-155.0, -155.0, z])
        ct.SliceLocation = msd.num(z)
        ct.Rows = ct.Columns = ct_size
        ct.PixelSpacing = msd.nums([320.0 / ct_size] * 2)
        pixels = (rng.normal(1024, 20, (ct_size, ct_size))).astype("<i2")
        ct.PixelData = pixels.tobytes()
        ct["PixelData"].VR = "OW"
        msd.write_part10(ct, folder / f"CT.{k + 1:04d}.dcm")  # keeps its own UID
        written += 1
    save(first["RS"][0], "RS.dcm")
    for n, pick in enumerate(picks, start=1):
        t = templates[names[pick]]
        plan = copy.deepcopy(t["RP"][0])
        plan.RTPlanLabel = f"{plan.RTPlanLabel}_{n}"
        # all of a patient's plans reference the patient's one structure set
        if "ReferencedStructureSetSequence" in plan:
            plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = first["RS"][
                0
            ].SOPInstanceUID
        plan_uid = new_uid(f"{plan.SOPInstanceUID}.{n}")  # a plan template may repeat
        plan.SOPInstanceUID = plan_uid
        save(plan, f"RP.{n}.dcm")
        for dose in t["RD"]:
            dose = copy.deepcopy(dose)
            dose.SOPInstanceUID = new_uid(f"{dose.SOPInstanceUID}.{n}")
            dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = plan_uid
            if n > 1 and "DVHSequence" in dose:  # doses with and without DVH
                del dose.DVHSequence
            save(dose, f"RD.{n}.dcm")
    return written


def make_archive(
    out: Path, patients: int, seed: int, ct_slices: int = 40, ct_size: int = 64
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        templates = make_templates(Path(tmp))
    total = 0
    for i in range(patients):
        total += write_patient(out, i, seed, templates, ct_slices, ct_size)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (created; emptied first)")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ct-slices", type=int, default=40, help="CT slices per patient")
    parser.add_argument("--ct-size", type=int, default=64, help="CT rows and columns")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    n = make_archive(args.out, args.patients, args.seed, args.ct_slices, args.ct_size)
    print(f"wrote {n} files for {args.patients} patients to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
