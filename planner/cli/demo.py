"""`migplan demo`: the main job on an embedded default, its files under --out.

As root with libvirt and QEMU installed, the embedded default is the local lab
(`migplan lab up`): real libvirt hosts with real guests are collected into a
snapshot and the planner runs on it.  Elsewhere (or with --example), the shipped
examples stand in, and the demo says why: the `virsh capabilities` of four Intel
generations, written as the hand-made snapshot an operator makes from those files
(``OUT/snapshot-example/hosts/<name>/capabilities.xml``), with their baseline; then
the whole plan of a current fleet mid-upgrade (planner/data/modern-mixed-fleet.tar.xz,
the fixture of that name: real CPUs on libvirt 9.0 and 11.3, and a host no catalog
knows), unpacked to ``OUT/modern-mixed-fleet``.  Each plan is what `migplan recommend`
says, and its Nova settings are written to ``OUT/nova-cpu*.conf`` and ``.yml`` (whole
or not at all).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from planner.adapters.catalogs import default_catalog
from planner.cli.output import emit, render_table
from planner.cpu.engine import baseline, compare
from planner.cpu.render import cpu_to_xml
from planner.errors import InputError, MigplanError

#: the example cluster's hosts, in the order of planner/data/example-cluster-caps.xml
EXAMPLE_HOSTS = ("cn01-broadwell", "cn02-skylake", "cn03-cascadelake", "cn04-icelake")


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _write_example_snapshot(out: Path) -> Path:
    """The example cluster as a hand-made snapshot: one capabilities.xml per host."""
    from planner.adapters.outdir import clean_leftovers, staging_dir

    data = resources.files("planner").joinpath("data/example-cluster-caps.xml").read_text()
    docs = re.findall(r"<capabilities>.*?</capabilities>", data, re.S)
    snap = out / "snapshot-example"
    clean_leftovers(snap, "demo", _say)
    tmp = staging_dir(snap, "demo")
    try:
        for name, doc in zip(EXAMPLE_HOSTS, docs, strict=True):
            (tmp / "hosts" / name).mkdir(parents=True)
            (tmp / "hosts" / name / "capabilities.xml").write_text(doc + "\n")
        os.chmod(tmp, 0o755)
        if snap.exists():  # an earlier demo's: replaced whole
            shutil.rmtree(snap)
        os.rename(tmp, snap)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return snap


def _settings(rep: Any, out: Path) -> None:
    """Each aggregate's Nova settings, written as `recommend --out` writes them."""
    from planner.adapters.outdir import atomic_write
    from planner.review import nova_files

    stems = nova_files.settings_stems([r.scope for r in rep.recs])
    for rec in rep.recs:
        if rec.cannot_run:
            emit(f"\nNo Nova settings written for {rec.scope}: no configuration every host "
                 "can run.\n")
            continue
        try:
            atomic_write(out / f"{stems[rec.scope]}.conf", nova_files.nova_ini(rec, rep.cat))
            atomic_write(out / f"{stems[rec.scope]}.yml", nova_files.globals_yaml(rec, rep.cat))
        except OSError as err:
            raise InputError(f"--out {out}: cannot write: {err.strerror or err}") from None
        emit(f"\nNova settings for {rec.scope} written to {out / stems[rec.scope]}.conf "
             "(nova.conf [libvirt]) and .yml (kolla globals.d).\n")


def _plan(snap: Path, out: Path, what: str) -> None:
    """What `migplan recommend SNAP --out` tells and writes, for the demo."""
    from planner.assess.rules import Policy
    from planner.review import report
    from planner.snapshot.read import load

    inv = load(snap)
    cat = default_catalog()
    emit(f"{what}: {len(inv.hosts)} hosts, {sum(len(h.domains) for h in inv.hosts)} guests; "
         f"snapshot in {snap}\n\n")
    emit("Baseline CPU of the hosts (equal to `virsh cpu-baseline` on their capabilities):\n")
    emit(cpu_to_xml(baseline([h.cpu for h in inv.hosts], cat)))
    emit("\n")
    rep = report.build_report(inv, cat, Policy(), None)
    emit(report.report_text(rep, render_table))
    _settings(rep, out)


