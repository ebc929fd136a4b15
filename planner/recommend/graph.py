"""The feasibility graph: which hosts can take which guests, with the verdicts on the edges.

Scale: hosts are grouped into *host classes* (identical CPU, platform and
versions: everything the per-class rules read) and guests into *guest shapes*
(identical CPU, arch, domain type, machine, TSC and source class).  The graph's
nodes are classes and shapes, so a 10,000-host, 100,000-guest cluster with a
handful of CPUs yields a graph of a few hundred nodes:

- ``("class", id) -> ("class", id)``: could a guest started under the
  recommended CPU settings on a host of the source class run on a host of
  the destination class (a self-edge: between two hosts of one class);
- ``("shape", id) -> ("class", id)``: the class rules for those guests.

Per-guest answers (guest-only rules such as local storage and host
devices, and capacity on the roomiest hosts of each class) are in
``Analysis.guests``; ``host_pairs`` and ``assess`` give full per-host detail
on request.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from planner.assess.rules import (
    BLOCKED,
    CAPACITY_RULES,
    CLASS_RULES,
    GUEST_RULES,
    OK,
    Assessment,
    Policy,
    assess,
    parse_version,
)
from planner.assess.verdict import FEASIBLE, SEVERITY, Status, Verdict, worst
from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef
from planner.model import Domain, Host, Inventory
from planner.recommend.cpu_config import Recommendation, cpu_key

#: Capacity is checked on at most this many of the roomiest hosts per class.
CAPACITY_CANDIDATES = 3


@dataclass(frozen=True)
class HostClass:
    id: str
    hosts: tuple[str, ...]
    rep: Host  # a representative host: every class rule answers the same for all members
    cpu_model: str | None


@dataclass(frozen=True)
class GuestResult:
    guest: str
    source: str
    shape: str
    status: str  # best verdict over all destinations
    feasible_classes: tuple[str, ...]
    destinations: tuple[str, ...]  # a feasible host per feasible class (the roomiest)
    reasons: tuple[Verdict, ...]  # guest rules, plus why each class is refused
    #: per destination class: (class id, verdict, a host that fits or None)
    per_class: tuple[tuple[str, str, str | None], ...] = ()
    #: ``reasons`` ends with this tuple, shared by every guest of one shape and
    #: size (the report encodes it once); not part of the answer's value.
    shared_reasons: tuple[Verdict, ...] = field(default=(), compare=False, repr=False)
    #: per destination class not feasible: (class id, why not) -- shared like shared_reasons
    why: tuple[tuple[str, tuple[Verdict, ...]], ...] = field(default=(), repr=False)


@dataclass
class Analysis:
    graph: Any  # nx.DiGraph
    classes: dict[str, HostClass]
    host_class: dict[str, str]  # host -> class id
    guests: list[GuestResult] = field(default_factory=list)
    domains: list[tuple[str, ...]] = field(default_factory=list)  # hosts per migration domain
    one_way: list[tuple[str, str]] = field(default_factory=list)  # (class, class)
    stranded: list[str] = field(default_factory=list)

    def class_edge(self, src: str, dst: str) -> Assessment:
        a: Assessment = self.graph.edges[("class", src), ("class", dst)]["assessment"]
        return a


def _machine_key(m: str) -> tuple[int, ...]:
    v = parse_version(m.rsplit("-", 1)[-1]) if "-" in m else None
    return v or ()


def _platform_key(h: Host) -> tuple[object, ...]:
    return (cpu_key(h), h.arch, h.hypervisor, h.domain_types, h.machine_types, h.libvirt_version,
            h.qemu_version, h.tsc_frequency, h.tsc_scaling)


def host_classes(hosts: Sequence[Host]) -> list[HostClass]:
    groups: dict[tuple[object, ...], list[Host]] = {}
    for h in hosts:
        groups.setdefault(_platform_key(h), []).append(h)
    return [HostClass(f"c{i}", tuple(h.name for h in m), m[0], m[0].cpu.model)
            for i, m in enumerate(groups.values(), start=1)]


def probe_guest(src: Host, rec: Recommendation | None) -> Domain:
    """A new guest started on ``src`` under the recommended CPU settings."""
    if rec is None or rec.cpu_mode == "host-passthrough" or rec.guest_cpu is None:
        cpu: CpuDef | None = CpuDef(type="guest", mode="host-passthrough") if rec else None
    else:
        cpu = rec.guest_cpu
    machine = None
    if src.machine_types:
        # QEMU's default for new guests: its newest q35 (or pc) machine.
        for prefix in ("pc-q35-", "pc-i440fx-"):
            ms = [m for m in src.machine_types if m.startswith(prefix)]
            if ms:
                machine = max(ms, key=_machine_key)
                break
    return Domain(name="a new guest", uuid=None, state="running", persistent=True,
                  memory_kib=0, vcpus=1, cpu=cpu, machine=machine, arch=src.arch,
                  domain_type="kvm", host=src.name)  # Nova virt_type=kvm


def _shape_key(g: Domain, src_class: str) -> tuple[object, ...]:
    return (g.cpu, g.arch, g.domain_type, g.machine, g.tsc_frequency, src_class)


def _capacity_key(g: Domain) -> tuple[object, ...]:
    return (g.memory_kib, g.vcpus, g.vcpupin, g.emulatorpin, g.numatune_mode, g.numatune_nodes,
            g.vnuma_cells, g.hugepages_kib)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector off for a while (restored as it was).

    analyze() allocates a few objects per guest and frees none of them: on
    100,000 guests the collector's full passes rescanned them again and again
    (about 1 s of a 2.7 s analysis), for no garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def analyze(inv: Inventory, recs: Mapping[str, Recommendation], cat: Catalog,
            policy: Policy | None = None) -> Analysis:
    """Build the graph and the per-guest answers.  ``recs`` maps host -> its recommendation."""
    with _gc_paused():
        return _analyze(inv, recs, cat, policy)


def _analyze(inv: Inventory, recs: Mapping[str, Recommendation], cat: Catalog,
             policy: Policy | None) -> Analysis:
    policy = policy or Policy()
    hosts = {h.name: h for h in inv.hosts}
    classes = host_classes(inv.hosts)
    by_id = {c.id: c for c in classes}
    host_class = {h: c.id for c in classes for h in c.hosts}
    g = nx.DiGraph()
    for c in classes:
        g.add_node(("class", c.id), kind="host-class", hosts=c.hosts, cpu_model=c.cpu_model)

    # Host class -> host class under the recommended CPU settings.
    for a in classes:
        probe = probe_guest(a.rep, recs.get(a.rep.name))
        for b in classes:
            if a is b and len(a.hosts) < 2:
                continue
            verdicts = tuple(rule(probe, a.rep, b.rep, policy, cat) for rule in CLASS_RULES)
            # The probe lives in one aggregate: hosts of another aggregate only
            # take it when both recommend the same CPU.
            ra, rb = recs.get(a.rep.name), recs.get(b.rep.name)
            if ra is not None and rb is not None and ra.scope != rb.scope:
                verdicts += (_aggregate_verdict(ra, rb),)
            asm = Assessment(None, a.id, b.id, verdicts)
            g.add_edge(("class", a.id), ("class", b.id), assessment=asm, verdict=asm.status,
                       reasons=[(v.code, v.message) for v in asm.reasons()])

    an = Analysis(g, by_id, host_class)
    an.domains = _domains(an)
    an.one_way = _one_way(an)

    # Roomiest hosts first: if they cannot take a guest, smaller ones will not.
    ranked = {c.id: sorted((hosts[n] for n in c.hosts),
                           key=lambda h: -(h.free_memory_kib or 0)) for c in classes}
    shapes: dict[tuple[object, ...], str] = {}
    shape_edges: dict[tuple[str, str], Assessment] = {}
    cap_cache: dict[tuple[tuple[object, ...], str], tuple[Verdict, ...]] = {}
    out_cache: dict[tuple[object, ...], _Outcome] = {}
    part_cache: dict[tuple[object, ...], _ClassPart] = {}
    near = frozenset(h.name for hs in ranked.values() for h in hs[:CAPACITY_CANDIDATES + 1])
    # hosts sharing a host UUID never take each other's guests: their answers are their own
    uuids = Counter(h.host_uuid for h in inv.hosts if h.host_uuid)
    twins = {u for u, n in uuids.items() if n > 1}
    near |= {h.name for h in inv.hosts if h.host_uuid in twins}
    for src in inv.hosts:
        scls = host_class[src.name]
        for dom in src.domains:
            key = _shape_key(dom, scls)
            sid = shapes.get(key)
            if sid is None:
                sid = shapes[key] = f"s{len(shapes) + 1}"
                g.add_node(("shape", sid), kind="guest-shape", guests=[], source_class=scls)
                for c in classes:
                    vs = tuple(rule(dom, src, c.rep, policy, cat) for rule in CLASS_RULES)
                    asm = Assessment(None, scls, c.id, vs)
                    shape_edges[(sid, c.id)] = asm
                    g.add_edge(("shape", sid), ("class", c.id), assessment=asm,
                               verdict=asm.status,
                               reasons=[(v.code, v.message) for v in asm.reasons()])
            g.nodes[("shape", sid)]["guests"].append(dom.name)
            an.guests.append(_guest_result(dom, src, sid, classes, ranked, shape_edges,
                                           cap_cache, out_cache, policy, cat, near,
                                           part_cache))
    an.stranded = [r.guest for r in an.guests if not r.feasible_classes]
    return an


def _aggregate_verdict(ra: Recommendation, rb: Recommendation) -> Verdict:
    same = (ra.cpu_mode, ra.cpu_models[:1], ra.cpu_model_extra_flags) == \
        (rb.cpu_mode, rb.cpu_models[:1], rb.cpu_model_extra_flags)
    if same:
        return Verdict("aggregate", OK, "aggregate.same-cpu", "both aggregates use the same CPU")
    return Verdict("aggregate", Status.WARN, "aggregate.other",
                   f"moves from aggregate {ra.scope} to {rb.scope}, which recommends another "
                   "CPU: checked above by libvirt's compare")


@dataclass(frozen=True)
class _Outcome:
    """A guest shape and capacity against one destination class (shared by many guests)."""

    status: Status
    host: str | None
    blocking: tuple[Verdict, ...]  # why not feasible (empty when feasible)


def _class_outcome(dom: Domain, src: Host, edge: Assessment, hosts: Sequence[Host],
                   cap_cache: dict[tuple[tuple[object, ...], str], tuple[Verdict, ...]],
                   ckey: tuple[object, ...], policy: Policy, cat: Catalog) -> _Outcome:
    if not edge.feasible:
        return _Outcome(edge.status, None, tuple(v for v in edge.reasons() if not v.feasible))
    last: tuple[Verdict, ...] = ()
    checked = 0
    for h in hosts:
        if h.name == src.name or (h.host_uuid is not None and h.host_uuid == src.host_uuid):
            continue  # the source itself (libvirt refuses a host of the source's UUID)
        if checked >= CAPACITY_CANDIDATES:
            break
        checked += 1
        cap = cap_cache.get((ckey, h.name))
        if cap is None:
            cap = cap_cache[(ckey, h.name)] = tuple(rule(dom, src, h, policy, cat)
                                                    for rule in CAPACITY_RULES)
        status = worst((*edge.verdicts, *cap))
        if status in FEASIBLE:
            return _Outcome(status, h.name, ())
        last = cap
    if not last:
        return _Outcome(BLOCKED, None, ())
    return _Outcome(worst(last), None, tuple(v for v in last if not v.feasible))


@dataclass(frozen=True)
class _ClassPart:
    """The destination-class part of a guest's answer, shared by guests of one shape and size."""

    best: str
    feasible: tuple[str, ...]
    dests: tuple[str, ...]
    blocking: tuple[Verdict, ...]  # deduplicated, in class order
    any_blocking: bool
    per_class: tuple[tuple[str, str, str | None], ...]
    why: tuple[tuple[str, tuple[Verdict, ...]], ...] = ()  # per class not feasible


