"""The fast loader (planner.snapshot.read) against the straightforward one it replaced.

tests/reference/ holds the loader as it was before it was made fast: one
document after another, a path lookup per field.  Both must build equal
``Inventory`` objects -- every fixture, and a generated snapshot large enough
to take the parallel path, with hosts that share capabilities but for their
UUID, shared domcapabilities, and guests that repeat CPUs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO
from reference.inventory import load as reference_load

from planner.errors import InputError
from planner.snapshot import read as inventory
from planner.snapshot.read import load

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_inventory_load  # noqa: E402

FIXTURE_DIRS = sorted(p for p in (REPO / "fixtures").iterdir() if p.is_dir())


def _sources(inv: object) -> list[str]:
    """Every guest CpuDef's ``source``: not part of equality, but the engine's
    messages name the guest with it.  (A host CPU shared by many hosts names the
    first host that had it in its worker: any of them is as true.)"""
    return [d.cpu.source for h in inv.hosts for d in h.domains  # type: ignore[attr-defined]
            if d.cpu is not None]


@pytest.mark.parametrize("fixture", FIXTURE_DIRS, ids=lambda p: p.name)
def test_fast_load_equals_reference_on_every_fixture(fixture):
    fast, ref = load(fixture), reference_load(fixture)
    assert fast == ref
    assert _sources(fast) == _sources(ref)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen") / "snap"
    bench_inventory_load.build(root, 150, 4)
    return root


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_fast_load_equals_reference_on_a_generated_snapshot(generated, workers, monkeypatch):
    monkeypatch.setattr(inventory, "PARALLEL_MIN_HOSTS", 50)
    monkeypatch.setattr(inventory, "_workers", lambda: workers)
    # Other tests leave idle executor threads behind; these workers touch no lock.
    monkeypatch.setattr(inventory, "_forkable", lambda: True)
    pools: list[int] = []
    real_pool = inventory.ProcessPoolExecutor

    def pool(*args, **kwargs):  # counts the worker pools the fast path starts
        pools.append(kwargs.get("max_workers", 0))
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(inventory, "ProcessPoolExecutor", pool)
    fast, ref = load(generated), reference_load(generated)
    assert pools == ([workers - 1] if workers > 1 else [])  # this process is one of them
    assert len(fast.hosts) == 150 and len(fast.domains()) == 600
    assert fast == ref
    assert _sources(fast) == _sources(ref)
    assert all(h.cpu.source.endswith("/capabilities.xml: host CPU") for h in fast.hosts)


def _error(fn, path: Path) -> str:
    with pytest.raises(InputError) as err:
        fn(path)
    return str(err.value)


def test_parallel_load_reports_the_first_error_as_the_reference_does(generated, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(inventory, "PARALLEL_MIN_HOSTS", 50)
    monkeypatch.setattr(inventory, "_workers", lambda: 2)
    monkeypatch.setattr(inventory, "_forkable", lambda: True)
    snap = tmp_path / "snap"
    shutil.copytree(generated, snap)
    # A broken guest in a late chunk, a host directory missing after it.
    guest = next((snap / "hosts" / "cn00120" / "domains").glob("*.xml"))
    guest.write_bytes(guest.read_bytes()[:-40])
    shutil.rmtree(snap / "hosts" / "cn00130")
    first = _error(reference_load, snap)
    assert "cn00120" in first and "not well-formed" in first
    assert _error(load, snap) == first
    # Without the broken guest: the missing directory, after every earlier host loaded.
    guest.unlink()
    (snap / "hosts" / "cn00120" / "domains.json").unlink()
    second = _error(reference_load, snap)
    assert "cn00130" in second and "is missing" in second
    assert _error(load, snap) == second


def test_capabilities_share_a_parse_only_when_they_differ_in_the_host_uuid_alone():
    from planner.parse.host import CpuCache, _caps_key, build_host

    caps = (REPO / "fixtures/numa-pinned-guests/hosts/numa-a/capabilities.xml").read_bytes()
    cache = CpuCache()
    a = build_host("a", caps, cache=cache)
    other = caps.replace(a.host_uuid.encode(), b"11111111-2222-3333-4444-555555555555")
    b = build_host("b", other, cache=cache)
    assert b.host_uuid == "11111111-2222-3333-4444-555555555555" and b.cells == a.cells
    assert _caps_key(caps) is not None and _caps_key(caps)[0] == _caps_key(other)[0]
    # Anything else in the UUID's place, or a second <uuid>: parsed in full.
    assert _caps_key(caps.replace(a.host_uuid.encode(), b"x&amp;y")) is None
    assert _caps_key(caps.replace(b"</host>", b"<uuid>u</uuid></host>")) is None
    assert _caps_key(b"<?xml version='1.0'?>" + caps) is None
