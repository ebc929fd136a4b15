"""Every notebook under notebooks/ runs end to end on fixture snapshots (nbclient, a real
Jupyter kernel) and shows its figures and tables; notebooks are stored without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from conftest import REPO  # noqa: E402

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: notebook -> fixtures it runs on (every notebook runs on at least the first)
FIXTURES = {
    "capacity_review": ["modern-mixed-fleet", "mixed-intel-generations", "intel-amd-mixed"],
    "what_if": ["modern-mixed-fleet", "mixed-intel-generations", "intel-amd-mixed"],
}
DEFAULT_FIXTURES = ["modern-mixed-fleet"]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A `python3` kernelspec for *this* interpreter, found first through JUPYTER_PATH.

    A fresh .venv has no kernelspec of its own, and a user-wide one may point at
    another Python; writing our own makes the kernel import this checkout.
    """
    from ipykernel.kernelspec import write_kernel_spec

    share = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(str(share / "kernels" / "python3"),
                      overrides={"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                          "{connection_file}"]})
    return {"JUPYTER_PATH": str(share), "MPLBACKEND": "Agg",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _cases() -> list[tuple[Path, str]]:
    return [(nb, fx) for nb in NOTEBOOKS for fx in FIXTURES.get(nb.stem, DEFAULT_FIXTURES)]


def test_there_are_notebooks() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"capacity_review", "what_if"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs (clear them)"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameter_cell_comes_first(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert "SNAPSHOT =" in first.source and "MIGPLAN_SNAPSHOT" in first.source


@pytest.mark.parametrize(("path", "fixture"), _cases(),
                         ids=[f"{p.stem}-{f}" for p, f in _cases()])
def test_notebook_runs_and_shows_figures_and_tables(path: Path, fixture: str,
                                                    kernel_env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in kernel_env.items():
        monkeypatch.setenv(k, v)
    # The snapshot comes in through the environment, as a user would pass it.
    monkeypatch.setenv("MIGPLAN_SNAPSHOT", str(REPO / "fixtures" / fixture))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "<table" in o.get("data", {}).get("text/html", "")]
    assert len(images) >= 3, f"{path.name} on {fixture}: {len(images)} figures"
    assert len(tables) >= 3, f"{path.name} on {fixture}: {len(tables)} tables"
    # The snapshot came from MIGPLAN_SNAPSHOT: its hosts are in the tables.
    from planner.snapshot.read import load

    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    for host in load(REPO / "fixtures" / fixture).hosts:
        assert host.name in html, f"{path.name}: host {host.name} of {fixture} not shown"