def _example_cluster(reason: str, out: Path) -> None:
    """The four example hosts as a hand-made snapshot, their baseline, each host against it;
    then the plan of the mixed fleet."""
    from planner.snapshot.read import load

    emit(f"The lab cannot run here ({reason}); using the shipped example cluster instead.\n\n")
    out.mkdir(parents=True, exist_ok=True)
    snap = _write_example_snapshot(out)
    cat = default_catalog()
    hosts = load(snap).hosts
    base = baseline([h.cpu for h in hosts], cat)
    emit(f"Example cluster: {len(hosts)} hosts ({', '.join(h.cpu.model or '?' for h in hosts)}), "
         f"written as a hand-made snapshot (what `virsh capabilities` printed on each host) in "
         f"{snap}\n\n")
    emit("Baseline CPU (equal to `virsh cpu-baseline` on the same hosts):\n")
    emit(cpu_to_xml(base))
    emit("\nEach host against the baseline:\n")
    emit(render_table(["host", "model", "result"],
                      [[h.name, h.cpu.model, compare(h.cpu, base, cat).result] for h in hosts]))
    _example_fleet(out)


def _example_fleet(out: Path) -> None:
    """The current mixed fleet: unpacked under ``out``, recommended, Nova settings written."""
    import tarfile

    from planner.review import report
    from planner.snapshot.read import load

    dest = out / "modern-mixed-fleet"
    archive = resources.files("planner").joinpath("data/modern-mixed-fleet.tar.xz")
    if dest.exists():  # an earlier demo's: unpacked again, whole
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with archive.open("rb") as f, tarfile.open(fileobj=f, mode="r:xz") as tar:
        tar.extractall(dest, filter="data")
    rep = report.build_report(load(dest), None)
    emit(f"\nA current fleet mid-upgrade ({dest}: Cascade Lake and Ice Lake hosts on libvirt "
         "9.0, Sapphire and Emerald Rapids and an EPYC Milan aggregate on libvirt 11.3, an EPYC "
         "Genoa host on a newer libvirt):\n\n")
    emit(report.report_text(rep, render_table))
    _settings(rep, out)


def _lab_unavailable() -> str | None:
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
    and the Nova recommendation with the feasibility of every guest, and writes
    the Nova settings to DIR/nova-cpu.conf and DIR/nova-cpu.yml.  The lab keeps
    running afterwards so you can explore it; `migplan lab down` stops it.
    Without root or libvirt/QEMU (or with --example), the shipped examples: four
    Intel generations written as a hand-made snapshot,
    DIR/snapshot-example/hosts/<name>/capabilities.xml, with their baseline; then
    a fleet mid-upgrade (DIR/modern-mixed-fleet), planned, its Nova settings in
    DIR/nova-cpu.<aggregate>.conf and .yml.

    \b
    Example:
      sudo migplan demo
      migplan demo --example --out /tmp/demo
    """
    dest = Path(out)
    reason = "--example given" if example else _lab_unavailable()
    if reason:
        _example_cluster(reason, dest)
        return
    from planner.collect.run import collect
    from planner.collect.sources import Target
    from planner.lab import Lab

    lab = Lab()
    _say("demo: bringing the lab up (idempotent) ...")
    try:
        lab.up(progress=lambda m: _say(f"  {m}"))
    except MigplanError as err:
        _example_cluster(f"lab up failed: {err}", dest)
        return
    snap = dest / time.strftime("snapshot-%Y%m%d-%H%M%S")
    snap.parent.mkdir(parents=True, exist_ok=True)
    _say(f"demo: collecting {len(lab.uris())} lab hosts into {snap} ...")
    result = collect([Target(uri, name) for name, uri in lab.uris().items()], snap)
    result.raise_if_partial()
    _plan(snap, dest, "Lab")
    emit("The lab keeps running: `migplan lab status`, `migplan lab down`.\n")
