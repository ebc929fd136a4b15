"""The feasibility graph: migration domains, one-way pairs, stranded guests, aggregation."""

from __future__ import annotations

import networkx as nx
from builders import custom_cpu, guest, host, inventory

from planner.adapters.catalogs import default_catalog
from planner.assess.rules import FEASIBLE, Policy
from planner.model import HostDev
from planner.recommend.cpu_config import by_host, recommend, recommend_groups
from planner.recommend.graph import analyze, guest_moves, host_graph, host_pairs

CAT = default_catalog()
NEW_MACHINES = ("pc-q35-8.0", "q35", "pc-q35-7.2", "pc-i440fx-7.2", "pc")


def run(inv, groups=None):
    recs = recommend_groups(inv.hosts, groups, CAT) if groups else [recommend(inv.hosts, CAT)]
    return analyze(inv, by_host(recs), CAT, Policy())


def test_mixed_cpus_under_the_baseline_form_one_domain():
    inv = inventory(host("b1", "broadwell"), host("b2", "broadwell"), host("s1", "skylake"),
                    host("i1", "icelake"))
    an = run(inv)
    assert an.domains == [("b1", "b2", "s1", "i1")]
    assert an.one_way == []
    assert isinstance(an.graph, nx.DiGraph)
    assert all(d["verdict"] in FEASIBLE for _, _, d in an.graph.edges(data=True))


def test_hosts_are_grouped_into_classes_before_pairwise_work():
    inv = inventory(*(host(f"s{i}", "skylake") for i in range(50)),
                    *(host(f"b{i}", "broadwell") for i in range(50)))
    an = run(inv)
    assert len(an.classes) == 2
    assert an.graph.number_of_edges() == 4  # 2 classes: a->b, b->a and each class to itself


def test_newer_qemu_makes_pairs_one_way():
    inv = inventory(host("old1"), host("old2"),
                    host("new1", qemu_version="8.0.0", machine_types=NEW_MACHINES),
                    host("new2", qemu_version="8.0.0", machine_types=NEW_MACHINES))
    an = run(inv)
    old, new = an.host_class["old1"], an.host_class["new1"]
    assert an.one_way == [(old, new)]
    assert sorted(an.domains) == [("new1", "new2"), ("old1", "old2")]
    edge = an.class_edge(new, old)
    codes = {v.code for v in edge.reasons()}
    assert {"version-older.older", "machine-type.unsupported"} <= codes


def test_guest_with_a_pci_device_is_stranded():
    g_ok = guest("web")
    g_pci = guest("gpu", hostdevs=(HostDev("pci", "0000:3b:00.0"),))
    inv = inventory(host("a", domains=(g_ok, g_pci)), host("b"))
    an = run(inv)
    assert an.stranded == ["gpu"]
    res = {r.guest: r for r in an.guests}
    assert res["web"].destinations == ("b",)
    assert res["gpu"].reasons[0].code == "hostdev.assigned"


def test_guest_too_big_for_every_other_host_is_stranded_with_the_reason():
    big = guest("big", mem_gib=300)
    inv = inventory(host("a", mem_gib=512, free_gib=400, domains=(big,)), host("b"), host("c"))
    an = run(inv)
    assert an.stranded == ["big"]
    assert any(v.code == "memory.insufficient" for v in an.guests[0].reasons)


def test_guest_cpu_newer_than_some_hosts_can_only_go_to_the_others():
    g = guest("avx", cpu=custom_cpu("Skylake-Server-IBRS"))
    inv = inventory(host("s1", "skylake", domains=(g,)), host("s2", "skylake"), host("b1", "broadwell"))
    an = run(inv)
    r = an.guests[0]
    assert r.destinations == ("s2",)
    assert an.stranded == []
    assert any(v.code == "cpu-features.missing" for v in r.reasons)


