#!/usr/bin/env python3
"""`migplan lab up --nova` wall time and memory (prints figures).

Brings up a Nova lab from a fresh state directory (packages present: a missing package is
installed first and not timed), end to end as `migplan lab up --nova --hosts N --guests M`
does it: the libvirt hosts, MariaDB, RabbitMQ, keystone, glance, placement, neutron-server,
nova-api/conductor/scheduler, one nova-compute per host, image, flavor, M servers per host
ACTIVE.  Then sums the resident memory of every process of the lab (the services' process
groups, the lab's libvirtd and QEMU processes), and times `lab down`.  Run as root:

    MIGPLAN_BENCH_NOVA_IP=130 python benchmarks/bench_nova_lab.py [--hosts 2] [--guests 1]

The control plane goes on 127.0.0.$MIGPLAN_BENCH_NOVA_IP (default 130), hosts after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.lab import pids_seeing_mounts_from  # noqa: E402
from planner.lab.nova import NovaLab  # noqa: E402
from planner.lab.nova_packages import install_missing  # noqa: E402
from planner.lab.nova_services import lab_pids  # noqa: E402


def rss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--guests", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the Nova lab starts libvirtd in mount namespaces)", file=sys.stderr)
        return 1
    ip = int(os.environ.get("MIGPLAN_BENCH_NOVA_IP", "130"))
    with tempfile.TemporaryDirectory(prefix="bench-nova-", dir="/var/tmp") as tmp:
        state = Path(tmp) / "lab"
        if install_missing(Path(tmp) / "apt.log", print):
            print("(packages installed first, not timed)")
        lab = NovaLab(state, hosts=args.hosts, guests=args.guests, first_ip=ip + 1,
                      control=f"127.0.0.{ip}")
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        try:
            lab.up()
            up_s = time.monotonic() - t0
            pids = set(lab_pids(lab.root)) | set(pids_seeing_mounts_from(lab.lab.state_dir))
            services = rss_mib(set(lab_pids(lab.root)))
            total = rss_mib(pids)
        finally:
            t1 = time.monotonic()
            lab.down()
            down_s = time.monotonic() - t1
    print(f"date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load before {load:.2f}")
    print(f"lab up --nova --hosts {args.hosts} --guests {args.guests}: {up_s:.1f} s")
    print(f"RSS of the lab's {len(pids)} processes: {total:.0f} MiB "
          f"(Nova's services {services:.0f} MiB, libvirtd + QEMU {total - services:.0f} MiB)")
    print(f"lab down: {down_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
