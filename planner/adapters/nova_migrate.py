"""The Nova migration driver: a planned move through Nova's compute API, watched to its end.

``NovaMigrationDriver.run`` asks Nova (``NovaMover``, the one module importing the SDK)
for ``os-migrateLive`` to the planned host with ``block_migration: auto``, then follows the
migration record until it ends: progress (memory and disk processed/remaining) from
``GET /servers/{id}/migrations`` while it runs, the end state from ``GET /os-migrations``
(the in-progress list empties when it ends), and Nova's reason from the instance action's
events.  From microversion 2.25 Nova answers 202 before its pre-checks run: a 202 is never
taken for success.  Ctrl-C or the plan's timeout aborts the migration
(``DELETE /servers/{id}/migrations/{mid}``) and the driver keeps waiting for Nova to end it.

Like the libvirt driver it never decides whether a move worked: ``planner.act.migrate``
asks Nova (``server_state``) and both hosts' libvirt (``presence``, injected) afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from planner.act.migrate import Progress
from planner.act.nova_verify import ServerState
from planner.adapters.nova import NovaError, NovaMover, NovaRefused
from planner.model import NovaEvent, NovaMigration
from planner.plan.migration import GuestPresence, MigrationPlan

#: A live migration's record ends in one of these (nova/compute/manager.py, conductor).
ENDED = ("completed", "error", "failed", "cancelled", "done")
#: Events of Nova's pre-checks (conductor LiveMigrationTask, check_can_live_migrate_*): when
#: only these failed, Nova refused the move before anything was copied.
PRECHECK_EVENTS = ("conductor_live_migrate_instance",
                   "compute_check_can_live_migrate_destination",
                   "compute_check_can_live_migrate_source")


@dataclass(frozen=True)
class End:
    """How Nova ended a move: its record's status, Nova's reason, refused before copying."""

    status: str | None
    reason: str | None = None
    refused: bool = False


def one_paragraph(text: str) -> str:
    """The first paragraph of a Nova message, on one line (Nova appends libvirt's code
    and a URL after blank lines: "Unacceptable CPU info: ...\\n\\n0\\n\\nRefer to ...")."""
    return " ".join(text.strip().split("\n\n")[0].split())


def event_reason(message: str | None, events: list[NovaEvent]) -> tuple[str | None, bool]:
    """Nova's reason from an instance action's failed events (compute hosts' first, they
    name the cause), and whether only pre-check events failed.

    The failure's message is the event's ``details`` (compute API 2.84 on); before that
    Nova gives only the event's name (its traceback holds the frames, not the message)."""
    failed = [e for e in events if e.result == "Error"]
    failed.sort(key=lambda e: (not e.event.startswith("compute_"), e.event))
    words = []
    for e in failed:
        where = f"{e.host}: " if e.host else ""
        words.append(f"{where}{e.event}: {one_paragraph(e.details)}" if e.details else
                     f"{where}{e.event} failed (see nova-compute's log there)")
    refused = bool(failed) and all(e.event in PRECHECK_EVENTS for e in failed)
    if not words and message:
        words.append(f"instance action: {message}")
    return ("; ".join(words) or None), refused


class _Watch:
    """One move's migration record, followed poll by poll (see ``NovaMigrationDriver``)."""

    def __init__(self, driver: NovaMigrationDriver, plan: MigrationPlan, known: set[int],
                 stop: threading.Event, on_progress: Callable[[Progress], None]) -> None:
        assert plan.nova is not None
        self.d, self.plan, self.sid = driver, plan, plan.nova.server_id
        self.known, self.stop, self.on_progress = known, stop, on_progress
        self.t0 = time.monotonic()
        self.mid: int | None = None
        self.status: str | None = None
        self.seen_running = False
        self.abort_at: float | None = None
        self.aborted = False  # Nova accepted the DELETE
        self.timeout_note: str | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def follow(self) -> str | None:
        """Poll until the record ends; returns its status (None: Nova never told)."""
        while True:
            try:
                ended = self._step()
                if ended is not None:
                    return ended if ended != "?" else None
                (time.sleep if self.stop.is_set() else self.stop.wait)(self.d.poll_s)
            except KeyboardInterrupt:
                # Ctrl-C: abort the migration and keep waiting for Nova to end it, so the
                # server is never left between hosts; verification then says where it is
                self.stop.set()

    def _step(self) -> str | None:
        """One poll: the record's status, then an abort when asked; "?" when Nova never
        told how the migration ended."""
        try:
            ended = self._poll() or self._abort_if_asked()
        except NovaError as err:
            # Nova's API may drop a request (a restart, a proxy): keep asking, for a while
            self.last_error = str(err)
            self.failing_since = self.failing_since or time.monotonic()
            return "?" if time.monotonic() - self.failing_since > self.d.nova_lost_s else None
        self.failing_since = None
        return ended

    def _poll(self) -> str | None:
        self._read()
        if self.status in ENDED:
            return self.status
        # No record yet: the conductor creates it moments after the 202.  After an abort
        # that came before (Ctrl-C during the request) a few seconds tell whether Nova
        # took the request at all: its API sets the server's task before answering.
        limit = self.d.record_wait_s if self.abort_at is None else \
            min(self.d.record_wait_s, self.abort_at + 5.0)
        if self.mid is None and self.elapsed() > limit \
                and not self.d.cloud.server(self.sid).task_state:
            self.last_error = "Nova started no migration"
            return "?"
        return None

    def _read(self) -> None:
        live = [m for m in self.d.cloud.migrations_in_progress(self.sid) if m.id not in self.known]
        if live:
            self._saw(live[0])
            self.on_progress(self._progress(live[0]))
            return
        ended = [m for m in self.d.cloud.migrations(self.sid) if m.id not in self.known]
        if ended:
            self._saw(max(ended, key=lambda m: m.id))

    def _saw(self, m: NovaMigration) -> None:
        self.mid, self.status = m.id, m.status
        self.seen_running = self.seen_running or m.status in ("running", "post-migrating")

    def _progress(self, m: NovaMigration) -> Progress:
        return Progress(self.elapsed(), data_total=m.memory_total,
                        data_processed=m.memory_processed, data_remaining=m.memory_remaining,
                        phase=m.status, disk_total=m.disk_total, disk_processed=m.disk_processed)

    def _abort_if_asked(self) -> str | None:
        timeout = self.plan.timeout_s
        timed_out = timeout is not None and self.elapsed() > timeout
        if self.abort_at is None and (self.stop.is_set() or timed_out):
            self.abort_at = self.elapsed()
            if timed_out and not self.stop.is_set():
                self.timeout_note = f"no completion within {timeout:g} s: aborted"
                self.stop.set()
        if self.abort_at is None:
            return None
        if not self.aborted and self.mid is not None:
            # Nova refuses to abort before the migration runs (before 2.65) or once it
            # switched over (post-migrating): asked again at the next poll
            self.aborted = self.d.cloud.abort_migration(self.sid, self.mid) is None
        if self.elapsed() - self.abort_at > self.d.abort_grace_s:
            self.last_error = (f"Nova did not end migration {self.mid} within "
                               f"{self.d.abort_grace_s:g} s of the abort")
            return "?"
        return None


