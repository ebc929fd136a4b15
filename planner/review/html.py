"""The capacity review as one self-contained HTML page (tables, PNG plots inlined as base64).

The same content as notebooks/capacity_review.ipynb, for people who do not run
Jupyter: ``migplan report SNAPSHOT --out DIR``.  Builds on ``planner.review.analysis``
and ``planner.review.plots``; writes nothing itself (the CLI writes the file).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from planner.review.check import guest_label
from planner.review.report import Report

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-top: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; } ul { font-size: 0.9em; }
"""


def _png(fig: Any) -> str:
    from planner.review import plots

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plots.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(fig_title(fig))}" src="data:image/png;base64,{data}">'


def fig_title(fig: Any) -> str:
    axes = fig.get_axes()
    return str(axes[0].get_title()) if axes else "figure"


def _table(df: Any) -> str:
    out: str = df.to_html(na_rep="", border=0, escape=True)
    return out


def render_html(rep: Report, max_models: int = 20, max_host_rows: int = 40) -> str:
    """The capacity review of ``rep`` (``planner.review.analysis.load_report``) as an HTML page.

    Above ``max_host_rows`` hosts, plots show one row per distinct CPU / host
    class instead of per host (and the per-guest heatmap is left out)."""
    from planner.review import analysis as A
    from planner.review import plots as P

    esc = html.escape
    inv, an = rep.inv, rep.analysis
    parts: list[str] = []
    add = parts.append
    add(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Capacity review: "
        f"{esc(inv.source)}</title><style>{_CSS}</style></head><body>")
    add(f"<h1>Capacity review</h1><p class='note'>Snapshot <code>{esc(inv.source)}</code>: "
        f"{len(inv.hosts)} hosts, {len(inv.domains())} guests, collected "
        f"{esc(inv.collected_at or 'at an unknown time')}; CPU catalog of libvirt "
        f"{esc(rep.cat.libvirt_version or '?')}.</p>")
    if inv.errors:
        add("<p><b>Not collected:</b> " + ", ".join(f"{esc(h)} ({esc(e)})" for h, e in inv.errors)
            + "</p>")

    add("<h2>Recommended Nova CPU settings</h2>")
    add(_table(A.recommendations_frame(rep)))
    for r in rep.recs:
        add(f"<p><b>{esc(r.scope)}</b></p><ul>"
            + "".join(f"<li>{esc(line)}</li>" for line in r.explanation) + "</ul>")
        if r.what_if:
            add("<p>What if:</p><ul>" + "".join(f"<li>{esc(w.message)}</li>" for w in r.what_if)
                + "</ul>")

    hosts = A.hosts_frame(inv, rep)
    add(f"<h2>Hosts ({len(hosts)})</h2>")
    if len(hosts) <= max_host_rows:
        add(_table(hosts))
    else:
        add("<p class='note'>Per CPU model (the per-host table: "
            "<code>planner.review.analysis.hosts_frame</code> or the notebook).</p>")
        add(_table(hosts.groupby(["vendor", "cpu_model"], dropna=False).agg(
            hosts=("cpus", "size"), cpus=("cpus", "sum"), memory_gib=("memory_gib", "sum"),
            free_memory_gib=("free_memory_gib", "sum"), guests=("guests", "sum"),
            features_lost=("features_lost", "max"))))
    guests = A.guests_frame(inv, rep)
    add(f"<h2>Guests ({len(guests)})</h2>")
    if not len(guests):
        add("<p>No guests in the snapshot.</p>")
    elif len(guests) <= 5 * max_host_rows:
        add(_table(guests))
    else:
        add("<p class='note'>Per CPU mode and model, and verdict (best over all "
            "destinations).</p>")
        add(_table(guests.groupby(["cpu_mode", "cpu_model", "verdict"], dropna=False).agg(
            guests=("vcpus", "size"), vcpus=("vcpus", "sum"), memory_gib=("memory_gib", "sum"),
            pinned=("pinned", "sum"), local_disks=("disks_local", "sum"),
            hostdevs=("hostdevs", "sum"))))

    add("<h2>CPU features that differ between hosts</h2>")
    by_host = len(inv.hosts) <= max_host_rows
    features = A.feature_matrix(inv, rep.cat, varying_only=True, by="host" if by_host else "cpu")
    add(_png(P.feature_heatmap(features, f"CPU features that differ between hosts "
                                         f"({features.shape[1]})")))

    add("<h2>Feasibility</h2><p class='note'>Can a new guest started on the source host with "
        "the recommended CPU settings live-migrate to the destination (from the feasibility "
        "graph of <code>migplan recommend</code>)?</p>")
    add(_png(P.verdict_heatmap(A.feasibility_matrix(an, by="host" if by_host else "class"),
                               "Feasibility: new guest under the recommended CPU settings")))
    add(_table(A.host_classes_frame(an)))
    per_guest = A.guest_feasibility(an, labels=True)
    if 0 < len(per_guest) <= 4 * max_host_rows:
        add(_png(P.verdict_heatmap(per_guest, "Existing guests: verdict per destination host "
                                              "class")))

    add("<h2>Capacity reachable per candidate CPU model</h2><p class='note'>Hosts, CPUs and "
        "memory a guest with <code>&lt;cpu mode='custom' match='exact'&gt;&lt;model&gt;M"
        "&lt;/model&gt;</code> can run on (domcapabilities usable, else libvirt's compare).</p>")
    cap = A.capacity_by_model(inv, rep.cat, rep=rep)
    add(_png(P.capacity_bars(cap, total_cpus=int(hosts["cpus"].fillna(0).sum()),
                             limit=max_models)))
    add(_table(cap.head(max_models)))

    add("<h2>Migration domains</h2>")
    domains = A.migration_domains(an, inv)
    add(_png(P.domain_bars(domains)))
    add(_table(domains))
    if an.one_way:
        add("<p>One-way (can go, cannot come back):</p><ul>" + "".join(
            f"<li>{esc(', '.join(an.classes[a].hosts))} &rarr; "
            f"{esc(', '.join(an.classes[b].hosts))}</li>" for a, b in an.one_way) + "</ul>")
    if an.stranded:
        servers = rep.inv.nova_servers()
        add("<p>Guests with no feasible destination: "
            f"{esc(', '.join(guest_label(servers, n) for n in an.stranded))}</p>")
    add("</body></html>\n")
    return "".join(parts)
