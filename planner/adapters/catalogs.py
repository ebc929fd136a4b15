"""Where CPU catalogs come from (adapter: reads files).

The shipped catalogs are ``cpu_maps/x86.json`` (libvirt 9.0, the default) and
``cpu_maps/x86-11.3.json`` (generated from libvirt's cpu_map by
``scripts/gen_cpu_maps.py``), with ``cpu_maps/libvirt-names.json``, the model and
feature names of every libvirt release from 7.0 to 11.3 (planner/cpu/versions.py).
``--cpu-map DIR`` loads a libvirt cpu_map directory (``index.xml``, libvirt 8.0 to
11.x), a directory holding ``x86.json``, or a ``.json`` catalog.  Without it,
``catalog_for`` picks the shipped catalog that reads every host of a snapshot.
"""

from __future__ import annotations

import functools
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

from planner.adapters.files import read_user_file
from planner.cpu.catalog import Catalog, load_json_text
from planner.cpu.cpudef import CpuDef
from planner.cpu.versions import NameTable, parse_version
from planner.errors import CpuError, InputError
from planner.model import Host

MAX_MAP_FILE = 16 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    text = resources.files("cpu_maps").joinpath("x86.json").read_text(encoding="utf-8")
    return _with_names(load_json_text(text, "cpu_maps/x86.json"))


@functools.lru_cache(maxsize=1)
def name_table() -> NameTable:
    """Model and feature names per libvirt release (cpu_maps/libvirt-names.json)."""
    text = resources.files("cpu_maps").joinpath("libvirt-names.json").read_text(encoding="utf-8")
    return NameTable.from_json(json.loads(text))


def _with_names(cat: Catalog) -> Catalog:
    cat.names = name_table()
    return cat


#: Shipped catalogs by libvirt version: ``--cpu-map 11.3`` (cpu_maps/x86-11.3.json).
SHIPPED = {"9.0": "x86.json", "11.3": "x86-11.3.json"}


@functools.lru_cache(maxsize=4)
def shipped_catalog(version: str) -> Catalog:
    name = SHIPPED[version]
    text = resources.files("cpu_maps").joinpath(name).read_text(encoding="utf-8")
    return _with_names(load_json_text(text, f"cpu_maps/{name}"))


def load_catalog(cpu_map: str | Path | None) -> Catalog:
    if cpu_map is None:
        return default_catalog()
    if isinstance(cpu_map, str) and cpu_map in SHIPPED and not Path(cpu_map).exists():
        return default_catalog() if cpu_map == "9.0" else shipped_catalog(cpu_map)
    return _with_names(_load_path(Path(cpu_map)))


def _load_path(path: Path) -> Catalog:
    if path.is_file() and path.suffix == ".json":
        return load_json_text(_read(path), str(path))
    if not path.is_dir():
        raise InputError(f"--cpu-map {path}: no such directory")
    if (path / "index.xml").is_file():
        def read(name: str) -> bytes:
            f = path / name
            if not f.is_file():
                raise InputError(f"{path}: CPU map include {name} not found")
            return read_user_file(str(f), MAX_MAP_FILE)

        return Catalog.from_libvirt_cpu_map(read, str(path))
    if (path / "x86.json").is_file():
        return load_json_text(_read(path / "x86.json"), str(path / "x86.json"))
    raise InputError(f"--cpu-map {path}: neither a libvirt cpu_map (index.xml) nor a migplan catalog (x86.json)")


def load_cpu_map_archive(path: Path) -> Catalog:
    """A libvirt cpu_map kept as a tar archive (tests/data/cpu_maps): its members by name."""
    files: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.size <= MAX_MAP_FILE:
                f = tar.extractfile(m)
                if f is not None:
                    files[Path(m.name).name] = f.read()

    def read(name: str) -> bytes:
        if name not in files:
            raise InputError(f"{path}: CPU map include {name} not found")
        return files[name]

    return Catalog.from_libvirt_cpu_map(read, str(path))


def catalog_for_hosts(hosts: Sequence[Host]) -> Catalog:
    """``catalog_for`` the libvirt versions of these hosts (the snapshot's host.json)."""
    return catalog_for({h.name: h.libvirt_version for h in hosts})


def catalog_for(versions: Mapping[str, str | None]) -> Catalog:
    """The shipped catalog for hosts of these libvirt versions (host -> "9.0.0"): libvirt
    9.0's while no host runs libvirt 10.10 or later (the release that named host CPUs
    with versioned models), else libvirt 11.3's, which reads both vocabularies."""
    for v in versions.values():
        pv = parse_version(v)
        if pv is not None and pv >= (10, 10, 0):
            return shipped_catalog("11.3")
    return default_catalog()


def _read(path: Path) -> str:
    return read_user_file(str(path), MAX_MAP_FILE * 4).decode("utf-8", errors="replace")


def harmonise(hosts: Sequence[Host], cat: Catalog) -> tuple[list[Host], dict[str, str]]:
    """Hosts whose CPU is named in another shipped libvirt's vocabulary (a libvirt 11
    host's ``Icelake-Server-v2``), re-described in ``cat``'s names; with a note per host.

    A mixed-version snapshot is the normal state of a cloud during an upgrade: the
    plan must use models every host's libvirt knows, so each CPU is read with the
    catalog that knows its names and planned in ``cat``'s.  Hosts no shipped catalog
    knows are left as they are (the recommendation reports them unknown).
    """
    from planner.cpu.vocabulary import knows, translate

    out: list[Host] = []
    notes: dict[str, str] = {}
    others = [v for v in SHIPPED if v + ".0" != (cat.libvirt_version or "")]
    known: dict[int, bool] = {}  # by CpuDef identity: hosts share parsed CPUs

    def knows_once(cpu: CpuDef | None) -> bool:
        if cpu is None:
            return True
        k = known.get(id(cpu))
        if k is None:
            k = known[id(cpu)] = knows(cpu, cat)
        return k

    for h in hosts:
        if knows_once(h.cpu) and knows_once(h.host_model):
            out.append(h)
            continue
        for v in others:
            src = shipped_catalog(v) if v != "9.0" else default_catalog()
            try:
                t = translate(h.cpu, src, cat)
                if t is None:
                    continue
                hm = translate(h.host_model, src, cat) if h.host_model is not None else None
            except CpuError:
                continue  # not translatable: the host stays as it is (reported unknown)
            out.append(replace(h, cpu=t.cpu, host_model=hm.cpu if hm is not None else None))
            lost = (f"; features libvirt {cat.libvirt_version} cannot name are left out "
                    f"({len(t.unnamed)}: {', '.join(t.unnamed[:6])}"
                    + (", ..." if len(t.unnamed) > 6 else "") + ")") if t.unnamed else ""
            notes[h.name] = (
                f"{h.name}: hosts/{h.name}/capabilities.xml names its CPU {t.was} in libvirt "
                f"{src.libvirt_version}'s vocabulary: read with that cpu_map and planned in "
                f"libvirt {cat.libvirt_version}'s models ({t.cpu.model}), which every host's "
                f"libvirt knows{lost}.")
            break
        else:
            out.append(h)
    return out, notes
