"""`migplan recommend` and `migplan check` end to end: golden outputs per fixture, errors, exit codes.

Golden files live in tests/golden/<scenario>/; regenerate them with
``pytest tests/test_cli_recommend.py --update-golden`` (or MIGPLAN_UPDATE_GOLDEN=1)
and review the diff.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

FIXTURES = sorted(p.name for p in (REPO / "fixtures").iterdir() if p.is_dir())
GOLDEN = REPO / "tests" / "golden"


def _golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not update:
            pytest.fail(f"{path} did not exist; written now: review and commit it")
    assert text == path.read_text(), f"{path} differs (rerun with --update-golden and review)"


@pytest.mark.parametrize("scenario", FIXTURES)
def test_recommend_golden_json(scenario, update_golden):
    r = run_cli("recommend", f"fixtures/{scenario}", "--format", "json")
    doc = json.loads(r.stdout)
    assert r.returncode == (3 if doc["stranded"] else 0), r.stderr  # 3: guests stranded
    assert {"cpu_mode", "cpu_models", "cpu_model_extra_flags"} <= set(doc["recommendation"])
    for row in doc["matrix"]:
        assert set(row) == {"source", "destination", "guest", "verdict", "reasons"}
        assert row["verdict"] in ("ok", "warn", "unknown", "blocked")
    assert all("features_lost" in h for h in doc["hosts"])
    _golden(f"{scenario}/recommend.json", r.stdout, update_golden)


@pytest.mark.parametrize("scenario", FIXTURES)
def test_recommend_golden_table(scenario, update_golden):
    r = run_cli("recommend", f"fixtures/{scenario}")
    assert r.returncode in (0, 3), r.stderr
    assert (r.returncode == 3) == (" stranded, no other host" in r.stderr)
    assert "cpu_mode = " in r.stdout
    _golden(f"{scenario}/recommend.txt", r.stdout, update_golden)


def test_recommend_writes_nova_settings_and_matrix(tmp_path, update_golden):
    out = tmp_path / "out"
    r = run_cli("recommend", "fixtures/mixed-intel-generations", "--out", str(out))
    assert r.returncode == 3, r.stderr  # 4 guests stranded: the settings are still written
    assert sorted(p.name for p in out.iterdir()) == [
        "matrix.csv", "migplan-run.json", "nova-cpu.conf", "nova-cpu.yml", "report.json"]
    ini = (out / "nova-cpu.conf").read_text()
    assert "[libvirt]\ncpu_mode = custom\ncpu_models = " in ini
    yml = yaml.safe_load((out / "nova-cpu.yml").read_text())
    assert yml["nova_cpu_mode"] == "custom" and yml["nova_cpu_model"] == "Haswell-noTSX-IBRS"
    assert (out / "matrix.csv").read_text().startswith("source,destination,guest,verdict,")
    for name in ("nova-cpu.conf", "nova-cpu.yml"):
        _golden(f"mixed-intel-generations/{name}", (out / name).read_text(), update_golden)


def test_recommend_one_setting_per_aggregate(tmp_path):
    groups = tmp_path / "aggregates.yaml"
    groups.write_text("old: [cn01, cn02]\nnew: [cn03, cn04, cn05]\n")
    out = tmp_path / "out"
    r = run_cli("recommend", "fixtures/mixed-intel-generations", "--groups", str(groups),
                "--out", str(out), "--format", "json")
    assert r.returncode in (0, 3), r.stderr
    doc = json.loads(r.stdout)
    assert [x["scope"] for x in doc["recommendations"]] == ["new", "old"]
    assert (out / "nova-cpu.new.conf").exists() and (out / "nova-cpu.old.yml").exists()


def test_groups_naming_unknown_hosts_is_an_error(tmp_path):
    groups = tmp_path / "g.csv"
    groups.write_text("host,aggregate\nnope,a\n")
    r = run_cli("recommend", "fixtures/mixed-intel-generations", "--groups", str(groups))
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and "nope" in r.stderr


def test_classes_detail_bounds_the_matrix():
    r = run_cli("recommend", "fixtures/mixed-intel-generations", "--format", "json",
                "--detail", "classes")
    doc = json.loads(r.stdout)
    assert doc["matrix_detail"] == "classes"
    classes = {c["id"] for c in doc["host_classes"]}
    shapes = {s["id"] for s in doc["guest_shapes"]}
    assert len(doc["matrix"]) <= len(classes) * (len(classes) + len(shapes))
    assert {r["guest"] for r in doc["matrix"]} - {None} <= {f"shape:{s}" for s in shapes}
    assert len(doc["guests"]) == sum(h["guests"] for h in doc["hosts"])


# --- check ---------------------------------------------------------------------------------------

def test_check_feasible_move_exits_0():
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", "fixtures/mixed-intel-generations")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("cn01-web: cn01 -> cn02: ")


def test_check_infeasible_move_exits_3_with_every_reason():
    r = run_cli("check", "cn04-hostmodel", "cn03", "--snapshot",
                "fixtures/mixed-intel-generations", "--format", "json")
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "blocked" and not doc["feasible"]
    assert "cpu-features.missing" in {x["code"] for x in doc["reasons"]}
    assert len(doc["reasons"]) >= 16  # every rule answers


def test_check_unknown_guest_or_host_is_a_usage_error():
    r = run_cli("check", "nope", "cn02", "--snapshot", "fixtures/mixed-intel-generations")
    assert r.returncode == 2 and "Error: guest 'nope'" in r.stderr
    r = run_cli("check", "cn01-web", "nope", "--snapshot", "fixtures/mixed-intel-generations")
    assert r.returncode == 2 and "Error: host 'nope'" in r.stderr


# --- bad snapshots -------------------------------------------------------------------------------

def _copy(tmp_path: Path, scenario: str = "storage-backends") -> Path:
    dst = tmp_path / scenario
    shutil.copytree(REPO / "fixtures" / scenario, dst)
    return dst


@pytest.mark.parametrize("cmd", [["recommend"], ["check", "g", "h", "--snapshot"]])
def test_missing_snapshot_is_a_clear_error(tmp_path, cmd):
    r = run_cli(*cmd, str(tmp_path / "nowhere"))
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and "no such snapshot" in r.stderr
    assert "Traceback" not in r.stderr


def test_empty_snapshot_is_a_clear_error(tmp_path):
    (tmp_path / "hosts").mkdir()
    r = run_cli("recommend", str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and "no hosts" in r.stderr


def test_missing_capabilities_is_a_clear_error(tmp_path):
    snap = _copy(tmp_path)
    (snap / "hosts" / "st-02" / "capabilities.xml").unlink()
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and "capabilities.xml" in r.stderr


def test_hostile_xml_is_refused(tmp_path):
    snap = _copy(tmp_path)
    (snap / "hosts" / "st-02" / "capabilities.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
        "<capabilities><host><cpu><arch>&lol2;</arch></cpu></host></capabilities>\n")
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1 and r.stderr.startswith("Error: ")
    assert "Traceback" not in r.stderr


def test_duplicate_host_names_are_refused(tmp_path):
    snap = _copy(tmp_path)
    man = json.loads((snap / "manifest.json").read_text())
    man["hosts"].append(dict(man["hosts"][0]))
    (snap / "manifest.json").write_text(json.dumps(man))
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1 and "duplicate host name" in r.stderr


def test_every_new_command_has_help_with_an_example():
    for cmd in ("recommend", "check"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "Example:" in r.stdout


@pytest.mark.parametrize("guest,dest,code", [("cn04-hostmodel", "cn03", 3), ("cn01-web", "cn02", 0)])
def test_check_golden(guest, dest, code, update_golden):
    r = run_cli("check", guest, dest, "--snapshot", "fixtures/mixed-intel-generations")
    assert r.returncode == code, r.stderr
    _golden(f"mixed-intel-generations/check-{guest}-{dest}.txt", r.stdout, update_golden)


@pytest.mark.parametrize("scenario", FIXTURES)
@pytest.mark.parametrize("detail", ["full", "classes"])
def test_large_json_is_streamed_compact_with_the_same_content(scenario, detail, monkeypatch):
    from planner.adapters.catalogs import default_catalog
    from planner.review import report
    from planner.snapshot.read import load

    rep = report.build_report(load(REPO / "fixtures" / scenario), default_catalog())
    doc = report.report_json(rep, detail)
    small = "".join(report.iter_report_json(rep, detail))
    assert small == json.dumps(doc, indent=2) + "\n"  # small reports: unchanged bytes
    monkeypatch.setattr(report, "LARGE_DOCUMENT", 0)
    chunks = list(report.iter_report_json(rep, detail, chunk=2))
    text = "".join(chunks)
    assert json.loads(text) == doc
    assert list(json.loads(text)) == list(doc)  # key order kept
    assert "\n  " not in text  # no indentation
    # one top-level key per line, one guest per line
    assert text.count("\n") >= len(doc) + len(doc["guests"])


def test_check_and_migrate_write_one_verdict_shape():
    """A verdict reads the same in `check --format json` and `migrate --dry-run --format json`."""
    chk = run_cli("check", "cn04-hostmodel", "cn03", "--snapshot",
                  "fixtures/mixed-intel-generations", "--format", "json")
    reasons = json.loads(chk.stdout)["reasons"]
    assert {tuple(sorted(x)) for x in reasons} == {("code", "message", "rule", "verdict")}
    assert {x["verdict"] for x in reasons} <= {"ok", "warn", "unknown", "blocked"}
    from planner.assess.verdict import Status, Verdict
    from planner.plan.migration import MigrateOptions, make_plan

    v = Verdict("memory", Status.WARN, "memory.tight", "1 GiB left")
    plan = make_plan("vm", "a", "ua", "b", "ub", memory_kib=1024, local_disks=[],
                     opts=MigrateOptions(), preflight=(v,))
    assert plan.to_json()["preflight"] == [
        {"rule": "memory", "verdict": "warn", "code": "memory.tight", "message": "1 GiB left"}]
