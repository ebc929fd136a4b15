"""Hostile values: numbers that are not numbers, counts that are negative, strings where
numbers belong (issue 14 item 7).

Every number and type of a snapshot's JSON is checked at load, the error naming the file
and the field; options refuse nan and inf; every JSON migplan writes is standard JSON
(no NaN, no Infinity: strict parsers refuse them).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

FIXTURE = REPO / "fixtures" / "mixed-intel-generations"


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not standard JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("args", [
    ("recommend", str(FIXTURE), "--cpu-ratio", "nan"),
    ("recommend", str(FIXTURE), "--cpu-ratio", "inf"),
    ("check", "cn01-web", "cn02", "--snapshot", str(FIXTURE), "--cpu-ratio", "NaN"),
    ("migrate", "vm", "h", "--source", "qemu+tcp://127.0.0.250/system", "--timeout", "nan",
     "--dry-run"),
    ("drain", "h", "--snapshot", str(FIXTURE), "--timeout", "inf"),
    ("collect", "test:///default", "--out", "/nonexistent/x", "--timeout", "nan"),
])
def test_options_refuse_numbers_that_are_not_numbers(args):
    r = run_cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "finite number" in r.stderr and "Traceback" not in r.stderr


def test_the_library_refuses_a_nan_policy_too():
    from planner.assess.rules import Policy
    from planner.errors import UsageError

    for bad in ({"cpu_allocation_ratio": math.nan}, {"cpu_allocation_ratio": math.inf},
                {"cpu_allocation_ratio": 0}, {"memory_reserve_kib": -1}):
        with pytest.raises(UsageError):
            Policy(**bad)


def _edit_host_json(tmp_path: Path, edit) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    f = snap / "hosts" / "cn02" / "host.json"
    doc = json.loads(f.read_text())
    text = edit(doc)
    f.write_text(text if isinstance(text, str) else json.dumps(doc))
    return snap


def _set(path: str, value):
    def edit(doc):
        *parents, last = path.split(".")
        d = doc
        for p in parents:
            d = d[int(p)] if p.isdigit() else d[p]
        d[int(last) if last.isdigit() else last] = value
    return edit


@pytest.mark.parametrize("path, value, field", [
    ("nodeinfo.cpus", "48", "nodeinfo.cpus"),
    ("nodeinfo.cpus", -4, "nodeinfo.cpus"),
    ("nodeinfo.cpus", 0, "nodeinfo.cpus"),
    ("nodeinfo.cpus", 48.5, "nodeinfo.cpus"),
    ("nodeinfo.cpus", True, "nodeinfo.cpus"),
    ("nodeinfo.memory_kib", -1953125000, "nodeinfo.memory_kib"),
    ("free_memory_bytes", -2000000000000, "free_memory_bytes"),
    ("cells.0.free_bytes", -1, "cells[0].free_bytes"),
    ("cells.0.free_pages", {"2048": "x"}, "cells[0].free_pages.2048"),
    ("cells.0.free_pages", {"2M": 4}, "cells[0].free_pages"),
    ("cells.0.id", "0", "cells[0].id"),
    ("versions.libvirt", 9, "versions.libvirt"),
    ("hostname", ["cn02"], "hostname"),
    ("cpu_model_names", "Haswell", "cpu_model_names"),
])
def test_a_wrong_value_in_host_json_is_an_error_naming_file_and_field(tmp_path, path, value,
                                                                       field):
    snap = _edit_host_json(tmp_path, _set(path, value))
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1, r.stdout[-500:]
    assert r.stderr.startswith("Error: ") and "internal error" not in r.stderr
    assert "hosts/cn02/host.json" in r.stderr and f"{field}:" in r.stderr, r.stderr


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_snapshot_is_not_json(tmp_path, constant):
    def edit(doc):
        return "{" + f'"free_memory_bytes": {constant}, ' + json.dumps(doc)[1:]
    snap = _edit_host_json(tmp_path, edit)
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1 and "not valid JSON" in r.stderr and constant in r.stderr


@pytest.mark.parametrize("field, value", [("persistent", "yes"), ("state", 1), ("reason", -1),
                                          ("name", 7)])
def test_a_wrong_value_in_domains_json_is_an_error_naming_the_field(tmp_path, field, value):
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    f = snap / "hosts" / "cn01" / "domains.json"
    index = json.loads(f.read_text())
    index[1][field] = value
    f.write_text(json.dumps(index))
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1, r.stdout[-300:]
    assert "hosts/cn01/domains.json: entry 2." + field in r.stderr, r.stderr


def test_a_negative_size_in_capabilities_is_refused(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURE, snap)
    caps = snap / "hosts" / "cn03" / "capabilities.xml"
    text = caps.read_text()
    i = text.index("<memory unit='KiB'>") + len("<memory unit='KiB'>")
    caps.write_text(text[:i] + "-" + text[i:])
    r = run_cli("recommend", str(snap))
    assert r.returncode == 1 and "cn03/capabilities.xml" in r.stderr and "negative" in r.stderr


def test_every_json_output_is_standard(tmp_path):
    out = tmp_path / "out"
    r = run_cli("recommend", str(FIXTURE), "--format", "json", "--out", str(out))
    assert r.returncode in (0, 3), r.stderr
    _strict(r.stdout)
    _strict((out / "report.json").read_text())
    _strict((out / "migplan-run.json").read_text())
    r = run_cli("check", "cn01-web", "cn02", "--snapshot", str(FIXTURE), "--format", "json")
    _strict(r.stdout)
    from planner.cli.output import render_json

    with pytest.raises(ValueError):
        render_json({"ratio": math.nan})  # never written: an error, not a bare NaN
