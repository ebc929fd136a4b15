"""The libvirt adapter: the ONLY module in migplan that imports ``libvirt``.

Two halves.  The reads (used by ``collect``) return raw data -- XML strings
exactly as libvirt gave them, numbers, names; parsing happens in
``planner.parse`` -- and change nothing on a host.  ``LibvirtMigrationDriver``
(used by ``act``) is the one part that changes hosts: it runs and aborts
live migrations and reports where a guest is.

Connections are opened read-only.  libvirt refuses a few pure reads on a
read-only connection -- ``virConnectGetDomainCapabilities`` is guarded by
``virCheckReadOnlyGoto`` because it may probe QEMU binaries -- so for those
calls alone a read-write connection is opened, used for that read and closed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt

from planner.act.migrate import Progress
from planner.collect.credentials import LibvirtCredentials
from planner.collect.sources import redact_uri
from planner.errors import HostError
from planner.plan.migration import GuestPresence, MigrationPlan

T = TypeVar("T")

#: keepalive: probe every 5 s, give up after 3 unanswered probes, so a host
#: that vanishes mid-collect fails in ~20 s instead of TCP's minutes.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3


def _silence(_ctx: object, _err: object) -> None:
    # libvirt's default handler prints every error on stderr, even the ones we
    # expect and handle (a driver without domcapabilities, a vanished guest).
    return None

libvirt.registerErrorHandler(_silence, None)

_event_lock = threading.Lock()
_event_started = False


def _start_event_loop() -> None:
    """Keepalive needs libvirt's event loop running; start it once, in a daemon thread."""
    global _event_started
    with _event_lock:
        if _event_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_started = True


def _kind(err: libvirt.libvirtError) -> str:
    code = err.get_error_code()
    if code in (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
                getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1)):
        return "auth"
    if code in (libvirt.VIR_ERR_NO_SUPPORT, getattr(libvirt, "VIR_ERR_NO_DOMAIN_CAPS", -1)):
        return "unsupported"
    if code == libvirt.VIR_ERR_OPERATION_DENIED:
        return "denied"
    if code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT):
        return "unreachable"
    return "error"


def _message(err: libvirt.libvirtError) -> str:
    return (err.get_error_message() or str(err)).strip()


@dataclass


