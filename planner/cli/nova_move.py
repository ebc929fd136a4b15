"""`migplan migrate ... --os-cloud` and `migplan drain ... --os-cloud`: moves through Nova.

The wiring of a move through Nova: open the cloud (``planner.adapters.nova``), resolve the
server, read the compute services and both hosts' libvirt, plan (``planner.plan.nova_move``),
run through the Nova driver and verify (``planner.act``).  Rendering and exit codes are
``planner.cli.migrate``'s, shared with libvirt moves.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import click

from planner.errors import InputError, UsageError

#: options of a libvirt move that Nova sets itself, from each compute's nova.conf
#: ([libvirt] live_migration_bandwidth, live_migration_downtime, live_migration_permit_*...)
LIBVIRT_ONLY = {"bandwidth": "--bandwidth", "max_downtime": "--max-downtime",
                "auto_converge": "--auto-converge", "postcopy": "--postcopy",
                "compressed": "--compressed", "parallel": "--parallel", "source": "--source",
                "lab": "--lab", "snapshot": "--snapshot", "state_dir": "--state-dir",
                "force_libvirt": "--force-libvirt"}


def refuse_libvirt_options(given: Mapping[str, Any]) -> None:
    bad = [flag for key, flag in LIBVIRT_ONLY.items() if given.get(key)]
    if given.get("copy_storage", "auto") != "auto":
        bad.append("--copy-storage")
    if given.get("on_timeout", "abort") != "abort":
        bad.append("--on-timeout")
    if bad:
        raise UsageError(f"{', '.join(bad)}: not for a move through Nova (--os-cloud): Nova "
                         "finds the server's host itself, copies disks when the computes do "
                         "not share storage (block_migration auto) and tunes the migration "
                         "from each compute's nova.conf [libvirt] live_migration_* options")


def libvirt_uris(cloud: Any, services: Mapping[str, Any],
                 template: str | None) -> dict[str, str]:
    """Compute host -> its libvirt URI, as ``collect --os-cloud`` reaches it (the
    hypervisors, for their host_ip, are asked only when a template needs them)."""
    from planner.collect.nova import nova_targets
    from planner.model import NovaFacts

    extra = cloud.extra()
    mapped = (extra.get("migplan") or {}).get("libvirt_uris") or {}
    hypervisors = () if not template and all(h in mapped for h in services) else \
        tuple(cloud.hypervisors())
    facts = NovaFacts(services=tuple(services.values()), hypervisors=hypervisors)
    return {str(t.name): t.uri for t in nova_targets(facts, extra, template)}


def open_for_moves(os_cloud: str, template: str | None
                   ) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """The cloud (with its microversion negotiated), its compute services and their URIs."""
    from planner.adapters.nova import open_mover  # the one module importing the SDK

    cloud = open_mover(os_cloud)
    cloud.microversion()  # below 2.25: refused here, before anything is read or moved
    services = {s.host: s for s in cloud.services()}
    return cloud, services, libvirt_uris(cloud, services, template)


def nova_driver(cloud: Any, credentials: Any) -> Any:
    """Nova's migration driver, asking libvirt (with ``credentials``) where guests run."""
    from planner.adapters.libvirt import LibvirtMigrationDriver
    from planner.adapters.nova_migrate import NovaMigrationDriver

    return NovaMigrationDriver(cloud, LibvirtMigrationDriver(credentials).presence)


def fresh_reader(credentials: Any) -> Callable[[Mapping[str, str]], Any]:
    """``read({name: uri})``: the hosts' state now, through libvirt (with ``credentials``)."""
    from planner.collect import live as livestate

    return functools.partial(livestate.read_hosts, connect=livestate.connector(credentials))


def plan_move(cloud: Any, services: Mapping[str, Any], uris: Mapping[str, str], guest: str,
              dest: str, opts: Any, preflight: Any, credentials: Any) -> Any:
    from planner.plan.nova_move import prepare_nova

    server = cloud.find_server(guest)
    return prepare_nova(server, dest, services=services, uris=uris, opts=opts,
                        preflight=preflight, read=fresh_reader(credentials))