class NovaMigrationDriver:
    """Runs a planned move through Nova; ``server_state`` reports Nova's view afterwards."""

    poll_s = 0.5
    #: after the 202, how long the conductor may take to create the migration record
    record_wait_s = 60.0
    #: after the record ended, how long the server's task may take to clear
    settle_s = 60.0
    #: after an abort, how long Nova may take to end the migration
    abort_grace_s = 180.0
    #: how long Nova's API may keep failing before the driver stops waiting for it
    nova_lost_s = 120.0

    def __init__(self, cloud: NovaMover,
                 presence: Callable[[str, str], GuestPresence]) -> None:
        self.cloud = cloud
        self._presence = presence
        self._ends: dict[str, End] = {}
        self._lock = threading.Lock()

    def presence(self, uri: str, guest: str) -> GuestPresence:
        return self._presence(uri, guest)

    def run(self, plan: MigrationPlan, on_progress: Callable[[Progress], None],
            stop: threading.Event) -> str | None:
        nova = plan.nova
        if nova is None:
            raise ValueError("the Nova driver runs plans through Nova only")
        sid = nova.server_id
        known = {m.id for m in self.cloud.migrations(sid)}
        watch = _Watch(self, plan, known, stop, on_progress)
        request_id = ""
        try:
            request_id = self.cloud.live_migrate(sid, nova.destination, nova.block_migration)
        except NovaRefused as err:
            return self._ended(sid, End(None, f"Nova refused: {err}", refused=True))
        except KeyboardInterrupt:
            stop.set()  # did Nova get the request?  the watch finds out
        status = watch.follow()
        self._settle(sid)
        return self._ended(sid, self._end(watch, status, request_id))

    def _settle(self, sid: str) -> None:
        """Wait for the server's task to clear (Nova updates it around the record's end)."""
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            try:
                if not self.cloud.server(sid).task_state:
                    return
            except NovaError:
                pass
            except KeyboardInterrupt:
                continue  # the move has ended; the answer is moments away
            time.sleep(self.poll_s)

    def _end(self, w: _Watch, status: str | None, request_id: str) -> End:
        if status == "completed":
            return End(status)
        reason, refused = None, False
        if request_id:
            try:
                reason, refused = event_reason(*self.cloud.action_events(w.sid, request_id))
            except NovaError as err:
                reason = f"(Nova's events could not be read: {err})"
        notes = []
        if w.timeout_note:
            notes.append(w.timeout_note)
        elif w.abort_at is not None:
            notes.append("aborted (Ctrl-C)")
        if status is None:
            notes.append(w.last_error or "Nova reported no end of the migration")
        elif not reason:
            notes.append(f"migration {w.mid} ended {status}")
        if reason:
            notes.append(f"Nova said: {reason}")
        refused = refused and status == "error" and not w.seen_running
        return End(status, "; ".join(notes), refused)

    def _ended(self, sid: str, end: End) -> str | None:
        with self._lock:
            self._ends[sid] = end
        return None if end.status == "completed" else end.reason

    def server_state(self, plan: MigrationPlan) -> ServerState:
        assert plan.nova is not None
        s = self.cloud.server(plan.nova.server_id)
        with self._lock:
            end = self._ends.get(plan.nova.server_id, End(None))
        return ServerState(s.host, s.status, s.task_state, end.status, end.reason, end.refused)
