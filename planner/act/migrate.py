"""Run one planned live migration through a driver, then verify where the guest is.

Pure orchestration over an injected ``MigrationDriver`` -- libvirt's
(``planner.adapters.libvirt``) or Nova's (``planner.adapters.nova_migrate``, for a plan
with a ``nova`` part) -- so the safety logic -- never lose a guest -- reads in one place
and the libvirt and OpenStack calls stay in the modules that import them.

The rule: a migration ends with the guest running and persistent on the
destination, or running on the source.  Both are *verified* by asking the hosts
afterwards, never assumed from the API's return value; a move through Nova is verified
by Nova (the server's host, status and migration record) *and* by both hosts' libvirt,
and when they do not agree the answer is ``GuestLost``, never a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from planner.errors import GuestLost, MigplanError, MigrationFailed, UsageError
from planner.plan.migration import GuestPresence, MigrationPlan


@dataclass
class Progress:
    """One sample of the migration job (virDomainGetJobStats)."""

    elapsed_s: float
    data_total: int | None = None
    data_processed: int | None = None
    data_remaining: int | None = None
    dirty_rate: int | None = None  # pages/s
    iteration: int | None = None
    phase: str = "precopy"  # libvirt: precopy | postcopy; Nova: its migration's status
    disk_total: int | None = None  # Nova reports the disk copy apart (block migration)
    disk_processed: int | None = None


@dataclass
class Outcome:
    guest: str
    status: str  # migrated | failed | aborted | refused (Nova refused; nothing moved)
    on: str  # host where the guest runs now
    message: str
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "migrated"


class MigrationDriver(Protocol):
    def presence(self, uri: str, guest: str) -> GuestPresence: ...

    def run(
        self,
        plan: MigrationPlan,
        on_progress: Callable[[Progress], None],
        stop: threading.Event,
    ) -> str | None:
        """Run the job; return None on success or libvirt's (Nova's) error message."""
        ...


@dataclass(frozen=True)
class ServerState:
    """Nova's view of a server after a move (``GET /servers/{id}`` and the migration)."""

    host: str | None
    status: str | None  # ACTIVE, PAUSED, ERROR, MIGRATING...
    task_state: str | None
    migration: str | None  # this move's migration record: completed, error, failed, cancelled
    reason: str | None = None  # Nova's reason when it did not complete (instance action)
    refused: bool = False  # Nova refused before anything moved (API 4xx or a pre-check)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "task_state": self.task_state,
                "migration": self.migration, "reason": self.reason}


class NovaDriver(MigrationDriver, Protocol):
    def server_state(self, plan: MigrationPlan) -> ServerState:
        """Nova's view now (raises MigplanError when Nova cannot be asked)."""
        ...


def execute(
    plan: MigrationPlan,
    driver: MigrationDriver,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] | None = None,
) -> Outcome:
    """Run a planned migration and verify where the guest ended up."""
    import time

    now = clock or time.monotonic
    stop = stop or threading.Event()
    before = driver.presence(plan.source_uri, plan.guest)
    if not before.exists:
        raise UsageError(f"guest {plan.guest} is not defined on {plan.source}")
    if not before.active:
        raise UsageError(f"guest {plan.guest} is {before.state} on {plan.source}, not running")
    t0 = now()
    error = driver.run(plan, on_progress, stop)
    duration = now() - t0
    return verify(plan, driver, error, duration, aborted=stop.is_set())


def _presences(plan: MigrationPlan, driver: MigrationDriver
               ) -> tuple[GuestPresence, GuestPresence]:
    try:
        dst = driver.presence(plan.destination_uri, plan.guest)
    except MigplanError as err:
        dst = GuestPresence(False, state=f"destination unreachable: {err}")
    try:
        src = driver.presence(plan.source_uri, plan.guest)
    except MigplanError as err:
        src = GuestPresence(False, state=f"source unreachable: {err}")
    return src, dst


