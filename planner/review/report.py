"""Renderers for `migplan recommend` and `migplan check`: data in, text or JSON-able data out.

No files and no printing here: the CLI writes what these functions return.
The JSON document is described in the README ("recommend JSON").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from planner.assess.rules import Policy
from planner.assess.verdict import Verdict
from planner.cpu.catalog import Catalog
from planner.model import Inventory
from planner.recommend.cpu_config import Recommendation
from planner.recommend.graph import Analysis, GuestResult, guest_moves, host_pairs
from planner.review.check import WOULD_TELL, Servers, server_json
from planner.review.nova_files import nova_ini
from planner.review.text import printable
from planner.review.why import stranded_lines

SCHEMA_VERSION = 1
Table = Callable[[Sequence[str], Sequence[Sequence[Any]]], str]
#: Above this many matrix rows (guests x hosts + hosts x hosts), "auto" reports per host class.
FULL_MATRIX_LIMIT = 20_000


@dataclass(frozen=True)
class Report:
    inv: Inventory
    recs: Sequence[Recommendation]
    analysis: Analysis
    policy: Policy
    cat: Catalog
    groups: dict[str, str] | None = None


def matrix_detail(rep: Report, detail: str) -> str:
    if detail != "auto":
        return detail
    n_hosts = len(rep.inv.hosts)
    n_guests = sum(len(h.domains) for h in rep.inv.hosts)
    return "full" if n_guests * n_hosts + n_hosts * n_hosts <= FULL_MATRIX_LIMIT else "classes"


def _reasons(vs: Sequence[Verdict]) -> list[dict[str, str]]:
    return [{"code": v.code, "message": v.message} for v in vs]


def _row(source: str, destination: str, guest: str | None, verdict: str,
         reasons: Sequence[Verdict]) -> dict[str, Any]:
    return {"source": source, "destination": destination, "guest": guest, "verdict": verdict,
            "reasons": _reasons(reasons)}


def matrix(rep: Report, detail: str) -> Iterator[dict[str, Any]]:
    """Matrix rows.

    ``full``: every host pair and every guest x other host, all rules.
    ``classes`` (bounded by classes x (classes + guest shapes)): host-class
    pairs, and guest-shape x host-class rows (``guest`` = ``shape:<id>``, see
    ``guest_shapes``) with the class rules; each guest's own verdict is in
    ``guests[]``.
    """
    an = rep.analysis
    if detail == "full":
        for s, d, asm in host_pairs(an):
            yield _row(s, d, None, asm.status, asm.reasons())
        for m in guest_moves(rep.inv, rep.policy, rep.cat):
            yield _row(m.source, m.destination, m.guest, m.status, m.reasons())
        return
    for a in an.classes:
        for b in an.classes:
            if an.graph.has_edge(("class", a), ("class", b)):
                asm = an.class_edge(a, b)
                yield _row(a, b, None, asm.status, asm.reasons())
    for node, data in an.graph.nodes(data=True):
        if data["kind"] != "guest-shape":
            continue
        for _, dst, e in an.graph.out_edges(node, data=True):
            asm = e["assessment"]
            yield _row(data["source_class"], dst[1], f"shape:{node[1]}", asm.status, asm.reasons())


def _baseline_json(rec: Recommendation) -> dict[str, Any] | None:
    b = rec.baseline
    if b is None:
        return None
    return {"model": b.model, "vendor": b.vendor,
            "features": [f.name for f in b.features if f.policy in ("require", "force")],
            "disabled": [f.name for f in b.features if f.policy in ("disable", "forbid")]}


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    return {
        "scope": rec.scope,
        "hosts": list(rec.hosts),
        "cpu_mode": rec.cpu_mode,
        "cpu_models": list(rec.cpu_models),
        "cpu_model_extra_flags": list(rec.cpu_model_extra_flags),
        "baseline": _baseline_json(rec),
        "explanation": list(rec.explanation),
        "what_if": [{"hosts": list(w.hosts), "cpu_model": w.cpu_model, "new_model": w.new_model,
                     "gained": list(w.gained), "message": w.message} for w in rec.what_if],
        "unknown_hosts": [{"host": u.host, "file": u.file, "unknown": u.what,
                           "hint": "--cpu-map"} for u in rec.unknown],
        # false: some host cannot run these settings; they are not written (exit 6)
        "safe": not rec.cannot_run,
        "cannot_run": list(rec.cannot_run),
    }


def _host_rows(rep: Report) -> Iterator[dict[str, Any]]:
    an = rep.analysis
    costs = {c.host: c for r in rep.recs for c in r.costs}
    scope = {h: r.scope for r in rep.recs for h in r.hosts}
    unknown = {u.host: (r.scope, u) for r in rep.recs for u in r.unknown}
    for h in rep.inv.hosts:
        c = costs.get(h.name)
        left_out = unknown.get(h.name)
        yield {"name": h.name,
               "aggregate": scope[h.name] if left_out is None else left_out[0],
               "cpu_model": h.cpu.model,
               "cpu_vendor": h.cpu.vendor, "host_class": an.host_class[h.name],
               "guests": len(h.domains),
               "features_lost": list(c.features_lost) if c is not None else [],
               # "unknown": the catalog cannot describe this host's CPU (left out of the plan)
               "compare": c.compare if c is not None else "unknown",
               "missing": list(h.missing)
               + ([f"{left_out[1].file}: {left_out[1].what} unknown to the CPU catalog "
                   "(--cpu-map)"] if left_out is not None else [])}


def _stranded_rows(an: Analysis, servers: Servers) -> Iterator[dict[str, Any]]:
    by_guest = {g.guest: g for g in an.guests}
    for n in an.stranded:
        g = by_guest[n]
        yield {"guest": n, "host": g.source, **server_json(servers, n),
               "reasons": _reasons(g.reasons)}


def _guest_row(g: GuestResult, servers: Servers) -> dict[str, Any]:
    return {"guest": g.guest, "host": g.source, **server_json(servers, g.guest), "shape": g.shape,
            "verdict": g.status, "feasible_classes": list(g.feasible_classes),
            "destinations": list(g.destinations), "reasons": _reasons(g.reasons)}


def _shape_rows(an: Analysis) -> Iterator[dict[str, Any]]:
    for n, data in an.graph.nodes(data=True):
        if data["kind"] == "guest-shape":
            yield {"id": n[1], "source_class": data["source_class"], "guests": list(data["guests"])}


def _document(rep: Report, detail: str, lazy: bool) -> dict[str, Any]:
    """The JSON document; with ``lazy`` its long lists are generators (see iter_report_json)."""
    an = rep.analysis

    def seq(rows: Iterator[dict[str, Any]]) -> Any:
        return rows if lazy else list(rows)

    one_way = [{"source_class": a, "destination_class": b,
                "source_hosts": list(an.classes[a].hosts),
                "destination_hosts": list(an.classes[b].hosts)} for a, b in an.one_way]
    d = matrix_detail(rep, detail)
    servers = rep.inv.nova_servers()
    return {
        "schema": SCHEMA_VERSION,
        "snapshot": rep.inv.source,
        "collected_at": rep.inv.collected_at,
        "catalog_libvirt_version": rep.cat.libvirt_version,
        "policy": {"memory_reserve_kib": rep.policy.memory_reserve_kib,
                   "cpu_allocation_ratio": rep.policy.cpu_allocation_ratio,
                   "allow_block_migration": rep.policy.allow_block_migration},
        "recommendation": recommendation_json(rep.recs[0]),
        "recommendations": [recommendation_json(r) for r in rep.recs],
        "hosts": seq(_host_rows(rep)),
        "not_collected": [{"host": h, "error": e} for h, e in rep.inv.errors],
        "warnings": list(rep.inv.warnings),
        "host_classes": [{"id": c.id, "cpu_model": c.cpu_model, "hosts": list(c.hosts)}
                         for c in an.classes.values()],
        "migration_domains": [list(dm) for dm in an.domains],
        "one_way": one_way,
        "stranded": seq(_stranded_rows(an, servers)),
        "guests": seq(_guest_row(g, servers) for g in an.guests),
        "guest_shapes": seq(_shape_rows(an)),
        "matrix_detail": d,
        "matrix": seq(matrix(rep, d)),
    }


def report_json(rep: Report, detail: str) -> dict[str, Any]:
    """The whole JSON document as data (every list built: mind the size on large clusters)."""
    return _document(rep, detail, lazy=False)


#: Above this many hosts + guests the JSON is written compact and streamed (iter_report_json).
LARGE_DOCUMENT = 2_000


def is_large(rep: Report) -> bool:
    return len(rep.inv.hosts) + len(rep.analysis.guests) > LARGE_DOCUMENT


_str = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (ensure_ascii)


class _ReasonCodec:
    """JSON text of reason lists and string lists; an object shared by many guests
    (a Verdict, a tuple of classes or hosts) is encoded once."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[object, str]] = {}

    def encode(self, vs: Sequence[Verdict]) -> str:
        out = []
        memo = self._memo
        for v in vs:
            hit = memo.get(id(v))
            if hit is None or hit[0] is not v:
                # keep v alive with its text, so its id is not reused while memoised
                hit = memo[id(v)] = (v, f'{{"code":{_str(v.code)},"message":{_str(v.message)}}}')
            out.append(hit[1])
        return "[" + ",".join(out) + "]"

    def reasons(self, vs: tuple[Verdict, ...], shared: tuple[Verdict, ...]) -> str:
        """``encode(vs)`` where ``vs`` ends with ``shared``, a tuple many guests
        share: its part of the text is made once."""
        n = len(shared)
        if not n or vs[len(vs) - n:] != shared:
            return self.encode(vs)
        hit = self._memo.get(id(shared))
        if hit is None or hit[0] is not shared:
            hit = self._memo[id(shared)] = (shared, self.encode(shared)[1:-1])
        if n == len(vs):
            return "[" + hit[1] + "]"
        return self.encode(vs[:len(vs) - n])[:-1] + "," + hit[1] + "]"

    def strings(self, xs: tuple[str, ...]) -> str:
        hit = self._memo.get(id(xs))
        if hit is None or hit[0] is not xs:
            hit = self._memo[id(xs)] = (xs, "[" + ",".join(map(_str, xs)) + "]")
        return hit[1]


