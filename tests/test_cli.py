"""The headless demo and the README/CI contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fedbench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(capsys):
    assert main(["demo", "--key-bits", "512", "--insecure-small-keys", "--backend", "inprocess"]) == 0
    out = capsys.readouterr().out
    for needle in ("4 parties", "Secure statistics", "Histogram of 'age'", "Correlation matrix",
                   "largest relative difference", "aggregator received: ciphertexts (encrypted)",
                   "threat model", "Federated training", "federated", "centralized",
                   "normalised (NFKC, whitespace, case): 600 shared"):
        assert needle in out
    rel = float(re.search(r"against pooled data: ([0-9.e+-]+)", out).group(1))
    assert rel < 1e-6


def test_demo_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path), "--key-bits", "512", "--insecure-small-keys"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedbench: error: no data files") and err.count("\n") == 1


def test_demo_refuses_small_keys_without_opt_in(capsys):
    assert main(["demo", "--key-bits", "1024"]) == 2
    assert "not secure" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "fedbench.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = [line for b in blocks for line in b.splitlines() if line and not line.startswith("#")]
    main_job = next(c for c in commands if "fedbench demo" in c)
    assert main_job.startswith("pip install . && fedbench demo")
    assert "jupyter lab notebooks/01_quickstart.ipynb" in main_job
    test_cmd = next(c for c in commands if "pytest" in c)
    assert test_cmd in ci.splitlines(), "CI must run the README's test command verbatim"
