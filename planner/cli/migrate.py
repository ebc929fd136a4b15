"""`migplan migrate` and `migplan drain`: real live migrations, pre-flighted and verified."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from planner.cli.output import FiniteFloat, emit, format_option, render_json, render_table
from planner.cli.recommend import _policy, policy_options
from planner.errors import (
    GuestLost,
    GuestStateUnknown,
    MigplanError,
    MigrationFailed,
    UsageError,
)
from planner.review.text import printable

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

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if not p.data_total or (not self.tty and now - self.last < 1.0):
            return  # no figures (job starting or ending) or too soon for a log line
        self.last = now
        total = p.data_total or 0
        done = p.data_processed or 0
        frac = min(1.0, done / total) if total else 0.0
        bar = "#" * int(frac * 20)
        parts = [f"{self.label} [{bar:<20}] {frac * 100:3.0f}%",
                 f"{done / MiB:.0f}/{total / MiB:.0f} MiB"]
        if p.data_remaining is not None:
            parts.append(f"remaining {p.data_remaining / MiB:.0f} MiB")
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


def render_plan(plan: Any) -> str:
    from planner.plan.migration import shown_uri

    rows: list[list[Any]] = [
        ["guest", plan.guest],
        ["source", f"{plan.source} ({shown_uri(plan.source_uri)})"],
        ["destination", f"{plan.destination} ({shown_uri(plan.destination_uri)})"],
        ["flags", " | ".join("VIR_MIGRATE_" + f for f in plan.flags)],
        ["parameters", ", ".join(f"{k}={v}" for k, v in plan.params.items()) or "-"],
        ["storage to copy", ", ".join(f"{d.target} ({d.source}, {_size(d.bytes)})"
                                      for d in plan.storage) or "none"],
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


def _outcome_json(o: Any) -> dict[str, Any]:
    return {"guest": o.guest, "status": o.status, "on": o.on, "message": o.message,
            "duration_s": round(o.duration_s, 3), "hosts": o.details}


# ---- migrate --------------------------------------------------------------------------------


@click.command("migrate")
@click.argument("guest", metavar="GUEST")
@click.argument("dest", metavar="DEST")
@click.option("--source", metavar="HOST_OR_URI", default=None,
              help="Where GUEST runs (default: search the known hosts).")
@hosts_options
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
                state_dir: str | None, dry_run: bool, force: bool, copy_storage: str, bandwidth: int | None,
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

    \b
    Example:
      migplan migrate web-01 cn03 --snapshot snap --dry-run
      migplan migrate lab1-vm1 lab2 --lab --bandwidth 100 --timeout 60
      migplan migrate vm1 qemu+tcp://10.0.0.7/system --source qemu+tcp://10.0.0.5/system
    """
    from planner.act.migrate import execute
    from planner.adapters.catalogs import load_catalog
    from planner.adapters.libvirt import LibvirtMigrationDriver
    from planner.collect import live as livestate
    from planner.plan.migration import MigrateOptions, prepare, rules_preflight

    opts = MigrateOptions(copy_storage=copy_storage, bandwidth_mib=bandwidth,
                          max_downtime_ms=max_downtime, auto_converge=auto_converge,
                          postcopy=postcopy, compressed=compressed, parallel_connections=parallel,
                          timeout_s=timeout, timeout_action=on_timeout, force=force)
    driver = LibvirtMigrationDriver()
    preflight = rules_preflight(_policy(memory_reserve, cpu_ratio, no_block_migration),
                                load_catalog(cpu_map))
    plan = prepare(guest, dest, hosts=known_hosts(lab, snapshot, state_dir), source=source,
                   opts=opts, preflight=preflight, read=livestate.read_hosts,
                   presence=driver.presence, host_uuid=driver.host_uuid)
    if dry_run:
        emit(render_json({"plan": plan.to_json()}) if fmt == "json" else render_plan(plan))
        return
    bar = ProgressBar(f"{guest} -> {plan.destination}")
    click.echo(f"migrating {guest}: {plan.source} -> {plan.destination}", err=True)
    try:
        outcome = execute(plan, driver, on_progress=bar, stop=threading.Event())
    finally:
        bar.done()
    if fmt == "json":
        emit(render_json({"plan": plan.to_json(), "outcome": _outcome_json(outcome)}))
    else:
        emit(f"{outcome.status}: {outcome.message} ({outcome.duration_s:.1f} s)\n")
    if not outcome.ok:
        raise outcome_error(outcome)


