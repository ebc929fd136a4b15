"""`migrate`/`drain --snapshot DIR` learn host names and URIs from the snapshot (snapshot.read)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from planner.errors import InputError
from planner.snapshot.read import host_uris

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_host_uris_come_from_the_manifest_of_a_collected_snapshot() -> None:
    assert host_uris(FIXTURES / "lab-3-hosts") == {
        "lab1": "qemu+tcp://127.0.0.20/system",
        "lab2": "qemu+tcp://127.0.0.21/system",
        "lab3": "qemu+tcp://127.0.0.22/system",
    }


def test_host_uris_of_a_hand_made_snapshot_come_from_host_json(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(FIXTURES / "hand-made-capabilities-only", snap)
    (snap / "hosts" / "cn-a" / "host.json").write_text(json.dumps({"uri": "qemu+tcp://cn-a/system"}))
    assert host_uris(snap) == {"cn-a": "qemu+tcp://cn-a/system"}


def test_a_redacted_uri_is_left_out(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "manifest.json").write_text(json.dumps({"hosts": [
        {"name": "a", "uri": "qemu+tcp://nova:***@a/system", "status": "ok"},
        {"name": "b", "uri": "qemu+tcp://b/system", "status": "ok"}]}))
    assert host_uris(snap) == {"b": "qemu+tcp://b/system"}


def test_a_broken_manifest_names_the_file(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "manifest.json").write_text('{"hosts": 3}')
    with pytest.raises(InputError, match="manifest.json"):
        host_uris(snap)
