#!/usr/bin/env python3
"""How long planner.snapshot.read.load takes on a large snapshot (prints figures).

Builds a snapshot of N hosts (default 10,000) with G guests each (default 10:
100,000 guests) from the composed fixtures, once, into a directory; then times
``load()`` cold -- a fresh Python process each time, no state kept between
runs -- and prints the median of R runs (default 3), hosts/s, guests/s and the
peak RSS of the loading process.

Hosts copy a fixture host (so a handful of distinct CPUs repeat as they do in
real clusters) but each has its own host UUID, hostname and free-memory figures;
every guest is its own document of a few KB (own name, UUID, disk paths, MAC
addresses, console ptys), as libvirt writes them.

    python benchmarks/bench_inventory_load.py [--hosts 10000] [--guests-per-host 10]
        [--runs 3] [--snapshot DIR (reused when it exists)] [--recommend]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SOURCES = ["mixed-intel-generations", "intel-amd-mixed", "numa-pinned-guests",
           "storage-backends", "hostdev-guests"]

# What a Nova guest carries besides what the rules look at: enough that a guest
# document is the few KB libvirt really writes.
_EXTRA_DEVICES = """\
    <controller type='usb' index='0' model='qemu-xhci' ports='15'>
      <alias name='usb'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <controller type='sata' index='0'>
      <alias name='ide'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pcie-root'>
      <alias name='pcie.0'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <alias name='virtio-serial0'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </controller>
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='qbr{tap}'/>
      <target dev='tap{tap}'/>
      <model type='virtio'/>
      <driver name='vhost' rx_queue_size='512'/>
      <mtu size='1450'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <console type='pty' tty='/dev/pts/{pty}'>
      <source path='/dev/pts/{pty}'/>
      <log file='/var/lib/nova/instances/{uuid}/console.log' append='off'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-{id}-{name}/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'>
      <alias name='input0'/>
      <address type='usb' bus='0' port='1'/>
    </input>
    <graphics type='vnc' port='{vnc}' autoport='yes' listen='10.0.0.{octet}'>
      <listen type='address' address='10.0.0.{octet}'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <alias name='video0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </video>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
      <alias name='rng0'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </rng>
  </devices>"""

_METADATA = """\
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="27.1.0"/>
      <nova:name>{name}</nova:name>
      <nova:creationTime>2026-11-0{day} 08:{minute:02d}:00</nova:creationTime>
      <nova:flavor name="m1.custom">
        <nova:memory>4096</nova:memory>
        <nova:disk>40</nova:disk>
        <nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral>
        <nova:vcpus>2</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="5b1f2c56a0e94e3c8e0a1d9f7a3c2b10">admin</nova:user>
        <nova:project uuid="9e1d4c3b2a1f4e5d8c7b6a5f4e3d2c1b">tenant-{tenant}</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="7c2f9f4e-1f53-4a5c-9a3c-0b4e1e2d3c4b"/>
    </nova:instance>
  </metadata>
