"""Missing data never becomes a configuration some host cannot run (issue 14 item 5).

Deleting one host's domcapabilities.xml used to put ds, acpi, tm, pbe, monitor, smx ...
into cpu_model_extra_flags -- host CPU features the other hosts' domcapabilities say
KVM never gives a guest -- with a warning that the other hosts cannot run it, and exit 0.
Now only what every host's domcapabilities proves goes into the flags, what was left
out for want of the file is said, and recommend's exit code tells a script whether the
settings are safe to deploy and whether guests are stranded.
"""

from __future__ import annotations

import configparser
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"
NEVER_OFFERED = {"ds", "acpi", "tm", "pbe", "monitor", "smx", "dtes64", "ds_cpl", "est",
                 "tm2", "xtpr", "dca"}


@pytest.fixture
def snap(tmp_path) -> Path:
    s = tmp_path / "snap"
    shutil.copytree(FIXTURE, s)
    (s / "hosts" / "cn01" / "domcapabilities.xml").unlink()
    return s


def _flags(doc: dict) -> set[str]:
    return {f[1:] for f in doc["recommendation"]["cpu_model_extra_flags"]}


def test_flags_are_only_what_every_hosts_domcapabilities_proves(snap):
    r = run_cli("recommend", str(snap), "--format", "json")
    doc = json.loads(r.stdout)
    assert not _flags(doc) & NEVER_OFFERED, _flags(doc)
    assert all(h["compare"] != "incompatible" for h in doc["hosts"])  # every host runs it
    why = " ".join(doc["recommendation"]["explanation"])
    assert "cn01" in why and "domcapabilities.xml" in why
    assert "cannot run the recommended CPU" not in why


def test_every_host_runs_the_settings_libvirt_compare_says(snap):
    """The guest CPU the settings give, against each host's own offer (domcapabilities
    host-model where collected, the host CPU otherwise), by libvirt's rules."""
    from planner.adapters.catalogs import default_catalog
    from planner.cpu.engine import compare
    from planner.recommend.cpu_config import guest_cpu_for, recommend
    from planner.snapshot.read import load

    cat = default_catalog()
    inv = load(snap)
    rec = recommend(inv.hosts, cat)
    gcpu = guest_cpu_for(rec.cpu_models[0], rec.cpu_model_extra_flags)
    for h in inv.hosts:
        offer = h.host_model if h.host_model is not None else h.cpu
        assert compare(offer, gcpu, cat).compatible, h.name


def test_capabilities_only_hosts_get_no_unproven_flags():
    r = run_cli("recommend", str(REPO / "fixtures" / "hand-made-capabilities-only"),
                "--format", "json")
    doc = json.loads(r.stdout)
    assert not _flags(doc) & NEVER_OFFERED


def test_stranded_guests_exit_3_and_the_settings_are_still_written(tmp_path):
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--out", str(out))
    assert r.returncode == 3, r.stderr
    assert "4 guests stranded" in r.stderr and "Error" not in r.stderr
    assert (out / "nova-cpu.conf").exists()


def test_no_stranded_guest_exits_0():
    r = run_cli("recommend", str(REPO / "fixtures" / "lab-3-hosts"))
    assert r.returncode == 0, r.stderr


def test_a_configuration_some_host_cannot_run_is_not_emitted(tmp_path, monkeypatch):
    """Forced here by a catalog that disagrees with the hosts (libvirt's baseline itself
    never gives one): the settings are not written and recommend exits 6."""
    from planner.cli import recommend as cli_recommend
    from planner.review import report

    real = report.build_report

    def broken(*a, **kw):  # a recommendation one host cannot run (a fake: see docstring)
        rep = real(*a, **kw)
        rec = rep.recs[0]
        costs = (replace(rec.costs[0], compare="incompatible"), *rec.costs[1:])
        return replace(rep, recs=[replace(rec, costs=costs)])

    monkeypatch.setattr(report, "build_report", broken)
    from click.testing import CliRunner

    out = tmp_path / "out"
    res = CliRunner().invoke(cli_recommend.recommend_cmd, [str(FIXTURE), "--out", str(out)])
    assert res.exit_code == 6, res.output
    assert "no safe configuration" in res.output
    assert not list(out.glob("nova-cpu*"))
    assert "cpu_mode = " not in res.output.split("Why:")[0]


def test_exit_codes_are_documented():
    text = (REPO / "docs" / "exit-codes.md").read_text()
    for code in ("| 3 |", "| 6 |"):
        assert code in text
    assert "stranded" in text and "no safe configuration" in text


def test_the_ini_written_is_what_the_report_says(tmp_path, snap):
    out = tmp_path / "out"
    r = run_cli("recommend", str(snap), "--out", str(out), "--format", "json")
    doc = json.loads(r.stdout)
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(out / "nova-cpu.conf")
    flags = ini["libvirt"].get("cpu_model_extra_flags", "")
    assert [f.strip() for f in flags.split(",") if f.strip()] == \
        doc["recommendation"]["cpu_model_extra_flags"]