def _guest_result(dom: Domain, src: Host, sid: str, classes: Sequence[HostClass],
                  ranked: Mapping[str, Sequence[Host]],
                  shape_edges: Mapping[tuple[str, str], Assessment],
                  cap_cache: dict[tuple[tuple[object, ...], str], tuple[Verdict, ...]],
                  out_cache: dict[tuple[object, ...], _Outcome],
                  policy: Policy, cat: Catalog,
                  near: frozenset[str] = frozenset(),
                  part_cache: dict[tuple[object, ...], _ClassPart] | None = None) -> GuestResult:
    """One guest's answer: its own rules, then the shape and capacity against each class.

    ``near``: hosts among the capacity candidates of some class; the class part
    of the answer is the same for every guest of one shape, size and own
    status, unless the guest's own host is one of them.
    """
    own = tuple(rule(dom, src, src, policy, cat) for rule in GUEST_RULES)
    own_status = worst(own)
    own_reasons = [v for v in own if v.status != OK]
    ckey = _capacity_key(dom)
    pkey = (sid, ckey, src.name if src.name in near else None, own_status)
    part = part_cache.get(pkey) if part_cache is not None else None
    if part is None:
        part = _class_part(dom, src, sid, classes, ranked, shape_edges, cap_cache, out_cache,
                           ckey, own_status, policy, cat)
        if part_cache is not None:
            part_cache[pkey] = part
    best = part.best
    # Guest rules' codes never occur among class or capacity rules' codes, so
    # own + blocking needs no further deduplication.
    reasons = (*own_reasons, *part.blocking)
    shared = part.blocking
    if own_status not in FEASIBLE:
        best = own_status
    elif not part.feasible and not part.any_blocking:
        reasons += (Verdict("destination", BLOCKED, "destination.none",
                            f"no other host to move {dom.name} to"),)
        shared = ()
    return GuestResult(dom.name, src.name, sid, best, part.feasible, part.dests,
                       reasons, part.per_class, shared, part.why)


