"""The server's name and UUID beside the libvirt name: recommend's JSON (guests, stranded;
streamed or not), its text, check (which also takes a server name or UUID), report HTML.
From a guest's <nova:instance> metadata, else nova.json's server of that instance name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from planner.model import NovaFacts, NovaServer
from planner.snapshot.write import write_nova

DATA = Path(__file__).resolve().parent / "data" / "nova"
UUID2 = "dc0ba7f5-fae9-480e-8bf7-06be2a4a883e"


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    """lab-3-hosts with lab2-vm1 Nova-managed through its metadata (Nova's real element from
    tests/data/nova) and lab1-vm1 through nova.json only."""
    s = tmp_path / "snap"
    shutil.copytree(REPO / "fixtures" / "lab-3-hosts", s)
    xml_file = s / "hosts" / "lab2" / "domains" / "lab2-vm1.xml"
    xml = xml_file.read_text()
    meta = (DATA / "nova-26.2.2-metadata.xml").read_text()
    uuid_start = xml.index("<uuid>") + 6
    xml = xml[:uuid_start] + UUID2 + xml[xml.index("</uuid>"):]
    xml_file.write_text(xml.replace("</name>", f"</name>\n  <metadata>{meta}</metadata>", 1))
    write_nova(s, NovaFacts(servers=(NovaServer(id="1fa6-web-2", name="web-2", host="lab1",
                                                instance_name="lab1-vm1"),)))
    return s


def test_inventory_names_each_nova_guests_server(snap):
    from planner.snapshot.read import load

    assert load(snap).nova_servers() == {"lab2-vm1": ("web-1", UUID2),
                                         "lab1-vm1": ("web-2", "1fa6-web-2")}


def test_recommend_json_rows_carry_the_server_streamed_or_not(snap, monkeypatch):
    from planner.adapters.catalogs import default_catalog
    from planner.review import report
    from planner.snapshot.read import load

    rep = report.build_report(load(snap), default_catalog())
    doc = report.report_json(rep, "full")
    rows = {g["guest"]: g for g in doc["guests"]}
    assert rows["lab2-vm1"]["server"] == {"name": "web-1", "id": UUID2}
    assert rows["lab1-vm1"]["server"] == {"name": "web-2", "id": "1fa6-web-2"}
    assert "server" not in rows["lab3-vm1"]  # not Nova's: the row as before
    monkeypatch.setattr(report, "LARGE_DOCUMENT", 0)
    assert json.loads("".join(report.iter_report_json(rep, "full"))) == doc


def test_check_names_the_server_and_takes_its_name_or_uuid(snap):
    r = run_cli("check", "web-1", "lab1", "--snapshot", str(snap))
    assert r.stdout.startswith(f"lab2-vm1 (web-1 {UUID2}): lab2 -> lab1: "), r.stdout + r.stderr
    r2 = run_cli("check", UUID2, "lab1", "--snapshot", str(snap), "--format", "json")
    doc = json.loads(r2.stdout)
    assert doc["guest"] == "lab2-vm1" and doc["server"] == {"name": "web-1", "id": UUID2}
    assert r.returncode == r2.returncode
