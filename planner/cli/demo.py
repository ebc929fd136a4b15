"""`migplan demo`: the main job on an embedded default.

As root with libvirt and QEMU installed, the embedded default is the local lab
(`migplan lab up`): real libvirt hosts with real guests are collected into a
snapshot and the planner runs on it.  Elsewhere, the shipped example cluster
(capabilities of four Intel generations) stands in, and the demo says why.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import click

from planner.adapters.catalogs import default_catalog
from planner.cli.output import emit, render_table
from planner.cpu.engine import baseline, compare
from planner.cpu.parse import parse_cpu_file
from planner.cpu.render import cpu_to_xml
from planner.errors import MigplanError


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _example_cluster(reason: str) -> None:
    emit(f"The lab cannot run here ({reason}); using the shipped example cluster instead.\n\n")
    data = resources.files("planner").joinpath("data/example-cluster-caps.xml").read_bytes()
    cat = default_catalog()
    hosts = parse_cpu_file(data, "example-cluster", "host")
    base = baseline(hosts, cat)
    emit(f"Example cluster: {len(hosts)} hosts ({', '.join(h.model or '?' for h in hosts)})\n\n")
    emit("Baseline CPU (equal to `virsh cpu-baseline` on the same hosts):\n")
    emit(cpu_to_xml(base))
    rows = [[f"host #{i}", h.model, compare(h, base, cat).result]
            for i, h in enumerate(hosts, start=1)]
    emit("\nEach host against the baseline:\n")
    emit(render_table(["host", "model", "result"], rows))


def _lab_unavailable() -> str | None:
    import os
    import shutil

    if os.geteuid() != 0:
        return "not running as root"
    for tool in ("libvirtd", "virsh", "qemu-system-x86_64", "unshare"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed"
    return None


@click.command("demo")
@click.option("--out", "out", metavar="DIR", default="out/demo", show_default=True,
              help="Where the demo's snapshot and Nova settings are written.")
@click.option("--example", is_flag=True, help="Use the shipped example cluster, not the lab.")
def demo(out: str, example: bool) -> None:
    """Run the planner on the embedded default: the local lab of real libvirt hosts.

    Brings the lab up (idempotent: 3 libvirtd hosts on 127.0.0.2-4 with small
    real guests), collects it into a snapshot under DIR, prints the baseline CPU
    and the Nova recommendation with the feasibility of every guest.  The lab
    keeps running afterwards so you can explore it; `migplan lab down` stops it.
    Without root or libvirt/QEMU, the shipped example cluster is used.

    \b
    Example:
      sudo migplan demo
      migplan demo --example
    """
    reason = "--example given" if example else _lab_unavailable()
    if reason:
        _example_cluster(reason)
        return
    from planner.assess.rules import Policy
    from planner.collect.run import collect
    from planner.collect.sources import Target
    from planner.lab import Lab
    from planner.review import nova_files, report
    from planner.snapshot.read import load

    lab = Lab()
    _say("demo: bringing the lab up (idempotent) ...")
    try:
        lab.up(progress=lambda m: _say(f"  {m}"))
    except MigplanError as err:
        _example_cluster(f"lab up failed: {err}")
        return
    snap = Path(out) / time.strftime("snapshot-%Y%m%d-%H%M%S")
    snap.parent.mkdir(parents=True, exist_ok=True)
    _say(f"demo: collecting {len(lab.uris())} lab hosts into {snap} ...")
    targets = [Target(uri, name) for name, uri in lab.uris().items()]
    result = collect(targets, snap)
    result.raise_if_partial()
    inv = load(snap)
    cat = default_catalog()
    cpus = [h.cpu for h in inv.hosts]
    emit(f"Lab: {len(inv.hosts)} hosts, {sum(len(h.domains) for h in inv.hosts)} guests; "
         f"snapshot in {snap}\n\n")
    emit("Baseline CPU of the lab hosts (equal to `virsh cpu-baseline` on their capabilities):\n")
    emit(cpu_to_xml(baseline(cpus, cat)))
    emit("\n")
    rep = report.build_report(inv, cat, Policy(), None)
    emit(report.report_text(rep, render_table))
    nova = Path(out) / "nova-cpu.conf"
    nova.parent.mkdir(parents=True, exist_ok=True)
    nova.write_text(nova_files.nova_ini(rep.recs[0], cat))
    emit(f"\nNova settings written to {nova}.  The lab keeps running: `migplan lab status`, "
         "`migplan lab down`.\n")
