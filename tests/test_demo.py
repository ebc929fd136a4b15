"""`migplan demo --example`: what the README says it shows, every file under --out
(issue 14, item 13's last sentence)."""

from __future__ import annotations

from conftest import REPO, run_cli


def test_demo_example_writes_its_snapshots_and_the_settings_recommend_writes_under_out(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    # the example cluster as the hand-made snapshot an operator makes from virsh capabilities
    snap = out / "snapshot-example"
    caps = sorted(snap.glob("hosts/*/capabilities.xml"))
    assert [c.parent.name for c in caps] == ["cn01-broadwell", "cn02-skylake",
                                             "cn03-cascadelake", "cn04-icelake"]
    # what the README promises: libvirt's baseline of the hosts, the Nova recommendation
    base = run_cli("cpu-baseline", str(REPO / "planner" / "data" / "example-cluster-caps.xml"))
    assert base.stdout in r.stdout
    assert "cn03-cascadelake" in r.stdout  # each host against the baseline, by name
    assert "== Nova CPU settings for " in r.stdout and "Why:" in r.stdout
    # the settings files are those `migplan recommend --out` writes for the planned fleet
    rec = tmp_path / "rec"
    run_cli("recommend", str(out / "modern-mixed-fleet"), "--out", str(rec))
    written = sorted(p.name for p in out.glob("nova-cpu*"))
    assert written and written == sorted(p.name for p in rec.glob("nova-cpu*"))
    for name in written:
        assert (out / name).read_text() == (rec / name).read_text(), name
    # a second run replaces what the first wrote, whole: nothing else appears
    before = sorted(p.name for p in out.iterdir())
    r = run_cli("demo", "--example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (REPO / "out").exists() or not (REPO / "out" / "demo" / "snapshot-example").exists()
