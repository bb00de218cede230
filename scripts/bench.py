"""Benchmark rtcode against a naive pydicom reader and against reading the bytes.

    python scripts/bench.py [--patients 200] [--seed 1] [--archive DIR] [--jobs N] [--repeat 3]
        [--real [--files 2000] [--source ../shared/realdata]] [--formats jsonl,csv,table,json|all]
        [--no-naive] [--profile N]

The archive is synthetic by default: scripts/make_archive.py builds it (or DIR is
reused when it exists). With ``--real`` it is made of real exports instead:
scripts/make_real_archive.py copies every study of ``--source`` (third-party files
beside the project) about ``--files`` / (its file count) times, with new UIDs and
Patient IDs per copy, into the temporary folder (never into the project). Then it
times, on the same files and each in its own process:

- bytes:  reading every file's bytes (the floor);
- naive:  pydicom.dcmread of every file and element-by-element access of the facts
          rtcode extracts (beams, control points, leaf positions, ROIs, DVH refs);
          ``--no-naive`` skips it;
- cold:   rtcode scan --format F (each of ``--formats``, default jsonl) with an
          empty cache (a new process: start-up, imports and all);
- warm:   the same again, with the cache from the cold run.

Each measurement is repeated (``--repeat``, each time in a new process, cold with a
new empty cache) and the fastest run is kept, for every measurement alike: on a
shared machine a single run can be off by a factor of two or three (the bytes
baseline most of all). Prints each time (wall and CPU), files/s, plans/s and peak
memory, and the ratios the targets are stated in (cold/naive, cold/bytes, warm/cold
per format; warm json / warm jsonl). Timings are for this machine only.

``--profile N`` times nothing: it runs one cold ``--jobs 1`` scan (the first of
``--formats``) under cProfile and prints the time per pipeline step (reading and
extraction, linking, metrics, classification, rendering for the cache and for
output, cache, imports, other) and the top N functions by cumulative and own time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

Record = dict[str, Any]
Func = tuple[str, int, str]  # pstats' (file, line, function)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REALDATA = ROOT.parent / "shared" / "realdata"


def child_bytes(archive: str) -> Record:
    n = 0
    size = 0
    for dirpath, _, files in os.walk(archive):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                size += len(fh.read())
            n += 1
    return {"files": n, "bytes": size}


def child_naive(archive: str) -> Record:
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


def child_rtcode(archive: str, jobs: int | None, cache: str, fmt: str = "jsonl") -> Record:
    """The rtcode command as a user runs it (a new process: start-up and imports
    count), writing ``fmt`` into a file, as ``rtcode scan ... > results.jsonl`` does:
    a pipe would add the reading end's work (6 MB decoded for 200 patients) to
    rtcode's time. Files and plans are counted from the jsonl summary (None for the
    other formats)."""
    args = [sys.executable, "-m", "rtcode", "scan", archive, "--format", fmt, "--quiet"]
    args += ["--cache", cache] + (["--jobs", str(jobs)] if jobs is not None else [])
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"rtcode scan failed ({done.returncode}):\n{done.stderr}")
        if fmt != "jsonl":
            return {"files": None, "plans": None}
        out.seek(max(0, out.seek(0, os.SEEK_END) - 65536))
        summary = json.loads(out.read().decode("utf-8", "replace").splitlines()[-1])
    return {"files": summary["files_seen"], "plans": summary["plans"]}


def run_child(kind: str, archive: str, extra: list[str]) -> Record:
    """Run one measurement in a fresh process; return its result, wall and CPU time (its
    own and its children's, the measured call only) and peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import bench\n"
        "def cpu():\n"
        "    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, "
        "resource.RUSAGE_CHILDREN))\n"
        "    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime\n"
        "c, t = cpu(), time.perf_counter()\n"
        f"r = bench.child_{kind}(*{[archive, *extra]!r})\n"
        "r['seconds'] = time.perf_counter() - t\n"
        "r['cpu'] = cpu() - c\n"
        "r['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "r['peak_children_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr}")
    result: Record = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def child_profile(archive: str, fmt: str, cache: str, stats: str) -> Record:
    """One cold ``rtcode scan --jobs 1`` in this process under cProfile (imports
    included), its output into a file; the statistics go to ``stats``."""
    import cProfile

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 1)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            from rtcode.cli import main

            args = ["scan", archive, "--format", fmt, "--quiet", "--jobs", "1", "--cache", cache]
            main(args, standalone_mode=False)
        finally:
            profiler.disable()
            sys.stdout.flush()
            os.dup2(saved, 1)
    profiler.dump_stats(stats)
    return {"files": None}


# The steps a cold scan's time is shared between. A function's own time goes to the
# step of its file under rtcode/; the time of code outside those files (pydicom,
# numpy, pickle, sqlite3, rtcode/model's helpers, rtcode/output's renderers) goes to
# the steps of its callers, in proportion to the time each call took. Renderers that
# the engine calls render for the cache; those the command calls, for output.
STEPS = {
    "dicom/": "reading and extraction",
    "link.py": "linking",
    "measure/": "metrics",
    "coding/": "classification",
    "engine/cache.py": "cache reads and writes",
    "cli/": "rendering for output",
}
CACHE = STEPS["engine/cache.py"]
CACHE_WORK = {"_dumps", "_summary", "_cache_key", "_whole", "_result_key", "_loads", "unpickle"}
RENDER_CACHE = "rendering for the cache"
IMPORTS = "imports (start-up)"
OTHER = "other (walk, engine, executor)"
INHERITED = ("output/", "model/")


def _where(func: Func) -> str:
    """file:function, the file relative to rtcode's, site-packages' or the standard
    library's folder."""
    path, _, name = func
    if "/rtcode/" in path:
        path = "rtcode/" + path.rsplit("/rtcode/", 1)[1]
    else:
        path = re.split(r"/site-packages/|/lib/python3\.\d+/", path)[-1]
    return f"{path}:{name}"


def step_shares(stats: dict[Func, Any]) -> dict[str, float]:
    """Seconds per step, from pstats' table {func: (cc, nc, self, cumulative, callers)}.
    The caller walk recurses as deep as the call graph: the recursion limit is raised
    for it and restored after (it is the whole process's)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        return _step_shares(stats)
    finally:
        sys.setrecursionlimit(limit)


def _step_shares(stats: dict[Func, Any]) -> dict[str, float]:
    package = str(ROOT / "rtcode") + os.sep
    memo: dict[Func, dict[str, float]] = {}

    def own(func: Func) -> str | None:
        path, _, name = func
        if path.startswith("<frozen importlib") or name == "<module>":
            return IMPORTS
        if not path.startswith(package):
            return None
        rel = path[len(package) :]
        if rel.startswith(INHERITED):
            return None
        if rel.startswith("engine/") and name in CACHE_WORK:
            return CACHE
        return next((step for prefix, step in STEPS.items() if rel.startswith(prefix)), OTHER)

    def shares(func: Func, seen: frozenset[Func]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        step = own(func)
        if step is not None:
            memo[func] = {step: 1.0}
            return memo[func]
        mixed: dict[str, float] = {}
        for caller, edge in stats.get(func, (0, 0, 0, 0, {}))[4].items():
            if caller in seen:
                continue
            weight = edge[3] or edge[2] or 1e-9
            for name, part in shares(caller, seen | {func}).items():
                mixed[name] = mixed.get(name, 0.0) + weight * part
        total = sum(mixed.values())
        result = {k: v / total for k, v in mixed.items()} if total else {OTHER: 1.0}
        if func[0].startswith(package + "output/"):
            result = {(RENDER_CACHE if k == OTHER else k): v for k, v in result.items()}
        memo[func] = result
        return result

    seconds: dict[str, float] = {}
    for func, (_, _, self_time, _, _) in stats.items():
        for name, part in shares(func, frozenset()).items():
            seconds[name] = seconds.get(name, 0.0) + self_time * part
    return seconds


def profile(archive: Path, fmt: str, top: int) -> None:
    """Profile one cold --jobs 1 scan in a new process; print the time per step and
    the top functions by cumulative and by own time."""
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        stats_path = str(Path(tmp) / "scan.prof")
        extra = [fmt, str(Path(tmp) / "cache.sqlite"), stats_path]
        wall = run_child("profile", str(archive), extra)["seconds"]
        stats = pstats.Stats(stats_path)
    table = stats.stats  # type: ignore[attr-defined]  # pstats keeps it undocumented
    total = sum(v[2] for v in table.values())
    print(f"cold scan --jobs 1 --format {fmt} of {archive} under cProfile: {wall:.1f} s wall, "
          f"{total:.1f} s profiled (cProfile slows Python calls: shares, not seconds)")  # fmt: skip
    for name, sec in sorted(step_shares(table).items(), key=lambda kv: -kv[1]):
        print(f"  {name:32} {sec:7.2f} s {100 * sec / total:5.1f} %")
    ours = {f: row for f, row in table.items() if "/rtcode/" in f[0]}
    for title, rows, column in (
        ("rtcode's functions by cumulative", ours, 3),
        ("all functions by own", table, 2),
    ):
        print(f"top {top} {title} time (s, % of profiled; calls; file:function)")
        ranked = sorted(rows.items(), key=lambda kv: -kv[1][column])[:top]
        for func, row in ranked:
            share = 100 * row[column] / total
            print(f"  {row[column]:7.2f} {share:5.1f} % {row[1]:9d}  {_where(func)}")


FORMATS = ("jsonl", "csv", "table", "json")


def _archive(args: argparse.Namespace) -> Path:
    """The archive to time: reused when the folder exists, else built."""
    if args.real:
        archive = args.archive or Path(tempfile.gettempdir()) / (
            f"rtcode-real-archive-{args.files}-{args.seed}"
        )
        build = [str(HERE / "make_real_archive.py"), "--files", str(args.files),
                 "--source", str(args.source)]  # fmt: skip
    else:
        archive = args.archive or Path(tempfile.gettempdir()) / (
            f"rtcode-archive-{args.patients}-{args.seed}"
        )
        build = [str(HERE / "make_archive.py"), "--patients", str(args.patients)]
    if not archive.exists():
        build += ["--seed", str(args.seed), str(archive)]
        subprocess.run([sys.executable, *build], check=True)
    return archive


def _formats(text: str) -> list[str]:
    chosen = list(FORMATS) if text == "all" else [f.strip() for f in text.split(",")]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise SystemExit(f"--formats: {unknown or text!r} not among {', '.join(FORMATS)}, all")
    return chosen


def _time(archive: Path, args: argparse.Namespace, formats: list[str]) -> None:
    runs: dict[str, list[Record]] = {"bytes": []}
    if not args.no_naive:
        runs["naive"] = []
    for fmt in formats:
        runs[f"cold {fmt}"], runs[f"warm {fmt}"] = [], []
    for _ in range(max(1, args.repeat)):
        runs["bytes"].append(run_child("bytes", str(archive), []))
        if not args.no_naive:
            runs["naive"].append(run_child("naive", str(archive), []))
        for fmt in formats:
            with tempfile.TemporaryDirectory() as tmp:
                extra = [args.jobs, str(Path(tmp) / "cache.sqlite"), fmt]
                runs[f"cold {fmt}"].append(run_child("rtcode", str(archive), extra))
                runs[f"warm {fmt}"].append(run_child("rtcode", str(archive), extra))
    results = {name: min(r, key=lambda x: x["seconds"]) for name, r in runs.items()}
    files = results["bytes"]["files"]
    plans = next((r["plans"] for r in results.values() if r.get("plans")), None)
    print(f"archive {archive}: {files} files, "
          f"{results['bytes']['bytes'] / 1e6:.0f} MB; {platform.machine()}, {os.cpu_count()} cores,"
          f" Python {platform.python_version()}; --jobs {args.jobs or 'default'}")  # fmt: skip
    print(
        f"fastest of {max(1, args.repeat)} runs each; all runs (s): "
        + "; ".join(
            f"{name} " + " ".join(f"{r['seconds']:.2f}" for r in rs) for name, rs in runs.items()
        )
    )
    print(f"{'run':11} {'seconds':>8} {'cpu s':>7} {'files/s':>9} {'plans/s':>8} {'peak MB':>8}")
    for name, r in results.items():
        # peak memory: the highest of all runs, not the fastest run's
        peak = max(max(x["peak_mb"], x.get("peak_children_mb", 0)) for x in runs[name])
        plan_rate = f"{plans / r['seconds']:8.1f}" if plans and name != "bytes" else f"{'-':>8}"
        print(f"{name:11} {r['seconds']:8.2f} {r['cpu']:7.2f} {files / r['seconds']:9.0f} "
              f"{plan_rate} {peak:8.0f}")  # fmt: skip
    # The ratios of wall times (the targets' terms), then of the same runs' CPU times:
    # on a machine shared with other work the CPU ratio is the steadier one.
    seconds = {name: r["seconds"] for name, r in results.items()}
    cpu = {name: r["cpu"] for name, r in results.items()}
    for fmt in formats:
        cold, warm = f"cold {fmt}", f"warm {fmt}"
        if "naive" in seconds:
            print(f"cold/naive  {fmt:5} {seconds[cold] / seconds['naive']:.3f} (target <= 0.1)")
        print(f"cold/bytes  {fmt:5} {seconds[cold] / seconds['bytes']:.1f} (target <= 20)"
              f"; cpu {cpu[cold] / cpu['bytes']:.1f}")  # fmt: skip
        target = "" if fmt == "json" else " (target <= 0.05)"
        print(f"warm/cold   {fmt:5} {seconds[warm] / seconds[cold]:.3f}{target}"
              f"; cpu {cpu[warm] / cpu[cold]:.3f}")  # fmt: skip
    if "json" in formats and "jsonl" in formats:
        ratio = seconds["warm json"] / seconds["warm jsonl"]
        print(f"warm json / warm jsonl {ratio:.2f} (target <= 1.5)"
              f"; cpu {cpu['warm json'] / cpu['warm jsonl']:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200, help="synthetic archive's size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real", action="store_true", help="copies of real exports instead")
    parser.add_argument("--files", type=int, default=2000, help="with --real: about this many")
    parser.add_argument("--source", type=Path, default=REALDATA, help="with --real: the exports")
    parser.add_argument("--archive", type=Path, help="reuse or create the archive here")
    parser.add_argument("--jobs", type=int, default=None, help="rtcode --jobs (default: its own)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest is kept")
    parser.add_argument("--formats", default="jsonl", help="comma-separated scan formats, or all")
    parser.add_argument("--no-naive", action="store_true", help="skip the pydicom baseline")
    parser.add_argument(
        "--profile", type=int, metavar="N", default=0,
        help="instead of timing: profile one cold --jobs 1 scan, show the top N functions",
    )  # fmt: skip
    args = parser.parse_args(argv)
    formats = _formats(args.formats)
    archive = _archive(args)
    if args.profile:
        profile(archive, formats[0], args.profile)
    else:
        _time(archive, args, formats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
