"""Read a libvirt ``cpu_map`` directory (``index.xml`` and its includes) into a Catalog.

Follows libvirt's loader (src/cpu/cpu_map.c, x86 parts of src/cpu/cpu_x86.c) for every
layout from libvirt 8.0 to 11.x: vendors, then features, then models, in document order.
What changed between the versions, each rule read the same way by libvirt 9.0 and 11.3
on the maps each of them ships (see docs/cpu.md for the commits):

* index.xml lists its includes directly (<= 10.9) or one level down in
  ``<group name='...'>`` elements (>= 10.10; cpu_map.c reads ``include|group[@name]/include``);
* ``<feature name='...' added='yes'/>`` in a model (>= 10.2, libvirt commit 5fbfa5ab:
  the vmx-* features QEMU always enabled) is not part of the model's data;
* a model inherits its ancestor's data less the ancestor's removed features;
* a model defined as another with no signature, vendor or feature of its own makes
  itself that other's canonical name (``Icelake-Server-v2`` for ``Icelake-Server-noTSX``;
  the versioned models arrived in 10.10);
* ``<check partial='compat'/>`` is validated and kept (11.3's maps; 10.7's have none).
libvirt 9.0's maps have none of these constructs but one ancestor chain, on which the
two loaders agree (tests/test_cpu_maps.py loads 9.0's map and compares).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.cpu.catalog import (
    CPUID_REGS,
    MSR_REGS,
    BitSpace,
    Catalog,
    DataItem,
    Feature,
    Model,
    Signature,
    check_name,
)
from planner.errors import InputError
from planner.parse.xmlsafe import parse_document


def load_cpu_map(read: Callable[[str], bytes], source: str) -> Catalog:
    """``read(name)`` returns the bytes of ``index.xml`` or of one include."""
    return _Loader(read, source).load()


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


def _includes(arch: Any) -> list[Any]:
    """cpu_map.c's ``include|group[@name]/include``, in document order."""
    out = []
    for child in arch:
        if child.tag == "include":
            out.append(child)
        elif child.tag == "group" and child.get("name") is not None:
            out.extend(c for c in child if c.tag == "include")
    return out


def _tristate(el: Any, attr: str, where: str, model: str) -> bool:
    val = el.get(attr)
    if val is None or val == "no":
        return False
    if val == "yes":
        return True
    raise InputError(f"{where}: invalid {attr}={val!r} of a feature in CPU model {model}")


