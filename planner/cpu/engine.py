"""The CPU engine: libvirt 9.0's x86 baseline, decode, expansion and compare on bitsets.

Reference: libvirt 9.0 src/cpu/cpu_x86.c.  Function names in comments are
libvirt's, so a reader can hold the two side by side.  No libvirt import: the
engine runs offline on a laptop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.cpu.catalog import Catalog, Model
from planner.cpu.cpudef import CpuDef, CpuFeature
from planner.errors import CpuError

X86_ARCHES = ("x86_64", "i686")

#: Features the QEMU driver never passes to QEMU (virQEMUCapsCPUFilterFeatures).
QEMU_FILTERED_FEATURES = frozenset({"cmt", "mbm_total", "mbm_local", "osxsave", "ospke"})

_BASE_PENALTY = 2


def cpu_mask(cpu: CpuDef, cat: Catalog, policy: str | None = None) -> int:
    """x86ModelFromCPU: the bits a CPU definition describes.

    ``policy`` None means "all features": model + require/force - disable/forbid
    (optional ignored).  A policy name returns only the features with that policy
    (and the model's bits for "require").  Host CPUs only carry required features.
    """
    if cpu.type == "host" and policy not in (None, "require"):
        return 0
    mask = 0
    if cpu.model is not None and policy in (None, "require"):
        model = cat.model_by_name.get(cpu.model)
        if model is None:
            raise CpuError(f"Unknown CPU model {cpu.model}")
        mask = model.mask
    if cpu.type == "host":
        # Host features carry no policy: all are required.  The loop a
        # baseline of 100,000 distinct host CPUs runs 1.2 million times.
        by_name = cat.feature_by_name
        for f in cpu.features:
            feat = by_name.get(f.name)
            if feat is None:
                raise CpuError(f"Unknown CPU feature {f.name}")
            mask |= feat.mask
        return mask
    for f in cpu.features:
        fpol = f.policy or "require"
        if (policy is None and fpol == "optional") or (policy is not None and fpol != policy):
            continue
        feat = cat.feature_by_name.get(f.name)
        if feat is None:
            raise CpuError(f"Unknown CPU feature {f.name}")
        if policy is None and fpol in ("disable", "forbid"):
            mask &= ~feat.mask
        else:
            mask |= feat.mask
    return mask


@dataclass(frozen=True)
class Decoded:
    model: str
    vendor: str | None
    features: tuple[CpuFeature, ...]


def _data_to_cpu(data: int, cand: Model, cat: Catalog, cpu_type: str) -> list[CpuFeature]:
    """x86DataToCPU: features to add and to disable on top of ``cand``."""
    extra = data & ~cand.mask
    missing = cand.mask & ~data
    feats = [CpuFeature(n, "require") for n in cat.take_features(extra)]
    feats += [CpuFeature(n, "disable") for n in cat.take_features(missing)]
    if cpu_type == "guest" and cand.removed:
        # virCPUx86DisableRemovedFeatures: removed features are always listed.
        have = {f.name for f in feats}
        for r in cand.removed:
            if r not in have:
                feats.append(CpuFeature(r, "disable"))
                have.add(r)
    return feats


def _feature_score(feats: Sequence[CpuFeature], cpu_type: str) -> tuple[int, int]:
    """Length of a candidate's feature list with disabled features penalised.

    Mirrors virCPUx86CompareCandidateFeatureList exactly, including its loop
    bound shrinking while it counts (so trailing disabled features can be
    skipped): answers must equal libvirt's, quirks included.
    """
    n = len(feats)
    if cpu_type == "host":
        return n, 0
    enabled = n
    disabled = 0
    penalty = _BASE_PENALTY
    i = 0
    while i < enabled:
        if feats[i].policy == "disable":
            enabled -= 1
            disabled += penalty
            penalty += 1
        i += 1
    return enabled + disabled, disabled


def _use_candidate(
    current: Model | None,
    cur_feats: list[CpuFeature] | None,
    cand: Model,
    cand_feats: list[CpuFeature],
    cpu_type: str,
    signature: tuple[int, int, int] | None,
    preferred: Sequence[str],
) -> int:
    """x86DecodeUseCandidate: 0 keep current, 1 take candidate, 2 take and stop."""
    if cpu_type == "host" and not cand.decode_host:
        return 0
    if cpu_type == "guest" and not cand.decode_guest:
        return 0
    if cpu_type == "host":
        if any(f.policy == "disable" for f in cand_feats):
            return 0
        cand_feats[:] = [CpuFeature(f.name, None) for f in cand_feats]
    is_pref = False
    if preferred:
        is_pref = cand.name in preferred
        if is_pref and len(preferred) == 1:
            return 2
    if current is None or cur_feats is None:
        return 1
    if signature is not None:
        cur_sig = current.has_signature(*signature)
        cand_sig = cand.has_signature(*signature)
        if cur_sig and not cand_sig:
            return 0
        if not cur_sig and cand_sig:
            return 1
    cur_len, cur_dis = _feature_score(cur_feats, cpu_type)
    cand_len, cand_dis = _feature_score(cand_feats, cpu_type)
    if cand_len < cur_len or (cand_len == cur_len and cand_dis < cur_dis):
        return 1
    if is_pref and cand_dis < cur_dis:
        return 1
    return 0


def decode(
    data: int,
    vendor: str | None,
    cat: Catalog,
    *,
    cpu_type: str = "guest",
    preferred: Sequence[str] = (),
    migratable: bool = False,
    signature: tuple[int, int, int] | None = None,
    usable_models: Sequence[str] | None = None,
) -> Decoded:
    """x86Decode: name the model libvirt would choose for feature bits ``data``.

    Models are tried newest first (catalog order reversed); the one giving the
    shortest feature list wins, a matching signature first, a single preferred
    model at once.  ``usable_models`` restricts the candidates as the QEMU
    driver does with its domain capabilities.
    """
    if signature == (0, 0, 0):
        signature = None
    if signature is not None and vendor == "Intel":
        fam, mod, step = signature
        # x86DataFilterTSX: drop broken TSX on these Haswell/Broadwell steppings.
        if fam == 6 and ((mod == 63 and step < 4) or mod in (60, 69, 70)):
            for name in ("hle", "rtm"):
                f = cat.feature_by_name.get(name)
                if f is not None:
                    data &= ~f.mask
    allowed = set(usable_models) if usable_models is not None else None
    best: Model | None = None
    best_feats: list[CpuFeature] | None = None
    for cand in reversed(cat.models):
        if allowed is not None and cand.name not in allowed:
            # A single preferred model the hypervisor does not allow is an error only for
            # a CPU with fallback='forbid'; baseline's CPU has libvirt's default 'allow'
            # (virCPUDefNew), so x86Decode warns and takes the closest allowed model.
            continue
        if vendor and cand.vendor and vendor != cand.vendor:
            continue
        feats = _data_to_cpu(data, cand, cat, cpu_type)
        rc = _use_candidate(best, best_feats, cand, feats, cpu_type, signature, preferred)
        if rc:
            best, best_feats = cand, feats
            if rc == 2:
                break
    if best is None or best_feats is None:
        raise CpuError("Cannot find suitable CPU model for given data")
    if migratable:
        best_feats = [f for f in best_feats if f.name not in cat.nonmigratable]
    return Decoded(best.name, vendor, tuple(best_feats))


def _check_arch(cpus: Sequence[CpuDef]) -> None:
    arch = cpus[0].arch
    if arch is None:
        raise CpuError("undefined hardware architecture")
    if arch not in X86_ARCHES:
        raise CpuError(f"migplan's CPU engine covers x86 only, not the {arch} architecture")
    for i, c in enumerate(cpus[1:], start=2):
        # libvirt only looks at the first CPU's arch; mixing architectures is
        # always an operator mistake, so migplan refuses it instead.
        if c.arch is not None and c.arch != arch:
            # ``source`` already says "FILE: CPU #n" when the CPU came from a file.
            raise CpuError(
                f"{c.source or f'CPU #{i}'} is {c.arch}, {cpus[0].source or 'CPU #1'} is "
                f"{arch}: cannot baseline CPUs of different architectures"
            )


def _intersect(cpus: Sequence[CpuDef], cat: Catalog) -> tuple[int, str | None, bool, list[str]]:
    """virCPUx86Baseline's loop: the bits every CPU has, their common vendor (checked as
    libvirt checks it), whether the answer names the vendor, and the models in order.

    One pass over up to 100,000 CPUs: kept in one function so that the per-CPU work is
    a dict lookup and an ``&=`` (see the comments on sharing by identity).
    """
    # Identical CPU definitions contribute identical bits: compute each once.
    masks: dict[tuple[object, ...], int] = {}

    def fast_key(c: CpuDef) -> tuple[object, ...]:
        # CpuDef.key() with the feature tuple by identity: the parser shares
        # equal feature tuples, and hashing thousands of feature lists is what
        # a 100,000-host baseline would otherwise spend its time on.  Equal
        # tuples that are distinct objects only cost a recomputation.
        return (c.type, c.arch, c.model, c.vendor, id(c.features), c.mode, c.match)

    def mask_for(c: CpuDef) -> int:
        k = fast_key(c)
        m = masks.get(k)
        if m is None:
            m = masks[k] = cpu_mask(c, cat)
        return m

    base = mask_for(cpus[0])
    first = cpus[0]
    output_vendor = True
    vendor: str | None = None
    if first.vendor is None:
        output_vendor = False
    elif first.vendor not in cat.vendors:
        raise CpuError(f"Unknown CPU vendor {first.vendor}")
    else:
        vendor = first.vendor

    names: list[str] = [first.model] if first.model else []
    seen_keys: set[tuple[object, ...]] = set()
    # The parser hands out one object per distinct <cpu>: skipping repeats by
    # identity first keeps 100,000 hosts from hashing 100,000 feature lists.
    unique = list({id(c): c for c in cpus[1:]}.values())
    for c in unique:
        k = fast_key(c)
        if k in seen_keys:
            continue  # identical to a CPU already folded in: same bits, same checks
        seen_keys.add(k)
        if c.model and c.model not in names:
            names.append(c.model)
        m = mask_for(c)
        model = cat.model_by_name[c.model] if c.model else None
        mvendor = model.vendor if model else None
        if c.vendor and mvendor and c.vendor != mvendor:
            raise CpuError(f"CPU vendor {mvendor} of model {c.model} differs from vendor {c.vendor}")
        vn: str | None
        if c.vendor:
            vn = c.vendor
        else:
            output_vendor = False
            vn = mvendor
        if vn:
            if vendor is None:
                if vn not in cat.vendors:
                    raise CpuError(f"Unknown CPU vendor {vn}")
                vendor = vn
            elif vendor != vn:
                raise CpuError("CPU vendors do not match")
        base &= m
    return base, vendor, output_vendor, names


def baseline(
    cpus: Sequence[CpuDef],
    cat: Catalog,
    *,
    migratable: bool = False,
    expand: bool = False,
    qemu: bool = False,
    features: Sequence[str] | None = None,
    usable_models: Sequence[str] | None = None,
) -> CpuDef:
    """virCPUBaseline + virCPUx86Baseline (+ virCPUExpandFeatures when ``expand``).

    ``qemu`` applies the QEMU driver's feature filter as ``virsh -c
    qemu:///system cpu-baseline`` does; without it the answer equals the
    generic one (``virsh -c test:///default cpu-baseline``).
    """
    if not cpus:
        raise CpuError("no CPUs given")
    for i, c in enumerate(cpus):
        if c.model is None:
            raise CpuError(f"no CPU model specified at index {i}")
    _check_arch(cpus)

    base, vendor, output_vendor, names = _intersect(cpus, cat)

    if features is not None:
        fm = 0
        for n in features:
            f = cat.feature_by_name.get(n)
            if f is not None:
                fm |= f.mask
        base &= fm

    if base == 0:
        raise CpuError("CPUs are incompatible")

    dec = decode(base, vendor, cat, preferred=names, migratable=migratable,
                 usable_models=usable_models)
    fallback = "forbid" if len(names) == 1 and dec.model == names[0] else "allow"
    feats = dec.features
    if qemu:
        feats = tuple(f for f in feats if f.name not in QEMU_FILTERED_FEATURES)
    result = CpuDef(
        type="guest",
        model=dec.model,
        vendor=dec.vendor if output_vendor else None,
        features=feats,
        mode="custom",
        match="exact",
        fallback=fallback,
    )
    if expand:
        result = expand_features(result, cat)
    return result


def expand_features(cpu: CpuDef, cat: Catalog) -> CpuDef:
    """virCPUx86ExpandFeatures + the name sort of virCPUExpandFeatures."""
    if cpu.model is None or cpu.model not in cat.model_by_name:
        raise CpuError(f"unknown CPU model {cpu.model}")
    model = cat.model_by_name[cpu.model]
    host = cpu.type == "host"
    pol: str | None = None if host else "require"
    out: dict[str, str | None] = {n: pol for n in cat.take_features(model.mask)}
    for f in cpu.features:
        if not host and f.policy not in ("require", "disable"):
            continue
        out[f.name] = None if host else f.policy
    if not host:
        for r in model.removed:
            out.setdefault(r, "disable")
    feats = tuple(CpuFeature(n, p) for n, p in sorted(out.items(), key=lambda kv: kv[0].encode()))
    return CpuDef(
        type=cpu.type,
        model=cpu.model,
        vendor=cpu.vendor,
        features=feats,
        arch=cpu.arch,
        mode=cpu.mode,
        match=cpu.match,
        check=cpu.check,
        fallback=cpu.fallback,
    )


@dataclass(frozen=True)
class Comparison:
    """Result of comparing a CPU with a host CPU (virCPUCompare)."""

    result: str  # "identical" | "superset" | "incompatible"
    message: str | None = None
    features: tuple[str, ...] = ()  # the features behind an incompatible result

    @property
    def compatible(self) -> bool:
        return self.result != "incompatible"


def compare(host: CpuDef, cpu: CpuDef, cat: Catalog) -> Comparison:
    """x86Compute: can a guest asking for ``cpu`` run on ``host``?

    "identical": the host provides exactly what the CPU asks; "superset": the
    host provides more; "incompatible": with the blocking features.
    """
    if host.model is None:
        return Comparison("incompatible", "unknown host CPU")
    if cpu.arch is not None and cpu.arch not in X86_ARCHES:
        return Comparison("incompatible", f"CPU arch {cpu.arch} does not match host arch")
    if cpu.vendor and (not host.vendor or cpu.vendor != host.vendor):
        return Comparison(
            "incompatible", f"host CPU vendor does not match required CPU vendor {cpu.vendor}"
        )
    host_m = cpu_mask(host, cat)
    force = cpu_mask(cpu, cat, "force")
    require = cpu_mask(cpu, cat, "require")
    optional = cpu_mask(cpu, cat, "optional")
    disable = cpu_mask(cpu, cat, "disable")
    forbid = cpu_mask(cpu, cat, "forbid")

    bad = forbid & host_m
    if bad:
        names = tuple(cat.features_in(bad))
        return Comparison(
            "incompatible", "Host CPU provides forbidden features: " + ", ".join(names), names
        )
    require &= ~(force | optional | disable)
    missing = require & ~host_m
    if missing:
        names = tuple(cat.features_in(missing))
        return Comparison(
            "incompatible",
            "Host CPU does not provide required features: " + ", ".join(names),
            names,
        )
    diff = host_m & ~(optional | require | disable | force)
    if not diff:
        return Comparison("identical")
    if cpu.type == "guest" and cpu.match == "strict":
        names = tuple(cat.features_in(diff))
        return Comparison(
            "incompatible",
            "Host CPU does not strictly match guest CPU: Extra features: " + ", ".join(names),
            names,
        )
    return Comparison("superset")
