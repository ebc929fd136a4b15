"""Ansible inventories as kolla-/xavs-ansible write them: the user and port Ansible reaches
a host with are the ones libvirt's ssh transport needs too (issue 14 item 11).

``ansible_user`` fills ``{user}`` of the URI template (default
``qemu+ssh://{user}@{host}/system``, root when unset); ``ansible_port`` is the port of
ssh URIs; both come from the host's line or from group variables, with Ansible's
precedence (a child group over its parents, the host over its groups).
"""

from __future__ import annotations

import json

import pytest
from conftest import LAB_FIRST_IP, run_cli

from planner.collect.sources import DEFAULT_URI_TEMPLATE, Target, parse_ansible_inventory
from planner.errors import InputError

KOLLA_INI = """\
[control]
ctl01 ansible_host=10.0.0.1

[compute]
compute01
gpu01 ansible_host=10.0.1.9 ansible_user=kolla ansible_port=2222

[compute:vars]
ansible_user=deploy

[all:vars]
ansible_port=22

[nova:children]
control
compute
"""

XAVS_YAML = """\
all:
  vars:
    ansible_user: admin
  children:
    compute:
      vars:
        ansible_user: deploy
      hosts:
        compute01:
        compute02:
          ansible_host: 10.0.0.12
          ansible_port: 2200
        compute03:
          ansible_user: root
"""


def test_ini_user_and_port_reach_the_uri_with_ansible_precedence():
    got = parse_ansible_inventory(KOLLA_INI, "multinode", "nova", DEFAULT_URI_TEMPLATE)
    assert got == [
        Target("qemu+ssh://root@10.0.0.1:22/system", "ctl01"),        # no user: root
        Target("qemu+ssh://deploy@compute01:22/system", "compute01"),  # [compute:vars]
        Target("qemu+ssh://kolla@10.0.1.9:2222/system", "gpu01"),      # the host's own
    ]


def test_yaml_user_and_port_reach_the_uri_with_ansible_precedence():
    got = parse_ansible_inventory(XAVS_YAML, "inventory.yml", "compute", DEFAULT_URI_TEMPLATE)
    assert got == [
        Target("qemu+ssh://deploy@compute01/system", "compute01"),  # child group over all
        Target("qemu+ssh://deploy@10.0.0.12:2200/system", "compute02"),
        Target("qemu+ssh://root@compute03/system", "compute03"),     # the host over groups
    ]


def test_the_port_is_ssh_s_and_an_explicit_template_wins():
    tcp = parse_ansible_inventory(KOLLA_INI, "i", "compute", "qemu+tcp://{host}/system")
    assert tcp[1] == Target("qemu+tcp://10.0.1.9/system", "gpu01")  # not libvirtd's port
    fixed = parse_ansible_inventory(KOLLA_INI, "i", "compute", "qemu+ssh://root@{host}:2022/system")
    assert fixed[1] == Target("qemu+ssh://root@10.0.1.9:2022/system", "gpu01")
    v6 = parse_ansible_inventory("[c]\ncn1 ansible_host=fd00::11 ansible_port=2222\n", "i", "c",
                                 DEFAULT_URI_TEMPLATE)
    assert v6 == [Target("qemu+ssh://root@[fd00::11]:2222/system", "cn1")]


@pytest.mark.parametrize("port", ["ssh", "0", "70000"])
def test_a_port_that_is_not_one_names_the_host(port):
    with pytest.raises(InputError, match=f"host cn1: ansible_port '{port}'"):
        parse_ansible_inventory(f"[c]\ncn1 ansible_port={port}\n", "inv", "c",
                                DEFAULT_URI_TEMPLATE)


def test_collect_records_the_uri_built_from_the_inventory(tmp_path):
    """End to end: the URI collect connects to (libvirt's ssh transport, to a loopback
    address where nothing listens) is the one the inventory says, in the manifest."""
    addr = f"127.0.0.{min(250, LAB_FIRST_IP + 25)}"
    inv = tmp_path / "multinode"
    inv.write_text(f"[compute]\ncn1 ansible_host={addr} ansible_user=kolla ansible_port=2222\n")
    out = tmp_path / "snap"
    r = run_cli("collect", "--ansible-inventory", str(inv), "--group", "compute",
                "--out", str(out), "--timeout", "20", timeout=120)
    assert r.returncode == 5, r.stderr  # nothing listens there: not collected, recorded
    man = json.loads((out / "manifest.json").read_text())
    assert man["hosts"][0]["uri"] == f"qemu+ssh://kolla@{addr}:2222/system"
