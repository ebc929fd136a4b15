#!/usr/bin/env python3
"""Write docs/cli.md from every command's ``--help`` (as sqlite-utils does with cog).

    python scripts/make_cli_doc.py           # rewrite docs/cli.md
    python scripts/make_cli_doc.py --check   # exit 1 when docs/cli.md is not current
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import click
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from planner.cli import COMMANDS, cli  # noqa: E402

DOC = REPO / "docs" / "cli.md"
HEADER = """\
# Command line reference

Generated from `migplan --help` and each command's `--help` by `scripts/make_cli_doc.py`
(a test fails when this page is not current).  What the commands do, in prose:
[commands.md](commands.md); exit codes: [exit-codes.md](exit-codes.md).
"""


def _paths() -> list[tuple[str, ...]]:
    ctx = click.Context(cli)
    out: list[tuple[str, ...]] = []
    for name in sorted(COMMANDS):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        out.append((name,))
        if isinstance(cmd, click.Group):
            out.extend((name, sub) for sub in sorted(cmd.list_commands(ctx)))
    return out


def _help(path: tuple[str, ...]) -> str:
    # A fixed terminal width, so the page does not depend on who generates it.
    r = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100, prog_name="migplan")
    if r.exit_code != 0:
        raise SystemExit(f"migplan {' '.join(path)} --help failed: {r.output}")
    return r.output.rstrip() + "\n"


def render() -> str:
    parts = [HEADER, "\n## `migplan`\n\n```\n", _help(()), "```\n"]
    for path in _paths():
        parts += [f"\n## `migplan {' '.join(path)}`\n\n```\n", _help(path), "```\n"]
    return "".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when docs/cli.md is not current")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/cli.md is not current: run scripts/make_cli_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
