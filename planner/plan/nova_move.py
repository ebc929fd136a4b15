"""Plan a live migration *through Nova*: the server, its two computes, Nova's request.

A guest Nova manages is moved only by Nova's compute API (``os-migrateLive``): a libvirt
move would leave Nova's database, port bindings, volume attachments and placement
allocations on the source.  The plan is a ``MigrationPlan`` whose ``nova`` part says what
the Nova driver will ask; the libvirt part (instance name, both hosts' URIs) is what
``act.migrate.verify`` asks libvirt afterwards.

Pure, like ``plan.migration``: the server and the compute services (read fresh from Nova by
the caller), the hosts' fresh libvirt state (``read``) and the pre-flight are passed in.
The pre-flight is libvirt's rules on that state plus Nova's own refusals of the server and
the destination (``server_verdict``, ``destination_verdict``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from planner.assess.verdict import Status, Verdict
from planner.errors import HostError, InfeasibleError, UsageError
from planner.model import Domain, Host, NovaServer, NovaService
from planner.plan.drain import DrainPlan, Skipped, plan_drain
from planner.plan.migration import (
    MIGRATABLE_STATES,
    MigrateOptions,
    MigrationPlan,
    Preflight,
    ReadHosts,
    local_disks,
    name_taken,
    refuse_infeasible,
)

#: Nova's statuses of a server it can live-migrate (compute/api.py ``live_migrate``:
#: ``@check_instance_state(vm_state=[ACTIVE, PAUSED])``, task_state None).
MOVABLE_VM_STATES = ("active", "paused")


@dataclass(frozen=True)
class NovaMove:
    """What the Nova driver asks: ``POST /servers/{id}/action`` ``os-migrateLive`` to
    ``destination`` (a compute service host) with ``block_migration: auto`` -- Nova then
    copies the disks when the two computes do not share the instances' storage."""

    server_id: str
    server_name: str
    source: str  # Nova's compute host of the server now (OS-EXT-SRV-ATTR:host)
    destination: str
    block_migration: str = "auto"

    def request(self) -> dict[str, Any]:
        return {"os-migrateLive": {"host": self.destination,
                                   "block_migration": self.block_migration}}

    def to_json(self) -> dict[str, Any]:
        return {"server": {"id": self.server_id, "name": self.server_name},
                "source_compute": self.source, "destination_compute": self.destination,
                "request": self.request()}


def _v(rule: str, status: Status, outcome: str, message: str) -> Verdict:
    return Verdict(rule, status, f"{rule}.{outcome}", message)


def server_verdict(s: NovaServer) -> Verdict:
    """Nova's API refuses to live-migrate a server that is not active or paused, or that
    another task is changing (HTTP 409 InstanceInvalidState)."""
    r = "nova-server"
    if s.status == "ERROR" or s.vm_state == "error":
        return _v(r, Status.BLOCKED, "error",
                  f"server {s.name} is in ERROR in Nova: Nova refuses to live-migrate it "
                  "(check it, then `openstack server set --state active`)")
    if s.task_state:
        return _v(r, Status.BLOCKED, "busy",
                  f"server {s.name} is {s.task_state}: Nova refuses a live migration while "
                  "another task runs")
    if s.vm_state is not None and s.vm_state not in MOVABLE_VM_STATES:
        return _v(r, Status.BLOCKED, "not-active",
                  f"server {s.name} is {s.vm_state}: Nova live-migrates only active or paused "
                  "servers")
    return _v(r, Status.OK, "ok", f"server {s.name} is {s.vm_state or s.status}")


def destination_verdict(host: str, s: NovaService) -> Verdict:
    """The scheduler (ComputeFilter) never places a server on a disabled or down compute."""
    r = "nova-service"
    if s.forced_down or s.state == "down":
        return _v(r, Status.BLOCKED, "down", f"nova-compute on {host} is "
                  f"{'forced down' if s.forced_down else 'down (no heartbeat)'}")
    if s.status == "disabled":
        why = f" ({s.disabled_reason})" if s.disabled_reason else ""
        return _v(r, Status.BLOCKED, "disabled",
                  f"nova-compute on {host} is disabled{why}: Nova never places a server there")
    return _v(r, Status.OK, "up", f"nova-compute on {host} is up and enabled")


def server_label(s: NovaServer) -> str:
    return f"{s.name} ({s.id})"


def find_domain(s: NovaServer, host: Host) -> Domain | None:
    """The server's domain on ``host``: libvirt's domain UUID is the server's UUID."""
    for d in host.domains:
        if d.uuid == s.id:
            return d
    return next((d for d in host.domains if d.name == s.instance_name), None)


def _check_destination(s: NovaServer, dest: str,
                       services: Mapping[str, NovaService]) -> None:
    if s.host is None:
        raise InfeasibleError(f"server {server_label(s)} has no compute host in Nova "
                              f"(status {s.status}): nothing to live-migrate")
    if dest not in services:
        raise UsageError(f"unknown destination {dest!r}: Nova has no nova-compute service of "
                         f"that name (compute hosts: {', '.join(sorted(services)) or 'none'})")
    if dest == s.host:
        raise UsageError(f"server {server_label(s)} already is on {dest}: the destination is "
                         "its source")


