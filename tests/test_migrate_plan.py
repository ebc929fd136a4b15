"""Pure parts of migrate and drain: planning, verification, source search, drain placement.

No daemon here: the lab tests (test_migrate.py) run the same code against real
hosts.  The fake driver below exists for outcomes a real daemon cannot be made
to show on purpose (a guest lost on both sides, a job that reports success for
a guest that is not on the destination).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from planner.act.drain import run_drain, summary_exit_code
from planner.act.migrate import Outcome, execute, verify
from planner.adapters.catalogs import load_catalog
from planner.assess.rules import Policy
from planner.assess.verdict import Status, Verdict
from planner.errors import InfeasibleError, MigplanError, MigrationFailed, UsageError
from planner.model import Domain, Host, NumaCell, PageSize
from planner.plan.drain import book, plan_drain
from planner.plan.migration import (
    DiskCopy,
    GuestPresence,
    MigrateOptions,
    find_source,
    make_plan,
    prepare,
    rules_preflight,
)
from planner.snapshot.read import load

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lab-3-hosts"
CATALOG = load_catalog(None)


def plan(opts: MigrateOptions | None = None, disks: list[DiskCopy] | None = None,
         preflight: tuple[tuple[str, str, str], ...] = ()):
    return make_plan("vm1", "a", "qemu+tcp://a/system", "b", "qemu+tcp://b/system",
                     memory_kib=262144, local_disks=disks or [], opts=opts or MigrateOptions(),
                     preflight=preflight)


# ---- make_plan --------------------------------------------------------------------------------


def test_default_plan_is_a_persistent_peer_to_peer_live_migration_without_storage():
    p = plan()
    assert p.flags == ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "ABORT_ON_ERROR")
    assert p.params == {} and p.storage == ()
    assert p.expected_transfer_bytes == p.memory_bytes == 256 * 1024 * 1024


def test_local_disks_are_copied_by_default_and_counted_in_the_transfer():
    disks = [DiskCopy("vda", "/var/lib/libvirt/images/vm1.qcow2", 10 * 2**30)]
    p = plan(disks=disks)
    assert "NON_SHARED_DISK" in p.flags and p.storage == tuple(disks)
    assert p.expected_transfer_bytes == 256 * 2**20 + 10 * 2**30
    inc = plan(MigrateOptions(copy_storage="inc"), disks=disks)
    assert "NON_SHARED_INC" in inc.flags and "NON_SHARED_DISK" not in inc.flags
    none = plan(MigrateOptions(copy_storage="none"), disks=disks)
    assert none.storage == () and not {"NON_SHARED_DISK", "NON_SHARED_INC"} & set(none.flags)


def test_tuning_options_become_flags_and_typed_parameters():
    p = plan(MigrateOptions(bandwidth_mib=100, max_downtime_ms=250, auto_converge=True,
                            postcopy=True, compressed=True, parallel_connections=4,
                            timeout_s=30, timeout_action="postcopy"))
    assert {"AUTO_CONVERGE", "POSTCOPY", "COMPRESSED", "PARALLEL"} <= set(p.flags)
    assert p.params == {"parallel.connections": 4, "bandwidth": 100, "max_downtime_ms": 250}
    assert (p.timeout_s, p.timeout_action) == (30, "postcopy")
    assert p.to_json()["flags"][0] == "VIR_MIGRATE_LIVE"


def test_switching_to_postcopy_on_timeout_needs_postcopy():
    with pytest.raises(UsageError, match="needs --postcopy"):
        plan(MigrateOptions(timeout_s=5, timeout_action="postcopy"))


def test_a_move_to_the_source_itself_is_a_usage_error():
    with pytest.raises(UsageError, match="is the source"):
        make_plan("vm1", "a", "u", "a", "u", memory_kib=1, local_disks=[], opts=MigrateOptions())


def test_blocked_or_unknown_verdicts_refuse_with_every_reason_unless_forced():
    verdicts = (Verdict("cpu-arch", Status.OK, "cpu-arch.ok", "both x86_64"),
                Verdict("memory", Status.BLOCKED, "memory.insufficient", "b has 0.1 GiB free"),
                Verdict("vcpus", Status.UNKNOWN, "vcpus.unknown",
                        "b: CPU count not in the snapshot"),
                Verdict("pinned-cpus", Status.WARN, "pinned-cpus.repin", "repin"))
    with pytest.raises(InfeasibleError) as err:
        plan(preflight=verdicts)
    assert "[memory.insufficient]" in str(err.value) and "[vcpus.unknown]" in str(err.value)
    assert "repin" not in str(err.value) and err.value.exit_code == 3
    assert plan(MigrateOptions(force=True), preflight=verdicts).preflight == verdicts


# ---- verify and execute, with a fake driver ------------------------------------------------------


class FakeDriver:
    """Hosts as a dict uri -> GuestPresence, and a scripted job.

    A fake, because a real daemon cannot be made to lose a guest on both sides or to
    report success for a guest that is not on the destination.
    """

    def __init__(self, before: dict[str, GuestPresence], after: dict[str, GuestPresence],
                 error: str | None = None) -> None:
        self.hosts = dict(before)
        self.after = after
        self.error = error
        self.ran = False

    def presence(self, uri: str, guest: str) -> GuestPresence:
        p = self.hosts.get(uri, GuestPresence(False))
        if isinstance(p, Exception):  # the host does not answer
            raise p
        return p

    def run(self, plan, on_progress, stop) -> str | None:
        self.ran = True
        self.hosts = dict(self.after)
        return self.error


RUNNING = GuestPresence(True, True, True, "running")
RUNNING_TRANSIENT = GuestPresence(True, True, False, "running")
ABSENT = GuestPresence(False)
SRC, DST = "qemu+tcp://a/system", "qemu+tcp://b/system"


def test_success_needs_the_guest_running_persistent_on_the_destination_and_gone_from_the_source():
    d = FakeDriver({SRC: RUNNING}, {DST: RUNNING})
    o = execute(plan(), d)
    assert d.ran and o.ok and o.on == "b"


def test_a_job_that_says_success_while_the_guest_still_runs_on_the_source_is_a_failure():
    o = verify(plan(), FakeDriver({SRC: RUNNING}, {}), None, 1.0)
    assert o.status == "failed" and o.on == "a" and "did not end" in o.message


def test_a_failed_job_with_the_guest_on_the_source_is_reported_with_libvirt_s_words():
    o = verify(plan(), FakeDriver({SRC: RUNNING, DST: ABSENT}, {}), "connection reset", 1.0,
               aborted=False)
    assert (o.status, o.on) == ("failed", "a") and "connection reset" in o.message


def test_a_guest_running_on_the_destination_but_not_persistent_is_not_a_success():
    o = verify(plan(), FakeDriver({DST: RUNNING_TRANSIENT}, {}), "persist failed", 1.0)
    assert not o.ok and o.on == "b" and "NOT persistent" in o.message


def test_a_definition_left_on_the_source_is_reported():
    left = GuestPresence(True, False, True, "shutoff")
    o = verify(plan(), FakeDriver({DST: RUNNING, SRC: left}, {}), None, 1.0)
    assert not o.ok and o.on == "b" and "still has it defined (shutoff)" in o.message


def test_a_guest_both_hosts_say_they_do_not_run_is_lost_not_a_failed_migration():
    from planner.cli.migrate import outcome_error

    o = verify(plan(), FakeDriver({}, {}), "boom", 1.0)
    assert (o.status, o.on) == ("lost", "nowhere") and "runs on neither host" in o.message
    err = outcome_error(o)
    assert err.exit_code == 8 and not isinstance(err, MigrationFailed)


def test_a_host_that_does_not_answer_makes_the_outcome_unknown_with_the_commands_to_check():
    from planner.cli.migrate import outcome_error
    from planner.errors import HostError

    down = HostError("qemu+tcp://b/system: Connection refused", "unreachable")
    o = verify(plan(), FakeDriver({SRC: ABSENT, DST: down}, {}), None, 1.0)
    assert (o.status, o.on) == ("unknown", "?")
    assert "a has no guest vm1" in o.message and "b did not answer (" in o.message
    assert f"virsh -c {DST} domstate vm1" in o.message and f"virsh -c {SRC}" in o.message
    assert o.details["destination"]["answered"] is False
    assert outcome_error(o).exit_code == 7
    # the source confirming the guest runs there is still exit 4, whatever the destination says
    o = verify(plan(), FakeDriver({SRC: RUNNING, DST: down}, {}), "connection lost", 1.0)
    assert (o.status, o.on) == ("failed", "a") and outcome_error(o).exit_code == 4
    assert "did not answer" in o.message
    # both claiming the guest: not a failure on the source
    o = verify(plan(), FakeDriver({SRC: RUNNING, DST: RUNNING}, {}), "x", 1.0)
    assert o.status == "unknown" and "both hosts have it active" in o.message


def test_execute_refuses_a_guest_that_is_not_running_and_does_not_run_the_job():
    d = FakeDriver({SRC: GuestPresence(True, False, True, "shutoff")}, {})
    with pytest.raises(UsageError, match="shutoff"):
        execute(plan(), d)
    assert not d.ran


# ---- where the guest runs ---------------------------------------------------------------------------


HOSTS = {"a": SRC, "b": DST, "c": "qemu+tcp://c/system"}


def presence_of(table: dict[str, GuestPresence]):
    def presence(uri: str, guest: str) -> GuestPresence:
        return table.get(uri, ABSENT)
    return presence


def test_the_source_is_the_host_where_the_guest_runs():
    assert find_source("vm1", ("b", DST), HOSTS, presence_of({SRC: RUNNING})) == ("a", SRC)


@pytest.mark.parametrize("table, message", [
    ({}, "unknown guest 'vm1'"),
    ({SRC: GuestPresence(True, False, True, "shutoff")}, "not running"),
    ({DST: RUNNING}, "already runs on b"),
    ({SRC: RUNNING, "qemu+tcp://c/system": RUNNING}, "several hosts"),
])
def test_source_search_errors(table, message):
    with pytest.raises(Exception, match=message):
        find_source("vm1", ("b", DST), HOSTS, presence_of(table))


def test_prepare_runs_the_rules_on_fresh_state_and_refuses_with_their_reasons():
    inv = load(FIXTURE)
    uris = {h.name: f"qemu+tcp://{h.name}/system" for h in inv.hosts}
    state = {h.name: h for h in inv.hosts}

    def read(wanted):
        return {n: state[n] for n in wanted}

    tight = rules_preflight(Policy(memory_reserve_kib=10**9), CATALOG)
    with pytest.raises(InfeasibleError, match="memory.insufficient"):
        prepare("lab1-vm1", "lab2", hosts=uris, source="lab1", opts=MigrateOptions(),
                preflight=tight, read=read, presence=presence_of({}))
    p = prepare("lab1-vm1", "lab2", hosts=uris, source="lab1", opts=MigrateOptions(),
                preflight=rules_preflight(Policy(), CATALOG), read=read, presence=presence_of({}))
    assert (p.source, p.destination, p.memory_bytes) == ("lab1", "lab2", 128 * 2**20)
    assert all(v.status in ("ok", "warn") for v in p.preflight)


# ---- drain planning ----------------------------------------------------------------------------------


def lab_hosts() -> dict[str, Host]:
    return {h.name: h for h in load(FIXTURE).hosts}


def vcpus_running(h: Host) -> int:
    return sum(d.vcpus for d in h.domains if d.state == "running")


def test_drain_places_every_guest_largest_first_in_waves_of_k():
    p = plan_drain("lab1", lab_hosts(), rules_preflight(Policy(), CATALOG), max_parallel=1)
    assert p.complete and [a.guest for a in p.assignments] == ["lab1-vm2", "lab1-vm1"]
    assert [a.wave for a in p.assignments] == [1, 2]
    assert p.assignments[0].transient and not p.assignments[1].transient


def test_drain_never_over_books_a_destination():
    # 2 CPUs x 2.0 = 4 vCPUs per host; lab2 and lab3 run 3 each; lab1 has 1 + 2 vCPUs to place:
    # the 2-vCPU guest fits nowhere, the 1-vCPU guest fits exactly once
    hosts = lab_hosts()
    p = plan_drain("lab1", hosts, rules_preflight(Policy(cpu_allocation_ratio=2.0), CATALOG))
    assert [a.guest for a in p.assignments] == ["lab1-vm1"]
    assert [s.guest for s in p.stuck] == ["lab1-vm2"]
    codes = {v.code for _, vs in p.stuck[0].reasons for v in vs}
    assert "vcpus.overcommit" in codes
    assert summary_exit_code(None, p) == 3
    # with room for exactly one more 1-vCPU guest per host, two small guests split
    small = dataclasses.replace(hosts["lab1"].domains[0], name="small2")
    hosts["lab1"] = dataclasses.replace(hosts["lab1"], domains=(
        hosts["lab1"].domains[0], small))
    p = plan_drain("lab1", hosts, rules_preflight(Policy(cpu_allocation_ratio=2.0), CATALOG))
    assert p.complete and sorted(a.destination for a in p.assignments) == ["lab2", "lab3"]


def test_booking_takes_memory_and_huge_pages_off_the_destination():
    hosts = lab_hosts()
    dst = dataclasses.replace(hosts["lab2"], cells=(NumaCell(
        0, (0, 1), 4 * 2**20, 2 * 2**20, (PageSize(4, 1000, 500), PageSize(2048, 300, 200))),),
        free_memory_kib=2 * 2**20)
    g = dataclasses.replace(hosts["lab1"].domains[0], hugepages_kib=(2048,), memory_kib=256 * 1024)
    after = book(dst, g)
    assert after.cells[0].pages[1].free == 200 - 128
    assert after.free_memory_kib == dst.free_memory_kib  # huge pages are not ordinary memory
    assert after.domains[-1].name == g.name and after.domains[-1].host == "lab2"
    plain = book(dst, hosts["lab1"].domains[1])
    assert plain.free_memory_kib == 2 * 2**20 - 256 * 1024
    assert plain.cells[0].free_kib == 2 * 2**20 - 256 * 1024


def test_drain_of_huge_page_guests_stops_when_the_pages_run_out():
    hosts = lab_hosts()
    cells = (NumaCell(0, (0, 1), 4 * 2**20, 2 * 2**20,
                      (PageSize(4, 1000, 500), PageSize(2048, 300, 150))),)
    for n in ("lab2", "lab3"):
        hosts[n] = dataclasses.replace(hosts[n], cells=cells)
    guests = tuple(dataclasses.replace(hosts["lab1"].domains[0], name=f"hp{i}",
                                       hugepages_kib=(2048,), memory_kib=256 * 1024)
                   for i in range(3))  # 128 pages each; 150 free per destination
    hosts["lab1"] = dataclasses.replace(hosts["lab1"], domains=guests)
    p = plan_drain("lab1", hosts, rules_preflight(Policy(), CATALOG))
    assert sorted(a.destination for a in p.assignments) == ["lab2", "lab3"]
    assert len(p.stuck) == 1
    assert any(v.code == "hugepages.insufficient" for _, vs in p.stuck[0].reasons for v in vs)


def test_drain_of_an_unknown_host_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown host"):
        plan_drain("nope", lab_hosts(), rules_preflight(Policy(), CATALOG))


def test_running_a_drain_goes_wave_by_wave_and_stops_after_ctrl_c():
    p = plan_drain("lab1", lab_hosts(), rules_preflight(Policy(), CATALOG), max_parallel=1)
    seen: list[str] = []
    stop = threading.Event()

    def migrate_one(a, stop_event) -> Outcome:
        seen.append(a.guest)
        stop_event.set()  # as Ctrl-C during the first wave would
        return Outcome(a.guest, "aborted", "lab1", "aborted", 0.1)

    r = run_drain(p, migrate_one, stop=stop)
    assert seen == ["lab1-vm2"] and r.not_started == ("lab1-vm1",)
    assert summary_exit_code(r, p) == 4


def test_domain_fixture_shape_is_what_the_drain_tests_assume():
    hosts = lab_hosts()
    assert {n: vcpus_running(h) for n, h in hosts.items()} == {"lab1": 3, "lab2": 3, "lab3": 3}
    assert all(h.cpus_total == 2 for h in hosts.values())
    assert isinstance(hosts["lab1"].domains[0], Domain)


@pytest.mark.parametrize("command", ["migrate", "drain"])
def test_migrate_and_drain_have_help_with_an_example(command):
    from conftest import run_cli

    r = run_cli(command, "--help")
    assert r.returncode == 0 and "Example:" in r.stdout


def test_migrate_without_known_hosts_asks_for_them():
    from conftest import run_cli

    r = run_cli("migrate", "vm1", "cn2")
    assert r.returncode == 2 and "unknown host 'cn2'" in r.stderr and "--lab" in r.stderr


def test_migrate_and_drain_planning_run_without_libvirt():
    import subprocess
    import sys

    repo = FIXTURE.parent.parent
    code = ("import sys; sys.modules['libvirt'] = None\n"
            "import planner.plan.migration, planner.plan.drain, planner.collect.live\n"
            "assert 'click' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                       env={"PYTHONPATH": str(repo)}, timeout=120)
    assert r.returncode == 0, r.stderr


def test_fresh_state_is_parsed_like_a_snapshot_and_an_unreachable_host_is_an_error():
    # libvirt's built-in test driver stands in for a host (no daemon needed)
    from planner.collect.live import read_available

    ok, bad = read_available({"t": "test:///default", "gone": "qemu+tcp://127.0.0.250/system"})
    host = ok["t"]
    assert host.name == "t" and host.cpus_total and host.free_memory_kib is not None
    assert [(d.name, d.state, d.persistent, d.host) for d in host.domains] == \
        [("test", "running", True, "t")]
    assert list(bad) == ["gone"] and "127.0.0.250" in bad["gone"]


def test_a_drain_turns_one_guests_refusal_or_loss_into_its_outcome_and_goes_on():
    from planner.act.drain import guarded

    def refuse() -> Outcome:
        raise InfeasibleError("refusing to migrate vm1 to b: [memory.insufficient] full")

    def unreadable() -> Outcome:  # raised before any job ran: the guest is on its source
        raise MigplanError("cannot read a and b before migrating: timeout")

    r, e = guarded("vm1", "a", refuse), guarded("vm1", "a", unreadable)
    assert (r.status, r.on, r.ok) == ("refused", "a", False) and "memory.insufficient" in r.message
    assert (e.status, e.on) == ("error", "a")
    for done in (Outcome("vm1", "migrated", "b", "ok", 1.0),
                 Outcome("vm1", "lost", "nowhere", "runs on neither host", 1.0)):
        assert guarded("vm1", "a", lambda d=done: d) is done
