"""The headless demo and the README/CI contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fedbench as fb
from fedbench.cli import WIDTH, main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(capsys):
    assert main(["demo", "--key-bits", "512", "--insecure-small-keys", "--backend", "inprocess"]) == 0
    out = capsys.readouterr().out
    for needle in ("4 parties", "Secure statistics", "Histogram of 'age'", "Correlation matrix",
                   "largest relative difference", "aggregator received: ciphertexts (encrypted)",
                   "threat model", "Federated training", "federated", "centralized",
                   "normalised (NFKC, whitespace, case): 600 shared"):
        assert needle in out
    rel = float(re.search(r"against pooled data: below ([0-9.e+-]+)", out).group(1))
    assert rel <= 1e-6


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


_QUICK = ["demo", "--key-bits", "512", "--insecure-small-keys", "--backend", "inprocess"]


def test_demo_report_is_compact_and_identical_on_two_runs(capsys):
    assert main([*_QUICK, "--no-timings"]) == 0
    first = capsys.readouterr().out
    assert main([*_QUICK, "--no-timings"]) == 0
    second = capsys.readouterr().out
    assert first == second  # byte for byte: transcript rows sorted, no timing, no run-dependent figure
    lines = first.splitlines()
    assert max(len(line) for line in lines) <= WIDTH == 100
    assert first.count(fb.THREAT_MODEL.split(":")[0]) == 1  # the threat model is stated once
    assert "threat model:" in first and first.count("threat model") == 1
    assert "shape:" not in first and "…" not in first  # no polars shape lines, no cut tables
    assert " s\n" not in first and "done in" not in first  # no timing figure at all
    # The transcript summary lists every protocol the demo ran, each role once per protocol.
    summary = first.split("== Transcript")[1].split("== Private")[0]
    for protocol in ("stats", "histogram", "group_counts", "cov", "secure_sum", "fit"):
        assert f"│ {protocol} " in summary
    rows = [tuple(c.strip() for c in r.split("┆")[:2]) for r in summary.splitlines() if "┆" in r][1:]
    assert len(rows) == len(set(rows)) and [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_demo_prints_timings_by_default(capsys):
    assert main([*_QUICK, "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"key pair \(n = 512 bits\) in [0-9.]+ s", out)
    assert re.search(r"done in [0-9.]+ s", out)
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def test_version_prints_the_installed_distribution_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"fedbench {version('fedbench')}\n"
    out = subprocess.run([sys.executable, "-m", "fedbench.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"fedbench {version('fedbench')}"


def test_copy_samples_copies_every_scenario_and_never_overwrites(tmp_path, capsys):
    from fedbench.samples import SAMPLE_FILES

    dest = tmp_path / "data_samples"
    assert main(["demo", "--copy-samples", str(dest)]) == 0
    for kind, names in SAMPLE_FILES.items():
        for name in names:
            assert (dest / kind / name).read_bytes() == (fb.samples.path(kind) / name).read_bytes()
    assert (dest / "README.md").is_file()
    assert main(["demo", "--copy-samples", str(dest)]) == 0  # same bytes: nothing to do, no error
    (dest / "banks" / "bank_a.csv").write_text("my own edits\n")
    capsys.readouterr()
    assert main(["demo", "--copy-samples", str(dest)]) == 2
    assert "differ from the bundled samples" in capsys.readouterr().err
    assert (dest / "banks" / "bank_a.csv").read_text() == "my own edits\n"


def test_readme_command_1_says_what_to_add_as_root():
    readme = (ROOT / "README.md").read_text()
    main_job = next(line for line in readme.splitlines() if line.startswith("pip install . && fedbench demo"))
    # jupyter lab refuses to run as root without --allow-root: the same line must say so.
    assert "--allow-root" in main_job.split("#", 1)[1] and "root" in main_job.split("#", 1)[1]


def test_readme_quotes_the_demo_output_verbatim(capsys):
    readme = (ROOT / "README.md").read_text()
    quoted = re.search(r"<!-- demo-output -->\n```text\n(.*?)```", readme, flags=re.S)
    assert quoted, "README must show the demo's output in a ```text block after <!-- demo-output -->"
    assert main(["demo"]) == 0  # exactly what the README shows: 2048-bit keys, defaults
    out = capsys.readouterr().out

    def untimed(text: str) -> str:  # timing figures are the only thing allowed to differ
        return re.sub(r"\d+\.\d+ s\b", "<t> s", text).strip("\n")

    assert untimed(out) == untimed(quoted.group(1))
