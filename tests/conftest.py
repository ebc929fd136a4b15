"""Shared test helpers.

``run_cli`` runs the real ``migplan`` entry point in a subprocess (as a user
would), with the repository on PYTHONPATH so it works from any checkout.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# Real CPU data from libvirt's test suite, copied into the repository (origin in its READMEs).
CPUTESTDATA = REPO / "tests" / "data" / "cputestdata"
CORPUS = CPUTESTDATA / "classic"
MODERN_CORPUS = CPUTESTDATA / "modern"


def run_cli(*args: str, input: bytes | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        input=input.decode() if input is not None else None,
        capture_output=True, text=True, timeout=timeout, env=e, cwd=str(REPO),
    )


@pytest.fixture
def cli():
    return run_cli


# ---- the lab of real libvirt hosts (planner.lab) -------------------------------------------

# The test suite's lab lives on these addresses (engineers' own labs use lower ones);
# MIGPLAN_TEST_LAB_IP moves it, so two checkouts can run their suites side by side.
# Tests that need a lab of their own use the addresses right after it.
LAB_FIRST_IP = int(os.environ.get("MIGPLAN_TEST_LAB_IP", "101"))
LAB_HOSTS = 3
LAB_GUESTS = 2


def lab_unavailable_reason() -> str | None:
    """Why real libvirt hosts cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "the lab needs root (it starts libvirtd daemons in private mount namespaces)"
    from planner.errors import MigplanError
    from planner.lab import check_tools

    try:
        check_tools()
    except MigplanError as err:
        return str(err)
    return None


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running 3-host lab (2 guests each) on 127.0.0.101-103, for the whole session.

    Yields the ``planner.lab.Lab``; ``lab.uris()`` maps host names (lab1, lab2,
    lab3) to their ``qemu+tcp://127.0.0.10N/system`` URIs.  Torn down at the end
    of the session, and by an atexit guard should the session end abruptly.
    """
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from planner.lab import Lab

    the_lab = Lab(tmp_path_factory.mktemp("lab") / "state", hosts=LAB_HOSTS, guests=LAB_GUESTS,
                  first_ip=LAB_FIRST_IP)
    yield from _up_for_the_session(the_lab)


def _up_for_the_session(the_lab: Any) -> Iterator[Any]:
    """``the_lab.up()``, yield it, ``the_lab.down()`` -- also from an atexit guard, should
    the session end abruptly."""
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            the_lab.down()

    atexit.register(stop)
    try:
        the_lab.up()
        yield the_lab
    finally:
        stop()
        atexit.unregister(stop)


# ---- the Nova lab (planner.lab.nova; addresses and helpers in tests/nova_lab.py) -------------


@pytest.fixture(scope="session")
def nova_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running Nova lab for the whole session: 2 hosts (lab1, lab2) with one server each,
    control plane on 127.0.0.$MIGPLAN_TEST_NOVA_IP (default 120).

    Yields the ``planner.lab.nova.NovaLab``; ``.clouds_yaml`` is its clouds.yaml (cloud
    ``migplan-lab``), ``.lab.uris()`` the libvirt hosts.  Installs the Debian packages it
    needs when missing (skips, saying why, only when apt cannot); torn down at the end of
    the session, and by an atexit guard should the session end abruptly.
    """
    from nova_lab import (
        NOVA_CONTROL,
        NOVA_FIRST_HOST_IP,
        NOVA_HOSTS,
        NOVA_SERVERS_PER_HOST,
        nova_lab_unavailable_reason,
    )

    reason = lab_unavailable_reason() or nova_lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from planner.lab.nova import NovaLab
    from planner.lab.nova_packages import install_missing
    from planner.lab.process import LabError

    state = tmp_path_factory.mktemp("nova") / "state"
    try:
        install_missing(state.parent / "apt.log")
    except LabError as err:
        pytest.skip(f"the Nova lab's Debian packages cannot be installed here: {err}")
    the_lab = NovaLab(state, hosts=NOVA_HOSTS, guests=NOVA_SERVERS_PER_HOST,
                      first_ip=NOVA_FIRST_HOST_IP, control=NOVA_CONTROL)
    yield from _up_for_the_session(the_lab)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/ from the current output (review the diff).")


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden")
                or os.environ.get("MIGPLAN_UPDATE_GOLDEN") == "1")
