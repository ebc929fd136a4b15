"""Pure parts of moves through Nova: the plan, the drain, verification, Nova's reasons.

The real thing is tests/test_nova_move.py (the Nova lab).  Here the hosts are the lab's
real libvirt state (fixtures/lab-3-hosts) with Nova's metadata added, Nova's answers are the
ones the lab's Nova gave (tests/data/nova/*.json); the fake drivers below exist only for
states a real Nova cannot be made to show on purpose (Nova and libvirt disagreeing after a
move, Nova's API failing mid-watch, an abort refused before the migration runs).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from planner.act.drain import DrainResult, summary_exit_code
from planner.act.migrate import Outcome, verify
from planner.act.nova_verify import ServerState
from planner.adapters.catalogs import load_catalog
from planner.adapters.nova import NovaRefused, negotiate
from planner.adapters.nova_migrate import NovaMigrationDriver, event_reason
from planner.assess.rules import Policy
from planner.errors import GuestLost, GuestStateUnknown, HostError, InfeasibleError, UsageError
from planner.model import Host, NovaEvent, NovaInstance, NovaMigration, NovaServer, NovaService
from planner.plan.drain import libvirt_skip, plan_drain
from planner.plan.migration import GuestPresence, MigrateOptions, prepare, rules_preflight
from planner.plan.nova_move import NovaMove, plan_nova_drain, prepare_nova
from planner.snapshot.read import load

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "lab-3-hosts"
NOVA_DATA = ROOT / "tests" / "data" / "nova"
CATALOG = load_catalog(None)
PREFLIGHT = rules_preflight(Policy(), CATALOG)
URIS = {f"lab{i}": f"qemu+tcp://lab{i}/system" for i in (1, 2, 3)}


def nova_hosts() -> dict[str, Host]:
    """The lab's three hosts, every guest carrying Nova's <nova:instance> metadata."""
    out = {}
    for h in load(FIXTURE).hosts:
        doms = tuple(dataclasses.replace(d, nova=NovaInstance(uuid=d.uuid, name=f"srv-{d.name}"))
                     for d in h.domains)
        out[h.name] = dataclasses.replace(h, domains=doms)
    return out


def server_of(hosts: dict[str, Host], guest: str, **kw) -> NovaServer:
    h, d = next((h, d) for h in hosts.values() for d in h.domains if d.name == guest)
    fields = dict(id=d.uuid, name=f"srv-{guest}", host=h.name, instance_name=guest,
                  status="ACTIVE", vm_state="active", task_state=None)
    fields.update(kw)
    return NovaServer(**fields)


def services(**status: str) -> dict[str, NovaService]:
    out = {}
    for h in URIS:
        st = status.get(h, "enabled")
        out[h] = NovaService(h, state="down" if st == "down" else "up",
                             status="disabled" if st == "disabled" else "enabled",
                             disabled_reason="maintenance" if st == "disabled" else None)
    return out


def reader(hosts: dict[str, Host]):
    return lambda wanted: {n: hosts[n] for n in wanted}


def nova_plan(server: NovaServer, dest: str, hosts: dict[str, Host], svcs=None, **opts):
    return prepare_nova(server, dest, services=svcs or services(), uris=URIS,
                        opts=MigrateOptions(**opts), preflight=PREFLIGHT, read=reader(hosts))


# ---- planning a move through Nova ---------------------------------------------------------------


def test_a_nova_plan_asks_os_migrate_live_to_the_destination_with_block_migration_auto():
    hosts = nova_hosts()
    p = nova_plan(server_of(hosts, "lab1-vm1"), "lab2", hosts)
    assert p.nova == NovaMove(hosts["lab1"].domains[0].uuid, "srv-lab1-vm1", "lab1", "lab2")
    assert p.to_json()["nova"]["request"] == {
        "os-migrateLive": {"host": "lab2", "block_migration": "auto"}}
    assert (p.guest, p.source_uri, p.destination_uri) == ("lab1-vm1", URIS["lab1"], URIS["lab2"])
    assert p.flags == () and p.to_json()["via"] == "nova"
    assert {v.code for v in p.preflight} >= {"nova-server.ok", "nova-service.up"}


@pytest.mark.parametrize("dest, message", [
    ("lab9", "unknown destination 'lab9': Nova has no nova-compute service of that name "
             r"\(compute hosts: lab1, lab2, lab3\)"),
    ("lab1", "already is on lab1"),
])
def test_an_unknown_destination_or_the_source_itself_is_a_usage_error(dest, message):
    hosts = nova_hosts()
    with pytest.raises(UsageError, match=message):
        nova_plan(server_of(hosts, "lab1-vm1"), dest, hosts)


@pytest.mark.parametrize("state, code", [("disabled", "nova-service.disabled"),
                                         ("down", "nova-service.down")])
def test_a_disabled_or_down_destination_is_refused_unless_forced(state, code):
    hosts = nova_hosts()
    s = server_of(hosts, "lab1-vm1")
    with pytest.raises(InfeasibleError, match=code):
        nova_plan(s, "lab2", hosts, services(lab2=state))
    forced = nova_plan(s, "lab2", hosts, services(lab2=state), force=True)  # Nova decides
    assert code in {v.code for v in forced.preflight}


@pytest.mark.parametrize("kw, code", [
    ({"status": "ERROR", "vm_state": "error"}, "nova-server.error"),
    ({"task_state": "migrating", "status": "MIGRATING"}, "nova-server.busy"),
    ({"vm_state": "stopped", "status": "SHUTOFF"}, "nova-server.not-active"),
])
def test_a_server_in_error_busy_or_stopped_is_refused_with_its_reason(kw, code):
    hosts = nova_hosts()
    with pytest.raises(InfeasibleError, match=code):
        nova_plan(server_of(hosts, "lab1-vm1", **kw), "lab2", hosts)


def test_nova_and_libvirt_disagreeing_before_the_move_refuses_it():
    hosts = nova_hosts()
    ghost = server_of(hosts, "lab1-vm1", id="00000000-0000-0000-0000-000000000001",
                      instance_name="instance-000000ff")
    with pytest.raises(InfeasibleError, match="Nova and libvirt disagree"):
        nova_plan(ghost, "lab2", hosts)


# ---- libvirt moves of guests Nova manages ------------------------------------------------------


def test_a_libvirt_move_of_a_nova_managed_guest_is_refused_unless_force_libvirt():
    hosts = nova_hosts()

    def run(**opts):
        return prepare("lab1-vm1", "lab2", hosts=URIS, source="lab1",
                       opts=MigrateOptions(**opts), preflight=PREFLIGHT, read=reader(hosts),
                       presence=lambda uri, g: GuestPresence(False))

    with pytest.raises(InfeasibleError, match="server srv-lab1-vm1 .* that Nova manages.*"
                                              "--os-cloud NAME.*--force-libvirt"):
        run()
    with pytest.raises(InfeasibleError, match="Nova manages"):
        run(force=True)  # --force is about migplan's rules; Nova's records need --force-libvirt
    p = run(force_libvirt=True)
    assert p.nova is None and "libvirt-direct.nova-managed" in {v.code for v in p.preflight}


def by_name(uri: str, guest: str) -> GuestPresence:
    """libvirt's lookupByName on the fixture hosts (lab1-vm1 runs on lab1...)."""
    host = next(h for h, u in URIS.items() if u == uri)
    return RUNNING if guest.startswith(host + "-") else GuestPresence(False)


