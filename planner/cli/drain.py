"""`migplan drain`: empty a host, a wave of live migrations at a time (libvirt's or Nova's)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import click

from planner.cli.migrate import hosts_options, known_hosts, outcome_json
from planner.cli.nova_move import (
    disable_note,
    drain_through_nova,
    fresh_reader,
    nova_options,
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
from planner.review.text import printable


def _named(guest: str, names: Mapping[str, str]) -> str:
    """A libvirt name with its Nova server's name beside it, when it has one."""
    server = names.get(guest)
    return f"{guest} ({server})" if server else guest


def render_drain_plan(plan: Any, unread: dict[str, str],
                      names: Mapping[str, str] | None = None) -> str:
    names = names or {}
    rows = []
    for n, wave in enumerate(plan.waves, start=1):
        for a in wave:
            why = "; ".join(str(v) for v in a.reasons) or "all rules ok"
            if a.transient:
                why += "; transient: becomes persistent on the destination"
            rows.append([n, _named(a.guest, names), a.destination, f"{a.memory_kib // 1024} MiB",
                         a.vcpus, why])
    out = f"drain {plan.host}: {len(plan.assignments)} guest(s) in {len(plan.waves)} wave(s) " \
          f"of at most {plan.max_parallel}\n"
    if rows:
        out += render_table(["wave", "guest", "destination", "memory", "vcpus", "reasons"], rows)
    for s in plan.stuck:
        out += f"cannot move {_named(s.guest, names)}:\n"
        for dst, vs in s.reasons:
            out += f"  to {dst}: " + "; ".join(str(v) for v in vs) + "\n"
    for k in plan.skipped:
        who = f"{k.guest} ({k.server})" if k.server else k.guest
        out += f"skipped {who}: " + "; ".join(str(v) for v in k.reasons) + "\n"
    for g, st in plan.not_running:
        out += f"not running, stays defined on {plan.host}: {_named(g, names)} ({st})\n"
    for h, err in unread.items():
        out += f"not a destination (could not be read): {h}: {err}\n"
    return out


def render_drain_results(result: Any, host: str, names: Mapping[str, str] | None = None) -> str:
    """What happened to each guest of a drain, the ones never started included."""
    names = names or {}
    return render_table(["guest", "result", "on", "seconds", "message"],
                        [[_named(o.guest, names), o.status, o.on, f"{o.duration_s:.1f}",
                          o.message] for o in result.outcomes]
                        + [[_named(g, names), "not started", host, "-",
                            "stopped before its wave"] for g in result.not_started])


@click.command("drain")
@click.argument("host", metavar="HOST")
@hosts_options
@nova_options
@libvirt_auth_options
# the parameter is not called `execute`: that name is the migration function below
@click.option("--execute", "run", is_flag=True, help="Run the plan (default: only show it).")
@click.option("--disable-service", "disable", is_flag=True,
              help="With --os-cloud --execute: first disable HOST's nova-compute (the "
                   "scheduler then places nothing there); it stays disabled.")
@click.option("--disable-reason", "reason", metavar="TEXT", default=None,
              help="The disabled reason Nova records (default: 'migplan drain HOST (time)').")
@click.option("--max-parallel", type=click.IntRange(min=1), default=2, show_default=True,
              metavar="K", help="Migrations at once (guests per wave).")
@click.option("--bandwidth", type=click.IntRange(min=1), metavar="MiB/s", default=None,
              help="Bandwidth limit of each migration.")
@click.option("--timeout", type=FiniteFloat(min=0.1), metavar="S", default=None,
              help="Completion timeout of each migration (then it is aborted).")
