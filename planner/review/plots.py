"""matplotlib figures of the analysis frames (``planner.review.analysis``), shared by the
notebooks and ``migplan report``.

Each function takes a DataFrame and returns a ``matplotlib.figure.Figure``
sized to its content so labels stay readable (one row/column per host,
feature or model).  Only the notebooks and the HTML report import this.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from planner.review.analysis import VERDICT_ORDER, verdict_codes

#: ok, warn, unknown, blocked
VERDICT_COLORS = ("#4caf50", "#ffc107", "#9e9e9e", "#e53935")


def label(x: object) -> str:
    """Text from the data (a host, guest or model name) as matplotlib shows it literally:
    matplotlib reads ``$...$`` as mathtext, so ``web-$\\bogus$-01`` would end the plot
    with a parse error.  An escaped dollar (``\\$``) is drawn as a dollar."""
    return str(x).replace("$", r"\$")


def _labels(xs: Any) -> list[str]:
    return [label(x) for x in xs]


def _figure(width: float, height: float) -> Figure:
    import matplotlib.pyplot as plt

    fig: Figure = plt.figure(figsize=(width, height), dpi=100)
    return fig


def feature_heatmap(features: pd.DataFrame, title: str = "CPU features per host") -> Figure:
    """Host x feature bool matrix: dark = the host has the feature."""
    n_hosts, n_feats = features.shape
    fig = _figure(max(6.0, 0.22 * n_feats + 2.5), max(2.5, 0.35 * n_hosts + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    if n_feats == 0:
        ax.text(0.5, 0.5, "every host has the same features", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(label(title))
        return fig
    ax.imshow(features.to_numpy(dtype=float), aspect="auto", cmap=ListedColormap(
        ["#f2f2f2", "#1f4e79"]), vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n_feats))
    ax.set_xticklabels(_labels(features.columns), rotation=90, fontsize=8)
    ax.set_yticks(range(n_hosts))
    ax.set_yticklabels(_labels(features.index), fontsize=9)
    ax.set_xlabel("CPU feature")
    ax.set_ylabel("host")
    ax.set_title(label(title))
    ax.legend(handles=[Patch(color="#1f4e79", label="has it"),
                       Patch(color="#f2f2f2", label="lacks it")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def verdict_heatmap(matrix: pd.DataFrame, title: str, xlabel: str | None = None,
                    ylabel: str | None = None) -> Figure:
    """A verdict matrix (ok/warn/unknown/blocked, "-" blank) with the verdict in each cell."""
    rows, cols = matrix.shape
    fig = _figure(max(5.0, 0.7 * cols + 3.5), max(2.5, 0.4 * rows + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    codes = verdict_codes(matrix).to_numpy()
    cmap = ListedColormap(list(VERDICT_COLORS)).with_extremes(bad="white")
    norm = BoundaryNorm(np.arange(-0.5, len(VERDICT_ORDER) + 0.5), cmap.N)
    ax.imshow(np.ma.masked_invalid(codes), cmap=cmap, norm=norm, aspect="auto",
              interpolation="nearest")
    if rows * cols <= 400:
        for i in range(rows):
            for j in range(cols):
                v = matrix.iat[i, j]
                if isinstance(v, str) and v != "-":
                    ax.text(j, i, v, ha="center", va="center", fontsize=7,
                            color="white" if v in ("blocked", "ok") else "black")
    ax.set_xticks(range(cols))
    ax.set_xticklabels(_labels(matrix.columns), rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(rows))
    ax.set_yticklabels(_labels(matrix.index), fontsize=9)
    ax.set_xlabel(label(xlabel or matrix.columns.name or ""))
    ax.set_ylabel(label(ylabel or matrix.index.name or ""))
    ax.set_title(label(title))
    ax.legend(handles=[Patch(color=c, label=v) for v, c in zip(VERDICT_ORDER, VERDICT_COLORS,
                                                                 strict=True)],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="verdict")
    fig.tight_layout()
    return fig


def capacity_bars(capacity: pd.DataFrame, total_cpus: int | None = None,
                  limit: int = 25, title: str = "Capacity reachable per candidate CPU model"
                  ) -> Figure:
    """Horizontal bars: host CPUs a guest using each model can reach (labelled with hosts
    and GiB); recommended models highlighted.  At most ``limit`` models (the frame's order)."""
    df = capacity.head(limit)
    n = len(df)
    fig = _figure(9.0, max(2.5, 0.32 * n + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    if n == 0:
        ax.text(0.5, 0.5, "no CPU model runs on these hosts", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = np.arange(n)
    colors = ["#e65100" if r else "#1f77b4" for r in df["recommended"]]
    ax.barh(y, df["cpus"], color=colors)
    for i, (cpus, hosts, gib) in enumerate(zip(df["cpus"], df["hosts"], df["memory_gib"],
                                                strict=True)):
        ax.text(cpus, i, f" {hosts} hosts, {gib:g} GiB", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(_labels(df.index), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("host CPUs (logical) that can run a guest with this CPU model")
    ax.set_ylabel("guest CPU model")
    if total_cpus:
        ax.axvline(total_cpus, color="black", linestyle="--", linewidth=1)
        ax.set_xlim(0, total_cpus * 1.35)
    ax.set_title(label(title))
    ax.legend(handles=[Patch(color="#e65100", label="recommended (cpu_models[0])"),
                       Patch(color="#1f77b4", label="other catalog model")]
              + ([Line2D([0], [0], color="black", linestyle="--",
                                          label="all hosts")] if total_cpus else []),
              loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def domain_bars(domains: pd.DataFrame, title: str = "Migration domains") -> Figure:
    """Hosts per migration domain, labelled with their members."""
    n = len(domains)
    fig = _figure(9.0, max(2.2, 0.4 * n + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(n)
    ax.barh(y, domains["hosts"], color="#5e35b1")
    for i, members in enumerate(domains["members"]):
        text = members if len(members) <= 60 else members[:57] + "..."
        ax.text(domains["hosts"].iloc[i], i, f"  {label(text)}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"domain {d}" for d in domains.index], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("hosts")
    ax.set_xlim(0, max(1, int(domains["hosts"].max()) if n else 1) * 2.2)
    ax.set_title(label(title))
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)
