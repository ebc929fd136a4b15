"""Live-migration rules: one small pure function per rule, each returning a Verdict.

Every rule takes the same arguments -- the guest, its source host, the
destination host, the Policy and the CPU catalog -- so callers can run them
as a list.  A rule that lacks the data it needs answers ``unknown`` and says
what is missing: a missing file is never a silent pass.

Reason codes are ``<rule>.<outcome>`` (``cpu-features.missing``) and stable:
scripts may match on them; messages are for people and may improve.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from planner.assess.verdict import FEASIBLE, Status, Verdict, worst
from planner.cpu.catalog import Catalog
from planner.cpu.cpudef import CpuDef
from planner.cpu.engine import compare
from planner.errors import CpuError, UsageError
from planner.model import Disk, Domain, Host, NumaCell

# the short names the rules read best with
OK, WARN, UNKNOWN, BLOCKED = Status.OK, Status.WARN, Status.UNKNOWN, Status.BLOCKED
#: States in which a guest runs (and can be live-migrated).
RUNNING_STATES = ("running", "paused", "blocked")


@dataclass(frozen=True)
class Policy:
    """Operator choices the rules depend on (defaults follow Nova's)."""

    #: Kept free on every destination, like Nova's reserved_host_memory_mb (512).
    memory_reserve_kib: int = 512 * 1024
    #: vCPUs per host CPU, like Nova's initial_cpu_allocation_ratio (4.0).
    cpu_allocation_ratio: float = 4.0
    #: Local disks need block migration: warn when allowed, block otherwise.
    allow_block_migration: bool = True
    #: Longest cpu_models list to recommend (the baseline model first).
    max_cpu_models: int = 4
    #: Keep vmx/svm in cpu_model_extra_flags: nested guests carry state that
    #: makes live migration fragile, so it is off unless asked for.
    expose_nested: bool = False

    def __post_init__(self) -> None:
        # nan passes every comparison a rule makes: a ratio of nan approved every move
        if not (isinstance(self.cpu_allocation_ratio, int | float)
                and math.isfinite(self.cpu_allocation_ratio) and self.cpu_allocation_ratio > 0):
            raise UsageError(f"cpu_allocation_ratio {self.cpu_allocation_ratio!r}: expected a "
                             "finite number > 0")
        if type(self.memory_reserve_kib) is not int or self.memory_reserve_kib < 0:
            raise UsageError(f"memory_reserve_kib {self.memory_reserve_kib!r}: expected a whole "
                             "number >= 0")


@dataclass(frozen=True)
class Assessment:
    """All rule verdicts for one move; ``status`` is the worst of them."""

    guest: str | None
    source: str
    destination: str
    verdicts: tuple[Verdict, ...]

    @functools.cached_property
    def status(self) -> Status:
        return worst(self.verdicts)

    @property
    def feasible(self) -> bool:
        return self.status in FEASIBLE

    def reasons(self) -> list[Verdict]:
        """The verdicts worth telling: everything but plain ok."""
        return [v for v in self.verdicts if v.status != OK]


def _v(rule: str, status: Status, outcome: str, message: str) -> Verdict:
    return Verdict(rule, status, f"{rule}.{outcome}", message)


def _names(items: Sequence[str], limit: int = 12) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def _gib(kib: int) -> str:
    return f"{kib / (1024 * 1024):.1f} GiB"


Rule = Callable[[Domain, Host, Host, Policy, Catalog], Verdict]


# --- platform -------------------------------------------------------------------------------


def cpu_arch(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    arch = g.arch or src.arch
    if not arch or not dst.arch:
        return _v("cpu-arch", UNKNOWN, "unknown",
                  f"architecture unknown for {g.name if not arch else dst.name}")
    if arch != dst.arch:
        return _v("cpu-arch", BLOCKED, "mismatch",
                  f"{g.name} is {arch}, {dst.name} is {dst.arch}")
    return _v("cpu-arch", OK, "ok", f"both {arch}")


def cpu_vendor(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    sv, dv = src.cpu.vendor, dst.cpu.vendor
    if not sv or not dv:
        missing = src.name if not sv else dst.name
        return _v("cpu-vendor", UNKNOWN, "unknown", f"CPU vendor of {missing} not in the snapshot")
    if sv != dv:
        # KVM guests see the vendor's CPUID and instruction set: never across vendors.
        return _v("cpu-vendor", BLOCKED, "mismatch",
                  f"{src.name} is {sv}, {dst.name} is {dv}: no live migration across CPU vendors")
    return _v("cpu-vendor", OK, "ok", f"both {sv}")


def hypervisor_type(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    want = g.domain_type
    if want is None:
        return _v("hypervisor-type", UNKNOWN, "unknown", f"domain type of {g.name} unknown")
    # capabilities list every guest type the host runs for its architecture
    # (<guest><arch><domain type='kvm'/>): a TCG (qemu) guest also runs on a KVM host.
    offered = dst.domain_types or ((dst.hypervisor,) if dst.hypervisor else None)
    if offered is None:
        return _v("hypervisor-type", UNKNOWN, "unknown",
                  f"{dst.name}: hypervisor types unknown (capabilities without <guest> "
                  "elements, no domcapabilities.xml)")
    if want not in offered:
        return _v("hypervisor-type", BLOCKED, "mismatch",
                  f"{g.name} is a {want} guest, {dst.name} offers {', '.join(offered)}")
    return _v("hypervisor-type", OK, "ok", f"{want} on both")


# --- CPU --------------------------------------------------------------------------------------

PASSTHROUGH_MODES = ("host-passthrough", "maximum")


def guest_cpu_requirement(g: Domain, src: Host) -> tuple[CpuDef | None, str | None]:
    """The CPU a running guest holds: (cpu, None) or (None, what is missing).

    host-model guests run the source's domcapabilities host-model CPU
    (libvirt expands it at start); custom guests their own definition.
    """
    cpu = g.cpu
    if cpu is None or (cpu.mode in (None, "custom") and cpu.model is None and not cpu.features):
        return None, None  # libvirt default CPU (qemu64): runs on any x86 host
    if cpu.mode == "host-model":
        if src.host_model is None:
            return None, f"{src.name}: host-model CPU unknown (domcapabilities.xml missing)"
        return src.host_model, None
    return cpu, None


def cpu_features(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "cpu-features"
    if g.cpu is not None and g.cpu.mode in PASSTHROUGH_MODES:
        return _v(r, OK, "not-applicable", "host-passthrough guest: see cpu-passthrough")
    need, missing = guest_cpu_requirement(g, src)
    if missing:
        return _v(r, UNKNOWN, "unknown", missing)
    if need is None:
        return _v(r, OK, "default-cpu", "guest uses libvirt's default CPU model")
    # QEMU's own view of the host (domcapabilities host-model) when collected:
    # it already leaves out what KVM cannot give a guest.
    host_cpu = dst.host_model if dst.host_model is not None else dst.cpu
    if host_cpu.model is None:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: host CPU model unknown")
    try:
        res = compare(host_cpu, need, cat)
    except CpuError as err:
        return _v(r, UNKNOWN, "unknown", f"cannot compare CPUs: {err}")
    if res.compatible:
        # A model usable='no' still runs when the guest disables what the host
        # lacks: compare against host-model above is the test libvirt applies.
        return _v(r, OK, res.result, f"{dst.name} provides every feature of {need.model}")
    unusable = bool(need.model and dst.usable_models is not None
                    and need.model not in dst.usable_models)
    if res.features and "does not provide" in (res.message or ""):
        return _v(r, BLOCKED, "missing",
                  f"{dst.name} lacks {_names(list(res.features))} (required by {g.name}'s "
                  f"{need.model} CPU" + ("; domcapabilities marks the model usable='no')"
                                         if unusable else ")"))
    return _v(r, BLOCKED, "incompatible", f"{dst.name}: {res.message}")


def cpu_passthrough(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "cpu-passthrough"
    if g.cpu is None or g.cpu.mode not in PASSTHROUGH_MODES:
        return _v(r, OK, "not-applicable", "not a host-passthrough guest")
    a, b = src.cpu, dst.cpu
    if a.model is None or b.model is None:
        return _v(r, UNKNOWN, "unknown", "host CPU model unknown")
    if a.model != b.model or a.vendor != b.vendor:
        return _v(r, BLOCKED, "different-model",
                  f"host-passthrough needs identical CPUs: {src.name} is {a.model}, "
                  f"{dst.name} is {b.model}")
    fa, fb = set(a.feature_names()), set(b.feature_names())
    if fa != fb:
        lacks = sorted(fa - fb)
        extra = sorted(fb - fa)
        detail = f"{dst.name} lacks {_names(lacks)}" if lacks else ""
        if extra:
            detail += ("; " if detail else "") + f"{dst.name} adds {_names(extra)}"
        return _v(r, BLOCKED, "different-features",
                  f"host-passthrough needs identical CPUs: {detail}")
    if a.signature is None or b.signature is None:
        return _v(r, WARN, "signature-unknown",
                  "same model and features; CPU signature not in the snapshot, so stepping "
                  "differences are not checked")
    if a.signature != b.signature:
        return _v(r, BLOCKED, "different-signature",
                  f"host-passthrough needs identical CPUs: signature {a.signature} on "
                  f"{src.name}, {b.signature} on {dst.name}")
    return _v(r, OK, "identical", "identical host CPUs")


def _exposed_features(g: Domain, src: Host) -> frozenset[str] | None:
    """Feature names the guest sees explicitly (None: unknown)."""
    cpu = g.cpu
    if cpu is None:
        return frozenset()
    if cpu.mode in PASSTHROUGH_MODES:
        # KVM passes vmx/svm through only with nesting enabled, which the
        # domcapabilities host-model reflects; the raw host CPU always lists them.
        if src.host_model is not None:
            return src.host_model.required_feature_set
        return src.cpu.all_feature_set
    if cpu.mode == "host-model":
        return src.host_model.required_feature_set if src.host_model else None
    return cpu.required_feature_set


def tsc_frequency(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "tsc-frequency"
    feats = _exposed_features(g, src) or frozenset()
    if g.tsc_frequency is None and "invtsc" not in feats:
        return _v(r, OK, "not-applicable", "guest does not pin the TSC frequency")
    # QEMU refuses to migrate invtsc guests unless the TSC frequency is fixed
    # and the destination runs at it or can scale to it.
    want = g.tsc_frequency or src.tsc_frequency
    if want is None:
        return _v(r, UNKNOWN, "unknown", f"{src.name}: TSC frequency not in the snapshot")
    if dst.tsc_frequency == want:
        return _v(r, OK, "same-frequency", f"same TSC frequency ({want} Hz)")
    if dst.tsc_scaling:
        return _v(r, OK, "scaling", f"{dst.name} scales the TSC to {want} Hz")
    if dst.tsc_frequency is None or dst.tsc_scaling is None:
        return _v(r, UNKNOWN, "unknown",
                  f"{dst.name}: TSC frequency/scaling not in the snapshot (guest needs {want} Hz)")
    return _v(r, BLOCKED, "mismatch",
              f"guest needs a {want} Hz TSC; {dst.name} runs at {dst.tsc_frequency} Hz "
              "without TSC scaling")


def nested_virt(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "nested-virt"
    feats = _exposed_features(g, src)
    if feats is None:
        return _v(r, UNKNOWN, "unknown", f"{src.name}: host-model CPU unknown")
    exposed = sorted(feats & {"vmx", "svm"})
    if exposed:
        # A guest running its own guests carries nested state QEMU may fail to move.
        return _v(r, WARN, "exposed",
                  f"{g.name} exposes {', '.join(exposed)}: migrating a guest that runs nested "
                  "guests can fail or hang them; check it runs none")
    return _v(r, OK, "ok", "no vmx/svm exposed")


# --- capacity ---------------------------------------------------------------------------------


def memory(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "memory"
    if g.hugepages_kib:
        return _v(r, OK, "hugepages", "backed by huge pages: see the hugepages rule")
    need = g.memory_kib + p.memory_reserve_kib
    if dst.free_memory_kib is None:
        if dst.memory_kib is not None and dst.memory_kib < need:
            # capabilities give the host's memory: free memory can only be less
            return _v(r, BLOCKED, "insufficient",
                      f"{dst.name} has {_gib(dst.memory_kib)} of memory in all; {g.name} needs "
                      f"{_gib(g.memory_kib)} + {_gib(p.memory_reserve_kib)} reserve")
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: free memory not in the snapshot")
    if dst.free_memory_kib < need:
        return _v(r, BLOCKED, "insufficient",
                  f"{dst.name} has {_gib(dst.free_memory_kib)} free; {g.name} needs "
                  f"{_gib(g.memory_kib)} + {_gib(p.memory_reserve_kib)} reserve")
    return _v(r, OK, "ok", f"{_gib(dst.free_memory_kib)} free for {_gib(g.memory_kib)}")


def _running(h: Host) -> list[Domain]:
    return [d for d in h.domains if d.state in RUNNING_STATES]


def vcpus(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "vcpus"
    if dst.cpus_total is None:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: CPU count not in the snapshot")
    if g.vcpus > dst.cpus_total:
        return _v(r, BLOCKED, "too-many",
                  f"{g.name} has {g.vcpus} vCPUs, {dst.name} only {dst.cpus_total} CPUs")
    limit = dst.cpus_total * p.cpu_allocation_ratio
    if not dst.guests_listed:
        if g.vcpus > limit:
            return _v(r, BLOCKED, "overcommit",
                      f"{g.name} has {g.vcpus} vCPUs, more than {dst.cpus_total} CPUs x "
                      f"{p.cpu_allocation_ratio:g} allocation ratio on {dst.name}")
        return _v(r, UNKNOWN, "unknown",
                  f"{dst.name}: its guests are not in the snapshot (vCPUs in use unknown)")
    used = sum(d.vcpus for d in _running(dst) if d.name != g.name)
    if used + g.vcpus > limit:
        return _v(r, BLOCKED, "overcommit",
                  f"{dst.name}: {used} + {g.vcpus} vCPUs exceed {dst.cpus_total} CPUs x "
                  f"{p.cpu_allocation_ratio:g} allocation ratio")
    return _v(r, OK, "ok", f"{used} + {g.vcpus} vCPUs within {limit:g}")


def _pinned(d: Domain) -> set[int]:
    s: set[int] = set()
    for _, cpus in d.vcpupin:
        s.update(cpus)
    s.update(d.emulatorpin)
    return s


def pinned_cpus(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "pinned-cpus"
    want = _pinned(g)
    if not want:
        return _v(r, OK, "not-applicable", "no CPU pinning")
    if not dst.cells:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: NUMA topology (CPU list) not in the snapshot")
    if not dst.guests_listed:
        return _v(r, UNKNOWN, "unknown",
                  f"{dst.name}: its guests are not in the snapshot (which CPUs they pin unknown)")
    all_cpus = {c for cell in dst.cells for c in cell.cpus}
    busy: set[int] = set()
    for d in _running(dst):
        if d.name != g.name:
            busy |= _pinned(d)
    free = all_cpus - busy
    absent = sorted(want - all_cpus)
    taken = sorted(want & busy)
    if not absent and not taken:
        return _v(r, OK, "ok", f"pinned CPUs {_cpuset(want)} exist and are free on {dst.name}")
    # Dedicated vCPUs each need a host CPU of their own; Nova (NUMA-aware live
    # migration) recomputes the pinning, plain libvirt keeps the same ids.
    dedicated = len({c for _, cpus in g.vcpupin for c in cpus}) or len(want)
    if dedicated > len(free):
        return _v(r, BLOCKED, "no-free-cpus",
                  f"{g.name} pins {dedicated} CPUs; {dst.name} has {len(free)} unpinned")
    why = f"CPUs {_cpuset(absent)} do not exist" if absent else f"CPUs {_cpuset(taken)} are pinned by other guests"
    return _v(r, WARN, "repin",
              f"on {dst.name} {why}: the pinning must be recomputed (Nova does; "
              "plain virsh migrate keeps the same CPU ids)")


def _cpuset(cpus: set[int] | Sequence[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def numa_cells(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "numa-cells"
    strict_nodes = g.numatune_nodes if g.numatune_mode in ("strict", "restrictive") else ()
    if not g.vnuma_cells and not strict_nodes:
        return _v(r, OK, "not-applicable", "no guest NUMA topology or strict memory binding")
    if not dst.cells:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: NUMA cells not in the snapshot")
    ids = {c.id for c in dst.cells}
    if strict_nodes:
        absent = sorted(set(strict_nodes) - ids)
        if absent:
            return _v(r, BLOCKED, "no-such-cell",
                      f"{g.name} binds memory to host cells {_cpuset(strict_nodes)}; "
                      f"{dst.name} has no cell {_cpuset(absent)}")
    if g.vnuma_cells:
        if len(g.vnuma_cells) > len(dst.cells):
            return _v(r, BLOCKED, "too-few-cells",
                      f"{g.name} has {len(g.vnuma_cells)} NUMA cells, {dst.name} {len(dst.cells)}")
        if g.hugepages_kib:
            fits = _fit_cells([(len(v), m) for _, v, m in g.vnuma_cells], dst.cells, free=False)
        else:
            if any(c.free_kib is None for c in dst.cells):
                return _v(r, UNKNOWN, "unknown", f"{dst.name}: free memory per NUMA cell not in the snapshot")
            fits = _fit_cells([(len(v), m) for _, v, m in g.vnuma_cells], dst.cells, free=True)
        if not fits:
            return _v(r, BLOCKED, "does-not-fit",
                      f"{g.name}'s {len(g.vnuma_cells)} NUMA cells do not fit {dst.name}'s cells "
                      "(CPUs or free memory per cell)")
    return _v(r, OK, "ok", f"guest NUMA layout fits {dst.name}")


def _fit_cells(need: list[tuple[int, int]], cells: Sequence[NumaCell], *, free: bool) -> bool:
    """Greedy: biggest guest cell first into the roomiest host cell, one host cell each."""
    avail = sorted(((len(c.cpus), (c.free_kib if free else c.memory_kib) or 0) for c in cells),
                   key=lambda x: x[1], reverse=True)
    for ncpu, mem in sorted(need, key=lambda x: x[1], reverse=True):
        for i, (acpu, amem) in enumerate(avail):
            if acpu >= ncpu and amem >= mem:
                del avail[i]
                break
        else:
            return False
    return True


def _page_size(g_size: int, dst: Host) -> int:
    if g_size:
        return g_size
    # <hugepages/> without a size: the host's default huge page size
    # (the smallest huge size the kernel offers, 2 MiB on x86).
    sizes = sorted({ps.size_kib for c in dst.cells for ps in c.pages if ps.size_kib > 4})
    return sizes[0] if sizes else 2048


def _pages(dst: Host, size: int, free: bool) -> dict[int, int | None]:
    """Per NUMA cell: free pages of ``size`` (``free``), else the pages capabilities say
    the cell has reserved -- what can be free at most.  0 where the cell lists other
    sizes but not this one; None where the snapshot does not say."""
    out: dict[int, int | None] = {}
    for c in dst.cells:
        ps = next((x for x in c.pages if x.size_kib == size), None)
        out[c.id] = 0 if ps is None else (ps.free if free else ps.total)
    return out


def _hugepages_fit(g: Domain, dst: Host, size: int, pages: dict[int, int],
                   bound: str) -> tuple[Verdict | None, int]:
    """(blocked, pages counted) when ``pages`` per cell cannot hold the guest;
    (None, pages counted) when they can."""
    r = "hugepages"
    needed = -(-g.memory_kib // size)
    strict = g.numatune_mode in ("strict", "restrictive")
    if g.vnuma_cells and strict:
        # Each guest cell takes its pages from one host cell.
        pool = sorted(pages.values(), reverse=True)
        for _, _, mem in sorted(g.vnuma_cells, key=lambda c: c[2], reverse=True):
            want = -(-mem // size)
            for i, f in enumerate(pool):
                if f >= want:
                    del pool[i]
                    break
            else:
                return _v(r, BLOCKED, "insufficient-per-cell",
                          f"{dst.name} has no NUMA cell with {want} {bound} {size} KiB pages "
                          f"for a guest cell of {g.name}"), 0
        return None, 0
    if strict and g.numatune_nodes:
        have = sum(pages.get(n, 0) for n in g.numatune_nodes)
        where = f"cells {_cpuset(g.numatune_nodes)}"
    else:
        have = sum(pages.values())
        where = "all cells"
    if have < needed:
        return _v(r, BLOCKED, "insufficient",
                  f"{dst.name} has {have} {bound} {size} KiB pages in {where}; {g.name} needs "
                  f"{needed}"), have
    return None, have


def hugepages(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "hugepages"
    if not g.hugepages_kib:
        return _v(r, OK, "not-applicable", "not backed by huge pages")
    size = _page_size(g.hugepages_kib[0], dst)
    offered = set(dst.page_sizes_kib or ()) | {ps.size_kib for c in dst.cells for ps in c.pages}
    if offered and size not in offered:
        # capabilities list every page size the host has (<host><cpu><pages>)
        return _v(r, BLOCKED, "no-such-size",
                  f"{dst.name} offers no {size} KiB pages (its capabilities list "
                  f"{', '.join(str(x) for x in sorted(offered))} KiB)")
    if not dst.cells:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: NUMA cells and huge pages not in the snapshot")
    reserved = _pages(dst, size, free=False)
    if all(v is not None for v in reserved.values()):
        # free pages can only be fewer than the reserved ones capabilities count
        short, _ = _hugepages_fit(g, dst, size, {k: v or 0 for k, v in reserved.items()},
                                  "reserved")
        if short is not None:
            return short
    free = _pages(dst, size, free=True)
    if any(v is None for v in free.values()):
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: free {size} KiB huge pages not in the snapshot")
    short, have = _hugepages_fit(g, dst, size, {k: v or 0 for k, v in free.items()}, "free")
    if short is not None:
        return short
    if g.vnuma_cells and g.numatune_mode in ("strict", "restrictive"):
        return _v(r, OK, "ok", f"free {size} KiB pages in enough cells of {dst.name}")
    return _v(r, OK, "ok", f"{have} free {size} KiB pages for {-(-g.memory_kib // size)}")


# --- devices and storage ----------------------------------------------------------------------


def disk_locality(d: Disk, src: Host) -> bool | None:
    """True: local to the source (must be copied), False: shared, None: unknown."""
    if d.source_type == "network":
        return False
    if src.pools is None:
        return None
    if d.source_type == "volume":
        pool = next((pl for pl in src.pools if pl.name == d.pool), None)
        return None if pool is None or pool.shared is None else not pool.shared
    if d.source is None:
        return False  # empty drive: nothing to copy
    for pl in src.pools:
        if pl.target and (d.source == pl.target or d.source.startswith(pl.target.rstrip("/") + "/")):
            return None if pl.shared is None else not pl.shared
    # Not inside any pool the host declares: a plain local path.
    return True


def local_storage(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "local-storage"
    local: list[Disk] = []
    media: list[Disk] = []  # read-only images: not copied, must exist on the destination
    unknown: list[Disk] = []
    for d in g.disks:
        if d.device == "cdrom" and d.source is None:
            continue
        loc = disk_locality(d, src)
        if loc is None:
            unknown.append(d)
        elif loc and (d.readonly or d.device in ("cdrom", "floppy")):
            media.append(d)
        elif loc:
            local.append(d)
    if unknown:
        return _v(r, UNKNOWN, "unknown",
                  f"cannot tell whether {', '.join(d.target for d in unknown)} of {g.name} are on "
                  f"shared storage ({src.name}: storage pools not in the snapshot or pool type unknown)")
    need_media = (f"; read-only {', '.join(f'{d.target} ({d.source})' for d in media)} must "
                  f"exist at the same path on {dst.name}") if media else ""
    if not local:
        if media:
            return _v(r, WARN, "media", need_media[2:].capitalize())
        return _v(r, OK, "shared", "all disks on shared or network storage")
    sizes = [d.size_bytes for d in local]
    total = sum(s for s in sizes if s is not None)
    size_txt = f"{total} bytes" + (" (some sizes unknown)" if None in sizes else "")
    if None in sizes and not total:
        size_txt = "an unknown number of bytes"
    disks = ", ".join(f"{d.target} ({d.source})" for d in local)
    if not p.allow_block_migration:
        return _v(r, BLOCKED, "local",
                  f"{g.name} has local disks {disks}; block migration is not allowed by policy")
    # libvirt copies writable local disks (--copy-storage-all) while the guest runs.
    return _v(r, WARN, "block-migration",
              f"{g.name} has local disks {disks}: block migration copies {size_txt}{need_media}")


def hostdev(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "hostdev"
    # An interface on a network with <forward mode='hostdev'> is an SR-IOV VF assigned to
    # the guest (libvirt counts it as a hostdev, and refuses to migrate it) like a
    # <interface type='hostdev'>.
    vf_nets = [n for n in g.networks if n in (src.hostdev_networks or ())]
    devs = ", ".join([*(f"{h.kind} {h.address}" if h.address else h.kind for h in g.hostdevs),
                      *(f"SR-IOV VF of network {n}" for n in vf_nets)])
    if not devs:
        if g.networks and src.hostdev_networks is None:
            return _v(r, WARN, "networks-unknown",
                      f"{g.name} uses networks {', '.join(g.networks)}: {src.name}'s networks "
                      "are not in the snapshot, so whether one hands out SR-IOV VFs "
                      "(forward mode='hostdev', not migratable) is not known")
        return _v(r, OK, "none", "no host devices")
    # QEMU cannot move a device's hardware state: any assigned device blocks migration.
    return _v(r, BLOCKED, "assigned",
              f"{g.name} has host devices assigned ({devs}): detach them before migrating")


def machine_type(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "machine-type"
    if g.machine is None:
        return _v(r, UNKNOWN, "unknown", f"machine type of {g.name} unknown")
    if dst.machine_types is None:
        return _v(r, UNKNOWN, "unknown", f"{dst.name}: machine types not in the snapshot")
    if g.machine not in dst.machine_types:
        return _v(r, BLOCKED, "unsupported",
                  f"{dst.name}'s QEMU does not offer machine type {g.machine}")
    return _v(r, OK, "ok", f"{dst.name} offers {g.machine}")


def parse_version(v: str) -> tuple[int, ...] | None:
    parts = []
    for x in v.split("."):
        digits = "".join(ch for ch in x if ch.isdigit())
        if not digits:
            return None
        parts.append(int(digits))
    return tuple(parts)


def version_older(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog) -> Verdict:
    r = "version-older"
    problems: list[tuple[Status, str]] = []
    missing: list[str] = []
    for what, a, b, status in (("QEMU", src.qemu_version, dst.qemu_version, BLOCKED),
                               ("libvirt", src.libvirt_version, dst.libvirt_version, WARN)):
        if a is None or b is None:
            missing.append(f"{what} version of {src.name if a is None else dst.name}")
            continue
        va, vb = parse_version(a), parse_version(b)
        if va is None or vb is None:
            missing.append(f"{what} version ({a!r} / {b!r} unparsable)")
            continue
        if vb < va:
            problems.append((status, f"{what} {b} on {dst.name} is older than {a} on {src.name}"))
    said = "; ".join(msg for _, msg in problems)
    if any(status == BLOCKED for status, _ in problems):
        # Nova refuses too (DestinationHypervisorTooOld): QEMU cannot load state
        # from a newer QEMU reliably.
        return _v(r, BLOCKED, "older", said)
    if problems:
        return _v(r, WARN, "older-libvirt", said)
    if missing:
        return _v(r, UNKNOWN, "unknown", "not in the snapshot: " + ", ".join(missing))
    return _v(r, OK, "ok", "destination versions not older")


#: Rules that depend on what a guest asks and on the two hosts' classes (CPU,
#: platform, versions): evaluated once per (guest shape, source class,
#: destination class) at scale.
CLASS_RULES: tuple[Rule, ...] = (
    cpu_arch, cpu_vendor, hypervisor_type, cpu_features, cpu_passthrough, tsc_frequency,
    machine_type, version_older,
)
#: Rules that depend on the guest and its source only: evaluated once per guest.
GUEST_RULES: tuple[Rule, ...] = (local_storage, hostdev, nested_virt)
#: Rules that depend on the destination's current load: evaluated per host.
CAPACITY_RULES: tuple[Rule, ...] = (memory, vcpus, pinned_cpus, numa_cells, hugepages)
RULES: tuple[Rule, ...] = CLASS_RULES + GUEST_RULES + CAPACITY_RULES


def same_host(g: Domain, src: Host, dst: Host) -> Verdict | None:
    if src.name == dst.name:
        return _v("destination", BLOCKED, "same-host", f"{g.name} already runs on {dst.name}")
    if src.host_uuid is not None and src.host_uuid == dst.host_uuid:
        # libvirt identifies hosts by this UUID: "Attempt to migrate guest to the same host"
        return _v("destination", BLOCKED, "same-host",
                  f"{dst.name} has the host UUID of {src.name} ({src.host_uuid}): libvirt "
                  "refuses to migrate a guest to the same host")
    return None


def assess(g: Domain, src: Host, dst: Host, p: Policy, cat: Catalog,
           rules: Sequence[Rule] = RULES) -> Assessment:
    """Every rule for moving ``g`` from ``src`` to ``dst``."""
    verdicts = [rule(g, src, dst, p, cat) for rule in rules]
    s = same_host(g, src, dst)
    if s is not None:
        verdicts.insert(0, s)
    return Assessment(g.name, src.name, dst.name, tuple(verdicts))