def test_guests_of_one_shape_share_one_node():
    inv = inventory(host("a", domains=tuple(guest(f"g{i}") for i in range(100))), host("b"))
    an = run(inv)
    shapes = [n for n, d in an.graph.nodes(data=True) if d["kind"] == "guest-shape"]
    assert len(shapes) == 1
    assert len(an.graph.nodes[shapes[0]]["guests"]) == 100
    assert len(an.guests) == 100


def test_single_host_class_cannot_move_within_itself():
    an = run(inventory(host("only", domains=(guest("g"),))))
    assert an.domains == [("only",)]
    assert an.stranded == ["g"]


def test_separate_aggregates_with_different_cpus_still_get_compared():
    inv = inventory(host("b1", "broadwell"), host("b2", "broadwell"), host("i1", "icelake"),
                    host("i2", "icelake"))
    an = run(inv, {"b1": "old", "b2": "old", "i1": "new", "i2": "new"})
    # A host-passthrough Icelake guest cannot go to Broadwell; a Broadwell one cannot go up.
    assert sorted(an.domains) == [("b1", "b2"), ("i1", "i2")]


def test_host_pairs_and_guest_moves_expand_to_every_host():
    inv = inventory(host("a", domains=(guest("g"),)), host("b"), host("c", "broadwell"))
    an = run(inv)
    pairs = host_pairs(an)
    assert len(pairs) == 6
    moves = guest_moves(inv, Policy(), CAT)
    assert {(m.source, m.destination) for m in moves} == {("a", "b"), ("a", "c")}
    assert all(m.feasible for m in moves)


def test_host_graph_expands_class_edges_to_hosts():
    inv = inventory(host("old1"), host("new1", qemu_version="8.0.0", machine_types=NEW_MACHINES))
    hg = host_graph(run(inv))
    assert hg.edges["old1", "new1"]["verdict"] in FEASIBLE
    assert hg.edges["new1", "old1"]["verdict"] == "blocked"


def test_identical_cpus_with_different_host_model_still_cover_every_host():
    a = host("a")
    b = host("b", host_model=None)
    rec = recommend([a, b], CAT)
    assert {c.host for c in rec.costs} == {"a", "b"}


def test_guests_sharing_a_shape_and_size_get_answers_of_their_own():
    # The destination-class part of an answer is shared by guests of one shape
    # and size: a guest's own host must still never be its destination, and a
    # guest's own rules (here a PCI device) must still decide its verdict.
    hosts = [host(f"h{i}", domains=(guest(f"g{i}"),)) for i in range(6)]
    hosts.append(host("h6", domains=(guest("gpu", hostdevs=(HostDev("pci", "0000:3b:00.0"),)),)))
    an = run(inventory(*hosts))
    res = {r.guest: r for r in an.guests}
    for i in range(6):
        r = res[f"g{i}"]
        assert r.destinations and f"h{i}" not in r.destinations
        assert r.status in FEASIBLE
        assert all(v.code != "hostdev.assigned" for v in r.reasons)
    assert res["gpu"].status == "blocked" and res["gpu"].reasons[0].code == "hostdev.assigned"
    assert an.stranded == ["gpu"]



def test_shared_class_parts_equal_answers_computed_guest_by_guest(monkeypatch):
    import planner.recommend.graph as G

    hosts = [host(f"h{i}", "broadwell" if i % 2 else "skylake", mem_gib=64, free_gib=8 + i,
                  domains=(guest(f"g{i}", mem_gib=4 + i % 3), guest(f"big{i}", mem_gib=12),
                           guest(f"c{i}", cpu=custom_cpu("Skylake-Server-IBRS"))))
             for i in range(8)]
    shared = run(inventory(*hosts))
    plain = G._guest_result

    def uncached(*a):  # analyze passes ..., near, part_cache last
        return plain(*a[:-2], frozenset(), None)

    monkeypatch.setattr(G, "_guest_result", uncached)
    assert run(inventory(*hosts)).guests == shared.guests
