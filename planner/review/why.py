"""Why a stranded guest can move nowhere: per destination, briefly, the nearest miss first.

Pure text: ``stranded_lines`` renders one stranded guest of an ``Analysis``:

    cn04-hostmodel (on cn04):
      to cn03: lacks avx512vnni, rdctl-no, ibrs-all, skip-l1dfl-vmentry … [cpu-features.missing]
      to cn05: QEMU does not offer machine type pc-q35-8.0 [machine-type.unsupported]
      to cn01, cn02: lacks hle, rtm, mpx, avx512f, avx512dq, rdseed, adx, smap … [cpu-features.missing]

Destinations are host classes (hosts the rules cannot tell apart), nearest miss first:
another CPU vendor or architecture last, then fewest blocking rules, then the shortest
reasons (fewer missing features).  A reason is
cut at a word, never inside one, and its leading host name -- the destination named at
the start of the line -- is dropped.  A reason of the guest's own (a host device, a
policy) applies to every destination and comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.assess.verdict import Verdict
from planner.recommend.graph import Analysis, GuestResult

#: characters of one reason's text
REASON_WIDTH = 90
#: reasons shown per destination, destinations shown per guest
REASONS, DESTINATIONS = 2, 3
#: reasons no change of settings or capacity removes: such destinations come last
NEVER = frozenset({"cpu-vendor.mismatch", "cpu-arch.mismatch"})


def brief(text: str, limit: int = REASON_WIDTH) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary (with "…")."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;(") + " …"


def _without_host(message: str, hosts: Sequence[str]) -> str:
    for h in hosts:
        for lead in (f"{h}: ", f"{h}'s ", f"{h} "):
            if message.startswith(lead):
                return message[len(lead):]
    return message


def _reason(vs: Sequence[Verdict], hosts: Sequence[str]) -> str:
    text = "; ".join(f"{brief(_without_host(v.message, hosts))} [{v.code}]"
                     for v in vs[:REASONS])
    return text + (f"; +{len(vs) - REASONS} more" if len(vs) > REASONS else "")


def _hosts(hosts: Sequence[str], limit: int = 3) -> str:
    return ", ".join(hosts[:limit]) + (f" (+{len(hosts) - limit})" if len(hosts) > limit else "")


def stranded_lines(an: Analysis, g: GuestResult) -> list[str]:
    """The lines that say why ``g`` can move nowhere."""
    out = [f"  {g.guest} (on {g.source}):"]
    per_class = {cid: vs for cid, vs in g.why}
    own = [v for v in g.reasons if not v.feasible
           and not any(v in vs for vs in per_class.values())]
    if own:
        out.append(f"    anywhere: {_reason(own, ())}")
    ranked = sorted(per_class.items(), key=lambda kv: (
        any(v.code in NEVER for v in kv[1]), len(kv[1]), sum(len(v.message) for v in kv[1]),
        kv[0]))
    for cid, vs in ranked[:DESTINATIONS]:
        hosts = [h for h in an.classes[cid].hosts if h != g.source]
        if hosts:
            out.append(f"    to {_hosts(hosts)}: {_reason(vs, an.classes[cid].hosts)}")
    if len(ranked) > DESTINATIONS:
        n = len(ranked) - DESTINATIONS
        out.append(f"    ... and {n} more destination{'s' if n != 1 else ''} "
                   "(see --format json)")
    if len(out) == 1:  # nothing but itself: the reasons say so (destination.none)
        out.append(f"    {_reason([v for v in g.reasons if not v.feasible], ())}")
    return out
