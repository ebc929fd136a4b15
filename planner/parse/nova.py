"""A guest's ``<nova:instance>`` metadata to ``planner.model.NovaInstance``.

nova-compute writes it into every domain it defines, under ``<metadata>``, in the namespace
``http://openstack.org/xmlns/libvirt/nova/1.N`` (1.0 before ports were added, 1.1 in Zed;
``nova/virt/libvirt/config.py``: ``LibvirtConfigGuestMetaNovaInstance``, ``...NovaFlavor``,
``...NovaOwner``).  Any 1.x namespace is read the same way: newer versions add elements,
they never rename these.  The element carries no UUID: the domain's UUID is the server's
(Nova defines the domain with ``<uuid>`` = instance UUID).

Pure: an already-parsed (hardened) ``<metadata>`` element in, a frozen dataclass out.
"""

from __future__ import annotations

from typing import Any

from planner.model import NovaInstance
from planner.parse.units import parse_int

NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"


def nova_instance(metadata: Any, uuid: str | None, source: str) -> NovaInstance | None:
    """The ``<nova:instance>`` child of ``<metadata>``, or None when Nova wrote none."""
    for el in metadata.iterchildren():
        tag = el.tag
        if not isinstance(tag, str) or not tag.startswith("{" + NOVA_NS_PREFIX):
            continue
        ns, _, local = tag[1:].partition("}")
        if local == "instance":
            return _instance(el, "{" + ns + "}", ns, uuid, source)
    return None


def _text(el: Any) -> str | None:
    return None if el is None else (el.text or "").strip()


def _int(el: Any, source: str, what: str) -> int | None:
    if el is None or not (el.text or "").strip():
        return None
    value = parse_int(el.text, source, f"<nova:{what}>")
    return value


def _instance(inst: Any, q: str, ns: str, uuid: str | None, source: str) -> NovaInstance:
    flavor = inst.find(q + "flavor")
    owner = inst.find(q + "owner")
    user = owner.find(q + "user") if owner is not None else None
    project = owner.find(q + "project") if owner is not None else None
    root = inst.find(q + "root")
    package = inst.find(q + "package")

    def fl(what: str) -> int | None:
        return _int(flavor.find(q + what), source, f"flavor/{what}") if flavor is not None \
            else None

    return NovaInstance(
        uuid=uuid,
        name=_text(inst.find(q + "name")),
        flavor=flavor.get("name") if flavor is not None else None,
        flavor_memory_mib=fl("memory"),
        flavor_vcpus=fl("vcpus"),
        flavor_disk_gb=fl("disk"),
        project_id=project.get("uuid") if project is not None else None,
        project_name=_text(project),
        root_type=root.get("type") if root is not None else None,
        namespace=ns,
        package=package.get("version") if package is not None else None,
        creation_time=_text(inst.find(q + "creationTime")),
        flavor_swap_mib=fl("swap"),
        flavor_ephemeral_gb=fl("ephemeral"),
        user_id=user.get("uuid") if user is not None else None,
        user_name=_text(user),
        root_id=root.get("uuid") if root is not None else None,
    )
