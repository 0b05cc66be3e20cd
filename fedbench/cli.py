"""Command line: ``fedbench demo`` runs the end-to-end scenario headless and prints a compact report.

The report is deterministic: the same data, key size and backend print the same
text on every run, apart from the timing figures, which ``--no-timings`` leaves
out (so two runs can be compared byte for byte).  Every line fits in 100 columns.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["WIDTH", "main"]

#: Widest line the demo prints.
WIDTH = 100

_DEMO_COLUMNS = ["age", "mean_radius", "mean_texture", "mean_area", "worst_concave_points"]
# Receivers that are roles; every other receiver is a party, summarised as one row per kind.
_ROLES = ("aggregator", "keyholder", "analyst", "coordinator")


def _version() -> str:
    """The installed distribution's version; the package's own when run from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedbench")
    except PackageNotFoundError:
        from fedbench import __version__

        return __version__


class _Report:
    """Prints the demo's lines: wrapped to :data:`WIDTH`, timings only when asked."""

    def __init__(self, timings: bool) -> None:
        self.timings = timings

    def line(self, text: str = "", *, indent: str = "") -> None:
        for para in text.splitlines() or [""]:
            print(textwrap.fill(para, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")
                  if len(indent + para) > WIDTH else indent + para)

    def section(self, title: str) -> None:
        print(f"\n== {title} ==")

    def took(self, seconds: float) -> str:
        """`` in 1.23 s`` with timings on, else nothing."""
        return f" in {seconds:.2f} s" if self.timings else ""

    def table(self, df: Any, **fmt: Any) -> None:
        """A polars table without its shape line or dtype row, never cut, within WIDTH columns."""
        import polars as pl

        options = {"tbl_hide_dataframe_shape": True, "tbl_hide_column_data_types": True,
                   "tbl_rows": -1, "tbl_cols": -1, "tbl_width_chars": WIDTH,
                   "tbl_formatting": "UTF8_FULL_CONDENSED", "fmt_str_lengths": 40, **fmt}
        with pl.Config(**options):
            print(df)


def _frame(result: Any) -> Any:
    """A statistics result as a polars DataFrame (results may be DataFrames or objects with ``to_polars``)."""
    return result.to_polars() if hasattr(result, "to_polars") else result


def _transcript_summary(transcript: Any) -> Any:
    """Messages and bytes per protocol and receiving role (the parties count as one role, "parties")."""
    import polars as pl

    df = transcript.to_polars()
    role = pl.when(pl.col("receiver").is_in(list(_ROLES))).then(pl.col("receiver")).otherwise(pl.lit("parties"))
    order = {r: i for i, r in enumerate(["parties", *_ROLES])}
    return (
        df.with_columns(role.alias("received by"))
        .group_by(["protocol", "received by"])
        .agg(pl.len().alias("messages"), pl.col("nbytes").sum().alias("bytes"),
             pl.col("nbytes").filter(pl.col("encrypted")).sum().alias("encrypted"))
        .with_columns(pl.col("received by").replace_strict(order, return_dtype=pl.Int64).alias("_order"),
                      (100 * pl.col("encrypted") / pl.col("bytes").clip(1)).round(0).cast(pl.Int64)
                      .cast(pl.String).add(pl.lit("%")).alias("encrypted"))
        .sort(["protocol", "_order"])
        .drop("_order")
    )


def demo(data: Path | None, key_bits: int, backend: str, insecure: bool, verify: bool,
         timings: bool = True) -> int:
    """Run the four-hospital scenario and print what each step computed and cost.

    Parameters
    ----------
    data : Path, optional
        Folder with one data file per party; default: the bundled hospitals.
    key_bits : int
        Paillier key size.
    backend : str
        ``"inprocess"`` or ``"process"``.
    insecure : bool
        Allow key sizes below 2048 bits.
    verify : bool
        Compare the secure statistics with the pooled plaintext (a simulation check).
    timings : bool, default True
        Print timing figures; without them two runs print identical text.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    import polars as pl

    import fedbench as fb
    from fedbench.samples import sample_dir

    out = _Report(timings)
    folder = data if data is not None else sample_dir("hospitals")
    where = str(folder) if data is not None else "the bundled samples (fb.samples.path('hospitals'))"
    t_start = time.perf_counter()
    with fb.Federation.from_dir(folder, key_bits=key_bits, backend=backend, allow_insecure_key_size=insecure,
                                audit=True) as fed:
        out.line(f"fedbench {_version()} demo: {len(fed)} parties from {where}")
        out.line(f"crypto: {key_bits}-bit Paillier (phe + gmpy2), DJN fast encryption; backend: {fed.backend.name}")
        for p in fed:
            out.line(f"  {p.name:<8} {p.n_rows:>5} rows x {len(p.columns)} columns")
        rep = fed.schema
        out.line(f"schema: {len(rep.shared)} shared columns, {len(rep.conflicts)} kind conflicts")
        out.line(f"threat model: {fb.THREAT_MODEL}")

        t0 = time.perf_counter()
        keys = fed.keys
        out.line(f"key holder generated its key pair (n = {keys.key_bits} bits){out.took(time.perf_counter() - t0)}")

        columns = [c for c in _DEMO_COLUMNS if c in rep.shared] or rep.shared[:4]
        out.section("Secure statistics (two rounds: sums, then squared deviations)")
        table = _frame(fed.stats(columns))
        out.table(table.select("column", "count", "nulls", "mean", "std", "parties"), float_precision=4)

        if "age" in rep.shared:
            out.section("Fixed-bin histogram of age (bins declared up front)")
            # Above 80 the decades hold fewer than five patients: one wide top bin keeps every cell at five or
            # more, as the release policy asks of exact counts (min_group_size).
            hist = fed.histogram("age", [20, 30, 40, 50, 60, 70, 80, 100])
            out.line(f"Histogram of 'age' over {', '.join(hist.parties)}")
            peak = max(1, int(hist.counts.max()))
            for lo, hi, c in zip(hist.edges[:-1], hist.edges[1:], hist.counts, strict=True):
                out.line(f"  [{lo:>3g}, {hi:>3g}) {int(c):>5d} {'#' * round(40 * int(c) / peak)}")
            out.line(f"  below: {hist.below}, above: {hist.above}, nulls: {hist.nulls}")

        if "diagnosis" in rep.shared:
            out.section("Diagnosis counts per referral route (group counts)")
            by = ["referral", "diagnosis"] if "referral" in rep.shared else ["diagnosis"]
            out.table(_frame(fed.group_counts(by)).sort(by))

        corr_cols = [c for c in ("mean_radius", "mean_area", "worst_concave_points", "age") if c in rep.shared]
        if len(corr_cols) >= 2:
            out.section("Correlation matrix (complete cases)")
            out.table(_frame(fed.corr(corr_cols)), float_precision=3)

        out.section("Secure sum of a function run inside each party")
        res = fed.secure_sum(
            lambda df: {"malignant": float(df["diagnosis"].sum()), "patients": float(df.height)}
            if "diagnosis" in df.columns else {"patients": float(df.height)}
        )
        out.line(", ".join(f"{k} = {float(v):g}" for k, v in sorted(res.value.items())))
        out.line(f"  {res.ciphertexts} ciphertexts, {res.nbytes / 1000:.1f} kB{out.took(res.elapsed)}; "
                 "exact release (not differentially private)")

        if verify:
            out.section("Simulation check: the same numbers on pooled plaintext (impossible in real life)")

            def demo_columns(df: pl.DataFrame) -> pl.DataFrame:
                return df.select(columns)

            pooled = pl.concat([p.compute(demo_columns) for p in fed], how="vertical_relaxed")
            worst = 0.0
            for row in table.iter_rows(named=True):
                s = pooled[row["column"]].drop_nulls()
                worst = max(worst, abs(row["mean"] - s.mean()) / max(1.0, abs(s.mean())),
                            abs(row["std"] - s.std()) / max(1.0, abs(s.std())))
            # An upper bound, not the raw figure: the exact rounding residue is not part of a stable report.
            bound = next(b for b in (1e-12, 1e-9, 1e-6, 1e-3, 1.0, float("inf")) if worst <= b)
            out.line(f"largest relative difference of mean/std against pooled data: below {bound:.0e}")

        if "diagnosis" in rep.shared:
            out.section("Federated training: imputer + scaler + logistic regression (Newton on secure sums)")
            from sklearn.impute import SimpleImputer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            run = fed.fit(make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
                          target="diagnosis", test_size=0.3, seed=0)
            out.table(run.compare().select("model", "score"), float_precision=4)

        out.section("Transcript: what crossed which boundary")
        t = fed.transcript
        enc = sum(m.nbytes for m in t if m.encrypted)
        out.line(f"{len(t)} messages, {t.nbytes / 1000:.1f} kB in all, {enc / max(1, t.nbytes):.0%} of bytes "
                 "encrypted; per protocol and receiving role:")
        to_agg = {(m.kind, m.encrypted) for m in t if m.receiver == "aggregator"}
        out.line("aggregator received: " + ", ".join(f"{k} ({'encrypted' if e else 'public metadata'})"
                                                     for k, e in sorted(to_agg)))
        out.table(_transcript_summary(t))

    banks = sample_dir("banks") if data is None else None
    if banks is not None:
        out.section("Private set intersection: two banks, customers matched on name and date of birth")
        with fb.Federation.from_dir(banks, key_bits=key_bits, backend=backend,
                                    allow_insecure_key_size=insecure) as bfed:
            on = ["first_name", "last_name", "dob"]
            raw = bfed.intersect(on=on, mode="cardinality")
            clean = bfed.intersect(on=on, mode="cardinality", normalize="standard")
            out.line(f"raw strings: {raw.size} shared; normalised (NFKC, whitespace, case): {clean.size} shared")
            sizes = ", ".join(f"{k} {v:,}" for k, v in sorted(clean.set_sizes.items()))
            out.line(f"set sizes: {sizes}; {clean.nbytes / 1000:.1f} kB exchanged{out.took(clean.elapsed)}")
            out.line(f"leakage: {clean.leakage}")
    if timings:
        out.line(f"\ndone in {time.perf_counter() - t_start:.1f} s")
    return 0


def _copy_samples(dest: Path) -> int:
    from fedbench.samples import copy_samples

    files = copy_samples(dest)
    for f in files:
        print(f)
    print(f"copied {len(files)} sample files into {dest}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedbench`` console command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a fedbench error (printed as one line).
    """
    parser = argparse.ArgumentParser(prog="fedbench", description="Privacy-preserving collaborative analytics.")
    parser.add_argument("--version", action="version", version=f"fedbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the end-to-end scenario on the bundled data_samples/ and print results")
    d.add_argument("--data", type=Path, default=None,
                   help="folder with one data file per party (default: the bundled hospitals)")
    d.add_argument("--key-bits", type=int, default=2048, help="Paillier key size in bits (default 2048)")
    d.add_argument("--backend", default="process", choices=["inprocess", "process"],
                   help="where encryption runs (default: process pool over every core)")
    d.add_argument("--insecure-small-keys", action="store_true",
                   help="allow key sizes below 2048 bits (quick experiments only)")
    d.add_argument("--no-verify", action="store_true", help="skip the pooled-plaintext simulation check")
    d.add_argument("--no-timings", action="store_true",
                   help="leave out timing figures, so that two runs print identical text")
    d.add_argument("--copy-samples", type=Path, metavar="DIR", default=None,
                   help="copy the bundled sample data into DIR (hospitals/, banks/, vertical/) and exit")
    o = sub.add_parser("setup-openfhe",
                       help="make a CPython 3.10 environment with OpenFHE for protocol='ckks-multiparty'")
    o.add_argument("--target", default=None, help="folder of the environment (default: ~/.fedbench-openfhe)")
    o.add_argument("--python310", default=None, help="the CPython 3.10 to use (default: python3.10 or pyenv's)")
    args = parser.parse_args(argv)

    from fedbench.errors import FedbenchError

    try:
        if args.command == "setup-openfhe":
            from fedbench.secagg.openfhe_engine import DEFAULT_VENV, ENV_VAR, install_openfhe

            python = install_openfhe(args.target or DEFAULT_VENV, python310=args.python310)
            print(f"OpenFHE is ready: {python}" + ("" if args.target is None else
                                                   f" (set {ENV_VAR}={python} to use this folder)"))
            return 0
        if args.copy_samples is not None:
            return _copy_samples(args.copy_samples)
        return demo(args.data, args.key_bits, args.backend, args.insecure_small_keys, not args.no_verify,
                    timings=not args.no_timings)
    except FedbenchError as exc:
        print(f"fedbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
