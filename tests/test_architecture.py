"""The stages import each other in one direction only (docs/architecture.md).

Read from the source with ``ast`` (no import runs), so a forbidden import anywhere in a
module -- at top level or inside a function -- fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLANNER = Path(__file__).resolve().parent.parent / "planner"

#: stage -> the planner stages it may import (besides itself).  The core (first six rows and
#: the shared vocabulary) imports no adapter, no CLI and no libvirt/openstack/click.
CORE = {"errors", "model", "cpu", "parse", "assess", "recommend", "plan"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "model": {"cpu"},
    "cpu": {"errors", "parse"},
    "parse": {"errors", "model", "cpu"},
    "assess": {"errors", "model", "cpu"},
    "recommend": {"errors", "model", "cpu", "assess"},
    # plan reads host names out of URIs with collect.sources.uri_host (a pure function)
    "plan": {"errors", "model", "cpu", "assess", "collect"},
    "act": {"errors", "model", "plan"},
    "snapshot": {"errors", "model", "cpu", "parse"},
    "collect": {"errors", "model", "cpu", "parse", "snapshot", "adapters"},
    "adapters": {"errors", "model", "cpu", "parse", "plan", "act", "collect"},
    "review": {"errors", "model", "cpu", "parse", "assess", "recommend", "snapshot", "adapters"},
    # the Nova lab bootstraps keystone, boots servers through planner.adapters.nova (the one
    # module importing the OpenStack SDK) rather than a second SDK user
    "lab": {"errors", "adapters"},
    "cli": {"*"},
}
FOREIGN = {"libvirt": {"adapters.libvirt"}, "openstack": {"adapters.nova"}, "click": {"cli"}}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(PLANNER.rglob("*.py")):
        rel = p.relative_to(PLANNER).with_suffix("")
        parts = [x for x in rel.parts if x != "__init__"]
        out.append((".".join(parts), p))
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "planner":
                names.update(f"planner.{a.name}" for a in node.names)
    return names


def _stage(module: str) -> str:
    return module.split(".")[0] if module else ""


@pytest.mark.parametrize("module,path", _modules(), ids=[m or "planner" for m, _ in _modules()])
def test_each_stage_imports_only_the_stages_below_it(module: str, path: Path) -> None:
    stage = _stage(module)
    if stage in ("", "__main__"):
        return
    assert stage in ALLOWED, f"planner/{stage} is a new stage: add it to docs/architecture.md " \
                             "and to ALLOWED here"
    allowed = ALLOWED[stage]
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "planner":
            target = _stage(name.removeprefix("planner").lstrip("."))
            if target in ("", "__version__", stage) or "*" in allowed:
                continue
            assert target in allowed, f"{module} imports {name}: {stage} may import only " \
                                      f"{sorted(allowed)}"
        elif top in FOREIGN:
            assert any(module == m or stage == m for m in FOREIGN[top]), \
                f"{module} imports {top}: only {sorted(FOREIGN[top])} may"


def test_the_core_runs_without_libvirt_or_click() -> None:
    core = [m for m, _ in _modules() if _stage(m) in CORE]
    assert core, "no core modules found"
    for m, p in _modules():
        if _stage(m) in CORE:
            tops = {n.split(".")[0] for n in _imports(p)}
            assert not tops & {"libvirt", "openstack", "click"}, m
