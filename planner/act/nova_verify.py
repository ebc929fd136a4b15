"""Verify a move through Nova: Nova *and* both hosts' libvirt say where the server runs.

Nova's view (``ServerState``: the server's host, status and task, this move's migration
record and Nova's reason) comes from the Nova driver (``planner.adapters.nova_migrate``);
libvirt's from both hosts, asked like any move.  Nothing is guessed: when they do not
confirm one place the outcome is ``unknown`` (exit 7), with what each side said, or
``lost`` (exit 8) when both hosts answered and neither runs the domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from planner.act.migrate import MigrationDriver, Outcome, ask
from planner.plan.migration import MigrationPlan


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


def _nova(driver: NovaDriver, plan: MigrationPlan) -> tuple[ServerState | None, str]:
    try:
        st = driver.server_state(plan)
    except Exception as err:  # noqa: BLE001 - Nova not answering is evidence too
        return None, f"Nova could not be asked: {err}"
    return st, (f"Nova: {st.status} on {st.host}"
                + (f", task {st.task_state}" if st.task_state else "")
                + (f", migration {st.migration}" if st.migration else ""))


def verify_nova(plan: MigrationPlan, driver: NovaDriver, error: str | None, duration: float,
                *, aborted: bool = False) -> Outcome:
    """Done only when Nova says ACTIVE (or PAUSED) on the destination with no task and the
    migration ``completed``, the destination's libvirt runs the domain, persistent, and the
    source's has it no more.  Still on the source when Nova places it there with no task
    and the source's libvirt runs it, the destination's not.  Else unknown or lost."""
    nova = plan.nova
    assert nova is not None
    src = ask(driver, plan.source, plan.source_uri, plan.guest)
    dst = ask(driver, plan.destination, plan.destination_uri, plan.guest)
    st, nova_words = _nova(driver, plan)
    details: dict[str, Any] = {"source": src.to_json(), "destination": dst.to_json(),
                               "nova": st.to_json() if st is not None else None}
    said = f"{nova_words}; libvirt: {src.evidence(plan.guest)}; {dst.evidence(plan.guest)}"
    label = f"server {nova.server_name} ({plan.guest})"
    s, d = src.presence, dst.presence

    def out(status: str, on: str, message: str) -> Outcome:
        return Outcome(plan.guest, status, on, message, duration, details)

    if (st is not None and not st.task_state and st.status in ("ACTIVE", "PAUSED")
            and st.host == nova.destination and st.migration == "completed" and error is None
            and d is not None and d.active and d.persistent and s is not None and not s.exists):
        return out("migrated", plan.destination,
                   f"{label} is {st.status} on {nova.destination} in Nova and runs there, "
                   f"persistent; gone from {nova.source}")
    if (st is not None and not st.task_state and st.host == nova.source
            and s is not None and s.active and not (d is not None and d.active)):
        why = st.reason or error or "no reason given"
        if st.status == "ERROR":
            why += (f"; Nova put the server in ERROR although it runs on {nova.source}: "
                    "check it, then `openstack server set --state active`")
        status = "refused" if st.refused else "aborted" if aborted else "failed"
        return out(status, plan.source, f"{label} is still running on {nova.source} "
                                        f"({said}): {why}")
    tail = (f"; the migration said: {error}" if error else "") + \
        ": check it before any other action on the server"
    if s is not None and d is not None and not s.active and not d.active:
        return out("lost", "nowhere", f"{label} runs on neither host ({said}){tail}")
    return out("unknown", "?", f"where {label} runs cannot be confirmed after its migration "
                               f"{nova.source} -> {nova.destination} ({said}){tail}")
