"""The OpenStack adapter: the ONLY module in migplan that imports the OpenStack SDK.

``open_cloud(NAME)`` reads clouds.yaml and ``OS_*`` variables exactly as the ``openstack``
CLI does (openstacksdk's own config loader), authenticates, and returns a ``NovaCloud``.
Its reads (``facts``: services, hypervisors, zones, aggregates, servers with their flavor's
extra specs and their image's properties) change nothing and return ``planner.model``
records; no token, user or password ever leaves this module.  The lab's bootstrap
(``planner.lab.nova``) uses the few writes at the end (service users, endpoints, a flavor,
an image, servers).

Every SDK or keystoneauth failure becomes a ``NovaError`` whose message says what was asked
of which endpoint and why it failed, in one line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa
import openstack
import openstack.config
import openstack.exceptions as sdk

from planner.errors import MigplanError, UsageError
from planner.model import (
    NovaAggregate,
    NovaEvent,
    NovaFacts,
    NovaHypervisor,
    NovaMigration,
    NovaServer,
    NovaService,
    NovaZone,
)

T = TypeVar("T")

# The image properties that change where a server may run or how it migrates: Nova's
# hw_* (CPU policy/topology/model, NUMA, huge pages, machine type, firmware), required and
# forbidden traits, img_* (config drive, hypervisor), os_* (type, secure boot).
IMAGE_PROPERTY_PREFIXES = ("hw_", "trait:", "traits_", "img_", "os_")


class NovaError(MigplanError):
    """Nova (or keystone, glance) could not be asked.  ``kind``: auth, unreachable, notfound,
    error -- as collect records it."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


_URL_RE = re.compile(r"https?://[^\s:/]+(?::\d+)?")


def _endpoint(err: BaseException, fallback: str) -> str:
    m = _URL_RE.search(str(err))
    return m.group(0) if m else fallback


