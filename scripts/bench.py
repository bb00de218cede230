"""Benchmark rtcode against a naive pydicom reader and against reading the bytes.

    python scripts/bench.py [--patients 200] [--seed 1] [--archive DIR] [--jobs N] [--repeat 3]

Builds the synthetic archive with scripts/make_archive.py (or reuses DIR when it
exists), then times, on the same files and each in its own process:

- bytes:  reading every file's bytes (the floor);
- naive:  pydicom.dcmread of every file and element-by-element access of the facts
          rtcode extracts (beams, control points, leaf positions, ROIs, DVH refs);
- cold:   rtcode scan --format jsonl with an empty cache (a new process: start-up,
          imports and all);
- warm:   the same again, with the cache from the cold run.

Each measurement is repeated (``--repeat``, each time in a new process, cold with a
new empty cache) and the fastest run is kept, for every measurement alike: on a
shared machine a single run can be off by a factor of two or three (the bytes
baseline most of all). Prints each time, files/s, plans/s and peak memory, and the
ratios the targets are stated in (cold/naive, cold/bytes, warm/cold). Timings are
for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child_bytes(archive: str) -> dict:
    n = 0
    size = 0
    for dirpath, _, files in os.walk(archive):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                size += len(fh.read())
            n += 1
    return {"files": n, "bytes": size}


def child_naive(archive: str) -> dict:
    """What a straightforward script does: read everything, touch every value."""
    import pydicom

    files = plans = 0
    for dirpath, _, names in os.walk(archive):
        for name in sorted(names):
            files += 1
            try:
                ds = pydicom.dcmread(os.path.join(dirpath, name), force=True)
            except Exception:
                continue
            modality = ds.get("Modality")
            if modality == "RTPLAN":
                plans += 1
                total = 0.0
                for beam in ds.get("BeamSequence", []):
                    _ = (beam.BeamNumber, beam.get("BeamName"), beam.get("BeamType"))
                    for cp in beam.get("ControlPointSequence", []):
                        total += float(cp.get("CumulativeMetersetWeight", 0) or 0)
                        total += float(cp.get("GantryAngle", 0) or 0)
                        for dev in cp.get("BeamLimitingDevicePositionSequence", []):
                            total += sum(float(v) for v in dev.LeafJawPositions)
                for fg in ds.get("FractionGroupSequence", []):
                    for ref in fg.get("ReferencedBeamSequence", []):
                        total += float(ref.get("BeamMeterset", 0) or 0)
            elif modality == "RTSTRUCT":
                _ = [(r.ROINumber, r.ROIName) for r in ds.get("StructureSetROISequence", [])]
                _ = [o.get("RTROIInterpretedType") for o in ds.get("RTROIObservationsSequence", [])]
            elif modality == "RTDOSE":
                _ = [
                    d.DVHReferencedROISequence[0].ReferencedROINumber
                    for d in ds.get("DVHSequence", [])
                ]
    return {"files": files, "plans": plans}


def child_rtcode(archive: str, jobs: int | None, cache: str) -> dict:
    """The rtcode command as a user runs it (a new process: start-up and imports
    count), streaming one JSON line per plan (jsonl, the format for big archives)
    into a file, as ``rtcode scan ... > results.jsonl`` does: a pipe would add the
    reading end's work (6 MB decoded for 200 patients) to rtcode's time."""
    args = [sys.executable, "-m", "rtcode", "scan", archive, "--format", "jsonl", "--quiet"]
    args += ["--cache", cache] + (["--jobs", str(jobs)] if jobs is not None else [])
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"rtcode scan failed ({done.returncode}):\n{done.stderr}")
        out.seek(max(0, out.seek(0, os.SEEK_END) - 65536))
        summary = json.loads(out.read().decode("utf-8", "replace").splitlines()[-1])
    return {"files": summary["files_seen"], "plans": summary["plans"]}


def run_child(kind: str, archive: str, extra: list[str]) -> dict:
    """Run one measurement in a fresh process; return its result, wall time and peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import bench\n"
        "t = time.perf_counter()\n"
        f"r = bench.child_{kind}(*{[archive, *extra]!r})\n"
        "r['seconds'] = time.perf_counter() - t\n"
        "r['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "r['peak_children_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--archive", type=Path, help="reuse or create the archive here")
    parser.add_argument("--jobs", type=int, default=None, help="rtcode --jobs (default: its own)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest is kept")
    args = parser.parse_args(argv)
    archive = (
        args.archive or Path(tempfile.gettempdir()) / f"rtcode-archive-{args.patients}-{args.seed}"
    )
    if not archive.exists():
        subprocess.run(
            [sys.executable, str(HERE / "make_archive.py"), "--patients", str(args.patients),
             "--seed", str(args.seed), str(archive)],
            check=True,
        )  # fmt: skip
    runs: dict[str, list[dict]] = {"bytes": [], "naive": [], "cold": [], "warm": []}
    for _ in range(max(1, args.repeat)):
        runs["bytes"].append(run_child("bytes", str(archive), []))
        runs["naive"].append(run_child("naive", str(archive), []))
        with tempfile.TemporaryDirectory() as tmp:
            cache = str(Path(tmp) / "cache.sqlite")
            runs["cold"].append(run_child("rtcode", str(archive), [args.jobs, cache]))
            runs["warm"].append(run_child("rtcode", str(archive), [args.jobs, cache]))
    results = {name: min(r, key=lambda x: x["seconds"]) for name, r in runs.items()}
    print(f"archive {archive}: {results['bytes']['files']} files, "
          f"{results['bytes']['bytes'] / 1e6:.0f} MB; {platform.machine()}, {os.cpu_count()} cores,"
          f" Python {platform.python_version()}")  # fmt: skip
    print(
        f"fastest of {max(1, args.repeat)} runs each; all runs (s): "
        + "; ".join(
            f"{name} " + " ".join(f"{r['seconds']:.2f}" for r in rs) for name, rs in runs.items()
        )
    )
    print(f"{'run':6} {'seconds':>8} {'files/s':>9} {'plans/s':>8} {'peak MB':>8}")
    for name, r in results.items():
        # peak memory: the highest of all runs, not the fastest run's
        peak = max(max(x["peak_mb"], x.get("peak_children_mb", 0)) for x in runs[name])
        plans = r.get("plans")
        plan_rate = f"{plans / r['seconds']:8.1f}" if plans else f"{'-':>8}"
        print(
            f"{name:6} {r['seconds']:8.2f} {r['files'] / r['seconds']:9.0f} {plan_rate} {peak:8.0f}"
        )
    cold, warm = results["cold"]["seconds"], results["warm"]["seconds"]
    print(f"cold/naive {cold / results['naive']['seconds']:.3f} (target <= 0.1)")
    print(f"cold/bytes {cold / results['bytes']['seconds']:.1f} (target <= 20)")
    print(f"warm/cold  {warm / cold:.3f} (target <= 0.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
