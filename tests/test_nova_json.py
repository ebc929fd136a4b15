"""The snapshot's nova.json: NovaFacts written and read back equal; every field checked on
reading, with the file and the field named; another schema number refused."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import fields

import pytest
from conftest import REPO

from planner.errors import InputError
from planner.model import (
    NovaAggregate,
    NovaFacts,
    NovaHypervisor,
    NovaServer,
    NovaService,
    NovaZone,
)
from planner.snapshot.nova_json import NOVA_SCHEMA, nova_json, parse_nova_json
from planner.snapshot.read import load
from planner.snapshot.write import write_nova

FACTS = NovaFacts(
    cloud="migplan-lab", region="RegionOne", auth_url="http://127.0.0.60:5000/v3",
    compute_api_version="2.93",
    services=(NovaService(host="lab1", zone="nova", state="up", status="enabled",
                          disabled_reason=None, forced_down=False, id="6f0c-1",
                          updated_at="2026-12-02T13:40:05.000000"),
              NovaService(host="lab2", zone="nova", state="down", status="disabled",
                          disabled_reason="maintenance", forced_down=True, id="6f0c-2")),
    hypervisors=(NovaHypervisor(hostname="lab1", host="lab1", id="9a1d", host_ip="127.0.0.61",
                                state="up", status="enabled", hypervisor_type="QEMU",
                                hypervisor_version=7002022),),
    zones=(NovaZone(name="nova", available=True, hosts=("lab1", "lab2")),),
    aggregates=(NovaAggregate(name="fast", hosts=("lab1",), availability_zone=None,
                              metadata=(("cpu", "icelake"), ("ssd", "true")), id=1),),
    servers=(NovaServer(id="1fa6", name="web-1", host="lab1", instance_name="instance-00000001",
                        status="ACTIVE", vm_state="active", task_state=None, project_id="e3b0",
                        availability_zone="nova", flavor_name="m1.lab", flavor_ram_mib=128,
                        flavor_vcpus=1, flavor_disk_gb=1,
                        extra_specs=(("hw:cpu_policy", "dedicated"),
                                     ("trait:HW_CPU_X86_AVX2", "required")),
                        image_properties=(("hw_cpu_max_sockets", "1"),),
                        hypervisor_hostname="lab1", image_id="c0ff", power_state=1,
                        flavor_swap_mib=0, flavor_ephemeral_gb=0, locked=False),),
)


def test_every_nova_fact_survives_write_and_read():
    assert parse_nova_json(nova_json(FACTS), "nova.json") == FACTS
    doc = json.loads(nova_json(FACTS))
    assert doc["schema"] == NOVA_SCHEMA == 1
    # every field of every record is written (a new model field needs the format to know it)
    for key, cls in (("services", NovaService), ("hypervisors", NovaHypervisor),
                     ("zones", NovaZone), ("aggregates", NovaAggregate), ("servers", NovaServer)):
        assert set(doc[key][0]) == {f.name for f in fields(cls)}, key
    top = {f.name for f in fields(NovaFacts)} - {"services", "hypervisors", "zones",
                                                  "aggregates", "servers"}
    assert top | {"schema", "services", "hypervisors", "zones", "aggregates", "servers"} == set(doc)


def test_a_snapshot_with_nova_json_loads_into_inventory_nova(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(REPO / "fixtures" / "lab-3-hosts", snap)
    assert load(snap).nova is None
    write_nova(snap, FACTS)
    assert load(snap).nova == FACTS
    with pytest.raises(FileExistsError):  # a snapshot's files are written once
        write_nova(snap, FACTS)


def _mutate(doc: dict, path: tuple, value: object) -> dict:
    m = copy.deepcopy(doc)
    target = m
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return m


BAD = [
    (("schema",), 2, r"nova\.json: schema 2 is not one this migplan reads \(1\)"),
    (("schema",), "1", r"schema '1' is not one"),
    (("cloud",), 5, r"nova\.json: cloud: expected a string or null, found 5"),
    (("servers",), {}, r"nova\.json: servers: expected a list, found \{\}"),
    (("servers", 0), "x", r"servers\[0\]: expected an object"),
    (("servers", 0, "id"), "", r"servers\[0\]\.id: expected a non-empty string, found ''"),
    (("servers", 0, "flavor_vcpus"), "2", r"servers\[0\]\.flavor_vcpus: expected an integer >= 0 "
                                          r"or null, found '2'"),
    (("servers", 0, "flavor_ram_mib"), -1, r"servers\[0\]\.flavor_ram_mib: expected an integer"),
    (("servers", 0, "flavor_disk_gb"), True, r"servers\[0\]\.flavor_disk_gb: expected an integer"),
    (("servers", 0, "locked"), "no", r"servers\[0\]\.locked: expected true, false or null"),
    (("servers", 0, "extra_specs"), {"hw:cpu_policy": 1},
     r"servers\[0\]\.extra_specs: expected an object of string values"),
    (("servers", 0, "image_properties"), [], r"servers\[0\]\.image_properties: expected an object"),
    (("services", 1, "forced_down"), 1, r"services\[1\]\.forced_down: expected true, false"),
    (("services", 0, "host"), None, r"services\[0\]\.host: expected a non-empty string"),
    (("hypervisors", 0, "hypervisor_version"), "7.2",
     r"hypervisors\[0\]\.hypervisor_version: expected an integer"),
    (("zones", 0, "hosts"), ["lab1", 2], r"zones\[0\]\.hosts: expected a list of strings"),
    (("aggregates", 0, "metadata"), None, r"aggregates\[0\]\.metadata: expected an object"),
]


@pytest.mark.parametrize("path,value,error", BAD, ids=[".".join(map(str, b[0])) for b in BAD])
def test_a_wrong_field_is_refused_naming_the_file_and_the_field(path, value, error):
    doc = json.loads(nova_json(FACTS))
    with pytest.raises(InputError, match=error):
        parse_nova_json(json.dumps(_mutate(doc, path, value)).encode(), "SNAP/nova.json")


def test_a_missing_required_field_is_named():
    doc = json.loads(nova_json(FACTS))
    del doc["servers"][0]["id"]
    with pytest.raises(InputError, match=r"SNAP/nova\.json: servers\[0\]: no 'id'"):
        parse_nova_json(json.dumps(doc).encode(), "SNAP/nova.json")


def test_keys_a_later_version_adds_are_ignored_and_absent_optional_fields_are_unknown():
    doc = json.loads(nova_json(FACTS))
    doc["placement"] = {"lab1": {}}
    doc["servers"][0]["numa_topology"] = {"cells": []}
    for k in ("hosts", "metadata"):
        del doc["aggregates"][0][k]
    del doc["servers"][0]["task_state"]
    got = parse_nova_json(json.dumps(doc).encode(), "nova.json")
    assert got.servers == FACTS.servers
    assert got.aggregates[0].hosts == () and got.aggregates[0].metadata == ()


@pytest.mark.parametrize("data,error", [(b"", "the file is empty"), (b"{", "not valid JSON"),
                                        (b"[]", "expected a JSON object")])
def test_a_broken_nova_json_fails_the_load_naming_the_file(tmp_path, data, error):
    snap = tmp_path / "snap"
    shutil.copytree(REPO / "fixtures" / "lab-3-hosts", snap)
    (snap / "nova.json").write_bytes(data)
    with pytest.raises(InputError, match=f"{snap}/nova.json: {error}"):
        load(snap)
