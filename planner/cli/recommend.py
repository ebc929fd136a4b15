"""`migplan recommend` and `migplan check`: parse arguments, one library call, render."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from planner.adapters.catalogs import catalog_for_hosts, load_catalog
from planner.assess.rules import Policy
from planner.cli.output import (
    FiniteFloat,
    cpu_map_option,
    emit,
    format_option,
    read_input,
    render_csv,
    render_json,
    render_table,
    unwind_on_sigterm,
)
from planner.errors import InputError, UsageError
from planner.review.text import printable


def policy_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--no-block-migration", is_flag=True,
                     help="Treat guests with local disks as blocked instead of warning.")(f)
    f = click.option("--cpu-ratio", type=FiniteFloat(min=0.1), default=4.0, show_default=True,
                     help="vCPUs allowed per host CPU (Nova's cpu_allocation_ratio).")(f)
    f = click.option("--memory-reserve", "memory_reserve", type=click.IntRange(min=0),
                     default=512, show_default=True, metavar="MIB",
                     help="Memory kept free on every destination, MiB "
                          "(Nova's reserved_host_memory_mb).")(f)
    f = cpu_map_option(f)
    return f


def _policy(memory_reserve: int, cpu_ratio: float, no_block_migration: bool) -> Policy:
    return Policy(memory_reserve_kib=memory_reserve * 1024, cpu_allocation_ratio=cpu_ratio,
                  allow_block_migration=not no_block_migration)


def _load(snapshot: str) -> Any:
    from planner.snapshot.read import load

    inv = load(snapshot)
    for w in inv.warnings:
        click.echo(printable(f"Warning: {w}"), err=True)
    # The inventory lives until exit: keep the collector from rescanning its
    # millions of objects each time the analysis allocates (a 10,000-host
    # snapshot spent seconds in collections).
    gc.freeze()
    return inv


@click.command("recommend")
@click.argument("snapshot", metavar="SNAPSHOT")
@format_option("table", "json")
@click.option("--out", "out", metavar="DIR", default=None,
              help="Also write report.json, matrix.csv, the Nova settings as nova.conf INI and "
                   "globals.d YAML into DIR (created if missing).")
@click.option("--groups", "groups_file", metavar="FILE", default=None,
              help="Host -> aggregate (.yaml: {aggregate: [hosts]}, .csv: host,aggregate, "
                   ".ini: Ansible inventory sections); one recommendation per aggregate.")
@click.option("--detail", type=click.Choice(["auto", "full", "classes"]), default="auto",
              show_default=True,
              help="Matrix rows: full = every host pair and every guest x host; classes = per "
                   "host class (bounded for large clusters); auto = full up to 20,000 rows.")
@policy_options
def recommend_cmd(snapshot: str, fmt: str, out: str | None, groups_file: str | None,
                  detail: str, cpu_map: str | None, memory_reserve: int, cpu_ratio: float,
                  no_block_migration: bool) -> None:
    """Recommend Nova CPU settings so every guest can live-migrate between every host.

    Reads a snapshot (`migplan collect`, or a directory of hosts/<name>/capabilities.xml)
    and reports cpu_mode, cpu_models and cpu_model_extra_flags (cpu_models[0] is
    libvirt's baseline of the hosts), the features each host gives up, what-if
    advice, migration domains, one-way pairs, stranded guests and the
    feasibility matrix.  Changes nothing on any host.

    Exit code 0; 3 when guests are stranded (no other host can take them; the
    settings are still written); 6 when some aggregate has no settings every one
    of its hosts can run (they are not written).

    \b
    Example:
      migplan recommend snapshots/today
      migplan recommend snapshots/today --groups aggregates.yaml --out nova-cpu/
      migplan recommend snapshots/today --format json | jq .recommendation
    """
    from planner.review import report

    cat = load_catalog(cpu_map) if cpu_map else None  # None: by the hosts' libvirt
    groups = None
    if groups_file is not None:
        from planner.recommend.groups import parse_groups

        groups = parse_groups(read_input(groups_file), groups_file)
    inv = _load(snapshot)
    # Like the inventory, the analysis lives until exit: built with the
    # collector off (re-enabling it before the freeze would cost a full pass
    # over it, ~0.3 s on 100,000 guests), then frozen out of its way while the
    # report is written (~0.7 s of collections).
    gc.disable()
    try:
        rep = report.build_report(inv, cat,
                                  _policy(memory_reserve, cpu_ratio, no_block_migration), groups)
        gc.freeze()
    finally:
        gc.enable()
    if out:
        _write_out(Path(out), rep, detail, snapshot)
    if fmt == "json":
        # Streamed: a large cluster's document is hundreds of MB.
        for chunk in report.iter_report_json(rep, detail):
            emit(chunk)
    else:
        emit(report.report_text(rep, render_table))
        if out:
            emit(f"\nWrote {out}/: report.json, matrix.csv, nova-cpu*.conf, nova-cpu*.yml "
                 "(and migplan-run.json, the list of this run's files)\n")
    code, why = report.exit_status(rep)
    if code:
        # a finding, not an error: the report above is complete
        click.echo(printable(f"migplan recommend: {why} (exit {code})"), err=True)
        raise SystemExit(code)


#: what `recommend --out` wrote before migplan-run.json: such a directory is replaced too
EARLIER_OUT = re.compile(r"report\.json|matrix\.csv|nova-cpu(\.[A-Za-z0-9._-]+)?\.(conf|yml)")


def _write_out(d: Path, rep: Any, detail: str, snapshot: str) -> None:
    """The --out set, published whole (planner.adapters.outdir.OutputSet): a run
    interrupted or failing leaves DIR as the previous run left it."""
    from planner.adapters.outdir import OutputSet
    from planner.review import nova_files, report

    unwind_on_sigterm()
    try:
        with OutputSet(d, "recommend", say=lambda m: click.echo(m, err=True),
                       earlier=EARLIER_OUT) as out:
            with out.open("report.json") as f:
                for chunk in report.iter_report_json(rep, detail):
                    f.write(chunk)
            rows = report.matrix(rep, report.matrix_detail(rep, detail))
            out.write("matrix.csv", render_csv(report.MATRIX_CSV_HEADERS,
                                               report.matrix_csv_rows(list(rows))))
            stems = nova_files.settings_stems([rec.scope for rec in rep.recs])
            for rec in rep.recs:
                if rec.cannot_run:
                    continue  # never a configuration some host cannot run (exit 6)
                out.write(f"{stems[rec.scope]}.conf", nova_files.nova_ini(rec, rep.cat))
                out.write(f"{stems[rec.scope]}.yml", nova_files.globals_yaml(rec, rep.cat))
            out.commit({"snapshot": snapshot})
    except OSError as err:
        raise InputError(f"--out {d}: cannot write: {err.strerror or err}") from None


@click.command("check")
@click.argument("guest", metavar="GUEST")
@click.argument("dest", metavar="DEST")
@click.option("--snapshot", "snapshot", metavar="SNAPSHOT", required=True,
              help="The inventory snapshot directory.")
@click.option("--source", "source", metavar="HOST", default=None,
              help="The host GUEST is on, when guests of that name are on several hosts.")
@format_option("table", "json")
@policy_options
def check_cmd(guest: str, dest: str, snapshot: str, source: str | None, fmt: str,
              cpu_map: str | None, memory_reserve: int, cpu_ratio: float,
              no_block_migration: bool) -> None:
    """Can GUEST live-migrate to host DEST?  One verdict with every rule's reason.

    GUEST is a guest's name or UUID; when guests of one name are on several hosts,
    --source HOST (or the UUID) says which.  Exit code 0 when the move is feasible
    (ok or warn), 3 when it is blocked or when the snapshot lacks data a rule needs
    (unknown: not proven feasible).

    \b
    Example:
      migplan check web-01 cn03 --snapshot snapshots/today
      migplan check web-01 cn03 --snapshot snapshots/today --source cn01 --format json
    """
    from planner.assess.rules import assess
    from planner.review import check

    inv = _load(snapshot)
    cat = load_catalog(cpu_map) if cpu_map else catalog_for_hosts(inv.hosts)
    src, dom = _find_guest(inv, guest, source, snapshot)
    dst = inv.host(dest)
    if dst is None:
        raise UsageError(f"host {dest!r} is not in snapshot {snapshot} "
                         f"(hosts: {', '.join(h.name for h in inv.hosts[:10])})")
    a = assess(dom, src, dst, _policy(memory_reserve, cpu_ratio, no_block_migration), cat)
    if fmt == "json":
        emit(render_json(check.check_json(a, inv.nova_servers())))
    else:
        emit(check.check_text(a, render_table, inv.nova_servers()))
    if not a.feasible:
        raise SystemExit(3)


def _find_guest(inv: Any, guest: str, source: str | None, snapshot: str) -> tuple[Any, Any]:
    """(host, guest) for a guest name or UUID (for a guest Nova manages, also its server's
    name); several candidates need --source."""
    found = [(h, d) for h in inv.hosts for d in h.domains
             if d.name == guest or (d.uuid is not None and d.uuid.lower() == guest.lower())]
    if not found:
        by_server = {name: n for n, (name, _uuid) in inv.nova_servers().items()}
        found = [(h, d) for h in inv.hosts for d in h.domains if d.name == by_server.get(guest)]
    if source is not None:
        src = inv.host(source)
        if src is None:
            raise UsageError(f"--source {source!r} is not a host of snapshot {snapshot}")
        found = [(h, d) for h, d in found if h.name == src.name]
        if not found:
            raise UsageError(f"guest {guest!r} is not on {source} in snapshot {snapshot}")
    if not found:
        raise UsageError(f"guest {guest!r} is not in snapshot {snapshot}")
    if len(found) > 1:
        where = ", ".join(f"{h.name} (UUID {d.uuid})" for h, d in found[:5])
        raise UsageError(f"guests named {guest!r} are on several hosts: {where}; say which "
                         "with --source HOST, or give the guest's UUID")
    return found[0]
