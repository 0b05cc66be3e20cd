"""Ray backend vs process-pool backend: secure FedAvg with many parties, and PSI.

Each party is a CSV file (an IID split of the bundled hospital data, replicated
with jitter); on Ray every party lives in an actor that loads its own file.  Both
backends run the same secure FedAvg (2048-bit Paillier) and must produce the same
model.  On one machine, parties share a pool of ``--max-actors`` actors (default:
one per core, as Flower's simulation engine does); ``--max-actors 0`` gives every
party its own actor (~200 MB each).  A watchdog stops the run if the machine's
available memory falls below 2 GB.

A second part runs a two-party PSI (cardinality) of ``--psi`` identifiers per
party on both backends: on Ray each party hashes and blinds in its own actor.

Usage::

    python benchmarks/bench_ray.py [--parties 100] [--rounds 20] [--max-actors 2] [--psi 100000]

The 10-party secure-sum benchmark on Ray is ``bench_secure_sum.py --backend ray``.
"""

from __future__ import annotations

import _thread
import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fedbench as fb
from fedbench.learn import iid_partition
from fedbench.samples import sample_dir

FEATURES = ["mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
            "mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry", "age"]

MIN_AVAILABLE_MB = 2048


def make_files(parties: int, folder: Path) -> None:
    pooled = pl.concat([pl.read_csv(f) for f in sorted(sample_dir("hospitals").glob("*.csv"))],
                       how="vertical_relaxed").select([*FEATURES, "diagnosis"])
    # Replicate the 569 patients (with jitter) so that every party has a few dozen rows.
    rng = np.random.default_rng(0)
    reps = max(1, (parties * 40) // pooled.height + 1)
    big = pl.concat([pooled.with_columns([(pl.col(c) * (1 + 0.01 * rng.standard_normal(pooled.height)))
                                          .alias(c) for c in FEATURES[:-1]]) for _ in range(reps)])
    for name, df in iid_partition(big, parties, seed=0).items():
        df.write_csv(folder / f"{name}.csv")


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) // 1024  # MB
    return out


def _ray_workers_mb() -> tuple[int, float]:
    """Number of Ray worker processes and their summed proportional set size (shared pages split)."""
    n, pss = 0, 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            for line in (d / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
            n += 1
        except OSError:
            continue
    return n, pss


class Watchdog:
    """Interrupts the main thread when the machine runs short of memory; tracks the lowest availability."""

    def __init__(self) -> None:
        self.low = _meminfo()["MemAvailable"]
        self.tripped = False
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            avail = _meminfo()["MemAvailable"]
            self.low = min(self.low, avail)
            if avail < MIN_AVAILABLE_MB and not self.tripped:
                self.tripped = True
                _thread.interrupt_main()

    def stop(self) -> None:
        self._stop.set()


def fedavg(backend: object, folder: Path, rounds: int) -> tuple[float, float, np.ndarray, tuple[int, float]]:
    t0 = time.perf_counter()
    with fb.Federation(backend=backend) as fed:
        fed.add_parties({f.stem: f for f in sorted(folder.glob("*.csv"))})
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        run = fed.fit(make_pipeline(SimpleImputer(), StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)),
                      target="diagnosis", features=FEATURES, strategy="fedavg", rounds=rounds, seed=0,
                      evaluate_every=0, party_metrics=False, classes=[0, 1])
        train = time.perf_counter() - t1
        mem = _ray_workers_mb()
        return setup, train, run.model[-1].coef_.ravel(), mem


def psi(backend: object, folder: Path, n: int) -> tuple[float, int]:
    with fb.Federation(backend=backend) as fed:
        fed.add_parties({"a": folder / "psi_a.csv", "b": folder / "psi_b.csv"})
        r = fed.intersect("id", mode="cardinality")
        return r.elapsed, r.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=100, help="number of parties")
    ap.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    ap.add_argument("--max-actors", type=int, default=None,
                    help="actors the parties share (default: one per core; 0: one actor per party)")
    ap.add_argument("--psi", type=int, default=100_000, help="identifiers per party in the PSI part (0: skip)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cores = len(os.sched_getaffinity(0))
    max_actors = cores if args.max_actors is None else (args.max_actors or None)
    folder = Path(tempfile.mkdtemp(prefix="fedbench-ray-"))
    make_files(args.parties, folder)
    mem = _meminfo()
    print(f"machine: {cores} cores, {mem['MemTotal'] / 1024:.0f} GB; {args.parties} parties x {args.rounds} rounds "
          f"of secure FedAvg (2048-bit Paillier, {len(FEATURES)} features)")
    from fedbench.ray_backend import RayBackend

    dog = Watchdog()
    try:
        p_setup, p_train, p_coef, _ = fedavg("process", folder, args.rounds)
        print(f"process pool: set-up {p_setup:.1f} s, training {p_train:.1f} s")
        actors = f"{max_actors} shared actors" if max_actors else f"{args.parties} actors, one per party"
        r_setup, r_train, r_coef, (n_workers, pss) = fedavg(RayBackend(timeout=600, max_actors=max_actors), folder,
                                                            args.rounds)
        print(f"ray (local, {actors}): set-up {r_setup:.1f} s (actors start and load their files), "
              f"training {r_train:.1f} s")
        print(f"  ray worker processes: {n_workers}, {pss:.0f} MB PSS in total; lowest available memory "
              f"during the run {dog.low / 1024:.1f} GB")
        print(f"ray / process training time: {r_train / p_train:.2f}x; same model: "
              f"{np.allclose(p_coef, r_coef, rtol=1e-6, atol=1e-9)}")
        if args.psi:
            ids = [f"patient-{i:08d}" for i in range(args.psi * 3 // 2)]
            pl.DataFrame({"id": ids[: args.psi]}).write_csv(folder / "psi_a.csv")
            pl.DataFrame({"id": ids[args.psi // 2:]}).write_csv(folder / "psi_b.csv")
            p_t, p_n = psi("process", folder, args.psi)
            r_t, r_n = psi(RayBackend(timeout=600), folder, args.psi)
            print(f"PSI {args.psi:,} x {args.psi:,} (cardinality): process {p_t:.2f} s, ray {r_t:.2f} s "
                  f"(each party hashes and blinds in its own actor); ratio {r_t / p_t:.2f}x; "
                  f"same size: {p_n == r_n == args.psi // 2}")
    except KeyboardInterrupt:
        if dog.tripped:
            print(f"stopped: available memory fell below {MIN_AVAILABLE_MB} MB (lowest {dog.low} MB)")
        raise SystemExit(2) from None
    finally:
        dog.stop()
    print(f"peak RSS of the driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
