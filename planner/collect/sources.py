"""Where the hosts to collect come from: URIs, host files, Ansible inventories.

Pure parsing (text in, targets out): reading the files is the caller's job.
A hostname becomes a libvirt URI through a template such as
``qemu+ssh://root@{host}/system``; ``{host}`` is the address to reach
(Ansible's ``ansible_host`` when set), ``{name}`` the inventory name and ``{user}``
Ansible's ``ansible_user`` (root when unset); ``ansible_port`` becomes the port of ssh
URIs (``qemu+ssh://kolla@10.0.0.5:2222/system``).  Group variables (``[g:vars]``,
``vars:``) apply to the group's hosts as in Ansible: parents first, children over them,
a host's own variables last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from planner.errors import InputError, UsageError

DEFAULT_URI_TEMPLATE = "qemu+ssh://{user}@{host}/system"
#: libvirt transports that go over ssh: Ansible's ansible_port is their port.
SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")

_HOST_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])$")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_RANGE_RE = re.compile(r"\[([A-Za-z0-9]+):([A-Za-z0-9]+)(?::(\d+))?\]")
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#]*@")
_SECRET_QS_RE = re.compile(r"((?:^|[&;])(?:password|passwd|pass|secret)=)[^&;#]*", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """One host to collect: its libvirt URI and, when known, the name to file it under."""

    uri: str
    name: str | None = None


def redact_uri(uri: str) -> str:
    """``qemu+ssh://user:secret@h/system`` -> ``qemu+ssh://user:***@h/system``; also
    ``password=``/``passwd=`` query parameters.  Never store or print credentials.

    Works on the string (not urlunsplit, which rewrites ``test:///default``)."""
    out = _USERINFO_RE.sub(r"\1***@", uri, count=1)
    head, q, query = out.partition("?")
    if q:
        query = _SECRET_QS_RE.sub(lambda m: m.group(1) + "***", query)
        out = head + "?" + query
    return out


def uri_host(uri: str) -> str | None:
    """The host part of a libvirt URI (None for local URIs such as qemu:///system)."""
    try:
        return urlsplit(uri).hostname or None
    except ValueError:
        return None


#: libvirt's default ports per remote transport (docs: "Remote URIs").
_DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}


def uri_identity(uri: str) -> tuple[str, ...] | None:
    """What makes two libvirt URIs reach the same daemon: driver, transport, host and port
    (default ports filled in, case of the host ignored); user, path and query are how,
    not where.  None for a URI without a host (local drivers, test:///)."""
    try:
        u = urlsplit(uri)
        host, port = u.hostname, u.port
    except ValueError:
        return None
    if not host:
        return None
    driver, _, transport = u.scheme.lower().partition("+")
    transport = transport or "tls"  # libvirt: a remote URI without transport is TLS
    if port is None:
        port = _DEFAULT_PORTS.get(transport)
    return (driver, transport, host.lower(), str(port))


def same_uri(a: str, b: str) -> bool:
    """``a`` and ``b`` reach the same libvirt daemon (the same string, or uri_identity)."""
    if a == b:
        return True
    ia = uri_identity(a)
    return ia is not None and ia == uri_identity(b)


