#!/usr/bin/env python3
"""Time loading the CPU catalogs (issue 13: under 50 ms each).

    python benchmarks/bench_catalog_load.py [--runs 20]

Loads, in this process, each shipped catalog (cpu_maps/x86.json, libvirt 9.0;
cpu_maps/x86-11.3.json, libvirt 11.3), the per-release name table
(cpu_maps/libvirt-names.json) and libvirt 11.3's own cpu_map directory (unpacked from
tests/data/cpu_maps) as ``--cpu-map DIR`` reads it, and prints the median and worst of
``--runs`` loads with the 9.0 catalog's time as the reference measured in the same run.
Also times ``migplan cpu-models`` end to end for each shipped catalog (Python start
included).  Exits 1 when a shipped catalog's median load is 50 ms or more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.adapters.catalogs import load_catalog  # noqa: E402
from planner.cpu.catalog import load_json_text  # noqa: E402
from planner.cpu.versions import NameTable  # noqa: E402

FLOOR_MS = 50.0


def _times(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _json(name: str) -> Callable[[], object]:
    def load() -> object:
        # read and parse each time: what a fresh process does once
        text = resources.files("cpu_maps").joinpath(name).read_text(encoding="utf-8")
        return load_json_text(text, name)
    return load


def _names() -> object:
    text = resources.files("cpu_maps").joinpath("libvirt-names.json").read_text(encoding="utf-8")
    return NameTable.from_json(json.loads(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(REPO / "tests/data/cpu_maps/libvirt-11.3.0-x86.tar.xz") as tar:
            tar.extractall(tmp, filter="data")
        rows = [("cpu_maps/x86.json (libvirt 9.0)", _json("x86.json"), True),
                ("cpu_maps/x86-11.3.json (libvirt 11.3)", _json("x86-11.3.json"), True),
                ("cpu_maps/libvirt-names.json", _names, True),
                ("--cpu-map DIR (libvirt 11.3 cpu_map)", lambda: load_catalog(tmp), False)]
        ref = None
        failed = False
        print(f"{'what':40} {'median ms':>10} {'worst ms':>9} {'ratio':>6}")
        for label, fn, floor in rows:
            fn()  # warm the import and file caches
            ts = _times(fn, args.runs)
            med = statistics.median(ts)
            ref = ref or med
            mark = ""
            if floor and med >= FLOOR_MS:
                failed, mark = True, f"  MISSED (floor {FLOOR_MS:.0f} ms)"
            print(f"{label:40} {med:10.1f} {max(ts):9.1f} {med / ref:6.2f}{mark}")
    for cpu_map in ("9.0", "11.3"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "planner", "cpu-models", "--cpu-map", cpu_map,
                        "--format", "json"], check=True, capture_output=True, cwd=REPO)
        print(f"migplan cpu-models --cpu-map {cpu_map:5} end to end: "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
