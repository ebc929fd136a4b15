"""The x86 CPU model catalog: vendors, features (CPUID/MSR bits), models.

Loaded either from a generated catalog (``cpu_maps/x86.json``, libvirt 9.0;
``cpu_maps/x86-11.3.json``) or straight from a libvirt ``cpu_map`` directory of
libvirt 8.0 to 11.x (planner/cpu/cpu_map.py).

Every CPUID register bit and MSR bit named by the catalog gets a position in
one Python ``int``; a feature set is then a bitmask and libvirt's
``x86DataAdd/Subtract/Intersect/IsSubset`` become ``| & ~`` on ints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from planner.cpu.versions import NameTable
from planner.errors import InputError

CPUID_REGS = ("eax", "ebx", "ecx", "edx")
MSR_REGS = ("eax", "edx")


@dataclass(frozen=True)
class DataItem:
    """One CPUID leaf/sub-leaf or MSR index with register values."""

    kind: str  # "cpuid" | "msr"
    leaf: int  # eax_in for cpuid, index for msr
    subleaf: int  # ecx_in for cpuid, 0 for msr
    regs: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "cpuid":
            out["eax_in"] = f"0x{self.leaf:08x}"
            out["ecx_in"] = f"0x{self.subleaf:08x}"
        else:
            out["index"] = f"0x{self.leaf:08x}"
        for reg, val in self.regs:
            out[reg] = f"0x{val:08x}"
        return out


@dataclass(frozen=True)
class Signature:
    family: int
    model: int
    steppings: frozenset[int] | None  # None: any stepping

    def matches(self, family: int, model: int, stepping: int) -> bool:
        return (
            self.family == family
            and self.model == model
            and (self.steppings is None or stepping in self.steppings)
        )


@dataclass(frozen=True)
class Feature:
    name: str
    items: tuple[DataItem, ...]
    migratable: bool
    mask: int


@dataclass(frozen=True)
class Model:
    name: str
    vendor: str | None
    signatures: tuple[Signature, ...]
    decode_host: bool
    decode_guest: bool
    mask: int
    features: tuple[str, ...]  # complete list, ancestors included, catalog order
    removed: tuple[str, ...]
    #: libvirt >= 10.2: features listed with added='yes' -- enabled by QEMU for this
    #: model, but not part of its data (x86ModelParseFeatures), so never listed by
    #: baseline or --features; only check='full' tolerates them.
    added: tuple[str, ...] = ()
    #: libvirt >= 10.10: the versioned name this plain model is an alias of
    #: (Icelake-Server-noTSX -> Icelake-Server-v2: a model defined as another with no
    #: changes is that other's canonical name, x86ModelParse).
    canonical: str | None = None
    #: <check partial='compat'/> (libvirt >= 10.10)
    compat_check: bool = False
    ancestor: str | None = None

    def has_signature(self, family: int, model: int, stepping: int) -> bool:
        return any(s.matches(family, model, stepping) for s in self.signatures)


@dataclass
class BitSpace:
    """Assigns a bit position to every (kind, leaf, subleaf, register) x 32 bits."""

    offsets: dict[tuple[str, int, int, str], int] = field(default_factory=dict)

    def mask(self, items: Iterable[DataItem]) -> int:
        m = 0
        for it in items:
            for reg, val in it.regs:
                if not val:
                    continue
                key = (it.kind, it.leaf, it.subleaf, reg)
                off = self.offsets.get(key)
                if off is None:
                    off = 32 * len(self.offsets)
                    self.offsets[key] = off
                m |= val << off
        return m


class Catalog:
    """An immutable, indexed x86 CPU map."""

    def __init__(
        self,
        vendors: list[tuple[str, str]],
        features: list[Feature],
        models: list[Model],
        *,
        libvirt_version: str | None,
        source: str,
    ) -> None:
        self.vendors = dict(vendors)
        self.features = tuple(features)
        self.models = tuple(models)
        self.libvirt_version = libvirt_version
        self.source = source
        #: model/feature names per libvirt release (planner/cpu/versions.py), set by
        #: whoever loads the catalog; None: which libvirt knows what is not checked.
        self.names: NameTable | None = None
        self.feature_by_name = {f.name: f for f in features}
        self.model_by_name = {m.name: m for m in models}
        self.nonmigratable_mask = 0
        for f in features:
            if not f.migratable:
                self.nonmigratable_mask |= f.mask
        self.nonmigratable = frozenset(f.name for f in features if not f.migratable)

    # -- bitset helpers -------------------------------------------------
    def features_in(self, mask: int) -> list[str]:
        """Names of catalog features whose bits are all in ``mask`` (x86FeatureNames)."""
        return [f.name for f in self.features if f.mask & ~mask == 0]

    def take_features(self, mask: int) -> list[str]:
        """x86DataToCPUFeatures: walk the catalog, take each contained feature, remove its bits."""
        out: list[str] = []
        for f in self.features:
            if f.mask & ~mask == 0:
                mask &= ~f.mask
                out.append(f.name)
        return out

    def mask_of(self, names: Iterable[str]) -> int:
        m = 0
        for n in names:
            m |= self.feature_by_name[n].mask
        return m

    # -- (de)serialisation ---------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "arch": "x86",
            "libvirt_version": self.libvirt_version,
            "source": self.source,
            "vendors": [{"name": n, "string": s} for n, s in self.vendors.items()],
            "features": [
                {
                    "name": f.name,
                    "migratable": f.migratable,
                    "data": [it.to_json() for it in f.items],
                }
                for f in self.features
            ],
            "models": [
                {
                    "name": m.name,
                    "vendor": m.vendor,
                    "decode": {"host": m.decode_host, "guest": m.decode_guest},
                    "signatures": [
                        {
                            "family": s.family,
                            "model": s.model,
                            "stepping": sorted(s.steppings) if s.steppings is not None else None,
                        }
                        for s in m.signatures
                    ],
                    "features": list(m.features),
                    "removed_features": list(m.removed),
                    **({"added_features": list(m.added)} if m.added else {}),
                    **({"canonical": m.canonical} if m.canonical else {}),
                    **({"check_compat": True} if m.compat_check else {}),
                    **({"ancestor": m.ancestor} if m.ancestor else {}),
                }
                for m in self.models
            ],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str | None = None) -> Catalog:
        space = BitSpace()
        features: list[Feature] = []
        for fd in doc["features"]:
            items = tuple(_item_from_json(d) for d in fd["data"])
            name = check_name("feature", fd["name"], str(source))
            features.append(Feature(name, items, bool(fd["migratable"]), space.mask(items)))
        by_name = {f.name: f for f in features}
        models: list[Model] = []
        for md in doc["models"]:
            mask = 0
            for n in md["features"]:
                mask |= by_name[n].mask
            sigs = tuple(
                Signature(
                    s["family"],
                    s["model"],
                    frozenset(s["stepping"]) if s.get("stepping") is not None else None,
                )
                for s in md["signatures"]
            )
            models.append(
                Model(
                    check_name("model", md["name"], str(source)),
                    md["vendor"],
                    sigs,
                    bool(md["decode"]["host"]),
                    bool(md["decode"]["guest"]),
                    mask,
                    tuple(md["features"]),
                    tuple(md["removed_features"]),
                    tuple(md.get("added_features", ())),
                    md.get("canonical"),
                    bool(md.get("check_compat", False)),
                    md.get("ancestor"),
                )
            )
        vendors = [(check_name("vendor", v["name"], str(source)), v["string"])
                   for v in doc["vendors"]]
        return cls(
            vendors,
            features,
            models,
            libvirt_version=doc.get("libvirt_version"),
            source=source or doc.get("source", "json"),
        )

    @classmethod
    def from_libvirt_cpu_map(cls, read: Callable[[str], bytes], source: str) -> Catalog:
        """Load a libvirt cpu_map: ``read(name)`` returns the bytes of ``index.xml`` or an include."""
        from planner.cpu.cpu_map import load_cpu_map

        return load_cpu_map(read, source)


#: What a vendor, feature or model name may be: every name of libvirt's x86 cpu_map is
#: letters, digits, ``_ . -`` (and ``+``); nothing that could end a value in nova.conf
#: (``,``), start a line or a comment, or leave a file name (``/``).
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")


def check_name(kind: str, name: str, where: str) -> str:
    """``name`` when it is a name a CPU catalog may hold, else an InputError naming it."""
    if not NAME_RE.fullmatch(name):
        raise InputError(f"{where}: invalid CPU {kind} name {name!r} (a catalog name is "
                         "letters, digits and _ . + -)")
    return name


def _item_from_json(d: dict[str, Any]) -> DataItem:
    if d["type"] == "cpuid":
        regs = tuple((r, int(d.get(r, "0"), 16)) for r in CPUID_REGS)
        return DataItem("cpuid", int(d["eax_in"], 16), int(d.get("ecx_in", "0"), 16), regs)
    regs = tuple((r, int(d.get(r, "0"), 16)) for r in MSR_REGS)
    return DataItem("msr", int(d["index"], 16), 0, regs)


def load_json_text(text: str, source: str) -> Catalog:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: not a migplan CPU catalog: {err}") from None
    try:
        return Catalog.from_json(doc, source)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{source}: not a migplan CPU catalog: missing {err}") from None
