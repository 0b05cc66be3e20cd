"""Binder: repo2docker must pick Python 3.11 and install the repository itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_binder_files():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    # The repository itself, with TenSEAL so that tutorial 02 compares CKKS on Binder too.
    assert "-e .[ckks]" in (ROOT / "binder" / "requirements.txt").read_text().splitlines()


def test_repo2docker_dockerfile():
    exe = shutil.which("jupyter-repo2docker")
    assert exe, "jupyter-repo2docker is part of the test extras"
    out = subprocess.run([exe, "--no-build", "--debug", str(ROOT)], capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    assert "python=3.11" in text
    dockerfile = out.stdout
    copy_all = dockerfile.index("COPY --chown=0:0 src/ ${REPO_DIR}/")
    install = dockerfile.index('pip install --no-cache-dir -r "binder/requirements.txt"')
    assert install > copy_all, "the repository must be copied before '-e .' installs it"