"""

_NAME_RE = re.compile(rb"<name>[^<]*</name>")
_UUID_RE = re.compile(rb"<uuid>[^<]*</uuid>")


def _templates() -> tuple[list[Path], list[bytes]]:
    hosts = [d for s in SOURCES for d in sorted((REPO / "fixtures" / s / "hosts").iterdir())]
    guests = [f.read_bytes() for s in SOURCES
              for f in sorted((REPO / "fixtures" / s).glob("hosts/*/domains/*.xml"))]
    return hosts, guests


def _guest(template: bytes, name: str, uid: str, i: int) -> bytes:
    old_uuid = _UUID_RE.search(template)
    xml = template
    if old_uuid:
        xml = xml.replace(old_uuid.group(0)[6:-7], uid.encode())
    xml = _NAME_RE.sub(f"<name>{name}</name>".encode(), xml, count=1)
    xml = xml.replace(b"<domain type='kvm' id='1'>", f"<domain type='kvm' id='{i % 900 + 1}'>".encode())
    xml = xml.replace(b"</uuid>\n", b"</uuid>\n" + _METADATA.format(
        name=name, day=i % 9 + 1, minute=i % 60, tenant=i % 37).encode(), 1)
    mac = ":".join(f"{b:02x}" for b in uuid.UUID(uid).bytes[:5])
    extra = _EXTRA_DEVICES.format(mac=f"fa:{mac}", tap=uid[:11], pty=i % 64, uuid=uid,
                                  id=i % 900 + 1, name=name, vnc=5900 + i % 100,
                                  octet=i % 250 + 1)
    return xml.replace(b"  </devices>", extra.encode(), 1)


def build(root: Path, n: int, per_host: int, digests: bool = True) -> int:
    """Write the snapshot; returns the number of guests.  ``digests``: guest
    digests in domains.json, as ``migplan collect`` writes them."""
    from planner.parse.digest import domain_digest
    from planner.snapshot.write import domains_json

    host_templates, guest_templates = _templates()
    tmp = root.with_name(root.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "hosts").mkdir(parents=True)
    hosts = []
    guests = 0
    for i in range(n):
        src = host_templates[i % len(host_templates)]
        name = f"cn{i:05d}"
        d = tmp / "hosts" / name
        (d / "domains").mkdir(parents=True)
        host_uuid = str(uuid.UUID(int=(0x5EED << 64) + i))
        caps = re.sub(rb"<uuid>[^<]*</uuid>", f"<uuid>{host_uuid}</uuid>".encode(),
                      (src / "capabilities.xml").read_bytes(), count=1)
        (d / "capabilities.xml").write_bytes(caps)
        if (src / "domcapabilities.xml").exists():
            # Same hardware and software generation: the very same document.
            os.link(src / "domcapabilities.xml", d / "domcapabilities.xml")
        facts = json.loads((src / "host.json").read_text())
        facts["uri"] = f"qemu+ssh://root@{name}/system"
        facts["hostname"] = f"{name}.cluster.example"
        for c in facts.get("cells") or []:
            if c.get("free_bytes") is not None:
                c["free_bytes"] = c["free_bytes"] - (i % 97) * 1024**2
        (d / "host.json").write_text(json.dumps(facts, indent=2))
        if (src / "pools.json").exists():
            shutil.copy(src / "pools.json", d / "pools.json")
            if (src / "pools").is_dir():
                shutil.copytree(src / "pools", d / "pools")
        index = []
        for j in range(per_host):
            gname = f"instance-{i * per_host + j:08x}"
            uid = str(uuid.UUID(int=(0xC0FFEE << 96) + i * per_host + j))
            gfile = f"domains/{gname}.xml"
            xml = _guest(guest_templates[(i * 7 + j) % len(guest_templates)],
                         gname, uid, i * per_host + j)
            (d / gfile).write_bytes(xml)
            entry: dict[str, object] = {"name": gname, "uuid": uid,
                                        "state": "running" if j % 5 else "shutoff",
                                        "reason": 1, "persistent": True, "file": gfile}
            if digests:  # as `migplan collect` writes them
                entry["digest"] = domain_digest(xml, f"{name}/{gfile}")
            index.append(entry)
        (d / "domains.json").write_bytes(domains_json(index))
        guests += per_host
        hosts.append({"name": name, "uri": f"qemu+ssh://root@{name}/system", "status": "ok",
                      "error": None, "duration_s": 0.0, "guests": per_host,
                      "dir": f"hosts/{name}"})
    (tmp / "manifest.json").write_text(json.dumps({"format": "migplan-snapshot/1",
                                                   "collected_at": "2026-11-23T09:50:00Z",
                                                   "hosts": hosts}))
    tmp.rename(root)
    return guests


# Runs in a fresh interpreter: nothing parsed or imported by an earlier run.
_CHILD = """\
import json, resource, sys, time
t0 = time.perf_counter()
from planner.snapshot.read import load
inv = load(sys.argv[1])
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "hosts": len(inv.hosts), "guests": len(inv.domains()),
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "cpu_s": sum(resource.getrusage(w)[0] + resource.getrusage(w)[1]
                               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))}))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def xml_only(root: Path) -> Path:
    """The same snapshot without guest digests (hand-made, or an older collect):
    every guest XML parsed.  Hard links but for the rewritten domains.json."""
    other = root.with_name(root.name + "-xml-only")
    if not (other / "manifest.json").exists():
        shutil.rmtree(other, ignore_errors=True)
        subprocess.run(["cp", "-al", str(root), str(other)], check=True)
        for f in other.glob("hosts/*/domains.json"):
            index = json.loads(f.read_bytes())
            for e in index:
                e.pop("digest", None)
            f.unlink()  # a link to the original's file
            f.write_text(json.dumps(index, indent=2))
    return other


