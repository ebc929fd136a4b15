"""`migplan collect --os-cloud`: Nova read through openstacksdk into nova.json, then every
compute's libvirt; each failure a one-line Error with its exit code.  Against the real Nova
lab (keystone, nova-api, libvirtd): a wrong password is keystone's own refusal, a stopped
endpoint a real refused connection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from nova_lab import NOVA_CONTROL

from planner.snapshot.read import load

pytestmark = pytest.mark.nova


def _env(clouds: Path, home: Path) -> dict[str, str]:
    # HOME elsewhere: no ~/.config/openstack/clouds.yaml of the machine's interferes
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return {**env, "OS_CLIENT_CONFIG_FILE": str(clouds), "HOME": str(home)}


def _clouds(nova_lab, tmp_path: Path, change) -> Path:
    doc = yaml.safe_load(nova_lab.clouds_yaml.read_text())
    change(doc["clouds"]["migplan-lab"])
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _collect(env: dict[str, str], out: Path, *extra: str):
    return run_cli("collect", "--os-cloud", "migplan-lab", "--out", str(out), *extra, env=env,
                   timeout=600)


def _error(r) -> str:
    """The one Error line (progress lines come before it), never a traceback."""
    assert "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def _password(nova_lab) -> str:
    return yaml.safe_load(nova_lab.clouds_yaml.read_text())["clouds"]["migplan-lab"]["auth"][
        "password"]


def test_collect_os_cloud_writes_nova_json_and_every_computes_libvirt(nova_lab, tmp_path):
    out = tmp_path / "snap"
    r = _collect(_env(nova_lab.clouds_yaml, tmp_path), out)
    assert r.returncode == 0, r.stderr
    inv = load(out)
    assert [h.name for h in inv.hosts] == ["lab1", "lab2"] or \
        sorted(h.name for h in inv.hosts) == ["lab1", "lab2"]
    nova = inv.nova
    assert nova is not None and nova.cloud == "migplan-lab"
    assert nova.auth_url == f"http://{NOVA_CONTROL}:5000/v3"
    assert sorted((s.host, s.state, s.status) for s in nova.services) == \
        [("lab1", "up", "enabled"), ("lab2", "up", "enabled")]
    assert sorted(z.name for z in nova.zones) == ["nova"]
    servers = {s.id: s for s in nova.servers}
    assert sorted(s.name for s in servers.values()) == ["lab1-vm1", "lab2-vm1"]
    for h in inv.hosts:
        for d in h.domains:
            # libvirt's guest, Nova's metadata and Nova's API agree on the server
            s = servers[d.uuid]
            assert (d.nova.name, s.instance_name, s.host) == (s.name, d.name, h.name)
            assert s.flavor_name == d.nova.flavor == "m1.lab"
    # the password of clouds.yaml is nowhere in the snapshot or the output
    pw = _password(nova_lab)
    assert pw not in r.stdout + r.stderr
    for f in out.rglob("*"):
        if f.is_file():
            assert pw.encode() not in f.read_bytes(), f


def test_an_unknown_cloud_or_missing_clouds_yaml_is_a_usage_error(nova_lab, tmp_path):
    r = run_cli("collect", "--os-cloud", "nope", "--out", str(tmp_path / "s"),
                env=_env(nova_lab.clouds_yaml, tmp_path))
    assert r.returncode == 2, r.stderr
    assert _error(r).startswith("Error: --os-cloud nope: Cloud nope was not found.")
    r = _collect(_env(tmp_path / "no-such-clouds.yaml", tmp_path), tmp_path / "s")
    assert r.returncode == 2
    assert _error(r).startswith("Error: --os-cloud migplan-lab: Cloud migplan-lab was not found")
    assert not (tmp_path / "s").exists()


def test_a_wrong_password_is_keystones_refusal_and_is_never_printed(nova_lab, tmp_path):
    bad = "not-the-password-42"
    clouds = _clouds(nova_lab, tmp_path, lambda c: c["auth"].update(password=bad))
    r = _collect(_env(clouds, tmp_path), tmp_path / "s")
    assert r.returncode == 1, r.stderr
    assert _error(r) == (
        "Error: authenticate to cloud migplan-lab: keystone at "
        f"http://{NOVA_CONTROL}:5000/v3 refused the credentials (HTTP 401: wrong user, "
        "password, project or domain)")
    assert bad not in r.stdout + r.stderr and not (tmp_path / "s").exists()


def test_a_stopped_keystone_is_a_refused_connection_naming_the_endpoint(nova_lab, tmp_path):
    # a port of the control address where nothing listens: the kernel's own refusal
    clouds = _clouds(nova_lab, tmp_path, lambda c: c["auth"].update(
        auth_url=f"http://{NOVA_CONTROL}:5999/v3"))
    r = _collect(_env(clouds, tmp_path), tmp_path / "s")
    assert r.returncode == 1, r.stderr
    assert _error(r) == ("Error: authenticate to cloud migplan-lab: cannot reach "
                                f"http://{NOVA_CONTROL}:5999: connection refused")


def test_a_stopped_nova_api_is_named(nova_lab, tmp_path):
    from planner.lab.nova_services import Services
    from planner.lab.process import stop_groups

    svc = Services(nova_lab.spec())
    stop_groups([svc.pid("nova-api")])
    try:
        r = _collect(_env(nova_lab.clouds_yaml, tmp_path), tmp_path / "s")
    finally:
        nova_lab.up()  # starts what is not running: nova-api again
    assert r.returncode == 1, r.stderr
    assert _error(r) == ("Error: list compute services: cannot reach "
                         f"http://{NOVA_CONTROL}:8774: connection refused")


def test_a_compute_whose_libvirt_is_unreachable_gives_a_partial_snapshot(nova_lab, tmp_path):
    # lab2's libvirt on an address where no libvirtd listens
    clouds = _clouds(nova_lab, tmp_path, lambda c: c["migplan"]["libvirt_uris"].update(
        lab2="qemu+tcp://127.0.0.254/system"))
    out = tmp_path / "snap"
    r = _collect(_env(clouds, tmp_path), out)
    assert r.returncode == 5, r.stderr
    assert _error(r).startswith("Error: 1 of 2 hosts not collected (lab2)")
    man = json.loads((out / "manifest.json").read_text())
    assert {h["name"]: h["status"] for h in man["hosts"]} == {"lab1": "ok", "lab2": "failed"}
    inv = load(out)
    assert [h.name for h in inv.hosts] == ["lab1"]
    assert sorted(s.host for s in inv.nova.services) == ["lab1", "lab2"]  # Nova still read
