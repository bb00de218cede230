"""Write (or check) the golden outputs that keep a refactor honest.

The outputs a user and a downstream script see must not change when code moves:
`rtcode scan --format json` of sample_data/ and of the real exports beside the
project, `rtcode audit` of the sample charges, and `rtcode inspect --control-points
--format json` of every sample plan. This script renders them in-process (click's
CliRunner, from the project root, so paths are relative) and writes them to
tests/golden/. The real exports are third-party data: only the SHA-256 of their scan
is kept, never the output itself.

    python scripts/golden.py           # rewrite tests/golden/ (after an intended change)
    python scripts/golden.py --check   # exit 1 and list what differs

tests/test_golden.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SAMPLE = "sample_data"
REALDATA = ROOT.parent / "shared" / "realdata"


def _run(args: list[str]) -> str:
    from click.testing import CliRunner

    from rtcode.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    if result.exit_code not in (0, 1, 4):
        raise RuntimeError(f"rtcode {' '.join(args)} exited {result.exit_code}: {result.output}")
    return result.stdout


def sample_plans() -> list[str]:
    """Every plan file of the sample README's table, relative to the project root."""
    text = (ROOT / SAMPLE / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [f"{SAMPLE}/{row.strip('|').split('|')[1].strip()}" for row in rows]


def outputs(realdata: Path | None = REALDATA) -> Iterator[tuple[str, str]]:
    """(golden file name, text) for every golden output; the real exports as a hash."""
    scan = ["scan", "--format", "json", "--no-cache", "--quiet"]
    yield "scan_sample_data.json", _run([*scan, SAMPLE])
    for charges in ("charges_clean.csv", "charges_planted.csv"):
        for fmt in ("json", "table"):
            args = ["audit", SAMPLE, "--charges", f"{SAMPLE}/{charges}", "--format", fmt]
            args += ["--ptp", f"{SAMPLE}/ptp_synthetic.txt"]
            yield f"audit_{Path(charges).stem}.{fmt}", _run(args)
    for plan in sample_plans():
        name = plan.removeprefix(f"{SAMPLE}/").replace("/", "__")
        yield (
            f"inspect/{name}.json",
            _run(["inspect", plan, "--control-points", "--format", "json"]),
        )
    if realdata is not None and realdata.is_dir():
        text = _run([*scan, os.path.relpath(realdata, ROOT)])
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        yield "scan_realdata.sha256", digest + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    differ = []
    for name, text in outputs():
        path = GOLDEN / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                differ.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name in differ:
        print(f"differs: tests/golden/{name}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
