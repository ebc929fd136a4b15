"""`migplan migrate`: one real live migration (libvirt's or Nova's), pre-flighted and verified."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from planner.cli.nova_move import (
    fresh_reader,
    nova_driver,
    nova_options,
    open_for_moves,
    plan_move,
    refuse_libvirt_options,
)
from planner.cli.output import (
    FiniteFloat,
    emit,
    format_option,
    libvirt_auth_options,
    libvirt_credentials,
    render_json,
    render_table,
)
from planner.cli.recommend import _policy, policy_options
from planner.errors import (
    GuestLost,
    GuestStateUnknown,
    InfeasibleError,
    MigplanError,
    MigrationFailed,
    UsageError,
)

MiB = 1024 * 1024


# ---- hosts ---------------------------------------------------------------------------------


def known_hosts(lab: bool, snapshot: str | None, state_dir: str | None = None) -> dict[str, str]:
    """Host name -> libvirt URI from the lab (in ``state_dir``) or a snapshot's manifest."""
    if lab and snapshot is not None:
        raise UsageError("--lab and --snapshot both name the hosts: give one of them")
    if state_dir is not None and not lab:
        raise UsageError("--state-dir is the lab's state directory: use it with --lab")
    if lab:
        return lab_uris(state_dir)
    if snapshot is not None:
        from planner.snapshot.read import host_uris

        return host_uris(snapshot)
    return {}


def lab_uris(state_dir: str | None) -> dict[str, str]:
    """Host name -> URI of the lab recorded in ``state_dir`` (default: $MIGPLAN_LAB_DIR)."""
    from planner.lab import Lab

    the_lab = Lab(state_dir)
    if not the_lab.recorded:
        raise UsageError(f"--lab: no lab in {the_lab.state_dir} "
                         "(start one with `migplan lab up`, or give its --state-dir)")
    return the_lab.uris()


LAB_STATE_DIR_HELP = ("With --lab: the lab's state directory, as given to `migplan lab up "
                      "--state-dir` (default $MIGPLAN_LAB_DIR or /var/tmp/migplan-lab).")


def hosts_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--snapshot", "snapshot", metavar="DIR", default=None,
                     help="Host names and URIs from this snapshot's manifest "
                          "(the state itself is read fresh from the hosts).")(f)
    f = click.option("--lab", is_flag=True,
                     help="The hosts of `migplan lab up`.")(f)
    f = click.option("--state-dir", "state_dir", metavar="DIR", default=None,
                     help=LAB_STATE_DIR_HELP)(f)
    return f


# ---- progress --------------------------------------------------------------------------------