@pytest.mark.parametrize("alias", ["srv-lab1-vm1", "cbea9e25-80ce-452d-8486-d0d1f2c44b9a"])
def test_a_server_name_or_uuid_finds_the_libvirt_guest_and_is_refused_as_nova_s(alias):
    hosts = nova_hosts()
    kw = dict(hosts=URIS, source=None, preflight=PREFLIGHT, read=reader(hosts),
              presence=by_name)
    with pytest.raises(InfeasibleError, match="refusing to migrate lab1-vm1 with libvirt"):
        prepare(alias, "lab2", opts=MigrateOptions(), **kw)
    p = prepare(alias, "lab2", opts=MigrateOptions(force_libvirt=True), **kw)
    assert (p.guest, p.source) == ("lab1-vm1", "lab1")


def test_an_unknown_guest_stays_unknown_after_looking_for_its_server_name():
    hosts = nova_hosts()
    with pytest.raises(UsageError, match="unknown guest 'nobody'"):
        prepare("nobody", "lab2", hosts=URIS, source=None, opts=MigrateOptions(),
                preflight=PREFLIGHT, read=reader(hosts), presence=by_name)


def test_a_libvirt_drain_skips_the_guests_nova_manages_unless_force_libvirt():
    hosts = nova_hosts()
    p = plan_drain("lab1", hosts, PREFLIGHT, skip=libvirt_skip("lab1", False))
    assert not p.assignments and not p.complete
    assert {(k.guest, k.server) for k in p.skipped} == {("lab1-vm1", "srv-lab1-vm1"),
                                                        ("lab1-vm2", "srv-lab1-vm2")}
    assert {k.reasons[0].code for k in p.skipped} == {"libvirt-direct.nova-managed"}
    forced = plan_drain("lab1", hosts, PREFLIGHT, skip=libvirt_skip("lab1", True))
    assert len(forced.assignments) == 2 and not forced.skipped


