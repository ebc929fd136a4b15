"""``--groups FILE``: which host belongs to which aggregate (host -> aggregate).

Three formats, chosen by the file name:

- ``.yaml`` / ``.yml``: a mapping of aggregate to a list of hosts
  (``{fast: [cn1, cn2], legacy: [cn3]}``);
- ``.csv``: rows ``host,aggregate`` (an optional header row ``host,aggregate``);
- ``.ini`` or anything else: Ansible-inventory style, ``[aggregate]`` headers
  followed by one host per line (anything after the first word, such as
  ``ansible_host=...``, is ignored) -- so a kolla inventory section can be
  pasted as is.

A host listed in two aggregates is an error: Nova places it in both, and the
two recommendations would contradict each other on that host.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import yaml

from planner.errors import InputError


def parse_groups(data: bytes, name: str) -> dict[str, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None
    pairs: list[tuple[str, str]]
    lower = name.lower()
    if lower.endswith((".yaml", ".yml")):
        pairs = _yaml(text, name)
    elif lower.endswith(".csv"):
        pairs = _csv(text, name)
    else:
        pairs = _ini(text, name)
    out: dict[str, str] = {}
    for host, agg in pairs:
        if host in out and out[host] != agg:
            raise InputError(f"{name}: host {host!r} is in two aggregates, {out[host]!r} and {agg!r}")
        out[host] = agg
    if not out:
        raise InputError(f"{name}: no hosts in the groups file")
    return out


def _yaml(text: str, name: str) -> list[tuple[str, str]]:
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{name}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{name}: expected a mapping of aggregate to a list of hosts")
    pairs: list[tuple[str, str]] = []
    for agg, hosts in doc.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise InputError(f"{name}: aggregate {agg!r}: expected a list of host names")
        pairs.extend((h, str(agg)) for h in hosts)
    return pairs


def _csv(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for i, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if i == 1 and [c.lower() for c in cells[:2]] == ["host", "aggregate"]:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise InputError(f"{name}: line {i}: expected host,aggregate")
        pairs.append((cells[0], cells[1]))
    return pairs


def _ini(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    group: str | None = None
    skip = False
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            skip = ":" in group  # [group:vars] / [group:children]: not host lists
            continue
        if skip:
            continue
        if group is None:
            raise InputError(f"{name}: line {i}: host {line.split()[0]!r} before any [aggregate] header")
        pairs.append((line.split()[0], group))
    return pairs
