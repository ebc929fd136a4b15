"""Output files written whole or not at all, and output directories that never mix runs.

``atomic_write(path, data)``: the data goes to a temporary file beside ``path``, is
fsync'ed, then renamed over ``path`` -- a reader (or a crash) sees the old file or
the new one, never half of one.

``OutputSet(out, command)``: every file of one run is written into a fresh hidden
directory beside ``out`` (``.NAME.COMMAND-PID-XXXX``), with a run manifest
``migplan-run.json`` listing them; ``commit()`` then swaps that directory with
``out`` in one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux >= 3.15; elsewhere two
renames, with a moment in which ``out`` is absent but never mixed) and removes the
previous run.  Ctrl-C or an error before ``commit()`` removes the hidden directory
and leaves ``out`` as it was.  ``out`` is replaced only when it is empty or holds
exactly a previous run of the same command (its manifest and the files it lists):
a directory with anything else in it is refused, never emptied.

``clean_leftovers(out, command)``: a run killed with SIGKILL leaves its hidden
directory; the next run removes those whose process is gone (and says so), and
refuses to start while another live run writes to ``out``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planner import __version__
from planner.errors import InputError, UsageError

RUN_MANIFEST = "migplan-run.json"


def fsync_dir(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_fsynced(path: Path, data: bytes, mode: str = "xb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, fsync, rename)."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.tmp-{os.getpid()}-", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(p.parent)


# --- swapping a directory into place -----------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False when unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # kernel or filesystem without RENAME_EXCHANGE
    raise OSError(e, os.strerror(e), str(b))


def _leftover_re(out: Path, command: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(out.name)}\.{re.escape(command)}-(\d+)-[A-Za-z0-9_]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(out: Path, command: str, say: Callable[[str], None]) -> None:
    """Remove what runs of ``command`` killed while writing ``out`` left beside it.

    A leftover whose process still runs means another run is writing ``out``
    right now: refused (UsageError).
    """
    parent = out.parent
    pattern = _leftover_re(out, command)
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for e in entries:
        m = pattern.match(e.name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _alive(pid):
            raise UsageError(f"--out {out}: another migplan {command} (pid {pid}) is writing "
                             f"it now ({parent / e.name}); wait for it or choose another "
                             "directory")
        shutil.rmtree(parent / e.name, ignore_errors=True)
        say(f"removed {parent / e.name}: left by an interrupted migplan {command} "
            f"(pid {pid}), never part of {out}")


def staging_dir(out: Path, command: str) -> Path:
    """A fresh hidden directory beside ``out`` for one run (the name clean_leftovers knows)."""
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{command}-{os.getpid()}-", dir=out.parent))


class OutputSet:
    """One run's output files, published together (see the module docstring)."""

    def __init__(self, out: str | Path, command: str,
                 say: Callable[[str], None] = lambda _m: None,
                 earlier: re.Pattern[str] | None = None) -> None:
        """``earlier``: the names of the files this command wrote before run manifests
        existed; a directory holding only such files is a previous run too."""
        self.out = Path(out)
        self.command = command
        self.earlier = earlier
        self.files: list[str] = []
        self.tmp: Path | None = None
        self._check_replaceable()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.out, command, say)
        self.tmp = staging_dir(self.out, command)

    def _check_replaceable(self) -> None:
        out = self.out
        if not out.exists() and not out.is_symlink():
            return
        if out.is_symlink():
            raise UsageError(f"--out {out}: is a symbolic link: give the directory it points "
                             "to (the run replaces DIR as a whole)")
        if not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a directory")
        names = {p.name for p in out.iterdir()}
        if not names:
            return
        listed: set[str] = set()
        if RUN_MANIFEST in names:
            try:
                doc = json.loads((out / RUN_MANIFEST).read_text())
                if doc.get("command") == self.command and isinstance(doc.get("files"), list):
                    listed = {str(f) for f in doc["files"]} | {RUN_MANIFEST}
            except (OSError, ValueError, AttributeError):
                listed = set()
        elif self.earlier is not None and all(self.earlier.fullmatch(n) for n in names):
            listed = names  # written by a migplan from before run manifests
        foreign = sorted(names - listed)
        if foreign:
            raise UsageError(
                f"--out {out}: holds files that are not a previous `migplan {self.command} "
                f"--out` run ({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); "
                "it is replaced as a whole, so give an empty or new directory")

    def _path(self, name: str) -> Path:
        if "/" in name or name.startswith(".") or name == RUN_MANIFEST or name in self.files:
            raise ValueError(f"not a new file name of this output set: {name!r}")
        assert self.tmp is not None, "the set is committed or discarded"
        self.files.append(name)
        return self.tmp / name

    def write(self, name: str, data: str | bytes) -> None:
        """One file of the set (a plain name, written and fsync'ed in the staging dir)."""
        _write_fsynced(self._path(name), data.encode("utf-8") if isinstance(data, str) else data)

    def open(self, name: str) -> Any:
        """A text file of the set to write in pieces (``with s.open(name) as f``:
        fsync'ed when the block ends)."""
        return _FsyncedText(self._path(name))

    def commit(self, extra: dict[str, Any] | None = None) -> None:
        manifest = {"command": self.command, "migplan_version": __version__,
                    "written_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    **(extra or {}), "files": sorted(self.files)}
        tmp, out = self.tmp, self.out
        assert tmp is not None, "the set is committed or discarded"
        _write_fsynced(tmp / RUN_MANIFEST,
                       (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        fsync_dir(tmp)
        try:
            if out.exists():
                self._check_replaceable()  # nothing foreign appeared while we wrote
                if not _exchange(tmp, out):  # now tmp holds the previous run
                    old = staging_dir(out, self.command)
                    os.rename(out, old / "previous")
                    os.rename(tmp, out)
                    self.tmp = old
            else:
                os.rename(tmp, out)
                self.tmp = None
        except OSError as err:
            raise InputError(f"--out {out}: cannot publish the run: {err.strerror or err}") \
                from None
        fsync_dir(out.parent)
        self.discard()

    def discard(self) -> None:
        """Remove the staging directory (after commit: the previous run)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class _FsyncedText:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "x", encoding="utf-8")  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> Any:
        return self._f

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._f.flush()
                os.fsync(self._f.fileno())
        finally:
            self._f.close()