def nova_verdicts(s: NovaServer, g: Domain, src: Host, dst: Host,
                  services: Mapping[str, NovaService], preflight: Preflight) -> list[Verdict]:
    """Every rule's answer for moving ``s`` (domain ``g``) from ``src`` to ``dst``."""
    verdicts = [server_verdict(s), destination_verdict(dst.name, services[dst.name]),
                *preflight(g, src, dst)]
    if any(d.name == g.name for d in dst.domains):
        verdicts.insert(0, name_taken(dst.name, g.name))
    return verdicts


def prepare_nova(s: NovaServer, dest: str, *, services: Mapping[str, NovaService],
                 uris: Mapping[str, str], opts: MigrateOptions, preflight: Preflight,
                 read: ReadHosts) -> MigrationPlan:
    """Check the destination, read both computes' libvirt now, pre-flight, plan.

    Changes nothing.  UsageError: unknown destination or the source itself.
    InfeasibleError: the pre-flight refuses (unless ``opts.force``: then Nova decides),
    or Nova and libvirt disagree on where the server is before anything moved.
    """
    _check_destination(s, dest, services)
    src_name = str(s.host)
    for h in (src_name, dest):
        if h not in uris:
            raise UsageError(f"no libvirt URI for compute {h}: add it to the cloud's "
                             "migplan.libvirt_uris or give a URI template")
    try:
        state = read({src_name: uris[src_name], dest: uris[dest]})
    except HostError as err:
        raise HostError(f"cannot read {src_name} and {dest} before migrating: {err}",
                        err.kind) from None
    src, dst = state[src_name], state[dest]
    g = find_domain(s, src)
    if g is None:
        raise InfeasibleError(
            f"Nova places server {server_label(s)} on {src_name}, but {src_name}'s libvirt "
            f"has no domain {s.instance_name or s.id}: Nova and libvirt disagree; not moving it")
    if g.state not in MIGRATABLE_STATES:
        raise InfeasibleError(f"server {server_label(s)}: its domain {g.name} is {g.state} on "
                              f"{src_name}, not running: only a running guest can be "
                              "live-migrated")
    verdicts = tuple(nova_verdicts(s, g, src, dst, services, preflight))
    refuse_infeasible(f"{s.name} ({g.name})", dest, verdicts, opts.force)
    disks = local_disks(g, src)
    mem = g.memory_kib * 1024
    return MigrationPlan(
        guest=g.name, source=src_name, source_uri=uris[src_name], destination=dest,
        destination_uri=uris[dest], flags=(), params={}, storage=tuple(disks),
        memory_bytes=mem, expected_transfer_bytes=mem + sum(d.bytes or 0 for d in disks),
        timeout_s=opts.timeout_s, timeout_action="abort", preflight=verdicts,
        nova=NovaMove(s.id, s.name, src_name, dest))


# ---- drain ------------------------------------------------------------------------------------


def plan_nova_drain(host: str, hosts: Mapping[str, Host], servers: Sequence[NovaServer],
                    services: Mapping[str, NovaService], preflight: Preflight,
                    max_parallel: int = 2) -> DrainPlan:
    """A destination among the other computes for every server Nova places on ``host``.

    Servers Nova will not move (ERROR, another task running), servers whose domain
    ``host``'s libvirt does not have, and guests Nova does not manage are skipped, each with
    its reason; the others are placed by ``plan_drain`` with Nova's destination rules
    (disabled and down computes are never destinations) beside libvirt's.
    """
    if host not in hosts:
        raise UsageError(f"unknown host {host!r} (compute hosts: {', '.join(sorted(hosts))})")
    src = hosts[host]
    by_domain: dict[str, NovaServer] = {}
    absent: list[Skipped] = []
    for s in servers:
        g = find_domain(s, src)
        if g is not None:
            by_domain[g.name] = s
        elif server_verdict(s).feasible:
            absent.append(Skipped(s.instance_name or s.id, s.name, (_v(
                "nova-libvirt", Status.BLOCKED, "no-domain",
                f"Nova places server {server_label(s)} on {host}, but {host}'s libvirt has no "
                "such domain: Nova and libvirt disagree"),)))
        else:
            absent.append(Skipped(s.instance_name or s.id, s.name, (server_verdict(s),)))

    def skip(g: Domain) -> tuple[Verdict, ...]:
        s = by_domain.get(g.name)
        if s is None:
            return (_v("nova-libvirt", Status.BLOCKED, "not-a-server",
                       f"{g.name} is not a server of this cloud: Nova does not move it (a "
                       "plain libvirt guest moves with `migplan drain` without --os-cloud)"),)
        v = server_verdict(s)
        return () if v.feasible else (v,)

    def rules(g: Domain, a: Host, b: Host) -> list[Verdict]:
        svc = services.get(b.name)
        if svc is None:
            return [_v("nova-service", Status.BLOCKED, "no-service",
                       f"{b.name} runs no nova-compute")]
        return [destination_verdict(b.name, svc), *preflight(g, a, b)]

    plan = plan_drain(host, hosts, rules, max_parallel, skip=skip)
    named = tuple(replace(x, server=by_domain[x.guest].name) if x.guest in by_domain else x
                  for x in plan.skipped)
    return replace(plan, skipped=named + tuple(absent))
