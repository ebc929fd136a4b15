"""The Nova CPU recommendation: cpu_mode, cpu_models, cpu_model_extra_flags, and their cost.

Pure: hosts in, a frozen Recommendation out.  Hosts are grouped by identical
CPU first (a 10,000-host cluster has a handful of distinct CPUs), so every
baseline and compare below runs once per distinct CPU, not once per host.

The model is libvirt's own baseline of the host CPUs (the answer of
``virsh cpu-baseline`` on every host's capabilities), so operators can check
it with libvirt itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planner.assess.rules import Policy
from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef, CpuFeature
from planner.cpu.engine import QEMU_FILTERED_FEATURES, baseline, compare, cpu_mask
from planner.cpu.versions import filter_flags, restrict_baseline
from planner.errors import CpuError, InputError
from planner.model import Host

#: The architectures an x86 catalog describes (libvirt's cpu_map arch name="x86").
X86_ARCHES = frozenset({"x86_64", "i686", "i386"})

CPU_MAP_HINT = ("pass that host's own cpu_map with --cpu-map DIR (a copy of its "
                "/usr/share/libvirt/cpu_map; migplan ships libvirt 9.0's and 11.3's, and reads "
                "a snapshot with 11.3's once a host runs libvirt 10.10 or later)")


@dataclass(frozen=True)
class UnknownHost:
    """A host the catalog cannot describe: left out of the plan, reported, never fatal."""

    host: str
    file: str  # the snapshot file that names it (relative to the snapshot)
    what: str  # "CPU model GraniteRapids", "CPU feature cet-ss", "architecture aarch64"...

    def message(self, cat: Catalog) -> str:
        ver = f" (libvirt {cat.libvirt_version})" if cat.libvirt_version else ""
        return (f"{self.host}: {self.file}: {self.what} is unknown to migplan's CPU "
                f"catalog{ver}: the host is left out of this plan; {CPU_MAP_HINT}.")


def catalog_gap(h: Host, cat: Catalog) -> UnknownHost | None:
    """What of a host's CPU the catalog does not know (None: it knows all of it).

    Checks the architecture, vendor, model and every feature of the host CPU
    (capabilities.xml) and of its host-model CPU (domcapabilities.xml).
    """
    caps = f"hosts/{h.name}/capabilities.xml"
    if h.arch not in X86_ARCHES:
        model = f", CPU model {h.cpu.model}" if h.cpu.model else ""
        return UnknownHost(h.name, caps, f"architecture {h.arch}{model}")
    for cpu, file in ((h.cpu, caps), (h.host_model, f"hosts/{h.name}/domcapabilities.xml")):
        if cpu is None:
            continue
        if cpu.vendor is not None and cpu.vendor not in cat.vendors:
            return UnknownHost(h.name, file, f"CPU vendor {cpu.vendor}")
        if cpu.model is not None and cpu.model not in cat.model_by_name:
            return UnknownHost(h.name, file, f"CPU model {cpu.model}")
        for f in cpu.features:
            if f.name not in cat.feature_by_name:
                return UnknownHost(h.name, file, f"CPU feature {f.name}")
    return None


def split_unknown(hosts: Sequence[Host], cat: Catalog) -> tuple[list[Host], list[UnknownHost]]:
    """The hosts the catalog describes, and those it does not (with what it lacks)."""
    known: list[Host] = []
    unknown: list[UnknownHost] = []
    for h in hosts:
        gap = catalog_gap(h, cat)
        if gap is None:
            known.append(h)
        else:
            unknown.append(gap)
    return known, unknown


def _all_unknown(scope: str, unknown: Sequence[UnknownHost], cat: Catalog) -> CpuError:
    return CpuError(f"{scope}: no host CPU is one the catalog knows: "
                    + "; ".join(u.message(cat) for u in unknown[:5])
                    + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))


@dataclass(frozen=True)
class CpuClass:
    """Hosts with identical CPUs (model, vendor, features, signature, host-model)."""

    id: str
    cpu: CpuDef
    host_model: CpuDef | None
    usable_models: tuple[str, ...] | None
    hosts: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.cpu.model or "unknown CPU"


def _flat_key(cpu: CpuDef) -> tuple[object, ...]:
    """``cpu.key()`` with features as (name, policy) pairs: equal exactly when the keys
    are, but hashed and compared in C (a host CPU lists ~100 features)."""
    return (cpu.type, cpu.arch, cpu.model, cpu.vendor,
            tuple([(f.name, f.policy) for f in cpu.features]), cpu.mode, cpu.match)


def cpu_key(h: Host) -> tuple[object, ...]:
    hm = _flat_key(h.host_model) if h.host_model is not None else None
    return (_flat_key(h.cpu), h.cpu.signature, hm, h.usable_models)


def cpu_classes(hosts: Sequence[Host]) -> list[CpuClass]:
    """Hosts grouped by identical CPU, in order of first appearance."""
    groups: dict[tuple[object, ...], list[Host]] = {}
    for h in hosts:
        groups.setdefault(cpu_key(h), []).append(h)
    out = []
    for i, members in enumerate(groups.values(), start=1):
        h0 = members[0]
        out.append(CpuClass(f"cpu{i}", h0.cpu, h0.host_model, h0.usable_models,
                            tuple(h.name for h in members)))
    return out


@dataclass(frozen=True)
class HostCost:
    host: str
    cpu_model: str | None
    cpu_class: str
    features_lost: tuple[str, ...]  # host features guests no longer see
    compare: str  # identical | superset | incompatible: host against the guest CPU


@dataclass(frozen=True)
class WhatIf:
    hosts: tuple[str, ...]  # hosts to retire or move to an aggregate of their own
    cpu_model: str  # the host CPU model they share
    new_model: str  # baseline of the remaining hosts
    gained: tuple[str, ...]  # features every remaining guest gains
    message: str


@dataclass(frozen=True)
class Recommendation:
    scope: str  # aggregate name, or "all hosts"
    hosts: tuple[str, ...]
    cpu_mode: str  # host-passthrough | custom
    cpu_models: tuple[str, ...]
    cpu_model_extra_flags: tuple[str, ...]  # "+feat" / "-feat" as Nova takes them
    baseline: CpuDef | None  # libvirt's baseline of the hosts (custom mode)
    guest_cpu: CpuDef | None  # the CPU guests get (None: the host's own, passthrough)
    explanation: tuple[str, ...]
    costs: tuple[HostCost, ...]
    what_if: tuple[WhatIf, ...]
    classes: tuple[CpuClass, ...]
    unknown: tuple[UnknownHost, ...] = ()  # hosts left out: the catalog cannot describe them

    @property
    def cannot_run(self) -> tuple[str, ...]:
        """Hosts that cannot run the guest CPU these settings give (libvirt's compare):
        settings with any are not safe to deploy and are never written."""
        return tuple(c.host for c in self.costs if c.compare == "incompatible")


def _identical(classes: Sequence[CpuClass]) -> bool:
    if len(classes) == 1:
        return True
    # Classes may differ only by domcapabilities data that differs in format,
    # never when the CPUs themselves differ.
    first = classes[0].cpu
    return all(c.cpu.key() == first.key() and c.cpu.signature == first.signature for c in classes)


def _guest_mask(cpu: CpuDef, cat: Catalog) -> int:
    return cpu_mask(cpu, cat)


def _lost(host_mask: int, guest_mask: int, cat: Catalog) -> tuple[str, ...]:
    return tuple(f.name for f in cat.features
                 if f.mask & ~host_mask == 0 and f.mask & ~guest_mask != 0)


def _usable_everywhere(classes: Sequence[CpuClass]) -> set[str] | None:
    """Models every host can run by its domcapabilities; None when any host lacks them."""
    common: set[str] | None = None
    for c in classes:
        if c.usable_models is None:
            return None
        common = set(c.usable_models) if common is None else common & set(c.usable_models)
    return common


def offered_mask(classes: Sequence[CpuClass], cat: Catalog) -> int:
    """Bits every host's QEMU/KVM is known to give a guest: the intersection of the
    hosts' domcapabilities host-model CPUs.

    Host CPUs list features KVM never passes to guests (ds, acpi, tm, ...); host-model
    leaves them out.  A host without domcapabilities proves none (0): nothing else says
    what its KVM gives, and a flag it cannot give would stop its guests from starting.
    """
    mask: int | None = None
    for c in classes:
        m = cpu_mask(c.host_model, cat) if c.host_model is not None else 0
        mask = m if mask is None else mask & m
    return mask or 0


NESTED_FEATURES = frozenset({"vmx", "svm"})


def nova_flags(base: CpuDef, cat: Catalog, offered: int | None = None,
               nested: bool = False) -> tuple[str, ...]:
    """cpu_model_extra_flags for a baseline: its extra features (+) and disabled ones (-).

    Left out: features QEMU never accepts, features that block migration
    (invtsc: it would pin every guest to its host), and features some host's
    QEMU/KVM cannot give a guest (``offered``, from domcapabilities), and
    vmx/svm unless ``nested``.
    """
    out: list[str] = []
    for f in base.features:
        if f.name in QEMU_FILTERED_FEATURES or f.name in cat.nonmigratable:
            continue
        if not nested and f.name in NESTED_FEATURES:
            continue
        if f.policy in ("require", "force"):
            if offered is not None and cat.feature_by_name[f.name].mask & ~offered:
                continue
            out.append(f"+{f.name}")
        elif f.policy in ("disable", "forbid"):
            out.append(f"-{f.name}")
    return tuple(out)


def _offer(c: CpuClass) -> CpuDef:
    """What a host offers guests: its domcapabilities host-model, else its host CPU."""
    return c.host_model if c.host_model is not None else c.cpu


def guest_cpu_for(model: str, flags: Sequence[str]) -> CpuDef:
    """The CPU Nova writes into guest XML for cpu_mode=custom (match='exact')."""
    feats = tuple(CpuFeature(f[1:], "require" if f[0] == "+" else "disable") for f in flags)
    return CpuDef(type="guest", model=model, features=feats, mode="custom", match="exact")


def recommend(hosts: Sequence[Host], cat: Catalog, policy: Policy | None = None,
              scope: str = "all hosts", what_if: bool = True) -> Recommendation:
    """The Nova CPU settings under which every guest can move between every host."""
    policy = policy or Policy()
    if not hosts:
        raise InputError(f"{scope}: no hosts to recommend a CPU for")
    hosts, left_out = split_unknown(hosts, cat)
    if not hosts:
        raise _all_unknown(scope, left_out, cat)
    rec = _recommend(hosts, cat, policy, scope, what_if)
    if not left_out:
        return rec
    notes = tuple(u.message(cat) for u in left_out)
    return replace(rec, explanation=notes + rec.explanation, unknown=tuple(left_out))


def _passthrough(scope: str, names: tuple[str, ...], classes: Sequence[CpuClass]) -> Recommendation:
    """Identical CPUs everywhere: host-passthrough, with what would break it."""
    c = classes[0]
    same = [f"All {len(names)} hosts have identical CPUs ({c.label}"
            + (f", signature {c.cpu.signature}" if c.cpu.signature else "") + "): "
            "host-passthrough gives guests every host feature and they can still move "
            "anywhere in this group."]
    if c.cpu.signature is None:
        same.append("The snapshot has no CPU signatures (family/model/stepping): check the "
                    "hosts share a stepping and microcode before relying on host-passthrough.")
    same.append("Adding a host with a different CPU later breaks this: switch to custom "
                "with the baseline model first.")
    return Recommendation(scope, names, "host-passthrough", (), (), None, None, tuple(same),
                          tuple(HostCost(h, k.cpu.model, k.id, (), "identical")
                                for k in classes for h in k.hosts), (), tuple(classes))


def _explain_custom(classes: Sequence[CpuClass], n_hosts: int, base: CpuDef,
                    flags: tuple[str, ...], offered: int | None, costs: Sequence[HostCost],
                    cat: Catalog, expl: list[str]) -> list[str]:
    """The prose of a custom-mode recommendation: why custom, why this model, what was left out."""
    bad = [c for c in costs if c.compare == "incompatible"]
    if bad:
        # Cannot happen with libvirt's baseline; say so loudly rather than hide it.
        expl.append(f"WARNING: {', '.join(c.host for c in bad[:5])} cannot run the recommended "
                    "CPU (libvirt compare): check the catalog (--cpu-map) matches the hosts.")
    counts = ", ".join(f"{len(c.hosts)} x {c.label}" for c in classes)
    expl.insert(0, f"The hosts have {len(classes)} different CPUs ({counts}): host-passthrough "
                   "needs identical CPUs, so cpu_mode=custom.")
    expl.append(_why_not_host_model(classes, cat))
    expl.append(f"{base.model} is libvirt's baseline of all {n_hosts} hosts "
                "(virsh cpu-baseline gives the same); every guest gets the same CPU on every "
                "host, so it can move anywhere.")
    nested = [f.name for f in base.features if f.name in NESTED_FEATURES
              and f"+{f.name}" not in flags]
    if nested:
        expl.append(f"{', '.join(nested)} left out of cpu_model_extra_flags although every host "
                    "offers it: guests running nested guests migrate unreliably; add it back "
                    "only for aggregates that need nested virtualization.")
    dropped = [f.name for f in base.features if f.policy == "require"
               and f"+{f.name}" not in flags and f.name not in NESTED_FEATURES]
    unproven = [h for c in classes if c.host_model is None for h in c.hosts]
    if dropped:
        expl.append(f"Not in cpu_model_extra_flags although every host CPU has them: "
                    f"{', '.join(dropped)} (QEMU/KVM does not give them to guests "
                    "(domcapabilities host-model), QEMU does not accept them, "
                    + ("they block migration, or no domcapabilities.xml proves them)."
                       if unproven else "or they block migration)."))
    if unproven:
        expl.append(f"{_short(unproven, 5)} lack{'s' if len(unproven) == 1 else ''} "
                    "domcapabilities.xml, the one file that says which features a host's "
                    "QEMU/KVM gives guests: no feature beyond "
                    f"{base.model}'s own can be proven there, so cpu_model_extra_flags adds "
                    "none; collect it (`virsh domcapabilities`, or `migplan collect`) to get "
                    "them.")
    return expl


def _recommend(hosts: Sequence[Host], cat: Catalog, policy: Policy, scope: str,
               what_if: bool) -> Recommendation:
    unknown = [h.name for h in hosts if h.cpu.model is None]
    if unknown:
        raise CpuError(f"{scope}: the host CPU model of {', '.join(unknown[:10])} is unknown "
                       "(capabilities without <model>): cannot recommend a CPU model")
    classes = cpu_classes(hosts)
    vendors = sorted({c.cpu.vendor or "?" for c in classes})
    if len(vendors) > 1:
        by_vendor = {v: sum(len(c.hosts) for c in classes if (c.cpu.vendor or "?") == v)
                     for v in vendors}
        raise CpuError(
            f"{scope}: hosts of different CPU vendors ("
            + ", ".join(f"{n} {v}" for v, n in by_vendor.items())
            + ") can never live-migrate guests between them; put each vendor in its own "
            "aggregate (--groups FILE)")
    names = tuple(h.name for h in hosts)
    if _identical(classes):
        return _passthrough(scope, names, classes)

    reps = [c.cpu for c in classes]
    base = baseline(reps, cat)
    expl: list[str] = []
    usable = _usable_everywhere(classes)
    if usable is not None and base.model not in usable:
        blocking = [c for c in classes if c.usable_models is not None
                    and base.model not in c.usable_models]
        expl.append(f"libvirt's baseline {base.model} is not usable on "
                    f"{', '.join(blocking[0].hosts[:3])} (domcapabilities usable='no'): "
                    "the baseline is taken among the models every host can run instead.")
        base = baseline(reps, cat, usable_models=sorted(usable))
    versions = {h.name: h.libvirt_version for h in hosts}
    base, usable, decides, notes = restrict_baseline(cat, versions, reps, base, usable)
    expl.extend(notes)
    assert base.model is not None
    offered = offered_mask(classes, cat)
    flags, notes = filter_flags(decides, nova_flags(base, cat, offered, policy.expose_nested))
    expl.extend(notes)
    gcpu = guest_cpu_for(base.model, flags)
    gmask = _guest_mask(gcpu, cat)

    models = [base.model, *_older_models(base.model, classes, cat, usable)]
    models = models[: max(1, policy.max_cpu_models)]

    costs: list[HostCost] = []
    for c in classes:
        res = compare(_offer(c), gcpu, cat)
        lost = _lost(cpu_mask(_offer(c), cat), gmask, cat)
        costs.extend(HostCost(h, c.cpu.model, c.id, lost, res.result) for h in c.hosts)

    expl = _explain_custom(classes, len(hosts), base, flags, offered, costs, cat, expl)
    wi = _what_if(classes, cat, gmask, policy, versions) if what_if else ()
    return Recommendation(scope, names, "custom", tuple(models), flags, base, gcpu,
                          tuple(expl), tuple(costs), wi, tuple(classes))


def _compatible_everywhere(model: str, classes: Sequence[CpuClass], cat: Catalog) -> bool:
    cpu = CpuDef(type="guest", model=model, mode="custom", match="exact")
    return all(compare(_offer(c), cpu, cat).compatible for c in classes)


def _older_models(first: str, classes: Sequence[CpuClass], cat: Catalog,
                  usable: set[str] | None) -> list[str]:
    """Other models every host runs, newest first (fallbacks for flavors Nova maps to them)."""
    vendor = cat.model_by_name[first].vendor
    out = []
    for m in reversed(cat.models):
        if m.name == first or m.vendor != vendor or not m.decode_guest:
            continue
        if usable is not None and m.name not in usable:
            continue
        if _compatible_everywhere(m.name, classes, cat):
            out.append(m.name)
    return out


def _why_not_host_model(classes: Sequence[CpuClass], cat: Catalog) -> str:
    """An example of the one-way moves host-model would create."""
    for a in classes:
        guest = a.host_model or CpuDef(type="guest", model=a.cpu.model, vendor=a.cpu.vendor,
                                       features=tuple(CpuFeature(f.name, "require")
                                                      for f in a.cpu.features
                                                      if f.name not in cat.nonmigratable),
                                       mode="custom", match="exact")
        for b in classes:
            if b is a:
                continue
            res = compare(_offer(b), guest, cat)
            if not res.compatible:
                lacks = ", ".join(res.features[:6]) + (" ..." if len(res.features) > 6 else "")
                return (f"Not host-model: libvirt gives each guest the CPU of the host it starts "
                        f"on, so a guest started on {a.hosts[0]} ({a.label}) could not move to "
                        f"{b.hosts[0]} ({b.label}, lacks {lacks}): migrations become one-way.")
    return ("Not host-model: guests would carry the CPU of the host they start on, and a "
            "mixed cluster makes some migrations one-way.")


def _what_if(classes: Sequence[CpuClass], cat: Catalog, gmask: int,
             policy: Policy, versions: Mapping[str, str | None]) -> tuple[WhatIf, ...]:
    """Which CPU generations, retired or split off, raise the baseline most.

    First each host CPU model alone (most features gained first), then a
    greedy sequence: retire the model whose removal gains most, then the next
    one, ... (up to 3 models), since an older generation often hides behind
    the oldest one.
    """
    groups: dict[str, list[CpuClass]] = {}
    for c in classes:
        groups.setdefault(c.label, []).append(c)
    if len(groups) < 2:
        return ()
    memo: dict[frozenset[str], tuple[str, tuple[str, ...]] | None] = {}

    def gain(removed: frozenset[str]) -> tuple[str, tuple[str, ...]] | None:
        if removed not in memo:
            rest = [c for c in classes if c.label not in removed]
            reps = [c.cpu for c in rest]
            try:
                nb = baseline(reps, cat)
            except CpuError:
                memo[removed] = None
                return None
            nb, _, dec, _ = restrict_baseline(
                cat, {h: versions.get(h) for c in rest for h in c.hosts}, reps, nb, None)
            assert nb.model is not None
            flags, _ = filter_flags(dec, nova_flags(nb, cat, offered_mask(rest, cat),
                                                    policy.expose_nested))
            ncpu = guest_cpu_for(nb.model, flags)
            nmask = _guest_mask(ncpu, cat)
            memo[removed] = (nb.model, tuple(f.name for f in cat.features
                                             if f.mask & ~nmask == 0 and f.mask & ~gmask != 0))
        return memo[removed]

    def what_if(labels: Sequence[str], model: str, gained: tuple[str, ...]) -> WhatIf:
        hosts = tuple(h for lb in labels for c in groups[lb] for h in c.hosts)
        n = len(hosts)
        who = f"{n} {labels[0]} host{'s' if n != 1 else ''}" if len(labels) == 1 else \
            f"{n} hosts (" + ", ".join(
                f"{sum(len(c.hosts) for c in groups[lb])} {lb}" for lb in labels) + ")"
        return WhatIf(hosts, " + ".join(labels), model, gained, (
            f"retire {who} (or split {'them' if n != 1 else 'it'} into an aggregate of "
            f"their own) -> {model}, gaining {_short(gained)}"))

    singles: list[WhatIf] = []
    for label in groups:
        g = gain(frozenset([label]))
        if g is not None and g[1]:
            singles.append(what_if([label], *g))
    singles.sort(key=lambda w: (-len(w.gained), len(w.hosts), w.cpu_model))

    steps: list[WhatIf] = []
    removed: list[str] = []
    best_so_far = 0
    while len(removed) < min(3, len(groups) - 1):
        cands = []
        for label in groups:
            if label in removed:
                continue
            g = gain(frozenset([*removed, label]))
            if g is not None:
                n = sum(len(c.hosts) for c in groups[label])
                cands.append((-len(g[1]), n, label, g))
        if not cands:
            break
        neg, _, label, g = min(cands)
        if -neg <= best_so_far:
            break
        best_so_far = -neg
        removed.append(label)
        if len(removed) >= 2:
            steps.append(what_if(list(removed), *g))
    return tuple(singles + steps)


def _short(names: Sequence[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def recommend_groups(hosts: Sequence[Host], groups: Mapping[str, str] | None, cat: Catalog,
                     policy: Policy | None = None) -> list[Recommendation]:
    """One recommendation per aggregate; ``groups`` maps host -> aggregate.

    Without groups, a cluster whose hosts come from different CPU vendors gets
    one recommendation per vendor (no CPU model spans vendors; Nova operators
    split such clusters into aggregates anyway).  Largest scope first.
    """
    if groups is not None:
        stray = sorted(set(groups) - {h.name for h in hosts})
        if stray:
            raise InputError(f"groups name hosts not in the snapshot: {', '.join(stray[:10])}")
    # A host the catalog cannot describe never sinks the others: it is left out
    # and reported with the recommendation of its aggregate (or the largest one).
    vendor_of = {h.name: h.cpu.vendor for h in hosts}
    hosts, left_out = split_unknown(hosts, cat)
    if not hosts:
        raise _all_unknown("all hosts", left_out, cat)
    if groups is None:
        vendors = {h.cpu.vendor for h in hosts}
        if len(vendors) > 1:
            groups = {h.name: f"vendor {h.cpu.vendor or 'unknown'}" for h in hosts}
        else:
            recs = [recommend(hosts, cat, policy)]
    if groups is not None:
        by: dict[str, list[Host]] = {}
        for h in hosts:
            by.setdefault(groups.get(h.name, "(no aggregate)"), []).append(h)
        recs = [recommend(members, cat, policy, scope=name) for name, members in by.items()]
        recs.sort(key=lambda r: (-len(r.hosts), r.scope))
    if left_out:
        scopes = {r.scope: i for i, r in enumerate(recs)}
        for u in left_out:
            # its aggregate; split by vendor, its vendor's; else the largest
            scope = (groups or {}).get(u.host) or f"vendor {vendor_of.get(u.host) or 'unknown'}"
            i = scopes.get(scope, 0)
            r = recs[i]
            recs[i] = replace(r, explanation=(u.message(cat), *r.explanation),
                              unknown=(*r.unknown, u))
    return recs


def by_host(recs: Sequence[Recommendation]) -> dict[str, Recommendation]:
    """host -> the recommendation that covers it."""
    return {h: r for r in recs for h in r.hosts}
