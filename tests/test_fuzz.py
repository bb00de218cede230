"""A brief run of the reader's fuzz target (tests/fuzz_reader.py), when atheris is installed.

atheris ships Linux wheels; where it cannot be installed the test is skipped. For a
long run, see the fuzz target's docstring.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")

FUZZ_TARGET = Path(__file__).resolve().parent / "fuzz_reader.py"


def test_fuzz_the_reader_briefly(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ_TARGET),
            "-runs=120",
            "-seed=1",
            "-rss_limit_mb=1024",
            "-timeout=30",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        env={**os.environ, "RTCODE_FUZZ_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done 120 runs" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))
