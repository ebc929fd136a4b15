"""libvirt with SASL as kolla-ansible deploys it (qemu+tcp, user nova, DIGEST-MD5): collect
answers libvirt's prompts through its authentication callback with a password from a file
(kolla's passwords.yml, or one line) or the environment, and the password appears nowhere.
Against a real lab libvirtd started with auth_tcp = "sasl"."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAB_FIRST_IP, lab_unavailable_reason, run_cli

from planner.collect.credentials import LibvirtCredentials, credentials, password_from_file
from planner.errors import InputError

SASL_LAB_IP = LAB_FIRST_IP + 7  # after the session lab and test_lab's own labs (2 hosts)


# ---- without a daemon ----------------------------------------------------------------------


def test_kollas_passwords_yml_or_a_one_line_file_holds_the_password():
    assert password_from_file("keystone_admin_password: a\nlibvirt_sasl_password: s3cret\n",
                              "passwords.yml") == "s3cret"
    assert password_from_file("\n  s3cret  \n", "pw") == "s3cret"
    with pytest.raises(InputError, match="passwords.yml: no libvirt_sasl_password"):
        password_from_file("nova_keystone_password: x\n", "passwords.yml")
    with pytest.raises(InputError, match="pw: the password file is empty"):
        password_from_file("\n", "pw")


def test_credentials_come_from_the_file_then_the_environment_and_never_show():
    env = {"MIGPLAN_LIBVIRT_PASSWORD": "from-env", "MIGPLAN_LIBVIRT_USER": "admin"}
    assert credentials("from-file\n", "f", None, env) == LibvirtCredentials("admin", "from-file")
    assert credentials(None, "", "nova", env) == LibvirtCredentials("nova", "from-env")
    assert credentials(None, "", None, {}) is None
    c = LibvirtCredentials("nova", "s3cret")
    assert "s3cret" not in repr(c) + str(c)


# ---- against a SASL lab host ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import shutil

    if shutil.which("saslpasswd2") is None:
        pytest.skip("saslpasswd2 missing: apt-get install sasl2-bin libsasl2-modules "
                    "(the Nova lab installs them)")
    from planner.lab import Lab

    lab = Lab(tmp_path_factory.mktemp("sasl") / "state", hosts=2, guests=1,
              first_ip=SASL_LAB_IP, sasl=True)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def _collect(lab, out: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli("collect", lab.uris()["lab1"], "--out", str(out), "--timeout", "60", *args,
                   env={k: v for k, v in (env or {}).items()} or None)


def test_collect_with_kollas_passwords_yml_reads_the_sasl_host(sasl_lab, tmp_path):
    pw = sasl_lab.passwords_file.read_text().split(":", 1)[1].strip()
    out = tmp_path / "snap"
    r = _collect(sasl_lab, out, "--libvirt-password-file", str(sasl_lab.passwords_file))
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert [h["status"] for h in man["hosts"]] == ["ok"]
    assert pw not in r.stdout + r.stderr
    for f in out.rglob("*"):
        if f.is_file():
            assert pw.encode() not in f.read_bytes(), f


def test_collect_with_the_password_in_the_environment(sasl_lab, tmp_path):
    pw = sasl_lab.passwords_file.read_text().split(":", 1)[1].strip()
    r = _collect(sasl_lab, tmp_path / "snap",
                 env={**os.environ, "MIGPLAN_LIBVIRT_PASSWORD": pw})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("how", ["wrong password", "no credentials"])
def test_a_refused_sasl_login_is_an_auth_failure_of_that_host(sasl_lab, tmp_path, how):
    args: list[str] = []
    if how == "wrong password":
        f = tmp_path / "pw"
        f.write_text("not-the-password\n")
        args = ["--libvirt-password-file", str(f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGPLAN_LIBVIRT_")}
    out = tmp_path / "snap"
    r = _collect(sasl_lab, out, *args, env=env)
    assert r.returncode == 5, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert [(h["status"], h["error_kind"]) for h in man["hosts"]] == [("failed", "auth")]
    assert "not-the-password" not in r.stdout + r.stderr + (out / "manifest.json").read_text()


def test_migrate_and_drain_read_sasl_hosts_with_the_same_credentials(sasl_lab, tmp_path):
    """The pre-flight of `migrate` and `drain` reads both hosts (and asks them where the guest
    is) through the same authentication callback as collect."""
    pw = sasl_lab.passwords_file.read_text().split(":", 1)[1].strip()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MIGPLAN_LIBVIRT_")},
           "MIGPLAN_LAB_DIR": str(sasl_lab.state_dir)}
    creds = ["--libvirt-password-file", str(sasl_lab.passwords_file)]
    for args in (("migrate", "lab1-vm1", "lab2", "--lab", "--dry-run"), ("drain", "lab1", "--lab")):
        r = run_cli(*args, *creds, env=env)
        assert r.returncode == 0, r.stderr
        assert "lab1-vm1" in r.stdout and pw not in r.stdout + r.stderr
        without = run_cli(*args, env=env)
        assert without.returncode != 0 and "authentication" in without.stderr.lower(), \
            without.stderr
