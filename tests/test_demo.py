"""`migplan demo --example`: what the README says it shows, its files under --out
(issue 14, item 13's last sentence)."""

from __future__ import annotations

from conftest import REPO, run_cli


def test_demo_example_plans_a_hand_made_snapshot_and_writes_it_and_the_settings_to_out(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    snap = out / "snapshot-example"
    caps = sorted(snap.glob("hosts/*/capabilities.xml"))
    assert [c.parent.name for c in caps] == ["cn01-broadwell", "cn02-skylake",
                                             "cn03-cascadelake", "cn04-icelake"]
    # what the README promises: libvirt's baseline of the hosts, the Nova recommendation
    base = run_cli("cpu-baseline", str(REPO / "planner" / "data" / "example-cluster-caps.xml"))
    assert base.stdout in r.stdout
    assert "== Nova CPU settings for all hosts (4 hosts) ==" in r.stdout and "Why:" in r.stdout
    # the files are those `migplan recommend` writes for that snapshot
    rec = tmp_path / "rec"
    run_cli("recommend", str(snap), "--out", str(rec))
    for name in ("nova-cpu.conf", "nova-cpu.yml"):
        assert (out / name).read_text() == (rec / name).read_text()
    assert not (REPO / "out").exists() or not any((REPO / "out").glob("demo/snapshot-example"))
    # a second run replaces the snapshot, whole
    r = run_cli("demo", "--example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["nova-cpu.conf", "nova-cpu.yml",
                                                     "snapshot-example"]
