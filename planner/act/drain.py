"""Run a ``DrainPlan`` wave by wave: a wave's moves side by side, the next wave after it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from planner.act.migrate import Outcome
from planner.errors import InfeasibleError, MigplanError
from planner.plan.drain import Assignment, DrainPlan


def guarded(guest: str, source: str, attempt: Callable[[], Outcome]) -> Outcome:
    """One guest's pre-flight and migration, its refusal or error turned into an Outcome.

    A drain goes on after one guest fails.  ``attempt`` raises only before a job runs
    (a move refused by the pre-flight on fresh state, a host that cannot be read): the
    guest is still on ``source``.  Once a job ran, ``execute`` returns the verified
    outcome (unknown and lost included), never an exception.
    """
    try:
        return attempt()
    except InfeasibleError as err:
        return Outcome(guest, "refused", source, str(err), 0.0)
    except MigplanError as err:
        return Outcome(guest, "error", source, str(err), 0.0)


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
    """The worst of the guests' outcomes (docs/exit-codes.md): 8 a guest lost, 7 a guest
    whose place the hosts could not confirm, 4 a guest still on the host (failed,
    refused, not started), 1 a guest on its destination but not cleanly, 3 guests that
    cannot move; else 0."""
    if result is not None:
        statuses = {o.status for o in result.outcomes}
        for status, code in (("lost", 8), ("unknown", 7)):
            if status in statuses:
                return code
        if statuses & {"failed", "aborted", "refused", "error"} or result.not_started:
            return 4
        if "unclean" in statuses:
            return 1
    return 0 if plan.complete else 3

