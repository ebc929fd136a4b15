"""Hostile input: text from a snapshot, a groups file or a CPU map that tries to become
configuration, a spreadsheet formula or terminal output (issue 14 item 1).

The files operators deploy (nova-cpu.conf, nova-cpu.yml) are written by real
serialisers (configparser, PyYAML's safe_dump) from values that must be names the
CPU catalog knows; file names are made safe; CSV cells a spreadsheet would run are
neutralised; control characters never reach the terminal raw.
"""

from __future__ import annotations

import configparser
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"
INJECTED_YAML = "agg\nnova_libvirt_extra_opts: injected\n#"
INJECTED_INI = "agg\n[libvirt]\ncpu_mode = host-passthrough\n#"
NOVA_KEYS = {"cpu_mode", "cpu_models", "cpu_model_extra_flags"}
YAML_KEYS = {"nova_cpu_mode", "nova_cpu_model"}


def _snap(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    return snap


def _settings_files(out: Path) -> tuple[list[Path], list[Path]]:
    return sorted(out.glob("nova-cpu*.conf")), sorted(out.glob("nova-cpu*.yml"))


def _assert_clean_settings(out: Path, n: int) -> None:
    confs, ymls = _settings_files(out)
    assert len(confs) == len(ymls) == n, sorted(p.name for p in out.iterdir())
    for conf in confs:
        ini = configparser.ConfigParser(strict=True, interpolation=None)
        ini.read_string(conf.read_text())  # strict: a second [libvirt] would raise here
        assert ini.sections() == ["libvirt"]
        assert set(ini["libvirt"]) <= NOVA_KEYS
        assert ini["libvirt"]["cpu_mode"] in ("custom", "host-passthrough")
    for yml in ymls:
        doc = yaml.safe_load(yml.read_text())
        assert set(doc) <= YAML_KEYS, doc


@pytest.mark.parametrize("name", [INJECTED_YAML, INJECTED_INI])
def test_an_aggregate_name_never_becomes_a_setting(tmp_path, name):
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml.safe_dump({name: ["cn01", "cn02"], "new": ["cn03", "cn04", "cn05"]}))
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--groups", str(groups), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    _assert_clean_settings(out, 2)
    # the aggregate's file name is one safe component
    assert all(re.fullmatch(r"nova-cpu\.[A-Za-z0-9._-]+\.(conf|yml)", p.name)
               for p in out.glob("nova-cpu*"))
    # and the text output names it on one line, escaped
    assert not any(line.strip() == "cpu_mode = host-passthrough" for line in r.stdout.splitlines())
    assert "nova_libvirt_extra_opts: injected" not in r.stdout.splitlines()


def test_a_vendor_string_never_becomes_a_setting(tmp_path):
    snap = _snap(tmp_path)
    caps = snap / "hosts" / "cn01" / "capabilities.xml"
    caps.write_text(caps.read_text().replace(
        "<vendor>Intel</vendor>",
        "<vendor>Intel2&#10;nova_libvirt_extra_opts: injected&#10;#</vendor>", 1))
    out = tmp_path / "out"
    r = run_cli("recommend", str(snap), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    _assert_clean_settings(out, 1)


def test_two_aggregates_whose_names_look_alike_get_two_files(tmp_path):
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml.safe_dump({"rack/1": ["cn01", "cn02"], "rack 1": ["cn03", "cn04", "cn05"]}))
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--groups", str(groups), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    _assert_clean_settings(out, 2)


def test_a_host_name_with_a_newline_cannot_fake_a_setting_line(tmp_path):
    snap = _snap(tmp_path)
    man = json.loads((snap / "manifest.json").read_text())
    man["hosts"][0]["name"] = "cn01\n  [libvirt]\n  cpu_mode = host-passthrough\n\x1b[2J"
    (snap / "manifest.json").write_text(json.dumps(man))
    for args in (("recommend", str(snap)), ("check", "cn01-web", "cn02", "--snapshot", str(snap))):
        r = run_cli(*args)
        assert r.returncode in (0, 3), r.stderr
        lines = [x.strip() for x in r.stdout.splitlines()]
        assert "cpu_mode = host-passthrough" not in lines
        assert lines.count("[libvirt]") == (1 if args[0] == "recommend" else 0)
        assert "\x1b" not in r.stdout and "\\x1b" in r.stdout


