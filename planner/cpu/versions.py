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
from typing import TYPE_CHECKING, Any

from planner.cpu.cpudef import CpuDef

if TYPE_CHECKING:  # the catalog module holds a NameTable: import it for types only
    from planner.cpu.catalog import Catalog


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
    hosts: Mapping[str, tuple[str, Release]]  # host -> (its libvirt version, judged by)
    unversioned: tuple[str, ...]  # hosts whose snapshot has no libvirt version

    def knows_model(self, model: str) -> bool:
        return all(model in r.models for _, r in self.hosts.values())

    def knows_feature(self, feature: str) -> bool:
        names = self.table.spellings(feature)
        return all(names & r.features for _, r in self.hosts.values())

    def known_models(self, candidates: Iterable[str]) -> list[str]:
        return [m for m in candidates if self.knows_model(m)]

    def who_lacks_model(self, model: str) -> str | None:
        """"libvirt 8.0.0 on cn07": the oldest host whose libvirt lacks ``model``."""
        return self._oldest_lacking(lambda r: model in r.models)

    def who_lacks_feature(self, feature: str) -> str | None:
        names = self.table.spellings(feature)
        return self._oldest_lacking(lambda r: bool(names & r.features))

    def _oldest_lacking(self, has: Any) -> str | None:
        lacking = sorted((parse_version(v) or (0, 0, 0), v, h, r)
                         for h, (v, r) in self.hosts.items() if not has(r))
        if not lacking:
            return None
        _, ver, host, rel = lacking[0]
        later = [r for r in self.table.releases if r.version > rel.version]
        if parse_version(ver) != rel.version and later and has(later[0]):
            # between two releases of the table: only the older one is known to lack it
            return (f"libvirt {ver} on {host} (libvirt {rel.name} lacks it, {later[0].name} "
                    "has it: check that host's cpu_map)")
        return f"libvirt {ver} on {host}"

    @property
    def versions(self) -> list[str]:
        """The distinct libvirt versions, oldest first."""
        return sorted({v for v, _ in self.hosts.values()}, key=lambda v: parse_version(v) or ())

    @property
    def mixed(self) -> bool:
        return len(self.versions) > 1


def decider(table: NameTable | None, versions: Mapping[str, str | None]) -> Decider | None:
    """The Decider of hosts -> libvirt version strings; None without a table or versions."""
    if table is None:
        return None
    hosts: dict[str, tuple[str, Release]] = {}
    unversioned: list[str] = []
    for h, v in versions.items():
        r = table.release_for(v)
        if r is None or v is None:
            unversioned.append(h)
        else:
            hosts[h] = (v, r)
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
    where = dec.who_lacks_model(unknown) or "some host's libvirt"
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
    dropped: list[tuple[str, str]] = []
    for f in flags:
        lack = dec.who_lacks_feature(f[1:]) if f.startswith("+") else None
        if lack is None:
            keep.append(f)
        else:
            dropped.append((f[1:], lack))
    if dropped:
        by: dict[str, list[str]] = {}
        for name, lack in dropped:
            by.setdefault(lack, []).append(name)
        for where, names in sorted(by.items()):
            notes.append(f"{', '.join(names)} unknown to {where}: left out of "
                         "cpu_model_extra_flags (libvirt refuses a guest CPU naming a feature "
                         "its cpu_map lacks).")
    return tuple(keep), notes


def restrict_baseline(cat: Catalog, versions: Mapping[str, str | None], reps: Sequence[CpuDef],
                      base: CpuDef, usable: set[str] | None
                      ) -> tuple[CpuDef, set[str] | None, Decider | None, list[str]]:
    """The oldest libvirt decides: ``base`` (libvirt's baseline of ``reps``) again among
    the models every host's libvirt knows when its model is unknown to one of them.

    Returns the baseline, the usable models (``usable`` less the unknown ones: the
    fallbacks in cpu_models come from it), the Decider (for ``filter_flags``) and the
    sentences saying what the hosts' libvirt versions changed.
    """
    from planner.cpu.engine import baseline

    dec = decider(cat.names, versions)
    if dec is None:
        return base, usable, None, []
    notes: list[str] = []
    if dec.mixed:
        vs = dec.versions
        notes.append(f"The hosts run libvirt {', '.join(vs)}: every model and flag below is "
                     f"one libvirt {vs[0]} knows (the oldest libvirt decides).")
    if dec.unversioned:
        notes.append(f"No libvirt version for {', '.join(dec.unversioned[:5])} in the snapshot "
                     "(host.json): its libvirt's CPU models were not checked.")
    allowed = usable_for(dec, usable, [m.name for m in cat.models])
    if base.model is not None and not dec.knows_model(base.model):
        assert allowed is not None
        new = baseline(reps, cat, usable_models=sorted(allowed))
        notes.append(model_note(dec, base.model, new.model or "?"))
        base = new
    return base, allowed, dec, notes
