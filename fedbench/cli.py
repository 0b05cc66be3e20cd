"""Command line: ``fedbench demo`` runs the end-to-end scenario headless and prints the results."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_DEMO_COLUMNS = ["age", "mean_radius", "mean_texture", "mean_area", "worst_concave_points"]


def _section(title: str) -> None:
    print(f"\n== {title} ==")


def demo(data: Path | None, key_bits: int, backend: str, insecure: bool, verify: bool) -> int:
    """Run the four-hospital scenario and print what each step computed and cost."""
    import polars as pl

    import fedbench as fb
    from fedbench.samples import sample_dir

    folder = data if data is not None else sample_dir("hospitals")
    t_start = time.perf_counter()
    with fb.Federation.from_dir(folder, key_bits=key_bits, backend=backend, allow_insecure_key_size=insecure,
                                audit=True) as fed:
        print(f"fedbench {fb.__version__} demo: {len(fed)} parties from {folder}")
        print(f"crypto: {key_bits}-bit Paillier (phe + gmpy2), DJN fast encryption; backend: "
              f"{fed.backend.name} ({fed.backend.workers} workers)")
        for p in fed:
            print(f"  {p.name:<8} {p.n_rows:>5} rows x {len(p.columns)} columns")
        rep = fed.schema
        print(f"schema: {len(rep.shared)} shared columns, {len(rep.conflicts)} kind conflicts")

        t0 = time.perf_counter()
        keys = fed.keys
        print(f"key holder generated its key pair in {time.perf_counter() - t0:.2f} s (n = {keys.key_bits} bits)")

        columns = [c for c in _DEMO_COLUMNS if c in rep.shared] or rep.shared[:4]
        _section("Secure statistics (two rounds: sums, then squared deviations)")
        table = fed.stats(columns).to_polars()
        with pl.Config(tbl_rows=20, tbl_cols=10, tbl_width_chars=120, float_precision=4):
            print(table)

        _section("Fixed-bin histogram of age (bins declared up front)")
        if "age" in rep.shared:
            print(fed.histogram("age", 7, (20, 90)))

        if "diagnosis" in rep.shared:
            _section("Diagnosis counts per referral route (group counts)")
            by = ["referral", "diagnosis"] if "referral" in rep.shared else ["diagnosis"]
            with pl.Config(tbl_rows=20):
                print(fed.group_counts(by).to_polars().sort(by))

        corr_cols = [c for c in ("mean_radius", "mean_area", "worst_concave_points", "age") if c in rep.shared]
        if len(corr_cols) >= 2:
            _section("Correlation matrix (complete cases)")
            with pl.Config(float_precision=3, tbl_width_chars=120):
                print(fed.corr(corr_cols).to_polars())

        _section("Secure sum of a function run inside each party")
        res = fed.secure_sum(
            lambda df: {"malignant": float(df["diagnosis"].sum()), "patients": float(df.height)}
            if "diagnosis" in df.columns else {"patients": float(df.height)}
        )
        print(res)

        if verify:
            _section("Simulation check: the same numbers on pooled plaintext (impossible in real life)")
            pooled = pl.concat([p.compute(lambda df, c=columns: df.select(c)) for p in fed], how="vertical_relaxed")
            worst = 0.0
            for row in table.iter_rows(named=True):
                s = pooled[row["column"]].drop_nulls()
                worst = max(worst, abs(row["mean"] - s.mean()) / max(1.0, abs(s.mean())),
                            abs(row["std"] - s.std()) / max(1.0, abs(s.std())))
            print(f"largest relative difference of mean/std against pooled data: {worst:.2e}")

        if "diagnosis" in rep.shared:
            _section("Federated training: imputer + scaler + logistic regression (Newton on secure sums)")
            from sklearn.impute import SimpleImputer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            run = fed.fit(make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
                          target="diagnosis", test_size=0.3, seed=0)
            with pl.Config(tbl_rows=10, tbl_width_chars=120, float_precision=4, fmt_str_lengths=40):
                print(run.compare().select("model", "score"))

        _section("Transcript: what crossed which boundary")
        t = fed.transcript
        enc = sum(m.nbytes for m in t if m.encrypted)
        print(f"{len(t)} messages, {t.nbytes / 1000:.1f} kB in all, {enc / max(1, t.nbytes):.0%} of bytes encrypted")
        to_agg = {(m.kind, m.encrypted) for m in t if m.receiver == "aggregator"}
        print("aggregator received: " + ", ".join(f"{k} ({'encrypted' if e else 'public metadata'})"
                                                  for k, e in sorted(to_agg)))
        with pl.Config(tbl_rows=12, tbl_width_chars=120):
            print(t.summary().group_by(["receiver", "kind", "encrypted"]).agg(
                pl.col("messages").sum(), pl.col("nbytes").sum()).sort("receiver"))
        print(f"\nthreat model: {fb.THREAT_MODEL}")

    banks = sample_dir("banks") if data is None else None
    if banks is not None:
        _section("Private set intersection: two banks, customers matched on name and date of birth")
        with fb.Federation.from_dir(banks, key_bits=key_bits, backend=backend,
                                    allow_insecure_key_size=insecure) as bfed:
            raw = bfed.intersect(on=["first_name", "last_name", "dob"], mode="cardinality")
            clean = bfed.intersect(on=["first_name", "last_name", "dob"], mode="cardinality", normalize="standard")
            print(f"raw strings: {raw.size} shared; normalised (NFKC, whitespace, case): {clean.size} shared")
            print(clean)
            print(f"leakage: {clean.leakage}")
    print(f"\ndone in {time.perf_counter() - t_start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedbench`` console command."""
    parser = argparse.ArgumentParser(prog="fedbench", description="Privacy-preserving collaborative analytics.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the end-to-end scenario on the bundled data_samples/ and print results")
    d.add_argument("--data", type=Path, default=None,
                   help="folder with one data file per party (default: data_samples/hospitals)")
    d.add_argument("--key-bits", type=int, default=2048, help="Paillier key size in bits (default 2048)")
    d.add_argument("--backend", default="process", choices=["inprocess", "process"],
                   help="where encryption runs (default: process pool over every core)")
    d.add_argument("--insecure-small-keys", action="store_true",
                   help="allow key sizes below 2048 bits (quick experiments only)")
    d.add_argument("--no-verify", action="store_true", help="skip the pooled-plaintext simulation check")
    args = parser.parse_args(argv)

    from fedbench.errors import FedbenchError

    try:
        return demo(args.data, args.key_bits, args.backend, args.insecure_small_keys, not args.no_verify)
    except FedbenchError as exc:
        print(f"fedbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