# ---- draining through Nova -------------------------------------------------------------------------


def test_a_nova_drain_skips_servers_nova_will_not_move_and_guests_it_does_not_manage():
    hosts = nova_hosts()
    plain = dataclasses.replace(hosts["lab1"].domains[1], nova=None)
    hosts["lab1"] = dataclasses.replace(hosts["lab1"], domains=(hosts["lab1"].domains[0], plain))
    servers = [server_of(hosts, "lab1-vm1", status="ERROR", vm_state="error"),
               NovaServer("00000000-0000-0000-0000-0000000000aa", "lost", "lab1",
                          "instance-000000aa", status="ACTIVE", vm_state="active")]
    p = plan_nova_drain("lab1", hosts, servers, services(), PREFLIGHT)
    assert not p.assignments and not p.complete
    assert {(k.guest, k.server, k.reasons[0].code) for k in p.skipped} == {
        ("lab1-vm1", "srv-lab1-vm1", "nova-server.error"),
        ("lab1-vm2", None, "nova-libvirt.not-a-server"),
        ("instance-000000aa", "lost", "nova-libvirt.no-domain")}


def test_a_nova_drain_never_places_a_server_on_a_disabled_or_down_compute():
    hosts = nova_hosts()
    servers = [server_of(hosts, g) for g in ("lab1-vm1", "lab1-vm2")]
    p = plan_nova_drain("lab1", hosts, servers, services(lab2="disabled"), PREFLIGHT)
    assert p.complete and {a.destination for a in p.assignments} == {"lab3"}
    none = plan_nova_drain("lab1", hosts, servers, services(lab2="disabled", lab3="down"),
                           PREFLIGHT)
    assert not none.assignments and len(none.stuck) == 2
    codes = {v.code for s in none.stuck for _, vs in s.reasons for v in vs}
    assert codes >= {"nova-service.disabled", "nova-service.down"}


# ---- verification: Nova and both hosts' libvirt --------------------------------------------------


class FakeNova:
    """A Nova driver whose answers are set by the test: the states after a move where Nova
    and libvirt disagree cannot be produced on a real cloud on purpose."""

    def __init__(self, libvirt: dict[str, GuestPresence], state: ServerState | Exception):
        self.libvirt, self.state = libvirt, state

    def presence(self, uri: str, guest: str) -> GuestPresence:
        p = self.libvirt.get(uri, GuestPresence(False))
        if p.state == "raise":
            raise HostError(f"{uri}: unable to connect")
        return p

    def run(self, plan, on_progress, stop):
        return None

    def server_state(self, plan) -> ServerState:
        if isinstance(self.state, Exception):
            raise self.state
        return self.state


RUNNING = GuestPresence(True, True, True, "running")


def a_plan():
    hosts = nova_hosts()
    return nova_plan(server_of(hosts, "lab1-vm1"), "lab2", hosts)


def test_a_move_is_done_only_when_nova_and_both_hosts_libvirt_agree():
    p = a_plan()
    done = ServerState("lab2", "ACTIVE", None, "completed")
    o = verify(p, FakeNova({URIS["lab2"]: RUNNING}, done), None, 1.0)
    assert o.ok and o.on == "lab2" and "ACTIVE on lab2 in Nova" in o.message
    assert o.details["nova"]["migration"] == "completed"


UNREACHABLE = GuestPresence(False, state="raise")  # FakeNova: that host does not answer


@pytest.mark.parametrize("libvirt, state, what", [
    ({"lab2": RUNNING}, ServerState("lab1", "ACTIVE", None, "completed"), "ACTIVE on lab1"),
    ({"lab1": RUNNING}, ServerState("lab2", "ACTIVE", None, "completed"), "ACTIVE on lab2"),
    ({"lab1": RUNNING, "lab2": RUNNING}, ServerState("lab1", "ACTIVE", None, "failed"),
     "lab1 has it running, persistent; lab2 has it running"),
    ({"lab1": RUNNING}, ServerState("lab1", "MIGRATING", "migrating", "running"),
     "task migrating"),
    ({"lab1": RUNNING}, InfeasibleError("keystone unreachable"), "Nova could not be asked"),
    ({"lab1": UNREACHABLE}, ServerState("lab1", "ACTIVE", None, "failed"),
     "lab1 did not answer"),
])
def test_where_nova_and_libvirt_do_not_confirm_one_place_it_is_unknown(libvirt, state, what):
    o = verify(a_plan(), FakeNova({URIS[h]: v for h, v in libvirt.items()}, state), None, 1.0)
    assert (o.status, o.on) == ("unknown", "?") and what in o.message
    assert "cannot be confirmed" in o.message and "check it before any other action" \
        in o.message


