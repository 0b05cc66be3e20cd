"""Every ```python block of README.md runs as written, in order, from an empty folder.

The blocks share one namespace (as when pasted one after the other into a notebook) and
run in a temporary working directory against the installed package, so a block that
relies on the repository's layout fails here.  A block may be skipped only with
``<!-- readme-test: skip REASON -->`` on the line before its fence.
"""

from __future__ import annotations

import re
import traceback
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"(<!-- readme-test: skip (?P<reason>.*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(text: str) -> list[tuple[int, int, str, str | None]]:
    """(block number, README line of its first code line, code, skip reason) for every ```python block."""
    return [(i, text.count("\n", 0, m.start("code")) + 1, m.group("code"), m.group("reason"))
            for i, m in enumerate(_FENCE.finditer(text), start=1)]


def test_block_extraction_sees_every_python_fence():
    text = README.read_text(encoding="utf-8")
    assert len(python_blocks(text)) == text.count("```python\n") >= 5
    sample = "x\n<!-- readme-test: skip slow -->\n```python\na = 1\n```\n```python\nb = 2\n```\n"
    assert python_blocks(sample) == [(1, 4, "a = 1\n", "slow"), (2, 7, "b = 2\n", None)]


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    from fedbench.disclosure import DisclosureRiskWarning

    monkeypatch.chdir(tmp_path)
    # The README's analyses are the ordinary path: none may trip the release policy (notebook 07 shows it firing).
    warnings.simplefilter("error", DisclosureRiskWarning)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    try:
        for number, first_line, code, skip in python_blocks(README.read_text(encoding="utf-8")):
            if skip:
                continue
            try:
                exec(compile(code, f"README.md block {number}", "exec"), namespace)
            except Exception as exc:
                tb = traceback.extract_tb(exc.__traceback__)
                frame = next((f for f in reversed(tb) if f.filename == f"README.md block {number}"), None)
                line = first_line + frame.lineno - 1 if frame and frame.lineno else first_line
                pytest.fail(f"README.md python block {number} failed at README line {line}: "
                            f"{type(exc).__name__}: {exc}")
            ran += 1
    finally:
        for value in list(namespace.values()):  # free worker pools and keys of the federations made
            close = getattr(value, "close", None)
            if type(value).__name__ == "Federation" and callable(close):
                close()
    assert ran >= 5