def outcome_error(o: Any) -> MigplanError:
    """The error (and so the exit code) an outcome that is not a success gives."""
    if o.status in ("failed", "aborted"):  # the source confirmed it runs there
        return MigrationFailed(f"migration of {o.guest} failed; {o.message}")
    if o.status == "unknown":
        return GuestStateUnknown(f"migration of {o.guest}: unknown, check before acting; "
                                 f"{o.message}")
    if o.status == "lost":
        return GuestLost(f"migration of {o.guest}: the guest is lost; {o.message}")
    return MigplanError(f"migration of {o.guest} did not complete cleanly; {o.message}")


# ---- drain ------------------------------------------------------------------------------------


def _drain_summary(result: Any, plan: Any, name: str) -> str:
    by: dict[str, list[str]] = {}
    for o in result.outcomes:
        by.setdefault(o.status, []).append(o.guest)
    still = sum(len(by.get(k, ())) for k in ("failed", "aborted", "refused", "error"))
    parts = [f"{len(by.get('migrated', ()))} migrated", f"{still} failed (still on {name})"]
    if by.get("unclean"):
        parts.append(f"{len(by['unclean'])} on their destination but not cleanly "
                     f"({', '.join(by['unclean'])})")
    if by.get("unknown"):
        parts.append(f"{len(by['unknown'])} UNKNOWN where, check before acting "
                     f"({', '.join(by['unknown'])})")
    if by.get("lost"):
        parts.append(f"{len(by['lost'])} LOST ({', '.join(by['lost'])})")
    parts += [f"{len(result.not_started)} not started", f"{len(plan.stuck)} cannot move"]
    return ", ".join(parts)


def render_drain_plan(plan: Any, unread: dict[str, str]) -> str:
    rows = []
    for n, wave in enumerate(plan.waves, start=1):
        for a in wave:
            why = "; ".join(str(v) for v in a.reasons) or "all rules ok"
            if a.transient:
                why += "; transient: becomes persistent on the destination"
            rows.append([n, a.guest, a.destination, f"{a.memory_kib // 1024} MiB", a.vcpus, why])
    out = f"drain {plan.host}: {len(plan.assignments)} guest(s) in {len(plan.waves)} wave(s) " \
          f"of at most {plan.max_parallel}\n"
    if rows:
        out += render_table(["wave", "guest", "destination", "memory", "vcpus", "reasons"], rows)
    for s in plan.stuck:
        out += f"cannot move {s.guest}:\n"
        for dst, vs in s.reasons:
            out += f"  to {dst}: " + "; ".join(str(v) for v in vs) + "\n"
    for g, st in plan.not_running:
        out += f"not running, stays defined on {plan.host}: {g} ({st})\n"
    for h, err in unread.items():
        out += f"not a destination (could not be read): {h}: {err}\n"
    return out


def render_drain_results(result: Any, host: str) -> str:
    """What happened to each guest of a drain, the ones never started included."""
    return render_table(["guest", "result", "on", "seconds", "message"],
                        [[o.guest, o.status, o.on, f"{o.duration_s:.1f}", o.message]
                         for o in result.outcomes]
                        + [[g, "not started", host, "-", "stopped before its wave"]
                           for g in result.not_started])


@click.command("drain")
@click.argument("host", metavar="HOST")
@hosts_options
# the parameter is not called `execute`: that name is the migration function below
@click.option("--execute", "run", is_flag=True, help="Run the plan (default: only show it).")
@click.option("--max-parallel", type=click.IntRange(min=1), default=2, show_default=True,
              metavar="K", help="Migrations at once (guests per wave).")
@click.option("--bandwidth", type=click.IntRange(min=1), metavar="MiB/s", default=None,
              help="Bandwidth limit of each migration.")
@click.option("--timeout", type=FiniteFloat(min=0.1), metavar="S", default=None,
              help="Completion timeout of each migration (then it is aborted).")
