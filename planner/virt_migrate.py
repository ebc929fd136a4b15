"""libvirt side of live migration (to be folded into planner.virt)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import libvirt

from planner.errors import HostError
from planner.hostsources import redact_uri
from planner.migrate import GuestPresence, MigrationPlan, Progress

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


def _silence(_ctx: Any, _err: Any) -> None:
    return None


libvirt.registerErrorHandler(_silence, None)


def _open(uri: str, read_only: bool = False) -> libvirt.virConnect:
    try:
        conn = libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise HostError(f"cannot connect to {redact_uri(uri)}: {err.get_error_message()}",
                        "unreachable") from None
    return conn


class LibvirtMigrationDriver:
    """Runs a planned migration through libvirt; never decides whether it worked
    (``planner.migrate.verify`` asks both hosts)."""

    poll_s = 0.25
    #: After an abort (Ctrl-C, timeout) how long to wait for libvirt to end the job
    #: before reporting; the job thread is left to finish on its own after that.
    abort_grace_s = 120.0

    def presence(self, uri: str, guest: str) -> GuestPresence:
        conn = _open(uri, read_only=True)
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

    def run(self, plan: MigrationPlan, on_progress: Callable[[Progress], None],
            stop: threading.Event) -> str | None:
        conn = _open(plan.source_uri)
        poll = _open(plan.source_uri)
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