def test_a_guest_name_that_is_a_formula_is_neutralised_in_matrix_csv(tmp_path):
    snap = _snap(tmp_path)
    xml = snap / "hosts" / "cn01" / "domains" / "cn01-web.xml"
    formula = '=HYPERLINK("http://evil.example/x","click")'
    escaped = formula.replace('"', "&quot;")
    xml.write_text(xml.read_text().replace("<name>cn01-web</name>", f"<name>{escaped}</name>"))
    out = tmp_path / "out"
    r = run_cli("recommend", str(snap), "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    rows = list(csv.reader(io.StringIO((out / "matrix.csv").read_text())))
    cells = [c for row in rows for c in row]
    assert any(formula in c for c in cells)  # the name is kept, readable
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_render_csv_neutralises_every_formula_lead():
    from planner.cli.output import render_csv

    text = render_csv(["a", "b"], [["=1+1", "+1"], ["-2", "@SUM(A1)"], ["\tx", "\rx"], [-3, "ok"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1:] == [["'=1+1", "'+1"], ["'-2", "'@SUM(A1)"], ["'\tx", "'\rx"], ["-3", "ok"]]


def test_control_characters_are_escaped_in_tables_and_errors():
    from planner.cli.output import render_table

    text = render_table(["host"], [["cn1\nfake line"], ["\x1b[31mred\x07"]])
    assert "fake line" in text and "\nfake line" not in text
    assert "\x1b" not in text and "\x07" not in text
    r = run_cli("check", "x", "y", "--snapshot", "/nonexistent/\x1b[2Jsnap")
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\\x1b" in r.stderr


def _cpu_map_with(tmp_path: Path, old: str, new: str) -> Path:
    d = tmp_path / "cpu_map"
    shutil.copytree("/usr/share/libvirt/cpu_map", d)
    f = d / "x86_Haswell-noTSX-IBRS.xml"
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new))
    return d


@pytest.mark.skipif(not Path("/usr/share/libvirt/cpu_map/index.xml").exists(),
                    reason="libvirt's cpu_map is not installed (libvirt-daemon)")
def test_a_cpu_map_whose_model_name_holds_a_newline_is_refused(tmp_path):
    cpu_map = _cpu_map_with(tmp_path, "name='Haswell-noTSX-IBRS'",
                            "name='Haswell-noTSX-IBRS&#10;cpu_mode = host-passthrough'")
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--cpu-map", str(cpu_map), "--out", str(out))
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("Error: ") and "x86_Haswell-noTSX-IBRS.xml" in r.stderr
    assert not out.exists()


def test_settings_are_only_catalog_names():
    """The serialiser itself refuses a model or feature the catalog does not name."""
    from dataclasses import replace

    from planner.adapters.catalogs import default_catalog
    from planner.errors import MigplanError
    from planner.review import nova_files, report
    from planner.snapshot.read import load

    cat = default_catalog()
    rec = report.build_report(load(FIXTURE), cat).recs[0]
    assert nova_files.nova_ini(rec, cat).count("[libvirt]") == 1
    for bad in (replace(rec, cpu_models=("Haswell\n[DEFAULT]",)),
                replace(rec, cpu_model_extra_flags=("+vme\nx=1",)),
                replace(rec, cpu_model_extra_flags=("+no-such-feature",)),
                replace(rec, cpu_mode="custom\nx")):
        with pytest.raises(MigplanError):
            nova_files.nova_ini(bad, cat)
        with pytest.raises(MigplanError):
            nova_files.globals_yaml(bad, cat)