def iter_report_json(rep: Report, detail: str, chunk: int = 2_000) -> Iterator[str]:
    """The JSON document as text, in pieces (for writing to a stream).

    Small reports: exactly ``json.dumps(report_json(...), indent=2)``.  Large
    ones (more than LARGE_DOCUMENT hosts + guests): the same document, written
    without indentation -- one top-level key per line and one item per line
    in the long lists (hosts, stranded, guests, guest_shapes, matrix) -- and
    never held in memory whole.
    """
    if not is_large(rep):
        yield json.dumps(report_json(rep, detail), indent=2, allow_nan=False) + "\n"
        return
    enc = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    codec = _ReasonCodec()
    doc = _document(rep, detail, lazy=True)
    an = rep.analysis
    # guests[] and stranded[] repeat the same reasons for many guests: encode those once.
    servers = rep.inv.nova_servers()
    doc["guests"] = (_guest_text(g, codec, _server_text(servers, g.guest)) for g in an.guests)
    by_guest = {g.guest: g for g in an.guests}
    doc["stranded"] = (
        f'{{"guest":{_str(n)},"host":{_str(by_guest[n].source)}{_server_text(servers, n)},'
        f'"reasons":{codec.reasons(by_guest[n].reasons, by_guest[n].shared_reasons)}}}'
        for n in an.stranded)
    yield "{"
    for i, (k, v) in enumerate(doc.items()):
        yield ("\n" if i == 0 else ",\n") + enc(k) + ":"
        if not isinstance(v, Iterator):
            yield enc(v)
            continue
        batch: list[str] = []
        first = True
        for item in v:
            batch.append(item if isinstance(item, str) else enc(item))
            if len(batch) >= chunk:
                yield ("[\n" if first else ",\n") + ",\n".join(batch)
                first, batch = False, []
        if batch:
            yield ("[\n" if first else ",\n") + ",\n".join(batch)
            first = False
        yield "[]" if first else "\n]"
    yield "\n}\n"


