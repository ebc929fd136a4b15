"""libvirt's numbers: integers, scaled integers with units, CPU sets -- one helper each."""

from __future__ import annotations

from typing import Any

from planner.errors import InputError

_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
    "pb": 1000**5, "p": 1024**5, "pib": 1024**5,
}


def parse_int(value: str | None, source: str, what: str) -> int:
    """A decimal (or 0x hexadecimal) integer >= 0 (every count, size, id and frequency
    libvirt writes is unsigned); ``source`` names the file."""
    try:
        n = int(str(value).strip(), 0 if str(value).strip().startswith("0x") else 10)
    except (TypeError, ValueError):
        raise InputError(f"{source}: invalid {what}: {value!r}") from None
    if n < 0:
        raise InputError(f"{source}: invalid {what}: {value!r} (negative)")
    return n


def to_kib(value: str | None, unit: str | None, source: str, what: str,
           default_unit: str = "KiB") -> int:
    """A libvirt scaled integer (value and ``unit=``, virScaleInteger's units) in KiB.

    An unknown unit is an error, as in libvirt (virScaleInteger: "unknown suffix").
    """
    u = (unit or default_unit).lower()
    if u not in _UNITS:
        raise InputError(f"{source}: unknown unit {u!r} for {what}")
    return parse_int(value, source, what) * _UNITS[u] // 1024


def element_kib(el: Any, source: str, what: str, default_unit: str = "KiB") -> int:
    """An element's text with its ``unit=`` (``<memory unit='GiB'>4</memory>``) in KiB."""
    return to_kib(el.text, el.get("unit"), source, what, default_unit)


def parse_cpuset(text: str | None, source: str = "") -> tuple[int, ...]:
    """libvirt's cpuset syntax: ``0-3,8,^2`` -> (0, 1, 3, 8)."""
    if text is None or not text.strip():
        return ()
    include: set[int] = set()
    exclude: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        target = include
        if part.startswith("^"):
            target, part = exclude, part[1:]
        lo, _, hi = part.partition("-")
        a = parse_int(lo, source, f"CPU set {text!r}")
        b = parse_int(hi, source, f"CPU set {text!r}") if hi else a
        if b < a or b - a > 1 << 16:
            raise InputError(f"{source}: invalid CPU set {text!r}")
        target.update(range(a, b + 1))
    return tuple(sorted(include - exclude))
