"""Analysis API for notebooks and the HTML capacity review: the model as pandas DataFrames.

Everything here reads what the rest of migplan already computed: the
inventory (``planner.snapshot.read.load``), the recommendation and the
feasibility graph (``planner.review.report.build_report``, which runs
``planner.recommend.cpu_config`` and ``planner.recommend.graph``).  Verdicts are taken from the
graph's edges, never recomputed.  The one new computation is capacity per
candidate CPU model, done with the CPU engine's ``compare`` (libvirt's rules)
or the hosts' domcapabilities ``usable`` flags.

pandas is imported here, outside the pure core; CLI commands other than
``migplan report`` never import this module (the CLI registry is lazy).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from planner.adapters.catalogs import catalog_for_hosts
from planner.assess.rules import (  # disk_locality: re-exported for the notebooks
    Policy,
    disk_locality,
)
from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef
from planner.cpu.engine import compare, cpu_mask
from planner.errors import InputError
from planner.model import Host, Inventory
from planner.recommend.cpu_config import Recommendation, catalog_gap, cpu_key
from planner.recommend.graph import Analysis, host_graph
from planner.review.report import Report, build_report
from planner.snapshot.read import load

KIB_PER_GIB = 1024 * 1024
#: Verdicts in heatmap order (0 best .. 3 worst); "-" is a host against itself.
VERDICT_ORDER = ("ok", "warn", "unknown", "blocked")

__all__ = [
    "VERDICT_ORDER",
    "WhatIfResult",
    "capacity_by_model",
    "class_label",
    "disk_locality",
    "feasibility_matrix",
    "feature_matrix",
    "guest_feasibility",
    "generation",
    "guests_frame",
    "host_classes_frame",
    "hosts_frame",
    "load_report",
    "migration_domains",
    "new_hosts",
    "recommendations_frame",
    "resolve_snapshot",
    "verdict_codes",
    "what_if",
]


# --- loading ------------------------------------------------------------------------------------


def resolve_snapshot(snapshot: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                     default: str = "modern-mixed-fleet") -> Path:
    """The snapshot directory to review.

    Order: ``snapshot`` if given, else ``$MIGPLAN_SNAPSHOT``, else the fixture
    ``default``.  A relative path is tried as given, then against the repository
    root and its ``fixtures/`` directory, so notebooks work from any directory.
    """
    env = os.environ if env is None else env
    chosen = str(snapshot) if snapshot else (env.get("MIGPLAN_SNAPSHOT") or default)
    p = Path(chosen).expanduser()
    if p.is_dir():
        return p.resolve()
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo / chosen, repo / "fixtures" / chosen):
        if cand.is_dir():
            return cand.resolve()
    raise InputError(f"{chosen}: no such snapshot directory (tried it as given, under {repo} "
                     f"and under {repo / 'fixtures'})")


def load_report(snapshot: str | Path | Inventory, cat: Catalog | None = None,
                policy: Policy | None = None, groups: dict[str, str] | None = None) -> Report:
    """Load a snapshot (or take an Inventory) and run recommend + the feasibility graph."""
    inv = snapshot if isinstance(snapshot, Inventory) else load(snapshot)
    return build_report(inv, cat, policy, groups)


# --- hosts and guests ---------------------------------------------------------------------------


def _page_label(size_kib: int) -> str:
    if size_kib >= KIB_PER_GIB and size_kib % KIB_PER_GIB == 0:
        return f"{size_kib // KIB_PER_GIB}G"
    if size_kib >= 1024 and size_kib % 1024 == 0:
        return f"{size_kib // 1024}M"
    return f"{size_kib}K"


_VARIANT = re.compile(r"-(noTSX|IBRS|IBPB|v\d+)", re.IGNORECASE)


def generation(model: str | None) -> str | None:
    """A CPU model's generation: the model name without its variant suffixes.

    libvirt names variants of one generation by suffix (``Broadwell-noTSX-IBRS``,
    ``Cascadelake-Server-noTSX``, ``EPYC-Rome-v2``): they are the same silicon
    with microcode or mitigations switched.
    """
    if model is None:
        return None
    return _VARIANT.sub("", model)


def _gib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / KIB_PER_GIB, 2)


def hosts_frame(inv: Inventory, rep: Report | None = None) -> pd.DataFrame:
    """One row per host, indexed by host name.

    Columns: cpu_model, vendor, generation, family, model_number, stepping,
    cpus (logical CPUs), cores (physical: cpus / threads per core), memory_gib, free_memory_gib, numa_cells, guests, libvirt, qemu,
    hugepages_<size>_total / _free per huge page size found (summed over NUMA
    cells; None when the snapshot lacks free pages), and with ``rep`` the
    recommendation's scope, cpu_class and features_lost.
    """
    sizes = sorted({p.size_kib for h in inv.hosts for c in h.cells for p in c.pages
                    if p.size_kib > 4})
    costs = {c.host: (r.scope, c.cpu_class, c.features_lost)
             for r in (rep.recs if rep else ()) for c in r.costs}
    rows = []
    for h in inv.hosts:
        sig = h.cpu.signature
        topo = h.cpu.topology
        row: dict[str, object] = {
            "host": h.name, "cpu_model": h.cpu.model, "vendor": h.cpu.vendor,
            "generation": generation(h.cpu.model),
            "family": sig[0] if sig else None, "model_number": sig[1] if sig else None,
            "stepping": sig[2] if sig else None,
            "cpus": h.cpus_total,
            # libvirt's <topology> counts per NUMA cell; threads per core is what divides.
            "cores": h.cpus_total // topo[3] if topo and topo[3] and h.cpus_total else None,
            "memory_gib": _gib(h.memory_kib), "free_memory_gib": _gib(h.free_memory_kib),
            "numa_cells": len(h.cells), "guests": len(h.domains),
            "libvirt": h.libvirt_version, "qemu": h.qemu_version,
        }
        for s in sizes:
            pages = [p for c in h.cells for p in c.pages if p.size_kib == s]
            lab = _page_label(s)
            tot = [p.total for p in pages]
            free = [p.free for p in pages]
            row[f"hugepages_{lab}_total"] = (sum(t for t in tot if t is not None)
                                             if pages and None not in tot else None)
            row[f"hugepages_{lab}_free"] = (sum(f for f in free if f is not None)
                                            if pages and None not in free else None)
        if rep is not None:
            scope, klass, lost = costs.get(h.name, (None, None, ()))
            row["scope"] = scope
            row["cpu_class"] = klass
            row["features_lost"] = len(lost)
        rows.append(row)
    return pd.DataFrame(rows).set_index("host")


def guests_frame(inv: Inventory, rep: Report | None = None) -> pd.DataFrame:
    """One row per guest (index: guest name; guest names may repeat across hosts).

    Columns: host, state, vcpus, memory_gib, cpu_mode, cpu_model, pinned
    (vcpupin or emulatorpin), hugepages (backed by huge pages), numa_cells
    (guest NUMA cells), disks_local, disks_shared, disks_unknown, hostdevs,
    hostdev_kinds, and with ``rep`` the verdict (best over all destinations),
    feasible_classes and shape from the feasibility graph.
    """
    verdicts = {(g.source, g.guest): g for g in rep.analysis.guests} if rep else {}
    rows = []
    for h in inv.hosts:
        for d in h.domains:
            loc = [disk_locality(k, h) for k in d.disks
                   if not (k.device == "cdrom" and k.source is None)]
            cpu = d.cpu
            row: dict[str, object] = {
                "guest": d.name, "host": h.name, "state": d.state, "vcpus": d.vcpus,
                "memory_gib": _gib(d.memory_kib),
                "cpu_mode": (cpu.mode or "custom") if cpu else None,
                "cpu_model": cpu.model if cpu else None,
                "pinned": bool(d.vcpupin or d.emulatorpin),
                "hugepages": bool(d.hugepages_kib),
                "numa_cells": len(d.vnuma_cells),
                "disks_local": sum(1 for x in loc if x is True),
                "disks_shared": sum(1 for x in loc if x is False),
                "disks_unknown": sum(1 for x in loc if x is None),
                "hostdevs": len(d.hostdevs),
                "hostdev_kinds": ", ".join(sorted({x.kind for x in d.hostdevs})),
            }
            g = verdicts.get((h.name, d.name))
            if rep is not None:
                row["verdict"] = g.status if g else None
                row["feasible_classes"] = len(g.feasible_classes) if g else None
                row["shape"] = g.shape if g else None
            rows.append(row)
    cols = ["guest", "host", "state", "vcpus", "memory_gib", "cpu_mode", "cpu_model", "pinned",
            "hugepages", "numa_cells", "disks_local", "disks_shared", "disks_unknown",
            "hostdevs", "hostdev_kinds"] + (["verdict", "feasible_classes", "shape"] if rep else [])
    return pd.DataFrame(rows, columns=cols).set_index("guest")


# --- CPU features ---------------------------------------------------------------------------------


def _offer(h: Host) -> CpuDef:
    """What a host offers guests: domcapabilities host-model when collected, else its CPU."""
    return h.host_model if h.host_model is not None else h.cpu


def feature_matrix(inv: Inventory, cat: Catalog | None = None, *, offered: bool = False,
                   varying_only: bool = False, by: str = "host") -> pd.DataFrame:
    """Host x CPU feature (bool): does the host CPU have the feature (model bits included).

    ``offered=True`` uses what QEMU/KVM can give guests (domcapabilities
    host-model) where the snapshot has it.  ``varying_only`` keeps the features
    some hosts have and others lack: the ones that decide migrations.  Columns
    follow the catalog's feature order.  ``by="cpu"``: one row per distinct
    CPU instead of per host (index "Model (N hosts)"), for large clusters.
    """
    cat = cat or catalog_for_hosts(inv.hosts)
    if by == "cpu":
        groups: dict[tuple[object, ...], list[Host]] = {}
        for h in inv.hosts:
            groups.setdefault(cpu_key(h), []).append(h)
        reps = [(f"{m[0].cpu.model or 'unknown'} ({len(m)} host{'s' if len(m) > 1 else ''}: "
                 f"{m[0].name}{', ...' if len(m) > 1 else ''})", m[0]) for m in groups.values()]
        name = "CPU"
    elif by == "host":
        reps = [(h.name, h) for h in inv.hosts]
        name = "host"
    else:
        raise ValueError(f"by must be 'host' or 'cpu', not {by!r}")
    # Hosts the catalog cannot describe (reported unknown by the recommendation) have no row.
    reps = [(lb, h) for lb, h in reps if catalog_gap(h, cat) is None]
    masks = [cpu_mask(_offer(h) if offered else h.cpu, cat) for _, h in reps]
    data = {f.name: [f.mask & ~m == 0 for m in masks] for f in cat.features}
    df = pd.DataFrame(data, index=pd.Index([lb for lb, _ in reps], name=name), dtype=bool)
    df = df.loc[:, df.any(axis=0)]
    if varying_only:
        df = df.loc[:, ~df.all(axis=0)]
    return df


def _guest_features(rec: Recommendation, inv: Inventory, cat: Catalog) -> set[str]:
    """Features a guest sees under a recommendation (passthrough: the hosts' own CPU)."""
    if rec.guest_cpu is not None:
        return set(cat.features_in(cpu_mask(rec.guest_cpu, cat)))
    host = inv.host(rec.hosts[0])
    return set(cat.features_in(cpu_mask(_offer(host), cat))) if host else set()


# --- recommendation, feasibility, domains -----------------------------------------------------


def recommendations_frame(rep: Report) -> pd.DataFrame:
    """One row per recommendation (aggregate or vendor): scope, hosts, cpu_mode, cpu_model,
    cpu_models, extra_flags, guest_features (how many features a guest sees)."""
    rows = [{"scope": r.scope, "hosts": len(r.hosts), "cpu_mode": r.cpu_mode,
             "cpu_model": r.cpu_models[0] if r.cpu_models else None,
             "cpu_models": ", ".join(r.cpu_models),
             "extra_flags": " ".join(r.cpu_model_extra_flags),
             "guest_features": len(_guest_features(r, rep.inv, rep.cat))} for r in rep.recs]
    return pd.DataFrame(rows).set_index("scope")


def feasibility_matrix(an: Analysis, hosts: Sequence[str] | None = None, *,
                       by: str = "host") -> pd.DataFrame:
    """Source host x destination host: the verdict of the graph's edge for a new guest
    started under the recommended CPU settings ("ok", "warn", "unknown", "blocked";
    "-" on the diagonal).  Read from ``planner.recommend.graph.host_graph``, not recomputed.

    ``by="class"``: host class x host class (``class_label``), the graph's own
    edges, bounded for any cluster size; "-" where a class of one host meets
    itself."""
    if by == "class":
        labels = {c: class_label(an, c) for c in an.classes}
        cm = pd.DataFrame("-", index=pd.Index(list(labels.values()), name="source class"),
                          columns=pd.Index(list(labels.values()), name="destination class"),
                          dtype=object)
        for a in an.classes:
            for b in an.classes:
                e = an.graph.get_edge_data(("class", a), ("class", b))
                if e is not None:
                    cm.loc[labels[a], labels[b]] = e["verdict"]
        return cm
    if by != "host":
        raise ValueError(f"by must be 'host' or 'class', not {by!r}")
    hg = host_graph(an)
    order = list(hosts) if hosts is not None else list(hg.nodes)
    df = pd.DataFrame("-", index=pd.Index(order, name="source"),
                      columns=pd.Index(order, name="destination"), dtype=object)
    for s, d, data in hg.edges(data=True):
        if s in df.index and d in df.columns:
            df.loc[s, d] = data["verdict"]
    return df


def verdict_codes(matrix: pd.DataFrame) -> pd.DataFrame:
    """A verdict matrix as numbers for a heatmap: VERDICT_ORDER index, NaN for "-"."""
    codes = {v: float(i) for i, v in enumerate(VERDICT_ORDER)}
    return matrix.apply(lambda col: col.map(lambda v: codes.get(v, float("nan")))).astype(float)


def class_label(an: Analysis, cid: str, limit: int = 3) -> str:
    """``c1: Haswell-noTSX-IBRS (cn01, cn02 +3)``: a host class for people."""
    c = an.classes[cid]
    more = f" +{len(c.hosts) - limit}" if len(c.hosts) > limit else ""
    return f"{cid}: {c.cpu_model or 'unknown CPU'} ({', '.join(c.hosts[:limit])}{more})"


def guest_feasibility(an: Analysis, *, labels: bool = False) -> pd.DataFrame:
    """Guest x host class: each guest's verdict per destination class, as the graph found it
    (CPU, platform and capacity on the roomiest hosts of the class).  Index: "host/guest";
    columns: class ids (``labels=True``: with CPU model and hosts, see ``class_label``).
    The source host's own class is judged on its other members."""
    cols = list(an.classes)
    rows = {f"{g.source}/{g.guest}": {c: s for c, s, _ in g.per_class} for g in an.guests}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols, dtype=object)
    if labels:
        df.columns = [class_label(an, c) for c in cols]
    df.index.name = "guest"
    df.columns.name = "host class"
    return df