class Conn:
    """An open read-only connection, with the URI it came from (for read-write fallbacks)."""

    uri: str
    ro: Any  # libvirt.virConnect
    _rw: Any = field(default=None, repr=False)
    credentials: LibvirtCredentials | None = field(default=None, repr=False)

    def rw(self) -> Any:
        if self._rw is None:
            self._rw = _open(self.uri, readonly=False, credentials=self.credentials)
        return self._rw

    # The reads collect makes (collect takes any object with these methods).

    def capabilities(self) -> str:
        return str(_call("capabilities", self.ro.getCapabilities))

    def domain_capabilities(self, virttype: str | None = None, arch: str | None = None) -> str:
        """``virsh domcapabilities [--virttype T]``; read-write only when libvirt demands it."""
        def get(c: Any) -> str:
            return str(c.getDomainCapabilities(None, arch, None, virttype, 0))

        what = f"domcapabilities ({virttype or 'default'})"
        try:
            return _call(what, lambda: get(self.ro))
        except HostError as err:
            if err.kind != "denied":
                raise
        return _call(what, lambda: get(self.rw()))

    def cpu_model_names(self, arch: str) -> list[str]:
        return list(_call("CPU model names", lambda: self.ro.getCPUModelNames(arch, 0)) or [])

    def node_info(self) -> dict[str, Any]:
        """``virNodeGetInfo``: memory in KiB (libvirt's getInfo gives MiB)."""
        info = _call("node info", self.ro.getInfo)
        model, mem_mib, cpus, mhz, nodes, sockets, cores, threads = info
        return {"model": model, "memory_kib": int(mem_mib) * 1024, "cpus": cpus, "mhz": mhz,
                "nodes": nodes, "sockets": sockets, "cores": cores, "threads": threads}

    def free_memory(self) -> int:
        """Free memory of the whole host, bytes (virNodeGetFreeMemory)."""
        return int(_call("free memory", self.ro.getFreeMemory))

    def cells_free_memory(self, ncells: int) -> list[int]:
        """Free memory (bytes) of NUMA cells 0..ncells-1."""
        return [int(x) for x in _call("free memory", lambda: self.ro.getCellsFreeMemory(0, ncells))]

    def free_pages(self, page_sizes_kib: list[int], ncells: int) -> dict[int, dict[int, int]]:
        """Free pages per cell and page size (KiB): ``{cell: {size_kib: free}}``."""
        if not page_sizes_kib or ncells <= 0:
            return {}
        raw = _call("free pages", lambda: self.ro.getFreePages(page_sizes_kib, 0, ncells, 0)) or {}
        return {int(c): {int(s): int(n) for s, n in v.items()} for c, v in raw.items()}

    def versions(self) -> dict[str, Any]:
        """libvirt (of the daemon) and hypervisor versions as "major.minor.release"."""
        def fmt(v: int) -> str:
            return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

        lib = _call("libvirt version", self.ro.getLibVersion)
        hv_type = _call("hypervisor type", self.ro.getType)
        hv = _call("hypervisor version", self.ro.getVersion)
        return {"libvirt": fmt(lib), "hypervisor_type": hv_type, "hypervisor": fmt(hv) if hv else None}

    def hostname(self) -> str:
        return str(_call("hostname", self.ro.getHostname))

    def storage_pools(self) -> list[dict[str, Any]]:
        """Every storage pool: name, raw XML, active, persistent.

        Whether a pool is shared is decided from its type when parsing
        (``planner.parse.host.SHARED_POOL_TYPES``), not here.
        """
        pools = []
        for p in _call("storage pools", lambda: self.ro.listAllStoragePools(0)):
            try:
                pools.append({"name": p.name(), "xml": p.XMLDesc(0), "active": bool(p.isActive()),
                              "persistent": bool(p.isPersistent())})
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise HostError(f"storage pool {p.name()}: {_message(err)}", _kind(err)) from None
        return pools

    def domains(self) -> list[dict[str, Any]]:
        """Every guest, running and defined-inactive: name, uuid, state, persistent, live XML,
        and the size of each disk on the host's storage (``disks``: target -> capacity,
        allocation, physical bytes, virDomainGetBlockInfo; a disk whose size libvirt
        cannot read is left out).

        A transient guest may vanish between the listing and its XML; it is skipped.
        """
        from planner.parse.guest import local_disk_targets

        out = []
        for d in _call("guests", lambda: self.ro.listAllDomains(0)):
            try:
                state, reason = d.state()
                xml = d.XMLDesc(0)
                entry = {"name": d.name(), "uuid": d.UUIDString(),
                         "state": _STATES.get(state, str(state)), "reason": reason,
                         "persistent": bool(d.isPersistent()), "xml": xml}
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise HostError(f"guest {d.name()}: {_message(err)}", _kind(err)) from None
                continue
            sizes = {}
            for target in local_disk_targets(xml.encode(), f"guest {entry['name']}"):
                try:
                    cap, alloc, phys = d.blockInfo(target, 0)
                except libvirt.libvirtError:
                    continue  # an image libvirt cannot open (missing, locked): size unknown
                sizes[target] = {"capacity": int(cap), "allocation": int(alloc),
                                 "physical": int(phys)}
            if sizes:
                entry["disks"] = sizes
            out.append(entry)
        return out

    def networks(self) -> list[dict[str, Any]]:
        """Every libvirt network: name, raw XML, active, persistent (a network with
        <forward mode='hostdev'> hands out SR-IOV VFs: planner.parse.host.hostdev_network)."""
        out = []
        for n in _call("networks", lambda: self.ro.listAllNetworks(0)):
            try:
                out.append({"name": n.name(), "xml": n.XMLDesc(0), "active": bool(n.isActive()),
                            "persistent": bool(n.isPersistent())})
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise HostError(f"network {n.name()}: {_message(err)}", _kind(err)) from None
        return out

    def close(self) -> None:
        for c in (self.ro, self._rw):
            if c is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    c.close()


