"""Where CPU catalogs come from (adapter: reads files).

The shipped catalog is ``cpu_maps/x86.json`` (generated from libvirt's
cpu_map by ``scripts/gen_cpu_maps.py``).  ``--cpu-map DIR`` loads either a
libvirt cpu_map directory (``index.xml``) or a directory holding ``x86.json``.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from planner.cpu.catalog import Catalog, load_json_text
from planner.errors import InputError

MAX_MAP_FILE = 16 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    text = resources.files("cpu_maps").joinpath("x86.json").read_text(encoding="utf-8")
    return load_json_text(text, "cpu_maps/x86.json")


#: Shipped catalogs by libvirt version: ``--cpu-map 11.3`` (cpu_maps/x86-11.3.json).
SHIPPED = {"9.0": "x86.json", "11.3": "x86-11.3.json"}


@functools.lru_cache(maxsize=4)
def shipped_catalog(version: str) -> Catalog:
    name = SHIPPED[version]
    text = resources.files("cpu_maps").joinpath(name).read_text(encoding="utf-8")
    return load_json_text(text, f"cpu_maps/{name}")


def load_catalog(cpu_map: str | Path | None) -> Catalog:
    if cpu_map is None:
        return default_catalog()
    if isinstance(cpu_map, str) and cpu_map in SHIPPED and not Path(cpu_map).exists():
        return default_catalog() if cpu_map == "9.0" else shipped_catalog(cpu_map)
    path = Path(cpu_map)
    if path.is_file() and path.suffix == ".json":
        return load_json_text(_read(path), str(path))
    if not path.is_dir():
        raise InputError(f"--cpu-map {path}: no such directory")
    if (path / "index.xml").is_file():
        def read(name: str) -> bytes:
            f = path / name
            if not f.is_file():
                raise InputError(f"{path}: CPU map include {name} not found")
            data = f.read_bytes()
            if len(data) > MAX_MAP_FILE:
                raise InputError(f"{f}: too large for a CPU map file")
            return data

        return Catalog.from_libvirt_cpu_map(read, str(path))
    if (path / "x86.json").is_file():
        return load_json_text(_read(path / "x86.json"), str(path / "x86.json"))
    raise InputError(f"--cpu-map {path}: neither a libvirt cpu_map (index.xml) nor a migplan catalog (x86.json)")


def _read(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_MAP_FILE * 4:
        raise InputError(f"{path}: too large for a CPU catalog")
    return data.decode("utf-8", errors="replace")
