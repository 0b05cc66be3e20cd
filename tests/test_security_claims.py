"""SECURITY.md names the test behind every protection it claims: those tests must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECURITY = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
REFS = sorted(set(re.findall(r"(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)", SECURITY)))


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_security_md_names_tests():
    assert len(REFS) >= 20


@pytest.mark.parametrize(("module", "name"), REFS)
def test_named_test_exists(module, name):
    path = ROOT / "tests" / module
    assert path.is_file(), f"SECURITY.md cites {module}, which does not exist"
    assert name in _tests_in(path), f"SECURITY.md cites {module}::{name}, which does not exist"


def test_readme_points_to_security_md():
    assert "SECURITY.md" in (ROOT / "README.md").read_text(encoding="utf-8")
