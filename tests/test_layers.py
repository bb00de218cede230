"""The lower pipeline steps never import the higher ones, not even inside a function,
and the coding and measuring steps keep their functions short enough to read.

Annotation-only imports under ``if TYPE_CHECKING:`` are allowed (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RTCODE = Path(__file__).resolve().parent.parent / "rtcode"

# What each step may import of rtcode (besides itself): the steps below it.
ALLOWED = {
    "model": set(),
    "link": {"model", "dicom"},
    "measure": {"model", "dicom", "link"},
    "coding": {"model", "dicom", "link", "measure"},
}
STEPS = ["model", "dicom", "link", "measure", "coding", "output", "engine", "sources"]


def _step(module_path: Path) -> str:
    rel = module_path.relative_to(RTCODE)
    return rel.parts[0].removesuffix(".py")


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import that runs: at any depth, outside TYPE_CHECKING."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _files(step: str) -> list[Path]:
    path = RTCODE / step
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


@pytest.mark.parametrize("step", sorted(ALLOWED))
def test_lower_steps_never_import_higher_ones(step):
    bad = []
    for path in _files(step):
        for line, module in _runtime_imports(ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] != "rtcode" or len(parts) < 2:
                continue
            target = parts[1]
            if target in STEPS and target != step and target not in ALLOWED[step]:
                bad.append(f"{path.relative_to(RTCODE.parent)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from rtcode.coding.policy import Policy\n"
        "def f():\n    from rtcode.coding.policy import load\n"
    )
    modules = [m for _, m in _runtime_imports(tree)]
    assert "rtcode.coding.policy.load" in modules
    assert "rtcode.coding.policy.Policy" not in modules


@pytest.mark.parametrize("step", ["coding", "measure"])
def test_no_function_in_coding_or_measuring_is_over_80_lines(step):
    long = []
    for path in _files(step):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