class ProgressBar:
    """The job's progress on stderr: redrawn in place on a terminal, a line a second otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.drawn = False
        self.phase = "precopy"

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if p.phase != self.phase and not p.data_total:
            # Nova's migration changes status (queued, preparing...) before it has figures
            self.phase = p.phase
            self.done()
            click.echo(f"{self.label}: {p.phase}  {p.elapsed_s:.1f} s", err=True)
            return
        if not p.data_total or (not self.tty and now - self.last < 1.0):
            return  # no figures (job starting or ending) or too soon for a log line
        self.last = now
        self.phase = p.phase
        total = p.data_total or 0
        done = p.data_processed or 0
        frac = min(1.0, done / total) if total else 0.0
        bar = "#" * int(frac * 20)
        parts = [f"{self.label} [{bar:<20}] {frac * 100:3.0f}%",
                 f"{done / MiB:.0f}/{total / MiB:.0f} MiB"]
        if p.data_remaining is not None:
            parts.append(f"remaining {p.data_remaining / MiB:.0f} MiB")
        if p.disk_total:
            parts.append(f"disk {(p.disk_processed or 0) / MiB:.0f}/{p.disk_total / MiB:.0f} MiB")
        if p.dirty_rate is not None:
            parts.append(f"dirty {p.dirty_rate} pages/s")
        if p.iteration is not None:
            parts.append(f"iteration {p.iteration}")
        if p.phase != "precopy":
            parts.append(p.phase)
        parts.append(f"{p.elapsed_s:.1f} s")
        line = "  ".join(parts)
        if self.tty:
            click.echo("\r" + line.ljust(100), nl=False, err=True)
            self.drawn = True
        else:
            click.echo(line, err=True)

    def done(self) -> None:
        if self.drawn:
            click.echo("", err=True)
            self.drawn = False


# ---- rendering --------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    return "unknown" if n is None else f"{n / MiB:.0f} MiB"


def _how(plan: Any) -> list[list[Any]]:
    """How the move is made: libvirt's flags, or Nova's request."""
    storage = ", ".join(f"{d.target} ({d.source}, {_size(d.bytes)})" for d in plan.storage)
    if plan.nova is not None:
        n = plan.nova
        return [["server", f"{n.server_name} ({n.server_id})"],
                ["via Nova", f"POST /servers/{n.server_id}/action {json.dumps(n.request())}"],
                ["local disks", (storage + " (Nova copies them unless the computes share "
                                 "the instances' storage)") if storage else "none"]]
    return [["flags", " | ".join("VIR_MIGRATE_" + f for f in plan.flags)],
            ["parameters", ", ".join(f"{k}={v}" for k, v in plan.params.items()) or "-"],
            ["storage to copy", storage or "none"]]


def render_plan(plan: Any) -> str:
    from planner.plan.migration import shown_uri

    rows: list[list[Any]] = [
        ["guest", plan.guest],
        ["source", f"{plan.source} ({shown_uri(plan.source_uri)})"],
        ["destination", f"{plan.destination} ({shown_uri(plan.destination_uri)})"],
        *_how(plan),
        ["memory", _size(plan.memory_bytes)],
        ["expected transfer", f"{_size(plan.expected_transfer_bytes)} (memory + storage, "
                              "before dirty pages are sent again)"],
        ["completion timeout", f"{plan.timeout_s:g} s, then {plan.timeout_action}"
                               if plan.timeout_s else "none"],
    ]
    out = render_table(["", ""], rows).split("\n", 2)[2]  # no header lines
    shown = [v for v in plan.preflight if v.status != "ok"]
    out += f"pre-flight: {len(plan.preflight)} rules, " + (
        "all ok\n" if not shown else f"{len(shown)} not ok:\n")
    for v in shown:
        out += f"  {v.status:8} {v.code}: {v.message}\n"
    return out


def outcome_json(o: Any) -> dict[str, Any]:
    return {"guest": o.guest, "status": o.status, "on": o.on, "message": o.message,
            "duration_s": round(o.duration_s, 3), "hosts": o.details}


# ---- migrate --------------------------------------------------------------------------------


@click.command("migrate")
@click.argument("guest", metavar="GUEST")
@click.argument("dest", metavar="DEST")
@click.option("--source", metavar="HOST_OR_URI", default=None,
              help="Where GUEST runs (default: search the known hosts).")
@hosts_options
@nova_options
@libvirt_auth_options
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--force", is_flag=True, help="Migrate even when the pre-flight refuses.")
@click.option("--copy-storage", type=click.Choice(["auto", "all", "inc", "none"]), default="auto",
              show_default=True, help="Copy local disks: auto copies them when there are any.")
@click.option("--bandwidth", type=click.IntRange(min=1), metavar="MiB/s", default=None,
              help="Bandwidth limit of the migration stream.")
@click.option("--max-downtime", type=click.IntRange(min=1), metavar="MS", default=None,
              help="Longest pause of the guest at switch-over.")
@click.option("--auto-converge", is_flag=True, help="Throttle the guest's vCPUs to converge.")
@click.option("--postcopy", is_flag=True, help="Allow switching to post-copy.")
@click.option("--compressed", is_flag=True, help="Compress the memory stream.")
@click.option("--parallel", type=click.IntRange(min=1), metavar="N", default=None,
              help="Migrate over N parallel connections.")
@click.option("--timeout", type=FiniteFloat(min=0.1), metavar="S", default=None,
              help="Completion timeout in seconds.")
@click.option("--on-timeout", type=click.Choice(["abort", "postcopy"]), default="abort",
              show_default=True, help="At the timeout: abort (guest stays on the source) or "
                                      "switch to post-copy (needs --postcopy).")
@policy_options
@format_option("table", "json")
def migrate_cmd(guest: str, dest: str, source: str | None, lab: bool, snapshot: str | None,
                state_dir: str | None, os_cloud: str | None, force_libvirt: bool, uri_template: str | None,
                libvirt_user: str | None, libvirt_password_file: str | None, dry_run: bool, force: bool, copy_storage: str, bandwidth: int | None,
                max_downtime: int | None, auto_converge: bool, postcopy: bool, compressed: bool,
                parallel: int | None, timeout: float | None, on_timeout: str,
                cpu_map: str | None, memory_reserve: int, cpu_ratio: float,
                no_block_migration: bool, fmt: str) -> None:
    """Live-migrate GUEST to DEST (a host name or a libvirt URI), safely.

    Pre-flight on the state both hosts report now, with the rules of `migplan
    check`; a move that is blocked (or not proven feasible) is refused with
    every reason (exit 3) unless --force.  The migration is libvirt's
    peer-to-peer live migration, persistent on the destination and undefined
    on the source (a transient guest becomes persistent there).  Ctrl-C aborts
    it.  Afterwards both hosts are asked where the guest is: exit 0 when it
    runs, persistent, on DEST and is gone from the source; exit 4 when the
    migration failed and the source confirms the guest still runs there; exit 7
    when a host could not answer (unknown: check before acting -- the message
    says what each host said and the virsh commands to check); exit 8 when both
    answered and neither runs it; exit 1 when it runs on DEST but not cleanly.

    A guest Nova manages (its domain XML carries <nova:instance>) is refused
    (exit 3) unless --force-libvirt: move it with --os-cloud NAME, through
    Nova's compute API (os-migrateLive to DEST, a compute host, with
    block_migration auto; GUEST a server name, UUID or libvirt name).  The
    move is then verified by Nova (the server's host and status, the
    migration's record) and by both hosts' libvirt; Nova's refusal is quoted
    (exit 3); Ctrl-C and --timeout abort Nova's migration (exit 4, the server
    still on its source); exit 7 when where the server runs cannot be
    confirmed, 8 when neither host runs it.

    \b
    Example:
      migplan migrate web-01 cn03 --snapshot snap --dry-run
      migplan migrate lab1-vm1 lab2 --lab --bandwidth 100 --timeout 60
      migplan migrate vm1 qemu+tcp://10.0.0.7/system --source qemu+tcp://10.0.0.5/system
      migplan migrate web-01 cn03 --os-cloud mycloud --timeout 600
    """
    from planner.act.migrate import execute
    from planner.adapters.catalogs import load_catalog
    from planner.plan.migration import MigrateOptions, rules_preflight

    opts = MigrateOptions(copy_storage=copy_storage, bandwidth_mib=bandwidth,
                          max_downtime_ms=max_downtime, auto_converge=auto_converge,
                          postcopy=postcopy, compressed=compressed, parallel_connections=parallel,
                          timeout_s=timeout, timeout_action=on_timeout, force=force,
                          force_libvirt=force_libvirt)
    preflight = rules_preflight(_policy(memory_reserve, cpu_ratio, no_block_migration),
                                load_catalog(cpu_map))
    creds = libvirt_credentials(libvirt_user, libvirt_password_file)
    if os_cloud:
        refuse_libvirt_options(dict(
            bandwidth=bandwidth, max_downtime=max_downtime, auto_converge=auto_converge,
            postcopy=postcopy, compressed=compressed, parallel=parallel, source=source,
            lab=lab, snapshot=snapshot, state_dir=state_dir, force_libvirt=force_libvirt,
            copy_storage=copy_storage, on_timeout=on_timeout))
        cloud, services, uris = open_for_moves(os_cloud, uri_template)
        plan = plan_move(cloud, services, uris, guest, dest, opts, preflight, creds)
        driver = nova_driver(cloud, creds)
    else:
        plan, driver = _libvirt_plan(guest, dest, source, known_hosts(lab, snapshot, state_dir),
                                     uri_template, opts, preflight, creds)
    if dry_run:
        emit(render_json({"plan": plan.to_json()}) if fmt == "json" else render_plan(plan))
        return
    who = f"server {plan.nova.server_name} ({plan.guest})" if plan.nova else plan.guest
    bar = ProgressBar(f"{who} -> {plan.destination}")
    via = " through Nova" if plan.nova else ""
    click.echo(f"migrating {who}{via}: {plan.source} -> {plan.destination}", err=True)
    try:
        outcome = execute(plan, driver, on_progress=bar, stop=threading.Event())
    finally:
        bar.done()
    if fmt == "json":
        emit(render_json({"plan": plan.to_json(), "outcome": outcome_json(outcome)}))
    else:
        emit(f"{outcome.status}: {outcome.message} ({outcome.duration_s:.1f} s)\n")
    if outcome.ok:
        if force_libvirt and any(v.code == "libvirt-direct.nova-managed" for v in plan.preflight):
            click.echo(f"warning: {who} is a server Nova manages, moved with libvirt "
                       "(--force-libvirt): Nova was not told; make its records (host, port "
                       "bindings, volumes, placement) match where it runs now", err=True)
        return
    if not outcome.ok:
        raise outcome_error(outcome, who)


def outcome_error(o: Any, who: str | None = None) -> MigplanError:
    """The error (and so the exit code) an outcome that is not a success gives."""
    who = who or o.guest
    if o.status == "refused":  # Nova refused, nothing moved (act.nova_verify)
        return InfeasibleError(f"Nova refused to migrate {who}: {o.message}")
    if o.status in ("failed", "aborted"):  # the source confirmed it runs there
        return MigrationFailed(f"migration of {who} failed; {o.message}")
    if o.status == "unknown":
        return GuestStateUnknown(f"migration of {who}: unknown, check before acting; "
                                 f"{o.message}")
    if o.status == "lost":
        return GuestLost(f"migration of {who}: the guest is lost; {o.message}")
    return MigplanError(f"migration of {who} did not complete cleanly; {o.message}")


def _libvirt_plan(guest: str, dest: str, source: str | None, hosts: dict[str, str],
                  uri_template: str | None, opts: Any, preflight: Any,
                  credentials: Any) -> tuple[Any, Any]:
    from planner.adapters.libvirt import LibvirtMigrationDriver
    from planner.plan.migration import prepare

    if uri_template:
        raise UsageError("--uri-template needs --os-cloud")
    driver = LibvirtMigrationDriver(credentials)
    plan = prepare(guest, dest, hosts=hosts, source=source, opts=opts,
                   preflight=preflight, read=fresh_reader(credentials),
                   presence=driver.presence, host_uuid=driver.host_uuid)
    return plan, driver