class _Loader:
    def __init__(self, read: Callable[[str], bytes], source: str) -> None:
        self.read = read
        self.source = source
        self.space = BitSpace()
        self.vendors: list[tuple[str, str]] = []
        self.features: list[Feature] = []
        self.feature_by_name: dict[str, Feature] = {}
        self.order: dict[str, int] = {}
        self.models: list[Model] = []
        self.index_of: dict[str, int] = {}

    def load(self) -> Catalog:
        root = parse_document(self.read("index.xml"), f"{self.source}/index.xml")
        arch = root.find("arch[@name='x86']")
        if arch is None:
            raise InputError(f"{self.source}/index.xml: cannot find CPU map for x86 architecture")
        self._load_elements(arch, f"{self.source}/index.xml")
        for inc in _includes(arch):
            name = inc.get("filename")
            if not name or "/" in name or name.startswith("."):
                raise InputError(f"{self.source}/index.xml: bad include filename {name!r}")
            where = f"{self.source}/{name}"
            self._load_elements(parse_document(self.read(name), where), where)
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
                continue  # <alias source='qemu'>: QEMU's spelling, not a libvirt name
            if child.tag == "cpuid":
                regs = tuple((r, _int_attr(child, r, where)) for r in CPUID_REGS)
                items.append(DataItem("cpuid", _int_attr(child, "eax_in", where),
                                      _int_attr(child, "ecx_in", where), regs))
            elif child.tag == "msr":
                regs = tuple((r, _int_attr(child, r, where)) for r in MSR_REGS)
                items.append(DataItem("msr", _int_attr(child, "index", where), 0, regs))
            else:
                raise InputError(f"{where}: unexpected <{child.tag}> in feature {name}")
        if not items:
            raise InputError(f"{where}: no x86 CPU data found for feature {name}")
        feat = Feature(name, tuple(items), el.get("migratable") != "no", self.space.mask(items))
        self.order[name] = len(self.features)
        self.features.append(feat)
        self.feature_by_name[name] = feat

    def _model(self, el: Any, where: str) -> None:  # noqa: C901 - x86ModelParse, step by step
        name = el.get("name")
        if not name:
            raise InputError(f"{where}: model without a name")
        check_name("model", name, where)
        if name in self.index_of:
            raise InputError(f"{where}: Multiple definitions of CPU model '{name}'")
        compat = self._check(el, where, name)
        decode = self._decode(el, where, name)
        vendor: str | None = None
        sigs: tuple[Signature, ...] = ()
        feats: list[str] = []
        anc: Model | None = None
        anc_el = el.find("model")
        if anc_el is not None:
            i = self.index_of.get(anc_el.get("name") or "")
            if i is None:
                raise InputError(
                    f"{where}: Ancestor model {anc_el.get('name')} not found for CPU model {name}")
            anc = self.models[i]
            vendor, sigs = anc.vendor, anc.signatures
            # x86ModelParseAncestor (11.3; not 9.0): the ancestor's removed features go.
            feats = [f for f in anc.features if f not in anc.removed]
        changed = False
        sig_els = el.findall("signature")
        if sig_els:
            sigs = tuple(self._signature(s, where, name) for s in sig_els)
            changed = True
        v_el = el.find("vendor")
        if v_el is not None:
            vendor = v_el.get("name")
            if not any(n == vendor for n, _ in self.vendors):
                raise InputError(f"{where}: Unknown vendor {vendor} referenced by CPU model {name}")
            changed = True
        removed: list[str] = []
        added: list[str] = []
        for f in el.findall("feature"):
            fname = f.get("name") or ""
            if fname not in self.feature_by_name:
                raise InputError(f"{where}: Feature {fname} required by CPU model {name} not found")
            changed = True
            if _tristate(f, "removed", where, name):
                removed.append(fname)
            elif _tristate(f, "added", where, name):
                added.append(fname)
            elif fname not in feats:
                feats.append(fname)
        feats.sort(key=self.order.__getitem__)  # a set: keep it in catalog order
        mask = 0
        for fn in feats:
            mask |= self.feature_by_name[fn].mask
        model = Model(name, vendor, sigs, decode[0], decode[1], mask, tuple(feats),
                      tuple(removed), tuple(added), None, compat, anc.name if anc else None)
        if anc is not None and not changed:
            if anc.canonical is not None:
                raise InputError(
                    f"{where}: Cannot set CPU model '{name}' as canonical name of '{anc.name}' "
                    f"which is already an alias of '{anc.canonical}'")
            self.models[self.index_of[anc.name]] = replace(anc, canonical=name)
        self.index_of[name] = len(self.models)
        self.models.append(model)

    @staticmethod
    def _check(el: Any, where: str, name: str) -> bool:
        chk = el.find("check")
        if chk is None:
            return False
        partial = chk.get("partial")
        if partial is None:
            raise InputError(f"{where}: Missing check/@partial in CPU model {name}")
        if partial != "compat":
            raise InputError(
                f"{where}: Invalid check/@partial value '{partial}' in CPU model {name}")
        return True

    @staticmethod
    def _decode(el: Any, where: str, name: str) -> tuple[bool, bool]:
        dec = el.find("decode")
        if dec is None:
            raise InputError(f"{where}: missing decode element in CPU model {name}")
        flags = []
        for attr in ("host", "guest"):
            val = dec.get(attr)
            if val not in ("on", "off"):
                raise InputError(f"{where}: invalid decode {attr}={val!r} in CPU model {name}")
            flags.append(val == "on")
        return flags[0], flags[1]

    @staticmethod
    def _signature(s: Any, where: str, name: str) -> Signature:
        fam = _int_attr(s, "family", where)
        if fam == 0:
            raise InputError(f"{where}: Invalid CPU signature family in model {name}")
        step = s.get("stepping")
        return Signature(fam, _int_attr(s, "model", where),
                         _parse_stepping(step, where) if step else None)
