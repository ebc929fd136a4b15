"""collect --os-cloud: which libvirt URI each nova-compute host gets (pure; no Nova needed)."""

from __future__ import annotations

import pytest

from planner.collect.nova import nova_targets
from planner.collect.sources import Target
from planner.errors import InputError, UsageError
from planner.model import NovaFacts, NovaHypervisor, NovaService

FACTS = NovaFacts(services=(NovaService(host="cn1"), NovaService(host="cn2")),
                  hypervisors=(NovaHypervisor(hostname="cn1.example", host="cn1",
                                              host_ip="127.0.0.201"),
                               NovaHypervisor(hostname="cn2.example", host="cn2",
                                              host_ip="127.0.0.202")))


def test_kollas_libvirt_on_the_hypervisors_host_ip_by_default():
    assert nova_targets(FACTS, {}, None) == [Target("qemu+tcp://127.0.0.201/system", "cn1"),
                                             Target("qemu+tcp://127.0.0.202/system", "cn2")]


def test_the_cloud_entrys_mapping_wins_then_its_template_then_the_option():
    extra = {"migplan": {"libvirt_uris": {"cn1": "qemu+tcp://127.0.0.2/system"},
                         "uri_template": "qemu+tls://{name}.example/system"}}
    assert nova_targets(FACTS, extra, None) == [
        Target("qemu+tcp://127.0.0.2/system", "cn1"),
        Target("qemu+tls://cn2.example/system", "cn2")]
    assert nova_targets(FACTS, extra, "qemu+ssh://root@{host}/system")[1] == \
        Target("qemu+ssh://root@127.0.0.202/system", "cn2")


def test_a_compute_without_a_hypervisor_record_is_reached_by_its_host_name():
    facts = NovaFacts(services=(NovaService(host="cn9"),))
    assert nova_targets(facts, {}, None) == [Target("qemu+tcp://cn9/system", "cn9")]


def test_a_broken_migplan_entry_or_template_is_refused():
    with pytest.raises(InputError, match="'migplan' entry must be a mapping"):
        nova_targets(FACTS, {"migplan": "x"}, None)
    with pytest.raises(InputError, match="libvirt_uris must map"):
        nova_targets(FACTS, {"migplan": {"libvirt_uris": ["a"]}}, None)
    with pytest.raises(UsageError, match="has neither"):
        nova_targets(FACTS, {}, "qemu+tcp://x/system")
