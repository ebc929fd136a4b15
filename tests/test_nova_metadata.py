"""A guest's <nova:instance> metadata (written by nova-compute) becomes Domain.nova, and
survives the guest digest; guests Nova does not manage have none."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.errors import InputError
from planner.model import NovaInstance
from planner.parse.digest import domain_digest, domain_from_digest
from planner.parse.guest import parse_domain

DATA = Path(__file__).resolve().parent / "data" / "nova"
METADATA = (DATA / "nova-26.2.2-metadata.xml").read_text()
UUID = "1fa6a2f4-2c55-4b8e-9a0e-5b7d8f1c2e3a"


def _domain(metadata: str, extra: str = "") -> bytes:
    return (f"<domain type='kvm'><name>instance-00000001</name><uuid>{UUID}</uuid>"
            f"<memory unit='KiB'>131072</memory><metadata>{extra}{metadata}</metadata>"
            "</domain>").encode()


# every real domain XML written by nova-compute in tests/data/nova/ (see its README)
NOVA_XML = sorted(DATA.glob("instance-*.xml"))


def test_nova_metadata_gives_the_servers_name_flavor_owner_and_root():
    d = parse_domain(_domain(METADATA), "g.xml")
    assert d.nova == NovaInstance(
        uuid=UUID, name="web-1", flavor="m1.lab", flavor_memory_mib=128, flavor_vcpus=1,
        flavor_disk_gb=1, project_id="e3b0c44298fc4c14a2b1d2c6e3f5a7b9", project_name="admin",
        root_type="image", namespace="http://openstack.org/xmlns/libvirt/nova/1.1",
        package="26.2.2", creation_time="2026-12-02 13:40:05", flavor_swap_mib=0,
        flavor_ephemeral_gb=0, user_id="5a6f3a4c0c2d4a52b0e8e0cbbd3e54f1", user_name="admin",
        root_id="c0ffee00-1111-4222-8333-944455556666")


def test_the_older_1_0_namespace_reads_the_same():
    old = METADATA.replace("libvirt/nova/1.1", "libvirt/nova/1.0")
    d = parse_domain(_domain(old), "g.xml")
    assert d.nova is not None and d.nova.name == "web-1" and d.nova.flavor_vcpus == 1
    assert d.nova.namespace == "http://openstack.org/xmlns/libvirt/nova/1.0"


def test_other_metadata_is_not_novas():
    other = "<app:instance xmlns:app='http://example.org/app/1.0'><app:name>x</app:name></app:instance>"
    assert parse_domain(_domain(other), "g.xml").nova is None
    assert parse_domain(_domain(""), "g.xml").nova is None
    # Nova's element found beside another application's
    assert parse_domain(_domain(METADATA, extra=other), "g.xml").nova.name == "web-1"


def test_a_guest_without_metadata_is_not_managed_by_nova():
    xml = b"<domain type='kvm'><name>g</name><memory>1024</memory></domain>"
    assert parse_domain(xml, "g.xml").nova is None


def test_a_broken_flavor_number_is_an_error_naming_the_file_and_element():
    bad = METADATA.replace("<nova:vcpus>1</nova:vcpus>", "<nova:vcpus>one</nova:vcpus>")
    with pytest.raises(InputError, match=r"g\.xml: invalid <nova:flavor/vcpus>: 'one'"):
        parse_domain(_domain(bad), "g.xml")


def test_a_partial_nova_element_leaves_the_rest_unknown():
    d = parse_domain(_domain("<nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/"
                             "nova/1.1'><nova:name>n</nova:name></nova:instance>"), "g.xml")
    assert d.nova == NovaInstance(uuid=UUID, name="n",
                                  namespace="http://openstack.org/xmlns/libvirt/nova/1.1")


@pytest.mark.parametrize("xml", [_domain(METADATA), *[p.read_bytes() for p in NOVA_XML]],
                         ids=["nova-config-metadata", *[p.name for p in NOVA_XML]])
def test_nova_metadata_survives_the_digest(xml):
    truth = parse_domain(xml, "g.xml", host="h")
    assert truth.nova is not None
    assert domain_from_digest(domain_digest(xml), xml, "g.xml", host="h") == truth


def test_a_real_nova_compute_domain_xml_names_its_server():
    xml = (DATA / "instance-00000001.xml").read_bytes()
    d = parse_domain(xml, "instance-00000001.xml")
    assert d.name == "instance-00000001"
    assert d.nova is not None and d.nova.uuid == d.uuid == "dc0ba7f5-fae9-480e-8bf7-06be2a4a883e"
    assert (d.nova.name, d.nova.flavor, d.nova.flavor_memory_mib, d.nova.flavor_vcpus,
            d.nova.flavor_disk_gb, d.nova.root_type, d.nova.package, d.nova.project_name) == \
        ("lab1-vm1", "m1.lab", 128, 1, 1, "image", "26.2.2", "admin")
    assert d.memory_kib == 128 * 1024 and d.vcpus == 1
