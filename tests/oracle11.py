"""libvirt 11.3 as an oracle: ``virsh -c test:///default`` inside the chroot that
scripts/libvirt_oracle.sh builds (Debian 12 + bookworm-backports libvirt 11.3; cached).

The test driver's baseline runs in-process, so no daemon is started.  When the chroot
cannot be built (not root, no mirror), the tests that need it skip with the reason.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Oracle11Missing(Exception):
    pass


@cache
def chroot_dir() -> Path:
    """The chroot with libvirt 11.3 (built on first use, then cached)."""
    try:
        r = subprocess.run([str(REPO / "scripts" / "libvirt_oracle.sh")], capture_output=True,
                           text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Oracle11Missing(f"libvirt 11.3 oracle chroot could not be built: {err}") from None
    if r.returncode != 0:
        tail = " ".join(r.stderr.strip().splitlines()[-2:])
        raise Oracle11Missing("libvirt 11.3 oracle chroot could not be built "
                              f"(scripts/libvirt_oracle.sh exit {r.returncode}: {tail})")
    return Path(r.stdout.strip().splitlines()[-1])


def cpu_map_dir() -> Path:
    return chroot_dir() / "usr" / "share" / "libvirt" / "cpu_map"


def virsh(*args: str, files: dict[str, bytes]) -> subprocess.CompletedProcess[str]:
    """``virsh -c test:///default ARGS`` in the chroot; ``files`` are placed in a fresh
    directory inside it and an ARG ``@name`` is replaced by that file's chroot path."""
    root = chroot_dir()
    (root / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "tmp") as d:
        inside = "/tmp/" + os.path.basename(d)
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        argv = [f"{inside}/{a[1:]}" if a[:1] == "@" and a[1:] in files else a for a in args]
        return subprocess.run(["chroot", str(root), "virsh", "-c", "test:///default", *argv],
                              capture_output=True, text=True, timeout=120)