def _server_text(servers: Servers, guest: str) -> str:
    """``_server(...)`` as it appears inside a compact JSON object: "" or ``,"server":{...}``."""
    s = server_json(servers, guest)
    return "" if not s else "," + json.dumps(s, separators=(",", ":"))[1:-1]


def _guest_text(g: GuestResult, codec: _ReasonCodec, server: str = "") -> str:
    """``json.dumps(_guest_row(g), separators=(",", ":"))``, shared parts encoded once."""
    return (f'{{"guest":{_str(g.guest)},"host":{_str(g.source)}{server},"shape":{_str(g.shape)},'
            f'"verdict":{_str(g.status)},"feasible_classes":{codec.strings(g.feasible_classes)},'
            f'"destinations":{codec.strings(g.destinations)},'
            f'"reasons":{codec.reasons(g.reasons, g.shared_reasons)}}}')


MATRIX_CSV_HEADERS = ("source", "destination", "guest", "verdict", "codes", "messages")


def matrix_csv_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[r["source"], r["destination"], r["guest"], r["verdict"],
             " ".join(x["code"] for x in r["reasons"]),
             " | ".join(x["message"] for x in r["reasons"])] for r in rows]


# --- text ---------------------------------------------------------------------------------------


def _wrap_list(items: Sequence[str], limit: int = 10) -> str:
    if not items:
        return "-"
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" (+{len(items) - limit})"


