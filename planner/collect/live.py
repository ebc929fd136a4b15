"""Fresh state of a few hosts, read now, parsed like a snapshot -- for pre-flight.

``migrate`` and ``drain`` must judge a move on what the hosts say *now*, not on
a snapshot taken earlier.  The reads are exactly collect's (``collect.read_host``)
and the parsing exactly the snapshot loader's (``parse_host``), so the rules see
the same model as ``migplan check`` -- only nothing is written to disk.

I/O is injected: ``connect(uri)`` returns an object with ``planner.adapters.libvirt.Conn``'s
read methods.  Nothing here imports libvirt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from planner.collect.credentials import LibvirtCredentials
from planner.collect.run import HostConn, read_host
from planner.collect.sources import redact_uri
from planner.model import Domain, Host, StoragePool
from planner.parse.guest import parse_domain
from planner.parse.host import build_host, hostdev_network, parse_pool
from planner.snapshot.read import MISSING

Connect = Callable[[str], HostConn]


def default_connect(uri: str) -> HostConn:
    from planner.adapters import libvirt as virt  # the one module that imports libvirt

    return virt.connect(uri)


def connector(credentials: LibvirtCredentials | None) -> Connect:
    """``connect(uri)`` answering libvirt's SASL prompts with ``credentials`` (None: as
    ``default_connect``)."""
    if credentials is None:
        return default_connect

    def connect(uri: str) -> HostConn:
        from planner.adapters import libvirt as virt

        return virt.connect(uri, credentials)

    return connect


def host_from_raw(name: str, raw: Mapping[str, Any], uri: str) -> Host:
    """One Host from ``collect.read_host``'s raw answer (what a snapshot would hold)."""
    facts = dict(raw["facts"])
    missing = [MISSING[k] for k in facts.get("errors") or {} if k in MISSING]
    pools: list[StoragePool] | None = None
    if raw.get("pools") is not None:
        pools = [parse_pool(p["xml"].encode(), f"{name}: pool {p['name']}", p.get("active"))
                 for p in raw["pools"]]
    domains: list[Domain] = []
    if raw.get("domains") is not None:
        domains = [parse_domain(g["xml"].encode(), f"{name}: guest {g['name']}", host=name, meta=g)
                   for g in raw["domains"]]
    else:
        missing.append(MISSING["domains"])
    networks = None
    if raw.get("networks") is not None:
        found = (hostdev_network(n["xml"].encode(), f"{name}: network {n['name']}")
                 for n in raw["networks"])
        networks = [n for n in found if n is not None]
    dc = raw.get("domcapabilities")
    return build_host(name, raw["capabilities"].encode(), uri=redact_uri(uri),
                      domcapabilities=dc.encode() if dc else None, facts=facts, pools=pools,
                      domains=domains, missing=missing, source=f"{name}: ",
                      guests_listed=raw.get("domains") is not None, hostdev_networks=networks)


def read_one(name: str, uri: str, connect: Connect = default_connect) -> Host:
    conn = connect(uri)
    try:
        raw = read_host(conn)
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return host_from_raw(name, raw, uri)


def read_hosts(hosts: Mapping[str, str], connect: Connect = default_connect) -> dict[str, Host]:
    """Read every ``name -> uri`` in parallel; the first failure is raised (HostError)."""
    if len(hosts) == 1:
        (name, uri), = hosts.items()
        return {name: read_one(name, uri, connect)}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        futures = {name: pool.submit(read_one, name, uri, connect) for name, uri in hosts.items()}
        return {name: f.result() for name, f in futures.items()}


def read_available(hosts: Mapping[str, str], connect: Connect = default_connect
                   ) -> tuple[dict[str, Host], dict[str, str]]:
    """Like read_hosts, but a host that cannot be read is returned as an error, not raised."""
    from planner.errors import MigplanError

    def one(name: str, uri: str) -> Host | str:
        try:
            return read_one(name, uri, connect)
        except MigplanError as err:
            return str(err)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
        futures = {name: pool.submit(one, name, uri) for name, uri in hosts.items()}
        got = {name: f.result() for name, f in futures.items()}
    return ({n: h for n, h in got.items() if isinstance(h, Host)},
            {n: h for n, h in got.items() if isinstance(h, str)})