_NETLOC_HOST_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(?:\[[^\]]*\]|[^/?#:]*))")


def uri_for(host: str, template: str, name: str | None = None, *, user: str | None = None,
            port: int | None = None) -> str:
    """The URI of one host: ``template`` with {host}, {name} and {user} (root by default);
    ``port`` (Ansible's ansible_port) set on ssh transports whose URI names none."""
    if "{host}" not in template and "{name}" not in template:
        raise UsageError(f"--uri-template {template!r} has neither {{host}} nor {{name}}")
    try:
        uri = template.format(host=host, name=name or host, user=quote(user or "root", safe=""))
    except (KeyError, IndexError, ValueError) as err:
        raise UsageError(f"--uri-template {template!r}: {err} (use {{host}}, {{name}} and "
                         "{user})") from None
    if port is not None:
        scheme = uri.split("://", 1)[0].lower()
        m = _NETLOC_HOST_RE.match(uri)
        if scheme.partition("+")[2] in SSH_TRANSPORTS and m is not None and uri_port(uri) is None:
            uri = m.group(1) + f":{port}" + uri[m.end(1):]
    return uri


def uri_port(uri: str) -> int | None:
    try:
        return urlsplit(uri).port
    except ValueError:
        return None


def from_uris(uris: list[str]) -> list[Target]:
    out = []
    for u in uris:
        if not _URI_RE.match(u) and not u.startswith("test:///"):
            raise UsageError(f"{u!r} is not a libvirt URI (e.g. qemu+ssh://root@host/system); "
                             "put hostnames in --hosts-file")
        out.append(Target(u))
    return out


def parse_hosts_file(text: str, source: str, template: str = DEFAULT_URI_TEMPLATE) -> list[Target]:
    """One URI or hostname per line; ``#`` starts a comment; blank lines are skipped."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if _URI_RE.match(line):
            out.append(Target(line))
        elif _HOST_RE.match(line):
            out.append(Target(uri_for(line, template), line))
        else:
            raise InputError(f"{source}, line {n}: {line!r} is neither a libvirt URI nor a "
                             "hostname (one host per line, # for comments)")
    if not out:
        raise InputError(f"{source}: no hosts in the file (one URI or hostname per line)")
    return out


# --- Ansible inventories -------------------------------------------------------------------


@dataclass
class _Group:
    hosts: dict[str, dict[str, Any]]
    children: list[str]
    vars: dict[str, Any] = field(default_factory=dict)


def expand_pattern(pattern: str, source: str = "") -> list[str]:
    """Ansible host ranges: ``compute[01:03]`` -> compute01..compute03; ``[a:c]`` letters."""
    m = _RANGE_RE.search(pattern)
    if not m:
        return [pattern]
    lo, hi, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[: m.start()], pattern[m.end():]
    if lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        a, b = int(lo), int(hi)
        items = [str(i).zfill(width) for i in range(a, b + 1, max(step, 1))]
    elif len(lo) == 1 and len(hi) == 1 and lo.isalpha() and hi.isalpha():
        items = [chr(c) for c in range(ord(lo), ord(hi) + 1, max(step, 1))]
    else:
        raise InputError(f"{source}: invalid host range in {pattern!r}")
    if not items or len(items) > 100000:
        raise InputError(f"{source}: invalid host range in {pattern!r}")
    return [h for i in items for h in expand_pattern(head + i + tail, source)]


def _split_vars(words: list[str], source: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InputError(f"{source}, line {n}: expected key=value, found {w!r}")
        out[k] = v.strip("'\"")
    return out


def _parse_ini(text: str, source: str) -> dict[str, _Group]:
    import shlex

    groups: dict[str, _Group] = {"ungrouped": _Group({}, [])}
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InputError(f"{source}, line {n}: unterminated section header {line!r}")
            name = line[1:-1].strip()
            section, _, kind = name.partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise InputError(f"{source}, line {n}: unknown section kind {kind!r} "
                                 "(expected :children or :vars)")
            groups.setdefault(section, _Group({}, []))
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise InputError(f"{source}, line {n}: {err}") from None
        if not words:
            continue
        if kind == "vars":
            k, eq, v = line.partition("=")
            if eq and k.strip():
                groups[section].vars[k.strip()] = v.strip().strip("'\"")
            continue
        if kind == "children":
            groups[section].children.append(words[0])
            continue
        hvars = _split_vars(words[1:], source, n)
        for h in expand_pattern(words[0], f"{source}, line {n}"):
            groups[section].hosts.setdefault(h, {}).update(hvars)
    return groups


def _parse_yaml(text: str, source: str) -> dict[str, _Group]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{source}: not a valid YAML inventory: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: a YAML inventory is a mapping of groups (e.g. all:)")
    groups: dict[str, _Group] = {}

    def visit(name: str, body: Any, path: str) -> None:
        g = groups.setdefault(name, _Group({}, []))
        if body is None:
            return
        if not isinstance(body, dict):
            raise InputError(f"{source}: group {path} must be a mapping (hosts:, children:, vars:)")
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InputError(f"{source}: {path}.hosts must be a mapping of host names")
        for pattern, hvars in hosts.items():
            if hvars is not None and not isinstance(hvars, dict):
                raise InputError(f"{source}: {path}.hosts.{pattern} must be a mapping or empty")
            for h in expand_pattern(str(pattern), source):
                g.hosts.setdefault(h, {}).update(hvars or {})
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise InputError(f"{source}: {path}.vars must be a mapping")
        g.vars.update(gvars)
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InputError(f"{source}: {path}.children must be a mapping of groups")
        for child, cbody in children.items():
            if str(child) not in g.children:
                g.children.append(str(child))
            visit(str(child), cbody, f"{path}.children.{child}")

    for name, body in data.items():
        visit(str(name), body, str(name))
    return groups


def _looks_like_yaml(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        return not line.startswith("[") and (line.endswith(":") or line.startswith("---")
                                             or ": " in line)
    return False


def parse_ansible_inventory(text: str, source: str, group: str,
                            template: str = DEFAULT_URI_TEMPLATE) -> list[Target]:
    """Hosts of ``group`` (with its children, recursively) in an INI or YAML inventory.

    ``ansible_host`` (when set) is the address put into the URI; the inventory
    name is the name the host is filed under.  Order: as the inventory lists them.
    """
    if not text.strip():
        raise InputError(f"{source}: the inventory is empty")
    groups = _parse_yaml(text, source) if _looks_like_yaml(text) else _parse_ini(text, source)
    all_hosts: dict[str, dict[str, Any]] = {}
    for g in groups.values():
        for h, v in g.hosts.items():
            all_hosts.setdefault(h, {}).update(v)
    if group != "all" and group not in groups:
        known = ", ".join(sorted(k for k in groups if k != "ungrouped")) or "none"
        raise InputError(f"{source}: no group {group!r} in the inventory (groups: {known})")
    names: list[str] = []
    if group == "all":  # Ansible's "all" is every host, whatever [all:vars] says
        names = list(all_hosts)
    else:
        seen: set[str] = set()

        def walk(name: str, stack: tuple[str, ...]) -> None:
            if name in stack:
                raise InputError(f"{source}: group cycle {' -> '.join((*stack, name))}")
            g = groups.get(name)
            if g is None:
                raise InputError(f"{source}: group {stack[-1]!r} has unknown child group {name!r}")
            for h in g.hosts:
                if h not in seen:
                    seen.add(h)
                    names.append(h)
            for c in g.children:
                walk(c, (*stack, name))

        walk(group, ())
    if not names:
        raise InputError(f"{source}: group {group!r} has no hosts")
    effective = _effective_vars(groups, all_hosts)
    out = []
    for h in names:
        v = effective.get(h, {})
        addr = str(v.get("ansible_host") or h)
        if ":" in addr and not addr.startswith("["):
            addr = f"[{addr}]"  # an IPv6 address in a URI
        user = v.get("ansible_user") or v.get("ansible_ssh_user")
        out.append(Target(uri_for(quote(addr, safe=":[]"), template, h,
                                  user=str(user) if user else None,
                                  port=_port(v, h, source)), h))
    return out


def _port(v: dict[str, Any], host: str, source: str) -> int | None:
    raw = v.get("ansible_port", v.get("ansible_ssh_port"))
    if raw is None or raw == "":
        return None
    try:
        port = int(str(raw))
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise InputError(f"{source}: host {host}: ansible_port {raw!r} is not a port number")
    return port


def _effective_vars(groups: dict[str, _Group],
                    host_vars: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each host's variables as Ansible sees them: group variables by depth (all, then
    parents, then children; ties by name), the host's own last."""
    parents: dict[str, set[str]] = {}
    for name, g in groups.items():
        for c in g.children:
            parents.setdefault(c, set()).add(name)
    depth: dict[str, int] = {}

    def depth_of(name: str, stack: tuple[str, ...] = ()) -> int:
        if name not in depth:
            ps = [p for p in parents.get(name, ()) if p not in stack]
            depth[name] = 1 + max((depth_of(p, (*stack, name)) for p in ps), default=0)
        return depth[name]

    members: dict[str, set[str]] = {}

    def members_of(name: str, stack: tuple[str, ...] = ()) -> set[str]:
        if name not in members:
            g = groups.get(name)
            m = set(g.hosts) if g else set()
            for c in (g.children if g else ()):
                if c not in stack:
                    m |= members_of(c, (*stack, name))
            members[name] = m
        return members[name]

    out: dict[str, dict[str, Any]] = {h: {} for h in host_vars}
    for name in sorted(groups, key=lambda n: (0 if n == "all" else depth_of(n), n)):
        gv = groups[name].vars
        if gv:
            for h in (host_vars if name == "all" else members_of(name)):
                out.setdefault(h, {}).update(gv)
    for h, v in host_vars.items():
        out[h].update(v)
    return out


def dedupe(targets: list[Target]) -> list[Target]:
    """Drop URIs that reach a daemon named before (the same string, or the same
    ``uri_identity``: another port spelling, another case); keep the first."""
    seen: set[object] = set()
    out = []
    for t in targets:
        key = uri_identity(t.uri) or t.uri
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out