def verify(
    plan: MigrationPlan,
    driver: MigrationDriver,
    error: str | None,
    duration: float,
    *,
    aborted: bool = False,
) -> Outcome:
    """Ask both hosts where the guest is; never trust the job's return alone."""
    src, dst = _presences(plan, driver)
    details = {
        "source": {"exists": src.exists, "active": src.active, "persistent": src.persistent},
        "destination": {"exists": dst.exists, "active": dst.active, "persistent": dst.persistent},
    }
    if plan.nova is not None:
        return _verify_nova(plan, driver, error, duration, aborted, (src, dst), details)
    if error is None and dst.active and dst.persistent and not src.exists:
        return Outcome(plan.guest, "migrated", plan.destination,
                       f"{plan.guest} is running and persistent on {plan.destination}; "
                       f"gone from {plan.source}", duration, details)
    if src.active:
        status = "aborted" if aborted else "failed"
        why = error or ("aborted" if aborted else
                        "the destination did not end with a running, persistent guest")
        return Outcome(plan.guest, status, plan.source,
                       f"{plan.guest} is still running on {plan.source}: {why}", duration, details)
    if dst.active:
        # The job reported an error but the guest runs on the destination
        # (e.g. post-copy finished, or persisting failed): it is not lost.
        extra = "" if dst.persistent else " but NOT persistent there (define it before a restart)"
        if src.exists:
            # UNDEFINE_SOURCE did not happen: two definitions risk a second start
            extra += f"; {plan.source} still has it defined ({src.state}): undefine it there"
        return Outcome(plan.guest, "failed", plan.destination,
                       f"{plan.guest} runs on {plan.destination}{extra}; libvirt said: {error}",
                       duration, details)
    raise MigrationFailed(
        f"{plan.guest} is running neither on {plan.source} nor on {plan.destination} "
        f"(source: {src.state}, destination: {dst.state}); libvirt said: {error}"
    )


def _libvirt_words(p: GuestPresence) -> str:
    if not p.exists:
        return p.state if p.state != "absent" else "no such domain"
    return f"{p.state}, {'persistent' if p.persistent else 'transient'}"


def _verify_nova(plan: MigrationPlan, driver: MigrationDriver, error: str | None,
                 duration: float, aborted: bool, where: tuple[GuestPresence, GuestPresence],
                 details: dict[str, Any]) -> Outcome:
    """A move through Nova is done when Nova *and* both hosts' libvirt say so.

    Done: Nova's server ACTIVE (or PAUSED) on the destination with no task, its migration
    ``completed``, and the domain running and persistent on the destination's libvirt and
    gone from the source's.  Still on the source: Nova's server there with no task and the
    domain running there, not on the destination.  Anything else -- Nova and libvirt
    disagreeing, the domain on both or on neither, Nova not answering -- is ``GuestLost``,
    with what each side said.
    """
    src, dst = where
    nova = plan.nova
    assert nova is not None
    label = f"server {nova.server_name} ({plan.guest})"
    st: ServerState | None
    try:
        st = cast(NovaDriver, driver).server_state(plan)
    except MigplanError as err:
        st = None
        nova_words = f"Nova could not be asked: {err}"
    else:
        nova_words = (f"Nova: {st.status} on {st.host}"
                      + (f", task {st.task_state}" if st.task_state else "")
                      + (f", migration {st.migration}" if st.migration else ""))
        details["nova"] = st.to_json()
    libvirt_words = (f"libvirt: {plan.source} {_libvirt_words(src)}, "
                     f"{plan.destination} {_libvirt_words(dst)}")
    said = f"{nova_words}; {libvirt_words}"
    settled = st is not None and not st.task_state and st.status in ("ACTIVE", "PAUSED")
    if (st is not None and settled and st.host == nova.destination and error is None
            and st.migration == "completed" and dst.active and dst.persistent
            and not src.exists):
        return Outcome(plan.guest, "migrated", plan.destination,
                       f"{label} is {st.status} on {nova.destination} in Nova and runs there, "
                       f"persistent; gone from {nova.source}", duration, details)
    if (st is not None and st.host == nova.source and not st.task_state and src.active
            and not dst.active):
        why = st.reason or error or "no reason given"
        if st.status == "ERROR":
            why += (f"; Nova put the server in ERROR although it runs on {nova.source}: "
                    "check it, then `openstack server set --state active`")
        status = "refused" if st.refused else "aborted" if aborted else "failed"
        return Outcome(plan.guest, status, plan.source,
                       f"{label} is still running on {nova.source} ({said}): {why}",
                       duration, details)
    raise GuestLost(f"where {label} runs cannot be confirmed after its migration "
                    f"{nova.source} -> {nova.destination}: {said}"
                    + (f"; the migration said: {error}" if error else "")
                    + ": check it before any other action on the server")
