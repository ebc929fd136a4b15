#!/usr/bin/env python3
"""`migplan migrate` against raw `virsh migrate` on the same guest (prints figures).

Both tools run as subprocesses, end to end, as an operator would run them:

    virsh -c SRC migrate --live --p2p --persistent --undefinesource GUEST DST
    migplan migrate GUEST DEST --lab

alternating directions and tools, so each tool moves the guest both ways
equally often: round i moves it A->B with one tool and back with the other,
and the tool that goes first alternates between rounds.  The figure is the
median wall time of each tool and their ratio (floor: migplan <= 1.05 x virsh).
migplan's extra work -- Python start-up and imports, finding the guest, reading
both hosts and running every rule, verifying on both hosts afterwards -- is
measured on its own too (`--dry-run`), to say what dominates.  Needs a running
lab:

    migplan lab up --hosts 3          # or MIGPLAN_LAB_DIR=... for another lab
    python benchmarks/bench_migrate.py [--rounds 7] [--guest lab1-vm1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.lab import Lab, default_state_dir, list_guests  # noqa: E402

FLOOR = 1.05


def run(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return wall


def virsh_cmd(guest: str, src: str, dst: str) -> list[str]:
    return ["virsh", "-q", "-c", src, "migrate", "--live", "--p2p", "--persistent",
            "--undefinesource", guest, dst]


def migplan_cmd(guest: str, dest: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "planner", "migrate", guest, dest, "--lab", *extra]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--guest", default=None, help="default: the first guest of the first host")
    args = ap.parse_args()
    lab = Lab()
    status = lab.status()
    if not status or not all(h.running for h in status) or len(status) < 2:
        print(f"no running lab of 2+ hosts in {default_state_dir()}: run `migplan lab up`")
        return 1
    uris = lab.uris()
    guest = args.guest or next(g.name for h in status for g in h.guests if g.state == "running")
    a = next(h.name for h in status if any(g.name == guest for g in h.guests))
    b = next(n for n in uris if n != a)
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.node()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"guest {guest} between {a} and {b} ({default_state_dir()}); {args.rounds} rounds")

    times: dict[str, list[float]] = {"virsh": [], "migplan": []}
    here = a

    def move(tool: str, to: str) -> None:
        nonlocal here
        cmd = virsh_cmd(guest, uris[here], uris[to]) if tool == "virsh" \
            else migplan_cmd(guest, to)
        times[tool].append(run(cmd))
        here = to

    # warm-up: both tools once (first-call costs of a fresh daemon, page cache for Python)
    move("virsh", b)
    move("migplan", a)
    times = {"virsh": [], "migplan": []}
    for i in range(args.rounds):
        first, second = ("virsh", "migplan") if i % 2 == 0 else ("migplan", "virsh")
        move(first, b if here == a else a)
        move(second, b if here == a else a)
    overhead = [run(migplan_cmd(guest, b if here == a else a, "--dry-run"))
                for _ in range(args.rounds)]
    startup = [run([sys.executable, "-m", "planner", "--version"]) for _ in range(args.rounds)]
    if here != a:
        run(virsh_cmd(guest, uris[here], uris[a]))
    assert any(g.name == guest for g in list_guests(uris[a])), "guest not back home"

    mv, mm = statistics.median(times["virsh"]), statistics.median(times["migplan"])
    ratio = mm / mv
    print(f"virsh migrate   median {mv:.3f} s  (min {min(times['virsh']):.3f}, "
          f"max {max(times['virsh']):.3f})")
    print(f"migplan migrate median {mm:.3f} s  (min {min(times['migplan']):.3f}, "
          f"max {max(times['migplan']):.3f})")
    for tool in ("virsh", "migplan"):
        print(f"  {tool:8} " + " ".join(f"{t:.3f}" for t in times[tool]))
    print(f"ratio migplan/virsh: {ratio:.3f}  (floor {FLOOR})  "
          f"{'OK' if ratio <= FLOOR else 'OVER THE FLOOR'}")
    print(f"migplan --dry-run (start-up + find + read both hosts + rules) median "
          f"{statistics.median(overhead):.3f} s; of which Python start-up and CLI "
          f"(`migplan --version`) {statistics.median(startup):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