def _class_part(dom: Domain, src: Host, sid: str, classes: Sequence[HostClass],
                ranked: Mapping[str, Sequence[Host]],
                shape_edges: Mapping[tuple[str, str], Assessment],
                cap_cache: dict[tuple[tuple[object, ...], str], tuple[Verdict, ...]],
                out_cache: dict[tuple[object, ...], _Outcome], ckey: tuple[object, ...],
                own_status: Status, policy: Policy, cat: Catalog) -> _ClassPart:
    feasible: list[str] = []
    dests: list[str] = []
    blocking: list[Verdict] = []
    best = BLOCKED
    per_class: list[tuple[str, str, str | None]] = []
    why: list[tuple[str, tuple[Verdict, ...]]] = []
    for c in classes:
        hosts = ranked[c.id]
        # The outcome is the same for every guest of this shape and size, unless
        # the guest's own host is among the candidates checked.
        near = any(h.name == src.name or (src.host_uuid is not None
                                          and h.host_uuid == src.host_uuid)
                   for h in hosts[:CAPACITY_CANDIDATES + 1])
        key = (sid, c.id, ckey, src.name if near else None)
        o = out_cache.get(key)
        if o is None:
            o = out_cache[key] = _class_outcome(dom, src, shape_edges[(sid, c.id)], hosts,
                                                cap_cache, ckey, policy, cat)
        status = o.status if SEVERITY[o.status] >= SEVERITY[own_status] else own_status
        per_class.append((c.id, status, o.host))
        best = _better(best, status)
        blocking.extend(o.blocking)
        if o.host is not None and status in FEASIBLE:
            feasible.append(c.id)
            dests.append(o.host)
        elif o.blocking:
            why.append((c.id, o.blocking))
    return _ClassPart(best, tuple(feasible), tuple(dests), tuple(_dedupe(blocking)),
                      bool(blocking), tuple(per_class), tuple(why))