def disable_reason(host: str, given: str | None) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return given or f"migplan drain {host} ({when})"


def drain_through_nova(host: str, os_cloud: str, template: str | None, *, run: bool,
                       disable: bool, reason: str | None, max_parallel: int,
                       timeout: float | None, preflight: Any, credentials: Any,
                       say: Callable[[str], None],
                       on_result: Callable[[Any], None],
                       on_plan: Callable[[Any, dict[str, str], dict[str, str]], None] | None
                       ) -> tuple[Any, Any, dict[str, str], dict[str, str]]:
    """Plan (and with ``run`` execute) the drain of compute ``host`` through Nova.

    Returns (plan, result or None, unreadable hosts, libvirt name -> server name).
    """
    from planner.act.drain import guarded, run_drain
    from planner.act.migrate import execute
    from planner.collect import live as livestate
    from planner.plan.migration import MigrateOptions
    from planner.plan.nova_move import plan_nova_drain, prepare_nova

    cloud, services, uris = open_for_moves(os_cloud, template)
    if host not in services:
        raise UsageError(f"unknown host {host!r}: cloud {os_cloud} has no nova-compute of that "
                         f"name (compute hosts: {', '.join(sorted(services)) or 'none'})")
    if run and disable:
        svc = cloud.disable_service(host, disable_reason(host, reason))
        services[host] = svc
        say(f"nova-compute on {host} disabled: {svc.disabled_reason}")
    state, unread = livestate.read_available(uris, livestate.connector(credentials))
    if host in unread:
        raise InputError(f"cannot read {host}'s libvirt: {unread[host]}")
    servers = cloud.servers_on(host)
    names = {s.instance_name: s.name for s in servers if s.instance_name}
    plan = plan_nova_drain(host, state, servers, services, preflight, max_parallel)
    if not run or not plan.assignments:
        return plan, None, unread, names
    driver = nova_driver(cloud, credentials)
    read = fresh_reader(credentials)
    opts = MigrateOptions(timeout_s=timeout)
    by_name = {s.instance_name: s.id for s in servers if s.instance_name}

    def migrate_one(a: Any, stop: threading.Event) -> Any:
        def attempt() -> Any:
            fresh = {s.host: s for s in cloud.services()}
            server = cloud.server(by_name[a.guest])
            return execute(prepare_nova(server, a.destination, services=fresh, uris=uris,
                                        opts=opts, preflight=preflight, read=read),
                           driver, stop=stop)

        return guarded(a.guest, host, attempt)

    if on_plan is not None:
        on_plan(plan, unread, names)
    say(f"draining {host} through Nova: {len(plan.assignments)} server(s)")
    result = run_drain(plan, migrate_one, stop=threading.Event(), on_result=on_result)
    return plan, result, unread, names


def disable_note(host: str, run: bool, disable: bool, reason: str | None) -> str:
    if not disable or run:
        return ""
    return (f"with --execute, nova-compute on {host} is disabled first "
            f"(reason: {disable_reason(host, reason)})\n")


def nova_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--uri-template", metavar="T", default=None,
                     help="With --os-cloud: how a compute's libvirt is reached ({host}: its "
                          "host_ip, {name}: its host name), as `collect --os-cloud`.")(f)
    f = click.option("--force-libvirt", is_flag=True,
                     help="Move a guest Nova manages with libvirt anyway (Nova's records "
                          "then stay on the source: only to repair a broken cloud).")(f)
    f = click.option("--os-cloud", "os_cloud", metavar="NAME", default=None,
                     help="Move through this cloud's Nova (clouds.yaml and OS_* as the "
                          "openstack CLI reads them): live migration by Nova's compute API, "
                          "verified by Nova and both hosts' libvirt.")(f)
    return f
