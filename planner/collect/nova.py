"""What ``collect --os-cloud`` reads from Nova, and the libvirt hosts it then collects.

Nova is asked first (``planner.adapters.nova``: services, hypervisors, zones, aggregates,
servers); each nova-compute's libvirt is then reached through, in this order: the cloud
entry's own mapping (clouds.yaml ``migplan: {libvirt_uris: {HOST: URI}}``, as the lab
writes it), its ``migplan: {uri_template: ...}``, or ``--uri-template``.  In a template
``{host}`` is the hypervisor's ``host_ip`` (the compute's ``my_ip``) and ``{name}`` the
compute service's host name, which names the host in the snapshot.
"""

from __future__ import annotations

from typing import Any

from planner.collect.sources import Target, uri_for
from planner.errors import InputError
from planner.model import NovaFacts

#: kolla-/xavs-ansible's libvirt: qemu+tcp on 16509 (SASL by default)
DEFAULT_NOVA_URI_TEMPLATE = "qemu+tcp://{host}/system"


def nova_targets(facts: NovaFacts, extra: dict[str, Any], template: str | None) -> list[Target]:
    """One target per nova-compute service (in Nova's order), named by its host."""
    own = extra.get("migplan") or {}
    if not isinstance(own, dict):
        raise InputError("clouds.yaml: the cloud's 'migplan' entry must be a mapping")
    uris = own.get("libvirt_uris") or {}
    if not isinstance(uris, dict):
        raise InputError("clouds.yaml: migplan.libvirt_uris must map host names to URIs")
    tmpl = template or own.get("uri_template") or DEFAULT_NOVA_URI_TEMPLATE
    ips = {h.host: h.host_ip for h in facts.hypervisors if h.host}
    out = []
    for s in facts.services:
        uri = uris.get(s.host)
        if not isinstance(uri, str) or not uri:
            uri = uri_for(ips.get(s.host) or s.host, str(tmpl), s.host)
        out.append(Target(uri, s.host))
    return out


def read_cloud(cloud: str) -> tuple[NovaFacts, dict[str, Any]]:
    """Nova's facts and the cloud entry's own keys (read-only; raises NovaError)."""
    from planner.adapters.nova import open_cloud  # the one module importing the SDK

    c = open_cloud(cloud)
    try:
        return c.facts(), c.extra()
    finally:
        c.close()
