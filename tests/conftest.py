from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
REALDATA = ROOT.parent / "shared" / "realdata"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/builders.py


def _sample_plan_rows() -> list[list[str]]:
    """The cells of sample_data/README.md's table rows: one per plan file."""
    text = (SAMPLE_DATA / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows]


# What `rtcode scan sample_data` must find, counted from the sample README (one row per
# plan file; one patient per case folder), so that a new case changes one table only.
SAMPLE_PLANS = len(_sample_plan_rows())
SAMPLE_PATIENTS = len({row[0] for row in _sample_plan_rows()})


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real exports not present at {REALDATA} (they live beside the project)")
    return REALDATA


# Fixtures of module or session scope run before the per-test one below: they too
# must never touch the machine's own scan cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rtcode-tests-cache-")
os.environ["LOCALAPPDATA"] = os.environ["XDG_CACHE_HOME"]


@pytest.fixture(autouse=True)
def _private_scan_cache(tmp_path_factory, monkeypatch):
    """rtcode scan keeps a cache in the user's cache folder by default: tests get their
    own, empty, so that no test depends on (or writes to) the machine's."""
    home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setenv("LOCALAPPDATA", str(home))
    # the scan table takes its width from COLUMNS: tests compare tables of the default
    monkeypatch.delenv("COLUMNS", raising=False)


def undefined_lengths(ds) -> None:
    """Mark every sequence and item of a pydicom Dataset to be written with an
    undefined length (and delimiters), as many planning systems write them."""
    for element in ds.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