def report_text(rep: Report, table: Table) -> str:
    """The readable report; ``table(headers, rows)`` renders a table."""
    an = rep.analysis
    n_guests = len(an.guests)
    out: list[str] = [f"migplan recommend: {rep.inv.source} ({len(rep.inv.hosts)} hosts, "
                      f"{n_guests} guests"
                      + (f", collected {rep.inv.collected_at}" if rep.inv.collected_at else "")
                      + ")", ""]
    if rep.inv.warnings:
        out.extend([*(f"Warning: {w}" for w in rep.inv.warnings), ""])
    for rec in rep.recs:
        out.append(f"== Nova CPU settings for {rec.scope} ({len(rec.hosts)} hosts) ==")
        if rec.cannot_run:
            out.append(f"  NO SAFE CONFIGURATION: {_wrap_list(list(rec.cannot_run), 5)} cannot "
                       "run the CPU these settings would give (libvirt compare); none written.")
        else:
            out.extend("  " + line for line in nova_ini(rec, rep.cat).splitlines()[1:])
        out.append("")
        out.append("Why:")
        out.extend(f"  - {e}" for e in rec.explanation)
        if rec.what_if:
            out.append("What if:")
            out.extend(f"  - {w.message}" for w in rec.what_if[:5])
        out.append("")
    costs = [c for r in rep.recs for c in r.costs]
    out.append("Features each host gives up:")
    rows = []
    seen: dict[tuple[str, ...], list[str]] = {}
    for c in costs:
        seen.setdefault((c.cpu_class, c.cpu_model or "?", *c.features_lost), []).append(c.host)
    for key, hs in seen.items():
        lost = list(key[2:])
        rows.append([_wrap_list(hs, 4), key[1], len(lost), _wrap_list(lost, 8)])
    out.extend(_lines(table(["hosts", "cpu", "lost", "features lost"], rows)))
    out.append("Migration domains (every host can take guests from every other):")
    for i, dm in enumerate(an.domains, start=1):
        out.append(f"  {i}. {_wrap_list(list(dm), 8)} ({len(dm)} host{'s' if len(dm) != 1 else ''})")
    if an.one_way:
        out.append("One-way (guests can go, not come back):")
        for a, b in an.one_way:
            back = "; ".join(v.message for v in an.class_edge(b, a).reasons() if not v.feasible)
            out.append(f"  {_wrap_list(list(an.classes[a].hosts), 4)} -> "
                       f"{_wrap_list(list(an.classes[b].hosts), 4)}, not back: {back[:300]}")
    one_way = set(an.one_way) | {(b, a) for a, b in an.one_way}
    blocked = []
    unknown_pairs = 0
    unknown_rules: dict[str, str] = {}
    for a in an.classes:
        for b in an.classes:
            e = an.graph.get_edge_data(("class", a), ("class", b))
            if e is None or e["verdict"] in ("ok", "warn") or (a, b) in one_way:
                continue
            if e["verdict"] == "unknown":
                # not a row per pair saying UNKNOWN: one line below, with what would tell
                na, nb = len(an.classes[a].hosts), len(an.classes[b].hosts)
                unknown_pairs += na * nb - (na if a == b else 0)
                for v in e["assessment"].reasons():
                    if v.status == "unknown":
                        unknown_rules.setdefault(v.rule, WOULD_TELL.get(v.rule, "the snapshot"))
                continue
            why = "; ".join(v.message for v in e["assessment"].reasons() if not v.feasible)
            blocked.append(f"  {_wrap_list(list(an.classes[a].hosts), 3)} -> "
                           f"{_wrap_list(list(an.classes[b].hosts), 3)}: {e['verdict']}: {why[:300]}")
    if blocked:
        out.append("Host pairs where a new guest cannot move (under the settings above):")
        out.extend(blocked[:30])
        if len(blocked) > 30:
            out.append(f"  ... and {len(blocked) - 30} more (see --format json)")
    if unknown_pairs:
        out.append(f"{unknown_pairs} host pair{'s' if unknown_pairs != 1 else ''} could not be "
                   "checked for a new guest (not proven feasible), for want of: "
                   + "; ".join(f"{r} -> {f}" for r, f in unknown_rules.items()))
    out.append("")
    feasible = n_guests - len(an.stranded)
    out.append(f"Guests: {feasible} of {n_guests} can move to another host; "
               f"{len(an.stranded)} stranded" + (", and why not, per destination:"
                                                  if an.stranded else "."))
    if an.stranded:
        stranded = [g for g in an.guests if not g.feasible_classes]
        for g in stranded[:50]:
            out.extend(stranded_lines(an, g))
        if len(stranded) > 50:
            out.append(f"  ... and {len(stranded) - 50} more (see --format json)")
        out.append("")
    codes = Counter(v.code for g in an.guests for v in g.reasons)
    if codes:
        out.append("Reasons across guests (code: guests):")
        out.extend(f"  {code}: {n}" for code, n in codes.most_common(15))
    missing = [(h.name, h.missing) for h in rep.inv.hosts if h.missing]
    if missing or rep.inv.errors:
        out.append("")
        out.append("Missing from the snapshot (rules needing it answer 'unknown'):")
        grouped: dict[tuple[str, ...], list[str]] = {}
        for name, m in missing:
            grouped.setdefault(m, []).append(name)
        for m, names in grouped.items():
            out.append(f"  {_wrap_list(names, 4)}: {'; '.join(m)}")
        for h, e in rep.inv.errors:
            out.append(f"  {h}: not collected ({e})")
    # One entry of ``out`` is one line: a newline or escape inside a name is escaped, so
    # it cannot fake a line such as "cpu_mode = host-passthrough".
    return "\n".join(map(printable, out)).rstrip() + "\n"


