"""Collect an inventory snapshot from many libvirt hosts, in parallel, atomically.

I/O is injected: ``connect(uri)`` returns an object with the read methods of
``planner.adapters.libvirt.Conn`` (the default opens a real libvirt connection), so tests
can hand in failures a real daemon cannot show.  Nothing here imports libvirt.

The snapshot layout is described in docs/snapshot.md.  It is written into a
hidden sibling directory and renamed into place at the very end, after its
``manifest.json``; an interrupted collect leaves no directory that looks like
a complete snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from planner import __version__
from planner.adapters.outdir import clean_leftovers, staging_dir
from planner.collect.credentials import LibvirtCredentials
from planner.collect.sources import Target, redact_uri, uri_host
from planner.errors import HostError, InputError, MigplanError, PartialError, UsageError
from planner.model import NovaFacts
from planner.parse.host import caps_summary
from planner.snapshot.write import (
    SNAPSHOT_FORMAT,
    check_out_dir,
    publish,
    safe_name,
    unique_name,
    write_host,
    write_nova,
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_WORKERS = 8

T = TypeVar("T")


class HostConn(Protocol):
    """The reads collect makes on one host (``planner.adapters.libvirt.Conn`` is the real one)."""

    def capabilities(self) -> str: ...
    def domain_capabilities(self, virttype: str | None = None, arch: str | None = None) -> str: ...
    def cpu_model_names(self, arch: str) -> list[str]: ...
    def node_info(self) -> dict[str, Any]: ...
    def free_memory(self) -> int: ...
    def cells_free_memory(self, ncells: int) -> list[int]: ...
    def free_pages(self, page_sizes_kib: list[int], ncells: int) -> dict[int, dict[int, int]]: ...
    def versions(self) -> dict[str, Any]: ...
    def hostname(self) -> str: ...
    def storage_pools(self) -> list[dict[str, Any]]: ...
    def networks(self) -> list[dict[str, Any]]: ...
    def domains(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


Connect = Callable[[str], HostConn]


@dataclass
class HostEvent:
    """A progress report: ``status`` is connecting, ok, failed or timeout."""

    index: int
    total: int
    uri: str  # redacted
    name: str | None
    status: str
    detail: str | None = None


@dataclass
class HostResult:
    uri: str  # redacted
    name: str | None
    status: str  # ok, failed, timeout
    error: str | None = None
    kind: str | None = None  # unreachable, auth, timeout, error ...
    duration: float = 0.0
    guests: int | None = None
    warnings: list[str] = field(default_factory=list)
    hostname: str | None = None
    _stage: Path | None = field(default=None, repr=False)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "name": self.name, "uri": self.uri, "status": self.status, "error": self.error,
            "error_kind": self.kind, "duration_s": round(self.duration, 3),
            "guests": self.guests, "hostname": self.hostname, "warnings": self.warnings,
            "dir": f"hosts/{self.name}" if self.status == "ok" else None,
        }


@dataclass
class CollectResult:
    out_dir: Path
    collected_at: str
    duration: float
    hosts: list[HostResult]

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts if h.status != "ok"]

    def raise_if_partial(self) -> None:
        bad = self.failed
        if bad:
            names = ", ".join(h.name or h.uri for h in bad)
            raise PartialError(f"{len(bad)} of {len(self.hosts)} hosts not collected ({names}); "
                               f"the snapshot in {self.out_dir} holds the others")


def default_connect(uri: str, credentials: LibvirtCredentials | None = None) -> HostConn:
    from planner.adapters import (
        libvirt as virt,  # the one module that imports libvirt, loaded only to collect
    )

    return virt.connect(uri, credentials)


# --- one host ------------------------------------------------------------------------------


def call_with_timeout(fn: Callable[[], T], timeout: float, what: str,
                      cancel: threading.Event | None = None) -> T:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` seconds
    (less when ``cancel`` is set: the collect was interrupted).

    libvirt calls block in C and cannot be cancelled; a host that hangs (an
    ssh prompt, a daemon that accepts and never answers) leaves its thread
    behind, but a daemon thread never keeps migplan from exiting.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed over to the caller's thread
            box["error"] = err

    t = threading.Thread(target=run, name=f"collect {what}", daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while t.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            raise HostError(f"no answer within {timeout:g} s", "timeout")
        if cancel is not None and cancel.is_set():
            raise HostError("collect interrupted", "cancelled")
        # The executor's worker threads are joined at interpreter exit: wait in
        # short steps so an interrupted collect does not wait for --timeout.
        t.join(min(left, 0.2))
    if "error" in box:
        raise box["error"]
    return box["value"]


def read_host(conn: HostConn) -> dict[str, Any]:
    """Everything collect stores for one host, raw.  Only capabilities is required:
    a failing optional read is recorded in ``facts["errors"]`` and the rest goes on."""
    caps = conn.capabilities()
    summary = caps_summary(caps.encode("utf-8"))
    errors: dict[str, str] = {}

    def opt(what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except MigplanError as err:
            errors[what] = str(err)
            return None

    facts: dict[str, Any] = {
        "hostname": opt("hostname", conn.hostname),
        "free_memory_bytes": opt("free_memory_total", conn.free_memory),
        "versions": opt("versions", conn.versions),
        "nodeinfo": opt("nodeinfo", conn.node_info),
    }
    raw: dict[str, Any] = {"capabilities": caps, "facts": facts}
    if "kvm" in summary.domain_types:
        raw["domcapabilities"] = opt("domcapabilities", lambda: conn.domain_capabilities("kvm"))
        if "qemu" in summary.domain_types:
            raw["domcapabilities-qemu"] = opt("domcapabilities-qemu",
                                              lambda: conn.domain_capabilities("qemu"))
    else:
        raw["domcapabilities"] = opt("domcapabilities", lambda: conn.domain_capabilities(None))
    arch = summary.arch
    facts["cpu_model_names"] = opt("cpu_model_names", lambda: conn.cpu_model_names(arch)) \
        if arch else None
    if summary.cell_ids:
        n = max(summary.cell_ids) + 1
        free = opt("free_memory", lambda: conn.cells_free_memory(n))
        pages = opt("free_pages", lambda: conn.free_pages(list(summary.page_sizes_kib), n)) or {}
        facts["cells"] = [
            {"id": c,
             "free_bytes": free[c] if free is not None and c < len(free) else None,
             "free_pages": {str(s): v for s, v in sorted(pages.get(c, {}).items())}}
            for c in summary.cell_ids
        ]
    raw["pools"] = opt("storage_pools", conn.storage_pools)
    raw["networks"] = opt("networks", conn.networks)
    raw["domains"] = opt("domains", conn.domains)
    facts["errors"] = errors
    return raw


def _fetch(uri: str, connect: Connect) -> dict[str, Any]:
    conn = connect(uri)
    try:
        return read_host(conn)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


# --- the whole collect ---------------------------------------------------------------------


def _target_name(t: Target, hostname: str | None) -> str | None:
    return t.name or hostname or uri_host(t.uri)


def collect(
    targets: list[Target],
    out_dir: str | Path,
    connect: Connect | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = DEFAULT_WORKERS,
    progress: Callable[[HostEvent], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    say: Callable[[str], None] | None = None,
    nova: NovaFacts | None = None,
    credentials: LibvirtCredentials | None = None,
) -> CollectResult:
    """Collect every target into a new snapshot directory ``out_dir``.

    One host's failure (unreachable, auth refused, timeout, broken answer) is
    recorded in the manifest and the others are collected; the caller decides
    what a partial result means (``CollectResult.raise_if_partial``).  ``say``
    reports leftovers of interrupted collects removed beside ``out_dir``.  ``nova``
    (what Nova said, read before the hosts) is written as the snapshot's nova.json.
    ``credentials`` (SASL) go to every host's libvirt, never into the snapshot.
    """
    if not targets:
        raise UsageError("no hosts to collect: give URIs, --hosts-file, --ansible-inventory or --lab")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    out = Path(out_dir)
    check_out_dir(out)
    _leftovers(out, say or (lambda _m: None))
    connect = connect or (lambda uri: default_connect(uri, credentials))
    total = len(targets)
    lock = threading.Lock()
    cancel = threading.Event()

    def report(ev: HostEvent) -> None:
        if progress is not None:
            with lock:
                progress(ev)

    collected_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = clock()
    # .OUT.collect-PID-XXXX: a collect killed with SIGKILL leaves it; the next one removes it
    tmp = staging_dir(out, "collect")
    try:
        stage = tmp / "staging"
        stage.mkdir()

        results: list[HostResult | None] = [None] * total
        pool = ThreadPoolExecutor(max_workers=min(workers, total), thread_name_prefix="collect")
        try:
            futs = {pool.submit(_collect_one, i, t, stage, total=total, connect=connect,
                                timeout=timeout, cancel=cancel, report=report,
                                clock=clock): i
                    for i, t in enumerate(targets)}
            for fut in as_completed(futs):
                results[futs[fut]] = fut.result()
        finally:
            # On Ctrl-C or an error, do not wait for hosts still answering (up to
            # --timeout): their late writes fail, the staging directory is gone.
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
        hosts = [r for r in results if r is not None]
        _place(tmp, hosts, targets)
        shutil.rmtree(stage)
        duration = clock() - start
        manifest = {
            "format": SNAPSHOT_FORMAT,
            "collected_at": collected_at,
            "migplan_version": __version__,
            "duration_s": round(duration, 3),
            "hosts": [h.manifest_entry() for h in hosts],
        }
        if nova is not None:
            write_nova(tmp, nova)
        publish(tmp, out, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CollectResult(out, collected_at, duration, hosts)


def _leftovers(out: Path, say: Callable[[str], None]) -> None:
    """Remove what killed collects into ``out`` left (``.OUT.collect-PID-*``); name the
    ones an earlier migplan left (``.OUT.collecting-*``, no pid to tell whether it runs)."""
    clean_leftovers(out, "collect", say)
    with contextlib.suppress(OSError):
        for old in sorted(out.parent.glob(f".{glob.escape(out.name)}.collecting-*")):
            say(f"found {old}: left by an interrupted collect of an earlier migplan (never a "
                f"snapshot): remove it with rm -r {old}")


def _collect_one(i: int, t: Target, stage: Path, *, total: int, connect: Connect,
                 timeout: float, cancel: threading.Event,
                 report: Callable[[HostEvent], None], clock: Callable[[], float]) -> HostResult:
    """Read one target and write its files under ``stage``; a host's failure is its result."""
    shown = redact_uri(t.uri)
    report(HostEvent(i, total, shown, t.name, "connecting"))
    t0 = clock()
    res = HostResult(shown, t.name, "ok")
    raw = None
    try:
        raw = call_with_timeout(lambda: _fetch(t.uri, connect), timeout, shown, cancel)
    except (HostError, InputError) as err:
        res.status = "timeout" if getattr(err, "kind", "") == "timeout" else "failed"
        res.kind = getattr(err, "kind", "error")
        res.error = _scrub(str(err), t.uri)
    except Exception as err:  # a surprise from one host must not stop the others
        res.status, res.kind = "failed", "error"
        res.error = _scrub(f"{type(err).__name__}: {err}", t.uri)
    if raw is not None:
        res.hostname = raw["facts"].get("hostname")
        res.warnings = list(raw["facts"]["errors"].values())
        res._stage = stage / str(i)
        # Writing is ours, not the host's: a failure here (disk full) stops the collect.
        res.guests = write_host(res._stage, raw, shown)
    res.duration = clock() - t0
    res.name = _target_name(t, res.hostname)
    report(HostEvent(i, total, shown, res.name, res.status, res.error))
    return res


def _place(tmp: Path, hosts: list[HostResult], targets: list[Target]) -> None:
    """Give every host a unique directory name; several hosts may report one hostname
    (the lab's hosts share a machine), so clashes get the URI's host appended."""
    (tmp / "hosts").mkdir()
    counts: dict[str, int] = {}
    for h in hosts:
        base = safe_name(h.name or "host")
        counts[base] = counts.get(base, 0) + 1
    used: set[str] = set()
    for i, h in enumerate(hosts):
        base = safe_name(h.name or "host")
        name = base
        if counts[base] > 1:
            name = safe_name(f"{base}-{uri_host(targets[i].uri) or i}")
        name = unique_name(name, used, str(i))
        h.name = name
        if h._stage is not None:
            os.rename(h._stage, tmp / "hosts" / name)


def _scrub(msg: str, uri: str) -> str:
    """Error texts may quote the URI: never let a password through."""
    red = redact_uri(uri)
    if red != uri:
        msg = msg.replace(uri, red)
    return msg
