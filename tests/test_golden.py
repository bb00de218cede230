"""The outputs users and scripts read stay byte-identical while code moves.

scripts/golden.py renders `scan --format json` of sample_data/ (and, when present, of
the real exports beside the project, kept as a hash only), `audit` of both sample
charge files in JSON and as a table, and `inspect --control-points --format json` of
every sample plan. A change that alters any of them on purpose regenerates
tests/golden/ with `python scripts/golden.py` and says why in its commit.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REALDATA, ROOT

_spec = importlib.util.spec_from_file_location("golden", ROOT / "scripts" / "golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(scope="module")
def rendered():
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        return dict(golden.outputs(REALDATA if REALDATA.is_dir() else None))


def test_every_sample_plan_has_an_inspect_golden(rendered):
    names = {n for n in rendered if n.startswith("inspect/")}
    assert len(names) == len(golden.sample_plans()) == len(list((GOLDEN / "inspect").iterdir()))


@pytest.mark.parametrize(
    "name",
    sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()),
)
def test_output_is_byte_identical_to_golden(rendered, name):
    if name == "scan_realdata.sha256" and not REALDATA.is_dir():
        pytest.skip(f"real exports not present at {REALDATA}")
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    assert rendered[name] == expected, (
        f"tests/golden/{name} differs from what rtcode renders now: if the change is "
        "intended, run `python scripts/golden.py` and say why in the commit"
    )