def _translate(err: BaseException, what: str, where: str) -> NovaError:
    """One line for a failure of ``what`` (e.g. "list hypervisors") at ``where`` (a URL)."""
    inner = err.__cause__ or err.__context__
    if type(err) is sdk.SDKException and isinstance(inner, ksa.ClientException):
        err = inner  # Connection.authorize wraps keystoneauth's error in a bare SDKException
    if isinstance(err, ksa.Unauthorized) or (isinstance(err, sdk.HttpException)
                                             and err.status_code == 401):
        return NovaError(f"{what}: keystone at {where} refused the credentials (HTTP 401: "
                         "wrong user, password, project or domain)", "auth")
    if isinstance(err, ksa.ConnectFailure | ksa.ConnectTimeout):
        reason = "connection refused" if "refused" in str(err).lower() else \
            "timed out" if isinstance(err, ksa.ConnectTimeout) else "connection failed"
        return NovaError(f"{what}: cannot reach {_endpoint(err, where)}: {reason}",
                         "unreachable")
    if isinstance(err, ksa.EndpointNotFound | ksa.EmptyCatalog):
        return NovaError(f"{what}: the service catalog of {where} has no such endpoint: {err}")
    if isinstance(err, sdk.HttpException):
        detail = (err.details or err.message or "").strip().splitlines()
        code = err.status_code
        kind = "notfound" if code == 404 else "auth" if code == 403 else "error"
        return NovaError(f"{what}: {_endpoint(err, where)} answered HTTP {code}: "
                         f"{detail[0] if detail else ''}".rstrip(": "), kind)
    return NovaError(f"{what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def _call(what: str, where: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (ksa.ClientException, sdk.SDKException) as err:
        raise _translate(err, what, where) from None


def open_cloud(cloud: str) -> NovaCloud:
    """Connect to the clouds.yaml entry ``cloud`` (``OS_CLIENT_CONFIG_FILE``, ./clouds.yaml,
    ~/.config/openstack/, /etc/openstack/; secure.yaml and ``OS_*`` merged as the CLI does)."""
    try:
        region = openstack.config.OpenStackConfig().get_one(cloud=cloud)
    except sdk.ConfigException as err:
        raise UsageError(f"--os-cloud {cloud}: {err} (clouds.yaml is read from "
                         "$OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/ and "
                         "/etc/openstack/)") from None
    return _authenticated(openstack.connection.Connection(config=region), cloud)


def admin_cloud(auth_url: str, password: str, region: str = "RegionOne") -> NovaCloud:
    """The lab's admin (keystone bootstrap user), without a clouds.yaml."""
    conn = openstack.connection.Connection(
        auth_url=auth_url, username="admin", password=password, project_name="admin",
        user_domain_name="Default", project_domain_name="Default", region_name=region,
        identity_api_version="3")
    return _authenticated(conn, None)


def _authenticated(conn: Any, cloud: str | None) -> NovaCloud:
    auth_url = str((conn.config.config.get("auth") or {}).get("auth_url") or "keystone")
    name = f"cloud {cloud}" if cloud else "the lab's keystone"
    _call(f"authenticate to {name}", auth_url, conn.authorize)
    return NovaCloud(conn, cloud, auth_url)


def _str_map(d: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for k, v in (d or {}).items():
        if v is None:
            continue
        out.append((str(k), ("true" if v else "false") if isinstance(v, bool) else str(v)))
    return tuple(sorted(out))


def _find(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A find_* proxy call: the resource, or None when there is none."""
    try:
        return fn(*args, ignore_missing=False, **kwargs)
    except sdk.NotFoundException:
        return None


def _int_or_none(v: Any, empty: int | None = None) -> int | None:
    if v == "":
        return empty
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _service(s: Any) -> NovaService:
    return NovaService(host=s.host, binary=s.binary or "nova-compute",
                       id=None if s.id is None else str(s.id), zone=s.availability_zone,
                       state=s.state, status=s.status, disabled_reason=s.disabled_reason,
                       forced_down=s.is_forced_down, updated_at=s.updated_at)


def _server(s: Any, image_properties: tuple[tuple[str, str], ...]) -> NovaServer:
    fl = s.flavor
    image_id = (s.image or {}).get("id") if s.image else None
    return NovaServer(
        id=s.id, name=s.name, host=s.compute_host, instance_name=s.instance_name,
        hypervisor_hostname=s.hypervisor_hostname, status=s.status,
        vm_state=s.vm_state, task_state=s.task_state, power_state=s.power_state,
        locked=s.is_locked, project_id=s.project_id,
        availability_zone=s.availability_zone, image_id=image_id or None,
        flavor_name=getattr(fl, "original_name", None) or getattr(fl, "name", None),
        flavor_ram_mib=getattr(fl, "ram", None), flavor_vcpus=getattr(fl, "vcpus", None),
        flavor_disk_gb=getattr(fl, "disk", None),
        # Nova wrote swap as "" for none before 2.75
        flavor_swap_mib=_int_or_none(getattr(fl, "swap", None), empty=0),
        flavor_ephemeral_gb=getattr(fl, "ephemeral", None),
        extra_specs=_str_map(getattr(fl, "extra_specs", None)),
        image_properties=image_properties)


class NovaCloud:
    """An authenticated connection; the reads collect makes, and the lab's few writes."""

    def __init__(self, conn: Any, cloud: str | None, auth_url: str) -> None:
        self.conn = conn
        self.cloud = cloud
        self.auth_url = auth_url

    def extra(self) -> dict[str, Any]:
        """The cloud entry's own keys beyond openstacksdk's (e.g. ``migplan:`` for URIs)."""
        return dict(self.conn.config.config)

    def _c(self, what: str, fn: Callable[[], T]) -> T:
        return _call(what, self.auth_url, fn)

    # ---- reads (collect) ---------------------------------------------------------------------

    def compute_api_version(self) -> str | None:
        data = self._c("discover the compute API", lambda: self.conn.compute.get_endpoint_data())
        mv = getattr(data, "max_microversion", None)
        return f"{mv[0]}.{mv[1]}" if mv else None

    def services(self) -> list[NovaService]:
        got = self._c("list compute services",
                      lambda: list(self.conn.compute.services(binary="nova-compute")))
        return [_service(s) for s in got]

    def hypervisors(self) -> list[NovaHypervisor]:
        got = self._c("list hypervisors",
                      lambda: list(self.conn.compute.hypervisors(details=True)))
        out = []
        for h in got:
            svc = h.service_details or {}
            version = h.hypervisor_version
            out.append(NovaHypervisor(
                hostname=h.name, host=svc.get("host"), id=None if h.id is None else str(h.id),
                host_ip=h.host_ip, state=h.state, status=h.status,
                hypervisor_type=h.hypervisor_type,
                hypervisor_version=int(version) if isinstance(version, int) else None))
        return out

    def zones(self) -> list[NovaZone]:
        got = self._c("list availability zones",
                      lambda: list(self.conn.compute.availability_zones(details=True)))
        out = []
        for z in got:
            hosts = tuple(sorted(h for h, svcs in (z.hosts or {}).items()
                                 if "nova-compute" in (svcs or {})))
            if hosts or z.name != "internal":
                out.append(NovaZone(name=z.name, available=(z.state or {}).get("available"),
                                    hosts=hosts))
        return out

    def aggregates(self) -> list[NovaAggregate]:
        got = self._c("list aggregates", lambda: list(self.conn.compute.aggregates()))
        return [NovaAggregate(name=a.name, hosts=tuple(a.hosts or ()),
                              availability_zone=a.availability_zone,
                              metadata=_str_map(a.metadata),
                              id=int(a.id) if a.id is not None else None) for a in got]

    def _image_properties(self, image_id: str) -> tuple[tuple[str, str], ...]:
        try:
            img = self.conn.image.get_image(image_id)
        except sdk.NotFoundException:
            return ()  # deleted since the server booted: Nova keeps its own copy, not us
        except (ksa.ClientException, sdk.SDKException) as err:
            raise _translate(err, f"show image {image_id}", self.auth_url) from None
        d = img.to_dict(computed=False)
        props = {**(d.pop("properties", None) or {}), **d}
        return _str_map({k: v for k, v in props.items()
                         if k.startswith(IMAGE_PROPERTY_PREFIXES)})

    def servers(self, **query: Any) -> list[NovaServer]:
        """Every server of every project (``query``: the SDK's filters, e.g. compute_host)."""
        got = self._c("list servers", lambda: list(
            self.conn.compute.servers(details=True, all_projects=True, **query)))
        images: dict[str, tuple[tuple[str, str], ...]] = {}
        out = []
        for s in got:
            image_id = (s.image or {}).get("id") if s.image else None
            if image_id and image_id not in images:
                images[image_id] = self._image_properties(image_id)
            out.append(_server(s, images.get(image_id or "", ())))
        return out

    def facts(self) -> NovaFacts:
        """Everything nova.json holds, read now (read-only)."""
        return NovaFacts(
            cloud=self.cloud, region=self.conn.config.get_region_name() or None,
            auth_url=self.auth_url, compute_api_version=self.compute_api_version(),
            services=tuple(self.services()), hypervisors=tuple(self.hypervisors()),
            zones=tuple(self.zones()), aggregates=tuple(self.aggregates()),
            servers=tuple(self.servers()))

    # ---- the lab's bootstrap (planner.lab.nova): the only writes -----------------------------

    def register_services(self, password: str, users: Iterable[str],
                          endpoints: Iterable[tuple[str, str, str]], region: str) -> None:
        """Service users (admin in project ``service``) and (name, type, URL) endpoints."""
        idn = self.conn.identity

        def work() -> None:
            proj = _find(idn.find_project, "service", domain_id="default") or \
                idn.create_project(name="service", domain_id="default")
            admin = _find(idn.find_role, "admin")
            for u in users:
                user = _find(idn.find_user, u, domain_id="default") or \
                    idn.create_user(name=u, password=password, domain_id="default")
                idn.assign_project_role_to_user(proj, user, admin)
            for name, typ, url in endpoints:
                svc = _find(idn.find_service, name) or idn.create_service(name=name, type=typ)
                have = {e.interface for e in idn.endpoints(service_id=svc.id)}
                for iface in ("public", "internal", "admin"):
                    if iface not in have:
                        idn.create_endpoint(service_id=svc.id, interface=iface, url=url,
                                            region_id=region)

        self._c("register the lab's services in keystone", work)

    def list_networks(self) -> int:
        return len(self._c("list networks", lambda: list(self.conn.network.networks())))

    def ensure_flavor(self, name: str, ram_mib: int, vcpus: int, disk_gb: int) -> str:
        def work() -> str:
            f = _find(self.conn.compute.find_flavor, name)
            f = f or self.conn.compute.create_flavor(name=name, ram=ram_mib, vcpus=vcpus,
                                                     disk=disk_gb)
            return str(f.id)

        return self._c(f"create flavor {name}", work)

    def ensure_image(self, name: str, path: str) -> str:
        def work() -> str:
            img = _find(self.conn.image.find_image, name)
            img = img or self.conn.image.create_image(
                name=name, filename=path, disk_format="raw", container_format="bare",
                visibility="public", wait=True)
            return str(img.id)

        return self._c(f"upload image {name}", work)

    def boot(self, name: str, flavor_id: str, image_id: str, host: str) -> str:
        """Boot ``name`` on compute ``host`` without a network; returns its UUID."""
        def work() -> str:
            existing = _find(self.conn.compute.find_server, name, all_projects=True)
            if existing is not None:
                return str(existing.id)
            s = self.conn.compute.create_server(name=name, flavor_id=flavor_id,
                                                image_id=image_id, networks="none",
                                                availability_zone=f"nova:{host}")
            return str(s.id)

        return self._c(f"boot server {name} on {host}", work)

    def wait_active(self, server_ids: list[str], timeout: float) -> list[NovaServer]:
        """Wait until every server is ACTIVE; a server in ERROR fails at once with its fault."""
        deadline = time.monotonic() + timeout
        while True:
            got = {s.id: s for s in self._c("show servers", lambda: list(
                self.conn.compute.servers(details=True, all_projects=True)))}
            for sid in server_ids:
                s = got.get(sid)
                if s is not None and s.status == "ERROR":
                    fault = (s.fault or {}).get("message", "no fault recorded")
                    raise NovaError(f"server {s.name} ({sid}) went to ERROR: {fault}")
            if all(got.get(sid) is not None and got[sid].status == "ACTIVE"
                   for sid in server_ids):
                return [x for x in self.servers() if x.id in server_ids]
            if time.monotonic() > deadline:
                pending = {got[i].name if i in got else i: got[i].status if i in got else "gone"
                           for i in server_ids if i not in got or got[i].status != "ACTIVE"}
                raise NovaError(f"servers not ACTIVE after {timeout:.0f} s: {pending}")
            time.sleep(2)

    def close(self) -> None:
        self.conn.close()


# ---- moving servers (planner.adapters.nova_migrate): migplan's writes to a cloud --------------

#: The compute API microversions a move uses: from 2.25 (``block_migration: auto``; the
#: pre-checks run after the 202, a refusal shows in the migration record) up to the highest
#: migplan was tested with (Zed's 2.93), so a newer Nova's changed answers do not surprise it.
MIN_MICROVERSION = (2, 25)
MAX_MICROVERSION = (2, 93)

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


class NovaRefused(NovaError):
    """Nova's API refused a request (HTTP 4xx): nothing changed.  ``str()`` quotes Nova."""


def _migration(m: dict[str, Any]) -> NovaMigration:
    def num(k: str) -> int | None:
        v = m.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    return NovaMigration(
        id=int(m["id"]), status=str(m.get("status") or "unknown"),
        migration_type=m.get("migration_type") or ("live-migration" if "memory_total_bytes" in m
                                                   else None),
        source_compute=m.get("source_compute"), dest_compute=m.get("dest_compute"),
        created_at=m.get("created_at"), memory_total=num("memory_total_bytes"),
        memory_processed=num("memory_processed_bytes"),
        memory_remaining=num("memory_remaining_bytes"), disk_total=num("disk_total_bytes"),
        disk_processed=num("disk_processed_bytes"), disk_remaining=num("disk_remaining_bytes"))


def _nova_message(err: sdk.HttpException) -> str:
    """Nova's own words from an HTTP error (its JSON ``message``), in one line."""
    text = (err.details or err.message or "").strip()
    return " ".join(text.split()) or f"HTTP {err.status_code}"


def negotiate(max_version: tuple[int, int] | None, cloud: str) -> str:
    """The microversion a move uses: the cloud's highest up to MAX_MICROVERSION; below 2.25
    a move is refused (``block_migration: auto`` and asynchronous pre-checks need it)."""
    if max_version is None or tuple(max_version) < MIN_MICROVERSION:
        have = f"goes up to {max_version[0]}.{max_version[1]}" if max_version else \
            "has no microversions"
        raise UsageError(f"cloud {cloud}: the compute API {have}; migplan moves servers through "
                         "Nova from microversion 2.25 on (Nova 13, Mitaka): use the openstack "
                         "CLI on this cloud")
    mv = min(tuple(max_version), MAX_MICROVERSION)
    return f"{mv[0]}.{mv[1]}"


class NovaMover(NovaCloud):
    """A ``NovaCloud`` that also moves servers: live migrations, their progress and abort,
    the instance action's events, and disabling a compute service.  Every request names its
    microversion (``negotiate``)."""

    _microversion: str | None = None

    def microversion(self) -> str:
        if self._microversion is None:
            data = self._c("discover the compute API",
                           lambda: self.conn.compute.get_endpoint_data())
            mv = getattr(data, "max_microversion", None)
            self._microversion = negotiate(
                (int(mv[0]), int(mv[1])) if mv else None, self.cloud or "?")
        return self._microversion

    def _send(self, what: str, method: str, path: str, refusals: tuple[int, ...] = (),
              **kw: Any) -> Any:
        """One request at the negotiated microversion; an HTTP status in ``refusals``
        raises NovaRefused with Nova's words."""
        mv = self.microversion()

        def go() -> Any:
            resp = getattr(self.conn.compute, method)(path, microversion=mv, **kw)
            try:
                sdk.raise_from_response(resp)
            except sdk.HttpException as err:
                if err.status_code in refusals:
                    raise NovaRefused(_nova_message(err)) from None
                raise
            return resp

        return self._c(what, go)

    # ---- servers ---------------------------------------------------------------------------

    def server(self, server_id: str) -> NovaServer:
        """The server as Nova says it is now, without its image's properties (raises
        NovaError, kind notfound, when Nova has no such server)."""
        return _server(self._c(f"show server {server_id}",
                               lambda: self.conn.compute.get_server(server_id)), ())

    def find_server(self, what: str) -> NovaServer:
        """A server by UUID, by name (exactly), or by its libvirt name (instance name)."""
        if _UUID_RE.match(what):
            # filters are the SDK's names (id -> uuid, compute_host -> host); every answer
            # is checked again here: an unknown filter would be dropped, not refused
            got = [s for s in self.servers(id=what) if s.id == what.lower()]
            if got:
                return got[0]
        # Nova's name filter is a regular expression: anchor it, then compare exactly
        named = [s for s in self.servers(name=f"^{re.escape(what)}$") if s.name == what]
        if len(named) > 1:
            raise UsageError(f"{len(named)} servers are named {what!r} ("
                             + ", ".join(f"{s.id} on {s.host}" for s in named)
                             + "): give the UUID")
        if named:
            return named[0]
        # the API has no filter for the instance name: look through every server
        by_instance = [s for s in self.servers() if s.instance_name == what]
        if by_instance:
            return by_instance[0]
        raise UsageError(f"unknown server {what!r} in cloud {self.cloud}: no server has that "
                         "UUID, name or libvirt (instance) name")

    def servers_on(self, host: str) -> list[NovaServer]:
        """Every server Nova places on compute ``host`` (all projects)."""
        return [s for s in self.servers(compute_host=host) if s.host == host]

    # ---- live migration --------------------------------------------------------------------

    def live_migrate(self, server_id: str, host: str, block_migration: str = "auto") -> str:
        """``os-migrateLive`` to ``host``; returns the request id (the instance action's).

        A 202 says only that Nova accepted the request: from 2.25 its pre-checks run after
        it, and a refusal shows in the migration record and the action's events.  A 4xx
        (unknown host, server busy...) raises NovaRefused with Nova's words.
        """
        body = {"os-migrateLive": {"host": host, "block_migration": block_migration}}
        resp = self._send(f"live-migrate server {server_id} to {host}", "post",
                          f"/servers/{server_id}/action", refusals=(400, 404, 409), json=body)
        return str(resp.headers.get("x-openstack-request-id")
                   or resp.headers.get("x-compute-request-id") or "")

    def migrations_in_progress(self, server_id: str) -> list[NovaMigration]:
        """``GET /servers/{id}/migrations``: the live migrations running now, with figures."""
        resp = self._send(f"list migrations of server {server_id}", "get",
                          f"/servers/{server_id}/migrations")
        return [_migration(m) for m in resp.json().get("migrations", [])]

    def migrations(self, server_id: str) -> list[NovaMigration]:
        """``GET /os-migrations?instance_uuid=``: every live migration of the server, ended
        ones included (completed, error, failed, cancelled)."""
        resp = self._send(f"list os-migrations of server {server_id}", "get", "/os-migrations",
                          params={"instance_uuid": server_id,
                                  "migration_type": "live-migration"})
        return [_migration(m) for m in resp.json().get("migrations", [])]

    def abort_migration(self, server_id: str, migration_id: int) -> str | None:
        """``DELETE /servers/{id}/migrations/{mid}``; None when Nova accepted the abort,
        else Nova's reason (e.g. the migration is not running yet, or ended)."""
        try:
            self._send(f"abort migration {migration_id} of server {server_id}", "delete",
                       f"/servers/{server_id}/migrations/{migration_id}",
                       refusals=(400, 404, 409))
        except NovaRefused as err:
            return str(err)
        return None

    def action_events(self, server_id: str, request_id: str) -> tuple[str | None,
                                                                      list[NovaEvent]]:
        """The instance action of ``request_id``: its message and its events."""
        resp = self._send(f"show action {request_id} of server {server_id}", "get",
                          f"/servers/{server_id}/os-instance-actions/{request_id}")
        act = resp.json().get("instanceAction") or {}
        events = [NovaEvent(event=str(e.get("event")), result=e.get("result"),
                            host=e.get("host"), details=e.get("details"))
                  for e in act.get("events") or []]
        return act.get("message"), events

    def disable_service(self, host: str, reason: str) -> NovaService:
        """Disable nova-compute on ``host`` with ``reason`` (the scheduler then places no
        server there); returns the service as Nova answered."""
        def work() -> Any:
            svc = next(iter(self.conn.compute.services(binary="nova-compute", host=host)),
                       None)
            if svc is None:
                raise UsageError(f"no nova-compute service on host {host}")
            return self.conn.compute.disable_service(svc, host=host, binary="nova-compute",
                                                     disabled_reason=reason)

        return _service(self._c(f"disable nova-compute on {host}", work))


def open_mover(cloud: str) -> NovaMover:
    """``open_cloud`` for moves: the same connection, with the move calls."""
    c = open_cloud(cloud)
    return NovaMover(c.conn, c.cloud, c.auth_url)
