#!/usr/bin/env python3
"""How long planner.inventory.load takes on a large snapshot (prints figures).

Builds a snapshot of N hosts (default 10,000) from the composed fixtures --
every host a hard-linked copy of one fixture host, renamed, so the CPUs repeat
as they do in real clusters -- then loads it, with and without the per-load
cache of parsed host <cpu> elements.

    python benchmarks/bench_inventory_load.py [--hosts 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner import inventory, parse_host  # noqa: E402

SOURCES = ["mixed-intel-generations", "intel-amd-mixed", "numa-pinned-guests",
           "storage-backends", "hostdev-guests"]


def build(root: Path, n: int) -> int:
    templates = [d for s in SOURCES for d in sorted((REPO / "fixtures" / s / "hosts").iterdir())]
    hosts = []
    (root / "hosts").mkdir(parents=True)
    guests = 0
    for i in range(n):
        src = templates[i % len(templates)]
        name = f"cn{i:05d}"
        shutil.copytree(src, root / "hosts" / name, copy_function=os.link)
        guests += len(json.loads((src / "domains.json").read_text()))
        hosts.append({"name": name, "uri": f"qemu+ssh://root@{name}/system", "status": "ok",
                      "error": None, "duration_s": 0.0, "dir": f"hosts/{name}"})
    (root / "manifest.json").write_text(json.dumps({"format": "migplan-snapshot/1",
                                                    "collected_at": None, "hosts": hosts}))
    return guests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inv-") as tmp:
        root = Path(tmp) / "snap"
        t0 = time.perf_counter()
        guests = build(root, args.hosts)
        print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"built {args.hosts} hosts, {guests} guests in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        inventory.load(root)
        print(f"first load (cold caches): {time.perf_counter() - t0:6.2f} s")
        t0 = time.perf_counter()
        inv = inventory.load(root)
        cached = time.perf_counter() - t0
        print(f"load (parse each distinct <cpu> and domcapabilities once):{cached:6.2f} s  "
              f"({cached / args.hosts * 1e3:.2f} ms/host), {len(inv.hosts)} hosts, "
              f"{len(inv.domains())} guests")
        real = parse_host.CpuCache

        class NoCache(real):  # type: ignore[misc, valid-type]
            """Parses every <cpu> and every domcapabilities document again."""

            def parse(self, el, cpu_type, source):  # type: ignore[no-untyped-def]
                return parse_host.parse_cpu_element(el, cpu_type, source)

            def domcaps(self, xml, source):  # type: ignore[no-untyped-def]
                return parse_host.parse_domcapabilities(xml, source, self)

        inventory.CpuCache = NoCache  # type: ignore[misc]
        try:
            t0 = time.perf_counter()
            inventory.load(root)
            plain = time.perf_counter() - t0
        finally:
            inventory.CpuCache = real  # type: ignore[misc]
        print(f"load parsing every one:                                  {plain:6.2f} s  ({plain / args.hosts * 1e3:.2f} ms/host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