def test_a_domain_neither_host_runs_is_lost_whatever_nova_says():
    o = verify(a_plan(), FakeNova({}, ServerState("lab2", "ACTIVE", None, "completed")), None,
               1.0)
    assert (o.status, o.on) == ("lost", "nowhere")
    assert "lab1 has no guest lab1-vm1; lab2 has no guest lab1-vm1" in o.message


@pytest.mark.parametrize("state, aborted, status", [
    (ServerState("lab1", "ACTIVE", None, "error", "Unacceptable CPU info", refused=True),
     False, "refused"),
    (ServerState("lab1", "ACTIVE", None, "failed", "Live Migration failure"), False, "failed"),
    (ServerState("lab1", "ACTIVE", None, "cancelled", "aborted (Ctrl-C)"), True, "aborted"),
])
def test_a_move_that_left_the_server_on_its_source_says_so_with_nova_s_reason(state, aborted,
                                                                             status):
    o = verify(a_plan(), FakeNova({URIS["lab1"]: RUNNING}, state), state.reason, 1.0,
               aborted=aborted)
    assert (o.status, o.on) == (status, "lab1") and str(state.reason) in o.message


def test_a_server_nova_put_in_error_on_its_source_is_a_failure_that_says_how_to_recover():
    state = ServerState("lab1", "ERROR", None, "error", "Live Migration failure: boom")
    o = verify(a_plan(), FakeNova({URIS["lab1"]: RUNNING}, state), "boom", 1.0)
    assert (o.status, o.on) == ("failed", "lab1") and "openstack server set --state active" \
        in o.message


def test_drain_exit_codes_for_refused_unknown_and_lost_servers():
    """docs/exit-codes.md: a drain gives the worst outcome -- 8, 7, then 4 (still on the
    host: refused included), and 3 only for guests that cannot move or are skipped."""
    hosts = nova_hosts()
    servers = [server_of(hosts, g) for g in ("lab1-vm1", "lab1-vm2")]
    p = plan_nova_drain("lab1", hosts, servers, services(), PREFLIGHT)
    assert p.complete

    def code(status: str, on: str) -> int:
        return summary_exit_code(DrainResult(p, (Outcome("lab1-vm1", status, on, "", 1.0),), ()),
                                 p)

    assert code("migrated", "lab2") == 0
    assert code("refused", "lab1") == 4  # still on the host, as a refused libvirt move
    assert code("aborted", "lab1") == 4
    assert code("unknown", "?") == GuestStateUnknown.exit_code == 7
    assert code("lost", "nowhere") == GuestLost.exit_code == 8


# ---- Nova's API: microversions, reasons --------------------------------------------------------


def test_the_microversion_is_the_cloud_s_highest_up_to_the_tested_one_and_at_least_2_25():
    assert negotiate((2, 93), "c") == "2.93"
    assert negotiate((2, 96), "c") == "2.93"
    assert negotiate((2, 25), "c") == "2.25"
    for old in ((2, 24), None):
        with pytest.raises(UsageError, match="from microversion 2.25 on"):
            negotiate(old, "c")


def saved_action(name: str) -> tuple[str | None, list[NovaEvent]]:
    doc = json.loads((NOVA_DATA / name).read_text())["os-instance-action"]["instanceAction"]
    return doc["message"], [NovaEvent(e["event"], e["result"], e.get("host"), e.get("details"))
                            for e in doc["events"]]


def test_nova_s_reason_for_a_refused_pre_check_is_the_destination_s_words():
    reason, refused = event_reason(*saved_action("live-migration-precheck-refused.json"))
    assert refused
    assert reason is not None and reason.startswith(
        "lab2: compute_check_can_live_migrate_destination: Migration pre-check error: "
        "Unacceptable CPU info: CPU doesn't have compatibility")


def test_without_details_nova_s_reason_names_the_failed_events():
    # before compute API 2.84 events carry no message, and Nova's traceback only frames
    msg, events = saved_action("live-migration-precheck-refused.json")
    bare = [dataclasses.replace(e, details=None) for e in events]
    reason, refused = event_reason(msg, bare)
    assert refused and reason is not None and reason.startswith(
        "lab2: compute_check_can_live_migrate_destination failed (see nova-compute's log")


