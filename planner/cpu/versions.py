"""Which libvirt knows which CPU model and feature: the libvirt that decides.

nova-compute refuses to start when a model in ``[libvirt] cpu_models`` is unknown to its
host's libvirt, and libvirt refuses a guest CPU naming a feature its cpu_map lacks.  In a
cloud whose hosts run different libvirt releases (the normal state during an upgrade)
every model and every flag must therefore be known to every host's libvirt: the oldest
libvirt decides.

``NameTable`` holds the x86 model and feature names of each libvirt release from 7.0 to
11.3, generated from the releases' own cpu_map (cpu_maps/libvirt-names.json, written by
scripts/gen_cpu_maps.py --names).  A host runs the release of its snapshot's
``libvirt_version``; between two releases of the table it is judged by the older one
(libvirt never drops a model or feature name, so the older one's names are known to it;
the newer one's may not be).  A feature renamed between releases is one feature: the
table records renames (there are none from 7.0 to 11.3: every name of 7.0 is in 11.3).

Pure: the table, host versions and names in, sets and sentences out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """"9.0.0" -> (9, 0, 0); None when absent or not a libvirt version."""
    if not text:
        return None
    parts = text.strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def _short(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}" if v[2] == 0 else f"{v[0]}.{v[1]}.{v[2]}"


@dataclass(frozen=True)
class Release:
    version: tuple[int, int, int]
    models: frozenset[str]
    features: frozenset[str]
    source: str

    @property
    def name(self) -> str:
        return _short(self.version)


@dataclass(frozen=True)
class NameTable:
    releases: tuple[Release, ...]  # oldest first
    renamed: Mapping[str, str]  # old feature name -> new name

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> NameTable:
        """The delta-encoded table: each release lists what it adds to the one before."""
        out: list[Release] = []
        models: set[str] = set()
        feats: set[str] = set()
        renamed = dict(doc.get("renamed", {}))
        for r in doc["releases"]:
            models |= set(r.get("models_added", ()))
            models -= set(r.get("models_removed", ()))
            feats |= set(r.get("features_added", ()))
            feats -= set(r.get("features_removed", ()))
            ver = parse_version(r["version"])
            if ver is None:
                raise ValueError(f"bad libvirt version {r['version']!r}")
            out.append(Release(ver, frozenset(models), frozenset(feats), r.get("source", "")))
        out.sort(key=lambda r: r.version)
        return cls(tuple(out), renamed)

    def release_for(self, version: str | None) -> Release | None:
        """The release a host of libvirt ``version`` is judged by (None: version unknown)."""
        v = parse_version(version)
        if v is None or not self.releases:
            return None
        best = self.releases[0]
        for r in self.releases:
            if r.version <= v:
                best = r
        return best

    def spellings(self, feature: str) -> frozenset[str]:
        """Every name a feature had (a renamed feature is one feature)."""
        names = {feature}
        changed = True
        while changed:
            changed = False
            for old, new in self.renamed.items():
                if (new in names) != (old in names):
                    names |= {old, new}
                    changed = True
        return frozenset(names)


@dataclass(frozen=True)
class Decider:
    """The libvirt releases of a set of hosts, and the names all of them know."""

    table: NameTable
    hosts: Mapping[str, Release]  # host -> the release it is judged by
    unversioned: tuple[str, ...]  # hosts whose snapshot has no libvirt version

    def knows_model(self, model: str) -> bool:
        return all(model in r.models for r in self.hosts.values())

    def knows_feature(self, feature: str) -> bool:
        names = self.table.spellings(feature)
        return all(names & r.features for r in self.hosts.values())

    def known_models(self, candidates: Iterable[str]) -> list[str]:
        return [m for m in candidates if self.knows_model(m)]

    def who_lacks_model(self, model: str) -> tuple[str, str] | None:
        """(release, host) of the oldest host whose libvirt lacks ``model``."""
        return self._oldest_lacking(lambda r: model in r.models)

    def who_lacks_feature(self, feature: str) -> tuple[str, str] | None:
        names = self.table.spellings(feature)
        return self._oldest_lacking(lambda r: bool(names & r.features))

    def _oldest_lacking(self, has: Any) -> tuple[str, str] | None:
        lacking = sorted(((r.version, h) for h, r in self.hosts.items() if not has(r)))
        if not lacking:
            return None
        ver, host = lacking[0]
        return _short(ver), host

    @property
    def mixed(self) -> bool:
        return len({r.version for r in self.hosts.values()}) > 1


def decider(table: NameTable | None, versions: Mapping[str, str | None]) -> Decider | None:
    """The Decider of hosts -> libvirt version strings; None without a table or versions."""
    if table is None:
        return None
    hosts: dict[str, Release] = {}
    unversioned: list[str] = []
    for h, v in versions.items():
        r = table.release_for(v)
        if r is None:
            unversioned.append(h)
        else:
            hosts[h] = r
    if not hosts:
        return None
    return Decider(table, hosts, tuple(unversioned))


def usable_for(dec: Decider | None, usable: set[str] | None,
               models: Sequence[str]) -> set[str] | None:
    """``usable`` (domcapabilities' usable models, None: any) less the models some host's
    libvirt does not know; ``models`` are the catalog's model names."""
    if dec is None:
        return usable
    known = set(dec.known_models(models))
    return known if usable is None else usable & known


def model_note(dec: Decider, unknown: str, chosen: str) -> str:
    """"SapphireRapids is unknown to libvirt 8.0 on cn07: using Cascadelake-Server"."""
    lack = dec.who_lacks_model(unknown)
    where = f"libvirt {lack[0]} on {lack[1]}" if lack else "some host's libvirt"
    return (f"{unknown} is unknown to {where}: using {chosen} (every model in cpu_models "
            "must be one every host's libvirt knows, or nova-compute on that host refuses "
            "to start).")


def filter_flags(dec: Decider | None, flags: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """cpu_model_extra_flags every host's libvirt knows, and a note per flag left out.

    A ``+feature`` unknown to an older host's libvirt is left out (the guest gets less,
    which is always safe).  A ``-feature`` is kept: it only ever disables."""
    if dec is None:
        return tuple(flags), []
    keep: list[str] = []
    notes: list[str] = []
    dropped: list[tuple[str, tuple[str, str]]] = []
    for f in flags:
        lack = dec.who_lacks_feature(f[1:]) if f.startswith("+") else None
        if lack is None:
            keep.append(f)
        else:
            dropped.append((f[1:], lack))
    if dropped:
        by: dict[tuple[str, str], list[str]] = {}
        for name, lack in dropped:
            by.setdefault(lack, []).append(name)
        for (ver, host), names in sorted(by.items()):
            notes.append(f"{', '.join(names)} unknown to libvirt {ver} on {host}: left out of "
                         "cpu_model_extra_flags (libvirt refuses a guest CPU naming a feature "
                         "its cpu_map lacks).")
    return tuple(keep), notes
