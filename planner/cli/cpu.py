"""CPU commands shaped like virsh: cpu-baseline, cpu-compare, cpu-models."""

from __future__ import annotations

import gc
from typing import Any

import click

from planner.adapters.catalogs import load_catalog
from planner.cli.output import (
    cpu_map_option,
    emit,
    format_option,
    read_input,
    render_csv,
    render_json,
    render_table,
)
from planner.cpu.engine import baseline, compare
from planner.cpu.parse import parse_cpu_file
from planner.cpu.render import baseline_to_json, cpu_to_xml
from planner.errors import CpuError, UsageError


def _name_the_unknown(err: CpuError, cpus: list[Any], cat: Any) -> CpuError:
    """libvirt's "Unknown CPU model X" with the file that names X and the --cpu-map hint."""
    from planner.recommend.cpu_config import CPU_MAP_HINT

    text = str(err)
    for prefix in ("Unknown CPU model ", "Unknown CPU feature "):
        if text.startswith(prefix):
            name = text[len(prefix):]
            src = next((c.source for c in cpus
                        if c.model == name or any(f.name == name for f in c.features)), "")
            return CpuError(f"{text} ({src or 'input'}; not in libvirt {cat.libvirt_version}'s "
                            f"cpu_map): {CPU_MAP_HINT}")
    return err


@click.command("cpu-baseline")
@click.argument("files", nargs=-1, metavar="FILE...")
@click.option("--features", is_flag=True, help="List every feature of the model too (like virsh --features).")
@click.option("--migratable", is_flag=True, help="Drop features that block migration (invtsc...).")
@click.option("--driver", type=click.Choice(["generic", "qemu"]), default="generic", show_default=True,
              help="generic: the answer of `virsh -c test:///default cpu-baseline`; qemu: that of "
                   "`virsh -c qemu:///system cpu-baseline`, which also drops features QEMU never "
                   "takes (cmt, mbm_total, mbm_local, osxsave, ospke).")
@format_option("xml", "json")
@cpu_map_option
def cpu_baseline(files: tuple[str, ...], features: bool, migratable: bool, driver: str,
                 fmt: str, cpu_map: str | None) -> None:
    """Compute the CPU model every host can run, exactly as libvirt's cpu-baseline.

    FILE holds host CPUs: `virsh capabilities` output (one or many documents
    concatenated), domain capabilities, or bare <cpu> elements.

    \b
    Example:
      for h in cn1 cn2 cn3; do virsh -c qemu+ssh://$h/system capabilities; done > caps.xml
      migplan cpu-baseline caps.xml --format json
    """
    if not files:
        raise UsageError("no input files: give one or more FILEs with host CPU XML")
    cat = load_catalog(cpu_map)
    # Parsing and folding 100,000 host CPUs allocates millions of acyclic
    # objects: the cyclic collector's passes over them cost a quarter of the
    # run and cannot free anything.  A one-shot command: pause it.
    gc.disable()
    cpus = []
    for f in files:
        cpus.extend(parse_cpu_file(read_input(f), f, "host"))
    try:
        result = baseline(cpus, cat, migratable=migratable, expand=features,
                          qemu=driver == "qemu")
    except CpuError as err:
        raise _name_the_unknown(err, cpus, cat) from None
    if fmt == "json":
        emit(render_json(baseline_to_json(result)))
    else:
        emit(cpu_to_xml(result))


@click.command("cpu-compare")
@click.argument("host_file", metavar="HOST_FILE")
@click.argument("cpu_file", metavar="CPU_FILE")
@format_option("table", "json", "csv")
@cpu_map_option
def cpu_compare(host_file: str, cpu_file: str, fmt: str, cpu_map: str | None) -> None:
    """Compare a CPU definition with host CPUs, as libvirt's CPU compare does.

    HOST_FILE: host CPUs (capabilities, possibly many concatenated, or <cpu>
    elements), or a snapshot directory (hosts/<name>/capabilities.xml), whose
    hosts are then named.  CPU_FILE: the CPU to check (a domain XML, a <cpu>
    element or a baseline result); its first CPU is used.  Each host is reported
    as identical, superset (host offers more) or incompatible, with the features
    that block it.  Exit code 0 when every host is compatible, 3 otherwise.

    \b
    Example:
      migplan cpu-baseline caps.xml > baseline.xml
      migplan cpu-compare caps.xml baseline.xml
      migplan cpu-compare snapshots/today baseline.xml --format csv
    """
    cat = load_catalog(cpu_map)
    hosts = _named_hosts(host_file)
    guest_cpus = parse_cpu_file(read_input(cpu_file), cpu_file, "auto")
    guest = guest_cpus[0]
    rows: list[dict[str, Any]] = []
    worst = 0
    for label, h in hosts:
        res = compare(h, guest, cat)
        if not res.compatible:
            worst = 3
        rows.append({"host": label, "host_model": h.model, "result": res.result,
                     "blocking_features": list(res.features), "message": res.message})
    if fmt == "json":
        emit(render_json({"cpu": {"model": guest.model, "source": cpu_file}, "hosts": rows}))
    else:
        headers = ["host", "host_model", "result", "blocking_features", "message"]
        table = [[r["host"], r["host_model"], r["result"], " ".join(r["blocking_features"]),
                  r["message"] or ""] for r in rows]
        emit(render_csv(headers, table) if fmt == "csv" else render_table(headers, table))
    if worst:
        raise SystemExit(worst)


def _named_hosts(host_file: str) -> list[tuple[str, Any]]:
    """(label, host CPU) per host: a snapshot's host names; for a file of capabilities
    documents (which name no host) the file's name, numbered when it holds several."""
    from pathlib import Path

    if Path(host_file).is_dir():
        from planner.snapshot.read import load

        return [(h.name, h.cpu) for h in load(host_file).hosts]
    cpus = parse_cpu_file(read_input(host_file), host_file, "auto")
    name = Path(host_file).name
    if len(cpus) == 1:
        return [(name, cpus[0])]
    return [(f"{name} #{i}", c) for i, c in enumerate(cpus, start=1)]


@click.command("cpu-models")
@format_option("table", "json", "csv")
@cpu_map_option
def cpu_models(fmt: str, cpu_map: str | None) -> None:
    """List the CPU models of the catalog, oldest first (libvirt's order).

    \b
    Example:
      migplan cpu-models --format csv
    """
    cat = load_catalog(cpu_map)
    rows = [[m.name, m.vendor or "", len(m.features), " ".join(m.removed),
             "on" if m.decode_guest else "off"] for m in cat.models]
    headers = ["model", "vendor", "features", "removed_features", "decode_guest"]
    if fmt == "json":
        emit(render_json({"libvirt_version": cat.libvirt_version, "source": cat.source,
                          "models": [dict(zip(headers, r, strict=True)) for r in rows]}))
    elif fmt == "csv":
        emit(render_csv(headers, rows))
    else:
        emit(render_table(headers, rows))


__all__ = ["cpu_baseline", "cpu_compare", "cpu_models", "CpuError"]
