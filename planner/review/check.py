"""What `migplan check` prints: one move's verdict, the CPU answer first.

Pure renderers (data in, text or JSON-able data out).  A rule that lacks data answers
"unknown"; those answers are not rows of the verdict table but one short list at the
end, each with the snapshot file that would tell it (``WOULD_TELL``) -- so a snapshot
of `virsh capabilities` files shows what it does tell first, not UNKNOWN on every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from planner.assess.rules import Assessment
from planner.assess.verdict import SEVERITY, Status, Verdict
from planner.review.text import printable

Table = Callable[[Sequence[str], Sequence[Sequence[Any]]], str]

#: rule -> the snapshot file (docs/snapshot.md) that holds what it needs; `migplan collect`
#: writes every one of them.
WOULD_TELL = {
    "cpu-arch": "capabilities.xml",
    "cpu-vendor": "capabilities.xml",
    "hypervisor-type": "capabilities.xml (<guest> elements) or domcapabilities.xml",
    "cpu-features": "domcapabilities.xml (host-model CPU)",
    "cpu-passthrough": "capabilities.xml (host CPU model)",
    "tsc-frequency": "capabilities.xml (TSC counter)",
    "nested-virt": "domcapabilities.xml (host-model CPU)",
    "machine-type": "capabilities.xml (machine types), the guest's XML (<os><type machine=>)",
    "version-older": "host.json (libvirt and QEMU versions)",
    "memory": "host.json (free memory)",
    "vcpus": "domains.json and domains/ (the destination's guests), host.json (CPU count)",
    "pinned-cpus": "domains.json and domains/ (the destination's guests), capabilities.xml "
                   "(NUMA topology)",
    "numa-cells": "host.json (free memory per NUMA cell)",
    "hugepages": "host.json (free huge pages per NUMA cell)",
    "local-storage": "pools.json and pools/ (storage pools)",
}
CPU_RULES = ("cpu-passthrough", "cpu-features")


def cpu_verdict(vs: Sequence[Verdict]) -> Verdict | None:
    """The verdict that answers "can the CPU move there": host-passthrough guests'
    cpu-passthrough, everyone else's cpu-features."""
    for rule in CPU_RULES:
        v = next((x for x in vs if x.rule == rule), None)
        if v is not None and not v.code.endswith(".not-applicable"):
            return v
    return next((x for x in vs if x.rule == "cpu-features"), None)


def not_checked(vs: Sequence[Verdict]) -> list[dict[str, str]]:
    return [{"rule": v.rule, "code": v.code, "message": v.message,
             "file": WOULD_TELL.get(v.rule, "the snapshot")}
            for v in vs if v.status == Status.UNKNOWN]


Servers = dict[str, tuple[str, str | None]]  # Inventory.nova_servers()


def server_json(servers: Servers, guest: str) -> dict[str, Any]:
    """``{"server": {"name", "id"}}`` for a guest Nova manages, nothing for the others (a
    plain libvirt fleet's JSON is unchanged)."""
    s = servers.get(guest)
    return {} if s is None else {"server": {"name": s[0], "id": s[1]}}


def guest_label(servers: Servers, guest: str) -> str:
    """``instance-00000001 (web-1 1fa6a2f4-...)`` for a Nova guest, else the libvirt name."""
    s = servers.get(guest)
    return guest if s is None else f"{guest} ({s[0]}{' ' + s[1] if s[1] else ''})"


def check_json(a: Assessment, servers: Servers | None = None) -> dict[str, Any]:
    cpu = cpu_verdict(a.verdicts)
    return {"guest": a.guest, **server_json(servers or {}, a.guest or ""), "source": a.source,
            "destination": a.destination,
            "verdict": a.status, "feasible": a.feasible,
            "cpu": cpu.to_json() if cpu is not None else None,
            "reasons": [v.to_json() for v in a.verdicts],
            "not_checked": not_checked(a.verdicts)}


def check_text(a: Assessment, table: Table, servers: Servers | None = None) -> str:
    head = (f"{guest_label(servers or {}, a.guest or '')}: {a.source} -> {a.destination}: "
            f"{a.status.upper()}")
    out = [printable(head), ""]
    cpu = cpu_verdict(a.verdicts)
    if cpu is not None:
        out += [printable(f"CPU: {cpu.status}: {cpu.message} ({cpu.code})"), ""]
    rows = [[v.rule, v.status, v.code, v.message]
            for v in sorted(a.verdicts, key=lambda v: -SEVERITY[v.status])
            if v.status != Status.UNKNOWN]
    text = "\n".join(out) + "\n" + table(["rule", "verdict", "code", "reason"], rows)
    unknown = not_checked(a.verdicts)
    if unknown:
        width = max(len(u["rule"]) for u in unknown)
        text += ("\nCould not check (the snapshot lacks it; the file that would tell, as "
                 "`migplan collect` writes it):\n")
        text += "".join(printable(f"  {u['rule']:<{width}}  {u['message']} -> {u['file']}")
                        + "\n" for u in unknown)
    return text
