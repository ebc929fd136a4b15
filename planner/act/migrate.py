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

from planner.errors import UsageError
from planner.plan.migration import GuestPresence, MigrationPlan, shown_uri

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
    status: str  # migrated | failed | aborted | unclean | unknown | lost (see verify);
    #              refused: Nova refused the move, nothing moved (act.nova_verify)
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


@dataclass(frozen=True)
class Answer:
    """What one host said when asked where the guest is (``presence`` None: no answer)."""

    host: str
    uri: str
    presence: GuestPresence | None
    error: str | None = None

    def evidence(self, guest: str) -> str:
        p = self.presence
        if p is None:
            return f"{self.host} did not answer ({self.error})"
        if not p.exists:
            return f"{self.host} has no guest {guest}"
        return (f"{self.host} has it {p.state}, "
                f"{'persistent' if p.persistent else 'transient (not persistent)'}")

    def to_json(self) -> dict[str, Any]:
        p = self.presence
        return {"answered": p is not None, "error": self.error,
                "exists": p.exists if p else None, "active": p.active if p else None,
                "persistent": p.persistent if p else None, "state": p.state if p else None}


def ask(driver: MigrationDriver, host: str, uri: str, guest: str) -> Answer:
    """One host's answer; any failure to answer is recorded, never raised (after a
    migration an exception here would hide where the guest is)."""
    try:
        return Answer(host, uri, driver.presence(uri, guest))
    except Exception as err:  # noqa: BLE001 - a host that cannot answer is evidence too
        return Answer(host, uri, None, str(err) or type(err).__name__)


#: Outcome statuses: what each means, and the exit code migrate gives (docs/exit-codes.md).
MIGRATED, FAILED, ABORTED, UNCLEAN, UNKNOWN, LOST = (
    "migrated", "failed", "aborted", "unclean", "unknown", "lost")


def verify(
    plan: MigrationPlan,
    driver: MigrationDriver,
    error: str | None,
    duration: float,
    *,
    aborted: bool = False,
) -> Outcome:
    """Ask both hosts where the guest is; never trust the job's return alone.

    Only the hosts' answers decide: ``failed``/``aborted`` only when the source confirms
    the guest runs there; ``unknown`` when a host did not answer (or both claim the
    guest) -- what each said and the commands to check are in the message; ``lost``
    when both answered and neither runs it.  A move through Nova is verified by Nova and
    both hosts' libvirt (``planner.act.nova_verify``).
    """
    if plan.nova is not None:
        from planner.act.nova_verify import verify_nova

        return verify_nova(plan, cast("NovaDriver", driver), error, duration, aborted=aborted)
    g = plan.guest
    src = ask(driver, plan.source, plan.source_uri, g)
    dst = ask(driver, plan.destination, plan.destination_uri, g)
    details = {"source": src.to_json(), "destination": dst.to_json()}
    s, d = src.presence, dst.presence

    def out(status: str, on: str, message: str) -> Outcome:
        return Outcome(g, status, on, message, duration, details)

    if error is None and d is not None and d.active and d.persistent and s is not None \
            and not s.exists:
        return out(MIGRATED, plan.destination,
                   f"{g} is running and persistent on {plan.destination}; gone from {plan.source}")
    # A source still running it never handed it over; one paused after post-copy began
    # may have its memory on the destination already.
    if s is not None and s.active and not (d is not None and d.active) \
            and (s.state == "running" or "POSTCOPY" not in plan.flags):
        why = error or ("aborted" if aborted else
                        "the destination did not end with a running, persistent guest")
        note = (f"; {plan.destination} did not answer: an incoming copy may remain there "
                f"({_check_cmd(dst, g)})") if d is None else ""
        return out(ABORTED if aborted else FAILED, plan.source,
                   f"{g} is still running on {plan.source}: {why}{note}")
    if d is not None and d.active and s is not None and not s.active:
        # The job reported an error but the guest runs on the destination
        # (e.g. post-copy finished, or persisting failed): it is not lost.
        extra = "" if d.persistent else " but NOT persistent there (define it before a restart)"
        if s.exists:
            # UNDEFINE_SOURCE did not happen: two definitions risk a second start
            extra += f"; {plan.source} still has it defined ({s.state}): undefine it there"
        return out(UNCLEAN, plan.destination,
                   f"{g} runs on {plan.destination}{extra}; libvirt said: {error}")
    if s is not None and d is not None and not s.active and not d.active:
        return out(LOST, "nowhere",
                   f"{g} runs on neither host: {src.evidence(g)}; {dst.evidence(g)}; "
                   f"libvirt said: {error}")
    both = s is not None and d is not None  # then both claim it
    return out(UNKNOWN, "?",
               f"where {g} runs could not be confirmed"
               + (" (both hosts have it active)" if both else "") + f": {src.evidence(g)}; "
               f"{dst.evidence(g)}; libvirt said: {error}.  Check before acting: "
               f"{_check_cmd(src, g)}; {_check_cmd(dst, g)}")


def _check_cmd(a: Answer, guest: str) -> str:
    return f"virsh -c {shown_uri(a.uri)} domstate {guest} --reason"
