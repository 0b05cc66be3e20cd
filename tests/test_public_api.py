"""The top-level names and subpackages are reachable right after ``import fedbench``."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "expr",
    [
        "fb.dp.DPConfig",
        "fb.DPConfig",
        "fb.FitRun",
        "fb.PSIResult",
        "fb.PrivacyBudget",
        "fb.learn",
        "fb.psi.PSIResult",
        "fb.widgets.BudgetPanel",
        "fb.samples.sample_dir",
    ],
)
def test_name_resolves_in_a_fresh_interpreter(expr):
    # A fresh interpreter: nothing else has imported the submodule first.
    code = f"import fedbench as fb; print({expr})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_dpconfig_is_the_same_object_everywhere():
    import fedbench as fb
    from fedbench.dp import DPConfig

    assert fb.DPConfig is DPConfig is fb.dp.DPConfig


def test_unknown_attribute_still_raises():
    import fedbench as fb

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fb.nope  # noqa: B018


def test_import_stays_light():
    code = "import sys, fedbench; print(int(any(m in sys.modules for m in ('fedbench.dp', 'polars', 'sklearn'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "0"
