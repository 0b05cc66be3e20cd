"""Benchmark fedbench's PSI against openmined-psi (where installed).

Usage::

    python benchmarks/bench_psi.py --sizes 10000 100000 1000000 [--skip-peer] [--mode cardinality]

Each size N intersects two parties of N identifiers each, half of them shared
(``user<i>@example.org``).  Every measurement runs in a fresh child process so
that peak memory is that measurement's own:

- fedbench: ``intersect`` end to end (validation, encoding, hashing, blinding,
  comparison, transcript), in ``--mode``; the worker pool is started before the
  clock (it is started once per session and kept) and its start-up time printed.
- openmined-psi: server setup, client request, server response, client result,
  with its default GCS setup message, ``reveal_intersection=False`` for cardinality
  and ``True`` otherwise; single-threaded (the library does not parallelise).

Figures: seconds, identifiers per second (both sides: 2N / s), peak resident
memory of the measuring process plus its workers (sampled from /proc every
50 ms; rusage's ru_maxrss of the process and of its largest reaped child is also
shown, the latter inflated by the parent image a child has before it execs),
total CPU seconds (process and workers) with the wall time they would take on
idle cores, and bytes on the wire per identifier (2N identifiers).
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


def child_fedbench(n: int, mode: str, workers: int | None) -> dict:
    import polars as pl

    from fedbench.party import Party
    from fedbench.psi import _parallel, hash_to_group, intersect, shutdown_pool
    from fedbench.psi._kernels import new_scalar
    from fedbench.transcript import Channel

    a = Party("bank_a", pl.DataFrame({"id": ids(0, n)}))
    b = Party("bank_b", pl.DataFrame({"id": ids(n // 2, n + n // 2)}))
    t = time.perf_counter()
    w = workers or _parallel.available_cores()
    if w > 1:
        warm = hash_to_group(b"\x00" * 32, [b"warm-up"])
        _parallel._get_pool(w).map([("blind", (new_scalar(), warm))] * w)
    startup = time.perf_counter() - t

    def pids() -> list[int]:
        pool = _parallel._pool
        return [x.proc.pid for x in pool.workers] if pool is not None else []

    kw = {"receiver": "bank_a"} if mode == "reveal" else {}
    cpu0 = _cpu_seconds(resource.RUSAGE_SELF)
    with PeakSampler(pids) as sampler:
        t = time.perf_counter()
        r = intersect([a, b], "id", mode=mode, channel=Channel("psi", []), workers=workers, **kw)
        seconds = time.perf_counter() - t
    assert r.size == n - n // 2, r
    parent_cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu0
    shutdown_pool()  # reap the workers so that RUSAGE_CHILDREN sees them
    return {
        # CPU of the run: this process during the run, plus the workers over their life
        # (their start-up, ~0.3 s each, is included: it cannot be split off).
        "cpu": parent_cpu + _cpu_seconds(resource.RUSAGE_CHILDREN),
        "seconds": seconds,
        "startup": startup,
        "peak_mb": sampler.peak_kb / 1024,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "maxrss_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "bytes_per_element": r.nbytes / (2 * n),
        "nbytes": r.nbytes,
        "size": r.size,
        "workers": w,
    }


def child_peer(n: int, mode: str) -> dict:
    import private_set_intersection.python as psi

    client_items = ids(0, n)
    server_items = ids(n // 2, n + n // 2)
    reveal = mode != "cardinality"
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
        "peak_mb": sampler.peak_kb / 1024,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_per_element": wire / (2 * n),
        "size": size,
        "version": psi.__version__,
    }


def measure(kind: str, n: int, mode: str, workers: int | None) -> dict | None:
    cmd = [sys.executable, __file__, "--_child", kind, "--mode", mode, "--sizes", str(n)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"  {kind} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--mode", choices=["cardinality", "reveal", "align"], default="cardinality")
    ap.add_argument("--workers", type=int, default=None, help="fedbench worker processes (default: all cores)")
    ap.add_argument("--skip-peer", action="store_true", help="do not run openmined-psi")
    ap.add_argument("--_child", choices=["fedbench", "peer"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        n = args.sizes[0]
        res = child_fedbench(n, args.mode, args.workers) if args._child == "fedbench" else child_peer(n, args.mode)
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
    print(f"load average before: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")
    for n in args.sizes:
        print(f"\nN = {n:,} per party ({2 * n:,} identifiers)")
        fb = measure("fedbench", n, args.mode, args.workers)
        if fb:
            print(
                f"  fedbench   {fb['seconds']:8.2f} s  {2 * n / fb['seconds']:9,.0f} ids/s  "
                f"peak {fb['peak_mb']:7.1f} MB (rusage maxrss: parent {fb['maxrss_self_mb']:.0f} MB, largest child "
                f"{fb['maxrss_child_mb']:.0f} MB*)  {fb['bytes_per_element']:.1f} B/id on the wire  "
                f"[{fb['workers']} workers, start-up {fb['startup']:.2f} s not counted]"
            )
            print(
                f"             CPU {fb['cpu']:.1f} s in all processes: {fb['cpu'] / fb['workers']:.1f} s of wall "
                f"time at best on {fb['workers']} idle cores (wall above {fb['seconds']:.1f} s; the gap is "
                "other load on the machine or idle cores)"
            )
            print("             * a child's ru_maxrss counts the parent's image it was forked from before exec")
        if peer_ok:
            pe = measure("peer", n, args.mode, None)
            if pe:
                print(
                    f"  openmined  {pe['seconds']:8.2f} s  {2 * n / pe['seconds']:9,.0f} ids/s  "
                    f"peak {pe['peak_mb']:7.1f} MB  {pe['bytes_per_element']:.1f} B/id on the wire  "
                    f"[openmined-psi {pe['version']}, 1 thread]"
                )
                if fb:
                    print(f"  ratio      fedbench is {pe['seconds'] / fb['seconds']:.2f}x faster")
        print(f"  load average after: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