def time_load(root: Path, runs: int) -> list[dict[str, float]]:
    out = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", _CHILD, str(root)], capture_output=True,
                           text=True, env=_child_env(), check=True)
        out.append(json.loads(r.stdout))
    return out


def time_recommend(root: Path, runs: int) -> list[tuple[float, int]]:
    """End to end: ``migplan recommend SNAP --format json > /dev/null``; wall s, peak RSS KiB."""
    out = []
    for _ in range(runs):
        # /usr/bin/time -v: the peak RSS of this run's process alone (getrusage
        # of children would keep the largest child of every earlier run).
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "planner",
                            "recommend", str(root), "--format", "json"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=_child_env())
        wall = time.perf_counter() - t0
        if r.returncode not in (0, 3):  # 3: some guest has no feasible destination
            raise SystemExit(f"migplan recommend failed ({r.returncode}): {r.stderr[-2000:]}")
        out.append((wall, int(r.stderr.strip().splitlines()[-1])))
    return out


def measure(snap: Path, runs: int, recommend: bool) -> None:
    results = time_load(snap, runs)
    secs = [r["seconds"] for r in results]
    med = statistics.median(secs)
    hosts, guests = results[0]["hosts"], results[0]["guests"]
    print(f"load() cold, fresh process, {len(results)} runs: "
          f"{', '.join(f'{s:.2f}' for s in secs)} s; median {med:.2f} s")
    print(f"  {hosts} hosts, {guests} guests: {hosts / med:,.0f} hosts/s, "
          f"{guests / med:,.0f} guests/s, peak RSS {max(r['rss_kib'] for r in results) / 1024:.0f} MiB "
          f"(largest worker process {max(r['workers_rss_kib'] for r in results) / 1024:.0f} MiB), "
          f"CPU time (all processes) median {statistics.median(r['cpu_s'] for r in results):.1f} s")
    if recommend:
        rec = time_recommend(snap, runs)
        walls = [w for w, _ in rec]
        print(f"migplan recommend --format json, {len(rec)} runs: "
              f"{', '.join(f'{w:.2f}' for w in walls)} s; median {statistics.median(walls):.2f} s, "
              f"peak RSS {max(r for _, r in rec) / 1024:.0f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10000)
    ap.add_argument("--guests-per-host", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--snapshot", type=Path, help="build here, or reuse if it exists")
    ap.add_argument("--recommend", action="store_true",
                    help="also time `migplan recommend SNAP --format json` end to end")
    ap.add_argument("--xml-only", action="store_true",
                    help="also time the same snapshot without guest digests (SNAP-xml-only)")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tmp = None
    if args.snapshot is None:
        tmp = tempfile.mkdtemp(prefix="bench-inv-")
        root = Path(tmp) / "snap"
    else:
        root = args.snapshot.resolve()
    try:
        if not (root / "manifest.json").exists():
            t0 = time.perf_counter()
            build(root, args.hosts, args.guests_per_host)
            print(f"built {args.hosts} hosts x {args.guests_per_host} guests in "
                  f"{time.perf_counter() - t0:.1f} s: {root}")
        variants = [("as collect writes it (guest digests)", root)]
        if args.xml_only:
            variants.append(("without guest digests (every guest XML parsed)", xml_only(root)))
        for label, snap in variants:
            print(f"snapshot {label}:")
            measure(snap, args.runs, args.recommend)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
