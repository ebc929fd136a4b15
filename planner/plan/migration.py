"""Plan one live migration: resolve the hosts, find the guest, pre-flight, choose flags.

Pure: the hosts' fresh state (``ReadHosts``), where a guest is (``presence``) and the
pre-flight rules are passed in.  The result is a frozen ``MigrationPlan``; running it
is ``planner.act.migrate``'s job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planner.assess.rules import RUNNING_STATES
from planner.assess.verdict import Status, Verdict
from planner.collect.sources import redact_uri, same_uri, uri_host
from planner.errors import HostError, InfeasibleError, MigplanError, UsageError
from planner.model import Domain, Host

if TYPE_CHECKING:
    from planner.plan.nova_move import NovaMove

#: States in which a guest can be live-migrated (the rules' running guests).
MIGRATABLE_STATES = RUNNING_STATES

# Flag names are libvirt's (VIR_MIGRATE_*); the driver maps them to numbers.
BASE_FLAGS = ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "ABORT_ON_ERROR")


@dataclass(frozen=True)
class MigrateOptions:
    copy_storage: str = "auto"  # auto | all | inc | none
    bandwidth_mib: int | None = None  # MiB/s
    max_downtime_ms: int | None = None
    auto_converge: bool = False
    postcopy: bool = False  # allow switching to post-copy
    compressed: bool = False
    parallel_connections: int | None = None
    timeout_s: float | None = None  # completion timeout
    timeout_action: str = "abort"  # abort | postcopy
    force: bool = False
    force_libvirt: bool = False  # move a guest Nova manages with libvirt anyway


@dataclass(frozen=True)
class DiskCopy:
    target: str
    source: str | None
    bytes: int | None


@dataclass(frozen=True)
class GuestPresence:
    exists: bool
    active: bool = False
    persistent: bool = False
    state: str = "absent"


@dataclass(frozen=True)
class MigrationPlan:
    guest: str
    source: str
    source_uri: str
    destination: str
    destination_uri: str
    flags: tuple[str, ...]
    params: Mapping[str, int | str]
    storage: tuple[DiskCopy, ...]
    memory_bytes: int
    expected_transfer_bytes: int
    timeout_s: float | None
    timeout_action: str
    preflight: tuple[Verdict, ...] = ()  # every rule's answer; not feasible ones refuse
    #: a move through Nova's API (``plan.nova_move``): flags and params are then Nova's own
    nova: NovaMove | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "guest": self.guest,
            "via": "nova" if self.nova is not None else "libvirt",
            **({"nova": self.nova.to_json()} if self.nova is not None else {}),
            "source": {"host": self.source, "uri": redact_uri(self.source_uri)},
            "destination": {"host": self.destination, "uri": redact_uri(self.destination_uri)},
            "flags": ["VIR_MIGRATE_" + f for f in self.flags],
            "params": dict(self.params),
            "storage_to_copy": [
                {"disk": d.target, "source": d.source, "bytes": d.bytes} for d in self.storage
            ],
            "memory_bytes": self.memory_bytes,
            "expected_transfer_bytes": self.expected_transfer_bytes,
            "completion_timeout_s": self.timeout_s,
            "on_timeout": self.timeout_action,
            "preflight": [v.to_json() for v in self.preflight],
        }


def refuse_infeasible(guest: str, destination: str, preflight: Sequence[Verdict],
                      force: bool) -> None:
    """Raise InfeasibleError with every reason when a verdict is not feasible (unless forced).

    "unknown" is refused like "blocked": a move is done only when proven feasible (the same
    answer as `migplan check`, which exits 3 on both).
    """
    blocked = [v for v in preflight if not v.feasible]
    if blocked and not force:
        raise InfeasibleError(
            f"refusing to migrate {guest} to {destination}: "
            + "; ".join(str(v) for v in blocked)
            + " (use --force to try anyway)"
        )


def shown_uri(uri: str) -> str:
    """A URI as it may be printed: its password, if any, redacted."""
    return redact_uri(uri)


def make_plan(
    guest: str,
    source: str,
    source_uri: str,
    destination: str,
    destination_uri: str,
    *,
    memory_kib: int,
    local_disks: list[DiskCopy],
    opts: MigrateOptions,
    preflight: tuple[Verdict, ...] = (),
) -> MigrationPlan:
    """Choose libvirt flags and typed parameters for a move (pure)."""
    if source_uri == destination_uri or source == destination:
        raise UsageError(f"destination {destination} is the source host of {guest}")
    if opts.timeout_action not in ("abort", "postcopy"):
        raise UsageError("--on-timeout must be abort or postcopy")
    if opts.timeout_action == "postcopy" and not opts.postcopy:
        raise UsageError("--on-timeout postcopy needs --postcopy")
    refuse_infeasible(guest, destination, preflight, opts.force)
    flags = list(BASE_FLAGS)
    storage: tuple[DiskCopy, ...] = ()
    mode = opts.copy_storage
    if mode == "auto":
        mode = "all" if local_disks else "none"
    if mode == "all":
        flags.append("NON_SHARED_DISK")
        storage = tuple(local_disks)
    elif mode == "inc":
        flags.append("NON_SHARED_INC")
        storage = tuple(local_disks)
    if opts.auto_converge:
        flags.append("AUTO_CONVERGE")
    if opts.postcopy:
        flags.append("POSTCOPY")
    if opts.compressed:
        flags.append("COMPRESSED")
    params: dict[str, int | str] = {}
    if opts.parallel_connections:
        flags.append("PARALLEL")
        params["parallel.connections"] = opts.parallel_connections
    if opts.bandwidth_mib:
        params["bandwidth"] = opts.bandwidth_mib
    if opts.max_downtime_ms:
        params["max_downtime_ms"] = opts.max_downtime_ms  # set with migrateSetMaxDowntime
    mem = memory_kib * 1024
    disk_bytes = sum(d.bytes or 0 for d in storage)
    return MigrationPlan(
        guest=guest,
        source=source,
        source_uri=source_uri,
        destination=destination,
        destination_uri=destination_uri,
        flags=tuple(flags),
        params=params,
        storage=storage,
        memory_bytes=mem,
        expected_transfer_bytes=mem + disk_bytes,
        timeout_s=opts.timeout_s,
        timeout_action=opts.timeout_action,
        preflight=preflight,
    )


# ---- from a guest name and a destination to a plan, on fresh state ----------------------------

#: ``preflight(guest, source, destination)`` -> every rule's Verdict.
Preflight = Callable[[Domain, Host, Host], Sequence[Verdict]]
#: ``read({name: uri})`` -> {name: Host}: the hosts' state now (``planner.collect.live``).
ReadHosts = Callable[[Mapping[str, str]], Mapping[str, Host]]


def rules_preflight(policy: Any, catalog: Any) -> Preflight:
    """The pre-flight of ``migplan check``: every rule of ``planner.assess.rules``."""
    from planner.assess.rules import assess

    def run(g: Domain, src: Host, dst: Host) -> tuple[Verdict, ...]:
        return assess(g, src, dst, policy, catalog).verdicts

    return run


def resolve_host(what: str, hosts: Mapping[str, str]) -> tuple[str, str]:
    """A host name (one of ``hosts``) or a libvirt URI -> (name, uri); a URI that reaches
    a known host (spelled differently: a port, a case) is that host."""
    if what in hosts:
        return what, hosts[what]
    if "://" in what:
        name = next((n for n, u in hosts.items() if same_uri(u, what)), None)
        if name is not None:
            return name, hosts[name]
        return uri_host(what) or what, what
    known = ", ".join(hosts) or "none: use --lab, --snapshot DIR or a libvirt URI"
    raise UsageError(f"unknown host {what!r} (known hosts: {known})")


def locate(guest: str, hosts: Mapping[str, str],
           presence: Callable[[str, str], GuestPresence]) -> dict[str, GuestPresence | str]:
    """Ask every host whether it has ``guest``: name -> presence, or the error text."""
    def ask(uri: str) -> GuestPresence | str:
        try:
            return presence(uri, guest)
        except MigplanError as err:
            return str(err)

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        futures = {name: pool.submit(ask, uri) for name, uri in hosts.items()}
        return {name: f.result() for name, f in futures.items()}


def find_source(guest: str, dest: tuple[str, str], hosts: Mapping[str, str],
                presence: Callable[[str, str], GuestPresence],
                host_uuid: Callable[[str], str | None] | None = None) -> tuple[str, str]:
    """The host where ``guest`` runs, searching ``hosts`` and the destination.

    ``host_uuid(uri)``: asked only when several names report the guest running, to tell
    one host reached twice from a guest really running twice."""
    search = dict(hosts)
    if not any(same_uri(u, dest[1]) for u in search.values()):
        search.setdefault(dest[0], dest[1])
    found = locate(guest, search, presence)
    running = [n for n, p in found.items() if isinstance(p, GuestPresence) and p.active]
    if len(running) > 1 and host_uuid is not None:
        # two names of one daemon (two URIs, a name and its address): one host
        seen: dict[str, str] = {}
        for n in running:
            seen.setdefault(host_uuid(search[n]) or n, n)
        running = list(seen.values())
    if len(running) > 1:
        raise MigplanError(f"{guest} runs on several hosts at once ({', '.join(running)}): "
                           "resolve that first")
    if running:
        name = running[0]
        if same_uri(search[name], dest[1]) or name == dest[0]:
            raise UsageError(f"{guest} already runs on {dest[0]}: the destination is its source")
        return name, search[name]
    defined = [f"{p.state} on {n}" for n, p in found.items()
               if isinstance(p, GuestPresence) and p.exists]
    if defined:
        raise UsageError(f"{guest} is not running ({', '.join(defined)}): only a running guest "
                         "can be live-migrated")
    unreachable = [f"{n} ({p})" for n, p in found.items() if isinstance(p, str)]
    extra = f"; could not ask {', '.join(unreachable)}" if unreachable else ""
    if not hosts:
        raise UsageError(f"cannot tell where {guest} runs: give --source, --lab or --snapshot DIR")
    raise UsageError(f"unknown guest {guest!r}: no host runs it "
                     f"(searched {', '.join(search)}){extra}")


def name_taken(host: str, guest: str) -> Verdict:
    """libvirt refuses an incoming guest whose name is defined on the destination already."""
    return Verdict("destination", Status.BLOCKED, "destination.name-taken",
                   f"{host} already has a guest named {guest}")


def nova_managed(g: Domain, host: str) -> Verdict | None:
    """A guest Nova manages (its domain XML carries ``<nova:instance>``) is not moved behind
    Nova's back: Nova's database, port bindings, volume attachments and placement
    allocations would stay on ``host`` and its next action on the server would break."""
    if g.nova is None:
        return None
    server = f"server {g.nova.name} ({g.nova.uuid or g.uuid})" if g.nova.name else "a server"
    return Verdict("libvirt-direct", Status.BLOCKED, "libvirt-direct.nova-managed",
                   f"{g.name} is {server} that Nova manages: a libvirt move would leave "
                   f"Nova's records (host, port bindings, volume attachments, placement) on "
                   f"{host}; move it through Nova with --os-cloud NAME, or give "
                   "--force-libvirt to move it with libvirt anyway")


def local_disks(g: Domain, src: Host) -> list[DiskCopy]:
    """Writable disks local to the source: what --copy-storage has to copy."""
    from planner.assess.rules import disk_locality

    out = []
    for d in g.disks:
        if d.readonly or d.device in ("cdrom", "floppy"):
            continue
        if disk_locality(d, src):
            out.append(DiskCopy(d.target, d.source, d.size_bytes))
    return out


def libvirt_name(guest: str, hosts: Mapping[str, str], read: ReadHosts) -> str | None:
    """The libvirt name of the domain whose UUID, or Nova server's name or UUID (its
    ``<nova:instance>`` metadata), is ``guest`` -- None when no host that answers has one."""
    try:
        state = read(hosts)
    except HostError:
        return None
    found = {d.name for h in state.values() for d in h.domains
             if guest in (d.uuid, *((d.nova.name, d.nova.uuid) if d.nova else ()))}
    if len(found) > 1:
        raise UsageError(f"{guest!r} names several guests ({', '.join(sorted(found))}): "
                         "give the libvirt name")
    return found.pop() if found else None


def prepare(guest: str, dest: str, *, hosts: Mapping[str, str], source: str | None,
            opts: MigrateOptions, preflight: Preflight, read: ReadHosts,
            presence: Callable[[str, str], GuestPresence],
            host_uuid: Callable[[str], str | None] | None = None) -> MigrationPlan:
    """Resolve the hosts, find the guest, read both hosts now, pre-flight, plan.

    Changes nothing anywhere.  Raises UsageError for bad names, InfeasibleError
    when the pre-flight refuses (unless ``opts.force``), HostError when a host
    cannot be read.
    """
    dst_name, dst_uri = resolve_host(dest, hosts)
    if source is not None:
        src_name, src_uri = resolve_host(source, hosts)
    else:
        try:
            src_name, src_uri = find_source(guest, (dst_name, dst_uri), hosts, presence,
                                            host_uuid)
        except UsageError:
            alias = libvirt_name(guest, {**hosts, dst_name: dst_uri}, read)
            if alias is None:
                raise
            guest = alias
            src_name, src_uri = find_source(guest, (dst_name, dst_uri), hosts, presence,
                                            host_uuid)
    if same_uri(src_uri, dst_uri) or src_name == dst_name:
        raise UsageError(f"destination {dst_name} is the source host of {guest}")
    try:
        state = read({src_name: src_uri, dst_name: dst_uri})
    except HostError as err:
        raise HostError(f"cannot read {src_name} and {dst_name} before migrating: {err}",
                        err.kind) from None
    src, dst = state[src_name], state[dst_name]
    if src.host_uuid is not None and src.host_uuid == dst.host_uuid:
        # libvirt refuses too ("Attempt to migrate guest to the same host")
        raise UsageError(f"destination {dst_name} is the same host as the source {src_name} "
                         f"(host UUID {src.host_uuid}): {guest} already runs there")
    g = next((d for d in src.domains if d.name == guest), None)
    if g is None:
        raise UsageError(f"unknown guest {guest!r}: not on {src_name}")
    managed = nova_managed(g, src_name)
    if managed is not None and not opts.force_libvirt:
        raise InfeasibleError(f"refusing to migrate {guest} with libvirt: {managed.message}")
    if g.state not in MIGRATABLE_STATES:
        raise UsageError(f"{guest} is {g.state} on {src_name}, not running: only a running "
                         "guest can be live-migrated")
    verdicts = list(preflight(g, src, dst))
    if managed is not None:  # --force-libvirt: said in the plan, warned about after
        verdicts.insert(0, dataclasses.replace(managed, status=Status.WARN))
    if any(d.name == guest for d in dst.domains):
        # libvirt refuses an incoming guest whose name is defined there already
        verdicts.insert(0, name_taken(dst_name, guest))
    return make_plan(guest, src_name, src_uri, dst_name, dst_uri, memory_kib=g.memory_kib,
                     local_disks=local_disks(g, src), opts=opts, preflight=tuple(verdicts))
