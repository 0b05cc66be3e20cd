"""Benchmark fedbench's PSI against openmined-psi (where installed), in the same run.

Usage::

    python benchmarks/bench_psi.py --sizes 10000 100000 [--repeat 3] [--skip-peer] [--mode cardinality]

Each size N intersects two parties of N identifiers each, half of them shared
(``user<i>@example.org``).  Every measurement runs in a fresh child process so
that peak memory and CPU time are that measurement's own:

- fedbench, default path: ``Federation()`` with its defaults (in-process
  backend), ``fed.intersect("id", mode=...)`` end to end (validation, encoding,
  hashing, blinding, comparison, transcript) *including* the start of the PSI
  worker pool, which a fresh process does on its first large run.
- fedbench, process backend: ``Federation(backend="process")``, likewise (cold).
- openmined-psi: server setup, client request, server response, client result,
  with its default GCS setup message, ``reveal_intersection=False`` for cardinality
  and ``True`` otherwise; single-threaded (the library does not parallelise).

Figures: wall seconds, identifiers per second (both sides: 2N / s), CPU seconds
of the measurement (process plus its workers), peak resident memory (sampled
from /proc every 50 ms), bytes on the wire per identifier (2N identifiers), and
the load average (``os.getloadavg``, as ``uptime`` shows it) before and after:
the machine may be shared, and CPU seconds stay interpretable under load when
wall seconds do not.  ``--repeat`` runs the three measurements in turn that many
times and prints every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler:
    """Peak of (RSS of this process + RSS of the given child pids), sampled in a thread."""

    def __init__(self, pids_fn, interval: float = 0.05) -> None:
        self.pids_fn = pids_fn
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = _rss_kb(os.getpid()) + sum(_rss_kb(p) for p in self.pids_fn())
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def ids(start: int, stop: int) -> list[str]:
    return [f"user{i}@example.org" for i in range(start, stop)]


def child_fedbench(n: int, mode: str, backend: str) -> dict:
    import polars as pl

    import fedbench as fb
    from fedbench.psi import _parallel, shutdown_pool

    fed = fb.Federation() if backend == "default" else fb.Federation(backend=backend)
    fed.add_party("bank_a", pl.DataFrame({"id": ids(0, n)}))
    fed.add_party("bank_b", pl.DataFrame({"id": ids(n // 2, n + n // 2)}))

    def pids() -> list[int]:
        pool = _parallel._pool
        return [x.proc.pid for x in pool.workers] if pool is not None else []

    kw = {"receiver": "bank_a"} if mode == "reveal" else {}
    cpu0 = _cpu_seconds(resource.RUSAGE_SELF)
    with PeakSampler(pids) as sampler:
        t = time.perf_counter()
        r = fed.intersect("id", mode=mode, **kw)  # cold: the worker pool starts inside
        seconds = time.perf_counter() - t
    assert r.size == n - n // 2, r
    parent_cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu0
    workers = len(pids()) or 1
    shutdown_pool()  # reap the workers so that RUSAGE_CHILDREN sees them
    fed.close()
    return {
        # CPU of the run: this process during the run, plus the workers over their life.
        "cpu": parent_cpu + _cpu_seconds(resource.RUSAGE_CHILDREN),
        "seconds": seconds,
        "peak_mb": sampler.peak_kb / 1024,
        "bytes_per_element": r.nbytes / (2 * n),
        "nbytes": r.nbytes,
        "size": r.size,
        "workers": workers,
    }


def child_peer(n: int, mode: str) -> dict:
    import private_set_intersection.python as psi

    client_items = ids(0, n)
    server_items = ids(n // 2, n + n // 2)
    reveal = mode != "cardinality"
    cpu0 = _cpu_seconds(resource.RUSAGE_SELF)
    with PeakSampler(lambda: []) as sampler:
        t = time.perf_counter()
        client = psi.client.CreateWithNewKey(reveal)
        server = psi.server.CreateWithNewKey(reveal)
        setup = server.CreateSetupMessage(1e-9, len(client_items), server_items)
        request = client.CreateRequest(client_items)
        response = server.ProcessRequest(request)
        result = client.GetIntersection if reveal else client.GetIntersectionSize
        size = result(setup, response)
        size = len(size) if reveal else size
        seconds = time.perf_counter() - t
    wire = len(setup.SerializeToString()) + len(request.SerializeToString()) + len(response.SerializeToString())
    return {
        "seconds": seconds,
        "cpu": _cpu_seconds(resource.RUSAGE_SELF) - cpu0,
        "peak_mb": sampler.peak_kb / 1024,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_per_element": wire / (2 * n),
        "size": size,
        "version": psi.__version__,
    }


def measure(kind: str, n: int, mode: str, backend: str = "default") -> dict | None:
    cmd = [sys.executable, __file__, "--_child", kind, "--mode", mode, "--sizes", str(n), "--backend", backend]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"  {kind} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "load n/a"
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (uptime's figures)"


def _fb_line(label: str, n: int, fb: dict) -> str:
    return (
        f"  {label:<22} {fb['seconds']:7.2f} s  {2 * n / fb['seconds']:9,.0f} ids/s  CPU {fb['cpu']:6.1f} s "
        f"({fb['workers']} worker(s); {fb['cpu'] / 2:.1f} s of wall on 2 idle cores)  "
        f"peak {fb['peak_mb']:6.1f} MB  {fb['bytes_per_element']:.1f} B/id"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--mode", choices=["cardinality", "reveal", "align"], default="cardinality")
    ap.add_argument("--repeat", type=int, default=1, help="run every measurement this many times")
    ap.add_argument("--skip-peer", action="store_true", help="do not run openmined-psi")
    ap.add_argument("--backend", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--_child", choices=["fedbench", "peer"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        n = args.sizes[0]
        res = child_fedbench(n, args.mode, args.backend) if args._child == "fedbench" else child_peer(n, args.mode)
        print(json.dumps(res))
        return

    peer_ok = False
    if not args.skip_peer:
        try:
            import private_set_intersection.python  # noqa: F401

            peer_ok = True
        except ImportError:
            print("openmined-psi is not installed: peer skipped (pip install openmined-psi)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} cores; python {sys.version.split()[0]}; mode {args.mode}; 2 parties x N ids, N/2 shared")
    for n in args.sizes:
        print(f"\nN = {n:,} per party ({2 * n:,} identifiers)")
        for rep in range(1, args.repeat + 1):
            print(f" run {rep}/{args.repeat}: {_load()}")
            fd = measure("fedbench", n, args.mode, "default")
            if fd:
                print(_fb_line("fedbench Federation()", n, fd))
            fp = measure("fedbench", n, args.mode, "process")
            if fp:
                print(_fb_line("fedbench backend=process", n, fp))
            if peer_ok:
                pe = measure("peer", n, args.mode)
                if pe:
                    print(
                        f"  {'openmined-psi ' + pe['version']:<22} {pe['seconds']:7.2f} s  "
                        f"{2 * n / pe['seconds']:9,.0f} ids/s  CPU {pe['cpu']:6.1f} s (1 thread)  "
                        f"peak {pe['peak_mb']:6.1f} MB  {pe['bytes_per_element']:.1f} B/id"
                    )
                    for label, f in (("default path", fd), ("process backend", fp)):
                        if f:
                            print(
                                f"  ratio {label}: {pe['seconds'] / f['seconds']:.2f}x faster (wall); "
                                f"openmined CPU / (fedbench CPU / 2 cores) = {pe['cpu'] / (f['cpu'] / 2):.2f}x"
                            )
            print(f"  after: {_load()}")


if __name__ == "__main__":
    main()
