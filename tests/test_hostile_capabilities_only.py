"""Thin input: a snapshot made of `virsh capabilities` files (and guests' `virsh dumpxml`)
alone must answer everything those files tell (issue 14 item 4).

The hypervisor types a host offers are in capabilities (``<guest><arch><domain
type='kvm'/>``); which huge page sizes it has, and how many pages each NUMA cell has
reserved, are in capabilities too; so is its memory, which bounds what is free.  What
the files cannot tell (free memory, versions, storage) is one short list naming the
file that would, after the CPU answer -- not UNKNOWN on every row.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

HAND_MADE = REPO / "fixtures" / "hand-made-capabilities-only"


def _guest(name: str, *, mem_gib: int = 4, pages_kib: int | None = None,
           domain_type: str = "kvm") -> str:
    backing = (f"<memoryBacking><hugepages><page size='{pages_kib}' unit='KiB'/></hugepages>"
               "</memoryBacking>") if pages_kib else ""
    return f"""<domain type='{domain_type}' id='3'>
  <name>{name}</name>
  <memory unit='GiB'>{mem_gib}</memory>
  <vcpu>2</vcpu>
  {backing}
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>Broadwell-noTSX</model></cpu>
</domain>
"""


@pytest.fixture
def snap(tmp_path) -> Path:
    """hosts/cn-a, cn-b: capabilities.xml only; cn-b runs guests known by their XML alone."""
    s = tmp_path / "snap"
    shutil.copytree(HAND_MADE, s)
    d = s / "hosts" / "cn-b" / "domains"
    d.mkdir()
    (d / "huge1g.xml").write_text(_guest("huge1g", pages_kib=1048576))
    (d / "huge2m.xml").write_text(_guest("huge2m", pages_kib=2048))
    (d / "plain.xml").write_text(_guest("plain"))
    (d / "tcg.xml").write_text(_guest("tcg", domain_type="qemu"))
    (d / "giant.xml").write_text(_guest("giant", mem_gib=4096))
    return s


def _check(snap: Path, guest: str, fmt: str = "json") -> tuple[int, dict | str]:
    r = run_cli("check", guest, "cn-a", "--snapshot", str(snap), "--format", fmt)
    assert r.returncode in (0, 3), r.stderr
    return r.returncode, (json.loads(r.stdout) if fmt == "json" else r.stdout)


def _verdict(doc: dict, rule: str) -> dict:
    return next(v for v in doc["reasons"] if v["rule"] == rule)


def test_the_hypervisor_type_comes_from_capabilities(snap):
    _, doc = _check(snap, "plain")
    v = _verdict(doc, "hypervisor-type")
    assert v["verdict"] == "ok", v
    # a TCG guest runs wherever capabilities offer domain type qemu (cn-a offers qemu and kvm)
    _, doc = _check(snap, "tcg")
    assert _verdict(doc, "hypervisor-type")["verdict"] == "ok"


def test_a_host_without_the_type_in_its_capabilities_refuses_the_guest(snap):
    caps = snap / "hosts" / "cn-a" / "capabilities.xml"
    caps.write_text(caps.read_text().replace("<domain type='kvm'/>", ""))
    code, doc = _check(snap, "plain")
    v = _verdict(doc, "hypervisor-type")
    assert code == 3 and v["verdict"] == "blocked" and v["code"] == "hypervisor-type.mismatch"
    assert "cn-a" in v["message"] and "kvm" in v["message"]


def test_a_1g_page_guest_cannot_go_where_no_1g_page_is_reserved(snap):
    code, doc = _check(snap, "huge1g")
    v = _verdict(doc, "hugepages")
    assert code == 3 and v["verdict"] == "blocked", v
    assert "1048576 KiB" in v["message"] and "cn-a" in v["message"]


def test_a_size_the_host_does_not_offer_at_all_is_blocked(snap):
    caps = snap / "hosts" / "cn-a" / "capabilities.xml"
    text = caps.read_text()
    text = text.replace("<pages unit='KiB' size='1048576'/>", "")
    text = text.replace("<pages unit='KiB' size='1048576'>0</pages>", "")
    caps.write_text(text)
    code, doc = _check(snap, "huge1g")
    v = _verdict(doc, "hugepages")
    assert code == 3 and v["code"] == "hugepages.no-such-size", v


def test_more_memory_than_the_host_has_is_blocked_without_free_figures(snap):
    code, doc = _check(snap, "giant")
    v = _verdict(doc, "memory")
    assert code == 3 and v["verdict"] == "blocked", v


def test_the_cpu_answer_comes_first_then_one_list_of_what_could_not_be_checked(snap):
    code, text = _check(snap, "plain", fmt="table")
    lines = text.splitlines()
    assert lines[0].startswith("plain: cn-b -> cn-a: UNKNOWN")
    assert lines[2].startswith("CPU: ok"), text
    table = text[:text.index("Could not check")]
    assert " unknown " not in table  # no row of the table is UNKNOWN
    tail = text[text.index("Could not check"):].splitlines()
    assert any(line.strip().startswith("memory") and "host.json" in line for line in tail), text
    assert any("version-older" in line and "host.json" in line for line in tail), text
    _, doc = _check(snap, "plain")
    assert doc["cpu"]["verdict"] == "ok" and doc["cpu"]["rule"] == "cpu-features"
    assert {n["rule"] for n in doc["not_checked"]} >= {"memory", "version-older"}
    assert all(n["file"] for n in doc["not_checked"])


def test_guests_of_the_destination_unknown_means_vcpus_in_use_unknown(snap):
    """cn-a's guests are not in the snapshot: the vCPUs they use are not known, so the
    allocation ratio cannot be shown to hold (it used to pass as if cn-a ran nothing)."""
    _, doc = _check(snap, "plain")
    assert _verdict(doc, "vcpus")["verdict"] == "unknown"


def test_recommend_collapses_pairs_that_could_not_be_checked_into_one_line(snap):
    r = run_cli("recommend", str(snap))
    assert r.returncode in (0, 3), r.stderr
    assert "cn-a -> cn-b: unknown" not in r.stdout
    assert "could not be checked" in r.stdout
