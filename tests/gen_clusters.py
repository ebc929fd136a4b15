"""Seeded random clusters and guest CPUs for the differential tests.

Host CPUs look like ``virsh capabilities`` prints them (arch, model, vendor,
often microcode/signature/counter/topology/maxphysaddr, then features, then
pages); guest CPUs like the ``<cpu>`` of a domain XML (mode, match, check,
feature policies).  Every case is a pure function of its seed, so a failing
case is reproduced by its seed alone: ``gen_cluster(seed, catalog)``.

Kinds of cluster (weights in ``CLUSTER_KINDS``):

* ``independent``: hosts of one vendor with random models and extra features;
* ``family``: one "real" feature set, each host losing a few features, its
  model and extra features decoded as libvirt's host decode would;
* ``shared-model``: every host has the same model (baseline keeps its name,
  fallback='forbid');
* ``identical``: the same CPU many times (a homogeneous cluster);
* ``vendorless``: vendor-less models (qemu64, kvm64, ...), with or without a vendor;
* ``missing-vendor``: some hosts without ``<vendor>``;
* ``hygon``: Dhyana hosts, sometimes with AMD EPYC ones;
* ``mixed-vendor``: Intel and AMD together (libvirt refuses);
* ``unknown-model`` / ``unknown-feature`` / ``duplicate-feature``: libvirt refuses;
* ``i686``: 32-bit hosts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from planner.cpu.catalog import Catalog, Model
from planner.cpu.engine import decode
from planner.errors import MigplanError

CLUSTER_KINDS: dict[str, int] = {
    "independent": 20,
    "family": 30,
    "shared-model": 12,
    "identical": 5,
    "vendorless": 6,
    "missing-vendor": 6,
    "hygon": 4,
    "mixed-vendor": 5,
    "unknown-model": 3,
    "unknown-feature": 3,
    "duplicate-feature": 2,
    "i686": 4,
}

POLICIES = ("force", "require", "optional", "disable", "forbid")
MATCHES = ("minimum", "exact", "strict")

_SIGS = {"Intel": (6, 85, 4), "AMD": (23, 1, 2), "Hygon": (24, 0, 1)}


@dataclass(frozen=True)
class Cluster:
    seed: int
    kind: str
    hosts: tuple[str, ...]  # one host <cpu> element each


@dataclass(frozen=True)
class ComparePair:
    seed: int
    kind: str
    host: str  # host <cpu> as in capabilities
    domain: str  # a domain XML holding the guest <cpu>
    guest: str  # that <cpu> element alone (what virsh sends to libvirt)


def models_of(cat: Catalog, vendor: str | None) -> list[Model]:
    return [m for m in cat.models if m.vendor == vendor]


def host_cpu_xml(model: str, vendor: str | None, features: Sequence[str], *,
                 arch: str = "x86_64", rng: random.Random | None = None) -> str:
    """A host ``<cpu>`` element as ``virsh capabilities`` prints it."""
    lines = [f"  <arch>{arch}</arch>", f"  <model>{model}</model>"]
    if vendor is not None:
        lines.append(f"  <vendor>{vendor}</vendor>")
    decorate = rng is not None and rng.random() < 0.6
    if decorate and rng is not None:
        fam, mod, step = _SIGS.get(vendor or "Intel", (6, 85, 4))
        lines.append(f"  <microcode version='{rng.randrange(1, 1 << 28)}'/>")
        lines.append(f"  <signature family='{fam}' model='{mod}' stepping='{step}'/>")
        lines.append(f"  <counter name='tsc' frequency='{rng.randrange(1, 4) * 1000000000}' "
                     "scaling='no'/>")
        cores = rng.choice((2, 4, 8, 16, 32))
        lines.append(f"  <topology sockets='1' dies='1' cores='{cores}' threads='2'/>")
        lines.append("  <maxphysaddr mode='emulate' bits='46'/>")
    lines += [f"  <feature name={quoteattr(f)}/>" for f in features]
    if decorate:
        lines += ["  <pages unit='KiB' size='4'/>", "  <pages unit='KiB' size='2048'/>",
                  "  <pages unit='KiB' size='1048576'/>"]
    return "<cpu>\n" + "\n".join(lines) + "\n</cpu>\n"


def _extras(rng: random.Random, cat: Catalog, model: Model | None, k: int) -> list[str]:
    have = set(model.features) if model else set()
    pool = [f.name for f in cat.features if f.name not in have]
    return rng.sample(pool, min(k, len(pool)))


def _random_host(rng: random.Random, cat: Catalog, vendor: str | None, *,
                 vendor_tag: str | None = "same", arch: str = "x86_64",
                 model: Model | None = None) -> str:
    model = model or rng.choice(models_of(cat, vendor))
    tag = vendor if vendor_tag == "same" else vendor_tag
    feats = _extras(rng, cat, model, rng.choice((0, 1, 3, 8, 20)))
    return host_cpu_xml(model.name, tag, feats, arch=arch, rng=rng)


def _decoded_host(rng: random.Random, cat: Catalog, vendor: str, data: int) -> str | None:
    """The host CPU libvirt's capabilities would print for feature bits ``data``
    (x86Decode for a host CPU: no disabled features, no removed ones)."""
    try:
        dec = decode(data, vendor, cat, cpu_type="host")
    except MigplanError:
        return None
    return host_cpu_xml(dec.model, vendor, [f.name for f in dec.features], rng=rng)


def _family(rng: random.Random, cat: Catalog, vendor: str, n: int) -> list[str]:
    base_model = rng.choice([m for m in models_of(cat, vendor) if len(m.features) > 20]
                            or models_of(cat, vendor))
    names = list(base_model.features) + _extras(rng, cat, base_model, rng.randrange(5, 40))
    hosts: list[str] = []
    variants = [names]
    for _ in range(rng.choice((1, 2, 3, 5))):
        drop = set(rng.sample(names, rng.choice((0, 1, 2, 5, 12))))
        variants.append([f for f in names if f not in drop])
    for _ in range(n):
        v = rng.choice(variants)
        xml = _decoded_host(rng, cat, vendor, cat.mask_of(v))
        hosts.append(xml or _random_host(rng, cat, vendor, model=base_model))
    return hosts


def gen_cluster(seed: int, cat: Catalog) -> Cluster:
    rng = random.Random(seed)
    kind = rng.choices(list(CLUSTER_KINDS), weights=list(CLUSTER_KINDS.values()))[0]
    n = rng.choice((2, 2, 3, 5, 8, 20, 50, rng.randrange(2, 201)))
    vendor = rng.choices(("Intel", "AMD", "Hygon"), weights=(6, 3, 1))[0]
    hosts: list[str]
    if kind == "independent":
        hosts = [_random_host(rng, cat, vendor) for _ in range(n)]
    elif kind == "family":
        hosts = _family(rng, cat, vendor if vendor != "Hygon" else "AMD", n)
    elif kind == "shared-model":
        model = rng.choice(models_of(cat, vendor))
        hosts = [_random_host(rng, cat, vendor, model=model) for _ in range(n)]
        if rng.random() < 0.3:  # no extras at all: model alone
            hosts = [host_cpu_xml(model.name, vendor, []) for _ in range(n)]
    elif kind == "identical":
        hosts = [_random_host(rng, cat, vendor)] * n
    elif kind == "vendorless":
        tag = rng.choice((None, "same"))
        hosts = [_random_host(rng, cat, None, vendor_tag=tag if tag is None else vendor,
                              model=rng.choice(models_of(cat, None))) for _ in range(n)]
        if rng.random() < 0.5:  # with vendor hosts of a real model too
            hosts.insert(rng.randrange(len(hosts) + 1), _random_host(rng, cat, vendor))
    elif kind == "missing-vendor":
        hosts = [_random_host(rng, cat, vendor, vendor_tag=rng.choice(("same", None)))
                 for _ in range(n)]
    elif kind == "hygon":
        hosts = [_random_host(rng, cat, "Hygon") for _ in range(n)]
        if rng.random() < 0.5:
            hosts.insert(rng.randrange(len(hosts) + 1), _random_host(rng, cat, "AMD"))
    elif kind == "mixed-vendor":
        hosts = [_random_host(rng, cat, rng.choice(("Intel", "AMD"))) for _ in range(n)]
        hosts[rng.randrange(n)] = _random_host(rng, cat, "Intel")
        hosts[rng.randrange(n)] = _random_host(rng, cat, "AMD")
        if rng.random() < 0.3:  # vendor tag contradicting the model's vendor
            m = rng.choice(models_of(cat, "Intel"))
            hosts[rng.randrange(n)] = host_cpu_xml(m.name, "AMD", [])
    elif kind == "unknown-model":
        hosts = [_random_host(rng, cat, vendor) for _ in range(n)]
        hosts[rng.randrange(n)] = host_cpu_xml(
            rng.choice(("Skylake-Future", "EPYC-Zen9", "kvm128")), vendor, [])
    elif kind == "unknown-feature":
        hosts = [_random_host(rng, cat, vendor) for _ in range(n)]
        m = rng.choice(models_of(cat, vendor))
        hosts[rng.randrange(n)] = host_cpu_xml(
            m.name, vendor, _extras(rng, cat, m, 2) + [rng.choice(("avx1024", "frobnicate"))])
    elif kind == "duplicate-feature":
        hosts = [_random_host(rng, cat, vendor) for _ in range(n)]
        m = rng.choice(models_of(cat, vendor))
        f = _extras(rng, cat, m, 3)
        hosts[rng.randrange(n)] = host_cpu_xml(m.name, vendor, f + f[:1])
    elif kind == "i686":
        hosts = [_random_host(rng, cat, vendor, arch="i686") for _ in range(n)]
    else:  # pragma: no cover
        raise AssertionError(kind)
    return Cluster(seed, kind, tuple(hosts))


# -- guest CPUs (domain XML) for compare -----------------------------------
GUEST_KINDS: dict[str, int] = {
    "near-host": 40,  # host's model or a neighbour, policies on host/other features
    "baseline-like": 15,  # match=exact model + required features, like a baseline result
    "host-as-guest": 8,  # a host <cpu> (with <arch>): libvirt parses it as a host CPU
    "other-vendor": 8,
    "no-model": 5,  # host-model / host-passthrough: nothing to check but features
    "unknown-name": 6,
    "strict": 10,
    "random": 8,
}


def guest_cpu_xml(rng: random.Random, cat: Catalog, host_model: Model, host_feats: list[str],
                  kind: str) -> str:
    vendor = host_model.vendor
    if kind == "host-as-guest":
        m = rng.choice([host_model, *models_of(cat, vendor)])
        return host_cpu_xml(m.name, vendor, _extras(rng, cat, m, rng.choice((0, 2, 5))))
    mode = "custom"
    match = rng.choice(MATCHES)
    if kind == "strict":
        match = "strict"
    if kind == "no-model":
        mode = rng.choice(("host-model", "host-passthrough"))
    model: Model | None = None
    if kind in ("near-host", "strict", "baseline-like"):
        idx = cat.models.index(host_model)
        near = [m for m in cat.models[max(0, idx - 4): idx + 3] if m.vendor in (vendor, None)]
        model = rng.choice([host_model, host_model, *near])
    elif kind == "other-vendor":
        model = rng.choice([m for m in cat.models if m.vendor and m.vendor != vendor])
    elif kind in ("random", "unknown-name"):
        model = rng.choice(cat.models)
    attrs = f" mode='{mode}'"
    if mode == "custom" and rng.random() < 0.9:
        attrs += f" match='{match}'"
    if rng.random() < 0.3:
        attrs += f" check='{rng.choice(('none', 'partial', 'full'))}'"
    lines: list[str] = []
    model_name = model.name if model else None
    if kind == "unknown-name" and rng.random() < 0.5:
        model_name = "Sapphire-Future"
    if model_name and mode == "custom":
        fb = rng.choice(("", " fallback='allow'", " fallback='forbid'"))
        lines.append(f"<model{fb}>{model_name}</model>")
        if kind == "other-vendor" or rng.random() < 0.3:
            vend = model.vendor if model else None
            if kind == "other-vendor" and rng.random() < 0.5:
                vend = vendor
            if vend:
                lines.append(f"<vendor>{vend}</vendor>")
    pool = list(dict.fromkeys(host_feats + (list(model.features) if model else [])
                              + _extras(rng, cat, model, 10)))
    k = rng.choice((0, 1, 3, 6, 12)) if kind != "baseline-like" else rng.choice((0, 5, 15))
    chosen = rng.sample(pool, min(k, len(pool)))
    if kind == "unknown-name" and model_name != "Sapphire-Future":
        chosen.append("avx1024")
    for f in chosen:
        pol = "require" if kind == "baseline-like" else rng.choice(POLICIES)
        if rng.random() < 0.1 and kind != "baseline-like":
            lines.append(f"<feature name='{f}'/>")  # no policy: require
        else:
            lines.append(f"<feature policy='{pol}' name='{f}'/>")
    if mode != "custom" and not chosen and rng.random() < 0.5:
        return f"<cpu{attrs}/>"
    body = "".join(f"\n    {line}" for line in lines)
    return f"<cpu{attrs}>{body}\n  </cpu>" if lines else f"<cpu{attrs}>\n  </cpu>"


def domain_xml(rng: random.Random, cpu: str) -> str:
    return (
        f"<domain type='kvm'>\n  <name>guest-{rng.randrange(10000)}</name>\n"
        "  <memory unit='KiB'>1048576</memory>\n  <vcpu>2</vcpu>\n"
        "  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>\n"
        f"  {cpu}\n</domain>\n"
    )


def gen_compare_pair(seed: int, cat: Catalog) -> ComparePair:
    rng = random.Random(seed)
    kind = rng.choices(list(GUEST_KINDS), weights=list(GUEST_KINDS.values()))[0]
    vendor = rng.choices(("Intel", "AMD", "Hygon", None), weights=(6, 3, 1, 1))[0]
    host_model = rng.choice(models_of(cat, vendor))
    host_feats = _extras(rng, cat, host_model, rng.choice((0, 2, 6, 15, 30)))
    host = host_cpu_xml(host_model.name, vendor, host_feats, rng=rng)
    guest = guest_cpu_xml(rng, cat, host_model, host_feats, kind)
    return ComparePair(seed, kind, host, domain_xml(rng, guest), guest)


# -- malformed CPU XML: every check of virCPUDefParseXML --------------------
_H = "<arch>x86_64</arch><model>Haswell</model><vendor>Intel</vendor>"

#: Host <cpu> elements libvirt's parser has an opinion on (most refuse).
MALFORMED_HOSTS: dict[str, str] = {
    "no-arch": "<cpu><model>Haswell</model><vendor>Intel</vendor></cpu>",
    "empty-arch": "<cpu><arch></arch><model>Haswell</model></cpu>",
    "unknown-arch": "<cpu><arch>sparc9</arch><model>Haswell</model></cpu>",
    "no-model": "<cpu><arch>x86_64</arch><vendor>Intel</vendor></cpu>",
    "empty-model": "<cpu><arch>x86_64</arch><model></model><vendor>Intel</vendor></cpu>",
    "unknown-vendor": "<cpu><arch>x86_64</arch><model>Haswell</model><vendor>Zhaoxin</vendor></cpu>",
    "unknown-vendor-vendorless-model":
        "<cpu><arch>x86_64</arch><model>qemu64</model><vendor>Zhaoxin</vendor></cpu>",
    "mode-on-host": "<cpu mode='custom'><arch>x86_64</arch><model>Haswell</model></cpu>",
    "migratable-on-host": "<cpu migratable='on'><arch>x86_64</arch><model>Haswell</model></cpu>",
    "feature-without-name": f"<cpu>{_H}<feature/></cpu>",
    "feature-empty-name": f"<cpu>{_H}<feature name=''/></cpu>",
    "policy-ignored-on-host": f"<cpu>{_H}<feature policy='disable' name='vmx'/></cpu>",
    "bad-policy-ignored-on-host": f"<cpu>{_H}<feature policy='bogus' name='vmx'/></cpu>",
    "duplicate-feature": f"<cpu>{_H}<feature name='vmx'/><feature name='vmx'/></cpu>",
    "signature-not-a-number": f"<cpu>{_H}<signature family='x' model='1' stepping='1'/></cpu>",
    "signature-family-zero": f"<cpu>{_H}<signature family='0' model='1' stepping='1'/></cpu>",
    "signature-incomplete": f"<cpu>{_H}<signature family='6' model='1'/></cpu>",
    "microcode-not-a-number": f"<cpu>{_H}<microcode version='x'/></cpu>",
    "microcode-negative": f"<cpu>{_H}<microcode version='-1'/></cpu>",
    "counter-without-frequency": f"<cpu>{_H}<counter name='tsc' scaling='yes'/></cpu>",
    "counter-bad-frequency": f"<cpu>{_H}<counter name='tsc' frequency='abc'/></cpu>",
    "counter-bad-scaling": f"<cpu>{_H}<counter name='tsc' frequency='1' scaling='maybe'/></cpu>",
    "counter-not-tsc": f"<cpu>{_H}<counter name='other' frequency='x'/></cpu>",
    "topology-zero": f"<cpu>{_H}<topology sockets='0' cores='1' threads='1'/></cpu>",
    "topology-negative": f"<cpu>{_H}<topology sockets='-1' cores='1' threads='1'/></cpu>",
    "topology-plus-blank": f"<cpu>{_H}<topology sockets=' +2' cores='1' threads='1'/></cpu>",
    "topology-trailing-blank": f"<cpu>{_H}<topology sockets='2 ' cores='1' threads='1'/></cpu>",
    "topology-hex": f"<cpu>{_H}<topology sockets='0x2' cores='1' threads='1'/></cpu>",
    "topology-overflow":
        f"<cpu>{_H}<topology sockets='4294967296' cores='1' threads='1'/></cpu>",
    "topology-dies-zero": f"<cpu>{_H}<topology sockets='1' dies='0' cores='1' threads='1'/></cpu>",
    "topology-no-sockets": f"<cpu>{_H}<topology cores='1' threads='1'/></cpu>",
    "cache-level": f"<cpu>{_H}<cache level='9' mode='emulate'/></cpu>",
    "cache-level-negative": f"<cpu>{_H}<cache level='-1' mode='emulate'/></cpu>",
    "cache-level-text": f"<cpu>{_H}<cache level='x' mode='emulate'/></cpu>",
    "cache-mode": f"<cpu>{_H}<cache mode='bogus'/></cpu>",
    "cache-no-mode": f"<cpu>{_H}<cache level='2'/></cpu>",
    "cache-twice": f"<cpu>{_H}<cache mode='emulate'/><cache mode='emulate'/></cpu>",
    "maxphysaddr-mode": f"<cpu>{_H}<maxphysaddr mode='bogus'/></cpu>",
    "maxphysaddr-no-mode": f"<cpu>{_H}<maxphysaddr bits='3'/></cpu>",
    "maxphysaddr-bits": f"<cpu>{_H}<maxphysaddr mode='emulate' bits='-3'/></cpu>",
    "fallback-ignored-on-host": "<cpu><arch>x86_64</arch><model fallback='bogus'>Haswell</model></cpu>",
    "features-without-model": "<cpu><arch>x86_64</arch><feature name='vmx'/></cpu>",
    "two-models": "<cpu><arch>x86_64</arch><model>Haswell</model><model>Broadwell</model></cpu>",
    "not-a-cpu": "<host><arch>x86_64</arch><model>Haswell</model></host>",
}

#: Guest <cpu> elements (domain XML) for compare.
MALFORMED_GUESTS: dict[str, str] = {
    "bad-check": "<cpu mode='custom' match='exact' check='bogus'><model>Haswell</model></cpu>",
    "check-default": "<cpu check='default'><model>Haswell</model></cpu>",
    "bad-match": "<cpu match='bogus'><model>Haswell</model></cpu>",
    "empty-match": "<cpu match=''><model>Haswell</model></cpu>",
    "bad-mode": "<cpu mode='bogus'><model>Haswell</model></cpu>",
    "migratable-on-custom": "<cpu migratable='on'><model>Haswell</model></cpu>",
    "bad-migratable": "<cpu mode='host-passthrough' migratable='maybe'/>",
    "migratable-absent": "<cpu mode='host-passthrough' migratable='absent'/>",
    "passthrough-migratable": "<cpu mode='host-passthrough' migratable='on'/>",
    "arch-with-match": "<cpu match='exact'><arch>x86_64</arch><model>Haswell</model></cpu>",
    "arch-with-mode": "<cpu mode='custom'><arch>x86_64</arch><model>Haswell</model></cpu>",
    "features-without-model": "<cpu><feature policy='require' name='vmx'/></cpu>",
    "host-model-features": "<cpu mode='host-model'><feature policy='require' name='vmx'/></cpu>",
    "passthrough-model": "<cpu mode='host-passthrough'><model>Haswell</model></cpu>",
    "vendor-without-model": "<cpu><vendor>Intel</vendor></cpu>",
    "bad-policy": "<cpu><model>Haswell</model><feature policy='bogus' name='vmx'/></cpu>",
    "feature-without-name": "<cpu><model>Haswell</model><feature policy='require'/></cpu>",
    "duplicate-feature": "<cpu><model>Haswell</model><feature policy='require' name='vmx'/>"
                         "<feature policy='disable' name='vmx'/></cpu>",
    "bad-fallback": "<cpu><model fallback='bogus'>Haswell</model></cpu>",
    "vendor-id-short": "<cpu><model vendor_id='abc'>Haswell</model></cpu>",
    "vendor-id-comma": "<cpu><model vendor_id='Genuine,ntel'>Haswell</model></cpu>",
    "vendor-id-ok": "<cpu><model vendor_id='GenuineIntel'>Haswell</model></cpu>",
    "empty": "<cpu/>",
    "maximum": "<cpu mode='maximum'/>",
    "i686-host-cpu": "<cpu><arch>i686</arch><model>Haswell</model></cpu>",
    "other-vendor": "<cpu><model>Haswell</model><vendor>AMD</vendor></cpu>",
    "unknown-vendor": "<cpu><model>Haswell</model><vendor>Zhaoxin</vendor></cpu>",
    "bad-topology": "<cpu><model>Haswell</model><topology sockets='1' cores='2' threads='x'/></cpu>",
    "numa": "<cpu><model>Haswell</model><numa><cell id='0' cpus='0' memory='1024'/></numa></cpu>",
    "unknown-model": "<cpu><model>Sapphire-Future</model></cpu>",
    "unknown-feature": "<cpu><model>Haswell</model><feature policy='optional' name='avx1024'/></cpu>",
}

#: Hosts the malformed guests are compared with.
COMPARE_HOSTS: dict[str, str] = {
    "intel": f"<cpu>{_H}<feature name='vmx'/></cpu>",
    "no-vendor": "<cpu><arch>x86_64</arch><model>Haswell</model></cpu>",
    "vendorless-model": "<cpu><arch>x86_64</arch><model>qemu64</model></cpu>",
}
