"""`migplan demo`: the main job on an embedded default."""

from __future__ import annotations

from importlib import resources

import click

from planner.catalogs import default_catalog
from planner.cli.output import emit, render_table
from planner.cpu.engine import baseline, compare
from planner.cpu.parse import parse_cpu_file
from planner.cpu.render import cpu_to_xml


@click.command("demo")
def demo() -> None:
    """Run the planner on the shipped example cluster (4 Intel generations).

    Prints the baseline CPU libvirt would compute for the cluster and how each
    host compares with it.

    \b
    Example:
      migplan demo
    """
    data = resources.files("planner").joinpath("data/example-cluster-caps.xml").read_bytes()
    cat = default_catalog()
    hosts = parse_cpu_file(data, "example-cluster", "host")
    base = baseline(hosts, cat)
    emit(f"Example cluster: {len(hosts)} hosts ({', '.join(h.model or '?' for h in hosts)})\n\n")
    emit("Baseline CPU (equal to `virsh cpu-baseline` on the same hosts):\n")
    emit(cpu_to_xml(base))
    rows = []
    for i, h in enumerate(hosts, start=1):
        res = compare(h, base, cat)
        rows.append([f"host #{i}", h.model, res.result])
    emit("\nEach host against the baseline:\n")
    emit(render_table(["host", "model", "result"], rows))
