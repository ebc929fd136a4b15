"""Where hosts come from: URIs, host files, Ansible inventories (INI and YAML)."""

from __future__ import annotations

import pytest
from conftest import run_cli

from planner.collect.sources import (
    Target,
    expand_pattern,
    from_uris,
    parse_ansible_inventory,
    parse_hosts_file,
    redact_uri,
    uri_for,
)
from planner.errors import InputError, UsageError

TPL = "qemu+ssh://root@{host}/system"

# As kolla-ansible's multinode inventory writes it (abridged), with a range and vars.
KOLLA_INI = """\
# kolla multinode
[control]
ctl01 ansible_host=10.0.0.1

[compute]
compute[01:03]
gpu01 ansible_host=10.0.1.9 ansible_user=kolla

[compute:vars]
ansible_become=true

[nova-compute:children]
compute

[nova:children]
control
nova-compute

[baremetal:children]
control
compute
"""

XAVS_YAML = """\
all:
  children:
    control:
      hosts:
        ctl01:
          ansible_host: 10.0.0.1
    compute:
      hosts:
        compute01:
        compute02:
          ansible_host: 10.0.0.12
        edge[a:b]:
      vars:
        ansible_user: root
    nova:
      children:
        control:
        compute:
"""


def test_ini_group_with_ranges_and_ansible_host():
    got = parse_ansible_inventory(KOLLA_INI, "multinode", "compute", TPL)
    assert got == [
        Target("qemu+ssh://root@compute01/system", "compute01"),
        Target("qemu+ssh://root@compute02/system", "compute02"),
        Target("qemu+ssh://root@compute03/system", "compute03"),
        Target("qemu+ssh://root@10.0.1.9/system", "gpu01"),
    ]


def test_ini_children_groups_are_followed_recursively():
    got = parse_ansible_inventory(KOLLA_INI, "multinode", "nova", TPL)
    assert [t.name for t in got] == ["ctl01", "compute01", "compute02", "compute03", "gpu01"]
    assert got[0].uri == "qemu+ssh://root@10.0.0.1/system"


def test_ini_all_is_every_host():
    got = parse_ansible_inventory(KOLLA_INI, "multinode", "all", TPL)
    assert len(got) == 5
    with_vars = KOLLA_INI + "\n[all:vars]\nansible_python_interpreter=/usr/bin/python3\n"
    assert parse_ansible_inventory(with_vars, "multinode", "all", TPL) == got


def test_yaml_inventory_groups_children_and_ranges():
    got = parse_ansible_inventory(XAVS_YAML, "inventory.yml", "compute",
                                  "qemu+tcp://{host}/system")
    assert got == [
        Target("qemu+tcp://compute01/system", "compute01"),
        Target("qemu+tcp://10.0.0.12/system", "compute02"),
        Target("qemu+tcp://edgea/system", "edgea"),
        Target("qemu+tcp://edgeb/system", "edgeb"),
    ]
    assert [t.name for t in parse_ansible_inventory(XAVS_YAML, "i", "nova", TPL)][:2] == \
        ["ctl01", "compute01"]
    assert len(parse_ansible_inventory(XAVS_YAML, "i", "all", TPL)) == 5


def test_ipv6_ansible_hosts_are_bracketed_in_uris():
    got = parse_ansible_inventory("[compute]\ncn1 ansible_host=fd00::11\n", "inv", "compute", TPL)
    assert got == [Target("qemu+ssh://root@[fd00::11]/system", "cn1")]


def test_unknown_group_names_the_known_ones():
    with pytest.raises(InputError, match="no group 'computes'.*compute, control"):
        parse_ansible_inventory(KOLLA_INI, "multinode", "computes", TPL)


def test_group_cycles_are_refused():
    text = "[a:children]\nb\n[b:children]\na\n"
    with pytest.raises(InputError, match="group cycle"):
        parse_ansible_inventory(text, "inv", "a", TPL)


