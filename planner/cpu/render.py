"""Render CPU definitions the way libvirt formats them (virCPUDefFormat) and as JSON."""

from __future__ import annotations

from typing import Any

from planner.cpu.cpudef import CpuDef

# virBufferEscapeString escapes < > & ' " (xml.sax.saxutils would pull
# urllib into the CLI's start-up for the same five replacements).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"})


def _esc(text: str) -> str:
    return text.translate(_ESCAPES)


def cpu_to_xml(cpu: CpuDef) -> str:
    """The same text libvirt's virCPUDefFormat produces for this definition."""
    attrs = ""
    if cpu.type == "guest" and (cpu.mode != "custom" or cpu.model):
        attrs += f" mode='{cpu.mode or 'custom'}'"
        if (cpu.mode or "custom") == "custom":
            attrs += f" match='{cpu.match or 'exact'}'"
        if cpu.check:
            attrs += f" check='{cpu.check}'"
    lines: list[str] = []
    if cpu.type == "host" and cpu.arch:
        lines.append(f"<arch>{cpu.arch}</arch>")
    fmt_model = cpu.type == "host" or cpu.mode in ("custom", "host-model", None)
    if fmt_model and cpu.model:
        fb = f" fallback='{cpu.fallback or 'allow'}'" if cpu.type == "guest" else ""
        lines.append(f"<model{fb}>{_esc(cpu.model)}</model>")
    if fmt_model and cpu.vendor:
        lines.append(f"<vendor>{_esc(cpu.vendor)}</vendor>")
    for f in cpu.features:
        if cpu.type == "guest":
            lines.append(f"<feature policy='{f.policy}' name='{f.name}'/>")
        else:
            lines.append(f"<feature name='{f.name}'/>")
    if not lines:
        return f"<cpu{attrs}/>\n"
    body = "".join(f"  {line}\n" for line in lines)
    return f"<cpu{attrs}>\n{body}</cpu>\n"


def baseline_to_json(cpu: CpuDef) -> dict[str, Any]:
    return {
        "model": cpu.model,
        "vendor": cpu.vendor,
        "features": [f.name for f in cpu.features if f.policy in ("require", "force", None)],
        "disabled": [f.name for f in cpu.features if f.policy in ("disable", "forbid")],
    }