def _auth(creds: LibvirtCredentials) -> list[Any]:
    """libvirt's authentication callback answering SASL's user and password prompts."""
    def answer(prompts: list[list[Any]], _opaque: object) -> int:
        for p in prompts:
            if p[0] == libvirt.VIR_CRED_AUTHNAME:
                p[4] = creds.user
            elif p[0] == libvirt.VIR_CRED_PASSPHRASE:
                p[4] = creds.password
            else:
                return -1  # a prompt we have no answer for: libvirt reports auth failed
        return 0

    return [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]


def _open(uri: str, readonly: bool, credentials: LibvirtCredentials | None = None) -> Any:
    _start_event_loop()
    try:
        if credentials is not None:
            conn = libvirt.openAuth(uri, _auth(credentials),
                                    libvirt.VIR_CONNECT_RO if readonly else 0)
        else:
            conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise HostError(f"{redact_uri(uri)}: {_message(err)}", _kind(err)) from None
    if conn is None:  # older bindings returned None instead of raising
        raise HostError(f"{redact_uri(uri)}: cannot connect", "unreachable")
    # Local drivers (test://, qemu:/// without a daemon) have no keepalive.
    with contextlib.suppress(libvirt.libvirtError):
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    return conn


def connect(uri: str, credentials: LibvirtCredentials | None = None) -> Conn:
    """Open a read-only connection to ``uri`` (raises HostError); ``credentials`` answer
    SASL's prompts through libvirt's authentication callback."""
    return Conn(uri, _open(uri, readonly=True, credentials=credentials),
                credentials=credentials)


@contextlib.contextmanager


def connection(uri: str, credentials: LibvirtCredentials | None = None) -> Iterator[Conn]:
    conn = connect(uri, credentials)
    try:
        yield conn
    finally:
        conn.close()


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except libvirt.libvirtError as err:
        raise HostError(f"{what}: {_message(err)}", _kind(err)) from None


# --- guest states as libvirt numbers them ------------------------------------------------


_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


# ---- live migration (the libvirt side of planner.act.migrate) ---------------------------------


