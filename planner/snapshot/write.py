"""Write a snapshot: each host's raw documents, guest digests, and the manifest, atomically.

The layout is docs/snapshot.md's.  A snapshot directory is built under a temporary name
beside its final one and renamed into place only when complete (``publish``): a reader
never sees half a snapshot, and a snapshot is never overwritten.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from planner.errors import UsageError
from planner.model import NovaFacts
from planner.parse.digest import domain_digest
from planner.snapshot.nova_json import nova_json

SNAPSHOT_FORMAT = "migplan-snapshot/1"


_SAFE_RE = re.compile(r"[^A-Za-z0-9._@+-]")


def safe_name(name: str) -> str:
    """A single, harmless path component for a host or guest name."""
    s = _SAFE_RE.sub("_", name).strip()
    if not s or s.startswith("."):
        s = "_" + s
    return s[:200]


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")


def domains_json(index: list[dict[str, Any]]) -> bytes:
    """domains.json: one guest a line (the digests make entries long)."""
    if not index:
        return b"[]\n"
    return ("[\n" + ",\n".join(json.dumps(e, separators=(",", ":"), allow_nan=False) for e in index)
            + "\n]\n").encode("utf-8")


def unique_name(name: str, used: set[str], extra: str) -> str:
    n = name
    if n in used:
        n = safe_name(f"{name}-{extra}")
    i = 2
    while n in used:
        n = f"{name}-{i}"
        i += 1
    used.add(n)
    return n


def write_host(d: Path, raw: dict[str, Any], uri: str) -> int:
    """Write one host's files into ``d`` (its parent must exist); returns the number of guests."""
    d.mkdir()
    # Raw XML exactly as libvirt returned it (libvirt's strings are UTF-8).
    _write(d / "capabilities.xml", raw["capabilities"].encode("utf-8"))
    for key in ("domcapabilities", "domcapabilities-qemu"):
        if raw.get(key) is not None:
            _write(d / f"{key}.xml", raw[key].encode("utf-8"))
    facts = dict(raw["facts"])
    facts = {"uri": uri, **facts}
    for kind, key in (("pools", "pool"), ("networks", "network")):
        if raw.get(kind) is not None:
            _write_objects(d, kind, key, raw[kind])
    guests = 0
    if raw.get("domains") is not None:
        (d / "domains").mkdir()
        used: set[str] = set()
        index = []
        for g in raw["domains"]:
            fn = unique_name(safe_name(g["name"]), used, str(g.get("uuid"))) + ".xml"
            xml = g["xml"].encode("utf-8")
            _write(d / "domains" / fn, xml)
            entry = {"name": g["name"], "uuid": g["uuid"], "state": g["state"],
                     "reason": g.get("reason"), "persistent": g["persistent"],
                     "file": f"domains/{fn}"}
            if g.get("disks"):
                entry["disks"] = g["disks"]  # target -> capacity, allocation, physical
            # What the XML parses to, so that loading 100,000 guests need not
            # parse them again (used only while the XML's hash matches).
            digest = domain_digest(xml, f"{d.name}/domains/{fn}")
            if digest is not None:
                entry["digest"] = digest
            index.append(entry)
        _write(d / "domains.json", domains_json(index))
        guests = len(index)
    _write(d / "host.json", _json(facts))
    return guests


def write_nova(d: Path, facts: NovaFacts) -> None:
    """``nova.json`` (what Nova said; docs/snapshot.md) into the snapshot being built in ``d``."""
    _write(d / "nova.json", nova_json(facts))


def _write_objects(d: Path, kind: str, key: str, objects: list[dict[str, Any]]) -> None:
    """Storage pools or networks: ``KIND/NAME.xml`` each, and ``KIND.json`` listing them."""
    (d / kind).mkdir()
    used: set[str] = set()
    index = []
    for o in objects:
        fn = unique_name(safe_name(o["name"]), used, key) + ".xml"
        _write(d / kind / fn, o["xml"].encode("utf-8"))
        index.append({"name": o["name"], "file": f"{kind}/{fn}", "active": o["active"],
                      "persistent": o["persistent"]})
    _write(d / f"{kind}.json", _json(index))


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"--out {out_dir}: already exists and is not an empty directory "
                         "(a snapshot is never overwritten; choose a new directory)")
    parent = out_dir.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out_dir}: the parent directory {parent} does not exist")


def publish(tmp: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Finish the snapshot built in ``tmp`` and rename it to ``out``.

    The manifest is the completion marker: written last, the filesystem synced (so a
    crash never publishes empty files), then the rename.  Should ``out`` have appeared
    meanwhile (another collect into the same --out finished first), nothing is
    overwritten: a UsageError says so.
    """
    _write(tmp / "manifest.json", _json(manifest))
    _sync_filesystem(tmp)
    try:
        os.rename(tmp, out)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise UsageError(f"--out {out}: another snapshot was written there while this "
                             "collect ran (a second collect into the same --out?); a snapshot "
                             "is never overwritten: this one is not kept, run it again with "
                             "a new --out") from None
        raise
    _fsync_dir(out.parent)


def _sync_filesystem(path: Path) -> None:
    """syncfs(2) on the filesystem holding ``path`` (all of the snapshot's files in one
    call, not an fsync per file); os.sync() where syncfs is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
