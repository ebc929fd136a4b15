"""Every command documents itself with an example, and the README names every command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from conftest import REPO

from planner.cli import COMMANDS, cli


def _all_commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        out.append((name,))
        if isinstance(cmd, click.Group):
            out.extend((name, sub) for sub in cmd.list_commands(ctx))
    return out


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output, f"`migplan {' '.join(path)} --help` has no example"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_readme_documents_every_command(name: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"migplan {name}" in readme, f"README.md does not mention `migplan {name}`"


def test_cli_doc_is_generated_from_the_help() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_cli_doc.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_is_a_newcomer_page() -> None:
    # issue 14.13: purpose, the two commands, the main path, exit codes, links -- not a manual
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 10 * 1024
    for link in ("docs/commands.md", "docs/cli.md", "docs/exit-codes.md", "docs/snapshot.md",
                 "docs/benchmarks.md"):
        assert f"]({link})" in readme and (REPO / link).is_file(), link