@policy_options
@format_option("table", "json")
def drain_cmd(host: str, lab: bool, snapshot: str | None, state_dir: str | None,
              os_cloud: str | None,
              force_libvirt: bool, uri_template: str | None, libvirt_user: str | None,
              libvirt_password_file: str | None, run: bool, disable: bool,
              reason: str | None, max_parallel: int, bandwidth: int | None,
              timeout: float | None, cpu_map: str | None, memory_reserve: int,
              cpu_ratio: float, no_block_migration: bool, fmt: str) -> None:
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
    confirm where a guest is, 8 when one is lost: see docs/exit-codes.md).
    Transient guests become persistent on their destination.  Ctrl-C aborts the running migrations and
    starts no further wave.

    Guests Nova manages are skipped (exit 3) unless --force-libvirt: drain a
    Nova compute with --os-cloud NAME, which moves every server Nova places
    on HOST through Nova's compute API (disabled and down computes are never
    destinations; servers in ERROR or busy with another task are skipped with
    the reason), each verified by Nova and both hosts' libvirt (exit 7 when
    where a server runs cannot be confirmed).

    \b
    Example:
      migplan drain cn02 --snapshot snap
      migplan drain lab1 --lab --execute --max-parallel 2
      migplan drain cn02 --os-cloud mycloud --execute --disable-service
    """
    from planner.act.drain import summary_exit_code
    from planner.adapters.catalogs import load_catalog
    from planner.plan.migration import rules_preflight

    preflight = rules_preflight(_policy(memory_reserve, cpu_ratio, no_block_migration),
                                load_catalog(cpu_map))
    creds = libvirt_credentials(libvirt_user, libvirt_password_file)

    def say(o: Any) -> None:
        click.echo(printable(f"{_named(o.guest, names)}: {o.status} ({o.duration_s:.1f} s): "
                             f"{o.message}"), err=True)

    names: dict[str, str] = {}
    if os_cloud:
        refuse_libvirt_options(dict(bandwidth=bandwidth, lab=lab, snapshot=snapshot,
                                    state_dir=state_dir, force_libvirt=force_libvirt))
        plan, result, unread, found = drain_through_nova(
            host, os_cloud, uri_template, run=run, disable=disable, reason=reason,
            max_parallel=max_parallel, timeout=timeout, preflight=preflight, credentials=creds,
            say=lambda m: click.echo(printable(m), err=True), on_result=say,
            on_plan=None if fmt == "json" else lambda p, u, n: emit(render_drain_plan(p, u, n)))
        names.update(found)
    else:
        if disable or reason or uri_template:
            raise UsageError("--disable-service, --disable-reason and --uri-template need "
                             "--os-cloud")
        plan, result, unread = _libvirt_drain(host, known_hosts(lab, snapshot, state_dir), run,
                                              max_parallel, bandwidth, timeout, force_libvirt,
                                              preflight, creds, fmt, say)
    code = summary_exit_code(result, plan)
    if fmt == "json":
        doc: dict[str, Any] = {"plan": plan.to_json(), "unreadable_hosts": unread}
        if result is not None:
            doc["results"] = [outcome_json(o) for o in result.outcomes]
            doc["not_started"] = list(result.not_started)
        emit(render_json(doc))
    elif result is None:
        emit(render_drain_plan(plan, unread, names)
             + disable_note(plan.host, run, disable, reason))
    _drain_end(plan, result, code, names, fmt)


def _drain_summary(result: Any, plan: Any, names: Mapping[str, str]) -> str:
    by: dict[str, list[str]] = {}
    for o in result.outcomes:
        by.setdefault(o.status, []).append(_named(o.guest, names))
    still = sum(len(by.get(k, ())) for k in ("failed", "aborted", "refused", "error"))
    parts = [f"{len(by.get('migrated', ()))} migrated", f"{still} failed (still on {plan.host})"]
    if by.get("refused"):
        parts.append(f"of which {len(by['refused'])} refused")
    if by.get("unclean"):
        parts.append(f"{len(by['unclean'])} on their destination but not cleanly "
                     f"({', '.join(by['unclean'])})")
    if by.get("unknown"):
        parts.append(f"{len(by['unknown'])} UNKNOWN where, check before acting "
                     f"({', '.join(by['unknown'])})")
    if by.get("lost"):
        parts.append(f"{len(by['lost'])} LOST ({', '.join(by['lost'])})")
    parts += [f"{len(result.not_started)} not started", f"{len(plan.stuck)} cannot move",
              f"{len(plan.skipped)} skipped"]
    return ", ".join(parts)


def _drain_end(plan: Any, result: Any, code: int, names: Mapping[str, str], fmt: str) -> None:
    """The summary, and the exit code as an error (summary_exit_code's)."""
    name = plan.host
    if result is not None:
        msg = _drain_summary(result, plan, names)
        if fmt != "json":
            emit(render_drain_results(result, name, names) + f"summary: {msg}\n")
        error = {8: GuestLost, 7: GuestStateUnknown, 4: MigrationFailed, 3: InfeasibleError,
                 1: MigplanError}.get(code)
        if error is not None:
            raise error(f"drain of {name} incomplete: {msg}")
    if code == InfeasibleError.exit_code:
        raise InfeasibleError(
            f"{len(plan.stuck) + len(plan.skipped)} guest(s) of {name} cannot move or are "
            "skipped: " + ", ".join([_named(s.guest, names) for s in plan.stuck]
                                    + [_named(k.guest, names) for k in plan.skipped]))


def _libvirt_drain(host: str, hosts: dict[str, str], run: bool, max_parallel: int,
                   bandwidth: int | None, timeout: float | None, force_libvirt: bool,
                   preflight: Any, credentials: Any, fmt: str, say: Callable[[Any], None]
                   ) -> tuple[Any, Any, dict[str, str]]:
    from planner.act.drain import guarded, run_drain
    from planner.act.migrate import execute
    from planner.adapters.libvirt import LibvirtMigrationDriver
    from planner.collect import live as livestate
    from planner.plan.drain import libvirt_skip, plan_drain
    from planner.plan.migration import MigrateOptions, prepare, resolve_host

    if not hosts:
        raise UsageError("no hosts: use --lab, --snapshot DIR or --os-cloud NAME")
    name, _uri = resolve_host(host, hosts)
    if name not in hosts:
        raise UsageError(f"unknown host {host!r} (known hosts: {', '.join(hosts)})")
    state, unread = livestate.read_available(hosts, livestate.connector(credentials))
    if name in unread:
        raise MigplanError(f"cannot read {name}: {unread[name]}")
    plan = plan_drain(name, state, preflight, max_parallel,
                      skip=libvirt_skip(name, force_libvirt))
    if not run or not plan.assignments:
        return plan, None, unread
    driver = LibvirtMigrationDriver(credentials)
    read = fresh_reader(credentials)
    opts = MigrateOptions(bandwidth_mib=bandwidth, timeout_s=timeout,
                          force_libvirt=force_libvirt)

    def migrate_one(a: Any, stop: threading.Event) -> Any:
        return guarded(a.guest, name, lambda: execute(
            prepare(a.guest, a.destination, hosts=hosts, source=name, opts=opts,
                    preflight=preflight, read=read, presence=driver.presence,
                    host_uuid=driver.host_uuid), driver, stop=stop))

    if fmt != "json":
        emit(render_drain_plan(plan, unread))
    click.echo(f"draining {name}: {len(plan.assignments)} guest(s)", err=True)
    return plan, run_drain(plan, migrate_one, stop=threading.Event(), on_result=say), unread
