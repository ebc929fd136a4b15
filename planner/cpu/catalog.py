"""The x86 CPU model catalog: vendors, features (CPUID/MSR bits), models.

Loaded either from the project's generated ``cpu_maps/x86.json`` or straight
from a libvirt ``cpu_map`` directory (``index.xml`` + includes), following
libvirt 9.0's loader (src/cpu/cpu_map.c, src/cpu/cpu_x86.c): vendors, then
features, then models, in document order, models inheriting from an ancestor.

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

from planner.errors import InputError
from planner.parse.xmlsafe import parse_document

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

    def has_signature(self, family: int, model: int, stepping: int) -> bool:
        return any(s.matches(family, model, stepping) for s in self.signatures)


@dataclass
class _BitSpace:
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
                }
                for m in self.models
            ],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str | None = None) -> Catalog:
        space = _BitSpace()
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
        return _LibvirtMapLoader(read, source).load()


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


def _int_attr(el: Any, name: str, where: str) -> int:
    raw = el.get(name)
    if raw is None:
        return 0
    try:
        return int(raw, 0)
    except ValueError:
        raise InputError(f"{where}: invalid {name}='{raw}'") from None


def _parse_stepping(text: str, where: str) -> frozenset[int]:
    # libvirt's virBitmapParse syntax: "0-3,5,^2"
    out: set[int] = set()
    neg: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            target = out
            if part.startswith("^"):
                target, part = neg, part[1:]
            if "-" in part:
                lo, hi = part.split("-", 1)
                target.update(range(int(lo), int(hi) + 1))
            else:
                target.add(int(part))
    except ValueError:
        raise InputError(f"{where}: invalid stepping '{text}'") from None
    return frozenset(out - neg)


class _LibvirtMapLoader:
    def __init__(self, read: Callable[[str], bytes], source: str) -> None:
        self.read = read
        self.source = source
        self.space = _BitSpace()
        self.vendors: list[tuple[str, str]] = []
        self.features: list[Feature] = []
        self.feature_by_name: dict[str, Feature] = {}
        self.models: list[Model] = []
        self.model_by_name: dict[str, Model] = {}

    def load(self) -> Catalog:
        root = parse_document(self.read("index.xml"), f"{self.source}/index.xml")
        arch = root.find("arch[@name='x86']")
        if arch is None:
            raise InputError(f"{self.source}/index.xml: cannot find CPU map for x86 architecture")
        self._load_elements(arch, f"{self.source}/index.xml")
        # libvirt >= 10 nests the includes in <group name='...'> elements (cpu_map.c
        # loads groups recursively); earlier ones list them directly: document order.
        for inc in arch.iter("include"):
            name = inc.get("filename")
            if not name or "/" in name or name.startswith("."):
                raise InputError(f"{self.source}/index.xml: bad include filename {name!r}")
            where = f"{self.source}/{name}"
            doc = parse_document(self.read(name), where)
            self._load_elements(doc, where)
        if not self.models:
            raise InputError(f"{self.source}: no x86 CPU models found")
        return Catalog(
            self.vendors, self.features, self.models, libvirt_version=None, source=self.source
        )

    def _load_elements(self, node: Any, where: str) -> None:
        for v in node.findall("vendor"):
            name, string = v.get("name"), v.get("string")
            if not name or not string or len(string) != 12:
                raise InputError(f"{where}: invalid vendor {name!r}")
            check_name("vendor", name, where)
            if any(n == name for n, _ in self.vendors):
                raise InputError(f"{where}: CPU vendor {name} already defined")
            self.vendors.append((name, string))
        for f in node.findall("feature"):
            self._feature(f, where)
        for m in node.findall("model"):
            self._model(m, where)

    def _feature(self, el: Any, where: str) -> None:
        name = el.get("name")
        if not name:
            raise InputError(f"{where}: feature without a name")
        check_name("feature", name, where)
        if name in self.feature_by_name:
            raise InputError(f"{where}: CPU feature {name} already defined")
        items: list[DataItem] = []
        for child in el:
            if not isinstance(child.tag, str) or child.tag == "alias":
                continue
            if child.tag == "cpuid":
                regs = tuple((r, _int_attr(child, r, where)) for r in CPUID_REGS)
                items.append(
                    DataItem(
                        "cpuid",
                        _int_attr(child, "eax_in", where),
                        _int_attr(child, "ecx_in", where),
                        regs,
                    )
                )
            elif child.tag == "msr":
                regs = tuple((r, _int_attr(child, r, where)) for r in MSR_REGS)
                items.append(DataItem("msr", _int_attr(child, "index", where), 0, regs))
            else:
                raise InputError(f"{where}: unexpected <{child.tag}> in feature {name}")
        if not items:
            raise InputError(f"{where}: no x86 CPU data found for feature {name}")
        feat = Feature(name, tuple(items), el.get("migratable") != "no", self.space.mask(items))
        self.features.append(feat)
        self.feature_by_name[name] = feat

    def _model(self, el: Any, where: str) -> None:
        name = el.get("name")
        if not name:
            raise InputError(f"{where}: model without a name")
        check_name("model", name, where)
        if name in self.model_by_name:
            raise InputError(f"{where}: Multiple definitions of CPU model '{name}'")
        dec = el.find("decode")
        if dec is None:
            raise InputError(f"{where}: missing decode element in CPU model {name}")
        flags = []
        for attr in ("host", "guest"):
            val = dec.get(attr)
            if val not in ("on", "off"):
                raise InputError(f"{where}: invalid decode {attr}={val!r} in CPU model {name}")
            flags.append(val == "on")
        vendor: str | None = None
        sigs: tuple[Signature, ...] = ()
        feats: list[str] = []
        anc_el = el.find("model")
        if anc_el is not None:
            anc = self.model_by_name.get(anc_el.get("name") or "")
            if anc is None:
                raise InputError(
                    f"{where}: Ancestor model {anc_el.get('name')} not found for CPU model {name}"
                )
            vendor, sigs, feats = anc.vendor, anc.signatures, list(anc.features)
        sig_els = el.findall("signature")
        if sig_els:
            parsed = []
            for s in sig_els:
                fam = _int_attr(s, "family", where)
                if fam == 0:
                    raise InputError(f"{where}: Invalid CPU signature family in model {name}")
                step = s.get("stepping")
                parsed.append(
                    Signature(
                        fam,
                        _int_attr(s, "model", where),
                        _parse_stepping(step, where) if step else None,
                    )
                )
            sigs = tuple(parsed)
        v_el = el.find("vendor")
        if v_el is not None:
            vendor = v_el.get("name")
            if not any(n == vendor for n, _ in self.vendors):
                raise InputError(
                    f"{where}: Unknown vendor {vendor} referenced by CPU model {name}"
                )
        removed: list[str] = []
        for f in el.findall("feature"):
            fname = f.get("name") or ""
            if fname not in self.feature_by_name:
                raise InputError(
                    f"{where}: Feature {fname} required by CPU model {name} not found"
                )
            if f.get("removed") == "yes":
                removed.append(fname)
            elif fname not in feats:
                feats.append(fname)
        # Keep the model's feature list in catalog order: it is a set.
        order = {f.name: i for i, f in enumerate(self.features)}
        feats.sort(key=order.__getitem__)
        mask = 0
        for fn in feats:
            mask |= self.feature_by_name[fn].mask
        model = Model(name, vendor, sigs, flags[0], flags[1], mask, tuple(feats), tuple(removed))
        self.models.append(model)
        self.model_by_name[name] = model


def load_json_text(text: str, source: str) -> Catalog:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: not a migplan CPU catalog: {err}") from None
    try:
        return Catalog.from_json(doc, source)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{source}: not a migplan CPU catalog: missing {err}") from None
