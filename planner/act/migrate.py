"""Run one planned live migration through a driver, then verify where the guest is.

Pure orchestration over an injected ``MigrationDriver`` -- libvirt's
(``planner.adapters.libvirt``) or Nova's (``planner.adapters.nova_migrate``, for a plan
with a ``nova`` part) -- so the safety logic -- never lose a guest -- reads in one place
and the libvirt and OpenStack calls stay in the modules that import them.

The rule: a migration ends with the guest running and persistent on the
destination, or running on the source.  Both are *verified* by asking the hosts
afterwards, never assumed from the API's return value; a move through Nova is verified
by Nova *and* by both hosts' libvirt (``planner.act.nova_verify``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from planner.errors import MigplanError, MigrationFailed, UsageError
from planner.plan.migration import GuestPresence, MigrationPlan

if TYPE_CHECKING:
    from planner.act.nova_verify import NovaDriver


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
    status: str  # migrated | failed | aborted | refused (Nova's; nothing moved) | unknown | lost
    on: str  # host where the guest runs now ("?" unknown, "nowhere" lost)
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


def verify(
    plan: MigrationPlan,
    driver: MigrationDriver,
    error: str | None,
    duration: float,
    *,
    aborted: bool = False,
) -> Outcome:
    """Ask both hosts where the guest is; never trust the job's return alone."""
    if plan.nova is not None:  # a move through Nova: Nova and both hosts' libvirt decide
        from planner.act.nova_verify import verify_nova

        return verify_nova(plan, cast("NovaDriver", driver), error, duration, aborted=aborted)
    try:
        dst = driver.presence(plan.destination_uri, plan.guest)
    except MigplanError:
        dst = GuestPresence(False, state="destination unreachable")
    try:
        src = driver.presence(plan.source_uri, plan.guest)
    except MigplanError as err:
        src = GuestPresence(False, state=f"source unreachable: {err}")
    details = {
        "source": {"exists": src.exists, "active": src.active, "persistent": src.persistent},
        "destination": {"exists": dst.exists, "active": dst.active, "persistent": dst.persistent},
    }
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