def exit_status(rep: Report) -> tuple[int, str]:
    """What `recommend`'s exit code says (docs/exit-codes.md): 6 when the settings of
    some aggregate are not safe to deploy (a host cannot run them: not written), else 3
    when guests are stranded (no other host can take them), else 0."""
    unsafe = [r for r in rep.recs if r.cannot_run]
    if unsafe:
        return 6, "no safe configuration for " + "; ".join(
            f"{r.scope} ({_wrap_list(list(r.cannot_run), 5)} cannot run it)" for r in unsafe) \
            + ": those settings are not written"
    n = len(rep.analysis.stranded)
    if n:
        return 3, (f"{n} guest{'s' if n != 1 else ''} stranded, no other host can take "
                   f"{'them' if n != 1 else 'it'}: {_wrap_list(rep.analysis.stranded, 5)}")
    return 0, ""


def _lines(table_text: str) -> list[str]:
    """A rendered table as lines (its cells are escaped by the table renderer)."""
    return table_text.rstrip("\n").split("\n") + [""]


def build_report(inv: Inventory, cat: Catalog | None, policy: Policy | None = None,
                 groups: dict[str, str] | None = None) -> Report:
    """Recommend (per aggregate when grouped) and analyse the whole inventory; ``cat``
    None: the shipped catalog that reads every host's libvirt (catalog_for_hosts)."""
    from dataclasses import replace

    from planner.adapters.catalogs import catalog_for_hosts, harmonise
    from planner.recommend.cpu_config import by_host, recommend_groups
    from planner.recommend.graph import analyze

    policy = policy or Policy()
    cat = cat or catalog_for_hosts(inv.hosts)
    hosts, notes = harmonise(inv.hosts, cat)
    if notes:
        inv = replace(inv, hosts=tuple(hosts))
    recs = recommend_groups(inv.hosts, groups, cat, policy)
    if notes:
        recs = [replace(r, explanation=tuple(notes[h] for h in r.hosts if h in notes)
                        + r.explanation) for r in recs]
    return Report(inv, recs, analyze(inv, by_host(recs), cat, policy), policy, cat, groups)
