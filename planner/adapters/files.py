"""Reading the files a user names (``cpu-baseline FILE``, ``--groups``, ``--hosts-file``,
``--cpu-map``): bounded in size and in time, never hanging.

- a regular file is read up to ``limit`` bytes and refused beyond, whatever its
  ``st_size`` says (files in /proc say 0, a file may grow while read);
- a pipe or FIFO (``<(virsh capabilities)``, ``mkfifo``) is read until its writer
  closes it, and refused when it passes ``limit`` or sends nothing for
  ``idle_timeout()`` seconds -- a FIFO nobody writes to no longer waits forever;
- a character or block device (``/dev/zero``), a socket or a directory is refused:
  no CPU description is a device;
- ``-`` is standard input, bounded in size (a terminal may take its time).
"""

from __future__ import annotations

import errno
import os
import select
import stat
import sys

from planner.errors import InputError

#: Seconds a pipe may stay silent before its read is given up (environment override).
IDLE_TIMEOUT_ENV = "MIGPLAN_READ_TIMEOUT"
DEFAULT_IDLE_TIMEOUT = 30.0
CHUNK = 1 << 20


def idle_timeout() -> float:
    raw = os.environ.get(IDLE_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_IDLE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise InputError(f"${IDLE_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def _too_large(label: str, limit: int) -> InputError:
    return InputError(f"{label}: larger than the {limit}-byte limit")


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(fd: int, label: str, limit: int) -> bytes:
    """Everything a regular file's ``fd`` holds, at most ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(CHUNK, limit + 1 - total) or 1):
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large(label, limit)
    return b"".join(parts)


def read_stream(fd: int, label: str, limit: int, timeout: float) -> bytes:
    """What a pipe's writer sends until it closes, at most ``limit`` bytes, none of its
    silences longer than ``timeout`` seconds.  ``fd`` is non-blocking."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    parts: list[bytes] = []
    total = 0
    while True:
        # A FIFO opened non-blocking without a writer reports nothing until one comes
        # (Linux pipe_poll: no POLLHUP before a first writer): this wait is bounded.
        if not poller.poll(timeout * 1000):
            raise InputError(f"{label}: no data for {timeout:g} s (a pipe or FIFO nobody "
                             f"writes to?); ${IDLE_TIMEOUT_ENV} sets the wait")
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large(label, limit)


def read_user_file(path: str, limit: int, label: str | None = None) -> bytes:
    """The bytes of a file a user named (see the module docstring)."""
    label = label or path
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise _too_large("standard input", limit)
        return data
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except OSError as err:
        raise InputError(f"{label}: cannot open: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        mode, size = st.st_mode, st.st_size
        if stat.S_ISDIR(mode):
            raise InputError(f"{label}: is a directory, not a file")
        if stat.S_ISREG(mode):
            if size > limit:
                raise InputError(f"{label}: {size} bytes is larger than the {limit}-byte limit")
            return read_regular(fd, label, limit)
        if stat.S_ISFIFO(mode):
            return read_stream(fd, label, limit, idle_timeout())
        raise InputError(f"{label}: {_kind(mode)}, not a file: give a file, a pipe or - "
                         "for standard input")
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise InputError(f"{label}: is a directory, not a file") from None
        raise InputError(f"{label}: cannot read: {err.strerror or err}") from None
    finally:
        os.close(fd)
