"""`migplan report SNAPSHOT --out DIR`: one self-contained HTML capacity review."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from conftest import REPO, run_cli  # noqa: E402

FIX = REPO / "fixtures"
PNG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.mark.parametrize("fixture", ["modern-mixed-fleet", "mixed-intel-generations",
                                     "intel-amd-mixed"])
def test_report_writes_html_with_tables_and_embedded_plots(fixture: str, tmp_path: Path) -> None:
    out = tmp_path / "review"
    r = run_cli("report", str(FIX / fixture), "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = (out / "capacity-review.html").read_text(encoding="utf-8")
    assert str(out / "capacity-review.html") in r.stdout
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<table") >= 5
    plots = PNG.findall(page)
    titles = [t for t, _ in plots]
    assert len(plots) >= 4
    assert any("features" in t for t in titles) and any("Feasibility" in t for t in titles)
    assert any("Capacity" in t for t in titles) and any("domains" in t for t in titles)
    for _, data in plots:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    # self-contained: nothing fetched from elsewhere
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for d in (FIX / fixture / "hosts").iterdir():
        assert f"<th>{d.name}</th>" in page  # every host has a row in the hosts table


def test_report_on_a_missing_snapshot_is_an_error(tmp_path: Path) -> None:
    r = run_cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_report_requires_out() -> None:
    r = run_cli("report", str(FIX / "mixed-intel-generations"))
    assert r.returncode == 2 and "--out" in r.stderr


def test_report_help_has_an_example() -> None:
    r = run_cli("report", "--help")
    assert r.returncode == 0 and "Example:" in r.stdout and "migplan report" in r.stdout


def test_large_clusters_get_per_cpu_and_per_class_views() -> None:
    from planner.review.analysis import load_report
    from planner.review.html import render_html

    rep = load_report(FIX / "mixed-intel-generations")
    page = render_html(rep, max_host_rows=2)  # pretend 5 hosts are many
    assert "Per CPU model" in page and "Per CPU mode and model" in page
    assert len(PNG.findall(page)) >= 4
    assert "<th>c1</th>" in page  # the host classes the per-class heatmap is drawn by