def _better(a: Status, b: Status) -> Status:
    return a if SEVERITY[a] <= SEVERITY[b] else b


def _dedupe(vs: Sequence[Verdict]) -> list[Verdict]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in vs:
        if (v.code, v.message) not in seen:
            seen.add((v.code, v.message))
            out.append(v)
    return out


def _feasible(an: Analysis, a: str, b: str) -> bool:
    e = an.graph.get_edge_data(("class", a), ("class", b))
    return e is not None and e["verdict"] in FEASIBLE


def _domains(an: Analysis) -> list[tuple[str, ...]]:
    """Groups of hosts among which every host can take guests from every other, directly."""
    ids = list(an.classes)
    mutual = nx.Graph()
    for a in ids:
        c = an.classes[a]
        if len(c.hosts) < 2 or _feasible(an, a, a):
            mutual.add_node(a)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if a in mutual and b in mutual and _feasible(an, a, b) and _feasible(an, b, a):
                mutual.add_edge(a, b)
    out: list[tuple[str, ...]] = []
    left = set(mutual.nodes)
    while left:
        # Largest clique first: "everything can move" means every pair, not a path.
        sub = mutual.subgraph(left)
        clique = max(nx.find_cliques(sub), key=lambda q: (sum(len(an.classes[x].hosts) for x in q),
                                                          sorted(q)))
        out.append(tuple(h for x in sorted(clique, key=ids.index) for h in an.classes[x].hosts))
        left -= set(clique)
    # Hosts of a class whose members cannot exchange guests are domains of one host each.
    for a in ids:
        if a not in mutual:
            out.extend((h,) for h in an.classes[a].hosts)
    out.sort(key=lambda d: (-len(d), d))
    return out