@policy_options
@format_option("table", "json")
def drain_cmd(host: str, lab: bool, snapshot: str | None, state_dir: str | None, run: bool,
              max_parallel: int,
              bandwidth: int | None, timeout: float | None, cpu_map: str | None,
              memory_reserve: int, cpu_ratio: float, no_block_migration: bool, fmt: str) -> None:
    """Empty HOST: a destination for every running guest, in waves of --max-parallel.

    Every other known host is a candidate; the state of all of them is read
    now.  Guests are placed largest first, each on the feasible host (the
    rules of `migplan check`) with the most free memory left, and every
    placement is booked before the next one (memory, vCPU ratio, pinned CPUs,
    huge pages), so no destination is promised twice.  Without --execute the
    plan is shown: exit 0 when every guest can move, 3 when some cannot.

    With --execute the waves run one after the other, each guest pre-flighted
    again on fresh state, migrated and verified like `migplan migrate`;
    failed guests stay on HOST, running (exit 4; 7 when the hosts could not
    confirm where a guest is, 8 when one is lost: see docs/exit-codes.md).  Transient guests become
    persistent on their destination.  Ctrl-C aborts the running migrations and
    starts no further wave.

    \b
    Example:
      migplan drain cn02 --snapshot snap
      migplan drain lab1 --lab --execute --max-parallel 2
    """
    from planner.act.drain import guarded, run_drain, summary_exit_code
    from planner.act.migrate import execute
    from planner.adapters.catalogs import load_catalog
    from planner.adapters.libvirt import LibvirtMigrationDriver
    from planner.collect import live as livestate
    from planner.errors import InfeasibleError
    from planner.plan.drain import plan_drain
    from planner.plan.migration import MigrateOptions, prepare, resolve_host, rules_preflight

    hosts = known_hosts(lab, snapshot, state_dir)
    if not hosts:
        raise UsageError("no hosts: use --lab or --snapshot DIR")
    name, _uri = resolve_host(host, hosts)
    if name not in hosts:
        raise UsageError(f"unknown host {host!r} (known hosts: {', '.join(hosts)})")
    state, unread = livestate.read_available(hosts)
    if name in unread:
        raise MigplanError(f"cannot read {name}: {unread[name]}")
    preflight = rules_preflight(_policy(memory_reserve, cpu_ratio, no_block_migration),
                                load_catalog(cpu_map))
    plan = plan_drain(name, state, preflight, max_parallel)
    result = None
    if run and plan.assignments:
        driver = LibvirtMigrationDriver()
        opts = MigrateOptions(bandwidth_mib=bandwidth, timeout_s=timeout)

        def migrate_one(a: Any, stop: threading.Event) -> Any:
            return guarded(a.guest, name, lambda: execute(
                prepare(a.guest, a.destination, hosts=hosts, source=name, opts=opts,
                        preflight=preflight, read=livestate.read_hosts,
                        presence=driver.presence), driver, stop=stop))

        def say(o: Any) -> None:
            click.echo(printable(f"{o.guest}: {o.status} ({o.duration_s:.1f} s): {o.message}"),
                       err=True)

        if fmt != "json":
            emit(render_drain_plan(plan, unread))
        click.echo(f"draining {name}: {len(plan.assignments)} guest(s)", err=True)
        result = run_drain(plan, migrate_one, stop=threading.Event(), on_result=say)
    code = summary_exit_code(result, plan)
    if fmt == "json":
        doc: dict[str, Any] = {"plan": plan.to_json(), "unreadable_hosts": unread}
        if result is not None:
            doc["results"] = [_outcome_json(o) for o in result.outcomes]
            doc["not_started"] = list(result.not_started)
        emit(render_json(doc))
    elif result is None:
        emit(render_drain_plan(plan, unread))
    if result is not None:
        msg = _drain_summary(result, plan, name)
        if fmt != "json":
            emit(render_drain_results(result, name) + f"summary: {msg}\n")
        error = {8: GuestLost, 7: GuestStateUnknown, 4: MigrationFailed, 1: MigplanError}.get(code)
        if error is not None:
            raise error(f"drain of {name} incomplete: {msg}")
    if code == 3:
        raise InfeasibleError(f"{len(plan.stuck)} guest(s) of {name} cannot move: "
                              + ", ".join(s.guest for s in plan.stuck))
