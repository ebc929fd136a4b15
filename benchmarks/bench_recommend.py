"""Benchmark: `migplan recommend` on a 10,000-host / 100,000-guest inventory built in memory.

Run:  PYTHONPATH=. python benchmarks/bench_recommend.py [--hosts N] [--guests-per-host K]
      PYTHONPATH=. python benchmarks/bench_recommend.py --snapshot-hosts N

``--snapshot-hosts N`` instead writes a snapshot directory of N hosts (the hosts
of fixtures/mixed-intel-generations, hard-linked round-robin) and times
``planner.snapshot.read.load`` + recommend end to end, as ``migplan recommend`` runs.

Hosts: five CPU generations x two QEMU/libvirt versions (real host CPUs from
the example cluster plus one from libvirt's test data), free memory varying
per host.  Guests: a handful of flavors (memory, vCPUs), CPU modes mixed
(libvirt default, custom baseline, host-model), mostly RBD disks, some local
files, a few with PCI devices.  Prints the time of each stage and the peak RSS.
The targets (issue 4): < 10 s and < 2 GB for recommend.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from planner.adapters.catalogs import default_catalog  # noqa: E402
from planner.model import Disk, HostDev, Inventory  # noqa: E402
from planner.review.report import build_report, iter_report_json, matrix_detail  # noqa: E402
from tests.builders import HOST_MODEL, custom_cpu, guest, host  # noqa: E402

GENS = ("broadwell", "skylake", "cascadelake", "icelake")
VERSIONS = (("7.2.0", "9.0.0"), ("8.2.0", "10.0.0"))
NEW_MACHINES = ("pc-q35-8.2", "pc-q35-7.2", "q35", "pc-i440fx-8.2", "pc-i440fx-7.2", "pc",
                "pc-q35-6.2", "pc-q35-5.2")
FLAVORS = ((2, 1), (4, 2), (8, 4), (16, 8), (32, 16), (64, 16))


def build(n_hosts: int, per_host: int) -> Inventory:
    cpus = {
        "broadwell": custom_cpu("Broadwell-noTSX-IBRS"),
        "skylake": custom_cpu("Skylake-Server-noTSX-IBRS"),
    }
    hosts = []
    gid = 0
    for i in range(n_hosts):
        gen = GENS[i % len(GENS)]
        qemu, lv = VERSIONS[(i // len(GENS)) % 2]
        extra = {"machine_types": NEW_MACHINES} if qemu == "8.2.0" else {}
        doms = []
        for j in range(per_host):
            mem, vcpus = FLAVORS[(i + j) % len(FLAVORS)]
            kind = (i * 7 + j) % 20
            cpu = None if kind < 8 else HOST_MODEL if kind < 12 else cpus["broadwell"] \
                if kind < 18 else cpus["skylake"]
            disks = (Disk("vda", "disk", "file", f"/var/lib/libvirt/images/g{gid}.qcow2",
                          size_bytes=20 * 2**30),) if kind == 19 else None
            hostdevs = (HostDev("pci", "0000:3b:00.0"),) if (i * per_host + j) % 997 == 0 else ()
            kw = {"disks": disks} if disks else {}
            doms.append(guest(f"g{gid:06d}", mem_gib=mem, vcpus=vcpus, cpu=cpu,
                              hostdevs=hostdevs, **kw))
            gid += 1
        hosts.append(host(f"cn{i:05d}", gen, free_gib=64 + (i % 13) * 16, domains=tuple(doms),
                          qemu_version=qemu, libvirt_version=lv, **extra))
    # Guests on a host use some of its memory: realistic, and it varies per host.
    hosts = [dataclasses.replace(h, free_memory_kib=max(0, (h.free_memory_kib or 0)
                                                        - sum(d.memory_kib for d in h.domains) // 4))
             for h in hosts]
    return Inventory(hosts=tuple(hosts), source=f"in-memory {n_hosts} hosts")


def snapshot_run(n: int) -> None:
    import os
    import tempfile

    from planner.snapshot.read import load

    src = Path(__file__).resolve().parent.parent / "fixtures" / "mixed-intel-generations"
    man = json.loads((src / "manifest.json").read_text())
    proto = man["hosts"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hosts = []
        for i in range(n):
            p = proto[i % len(proto)]
            name = f"cn{i:05d}"
            d = root / "hosts" / name
            for f in (src / p["dir"]).rglob("*"):
                t = d / f.relative_to(src / p["dir"])
                if f.is_dir():
                    t.mkdir(parents=True, exist_ok=True)
                else:
                    t.parent.mkdir(parents=True, exist_ok=True)
                    os.link(f, t)
            hosts.append({**p, "name": name, "dir": f"hosts/{name}"})
        (root / "manifest.json").write_text(json.dumps({**man, "hosts": hosts}))
        t0 = time.perf_counter()
        inv = load(root)
        t1 = time.perf_counter()
        print(f"load: {len(inv.hosts)} hosts, {sum(len(h.domains) for h in inv.hosts)} guests "
              f"in {t1 - t0:.2f} s")
        gc.freeze()  # as the CLI does after the load and after the analysis
        rep = build_report(inv, default_catalog())
        gc.freeze()
        for _ in iter_report_json(rep, "auto"):
            pass
        t2 = time.perf_counter()
        print(f"recommend + JSON: {t2 - t1:.2f} s; total {t2 - t0:.2f} s; peak RSS {rss_mib():.0f} MiB")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--guests-per-host", type=int, default=10)
    ap.add_argument("--snapshot-hosts", type=int, default=0)
    args = ap.parse_args()
    if args.snapshot_hosts:
        snapshot_run(args.snapshot_hosts)
        return
    cat = default_catalog()
    t0 = time.perf_counter()
    inv = build(args.hosts, args.guests_per_host)
    t1 = time.perf_counter()
    print(f"built {len(inv.hosts)} hosts, {sum(len(h.domains) for h in inv.hosts)} guests "
          f"in {t1 - t0:.2f} s (rss {rss_mib():.0f} MiB)")
    gc.freeze()  # as the CLI does after the load and after the analysis
    rep = build_report(inv, cat)
    gc.freeze()
    t2 = time.perf_counter()
    an = rep.analysis
    print(f"recommend + graph: {t2 - t1:.2f} s -> {rep.recs[0].cpu_mode} "
          f"{', '.join(rep.recs[0].cpu_models[:2])}; {len(an.classes)} host classes, "
          f"{an.graph.number_of_nodes()} graph nodes, {len(an.domains)} domains, "
          f"{len(an.one_way)} one-way class pairs, {len(an.stranded)} stranded guests")
    size = sum(len(chunk) for chunk in iter_report_json(rep, "auto"))  # what the CLI writes
    t3 = time.perf_counter()
    print(f"JSON report ({matrix_detail(rep, 'auto')} matrix, {size / 2**20:.1f} MiB): "
          f"{t3 - t2:.2f} s")
    total = t3 - t1
    peak = rss_mib()
    print(f"TOTAL recommend (excluding building the inventory): {total:.2f} s; "
          f"peak RSS {peak:.0f} MiB")
    ok = total < 10 and peak < 2048
    print("targets (< 10 s, < 2 GB):", "met" if ok else "NOT met")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
