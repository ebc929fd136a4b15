"""Hostile input: a host CPU outside the catalog (issue 14 item 8, issue 13 item 5).

One host whose model, feature, vendor or architecture migplan's catalog does not
know never sinks the fleet: that host is reported unknown, naming its file, what
is unknown and the hint ``--cpu-map``; every other host is still planned, and the
plan for them is the one without that host.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import MODERN_CORPUS, REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"
CPU_BLOCK = re.compile(r"<cpu>.*?</cpu>", re.S)

AARCH64_CPU = """<cpu>
      <arch>aarch64</arch>
      <model>cortex-a72</model>
      <vendor>ARM</vendor>
      <topology sockets='1' dies='1' cores='4' threads='1'/>
      <feature name='fp'/>
    </cpu>"""


def _with_cn01(tmp_path: Path, cpu_xml: str | None = None,
               edit: tuple[str, str] | None = None) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    caps = snap / "hosts" / "cn01" / "capabilities.xml"
    text = caps.read_text()
    if cpu_xml is not None:
        text = CPU_BLOCK.sub(lambda _m: cpu_xml, text, count=1)
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    caps.write_text(text)
    # the host-model of domcapabilities would describe the old CPU
    (snap / "hosts" / "cn01" / "domcapabilities.xml").unlink()
    return snap


def _recommend(snap: Path) -> tuple[dict, str]:
    r = run_cli("recommend", str(snap), "--format", "json")
    doc = json.loads(r.stdout)
    # the unknown host never sinks the fleet; 3 says guests are stranded (issue 14 item 5)
    assert r.returncode == (3 if doc["stranded"] else 0), r.stderr
    return doc, r.stderr


def _without_cn01(tmp_path: Path) -> dict:
    snap = tmp_path / "without"
    shutil.copytree(FIXTURE, snap)
    shutil.rmtree(snap / "hosts" / "cn01")
    man = json.loads((snap / "manifest.json").read_text())
    man["hosts"] = [h for h in man["hosts"] if h["name"] != "cn01"]
    (snap / "manifest.json").write_text(json.dumps(man))
    return _recommend(snap)[0]["recommendation"]


@pytest.mark.parametrize("case, unknown", [
    ("future model", "CPU model GraniteRapids-v3"),
    ("future feature", "CPU feature cet-ss"),
    ("unknown vendor", "CPU vendor Zhaoxin"),
    ("aarch64 host", "architecture aarch64, CPU model cortex-a72"),
])
def test_one_unknown_host_is_reported_and_the_rest_planned(tmp_path, case, unknown):
    if case == "future model":
        snap = _with_cn01(tmp_path, edit=("<model>Haswell-noTSX-IBRS</model>",
                                          "<model>GraniteRapids-v3</model>"))
    elif case == "future feature":
        snap = _with_cn01(tmp_path, edit=("<feature name='vme'/>", "<feature name='cet-ss'/>"))
    elif case == "unknown vendor":
        snap = _with_cn01(tmp_path, edit=("<vendor>Intel</vendor>", "<vendor>Zhaoxin</vendor>"))
    else:
        snap = _with_cn01(tmp_path, AARCH64_CPU)
    doc, _ = _recommend(snap)
    rec = doc["recommendation"]
    assert rec["unknown_hosts"] == [{"host": "cn01", "file": "hosts/cn01/capabilities.xml",
                                     "unknown": unknown, "hint": "--cpu-map"}]
    note = rec["explanation"][0]
    assert "cn01" in note and "hosts/cn01/capabilities.xml" in note and unknown in note
    assert "--cpu-map" in note
    # the rest is planned exactly as without that host
    alone = _without_cn01(tmp_path)
    assert "cn01" not in rec["hosts"]
    for key in ("hosts", "cpu_mode", "cpu_models", "cpu_model_extra_flags", "baseline"):
        assert rec[key] == alone[key], key


def test_the_text_output_names_the_unknown_host_file_and_hint(tmp_path):
    snap = _with_cn01(tmp_path, edit=("<model>Haswell-noTSX-IBRS</model>",
                                      "<model>GraniteRapids-v3</model>"))
    r = run_cli("recommend", str(snap))
    assert r.returncode == 3 and " stranded, " in r.stderr, r.stderr  # planned; guests stranded
    assert "cpu_mode = custom" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "GraniteRapids-v3" in x)
    assert "cn01" in line and "hosts/cn01/capabilities.xml" in line and "--cpu-map" in line


def test_when_no_host_is_known_the_error_names_each_file_and_the_hint(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    for caps in (snap / "hosts").glob("*/capabilities.xml"):
        caps.write_text(CPU_BLOCK.sub(lambda _m: AARCH64_CPU, caps.read_text(), count=1))
    r = run_cli("recommend", str(snap))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "hosts/cn01/capabilities.xml" in r.stderr and "--cpu-map" in r.stderr
    assert "architecture aarch64" in r.stderr


def test_a_libvirt_11_host_among_libvirt_9_hosts_is_planned_in_models_all_know(tmp_path):
    """(issue 13 items 1, 3) A real Sapphire Rapids host as libvirt 11 describes it
    (Icelake-Server-v2 + features 9.0 has no name for) in a libvirt 9.0 fleet."""
    from planner.adapters.catalogs import default_catalog

    snap = _with_cn01(tmp_path, (MODERN_CORPUS / "x86_64-cpuid-Xeon-Bronze-3408U-host.xml")
                      .read_text())
    rec = _recommend(snap)[0]["recommendation"]
    assert rec["unknown_hosts"] == [] and "cn01" in rec["hosts"]
    nine = default_catalog()
    assert rec["cpu_models"] and all(m in nine.model_by_name for m in rec["cpu_models"])
    assert all(f[1:] in nine.feature_by_name for f in rec["cpu_model_extra_flags"])
    note = rec["explanation"][0]
    assert "cn01" in note and "Icelake-Server-v2" in note and "libvirt 11.3.0" in note
    assert "fdp-excptn-only" in note or "features libvirt 9.0.0 cannot name" in note
    # the newest host does not lower the baseline model of the older ones; it can
    # only take away features the others have (real CPUs: it lacks a few of them)
    alone = _without_cn01(tmp_path)
    assert rec["cpu_mode"] == alone["cpu_mode"] and rec["cpu_models"] == alone["cpu_models"]
    assert rec["baseline"]["model"] == alone["baseline"]["model"]
    assert set(rec["baseline"]["features"]) <= set(alone["baseline"]["features"])


def test_report_of_a_snapshot_mixing_x86_64_and_aarch64_hosts(tmp_path):
    """``migplan report`` once stopped at ``Unknown CPU model cortex-a72``."""
    snap = _with_cn01(tmp_path, AARCH64_CPU)
    out = tmp_path / "out"
    r = run_cli("report", str(snap), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = (out / "capacity-review.html").read_text()
    assert "architecture aarch64" in html and "--cpu-map" in html
