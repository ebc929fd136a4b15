"""`migplan report`: the capacity review as a self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

import click

from planner.adapters.catalogs import load_catalog
from planner.cli.recommend import _policy, policy_options
from planner.errors import InputError


@click.command("report")
@click.argument("snapshot", metavar="SNAPSHOT")
@click.option("--out", "out", metavar="DIR", required=True,
              help="Directory to write capacity-review.html into (created if missing).")
@click.option("--max-models", type=click.IntRange(min=1), default=20, show_default=True,
              help="Candidate CPU models shown in the capacity chart and table.")
@policy_options
def report_cmd(snapshot: str, out: str, max_models: int, cpu_map: str | None,
               memory_reserve: int, cpu_ratio: float, no_block_migration: bool) -> None:
    """Render the capacity review of a snapshot to one self-contained HTML file.

    The content of notebooks/capacity_review.ipynb without Jupyter: the
    recommended Nova CPU settings, hosts and guests, a heatmap of the CPU
    features that differ between hosts, the feasibility matrix, the capacity
    each candidate CPU model reaches and the migration domains.  Plots are
    embedded PNG images, so the file can be mailed or attached to a ticket.

    \b
    Example:
      migplan report snapshots/today --out review/
      xdg-open review/capacity-review.html
    """
    import matplotlib

    matplotlib.use("Agg")  # this process only writes PNGs: never open a display
    from planner.review.analysis import load_report
    from planner.review.html import render_html

    if not Path(snapshot).is_dir():
        raise InputError(f"{snapshot}: no such snapshot directory")
    rep = load_report(snapshot, load_catalog(cpu_map) if cpu_map else None,
                      _policy(memory_reserve, cpu_ratio, no_block_migration))
    page = render_html(rep, max_models=max_models)
    from planner.adapters.outdir import atomic_write

    dest = Path(out)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write(dest / "capacity-review.html", page)  # whole or not at all
    except OSError as err:
        raise InputError(f"{out}: cannot write the report: {err.strerror}") from None
    click.echo(f"wrote {dest / 'capacity-review.html'}")
