"""Run a ``DrainPlan`` wave by wave: a wave's moves side by side, the next wave after it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from planner.act.migrate import Outcome
from planner.errors import (
    GuestLost,
    GuestStateUnknown,
    InfeasibleError,
    MigplanError,
    MigrationFailed,
)
from planner.plan.drain import Assignment, DrainPlan


def guarded(guest: str, source: str, attempt: Callable[[], Outcome]) -> Outcome:
    """One guest's pre-flight and migration, its refusal or error turned into an Outcome.

    A drain goes on after one guest fails: a refused move (pre-flight on fresh state)
    leaves the guest on ``source``; a guest whose place no host confirmed is "?".
    """
    try:
        return attempt()
    except InfeasibleError as err:
        return Outcome(guest, "refused", source, str(err), 0.0)
    except MigplanError as err:
        where = "?" if isinstance(err, MigrationFailed) else source
        return Outcome(guest, "error", where, str(err), 0.0)


@dataclass(frozen=True)
class DrainResult:
    plan: DrainPlan
    outcomes: tuple[Outcome, ...]
    not_started: tuple[str, ...]  # guests of waves never started (stopped)

    @property
    def migrated(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def run_drain(plan: DrainPlan, migrate_one: Callable[[Assignment, threading.Event], Outcome],
              *, stop: threading.Event | None = None,
              on_result: Callable[[Outcome], None] = lambda o: None) -> DrainResult:
    """Run the plan wave by wave; a wave's moves side by side, the next wave after it.

    ``migrate_one`` pre-flights on fresh state, migrates and verifies one guest,
    returning its Outcome (never raising for a failed or refused move).  After
    ``stop`` is set (Ctrl-C), running jobs are aborted by ``migrate_one`` and no
    further wave starts.
    """
    stop = stop or threading.Event()
    outcomes: list[Outcome] = []
    not_started: list[str] = []
    for wave in plan.waves:
        if stop.is_set():
            not_started += [a.guest for a in wave]
            continue
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            futures = [pool.submit(migrate_one, a, stop) for a in wave]
            for f in futures:
                while True:
                    try:
                        o = f.result()
                        break
                    except KeyboardInterrupt:
                        # Ctrl-C: the running jobs see ``stop`` and abort; wait for them
                        stop.set()
                outcomes.append(o)
                on_result(o)
    return DrainResult(plan, tuple(outcomes), tuple(not_started))


def summary_exit_code(result: DrainResult | None, plan: DrainPlan) -> int:
    """The worst of the guests' outcomes: 8 a guest lost (neither host runs it), 7 a guest
    whose place could not be confirmed, 4 a migration failed (guest still on the host) or a
    wave never started, 3 guests that cannot move, were skipped or refused, else 0."""
    if result is not None:
        if any(o.status == "lost" for o in result.outcomes):
            return GuestLost.exit_code
        if any(o.status == "unknown" or o.on == "?" for o in result.outcomes):
            return GuestStateUnknown.exit_code
        if result.not_started or any(o.status not in ("migrated", "refused")
                                     for o in result.outcomes):
            return MigrationFailed.exit_code
        if any(o.status == "refused" for o in result.outcomes):
            return InfeasibleError.exit_code
    return 0 if plan.complete else InfeasibleError.exit_code
