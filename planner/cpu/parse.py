"""Parse ``<cpu>`` elements as libvirt 9.0 does (src/conf/cpu_conf.c: virCPUDefParseXML).

Inputs are the places an operator finds CPU XML: ``virsh capabilities`` (host
CPU), ``virsh domcapabilities`` (the host-model ``<mode>``), domain XML (guest
CPU) and bare ``<cpu>`` elements -- one file or many concatenated.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from planner.cpu.cpudef import MATCHES, MODES, POLICIES, CpuDef, CpuFeature
from planner.errors import InputError
from planner.parse.xmlsafe import parse_concatenated_chunks, parse_concatenated_unique

# The same places virsh's cpu-baseline/cpu-compare look (tools/virsh-host.c).
CPU_XPATH = (
    "/container/cpu|"
    "/container/domain/cpu|"
    "/container/capabilities/host/cpu|"
    "/container/domainCapabilities/cpu/mode[@name='host-model' and @supported='yes']"
)

_ARCHES = {"x86_64", "i686", "aarch64", "ppc64", "ppc64le", "s390x", "armv7l", "riscv64"}


def _err(source: str, msg: str) -> InputError:
    return InputError(f"{source}: {msg}" if source else msg)


def _xpath_cpus(root: Any) -> list[Any]:
    found = root.xpath(CPU_XPATH)
    return list(found)


def _no_cpu(source: str) -> InputError:
    return _err(
        source,
        "does not contain any <cpu> element or valid domain XML, host capabilities XML, "
        "or domain capabilities XML",
    )


def cpu_elements(data: bytes, source: str) -> list[Any]:
    """All CPU elements in a (possibly concatenated) file, in document order."""
    nodes: list[Any] = []
    for root in parse_concatenated_chunks(data, source):
        nodes.extend(_xpath_cpus(root))
    if not nodes:
        raise _no_cpu(source)
    return nodes


def parse_cpu_file(data: bytes, source: str, cpu_type: str = "host") -> list[CpuDef]:
    """Parse every CPU in a file; ``cpu_type`` as libvirt's parser: host, guest or auto.

    A cluster has thousands of hosts and a handful of distinct CPUs, so
    identical ``<cpu>`` elements (same serialisation) are parsed once and the
    list holds the same ``CpuDef`` object for each of them: the first
    occurrence errors first anyway, as the parse is a function of the bytes.
    Repeated documents are even parsed once (``parse_concatenated_unique``):
    100,000 hosts cost about what their distinct CPUs cost.
    """
    parsed: dict[bytes, CpuDef] = {}
    per_doc: dict[int, list[CpuDef]] = {}
    out: list[CpuDef] = []
    for key, root in parse_concatenated_unique(data, source):
        cpus = per_doc.get(key)
        if cpus is None:
            cpus = []
            for n in _xpath_cpus(root):
                text = etree.tostring(n, with_tail=False)
                cpu = parsed.get(text)
                if cpu is None:
                    # Numbered as in the file: the first occurrence errors first.
                    label = f"{source}: CPU #{len(out) + len(cpus) + 1}"
                    cpu = parsed[text] = parse_cpu_element(n, cpu_type, label)
                cpus.append(cpu)
            if key >= 0:  # a repeated document: keep its CPUs for the next time
                per_doc[key] = cpus
        out.extend(cpus)
    if not out:
        raise _no_cpu(source)
    return out


# virXMLProp* and virStrToLong_*p (src/util/virxml.c, virstring.c): strtoul
# semantics -- leading blanks and '+' allowed, no '-', nothing after the digits.
_UINT_RE = re.compile(r"[ \t\n\v\f\r]*\+?[0-9]+")
_INT_RE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_UINT_MAX = (1 << 32) - 1
_ULLONG_MAX = (1 << 64) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1

_CHECKS = ("default", "none", "partial", "full")  # virCPUCheck
_ON_OFF = ("on", "off")  # virTristateSwitch
_YES_NO = ("yes", "no")  # virTristateBool
_CACHE_MODES = ("emulate", "passthrough", "disable")  # virCPUCacheMode
_MAXPHYSADDR_MODES = ("emulate", "passthrough")  # virCPUMaxPhysAddrMode


def _missing(source: str, el: Any, name: str) -> InputError:
    return _err(source, f"Missing required attribute '{name}' in element '{el.tag}'")


def _prop_unsigned(el: Any, name: str, source: str, *, required: bool = False,
                   nonzero: bool = False, limit: int = _UINT_MAX) -> int | None:
    """virXMLPropUInt / virXMLPropULongLong."""
    raw = el.get(name)
    if raw is None:
        if required:
            raise _missing(source, el, name)
        return None
    value = int(raw) if _UINT_RE.fullmatch(raw) else -1
    if not 0 <= value <= limit:
        raise _err(source, f"Invalid value for attribute '{name}' in element '{el.tag}': "
                           f"'{raw}'. Expected non-negative integer value")
    if nonzero and value == 0:
        raise _err(source, f"Invalid value for attribute '{name}' in element '{el.tag}': "
                           "Zero is not permitted")
    return value


def _prop_int_nonnegative(el: Any, name: str, source: str) -> int | None:
    """virXMLPropInt(..., VIR_XML_PROP_NONNEGATIVE)."""
    raw = el.get(name)
    if raw is None:
        return None
    if not _INT_RE.fullmatch(raw) or not _INT_MIN <= int(raw) <= _INT_MAX:
        raise _err(source, f"Invalid value for attribute '{name}' in element '{el.tag}': "
                           f"'{raw}'. Expected integer value")
    if int(raw) < 0:
        raise _err(source, f"Invalid value for attribute '{name}' in element '{el.tag}': "
                           f"'{raw}'. Expected non-negative value")
    return int(raw)


def _prop_enum(el: Any, name: str, values: tuple[str, ...], source: str, *,
               required: bool = False) -> str | None:
    """virXMLPropEnum / virXMLPropTristate*."""
    raw = el.get(name)
    if raw is None:
        if required:
            raise _missing(source, el, name)
        return None
    if raw not in values:
        raise _err(source, f"Invalid value for attribute '{name}' in element '{el.tag}': '{raw}'.")
    return str(raw)


# Hosts of one cluster repeat the same features: equal ones share one object,
# so the engine recognises equal feature lists by identity (cheap) first.
_FEATURE_CACHE: dict[tuple[str, str | None], CpuFeature] = {}
_FEATURES_CACHE: dict[tuple[tuple[str, str | None], ...], tuple[CpuFeature, ...]] = {}
_CACHE_LIMIT = 100_000


def _feature(name: str, policy: str | None) -> CpuFeature:
    key = (name, policy)
    f = _FEATURE_CACHE.get(key)
    if f is None:
        f = CpuFeature(name, policy)
        if len(_FEATURE_CACHE) < _CACHE_LIMIT:
            _FEATURE_CACHE[key] = f
    return f


def _features(feats: list[CpuFeature]) -> tuple[CpuFeature, ...]:
    # Keyed by (name, policy) pairs: str tuples hash in C, dataclasses do not.
    key = tuple((f.name, f.policy) for f in feats)
    shared = _FEATURES_CACHE.get(key)
    if shared is None:
        shared = tuple(feats)
        if len(_FEATURES_CACHE) < _CACHE_LIMIT:
            _FEATURES_CACHE[key] = shared
    return shared


_HOST_FEATURES_CACHE: dict[tuple[str, ...], tuple[CpuFeature, ...]] = {}
_XP_FEATURE_NAMES: Any = etree.XPath("feature/@name")
_XP_FEATURES: Any = etree.XPath("feature")
_XP_COUNT_FEATURES: Any = etree.XPath("count(feature)")
_XP_NOT_FEATURES: Any = etree.XPath("*[not(self::feature)]")


def _host_features(el: Any, count: int) -> tuple[CpuFeature, ...] | None:
    """A host CPU's features in one XPath call (host CPUs carry no policy), or
    None when a name is missing, empty or repeated: the slow path says which."""
    raw: tuple[str, ...] = tuple(_XP_FEATURE_NAMES(el))
    shared = _HOST_FEATURES_CACHE.get(raw)
    if shared is not None and len(raw) == count:
        return shared
    # lxml's attribute strings keep their tree alive: plain str for the cache.
    names = tuple(str(n) for n in raw)
    if len(names) != count or "" in names or len(set(names)) != count:
        return None
    shared = tuple(_feature(n, None) for n in names)
    if len(_HOST_FEATURES_CACHE) < _CACHE_LIMIT:
        _HOST_FEATURES_CACHE[names] = shared
    return shared


def _feature_list(f_els: list[Any], cpu_type: str, source: str) -> list[CpuFeature]:
    feats: list[CpuFeature] = []
    seen: set[str] = set()
    for f in f_els:
        policy: str | None = None
        if cpu_type == "guest":
            policy = f.get("policy", "require")
            if policy not in POLICIES:
                raise _err(source, "Invalid CPU feature policy")
        name = f.get("name")
        if not name:
            raise _err(source, "Invalid CPU feature name")
        if name in seen:
            raise _err(source, f"CPU feature '{name}' specified more than once")
        seen.add(name)
        feats.append(_feature(name, policy))
    return feats


def parse_cpu_element(el: Any, cpu_type: str, source: str = "") -> CpuDef:
    """One ``<cpu>`` (or domcapabilities host-model ``<mode>``) element to a CpuDef.

    ``cpu_type`` "host" parses as libvirt does for cpu-baseline (policies are
    ignored, <arch> and <model> are required); "guest" as in domain XML;
    "auto" picks host when an <arch> child is present.  Checks, their order
    and their messages are virCPUDefParseXML's (src/conf/cpu_conf.c), so that
    what libvirt refuses migplan refuses with the same words.
    """
    is_mode = el.tag == "mode"
    # One pass over the children (instead of a find() per tag): the first
    # child of each tag, as libvirt's ./tag[1] XPaths, and every <feature>/<cache>.
    first: dict[str, Any] = {}
    caches: list[Any] = []
    counter = None
    for child in _XP_NOT_FEATURES(el):
        tag = child.tag
        if tag == "cache":
            caches.append(child)
        elif tag == "counter" and counter is None and child.get("name") == "tsc":
            counter = child
        if tag not in first:
            first[tag] = child
    n_features = int(_XP_COUNT_FEATURES(el))
    if cpu_type == "auto":
        has_arch = "arch" in first
        if has_arch and el.get("match") is not None:
            raise _err(
                source, "'arch' element cannot be used inside 'cpu' element with 'match' attribute'"
            )
        cpu_type = "host" if has_arch else "guest"

    mode: str | None = None
    raw_mode = None if is_mode else el.get("mode")
    if raw_mode is not None:
        if cpu_type == "host":
            raise _err(source, "Attribute mode is only allowed for guest CPU")
        if raw_mode not in MODES:
            raise _err(source, f"Invalid mode attribute '{raw_mode}'")
        mode = raw_mode
    elif cpu_type == "guest":
        mode = "custom"

    match = check = fallback = None
    migratable = None if is_mode else _prop_enum(el, "migratable", _ON_OFF, source)
    if migratable is not None and mode not in ("host-passthrough", "maximum"):
        raise _err(
            source,
            "Attribute migratable is only allowed for 'host-passthrough' / 'maximum' CPU mode",
        )
    if cpu_type == "guest" and not is_mode:
        match = _prop_enum(el, "match", MATCHES, source)
        check = _prop_enum(el, "check", _CHECKS, source)

    arch = None
    signature = None
    tsc_freq = None
    tsc_scaling = None
    if cpu_type == "host":
        arch = _text(first.get("arch"))
        if arch is None:
            raise _err(source, "Missing CPU architecture")
        if arch not in _ARCHES:
            raise _err(source, f"Unknown architecture {arch}")
        mc = first.get("microcode")
        if mc is not None and mc.get("version") is not None:
            v = mc.get("version")
            if not _UINT_RE.fullmatch(v) or int(v) > _UINT_MAX:
                raise _err(source, "invalid microcode version")
        sig = first.get("signature")
        if sig is not None:
            fam = _prop_unsigned(sig, "family", source, required=True, nonzero=True)
            mod = _prop_unsigned(sig, "model", source, required=True)
            step = _prop_unsigned(sig, "stepping", source, required=True)
            assert fam is not None and mod is not None and step is not None
            signature = (fam, mod, step)
        if counter is not None:
            tsc_freq = _prop_unsigned(counter, "frequency", source, required=True,
                                      limit=_ULLONG_MAX)
            sc = _prop_enum(counter, "scaling", _YES_NO, source)
            tsc_scaling = None if sc is None else sc == "yes"

    model = _text(first.get("model"))
    if model is None and cpu_type == "host":
        raise _err(source, "Missing CPU model name")
    if cpu_type == "guest" and mode not in ("host-passthrough", "maximum"):
        m_el = first.get("model")
        if m_el is not None and m_el.get("fallback"):
            fallback = m_el.get("fallback")
            if fallback not in ("allow", "forbid"):
                raise _err(source, "Invalid fallback attribute")
        vendor_id = m_el.get("vendor_id") if m_el is not None else None
        if vendor_id:
            if len(vendor_id) != 12:
                raise _err(source, "vendor_id must be exactly 12 characters long")
            if "," in vendor_id:
                raise _err(source, "vendor id is invalid")

    vendor = _text(first.get("vendor"))
    if vendor is not None and model is None:
        raise _err(source, "CPU vendor specified without CPU model")

    topology = None
    topo = first.get("topology")
    if topo is not None:
        sockets = _prop_unsigned(topo, "sockets", source, required=True, nonzero=True)
        dies = _prop_unsigned(topo, "dies", source, nonzero=True)
        cores = _prop_unsigned(topo, "cores", source, required=True, nonzero=True)
        threads = _prop_unsigned(topo, "threads", source, required=True, nonzero=True)
        assert sockets is not None and cores is not None and threads is not None
        topology = (sockets, dies or 1, cores, threads)

    if n_features and model is None and mode == "custom":
        raise _err(source, "Non-empty feature list specified without CPU model")
    features = _host_features(el, n_features) if cpu_type == "host" else None
    if features is None:
        features = _features(_feature_list(_XP_FEATURES(el), cpu_type, source))

    if len(caches) > 1:
        raise _err(source, "at most one CPU cache element may be specified")
    if caches:
        level = _prop_int_nonnegative(caches[0], "level", source)
        if level is not None and not 1 <= level <= 3:
            raise _err(source, "invalid CPU cache level, must be in range [1,3]")
        _prop_enum(caches[0], "mode", _CACHE_MODES, source, required=True)
    addr = first.get("maxphysaddr")
    if addr is not None:
        _prop_enum(addr, "mode", _MAXPHYSADDR_MODES, source, required=True)
        _prop_int_nonnegative(addr, "bits", source)

    return CpuDef(
        type=cpu_type,
        model=model,
        vendor=vendor,
        features=features,
        arch=arch,
        mode=mode,
        match=match,
        check=check,
        fallback=fallback,
        migratable=migratable,
        signature=signature,
        tsc_frequency=tsc_freq,
        tsc_scaling=tsc_scaling,
        topology=topology,
        source=source,
    )


def _text(child: Any) -> str | None:
    if child is None:
        return None
    # libvirt reads string(./model[1]): an empty element is "no value".
    text = "".join(child.itertext())
    return text or None
