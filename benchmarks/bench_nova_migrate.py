#!/usr/bin/env python3
"""`migplan migrate --os-cloud` against `openstack server migrate --live-migration --host DEST
--wait` on the same server of a real Nova (prints figures).

Both tools run as subprocesses, end to end, as an operator would run them:

    openstack --os-cloud migplan-lab server migrate --live-migration --host DEST --wait SERVER
    migplan migrate SERVER DEST --os-cloud migplan-lab

(Debian 12's python3-openstackclient 6.0, which the Nova lab installs, compute API
2.latest; migplan negotiates its own microversion.)  Directions and tools alternate: round i
moves the server A->B with one tool and back with the other, and the tool that goes first
alternates between rounds.  After every move the server's host is checked through Nova's
API (not timed: openstack's --wait only waits for ACTIVE).  The figure is the median wall
time of each tool and their ratio (target: migplan <= 1.1 x openstack).  migplan's own work
before the move -- start-up, Nova's server and services, both hosts' libvirt, the rules --
is timed apart (`--dry-run`).  Run as root:

    python benchmarks/bench_nova_migrate.py [--rounds 5] [--state-dir DIR] [--server NAME]

With --state-dir DIR of a running Nova lab (`migplan lab up --nova --state-dir DIR`) that
lab is used; otherwise a Nova lab of 2 hosts is started in DIR (default: a new directory
under /var/tmp) on 127.0.0.$MIGPLAN_BENCH_NOVA_IP (default 185), hosts after it, and taken
down at the end (its start-up is not timed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.lab.nova import CLOUD, NovaLab  # noqa: E402

TARGET = 1.1


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(REPO), **env})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return wall


def openstack_cmd(server: str, dest: str) -> list[str]:
    return ["/usr/bin/openstack", "--os-cloud", CLOUD, "server", "migrate", "--live-migration",
            "--host", dest, "--wait", server]


def migplan_cmd(server: str, dest: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "planner", "migrate", server, dest, "--os-cloud", CLOUD, *extra]


def host_of(nl: NovaLab, server: str) -> str | None:
    from planner.adapters.nova import open_mover  # the one module importing the SDK

    cloud = open_mover(CLOUD)
    try:
        return cloud.find_server(server).host
    finally:
        cloud.close()


def bench(nl: NovaLab, server: str, rounds: int) -> int:
    env = {"OS_CLIENT_CONFIG_FILE": str(nl.clouds_yaml), "OS_COMPUTE_API_VERSION": "2.latest"}
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(nl.clouds_yaml)
    hosts = [c.name for c in nl.spec().computes]
    a = host_of(nl, server)
    if a is None or len(hosts) < 2:
        print(f"server {server} has no host, or the lab has fewer than 2 computes")
        return 1
    b = next(h for h in hosts if h != a)
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.node()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"server {server} between {a} and {b} (Nova lab in {nl.lab.state_dir}); "
          f"{rounds} rounds")
    times: dict[str, list[float]] = {"openstack": [], "migplan": []}
    here = a

    def move(tool: str, to: str) -> None:
        nonlocal here
        cmd = openstack_cmd(server, to) if tool == "openstack" else migplan_cmd(server, to)
        times[tool].append(run(cmd, env))
        where = host_of(nl, server)
        if where != to:
            raise SystemExit(f"after `{' '.join(cmd)}` Nova places {server} on {where}, not {to}")
        here = to

    # warm-up: both tools once (page cache for Python, Nova's first calls)
    move("openstack", b)
    move("migplan", a)
    times = {"openstack": [], "migplan": []}
    for i in range(rounds):
        first, second = ("openstack", "migplan") if i % 2 == 0 else ("migplan", "openstack")
        move(first, b if here == a else a)
        move(second, b if here == a else a)
    overhead = [run(migplan_cmd(server, b if here == a else a, "--dry-run"), env)
                for _ in range(rounds)]
    mo, mm = statistics.median(times["openstack"]), statistics.median(times["migplan"])
    for tool, m in (("openstack", mo), ("migplan", mm)):
        print(f"{tool:9} median {m:.3f} s  (min {min(times[tool]):.3f}, "
              f"max {max(times[tool]):.3f}):  " + " ".join(f"{t:.3f}" for t in times[tool]))
    ratio = mm / mo
    print(f"ratio migplan/openstack: {ratio:.3f}  (target {TARGET})  "
          f"{'OK' if ratio <= TARGET else 'OVER THE TARGET'}")
    print(f"migplan --dry-run (start-up, Nova's server and services, both hosts' libvirt, "
          f"the rules) median {statistics.median(overhead):.3f} s")
    if here != a:
        run(migplan_cmd(server, a), env)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--state-dir", type=Path, default=None)
    ap.add_argument("--server", default="lab1-vm1")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the Nova lab starts libvirtd in mount namespaces)", file=sys.stderr)
        return 1
    if args.state_dir is not None and NovaLab(args.state_dir).running():
        return bench(NovaLab(args.state_dir), args.server, args.rounds)
    ip = int(os.environ.get("MIGPLAN_BENCH_NOVA_IP", "185"))
    with tempfile.TemporaryDirectory(prefix="bench-nova-migrate-", dir="/var/tmp") as tmp:
        nl = NovaLab(args.state_dir or Path(tmp) / "lab", hosts=2, guests=1, first_ip=ip + 1,
                     control=f"127.0.0.{ip}")
        try:
            print(f"starting a Nova lab on 127.0.0.{ip} (not timed)", file=sys.stderr)
            nl.up()
            return bench(nl, args.server, args.rounds)
        finally:
            nl.down()


if __name__ == "__main__":
    sys.exit(main())
