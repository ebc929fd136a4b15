#!/usr/bin/env python3
"""Parallel speed-up of `migplan collect` on the lab's N real hosts (prints figures).

Collects every host alone (one after the other), then all of them at once
with the default worker pool, and compares the parallel wall time with the
slowest single host and with the sum.  Needs a running lab:

    migplan lab up --hosts 3          # or MIGPLAN_LAB_DIR=... for another lab
    python benchmarks/bench_collect.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.collect.run import DEFAULT_WORKERS, collect  # noqa: E402
from planner.collect.sources import Target  # noqa: E402
from planner.lab import Lab, default_state_dir  # noqa: E402


def timed(targets: list[Target], workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        t0 = time.perf_counter()
        res = collect(targets, Path(tmp) / "snap", workers=workers)
        wall = time.perf_counter() - t0
        bad = res.failed
        if bad:
            raise SystemExit(f"not collected: {', '.join(h.name or h.uri for h in bad)}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = ap.parse_args()
    lab = Lab()
    status = lab.status()
    if not status or not all(h.running for h in status):
        print(f"no running lab in {default_state_dir()}: run `migplan lab up` first")
        return 1
    targets = [Target(uri, name) for name, uri in lab.uris().items()]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; {len(targets)} lab hosts in {default_state_dir()}")
    timed(targets, args.workers)  # warm-up: the first call to a fresh libvirtd probes QEMU
    singles: dict[str, list[float]] = {t.name or t.uri: [] for t in targets}
    parallel = []
    for _ in range(args.rounds):
        for t in targets:
            singles[t.name or t.uri].append(timed([t], 1))
        parallel.append(timed(targets, args.workers))
    med = {k: statistics.median(v) for k, v in singles.items()}
    for k, v in med.items():
        print(f"  {k:>10} alone: {v:.3f} s")
    slowest = max(med.values())
    total = sum(med.values())
    par = statistics.median(parallel)
    print(f"slowest single host: {slowest:.3f} s, all one after the other: {total:.3f} s")
    print(f"all {len(targets)} in parallel ({args.workers} workers): {par:.3f} s "
          f"(median of {args.rounds}) = {par / slowest:.2f}x the slowest host, "
          f"speed-up {total / par:.2f}x over sequential")
    return 0


if __name__ == "__main__":
    sys.exit(main())