def test_broken_inventories_say_where():
    with pytest.raises(InputError, match="inv, line 2: expected key=value"):
        parse_ansible_inventory("[compute]\ncn1 ansible_host\n", "inv", "compute", TPL)
    with pytest.raises(InputError, match="unterminated section"):
        parse_ansible_inventory("[compute\ncn1\n", "inv", "compute", TPL)
    with pytest.raises(InputError, match="not a valid YAML inventory"):
        parse_ansible_inventory("all:\n  hosts: [\n", "inv.yml", "all", TPL)
    with pytest.raises(InputError, match="empty"):
        parse_ansible_inventory("\n", "inv", "all", TPL)
    with pytest.raises(InputError, match="has no hosts"):
        parse_ansible_inventory("[compute]\n[control]\nc1\n", "inv", "compute", TPL)


def test_ranges():
    assert expand_pattern("cn[08:10]") == ["cn08", "cn09", "cn10"]
    assert expand_pattern("r[1:2]n[a:b]") == ["r1na", "r1nb", "r2na", "r2nb"]
    assert expand_pattern("cn[0:6:3]") == ["cn0", "cn3", "cn6"]


def test_hosts_file_mixes_uris_and_hostnames_with_comments():
    text = "# rack 1\nqemu+tcp://10.0.0.5/system\ncn2   # spare\n\n  cn3.example.org\n"
    assert parse_hosts_file(text, "hosts.txt", TPL) == [
        Target("qemu+tcp://10.0.0.5/system"),
        Target("qemu+ssh://root@cn2/system", "cn2"),
        Target("qemu+ssh://root@cn3.example.org/system", "cn3.example.org"),
    ]


def test_bad_hosts_files_are_clear_errors():
    with pytest.raises(InputError, match=r"hosts.txt, line 2: 'cn 2' is neither"):
        parse_hosts_file("cn1\ncn 2\n", "hosts.txt", TPL)
    with pytest.raises(InputError, match="no hosts in the file"):
        parse_hosts_file("# nothing\n\n", "hosts.txt", TPL)


def test_bad_hosts_file_through_the_cli(tmp_path):
    f = tmp_path / "hosts.txt"
    f.write_text("cn1\n<script>\n")
    r = run_cli("collect", "--hosts-file", str(f), "--out", str(tmp_path / "s"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: {f}, line 2:")
    r = run_cli("collect", "--hosts-file", str(tmp_path / "nope"), "--out", str(tmp_path / "s"))
    assert r.returncode == 1 and "no such file" in r.stderr
    r = run_cli("collect", "--ansible-inventory", str(f), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "--group" in r.stderr


def test_uri_arguments_must_be_uris():
    assert from_uris(["test:///default"]) == [Target("test:///default")]
    with pytest.raises(UsageError, match="not a libvirt URI"):
        from_uris(["cn1"])


def test_uri_template_must_name_the_host():
    with pytest.raises(UsageError, match="neither"):
        uri_for("cn1", "qemu:///system")
    assert uri_for("10.0.0.1", "qemu+ssh://{name}@{host}/system", "cn1") == \
        "qemu+ssh://cn1@10.0.0.1/system"


@pytest.mark.parametrize("uri, shown", [
    ("qemu+ssh://user:secret@h/system", "qemu+ssh://user:***@h/system"),
    ("qemu+tcp://h/system?password=x&no_verify=1", "qemu+tcp://h/system?password=***&no_verify=1"),
    ("qemu+ssh://h/system?keyfile=/k&passwd=x", "qemu+ssh://h/system?keyfile=/k&passwd=***"),
    ("qemu+ssh://user@h/system", "qemu+ssh://user@h/system"),
    ("test:///default", "test:///default"),
    ("qemu:///system", "qemu:///system"),
])
def test_passwords_are_redacted(uri, shown):
    assert redact_uri(uri) == shown
