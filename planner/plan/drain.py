"""Drain a host: a destination for every running guest, in waves, never over-booking.

Pure: the hosts' state (``planner.model.Host``, read fresh by the caller), the
pre-flight (the rules of ``migplan check``) and the migration of one guest are
all passed in.

Capacity is tracked as guests are assigned: every assignment is *booked* on a
copy of its destination (the guest joins the destination's running guests, its
memory leaves the destination's free memory, its huge pages leave the cells'
free pages), so the next guest is judged by the same rules against what will be
left -- memory, the vCPU allocation ratio, pinned CPUs and huge pages are never
promised twice.

Guests are placed largest first (memory, then vCPUs: first-fit decreasing packs
best) on the feasible destination with the most free memory left (spreading,
like Nova's default RAM weigher), ties by host name.

Transient guests: the migration persists every guest on its destination
(VIR_MIGRATE_PERSIST_DEST), so a transient guest comes out of a drain defined
on its new host.  That is deliberate -- the drained host is going away for
maintenance, and a guest that would vanish at the next destination restart is
what an operator least expects -- and it is what ``verify`` checks for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from planner.assess.verdict import Status, Verdict
from planner.errors import UsageError
from planner.model import Domain, Host, NumaCell, PageSize
from planner.plan.migration import MIGRATABLE_STATES, Preflight, name_taken, nova_managed

Verdicts = tuple[Verdict, ...]


@dataclass(frozen=True)
class Assignment:
    guest: str
    destination: str
    wave: int  # 1-based
    memory_kib: int
    vcpus: int
    transient: bool
    reasons: Verdicts  # the destination's verdicts that are not plain ok (warnings)


@dataclass(frozen=True)
class Stuck:
    guest: str
    reasons: tuple[tuple[str, Verdicts], ...]  # (destination, refusing verdicts)


@dataclass(frozen=True)
class Skipped:
    """A guest left out whatever the destination (e.g. a Nova server in ERROR)."""

    guest: str
    server: str | None  # its Nova server's name, when it has one
    reasons: Verdicts


@dataclass(frozen=True)
class DrainPlan:
    host: str
    max_parallel: int
    assignments: tuple[Assignment, ...]
    stuck: tuple[Stuck, ...]
    not_running: tuple[tuple[str, str], ...]  # (guest, state): stay defined on the host
    skipped: tuple[Skipped, ...] = ()

    @property
    def waves(self) -> list[list[Assignment]]:
        out: list[list[Assignment]] = []
        for a in self.assignments:
            while len(out) < a.wave:
                out.append([])
            out[a.wave - 1].append(a)
        return out

    @property
    def complete(self) -> bool:
        return not self.stuck and not self.skipped

    def to_json(self) -> dict[str, Any]:
        def verdicts(vs: Verdicts) -> list[dict[str, str]]:
            return [v.to_json() for v in vs]

        return {
            "host": self.host,
            "max_parallel": self.max_parallel,
            "waves": [[{"guest": a.guest, "destination": a.destination,
                        "memory_kib": a.memory_kib, "vcpus": a.vcpus,
                        "transient": a.transient, "reasons": verdicts(a.reasons)}
                       for a in wave] for wave in self.waves],
            "cannot_move": [{"guest": s.guest,
                             "reasons": {d: verdicts(vs) for d, vs in s.reasons}}
                            for s in self.stuck],
            "not_running": [{"guest": g, "state": st} for g, st in self.not_running],
            "skipped": [{"guest": s.guest, "server": s.server, "reasons": verdicts(s.reasons)}
                        for s in self.skipped],
        }


def book(dst: Host, g: Domain) -> Host:
    """``dst`` as it will be once ``g`` runs there (for the next guest's pre-flight)."""
    moved = dataclasses.replace(g, host=dst.name, state="running")
    free = dst.free_memory_kib
    cells = dst.cells
    if g.hugepages_kib:
        cells = _take_pages(cells, g)
    elif free is not None:
        free -= g.memory_kib
        cells = _take_memory(cells, g.memory_kib)
    return dataclasses.replace(dst, domains=(*dst.domains, moved), free_memory_kib=free,
                               cells=cells)


def _take_memory(cells: tuple[NumaCell, ...], kib: int) -> tuple[NumaCell, ...]:
    """Take ``kib`` of free memory from the cells, roomiest first (the kernel spreads too)."""
    out = list(cells)
    for i in sorted(range(len(out)), key=lambda i: -(out[i].free_kib or 0)):
        c = out[i]
        if c.free_kib is None or kib <= 0:
            continue
        take = min(kib, c.free_kib)
        out[i] = dataclasses.replace(c, free_kib=c.free_kib - take)
        kib -= take
    return tuple(out)


def _take_pages(cells: tuple[NumaCell, ...], g: Domain) -> tuple[NumaCell, ...]:
    size = g.hugepages_kib[0]
    if not size:  # <hugepages/>: the host's default huge page size
        sizes = sorted({p.size_kib for c in cells for p in c.pages if p.size_kib > 4})
        size = sizes[0] if sizes else 2048
    need = -(-g.memory_kib // size)
    out = list(cells)
    order = sorted(range(len(out)), key=lambda i: -_free_pages(out[i], size))
    if g.numatune_nodes and g.numatune_mode in ("strict", "restrictive"):
        order = [i for i in order if out[i].id in g.numatune_nodes]
    for i in order:
        have = _free_pages(out[i], size)
        take = min(need, have)
        if take <= 0:
            continue
        pages = tuple(PageSize(p.size_kib, p.total, (p.free or 0) - take) if p.size_kib == size
                      else p for p in out[i].pages)
        out[i] = dataclasses.replace(out[i], pages=pages)
        need -= take
    return tuple(out)


def _free_pages(c: NumaCell, size: int) -> int:
    return next((p.free or 0 for p in c.pages if p.size_kib == size), 0)


#: ``skip(guest)`` -> the verdicts that keep a guest where it is whatever the destination
#: (empty: place it).
Skip = Callable[[Domain], Verdicts]


def plan_drain(host: str, hosts: Mapping[str, Host], preflight: Preflight,
               max_parallel: int = 2, skip: Skip | None = None) -> DrainPlan:
    """A destination for every running guest of ``host`` among the other ``hosts``;
    guests ``skip`` refuses stay, with its reasons."""
    if max_parallel < 1:
        raise UsageError("--max-parallel must be at least 1")
    if host not in hosts:
        raise UsageError(f"unknown host {host!r} (known hosts: {', '.join(hosts)})")
    src = hosts[host]
    state = {n: h for n, h in sorted(hosts.items()) if n != host}
    if not state:
        raise UsageError(f"no other host to drain {host} to: name more hosts")
    running = [g for g in src.domains if g.state in MIGRATABLE_STATES]
    not_running = tuple((g.name, g.state) for g in src.domains if g.state not in MIGRATABLE_STATES)
    running.sort(key=lambda g: (-g.memory_kib, -g.vcpus, g.name))
    assignments: list[Assignment] = []
    stuck: list[Stuck] = []
    skipped: list[Skipped] = []
    for g in running:
        refusal = skip(g) if skip is not None else ()
        if refusal:
            skipped.append(Skipped(g.name, g.nova.name if g.nova else None, refusal))
            continue
        feasible: list[tuple[str, Verdicts]] = []
        refused: list[tuple[str, Verdicts]] = []
        for name, dst in state.items():
            vs = tuple(preflight(g, src, dst))
            if any(d.name == g.name for d in dst.domains):
                vs = (name_taken(name, g.name), *vs)
            bad = tuple(v for v in vs if not v.feasible)
            if bad:
                refused.append((name, bad))
            else:
                feasible.append((name, tuple(v for v in vs if v.status != Status.OK)))
        if not feasible:
            stuck.append(Stuck(g.name, tuple(refused)))
            continue
        name, reasons = min(feasible, key=lambda f: (-(state[f[0]].free_memory_kib or 0), f[0]))
        state[name] = book(state[name], g)
        assignments.append(Assignment(g.name, name, len(assignments) // max_parallel + 1,
                                      g.memory_kib, g.vcpus, g.persistent is False, reasons))
    return DrainPlan(host, max_parallel, tuple(assignments), tuple(stuck), not_running,
                     tuple(skipped))


def libvirt_skip(host: str, force_libvirt: bool) -> Skip:
    """A libvirt drain skips the guests Nova manages (unless ``force_libvirt``)."""
    def skip(g: Domain) -> Verdicts:
        v = None if force_libvirt else nova_managed(g, host)
        return (v,) if v is not None else ()

    return skip