def _one_way(an: Analysis) -> list[tuple[str, str]]:
    ids = list(an.classes)
    out = []
    for a in ids:
        for b in ids:
            if a != b and _feasible(an, a, b) and not _feasible(an, b, a):
                out.append((a, b))
    return out


def host_pairs(an: Analysis) -> list[tuple[str, str, Assessment]]:
    """Every ordered host pair with its class edge's verdict (small inventories only)."""
    out = []
    for a in an.classes.values():
        for b in an.classes.values():
            if not an.graph.has_edge(("class", a.id), ("class", b.id)):
                continue
            asm = an.class_edge(a.id, b.id)
            for s in a.hosts:
                for d in b.hosts:
                    if s != d:
                        out.append((s, d, Assessment(None, s, d, asm.verdicts)))
    return out


def host_graph(an: Analysis) -> Any:
    """A host-level nx.DiGraph (host -> host, verdicts on edges) expanded from the classes.

    Its size is hosts squared: for notebooks on small and mid-size clusters.
    """
    hg = nx.DiGraph()
    for c in an.classes.values():
        hg.add_nodes_from(c.hosts, host_class=c.id, cpu_model=c.cpu_model)
    for s, d, asm in host_pairs(an):
        hg.add_edge(s, d, verdict=asm.status, assessment=asm,
                    reasons=[(v.code, v.message) for v in asm.reasons()])
    return hg


def guest_moves(inv: Inventory, policy: Policy, cat: Catalog) -> list[Assessment]:
    """Every guest against every other host, all rules, exactly (small inventories only)."""
    out = []
    for src in inv.hosts:
        for dom in src.domains:
            for dst in inv.hosts:
                if dst.name != src.name:
                    out.append(assess(dom, src, dst, policy, cat))
    return out
