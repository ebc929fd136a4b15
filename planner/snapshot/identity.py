"""Hosts are identified by their host UUID (libvirt's own identity of a host).

One host reached by two URIs, or listed twice in a manifest, gives two host
directories with the same ``<host><uuid>``: planned as two hosts, a guest could be
"moved" to the host it runs on.  ``merge_same_hosts`` keeps the first and drops the
others, with a warning.  Two directories that share a UUID but differ in what runs
there (other guests, another hostname) are two machines whose firmware reports one
UUID: both stay, with a warning -- libvirt refuses to migrate between them ("Attempt
to migrate guest to the same host"), and so does the same-host rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.model import Host


def _what_runs(h: Host) -> tuple[object, ...]:
    return (h.hostname, tuple(sorted((d.name, d.uuid or "") for d in h.domains)))


def merge_same_hosts(hosts: Sequence[Host]) -> tuple[list[Host], list[str], dict[str, str]]:
    """(hosts without duplicates, warnings, {dropped name: the name it is planned as})."""
    first: dict[str, Host] = {}
    out: list[Host] = []
    warnings: list[str] = []
    aliases: dict[str, str] = {}
    for h in hosts:
        k = first.get(h.host_uuid) if h.host_uuid else None
        if k is None:
            if h.host_uuid:
                first[h.host_uuid] = h
            out.append(h)
        elif _what_runs(k) == _what_runs(h):
            aliases[h.name] = k.name
            warnings.append(f"{h.name} and {k.name} are one host (host UUID {h.host_uuid}, "
                            f"the same guests): reached twice (two URIs, or listed twice); "
                            f"planned once, as {k.name}")
        else:
            out.append(h)
            warnings.append(f"{h.name} and {k.name} report the same host UUID {h.host_uuid} "
                            "but run different guests: two machines with one UUID; libvirt "
                            "refuses to migrate between them (give each its own host_uuid in "
                            "libvirtd.conf)")
    return out, warnings, aliases