def test_the_scheduler_s_no_valid_host_is_a_refusal_too():
    reason, refused = event_reason(*saved_action("live-migration-no-valid-host.json"))
    assert refused and reason is not None and "No valid host was found" in reason


def test_a_failed_live_migration_is_not_a_refusal():
    events = [NovaEvent("compute_check_can_live_migrate_destination", "Success", "lab2"),
              NovaEvent("compute_live_migration", "Error", "lab1", "Live Migration failure")]
    reason, refused = event_reason("Error", events)
    assert not refused and reason == "lab1: compute_live_migration: Live Migration failure"


# ---- the Nova driver's watch ---------------------------------------------------------------------


class ScriptedNova:
    """Nova's answers in order, as a test scripts them: for what a real Nova does not do on
    purpose (its API failing for a while, an abort refused until the migration runs)."""

    def __init__(self, records: list[list[NovaMigration]], refuse_aborts: int = 0,
                 fail_reads: int = 0, post_refusal: str | None = None):
        self.records, self.refuse_aborts, self.fail_reads = records, refuse_aborts, fail_reads
        self.post_refusal = post_refusal
        self.aborts: list[int] = []
        self.posted = 0

    def migrations(self, sid):
        if self.posted == 0:
            return [NovaMigration(1, "completed")]  # an older migration of the server
        if self.fail_reads:
            self.fail_reads -= 1
            from planner.adapters.nova import NovaError

            raise NovaError("list os-migrations: cannot reach http://nova: connection refused")
        now = self.records.pop(0) if len(self.records) > 1 else self.records[0]
        return [NovaMigration(1, "completed"), *now]

    def migrations_in_progress(self, sid):
        return []

    def live_migrate(self, sid, host, block):
        self.posted += 1
        if self.post_refusal:
            raise NovaRefused(self.post_refusal)
        return "req-1"

    def abort_migration(self, sid, mid):
        self.aborts.append(mid)
        if self.refuse_aborts:
            self.refuse_aborts -= 1
            return "migration 2 is preparing, not running"
        return None

    def action_events(self, sid, req):
        return "Error", [NovaEvent("compute_live_migration", "Error", "lab1", "boom")]

    def server(self, sid):
        return NovaServer(sid, "s", "lab1", "lab1-vm1", status="ACTIVE", task_state=None)


def drive(nova: ScriptedNova, stop: threading.Event | None = None, timeout: float | None = None):
    d = NovaMigrationDriver(nova, lambda uri, g: GuestPresence(False))  # type: ignore[arg-type]
    d.poll_s = 0.0
    p = dataclasses.replace(a_plan(), timeout_s=timeout)
    return d.run(p, lambda _p: None, stop or threading.Event()), d, p


def test_a_202_is_never_success_the_record_s_end_and_nova_s_reason_are():
    err, d, p = drive(ScriptedNova([[], [NovaMigration(2, "preparing")],
                                    [NovaMigration(2, "failed")]]))
    assert err == "Nova said: lab1: compute_live_migration: boom"
    assert d.server_state(p).migration == "failed"


def test_a_synchronous_refusal_is_nova_s_words_and_marked_refused():
    err, d, p = drive(ScriptedNova([[]], post_refusal="Compute host lab9 could not be found."))
    assert err == "Nova refused: Compute host lab9 could not be found."
    assert d.server_state(p).refused


def test_an_abort_refused_before_the_migration_runs_is_asked_again_until_nova_takes_it():
    nova = ScriptedNova([[NovaMigration(2, "preparing")]] * 3 + [[NovaMigration(2, "cancelled")]],
                        refuse_aborts=2)
    stop = threading.Event()
    stop.set()  # Ctrl-C before the migration ran
    err, d, p = drive(nova, stop)
    assert nova.aborts == [2, 2, 2] and d.server_state(p).migration == "cancelled"
    assert err is not None and err.startswith("aborted (Ctrl-C)")


def test_nova_s_api_failing_for_a_while_does_not_end_the_watch():
    nova = ScriptedNova([[NovaMigration(2, "completed")]], fail_reads=3)
    err, d, p = drive(nova)
    assert err is None and d.server_state(p).migration == "completed"


def test_the_timeout_aborts_and_says_so():
    nova = ScriptedNova([[NovaMigration(2, "running")]] * 2 + [[NovaMigration(2, "cancelled")]])
    err, d, p = drive(nova, timeout=1e-9)
    assert nova.aborts and err is not None and err.startswith("no completion within")
