"""The Debian 12 packages the Nova lab runs (OpenStack Zed), installed with apt when missing.

Only as root.  Debian's OpenStack packages ask through debconf to configure databases,
RabbitMQ and keystone endpoints: every such question is preseeded "no" (``PRESEED``), and
package scripts are kept from starting services by ``/usr/sbin/policy-rc.d`` exiting 101
(created for the install and removed afterwards when it was not there): the lab configures
and starts everything itself, under its own state directory.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from planner.lab.process import LabError, require_root, tail

# nova-compute-kvm, NOT nova-compute-qemu: the latter depends on the qemu-system metapackage
# (about 30 emulators), and every libvirtd started afterwards probes them all at start (the
# lab's hosts then take more than 30 s to answer).  The trailing "-" entries tell apt to keep
# those out even if something recommends them.
PACKAGES = (
    "mariadb-server", "rabbitmq-server", "keystone", "glance-api", "placement-api",
    "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "nova-compute-kvm",
    # nova's API calls neutron even for servers without ports (--nic none)
    "neutron-server",
    "python3-pymysql", "uwsgi-core", "uwsgi-plugin-python3", "qemu-utils", "util-linux",
    # SASL for libvirtd's auth_tcp = "sasl" (kolla's default), saslpasswd2
    "sasl2-bin", "libsasl2-modules",
)
NOT_WANTED = ("nova-compute-qemu", "qemu-system", "qemu-system-arm", "qemu-system-mips",
              "qemu-system-ppc", "qemu-system-sparc", "qemu-system-misc")

PRESEED = "\n".join(
    f"{pkg} {question} boolean false" for pkg, question in (
        ("nova-common", "nova/configure_db"), ("nova-common", "nova/configure_ksat"),
        ("nova-common", "nova/configure_rabbit"), ("nova-common", "nova/configure_neutron"),
        ("nova-common", "nova/configure_placement"),
        ("nova-api", "nova/configure_api-endpoint"), ("nova-api", "novaapi/configure_db"),
        ("glance-common", "glance/configure_db"), ("glance-common", "glance/configure_ksat"),
        ("glance-common", "glance/configure_rabbit"),
        ("glance-api", "glance/configure_api-endpoint"),
        ("placement-common", "placement/configure_db"),
        ("placement-common", "placement/configure_ksat"),
        ("placement-api", "placement/configure_api-endpoint"),
        ("keystone", "keystone/configure_db"), ("keystone", "keystone/create-admin-tenant"),
        ("keystone", "keystone/register-endpoint"),
        ("neutron-common", "neutron/configure_db"), ("neutron-common", "neutron/configure_ksat"),
        ("neutron-common", "neutron/configure_nova"),
        ("neutron-common", "neutron/configure_rabbit"),
        ("neutron-api", "neutron/configure_api-endpoint"),
    )) + "\n"

POLICY_RC = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT = 1800.0


def missing_packages() -> list[str]:
    """The packages of ``PACKAGES`` dpkg does not list as installed."""
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *PACKAGES],
                           capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise LabError("the Nova lab needs Debian 12 (dpkg-query not found)") from None
    installed = {line.split()[0] for line in r.stdout.splitlines()
                 if line.endswith("install ok installed")}
    return [p for p in PACKAGES if p not in installed]


def install_missing(log: Path, progress: Callable[[str], None] | None = None) -> list[str]:
    """apt-get install what is missing (see the module docstring); returns what it installed."""
    missing = missing_packages()
    if not missing:
        return []
    require_root("install the Nova lab's Debian packages")
    say = progress or (lambda _m: None)
    say(f"installing Debian packages (a few minutes the first time): {' '.join(missing)}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".preseed", delete=False) as f:
        f.write(PRESEED)
    own_policy = not POLICY_RC.exists()
    try:
        _run(["debconf-set-selections", f.name], log, "debconf-set-selections")
        if own_policy:
            POLICY_RC.write_text("#!/bin/sh\n# written by migplan lab for its apt run\nexit 101\n")
            POLICY_RC.chmod(0o755)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], log, "apt-get update", env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
              "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
              *missing, *(f"{p}-" for p in NOT_WANTED)], log, "apt-get install", env)
    finally:
        os.unlink(f.name)
        if own_policy:
            POLICY_RC.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise LabError(f"apt-get did not install {' '.join(still)}; see {log}")
    return missing


def _run(cmd: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    try:
        with open(log, "ab") as out:
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env, timeout=APT_TIMEOUT)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} not found: the Nova lab installs its packages with apt "
                       "(Debian 12)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish in {APT_TIMEOUT:.0f} s; see {log}") from None
    if r.returncode != 0:
        raise LabError(f"{what} failed (exit {r.returncode}); last lines of {log}:\n{tail(log)}")
