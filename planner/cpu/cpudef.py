"""A CPU definition as libvirt's ``virCPUDef`` holds it, parsed once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = ("force", "require", "optional", "disable", "forbid")
MODES = ("custom", "host-model", "host-passthrough", "maximum")
MATCHES = ("minimum", "exact", "strict")


@dataclass(frozen=True)
class CpuFeature:
    name: str
    policy: str | None  # None on host CPUs (libvirt ignores policy there)


@dataclass(frozen=True)
class CpuDef:
    """``type`` is "host" (capabilities) or "guest" (domain XML, baseline results)."""

    type: str
    model: str | None = None
    vendor: str | None = None
    features: tuple[CpuFeature, ...] = ()
    arch: str | None = None
    mode: str | None = None  # guest only; "custom" by default
    match: str | None = None
    check: str | None = None
    fallback: str | None = None
    migratable: str | None = None
    signature: tuple[int, int, int] | None = None
    tsc_frequency: int | None = None
    tsc_scaling: bool | None = None
    topology: tuple[int, int, int, int] | None = None  # sockets, dies, cores, threads
    source: str = field(default="", compare=False)

    def feature_names(self, *policies: str | None) -> list[str]:
        if not policies:
            return [f.name for f in self.features]
        return [f.name for f in self.features if f.policy in policies]

    # Memoised in the instance (not a field: equality and hashing ignore it);
    # the rules ask once per guest and host CPUs list ~100 features.
    @property
    def all_feature_set(self) -> frozenset[str]:
        s: frozenset[str] | None = self.__dict__.get("_all_names")
        if s is None:
            s = self.__dict__["_all_names"] = frozenset(f.name for f in self.features)
        return s

    @property
    def required_feature_set(self) -> frozenset[str]:
        """Features with policy require or force."""
        s: frozenset[str] | None = self.__dict__.get("_required_names")
        if s is None:
            s = self.__dict__["_required_names"] = frozenset(
                f.name for f in self.features if f.policy in ("require", "force"))
        return s

    def key(self) -> tuple[object, ...]:
        """What the CPU engine looks at: identical keys give identical answers."""
        return (self.type, self.arch, self.model, self.vendor, self.features, self.mode, self.match)
