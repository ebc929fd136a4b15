"""The Nova CPU settings as the files operators deploy: nova.conf INI and globals.d YAML.

Every value is a name the CPU catalog holds (checked here: a cpu_mode Nova does not
have, a model or feature the catalog does not know, or anything but a plain name is
refused), and the files are written by real serialisers -- configparser for the INI,
PyYAML's ``safe_dump`` for the YAML -- so nothing a snapshot or a groups file says can
become a setting.  The one free text, the aggregate's name, appears only in a comment
line, escaped (``planner.review.text.printable``).  ``settings_stems`` gives each
aggregate's files a name that is one safe path component, distinct per aggregate.

Pure: text out, no files written here.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import re
from collections.abc import Sequence

import yaml

from planner.cpu.catalog import NAME_RE, Catalog
from planner.errors import CpuError
from planner.recommend.cpu_config import Recommendation
from planner.review.text import printable

#: Nova's [libvirt] cpu_mode choices (nova/conf/libvirt.py).
CPU_MODES = ("custom", "host-passthrough", "host-model", "none")


def _refuse(what: str, value: str) -> CpuError:
    return CpuError(f"refusing to write the Nova settings: {what} {value!r} is not a name "
                    "the CPU catalog holds")


def _model(name: str, cat: Catalog) -> str:
    if not NAME_RE.fullmatch(name) or name not in cat.model_by_name:
        raise _refuse("CPU model", name)
    return name


def _flag(flag: str, cat: Catalog) -> str:
    if flag[:1] not in ("+", "-") or not NAME_RE.fullmatch(flag[1:]) \
            or flag[1:] not in cat.feature_by_name:
        raise _refuse("cpu_model_extra_flags entry", flag)
    return flag


def nova_settings(rec: Recommendation, cat: Catalog) -> dict[str, str]:
    """nova.conf ``[libvirt]`` options of a recommendation, each value checked."""
    if rec.cpu_mode not in CPU_MODES:
        raise _refuse("cpu_mode", rec.cpu_mode)
    out = {"cpu_mode": rec.cpu_mode}
    if rec.cpu_mode == "custom":
        if not rec.cpu_models:
            raise CpuError(f"{printable(rec.scope)}: cpu_mode=custom without a CPU model")
        # oslo.config ListOpt: comma-separated
        out["cpu_models"] = ", ".join(_model(m, cat) for m in rec.cpu_models)
        flags = [_flag(f, cat) for f in rec.cpu_model_extra_flags]
        if flags:
            out["cpu_model_extra_flags"] = ", ".join(flags)
    return out


def _header(rec: Recommendation) -> str:
    return f"# migplan: Nova CPU settings for {printable(rec.scope)} ({len(rec.hosts)} hosts)\n"


def nova_ini(rec: Recommendation, cat: Catalog) -> str:
    """The ``[libvirt]`` section for nova.conf (nova-compute.conf), by configparser."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # keep Nova's spelling
    ini["libvirt"] = nova_settings(rec, cat)
    buf = io.StringIO()
    ini.write(buf)
    return _header(rec) + buf.getvalue().rstrip("\n") + "\n"


def globals_yaml(rec: Recommendation, cat: Catalog) -> str:
    """kolla-/xavs-ansible ``globals.d`` variables, by PyYAML's safe_dump."""
    settings = nova_settings(rec, cat)
    doc = {"nova_cpu_mode": settings["cpu_mode"]}
    notes = ["# for /etc/kolla/globals.d/ (kolla-/xavs-ansible)"]
    if rec.cpu_mode == "custom":
        doc["nova_cpu_model"] = _model(rec.cpu_models[0], cat)
        notes.append(f"# Full list for nova.conf [libvirt] cpu_models: {settings['cpu_models']}")
        if "cpu_model_extra_flags" in settings:
            notes.append("# [libvirt] cpu_model_extra_flags (a nova.conf override): "
                         + settings["cpu_model_extra_flags"])
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False)
    return _header(rec) + "\n".join(notes) + "\n" + body


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def settings_stems(scopes: Sequence[str]) -> dict[str, str]:
    """aggregate -> the stem of its files (``nova-cpu`` alone when there is one).

    The stem is one path component of letters, digits and ``. _ -`` (at most ~80
    characters); aggregates whose names would give the same stem ("rack/1",
    "rack 1") each get a short hash of their own name appended, so no file is
    written twice.
    """
    if len(scopes) == 1:
        return {scopes[0]: "nova-cpu"}
    slugs = {s: _UNSAFE_FILE_CHARS.sub("-", s).strip("-.")[:64] or "group" for s in scopes}
    count: dict[str, int] = {}
    for v in slugs.values():
        count[v] = count.get(v, 0) + 1
    out = {}
    for s, v in slugs.items():
        if count[v] > 1:
            v += "-" + hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        out[s] = f"nova-cpu.{v}"
    return out
