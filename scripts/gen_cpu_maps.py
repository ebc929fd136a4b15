#!/usr/bin/env python3
"""Generate cpu_maps/x86.json from an installed libvirt cpu_map directory.

    python scripts/gen_cpu_maps.py [--cpu-map /usr/share/libvirt/cpu_map] [--out cpu_maps]

The libvirt 11.3 catalog (cpu_maps/x86-11.3.json) comes from the oracle chroot
(scripts/libvirt_oracle.sh, Debian bookworm-backports libvirt0 11.3.0-2~bpo12+1):

    python scripts/gen_cpu_maps.py --cpu-map "$(scripts/libvirt_oracle.sh)/usr/share/libvirt/cpu_map" \
        --libvirt-version 11.3.0 --name x86-11.3.json --label /usr/share/libvirt/cpu_map

The catalog is stamped with the libvirt version it came from (``virsh --version``
or ``--libvirt-version``), so a reader knows which libvirt's answers it reproduces.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from planner.adapters.catalogs import load_catalog  # noqa: E402


def libvirt_version() -> str | None:
    try:
        out = subprocess.run(["virsh", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-map", default="/usr/share/libvirt/cpu_map")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "cpu_maps"))
    ap.add_argument("--libvirt-version", default=None)
    ap.add_argument("--name", default="x86.json", help="file name of the catalog in --out")
    ap.add_argument("--label", default=None, help="cpu_map path recorded as the source")
    args = ap.parse_args()
    cat = load_catalog(args.cpu_map)
    doc = cat.to_json()
    doc["libvirt_version"] = args.libvirt_version or libvirt_version()
    doc["source"] = "libvirt cpu_map (" + (args.label or args.cpu_map) + ")"
    out = Path(args.out) / args.name
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(doc['features'])} features, {len(doc['models'])} models, "
          f"libvirt {doc['libvirt_version']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
