"""Shared test helpers.

``run_cli`` runs the real ``migplan`` entry point in a subprocess (as a user
would), with the repository on PYTHONPATH so it works from any checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "libvirt-cputestdata"


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


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/ from the current output (review the diff).")


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden")
                or os.environ.get("MIGPLAN_UPDATE_GOLDEN") == "1")
