"""The Nova lab (planner.lab.nova): a real OpenStack Zed beside the lab's libvirt hosts.

Every test talks to the real services (keystone, nova-api, nova-compute, libvirtd); nothing
of Nova's API is mocked.  The session lab comes from tests/conftest.py (nova_lab).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from lxml import etree
from nova_lab import NOVA_CONTROL, listening_sockets, mounts_of, processes_naming

from planner.lab.nova_config import PORTS, render
from planner.lab.nova_services import CONTROL, Services, lab_pids

pytestmark = pytest.mark.nova


def _cloud(nova_lab):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(nova_lab.clouds_yaml)
    from planner.adapters.nova import open_cloud

    return open_cloud("migplan-lab")


# ---- without a lab -------------------------------------------------------------------------


def test_config_files_are_written_by_configparser_as_given():
    text = render({"DEFAULT": {"host": "lab1"}, "ml2": {"mechanism_drivers": "",
                                                         "type_drivers": "flat"}})
    assert "[DEFAULT]\nhost = lab1\n" in text
    assert "[ml2]\nmechanism_drivers = \ntype_drivers = flat\n" in text


def test_the_control_address_must_be_loopback(tmp_path):
    from planner.lab.nova import NovaLab
    from planner.lab.process import LabError

    for bad in ("10.0.0.1", "127.0.0", "localhost", "127.0.0.300"):
        with pytest.raises(LabError, match="loopback addresses only"):
            NovaLab(tmp_path, control=bad)


def test_control_ip_without_nova_is_a_usage_error(tmp_path):
    r = run_cli("lab", "--state-dir", str(tmp_path), "up", "--control-ip", "127.0.0.60")
    assert r.returncode == 2 and "Error: --control-ip needs --nova" in r.stderr


# ---- the session's Nova lab ----------------------------------------------------------------


def test_every_service_runs_and_listens_on_the_control_address_only(nova_lab):
    services = {s.name: s for s in nova_lab.services()}
    assert set(CONTROL) <= set(services)
    assert all(s.running for s in services.values()), [s for s in services.values()
                                                        if not s.running]
    socks = listening_sockets(lab_pids(nova_lab.root))
    spec = nova_lab.spec()
    bound = {(a, p) for _pid, a, p in socks}
    for name in ("mariadb", "rabbitmq", "keystone", "glance-api", "placement",
                 "neutron-server", "nova-api"):
        assert (NOVA_CONTROL, PORTS[name]) in bound, name
    assert (NOVA_CONTROL, spec.dist_port) in bound
    # epmd always adds the loopback addresses (its own rule): on the lab's own port
    allowed = {NOVA_CONTROL, "127.0.0.1", "::1"}
    others = [(pid, a, p) for pid, a, p in socks
              if a not in allowed or (a != NOVA_CONTROL and p != spec.epmd_port)]
    assert others == [], others


def test_each_compute_is_the_lab_host_of_its_name_and_its_servers_booted_there(nova_lab):
    cloud = _cloud(nova_lab)
    uris = nova_lab.lab.uris()
    services = {s.host: s for s in cloud.services()}
    assert set(services) == set(uris) == {"lab1", "lab2"}
    assert all(s.state == "up" and s.status == "enabled" for s in services.values())
    hyps = {h.host: h for h in cloud.hypervisors()}
    assert {h: hyps[h].host_ip for h in hyps} == {h.name: h.address for h in nova_lab.lab.hosts}
    servers = cloud.servers()
    assert sorted((s.name, s.host, s.status) for s in servers) == \
        [("lab1-vm1", "lab1", "ACTIVE"), ("lab2-vm1", "lab2", "ACTIVE")]
    for s in servers:
        # the domain is on that host's libvirtd, with Nova's metadata naming the server
        xml = subprocess.run(["virsh", "-c", uris[s.host], "dumpxml", s.instance_name],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        meta = etree.fromstring(xml.encode()).find(
            "metadata/{http://openstack.org/xmlns/libvirt/nova/1.1}instance")
        assert meta.findtext("{http://openstack.org/xmlns/libvirt/nova/1.1}name") == s.name


def test_clouds_yaml_names_the_cloud_and_each_hosts_libvirt(nova_lab):
    assert oct(nova_lab.clouds_yaml.stat().st_mode & 0o777) == "0o600"
    doc = yaml.safe_load(nova_lab.clouds_yaml.read_text())
    entry = doc["clouds"]["migplan-lab"]
    assert entry["auth"]["auth_url"] == f"http://{NOVA_CONTROL}:5000/v3"
    assert entry["migplan"]["libvirt_uris"] == nova_lab.lab.uris()
    cloud = _cloud(nova_lab)  # openstacksdk's own config loader, as the openstack CLI
    assert cloud.extra()["migplan"]["libvirt_uris"] == nova_lab.lab.uris()
    assert cloud.compute_api_version() == "2.93"  # Zed


def test_lab_status_shows_the_nova_services(nova_lab):
    r = run_cli("lab", "--state-dir", str(nova_lab.lab.state_dir), "status", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {h["name"]: h["nova_compute"]["state"] for h in doc["hosts"]} == \
        {"lab1": "up", "lab2": "up"}
    assert {s["name"] for s in doc["nova_services"] if s["running"]} >= set(CONTROL)
    text = run_cli("lab", "--state-dir", str(nova_lab.lab.state_dir), "status").stdout
    assert "nova-compute-lab1" in text and "up, enabled" in text


def test_up_again_keeps_what_runs(nova_lab):
    svc = Services(nova_lab.spec())
    before = {n: svc.pid(n) for n in svc.recorded()}
    nova_lab.up()
    assert {n: svc.pid(n) for n in svc.recorded()} == before


def test_down_leaves_no_process_no_mount_no_state_and_up_brings_it_back(nova_lab):
    root = nova_lab.root
    svc = Services(nova_lab.spec())
    pids = [p for p in (svc.pid(n) for n in svc.recorded()) if p]
    assert len(pids) == len(CONTROL) + 2
    assert mounts_of(root)  # the instances bind mounts, in the hosts' namespaces
    nova_lab.down()
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    assert processes_naming(nova_lab.lab.state_dir) == []
    assert mounts_of(root) == []
    assert not nova_lab.lab.state_dir.exists()
    nova_lab.up()  # from scratch, for the tests after this one
    assert all(s.running for s in nova_lab.services())
    assert sorted(s.name for s in _cloud(nova_lab).servers()) == ["lab1-vm1", "lab2-vm1"]