class LibvirtMigrationDriver:
    """Runs a planned migration through libvirt; never decides whether it worked
    (``planner.act.migrate.verify`` asks both hosts)."""

    poll_s = 0.25
    #: After an abort (Ctrl-C, timeout) how long to wait for libvirt to end the job
    #: before reporting; the job thread is left to finish on its own after that.
    abort_grace_s = 120.0

    def __init__(self, credentials: LibvirtCredentials | None = None) -> None:
        self.credentials = credentials  # SASL, answered through libvirt's auth callback

    def presence(self, uri: str, guest: str) -> GuestPresence:
        conn = _open(uri, readonly=True, credentials=self.credentials)
        try:
            dom = conn.lookupByName(guest)
            state = _STATES.get(dom.state()[0], "unknown")
            return GuestPresence(True, bool(dom.isActive()), bool(dom.isPersistent()), state)
        except libvirt.libvirtError as err:
            # an incoming guest being torn down vanishes between the lookup and the state
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return GuestPresence(False)
            raise HostError(f"{redact_uri(uri)}: {err.get_error_message()}") from None
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def host_uuid(self, uri: str) -> str | None:
        """The host UUID libvirt identifies the host by (capabilities <host><uuid>)."""
        from planner.parse.host import document_root

        with connection(uri, self.credentials) as c:
            caps = c.capabilities()
        uuid = document_root(caps.encode(), f"{redact_uri(uri)}: capabilities",
                             "capabilities").findtext("host/uuid")
        return uuid or None

    def run(self, plan: MigrationPlan, on_progress: Callable[[Progress], None],
            stop: threading.Event) -> str | None:
        conn = _open(plan.source_uri, readonly=False, credentials=self.credentials)
        poll = _open(plan.source_uri, readonly=False, credentials=self.credentials)
        try:
            try:
                dom = conn.lookupByName(plan.guest)
                pdom = poll.lookupByName(plan.guest)
                if "max_downtime_ms" in plan.params:
                    dom.migrateSetMaxDowntime(int(plan.params["max_downtime_ms"]), 0)
            except libvirt.libvirtError as e:
                return f"before the migration started: {e.get_error_message()}"
            flags = 0
            for name in plan.flags:
                flags |= getattr(libvirt, "VIR_MIGRATE_" + name)
            params: dict[str, Any] = {}
            if "bandwidth" in plan.params:
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(plan.params["bandwidth"])
            if "parallel.connections" in plan.params:
                params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(
                    plan.params["parallel.connections"])
            result: dict[str, str | None] = {"error": None, "timeout": None}

            def work() -> None:
                try:
                    dom.migrateToURI3(plan.destination_uri, params, flags)
                except libvirt.libvirtError as err:
                    result["error"] = err.get_error_message() or str(err)
                except BaseException as err:  # noqa: BLE001 - reported, never lost in a thread
                    result["error"] = f"{type(err).__name__}: {err}"
                finally:
                    finished.set()

            # Wait on an Event, not Thread.join: seen here (Python 3.11), a join interrupted
            # by Ctrl-C left is_alive() False while migrateToURI3 still ran, and the
            # outcome was verified before libvirt had ended the job.
            finished = threading.Event()
            th = threading.Thread(target=work, name=f"migrate-{plan.guest}", daemon=True)
            t0 = time.monotonic()
            th.start()
            acted_at: float | None = None
            phase = "precopy"
            while not finished.is_set():
                try:
                    if finished.wait(self.poll_s):
                        break
                    elapsed = time.monotonic() - t0
                    on_progress(_progress(pdom, elapsed, phase))
                    timed_out = plan.timeout_s is not None and elapsed > plan.timeout_s
                    if acted_at is None and (stop.is_set() or timed_out):
                        acted_at = elapsed
                        if timed_out and not stop.is_set() and plan.timeout_action == "postcopy":
                            # the guest then runs on the destination, pages follow on demand
                            phase = "postcopy"
                            _try(pdom.migrateStartPostCopy, 0)
                        else:
                            if timed_out:
                                result["timeout"] = (f"no completion within {plan.timeout_s:g} s: "
                                                     "aborted")
                                stop.set()
                            _try(pdom.abortJob)
                    elif acted_at is not None and elapsed - acted_at > self.abort_grace_s:
                        result["error"] = (result["error"] or
                                           f"libvirt did not end the job {self.abort_grace_s:g} s "
                                           "after the abort")
                        break
                except KeyboardInterrupt:
                    # Ctrl-C: abort the job and keep waiting for libvirt to end it, so the
                    # guest is never left between hosts; verification then says where it is
                    stop.set()
                    if acted_at is None:
                        acted_at = time.monotonic() - t0
                        _try(pdom.abortJob)
            error = result["error"]
            if error is not None and result.get("timeout"):
                error = f"{result['timeout']} ({error})"
            return error  # None also when the job finished before an abort took effect
        finally:
            for c in (conn, poll):
                with contextlib.suppress(libvirt.libvirtError):
                    c.close()


def _try(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        fn(*args)


def _progress(dom: libvirt.virDomain, elapsed: float, phase: str) -> Progress:
    try:
        st = dom.jobStats()
    except libvirt.libvirtError:
        return Progress(elapsed, phase=phase)
    return Progress(
        elapsed_s=elapsed,
        data_total=st.get("data_total"),
        data_processed=st.get("data_processed"),
        data_remaining=st.get("data_remaining"),
        dirty_rate=st.get("memory_dirty_rate"),
        iteration=st.get("memory_iteration"),
        phase=phase,
    )