def host_classes_frame(an: Analysis) -> pd.DataFrame:
    """One row per host class of the graph: cpu_model, hosts (count), members."""
    rows = [{"class": c.id, "cpu_model": c.cpu_model, "hosts": len(c.hosts),
             "members": ", ".join(c.hosts)} for c in an.classes.values()]
    return pd.DataFrame(rows).set_index("class")


def migration_domains(an: Analysis, inv: Inventory | None = None) -> pd.DataFrame:
    """One row per migration domain (hosts that can all exchange guests, both ways):
    hosts (count), members, and with ``inv`` cpus and memory_gib summed."""
    by = {h.name: h for h in inv.hosts} if inv else {}
    rows = []
    for i, dom in enumerate(an.domains, start=1):
        row: dict[str, object] = {"domain": i, "hosts": len(dom), "members": ", ".join(dom)}
        if inv is not None:
            row["cpus"] = sum(by[h].cpus_total or 0 for h in dom)
            row["memory_gib"] = round(sum(by[h].memory_kib or 0 for h in dom) / KIB_PER_GIB, 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index("domain")


# --- capacity per candidate CPU model ---------------------------------------------------------------


def _runs_model(h: Host, model: str, cat: Catalog) -> bool:
    """Can a guest with <cpu mode='custom' match='exact'><model>model</model> start on h?

    domcapabilities ``usable`` is libvirt's own answer for the host's QEMU/KVM;
    without it, libvirt's compare against the host CPU.
    """
    vendor = cat.model_by_name[model].vendor
    if vendor is not None and vendor != h.cpu.vendor:
        # QEMU marks other vendors' models usable, but neither Nova's recommendation nor
        # an operator would give guests an AMD model on Intel hosts (or the reverse).
        return False
    if h.usable_models is not None:
        return model in h.usable_models
    guest = CpuDef(type="guest", model=model, mode="custom", match="exact")
    return compare(h.cpu, guest, cat).compatible


def capacity_by_model(inv: Inventory, cat: Catalog | None = None,
                      rep: Report | None = None) -> pd.DataFrame:
    """For each catalog CPU model some host can run: the capacity a guest pinned to it reaches.

    Columns: vendor, features (how many the model has), hosts, cpus,
    memory_gib, free_memory_gib, all_hosts (every host runs it), recommended
    (it is a recommendation's cpu_models[0], with ``rep``).  Models of another
    vendor than the host's are not counted on it.  Sorted by hosts, then the
    richest model first (most features), so the first row of each host count is
    the best model reaching that many hosts.  Hosts with identical CPUs are
    compared once.
    """
    cat = cat or catalog_for_hosts(inv.hosts)
    groups: dict[tuple[object, ...], list[Host]] = {}
    for h in inv.hosts:
        # hosts the catalog cannot describe are reported unknown, not counted
        if h.cpu.model is not None and catalog_gap(h, cat) is None:
            groups.setdefault(cpu_key(h), []).append(h)
    chosen = {r.cpu_models[0] for r in rep.recs if r.cpu_models} if rep else set()
    rows = []
    for order, m in enumerate(cat.models):
        hosts = [h for members in groups.values() if _runs_model(members[0], m.name, cat)
                 for h in members]
        if not hosts:
            continue
        rows.append({
            "model": m.name, "vendor": m.vendor, "features": len(m.features),
            "hosts": len(hosts), "cpus": sum(h.cpus_total or 0 for h in hosts),
            "memory_gib": round(sum(h.memory_kib or 0 for h in hosts) / KIB_PER_GIB, 2),
            "free_memory_gib": round(sum(h.free_memory_kib or 0 for h in hosts) / KIB_PER_GIB, 2),
            "all_hosts": len(hosts) == len(inv.hosts), "recommended": m.name in chosen,
            "_order": order,
        })
    cols = ["model", "vendor", "features", "hosts", "cpus", "memory_gib", "free_memory_gib",
            "all_hosts", "recommended"]
    if not rows:
        return pd.DataFrame(columns=cols).set_index("model")
    df = pd.DataFrame(rows).sort_values(["hosts", "cpus", "features", "_order"],
                                         ascending=False)
    return df[cols].set_index("model")


# --- what-if ------------------------------------------------------------------------------------


def new_hosts(source: str | Path | Inventory, names: Iterable[str] | None = None, *,
              prefix: str = "new-", keep_guests: bool = False) -> list[Host]:
    """Hosts to add in a what-if, taken from another snapshot (or Inventory).

    Renamed ``prefix + name`` so they never collide with existing hosts; empty
    (no guests) unless ``keep_guests``: a new compute node starts empty.
    """
    inv = source if isinstance(source, Inventory) else load(source)
    wanted = list(names) if names is not None else [h.name for h in inv.hosts]
    out = []
    for n in wanted:
        h = inv.host(n)
        if h is None:
            raise InputError(f"{n}: no such host in {inv.source or 'the inventory'}")
        doms = tuple(dataclasses.replace(d, host=prefix + n) for d in h.domains) \
            if keep_guests else ()
        out.append(dataclasses.replace(h, name=prefix + n, domains=doms))
    return out


@dataclass(frozen=True)
class WhatIfResult:
    before: Report
    after: Report
    retired: tuple[str, ...]
    added: tuple[str, ...]
    #: per scope (aggregate / vendor): cpu_mode and model before and after,
    #: features gained and lost by guests
    changes: pd.DataFrame
    #: host pairs whose verdict changed, was added or removed: source,
    #: destination, before, after (None: the pair does not exist on that side)
    matrix_change: pd.DataFrame
    #: guests left without any feasible destination after the change
    stranded_after: tuple[str, ...]

    def gained(self, scope: str | None = None) -> list[str]:
        """Features guests gain (the largest scope by default)."""
        return list(self._row(scope)["gained"])

    def lost(self, scope: str | None = None) -> list[str]:
        return list(self._row(scope)["lost"])

    def _row(self, scope: str | None) -> pd.Series:
        if scope is None:
            return self.changes.iloc[0]
        return self.changes.loc[scope]


def what_if(rep: Report, retire: Iterable[str] = (), add: Iterable[Host] = ()) -> WhatIfResult:
    """Retire hosts and/or add hosts, recommend again (planner.recommend.cpu_config, same policy,
    catalog and groups) and compare: baseline, features gained/lost, matrix change.

    Guests of retired hosts are dropped with them (they would move elsewhere
    first: see the drain plan).  The matrix change is per host pair (hosts
    squared, like ``planner.recommend.graph.host_graph``): for small and mid-size clusters.  Added hosts get no aggregate with ``groups``
    unless they are in it under their new name.
    """
    retire = list(retire)
    add = list(add)
    names = {h.name for h in rep.inv.hosts}
    unknown = [n for n in retire if n not in names]
    if unknown:
        raise InputError(f"cannot retire {', '.join(unknown)}: not in the snapshot")
    clash = [h.name for h in add if h.name in names and h.name not in retire]
    if clash:
        raise InputError(f"cannot add {', '.join(clash)}: a host of that name exists")
    hosts = tuple(h for h in rep.inv.hosts if h.name not in retire) + tuple(add)
    if not hosts:
        raise InputError("no hosts left after the what-if")
    inv2 = dataclasses.replace(rep.inv, hosts=hosts)
    groups = ({h: g for h, g in rep.groups.items() if h not in retire}
              if rep.groups is not None else None)
    after = build_report(inv2, rep.cat, rep.policy, groups)

    before_by = {r.scope: r for r in rep.recs}
    rows = []
    for r in after.recs:
        b = before_by.get(r.scope)
        fa = _guest_features(r, after.inv, after.cat)
        fb = _guest_features(b, rep.inv, rep.cat) if b else set()
        order = {f.name: i for i, f in enumerate(rep.cat.features)}
        rows.append({
            "scope": r.scope, "hosts_before": len(b.hosts) if b else 0, "hosts_after": len(r.hosts),
            "mode_before": b.cpu_mode if b else None, "mode_after": r.cpu_mode,
            "model_before": (b.cpu_models[0] if b.cpu_models else "host-passthrough") if b else None,
            "model_after": r.cpu_models[0] if r.cpu_models else "host-passthrough",
            "gained": sorted(fa - fb, key=order.__getitem__) if b else [],
            "lost": sorted(fb - fa, key=order.__getitem__) if b else [],
        })
    changes = pd.DataFrame(rows).set_index("scope")

    mb = _pairs(rep.analysis)
    ma = _pairs(after.analysis)
    diff = [{"source": s, "destination": d, "before": mb.get((s, d)), "after": ma.get((s, d))}
            for (s, d) in sorted(set(mb) | set(ma)) if mb.get((s, d)) != ma.get((s, d))]
    matrix_change = pd.DataFrame(diff, columns=["source", "destination", "before", "after"])
    return WhatIfResult(rep, after, tuple(retire), tuple(h.name for h in add), changes,
                        matrix_change, tuple(after.analysis.stranded))


def _pairs(an: Analysis) -> dict[tuple[str, str], str]:
    return {(s, d): data["verdict"] for s, d, data in host_graph(an).edges(data=True)}
